//! `atlas-eo-bench`: the operator (release binary) at scale on the local control plane, atlas-sim and moto.
//! See bench/README.md for what each figure means and how the ideal is computed.

mod aws;
mod ideal;
mod kube_side;
mod procstat;
mod sim;
mod waits;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use futures::StreamExt;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::kube_side::{ce_name, cluster_resource, pe_name, project_resource};
use crate::sim::{CallSummary, SimOptions, SimProcess};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "atlas-eo-bench",
    about = "Scale benchmark of atlas-encryption-operator"
)]
struct Args {
    /// Numbers of ProjectEncryptions, one run each.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    scales: Vec<u64>,
    /// ClusterEncryptions per ProjectEncryption.
    #[arg(long, default_value_t = 5)]
    clusters_per_project: u64,
    /// Latency atlas-sim adds to every Atlas call.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// How long a cluster stays UPDATING in atlas-sim.
    #[arg(long, default_value_t = 3000)]
    cluster_update_ms: u64,
    /// atlas-sim reuses a computed awsKms.valid this long, so moto is not asked on every EAR read.
    #[arg(long, default_value_t = 60)]
    validity_ttl_s: u64,
    /// The operator's --concurrency (its default).
    #[arg(long, default_value_t = 16)]
    concurrency: u64,
    /// The operator's --atlas-rate-per-second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// The operator's --atlas-burst.
    #[arg(long, default_value_t = 100)]
    burst: u64,
    /// The operator's --resync-period, in seconds.
    #[arg(long, default_value_t = 60)]
    resync_s: u64,
    /// Quiet period measured for the steady state (at least one of the operator's resync periods).
    #[arg(long, default_value_t = 120)]
    idle_s: u64,
    /// Atlas's limits in the simulator for the normal runs: per project CAPACITY,REFILL,SECONDS.
    #[arg(long, default_value = "100,100,60")]
    atlas_project_limit: String,
    /// Per organization; the default sits above the operator's budget, so a correct operator sees no 429.
    #[arg(long, default_value = "300,150,1")]
    atlas_org_limit: String,
    /// Scale of the run under a tight Atlas rate limit (0 skips it).
    #[arg(long, default_value_t = 100)]
    throttle_scale: u64,
    /// The tight per-organization limit of that run, below the operator's budget.
    #[arg(long, default_value = "20,20,1")]
    throttle_org_limit: String,
    /// Runs where atlas-sim publishes its limits (GET /rateLimits) and the operator paces by them, without
    /// an --atlas-rate-per-second ceiling: one run per scale (0 skips them).
    #[arg(long, value_delimiter = ',', default_value = "50,200")]
    published_scales: Vec<u64>,
    /// The generous published limit per project: CAPACITY,REFILL,SECONDS.
    #[arg(long, default_value = "100,100,60")]
    published_project_limit: String,
    /// The generous published limit per organization.
    #[arg(long, default_value = "300,150,1")]
    published_org_limit: String,
    /// Runs under tight published limits, one per scale (0 skips them).
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    published_tight_scales: Vec<u64>,
    /// The tight published limit per organization (the project limit stays the generous one).
    #[arg(long, default_value = "20,20,1")]
    published_tight_org_limit: String,
    /// The crowded cluster: namespaces of unrelated objects (0 skips it).
    #[arg(long, default_value_t = 4000)]
    crowded_namespaces: u64,
    #[arg(long, default_value_t = 5)]
    crowded_objects_per_namespace: u64,
    #[arg(long, default_value_t = 100)]
    crowded_projects: u64,
    /// Unrelated Secrets and ConfigMaps put in the operator's own (watched) namespace in the crowded run.
    #[arg(long, default_value_t = 2000)]
    crowded_same_namespace: u64,
    /// Skip rotation and steady state (convergence only).
    #[arg(long)]
    quick: bool,
    /// Timeout of each wait.
    #[arg(long, default_value_t = 1800)]
    timeout_s: u64,
    /// Where the release binaries are (default: $CARGO_TARGET_DIR/release).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Results file (default: bench/results/<date>.json under the current directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Work directory for logs and seeds.
    #[arg(long, default_value = "/tmp/atlas-eo-bench")]
    work_dir: PathBuf,
    /// Delete the crowded namespaces and exit.
    #[arg(long)]
    clean: bool,
}

struct Env {
    args: Args,
    client: Client,
    moto: String,
    aws: aws::Aws,
    bin_dir: PathBuf,
    kubeconfig: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let kubeconfig =
        std::env::var("KUBECONFIG").context("KUBECONFIG is not set: eval \"$(scripts/testenv.sh env)\"")?;
    let moto = std::env::var("MOTO_ENDPOINT").context("MOTO_ENDPOINT is not set")?;
    let client = Client::try_default().await?;
    if args.clean {
        let n = kube_side::delete_crowd(&client).await?;
        eprintln!("bench: deleting {n} crowded namespaces");
        return Ok(());
    }
    let bin_dir = args.bin_dir.clone().unwrap_or_else(|| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        PathBuf::from(target).join("release")
    });
    for bin in ["atlas-encryption-operator", "atlas-sim"] {
        if !bin_dir.join(bin).exists() {
            bail!(
                "{} not found: build with cargo build --release",
                bin_dir.join(bin).display()
            );
        }
    }
    std::fs::create_dir_all(&args.work_dir)?;
    let env = Env {
        aws: aws::Aws::new(&moto).await,
        args: args.clone(),
        client,
        moto,
        bin_dir,
        kubeconfig,
    };

    let started = chrono::Utc::now();
    let load_start = procstat::loadavg();
    let mut runs = Vec::new();
    let mut published = Vec::new();
    for &n in &args.scales {
        match run_scale(&env, n, Mode::Full).await {
            Ok(run) => {
                print_run(&run);
                runs.push(run);
            }
            Err(e) => {
                eprintln!("bench: scale {n} failed: {e:#}");
                runs.push(json!({"projects": n, "clusters": n * args.clusters_per_project, "error": format!("{e:#}")}));
            }
        }
        write_results(&env, started, &load_start, &runs, &published, None, None)?;
    }
    let published_runs = (args.published_scales.iter().map(|n| (*n, Mode::Published)))
        .chain(
            args.published_tight_scales
                .iter()
                .map(|n| (*n, Mode::PublishedTight)),
        )
        .filter(|(n, _)| *n > 0);
    for (n, mode) in published_runs {
        let run = run_scale(&env, n, mode).await.unwrap_or_else(|e| {
            eprintln!("bench: {mode:?} scale {n} failed: {e:#}");
            json!({"projects": n, "error": format!("{e:#}")})
        });
        print_run(&run);
        published.push(run);
        write_results(&env, started, &load_start, &runs, &published, None, None)?;
    }
    let throttled = if args.throttle_scale > 0 {
        let r = run_scale(&env, args.throttle_scale, Mode::Throttled)
            .await
            .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        eprintln!("bench: throttled run: {r}");
        write_results(&env, started, &load_start, &runs, &published, Some(&r), None)?;
        Some(r)
    } else {
        None
    };
    if args.crowded_namespaces > 0 {
        let t = Instant::now();
        let created = kube_side::ensure_crowd(
            &env.client,
            args.crowded_namespaces,
            args.crowded_objects_per_namespace,
            16,
        )
        .await?;
        eprintln!(
            "bench: crowd ready ({created} objects created now) in {:.0}s",
            t.elapsed().as_secs_f64()
        );
        let crowded = run_scale(&env, args.crowded_projects, Mode::Crowded)
            .await
            .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        eprintln!("bench: crowded run: {crowded}");
        write_results(
            &env,
            started,
            &load_start,
            &runs,
            &published,
            throttled.as_ref(),
            Some(&crowded),
        )?;
    }
    Ok(())
}

fn results_path(env: &Env, started: chrono::DateTime<chrono::Utc>) -> PathBuf {
    env.args.out.clone().unwrap_or_else(|| {
        // Relative to the repo root `make bench` runs in, not the compile-time manifest dir: checkouts
        // sharing one cached target dir reuse each other's binaries.
        PathBuf::from("bench/results").join(format!("{}.json", started.format("%Y-%m-%d")))
    })
}

fn write_results(
    env: &Env,
    started: chrono::DateTime<chrono::Utc>,
    load_start: &str,
    runs: &[Value],
    published: &[Value],
    throttled: Option<&Value>,
    crowded: Option<&Value>,
) -> Result<()> {
    let a = &env.args;
    let mut machine = procstat::machine();
    machine["loadavg_start"] = json!(load_start);
    machine["loadavg_end"] = json!(procstat::loadavg());
    let doc = json!({
        "machine": machine,
        "started": started.to_rfc3339(),
        "config": {
            "latency_ms": a.latency_ms, "cluster_update_ms": a.cluster_update_ms, "concurrency": a.concurrency,
            "atlas_rate_per_second": a.rate, "atlas_burst": a.burst, "resync_s": a.resync_s, "idle_s": a.idle_s,
            "clusters_per_project": a.clusters_per_project, "sim_validity_ttl_s": a.validity_ttl_s,
            "atlas_project_limit": a.atlas_project_limit, "atlas_org_limit": a.atlas_org_limit,
        },
        "runs": runs,
        "published_limits": {
            "project": a.published_project_limit, "organization": a.published_org_limit,
            "tight_organization": a.published_tight_org_limit, "runs": published,
        },
        "throttled": throttled,
        "crowded": crowded,
    });
    let path = results_path(env, started);
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Full,
    Throttled,
    Crowded,
    /// atlas-sim publishes generous limits; the operator runs without a ceiling.
    Published,
    /// atlas-sim publishes a tight organization limit; the operator runs without a ceiling.
    PublishedTight,
}

impl Mode {
    fn published(self) -> bool {
        matches!(self, Mode::Published | Mode::PublishedTight)
    }
}

struct Operator {
    child: Child,
    pid: u32,
    log: PathBuf,
    metrics_url: String,
    rss: procstat::RssPeak,
}

impl Operator {
    /// `ceiling`: the operator's --atlas-rate-per-second, if any.
    async fn start(env: &Env, sim_url: &str, ns: &str, log: &Path, ceiling: Option<f64>) -> Result<Self> {
        let a = &env.args;
        let ceiling: Vec<String> = ceiling
            .map(|c| vec!["--atlas-rate-per-second".to_string(), c.to_string()])
            .unwrap_or_default();
        let log_file = std::fs::File::create(log)?;
        // A port of its own, so the bench reads this operator's metrics and no one else's.
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(env.bin_dir.join("atlas-encryption-operator"))
            .args(["--atlas-base-url", sim_url, "--watch-namespace", ns])
            .args(["--metrics-bind-address", &format!("127.0.0.1:{metrics_port}")])
            .args(["--health-bind-address", "127.0.0.1:0"])
            .args(["--kms-endpoint-url", &env.moto])
            .args(["--resync-period", &format!("{}s", a.resync_s)])
            .args(["--concurrency", &a.concurrency.to_string()])
            .args(&ceiling)
            .args(["--atlas-burst", &a.burst.to_string()])
            .args(["--log-format", "text"])
            // Every Kubernetes request the operator makes is one "requesting" line (kube-client's trace
            // layer), which is how they are counted.
            .args(["--log-level", "warn,kube_client::client::builder=debug"])
            .env("KUBECONFIG", &env.kubeconfig)
            .env("NO_COLOR", "1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", aws::REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the operator")?;
        let pid = child.id().context("operator pid")?;
        Ok(Operator {
            child,
            pid,
            log: log.to_path_buf(),
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            rss: procstat::RssPeak::spawn(pid),
        })
    }

    fn cpu(&self) -> f64 {
        procstat::cpu_seconds(self.pid).unwrap_or(0.0)
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// Kubernetes requests logged since byte `from` of the log, by verb.
    fn k8s_requests_since(&self, from: u64) -> BTreeMap<String, u64> {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
        count_k8s_requests(&text)
    }

    /// The resync period the operator runs with: `--resync-period`, or longer when it stretched it to
    /// spare the Atlas rate budget (its `resync_period_seconds` gauge).
    async fn effective_resync_s(&self) -> Result<u64> {
        let text = reqwest::get(&self.metrics_url)
            .await?
            .error_for_status()?
            .text()
            .await?;
        let value = gauge_value(&text, "atlas_encryption_operator_resync_period_seconds")
            .with_context(|| format!("no resync_period_seconds in {}", self.metrics_url))?;
        Ok(value as u64)
    }

    async fn stop(mut self) -> f64 {
        let peak = self.rss.mib().max(
            procstat::rss_kib(self.pid)
                .map(|r| r.1 as f64 / 1024.0)
                .unwrap_or(0.0),
        );
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        let _ = self.child.kill().await;
        peak
    }
}

/// The value of an unlabelled metric in a Prometheus text exposition.
fn gauge_value(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Counts kube-client "requesting" lines by method and resource kind (the URL path's plural, with
/// `/status` and `watch` told apart).
fn count_k8s_requests(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| l.ends_with("requesting")) {
        let field = |name: &str| {
            line.find(name)
                .map(|at| &line[at + name.len()..])
                .and_then(|rest| rest.split([' ', '}']).next())
        };
        let method = field("http.method=").unwrap_or("?");
        let url = field("http.url=").unwrap_or("");
        let path = url.split('?').next().unwrap_or("");
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let watch = url.contains("watch=true");
        let resource = if path.ends_with("/status") {
            segments.iter().rev().nth(2).map(|r| format!("{r}/status"))
        } else {
            let known = [
                "projectencryptions",
                "clusterencryptions",
                "secrets",
                "events",
                "configmaps",
            ];
            segments
                .iter()
                .rev()
                .find(|s| known.contains(s))
                .map(|s| s.to_string())
        }
        .unwrap_or_else(|| "other".into());
        let verb = if watch { "WATCH" } else { method };
        *counts.entry(format!("{verb} {resource}")).or_insert(0) += 1;
        *counts.entry("total".into()).or_insert(0) += 1;
    }
    counts
}

fn per(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { round2(n as f64 / d as f64) }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

async fn run_scale(env: &Env, n: u64, mode: Mode) -> Result<Value> {
    let a = &env.args;
    let c = a.clusters_per_project;
    let run = (chrono::Utc::now().timestamp() as u32) % 0xfff;
    let label = match mode {
        Mode::Full => "run",
        Mode::Throttled => "throttled",
        Mode::Crowded => "crowded",
        Mode::Published => "published",
        Mode::PublishedTight => "published-tight",
    };
    let ns = format!("aeo-bench-{label}-{n}-{run:x}");
    let dir = a.work_dir.join(&ns);
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "bench: === {label} {n} projects × {c} clusters in namespace {ns} (load {})",
        procstat::loadavg()
    );

    // The customer's AWS account.
    let t = Instant::now();
    let keys = env.aws.create_keys(&format!("{ns}-k"), n, 16).await?;
    let role_prefix = format!("{ns}-r");
    let roles = env.aws.create_roles(&role_prefix, n, 16).await?;
    eprintln!(
        "bench: {n} KMS keys and IAM roles in moto in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Atlas.
    let seed = dir.join("seed.yaml");
    std::fs::write(&seed, sim::seed_yaml(run, n, c))?;
    let (project_limit, org_limit) = match mode {
        Mode::Throttled => (
            Some(a.atlas_project_limit.clone()),
            Some(a.throttle_org_limit.clone()),
        ),
        Mode::Published => (
            Some(a.published_project_limit.clone()),
            Some(a.published_org_limit.clone()),
        ),
        Mode::PublishedTight => (
            Some(a.published_project_limit.clone()),
            Some(a.published_tight_org_limit.clone()),
        ),
        _ => (
            Some(a.atlas_project_limit.clone()),
            Some(a.atlas_org_limit.clone()),
        ),
    };
    let sim = SimProcess::start(
        &env.bin_dir.join("atlas-sim"),
        &seed,
        &env.moto,
        &SimOptions {
            latency_ms: a.latency_ms,
            cluster_update_ms: a.cluster_update_ms,
            validity_ttl_s: a.validity_ttl_s,
            project_rate_limit: project_limit.clone(),
            org_rate_limit: org_limit.clone(),
            publish_rate_limits: mode.published(),
        },
        &dir.join("atlas-sim.log"),
    )
    .await?;

    // Kubernetes.
    kube_side::ensure_namespace(&env.client, &ns, json!({"atlas-eo-bench/run": "true"})).await?;
    kube_side::apply_secret(
        &env.client,
        &ns,
        "atlas-credentials",
        &[("publicKey", sim::PUBLIC_KEY), ("privateKey", sim::PRIVATE_KEY)],
    )
    .await?;
    if mode == Mode::Crowded && a.crowded_same_namespace > 0 {
        fill_namespace(&env.client, &ns, a.crowded_same_namespace).await?;
    }
    let pe_api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &ns, &project_resource());
    let ce_api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &ns, &cluster_resource());
    let projects = kube_side::watch(&env.client, &ns, &project_resource()).await?;
    let clusters = kube_side::watch(&env.client, &ns, &cluster_resource()).await?;

    let ceiling = (!mode.published()).then_some(a.rate);
    let op = Operator::start(env, &sim.url, &ns, &dir.join("operator.log"), ceiling).await?;
    // Let it list and settle before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss_mib = procstat::rss_kib(op.pid)
        .map(|r| r.0 as f64 / 1024.0)
        .unwrap_or(0.0);

    // The customer's side of the handshake, as fast as the operator publishes each external ID.
    let trusted = Arc::new(std::sync::Mutex::new(std::collections::HashSet::<String>::new()));
    // When each project's trust policy was in place, by Atlas project id (for the waits breakdown).
    let trusted_at = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let responder = {
        let store = projects.store.clone();
        let aws = env.aws.clone();
        let trusted = trusted.clone();
        let trusted_at = trusted_at.clone();
        let role_prefix = role_prefix.clone();
        tokio::spawn(async move {
            loop {
                let todo: Vec<(String, String, String, String)> = store
                    .state()
                    .iter()
                    .filter_map(|pe| {
                        let (arn, ext) = kube_side::published_role(pe)?;
                        let name = pe.name_any();
                        let group = pe.data["spec"]["projectId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        let done = trusted.lock().unwrap().contains(&format!("{name}/{ext}"));
                        (!done).then_some((name, group, arn, ext))
                    })
                    .collect();
                futures::stream::iter(todo)
                    .map(|(name, group, arn, ext)| {
                        let aws = aws.clone();
                        let trusted = trusted.clone();
                        let trusted_at = trusted_at.clone();
                        let role = format!("{role_prefix}-{}", name.trim_start_matches('p'));
                        async move {
                            match aws.trust(&role, &arn, &ext).await {
                                Ok(()) => {
                                    trusted.lock().unwrap().insert(format!("{name}/{ext}"));
                                    trusted_at.lock().unwrap().insert(group, chrono::Utc::now());
                                }
                                Err(e) => eprintln!("bench: trust {role}: {e}"),
                            }
                        }
                    })
                    .buffer_unordered(16)
                    .collect::<Vec<_>>()
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Initial convergence.
    sim.clear_calls().await?;
    let cpu0 = op.cpu();
    let log0 = op.log_len();
    let writes0 = projects.writes.load(Ordering::Relaxed) + clusters.writes.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let applied_at = chrono::Utc::now();
    let objects: Vec<(bool, String, Value)> = (0..n)
        .flat_map(|i| {
            let pe = json!({
                "apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": "ProjectEncryption",
                "metadata": {"name": pe_name(i)},
                "spec": {
                    "projectId": sim::project_id(run, i),
                    "credentialsRef": {"name": "atlas-credentials"},
                    "awsKms": {"customerMasterKeyId": keys[i as usize], "region": aws::REGION, "roleArn": roles[i as usize]},
                },
            });
            std::iter::once((true, pe_name(i), pe)).chain((0..c).map(move |j| {
                let ce = json!({
                    "apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": "ClusterEncryption",
                    "metadata": {"name": ce_name(i, j)},
                    "spec": {"projectEncryptionRef": {"name": pe_name(i)}, "clusterName": sim::cluster_name(j)},
                });
                (false, ce_name(i, j), ce)
            }))
        })
        .collect();
    let results: Vec<Result<()>> = futures::stream::iter(objects)
        .map(|(is_pe, name, object)| {
            let api = if is_pe { pe_api.clone() } else { ce_api.clone() };
            async move { kube_side::apply(&api, &name, &object).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let applied_s = t0.elapsed().as_secs_f64();
    let total = n * (1 + c);
    let wait = kube_side::wait_for(
        "all Ready",
        &projects,
        &clusters,
        Duration::from_secs(a.timeout_s),
        |ps, cs| {
            let ready = ps.iter().filter(|o| kube_side::is_ready(o)).count()
                + cs.iter().filter(|o| kube_side::is_ready(o)).count();
            let stalled = ps.iter().filter(|o| kube_side::is_stalled(o)).count()
                + cs.iter().filter(|o| kube_side::is_stalled(o)).count();
            (
                ready as u64 == total && ps.len() + cs.len() == total as usize,
                format!("{ready}/{total} Ready, {stalled} Stalled"),
            )
        },
    )
    .await;
    let time_to_ready_s = t0.elapsed().as_secs_f64();
    // The wait's own line counts from the end of the apply; the figure counts from its start.
    eprintln!("bench: time to Ready {time_to_ready_s:.1}s from the start of the apply ({applied_s:.1}s)");
    let stalled = projects
        .store
        .state()
        .iter()
        .filter(|o| kube_side::is_stalled(o))
        .count()
        + clusters
            .store
            .state()
            .iter()
            .filter(|o| kube_side::is_stalled(o))
            .count();
    let all_ready_at = chrono::Utc::now();
    let converge_log = sim.calls().await?;
    let converge_calls = CallSummary::of(&converge_log);
    let moments = waits::Moments {
        applied: applied_at,
        trusted: trusted_at.lock().unwrap().clone(),
        all_ready: all_ready_at,
    };
    let converge_waits = waits::breakdown(&converge_log, &moments);
    // The whole call log beside the operator's, to see what a run spent its budget on and when.
    std::fs::write(
        dir.join("convergence-calls.json"),
        serde_json::to_vec(&converge_log)?,
    )?;
    let converge_cpu = op.cpu() - cpu0;
    let converge_k8s = op.k8s_requests_since(log0);
    let converge_writes =
        projects.writes.load(Ordering::Relaxed) + clusters.writes.load(Ordering::Relaxed) - writes0;
    let converged = wait.is_ok();
    if let Err(e) = &wait {
        eprintln!("bench: {e:#}");
    }

    let flow = ideal::FlowParams {
        projects: n,
        clusters_per_project: c,
        latency_s: a.latency_ms as f64 / 1000.0,
        concurrency: a.concurrency,
        rate_per_s: if mode.published() { 0.0 } else { a.rate },
        burst: a.burst,
        cluster_update_s: a.cluster_update_ms as f64 / 1000.0,
        // Atlas's published buckets bound the published runs; the others run below Atlas's limits by design.
        project_limit: project_limit
            .as_deref()
            .filter(|_| mode.published())
            .and_then(ideal::parse_limit),
        org_limit: org_limit
            .as_deref()
            .filter(|_| mode.published())
            .and_then(ideal::parse_limit),
    };
    let ideal = ideal::ideal(&flow);
    let mut out = json!({
        "mode": label,
        "projects": n,
        "clusters": n * c,
        "namespace": ns,
        "converged": converged,
        "stalled_at_end": stalled,
        "apply_s": round2(applied_s),
        "time_to_ready_s": round2(time_to_ready_s),
        "ideal_time_s": round2(ideal.time_s),
        "ideal_time_parts_s": {"critical_path": round2(ideal.critical_path_s), "worker_pool": round2(ideal.pool_bound_s), "rate_budget": round2(ideal.rate_bound_s), "rate_budget_then_update": round2(ideal.rate_then_update_s)},
        "time_ratio": round2(time_to_ready_s / ideal.time_s),
        // The ratio against the ideal of sessions up to 8, which let the update overlap the budget.
        "time_ratio_update_overlapping": round2(time_to_ready_s / ideal.time_s_update_overlapping()),
        "atlas_calls": converge_calls.total(),
        "atlas_calls_per_resource": per(converge_calls.total(), total),
        "ideal_calls_per_resource": round2(ideal.calls_per_resource),
        "calls_ratio": round2(converge_calls.total() as f64 / (ideal.reads + ideal.writes) as f64),
        "atlas_reads_per_resource": per(converge_calls.reads, total),
        "atlas_writes_per_resource": per(converge_calls.writes, total),
        "ideal_reads_per_resource": per(ideal.reads, total),
        "ideal_writes_per_resource": per(ideal.writes, total),
        "auth_challenges": converge_calls.auth_challenges,
        "atlas_calls_by_route": converge_calls.by_route,
        "throttled_429": converge_calls.throttled_429,
        "k8s_requests": converge_k8s,
        "k8s_requests_per_resource": per(converge_k8s.get("total").copied().unwrap_or(0), total),
        "object_writes_seen": converge_writes,
        "cpu_s": round2(converge_cpu),
        "operator_rss_before_apply_mib": round2(idle_rss_mib),
        "waits": converge_waits,
    });

    if matches!(mode, Mode::Full | Mode::Published) && converged && !a.quick {
        // Rotation wave: a new key on every project.
        let new_keys = env.aws.create_keys(&format!("{ns}-k2"), n, 16).await?;
        sim.clear_calls().await?;
        let log1 = op.log_len();
        let t1 = Instant::now();
        let patches: Vec<Result<()>> = futures::stream::iter(0..n)
            .map(|i| {
                let api = pe_api.clone();
                let key = new_keys[i as usize].clone();
                async move {
                    let patch = json!({"spec": {"awsKms": {"customerMasterKeyId": key}}});
                    api.patch(&pe_name(i), &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                    Ok::<(), anyhow::Error>(())
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        patches.into_iter().collect::<Result<Vec<()>>>()?;
        let wanted: std::collections::HashMap<String, String> = (0..n)
            .map(|i| (pe_name(i), new_keys[i as usize].clone()))
            .collect();
        let rotated = kube_side::wait_for(
            "rotation",
            &projects,
            &clusters,
            Duration::from_secs(a.timeout_s),
            |ps, cs| {
                let done = ps
                    .iter()
                    .filter(|o| {
                        kube_side::is_ready(o)
                            && kube_side::key_in_force(o) == wanted.get(&o.name_any()).map(|s| s.as_str())
                    })
                    .count();
                let ready_clusters = cs.iter().filter(|o| kube_side::is_ready(o)).count();
                (
                    done as u64 == n && ready_clusters as u64 == n * c,
                    format!("{done}/{n} rotated, {ready_clusters}/{} clusters Ready", n * c),
                )
            },
        )
        .await;
        let rotation_s = t1.elapsed().as_secs_f64();
        let rot_calls = CallSummary::of(&sim.calls().await?);
        let (core, snapshot_check) = ideal::rotation_calls(c);
        out["rotation_ok"] = json!(rotated.is_ok());
        out["rotation_time_s"] = json!(round2(rotation_s));
        out["rotation_calls_per_project"] = json!(per(rot_calls.total(), n));
        out["rotation_reads_per_project"] = json!(per(rot_calls.reads, n));
        out["rotation_writes_per_project"] = json!(per(rot_calls.writes, n));
        out["ideal_rotation_calls_per_project"] =
            json!({"key_change": core, "snapshot_check": snapshot_check});
        out["rotation_calls_by_route"] = json!(rot_calls.by_route);
        out["rotation_k8s_requests"] = json!(op.k8s_requests_since(log1));

        // Steady state: let the first resync after the changes pass, then measure a quiet period.
        let resync_s = op.effective_resync_s().await?;
        out["effective_resync_s"] = json!(resync_s);
        let settle = Duration::from_secs(resync_s + 10);
        // At least one whole resync period, so every object's resync falls in the window once.
        let idle = Duration::from_secs(a.idle_s.max(resync_s));
        eprintln!(
            "bench: resync period {resync_s}s; settling {}s, then {}s of quiet",
            settle.as_secs(),
            idle.as_secs()
        );
        tokio::time::sleep(settle).await;
        sim.clear_calls().await?;
        let cpu2 = op.cpu();
        let log2 = op.log_len();
        let writes2 = projects.writes.load(Ordering::Relaxed) + clusters.writes.load(Ordering::Relaxed);
        let t2 = Instant::now();
        tokio::time::sleep(idle).await;
        let minutes = t2.elapsed().as_secs_f64() / 60.0;
        let idle_calls = CallSummary::of(&sim.calls().await?);
        let idle_writes =
            projects.writes.load(Ordering::Relaxed) + clusters.writes.load(Ordering::Relaxed) - writes2;
        let idle_k8s = op.k8s_requests_since(log2);
        let idle_cpu = op.cpu() - cpu2;
        let resync_per_min = 60.0 / resync_s as f64;
        out["idle_minutes"] = json!(round2(minutes));
        out["idle_atlas_reads_per_min"] = json!(round2(idle_calls.reads as f64 / minutes));
        out["idle_atlas_writes_per_min"] = json!(round2(idle_calls.writes as f64 / minutes));
        out["idle_atlas_reads_per_resource_per_resync"] = json!(round2(
            idle_calls.reads as f64 / minutes / resync_per_min / total as f64
        ));
        out["idle_atlas_calls_by_route"] = json!(idle_calls.by_route);
        out["idle_status_writes_per_min"] = json!(round2(idle_writes as f64 / minutes));
        out["idle_k8s_requests_per_min"] = json!(round2(
            idle_k8s.get("total").copied().unwrap_or(0) as f64 / minutes
        ));
        out["idle_k8s_requests"] = json!(idle_k8s);
        out["idle_cpu_s_per_min"] = json!(round2(idle_cpu / minutes));
        out["throttled_429_idle"] = json!(idle_calls.throttled_429);
    }

    // Tear down: the operator lets go of its objects (deletionPolicy Retain) as the namespace goes.
    responder.abort();
    let t3 = Instant::now();
    if let Err(e) = kube_side::delete_namespace(&env.client, &ns, Duration::from_secs(600)).await {
        eprintln!("bench: {e:#}; removing finalizers by hand");
        kube_side::strip_finalizers(&env.client, &ns).await?;
    }
    eprintln!(
        "bench: namespace {ns} deleted in {:.0}s",
        t3.elapsed().as_secs_f64()
    );
    let peak = op.stop().await;
    sim.stop().await;
    out["peak_rss_mib"] = json!(round2(peak));
    out["rss_per_object_kib"] = json!(round2(peak * 1024.0 / total as f64));
    if mode == Mode::Crowded {
        out = json!({
            "namespaces": a.crowded_namespaces,
            "unrelated_objects": a.crowded_namespaces * a.crowded_objects_per_namespace,
            "unrelated_objects_in_watched_namespace": a.crowded_same_namespace,
            "projects": n,
            "clusters": n * c,
            "peak_rss_mib": out["peak_rss_mib"],
            "converged": out["converged"],
            "time_to_ready_s": out["time_to_ready_s"],
            "k8s_requests": out["k8s_requests"],
            "run": out,
        });
    }
    Ok(out)
}

/// Unrelated Secrets and ConfigMaps in the watched namespace itself.
async fn fill_namespace(client: &Client, ns: &str, count: u64) -> Result<()> {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let filler = "y".repeat(1024);
    let pp = PatchParams::apply(kube_side::FIELD_MANAGER).force();
    let results: Vec<Result<()>> = futures::stream::iter(0..count)
        .map(|i| {
            let (client, filler, pp) = (client.clone(), filler.clone(), pp.clone());
            async move {
                let name = format!("unrelated-{i}");
                if i.is_multiple_of(2) {
                    let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"payload": filler}});
                    Api::<Secret>::namespaced(client, ns).patch(&name, &pp, &Patch::Apply(&s)).await?;
                } else {
                    let c = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"payload": filler}});
                    Api::<ConfigMap>::namespaced(client, ns).patch(&name, &pp, &Patch::Apply(&c)).await?;
                }
                Ok::<(), anyhow::Error>(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(())
}

fn print_run(run: &Value) {
    let f = |k: &str| run.get(k).map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    println!(
        "\n{:>15} {:>8} {:>8} | ready {:>8}s (ideal {:>7}s, ×{}) | calls/res {} (ideal {}, ×{}; R {} W {}) | rotation {}s, {} calls/project | idle R/min {} W/min {} status W/min {} k8s/min {} cpu s/min {} | peak RSS {} MiB | 429 {}",
        f("mode"),
        f("projects"),
        f("clusters"),
        f("time_to_ready_s"),
        f("ideal_time_s"),
        f("time_ratio"),
        f("atlas_calls_per_resource"),
        f("ideal_calls_per_resource"),
        f("calls_ratio"),
        f("atlas_reads_per_resource"),
        f("atlas_writes_per_resource"),
        f("rotation_time_s"),
        f("rotation_calls_per_project"),
        f("idle_atlas_reads_per_min"),
        f("idle_atlas_writes_per_min"),
        f("idle_status_writes_per_min"),
        f("idle_k8s_requests_per_min"),
        f("idle_cpu_s_per_min"),
        f("peak_rss_mib"),
        f("throttled_429"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlabelled_gauge_is_read_from_the_exposition() {
        let text = "# HELP atlas_encryption_operator_resync_period_seconds How often.\n\
                    # TYPE atlas_encryption_operator_resync_period_seconds gauge\n\
                    atlas_encryption_operator_resync_period_seconds_total 7\n\
                    atlas_encryption_operator_resync_period_seconds 240\n";
        let name = "atlas_encryption_operator_resync_period_seconds";
        assert_eq!(gauge_value(text, name), Some(240.0));
        assert_eq!(gauge_value(text, "atlas_encryption_operator_leader"), None);
    }

    #[test]
    fn kube_client_request_lines_are_counted_by_verb_and_resource() {
        let log = "\
2026-01-01T00:00:00Z DEBUG HTTP{http.method=GET http.url=https://127.0.0.1:6443/api/v1/namespaces/a/secrets/atlas-credentials otel.name=\"get\" otel.kind=\"client\"}: kube_client::client::builder: requesting
2026-01-01T00:00:00Z DEBUG HTTP{http.method=PATCH http.url=https://127.0.0.1:6443/apis/encryption.atlasops.dev/v1alpha1/namespaces/a/projectencryptions/p1/status?fieldManager=x otel.name=\"patch_status\" otel.kind=\"client\"}: kube_client::client::builder: requesting
2026-01-01T00:00:00Z DEBUG HTTP{http.method=GET http.url=https://127.0.0.1:6443/apis/encryption.atlasops.dev/v1alpha1/namespaces/a/clusterencryptions?&watch=true&timeoutSeconds=290 otel.name=\"watch\" otel.kind=\"client\"}: kube_client::client::builder: requesting
2026-01-01T00:00:00Z WARN something else
";
        let counts = count_k8s_requests(log);
        assert_eq!(counts["GET secrets"], 1);
        assert_eq!(counts["PATCH projectencryptions/status"], 1);
        assert_eq!(counts["WATCH clusterencryptions"], 1);
        assert_eq!(counts["total"], 3);
    }
}
