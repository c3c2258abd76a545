//! Adopting what Atlas already has (issue #17), on the real parts: kube-apiserver, atlas-sim and moto.
//! Every test asserts Atlas's final state from atlas-sim and the exact writes from its call log.
#![cfg(feature = "integration")]

mod common;

use std::time::Duration;

use atlas_encryption_operator::atlas::{AwsIamRole, EncryptionAtRest};
use atlas_encryption_operator::crd::ProjectEncryption;
use common::operator::{
    API_PRIVATE_KEY, API_PUBLIC_KEY, CUSTOMER_ACCOUNT, OperatorEnv, REGION, accepted_writes, condition,
    project_on_key, project_ready, seed, switched_on_by_another_tool,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// One API key reaching `project`, which has one sharded cluster with backup on.
fn sharded_seed(project: &str) -> String {
    format!(
        "apiKeys:\n  - {{publicKey: {API_PUBLIC_KEY}, privateKey: {API_PRIVATE_KEY}, projects: [{project}]}}\n\
         projects:\n  - name: {project}\n    clusters:\n      - {{name: Shards0, instanceSize: M30, \
         providerName: AWS, regionName: EU_WEST_2, backupEnabled: true, clusterType: SHARDED}}\n"
    )
}

/// A sharded cluster's snapshots are listed apart from replica-set snapshots; a key they still need
/// is not safe to delete after a rotation.
#[tokio::test]
async fn a_sharded_clusters_snapshots_keep_the_old_key_unsafe() {
    let mut env = OperatorEnv::start("adopt-sharded", &sharded_seed("proj-sharded"))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    let handshake = env.encrypt_project("payments", "proj-sharded").await.unwrap();
    let group = env.group_id("proj-sharded").await.unwrap();
    env.sim_patch_cluster(
        &group,
        "Shards0",
        json!({"encryptionAtRestProvider": "AWS", "stateName": "IDLE"}),
    )
    .await
    .unwrap();
    env.take_snapshot(&group, "Shards0", json!({"type": "shardedCluster"}))
        .await
        .unwrap();

    env.sim().clear_calls();
    let new_key = env
        .rotate_key("payments", "proj-sharded", &handshake)
        .await
        .unwrap();
    let rotated = env
        .wait_project("payments", WAIT, "rotated", |pe| project_on_key(pe, &new_key))
        .await
        .unwrap();
    let status = rotated.status.unwrap();
    assert_eq!(status.previous_keys.len(), 1, "{:?}", status.previous_keys);
    let old = &status.previous_keys[0];
    assert_eq!(old.customer_master_key_id, handshake.key);
    assert_eq!(old.snapshots_using_key, 1, "the sharded snapshot counts");
    assert!(
        !old.safe_to_delete,
        "a key a sharded snapshot needs is never safe to delete"
    );
    assert!(
        env.atlas_calls("GET", "/backup/snapshots/shardedClusters") >= 1,
        "the sharded snapshots were read"
    );
    let writes = env.atlas_writes();
    assert_eq!(writes.len(), 1, "one PATCH for the rotation: {writes:?}");
    assert_eq!(writes[0].method, "PATCH");
    env.finish().await;
}

fn reason(pe: &ProjectEncryption, type_: &str) -> Option<String> {
    pe.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, type_))
        .map(|(_, r)| r)
}

/// The ProjectEncryption's spec for `key` through the IAM role `role_arn`.
fn spec(project: &str, key: &str, role_arn: &str, acknowledge: bool) -> Value {
    json!({"projectName": project, "credentialsRef": {"name": "atlas-credentials"},
           "awsKms": {"customerMasterKeyId": key, "region": REGION, "roleArn": role_arn,
                      "acknowledgeIrreversibleSwitchToRole": acknowledge}})
}

/// Atlas's encryption settings and role list, as atlas-sim holds them.
async fn atlas_state(env: &OperatorEnv, group: &str) -> (EncryptionAtRest, Vec<AwsIamRole>) {
    let (atlas, creds) = env.atlas();
    let ear = atlas.get_encryption_at_rest(&creds, group).await.unwrap();
    let roles = atlas.list_aws_roles(&creds, group).await.unwrap();
    (ear, roles)
}

/// The roles whose feature usages say Encryption at Rest uses them.
fn roles_in_force(roles: &[AwsIamRole]) -> Vec<String> {
    roles
        .iter()
        .filter(|r| r.used_for_encryption_at_rest())
        .map(|r| r.role_id.clone())
        .collect()
}

/// The `roleId` of the last change atlas-sim recorded for the project's key.
async fn last_key_change(env: &OperatorEnv, group: &str) -> Value {
    let url = format!("{}/__sim/projects/{group}/keyHistory", env.sim().base_url());
    let history: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
    history.last().cloned().expect("a key change recorded")
}

/// An IAM role in moto that may use `key` and trusts nobody in Atlas yet, as a team prepares it.
async fn new_iam_role(env: &OperatorEnv, key: &str) -> (String, String) {
    let name = common::unique_name("atlas-kms");
    let arn = env
        .create_role(
            &name,
            &format!("arn:aws:iam::{CUSTOMER_ACCOUNT}:root"),
            "nobody",
            key,
        )
        .await
        .unwrap();
    (name, arn)
}

/// Encryption at Rest switched on by another tool with its own role; the ProjectEncryption names a new
/// IAM role. Once its Atlas role is trusted, one PATCH moves the configuration to it, and Atlas's
/// `featureUsages` move with it.
#[tokio::test]
async fn another_tools_role_is_replaced_with_one_patch_and_feature_usages_move() {
    let (env, group, key, terraform) =
        switched_on_by_another_tool("adopt-foreign-role", "proj-tf", &[]).await;
    let (_, before) = atlas_state(&env, &group).await;
    assert_eq!(roles_in_force(&before), vec![terraform.role_id.clone()]);

    let (role_name, role_arn) = new_iam_role(&env, &key).await;
    env.sim().clear_calls();
    env.apply_project("payments", spec("proj-tf", &key, &role_arn, false))
        .await
        .unwrap();
    let ours = env.wait_atlas_role("payments").await.unwrap();
    env.trust_role(&role_name, &ours).await.unwrap();
    let ready = env
        .wait_project("payments", WAIT, "Ready", project_ready)
        .await
        .unwrap();

    let calls = env.sim().calls();
    assert_eq!(
        accepted_writes(&calls, "PATCH", "/encryptionAtRest"),
        1,
        "one key PATCH"
    );
    assert_eq!(
        accepted_writes(&calls, "POST", "/cloudProviderAccess"),
        1,
        "our role created"
    );
    let (ear, after) = atlas_state(&env, &group).await;
    let aws = ear.aws_kms.unwrap();
    assert!(aws.is_enabled() && aws.is_valid(), "{aws:?}");
    assert_eq!(
        roles_in_force(&after),
        vec![ours.role_id.clone()],
        "featureUsages moved"
    );
    assert_eq!(last_key_change(&env, &group).await["roleId"], json!(ours.role_id));
    let status = ready.status.unwrap();
    assert_eq!(
        status.role.unwrap().role_id,
        ours.role_id,
        "status names the role in force"
    );
    env.finish().await;
}

/// `roleId` is write-only: only the role list tells which role Atlas uses. A converged project's
/// resyncs do not read it (a read per project per resync that nothing else needs); a fresh look
/// (`kubectl annotate`) does, and one PATCH puts our role back after another tool switched it.
#[tokio::test]
async fn a_role_switched_outside_is_put_back_on_a_fresh_look_and_resyncs_do_not_list_roles() {
    let (mut env, group, key, terraform) = switched_on_by_another_tool("role-drift", "proj-drift", &[]).await;
    env.stop_controller().await;
    env.start_controller_tuned(|_| {}, |c| c.resync_period = Duration::from_secs(1))
        .await
        .unwrap();
    let (role_name, role_arn) = new_iam_role(&env, &key).await;
    env.apply_project("payments", spec("proj-drift", &key, &role_arn, false))
        .await
        .unwrap();
    let ours = env.wait_atlas_role("payments").await.unwrap();
    env.trust_role(&role_name, &ours).await.unwrap();
    env.wait_project("payments", WAIT, "Ready", project_ready)
        .await
        .unwrap();
    let (_, roles) = atlas_state(&env, &group).await;
    assert_eq!(roles_in_force(&roles), vec![ours.role_id.clone()]);

    env.sim().clear_calls();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        env.atlas_calls("GET", "/encryptionAtRest") >= 2,
        "the project was resynced: {:?}",
        env.all_calls()
    );
    assert_eq!(
        env.atlas_calls("GET", "/cloudProviderAccess"),
        0,
        "resyncs leave the role list alone"
    );

    // Another tool switches the key back to its own role; a person asks for a look.
    let (atlas, creds) = env.atlas();
    let switch = atlas_encryption_operator::atlas::AwsKmsPatch {
        role_id: Some(terraform.role_id.clone()),
        ..Default::default()
    };
    atlas
        .update_encryption_at_rest(&creds, &group, &switch)
        .await
        .unwrap();
    env.sim().clear_calls();
    env.projects()
        .patch("payments", &kube::api::PatchParams::default(), &common::poke())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, roles) = atlas_state(&env, &group).await;
        if roles_in_force(&roles) == vec![ours.role_id.clone()] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "our role never came back: {roles:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls = env.sim().calls();
    assert_eq!(
        accepted_writes(&calls, "PATCH", "/encryptionAtRest"),
        1,
        "{calls:?}"
    );
    assert_eq!(last_key_change(&env, &group).await["roleId"], json!(ours.role_id));
    env.finish().await;
}

/// The role and key the spec names are already in force: adopting costs no write and ends Ready.
#[tokio::test]
async fn the_role_and_key_already_in_force_cost_no_write() {
    let (env, group, key, terraform) = switched_on_by_another_tool("adopt-in-force", "proj-same", &[]).await;

    env.sim().clear_calls();
    let role_arn = terraform.iam_assumed_role_arn.clone().unwrap();
    env.apply_project("payments", spec("proj-same", &key, &role_arn, false))
        .await
        .unwrap();
    let ready = env
        .wait_project("payments", WAIT, "Ready", |pe| project_on_key(pe, &key))
        .await
        .unwrap();
    assert!(
        env.atlas_writes().is_empty(),
        "no write: {:?}",
        env.atlas_writes()
    );
    let (_, roles) = atlas_state(&env, &group).await;
    assert_eq!(roles_in_force(&roles), vec![terraform.role_id.clone()]);
    assert_eq!(ready.status.unwrap().role.unwrap().role_id, terraform.role_id);
    env.finish().await;
}

/// Legacy access keys: without the acknowledgement, Stalled and no write; with it, the role is made and
/// trusted, and one PATCH moves the project from the access keys to the role.
#[tokio::test]
async fn legacy_access_keys_move_to_the_role_only_when_acknowledged() {
    common::testenv();
    let kms = aws_sdk_kms::Client::new(&common::aws_sdk_config(REGION).await);
    let key_meta = kms.create_key().send().await.unwrap();
    let key = key_meta.key_metadata().unwrap().arn().unwrap().to_string();
    let legacy = format!(
        "{}    encryptionAtRest:\n      awsKms: {{customerMasterKeyID: \"{key}\", region: EU_WEST_2, \
         accessKeyID: AKIALEGACYEXAMPLE01, secretAccessKey: legacy-secret-never-logged}}\n",
        seed(&[("proj-legacy", &[])])
    );
    let mut env = OperatorEnv::start("adopt-legacy", &legacy).await.unwrap();
    env.start_controller().await.unwrap();
    let group = env.group_id("proj-legacy").await.unwrap();
    let (role_name, role_arn) = new_iam_role(&env, &key).await;

    env.apply_project("payments", spec("proj-legacy", &key, &role_arn, false))
        .await
        .unwrap();
    let stalled = env
        .wait_project("payments", WAIT, "RoleSwitchNotAcknowledged", |pe| {
            reason(pe, "Stalled").as_deref() == Some("RoleSwitchNotAcknowledged")
        })
        .await
        .unwrap();
    assert!(
        env.atlas_writes().is_empty(),
        "no write: {:?}",
        env.atlas_writes()
    );
    assert!(stalled.status.unwrap().role.is_none(), "no role in use to show");
    let (ear, roles) = atlas_state(&env, &group).await;
    assert!(
        ear.aws_kms.unwrap().access_key_id.is_some(),
        "still on access keys"
    );
    assert!(roles.is_empty(), "no role created");

    env.apply_project("payments", spec("proj-legacy", &key, &role_arn, true))
        .await
        .unwrap();
    let ours = env.wait_atlas_role("payments").await.unwrap();
    env.trust_role(&role_name, &ours).await.unwrap();
    let ready = env
        .wait_project("payments", WAIT, "Ready", |pe| project_on_key(pe, &key))
        .await
        .unwrap();
    let calls = env.sim().calls();
    assert_eq!(
        accepted_writes(&calls, "PATCH", "/encryptionAtRest"),
        1,
        "one switch PATCH"
    );
    let (ear, roles) = atlas_state(&env, &group).await;
    let aws = ear.aws_kms.unwrap();
    assert!(aws.access_key_id.is_none(), "moved off the access keys: {aws:?}");
    assert!(aws.is_enabled() && aws.is_valid(), "{aws:?}");
    assert_eq!(roles_in_force(&roles), vec![ours.role_id.clone()]);
    assert_eq!(last_key_change(&env, &group).await["roleId"], json!(ours.role_id));
    assert_eq!(ready.status.unwrap().role.unwrap().role_id, ours.role_id);
    env.finish().await;
}

/// A missing KMS preflight Secret is answered with what that Secret needs (AWS keys), not with the
/// Atlas API keys the other Secret holds; and nothing is written to Atlas.
#[tokio::test]
async fn a_missing_preflight_secret_names_the_aws_keys_it_needs() {
    let mut env = OperatorEnv::start("adopt-preflight-secret", &seed(&[("proj-pf", &[])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    let key = env.create_key(REGION).await.unwrap();
    let (_, role_arn) = new_iam_role(&env, &key).await;
    let mut wanted = spec("proj-pf", &key, &role_arn, false);
    wanted["kmsPreflight"] = json!({"enabled": true, "credentialsRef": {"name": "kms-preflight"}});
    env.apply_project("payments", wanted).await.unwrap();
    let stalled = env
        .wait_project("payments", WAIT, "CredentialsInvalid", |pe| {
            reason(pe, "Stalled").as_deref() == Some("CredentialsInvalid")
        })
        .await
        .unwrap();
    let message = stalled
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap()
        .message;
    assert!(
        message.contains("kms-preflight") && message.contains("accessKeyId and secretAccessKey"),
        "{message}"
    );
    assert!(!message.contains("publicKey"), "not the Atlas keys: {message}");
    assert!(env.atlas_writes().is_empty(), "{:?}", env.atlas_writes());
    env.finish().await;
}

/// `projectName` is resolved on every pass: a project deleted and recreated under the same name is
/// followed to its new id.
#[tokio::test]
async fn project_name_follows_a_project_recreated_under_the_same_name() {
    let mut env = OperatorEnv::start("adopt-follow-name", &seed(&[("proj-follow", &[])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    env.encrypt_project("payments", "proj-follow").await.unwrap();
    let old = env.group_id("proj-follow").await.unwrap();
    let ready = env.projects().get("payments").await.unwrap();
    assert_eq!(ready.status.unwrap().project_id.as_deref(), Some(old.as_str()));

    env.sim().clear_calls();
    let base = env.sim().base_url();
    let http = reqwest::Client::new();
    let deleted = http
        .delete(format!("{base}/__sim/projects/{old}"))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let added = http
        .post(format!("{base}/__sim/projects"))
        .json(&json!({"name": "proj-follow"}))
        .send()
        .await
        .unwrap();
    assert!(added.status().is_success(), "{}", added.status());
    let new = env.group_id("proj-follow").await.unwrap();
    assert_ne!(new, old);

    // A person's nudge (any annotation) makes the operator look before the next resync.
    env.projects()
        .patch("payments", &kube::api::PatchParams::default(), &common::poke())
        .await
        .unwrap();
    let followed = env
        .wait_project("payments", WAIT, "the new project id", |pe| {
            pe.status.as_ref().and_then(|s| s.project_id.as_deref()) == Some(new.as_str())
        })
        .await
        .unwrap();
    assert_eq!(
        followed.status.unwrap().project_name.as_deref(),
        Some("proj-follow")
    );
    let calls = env.sim().calls();
    assert!(
        calls.iter().any(|c| c.method != "GET" && c.path.contains(&new)),
        "the operator now works on the new project"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.method != "GET" && c.path.contains(&old) && c.status < 300 && c.status >= 200),
        "no write reached the deleted project"
    );
    env.finish().await;
}

/// A pending role someone else left in the project (unauthorized, unused) is not the operator's: with
/// no intent of its own in status it is never adopted nor written to, and the operator creates its own.
#[tokio::test]
async fn a_foreign_pending_role_is_left_alone() {
    let mut env = OperatorEnv::start("adopt-foreign", &seed(&[("proj-foreign", &[])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    let group = env.group_id("proj-foreign").await.unwrap();
    let (atlas, creds) = env.atlas();
    let foreign = atlas.create_aws_role(&creds, &group).await.unwrap();
    env.sim().clear_calls();

    let handshake = env.begin_handshake("foreign", "proj-foreign").await.unwrap();
    let own = env.wait_atlas_role("foreign").await.unwrap();
    assert_ne!(own.role_id, foreign.role_id, "the foreign role is not taken");
    env.trust_role(&handshake.role_name, &own).await.unwrap();
    let ready = env
        .wait_project("foreign", WAIT, "Ready", project_ready)
        .await
        .unwrap();
    let status = ready.status.unwrap();
    assert_eq!(status.role.unwrap().role_id, own.role_id);
    assert!(
        status.role_creation_requested_at.is_some(),
        "the intent was written before the creation"
    );
    assert_eq!(
        env.atlas_calls("POST", "/cloudProviderAccess"),
        1,
        "one role of its own"
    );
    let touched: Vec<_> = env
        .atlas_writes()
        .into_iter()
        .filter(|c| c.path.contains(&foreign.role_id))
        .collect();
    assert!(touched.is_empty(), "no write to the foreign role: {touched:?}");
    let (_, roles) = atlas_state(&env, &group).await;
    let left = roles.iter().find(|r| r.role_id == foreign.role_id).unwrap();
    assert!(
        !left.is_authorized() && left.feature_usages.is_empty(),
        "{left:?}"
    );
    env.finish().await;
}
