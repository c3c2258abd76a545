//! Adopting what Atlas already has (issue #17), on the real parts: kube-apiserver, atlas-sim and moto.
//! Every test asserts Atlas's final state from atlas-sim and the exact writes from its call log.
#![cfg(feature = "integration")]

mod common;

use std::time::Duration;

use common::operator::{API_PRIVATE_KEY, API_PUBLIC_KEY, OperatorEnv, project_on_key};
use serde_json::json;

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
    let url = format!(
        "{}/__sim/projects/{group}/clusters/Shards0/snapshots",
        env.sim().base_url()
    );
    let response = reqwest::Client::new()
        .post(url)
        .json(&json!({"type": "shardedCluster"}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "snapshot: {}", response.status());

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
