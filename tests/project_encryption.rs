//! ProjectEncryption on the real parts: kube-apiserver, atlas-sim (checking trust, permissions and key
//! state in moto, as Atlas checks them in AWS) and moto. Every test asserts the Atlas calls it caused.
#![cfg(feature = "integration")]

mod common;

use std::time::Duration;

use common::operator::{
    CUSTOMER_ACCOUNT, Handshake, OperatorEnv, REGION, condition, look_twice, project_on_key, seed,
};
use common::snapshots::{self, Expect};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

fn ready(status: Option<&atlas_encryption_operator::crd::ProjectEncryptionStatus>) -> bool {
    status.is_some_and(|s| condition(&s.conditions, "Ready").is_some_and(|(st, _)| st == "True"))
}

fn reason(pe: &atlas_encryption_operator::crd::ProjectEncryption, type_: &str) -> Option<String> {
    pe.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, type_))
        .map(|(_, r)| r)
}

/// A fresh project end to end: role created, waiting for trust, trust created in IAM, authorized, key
/// valid, Ready; then steady state costs no write; then a rotation keeps the history.
#[tokio::test]
async fn fresh_project_is_encrypted_after_the_trust_policy_appears_then_rotates() {
    let mut env = OperatorEnv::start("pe-fresh", &seed(&[("proj-fresh", &["Cluster0:M10"])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    // The IAM role exists but does not trust Atlas yet: the handshake must wait, not fail.
    let Handshake {
        key,
        role_name,
        role_arn,
    } = env.begin_handshake("payments", "proj-fresh").await.unwrap();

    let waiting = env
        .wait_project("payments", WAIT, "awaiting the trust policy", |pe| {
            reason(pe, "RoleAuthorized").as_deref() == Some("AwaitingTrustPolicy")
        })
        .await
        .unwrap();
    snapshots::capture("pe-fresh", "awaiting-trust-policy", &waiting, Expect::InProgress);
    assert_eq!(reason(&waiting, "Ready").as_deref(), Some("AwaitingTrustPolicy"));
    assert_eq!(
        reason(&waiting, "Reconciling").as_deref(),
        Some("AwaitingTrustPolicy"),
        "kstatus: in progress"
    );
    let role = waiting
        .status
        .as_ref()
        .unwrap()
        .role
        .clone()
        .expect("role recorded in status");
    let atlas_arn = role.atlas_aws_account_arn.clone().unwrap();
    let external_id = role.external_id.clone().unwrap();
    let message = &waiting
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "RoleAuthorized")
        .unwrap()
        .message;
    assert!(
        message.contains(&external_id) && message.contains(&atlas_arn),
        "describe shows the trust policy: {message}"
    );
    let events = env
        .wait_event("payments", "TrustPolicyRequired", WAIT)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "TrustPolicyRequired" && m.contains(&external_id)),
        "{events:?}"
    );
    assert!(events.iter().any(|(r, _)| r == "RoleCreated"), "{events:?}");

    env.trust_atlas(&role_name, &atlas_arn, &external_id)
        .await
        .unwrap();
    let encrypted = env
        .wait_project("payments", WAIT, "Ready", |pe| ready(pe.status.as_ref()))
        .await
        .unwrap();
    snapshots::capture("pe-fresh", "ready", &encrypted, Expect::Ready);
    let status = encrypted.status.clone().unwrap();
    assert_eq!(status.observed_generation, encrypted.metadata.generation);
    assert_eq!(status.key.as_ref().unwrap().valid, Some(true));
    assert_eq!(status.key.as_ref().unwrap().customer_master_key_id, key);
    assert!(status.role.as_ref().unwrap().authorized);
    assert_eq!(condition(&status.conditions, "KeyValid").unwrap().0, "True");
    assert_eq!(
        env.atlas_calls("POST", "/cloudProviderAccess"),
        1,
        "exactly one role created"
    );
    assert_eq!(
        env.atlas_calls("GET", "/encryptionAtRest"),
        1,
        "Atlas's encryption settings read once, before the trust wait: the PATCH after it carries all"
    );
    assert_eq!(
        env.atlas_calls("GET", "/groups/byName/{groupName}"),
        1,
        "projectName resolved on the first look, not again on the polls of the trust wait"
    );
    assert_eq!(
        env.atlas_calls("PATCH", "/encryptionAtRest"),
        1,
        "the key assigned once"
    );

    // Steady state: a reconcile of the converged object reads and writes nothing in Atlas or status.
    env.sim().clear_calls();
    let rv = encrypted.metadata.resource_version.clone();
    env.projects()
        .patch("payments", &kube::api::PatchParams::default(), &common::poke())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        env.sim().calls().iter().any(|c| c.method == "GET"),
        "the poke caused a reconcile"
    );
    assert!(
        env.atlas_writes().is_empty(),
        "no Atlas write in steady state: {:?}",
        env.atlas_writes()
    );
    let after = env.projects().get("payments").await.unwrap();
    assert_eq!(after.status, encrypted.status, "no status write in steady state");
    assert_ne!(after.metadata.resource_version, rv, "only the annotation changed");

    // A snapshot taken under the first key keeps that key needed after the rotation.
    let group = status.project_id.clone().unwrap();
    env.sim_patch_cluster(
        &group,
        "Cluster0",
        json!({"encryptionAtRestProvider": "AWS", "stateName": "IDLE"}),
    )
    .await
    .unwrap();
    let url = format!(
        "{}/__sim/projects/{group}/clusters/Cluster0/snapshots",
        env.sim().base_url()
    );
    let response = reqwest::Client::new()
        .post(url)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "snapshot: {}", response.status());

    // Rotation: a new key in the spec is applied once, the old key is kept in the history.
    let new_key = env.create_key(REGION).await.unwrap();
    env.allow_keys(&role_name, &[&key, &new_key]).await.unwrap();
    env.sim().clear_calls();
    let applied = env
        .apply_project(
            "payments",
            json!({"projectName": "proj-fresh", "credentialsRef": {"name": "atlas-credentials"},
               "awsKms": {"customerMasterKeyId": new_key, "region": REGION, "roleArn": role_arn}}),
        )
        .await
        .unwrap();
    // The apply's own answer: the new generation, and the status still of the old one.
    snapshots::capture("pe-fresh", "rotation-applied", &applied, Expect::InProgress);
    let rotated = env
        .wait_project("payments", WAIT, "rotated and Ready", |pe| {
            project_on_key(pe, &new_key)
        })
        .await
        .unwrap();
    snapshots::capture("pe-fresh", "rotated-ready", &rotated, Expect::Ready);
    let status = rotated.status.unwrap();
    assert_eq!(status.previous_keys.len(), 1);
    assert_eq!(status.previous_keys[0].customer_master_key_id, key);
    assert_eq!(
        status.previous_keys[0].snapshots_using_key, 1,
        "the snapshot still needs the old key"
    );
    assert!(!status.previous_keys[0].safe_to_delete);
    assert!(env.atlas_calls("GET", "/clusters/{clusterName}/backup/snapshots") >= 1);
    assert_eq!(
        env.atlas_calls("GET", "/backup/snapshots/shardedClusters"),
        0,
        "a replica set has no sharded-cluster snapshots to list"
    );
    let patches: Vec<_> = env.atlas_writes();
    assert_eq!(patches.len(), 1, "one PATCH for a rotation: {patches:?}");
    let events = env.wait_event("payments", "KeyRotated", WAIT).await.unwrap();
    assert!(events.iter().any(|(r, _)| r == "KeyRotated"), "{events:?}");
    env.finish().await;
}

/// A disabled key makes Atlas report `valid: false`: the resource turns Degraded and Stalled.
#[tokio::test]
async fn a_key_disabled_after_ready_is_noticed() {
    let mut env = OperatorEnv::start("pe-disabled-key", &seed(&[("proj-dk", &[])]))
        .await
        .unwrap();
    let key = env.create_key(REGION).await.unwrap();
    let role_name = common::unique_name("atlas-kms");
    let sim_atlas_arn = atlas_sim::DEFAULT_ATLAS_AWS_ACCOUNT_ARN;
    // Trust that names Atlas but with the wrong external ID: still refused until fixed below.
    let role_arn = env
        .create_role(&role_name, sim_atlas_arn, "wrong-external-id", &key)
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    env.apply_project(
        "dk",
        json!({"projectName": "proj-dk", "credentialsRef": {"name": "atlas-credentials"},
               "kmsPreflight": {"enabled": false},
               "awsKms": {"customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}}),
    )
    .await
    .unwrap();
    let waiting = env
        .wait_project("dk", WAIT, "awaiting trust", |pe| {
            reason(pe, "RoleAuthorized").as_deref() == Some("AwaitingTrustPolicy")
        })
        .await
        .unwrap();
    let ext = waiting.status.unwrap().role.unwrap().external_id.unwrap();
    env.trust_atlas(&role_name, sim_atlas_arn, &ext).await.unwrap();
    env.wait_project("dk", WAIT, "Ready", |pe| ready(pe.status.as_ref()))
        .await
        .unwrap();

    let key_id = key.rsplit('/').next().unwrap();
    env.kms.disable_key().key_id(key_id).send().await.unwrap();
    // Nothing in Kubernetes changed: the periodic re-check (or any event) must find it. Poke it.
    env.projects()
        .patch("dk", &kube::api::PatchParams::default(), &common::poke())
        .await
        .unwrap();
    let invalid = env
        .wait_project("dk", WAIT, "KeyInvalid", |pe| {
            reason(pe, "KeyValid").as_deref() == Some("KeyInvalid")
        })
        .await
        .unwrap();
    snapshots::capture("pe-disabled-key", "key-invalid", &invalid, Expect::Failed);
    let status = invalid.status.unwrap();
    assert_eq!(
        condition(&status.conditions, "Degraded").unwrap(),
        ("True".into(), "KeyInvalid".into())
    );
    assert_eq!(condition(&status.conditions, "Stalled").unwrap().0, "True");
    // `kubectl describe` shows KeyValid whole: the statement to paste into a key policy that restricts
    // aws:SourceIp, allowing exactly the control-plane CIDRs of the key's region for the role.
    assert!(!status.control_plane_cidrs.is_empty(), "{status:?}");
    let statement = atlas_encryption_operator::control_plane::key_policy_statement(
        &atlas_encryption_operator::aws::RoleArn::parse(&role_arn).unwrap(),
        &status.control_plane_cidrs,
    );
    let key_valid = status.conditions.iter().find(|c| c.type_ == "KeyValid").unwrap();
    assert!(
        key_valid.message.contains(&statement.to_string()),
        "{}",
        key_valid.message
    );
    let events = env.wait_event("dk", "KeyInvalid", WAIT).await.unwrap();
    assert!(events.iter().any(|(r, _)| r == "KeyInvalid"), "{events:?}");
    env.finish().await;
}

/// Preflight failures from real keys in moto stop before any Atlas write, each with its own reason.
#[tokio::test]
async fn preflight_failures_stall_without_touching_atlas() {
    let mut env = OperatorEnv::start(
        "pe-preflight",
        &seed(&[
            ("proj-pf1", &[]),
            ("proj-pf2", &[]),
            ("proj-pf3", &[]),
            ("proj-pf4", &[]),
        ]),
    )
    .await
    .unwrap();
    let pending = env.create_key(REGION).await.unwrap();
    env.kms
        .schedule_key_deletion()
        .key_id(pending.rsplit('/').next().unwrap())
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let disabled = env.create_key(REGION).await.unwrap();
    env.kms
        .disable_key()
        .key_id(disabled.rsplit('/').next().unwrap())
        .send()
        .await
        .unwrap();
    let asymmetric = env
        .kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Rsa2048)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let missing = format!("arn:aws:kms:{REGION}:{CUSTOMER_ACCOUNT}:key/00000000-0000-0000-0000-000000000000");
    let role_arn = format!(
        "arn:aws:iam::{CUSTOMER_ACCOUNT}:role/{}",
        common::unique_name("r")
    );
    env.start_controller().await.unwrap();
    let cases = [
        ("pending", "proj-pf1", &pending, "KeyPendingDeletion"),
        ("missing", "proj-pf2", &missing, "KeyNotFound"),
        ("disabled", "proj-pf3", &disabled, "KeyDisabled"),
        ("asymmetric", "proj-pf4", &asymmetric, "KeyNotSymmetric"),
    ];
    for (name, project, key, _) in cases {
        env.apply_project(
            name,
            json!({"projectName": project, "credentialsRef": {"name": "atlas-credentials"},
                   "awsKms": {"customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}}),
        )
        .await
        .unwrap();
    }
    for (name, _, _, expected) in cases {
        let pe = env
            .wait_project(name, WAIT, expected, |pe| {
                reason(pe, "Ready").as_deref() == Some(expected)
            })
            .await
            .unwrap();
        snapshots::capture("pe-preflight", &format!("{name}-{expected}"), &pe, Expect::Failed);
        let status = pe.status.unwrap();
        assert_eq!(
            condition(&status.conditions, "Stalled").unwrap().0,
            "True",
            "{name}"
        );
        assert_eq!(
            condition(&status.conditions, "KeyValid").unwrap().1,
            expected,
            "{name}"
        );
    }
    assert!(
        env.atlas_writes().is_empty(),
        "no Atlas write before the key passes: {:?}",
        env.atlas_writes()
    );
    env.finish().await;
}

/// Two ProjectEncryptions for one Atlas project: the second is refused and never writes.
#[tokio::test]
async fn a_second_project_encryption_for_the_same_project_is_refused() {
    let mut env = OperatorEnv::start("pe-duplicate", &seed(&[("proj-dup", &[])]))
        .await
        .unwrap();
    let key = env.create_key(REGION).await.unwrap();
    let role_arn = format!(
        "arn:aws:iam::{CUSTOMER_ACCOUNT}:role/{}",
        common::unique_name("r")
    );
    env.start_controller().await.unwrap();
    let spec = json!({"projectName": "proj-dup", "credentialsRef": {"name": "atlas-credentials"},
                      "awsKms": {"customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}});
    let created = env.apply_project("first", spec.clone()).await.unwrap();
    // Created, not yet seen by the operator: kstatus cannot tell this from done (see docs/gitops.md).
    snapshots::capture("pe-duplicate", "created-no-status", &created, Expect::NoStatus);
    env.wait_project("first", WAIT, "handling the project", |pe| {
        pe.status.as_ref().is_some_and(|s| s.project_id.is_some())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.apply_project("second", spec).await.unwrap();
    let second = env
        .wait_project("second", WAIT, "DuplicateProject", |pe| {
            reason(pe, "Ready").as_deref() == Some("DuplicateProject")
        })
        .await
        .unwrap();
    snapshots::capture("pe-duplicate", "second-DuplicateProject", &second, Expect::Failed);
    let second_status = second.status.unwrap();
    let message = &second_status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(message.contains("/first"), "names the owner: {message}");
    assert_eq!(
        env.atlas_calls("POST", "/cloudProviderAccess"),
        1,
        "only the first created a role"
    );
    env.finish().await;
}

/// Broken credentials stall with what to fix and never reach Atlas with a write.
#[tokio::test]
async fn bad_credentials_stall_with_what_to_fix() {
    let mut env = OperatorEnv::start("pe-creds", &seed(&[("proj-creds", &[])]))
        .await
        .unwrap();
    let key = env.create_key(REGION).await.unwrap();
    let role_arn = format!(
        "arn:aws:iam::{CUSTOMER_ACCOUNT}:role/{}",
        common::unique_name("r")
    );
    env.apply_secret("wrong-keys", &[("user", "a"), ("password", "TOPSECRET-PASSWORD")])
        .await
        .unwrap();
    env.apply_secret(
        "wrong-key",
        &[
            ("publicKey", common::operator::API_PUBLIC_KEY),
            ("privateKey", "TOPSECRET-WRONG"),
        ],
    )
    .await
    .unwrap();
    env.start_controller().await.unwrap();
    let cases = [
        ("no-secret", "does-not-exist", "CredentialsInvalid"),
        ("wrong-keys", "wrong-keys", "CredentialsInvalid"),
        ("wrong-key", "wrong-key", "CredentialsRejected"),
    ];
    for (name, secret, _) in cases {
        env.apply_project(
            name,
            json!({"projectName": "proj-creds", "credentialsRef": {"name": secret},
                   "awsKms": {"customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}}),
        )
        .await
        .unwrap();
    }
    for (name, _, expected) in cases {
        let pe = env
            .wait_project(name, WAIT, expected, |pe| {
                reason(pe, "Ready").as_deref() == Some(expected)
            })
            .await
            .unwrap();
        snapshots::capture("pe-creds", &format!("{name}-{expected}"), &pe, Expect::Failed);
        let text = serde_json::to_string(&pe.status).unwrap();
        assert!(!text.contains("TOPSECRET"), "no secret in status: {text}");
    }
    let events = serde_json::to_string(&env.event_reasons("wrong-key").await.unwrap()).unwrap();
    assert!(!events.contains("TOPSECRET"));
    assert!(env.atlas_writes().is_empty());
    env.finish().await;
}

/// A test ground with one Atlas project `project`, a KMS key and an Atlas role already authorized for it
/// (the controller not started, the call log cleared): the key, the project and the role.
async fn with_authorized_role(
    name: &str,
    project: &str,
) -> (
    OperatorEnv,
    String,
    atlas_encryption_operator::atlas::Group,
    atlas_encryption_operator::atlas::AwsIamRole,
) {
    let env = OperatorEnv::start(name, &seed(&[(project, &[])])).await.unwrap();
    let key = env.create_key(REGION).await.unwrap();
    let (atlas, creds) = env.atlas();
    let group = atlas.get_project_by_name(&creds, project).await.unwrap();
    let role = env.authorized_atlas_role(&group.id, &key).await.unwrap();
    env.sim().clear_calls();
    (env, key, group, role)
}

/// Applies ProjectEncryption `name` for the Atlas project `project` names (`projectName` or
/// `projectId`) with the key and the authorized `role` (by `atlasRoleId`), and waits until it is Ready.
async fn apply_with_role(
    env: &OperatorEnv,
    name: &str,
    mut project: Value,
    key: &str,
    role: &atlas_encryption_operator::atlas::AwsIamRole,
) -> atlas_encryption_operator::crd::ProjectEncryption {
    project["credentialsRef"] = json!({"name": "atlas-credentials"});
    project["awsKms"] = json!({"customerMasterKeyId": key, "region": REGION, "atlasRoleId": role.role_id});
    env.apply_project(name, project).await.unwrap();
    env.wait_project(name, WAIT, "Ready", |pe| ready(pe.status.as_ref()))
        .await
        .unwrap()
}

/// An Atlas role that is already authorized is adopted by `atlasRoleId`, with no create or authorize.
#[tokio::test]
async fn an_existing_authorized_role_is_adopted_without_re_authorizing() {
    let (mut env, key, _, role) = with_authorized_role("pe-adopt", "proj-adopt").await;
    env.start_controller().await.unwrap();
    let project = json!({"projectName": "proj-adopt"});
    let pe = apply_with_role(&env, "adopt", project, &key, &role).await;
    assert_eq!(pe.status.unwrap().role.unwrap().role_id, role.role_id);
    assert_eq!(
        env.atlas_calls("POST", "/cloudProviderAccess"),
        0,
        "no role created"
    );
    assert_eq!(
        env.atlas_calls("PATCH", "/cloudProviderAccess/{roleId}"),
        0,
        "not re-authorized"
    );
    assert_eq!(env.atlas_calls("PATCH", "/encryptionAtRest"), 1);
    env.finish().await;
}

/// A project named by `projectId` converges without looking its name up: the name only fills
/// `status.projectName`, so it waits for the first resync after Ready, where it costs no change-driven
/// work its budget (a wave of new projects spent one call in twenty on it).
#[tokio::test]
async fn a_project_named_by_id_converges_without_a_name_lookup_and_is_named_at_its_resync() {
    let (mut env, key, group, role) = with_authorized_role("pe-by-id", "proj-by-id").await;
    let resync = Duration::from_secs(3);
    env.start_controller_tuned(|_| {}, |c| c.resync_period = resync)
        .await
        .unwrap();
    let pe = apply_with_role(&env, "by-id", json!({"projectId": group.id}), &key, &role).await;
    let status = pe.status.unwrap();
    assert_eq!(status.project_id.as_deref(), Some(group.id.as_str()));
    assert_eq!(
        env.atlas_calls("GET", "/groups/{groupId}"),
        0,
        "no name lookup on the way to Ready: {:?}",
        env.all_calls()
    );
    let named = env
        .wait_project("by-id", WAIT, "named at its resync", |pe| {
            pe.status.as_ref().and_then(|s| s.project_name.as_deref()) == Some("proj-by-id")
        })
        .await
        .unwrap();
    assert!(ready(named.status.as_ref()), "still Ready once named");
    assert_eq!(env.atlas_calls("GET", "/groups/{groupId}"), 1, "one lookup");
    // Named once: later resyncs keep the name without asking again.
    tokio::time::sleep(resync * 2).await;
    assert_eq!(
        env.atlas_calls("GET", "/groups/{groupId}"),
        1,
        "the name is not looked up again: {:?}",
        env.all_calls()
    );
    env.finish().await;
}

/// A key older than `rotation.maxKeyAge` raises `KeyRotationDue` with an Event, and stays Ready. With the
/// preflight off KMS is not asked, so the age counts from when the operator first saw the key (backdated
/// here), and the condition says so.
#[tokio::test]
async fn an_old_key_raises_rotation_due() {
    let mut env = OperatorEnv::start("pe-rotation-due", &seed(&[("proj-due", &[])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    env.encrypt_project("due", "proj-due").await.unwrap();
    // As if the operator had recorded the key two hours ago, and the policy allows one hour.
    let mut pe = env.projects().get("due").await.unwrap();
    let mut status = pe.status.take().unwrap();
    let two_hours_ago =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(2);
    status.key.as_mut().unwrap().since = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(two_hours_ago);
    env.projects()
        .patch_status(
            "due",
            &kube::api::PatchParams::apply("atlas-encryption-operator").force(),
            &kube::api::Patch::Apply(json!({"apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": "ProjectEncryption", "status": status})),
        )
        .await
        .unwrap();
    env.projects()
        .patch(
            "due",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"spec": {"rotation": {"maxKeyAge": "1h"},
                                              "kmsPreflight": {"enabled": false}}})),
        )
        .await
        .unwrap();
    let due = env
        .wait_project("due", WAIT, "KeyRotationDue", |pe| {
            pe.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "KeyRotationDue"))
                .is_some_and(|(st, _)| st == "True")
        })
        .await
        .unwrap();
    snapshots::capture("pe-rotation-due", "ready-rotation-due", &due, Expect::Ready);
    let status = due.status.unwrap();
    assert!(
        ready(Some(&status)),
        "a due rotation warns but does not break encryption"
    );
    let key = status.key.unwrap();
    assert_eq!(
        key.age_source,
        Some(atlas_encryption_operator::crd::KeyAgeSource::FirstSeen)
    );
    assert_eq!(key.material_since, Some(key.since.clone()));
    let due_at = key.rotation_due_at.unwrap().0;
    assert!(due_at < k8s_openapi::jiff::Timestamp::now());
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "KeyRotationDue")
        .map(|c| c.message.as_str())
        .unwrap_or_default();
    assert!(message.contains("first saw"), "{message}");
    let events = env.wait_event("due", "KeyRotationDue", WAIT).await.unwrap();
    assert!(events.iter().any(|(r, _)| r == "KeyRotationDue"), "{events:?}");
    env.finish().await;
}

/// `enabled: false` waits for the clusters Atlas shows using the key (an unmanaged one is named and
/// never touched), then turns project encryption off.
#[tokio::test]
async fn disable_is_blocked_by_a_cluster_then_allowed() {
    let mut env = OperatorEnv::start("pe-disable", &seed(&[("proj-off", &["Data0:M30"])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    let Handshake { key, role_arn, .. } = env.encrypt_project("off", "proj-off").await.unwrap();
    let group = env
        .projects()
        .get("off")
        .await
        .unwrap()
        .status
        .unwrap()
        .project_id
        .unwrap();
    env.sim_patch_cluster(
        &group,
        "Data0",
        json!({"encryptionAtRestProvider": "AWS", "stateName": "IDLE"}),
    )
    .await
    .unwrap();
    env.sim().clear_calls();
    env.apply_project(
        "off",
        json!({"projectName": "proj-off", "credentialsRef": {"name": "atlas-credentials"},
               "awsKms": {"enabled": false, "customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}}),
    )
    .await
    .unwrap();
    let blocked = env
        .wait_project("off", WAIT, "blocked", |pe| {
            reason(pe, "Ready").as_deref() == Some("DisableBlockedByClusters")
        })
        .await
        .unwrap();
    snapshots::capture("pe-disable", "blocked-unmanaged", &blocked, Expect::Failed);
    let status = blocked.status.unwrap();
    assert_eq!(
        condition(&status.conditions, "Stalled").unwrap().0,
        "True",
        "unmanaged cluster: a person must act"
    );
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(message.contains("Data0"), "{message}");
    assert!(
        env.atlas_writes().is_empty(),
        "never disables while a cluster uses the key: {:?}",
        env.atlas_writes()
    );

    env.sim_patch_cluster(
        &group,
        "Data0",
        json!({"encryptionAtRestProvider": "NONE", "stateName": "IDLE"}),
    )
    .await
    .unwrap();
    env.projects()
        .patch("off", &Default::default(), &common::poke())
        .await
        .unwrap();
    let off = env
        .wait_project("off", WAIT, "disabled", |pe| {
            reason(pe, "Ready").as_deref() == Some("EncryptionDisabled")
        })
        .await
        .unwrap();
    snapshots::capture("pe-disable", "encryption-disabled", &off, Expect::Ready);
    assert!(ready(off.status.as_ref()));
    assert_eq!(off.status.unwrap().previous_keys[0].customer_master_key_id, key);
    let (atlas, creds) = env.atlas();
    assert!(
        !atlas
            .get_encryption_at_rest(&creds, &group)
            .await
            .unwrap()
            .aws_enabled()
    );
    assert_eq!(env.atlas_calls("PATCH", "/encryptionAtRest"), 1);
    assert_eq!(
        env.atlas_calls("PATCH", "/clusters/{clusterName}"),
        0,
        "the unmanaged cluster was never touched"
    );
    env.finish().await;
}

/// `Retain` lets go without calling Atlas; `Disable` turns encryption off before the object goes.
#[tokio::test]
async fn deletion_policies_retain_and_disable() {
    let mut env = OperatorEnv::start("pe-delete", &seed(&[("proj-keep", &[]), ("proj-drop", &[])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    env.encrypt_project("keep", "proj-keep").await.unwrap();
    env.encrypt_project("drop", "proj-drop").await.unwrap();
    // Retain owes Atlas nothing on deletion: no finalizer, so deleting needs nothing from the operator.
    let finalizers = |pe: &atlas_encryption_operator::crd::ProjectEncryption| {
        pe.metadata.finalizers.clone().unwrap_or_default()
    };
    let keep = env.projects().get("keep").await.unwrap();
    assert!(finalizers(&keep).is_empty(), "{:?}", finalizers(&keep));
    env.projects()
        .patch(
            "drop",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"spec": {"deletionPolicy": "Disable"}})),
        )
        .await
        .unwrap();
    // Switched to Disable: the finalizer comes with the next pass.
    env.wait_project("drop", WAIT, "the finalizer", |pe| {
        finalizers(pe) == ["encryption.atlasops.dev/cleanup"]
    })
    .await
    .unwrap();
    let (atlas, creds) = env.atlas();
    let keep_group = atlas.get_project_by_name(&creds, "proj-keep").await.unwrap().id;
    let drop_group = atlas.get_project_by_name(&creds, "proj-drop").await.unwrap().id;

    env.sim().clear_calls();
    env.projects().delete("keep", &Default::default()).await.unwrap();
    common::operator::wait_gone(&env.projects(), "keep", WAIT)
        .await
        .unwrap();
    assert!(
        env.projects().get_opt("keep").await.unwrap().is_none(),
        "Retain released the object"
    );
    assert!(env.atlas_writes().is_empty(), "Retain makes no Atlas write");
    assert!(
        atlas
            .get_encryption_at_rest(&creds, &keep_group)
            .await
            .unwrap()
            .aws_enabled(),
        "Retain keeps encryption on"
    );

    env.projects().delete("drop", &Default::default()).await.unwrap();
    common::operator::wait_gone(&env.projects(), "drop", WAIT)
        .await
        .unwrap();
    assert!(
        env.projects().get_opt("drop").await.unwrap().is_none(),
        "Disable released the object after disabling"
    );
    assert!(
        !atlas
            .get_encryption_at_rest(&creds, &drop_group)
            .await
            .unwrap()
            .aws_enabled(),
        "Disable turned it off"
    );
    env.finish().await;
}

/// A key changed in Atlas by hand is put back, with a `DriftCorrected` Event.
#[tokio::test]
async fn drift_in_atlas_is_corrected() {
    let mut env = OperatorEnv::start("pe-drift", &seed(&[("proj-drift", &[])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    let Handshake { key, role_name, .. } = env.encrypt_project("drift", "proj-drift").await.unwrap();
    let other = env.create_key(REGION).await.unwrap();
    env.allow_keys(&role_name, &[&key, &other]).await.unwrap();
    let (atlas, creds) = env.atlas();
    let group = atlas.get_project_by_name(&creds, "proj-drift").await.unwrap().id;
    let other_key = atlas_encryption_operator::aws::KeyRef::parse(&other).unwrap();
    atlas
        .update_encryption_at_rest(
            &creds,
            &group,
            &atlas_encryption_operator::atlas::AwsKmsPatch::rotate_key(&other_key),
        )
        .await
        .unwrap();
    env.projects()
        .patch("drift", &Default::default(), &common::poke())
        .await
        .unwrap();
    let events = env.wait_event("drift", "DriftCorrected", WAIT).await.unwrap();
    assert!(
        events.iter().any(|(r, _)| r == "DriftCorrected"),
        "no DriftCorrected event: {events:?}"
    );
    let ear = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
    assert_eq!(
        ear.aws_kms.unwrap().customer_master_key_id.as_deref(),
        Some(key.as_str()),
        "the spec's key is back"
    );
    let status = env.projects().get("drift").await.unwrap().status.unwrap();
    assert!(
        status.previous_keys.is_empty(),
        "drift is not a rotation: {:?}",
        status.previous_keys
    );
    env.finish().await;
}

/// The controller stops in the middle of the handshake and a new one takes over: no second role.
#[tokio::test]
async fn a_restart_during_the_handshake_creates_no_second_role() {
    let mut env = OperatorEnv::start("pe-restart", &seed(&[("proj-restart", &[])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    let Handshake { role_name, .. } = env.begin_handshake("restart", "proj-restart").await.unwrap();
    let waiting = env
        .wait_project("restart", WAIT, "awaiting trust", |pe| {
            reason(pe, "RoleAuthorized").as_deref() == Some("AwaitingTrustPolicy")
        })
        .await
        .unwrap();
    env.stop_controller().await;
    env.start_controller().await.unwrap();
    env.projects()
        .patch("restart", &Default::default(), &common::poke())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let role = waiting.status.unwrap().role.unwrap();
    env.trust_role(&role_name, &role).await.unwrap();
    let pe = env
        .wait_project("restart", WAIT, "Ready", |pe| ready(pe.status.as_ref()))
        .await
        .unwrap();
    assert_eq!(
        pe.status.unwrap().role.unwrap().role_id,
        role.role_id,
        "the same role throughout"
    );
    assert_eq!(
        env.atlas_calls("POST", "/cloudProviderAccess"),
        1,
        "exactly one role across the restart"
    );
    let (atlas, creds) = env.atlas();
    let group = atlas
        .get_project_by_name(&creds, "proj-restart")
        .await
        .unwrap()
        .id;
    assert_eq!(atlas.list_aws_roles(&creds, &group).await.unwrap().len(), 1);
    env.finish().await;
}

/// The credentials Secret is read when it is used: replacing its content (an Atlas API key rotated,
/// the old one revoked) takes effect at the next reconcile, with no restart and no write of the
/// operator's own to the Secret.
#[tokio::test]
async fn a_replaced_credentials_secret_takes_effect_without_a_restart() {
    let mut env = OperatorEnv::start("pe-rekey", &seed(&[("proj-rekey", &[])]))
        .await
        .unwrap();
    let (new_public, new_private) = ("rotated-public-key", "rotated-private-key-never-logged");
    let group = env.group_id("proj-rekey").await.unwrap();
    env.sim()
        .apply_seed(
            &atlas_sim::Seed::from_yaml_str(&format!(
                "apiKeys:\n  - {{publicKey: {new_public}, privateKey: {new_private}, projects: [proj-rekey]}}\n"
            ))
            .unwrap(),
        )
        .unwrap();
    env.start_controller().await.unwrap();
    let handshake = env.encrypt_project("payments", "proj-rekey").await.unwrap();
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = env.ns.api();
    let before = secrets.get("atlas-credentials").await.unwrap();

    // The key is rotated in Atlas: the new one is put in the Secret, the old one revoked.
    env.apply_secret(
        "atlas-credentials",
        &[("publicKey", new_public), ("privateKey", new_private)],
    )
    .await
    .unwrap();
    env.sim()
        .sim()
        .state
        .lock()
        .api_keys
        .remove(common::operator::API_PUBLIC_KEY);
    env.sim().clear_calls();

    // The next change goes through with the new key.
    let new_key = env
        .rotate_key("payments", "proj-rekey", &handshake)
        .await
        .unwrap();
    env.wait_project("payments", WAIT, "rotated with the new API key", |pe| {
        project_on_key(pe, &new_key)
    })
    .await
    .unwrap();
    let calls: Vec<_> = env
        .sim()
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with("/api/atlas/v2/groups/"))
        .collect();
    // Digest auth: a call without credentials gets the challenge (401, no principal) first.
    let authenticated: Vec<_> = calls.iter().filter(|c| c.principal.is_some()).collect();
    assert!(!authenticated.is_empty());
    assert!(
        authenticated.iter().all(|c| {
            c.principal.as_deref() == Some(&format!("apiKey:{new_public}")) && (200..300).contains(&c.status)
        }),
        "every call after the replacement used the new key, and Atlas took it: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.path.ends_with(&format!("{group}/encryptionAtRest")) && c.method == "PATCH")
    );

    // The operator never wrote the Secret: only the test's own apply changed it.
    let after = secrets.get("atlas-credentials").await.unwrap();
    let managers: Vec<_> = after
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, vec![common::FIELD_MANAGER.to_string()], "{managers:?}");
    assert_ne!(before.metadata.resource_version, after.metadata.resource_version);
    env.finish().await;
}

/// `searchNodes.enabled` is diffed and patched like the key: one PATCH of `/encryptionAtRest` each way,
/// Atlas then holds the value, the status shows it, a converged object causes no write; and a spec
/// without `searchNodes` leaves a value set outside the operator alone.
#[tokio::test]
async fn search_nodes_encryption_is_turned_on_and_off() {
    let mut env = OperatorEnv::start("pe-search", &seed(&[("proj-search", &[])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    let Handshake { key, role_arn, .. } = env.encrypt_project("search", "proj-search").await.unwrap();
    let ready_pe = env.projects().get("search").await.unwrap();
    assert_eq!(
        ready_pe.status.unwrap().search_nodes_encrypted,
        Some(false),
        "Atlas's value is shown when the spec leaves it alone"
    );
    let (atlas, creds) = env.atlas();
    let group = env.group_id("proj-search").await.unwrap();
    let spec = |search_nodes: Option<bool>| {
        let mut spec = json!({"projectName": "proj-search", "credentialsRef": {"name": "atlas-credentials"},
                              "awsKms": {"customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}});
        if let Some(enabled) = search_nodes {
            spec["searchNodes"] = json!({"enabled": enabled});
        }
        spec
    };
    let converged_on = |enabled: Option<bool>| {
        move |pe: &atlas_encryption_operator::crd::ProjectEncryption| {
            let status = pe.status.as_ref();
            ready(status)
                && status.and_then(|s| s.observed_generation) == pe.metadata.generation
                && (enabled.is_none() || status.and_then(|s| s.search_nodes_encrypted) == enabled)
        }
    };

    for enabled in [true, false] {
        env.sim().clear_calls();
        env.apply_project("search", spec(Some(enabled))).await.unwrap();
        env.wait_project(
            "search",
            WAIT,
            "search nodes as the spec says",
            converged_on(Some(enabled)),
        )
        .await
        .unwrap();
        let writes = env.atlas_writes();
        assert_eq!(
            writes.len(),
            1,
            "one write turns search nodes {enabled}: {writes:?}"
        );
        assert_eq!(writes[0].method, "PATCH");
        assert!(
            writes[0]
                .path
                .ends_with(&format!("/groups/{group}/encryptionAtRest")),
            "{writes:?}"
        );
        look_twice(&env, "search").await;
        assert!(
            env.atlas_writes().len() == 1,
            "converged: no further write: {:?}",
            env.atlas_writes()
        );
        let ear = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
        assert_eq!(ear.enabled_for_search_nodes, Some(enabled));
        assert_eq!(
            ear.aws_kms.and_then(|k| k.customer_master_key_id).as_deref(),
            Some(key.as_str()),
            "the key is untouched"
        );
    }

    // Without `searchNodes` the operator leaves Atlas's value as someone set it, and shows it.
    env.apply_project("search", spec(None)).await.unwrap();
    env.wait_project("search", WAIT, "the new generation", converged_on(None))
        .await
        .unwrap();
    let on = atlas_encryption_operator::atlas::EncryptionAtRestPatch {
        enabled_for_search_nodes: Some(true),
        ..Default::default()
    };
    atlas.patch_encryption_at_rest(&creds, &group, &on).await.unwrap();
    env.sim().clear_calls();
    look_twice(&env, "search").await;
    assert!(
        env.atlas_writes().is_empty(),
        "left alone: {:?}",
        env.atlas_writes()
    );
    env.wait_project("search", WAIT, "Atlas's value shown", converged_on(Some(true)))
        .await
        .unwrap();
    let ear = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
    assert_eq!(ear.enabled_for_search_nodes, Some(true));
    env.finish().await;
}

/// The operator reads Atlas's control-plane IP addresses once for all projects and puts the outbound
/// CIDRs of the key's region in status (atlas-sim's list for eu-west-2 has one).
#[tokio::test]
async fn control_plane_cidrs_of_the_key_region_are_in_status() {
    let mut env = OperatorEnv::start("pe-cidrs", &seed(&[("proj-cidrs", &[])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    env.encrypt_project("cidrs", "proj-cidrs").await.unwrap();
    let (atlas, _) = env.atlas();
    let list = atlas.control_plane_ip_addresses().await.unwrap();
    let region = atlas_encryption_operator::aws::Region::parse(REGION).unwrap();
    let expected = atlas_encryption_operator::control_plane::outbound_aws_cidrs(&list, region);
    assert!(!expected.is_empty(), "atlas-sim lists {REGION}: {list:?}");
    let pe = env
        .wait_project("cidrs", WAIT, "the control-plane CIDRs", |pe| {
            pe.status
                .as_ref()
                .is_some_and(|s| !s.control_plane_cidrs.is_empty())
        })
        .await
        .unwrap();
    assert_eq!(pe.status.unwrap().control_plane_cidrs, expected);
    let reads = env.atlas_calls("GET", "/unauth/controlPlaneIPAddresses");
    assert_eq!(reads, 2, "one read by the operator, one by this test");
    env.finish().await;
}

/// Atlas changes its control-plane CIDRs: the operator's next read wakes the projects whose key's
/// region changed, without a poke or a resync (300 s here), and each records the new CIDRs and raises
/// one Normal Event. A change in another region tells them nothing.
#[tokio::test]
async fn a_control_plane_cidr_change_in_the_key_region_is_told() {
    let mut env = OperatorEnv::start("pe-cidr-change", &seed(&[("proj-cidr-change", &[])]))
        .await
        .unwrap();
    env.start_controller_tuned(
        |_| {},
        |config| config.control_plane_refresh = Duration::from_millis(500),
    )
    .await
    .unwrap();
    env.encrypt_project("cidrs", "proj-cidr-change").await.unwrap();
    let before = env
        .wait_project("cidrs", WAIT, "the control-plane CIDRs", |pe| {
            pe.status
                .as_ref()
                .is_some_and(|s| !s.control_plane_cidrs.is_empty())
        })
        .await
        .unwrap()
        .status
        .unwrap()
        .control_plane_cidrs;
    let url = format!("{}/__sim/controlPlaneIPAddresses", env.sim().base_url());
    let http = reqwest::Client::new();
    let mut list: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let mut change = |region: &str, cidr: &str| {
        list["outbound"]["aws"][region] = json!([cidr]);
        list.clone()
    };
    // Another region first, then the key's: only the second is told.
    let elsewhere = change("ap-south-1", "198.51.100.77/32");
    let response = http.put(&url).json(&elsewhere).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let reads = env.atlas_calls("GET", "/unauth/controlPlaneIPAddresses");
    let deadline = tokio::time::Instant::now() + WAIT;
    while env.atlas_calls("GET", "/unauth/controlPlaneIPAddresses") < reads + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator reads the list again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let in_region = change(REGION, "203.0.113.9/32");
    let response = http.put(&url).json(&in_region).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());

    let changed = env
        .wait_project("cidrs", WAIT, "the new CIDRs", |pe| {
            pe.status
                .as_ref()
                .is_some_and(|s| s.control_plane_cidrs == ["203.0.113.9/32"])
        })
        .await
        .unwrap();
    assert!(ready(changed.status.as_ref()), "{:?}", changed.status);
    let events = env
        .wait_event("cidrs", "ControlPlaneCidrsChanged", WAIT)
        .await
        .unwrap();
    let told: Vec<&String> = events
        .iter()
        .filter(|(r, _)| r == "ControlPlaneCidrsChanged")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(told.len(), 1, "one Event, for the key's region only: {events:?}");
    assert!(told[0].contains("203.0.113.9/32"), "{told:?}");
    assert!(told[0].contains(&before[0]), "{told:?}");
    env.finish().await;
}
