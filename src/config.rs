//! Command-line flags of the operator binary; each also reads an environment variable, so the Helm
//! chart can set them either way.

use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "atlas-encryption-operator",
    version,
    about = "Runs MongoDB Atlas Encryption at Rest with customer-managed AWS KMS keys from ProjectEncryption and ClusterEncryption resources"
)]
pub struct Config {
    /// Base URL of the Atlas Administration API (the `/api/atlas/v2` prefix is added per call).
    #[arg(long, env = "ATLAS_BASE_URL", default_value = "https://cloud.mongodb.com")]
    pub atlas_base_url: String,

    /// Namespace to watch; empty watches all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,

    /// How often a converged object is re-read from Atlas to find changes made outside the operator.
    #[arg(long, env = "RESYNC_PERIOD", default_value = "10m", value_parser = parse_duration)]
    pub resync_period: Duration,

    /// Reconciles of one kind running at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,

    /// Atlas requests per second allowed per organization (credential), shared by all projects.
    #[arg(long, env = "ATLAS_RATE_PER_SECOND", default_value_t = 5.0)]
    pub atlas_rate_per_second: f64,

    /// Requests that may burst above the rate.
    #[arg(long, env = "ATLAS_BURST", default_value_t = 20)]
    pub atlas_burst: u32,

    /// Timeout of one Atlas HTTP exchange.
    #[arg(long, env = "ATLAS_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub atlas_timeout: Duration,

    /// Check keys in AWS KMS before assigning them. Turn off when the operator has no AWS access.
    #[arg(long, env = "KMS_PREFLIGHT", default_value_t = true, action = clap::ArgAction::Set)]
    pub kms_preflight: bool,

    /// KMS endpoint override (for example a local emulator); by default the AWS SDK's own resolution.
    #[arg(long, env = "KMS_ENDPOINT_URL")]
    pub kms_endpoint_url: Option<String>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in `tracing` EnvFilter syntax (for example `info` or `atlas_encryption_operator=debug`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::controller::plan::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30s, 10m or 1h"))
}

impl Config {
    pub fn namespaces(&self) -> Vec<String> {
        if self.watch_namespace.is_empty() {
            Vec::new()
        } else {
            vec![self.watch_namespace.clone()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_durations_parse() {
        let config = Config::try_parse_from(["op", "--resync-period", "90s"]).unwrap();
        assert_eq!(config.resync_period, Duration::from_secs(90));
        assert!(config.kms_preflight);
        assert!(config.namespaces().is_empty());
        assert!(Config::try_parse_from(["op", "--resync-period", "soon"]).is_err());
        let config =
            Config::try_parse_from(["op", "--kms-preflight", "false", "--watch-namespace", "a"]).unwrap();
        assert!(!config.kms_preflight);
        assert_eq!(config.namespaces(), vec!["a".to_string()]);
    }
}
