//! What every reconcile shares: the clients, the caches of both kinds, the settings, the one failure
//! count, and the resync budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use super::wake;
use super::workers::Workers;
use crate::atlas::AtlasClient;
use crate::control_plane::ControlPlaneWatch;
use crate::crd::{ClusterEncryption, FIELD_MANAGER, ProjectEncryption};
use crate::kms::KmsPreflight;
use crate::metrics::Metrics;

/// Settings the controllers run with.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// How often a converged object is re-read from Atlas to find out-of-band changes.
    pub resync_period: Duration,
    /// Reconciles of one kind running at once.
    pub concurrency: u16,
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    /// Only objects with these labels (a Kubernetes label selector): this replica's shard of a fleet
    /// that several Deployments of the operator split between them.
    pub label_selector: Option<String>,
    /// How often Atlas's control-plane IP addresses are read again (one read for the whole operator).
    pub control_plane_refresh: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            resync_period: Duration::from_secs(600),
            concurrency: 16,
            namespaces: Vec::new(),
            label_selector: None,
            control_plane_refresh: crate::control_plane::REFRESH_PERIOD,
        }
    }
}

/// One controller's context: the shared [`Context`], and the state only that kind's reconciler keeps
/// (the projects' wake gate, the clusters' memory). Kept per controller, not per process, so two
/// controllers in one process (tests) never share an entry.
pub struct Reconciler<S> {
    pub ctx: Arc<Context>,
    pub state: S,
    /// This kind's `--concurrency` worker slots.
    pub workers: Workers,
}

impl<S: Default> Reconciler<S> {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        let workers = Workers::new(usize::from(ctx.config.concurrency.max(1)));
        Arc::new(Reconciler {
            ctx,
            state: S::default(),
            workers,
        })
    }
}

/// State shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub atlas: AtlasClient,
    pub kms: KmsPreflight,
    /// Who publishes the Events (see [`Context::event`]).
    pub(super) reporter: Reporter,
    /// Where a pass leaves its Events for publication.
    pub(crate) events: super::events::EventQueue,
    pub config: ControllerConfig,
    /// Every ProjectEncryption the controller sees, to find two objects claiming one Atlas project and
    /// the project of a ClusterEncryption without extra API calls.
    pub projects: Stores<ProjectEncryption>,
    pub clusters: Stores<ClusterEncryption>,
    pub metrics: Arc<Metrics>,
    /// Atlas's control-plane IP addresses, read once for every project (see [`ControlPlaneWatch`]).
    pub control_plane: ControlPlaneWatch,
    /// The one count of each object's failures in a row (see [`wake::Failures`]).
    pub(crate) failures: wake::Failures,
    /// Atlas credentials read moments ago, shared by both kinds' passes.
    pub(crate) credentials: super::credentials::RecentCredentials,
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
            events: super::events::EventQueue::start(client.clone()),
            client,
            atlas,
            kms,
            reporter,
            config,
            projects,
            clusters,
            metrics,
            control_plane: ControlPlaneWatch::default(),
            failures: wake::Failures::default(),
            credentials: Default::default(),
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
        // What Atlas publishes once read (the configured pace before, or when it publishes nothing).
        let rate = self.atlas.sustained_read_rate();
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

    /// The ClusterEncryptions of `project`, from the cache: the one answer to "the clusters of this
    /// project".
    pub fn clusters_of(&self, project: &ProjectEncryption) -> Vec<Arc<ClusterEncryption>> {
        clusters_of(&self.clusters, project)
    }
}

/// The ClusterEncryptions in `clusters` that reference `project`.
pub(crate) fn clusters_of(
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

/// The reflector stores of one kind across every watched namespace, read as one.
pub struct Stores<K: Resource<DynamicType = ()> + 'static>(pub(super) Vec<Store<K>>);

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

    /// The object named `namespace`/`name`, as the cache holds it now.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let mut key = ObjectRef::<K>::new(name);
        if let Some(namespace) = namespace {
            key = key.within(namespace);
        }
        self.find(&key)
    }

    /// The object `key` names (`ObjectRef::from_obj`), as the cache holds it now: `None` once it is
    /// gone, or replaced by a new object of the same name.
    pub fn latest(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        self.find(key).filter(|now| now.meta().uid == key.extra.uid)
    }

    fn find(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        self.0.iter().find_map(|store| store.get(key))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
