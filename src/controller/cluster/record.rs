//! The status a ClusterEncryption pass ends with, computed from the status it started from and what
//! the pass found. Nothing here is read back to decide anything.

use k8s_openapi::jiff::Timestamp;

use super::decide::{Tier, smallest_tier};
use crate::atlas::{Cluster, EncryptionProvider};
use crate::crd::{ClusterEncryptionStatus, PlannedChange};
use crate::status::DesiredCondition;

/// What one pass found. Each field stays `None` when the pass did not get that far; the status it
/// started from then stands for that part.
#[derive(Default)]
pub struct Findings {
    pub project_ready: Option<DesiredCondition>,
    pub project_id: Option<String>,
    /// The cluster as Atlas last showed it this pass (after a PATCH, as the PATCH answered).
    pub cluster: Option<Cluster>,
    /// A tier only Atlas's refusal revealed.
    pub refused_tier: Option<Tier>,
    /// The cluster cannot use the key, so its provider is NONE.
    pub off_by_tier: bool,
    /// The writes planned instead of made (the project's `managementPolicy: Observe`), once the pass
    /// reached the cluster's next step: empty when nothing was planned.
    pub planned: Option<Vec<PlannedChange>>,
}

pub fn status(
    previous: &ClusterEncryptionStatus,
    found: &Findings,
    generation: Option<i64>,
    now: Timestamp,
) -> ClusterEncryptionStatus {
    let mut status = previous.clone();
    if let Some(project_ready) = &found.project_ready {
        project_ready.apply(&mut status.conditions, generation, now);
    }
    if let Some(project_id) = &found.project_id {
        status.project_id = Some(project_id.clone());
    }
    if let Some(cluster) = &found.cluster {
        status.provider = Some(cluster.provider().as_str().to_string());
        status.state_name = cluster.state_name.clone();
        status.tier = smallest_tier(cluster);
        status.paused = Some(cluster.is_paused());
    }
    if let Some(tier) = found.refused_tier.as_ref().and_then(Tier::status_name) {
        status.tier = Some(tier.to_string());
    }
    if let Some(planned) = &found.planned {
        status.planned_changes = planned.clone();
    }
    if found.off_by_tier {
        status.provider = Some(EncryptionProvider::None.as_str().to_string());
    }
    status
}
