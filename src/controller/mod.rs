//! The two controllers and what they share: the Kubernetes client, the Atlas client, the KMS
//! preflight, the Event recorder and per-object backoff.

pub mod cluster;
mod credentials;
pub mod project;
mod wake;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::atlas::{AtlasClient, AtlasError};
use crate::crd::{
    ClusterEncryption, ClusterEncryptionStatus, FIELD_MANAGER, ProjectEncryption, ProjectEncryptionStatus,
};
use crate::kms::KmsPreflight;
use crate::metrics::Metrics;
use crate::ops::Health;
use crate::status::{self, Outcome, reasons};

pub use credentials::CredentialsError;

/// Settings the controllers run with.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// How often a converged object is re-read from Atlas to find out-of-band changes.
    pub resync_period: Duration,
    /// Reconciles of one kind running at once.
    pub concurrency: u16,
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            resync_period: Duration::from_secs(600),
            concurrency: 16,
            namespaces: Vec::new(),
        }
    }
}

/// State shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub atlas: AtlasClient,
    pub kms: KmsPreflight,
    /// Who publishes the Events (see [`Context::event`]).
    reporter: Reporter,
    pub config: ControllerConfig,
    /// Every ProjectEncryption the controller sees, to find two objects claiming one Atlas project and
    /// the project of a ClusterEncryption without extra API calls.
    pub projects: Stores<ProjectEncryption>,
    pub clusters: Stores<ClusterEncryption>,
    pub metrics: Arc<Metrics>,
    backoff: Mutex<HashMap<String, u32>>,
    /// When each ProjectEncryption is next due a look (see [`wake::WakeGate`]); in the context, not
    /// the process, so two controllers in one process (tests) never share an entry.
    pub(crate) project_gate: wake::WakeGate,
    /// The same for ClusterEncryptions, and what the cluster reconciler remembers between passes.
    pub(crate) cluster_memory: cluster::Memory,
    /// The stretched resync period last logged, in seconds (see [`Context::resync_period`]).
    resync_logged: AtomicU64,
    now: fn() -> Timestamp,
}

impl Context {
    pub fn new(
        client: Client,
        atlas: AtlasClient,
        kms: KmsPreflight,
        config: ControllerConfig,
        projects: Stores<ProjectEncryption>,
        clusters: Stores<ClusterEncryption>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            client,
            atlas,
            kms,
            reporter,
            config,
            projects,
            clusters,
            metrics,
            backoff: Mutex::new(HashMap::new()),
            project_gate: wake::WakeGate::default(),
            cluster_memory: cluster::Memory::default(),
            resync_logged: AtomicU64::new(0),
            now: Timestamp::now,
        }
    }

    pub fn now(&self) -> Timestamp {
        (self.now)()
    }

    /// How long a converged object waits before Atlas is read again: `--resync-period`, stretched by
    /// [`resync_period`] when the objects in the cache would spend too much of the Atlas rate
    /// budget on resyncs. Logged when the stretch changes by a fifth or more, not on every pass.
    pub fn resync_period(&self) -> Duration {
        let configured = self.config.resync_period;
        let objects = self.projects.len() + self.clusters.len();
        let rate = self.atlas.config().rate_per_second;
        let period = resync_period(configured, objects, rate);
        self.metrics.set_resync_period(period);
        let stretched = if period > configured { period.as_secs() } else { 0 };
        let logged = self.resync_logged.load(Ordering::Relaxed);
        let worth_telling = if stretched == 0 {
            logged != 0
        } else {
            stretched * 5 >= logged * 6 || stretched * 5 <= logged * 4
        };
        // One task logs each change, however many reconciles see it at once.
        if worth_telling
            && self
                .resync_logged
                .compare_exchange(logged, stretched, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            if stretched == 0 {
                tracing::info!(objects, "resync period back to the configured one");
            } else {
                tracing::warn!(
                    objects,
                    configured_s = configured.as_secs(),
                    effective_s = stretched,
                    atlas_rate_per_second = rate,
                    "resync period stretched: re-reading every object once per configured period would \
                     take more than a quarter of the Atlas rate budget"
                );
            }
        }
        period
    }

    /// Publishes an Event. Failing to record one must never fail a reconcile: the status carries the
    /// same information.
    pub async fn event<K>(&self, object: &K, type_: EventType, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let note = truncate_note(note);
        tracing::info!(event_type = ?type_, reason, action, note = %note, "event");
        // Published directly rather than through kube-runtime's Recorder. A shared Recorder keeps every
        // Event for 6 minutes to fold repeats into a series: ours are published on transitions, not
        // repeated, and at 1,000 projects that cache held 20-30 MB (~8,000 Events in a convergence
        // wave); it also folded a later `EncryptionProviderSet` into an earlier one with the other
        // direction in its note. And its Event name, `<object name>.<hex time>`, passes the API server's
        // 253-character limit for names over 236 characters, so those objects got no Events at all.
        let now = Timestamp::now();
        let regarding = object.object_ref(&());
        let event = k8s_openapi::api::events::v1::Event {
            metadata: kube::api::ObjectMeta {
                name: Some(event_name(
                    regarding.name.as_deref().unwrap_or(&self.reporter.controller),
                    now.as_nanosecond(),
                )),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(note),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now)),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            regarding: Some(regarding),
            ..Default::default()
        };
        let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), namespace);
        if let Err(e) = events.create(&Default::default(), &event).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }

    /// Next delay for an object whose reconcile failed: [`wake::failure_backoff`].
    fn next_backoff(&self, key: &str) -> Duration {
        let mut map = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let failures = map.entry(key.to_string()).or_insert(0);
        *failures = failures.saturating_add(1);
        wake::failure_backoff(*failures)
    }

    fn reset_backoff(&self, key: &str) {
        self.backoff.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// The ClusterEncryptions of `project`, from the cache: the one answer to "the clusters of this
    /// project".
    pub fn clusters_of(&self, project: &ProjectEncryption) -> Vec<Arc<ClusterEncryption>> {
        clusters_of(&self.clusters, project)
    }
}

/// The ClusterEncryptions in `clusters` that reference `project`.
fn clusters_of(
    clusters: &Stores<ClusterEncryption>,
    project: &ProjectEncryption,
) -> Vec<Arc<ClusterEncryption>> {
    let namespace = project.namespace();
    let name = project.name_any();
    clusters
        .state()
        .into_iter()
        .filter(|c| c.namespace() == namespace && c.spec.project_encryption_ref.name == name)
        .collect()
}

/// The share of the Atlas rate budget that re-reading converged objects may take. The rest stays free
/// for changes, so a large fleet converging or rotating is never starved by its own resyncs.
pub const RESYNC_BUDGET_SHARE: f64 = 0.25;

/// How often each converged object is re-read from Atlas: the configured period, stretched when
/// `objects` reads per period (one per converged object) would take more than
/// [`RESYNC_BUDGET_SHARE`] of `rate_per_second`. At 6,000 objects and 100 calls/s a 60 s resync would
/// be the whole budget; it becomes 240 s.
pub fn resync_period(configured: Duration, objects: usize, rate_per_second: f64) -> Duration {
    let floor = objects as f64 / (RESYNC_BUDGET_SHARE * rate_per_second);
    if floor.is_finite() && floor > configured.as_secs_f64() {
        Duration::from_secs(floor.ceil() as u64)
    } else {
        configured
    }
}

/// `<object name>.<hex time>`, as kube-runtime names Events, with the object's name cut so the whole
/// stays within the 253 characters the API server allows (the Event's `regarding` carries the full
/// name; `kubectl describe` finds Events by that, not by their own name).
fn event_name(object: &str, nanos: i128) -> String {
    const MAX: usize = 253;
    let suffix = format!(".{nanos:x}");
    let room = MAX.saturating_sub(suffix.len());
    let mut stem = &object[..object.len().min(room)];
    // Each dot-separated part of a name must end with a letter or digit.
    stem = stem.trim_end_matches(['-', '.']);
    format!("{stem}{suffix}")
}

/// Event notes are capped at 1 KiB by the API.
fn truncate_note(note: String) -> String {
    match note.char_indices().nth(1000) {
        Some((at, _)) => format!("{}…", &note[..at]),
        None => note,
    }
}

/// Failures of a reconcile that are not a condition of the object itself: these requeue with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Atlas(#[from] AtlasError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("object has no namespace or name")]
    InvalidObject,
}

impl Error {
    /// A static label for metrics and Event reasons; never the error's text.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesError",
            Error::Atlas(e) => e.category(),
            Error::Credentials(_) => "CredentialsUnreadable",
            Error::InvalidObject => "InvalidObject",
        }
    }

    /// The least wait before this object is looked at again: what Atlas asked for, or, after a write
    /// whose answer was lost, [`UNKNOWN_WRITE_SETTLE`].
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Atlas(e) if e.write_outcome_unknown() => {
                Some(e.retry_after().unwrap_or_default().max(UNKNOWN_WRITE_SETTLE))
            }
            Error::Atlas(e) => e.retry_after(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a write whose answer was lost (timed out, or the connection broke after it was sent) is
/// given to take effect before the object is read again. Atlas finishes what it received; a read at
/// once could show the state from before the write and send it a second time.
const UNKNOWN_WRITE_SETTLE: Duration = Duration::from_secs(5);

fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

fn error_policy<K>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let key = object_key(object.as_ref());
    let delay = ctx
        .next_backoff(&key)
        .max(error.retry_after().unwrap_or_default());
    tracing::warn!(object = %key, category = error.category(), error = %error, ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Writes `status` through the status subresource with server-side apply, only when it differs from
/// what the object already has: a status write triggers a watch event, so writing unchanged status
/// would loop.
pub async fn apply_status<K, S>(api: &Api<K>, object: &K, old: Option<&S>, new: &S) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if old == Some(new) {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": new,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}

/// Adds the cleanup finalizer with a JSON patch guarded by the resourceVersion, so it never clobbers a
/// concurrent change. Returns the object to carry on with: this one when the finalizer is there, the
/// patched one when it was just added (the pass goes on at once rather than wait for the watch to
/// bring the change back), or `None` when the patch lost to a newer version of the object: the cache
/// lagging behind our own earlier patch, or a person's edit. The watch is delivering that version,
/// and it starts the next pass; this is no failure to back off from.
pub async fn ensure_finalizer<K>(api: &Api<K>, object: Arc<K>) -> Result<Option<Arc<K>>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if object.finalizers().iter().any(|f| f == crate::crd::FINALIZER) {
        return Ok(Some(object));
    }
    let mut finalizers = object.finalizers().to_vec();
    finalizers.push(crate::crd::FINALIZER.to_string());
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()},
    });
    match api
        .patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(patched) => Ok(Some(Arc::new(patched))),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_finalizer<K>(api: &Api<K>, object: &K) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let finalizers: Vec<&String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != crate::crd::FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()},
    });
    match api
        .patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Already gone: the finalizer's work is done.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn watcher_config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The reflector stores of one kind across every watched namespace, read as one.
pub struct Stores<K: Resource<DynamicType = ()> + 'static>(Vec<Store<K>>);

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Stores<K> {
    fn clone(&self) -> Self {
        Stores(self.0.clone())
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Stores<K> {
    pub fn len(&self) -> usize {
        self.0.iter().map(Store::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Store::is_empty)
    }

    pub fn state(&self) -> Vec<Arc<K>> {
        self.0.iter().flat_map(Store::state).collect()
    }

    /// Resolves once every store has its first full list.
    pub async fn wait_until_ready(&self) {
        for store in &self.0 {
            // A store wakes only the last task that waited on it, and the controller waits on it
            // too: look again every quarter second rather than rely on being woken.
            while tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready())
                .await
                .is_err()
            {}
        }
    }
}

/// Where the controllers report: metrics and readiness. The defaults observe into the void.
#[derive(Clone, Default)]
pub struct Observers {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

/// A watch of one kind in one scope, feeding a store without `managedFields`: the operator never reads
/// them, and they are often the largest part of an object, so the cache stays small at scale.
fn cached_watch<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    // Without a backoff the watcher re-lists at once after every failure: a tight loop against an
    // API server that is down or restarting.
    let stream = watcher(scoped_api::<K>(client, namespace), watcher_config())
        .default_backoff()
        .modify(|object: &mut K| object.meta_mut().managed_fields = None)
        .reflect(writer)
        .applied_objects();
    (reader, stream)
}

/// How many changed objects a shared watch holds for a subscriber that is busy before it waits.
const SHARED_WATCH_BUFFER: usize = 1024;

/// A [`cached_watch`] whose changes two controllers follow: the returned handle yields each object
/// only after the store holds it, so whoever is woken by a change reads that change from the store.
/// (A second, independent watch could wake a ClusterEncryption before the store its reconciler reads
/// had its project's new status: the cluster would then see the old state and sleep until its next
/// timed look.) The returned future drives the watch and must be polled for as long as the
/// controllers run.
fn shared_watch<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<K>,
    reflector::ReflectHandle<K>,
    impl std::future::Future<Output = ()> + Send + 'static,
)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store_shared(SHARED_WATCH_BUFFER);
    let handle = writer
        .subscribe()
        .expect("a shared store always hands out subscribers");
    let driver = watcher(scoped_api::<K>(client, namespace), watcher_config())
        .default_backoff()
        .modify(|object: &mut K| object.meta_mut().managed_fields = None)
        .reflect_shared(writer)
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(error = %e, kind = K::kind(&()).as_ref(), "watch failed; retrying with backoff");
            }
        });
    (reader, handle, driver)
}

/// Runs both controllers until `shutdown` resolves. Watches only the operator's own kinds: Secrets are
/// read on demand, so memory does not grow with unrelated objects in the cluster.
pub async fn run(
    client: Client,
    atlas: AtlasClient,
    kms: KmsPreflight,
    config: ControllerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    run_observed(client, atlas, kms, config, Observers::default(), shutdown).await
}

/// [`run`], reporting to `observers`. With a list of namespaces, each kind gets one watch per
/// namespace (so RBAC can be a Role per namespace), and the stores are read as one.
pub async fn run_observed(
    client: Client,
    atlas: AtlasClient,
    kms: KmsPreflight,
    config: ControllerConfig,
    observers: Observers,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let mut project_watches = Vec::new();
    let mut cluster_watches = Vec::new();
    let mut drivers: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    for scope in &scopes {
        let (store, handle, driver) = shared_watch::<ProjectEncryption>(&client, scope.as_deref());
        project_watches.push((store, handle));
        drivers.push(Box::pin(driver));
        cluster_watches.push(cached_watch::<ClusterEncryption>(&client, scope.as_deref()));
    }
    let projects = Stores(project_watches.iter().map(|(store, _)| store.clone()).collect());
    let clusters = Stores(cluster_watches.iter().map(|(store, _)| store.clone()).collect());

    let metrics_projects = projects.clone();
    observers
        .metrics
        .watch_projects(Box::new(move || metrics_projects.state()));
    let synced = (projects.clone(), clusters.clone(), observers.health.clone());
    let ctx = Arc::new(Context::new(
        client.clone(),
        atlas,
        kms,
        config.clone(),
        projects,
        clusters,
        observers.metrics,
    ));
    let synced_ctx = ctx.clone();
    tokio::spawn(async move {
        let (projects, clusters, health) = synced;
        projects.wait_until_ready().await;
        clusters.wait_until_ready().await;
        tracing::info!("caches synced");
        // The resync period in force, for the gauge and the log, before any object needs it.
        synced_ctx.resync_period();
        health.set_synced();
    });
    let controller_config = kube::runtime::controller::Config::default().concurrency(config.concurrency);

    let mut runs: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    for (scope, (store, handle)) in scopes.iter().zip(project_watches.iter().cloned()) {
        let run = Controller::for_shared_stream(handle, store)
            .with_config(controller_config.clone())
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_project, error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "project reconcile");
                }
            });
        tracing::debug!(
            namespace = scope.as_deref().unwrap_or("*"),
            "ProjectEncryption controller"
        );
        runs.push(Box::pin(run));
    }
    for ((store, stream), (_, project_handle)) in cluster_watches.into_iter().zip(project_watches) {
        // A ClusterEncryption follows its ProjectEncryption: any change to the project requeues the
        // clusters that reference it, so nothing waits for a resync. The change comes from the
        // projects' shared watch, so the reconciler finds it in the store it reads.
        let cluster_store = ctx.clusters.clone();
        let run = Controller::for_stream(stream, store)
            .with_config(controller_config.clone())
            .watches_shared_stream(project_handle, move |project: Arc<ProjectEncryption>| {
                clusters_of(&cluster_store, &project)
                    .iter()
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect::<Vec<_>>()
            })
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_cluster, error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "cluster reconcile");
                }
            });
        runs.push(Box::pin(run));
    }
    // The watches serve the controllers only: once these have shut down, the watches are dropped.
    futures::future::select(
        futures::future::join_all(runs),
        futures::future::join_all(drivers),
    )
    .await;
}

/// One reconcile of a ProjectEncryption, in a span naming the object and its Atlas project (so every
/// log line carries them), timed and counted.
fn reconcile_project(
    pe: Arc<ProjectEncryption>,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = Result<Action>> + Send {
    let project_id = pe
        .status
        .as_ref()
        .and_then(|s| s.project_id.clone())
        .or_else(|| pe.spec.project_id.clone())
        .unwrap_or_default();
    let span = reconcile_span("ProjectEncryption", pe.as_ref(), &project_id);
    measured("ProjectEncryption", ctx.clone(), project::reconcile(pe, ctx)).instrument(span)
}

fn reconcile_cluster(
    ce: Arc<ClusterEncryption>,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = Result<Action>> + Send {
    let project_id = cluster::find_project(&ce, &ctx)
        .and_then(|pe| pe.status.as_ref().and_then(|s| s.project_id.clone()))
        .unwrap_or_default();
    let span = reconcile_span("ClusterEncryption", ce.as_ref(), &project_id);
    measured("ClusterEncryption", ctx.clone(), cluster::reconcile(ce, ctx)).instrument(span)
}

fn reconcile_span<K: Resource<DynamicType = ()>>(
    kind: &'static str,
    object: &K,
    project_id: &str,
) -> tracing::Span {
    let meta = object.meta();
    tracing::info_span!(
        "reconcile",
        kind,
        object = %format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        ),
        project_id,
    )
}

async fn measured(
    kind: &'static str,
    ctx: Arc<Context>,
    reconcile: impl std::future::Future<Output = Result<Action>>,
) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile.await;
    ctx.metrics.reconciled(kind, result.is_ok(), started.elapsed());
    result
}

/// How a reconcile ended when it did not fail.
#[derive(Debug)]
pub(crate) struct Step {
    pub outcome: Outcome,
    pub requeue: Duration,
}

/// Requeue for conditions only a person can fix: often enough to notice the fix (Secrets and IAM are
/// not watched), rarely enough to cost nothing.
pub(crate) const USER_ACTION_REQUEUE: Duration = Duration::from_secs(60);

impl Step {
    pub fn new(outcome: Outcome, requeue: Duration) -> Self {
        Step { outcome, requeue }
    }

    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Step::new(Outcome::stalled(reason, message), USER_ACTION_REQUEUE)
    }
}

/// The status of either kind, as far as finishing a reconcile needs it.
pub(crate) trait ReconcileStatus: Serialize + PartialEq + Clone + Default {
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn set_observed_generation(&mut self, generation: Option<i64>);
}

impl ReconcileStatus for ProjectEncryptionStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }
}

impl ReconcileStatus for ClusterEncryptionStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }
}

/// Writes the status of a finished reconcile and turns it into the controller's answer. A Stalled
/// outcome raises a Warning Event when the object enters it, not on every pass. An error says what
/// failed without claiming this generation was processed.
pub(crate) async fn finish<K, S>(
    object: &K,
    old: Option<&S>,
    ctx: &Context,
    api: &Api<K>,
    mut status: S,
    result: Result<Step>,
    now: Timestamp,
) -> Result<Action>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: ReconcileStatus,
{
    let generation = object.meta().generation;
    match result {
        Ok(step) => {
            let already_stalled_so = status::is_true(status.conditions_mut(), reasons::STALLED)
                && status::find(status.conditions_mut(), reasons::READY)
                    .is_some_and(|c| c.reason == step.outcome.reason());
            step.outcome.apply(status.conditions_mut(), generation, now);
            status.set_observed_generation(generation);
            apply_status(api, object, old, &status).await?;
            if let Outcome::Stalled { reason, message } = &step.outcome
                && !already_stalled_so
            {
                ctx.event(object, WARNING, reason, "Reconcile", message.clone())
                    .await;
            }
            Ok(done(ctx, object, step.requeue))
        }
        // A refused certificate is not an outage: nothing changes until the trust store or the network
        // path does, so it is reported as Stalled (kstatus: failed) and looked at again unhurried.
        Err(error @ Error::Atlas(AtlasError::UntrustedCertificate { .. })) => {
            let message = format!(
                "{error}. If a TLS-inspecting proxy or a private CA sits between the operator and Atlas, add its CA to the operator's trust store (the Helm chart's trustedCA.configMap, or SSL_CERT_DIR); verification cannot be turned off"
            );
            let already = status::find(status.conditions_mut(), reasons::READY)
                .is_some_and(|c| c.reason == reasons::ATLAS_CERTIFICATE_UNTRUSTED);
            Outcome::stalled(reasons::ATLAS_CERTIFICATE_UNTRUSTED, message.clone()).apply(
                status.conditions_mut(),
                generation,
                now,
            );
            apply_status(api, object, old, &status).await?;
            if !already {
                ctx.event(
                    object,
                    WARNING,
                    reasons::ATLAS_CERTIFICATE_UNTRUSTED,
                    "Reconcile",
                    message,
                )
                .await;
            }
            tracing::warn!(object = %object_key(object), category = "atlas_certificate_untrusted", error = %error, "reconcile stalled");
            Ok(done(ctx, object, USER_ACTION_REQUEUE))
        }
        Err(error) => {
            let message = format!("retrying after an error: {error}");
            Outcome::progressing(reasons::ATLAS_UNAVAILABLE, message).apply(
                status.conditions_mut(),
                generation,
                now,
            );
            apply_status(api, object, old, &status).await?;
            Err(error)
        }
    }
}

/// A reconcile that finished: forget its backoff and requeue after `after`.
fn done<K: Resource<DynamicType = ()>>(ctx: &Context, object: &K, after: Duration) -> Action {
    ctx.reset_backoff(&object_key(object));
    Action::requeue(after)
}

/// How long to wait before looking again at something on its way (a trust policy being created, a
/// cluster updating, clusters turning off), given how long it has been waited for already: at least
/// `first`; then as long again as has been waited (each look doubles the wait) up to 5 s; then a
/// quarter of the time waited, at most 5 min. A quick outcome (an automated customer, a short update)
/// is seen soon after it happens, a long one costs few looks (one every 5 s in its first 20 s, then
/// ever fewer), and nothing needs counting: the wait derives from a condition's transition time or the
/// controller's memory.
pub fn patient_delay(waited: Duration, first: Duration) -> Duration {
    const STEP: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(300);
    waited.min(STEP.max(waited / 4)).max(first).min(MAX)
}

/// The time from `since` to `now`; zero when unknown (or in the future, a clock skew).
pub fn waited_since(since: Option<Timestamp>, now: Timestamp) -> Duration {
    since
        .map(|since| Duration::from_millis(now.duration_since(since).as_millis().max(0) as u64))
        .unwrap_or_default()
}

pub(crate) const WARNING: EventType = EventType::Warning;
pub(crate) const NORMAL: EventType = EventType::Normal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_fit_the_api_servers_limit_whatever_the_object_name() {
        let nanos = 1_796_052_427_123_456_789_i128;
        assert_eq!(event_name("demo", nanos), format!("demo.{nanos:x}"));
        let longest = "a".repeat(253);
        let name = event_name(&longest, nanos);
        assert_eq!(name.len(), 253);
        assert!(name.starts_with(&"a".repeat(200)) && name.ends_with(&format!(".{nanos:x}")));
        // A cut that would leave "-." (not a valid name part) drops the dash.
        let dashed = format!("{}-bbbb", "a".repeat(235));
        let name = event_name(&dashed, nanos);
        assert!(name.len() <= 253 && !name.contains("-."), "{name}");
        assert!(name.starts_with(&"a".repeat(235)));
    }

    #[test]
    fn patient_delay_doubles_then_grows_with_the_wait_and_is_bounded() {
        let s = Duration::from_secs;
        let first = s(1);
        assert_eq!(patient_delay(s(0), first), s(1), "the first look comes soon");
        assert_eq!(patient_delay(s(1), first), s(1));
        assert_eq!(patient_delay(s(2), first), s(2));
        assert_eq!(patient_delay(s(4), first), s(4));
        assert_eq!(patient_delay(s(8), first), s(5), "then every 5 s");
        assert_eq!(patient_delay(s(20), first), s(5));
        assert_eq!(patient_delay(s(400), first), s(100), "then a quarter of the wait");
        assert_eq!(patient_delay(s(100_000), first), s(300));
        assert_eq!(patient_delay(s(0), s(3)), s(3));
        assert_eq!(patient_delay(s(3), s(3)), s(3));
        assert_eq!(patient_delay(s(6), s(3)), s(5));
        assert_eq!(
            patient_delay(s(10), s(5)),
            s(5),
            "a first of 5 s is a steady 5 s at first"
        );
    }

    #[test]
    fn waited_since_is_never_negative() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let at = |s: i64| Some(Timestamp::from_second(s).unwrap());
        assert_eq!(waited_since(at(1_699_999_990), now), Duration::from_secs(10));
        assert_eq!(waited_since(at(1_700_000_010), now), Duration::ZERO);
        assert_eq!(waited_since(None, now), Duration::ZERO);
    }

    #[test]
    fn resync_period_stretches_only_when_resyncs_would_crowd_the_budget() {
        let minute = Duration::from_secs(60);
        // 600 objects a minute at 100/s is 10/s: a tenth of the budget, the period stands.
        assert_eq!(resync_period(minute, 600, 100.0), minute);
        // 6,000 a minute would be the whole budget: a quarter of it allows one per 240 s.
        assert_eq!(resync_period(minute, 6_000, 100.0), Duration::from_secs(240));
        // The default 10 min at the default 5/s serves 750 objects; 3,000 need 40 min.
        assert_eq!(
            resync_period(Duration::from_secs(600), 750, 5.0),
            Duration::from_secs(600)
        );
        assert_eq!(
            resync_period(Duration::from_secs(600), 3_000, 5.0),
            Duration::from_secs(2_400)
        );
        assert_eq!(resync_period(minute, 0, 100.0), minute);
    }

    #[test]
    fn notes_are_capped() {
        assert!(truncate_note("x".repeat(5000)).chars().count() <= 1001);
    }
}
