//! The kube-apiserver restarted under a running operator (`scripts/testenv.sh restart-apiserver`): every
//! watch and request breaks for a few seconds, then the same server comes back. The operator process
//! survives, its watches resume, and changes made right after the restart are not missed.
//!
//! A test binary of its own: the restart breaks every client of the shared control plane, and cargo
//! runs test binaries one after another, so no other test sees it.
#![cfg(feature = "integration")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::operator::{OperatorEnv, cluster_converged, project_on_key, seed};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

fn restart_apiserver(down_for: Duration) {
    let env = common::testenv();
    let status = Command::new(common::repo_root().join("scripts/testenv.sh"))
        .env("TESTENV_DIR", &env.dir)
        .args(["restart-apiserver", &down_for.as_secs().to_string()])
        .status()
        .expect("scripts/testenv.sh runs");
    assert!(status.success(), "restart-apiserver: {status}");
}

#[tokio::test]
async fn watches_resume_after_an_apiserver_restart_and_miss_nothing() {
    let env = OperatorEnv::start(
        "api-restart",
        &seed(&[("proj-restart", &["Orders:M10", "Ledger:M10"])]),
    )
    .await
    .unwrap();
    let mut operator = env.start_operator_process("api-restart", "10m").await.unwrap();
    let handshake = env.encrypt_project("payments", "proj-restart").await.unwrap();
    env.apply_cluster(
        "orders",
        json!({"projectEncryptionRef": {"name": "payments"}, "clusterName": "Orders"}),
    )
    .await
    .unwrap();
    env.wait_cluster("orders", WAIT, "Ready", |ce| cluster_converged(ce, "AWS"))
        .await
        .unwrap();

    let outage = Instant::now();
    restart_apiserver(Duration::from_secs(5));
    let outage = outage.elapsed();
    operator.check_running().unwrap();
    // Every request the operator's Kubernetes client could not complete during the outage. A watch
    // retried without backoff re-lists at once after each failure: thousands of attempts in seconds.
    let failed_requests = operator
        .log_json()
        .iter()
        .filter(|line| line["target"] == "kube_client::client::builder" && line["level"] == "ERROR")
        .count();
    eprintln!("failed Kubernetes requests during the outage: {failed_requests}");
    assert!(
        failed_requests <= 60,
        "{failed_requests} failed requests in a {outage:?} outage: a watch is retrying without backoff"
    );

    // Changes made the moment the server is back, before the operator's watches have reconnected (the
    // resync period is far away, so only a resumed watch can see them): a rotation and a new cluster.
    let new_key = env
        .rotate_key("payments", "proj-restart", &handshake)
        .await
        .unwrap();
    env.apply_cluster(
        "ledger",
        json!({"projectEncryptionRef": {"name": "payments"}, "clusterName": "Ledger"}),
    )
    .await
    .unwrap();
    let applied = Instant::now();
    env.wait_project("payments", WAIT, "rotated after the restart", |pe| {
        project_on_key(pe, &new_key)
    })
    .await
    .unwrap();
    env.wait_cluster("ledger", WAIT, "Ready after the restart", |ce| {
        cluster_converged(ce, "AWS")
    })
    .await
    .unwrap();
    let caught_up = applied.elapsed();
    operator.check_running().unwrap();
    eprintln!("apiserver outage {outage:?}; changes after it converged in {caught_up:?}");
    let status = operator.terminate(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "{status}");
    env.finish().await;
}
