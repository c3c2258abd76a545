//! `/groups/{groupId}/cloudProviderAccess`: create (200, not 201), list (three arrays, not paginated),
//! get, authorize (PATCH `/{roleId}`) and deauthorize (DELETE `/{cloudProvider}/{roleId}`).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::Utc;
use rand::Rng;
use serde_json::{Map, Value, json};

use super::{Wire, json_object, project, project_mut};
use crate::Sim;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::{Project, Role, is_object_id, new_id, ts};

fn in_use(p: &Project, r: &Role) -> bool {
    let matches = |v: &Option<Value>| {
        v.as_ref().is_some_and(|v| {
            v.get("enabled") == Some(&json!(true))
                && v.get("roleId").and_then(Value::as_str) == Some(&r.role_id)
        })
    };
    match r.provider_name.as_str() {
        "AWS" => p
            .ear
            .aws
            .as_ref()
            .is_some_and(|a| a.enabled && a.role_id.as_deref() == Some(&r.role_id)),
        "AZURE" => matches(&p.ear.azure),
        _ => matches(&p.ear.gcp),
    }
}

pub fn render_role(p: &Project, r: &Role) -> Value {
    let usages = if in_use(p, r) {
        json!([{"featureType": "ENCRYPTION_AT_REST", "featureId": null}])
    } else {
        json!([])
    };
    match r.provider_name.as_str() {
        "AWS" => {
            let mut v = json!({
                "providerName": "AWS",
                "roleId": r.role_id,
                "atlasAWSAccountArn": r.atlas_aws_account_arn,
                "atlasAssumedRoleExternalId": r.external_id,
                "createdDate": ts(r.created_date),
                "featureUsages": usages,
            });
            if let (Some(d), Some(arn)) = (r.authorized_date, &r.iam_assumed_role_arn) {
                v["authorizedDate"] = json!(ts(d));
                v["iamAssumedRoleArn"] = json!(arn);
            }
            v
        }
        "AZURE" => {
            let mut v = Value::Object(r.extra.clone());
            v["providerName"] = json!("AZURE");
            v["_id"] = json!(r.role_id);
            v["createdDate"] = json!(ts(r.created_date));
            v["lastUpdatedDate"] = json!(ts(r.authorized_date.unwrap_or(r.created_date)));
            v["featureUsages"] = usages;
            v
        }
        _ => {
            let mut v = Value::Object(r.extra.clone());
            v["providerName"] = json!("GCP");
            v["roleId"] = json!(r.role_id);
            v["createdDate"] = json!(ts(r.created_date));
            v["status"] = json!("COMPLETE");
            v["featureUsages"] = usages;
            v
        }
    }
}

pub async fn list_roles(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path(group_id): Path<String>,
) -> ApiResult<Response> {
    let st = sim.state.lock();
    let proj = project(&st, &p, &group_id)?;
    let of = |prov: &str| -> Vec<Value> {
        proj.roles
            .iter()
            .filter(|r| r.provider_name == prov)
            .map(|r| render_role(proj, r))
            .collect()
    };
    Ok(wire.ok(json!({
        "awsIamRoles": of("AWS"),
        "azureServicePrincipals": of("AZURE"),
        "gcpServiceAccounts": of("GCP"),
    })))
}

fn provider_of(body: &Map<String, Value>) -> ApiResult<String> {
    match body.get("providerName") {
        None | Some(Value::Null) => Err(ApiError::missing_attribute("providerName")),
        Some(Value::String(s)) if ["AWS", "AZURE", "GCP"].contains(&s.as_str()) => Ok(s.clone()),
        Some(Value::String(s)) => Err(ApiError::invalid_enum(s, "providerName")),
        Some(_) => Err(ApiError::invalid_attribute("providerName")),
    }
}

fn uuid_field(body: &Map<String, Value>, name: &str) -> ApiResult<String> {
    match body.get(name) {
        Some(Value::String(s)) if uuid::Uuid::parse_str(s).is_ok() => Ok(s.clone()),
        Some(_) => Err(ApiError::invalid_attribute(name)),
        None => Err(ApiError::missing_attribute(name)),
    }
}

pub async fn create_role(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path(group_id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let out = {
        let mut st = sim.state.lock();
        let proj = project_mut(&mut st, &p, &group_id)?;
        let body = json_object(&body)?;
        let provider = provider_of(&body)?;
        let mut extra = Map::new();
        match provider.as_str() {
            "AZURE" => {
                for f in ["atlasAzureAppId", "servicePrincipalId", "tenantId"] {
                    extra.insert(f.into(), json!(uuid_field(&body, f)?));
                }
            }
            "GCP" => {
                let mut rng = rand::rng();
                let alnum = |n: usize, rng: &mut rand::rngs::ThreadRng| -> String {
                    (0..n)
                        .map(|_| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[rng.random_range(0..36)]))
                        .collect()
                };
                let sa = format!(
                    "mongodb-atlas-{}@p-{}.iam.gserviceaccount.com",
                    alnum(16, &mut rng),
                    alnum(24, &mut rng)
                );
                extra.insert("gcpServiceAccountForAtlas".into(), json!(sa));
            }
            _ => {}
        }
        let aws = provider == "AWS";
        let role = Role {
            role_id: new_id(),
            provider_name: provider,
            created_date: Utc::now(),
            atlas_aws_account_arn: aws.then(|| sim.config.atlas_aws_account_arn.clone()),
            external_id: aws.then(|| uuid::Uuid::new_v4().to_string()),
            authorized_date: None,
            iam_assumed_role_arn: None,
            extra,
        };
        let v = render_role(proj, &role);
        proj.roles.push(role);
        v
    };
    sim.touch();
    Ok(wire.ok(out))
}

pub async fn get_role(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((group_id, role_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let st = sim.state.lock();
    let proj = project(&st, &p, &group_id)?;
    let role = proj
        .roles
        .iter()
        .find(|r| r.role_id == role_id)
        .ok_or_else(|| ApiError::resource_not_found(&role_id))?;
    Ok(wire.ok(render_role(proj, role)))
}

pub async fn authorize_role(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((group_id, role_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let (arn, external_id) = {
        let st = sim.state.lock();
        let proj = project(&st, &p, &group_id)?;
        if !is_object_id(&role_id) {
            return Err(ApiError::invalid_path_parameter("roleId", &role_id));
        }
        let role = proj
            .roles
            .iter()
            .find(|r| r.role_id == role_id)
            .ok_or_else(|| ApiError::resource_not_found(&role_id))?;
        let body = json_object(&body)?;
        let provider = provider_of(&body)?;
        if provider != role.provider_name {
            return Err(ApiError::invalid_attribute("providerName"));
        }
        if provider != "AWS" {
            (None, None)
        } else {
            let arn = match body.get("iamAssumedRoleArn") {
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(ApiError::invalid_attribute("iamAssumedRoleArn")),
                None => return Err(ApiError::missing_attribute("iamAssumedRoleArn")),
            };
            if !crate::aws::is_role_arn(&arn) {
                return Err(ApiError::invalid_attribute("iamAssumedRoleArn"));
            }
            (Some(arn), role.external_id.clone())
        }
    };
    if let Some(arn) = &arn {
        sim.aws
            .check_trust(arn, external_id.as_deref().unwrap_or(""))
            .await
            .map_err(|f| f.to_api_error(&group_id))?;
    }
    let out = {
        let mut st = sim.state.lock();
        let proj = project_mut(&mut st, &p, &group_id)?;
        let role = proj
            .roles
            .iter_mut()
            .find(|r| r.role_id == role_id)
            .ok_or_else(|| ApiError::resource_not_found(&role_id))?;
        role.authorized_date = Some(Utc::now());
        if arn.is_some() {
            role.iam_assumed_role_arn = arn;
        }
        let role = role.clone();
        // Re-validate on the next read: the key check depends on the role.
        if let Some(a) = proj.ear.aws.as_mut() {
            a.checked_at = None;
        }
        render_role(proj, &role)
    };
    sim.touch();
    Ok(wire.ok(out))
}

pub async fn deauthorize_role(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path((group_id, cp, role_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    {
        let mut st = sim.state.lock();
        let proj = project_mut(&mut st, &p, &group_id)?;
        if !["AWS", "AZURE", "GCP"].contains(&cp.as_str()) {
            return Err(ApiError::invalid_path_parameter("cloudProvider", &cp));
        }
        if !is_object_id(&role_id) {
            return Err(ApiError::invalid_path_parameter("roleId", &role_id));
        }
        let role = proj
            .roles
            .iter()
            .find(|r| r.role_id == role_id && r.provider_name == cp)
            .ok_or_else(|| ApiError::resource_not_found(&role_id))?;
        if in_use(proj, role) {
            // Atlas's code for this case is not documented; the simulator refuses, so ordering bugs surface.
            return Err(ApiError::new(
                400,
                "CLOUD_PROVIDER_ACCESS_ROLE_IN_USE",
                format!("The Cloud Provider Access role ({role_id}) is in use by Encryption at Rest."),
            )
            .params([role_id.as_str()]));
        }
        proj.roles.retain(|r| r.role_id != role_id);
    }
    sim.touch();
    Ok(wire.no_content())
}
