//! The operator process killed with SIGKILL at each step of the project and cluster flows, then started
//! again: it reaches the same end state with no second Atlas role, no lost rotation history and no
//! encryption turned off. Runs the real binary against the real kube-apiserver, atlas-sim and moto.
#![cfg(feature = "integration")]

mod common;

use std::time::{Duration, Instant};

use common::operator::{
    OperatorEnv, accepted_writes, cluster_converged, project_on_key, project_ready, seed,
};
use common::process::OperatorProcess;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

/// The call log's position now: writes after it belong to what the test does next.
fn mark(env: &OperatorEnv) -> u64 {
    env.sim().calls().last().map_or(0, |c| c.seq)
}

/// SIGKILLs the operator the moment Atlas has accepted the write `method route_suffix` after `since`
/// (the call log is read every few milliseconds), so it dies before it can record what it did.
async fn kill_after_write(
    env: &OperatorEnv,
    operator: &mut OperatorProcess,
    since: u64,
    method: &str,
    route_suffix: &str,
) {
    let deadline = Instant::now() + WAIT;
    while accepted_writes(&env.sim().calls_since(since), method, route_suffix) == 0 {
        assert!(
            Instant::now() < deadline,
            "{method} {route_suffix} never accepted; log:\n{}",
            operator.log_tail()
        );
        operator.check_running().unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    operator.kill();
}

#[tokio::test]
async fn killed_at_every_step_the_operator_restarts_to_the_same_end_state() {
    let env = OperatorEnv::start_with("crash", &seed(&[("proj-crash", &["Orders:M10"])]), |sim| {
        // Long enough that the kill after the cluster PATCH lands while Atlas shows UPDATING.
        sim.cluster_update_delay = Duration::from_secs(6);
    })
    .await
    .unwrap();
    let group = env.group_id("proj-crash").await.unwrap();
    let (atlas, creds) = env.atlas();

    // 1. Killed right after Atlas created the role, before the role is recorded anywhere.
    let since = mark(&env);
    let mut operator = env.start_operator_process("crash-1", "5m").await.unwrap();
    let handshake = env.begin_handshake("payments", "proj-crash").await.unwrap();
    kill_after_write(&env, &mut operator, since, "POST", "/cloudProviderAccess").await;

    // 2. The next replica finds that role instead of creating another, asks for the trust policy, and
    //    is killed before it can authorize.
    let mut operator = env.start_operator_process("crash-2", "5m").await.unwrap();
    let role = env.wait_atlas_role("payments").await.unwrap();
    operator.kill();
    let roles = atlas.list_aws_roles(&creds, &group).await.unwrap();
    assert_eq!(
        roles.len(),
        1,
        "the role created before the kill is the one in use: {roles:?}"
    );
    assert_eq!(roles[0].role_id, role.role_id);
    env.trust_role(&handshake.role_name, &role).await.unwrap();

    // 3. The next one authorizes and assigns the key, and is killed the moment Atlas accepted the key.
    let since = mark(&env);
    let mut operator = env.start_operator_process("crash-3", "5m").await.unwrap();
    kill_after_write(&env, &mut operator, since, "PATCH", "/encryptionAtRest").await;

    // 4. The next one finds the key in force and goes Ready without assigning it again.
    let mut operator = env.start_operator_process("crash-4", "5m").await.unwrap();
    env.wait_project("payments", WAIT, "Ready after the kill", project_ready)
        .await
        .unwrap();

    // 5. Rotation: killed the moment Atlas accepted the new key, before the history is written.
    let since = mark(&env);
    let new_key = env
        .rotate_key("payments", "proj-crash", &handshake)
        .await
        .unwrap();
    kill_after_write(&env, &mut operator, since, "PATCH", "/encryptionAtRest").await;
    let mut operator = env.start_operator_process("crash-5", "5m").await.unwrap();
    let rotated = env
        .wait_project("payments", WAIT, "rotated after the kill", |pe| {
            project_on_key(pe, &new_key)
        })
        .await
        .unwrap();
    let history = rotated.status.unwrap().previous_keys;
    assert_eq!(
        history
            .iter()
            .map(|k| k.customer_master_key_id.as_str())
            .collect::<Vec<_>>(),
        vec![handshake.key.as_str()],
        "the replaced key stays in the history"
    );

    // 6. A cluster: killed right after Atlas accepted its update, while it is UPDATING.
    let since = mark(&env);
    env.apply_cluster(
        "orders",
        json!({"projectEncryptionRef": {"name": "payments"}, "clusterName": "Orders"}),
    )
    .await
    .unwrap();
    kill_after_write(&env, &mut operator, since, "PATCH", "/clusters/{clusterName}").await;
    let cluster = atlas.get_cluster(&creds, &group, "Orders").await.unwrap();
    assert_eq!(
        cluster.state_name.as_deref(),
        Some("UPDATING"),
        "killed during the update"
    );
    let mut operator = env.start_operator_process("crash-6", "5m").await.unwrap();
    env.wait_cluster("orders", WAIT, "Ready on AWS after the kill", |ce| {
        cluster_converged(ce, "AWS")
    })
    .await
    .unwrap();

    // Same end state as an uninterrupted run: one role created, the key assigned once and rotated
    // once, one cluster update, and nothing turned off. The one write a kill may repeat is the role's
    // authorization: killed before the pass recorded it, the next process authorizes the same Atlas
    // role for the same IAM role again, which Atlas treats as the same authorization.
    let calls = env.sim().calls();
    let writes: Vec<_> = calls
        .iter()
        .filter(|c| c.method != "GET" && (200..300).contains(&c.status))
        .map(|c| format!("{} {}", c.method, c.route.as_deref().unwrap_or(&c.path)))
        .collect();
    let authorizations = accepted_writes(&calls, "PATCH", "/cloudProviderAccess/{roleId}");
    assert_eq!(
        accepted_writes(&calls, "POST", "/cloudProviderAccess"),
        1,
        "{writes:?}"
    );
    assert!((1..=2).contains(&authorizations), "{writes:?}");
    assert_eq!(
        accepted_writes(&calls, "PATCH", "/encryptionAtRest"),
        2,
        "{writes:?}"
    );
    assert_eq!(
        accepted_writes(&calls, "PATCH", "/clusters/{clusterName}"),
        1,
        "{writes:?}"
    );
    assert_eq!(writes.len(), 4 + authorizations, "no other write: {writes:?}");
    let roles = atlas.list_aws_roles(&creds, &group).await.unwrap();
    assert!(
        roles.len() == 1 && roles[0].iam_assumed_role_arn.as_deref() == Some(handshake.role_arn.as_str()),
        "{roles:?}"
    );
    let ear = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
    assert!(ear.aws_enabled(), "{ear:?}");
    assert_eq!(
        ear.aws_kms.as_ref().unwrap().customer_master_key_id.as_deref(),
        Some(new_key.as_str())
    );
    let status = operator.terminate(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "{status}");
    env.finish().await;
}
