//! atlas-sim: a standalone simulator of the MongoDB Atlas Administration API v2 endpoints that Encryption at
//! Rest with AWS KMS needs. Start it in-process with [`spawn`] (tests) or as the `atlas-sim` binary.
#![forbid(unsafe_code)]

pub mod auth;
pub mod aws;
pub mod error;
pub mod faults;
pub mod routes;
pub mod seed;
mod server;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

pub use faults::{BucketConfig, CallRecord, FaultSpec, RateLimitConfig};
pub use seed::Seed;

/// The Atlas AWS account the simulator pretends to be (moto's default account 123456789012 is the customer's).
pub const DEFAULT_ATLAS_AWS_ACCOUNT_ARN: &str = "arn:aws:iam::536727724300:root";

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// AWS endpoint (moto) used to compute `awsKms.valid` and to check role trust; None = offline fallback.
    pub aws_endpoint: Option<String>,
    pub seed: Option<Seed>,
    /// Persist state here (atomically, debounced) and load it at start.
    pub state_file: Option<PathBuf>,
    /// How long a cluster stays UPDATING after a change.
    pub cluster_update_delay: Duration,
    pub atlas_aws_account_arn: String,
    /// Service-account access token lifetime.
    pub token_ttl: Duration,
    /// Latency added to every Atlas request.
    pub latency: Duration,
    /// Digest nonce lifetime; older nonces get `stale=true`.
    pub nonce_ttl: Duration,
    /// How long a computed `awsKms.valid` is reused; 0 = re-check on every read.
    pub validity_ttl: Duration,
    /// Also offer an `algorithm=SHA-256` digest challenge (Atlas itself offers MD5 only).
    pub digest_sha256_challenge: bool,
    /// Token-bucket rate limits per project / organization (off by default).
    pub rate_limit: RateLimitConfig,
    /// How long a newly valid IAM trust keeps failing with CANNOT_ASSUME_ROLE (IAM propagation; default 0).
    pub trust_propagation_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            aws_endpoint: None,
            seed: None,
            state_file: None,
            cluster_update_delay: Duration::from_secs(3),
            atlas_aws_account_arn: DEFAULT_ATLAS_AWS_ACCOUNT_ARN.to_string(),
            token_ttl: Duration::from_secs(3600),
            latency: Duration::ZERO,
            nonce_ttl: Duration::from_secs(300),
            validity_ttl: Duration::ZERO,
            digest_sha256_challenge: false,
            rate_limit: RateLimitConfig::default(),
            trust_propagation_delay: Duration::ZERO,
        }
    }
}

/// Everything the handlers share. One lock per concern; the world state has a single lock, never held
/// across an await (AWS checks run between a read and a write of the state).
pub struct Sim {
    pub config: SimConfig,
    pub state: Mutex<state::State>,
    pub nonces: auth::Nonces,
    pub faults: Mutex<faults::Faults>,
    pub rate: Mutex<faults::RateLimiter>,
    pub calls: Mutex<faults::CallLog>,
    pub aws: aws::AwsChecker,
    pub latency_ms: AtomicU64,
    pub token_ttl_secs: AtomicU64,
    pub dirty: AtomicBool,
    pub persist_notify: tokio::sync::Notify,
}

impl Sim {
    pub fn new(config: SimConfig) -> anyhow::Result<Sim> {
        let mut st = state::State {
            cluster_update_delay_ms: config.cluster_update_delay.as_millis() as u64,
            ..Default::default()
        };
        let mut loaded = false;
        if let Some(path) = &config.state_file
            && path.exists()
        {
            let text = std::fs::read_to_string(path)?;
            st = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("state file {} is unreadable: {e}", path.display()))?;
            loaded = true;
        }
        if !loaded && let Some(seed) = &config.seed {
            st.apply_seed(seed)?;
        }
        let mut rate = faults::RateLimiter::default();
        rate.set(config.rate_limit.clone());
        Ok(Sim {
            aws: aws::AwsChecker {
                endpoint: config.aws_endpoint.clone(),
                atlas_account_arn: config.atlas_aws_account_arn.clone(),
                trust_propagation_ms: Arc::new(AtomicU64::new(
                    config.trust_propagation_delay.as_millis() as u64
                )),
                first_trusted: Default::default(),
            },
            nonces: auth::Nonces::new(config.nonce_ttl),
            latency_ms: AtomicU64::new(config.latency.as_millis() as u64),
            token_ttl_secs: AtomicU64::new(config.token_ttl.as_secs().max(1)),
            state: Mutex::new(st),
            faults: Mutex::new(faults::Faults::default()),
            rate: Mutex::new(rate),
            calls: Mutex::new(faults::CallLog::default()),
            dirty: AtomicBool::new(false),
            persist_notify: tokio::sync::Notify::new(),
            config,
        })
    }

    /// Marks the state changed so the persister writes it (when `--state` is set).
    pub fn touch(&self) {
        if self.config.state_file.is_some() {
            self.dirty.store(true, Ordering::Release);
            self.persist_notify.notify_one();
        }
    }

    pub fn persist_now(&self) -> anyhow::Result<()> {
        let Some(path) = &self.config.state_file else {
            return Ok(());
        };
        self.dirty.store(false, Ordering::Release);
        let text = serde_json::to_vec_pretty(&*self.state.lock())?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    pub fn cluster_update_delay(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(self.state.lock().cluster_update_delay_ms as i64)
    }
}

pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<Sim>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn sim(&self) -> &Arc<Sim> {
        &self.sim
    }
    /// The call log (same data as `GET /__sim/calls`).
    pub fn calls(&self) -> Vec<CallRecord> {
        self.sim.calls.lock().since(0)
    }
    pub fn calls_since(&self, seq: u64) -> Vec<CallRecord> {
        self.sim.calls.lock().since(seq)
    }
    pub fn clear_calls(&self) {
        self.sim.calls.lock().clear();
    }
    pub fn counters(&self) -> std::collections::BTreeMap<String, u64> {
        self.sim.calls.lock().counters.clone()
    }
    /// Adds organizations, keys, service accounts, projects and clusters (same as `POST /__sim/seed`).
    pub fn apply_seed(&self, seed: &Seed) -> anyhow::Result<()> {
        self.sim.state.lock().apply_seed(seed)?;
        self.sim.touch();
        Ok(())
    }
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Err(e) = self.sim.persist_now() {
            tracing::warn!(error = %e, "could not write the state file at shutdown");
        }
    }
}

/// Binds `config.listen` and serves in background tasks until [`SimHandle::shutdown`].
pub async fn spawn(config: SimConfig) -> anyhow::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Sim::new(config)?);
    let (tx, rx) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(server::serve(listener, sim.clone(), rx.clone()))];
    if sim.config.state_file.is_some() {
        tasks.push(tokio::spawn(server::persister(sim.clone(), rx)));
    }
    tracing::info!(%addr, "atlas-sim listening");
    Ok(SimHandle {
        addr,
        sim,
        shutdown: tx,
        tasks,
    })
}
