//! atlas-sim as a separate process (the release binary), its seed and its call log.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const PUBLIC_KEY: &str = "bench-public-key";
pub const PRIVATE_KEY: &str = "bench-private-key-not-a-secret";

/// The Atlas project id of bench project `i` of run `run`: 24 hex digits.
pub fn project_id(run: u32, i: u64) -> String {
    format!("b{:03x}{:020x}", run % 0xfff, i)
}

pub fn cluster_name(j: u64) -> String {
    format!("cluster{j}")
}

/// One organization, one API key that reaches every project, `projects` × `clusters` M10 clusters.
pub fn seed_yaml(run: u32, projects: u64, clusters: u64) -> String {
    let mut y = String::with_capacity((projects * (120 + clusters * 130)) as usize);
    y.push_str("organizations:\n  - {name: bench-org, id: 5f00000000000000000000b1}\n");
    y.push_str(&format!(
        "apiKeys:\n  - {{publicKey: {PUBLIC_KEY}, privateKey: {PRIVATE_KEY}, projects: [\"*\"]}}\nprojects:\n"
    ));
    for i in 0..projects {
        y.push_str(&format!(
            "  - name: bench-{i}\n    id: {}\n    org: bench-org\n    clusters:\n",
            project_id(run, i)
        ));
        for j in 0..clusters {
            y.push_str(&format!(
                "      - {{name: {}, instanceSize: M10, providerName: AWS, regionName: EU_WEST_2, backupEnabled: true}}\n",
                cluster_name(j)
            ));
        }
    }
    y
}

pub struct SimProcess {
    pub child: Child,
    pub url: String,
    http: reqwest::Client,
}

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub latency_ms: u64,
    pub cluster_update_ms: u64,
    pub validity_ttl_s: u64,
    pub project_rate_limit: Option<String>,
    pub org_rate_limit: Option<String>,
    /// Publish the limits at GET /rateLimits (`--publish-rate-limits`).
    pub publish_rate_limits: bool,
}

impl SimProcess {
    pub async fn start(bin: &Path, seed: &Path, moto: &str, opts: &SimOptions, log: &Path) -> Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--aws-endpoint", moto])
            .arg("--seed")
            .arg(seed)
            .args(["--cluster-update-delay", &format!("{}ms", opts.cluster_update_ms)])
            .args(["--latency", &format!("{}ms", opts.latency_ms)])
            .args(["--validity-ttl", &format!("{}s", opts.validity_ttl_s)]);
        if let Some(limit) = &opts.project_rate_limit {
            cmd.args(["--project-rate-limit", limit]);
        }
        if let Some(limit) = &opts.org_rate_limit {
            cmd.args(["--org-rate-limit", limit]);
        }
        if opts.publish_rate_limits {
            cmd.arg("--publish-rate-limits");
        }
        let log_file = std::fs::File::create(log)?;
        let mut child = cmd
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log_file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("sim stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("atlas-sim listening on ") {
                    return Ok::<_, anyhow::Error>(url.trim().to_string());
                }
            }
            bail!("atlas-sim exited before listening (log: {})", log.display())
        })
        .await
        .context("atlas-sim did not start within 120 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(SimProcess {
            child,
            url,
            http: reqwest::Client::new(),
        })
    }

    pub async fn clear_calls(&self) -> Result<()> {
        self.http
            .delete(format!("{}/__sim/calls", self.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// The whole call log since the last clear (the simulator keeps the last 100 000 calls).
    pub async fn calls(&self) -> Result<Vec<Call>> {
        let page: CallPage = self
            .http
            .get(format!("{}/__sim/calls", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(page.calls)
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

#[derive(Deserialize)]
struct CallPage {
    calls: Vec<Call>,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub method: String,
    pub route: Option<String>,
    pub status: u16,
    pub path: String,
    /// When the simulator answered the call.
    pub timestamp: chrono::DateTime<chrono::Utc>,
    /// How long the answer took, the simulator's injected latency included: `timestamp` less this is
    /// when the call arrived.
    #[serde(default)]
    pub duration_ms: f64,
}

/// Calls split the way the figures need them.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CallSummary {
    pub reads: u64,
    pub writes: u64,
    /// Digest challenges (401 answers to the first request with a new nonce): a round trip, no work.
    pub auth_challenges: u64,
    pub throttled_429: u64,
    pub by_route: BTreeMap<String, u64>,
}

impl CallSummary {
    pub fn of(calls: &[Call]) -> Self {
        let mut s = CallSummary::default();
        for c in calls {
            let route = c
                .route
                .as_deref()
                .unwrap_or("?")
                .trim_start_matches("/api/atlas/v2")
                .to_string();
            *s.by_route
                .entry(format!("{} {} {}", c.method, route, c.status))
                .or_default() += 1;
            if c.status == 401 {
                s.auth_challenges += 1;
                continue;
            }
            if c.status == 429 {
                s.throttled_429 += 1;
            }
            if c.method == "GET" {
                s.reads += 1;
            } else {
                s.writes += 1;
            }
        }
        s
    }

    pub fn total(&self) -> u64 {
        self.reads + self.writes
    }
}
