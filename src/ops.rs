//! The operations endpoints: `/healthz` and `/readyz` for the kubelet, `/metrics` for Prometheus.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use k8s_openapi::jiff::Timestamp;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What `/readyz` answers from. Shared between the leader elector, the controllers and the server.
#[derive(Debug, Default)]
pub struct Health {
    leader_election: bool,
    readiness_requires_leadership: bool,
    leading: AtomicBool,
    synced: AtomicBool,
    /// While standing by: who leads, as last read from the Lease (`None` when it could not be read).
    following: Mutex<Option<String>>,
}

impl Health {
    pub fn new(leader_election: bool, readiness_requires_leadership: bool) -> Self {
        Health {
            leader_election,
            readiness_requires_leadership,
            ..Default::default()
        }
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }

    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }

    pub fn set_following(&self, holder: Option<&str>) {
        *self.following.lock().unwrap_or_else(|e| e.into_inner()) = holder.map(str::to_string);
    }

    /// Ready, and a one-line explanation either way.
    pub fn readiness(&self) -> (bool, String) {
        let leading = !self.leader_election || self.leading.load(Ordering::SeqCst);
        if leading {
            return if self.synced.load(Ordering::SeqCst) {
                (true, "ok: running the controllers, caches synced".into())
            } else {
                (
                    false,
                    "waiting for the caches of ProjectEncryptions and ClusterEncryptions to sync".into(),
                )
            };
        }
        let following = self.following.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match following {
            _ if self.readiness_requires_leadership => (false, "standing by: not the leader".into()),
            Some(holder) => (true, format!("ok: standing by, {holder} leads")),
            None => (
                false,
                "standing by, but the Lease cannot be read or is being taken over".into(),
            ),
        }
    }
}

#[derive(Clone)]
struct OpsState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds both listeners (so a port clash fails start-up loudly) and serves them until the process
/// ends. Returns the bound addresses, which differ from the requested ones for port 0.
pub async fn serve(
    metrics_address: SocketAddr,
    health_address: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<(SocketAddr, SocketAddr)> {
    let state = OpsState { metrics, health };
    let metrics_listener = TcpListener::bind(metrics_address).await?;
    let health_listener = TcpListener::bind(health_address).await?;
    let bound = (metrics_listener.local_addr()?, health_listener.local_addr()?);
    let metrics_app = Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(state.clone());
    let health_app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz_handler))
        .with_state(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(metrics_listener, metrics_app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(health_listener, health_app).await {
            tracing::error!(error = %e, "health server stopped");
        }
    });
    Ok(bound)
}

async fn metrics_handler(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.encode(Timestamp::now()),
    )
}

async fn readyz_handler(State(state): State<OpsState>) -> impl IntoResponse {
    let (ready, why) = state.health.readiness();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_leader_election_ready_means_synced() {
        let health = Health::new(false, false);
        assert!(!health.readiness().0);
        health.set_synced();
        assert!(health.readiness().0);
    }

    #[test]
    fn a_leader_is_ready_once_synced() {
        let health = Health::new(true, true);
        health.set_leading(true);
        assert!(!health.readiness().0);
        health.set_synced();
        assert!(health.readiness().0);
    }

    #[test]
    fn a_standby_is_ready_while_it_sees_a_leader_unless_leadership_is_required() {
        let health = Health::new(true, false);
        assert!(!health.readiness().0, "nothing read from the Lease yet");
        health.set_following(Some("pod-a"));
        let (ready, why) = health.readiness();
        assert!(ready);
        assert!(why.contains("pod-a"));
        health.set_following(None);
        assert!(!health.readiness().0);

        let strict = Health::new(true, true);
        strict.set_following(Some("pod-a"));
        assert!(!strict.readiness().0);
    }
}
