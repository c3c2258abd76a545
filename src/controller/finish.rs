//! How a pass ends: its step, the status written (only when it changed), the Warning Event on entering
//! Stalled, and the controller's answer.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error, Result, WARNING, object_key};
use crate::atlas::AtlasError;
use crate::crd::{ClusterEncryptionStatus, FIELD_MANAGER, ProjectEncryptionStatus};
use crate::status::{self, Outcome, reasons};

/// How a reconcile ended when it did not fail.
#[derive(Clone, Debug, PartialEq)]
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

    /// When to look next and in which lane: a converged object's next look is its routine resync.
    pub fn next_look(&self) -> (Duration, crate::atlas::Lane) {
        let lane = if self.outcome.is_ready() {
            crate::atlas::Lane::Routine
        } else {
            crate::atlas::Lane::Change
        };
        (self.requeue, lane)
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
                ctx.event(object, WARNING, reason, "Reconcile", message.clone());
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
                );
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
    ctx.failures.clear(&object_key(object));
    Action::requeue(after)
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
