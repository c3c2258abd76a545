//! `requirePrivateNetworking` on the real parts: kube-apiserver, atlas-sim (its private endpoints
//! follow Atlas's state machine; its control API forces a state) and moto. Each test asserts the Atlas
//! writes it caused, in their order, from the simulator's call log.
#![cfg(feature = "integration")]

mod common;

use std::time::Duration;

use atlas_encryption_operator::crd::ProjectEncryption;
use atlas_sim::CallRecord;
use common::operator::{Handshake, OperatorEnv, REGION, condition, look_twice, seed};
use common::snapshots::{self, Expect};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const ENDPOINTS: &str = "/encryptionAtRest/{cloudProvider}/privateEndpoints";
const ENDPOINT: &str = "/encryptionAtRest/{cloudProvider}/privateEndpoints/{endpointId}";
const EAR: &str = "/groups/{groupId}/encryptionAtRest";

fn spec(handshake: &Handshake, project: &str, aws_kms: Value) -> Value {
    let mut kms =
        json!({"customerMasterKeyId": handshake.key, "region": REGION, "roleArn": handshake.role_arn});
    kms.as_object_mut()
        .unwrap()
        .extend(aws_kms.as_object().unwrap().clone());
    json!({"projectName": project, "credentialsRef": {"name": "atlas-credentials"}, "awsKms": kms})
}

fn ready_reason(pe: &ProjectEncryption) -> Option<(String, String)> {
    condition(&pe.status.as_ref()?.conditions, "Ready")
}

fn is_ready(pe: &ProjectEncryption) -> bool {
    let status = pe.status.as_ref();
    ready_reason(pe).is_some_and(|(s, _)| s == "True")
        && status.and_then(|s| s.observed_generation) == pe.metadata.generation
}

/// `(region, state)` of each endpoint in status.
fn endpoint_states(pe: &ProjectEncryption) -> Vec<(String, String)> {
    pe.status
        .iter()
        .flat_map(|s| &s.private_endpoints)
        .map(|e| (e.region.clone(), e.state.clone()))
        .collect()
}

fn ends_with(call: &CallRecord, route: &str) -> bool {
    call.route.as_deref().is_some_and(|r| r.ends_with(route))
}

/// How long the simulator keeps an endpoint `INITIATING` (and `DELETING`).
async fn set_endpoint_delay(env: &OperatorEnv, delay: Duration) {
    let url = format!("{}/__sim/config", env.sim().base_url());
    let body = json!({"clusterUpdateDelayMs": delay.as_millis() as u64});
    let response = reqwest::Client::new().put(url).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// Forces an endpoint's state as Atlas would move it (the simulator's control API).
async fn force_endpoint(env: &OperatorEnv, group: &str, id: &str, body: Value) {
    let url = format!(
        "{}/__sim/projects/{group}/privateEndpoints/{id}",
        env.sim().base_url()
    );
    let response = reqwest::Client::new()
        .patch(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

async fn poke(env: &OperatorEnv, name: &str) {
    env.projects()
        .patch(name, &Default::default(), &common::poke())
        .await
        .unwrap();
}

/// An operator with the ProjectEncryption `pn` Ready on the first of `projects` (all seeded), and that
/// project's Atlas id.
async fn encrypted(test: &str, projects: &[&str]) -> (OperatorEnv, Handshake, String) {
    let seeded: Vec<(&str, &[&str])> = projects.iter().map(|p| (*p, &[][..])).collect();
    let mut env = OperatorEnv::start(test, &seed(&seeded)).await.unwrap();
    env.start_controller().await.unwrap();
    let handshake = env.encrypt_project("pn", projects[0]).await.unwrap();
    let group = env.group_id(projects[0]).await.unwrap();
    (env, handshake, group)
}

/// Applies `spec` to `pn` and waits until it is Ready with one ACTIVE endpoint, in the key's region.
async fn ready_with_endpoint(env: &OperatorEnv, spec: Value) {
    env.apply_project("pn", spec).await.unwrap();
    env.wait_project("pn", WAIT, "Ready with its endpoint", |pe| {
        is_ready(pe) && endpoint_states(pe) == [(REGION.to_string(), "ACTIVE".to_string())]
    })
    .await
    .unwrap();
}

/// The writes were one endpoint DELETE, then one PATCH of the encryption settings that Atlas took.
fn assert_deleted_then_patched(writes: &[CallRecord]) {
    assert_eq!(writes.len(), 2, "one DELETE, then one PATCH: {writes:?}");
    assert!(
        writes[0].method == "DELETE" && ends_with(&writes[0], ENDPOINT),
        "{writes:?}"
    );
    assert!(
        writes[1].method == "PATCH" && ends_with(&writes[1], EAR) && writes[1].status == 200,
        "{writes:?}"
    );
}

/// `requirePrivateNetworking: true` with a second region: the PATCH that sets the requirement, then one
/// endpoint per region; Reconciling (`AwaitingPrivateEndpoints`) while Atlas creates them, with no
/// further write; Ready only once both are ACTIVE; then converged with no write.
#[tokio::test]
async fn endpoints_are_created_and_the_project_is_ready_only_once_they_are_active() {
    let (env, handshake, group) = encrypted("pn-create", &["proj-pn-create"]).await;
    // Atlas takes minutes: the endpoints stay INITIATING until the test moves them.
    set_endpoint_delay(&env, Duration::from_secs(3600)).await;
    env.sim().clear_calls();
    let private = json!({"requirePrivateNetworking": true, "privateEndpointRegions": ["us-east-1"]});
    env.apply_project("pn", spec(&handshake, "proj-pn-create", private))
        .await
        .unwrap();

    let waiting = env
        .wait_project("pn", WAIT, "awaiting both endpoints", |pe| {
            ready_reason(pe).is_some_and(|(_, r)| r == "AwaitingPrivateEndpoints")
                && endpoint_states(pe).len() == 2
        })
        .await
        .unwrap();
    assert_eq!(
        endpoint_states(&waiting),
        [
            ("eu-west-2".to_string(), "INITIATING".to_string()),
            ("us-east-1".to_string(), "INITIATING".to_string())
        ]
    );
    snapshots::capture(
        "pn-create",
        "awaiting-private-endpoints",
        &waiting,
        Expect::InProgress,
    );
    let status = waiting.status.clone().unwrap();
    assert_eq!(condition(&status.conditions, "Reconciling").unwrap().0, "True");
    assert_eq!(condition(&status.conditions, "Ready").unwrap().0, "False");

    let writes = env.atlas_writes();
    assert_eq!(writes.len(), 3, "one PATCH, then one POST per region: {writes:?}");
    assert!(
        writes[0].method == "PATCH" && ends_with(&writes[0], EAR),
        "{writes:?}"
    );
    assert!(
        writes[1..]
            .iter()
            .all(|c| c.method == "POST" && ends_with(c, ENDPOINTS) && c.status == 202),
        "{writes:?}"
    );
    let (atlas, creds) = env.atlas();
    let ear = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
    assert_eq!(ear.aws_kms.unwrap().require_private_networking, Some(true));

    // Waiting writes nothing more: no second endpoint for a region that has one.
    look_twice(&env, "pn").await;
    assert_eq!(env.atlas_writes().len(), 3, "{:?}", env.atlas_writes());
    let still = env.projects().get("pn").await.unwrap();
    assert_eq!(ready_reason(&still).unwrap().1, "AwaitingPrivateEndpoints");

    // One active is not enough.
    let endpoints = waiting.status.unwrap().private_endpoints;
    force_endpoint(&env, &group, &endpoints[0].id, json!({"status": "ACTIVE"})).await;
    look_twice(&env, "pn").await;
    let one_active = env.projects().get("pn").await.unwrap();
    assert_eq!(ready_reason(&one_active).unwrap().1, "AwaitingPrivateEndpoints");
    assert!(
        ready_reason(&one_active).unwrap().0 == "False",
        "{:?}",
        one_active.status
    );

    force_endpoint(&env, &group, &endpoints[1].id, json!({"status": "ACTIVE"})).await;
    poke(&env, "pn").await;
    let ready = env.wait_project("pn", WAIT, "Ready", is_ready).await.unwrap();
    snapshots::capture("pn-create", "ready", &ready, Expect::Ready);
    assert_eq!(ready_reason(&ready).unwrap().1, "Reconciled");
    assert_eq!(
        endpoint_states(&ready),
        [
            ("eu-west-2".to_string(), "ACTIVE".to_string()),
            ("us-east-1".to_string(), "ACTIVE".to_string())
        ]
    );

    env.sim().clear_calls();
    look_twice(&env, "pn").await;
    assert!(
        env.atlas_writes().is_empty(),
        "converged: no write: {:?}",
        env.atlas_writes()
    );
    let events = env.event_reasons("pn").await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|(r, _)| r == "PrivateEndpointCreated")
            .count(),
        2,
        "{events:?}"
    );
    env.finish().await;
}

/// An endpoint Atlas reports FAILED stalls the project with Atlas's own message, in the condition, the
/// endpoint's status and the Warning Event; nothing is retried blindly.
#[tokio::test]
async fn a_failed_endpoint_stalls_with_atlas_message() {
    let (env, handshake, group) = encrypted("pn-failed", &["proj-pn-failed"]).await;
    set_endpoint_delay(&env, Duration::from_secs(3600)).await;
    env.apply_project(
        "pn",
        spec(
            &handshake,
            "proj-pn-failed",
            json!({"requirePrivateNetworking": true}),
        ),
    )
    .await
    .unwrap();
    let waiting = env
        .wait_project("pn", WAIT, "awaiting the endpoint", |pe| {
            endpoint_states(pe).len() == 1
        })
        .await
        .unwrap();
    let id = waiting.status.unwrap().private_endpoints[0].id.clone();
    let atlas_says = "The VPC endpoint quota of the Atlas account in eu-west-2 is exhausted.";
    force_endpoint(
        &env,
        &group,
        &id,
        json!({"status": "FAILED", "errorMessage": atlas_says}),
    )
    .await;
    env.sim().clear_calls();
    poke(&env, "pn").await;

    let stalled = env
        .wait_project("pn", WAIT, "Stalled", |pe| {
            pe.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Stalled"))
                .is_some_and(|(s, r)| s == "True" && r == "PrivateEndpointFailed")
        })
        .await
        .unwrap();
    snapshots::capture("pn-failed", "private-endpoint-failed", &stalled, Expect::Failed);
    let status = stalled.status.unwrap();
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap()
        .message;
    assert!(message.contains(atlas_says), "{message}");
    assert!(message.contains("eu-west-2"), "{message}");
    assert_eq!(status.private_endpoints[0].state, "FAILED");
    assert_eq!(
        status.private_endpoints[0].error_message.as_deref(),
        Some(atlas_says)
    );
    let events = env.wait_event("pn", "PrivateEndpointFailed", WAIT).await.unwrap();
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "PrivateEndpointFailed" && m.contains(atlas_says)),
        "{events:?}"
    );
    look_twice(&env, "pn").await;
    assert!(
        env.atlas_writes().is_empty(),
        "a failed endpoint is not recreated or retried: {:?}",
        env.atlas_writes()
    );
    env.finish().await;
}

/// `requirePrivateNetworking` true → false: the endpoint is deleted first, and the PATCH that turns the
/// requirement off is sent only once Atlas no longer lists it.
#[tokio::test]
async fn turning_the_flag_off_deletes_the_endpoints_before_the_patch() {
    let (env, handshake, group) = encrypted("pn-off", &["proj-pn-off"]).await;
    let private = json!({"requirePrivateNetworking": true});
    ready_with_endpoint(&env, spec(&handshake, "proj-pn-off", private)).await;

    env.sim().clear_calls();
    env.apply_project(
        "pn",
        spec(
            &handshake,
            "proj-pn-off",
            json!({"requirePrivateNetworking": false}),
        ),
    )
    .await
    .unwrap();
    let off = env
        .wait_project("pn", WAIT, "Ready without endpoints", |pe| {
            is_ready(pe) && endpoint_states(pe).is_empty()
        })
        .await
        .unwrap();
    assert_eq!(ready_reason(&off).unwrap().1, "Reconciled");
    assert_deleted_then_patched(&env.atlas_writes());
    let (atlas, creds) = env.atlas();
    assert!(
        atlas
            .list_ear_private_endpoints(&creds, &group)
            .await
            .unwrap()
            .is_empty(),
        "the PATCH came after the endpoint was gone"
    );
    let ear = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
    assert_eq!(ear.aws_kms.unwrap().require_private_networking, Some(false));

    env.sim().clear_calls();
    look_twice(&env, "pn").await;
    assert!(env.atlas_writes().is_empty(), "{:?}", env.atlas_writes());
    env.finish().await;
}

/// `enabled: false` with private endpoints: they are deleted first and encryption is turned off once
/// they are gone, with no PATCH refused; and endpoints the operator did not know of (made outside it)
/// turn Atlas's one refusal into their deletion, not a blind retry.
#[tokio::test]
async fn disabling_deletes_the_endpoints_first() {
    let (env, handshake, _) = encrypted("pn-disable", &["proj-pn-disable", "proj-pn-oob"]).await;
    let private = json!({"requirePrivateNetworking": true});
    ready_with_endpoint(&env, spec(&handshake, "proj-pn-disable", private)).await;
    env.sim().clear_calls();
    env.apply_project(
        "pn",
        spec(
            &handshake,
            "proj-pn-disable",
            json!({"requirePrivateNetworking": true, "enabled": false}),
        ),
    )
    .await
    .unwrap();
    let off = env
        .wait_project("pn", WAIT, "disabled", |pe| {
            is_ready(pe) && ready_reason(pe).is_some_and(|(_, r)| r == "EncryptionDisabled")
        })
        .await
        .unwrap();
    assert!(endpoint_states(&off).is_empty(), "{:?}", off.status);
    assert_deleted_then_patched(&env.atlas_writes());

    // An endpoint made outside the operator, on a project without the requirement.
    let other = env.encrypt_project("oob", "proj-pn-oob").await.unwrap();
    let group = env.group_id("proj-pn-oob").await.unwrap();
    let (atlas, creds) = env.atlas();
    let region = atlas_encryption_operator::aws::Region::parse(REGION).unwrap();
    atlas
        .create_ear_private_endpoint(&creds, &group, region)
        .await
        .unwrap();
    env.sim().clear_calls();
    env.apply_project("oob", spec(&other, "proj-pn-oob", json!({"enabled": false})))
        .await
        .unwrap();
    env.wait_project("oob", WAIT, "disabled", |pe| {
        is_ready(pe) && ready_reason(pe).is_some_and(|(_, r)| r == "EncryptionDisabled")
    })
    .await
    .unwrap();
    let writes: Vec<(String, u16, Option<String>)> = env
        .atlas_writes()
        .into_iter()
        .map(|c| (c.method, c.status, c.error_code))
        .collect();
    let refused = Some("CANNOT_DISABLE_ENCRYPTION_AT_REST_DUE_TO_PRIVATE_ENDPOINTS".to_string());
    assert_eq!(
        writes,
        [
            ("PATCH".to_string(), 400, refused),
            ("DELETE".to_string(), 204, None),
            ("PATCH".to_string(), 200, None),
        ],
        "refused once, the endpoint deleted, then turned off once it was gone"
    );
    env.finish().await;
}

/// Deleting a ProjectEncryption with `deletionPolicy: Disable` and private endpoints: the endpoints go
/// first, then encryption is turned off and the object released, with no PATCH refused.
#[tokio::test]
async fn deletion_with_disable_deletes_the_endpoints_first() {
    let (env, handshake, group) = encrypted("pn-delete", &["proj-pn-delete"]).await;
    let mut private = spec(
        &handshake,
        "proj-pn-delete",
        json!({"requirePrivateNetworking": true}),
    );
    private["deletionPolicy"] = json!("Disable");
    ready_with_endpoint(&env, private).await;
    env.sim().clear_calls();
    env.projects().delete("pn", &Default::default()).await.unwrap();
    common::operator::wait_gone(&env.projects(), "pn", WAIT)
        .await
        .unwrap();
    assert_deleted_then_patched(&env.atlas_writes());
    let (atlas, creds) = env.atlas();
    let ear = atlas.get_encryption_at_rest(&creds, &group).await.unwrap();
    assert!(!ear.aws_enabled(), "{ear:?}");
    env.finish().await;
}
