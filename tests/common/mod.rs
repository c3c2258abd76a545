//! Support for integration tests that run against the local test ground started by
//! `scripts/testenv.sh`: a real kube-apiserver (with etcd and kube-controller-manager) and moto.
//!
//! Use it from a test file with `mod common;`. Each test binary uses only part of it, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

pub mod aws;
pub mod chart;
pub mod k8s;
pub mod operator;
pub mod process;
pub mod snapshots;

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context as _, Result, bail};

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use self::aws::{aws_sdk_config, moto_endpoint};
#[allow(unused_imports)]
pub use self::k8s::{TestNamespace, client, install_crds};

/// Field manager for everything the tests themselves write with server-side apply.
pub const FIELD_MANAGER: &str = "atlas-eo-tests";

/// The running test ground, as described by the env file `scripts/testenv.sh up` writes.
#[derive(Debug, Clone)]
pub struct TestEnv {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub moto_endpoint: String,
}

/// Read when the test runs, not baked in when it compiles: checkouts that share one cached target dir
/// (the CI clone and a working copy) reuse each other's test binaries, and a compile-time path would
/// point into whichever checkout built them.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .expect("CARGO_MANIFEST_DIR: run the tests with cargo test")
}

/// `$TESTENV_DIR`, else `<repo>/.testenv`: the same rule as `scripts/testenv.sh`.
pub fn testenv_dir() -> PathBuf {
    match std::env::var_os("TESTENV_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        _ => repo_root().join(".testenv"),
    }
}

/// Where the integration tests leave what a secret scan must read: operator logs (`logs/`) and, for
/// every test namespace as it is deleted, its Events and objects (`namespaces/<ns>.json`) and the
/// Secret values it held (`namespaces/<ns>.secrets.json`). `tests/secret_scan.rs` reads it all.
pub fn evidence_dir(kind: &str) -> PathBuf {
    let dir = testenv_dir().join("e2e").join(kind);
    let _ = fs::create_dir_all(&dir);
    dir
}

/// Sends this test binary's own tracing (the in-process controllers, at debug level) to a JSON log
/// in the evidence directory, once per binary.
pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "test".into());
        let path = evidence_dir("logs").join(format!("{exe}-{}.log", std::process::id()));
        let Ok(file) = File::create(&path) else {
            return;
        };
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,atlas_encryption_operator=debug,kube_runtime=debug",
            ))
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    });
}

/// Makes sure the test ground is up, once per test binary, and describes it.
///
/// The ambient `KUBECONFIG` is deliberately not used on its own: a developer's shell may point it
/// at a real cluster, and these tests create and delete namespaces.
pub fn testenv() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| match bring_up() {
        Ok(env) => env,
        Err(e) => panic!("test environment unavailable: {e:#}"),
    })
}

fn bring_up() -> Result<TestEnv> {
    let dir = testenv_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Test binaries run in parallel (cargo nextest, several developers' cargo runs): only one may
    // start the control plane; the others wait here and then find it healthy. `up` is idempotent,
    // and when already healthy it costs a couple of HTTP probes.
    let lock_path = dir.join(".up.lock");
    let lock = File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let out = Command::new(repo_root().join("scripts/testenv.sh"))
        .arg("up")
        .env("TESTENV_DIR", &dir)
        .output()
        .context("running scripts/testenv.sh up")?;
    drop(lock);
    if !out.status.success() {
        bail!(
            "scripts/testenv.sh up failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    read_env_file(&dir)
}

fn read_env_file(dir: &Path) -> Result<TestEnv> {
    let path = dir.join("env");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let vars: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |k: &str| {
        vars.get(k)
            .map(|v| v.to_string())
            .with_context(|| format!("{} has no {k}", path.display()))
    };
    Ok(TestEnv {
        dir: dir.to_path_buf(),
        kubeconfig: PathBuf::from(get("KUBECONFIG")?),
        moto_endpoint: get("MOTO_ENDPOINT")?,
    })
}

/// A name no other test (or earlier run) uses, valid as a DNS-1123 label.
/// A merge patch that changes only an annotation, with a fresh value each time: a person's nudge that
/// makes the operator look again before its next resync.
pub fn poke() -> kube::api::Patch<serde_json::Value> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string();
    kube::api::Patch::Merge(serde_json::json!({"metadata": {"annotations": {"test/poke": nonce}}}))
}

pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let prefix: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let prefix = prefix.trim_matches('-');
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt: u16 = rand::random();
    format!("{prefix}-{:x}-{n}-{salt:04x}", std::process::id())
}
