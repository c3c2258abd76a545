//! Command-line flags of the operator binary; each also reads an environment variable, so the Helm
//! chart can set them either way.

use std::net::SocketAddr;
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

    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        alias = "watch-namespace",
        value_delimiter = ',',
        num_args = 0..
    )]
    pub watch_namespaces: Vec<String>,

    /// Reconcile only ProjectEncryptions and ClusterEncryptions with these labels (a Kubernetes label
    /// selector, e.g. `sharding.atlas-encryption.io/key=shard1`), so several Deployments of the operator,
    /// each leader-elected with its own Lease, split a very large fleet. Label a project and its
    /// clusters alike: a replica sees only its own shard's projects.
    #[arg(long, env = "WATCH_LABEL_SELECTOR", value_parser = parse_label_selector)]
    pub watch_label_selector: Option<String>,

    /// How often a converged object is re-read from Atlas to find changes made outside the operator.
    /// Stretched when one read per object per period would take more than a quarter of
    /// --atlas-rate-per-second.
    #[arg(long, env = "RESYNC_PERIOD", default_value = "10m", value_parser = parse_duration)]
    pub resync_period: Duration,

    /// Reconciles of one kind running at once. A reconcile holds its slot through several Atlas and
    /// Kubernetes round trips, so this, more than the rate budget, bounds how fast thousands of
    /// objects converge once the budget is raised.
    #[arg(long, env = "CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// Optional ceiling on Atlas requests per second per credential. Without it the operator paces by
    /// the limits Atlas publishes (GET /rateLimits); where they cannot be read, this (or 5/s) is the pace.
    #[arg(long, env = "ATLAS_RATE_PER_SECOND")]
    pub atlas_rate_per_second: Option<f64>,

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

    /// Where `/metrics` is served (Prometheus text format).
    #[arg(long, env = "METRICS_BIND_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_bind_address: SocketAddr,

    /// Where `/healthz` and `/readyz` are served.
    #[arg(long, env = "HEALTH_BIND_ADDRESS", default_value = "0.0.0.0:8081")]
    pub health_bind_address: SocketAddr,

    /// Run only while holding a coordination.k8s.io Lease, so several replicas can run and only one
    /// writes to Atlas.
    #[arg(long, env = "LEADER_ELECT", default_value_t = false, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// Namespace of the Lease; by default the operator's own (`POD_NAMESPACE`).
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(
        long,
        env = "LEADER_ELECTION_LEASE_NAME",
        default_value = "atlas-encryption-operator"
    )]
    pub leader_election_lease_name: String,

    /// How long a Lease stays valid without renewal; a standby takes over after this.
    #[arg(long, env = "LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// How long the leader keeps trying to renew before it gives up leading and stops. Shorter than the
    /// lease duration, so it stops writing before anyone else may start.
    #[arg(long, env = "LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub leader_election_renew_deadline: Duration,

    /// How often the Lease is renewed, or retried while standing by.
    #[arg(long, env = "LEADER_ELECTION_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub leader_election_retry_period: Duration,

    /// With leader election on, report ready only while leading. Off by default: a standby replica is
    /// healthy and a Deployment with two replicas would otherwise never finish rolling out.
    #[arg(long, env = "READINESS_REQUIRES_LEADERSHIP", default_value_t = false, action = clap::ArgAction::Set)]
    pub readiness_requires_leadership: bool,

    /// This replica's identity in the Lease and in Events; the Pod name in Kubernetes.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// The operator's own namespace (downward API), the Lease's default namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30s, 10m or 1h"))
}

/// A flag combination that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "--leader-election-renew-deadline ({renew:?}) must be shorter than --leader-election-lease-duration ({lease:?}), or two replicas could write at once"
    )]
    RenewDeadlineNotBelowLease { renew: Duration, lease: Duration },
    #[error(
        "--leader-election-retry-period ({retry:?}) must be shorter than --leader-election-renew-deadline ({renew:?})"
    )]
    RetryNotBelowRenewDeadline { retry: Duration, renew: Duration },
    #[error("--concurrency must be at least 1")]
    ZeroConcurrency,
    #[error("namespace {0:?} in --watch-namespaces is not a valid Kubernetes namespace name")]
    InvalidNamespace(String),
}

impl Config {
    /// The watched namespaces, trimmed and de-duplicated; empty means all.
    pub fn namespaces(&self) -> Vec<String> {
        let mut namespaces: Vec<String> = self
            .watch_namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }

    /// Refuses combinations that would start an operator that misbehaves.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.concurrency == 0 {
            return Err(ConfigError::ZeroConcurrency);
        }
        if let Some(bad) = self.namespaces().into_iter().find(|n| !is_dns_label(n)) {
            return Err(ConfigError::InvalidNamespace(bad));
        }
        if self.leader_elect {
            let (lease, renew, retry) = (
                self.leader_election_lease_duration,
                self.leader_election_renew_deadline,
                self.leader_election_retry_period,
            );
            if renew >= lease {
                return Err(ConfigError::RenewDeadlineNotBelowLease { renew, lease });
            }
            if retry >= renew {
                return Err(ConfigError::RetryNotBelowRenewDeadline { retry, renew });
            }
        }
        Ok(())
    }

    /// This replica's name: the Pod name, else the host name, else a random one.
    pub fn identity(&self) -> String {
        self.pod_name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(|| format!("atlas-encryption-operator-{}", std::process::id()))
    }

    pub fn lease_namespace(&self) -> String {
        self.leader_election_namespace
            .clone()
            .or_else(|| self.pod_namespace.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string())
    }
}

/// RFC 1123 label, which namespace names are.
fn is_dns_label(name: &str) -> bool {
    name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A label selector as the API server reads it; only the obvious mistakes are caught here (the API
/// server refuses the rest at the first list, which the operator logs).
fn parse_label_selector(value: &str) -> Result<String, String> {
    let selector = value.trim();
    if selector.is_empty() {
        return Err("a label selector cannot be empty; leave the flag out to watch every object".into());
    }
    if selector.split(',').any(|part| part.trim().is_empty()) {
        return Err(format!("{selector:?} has an empty requirement between commas"));
    }
    Ok(selector.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["op"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn a_label_selector_is_kept_as_given_and_an_empty_one_refused() {
        assert_eq!(parse(&[]).watch_label_selector, None);
        let config = parse(&["--watch-label-selector", " shard in (a,b),team=payments "]);
        assert_eq!(
            config.watch_label_selector.as_deref(),
            Some("shard in (a,b),team=payments")
        );
        for bad in ["", "  ", "shard=a,,team=b"] {
            let error = Config::try_parse_from(["op", "--watch-label-selector", bad]).unwrap_err();
            assert!(
                error.to_string().contains("label selector") || error.to_string().contains("empty"),
                "{error}"
            );
        }
    }

    #[test]
    fn defaults_and_durations_parse() {
        let config = parse(&["--resync-period", "90s"]);
        assert_eq!(config.resync_period, Duration::from_secs(90));
        assert!(config.kms_preflight);
        assert!(!config.leader_elect);
        assert!(config.namespaces().is_empty());
        assert_eq!(config.metrics_bind_address.port(), 8080);
        assert_eq!(config.health_bind_address.port(), 8081);
        assert!(Config::try_parse_from(["op", "--resync-period", "soon"]).is_err());
        let config = parse(&["--kms-preflight", "false", "--watch-namespace", "a"]);
        assert!(!config.kms_preflight);
        assert_eq!(config.namespaces(), vec!["a".to_string()]);
    }

    #[test]
    fn namespace_lists_are_split_trimmed_and_deduplicated() {
        let config = parse(&["--watch-namespaces", "team-b, team-a,,team-b"]);
        assert_eq!(
            config.namespaces(),
            vec!["team-a".to_string(), "team-b".to_string()]
        );
        assert_eq!(config.validate(), Ok(()));
        let config = parse(&["--watch-namespaces", "Team_A"]);
        assert_eq!(
            config.validate(),
            Err(ConfigError::InvalidNamespace("Team_A".into()))
        );
    }

    #[test]
    fn leader_election_timings_must_nest() {
        let config = parse(&["--leader-elect", "true"]);
        assert_eq!(config.validate(), Ok(()));
        let config = parse(&[
            "--leader-elect",
            "true",
            "--leader-election-renew-deadline",
            "20s",
        ]);
        assert!(matches!(
            config.validate(),
            Err(ConfigError::RenewDeadlineNotBelowLease { .. })
        ));
        let config = parse(&["--leader-elect", "true", "--leader-election-retry-period", "10s"]);
        assert!(matches!(
            config.validate(),
            Err(ConfigError::RetryNotBelowRenewDeadline { .. })
        ));
        // Timings do not matter while leader election is off.
        let config = parse(&["--leader-election-renew-deadline", "20s"]);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn lease_namespace_falls_back_to_the_pod_namespace() {
        let config = parse(&["--pod-namespace", "operators"]);
        assert_eq!(config.lease_namespace(), "operators");
        let config = parse(&[
            "--pod-namespace",
            "operators",
            "--leader-election-namespace",
            "leases",
        ]);
        assert_eq!(config.lease_namespace(), "leases");
    }
}
