//! Start-up: builds the clients from [`Config`], serves the operations endpoints, takes the Lease when
//! leader election is on, and runs the controllers until SIGTERM or SIGINT (or until the Lease is lost).

use std::sync::Arc;

use futures::FutureExt;

use crate::atlas::{AtlasClient, AtlasClientConfig};
use crate::config::Config;
use crate::controller::{self, ControllerConfig, Observers};
use crate::kms::{KmsPreflight, KmsPreflightConfig};
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::Metrics;
use crate::ops::{self, Health};

pub async fn run(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let identity = config.identity();
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(
        config.leader_elect,
        config.readiness_requires_leadership,
    ));
    let (metrics_at, health_at) = ops::serve(
        config.metrics_bind_address,
        config.health_bind_address,
        metrics.clone(),
        health.clone(),
    )
    .await?;
    tracing::info!(%metrics_at, %health_at, "serving /metrics, /healthz and /readyz");

    let client = kube::Client::try_default().await?;
    let atlas = AtlasClient::new(AtlasClientConfig {
        base_url: config.atlas_base_url.clone(),
        timeout: config.atlas_timeout,
        // Where Atlas publishes no limits: the ceiling when one is set, else today's conservative 5/s.
        rate_per_second: config.atlas_rate_per_second.unwrap_or(5.0),
        rate_ceiling: config.atlas_rate_per_second,
        burst: config.atlas_burst,
        user_agent: format!(
            "atlas-encryption-operator/{} ({identity})",
            env!("CARGO_PKG_VERSION")
        ),
        metrics: Some(metrics.clone()),
        ..Default::default()
    })?;
    let kms = KmsPreflight::from_env(KmsPreflightConfig {
        enabled: config.kms_preflight,
        endpoint_url: config.kms_endpoint_url.clone(),
        metrics: Some(metrics.clone()),
        ..Default::default()
    })
    .await;
    if !config.kms_preflight {
        tracing::warn!("KMS preflight is off: keys are checked by Atlas alone");
    }
    let controller_config = ControllerConfig {
        resync_period: config.resync_period,
        concurrency: config.concurrency,
        namespaces: config.namespaces(),
        label_selector: config.watch_label_selector.clone(),
        ..Default::default()
    };
    let observers = Observers {
        metrics: metrics.clone(),
        health: health.clone(),
    };
    let shutdown = shutdown_signal().shared();
    let namespaces = if controller_config.namespaces.is_empty() {
        "all".to_string()
    } else {
        controller_config.namespaces.join(",")
    };

    if !config.leader_elect {
        health.set_leading(true);
        metrics.set_leader(true);
        tracing::info!(atlas = %config.atlas_base_url, %namespaces, "starting controllers");
        controller::run_observed(client, atlas, kms, controller_config, observers, shutdown).await;
        tracing::info!("stopped");
        return Ok(());
    }

    let mut elector = LeaderElector::new(
        client.clone(),
        LeaseConfig {
            namespace: config.lease_namespace(),
            name: config.leader_election_lease_name.clone(),
            identity: identity.clone(),
            lease_duration: config.leader_election_lease_duration,
            renew_deadline: config.leader_election_renew_deadline,
            retry_period: config.leader_election_retry_period,
        },
    );
    tracing::info!(identity = %identity, lease = %config.leader_election_lease_name, "waiting to lead");
    let standby_health = health.clone();
    tokio::select! {
        _ = elector.acquire(|holder| standby_health.set_following(holder)) => {}
        _ = shutdown.clone() => {
            tracing::info!("stopped before leading");
            return Ok(());
        }
    }
    health.set_leading(true);
    metrics.set_leader(true);
    tracing::info!(atlas = %config.atlas_base_url, %namespaces, "leading: starting controllers");

    let controllers = controller::run_observed(client, atlas, kms, controller_config, observers, shutdown);
    let lost = tokio::select! {
        _ = controllers => None,
        lost = elector.hold() => Some(lost),
    };
    match lost {
        None => {
            elector.release().await;
            tracing::info!("stopped");
            Ok(())
        }
        Some(lost) => {
            // The controllers were dropped mid-flight: no Atlas call starts after this point. The
            // process exits non-zero and the kubelet restarts it as a standby.
            metrics.set_leader(false);
            health.set_leading(false);
            tracing::error!(error = %lost, "lost leadership; stopping at once");
            Err(lost.into())
        }
    }
}

async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown requested");
}
