//! Atlas misbehaving in the middle of the whole flow — bursts of 5xx, 429 with Retry-After, answers
//! slower than the client waits, dropped connections, the service going away and coming back from its
//! saved state — and the operator still reaching the right end state with a bounded number of calls and
//! no duplicate Atlas object. Runs the controller against atlas-sim, moto and the real kube-apiserver.
#![cfg(feature = "integration")]

mod common;

use std::time::Duration;

use atlas_sim::CallRecord;
use common::operator::{OperatorEnv, accepted_writes, cluster_converged, project_ready, seed};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);
/// Shorter than the slow answers injected below, so they time out on the operator's side.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

fn atlas_only(calls: Vec<CallRecord>) -> Vec<CallRecord> {
    calls
        .into_iter()
        .filter(|c| c.path.starts_with("/api/atlas/"))
        .collect()
}

/// Every kind of fault at once, each on the step where it hurts most, through the project handshake,
/// the key assignment and two cluster updates.
#[tokio::test]
async fn atlas_faults_through_the_whole_flow_converge_without_duplicates() {
    let mut env = OperatorEnv::start("faults", &seed(&[("proj-faults", &["Orders:M10", "Ledger:M30"])]))
        .await
        .unwrap();
    let faults = [
        // An outage as a burst of 5xx on every read: the client retries reads itself.
        json!({"method": "GET", "path": "/api/atlas/v2/groups/**", "kind": "status", "status": 503, "count": 4}),
        // A write answered 500: not retried blindly by the client, the reconcile tries again.
        json!({"method": "POST", "path": "/api/atlas/v2/groups/*/cloudProviderAccess", "kind": "status", "status": 500, "count": 1}),
        // Then the role is created, but the answer comes after the client gave up: the operator never sees
        // the new roleId and must find that role rather than create a second one.
        json!({"method": "POST", "path": "/api/atlas/v2/groups/*/cloudProviderAccess", "kind": "latency", "ms": 2500, "after": 1, "count": 1}),
        // The authorization's connection is dropped without an answer.
        json!({"method": "PATCH", "path": "/api/atlas/v2/groups/*/cloudProviderAccess/*", "kind": "drop", "count": 1}),
        // Rate limited with Retry-After on the key assignment.
        json!({"method": "PATCH", "path": "/api/atlas/v2/groups/*/encryptionAtRest", "kind": "rateLimit", "retryAfter": 1, "count": 2}),
        // One cluster update is applied by Atlas but answered too late.
        json!({"method": "PATCH", "path": "/api/atlas/v2/groups/*/clusters/Orders", "kind": "latency", "ms": 2500, "count": 1}),
        // The other cluster's polls run into 502s and a dropped connection.
        json!({"method": "GET", "path": "/api/atlas/v2/groups/*/clusters/Ledger", "kind": "status", "status": 502, "count": 3}),
        json!({"method": "GET", "path": "/api/atlas/v2/groups/*/clusters/Ledger", "kind": "drop", "count": 1}),
    ];
    for fault in &faults {
        env.inject_fault(fault.clone()).unwrap();
    }
    env.start_controller_with(|atlas| {
        atlas.timeout = CLIENT_TIMEOUT;
        atlas.backoff_base = Duration::from_millis(100);
        atlas.backoff_cap = Duration::from_secs(1);
    })
    .await
    .unwrap();

    let started = std::time::Instant::now();
    env.encrypt_project("payments", "proj-faults").await.unwrap();
    for (object, cluster) in [("orders", "Orders"), ("ledger", "Ledger")] {
        env.apply_cluster(
            object,
            json!({"projectEncryptionRef": {"name": "payments"}, "clusterName": cluster}),
        )
        .await
        .unwrap();
    }
    for object in ["orders", "ledger"] {
        env.wait_cluster(object, WAIT, "Ready on AWS", |ce| cluster_converged(ce, "AWS"))
            .await
            .unwrap();
    }
    let took = started.elapsed();

    // Every fault was met (the simulator drops a rule once its count is spent, and logs each call it
    // faulted): the flow above really went through each of them.
    let calls = atlas_only(env.all_calls());
    let met = |method: &str, path_end: &str, what: &dyn Fn(&CallRecord) -> bool| {
        calls
            .iter()
            .filter(|c| c.method == method && c.path.ends_with(path_end) && what(c))
            .count()
    };
    let slow = |c: &CallRecord| c.duration_ms >= 2500.0;
    let status = |code: u16| move |c: &CallRecord| c.status == code;
    let injected = [
        (
            "GET 503",
            calls
                .iter()
                .filter(|c| c.method == "GET" && c.status == 503)
                .count(),
            4,
        ),
        (
            "POST role 500",
            met("POST", "/cloudProviderAccess", &status(500)),
            1,
        ),
        ("POST role slow", met("POST", "/cloudProviderAccess", &slow), 1),
        (
            "authorize dropped",
            calls
                .iter()
                .filter(|c| c.method == "PATCH" && c.status == 0)
                .count(),
            1,
        ),
        (
            "key PATCH 429",
            met("PATCH", "/encryptionAtRest", &status(429)),
            2,
        ),
        ("Orders PATCH slow", met("PATCH", "/clusters/Orders", &slow), 1),
        ("Ledger GET 502", met("GET", "/clusters/Ledger", &status(502)), 3),
        (
            "Ledger GET dropped",
            met("GET", "/clusters/Ledger", &status(0)),
            1,
        ),
    ];
    for (what, seen, expected) in injected {
        assert_eq!(seen, expected, "{what}");
    }
    assert!(
        env.sim().sim().faults.lock().rules.is_empty(),
        "every fault rule spent"
    );

    // No duplicate Atlas object: one role in the project, authorized for the customer's IAM role.
    let group = env.group_id("proj-faults").await.unwrap();
    let (atlas, creds) = env.atlas();
    let roles = atlas.list_aws_roles(&creds, &group).await.unwrap();
    assert_eq!(roles.len(), 1, "one Atlas role: {roles:?}");
    assert!(roles[0].is_authorized(), "{roles:?}");
    let ear = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
    assert!(
        ear.aws_enabled() && ear.aws_kms.as_ref().unwrap().valid == Some(true),
        "{ear:?}"
    );

    // Bounded: each write Atlas applied was applied once, and the whole run stays within a small
    // multiple of the 20 calls a fault-free run needs.
    assert_eq!(accepted_writes(&calls, "POST", "/cloudProviderAccess"), 1);
    for cluster in ["Orders", "Ledger"] {
        assert_eq!(
            met("PATCH", &format!("/clusters/{cluster}"), &|c| (200..300)
                .contains(&c.status)),
            1,
            "{cluster}"
        );
    }
    assert_eq!(accepted_writes(&calls, "PATCH", "/encryptionAtRest"), 1);
    assert!(calls.len() <= 80, "{} Atlas calls", calls.len());
    let pe = env.projects().get("payments").await.unwrap();
    assert!(project_ready(&pe));
    eprintln!(
        "faults: {} injected, {} Atlas calls in all, converged in {took:?}",
        injected.iter().map(|(_, seen, _)| seen).sum::<usize>(),
        calls.len()
    );
    env.finish().await;
}

/// Atlas goes away in the middle of the handshake and again while a cluster is UPDATING, and comes back
/// from its saved state each time: the operator waits it out and finishes, with one role and one
/// update per cluster.
#[tokio::test]
async fn atlas_restarted_from_its_state_mid_flow_is_waited_out() {
    let state = tempfile_path("atlas-sim-state.json");
    let state_file = state.clone();
    let mut env = OperatorEnv::start_with(
        "faults-restart",
        &seed(&[("proj-restart", &["Orders:M10"])]),
        |sim| {
            sim.state_file = Some(state_file);
            sim.cluster_update_delay = Duration::from_secs(4);
        },
    )
    .await
    .unwrap();
    env.start_controller_with(|atlas| {
        atlas.timeout = CLIENT_TIMEOUT;
        atlas.backoff_base = Duration::from_millis(100);
        atlas.backoff_cap = Duration::from_secs(1);
    })
    .await
    .unwrap();

    let handshake = env.begin_handshake("payments", "proj-restart").await.unwrap();
    let role = env.wait_atlas_role("payments").await.unwrap();
    env.restart_sim(Duration::from_secs(3)).await.unwrap();
    env.trust_role(&handshake.role_name, &role).await.unwrap();
    env.wait_project("payments", WAIT, "Ready after Atlas came back", project_ready)
        .await
        .unwrap();

    env.apply_cluster(
        "orders",
        json!({"projectEncryptionRef": {"name": "payments"}, "clusterName": "Orders"}),
    )
    .await
    .unwrap();
    env.wait_cluster("orders", WAIT, "UPDATING", |ce| {
        ce.status
            .as_ref()
            .is_some_and(|s| s.state_name.as_deref() == Some("UPDATING"))
    })
    .await
    .unwrap();
    env.restart_sim(Duration::from_secs(3)).await.unwrap();
    env.wait_cluster("orders", WAIT, "Ready on AWS", |ce| cluster_converged(ce, "AWS"))
        .await
        .unwrap();

    let group = env.group_id("proj-restart").await.unwrap();
    let (atlas, creds) = env.atlas();
    let roles = atlas.list_aws_roles(&creds, &group).await.unwrap();
    assert_eq!(
        roles.len(),
        1,
        "the role survived the restart, and only it: {roles:?}"
    );
    assert_eq!(Some(&roles[0].role_id), Some(&role.role_id));
    let calls = atlas_only(env.all_calls());
    assert_eq!(accepted_writes(&calls, "POST", "/cloudProviderAccess"), 1);
    assert_eq!(accepted_writes(&calls, "PATCH", "/clusters/{clusterName}"), 1);
    assert_eq!(accepted_writes(&calls, "PATCH", "/encryptionAtRest"), 1);
    env.finish().await;
    let _ = std::fs::remove_file(&state);
}

fn tempfile_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(common::unique_name(name))
}
