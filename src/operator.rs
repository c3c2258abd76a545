//! Start-up: builds the clients from [`Config`] and runs the controllers until SIGTERM or SIGINT.

use futures::FutureExt;

use crate::atlas::{AtlasClient, AtlasClientConfig};
use crate::config::Config;
use crate::controller::{self, ControllerConfig};
use crate::kms::{KmsPreflight, KmsPreflightConfig};

pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let atlas = AtlasClient::new(AtlasClientConfig {
        base_url: config.atlas_base_url.clone(),
        timeout: config.atlas_timeout,
        rate_per_second: config.atlas_rate_per_second,
        burst: config.atlas_burst,
        ..Default::default()
    })?;
    let kms = KmsPreflight::from_env(KmsPreflightConfig {
        enabled: config.kms_preflight,
        endpoint_url: config.kms_endpoint_url.clone(),
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
    };
    tracing::info!(atlas = %config.atlas_base_url, namespace = %config.watch_namespace, "starting controllers");
    controller::run(client, atlas, kms, controller_config, shutdown_signal().shared()).await;
    tracing::info!("stopped");
    Ok(())
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
