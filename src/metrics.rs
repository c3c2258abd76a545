//! Prometheus metrics. Every label is a bounded, static word (kind, result, endpoint template, reason)
//! or an object's identity (namespace, name, Atlas project id): never an error text, never a secret.
//!
//! Per-project key gauges are not kept up to date by the reconcilers: they are computed from the
//! reflector store on each scrape, so a key's age is exact at scrape time and a deleted object leaves no
//! stale series behind.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::atlas::AtlasMetrics;
use crate::crd::ProjectEncryption;
use crate::status::{self, reasons};

/// Metric names start with this, followed by `_`.
pub const PREFIX: &str = "atlas_encryption_operator";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerWaitLabels {
    kind: &'static str,
    /// `change` or `routine` (see `controller::workers`).
    lane: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AtlasCallLabels {
    endpoint: &'static str,
    method: &'static str,
    /// The HTTP status, or `none` when no answer arrived.
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    endpoint: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PreflightLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectLabels {
    namespace: String,
    name: String,
    project_id: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Where the per-project gauges come from at scrape time.
pub type ProjectSource = Box<dyn Fn() -> Vec<Arc<ProjectEncryption>> + Send + Sync>;

/// Every metric the operator exports. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: HistogramFamily<KindLabels>,
    worker_wait: HistogramFamily<WorkerWaitLabels>,
    atlas_requests: Family<AtlasCallLabels, Counter>,
    atlas_request_duration: HistogramFamily<EndpointLabels>,
    atlas_retries: Family<RetryLabels, Counter>,
    atlas_rate_limit_waits: Counter,
    atlas_rate_limit_wait_seconds: Counter<f64, AtomicU64>,
    atlas_rate_limit_reads: Family<OutcomeLabels, Counter>,
    atlas_rate_limits_published: Gauge,
    kms_preflight: Family<PreflightLabels, Counter>,
    leader: Gauge,
    resync_period_seconds: Gauge,
    key_age_seconds: Family<ProjectLabels, Gauge<f64, AtomicU64>>,
    key_rotation_due: Family<ProjectLabels, Gauge>,
    key_valid: Family<ProjectLabels, Gauge>,
    projects: Mutex<Option<ProjectSource>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn reconcile_histogram() -> Histogram {
    // 5 ms to about 80 s: a converged object is a few reads, a handshake step can wait on Atlas.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn wait_histogram() -> Histogram {
    // 1 ms to about 30 s: most passes find a slot at once; a wave can queue thousands.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn atlas_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 12))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and result (success or error)",
            reconciles.clone(),
        );
        let reconcile_duration =
            HistogramFamily::<KindLabels>::new_with_constructor(reconcile_histogram as fn() -> _);
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, by kind",
            reconcile_duration.clone(),
        );
        let worker_wait =
            HistogramFamily::<WorkerWaitLabels>::new_with_constructor(wait_histogram as fn() -> _);
        registry.register(
            "worker_wait_seconds",
            "Time a reconcile waited for a worker slot (--concurrency), by kind and lane",
            worker_wait.clone(),
        );
        let atlas_requests = Family::<AtlasCallLabels, Counter>::default();
        registry.register(
            "atlas_requests",
            "Atlas Administration API exchanges by endpoint template, method and HTTP status",
            atlas_requests.clone(),
        );
        let atlas_request_duration =
            HistogramFamily::<EndpointLabels>::new_with_constructor(atlas_histogram as fn() -> _);
        registry.register(
            "atlas_request_duration_seconds",
            "Time one Atlas exchange took, by endpoint template",
            atlas_request_duration.clone(),
        );
        let atlas_retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "atlas_retries",
            "Atlas calls retried, by endpoint template and reason (rate_limited, server_error, transport)",
            atlas_retries.clone(),
        );
        let atlas_rate_limit_waits = Counter::default();
        registry.register(
            "atlas_rate_limit_waits",
            "Atlas calls held back by the client-side rate limit or a 429's Retry-After",
            atlas_rate_limit_waits.clone(),
        );
        let atlas_rate_limit_wait_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "atlas_rate_limit_wait_seconds",
            "Time Atlas calls spent held back by rate limits",
            atlas_rate_limit_wait_seconds.clone(),
        );
        let atlas_rate_limit_reads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "atlas_rate_limit_reads",
            "Reads of a credential's published Atlas rate limits (GET /rateLimits), by outcome: published \
             (paced by them), unpublished (paced by --atlas-rate-per-second or 5/s) or failed (asked again soon)",
            atlas_rate_limit_reads.clone(),
        );
        let atlas_rate_limits_published = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "atlas_rate_limits_published",
            "1 when the last read of Atlas's rate limits found them published, 0 when the operator fell back \
             to the configured pace",
            atlas_rate_limits_published.clone(),
        );
        let kms_preflight = Family::<PreflightLabels, Counter>::default();
        registry.register(
            "kms_preflight",
            "KMS DescribeKey preflight verdicts (ok or the failure reason), cached verdicts not counted",
            kms_preflight.clone(),
        );
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "leader",
            "1 while this replica runs the controllers (holds the Lease, or leader election is off)",
            leader.clone(),
        );
        let resync_period_seconds = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "resync_period_seconds",
            "How often a converged object is re-read from Atlas: --resync-period, or longer when that \
             would take more than a quarter of the Atlas rate budget",
            resync_period_seconds.clone(),
        );
        let key_age_seconds = Family::<ProjectLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "key_age_seconds",
            "Age of the customer master key in force, per ProjectEncryption",
            key_age_seconds.clone(),
        );
        let key_rotation_due = Family::<ProjectLabels, Gauge>::default();
        registry.register(
            "key_rotation_due",
            "1 when the key is older than rotation.maxKeyAge, per ProjectEncryption",
            key_rotation_due.clone(),
        );
        let key_valid = Family::<ProjectLabels, Gauge>::default();
        registry.register(
            "key_valid",
            "1 when Atlas reports it can use the key, 0 when it reports it cannot, per ProjectEncryption",
            key_valid.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_duration,
            worker_wait,
            atlas_requests,
            atlas_request_duration,
            atlas_retries,
            atlas_rate_limit_waits,
            atlas_rate_limit_wait_seconds,
            atlas_rate_limit_reads,
            atlas_rate_limits_published,
            kms_preflight,
            leader,
            resync_period_seconds,
            key_age_seconds,
            key_rotation_due,
            key_valid,
            projects: Mutex::new(None),
        }
    }

    pub fn reconciled(&self, kind: &'static str, success: bool, took: Duration) {
        let result = if success { "success" } else { "error" };
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, result })
            .inc();
        self.reconcile_duration
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    /// A reconcile of `kind` waited `waited` for a worker slot in `lane`.
    pub fn waited_for_worker(&self, kind: &'static str, lane: crate::atlas::Lane, waited: Duration) {
        let lane = match lane {
            crate::atlas::Lane::Change => "change",
            crate::atlas::Lane::Routine | crate::atlas::Lane::Spare => "routine",
        };
        self.worker_wait
            .get_or_create(&WorkerWaitLabels { kind, lane })
            .observe(waited.as_secs_f64());
    }

    /// `reason` is `ok` or a preflight failure reason.
    pub fn kms_preflight(&self, reason: &'static str) {
        self.kms_preflight
            .get_or_create(&PreflightLabels { result: reason })
            .inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn set_resync_period(&self, period: Duration) {
        self.resync_period_seconds
            .set(i64::try_from(period.as_secs()).unwrap_or(i64::MAX));
    }

    /// Tells the metrics where to find the ProjectEncryptions at scrape time.
    pub fn watch_projects(&self, source: ProjectSource) {
        *self.projects.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self, now: Timestamp) -> String {
        self.refresh_project_gauges(now);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn refresh_project_gauges(&self, now: Timestamp) {
        let projects = match &*self.projects.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(source) => source(),
            None => return,
        };
        self.key_age_seconds.clear();
        self.key_rotation_due.clear();
        self.key_valid.clear();
        for pe in projects {
            let Some(status) = pe.status.as_ref() else {
                continue;
            };
            let Some(key) = status.key.as_ref() else { continue };
            let labels = ProjectLabels {
                namespace: pe.namespace().unwrap_or_default(),
                name: pe.name_any(),
                project_id: status.project_id.clone().unwrap_or_default(),
            };
            let age = now.duration_since(key.since.0).as_secs_f64().max(0.0);
            self.key_age_seconds.get_or_create(&labels).set(age);
            let due = status::is_true(&status.conditions, reasons::KEY_ROTATION_DUE);
            self.key_rotation_due.get_or_create(&labels).set(i64::from(due));
            if let Some(valid) = key.valid {
                self.key_valid.get_or_create(&labels).set(i64::from(valid));
            }
        }
    }
}

impl AtlasMetrics for Metrics {
    fn on_call(&self, endpoint: &'static str, method: &'static str, status: Option<u16>, duration: Duration) {
        let status = status.map_or_else(|| "none".to_string(), |s| s.to_string());
        self.atlas_requests
            .get_or_create(&AtlasCallLabels {
                endpoint,
                method,
                status,
            })
            .inc();
        self.atlas_request_duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(duration.as_secs_f64());
    }

    fn on_rate_limit_wait(&self, _endpoint: &'static str, waited: Duration) {
        self.atlas_rate_limit_waits.inc();
        self.atlas_rate_limit_wait_seconds.inc_by(waited.as_secs_f64());
    }

    fn on_retry(&self, endpoint: &'static str, _method: &'static str, reason: &'static str) {
        self.atlas_retries
            .get_or_create(&RetryLabels { endpoint, reason })
            .inc();
    }

    fn on_rate_limits_read(&self, outcome: &'static str) {
        self.atlas_rate_limit_reads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        // A failed read keeps what was learnt before; only the others say whether limits are published.
        if outcome != "failed" {
            self.atlas_rate_limits_published
                .set(i64::from(outcome == "published"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{KeyStatus, ProjectEncryptionSpec, ProjectEncryptionStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn project(name: &str, key_since: i64, rotation_due: bool, valid: Option<bool>) -> ProjectEncryption {
        let spec: ProjectEncryptionSpec = serde_json::from_value(serde_json::json!({
            "projectId": "6512a0f0c0ffee0000000001",
            "credentialsRef": {"name": "atlas"},
            "awsKms": {"customerMasterKeyId": "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                       "region": "eu-west-2", "roleArn": "arn:aws:iam::111122223333:role/atlas"}
        }))
        .unwrap();
        let mut pe = ProjectEncryption::new(name, spec);
        pe.metadata.namespace = Some("team".into());
        pe.status = Some(ProjectEncryptionStatus {
            project_id: Some("6512a0f0c0ffee0000000001".into()),
            key: Some(KeyStatus {
                customer_master_key_id: "k".into(),
                region: "eu-west-2".into(),
                since: Time(Timestamp::from_second(key_since).unwrap()),
                rotation_due_at: None,
                valid,
                multi_region: None,
                material_since: None,
                age_source: None,
            }),
            conditions: vec![Condition {
                type_: reasons::KEY_ROTATION_DUE.into(),
                status: if rotation_due { "True" } else { "False" }.into(),
                reason: reasons::ROTATION_DUE.into(),
                message: String::new(),
                last_transition_time: Time(Timestamp::from_second(key_since).unwrap()),
                observed_generation: None,
            }],
            ..Default::default()
        });
        pe
    }

    #[test]
    fn exposition_names_every_family_with_the_prefix() {
        let metrics = Metrics::new();
        metrics.reconciled("ProjectEncryption", true, Duration::from_millis(20));
        metrics.reconciled("ClusterEncryption", false, Duration::from_millis(20));
        metrics.on_call("/groups/{groupId}", "GET", Some(200), Duration::from_millis(50));
        metrics.on_call("/groups/{groupId}", "GET", None, Duration::from_millis(50));
        metrics.on_rate_limit_wait("/groups/{groupId}", Duration::from_millis(1500));
        metrics.on_retry("/groups/{groupId}", "GET", "rate_limited");
        metrics.on_rate_limits_read("published");
        metrics.on_rate_limits_read("unpublished");
        metrics.kms_preflight("KeyDisabled");
        metrics.set_leader(true);
        metrics.waited_for_worker(
            "ClusterEncryption",
            crate::atlas::Lane::Spare,
            Duration::from_millis(3),
        );
        let text = metrics.encode(Timestamp::now());
        for line in [
            r#"atlas_encryption_operator_reconciles_total{kind="ProjectEncryption",result="success"} 1"#,
            r#"atlas_encryption_operator_reconciles_total{kind="ClusterEncryption",result="error"} 1"#,
            r#"atlas_encryption_operator_reconcile_duration_seconds_count{kind="ProjectEncryption"} 1"#,
            r#"atlas_encryption_operator_atlas_requests_total{endpoint="/groups/{groupId}",method="GET",status="200"} 1"#,
            r#"atlas_encryption_operator_atlas_requests_total{endpoint="/groups/{groupId}",method="GET",status="none"} 1"#,
            r#"atlas_encryption_operator_atlas_rate_limit_waits_total 1"#,
            r#"atlas_encryption_operator_atlas_rate_limit_wait_seconds_total 1.5"#,
            r#"atlas_encryption_operator_atlas_rate_limit_reads_total{outcome="unpublished"} 1"#,
            r#"atlas_encryption_operator_atlas_rate_limits_published 0"#,
            r#"atlas_encryption_operator_atlas_retries_total{endpoint="/groups/{groupId}",reason="rate_limited"} 1"#,
            r#"atlas_encryption_operator_kms_preflight_total{result="KeyDisabled"} 1"#,
            r#"atlas_encryption_operator_leader 1"#,
            r#"atlas_encryption_operator_worker_wait_seconds_count{kind="ClusterEncryption",lane="routine"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn key_gauges_follow_the_store_at_scrape_time() {
        let metrics = Metrics::new();
        let store = Arc::new(Mutex::new(vec![
            Arc::new(project("a", 1_700_000_000, true, Some(true))),
            Arc::new(project("b", 1_700_000_500, false, Some(false))),
        ]));
        let source = store.clone();
        metrics.watch_projects(Box::new(move || source.lock().unwrap().clone()));
        let now = Timestamp::from_second(1_700_001_000).unwrap();
        let text = metrics.encode(now);
        let labels_a = r#"{namespace="team",name="a",project_id="6512a0f0c0ffee0000000001"}"#;
        let labels_b = r#"{namespace="team",name="b",project_id="6512a0f0c0ffee0000000001"}"#;
        assert!(
            text.contains(&format!(
                "atlas_encryption_operator_key_age_seconds{labels_a} 1000.0"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "atlas_encryption_operator_key_age_seconds{labels_b} 500.0"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("atlas_encryption_operator_key_rotation_due{labels_a} 1")));
        assert!(text.contains(&format!("atlas_encryption_operator_key_rotation_due{labels_b} 0")));
        assert!(text.contains(&format!("atlas_encryption_operator_key_valid{labels_b} 0")));

        // A deleted object leaves no series behind.
        store.lock().unwrap().remove(1);
        let text = metrics.encode(now);
        assert!(!text.contains(labels_b), "{text}");
        assert!(text.contains(labels_a));
    }
}
