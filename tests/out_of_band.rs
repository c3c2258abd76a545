//! Changes made behind the operator's back — in Atlas (a cluster's provider set to NONE, the project's
//! key replaced) and in AWS (the IAM role's trust in Atlas removed) — are noticed at the next resync,
//! without any Kubernetes change, and corrected or reported as the spec says. Runs the real binary
//! against the real kube-apiserver, atlas-sim and moto.
#![cfg(feature = "integration")]

mod common;

use std::time::Duration;

use atlas_encryption_operator::atlas::AwsKmsPatch;
use atlas_encryption_operator::aws::KeyRef;
use common::operator::{OperatorEnv, cluster_converged, condition, project_ready, seed, trust_policy};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);
/// Short, so drift is found within seconds; nothing in Kubernetes changes to wake the operator.
const RESYNC: &str = "8s";

fn project_reason(pe: &atlas_encryption_operator::crd::ProjectEncryption) -> Option<String> {
    pe.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Ready"))
        .map(|(_, reason)| reason)
}

#[tokio::test]
async fn out_of_band_changes_are_corrected_or_reported() {
    let env = OperatorEnv::start("oob", &seed(&[("proj-oob", &["Orders:M10"])]))
        .await
        .unwrap();
    let mut operator = env.start_operator_process("oob", RESYNC).await.unwrap();
    let handshake = env.encrypt_project("payments", "proj-oob").await.unwrap();
    env.apply_cluster(
        "orders",
        json!({"projectEncryptionRef": {"name": "payments"}, "clusterName": "Orders"}),
    )
    .await
    .unwrap();
    env.wait_cluster("orders", WAIT, "Ready", |ce| cluster_converged(ce, "AWS"))
        .await
        .unwrap();
    let group = env.group_id("proj-oob").await.unwrap();
    let (atlas, creds) = env.atlas();
    let role_arn = handshake.role_arn.clone();

    // 1. Someone turns the cluster's encryption off in Atlas: the spec wants it on, so it is put back.
    env.sim_patch_cluster(&group, "Orders", json!({"encryptionAtRestProvider": "NONE"}))
        .await
        .unwrap();
    env.sim().clear_calls();
    env.wait_cluster("orders", WAIT, "back on AWS", |ce| {
        cluster_converged(ce, "AWS")
            && ce
                .status
                .as_ref()
                .is_some_and(|s| s.provider.as_deref() == Some("AWS"))
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let cluster = atlas.get_cluster(&creds, &group, "Orders").await.unwrap();
        if cluster.encryption_at_rest_provider
            == Some(atlas_encryption_operator::atlas::EncryptionProvider::Aws)
            && cluster.state_name.as_deref() == Some("IDLE")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Atlas never showed AWS again: {cluster:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        env.atlas_calls("PATCH", "/clusters/{clusterName}"),
        1,
        "one PATCH puts the cluster back"
    );

    // 2. Someone assigns another key in Atlas: the spec's key is put back, with an Event saying so.
    let stray_key = env.create_key(common::operator::REGION).await.unwrap();
    env.allow_keys(&handshake.role_name, &[&handshake.key, &stray_key])
        .await
        .unwrap();
    atlas
        .update_encryption_at_rest(
            &creds,
            &group,
            &AwsKmsPatch::rotate_key(&KeyRef::parse(&stray_key).unwrap()),
        )
        .await
        .unwrap();
    let events = env.wait_event("payments", "DriftCorrected", WAIT).await.unwrap();
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "DriftCorrected" && m.contains(&handshake.key)),
        "{events:?}"
    );
    let ear = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
    assert_eq!(
        ear.aws_kms.unwrap().customer_master_key_id.as_deref(),
        Some(handshake.key.as_str())
    );

    // 3. The customer's IAM role stops trusting Atlas: Atlas reports the key invalid, the operator
    //    reports it with what to check, and writes nothing; trusted again, it is Ready again.
    env.sim().clear_calls();
    env.iam
        .update_assume_role_policy()
        .role_name(&handshake.role_name)
        .policy_document(trust_policy("arn:aws:iam::123456789012:root", "nobody").to_string())
        .send()
        .await
        .unwrap();
    let broken = env
        .wait_project("payments", WAIT, "KeyInvalid", |pe| {
            project_reason(pe).as_deref() == Some("KeyInvalid")
        })
        .await
        .unwrap();
    let status = broken.status.unwrap();
    let (stalled, _) = condition(&status.conditions, "Stalled").unwrap();
    assert_eq!(stalled, "True");
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(message.contains(&role_arn), "{message}");
    assert!(env.atlas_writes().is_empty(), "{:?}", env.atlas_writes());
    let role = status.role.unwrap();
    env.trust_role(&handshake.role_name, &role).await.unwrap();
    env.wait_project("payments", WAIT, "Ready once trusted again", project_ready)
        .await
        .unwrap();
    assert!(env.atlas_writes().is_empty(), "{:?}", env.atlas_writes());

    let exit = operator.terminate(Duration::from_secs(20)).await.unwrap();
    assert!(exit.success(), "{exit}");
    env.finish().await;
}
