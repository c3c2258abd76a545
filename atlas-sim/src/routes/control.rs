//! The `/__sim` control API: off the Atlas namespace, unauthenticated, never faulted or logged. Everything a
//! test needs to arrange or observe is here, so a simulator running as a separate process is as usable as
//! an in-process one.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Sim;
use crate::faults::{FaultSpec, RateLimitConfig};
use crate::routes::control_plane_ips::ControlPlaneIps;
use crate::seed::{Seed, SeedCluster, SeedProject, SnapshotRequest};
use crate::state::{ClusterKind, State as World, build_cluster, new_id, ts};

type S = State<Arc<Sim>>;

fn err(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({"error": msg.to_string()}))).into_response()
}

fn bad(msg: impl std::fmt::Display) -> Response {
    err(StatusCode::BAD_REQUEST, msg)
}

/// Accepts JSON or YAML bodies (YAML is a superset of JSON).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return serde_yaml::from_str("{}").map_err(|e| e.to_string());
    }
    serde_yaml::from_slice(body).map_err(|e| e.to_string())
}

pub fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/__sim/health", get(|| async { axum::Json(json!({"ok": true})) }))
        .route("/__sim/reset", post(reset))
        .route("/__sim/seed", post(seed))
        .route("/__sim/state", get(dump_state))
        .route("/__sim/projects", get(list_projects).post(add_project))
        .route("/__sim/projects/{groupId}", delete(delete_project))
        .route("/__sim/projects/{groupId}/clusters", post(add_cluster))
        .route("/__sim/projects/{groupId}/clusters/{name}", patch(patch_cluster))
        .route(
            "/__sim/projects/{groupId}/clusters/{name}/snapshots",
            post(add_snapshot),
        )
        .route("/__sim/projects/{groupId}/keyHistory", get(key_history))
        .route("/__sim/projects/{groupId}/encryptionAtRest/valid", put(set_valid))
        .route(
            "/__sim/projects/{groupId}/privateEndpoints/{id}",
            patch(patch_endpoint),
        )
        .route("/__sim/projects/{groupId}/alerts", post(add_alert))
        .route(
            "/__sim/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/__sim/faults/{id}", delete(delete_fault))
        .route("/__sim/rateLimits", get(get_rate).put(put_rate))
        .route("/__sim/calls", get(calls).delete(clear_calls))
        .route("/__sim/counters", get(counters))
        .route("/__sim/config", get(get_config).put(put_config))
        .route("/__sim/tokens/expire", post(expire_tokens))
        .route(
            "/__sim/controlPlaneIPAddresses",
            get(get_control_plane_ips).put(put_control_plane_ips),
        )
}

async fn get_control_plane_ips(State(sim): S) -> Response {
    axum::Json(json!(sim.state.lock().control_plane_ips)).into_response()
}

/// Replaces the whole list, as Atlas's own changes do.
async fn put_control_plane_ips(State(sim): S, body: Bytes) -> Response {
    let ips: ControlPlaneIps = match parse(&body) {
        Ok(ips) => ips,
        Err(e) => return bad(e),
    };
    if let Err(e) = ips.validate() {
        return bad(e);
    }
    sim.state.lock().control_plane_ips = ips.clone();
    sim.touch();
    axum::Json(json!(ips)).into_response()
}

async fn reset(State(sim): S, body: Bytes) -> Response {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Req {
        #[serde(default)]
        empty: bool,
    }
    let req: Req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let mut world = World {
        cluster_update_delay_ms: sim.config.cluster_update_delay.as_millis() as u64,
        ..Default::default()
    };
    if !req.empty
        && let Some(s) = &sim.config.seed
        && let Err(e) = world.apply_seed(s)
    {
        return bad(e);
    }
    *sim.state.lock() = world;
    sim.faults.lock().rules.clear();
    sim.rate.lock().set(sim.config.rate_limit.clone());
    sim.calls.lock().clear();
    sim.nonces.clear();
    sim.latency_ms
        .store(sim.config.latency.as_millis() as u64, Ordering::Relaxed);
    sim.token_ttl_secs
        .store(sim.config.token_ttl.as_secs().max(1), Ordering::Relaxed);
    sim.aws.trust_propagation_ms.store(
        sim.config.trust_propagation_delay.as_millis() as u64,
        Ordering::Relaxed,
    );
    sim.aws.first_trusted.lock().clear();
    sim.touch();
    StatusCode::NO_CONTENT.into_response()
}

fn project_ids(st: &World) -> Value {
    json!(
        st.projects
            .values()
            .map(|p| json!({"id": p.id, "name": p.name, "orgId": p.org_id}))
            .collect::<Vec<_>>()
    )
}

async fn seed(State(sim): S, body: Bytes) -> Response {
    let seed: Seed = match parse(&body) {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    let mut st = sim.state.lock();
    if let Err(e) = st.apply_seed(&seed) {
        return bad(e);
    }
    let out = json!({"projects": project_ids(&st), "organizations": st.orgs});
    drop(st);
    sim.touch();
    axum::Json(out).into_response()
}

async fn dump_state(State(sim): S) -> Response {
    let mut v = serde_json::to_value(&*sim.state.lock()).unwrap_or_default();
    // Secrets stay out of anything the sim prints.
    for coll in ["apiKeys", "serviceAccounts"] {
        if let Some(m) = v.get_mut(coll).and_then(Value::as_object_mut) {
            for c in m.values_mut() {
                c["secret"] = json!("<redacted>");
            }
        }
    }
    if let Some(t) = v.get_mut("tokens") {
        *t = json!(t.as_object().map(|m| m.len()).unwrap_or(0));
    }
    if let Some(ps) = v.get_mut("projects").and_then(Value::as_object_mut) {
        for p in ps.values_mut() {
            if let Some(a) = p.pointer_mut("/ear/aws").and_then(Value::as_object_mut)
                && a.get("secretAccessKey").is_some_and(|s| !s.is_null())
            {
                a.insert("secretAccessKey".into(), json!("<redacted>"));
            }
        }
    }
    axum::Json(v).into_response()
}

async fn list_projects(State(sim): S) -> Response {
    axum::Json(project_ids(&sim.state.lock())).into_response()
}

async fn add_project(State(sim): S, body: Bytes) -> Response {
    let p: SeedProject = match parse(&body) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let mut st = sim.state.lock();
    match st.add_project(&p) {
        Ok(id) => {
            let out = st.projects[&id].render();
            drop(st);
            sim.touch();
            (StatusCode::CREATED, axum::Json(out)).into_response()
        }
        Err(e) => bad(e),
    }
}

async fn add_cluster(State(sim): S, Path(group_id): Path<String>, body: Bytes) -> Response {
    let c: SeedCluster = match parse(&body) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let mut st = sim.state.lock();
    let Some(p) = st.projects.get_mut(&group_id) else {
        return err(StatusCode::NOT_FOUND, "no such project");
    };
    match build_cluster(&group_id, &c) {
        Ok(cl) => {
            let out = cl.render(Utc::now());
            p.clusters.retain(|x| x.name != cl.name);
            p.clusters.push(cl);
            drop(st);
            sim.touch();
            (StatusCode::CREATED, axum::Json(out)).into_response()
        }
        Err(e) => bad(e),
    }
}

/// Out-of-band cluster changes: what Atlas (or a human in the UI) might do behind the operator's back.
async fn patch_cluster(
    State(sim): S,
    Path((group_id, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Req {
        paused: Option<bool>,
        encryption_at_rest_provider: Option<String>,
        /// `IDLE` ends an update now; `UPDATING` starts one for `updatingForMs` (default: the update delay).
        state_name: Option<String>,
        updating_for_ms: Option<u64>,
        legacy_backup: Option<bool>,
        kind: Option<ClusterKind>,
        backup_enabled: Option<bool>,
        instance_size: Option<String>,
    }
    let req: Req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let delay = sim.cluster_update_delay();
    let mut st = sim.state.lock();
    let Some(c) = st.projects.get_mut(&group_id).and_then(|p| p.cluster_mut(&name)) else {
        return err(StatusCode::NOT_FOUND, "no such project or cluster");
    };
    if let Some(b) = req.paused {
        c.doc["paused"] = json!(b);
    }
    if let Some(pv) = req.encryption_at_rest_provider {
        c.doc["encryptionAtRestProvider"] = json!(pv);
    }
    if let Some(b) = req.legacy_backup {
        c.legacy_backup = b;
    }
    if let Some(k) = req.kind {
        c.kind = k;
    }
    if let Some(b) = req.backup_enabled {
        c.doc["backupEnabled"] = json!(b);
    }
    if let Some(size) = req.instance_size
        && let Some(rcs) = c
            .doc
            .pointer_mut("/replicationSpecs/0/regionConfigs")
            .and_then(Value::as_array_mut)
    {
        for rc in rcs {
            rc["electableSpecs"]["instanceSize"] = json!(size);
        }
    }
    match req.state_name.as_deref() {
        Some("IDLE") => c.updating_until = None,
        Some("UPDATING") => {
            let d = req
                .updating_for_ms
                .map(|ms| chrono::Duration::milliseconds(ms as i64))
                .unwrap_or(delay);
            c.updating_until = Some(Utc::now() + d);
        }
        Some(other) => return bad(format!("stateName {other} is not IDLE or UPDATING")),
        None => {}
    }
    let out = c.render(Utc::now());
    drop(st);
    sim.touch();
    axum::Json(out).into_response()
}

async fn add_snapshot(
    State(sim): S,
    Path((group_id, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let req: SnapshotRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let mut st = sim.state.lock();
    let Some(p) = st.projects.get_mut(&group_id) else {
        return err(StatusCode::NOT_FOUND, "no such project");
    };
    let Some(c) = p.cluster(&name) else {
        return err(StatusCode::NOT_FOUND, "no such cluster");
    };
    let snap = match super::snapshots::make_snapshot(p, c, &req) {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    if let Some(c) = p.cluster_mut(&name) {
        c.snapshots.push(snap.clone());
    }
    drop(st);
    sim.touch();
    (StatusCode::CREATED, axum::Json(snap)).into_response()
}

/// Deletes a project and everything in it, as a person deleting it in Atlas would; a project added
/// later under the same name gets a new id.
async fn delete_project(State(sim): S, Path(group_id): Path<String>) -> Response {
    let removed = sim.state.lock().projects.remove(&group_id);
    match removed {
        Some(_) => {
            sim.touch();
            StatusCode::NO_CONTENT.into_response()
        }
        None => err(StatusCode::NOT_FOUND, "no such project"),
    }
}

async fn key_history(State(sim): S, Path(group_id): Path<String>) -> Response {
    let st = sim.state.lock();
    match st.projects.get(&group_id) {
        Some(p) => axum::Json(json!(p.key_history)).into_response(),
        None => err(StatusCode::NOT_FOUND, "no such project"),
    }
}

async fn set_valid(State(sim): S, Path(group_id): Path<String>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        valid: Option<bool>,
    }
    let req: Req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let mut st = sim.state.lock();
    let Some(p) = st.projects.get_mut(&group_id) else {
        return err(StatusCode::NOT_FOUND, "no such project");
    };
    p.ear.valid_override = req.valid;
    drop(st);
    sim.touch();
    StatusCode::NO_CONTENT.into_response()
}

async fn patch_endpoint(
    State(sim): S,
    Path((group_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Req {
        status: Option<String>,
        error_message: Option<String>,
    }
    let req: Req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    const STATUSES: [&str; 6] = [
        "INITIATING",
        "PENDING_ACCEPTANCE",
        "ACTIVE",
        "FAILED",
        "PENDING_RECREATION",
        "DELETING",
    ];
    if let Some(s) = &req.status
        && !STATUSES.contains(&s.as_str())
    {
        return bad(format!("status must be one of {STATUSES:?}"));
    }
    let mut st = sim.state.lock();
    let Some(e) = st
        .projects
        .get_mut(&group_id)
        .and_then(|p| p.private_endpoints.iter_mut().find(|e| e.id == id))
    else {
        return err(StatusCode::NOT_FOUND, "no such project or endpoint");
    };
    e.status_override = req.status;
    e.error_message = req.error_message;
    drop(st);
    sim.touch();
    StatusCode::NO_CONTENT.into_response()
}

async fn add_alert(State(sim): S, Path(group_id): Path<String>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Req {
        event_type_name: String,
        #[serde(default)]
        status: Option<String>,
    }
    let req: Req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let mut st = sim.state.lock();
    let Some(p) = st.projects.get_mut(&group_id) else {
        return err(StatusCode::NOT_FOUND, "no such project");
    };
    let now = ts(Utc::now());
    let alert = json!({
        "id": new_id(),
        "alertConfigId": new_id(),
        "groupId": group_id,
        "orgId": p.org_id,
        "eventTypeName": req.event_type_name,
        "status": req.status.unwrap_or_else(|| "OPEN".into()),
        "created": now,
        "updated": now,
        "links": [],
    });
    p.alerts.push(alert.clone());
    drop(st);
    sim.touch();
    (StatusCode::CREATED, axum::Json(alert)).into_response()
}

async fn list_faults(State(sim): S) -> Response {
    axum::Json(json!(sim.faults.lock().rules)).into_response()
}

async fn add_fault(State(sim): S, body: Bytes) -> Response {
    let spec: FaultSpec = match parse(&body) {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    if let Some(p) = spec.probability
        && !(0.0..=1.0).contains(&p)
    {
        return bad("probability must be within 0..=1");
    }
    (
        StatusCode::CREATED,
        axum::Json(json!(sim.faults.lock().add(spec))),
    )
        .into_response()
}

async fn clear_faults(State(sim): S) -> Response {
    sim.faults.lock().rules.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_fault(State(sim): S, Path(id): Path<u64>) -> Response {
    let mut f = sim.faults.lock();
    let before = f.rules.len();
    f.rules.retain(|r| r.id != id);
    if f.rules.len() == before {
        err(StatusCode::NOT_FOUND, "no such fault")
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

async fn get_rate(State(sim): S) -> Response {
    axum::Json(json!(sim.rate.lock().config)).into_response()
}

async fn put_rate(State(sim): S, body: Bytes) -> Response {
    let cfg: RateLimitConfig = match parse(&body) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    for b in [&cfg.project, &cfg.organization].into_iter().flatten() {
        if b.capacity == 0 || b.refill_rate == 0 || b.refill_seconds == 0 {
            return bad("capacity, refillRate and refillSeconds must be positive");
        }
    }
    if cfg.hidden_status.is_some_and(|s| s != 403 && s != 404) {
        return bad("hiddenStatus must be 403 or 404");
    }
    sim.rate.lock().set(cfg);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

async fn calls(State(sim): S, Query(q): Query<Since>) -> Response {
    let log = sim.calls.lock();
    axum::Json(json!({"lastSeq": log.next_seq, "calls": log.since(q.since)})).into_response()
}

async fn clear_calls(State(sim): S) -> Response {
    sim.calls.lock().clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn counters(State(sim): S) -> Response {
    axum::Json(json!(sim.calls.lock().counters)).into_response()
}

fn config_view(sim: &Sim) -> Value {
    let st = sim.state.lock();
    json!({
        "clusterUpdateDelayMs": st.cluster_update_delay_ms,
        "latencyMs": sim.latency_ms.load(Ordering::Relaxed),
        "tokenTtlSeconds": sim.token_ttl_secs.load(Ordering::Relaxed),
        "today": st.today_override,
        "awsEndpoint": sim.config.aws_endpoint,
        "atlasAwsAccountArn": sim.config.atlas_aws_account_arn,
        "validityTtlMs": sim.config.validity_ttl.as_millis() as u64,
        "trustPropagationDelayMs": sim.aws.trust_propagation_ms.load(Ordering::Relaxed),
    })
}

async fn get_config(State(sim): S) -> Response {
    axum::Json(config_view(&sim)).into_response()
}

async fn put_config(State(sim): S, body: Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Req {
        cluster_update_delay_ms: Option<u64>,
        latency_ms: Option<u64>,
        token_ttl_seconds: Option<u64>,
        trust_propagation_delay_ms: Option<u64>,
        /// "YYYY-MM-DD" or null: the date used for version sunsets.
        #[serde(default, with = "double_option")]
        today: Option<Option<chrono::NaiveDate>>,
    }
    let req: Req = match parse(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    {
        let mut st = sim.state.lock();
        if let Some(d) = req.cluster_update_delay_ms {
            st.cluster_update_delay_ms = d;
        }
        if let Some(t) = req.today {
            st.today_override = t;
        }
    }
    if let Some(l) = req.latency_ms {
        sim.latency_ms.store(l, Ordering::Relaxed);
    }
    if let Some(t) = req.trust_propagation_delay_ms {
        sim.aws.trust_propagation_ms.store(t, Ordering::Relaxed);
    }
    if let Some(t) = req.token_ttl_seconds {
        sim.token_ttl_secs.store(t.max(1), Ordering::Relaxed);
    }
    sim.touch();
    axum::Json(config_view(&sim)).into_response()
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

async fn expire_tokens(State(sim): S) -> Response {
    let mut st = sim.state.lock();
    let past = Utc::now() - chrono::Duration::seconds(1);
    for t in st.tokens.values_mut() {
        t.expires_at = past;
    }
    drop(st);
    StatusCode::NO_CONTENT.into_response()
}
