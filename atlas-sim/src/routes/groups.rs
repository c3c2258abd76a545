//! Projects (`/groups/{groupId}`, `/groups/byName/{groupName}`), alerts, and the OAuth token endpoints.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Wire, project};
use crate::Sim;
use crate::auth::{self, Principal};
use crate::error::{ApiError, ApiResult};

pub async fn get_group(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path(group_id): Path<String>,
) -> ApiResult<Response> {
    let st = sim.state.lock();
    Ok(wire.ok(project(&st, &p, &group_id)?.render()))
}

pub async fn get_group_by_name(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::invalid_path_parameter("groupName", &name));
    }
    let st = sim.state.lock();
    let all = st.project_by_name(&name);
    let reachable: Vec<_> = all
        .iter()
        .filter(|proj| {
            let org_name = st
                .orgs
                .iter()
                .find(|o| o.id == proj.org_id)
                .map(|o| o.name.as_str())
                .unwrap_or("");
            p.reaches(&proj.id, &proj.name, &proj.org_id, org_name)
        })
        .collect();
    match reachable.as_slice() {
        [one] => Ok(wire.ok(one.render())),
        [] if all.is_empty() && p.reaches_all() => Err(ApiError::new(
            404,
            "GROUP_NAME_NOT_FOUND",
            format!("No group with name {name} exists."),
        )
        .params([name.as_str()])),
        [] => Err(ApiError::new(
            401,
            "NOT_IN_GROUP",
            format!("Current user is not in the group, or the group does not exist ({name})."),
        )
        .params([name.as_str()])),
        _ => Err(ApiError::new(
            409,
            "MULTIPLE_GROUPS",
            format!("Multiple groups exist with the name {name}."),
        )
        .params([name.as_str()])),
    }
}

pub async fn list_alerts(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path(group_id): Path<String>,
) -> ApiResult<Response> {
    let status = wire.param("status").map(String::from);
    if let Some(s) = &status
        && !["OPEN", "TRACKING", "CLOSED"].contains(&s.as_str())
    {
        return Err(ApiError::invalid_enum(s, "status"));
    }
    let st = sim.state.lock();
    let proj = project(&st, &p, &group_id)?;
    let items: Vec<Value> = proj
        .alerts
        .iter()
        .filter(|a| {
            status
                .as_deref()
                .is_none_or(|s| a.get("status").and_then(Value::as_str) == Some(s))
        })
        .cloned()
        .collect();
    Ok(wire.ok(wire.page(&format!("{}/groups/{group_id}/alerts", super::V), items)))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"MongoDB Atlas\"".parse().unwrap(),
        );
    }
    r
}

pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let s = String::from_utf8_lossy(body);
    s.split('&')
        .filter(|x| !x.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Client credentials from `Authorization: Basic` or the form. In the header, id and secret are each
/// application/x-www-form-urlencoded before base64 (RFC 6749 §2.3.1), as the official Go SDK (golang.org/x/oauth2)
/// sends them, so they are decoded here: a secret with `+`, `/` or `=` only matches once decoded.
fn client_creds(headers: &HeaderMap, form: &[(String, String)]) -> Option<(String, String)> {
    if let Some(b) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let dec = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        };
        let (id, secret) = auth::parse_basic(b)?;
        return Some((dec(&id)?, dec(&secret)?));
    }
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Some((get("client_id")?, get("client_secret")?))
}

/// `POST /api/oauth/token` (client credentials grant).
pub async fn oauth_token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    let Some((id, secret)) = client_creds(&headers, &form) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        );
    };
    let grant = form
        .iter()
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.as_str());
    if grant != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only grant_type=client_credentials is supported.",
        );
    }
    let ttl = sim.token_ttl_secs.load(Ordering::Relaxed);
    let token = {
        let mut st = sim.state.lock();
        if auth::check_client(&st, &id, &secret).is_err() {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed.",
            );
        }
        auth::mint_token(&mut st, &id, std::time::Duration::from_secs(ttl))
    };
    sim.touch();
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl}).to_string(),
    )
        .into_response()
}

/// `POST /api/oauth/revoke` (RFC 7009: unknown tokens are not an error).
pub async fn oauth_revoke(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    let Some((id, secret)) = client_creds(&headers, &form) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        );
    };
    let mut st = sim.state.lock();
    if auth::check_client(&st, &id, &secret).is_err() {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        );
    }
    if let Some(tok) = form.iter().find(|(k, _)| k == "token").map(|(_, v)| v.clone())
        && st.tokens.get(&tok).is_some_and(|t| t.client_id == id)
    {
        st.tokens.remove(&tok);
    }
    drop(st);
    sim.touch();
    StatusCode::OK.into_response()
}
