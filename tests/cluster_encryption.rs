//! ClusterEncryption on the real parts: kube-apiserver, atlas-sim (enforcing Atlas's cluster rules:
//! tiers, legacy backup, paused clusters, UPDATING → IDLE, no project disable while a cluster uses the
//! key) and moto. Every test asserts the Atlas calls it caused from the simulator's call log.
#![cfg(feature = "integration")]

mod common;

use std::time::{Duration, Instant};

use atlas_encryption_operator::crd::{ClusterEncryption, DeletionPolicy, ProjectEncryption};
use atlas_sim::CallRecord;
use common::operator::{
    API_PRIVATE_KEY, API_PUBLIC_KEY, OperatorEnv, REGION, cluster_converged, condition, seed, wait_gone,
};
use common::snapshots::{self, Expect};
use kube::api::Patch;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const CLUSTER_PATCH: &str = "/clusters/{clusterName}";
const EAR_PATCH: &str = "/encryptionAtRest";

fn reason(ce: &ClusterEncryption, type_: &str) -> Option<String> {
    ce.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, type_))
        .map(|(_, r)| r)
}

fn is_true(ce: &ClusterEncryption, type_: &str) -> bool {
    ce.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, type_))
        .is_some_and(|(st, _)| st == "True")
}

fn message(ce: &ClusterEncryption, type_: &str) -> String {
    ce.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn project_message(pe: &ProjectEncryption) -> String {
    pe.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn project_reason(pe: &ProjectEncryption) -> Option<String> {
    pe.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Ready"))
        .map(|(_, r)| r)
}

fn has_finalizer(ce: &ClusterEncryption) -> bool {
    ce.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.contains(&"encryption.atlasops.dev/cleanup".to_string()))
}

fn spec(project: &str, cluster: &str) -> Value {
    json!({"projectEncryptionRef": {"name": project}, "clusterName": cluster})
}

async fn atlas_cluster(
    env: &OperatorEnv,
    group: &str,
    name: &str,
) -> atlas_encryption_operator::atlas::Cluster {
    let (atlas, creds) = env.atlas();
    atlas.get_cluster(&creds, group, name).await.unwrap()
}

fn calls(env: &OperatorEnv, method: &str, suffix: &str) -> Vec<CallRecord> {
    env.sim()
        .calls()
        .into_iter()
        .filter(|c| c.method == method && c.route.as_deref().is_some_and(|r| r.ends_with(suffix)))
        .collect()
}

/// Writes Atlas accepted (refused ones changed nothing).
fn accepted_writes(env: &OperatorEnv) -> Vec<CallRecord> {
    env.atlas_writes()
        .into_iter()
        .filter(|c| (200..300).contains(&c.status))
        .collect()
}

/// (1) A cluster applied before its project is Ready waits, read once and never written (no finalizer
/// either), turns on within seconds of the project becoming Ready without reading again, is followed
/// through UPDATING to IDLE, and then costs nothing.
#[tokio::test]
async fn a_cluster_waits_for_its_project_then_is_encrypted_with_one_write() {
    let mut env = OperatorEnv::start("ce-wait", &seed(&[("proj-wait", &["Cluster0:M10"])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    env.apply_cluster("cluster0", spec("payments", "Cluster0"))
        .await
        .unwrap();
    let missing = env
        .wait_cluster("cluster0", WAIT, "waiting for a missing project", |ce| {
            reason(ce, "Ready").as_deref() == Some("ProjectEncryptionNotFound")
        })
        .await
        .unwrap();
    snapshots::capture("ce-wait", "ProjectEncryptionNotFound", &missing, Expect::Failed);
    assert!(is_true(&missing, "Stalled"));
    assert!(
        message(&missing, "Ready").contains("payments"),
        "{}",
        message(&missing, "Ready")
    );
    assert!(
        !has_finalizer(&missing),
        "nothing reached Atlas, so nothing to clean up: {:?}",
        missing.metadata.finalizers
    );

    // The project, with a role that does not trust Atlas yet.
    let key = env.create_key(REGION).await.unwrap();
    let role_name = common::unique_name("atlas-kms");
    let role_arn = env
        .create_role(
            &role_name,
            &format!("arn:aws:iam::{}:root", common::operator::CUSTOMER_ACCOUNT),
            "nobody",
            &key,
        )
        .await
        .unwrap();
    env.apply_project(
        "payments",
        json!({"projectName": "proj-wait", "credentialsRef": {"name": "atlas-credentials"},
               "awsKms": {"customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}}),
    )
    .await
    .unwrap();
    let role = env.wait_atlas_role("payments").await.unwrap();
    let waiting = env
        .wait_cluster("cluster0", WAIT, "waiting for the project", |ce| {
            reason(ce, "Ready").as_deref() == Some("WaitingForProject")
        })
        .await
        .unwrap();
    snapshots::capture("ce-wait", "waiting-for-project", &waiting, Expect::InProgress);
    assert!(is_true(&waiting, "Reconciling"), "kstatus: in progress");
    assert!(!is_true(&waiting, "Stalled"));
    assert!(!is_true(&waiting, "ProjectReady"));
    assert_eq!(
        reason(&waiting, "ProjectReady").as_deref(),
        Some("WaitingForProject")
    );
    // One read while waiting, in the routine lane: the status already shows the cluster as Atlas has it.
    let waiting = env
        .wait_cluster("cluster0", WAIT, "read ahead", |ce| {
            ce.status.as_ref().is_some_and(|s| s.tier.is_some())
        })
        .await
        .unwrap();
    assert_eq!(reason(&waiting, "Ready").as_deref(), Some("WaitingForProject"));
    assert_eq!(waiting.status.as_ref().unwrap().provider.as_deref(), Some("NONE"));
    assert_eq!(
        calls(&env, "GET", CLUSTER_PATCH).len(),
        1,
        "one read of the cluster while waiting"
    );
    assert!(
        calls(&env, "PATCH", CLUSTER_PATCH).is_empty(),
        "no write while waiting"
    );
    assert!(!has_finalizer(&waiting), "no finalizer before a write");

    env.trust_role(&role_name, &role).await.unwrap();
    env.wait_project("payments", WAIT, "Ready", |pe| {
        project_reason(pe).as_deref() == Some("Reconciled")
            && pe.status.as_ref().unwrap().observed_generation == pe.metadata.generation
    })
    .await
    .unwrap();
    let project_ready_at = Instant::now();
    let updating = env
        .wait_cluster("cluster0", Duration::from_secs(10), "turning on", |ce| {
            ce.status
                .as_ref()
                .is_some_and(|s| s.provider.as_deref() == Some("AWS"))
        })
        .await
        .unwrap();
    snapshots::capture("ce-wait", "updating", &updating, Expect::InProgress);
    assert!(
        project_ready_at.elapsed() < Duration::from_secs(10),
        "the project watch wakes the cluster"
    );
    assert!(
        !has_finalizer(&updating),
        "deletionPolicy Retain owes Atlas nothing on deletion, so no finalizer even once written"
    );
    let cluster_calls: Vec<String> = env
        .sim()
        .calls()
        .into_iter()
        .filter(|c| c.route.as_deref().is_some_and(|r| r.ends_with(CLUSTER_PATCH)))
        .map(|c| c.method)
        .collect();
    assert_eq!(
        cluster_calls[..2],
        ["GET", "PATCH"],
        "the read ahead stands in for the read before the PATCH"
    );
    let status = updating.status.as_ref().unwrap();
    assert_eq!(status.state_name.as_deref(), Some("UPDATING"), "{status:?}");
    assert_eq!(reason(&updating, "Ready").as_deref(), Some("ClusterUpdating"));
    assert!(is_true(&updating, "Reconciling"));
    assert!(is_true(&updating, "ProjectReady"));

    let ready = env
        .wait_cluster("cluster0", WAIT, "Ready", |ce| cluster_converged(ce, "AWS"))
        .await
        .unwrap();
    snapshots::capture("ce-wait", "ready", &ready, Expect::Ready);
    let status = ready.status.clone().unwrap();
    assert_eq!(status.tier.as_deref(), Some("M10"));
    assert_eq!(status.paused, Some(false));
    let group = env.group_id("proj-wait").await.unwrap();
    assert_eq!(status.project_id.as_deref(), Some(group.as_str()));
    assert!(!is_true(&ready, "Reconciling") && !is_true(&ready, "Stalled"));
    assert_eq!(
        env.atlas_calls("PATCH", CLUSTER_PATCH),
        1,
        "exactly one cluster PATCH"
    );
    let cluster = atlas_cluster(&env, &group, "Cluster0").await;
    assert!(
        cluster.provider() == atlas_encryption_operator::atlas::EncryptionProvider::Aws && cluster.is_idle()
    );
    let events = env
        .wait_event("cluster0", "EncryptionProviderSet", WAIT)
        .await
        .unwrap();
    assert!(
        events.iter().any(|(r, _)| r == "EncryptionProviderSet"),
        "{events:?}"
    );

    // Steady state: a wake-up reads, writes nothing to Atlas or to the status.
    env.sim().clear_calls();
    env.clusters()
        .patch("cluster0", &Default::default(), &common::poke())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        env.atlas_writes().is_empty(),
        "steady state: {:?}",
        env.atlas_writes()
    );
    assert!(
        !calls(&env, "GET", CLUSTER_PATCH).is_empty(),
        "the wake-up did look at Atlas"
    );
    let after = env.clusters().get("cluster0").await.unwrap();
    assert_eq!(after.status, ready.status, "no status write in steady state");
    env.finish().await;
}

fn stall_seed() -> String {
    format!(
        "apiKeys:\n  - {{publicKey: {API_PUBLIC_KEY}, privateKey: {API_PRIVATE_KEY}, projects: [proj-stall]}}
projects:
  - name: proj-stall
    clusters:
      - {{name: Free0, instanceSize: M0}}
      - {{name: Shared2, instanceSize: M2}}
      - {{name: Flex0, instanceSize: FLEX}}
      - {{name: Sls0, kind: serverless}}
      - {{name: Old0, instanceSize: M30, legacyBackup: true, backupEnabled: true}}
      - {{name: Sleepy0, instanceSize: M10, paused: true}}
"
    )
}

/// (2) Every Stalled reason comes from a real simulated cluster, with a message saying what to do, a
/// Warning Event, and no write Atlas accepted.
#[tokio::test]
async fn stalled_reasons_come_from_real_clusters_without_writes() {
    let mut env = OperatorEnv::start("ce-stall", &stall_seed()).await.unwrap();
    env.start_controller().await.unwrap();
    env.encrypt_project("stall", "proj-stall").await.unwrap();
    env.sim().clear_calls();

    let cases = [
        ("free0", "Free0", "UnsupportedTier", "M10"),
        ("shared2", "Shared2", "UnsupportedTier", "M10"),
        ("flex0", "Flex0", "UnsupportedTier", "Flex"),
        ("sls0", "Sls0", "UnsupportedTier", "Serverless"),
        ("old0", "Old0", "LegacyBackup", "Cloud Backup"),
        ("sleepy0", "Sleepy0", "ClusterPaused", "resume"),
        ("missing0", "Missing0", "ClusterNotFound", "spec.clusterName"),
    ];
    for (object, cluster, _, _) in cases {
        env.apply_cluster(object, spec("stall", cluster)).await.unwrap();
    }
    for (object, _, expected, hint) in cases {
        let ce = env
            .wait_cluster(object, WAIT, expected, |ce| {
                reason(ce, "Ready").as_deref() == Some(expected) && is_true(ce, "Stalled")
            })
            .await
            .unwrap();
        snapshots::capture("ce-stall", &format!("{object}-{expected}"), &ce, Expect::Failed);
        assert!(!is_true(&ce, "Reconciling"), "{object}: kstatus Stalled alone");
        let text = message(&ce, "Ready");
        assert!(text.contains(hint), "{object}: {text}");
        let events = env.wait_event(object, expected, WAIT).await.unwrap();
        assert!(
            events.iter().any(|(r, _)| r == expected),
            "{object}: Warning Event {expected}: {events:?}"
        );
    }
    let flex = env.clusters().get("flex0").await.unwrap();
    assert_eq!(flex.status.unwrap().tier.as_deref(), Some("FLEX"));
    let free = env.clusters().get("free0").await.unwrap();
    assert_eq!(free.status.unwrap().tier.as_deref(), Some("M0"));
    let sleepy = env.clusters().get("sleepy0").await.unwrap();
    assert_eq!(sleepy.status.unwrap().paused, Some(true));

    assert!(
        accepted_writes(&env).is_empty(),
        "no Atlas write: {:?}",
        accepted_writes(&env)
    );
    // Legacy backup is invisible in the cluster description, so only Atlas's answer to the PATCH
    // reveals it; that refused PATCH is the only one, and it is not repeated in a loop.
    let patches = calls(&env, "PATCH", CLUSTER_PATCH);
    assert!(
        patches.iter().all(|c| c.path.ends_with("/Old0")
            && c.error_code.as_deref() == Some("CANNOT_USE_ENCRYPTION_AT_REST_BACKUP_TYPE")),
        "{patches:?}"
    );
    assert!(patches.len() <= 2, "{patches:?}");

    // Resuming the cluster in Atlas is all it takes.
    let group = env.group_id("proj-stall").await.unwrap();
    env.sim_patch_cluster(&group, "Sleepy0", json!({"paused": false}))
        .await
        .unwrap();
    env.clusters()
        .patch("sleepy0", &Default::default(), &common::poke())
        .await
        .unwrap();
    env.wait_cluster("sleepy0", WAIT, "Ready after resume", |ce| {
        cluster_converged(ce, "AWS")
    })
    .await
    .unwrap();
    env.finish().await;
}

/// (2b) A project that stalls (its key disabled in KMS) stalls the clusters waiting on it, so GitOps tools
/// report them failed rather than progressing forever; a cluster's own blocker (an M0) keeps its reason.
/// Neither costs an Atlas write, and both recover once the key is enabled again.
#[tokio::test]
async fn a_stalled_project_stalls_its_clusters_and_a_clusters_own_blocker_stays() {
    let mut env = OperatorEnv::start(
        "ce-project-stalled",
        &seed(&[("proj-ps", &["Orders:M10", "Sandbox:M0"])]),
    )
    .await
    .unwrap();
    env.start_controller().await.unwrap();
    let handshake = env.encrypt_project("ps", "proj-ps").await.unwrap();
    env.apply_cluster("orders", spec("ps", "Orders")).await.unwrap();
    env.apply_cluster("sandbox", spec("ps", "Sandbox")).await.unwrap();
    env.wait_cluster("orders", WAIT, "Ready", |ce| cluster_converged(ce, "AWS"))
        .await
        .unwrap();
    env.wait_cluster("sandbox", WAIT, "UnsupportedTier", |ce| {
        reason(ce, "Ready").as_deref() == Some("UnsupportedTier")
    })
    .await
    .unwrap();
    env.sim().clear_calls();

    let key_id = handshake.key.rsplit('/').next().unwrap().to_string();
    env.kms.disable_key().key_id(&key_id).send().await.unwrap();
    env.projects()
        .patch("ps", &Default::default(), &common::poke())
        .await
        .unwrap();
    let stalled_project = env
        .wait_project("ps", WAIT, "Stalled", |pe| {
            pe.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Stalled"))
                .is_some_and(|(st, _)| st == "True")
        })
        .await
        .unwrap();
    // A Stalled outcome gives Ready and Stalled the same reason.
    let project_stall = project_reason(&stalled_project).unwrap();

    let orders = env
        .wait_cluster("orders", WAIT, "ProjectStalled", |ce| {
            reason(ce, "Ready").as_deref() == Some("ProjectStalled")
        })
        .await
        .unwrap();
    snapshots::capture("ce-project-stalled", "orders", &orders, Expect::Failed);
    assert!(is_true(&orders, "Stalled") && !is_true(&orders, "Reconciling"));
    assert_eq!(reason(&orders, "ProjectReady").as_deref(), Some("ProjectStalled"));
    let text = message(&orders, "Ready");
    assert!(
        text.contains(&project_stall) && text.contains("kubectl describe projectencryption ps"),
        "{text}"
    );
    assert_eq!(
        orders.status.as_ref().unwrap().provider.as_deref(),
        Some("AWS"),
        "what Atlas last showed is kept"
    );
    env.wait_event("orders", "ProjectStalled", WAIT).await.unwrap();

    let sandbox = env
        .wait_cluster("sandbox", WAIT, "the project's state noted", |ce| {
            reason(ce, "ProjectReady").as_deref() == Some("ProjectStalled")
        })
        .await
        .unwrap();
    snapshots::capture(
        "ce-project-stalled",
        "sandbox-UnsupportedTier",
        &sandbox,
        Expect::Failed,
    );
    assert_eq!(
        reason(&sandbox, "Ready").as_deref(),
        Some("UnsupportedTier"),
        "the cluster's own blocker is not hidden by the project's"
    );
    assert!(
        message(&sandbox, "Ready").contains("M10"),
        "{}",
        message(&sandbox, "Ready")
    );
    assert!(accepted_writes(&env).is_empty(), "{:?}", accepted_writes(&env));
    assert!(calls(&env, "PATCH", CLUSTER_PATCH).is_empty());

    env.kms.enable_key().key_id(&key_id).send().await.unwrap();
    env.projects()
        .patch("ps", &Default::default(), &common::poke())
        .await
        .unwrap();
    env.wait_cluster("orders", WAIT, "Ready again", |ce| cluster_converged(ce, "AWS"))
        .await
        .unwrap();
    let sandbox = env
        .wait_cluster("sandbox", WAIT, "the project Ready again", |ce| {
            is_true(ce, "ProjectReady")
        })
        .await
        .unwrap();
    assert_eq!(reason(&sandbox, "Ready").as_deref(), Some("UnsupportedTier"));
    assert!(
        calls(&env, "PATCH", CLUSTER_PATCH).is_empty(),
        "the cluster never stopped being encrypted: nothing to write"
    );
    env.finish().await;
}

/// (3) Turning everything off: the clusters go to NONE first, and only then does the project disable,
/// which Atlas would refuse otherwise.
#[tokio::test]
async fn disable_sequence_turns_clusters_off_before_the_project() {
    let mut env = OperatorEnv::start(
        "ce-sequence",
        &seed(&[("proj-seq", &["A0:M10", "B0:M30", "C0:M40"])]),
    )
    .await
    .unwrap();
    env.start_controller().await.unwrap();
    let handshake = env.encrypt_project("seq", "proj-seq").await.unwrap();
    let (key, role_arn) = (handshake.key, handshake.role_arn);
    let names = [("a0", "A0"), ("b0", "B0"), ("c0", "C0")];
    for (object, cluster) in names {
        env.apply_cluster(object, spec("seq", cluster)).await.unwrap();
    }
    for (object, _) in names {
        env.wait_cluster(object, WAIT, "Ready", |ce| cluster_converged(ce, "AWS"))
            .await
            .unwrap();
    }
    env.sim().clear_calls();

    for (object, cluster) in names {
        let mut off = spec("seq", cluster);
        off["enabled"] = json!(false);
        let applied = env.apply_cluster(object, off).await.unwrap();
        snapshots::capture(
            "ce-sequence",
            &format!("{object}-applied"),
            &applied,
            Expect::InProgress,
        );
    }
    env.apply_project(
        "seq",
        json!({"projectName": "proj-seq", "credentialsRef": {"name": "atlas-credentials"},
               "awsKms": {"enabled": false, "customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}}),
    )
    .await
    .unwrap();
    for (object, _) in names {
        let ce = env
            .wait_cluster(object, WAIT, "off", |ce| cluster_converged(ce, "NONE"))
            .await
            .unwrap();
        snapshots::capture("ce-sequence", &format!("{object}-disabled"), &ce, Expect::Ready);
        assert_eq!(reason(&ce, "Ready").as_deref(), Some("EncryptionDisabled"));
    }
    env.wait_project("seq", WAIT, "disabled", |pe| {
        project_reason(pe).as_deref() == Some("EncryptionDisabled")
    })
    .await
    .unwrap();

    let cluster_patches = calls(&env, "PATCH", CLUSTER_PATCH);
    let ear_patches = calls(&env, "PATCH", EAR_PATCH);
    assert_eq!(cluster_patches.len(), 3, "{cluster_patches:?}");
    assert!(
        cluster_patches.iter().all(|c| c.status == 200),
        "{cluster_patches:?}"
    );
    assert_eq!(
        ear_patches.len(),
        1,
        "one disable, never refused: {ear_patches:?}"
    );
    assert_eq!(ear_patches[0].status, 200);
    let last_cluster = cluster_patches.iter().map(|c| c.seq).max().unwrap();
    assert!(
        last_cluster < ear_patches[0].seq,
        "every cluster turned off before the project: {cluster_patches:?} {ear_patches:?}"
    );
    let group = env.group_id("proj-seq").await.unwrap();
    let (atlas, creds) = env.atlas();
    assert!(
        !atlas
            .get_encryption_at_rest(&creds, &group)
            .await
            .unwrap()
            .aws_enabled()
    );
    env.finish().await;
}

/// (4) A cluster encrypted outside the operator blocks the project's disable; the project names it and
/// stalls, and the operator never touches that cluster.
#[tokio::test]
async fn an_unmanaged_encrypted_cluster_blocks_the_project_disable() {
    let mut env = OperatorEnv::start(
        "ce-unmanaged",
        &seed(&[("proj-mixed", &["Managed0:M10", "Rogue0:M10"])]),
    )
    .await
    .unwrap();
    env.start_controller().await.unwrap();
    let handshake = env.encrypt_project("mixed", "proj-mixed").await.unwrap();
    let (key, role_arn) = (handshake.key, handshake.role_arn);
    env.apply_cluster("managed0", spec("mixed", "Managed0"))
        .await
        .unwrap();
    env.wait_cluster("managed0", WAIT, "Ready", |ce| cluster_converged(ce, "AWS"))
        .await
        .unwrap();
    let group = env.group_id("proj-mixed").await.unwrap();
    env.sim_patch_cluster(
        &group,
        "Rogue0",
        json!({"encryptionAtRestProvider": "AWS", "stateName": "IDLE"}),
    )
    .await
    .unwrap();
    env.sim().clear_calls();

    let mut off = spec("mixed", "Managed0");
    off["enabled"] = json!(false);
    env.apply_cluster("managed0", off).await.unwrap();
    env.apply_project(
        "mixed",
        json!({"projectName": "proj-mixed", "credentialsRef": {"name": "atlas-credentials"},
               "awsKms": {"enabled": false, "customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}}),
    )
    .await
    .unwrap();
    env.wait_cluster("managed0", WAIT, "off", |ce| cluster_converged(ce, "NONE"))
        .await
        .unwrap();
    let blocked = env
        .wait_project("mixed", WAIT, "blocked by Rogue0 only", |pe| {
            project_reason(pe).as_deref() == Some("DisableBlockedByClusters")
                && project_message(pe).contains("Rogue0")
                && !project_message(pe).contains("Managed0")
        })
        .await
        .unwrap();
    snapshots::capture("ce-unmanaged", "project-blocked", &blocked, Expect::Failed);
    let status = blocked.status.unwrap();
    assert_eq!(condition(&status.conditions, "Stalled").unwrap().0, "True");
    assert_eq!(status.clusters_using_key, vec!["Rogue0".to_string()]);
    assert_eq!(env.atlas_calls("PATCH", EAR_PATCH), 0, "no disable attempt");
    let patches = calls(&env, "PATCH", CLUSTER_PATCH);
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert!(patches[0].path.ends_with("/Managed0"), "Rogue0 is never touched");
    assert_eq!(
        atlas_cluster(&env, &group, "Rogue0").await.provider(),
        atlas_encryption_operator::atlas::EncryptionProvider::Aws
    );
    env.finish().await;
}

/// (5) Deletion: `Retain` lets go without an Atlas call; `Disable` turns the cluster off and lets go only
/// once Atlas shows NONE and IDLE; a Disable that cannot proceed says how to let go.
#[tokio::test]
async fn deletion_retains_or_disables() {
    let mut env = OperatorEnv::start(
        "ce-delete",
        &seed(&[("proj-del", &["Keep0:M10", "Drop0:M10", "Orphan0:M10"])]),
    )
    .await
    .unwrap();
    env.start_controller().await.unwrap();
    env.encrypt_project("del", "proj-del").await.unwrap();
    env.apply_cluster("keep0", spec("del", "Keep0")).await.unwrap();
    for (object, cluster) in [("drop0", "Drop0"), ("orphan0", "Orphan0")] {
        let mut s = spec("del", cluster);
        s["deletionPolicy"] = json!("Disable");
        env.apply_cluster(object, s).await.unwrap();
    }
    for object in ["keep0", "drop0", "orphan0"] {
        let ready = env
            .wait_cluster(object, WAIT, "Ready", |ce| cluster_converged(ce, "AWS"))
            .await
            .unwrap();
        // Only a deletion that owes Atlas a write waits for the operator.
        let disable = ready.spec.deletion_policy == DeletionPolicy::Disable;
        assert_eq!(has_finalizer(&ready), disable, "{object}");
    }
    let group = env.group_id("proj-del").await.unwrap();
    use atlas_encryption_operator::atlas::EncryptionProvider;

    env.sim().clear_calls();
    env.clusters().delete("keep0", &Default::default()).await.unwrap();
    wait_gone(&env.clusters(), "keep0", WAIT).await.unwrap();
    assert!(env.atlas_writes().is_empty(), "Retain makes no Atlas write");
    assert!(
        env.sim().calls().iter().all(|c| !c.path.contains("/clusters/")),
        "Retain makes no Atlas call at all"
    );
    assert_eq!(
        atlas_cluster(&env, &group, "Keep0").await.provider(),
        EncryptionProvider::Aws
    );

    env.clusters().delete("drop0", &Default::default()).await.unwrap();
    wait_gone(&env.clusters(), "drop0", WAIT).await.unwrap();
    let dropped = atlas_cluster(&env, &group, "Drop0").await;
    assert_eq!(dropped.provider(), EncryptionProvider::None);
    assert!(dropped.is_idle(), "released only once Atlas shows IDLE");
    assert_eq!(env.atlas_calls("PATCH", CLUSTER_PATCH), 1);

    // The project goes first (Retain): the cluster cannot be turned off without its credentials, and
    // says how to let go instead of hanging silently.
    env.projects().delete("del", &Default::default()).await.unwrap();
    wait_gone(&env.projects(), "del", WAIT).await.unwrap();
    env.sim().clear_calls();
    env.clusters()
        .delete("orphan0", &Default::default())
        .await
        .unwrap();
    let stuck = env
        .wait_cluster("orphan0", WAIT, "stalled on delete", |ce| {
            reason(ce, "Ready").as_deref() == Some("ProjectEncryptionNotFound")
                && message(ce, "Ready").starts_with("deleting: ")
        })
        .await
        .unwrap();
    // kstatus says Terminating and Argo CD "Pending deletion" whatever the conditions say; the Ready
    // message is what tells a person to act here.
    snapshots::capture("ce-delete", "stuck-deleting", &stuck, Expect::Deleting);
    let text = message(&stuck, "Ready");
    assert!(
        text.contains("deletionPolicy: Retain") && text.contains("encryption.atlasops.dev/cleanup"),
        "{text}"
    );
    assert!(is_true(&stuck, "Stalled"));
    env.clusters()
        .patch(
            "orphan0",
            &Default::default(),
            &Patch::Merge(json!({"spec": {"deletionPolicy": "Retain"}})),
        )
        .await
        .unwrap();
    wait_gone(&env.clusters(), "orphan0", WAIT).await.unwrap();
    assert!(env.atlas_writes().is_empty());
    assert_eq!(
        atlas_cluster(&env, &group, "Orphan0").await.provider(),
        EncryptionProvider::Aws
    );
    env.finish().await;
}

/// (6) The project and its clusters applied together in a random order (as a GitOps sync would) all
/// converge, and no cluster PATCH is sent before Atlas can accept it.
#[tokio::test]
async fn project_and_clusters_applied_in_any_order_converge() {
    let mut env = OperatorEnv::start(
        "ce-any-order",
        &seed(&[("proj-any", &["X0:M10", "Y0:M20", "Z0:M30"])]),
    )
    .await
    .unwrap();
    // The IAM side is prepared beforehand, so nothing waits for a person.
    let key = env.create_key(REGION).await.unwrap();
    let group = env.group_id("proj-any").await.unwrap();
    let role = env.authorized_atlas_role(&group, &key).await.unwrap();
    env.start_controller().await.unwrap();
    env.sim().clear_calls();

    enum Manifest {
        Project,
        Cluster(&'static str, &'static str),
    }
    let mut manifests = vec![
        Manifest::Project,
        Manifest::Cluster("x0", "X0"),
        Manifest::Cluster("y0", "Y0"),
        Manifest::Cluster("z0", "Z0"),
    ];
    manifests.shuffle(&mut rand::rng());
    for manifest in &manifests {
        match manifest {
            Manifest::Project => {
                env.apply_project(
                    "any",
                    json!({"projectName": "proj-any", "credentialsRef": {"name": "atlas-credentials"},
                           "awsKms": {"customerMasterKeyId": key, "region": REGION, "atlasRoleId": role.role_id}}),
                )
                .await
                .unwrap();
            }
            Manifest::Cluster(object, cluster) => {
                env.apply_cluster(object, spec("any", cluster)).await.unwrap();
            }
        }
    }
    for object in ["x0", "y0", "z0"] {
        env.wait_cluster(object, WAIT, "Ready", |ce| cluster_converged(ce, "AWS"))
            .await
            .unwrap();
    }
    env.wait_project("any", WAIT, "Ready", |pe| {
        project_reason(pe).as_deref() == Some("Reconciled")
    })
    .await
    .unwrap();
    let patches = calls(&env, "PATCH", CLUSTER_PATCH);
    assert_eq!(patches.len(), 3, "one PATCH per cluster: {patches:?}");
    assert!(
        patches.iter().all(|c| c.status == 200),
        "none sent before the project was ready: {patches:?}"
    );
    for name in ["X0", "Y0", "Z0"] {
        let cluster = atlas_cluster(&env, &group, name).await;
        assert_eq!(
            cluster.provider(),
            atlas_encryption_operator::atlas::EncryptionProvider::Aws
        );
    }
    env.finish().await;
}
