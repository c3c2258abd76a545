//! `/groups/{groupId}/clusters`: list (paginated), get, PATCH. The PATCH rules are Atlas's: pause alone,
//! nothing on a paused cluster, CMK only on dedicated (M10+) cloud-backup clusters of a project whose
//! provider configuration is enabled and valid; a change puts the cluster in UPDATING for the update delay.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::{Wire, json_object, project, project_mut};
use crate::Sim;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::{Cluster, ClusterKind, Project, new_id};

const READ_ONLY: [&str; 11] = [
    "id",
    "groupId",
    "stateName",
    "createDate",
    "mongoDBVersion",
    "connectionStrings",
    "links",
    "featureCompatibilityVersion",
    "featureCompatibilityVersionExpirationDate",
    "configServerType",
    "internalClusterRole",
];

fn refuse_kind(c: &Cluster) -> ApiResult<()> {
    match c.kind {
        ClusterKind::Flex => Err(ApiError::new(
            400,
            "CANNOT_USE_FLEX_CLUSTER_IN_CLUSTER_API",
            format!("Flex cluster {} cannot be used in the Cluster API.", c.name),
        )
        .params([c.name.as_str()])),
        ClusterKind::Serverless => Err(ApiError::new(
            400,
            "CANNOT_USE_SERVERLESS_INSTANCE_IN_CLUSTER_API",
            format!(
                "Serverless instance {} cannot be used in the Cluster API.",
                c.name
            ),
        )
        .params([c.name.as_str()])),
        _ => Ok(()),
    }
}

fn find<'a>(proj: &'a Project, name: &str) -> ApiResult<&'a Cluster> {
    let c = proj
        .cluster(name)
        .ok_or_else(|| ApiError::cluster_not_found(name, &proj.id))?;
    refuse_kind(c)?;
    Ok(c)
}

pub async fn list_clusters(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path(group_id): Path<String>,
) -> ApiResult<Response> {
    let st = sim.state.lock();
    let proj = project(&st, &p, &group_id)?;
    let now = Utc::now();
    let items = proj
        .clusters
        .iter()
        .filter(|c| matches!(c.kind, ClusterKind::Dedicated | ClusterKind::Tenant))
        .map(|c| c.render(now))
        .collect();
    Ok(wire.ok(wire.page(&format!("{}/groups/{group_id}/clusters", super::V), items)))
}

pub async fn get_cluster(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((group_id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let st = sim.state.lock();
    let proj = project(&st, &p, &group_id)?;
    Ok(wire.ok(find(proj, &name)?.render(Utc::now())))
}

fn strip_spec_ids(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(specs) = v.as_array_mut() {
        for s in specs {
            if let Some(m) = s.as_object_mut() {
                m.remove("id");
                m.remove("zoneId");
                if let Some(Value::Array(rcs)) = m.get_mut("regionConfigs") {
                    for rc in rcs {
                        if let Some(rm) = rc.as_object_mut() {
                            rm.retain(|k, _| !k.starts_with("effective"));
                            if let Some(es) = rm.get_mut("electableSpecs").and_then(Value::as_object_mut) {
                                es.remove("effectiveInstanceSize");
                            }
                        }
                    }
                }
            }
        }
    }
    v
}

/// JSON equality with numbers compared by value: clients echo `10.0` back as `10` (Go's encoding/json does),
/// which is no change.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(i), Some(j), _, _) => i == j,
            (_, _, Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn has_tenant(specs: &Value) -> bool {
    specs.as_array().into_iter().flatten().any(|s| {
        s.get("regionConfigs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|rc| {
                rc.get("providerName").and_then(Value::as_str) == Some("TENANT")
                    || matches!(
                        rc.pointer("/electableSpecs/instanceSize").and_then(Value::as_str),
                        Some("M0" | "M2" | "M5")
                    )
            })
    })
}

struct Plan {
    changes: Map<String, Value>,
    any_change: bool,
    /// The AWS provider is being turned on: the project's AWS configuration must be valid.
    needs_aws_valid: bool,
}

fn enum_field(body: &Map<String, Value>, key: &str, allowed: &[&str]) -> ApiResult<()> {
    match body.get(key) {
        None => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(Value::String(s)) => Err(ApiError::invalid_enum(s, key)),
        Some(_) => Err(ApiError::invalid_attribute(key)),
    }
}

fn plan(proj: &Project, c: &Cluster, body: &Map<String, Value>) -> ApiResult<Plan> {
    let mut body = body.clone();
    for k in READ_ONLY {
        body.remove(k);
    }
    if let Some(n) = body.remove("name")
        && n.as_str() != Some(c.name.as_str())
    {
        return Err(ApiError::invalid_attribute("name"));
    }
    for k in [
        "paused",
        "backupEnabled",
        "pitEnabled",
        "terminationProtectionEnabled",
        "redactClientLogData",
        "retainBackups",
    ] {
        if body.get(k).is_some_and(|v| !v.is_boolean()) {
            return Err(ApiError::invalid_attribute(k));
        }
    }
    enum_field(
        &body,
        "encryptionAtRestProvider",
        &["NONE", "AWS", "AZURE", "GCP"],
    )?;
    enum_field(&body, "clusterType", &["REPLICASET", "SHARDED", "GEOSHARDED"])?;
    enum_field(&body, "versionReleaseSystem", &["LTS", "CONTINUOUS"])?;
    if body.get("replicationSpecs").is_some_and(|v| !v.is_array()) {
        return Err(ApiError::invalid_attribute("replicationSpecs"));
    }

    let mut changes = Map::new();
    for (k, v) in &body {
        let cur = c.doc.get(k).cloned().unwrap_or(Value::Null);
        let differs = if k == "replicationSpecs" {
            !same(&strip_spec_ids(v), &strip_spec_ids(&cur))
        } else if v.is_object() && cur.is_object() {
            let mut merged = cur.clone();
            merge(&mut merged, v);
            !same(&merged, &cur)
        } else {
            !same(v, &cur)
        };
        if differs {
            changes.insert(k.clone(), v.clone());
        }
    }
    let pause_change = changes.contains_key("paused");
    let others = changes.keys().any(|k| k != "paused");
    if pause_change && others {
        return Err(ApiError::new(
            409,
            "CANNOT_UPDATE_AND_PAUSE_CLUSTER",
            format!(
                "Cannot update cluster {} and change its paused state in the same request.",
                c.name
            ),
        )
        .params([c.name.as_str()]));
    }
    if c.paused() && others {
        return Err(ApiError::new(
            409,
            "CANNOT_UPDATE_PAUSED_CLUSTER",
            format!("Cluster {} cannot be updated while it is paused.", c.name),
        )
        .params([c.name.as_str()]));
    }
    if c.paused() && body.get("paused") == Some(&json!(true)) && !others {
        return Err(ApiError::new(
            409,
            "CLUSTER_ALREADY_PAUSED",
            format!("Cluster {} is already paused.", c.name),
        )
        .params([c.name.as_str()]));
    }

    let mut needs_aws_valid = false;
    if let Some(new) = changes.get("encryptionAtRestProvider").and_then(Value::as_str)
        && new != "NONE"
    {
        let specs = changes
            .get("replicationSpecs")
            .unwrap_or(&c.doc["replicationSpecs"]);
        if c.kind == ClusterKind::Tenant || has_tenant(specs) {
            return Err(ApiError::new(
                400,
                "CANNOT_USE_ENCRYPTION_AT_REST_TENANT",
                "Encryption at Rest using customer key management is not available for M0, M2 or M5 clusters.",
            ));
        }
        if c.legacy_backup {
            return Err(ApiError::new(
                400,
                "CANNOT_USE_ENCRYPTION_AT_REST_BACKUP_TYPE",
                "Cannot use Encryption at Rest with clusters running legacy backup.",
            ));
        }
        if c.ear_provider() != "NONE" {
            return Err(ApiError::new(
                409,
                "CANNOT_CHANGE_ENCRYPTION_AT_REST_PROVIDER",
                "Encryption at Rest must be disabled before switching to another provider.",
            ));
        }
        let enabled = match new {
            "AWS" => proj.ear.aws.as_ref().is_some_and(|a| a.enabled),
            "AZURE" => proj
                .ear
                .azure
                .as_ref()
                .is_some_and(|v| v.get("enabled") == Some(&json!(true))),
            _ => proj
                .ear
                .gcp
                .as_ref()
                .is_some_and(|v| v.get("enabled") == Some(&json!(true))),
        };
        if !enabled {
            return Err(ApiError::new(
                400,
                "ENCRYPTION_AT_REST_NOT_ENABLED",
                format!("Encryption at Rest is not enabled for group {}.", proj.id),
            )
            .params([proj.id.as_str()]));
        }
        needs_aws_valid = new == "AWS";
    }
    let any_change = !changes.is_empty();
    Ok(Plan {
        changes,
        any_change,
        needs_aws_valid,
    })
}

pub async fn patch_cluster(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((group_id, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let needs_check = {
        let st = sim.state.lock();
        let proj = project(&st, &p, &group_id)?;
        let c = find(proj, &name)?;
        let body = json_object(&body)?;
        plan(proj, c, &body)?.needs_aws_valid
    };
    if needs_check {
        super::encryption_at_rest::refresh_validity(&sim, &group_id).await;
    }
    let delay = sim.cluster_update_delay();
    let out = {
        let mut st = sim.state.lock();
        let proj = project_mut(&mut st, &p, &group_id)?;
        let body = json_object(&body)?;
        let plan = plan(proj, find(proj, &name)?, &body)?;
        if plan.needs_aws_valid {
            let valid = proj
                .ear
                .valid_override
                .unwrap_or(proj.ear.aws.as_ref().is_some_and(|a| a.valid));
            if !valid {
                return Err(ApiError::new(
                    400,
                    "ENCRYPTION_AT_REST_SETTINGS_INVALID",
                    "The Encryption at Rest configuration of this project is not valid.",
                ));
            }
        }
        let c = proj
            .cluster_mut(&name)
            .ok_or_else(|| ApiError::cluster_not_found(&name, &group_id))?;
        if plan.any_change {
            for (k, v) in plan.changes {
                if k == "replicationSpecs" {
                    let old = c.doc["replicationSpecs"].clone();
                    let mut specs = v;
                    for (i, s) in specs.as_array_mut().into_iter().flatten().enumerate() {
                        if let Some(m) = s.as_object_mut() {
                            for f in ["id", "zoneId"] {
                                let keep = old.get(i).and_then(|o| o.get(f)).cloned();
                                m.insert(f.into(), keep.unwrap_or_else(|| json!(new_id())));
                            }
                        }
                    }
                    c.doc[k] = specs;
                } else if v.is_object() && c.doc.get(&k).is_some_and(Value::is_object) {
                    merge(&mut c.doc[&k], &v);
                } else {
                    c.doc[k] = v;
                }
            }
            c.updating_until = Some(Utc::now() + delay);
        }
        c.render(Utc::now())
    };
    sim.touch();
    Ok(wire.ok(out))
}
