//! ProjectEncryption on the real parts: kube-apiserver, atlas-sim (checking trust, permissions and key
//! state in moto, as Atlas checks them in AWS) and moto. Every test asserts the Atlas calls it caused.
#![cfg(feature = "integration")]

mod common;

use std::time::Duration;

use common::operator::{CUSTOMER_ACCOUNT, OperatorEnv, REGION, condition, seed};
use serde_json::json;

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
    let key = env.create_key(REGION).await.unwrap();
    let role_name = common::unique_name("atlas-kms");
    // The IAM role exists but does not trust Atlas yet: the handshake must wait, not fail.
    let role_arn = env
        .create_role(
            &role_name,
            &format!("arn:aws:iam::{CUSTOMER_ACCOUNT}:root"),
            "nobody",
            &key,
        )
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    env.apply_project(
        "payments",
        json!({"projectName": "proj-fresh", "credentialsRef": {"name": "atlas-credentials"},
               "awsKms": {"customerMasterKeyId": key, "region": REGION, "roleArn": role_arn}}),
    )
    .await
    .unwrap();

    let waiting = env
        .wait_project("payments", WAIT, "awaiting the trust policy", |pe| {
            reason(pe, "RoleAuthorized").as_deref() == Some("AwaitingTrustPolicy")
        })
        .await
        .unwrap();
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
    let events = env.event_reasons("payments").await.unwrap();
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
        env.atlas_calls("PATCH", "/encryptionAtRest"),
        1,
        "the key assigned once"
    );

    // Steady state: a reconcile of the converged object reads and writes nothing in Atlas or status.
    env.sim().clear_calls();
    let rv = encrypted.metadata.resource_version.clone();
    env.projects()
        .patch(
            "payments",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
        )
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

    // Rotation: a new key in the spec is applied once, the old key is kept in the history.
    let new_key = env.create_key(REGION).await.unwrap();
    env.iam
        .put_role_policy()
        .role_name(&role_name)
        .policy_name("atlas-kms")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": [key, new_key]}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    env.sim().clear_calls();
    env.apply_project(
        "payments",
        json!({"projectName": "proj-fresh", "credentialsRef": {"name": "atlas-credentials"},
               "awsKms": {"customerMasterKeyId": new_key, "region": REGION, "roleArn": role_arn}}),
    )
    .await
    .unwrap();
    let rotated = env
        .wait_project("payments", WAIT, "rotated and Ready", |pe| {
            ready(pe.status.as_ref())
                && pe
                    .status
                    .as_ref()
                    .unwrap()
                    .key
                    .as_ref()
                    .is_some_and(|k| k.customer_master_key_id == new_key)
                && pe.status.as_ref().unwrap().observed_generation == pe.metadata.generation
        })
        .await
        .unwrap();
    let status = rotated.status.unwrap();
    assert_eq!(status.previous_keys.len(), 1);
    assert_eq!(status.previous_keys[0].customer_master_key_id, key);
    let patches: Vec<_> = env.atlas_writes();
    assert_eq!(patches.len(), 1, "one PATCH for a rotation: {patches:?}");
    let events = env.event_reasons("payments").await.unwrap();
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
        .patch(
            "dk",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"poke": "1"}}})),
        )
        .await
        .unwrap();
    let invalid = env
        .wait_project("dk", WAIT, "KeyInvalid", |pe| {
            reason(pe, "KeyValid").as_deref() == Some("KeyInvalid")
        })
        .await
        .unwrap();
    let status = invalid.status.unwrap();
    assert_eq!(
        condition(&status.conditions, "Degraded").unwrap(),
        ("True".into(), "KeyInvalid".into())
    );
    assert_eq!(condition(&status.conditions, "Stalled").unwrap().0, "True");
    let events = env.event_reasons("dk").await.unwrap();
    assert!(events.iter().any(|(r, _)| r == "KeyInvalid"), "{events:?}");
    env.finish().await;
}

/// Preflight failures from real keys in moto stop before any Atlas write, each with its own reason.
#[tokio::test]
async fn preflight_failures_stall_without_touching_atlas() {
    let mut env = OperatorEnv::start(
        "pe-preflight",
        &seed(&[("proj-pf1", &[]), ("proj-pf2", &[]), ("proj-pf3", &[])]),
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
    env.apply_project("first", spec.clone()).await.unwrap();
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
        let text = serde_json::to_string(&pe.status).unwrap();
        assert!(!text.contains("TOPSECRET"), "no secret in status: {text}");
    }
    let events = serde_json::to_string(&env.event_reasons("wrong-key").await.unwrap()).unwrap();
    assert!(!events.contains("TOPSECRET"));
    assert!(env.atlas_writes().is_empty());
    env.finish().await;
}
