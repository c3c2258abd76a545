//! The accept loop and the layer every Atlas request passes through (faults → auth → rate limit →
//! version negotiation → handler → call log). The loop is hand-rolled rather than `axum::serve` so a fault
//! can close a connection without answering.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::Sim;
use crate::auth::{self, BearerOutcome, DigestOutcome, Principal};
use crate::error::{ApiError, ErrorCode};
use crate::faults::{CallRecord, FaultKind, RateOutcome};
use crate::routes::{self, ApiVersion};

/// Lets a handler-side fault close the connection it arrived on.
#[derive(Clone)]
pub struct ConnKill(pub Arc<Notify>);

pub async fn serve(listener: tokio::net::TcpListener, sim: Arc<Sim>, mut shutdown: watch::Receiver<bool>) {
    let app = routes::router(sim);
    loop {
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let k2 = kill.clone();
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnKill(k2.clone()));
                app.clone().oneshot(req.map(Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

pub async fn persister(sim: Arc<Sim>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = sim.persist_notify.notified() => {}
            _ = shutdown.changed() => return,
        }
        // Debounce: a burst of mutations costs one write.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if sim.dirty.load(Ordering::Acquire)
            && let Err(e) = sim.persist_now()
        {
            tracing::warn!(error = %e, "could not write the state file");
        }
    }
}

fn group_id_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/atlas/v2/groups/")?;
    let seg = rest.split('/').next()?;
    crate::state::is_object_id(seg).then_some(seg)
}

/// Parses the versioned media type; Ok(None) when the header names no Atlas version.
pub fn media_version(value: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let mt = part.split(';').next()?.trim();
        let v = mt.strip_prefix("application/vnd.atlas.")?.strip_suffix("+json")?;
        chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?;
        Some(v.to_string())
    })
}

fn negotiate(sim: &Sim, method: &Method, route: &str, req: &Request) -> Result<String, ApiError> {
    let table = routes::versions_for(method, route);
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let not_acceptable = || {
        ApiError::new(
            406,
            "INVALID_VERSION_DATE",
            "Invalid accept header or version date.",
        )
    };
    let Some(version) = media_version(accept) else {
        return Err(not_acceptable());
    };
    let Some((_, sunset)) = table.iter().find(|(v, _)| *v == version) else {
        return Err(not_acceptable());
    };
    if let Some(sunset) = sunset {
        let today = sim
            .state
            .lock()
            .today_override
            .unwrap_or_else(|| Utc::now().date_naive());
        let sunset = chrono::NaiveDate::parse_from_str(sunset, "%Y-%m-%d").unwrap_or(chrono::NaiveDate::MAX);
        if today >= sunset {
            return Err(ApiError::new(
                410,
                "VERSION_GONE",
                format!(
                    "The requested API version {version} is no longer supported; it was sunset on {sunset}."
                ),
            )
            .params([version.clone()]));
        }
    }
    if matches!(*method, Method::POST | Method::PATCH | Method::PUT) {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if media_version(ct).as_deref() != Some(version.as_str()) {
            return Err(ApiError::new(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                format!("Content-Type must be application/vnd.atlas.{version}+json."),
            ));
        }
    }
    Ok(version)
}

fn authenticate(sim: &Sim, req: &Request) -> Result<Principal, ApiError> {
    let challenge = |stale: bool| {
        let mut e = ApiError::user_unauthorized();
        for c in auth::challenge(&sim.nonces, stale, sim.config.digest_sha256_challenge) {
            e = e.header(header::WWW_AUTHENTICATE, c);
        }
        e
    };
    let Some(authz) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(challenge(false));
    };
    if let Some(token) = authz
        .strip_prefix("Bearer ")
        .or_else(|| authz.strip_prefix("bearer "))
    {
        let mut st = sim.state.lock();
        return match auth::verify_bearer(token.trim(), &mut st) {
            BearerOutcome::Ok(p) => Ok(p),
            BearerOutcome::Expired => Err(ApiError::new(
                401,
                "USER_UNAUTHORIZED",
                "The access token has expired.",
            )),
            BearerOutcome::Unknown => Err(ApiError::new(
                401,
                "USER_UNAUTHORIZED",
                "The access token is invalid.",
            )),
        };
    }
    let uri = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let st = sim.state.lock();
    match auth::verify_digest(authz, req.method().as_str(), uri, &st, &sim.nonces) {
        DigestOutcome::Ok(p) => Ok(p),
        DigestOutcome::Stale => {
            drop(st);
            Err(challenge(true))
        }
        DigestOutcome::Denied => {
            drop(st);
            Err(challenge(false))
        }
    }
}

/// The layer around every Atlas route.
pub async fn atlas_layer(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    // Atlas finishes a request it has received even when the caller stops waiting (a client timeout, a
    // crash): the call runs in a task of its own, so a closed connection does not cancel it half-way.
    match tokio::spawn(answer_call(sim, req, next)).await {
        Ok(Some(resp)) => resp,
        // A `drop` fault: the connection is being closed; never answer on it.
        Ok(None) => std::future::pending().await,
        Err(e) => {
            ApiError::new(500, "UNEXPECTED_ERROR", format!("simulator task failed: {e}")).into_response()
        }
    }
}

/// One Atlas call through faults, authentication, rate limits and version negotiation to its route,
/// logged. `None` when a fault drops the connection instead of answering.
async fn answer_call(sim: Arc<Sim>, mut req: Request, next: Next) -> Option<Response> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(String::from);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let version = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(media_version);
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let kill = req.extensions().get::<ConnKill>().cloned();
    let mut principal_label = None;

    let record = |status: u16, error_code: Option<String>, principal: Option<String>| CallRecord {
        seq: 0,
        timestamp: Utc::now(),
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        route: route.clone(),
        status,
        error_code,
        duration_ms: start.elapsed().as_secs_f64() * 1000.0,
        principal,
        version: version.clone(),
        user_agent: user_agent.clone(),
    };

    let decision = sim.faults.lock().decide(method.as_str(), &path);
    let latency = sim.latency_ms.load(Ordering::Relaxed) + decision.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }

    let resp: Response = 'resp: {
        match decision.terminal {
            Some(FaultKind::Drop) => {
                sim.calls.lock().push(record(0, None, None));
                if let Some(k) = kill {
                    k.0.notify_one();
                }
                return None;
            }
            Some(FaultKind::Status { status, error_code }) => {
                let code: std::borrow::Cow<'static, str> = match error_code {
                    Some(c) => c.into(),
                    None if status == 503 => "SERVICE_UNAVAILABLE".into(),
                    None if status >= 500 => "UNEXPECTED_ERROR".into(),
                    None => "INJECTED_FAULT".into(),
                };
                let mut e = ApiError::new(status, code, "Injected fault.");
                if status == 503 {
                    e = e.header(header::RETRY_AFTER, 1);
                }
                break 'resp e.into_response();
            }
            Some(FaultKind::RateLimit { retry_after }) => {
                break 'resp ApiError::new(429, "RATE_LIMITED", "Too many requests. Please retry later.")
                    .header(header::RETRY_AFTER, retry_after)
                    .into_response();
            }
            _ => {}
        }

        let route_str = route.clone().unwrap_or_default();
        let is_unauth = route_str.starts_with("/api/atlas/v2/unauth/");
        if !is_unauth && route.is_some() {
            match authenticate(&sim, &req) {
                Ok(p) => {
                    principal_label = Some(p.label());
                    req.extensions_mut().insert(p);
                }
                Err(e) => break 'resp e.into_response(),
            }
        }

        let mut rl_headers = None;
        if !is_unauth && route.is_some() {
            let (gid, org) = {
                let st = sim.state.lock();
                let p = match group_id_of(&path) {
                    Some(g) => st.projects.get(g),
                    None => path
                        .strip_prefix("/api/atlas/v2/groups/byName/")
                        .and_then(|n| st.projects.values().find(|p| p.name == n)),
                };
                (p.map(|p| p.id.clone()), p.map(|p| p.org_id.clone()))
            };
            match sim.rate.lock().check(gid.as_deref(), org.as_deref()) {
                RateOutcome::Allowed(h) => rl_headers = h,
                RateOutcome::Limited { cfg, retry_after } => {
                    let ep = path.trim_start_matches('/').to_string();
                    break 'resp ApiError::new(
                        429,
                        "RATE_LIMITED_TOKEN_BUCKET",
                        format!(
                            "Rate limit exceeded for {ep}. Please retry after {retry_after} seconds. Request capacity: {}. Refill rate: {} per {} seconds.",
                            cfg.capacity, cfg.refill_rate, cfg.refill_seconds
                        ),
                    )
                    .params(vec![
                        serde_json::json!(ep),
                        serde_json::json!(retry_after),
                        serde_json::json!(cfg.capacity),
                        serde_json::json!(cfg.refill_rate),
                        serde_json::json!(cfg.refill_seconds),
                    ])
                    .header(header::RETRY_AFTER, retry_after)
                    .header(header::HeaderName::from_static("ratelimit-limit"), cfg.capacity)
                    .header(header::HeaderName::from_static("ratelimit-remaining"), 0)
                    .into_response();
                }
            }
        }

        if let Some(r) = &route {
            match negotiate(&sim, &method, r, &req) {
                Ok(v) => {
                    req.extensions_mut().insert(ApiVersion(v));
                }
                Err(e) => break 'resp e.into_response(),
            }
        }

        let mut resp = next.run(req).await;
        if let Some((limit, remaining)) = rl_headers {
            let h = resp.headers_mut();
            h.insert("ratelimit-limit", HeaderValue::from(limit));
            h.insert("ratelimit-remaining", HeaderValue::from(remaining));
        }
        resp
    };

    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0.to_string());
    sim.calls
        .lock()
        .push(record(resp.status().as_u16(), code, principal_label));
    Some(resp)
}
