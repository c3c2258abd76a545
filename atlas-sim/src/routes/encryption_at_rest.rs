//! `/groups/{groupId}/encryptionAtRest` and its private endpoints.
//!
//! Validation policy: a PATCH that sets or changes the AWS key configuration is checked against AWS before
//! it is stored, and every failure refuses the PATCH (nothing is stored), as Atlas validates on write.
//! Later changes on the AWS side (key disabled, scheduled for deletion, trust or permissions removed) only
//! show up as `valid: false` on the next GET (re-checked on every read, or after `validity_ttl`).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::{AWS_REGIONS, Wire, json_object, project, project_mut};
use crate::Sim;
use crate::auth::Principal;
use crate::aws::KeyCheck;
use crate::error::{ApiError, ApiResult};
use crate::state::{AwsKms, Ear, KeyChange, PrivateEndpoint, Project, is_object_id, new_id};

const AZURE_REQUIRED: [&str; 8] = [
    "enabled",
    "azureEnvironment",
    "clientID",
    "subscriptionID",
    "tenantID",
    "keyIdentifier",
    "keyVaultName",
    "resourceGroupName",
];

fn strip_write_only(mut v: Value, fields: &[&str]) -> Value {
    if let Some(m) = v.as_object_mut() {
        for f in fields {
            m.remove(*f);
        }
    }
    v
}

pub fn render(ear: &Ear) -> Value {
    let aws = match &ear.aws {
        Some(a) if a.enabled => {
            let mut m = Map::new();
            m.insert("enabled".into(), json!(true));
            if let Some(k) = &a.customer_master_key_id {
                m.insert("customerMasterKeyID".into(), json!(k));
            }
            if let Some(r) = &a.region {
                m.insert("region".into(), json!(r));
            }
            if let Some(k) = &a.access_key_id {
                m.insert("accessKeyID".into(), json!(k));
            }
            m.insert(
                "requirePrivateNetworking".into(),
                json!(a.require_private_networking.unwrap_or(false)),
            );
            m.insert("valid".into(), json!(ear.valid_override.unwrap_or(a.valid)));
            Value::Object(m)
        }
        _ => json!({"enabled": false}),
    };
    let other = |v: &Option<Value>, wo: &[&str]| match v {
        Some(v) if v.get("enabled") == Some(&json!(true)) => {
            let mut v = strip_write_only(v.clone(), wo);
            v["valid"] = json!(true);
            v
        }
        _ => json!({"enabled": false}),
    };
    json!({
        "awsKms": aws,
        "azureKeyVault": other(&ear.azure, &["secret"]),
        "googleCloudKms": other(&ear.gcp, &["serviceAccountKey"]),
        "enabledForSearchNodes": ear.enabled_for_search_nodes.unwrap_or(false),
    })
}

/// The inputs for checking the project's current AWS configuration, or why it can't be valid.
fn key_check_for(p: &Project) -> Option<Result<KeyCheck, ()>> {
    let a = p.ear.aws.as_ref().filter(|a| a.enabled)?;
    let Some(role_id) = &a.role_id else {
        // Legacy access-key mode can't be verified against moto: trusted as configured.
        return Some(Err(()));
    };
    let role = p
        .roles
        .iter()
        .find(|r| &r.role_id == role_id && r.authorized_date.is_some());
    Some(match (role, &a.customer_master_key_id, &a.region) {
        (Some(r), Some(k), Some(reg)) => Ok(KeyCheck {
            role_arn: r.iam_assumed_role_arn.clone().unwrap_or_default(),
            external_id: r.external_id.clone().unwrap_or_default(),
            key_id: k.clone(),
            region: reg.clone(),
        }),
        _ => Err(()),
    })
}

/// Recomputes `awsKms.valid` when the cached value is older than `validity_ttl`.
pub async fn refresh_validity(sim: &Sim, group_id: &str) {
    let ttl = chrono::Duration::from_std(sim.config.validity_ttl).unwrap_or_default();
    let check = {
        let st = sim.state.lock();
        let Some(p) = st.projects.get(group_id) else {
            return;
        };
        let fresh = p
            .ear
            .aws
            .as_ref()
            .and_then(|a| a.checked_at)
            .is_some_and(|t| !ttl.is_zero() && Utc::now() - t < ttl);
        if fresh {
            return;
        }
        match key_check_for(p) {
            None => return,
            Some(c) => c,
        }
    };
    let valid = match &check {
        Ok(c) => sim.aws.check_key(c).await.is_ok(),
        Err(()) => {
            let st = sim.state.lock();
            // Legacy credentials are trusted; a missing/deauthorized role is not.
            st.projects
                .get(group_id)
                .and_then(|p| p.ear.aws.as_ref())
                .is_some_and(|a| a.role_id.is_none() && a.access_key_id.is_some())
        }
    };
    let mut st = sim.state.lock();
    if let Some(a) = st.projects.get_mut(group_id).and_then(|p| p.ear.aws.as_mut()) {
        a.valid = valid;
        a.checked_at = Some(Utc::now());
    }
}

pub async fn get_ear(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path(group_id): Path<String>,
) -> ApiResult<Response> {
    project(&sim.state.lock(), &p, &group_id)?;
    refresh_validity(&sim, &group_id).await;
    let st = sim.state.lock();
    Ok(wire.ok(render(&project(&st, &p, &group_id)?.ear)))
}

fn opt_str(m: &Map<String, Value>, key: &str, attr: &str) -> ApiResult<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid_attribute(attr)),
    }
}

fn opt_bool(m: &Map<String, Value>, key: &str, attr: &str) -> ApiResult<Option<bool>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::invalid_attribute(attr)),
    }
}

fn clusters_using(p: &Project, provider: &str) -> bool {
    p.clusters.iter().any(|c| c.ear_provider() == provider)
}

fn live_endpoints(p: &Project, provider: &str, delay: chrono::Duration) -> bool {
    let now = Utc::now();
    p.private_endpoints
        .iter()
        .any(|e| e.cloud_provider == provider && e.deleting_since.is_none_or(|t| now - t < delay))
}

fn cannot_disable() -> ApiError {
    ApiError::new(
        409,
        "CANNOT_DISABLE_ENCRYPTION_AT_REST",
        "Encryption at Rest cannot be disabled while one or more clusters use it.",
    )
}

fn cannot_disable_pe() -> ApiError {
    ApiError::new(
        400,
        "CANNOT_DISABLE_ENCRYPTION_AT_REST_DUE_TO_PRIVATE_ENDPOINTS",
        "Encryption at Rest cannot be disabled when private endpoints are present.",
    )
}

/// What the AWS part of a PATCH asks for, after parsing.
enum AwsPlan {
    Disable,
    Set { next: AwsKms, action: &'static str },
}

fn plan_aws(cur: Option<&AwsKms>, m: &Map<String, Value>) -> ApiResult<Option<AwsPlan>> {
    let enabled = opt_bool(m, "enabled", "awsKms.enabled")?;
    let key = opt_str(m, "customerMasterKeyID", "awsKms.customerMasterKeyID")?;
    let region = opt_str(m, "region", "awsKms.region")?;
    let role_id = opt_str(m, "roleId", "awsKms.roleId")?;
    let rpn = opt_bool(m, "requirePrivateNetworking", "awsKms.requirePrivateNetworking")?;
    let access_key = opt_str(m, "accessKeyID", "awsKms.accessKeyID")?;
    let secret = opt_str(m, "secretAccessKey", "awsKms.secretAccessKey")?;
    if let Some(k) = &key
        && (k.is_empty() || k.len() > 2048)
    {
        return Err(ApiError::invalid_attribute("awsKms.customerMasterKeyID"));
    }
    if let Some(r) = &region
        && !AWS_REGIONS.contains(&r.as_str())
    {
        return Err(ApiError::invalid_enum(r, "awsKms.region"));
    }
    if let Some(r) = &role_id
        && !is_object_id(r)
    {
        return Err(ApiError::invalid_attribute("awsKms.roleId"));
    }
    // Atlas still reports (and keeps using) an access-key configuration made before roles, but takes no
    // new credentials: roles are the only way in, and a switch to a role cannot be undone.
    if access_key.is_some() || secret.is_some() {
        return Err(ApiError::new(
            400,
            "AWS_KMS_CREDENTIALS_AUTH_DEPRECATED",
            "Credentials based authentication is no longer supported for AWS KMS.",
        ));
    }
    if enabled == Some(false) {
        return Ok(cur.filter(|c| c.enabled).map(|_| AwsPlan::Disable));
    }
    match cur.filter(|c| c.enabled) {
        None => {
            // First configuration: the whole object.
            if enabled.is_none() {
                return Err(ApiError::missing_attribute("awsKms.enabled"));
            }
            let Some(key) = key else {
                return Err(ApiError::missing_attribute("awsKms.customerMasterKeyID"));
            };
            let Some(region) = region else {
                return Err(ApiError::missing_attribute("awsKms.region"));
            };
            if role_id.is_none() {
                return Err(ApiError::missing_attribute("awsKms.roleId"));
            }
            let next = AwsKms {
                enabled: true,
                customer_master_key_id: Some(key),
                region: Some(region),
                role_id: role_id.clone(),
                require_private_networking: rpn,
                access_key_id: None,
                secret_access_key: None,
                valid: false,
                checked_at: None,
            };
            Ok(Some(AwsPlan::Set {
                next,
                action: "enabled",
            }))
        }
        Some(c) => {
            let mut next = c.clone();
            let rotated = key
                .as_ref()
                .is_some_and(|k| Some(k) != c.customer_master_key_id.as_ref());
            if let Some(k) = key {
                next.customer_master_key_id = Some(k);
            }
            if let Some(r) = region {
                next.region = Some(r);
            }
            if let Some(r) = role_id {
                // The irreversible switch from legacy access keys to a role.
                next.role_id = Some(r);
                next.access_key_id = None;
                next.secret_access_key = None;
            }
            if let Some(b) = rpn {
                next.require_private_networking = Some(b);
            }
            let action = if rotated { "rotated" } else { "updated" };
            Ok(Some(AwsPlan::Set { next, action }))
        }
    }
}

/// Azure/GCP blocks: stored as sent (merged when already enabled); first configuration needs every field.
fn plan_other(
    cur: Option<&Value>,
    m: &Map<String, Value>,
    required: &[&str],
    credential_keys: &[&str],
    attr: &str,
) -> ApiResult<Option<Option<Value>>> {
    if let Some(v) = m.get("enabled")
        && !v.is_boolean()
    {
        return Err(ApiError::invalid_attribute(&format!("{attr}.enabled")));
    }
    let enabled_now = cur
        .and_then(|c| c.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut body = m.clone();
    body.remove("valid");
    if body.get("enabled") == Some(&json!(false)) {
        return Ok(enabled_now.then_some(None));
    }
    if !enabled_now {
        for f in required {
            if !body.contains_key(*f) {
                return Err(ApiError::missing_attribute(&format!("{attr}.{f}")));
            }
        }
        if !credential_keys.iter().any(|k| body.contains_key(*k)) {
            return Err(ApiError::missing_attribute(&format!(
                "{attr}.{}",
                credential_keys[0]
            )));
        }
        return Ok(Some(Some(Value::Object(body))));
    }
    let mut merged = cur.cloned().unwrap_or_else(|| json!({}));
    for (k, v) in body {
        merged[k] = v;
    }
    Ok(Some(Some(merged)))
}

pub async fn patch_ear(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path(group_id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let delay = sim.cluster_update_delay();
    // Plan under the lock, check AWS without it, then apply.
    let (aws_plan, azure_plan, gcp_plan, search_nodes, check) = {
        let st = sim.state.lock();
        let proj = project(&st, &p, &group_id)?;
        let body = json_object(&body)?;
        for k in body.keys() {
            if ![
                "awsKms",
                "azureKeyVault",
                "googleCloudKms",
                "enabledForSearchNodes",
            ]
            .contains(&k.as_str())
            {
                return Err(ApiError::invalid_attribute(k));
            }
        }
        let obj = |k: &str| -> ApiResult<Option<&Map<String, Value>>> {
            match body.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => Ok(Some(m)),
                Some(_) => Err(ApiError::invalid_attribute(k)),
            }
        };
        let aws_plan = obj("awsKms")?
            .map(|m| plan_aws(proj.ear.aws.as_ref(), m))
            .transpose()?
            .flatten();
        let azure_plan = obj("azureKeyVault")?
            .map(|m| {
                plan_other(
                    proj.ear.azure.as_ref(),
                    m,
                    &AZURE_REQUIRED,
                    &["secret", "roleId"],
                    "azureKeyVault",
                )
            })
            .transpose()?
            .flatten();
        let gcp_plan = obj("googleCloudKms")?
            .map(|m| {
                plan_other(
                    proj.ear.gcp.as_ref(),
                    m,
                    &["enabled", "keyVersionResourceID"],
                    &["serviceAccountKey", "roleId"],
                    "googleCloudKms",
                )
            })
            .transpose()?
            .flatten();
        let search_nodes = match body.get("enabledForSearchNodes") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(ApiError::invalid_attribute("enabledForSearchNodes")),
        };

        if matches!(aws_plan, Some(AwsPlan::Disable)) {
            if clusters_using(proj, "AWS") {
                return Err(cannot_disable());
            }
            if live_endpoints(proj, "AWS", delay) {
                return Err(cannot_disable_pe());
            }
        }
        if matches!(azure_plan, Some(None)) {
            if clusters_using(proj, "AZURE") {
                return Err(cannot_disable());
            }
            if live_endpoints(proj, "AZURE", delay) {
                return Err(cannot_disable_pe());
            }
        }
        if matches!(gcp_plan, Some(None)) && clusters_using(proj, "GCP") {
            return Err(cannot_disable());
        }

        let mut check = None;
        if let Some(AwsPlan::Set { next, .. }) = &aws_plan
            && let Some(role_id) = &next.role_id
        {
            let role = proj
                .roles
                .iter()
                .find(|r| &r.role_id == role_id && r.provider_name == "AWS")
                .ok_or_else(|| ApiError::resource_not_found(role_id))?;
            if role.authorized_date.is_none() {
                return Err(ApiError::new(
                    400,
                    "CLOUD_PROVIDER_ACCESS_ROLE_NOT_AUTHORIZED",
                    format!("The specified Cloud Provider Access role ({role_id}) has not been authorized."),
                )
                .params([role_id.as_str()]));
            }
            check = Some(KeyCheck {
                role_arn: role.iam_assumed_role_arn.clone().unwrap_or_default(),
                external_id: role.external_id.clone().unwrap_or_default(),
                key_id: next.customer_master_key_id.clone().unwrap_or_default(),
                region: next.region.clone().unwrap_or_default(),
            });
        }
        (aws_plan, azure_plan, gcp_plan, search_nodes, check)
    };

    if let Some(c) = &check {
        sim.aws
            .check_key(c)
            .await
            .map_err(|f| f.to_api_error(&group_id))?;
    } else if let Some(AwsPlan::Set { next, .. }) = &aws_plan
        && crate::state::aws_region(next.region.as_deref().unwrap_or("")).is_none()
    {
        return Err(
            crate::aws::AwsFailure::RegionNotSupported(next.region.clone().unwrap_or_default())
                .to_api_error(&group_id),
        );
    }

    let out = {
        let mut st = sim.state.lock();
        let proj = project_mut(&mut st, &p, &group_id)?;
        let now = Utc::now();
        match aws_plan {
            Some(AwsPlan::Disable) => {
                proj.ear.aws = None;
                proj.key_history.push(KeyChange {
                    at: now,
                    action: "disabled".into(),
                    customer_master_key_id: None,
                    region: None,
                    role_id: None,
                });
            }
            Some(AwsPlan::Set { mut next, action }) => {
                next.valid = true;
                next.checked_at = Some(now);
                let changed = proj.ear.aws.as_ref().is_none_or(|c| {
                    c.customer_master_key_id != next.customer_master_key_id
                        || c.region != next.region
                        || c.role_id != next.role_id
                });
                if changed {
                    proj.key_history.push(KeyChange {
                        at: now,
                        action: action.into(),
                        customer_master_key_id: next.customer_master_key_id.clone(),
                        region: next.region.clone(),
                        role_id: next.role_id.clone(),
                    });
                }
                proj.ear.aws = Some(next);
            }
            None => {}
        }
        if let Some(a) = azure_plan {
            proj.ear.azure = a;
        }
        if let Some(g) = gcp_plan {
            proj.ear.gcp = g;
        }
        if let Some(b) = search_nodes {
            proj.ear.enabled_for_search_nodes = Some(b);
        }
        render(&proj.ear)
    };
    sim.touch();
    Ok(wire.ok(out))
}

// ---- private endpoints ----

fn provider_param(cp: &str) -> ApiResult<&'static str> {
    match cp {
        "AWS" => Ok("AWS"),
        "AZURE" => Ok("AZURE"),
        // The spec documents no 400 for these operations; an unknown provider is a resource that doesn't exist.
        _ => Err(ApiError::resource_not_found(cp)),
    }
}

pub fn endpoint_status(e: &PrivateEndpoint, delay: chrono::Duration) -> Option<&str> {
    let now = Utc::now();
    if let Some(t) = e.deleting_since {
        return (now - t < delay).then_some("DELETING");
    }
    if let Some(s) = &e.status_override {
        return Some(s.as_str());
    }
    Some(if now - e.created_at < delay {
        "INITIATING"
    } else if e.cloud_provider == "AZURE" {
        "PENDING_ACCEPTANCE"
    } else {
        "ACTIVE"
    })
}

pub fn render_endpoint(e: &PrivateEndpoint, delay: chrono::Duration) -> Option<Value> {
    let status = endpoint_status(e, delay)?;
    let mut v =
        json!({"cloudProvider": e.cloud_provider, "id": e.id, "regionName": e.region_name, "status": status});
    if let Some(m) = &e.error_message {
        v["errorMessage"] = json!(m);
    }
    if e.cloud_provider == "AZURE" {
        v["privateEndpointConnectionName"] = json!(format!("atlas-kms-pe-{}", &e.id[16..]));
    }
    Some(v)
}

pub async fn list_endpoints(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((group_id, cp)): Path<(String, String)>,
) -> ApiResult<Response> {
    let delay = sim.cluster_update_delay();
    let st = sim.state.lock();
    let proj = project(&st, &p, &group_id)?;
    let cp = provider_param(&cp)?;
    let items = proj
        .private_endpoints
        .iter()
        .filter(|e| e.cloud_provider == cp)
        .filter_map(|e| render_endpoint(e, delay))
        .collect();
    Ok(wire.ok(wire.page(
        &format!(
            "{}/groups/{group_id}/encryptionAtRest/{cp}/privateEndpoints",
            super::V
        ),
        items,
    )))
}

const AZURE_REGIONS: [&str; 56] = [
    "US_CENTRAL",
    "US_EAST",
    "US_EAST_2",
    "US_NORTH_CENTRAL",
    "US_WEST",
    "US_SOUTH_CENTRAL",
    "EUROPE_NORTH",
    "EUROPE_WEST",
    "US_WEST_CENTRAL",
    "US_WEST_2",
    "US_WEST_3",
    "CANADA_EAST",
    "CANADA_CENTRAL",
    "BRAZIL_SOUTH",
    "BRAZIL_SOUTHEAST",
    "AUSTRALIA_CENTRAL",
    "AUSTRALIA_CENTRAL_2",
    "AUSTRALIA_EAST",
    "AUSTRALIA_SOUTH_EAST",
    "GERMANY_WEST_CENTRAL",
    "GERMANY_NORTH",
    "SWEDEN_CENTRAL",
    "SWEDEN_SOUTH",
    "SWITZERLAND_NORTH",
    "SWITZERLAND_WEST",
    "UK_SOUTH",
    "UK_WEST",
    "NORWAY_EAST",
    "NORWAY_WEST",
    "INDIA_CENTRAL",
    "INDIA_SOUTH",
    "INDIA_WEST",
    "CHINA_EAST",
    "CHINA_NORTH",
    "ASIA_EAST",
    "JAPAN_EAST",
    "JAPAN_WEST",
    "ASIA_SOUTH_EAST",
    "KOREA_CENTRAL",
    "KOREA_SOUTH",
    "FRANCE_CENTRAL",
    "FRANCE_SOUTH",
    "SOUTH_AFRICA_NORTH",
    "SOUTH_AFRICA_WEST",
    "UAE_CENTRAL",
    "UAE_NORTH",
    "QATAR_CENTRAL",
    "POLAND_CENTRAL",
    "ISRAEL_CENTRAL",
    "ITALY_NORTH",
    "SPAIN_CENTRAL",
    "MEXICO_CENTRAL",
    "NEW_ZEALAND_NORTH",
    "US_GOV_VIRGINIA",
    "US_GOV_ARIZONA",
    "US_GOV_TEXAS",
];

pub async fn create_endpoint(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((group_id, cp)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let delay = sim.cluster_update_delay();
    let out = {
        let mut st = sim.state.lock();
        let proj = project_mut(&mut st, &p, &group_id)?;
        let cp = provider_param(&cp)?;
        let body = json_object(&body)?;
        let region = match body.get("regionName") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ApiError::invalid_attribute("regionName")),
            None => return Err(ApiError::missing_attribute("regionName")),
        };
        let known = if cp == "AWS" {
            AWS_REGIONS.contains(&region.as_str())
        } else {
            AZURE_REGIONS.contains(&region.as_str())
        };
        if !known {
            return Err(ApiError::invalid_enum(&region, "regionName"));
        }
        let e = PrivateEndpoint {
            id: new_id(),
            cloud_provider: cp.into(),
            region_name: region,
            created_at: Utc::now(),
            deleting_since: None,
            status_override: None,
            error_message: None,
        };
        let v = render_endpoint(&e, delay).unwrap_or_default();
        proj.private_endpoints.push(e);
        v
    };
    sim.touch();
    Ok(wire.reply(StatusCode::ACCEPTED, out))
}

pub async fn get_endpoint(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((group_id, cp, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let delay = sim.cluster_update_delay();
    let st = sim.state.lock();
    let proj = project(&st, &p, &group_id)?;
    let cp = provider_param(&cp)?;
    proj.private_endpoints
        .iter()
        .find(|e| e.id == id && e.cloud_provider == cp)
        .and_then(|e| render_endpoint(e, delay))
        .map(|v| wire.ok(v))
        .ok_or_else(|| ApiError::resource_not_found(&id))
}

pub async fn delete_endpoint(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((group_id, cp, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let delay = sim.cluster_update_delay();
    {
        let mut st = sim.state.lock();
        let proj = project_mut(&mut st, &p, &group_id)?;
        let cp = provider_param(&cp)?;
        let e = proj
            .private_endpoints
            .iter_mut()
            .find(|e| e.id == id && e.cloud_provider == cp && endpoint_status(e, delay).is_some())
            .ok_or_else(|| ApiError::resource_not_found(&id))?;
        if e.deleting_since.is_none() {
            e.deleting_since = Some(Utc::now());
        }
        // Forget endpoints whose deletion has finished.
        proj.private_endpoints
            .retain(|e| endpoint_status(e, delay).is_some());
    }
    sim.touch();
    Ok(wire.no_content())
}
