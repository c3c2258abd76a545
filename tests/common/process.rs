//! The operator as users run it: the real binary in its own process, talking to the test ground's
//! kube-apiserver, to atlas-sim and to moto, with its operations endpoints on loopback ports.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// One operator process. Killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
pub struct OperatorProcess {
    pub identity: String,
    pub metrics: SocketAddr,
    pub health: SocketAddr,
    pub log: PathBuf,
    child: Option<Child>,
}

/// A loopback port free right now. The operator binds it a moment later; on a test machine nothing
/// else races for it.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// What a process differs in from [`OperatorProcess::spawn`]'s defaults.
#[derive(Debug, Default, Clone)]
pub struct SpawnOptions {
    /// Another kubeconfig than the test ground's admin one, e.g. a [`super::k8s::TokenKubeconfig`]
    /// with a ServiceAccount's token.
    pub kubeconfig: Option<PathBuf>,
    /// More environment variables, set after the common ones (so they may replace them) and read
    /// only where no flag is given: the common flags and `args` win.
    pub env: Vec<(String, String)>,
}

impl OperatorProcess {
    /// Starts the binary with the test ground's kubeconfig, moto as KMS and `args` after the common
    /// flags (JSON logs at debug level, loopback ports).
    pub fn spawn(identity: &str, atlas_url: &str, args: &[&str]) -> Result<Self> {
        Self::spawn_with(identity, atlas_url, args, SpawnOptions::default())
    }

    /// [`OperatorProcess::spawn`] with another kubeconfig or more environment variables.
    pub fn spawn_with(identity: &str, atlas_url: &str, args: &[&str], options: SpawnOptions) -> Result<Self> {
        let env = super::testenv();
        let kubeconfig = options.kubeconfig.as_ref().unwrap_or(&env.kubeconfig);
        let metrics = free_port();
        let health = free_port();
        let log = super::evidence_dir("logs").join(format!("{}.log", super::unique_name(identity)));
        let out = File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_atlas-encryption-operator"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", super::aws::AWS_SECRET_ACCESS_KEY)
            .env("AWS_REGION", super::operator::REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("NO_COLOR", "1")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .args(["--atlas-base-url", atlas_url])
            .args(["--kms-endpoint-url", &super::moto_endpoint()])
            .args(["--metrics-bind-address", &metrics.to_string()])
            .args(["--health-bind-address", &health.to_string()])
            .args([
                "--log-format",
                "json",
                "--log-level",
                "info,atlas_encryption_operator=debug",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting the operator binary")?;
        Ok(OperatorProcess {
            identity: identity.to_string(),
            metrics,
            health,
            log,
            child: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// GET on one of its endpoints: status code and body.
    pub async fn get(&self, address: SocketAddr, path: &str) -> Result<(u16, String)> {
        let response = reqwest::Client::new()
            .get(format!("http://{address}{path}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    pub async fn readyz(&self) -> Result<(u16, String)> {
        self.get(self.health, "/readyz").await
    }

    pub async fn metrics_text(&self) -> Result<String> {
        Ok(self.get(self.metrics, "/metrics").await?.1)
    }

    /// The value of one sample line (`name{labels}` exactly as exposed), if present.
    pub async fn sample(&self, series: &str) -> Result<Option<f64>> {
        let text = self.metrics_text().await?;
        Ok(text
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()))
    }

    /// The first answer to GET `path` on `address` once the process listens there: a refused connection
    /// is retried until `timeout` (the binary binds its ports moments after it starts), any answer is
    /// returned as it is.
    pub async fn first_answer(
        &mut self,
        address: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<(u16, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            match self.get(address, path).await {
                Ok(answer) => return Ok(answer),
                Err(e) if Instant::now() > deadline => {
                    bail!("{} did not answer {path} within {timeout:?}: {e}", self.identity)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if let Ok((200, body)) = self.readyz().await {
                return Ok(body);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {timeout:?}; log:\n{}",
                    self.identity,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn check_running(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "{} exited with {status}; log:\n{}",
                self.identity,
                self.log_tail()
            );
        }
        Ok(())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The log as JSON objects (lines that are not JSON are skipped).
    pub fn log_json(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("{} did not stop within {timeout:?} of SIGTERM", self.identity);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
