//! Cloud Backup snapshots (read-only through the Atlas API; created through the control API, remembering the
//! key in force when taken as `masterKeyUUID`).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::{Wire, project};
use crate::Sim;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::seed::SnapshotRequest;
use crate::state::{Cluster, ClusterKind, Project, is_object_id, key_uuid, new_id, ts};

fn cluster<'a>(proj: &'a Project, name: &str) -> ApiResult<&'a Cluster> {
    let c = proj
        .cluster(name)
        .ok_or_else(|| ApiError::cluster_not_found(name, &proj.id))?;
    if c.kind == ClusterKind::Flex {
        return Err(ApiError::new(
            400,
            "CANNOT_USE_FLEX_CLUSTER_IN_CLUSTER_API",
            format!("Flex cluster {name} cannot be used in the Cluster API."),
        )
        .params([name]));
    }
    Ok(c)
}

fn of_type(c: &Cluster, t: &str) -> Vec<Value> {
    c.snapshots
        .iter()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some(t))
        .cloned()
        .collect()
}

async fn list(
    sim: Arc<Sim>,
    p: Principal,
    wire: Wire,
    group_id: String,
    name: String,
    t: &str,
    suffix: &str,
) -> ApiResult<Response> {
    let st = sim.state.lock();
    let proj = project(&st, &p, &group_id)?;
    let c = cluster(proj, &name)?;
    let path = format!(
        "{}/groups/{group_id}/clusters/{name}/backup/snapshots{suffix}",
        super::V
    );
    Ok(wire.ok(wire.page(&path, of_type(c, t))))
}

async fn one(
    sim: Arc<Sim>,
    p: Principal,
    wire: Wire,
    group_id: String,
    name: String,
    id: String,
    t: &str,
) -> ApiResult<Response> {
    let st = sim.state.lock();
    let proj = project(&st, &p, &group_id)?;
    let c = cluster(proj, &name)?;
    if !is_object_id(&id) {
        return Err(ApiError::invalid_path_parameter("snapshotId", &id));
    }
    of_type(c, t)
        .into_iter()
        .find(|s| s.get("id").and_then(Value::as_str) == Some(&id))
        .map(|s| wire.ok(s))
        .ok_or_else(|| ApiError::resource_not_found(&id))
}

pub async fn list_snapshots(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((g, n)): Path<(String, String)>,
) -> ApiResult<Response> {
    list(sim, p, wire, g, n, "replicaSet", "").await
}

pub async fn list_sharded(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((g, n)): Path<(String, String)>,
) -> ApiResult<Response> {
    list(sim, p, wire, g, n, "shardedCluster", "/shardedClusters").await
}

pub async fn get_snapshot(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((g, n, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    one(sim, p, wire, g, n, id, "replicaSet").await
}

pub async fn get_sharded(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((g, n, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    one(sim, p, wire, g, n, id, "shardedCluster").await
}

/// Builds a snapshot of `c` as it is now (control API).
pub fn make_snapshot(proj: &Project, c: &Cluster, req: &SnapshotRequest) -> anyhow::Result<Value> {
    let id = req.id.clone().unwrap_or_else(new_id);
    anyhow::ensure!(is_object_id(&id), "snapshot id must be 24 hex characters");
    let created = req.created_at.unwrap_or_else(Utc::now);
    let expires = created + Duration::days(req.retention_days.unwrap_or(7));
    let provider = c
        .doc
        .pointer("/replicationSpecs/0/regionConfigs/0/providerName")
        .and_then(Value::as_str)
        .unwrap_or("AWS");
    let provider = if provider == "TENANT" {
        c.doc
            .pointer("/replicationSpecs/0/regionConfigs/0/backingProviderName")
            .and_then(Value::as_str)
            .unwrap_or("AWS")
    } else {
        provider
    };
    let key = req.master_key_uuid.clone().or_else(|| match c.ear_provider() {
        "AWS" => proj
            .ear
            .aws
            .as_ref()
            .filter(|a| a.enabled)
            .and_then(|a| a.customer_master_key_id.as_deref())
            .map(key_uuid),
        _ => None,
    });
    let snapshot_type = req.snapshot_type.clone().unwrap_or_else(|| "onDemand".into());
    let kind = req.r#type.clone().unwrap_or_else(|| "replicaSet".into());
    anyhow::ensure!(
        kind == "replicaSet" || kind == "shardedCluster",
        "type must be replicaSet or shardedCluster"
    );
    let rs_name = format!("atlas-{}-shard-0", &c.id[18..]);
    let mut v = json!({
        "id": id,
        "type": kind,
        "status": req.status.clone().unwrap_or_else(|| "completed".into()),
        "snapshotType": snapshot_type,
        "frequencyType": req.frequency_type.clone().unwrap_or_else(|| "daily".into()),
        "createdAt": ts(created),
        "expiresAt": ts(expires),
        "mongodVersion": c.doc.get("mongoDBVersion").cloned().unwrap_or(json!("8.0.4")),
        "storageSizeBytes": 104857600,
        "policyItems": [],
        "links": [],
    });
    // `DiskBackupReplicaSet` has `cloudProvider` and `copyRegions`; `DiskBackupShardedClusterSnapshot`
    // has neither (its members carry the provider).
    if kind == "replicaSet" {
        v["replicaSetName"] = json!(rs_name);
        v["cloudProvider"] = json!(provider);
        v["copyRegions"] = json!([]);
    } else {
        // One member snapshot per shard (the config server is embedded in a shard).
        let shards = c.doc["replicationSpecs"].as_array().map_or(1, |s| s.len().max(1));
        let members: Vec<Value> = (0..shards)
            .map(|i| {
                json!({"cloudProvider": provider, "id": new_id(),
                       "replicaSetName": format!("atlas-{}-shard-{i}", &c.id[18..])})
            })
            .collect();
        v["snapshotIds"] = json!(members.iter().map(|m| m["id"].clone()).collect::<Vec<_>>());
        v["members"] = json!(members);
        v["configServerType"] = json!("EMBEDDED");
    }
    if let Some(k) = key {
        v["masterKeyUUID"] = json!(k);
    }
    Ok(v)
}
