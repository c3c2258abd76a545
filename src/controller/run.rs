//! Wiring: the watches, the two controllers, and the span, timing and backoff around each reconcile.

use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::wake::gate_key;
use super::{
    Context, ControllerConfig, Error, Reconciler, Result, Stores, cluster, clusters_of, object_key, project,
};
use crate::atlas::{AtlasClient, Lane};
use crate::crd::{ClusterEncryption, ProjectEncryption};
use crate::kms::KmsPreflight;
use crate::metrics::Metrics;
use crate::ops::Health;

/// What a kind needs to be watched and cached.
trait Watched:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// Both kinds' watches: any version is fine for a list, and only this shard's objects when a label
/// selector splits the fleet between several Deployments.
fn watcher_config(label_selector: Option<&str>) -> watcher::Config {
    let config = watcher::Config::default().any_semantic();
    match label_selector {
        Some(selector) => config.labels(selector),
        None => config,
    }
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
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Watched,
{
    let (reader, writer) = reflector::store();
    // Without a backoff the watcher re-lists at once after every failure: a tight loop against an
    // API server that is down or restarting.
    let stream = watcher(scoped_api::<K>(client, namespace), config)
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
    config: watcher::Config,
) -> (
    Store<K>,
    reflector::ReflectHandle<K>,
    impl std::future::Future<Output = ()> + Send + 'static,
)
where
    K: Watched,
{
    let (reader, writer) = reflector::store_shared(SHARED_WATCH_BUFFER);
    let handle = writer
        .subscribe()
        .expect("a shared store always hands out subscribers");
    let driver = watcher(scoped_api::<K>(client, namespace), config)
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
    let watches = Watches::open(&client, &scopes, watcher_config(config.label_selector.as_deref()));
    let projects = Stores(watches.projects.iter().map(|(store, _)| store.clone()).collect());
    let clusters = Stores(watches.clusters.iter().map(|(store, _)| store.clone()).collect());

    let metrics_projects = projects.clone();
    observers
        .metrics
        .watch_projects(Box::new(move || metrics_projects.state()));
    let ctx = Arc::new(Context::new(
        client.clone(),
        atlas,
        kms,
        config.clone(),
        projects,
        clusters,
        observers.metrics,
    ));
    report_synced(ctx.clone(), observers.health.clone());
    let control_plane = watch_control_plane(&ctx);
    // `--concurrency` bounds the passes in `workers`, which hand out slots in order and by lane.
    // kube-runtime admits a few times more: beyond its own bound it takes the objects that come due
    // in an arbitrary order, and within it it holds each admitted object and polls every admitted
    // future on each wake-up (unbounded, a wave of 6,000 objects cost 14 MiB more and 2.6x the CPU).
    // Four times the slots kept the ordering's gain in a 300-object wave (7.0-7.2 s against 7.2-7.5 s
    // with kube-runtime's bound at the slots, four runs each; unbounded 7.1-7.3 s).
    let admitted = config.concurrency.saturating_mul(ADMITTED_PER_SLOT);
    let controller_config = kube::runtime::controller::Config::default().concurrency(admitted);
    let runs = controllers(
        &ctx,
        &scopes,
        watches.projects,
        watches.clusters,
        controller_config,
        shutdown,
    );
    // The watches serve the controllers only: once these have shut down, the watches are dropped.
    futures::future::select(
        futures::future::join_all(runs),
        futures::future::join_all(watches.drivers),
    )
    .await;
    control_plane.abort();
    // The Events of the last passes, before the process exits.
    ctx.events.flush(EVENTS_FLUSH).await;
}

/// Due objects kube-runtime admits per worker slot (see `run_observed`).
const ADMITTED_PER_SLOT: u16 = 4;

/// How long a stopping operator waits for its queued Events to be published.
const EVENTS_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// The one read of Atlas's control-plane IP addresses for the whole operator, refreshed every
/// `control_plane_refresh`; projects take the CIDRs of their key's region from it.
fn watch_control_plane(ctx: &Arc<Context>) -> tokio::task::JoinHandle<()> {
    let (watch, atlas) = (ctx.control_plane.clone(), ctx.atlas.clone());
    let period = ctx.config.control_plane_refresh;
    tokio::spawn(async move { watch.run(atlas, period, |_| {}).await })
}

type Run = futures::future::BoxFuture<'static, ()>;
type ClusterWatch = (
    Store<ClusterEncryption>,
    futures::stream::BoxStream<'static, Result<ClusterEncryption, watcher::Error>>,
);

/// One watch of each kind per scope; the projects' watches are shared by both controllers and driven
/// by `drivers`.
struct Watches {
    projects: Vec<(
        Store<ProjectEncryption>,
        reflector::ReflectHandle<ProjectEncryption>,
    )>,
    clusters: Vec<ClusterWatch>,
    drivers: Vec<Run>,
}

impl Watches {
    fn open(client: &Client, scopes: &[Option<String>], config: watcher::Config) -> Watches {
        let mut watches = Watches {
            projects: Vec::new(),
            clusters: Vec::new(),
            drivers: Vec::new(),
        };
        for scope in scopes {
            let (store, handle, driver) =
                shared_watch::<ProjectEncryption>(client, scope.as_deref(), config.clone());
            watches.projects.push((store, handle));
            watches.drivers.push(Box::pin(driver));
            let (store, stream) = cached_watch::<ClusterEncryption>(client, scope.as_deref(), config.clone());
            watches.clusters.push((store, Box::pin(stream)));
        }
        watches
    }
}

/// Marks the operator ready once both caches hold their first full list.
fn report_synced(ctx: Arc<Context>, health: Arc<Health>) {
    tokio::spawn(async move {
        ctx.projects.wait_until_ready().await;
        ctx.clusters.wait_until_ready().await;
        tracing::info!("caches synced");
        // The resync period in force, for the gauge and the log, before any object needs it.
        ctx.resync_period();
        health.set_synced();
    });
}

/// Both controllers for every scope, each kind with its own reconciler state.
fn controllers(
    ctx: &Arc<Context>,
    scopes: &[Option<String>],
    project_watches: Vec<(
        Store<ProjectEncryption>,
        reflector::ReflectHandle<ProjectEncryption>,
    )>,
    cluster_watches: Vec<ClusterWatch>,
    controller_config: kube::runtime::controller::Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) -> Vec<Run> {
    let project_reconciler = Reconciler::<project::Memory>::new(ctx.clone());
    let cluster_reconciler = Reconciler::<cluster::Memory>::new(ctx.clone());
    tokio::spawn(housekeeping(
        project_reconciler.clone(),
        cluster_reconciler.clone(),
        shutdown.clone(),
    ));
    let mut runs: Vec<Run> = Vec::new();
    for (scope, (store, handle)) in scopes.iter().zip(project_watches.iter().cloned()) {
        // A change of Atlas's control-plane CIDRs offers every project a look; the wake gate lets
        // through those whose key's region changed (see `project::gate_fingerprint`).
        let run = Controller::for_shared_stream(handle, store)
            .with_config(controller_config.clone())
            .reconcile_all_on(ctx.control_plane.changes())
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_project, error_policy, project_reconciler.clone())
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
            .run(reconcile_cluster, error_policy, cluster_reconciler.clone())
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "cluster reconcile");
                }
            });
        runs.push(Box::pin(run));
    }
    runs
}

/// How often the reconcilers forget the objects that are gone.
const FORGET_THE_DEPARTED: std::time::Duration = std::time::Duration::from_secs(60);

/// Until the operator stops: every minute, the reconcilers forget what they remembered of objects that
/// are gone (an object without a finalizer, `deletionPolicy: Retain` or a cluster still waiting for its
/// project, is deleted without a last pass that would forget it). Once it stops, no pass waiting for a
/// worker starts; the passes under way finish.
async fn housekeeping(
    projects: Arc<Reconciler<project::Memory>>,
    clusters: Arc<Reconciler<cluster::Memory>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(FORGET_THE_DEPARTED) => forget_the_departed(&projects, &clusters),
        }
    }
    projects.workers.close();
    clusters.workers.close();
}

fn forget_the_departed(projects: &Reconciler<project::Memory>, clusters: &Reconciler<cluster::Memory>) {
    let ctx = &projects.ctx;
    let (pes, ces) = (ctx.projects.state(), ctx.clusters.state());
    projects
        .state
        .retain(&pes.iter().map(|o| gate_key(o.as_ref())).collect());
    clusters
        .state
        .retain(&ces.iter().map(|o| gate_key(o.as_ref())).collect());
    let pe_keys = pes.iter().map(|o| object_key(o.as_ref()));
    ctx.failures.retain(
        &pe_keys
            .chain(ces.iter().map(|o| object_key(o.as_ref())))
            .collect(),
    );
}

/// One reconcile of a ProjectEncryption in its turn, in a span naming the object and its Atlas project
/// (so every log line carries them), timed and counted.
fn reconcile_project(
    pe: Arc<ProjectEncryption>,
    reconciler: Arc<Reconciler<project::Memory>>,
) -> impl std::future::Future<Output = Result<Action>> + Send {
    let lane = project::worker_lane(&pe, &reconciler);
    let key = ObjectRef::from_obj(pe.as_ref());
    let span = |pe: &ProjectEncryption| {
        let project_id = pe
            .status
            .as_ref()
            .and_then(|s| s.project_id.as_deref())
            .or(pe.spec.project_id.as_deref());
        reconcile_span("ProjectEncryption", pe, project_id.unwrap_or_default())
    };
    in_turn(
        "ProjectEncryption",
        reconciler,
        lane,
        key,
        span,
        project::reconcile,
    )
}

fn reconcile_cluster(
    ce: Arc<ClusterEncryption>,
    reconciler: Arc<Reconciler<cluster::Memory>>,
) -> impl std::future::Future<Output = Result<Action>> + Send {
    let lane = cluster::worker_lane(&ce, &reconciler);
    let key = ObjectRef::from_obj(ce.as_ref());
    let ctx = reconciler.ctx.clone();
    let span = move |ce: &ClusterEncryption| {
        let project_id = cluster::find_project(ce, &ctx)
            .and_then(|pe| pe.status.as_ref().and_then(|s| s.project_id.clone()))
            .unwrap_or_default();
        reconcile_span("ClusterEncryption", ce, &project_id)
    };
    in_turn(
        "ClusterEncryption",
        reconciler,
        lane,
        key,
        span,
        cluster::reconcile,
    )
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

/// A pass over an object in its turn. None when its wake gate says it has nothing to do yet (`lane` is
/// then the rest of its wait); otherwise once a worker slot in its lane is free, over the object as the
/// cache holds it then (the wait can outlast a newer version), timed and counted. While it waits it holds
/// only the object's key (kube-runtime keeps its own reference for the error policy), no span, and (the
/// pass is boxed) not the space of a whole pass.
async fn in_turn<K, S, Pass>(
    kind: &'static str,
    reconciler: Arc<Reconciler<S>>,
    lane: std::result::Result<Lane, std::time::Duration>,
    key: ObjectRef<K>,
    span: impl FnOnce(&K) -> tracing::Span,
    pass: impl FnOnce(Arc<K>, Arc<Reconciler<S>>) -> Pass,
) -> Result<Action>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    S: Cached<K>,
    Pass: std::future::Future<Output = Result<Action>>,
{
    let lane = match lane {
        Ok(lane) => lane,
        Err(wait) => return Ok(Action::requeue(wait)),
    };
    let asked = std::time::Instant::now();
    let Some(_slot) = reconciler.workers.slot(lane).await else {
        // The operator is stopping: the next leader looks at this object.
        return Ok(Action::await_change());
    };
    let metrics = reconciler.ctx.metrics.clone();
    metrics.waited_for_worker(kind, lane, asked.elapsed());
    let Some(object) = S::store(&reconciler.ctx).latest(&key) else {
        // Deleted, or replaced, while it waited: the watch brings what is there now.
        return Ok(Action::await_change());
    };
    let span = span(&object);
    let started = std::time::Instant::now();
    let result = Box::pin(pass(object, reconciler).instrument(span)).await;
    metrics.reconciled(kind, result.is_ok(), started.elapsed());
    result
}

/// Where a reconciler's kind is cached.
trait Cached<K: Resource<DynamicType = ()> + 'static> {
    fn store(ctx: &Context) -> &Stores<K>;
}

impl Cached<ProjectEncryption> for project::Memory {
    fn store(ctx: &Context) -> &Stores<ProjectEncryption> {
        &ctx.projects
    }
}

impl Cached<ClusterEncryption> for cluster::Memory {
    fn store(ctx: &Context) -> &Stores<ClusterEncryption> {
        &ctx.clusters
    }
}

fn error_policy<K, S>(object: Arc<K>, error: &Error, reconciler: Arc<Reconciler<S>>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let key = object_key(object.as_ref());
    let delay = reconciler
        .ctx
        .failures
        .record(&key)
        .max(error.retry_after().unwrap_or_default());
    tracing::warn!(object = %key, category = error.category(), error = %error, ?delay, "reconcile failed");
    Action::requeue(delay)
}
