//! `GET /rateLimits` and `GET /rateLimits/{endpointSetId}`: the configured token buckets published as
//! Atlas endpoint sets (see [`crate::faults::RateLimitConfig::endpoint_sets`]). While unpublished both
//! answer as an Atlas that lacks the endpoint (404) or a key that lacks the role (403).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::Response;

use super::{Wire, project};
use crate::Sim;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::faults::{EndpointSet, Scope};
use crate::state::is_object_id;

/// The published sets, or the answer of an Atlas that does not publish them.
fn published_sets(sim: &Sim, path: &str) -> ApiResult<Vec<EndpointSet>> {
    let config = sim.rate.lock().config.clone();
    if config.published {
        return Ok(config.endpoint_sets());
    }
    Err(match config.hidden_status {
        Some(403) => ApiError::new(
            403,
            "USER_CANNOT_ACCESS_RATE_LIMITS",
            "The current user is not allowed to read the rate limits.",
        ),
        _ => ApiError::new(404, "RESOURCE_NOT_FOUND", format!("Cannot find resource {path}."))
            .params([path.to_string()]),
    })
}

/// `groupId`, `orgId`, `userId` and `ipAddress` each ask for the sets of one scope, with the limits that
/// apply to that entity (the sim has no per-entity overrides, so those are the configured ones).
fn requested_scope(sim: &Sim, p: &Principal, wire: &Wire) -> ApiResult<Option<Scope>> {
    let mut scope = None;
    if let Some(group_id) = wire.param("groupId") {
        project(&sim.state.lock(), p, group_id)?;
        scope = Some(Scope::Group);
    }
    if let Some(org_id) = wire.param("orgId") {
        if !is_object_id(org_id) {
            return Err(ApiError::invalid_query_parameter("orgId"));
        }
        scope = Some(Scope::Organization);
    }
    if wire.param("userId").is_some() {
        scope = Some(Scope::User);
    }
    if wire.param("ipAddress").is_some() {
        scope = Some(Scope::Ip);
    }
    Ok(scope)
}

pub async fn list_rate_limits(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
) -> ApiResult<Response> {
    let path = "/api/atlas/v2/rateLimits";
    let sets = published_sets(&sim, path)?;
    let scope = requested_scope(&sim, &p, &wire)?;
    let names: Vec<&str> = wire.params("name");
    let paths: Vec<&str> = wire.params("endpointPath");
    let items = sets
        .iter()
        .filter(|s| scope.is_none_or(|scope| s.scope == scope))
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .filter(|s| paths.is_empty() || s.endpoints.iter().any(|(_, path)| paths.contains(path)))
        .map(EndpointSet::render)
        .collect();
    Ok(wire.ok(wire.page(path, items)))
}

pub async fn get_rate_limit(
    State(sim): State<Arc<Sim>>,
    Extension(p): Extension<Principal>,
    wire: Wire,
    Path(endpoint_set_id): Path<String>,
) -> ApiResult<Response> {
    let path = format!("/api/atlas/v2/rateLimits/{endpoint_set_id}");
    let sets = published_sets(&sim, &path)?;
    requested_scope(&sim, &p, &wire)?;
    let set = sets.iter().find(|s| s.id == endpoint_set_id).ok_or_else(|| {
        ApiError::new(404, "RESOURCE_NOT_FOUND", format!("Cannot find resource {path}."))
            .params([path.clone()])
    })?;
    Ok(wire.ok(set.render()))
}
