//! Routing, the per-endpoint version table, and the wire helpers every handler uses.

pub mod cloud_provider_access;
pub mod clusters;
pub mod control;
pub mod control_plane_ips;
pub mod encryption_at_rest;
pub mod groups;
pub mod rate_limits;
pub mod snapshots;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::Sim;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::{Project, State, is_object_id};

pub const V: &str = "/api/atlas/v2";

pub const AWS_REGIONS: [&str; 39] = [
    "US_GOV_WEST_1",
    "US_GOV_EAST_1",
    "US_EAST_1",
    "US_EAST_2",
    "US_WEST_1",
    "US_WEST_2",
    "CA_CENTRAL_1",
    "EU_NORTH_1",
    "EU_WEST_1",
    "EU_WEST_2",
    "EU_WEST_3",
    "EU_CENTRAL_1",
    "EU_CENTRAL_2",
    "AP_EAST_1",
    "AP_EAST_2",
    "AP_NORTHEAST_1",
    "AP_NORTHEAST_2",
    "AP_NORTHEAST_3",
    "AP_SOUTHEAST_1",
    "AP_SOUTHEAST_2",
    "AP_SOUTHEAST_3",
    "AP_SOUTHEAST_4",
    "AP_SOUTHEAST_5",
    "AP_SOUTHEAST_6",
    "AP_SOUTHEAST_7",
    "AP_SOUTH_1",
    "AP_SOUTH_2",
    "SA_EAST_1",
    "CN_NORTH_1",
    "CN_NORTHWEST_1",
    "ME_SOUTH_1",
    "ME_CENTRAL_1",
    "AF_SOUTH_1",
    "EU_SOUTH_1",
    "EU_SOUTH_2",
    "IL_CENTRAL_1",
    "CA_WEST_1",
    "MX_CENTRAL_1",
    "GLOBAL",
];

/// The negotiated version date, put into request extensions by the Atlas layer.
#[derive(Clone, Debug)]
pub struct ApiVersion(pub String);

type Versions = &'static [(&'static str, Option<&'static str>)];
const V2023: Versions = &[("2023-01-01", None)];
const CLUSTER_READ: Versions = &[
    ("2024-08-05", None),
    ("2023-02-01", Some("2027-07-01")),
    ("2023-01-01", Some("2027-07-01")),
];
const CLUSTER_PATCH: Versions = &[
    ("2024-10-23", None),
    ("2024-08-05", Some("2027-03-01")),
    ("2023-02-01", Some("2027-07-01")),
    ("2023-01-01", Some("2027-07-01")),
];
const CONTROL_PLANE: Versions = &[("2023-11-15", None)];
const RATE_LIMITS: Versions = &[("2025-03-12", None)];

/// Versions (and sunsets) per endpoint: the newest is the official specification's (checked by the
/// conformance suite); the older ones are those Atlas still serves until their sunset.
pub fn versions_for(method: &Method, route: &str) -> Versions {
    let clusters_one = format!("{V}/groups/{{groupId}}/clusters/{{clusterName}}");
    if route == format!("{V}/unauth/controlPlaneIPAddresses") {
        CONTROL_PLANE
    } else if route.starts_with(&format!("{V}/rateLimits")) {
        RATE_LIMITS
    } else if route == format!("{V}/groups/{{groupId}}/clusters") {
        CLUSTER_READ
    } else if route == clusters_one {
        if *method == Method::PATCH {
            CLUSTER_PATCH
        } else {
            CLUSTER_READ
        }
    } else {
        V2023
    }
}

/// Every Atlas Administration API operation the simulator serves, as the official specification names
/// it (method, path template). The spec-driven judges read this list: schemathesis runs over exactly
/// these operations, and the conformance suite checks that the router serves no other and each is in
/// the specification.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("GET", "/api/atlas/v2/groups/{groupId}"),
    ("GET", "/api/atlas/v2/groups/byName/{groupName}"),
    ("GET", "/api/atlas/v2/groups/{groupId}/encryptionAtRest"),
    ("PATCH", "/api/atlas/v2/groups/{groupId}/encryptionAtRest"),
    (
        "GET",
        "/api/atlas/v2/groups/{groupId}/encryptionAtRest/{cloudProvider}/privateEndpoints",
    ),
    (
        "POST",
        "/api/atlas/v2/groups/{groupId}/encryptionAtRest/{cloudProvider}/privateEndpoints",
    ),
    (
        "GET",
        "/api/atlas/v2/groups/{groupId}/encryptionAtRest/{cloudProvider}/privateEndpoints/{endpointId}",
    ),
    (
        "DELETE",
        "/api/atlas/v2/groups/{groupId}/encryptionAtRest/{cloudProvider}/privateEndpoints/{endpointId}",
    ),
    ("GET", "/api/atlas/v2/groups/{groupId}/cloudProviderAccess"),
    ("POST", "/api/atlas/v2/groups/{groupId}/cloudProviderAccess"),
    (
        "GET",
        "/api/atlas/v2/groups/{groupId}/cloudProviderAccess/{roleId}",
    ),
    (
        "PATCH",
        "/api/atlas/v2/groups/{groupId}/cloudProviderAccess/{roleId}",
    ),
    (
        "DELETE",
        "/api/atlas/v2/groups/{groupId}/cloudProviderAccess/{cloudProvider}/{roleId}",
    ),
    ("GET", "/api/atlas/v2/groups/{groupId}/clusters"),
    ("GET", "/api/atlas/v2/groups/{groupId}/clusters/{clusterName}"),
    ("PATCH", "/api/atlas/v2/groups/{groupId}/clusters/{clusterName}"),
    (
        "GET",
        "/api/atlas/v2/groups/{groupId}/clusters/{clusterName}/backup/snapshots",
    ),
    (
        "GET",
        "/api/atlas/v2/groups/{groupId}/clusters/{clusterName}/backup/snapshots/{snapshotId}",
    ),
    (
        "GET",
        "/api/atlas/v2/groups/{groupId}/clusters/{clusterName}/backup/snapshots/shardedClusters",
    ),
    (
        "GET",
        "/api/atlas/v2/groups/{groupId}/clusters/{clusterName}/backup/snapshots/shardedCluster/{snapshotId}",
    ),
    ("GET", "/api/atlas/v2/groups/{groupId}/alerts"),
    ("GET", "/api/atlas/v2/unauth/controlPlaneIPAddresses"),
    ("GET", "/api/atlas/v2/rateLimits"),
    ("GET", "/api/atlas/v2/rateLimits/{endpointSetId}"),
];

pub fn router(sim: Arc<Sim>) -> Router {
    use cloud_provider_access as cpa;
    use encryption_at_rest as ear;
    let atlas = Router::new()
        .route(&format!("{V}/groups/{{groupId}}"), get(groups::get_group))
        .route(&format!("{V}/groups/byName/{{groupName}}"), get(groups::get_group_by_name))
        .route(
            &format!("{V}/groups/{{groupId}}/encryptionAtRest"),
            get(ear::get_ear).patch(ear::patch_ear),
        )
        .route(
            &format!("{V}/groups/{{groupId}}/encryptionAtRest/{{cloudProvider}}/privateEndpoints"),
            get(ear::list_endpoints).post(ear::create_endpoint),
        )
        .route(
            &format!("{V}/groups/{{groupId}}/encryptionAtRest/{{cloudProvider}}/privateEndpoints/{{endpointId}}"),
            get(ear::get_endpoint).delete(ear::delete_endpoint),
        )
        .route(
            &format!("{V}/groups/{{groupId}}/cloudProviderAccess"),
            get(cpa::list_roles).post(cpa::create_role),
        )
        .route(
            &format!("{V}/groups/{{groupId}}/cloudProviderAccess/{{roleId}}"),
            get(cpa::get_role).patch(cpa::authorize_role),
        )
        .route(
            &format!("{V}/groups/{{groupId}}/cloudProviderAccess/{{cloudProvider}}/{{roleId}}"),
            axum::routing::delete(cpa::deauthorize_role),
        )
        .route(&format!("{V}/groups/{{groupId}}/clusters"), get(clusters::list_clusters))
        .route(
            &format!("{V}/groups/{{groupId}}/clusters/{{clusterName}}"),
            get(clusters::get_cluster).patch(clusters::patch_cluster),
        )
        .route(
            &format!("{V}/groups/{{groupId}}/clusters/{{clusterName}}/backup/snapshots"),
            get(snapshots::list_snapshots),
        )
        .route(
            &format!("{V}/groups/{{groupId}}/clusters/{{clusterName}}/backup/snapshots/{{snapshotId}}"),
            get(snapshots::get_snapshot),
        )
        .route(
            &format!("{V}/groups/{{groupId}}/clusters/{{clusterName}}/backup/snapshots/shardedClusters"),
            get(snapshots::list_sharded),
        )
        .route(
            &format!("{V}/groups/{{groupId}}/clusters/{{clusterName}}/backup/snapshots/shardedCluster/{{snapshotId}}"),
            get(snapshots::get_sharded),
        )
        .route(&format!("{V}/groups/{{groupId}}/alerts"), get(groups::list_alerts))
        .route(&format!("{V}/unauth/controlPlaneIPAddresses"), get(control_plane_ips::get_ips))
        .route(&format!("{V}/rateLimits"), get(rate_limits::list_rate_limits))
        .route(
            &format!("{V}/rateLimits/{{endpointSetId}}"),
            get(rate_limits::get_rate_limit),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(sim.clone(), crate::server::atlas_layer));

    let oauth = Router::new()
        .route("/api/oauth/token", post(groups::oauth_token))
        .route("/api/oauth/revoke", post(groups::oauth_revoke));

    atlas
        .merge(oauth)
        .merge(control::router())
        .fallback(not_found)
        .with_state(sim)
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path().to_string();
    ApiError::new(404, "RESOURCE_NOT_FOUND", format!("Cannot find resource {path}."))
        .params([path])
        .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    ApiError::new(
        405,
        "METHOD_NOT_ALLOWED",
        format!("Method {} is not allowed on {}.", req.method(), req.uri().path()),
    )
    .into_response()
}

/// Version, `pretty`, `envelope` and pagination, read once per request.
pub struct Wire {
    pub version: String,
    pub pretty: bool,
    pub envelope: bool,
    pub page_num: usize,
    pub items_per_page: usize,
    pub include_count: bool,
    pub query: Vec<(String, String)>,
    /// `http://<Host>` of the request: `links[].href` point at the simulator itself, as Atlas's point at Atlas.
    pub base: Option<String>,
}

fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::invalid_query_parameter(name)),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Wire {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let version = parts
            .extensions
            .get::<ApiVersion>()
            .map(|v| v.0.clone())
            .unwrap_or_else(|| "2023-01-01".into());
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|s| !s.is_empty())
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
            })
            .unwrap_or_default();
        let mut w = Wire {
            version,
            pretty: false,
            envelope: false,
            page_num: 1,
            items_per_page: 100,
            include_count: true,
            query: vec![],
            base: None,
        };
        for (k, v) in &query {
            match k.as_str() {
                "pretty" => w.pretty = parse_bool(k, v)?,
                "envelope" => w.envelope = parse_bool(k, v)?,
                "includeCount" => w.include_count = parse_bool(k, v)?,
                "pageNum" => {
                    w.page_num = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| ApiError::invalid_query_parameter(k))?
                }
                "itemsPerPage" => {
                    w.items_per_page = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=500).contains(n))
                        .ok_or_else(|| ApiError::invalid_query_parameter(k))?
                }
                _ => {}
            }
        }
        w.query = query;
        w.base = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty())
            .map(|h| format!("http://{h}"));
        Ok(w)
    }
}

impl Wire {
    /// Every value of a repeatable query parameter (`?name=a&name=b`).
    pub fn params(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A success body under the negotiated vnd media type.
    pub fn reply(&self, status: StatusCode, mut body: Value) -> Response {
        if let Some(base) = &self.base {
            rebase_links(&mut body, base);
        }
        let body = if self.envelope {
            match body {
                Value::Object(mut m) if m.contains_key("results") => {
                    m.insert("status".into(), json!(status.as_u16()));
                    Value::Object(m)
                }
                other => json!({"status": status.as_u16(), "content": other}),
            }
        } else {
            body
        };
        let bytes = if self.pretty {
            serde_json::to_vec_pretty(&body)
        } else {
            serde_json::to_vec(&body)
        }
        .unwrap_or_default();
        let mut resp = (status, bytes).into_response();
        if let Ok(ct) = HeaderValue::from_str(&format!("application/vnd.atlas.{}+json", self.version)) {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        resp
    }

    pub fn ok(&self, body: Value) -> Response {
        self.reply(StatusCode::OK, body)
    }

    pub fn no_content(&self) -> Response {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        if let Ok(ct) = HeaderValue::from_str(&format!("application/vnd.atlas.{}+json", self.version)) {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        resp
    }

    /// Atlas pagination: `results`, `totalCount` (unless includeCount=false) and `links` (self/next/previous).
    pub fn page(&self, path: &str, items: Vec<Value>) -> Value {
        let total = items.len();
        let start = (self.page_num - 1).saturating_mul(self.items_per_page);
        let results: Vec<Value> = items.into_iter().skip(start).take(self.items_per_page).collect();
        let href = |n: usize| {
            format!(
                "{}{path}?includeCount={}&itemsPerPage={}&pageNum={n}",
                crate::state::ATLAS_BASE,
                self.include_count,
                self.items_per_page
            )
        };
        let mut links = vec![json!({"href": href(self.page_num), "rel": "self"})];
        if self.page_num > 1 {
            links.insert(0, json!({"href": href(self.page_num - 1), "rel": "previous"}));
        }
        if start + results.len() < total {
            links.push(json!({"href": href(self.page_num + 1), "rel": "next"}));
        }
        let mut out = json!({"results": results, "links": links});
        if self.include_count {
            out["totalCount"] = json!(total);
        }
        out
    }
}

/// Rewrites every `href` under the real Atlas host (how stored documents and pages are built) to `base`.
pub fn rebase_links(v: &mut Value, base: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Value::String(s) if k == "href" => {
                        if let Some(rest) = s.strip_prefix(crate::state::ATLAS_BASE) {
                            *s = format!("{base}{rest}");
                        }
                    }
                    _ => rebase_links(x, base),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rebase_links(x, base)),
        _ => {}
    }
}

/// Parses a request body: must be JSON (MALFORMED_JSON) and an object (INVALID_JSON).
pub fn json_object(body: &[u8]) -> ApiResult<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid_json()),
        Err(_) => Err(ApiError::malformed_json()),
    }
}

fn check_access(st: &State, p: &Principal, group_id: &str) -> ApiResult<()> {
    if !is_object_id(group_id) {
        return Err(ApiError::invalid_group_id(group_id));
    }
    match st.projects.get(group_id) {
        Some(proj) => {
            let org_name = st
                .orgs
                .iter()
                .find(|o| o.id == proj.org_id)
                .map(|o| o.name.as_str())
                .unwrap_or("");
            if p.reaches(&proj.id, &proj.name, &proj.org_id, org_name) {
                Ok(())
            } else {
                Err(ApiError::not_in_group(group_id))
            }
        }
        None if p.reaches_all() => Err(ApiError::group_not_found(group_id)),
        None => Err(ApiError::not_in_group(group_id)),
    }
}

/// The project, if the caller may reach it: unknown groups are 404 GROUP_NOT_FOUND for callers that reach
/// every project, and 401 NOT_IN_GROUP otherwise (so existence isn't leaked), as Atlas documents.
pub fn project<'a>(st: &'a State, p: &Principal, group_id: &str) -> ApiResult<&'a Project> {
    check_access(st, p, group_id)?;
    st.projects
        .get(group_id)
        .ok_or_else(|| ApiError::group_not_found(group_id))
}

pub fn project_mut<'a>(st: &'a mut State, p: &Principal, group_id: &str) -> ApiResult<&'a mut Project> {
    check_access(st, p, group_id)?;
    st.projects
        .get_mut(group_id)
        .ok_or_else(|| ApiError::group_not_found(group_id))
}

pub fn check_object_id(name: &str, value: &str) -> ApiResult<()> {
    if is_object_id(value) {
        Ok(())
    } else {
        Err(ApiError::invalid_path_parameter(name, value))
    }
}
