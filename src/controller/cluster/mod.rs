//! ClusterEncryption reconciler. Each pass reads as its pipeline: observe (`observe.rs`), decide
//! (`decide.rs`, pure), act (`act.rs`, only the writes decided), record (`record.rs`, a whole new
//! status). The stages: finalizer → ProjectEncryption (from the reflector store) → credentials →
//! cluster → plan → provider PATCH → UPDATING … IDLE → status.
//!
//! The project decides when a cluster may turn on: nothing is written to Atlas until the
//! ProjectEncryption is Ready with a valid key (and only then, with `deletionPolicy: Disable`, is the
//! finalizer put on), and the project's watch wakes
//! this controller when that happens. Meanwhile the cluster is read once, with budget to spare, so the
//! PATCH can follow the project's Ready at once. Turning
//! off (`enabled: false`, or deletion with `Disable`) never waits for the project, since clusters going
//! to NONE is exactly what lets a project disable.

mod act;
mod decide;
mod memory;
mod messages;
mod observe;
mod record;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use self::decide::{Moment, Next};
pub use self::decide::{ProjectState, project_state};
pub use self::memory::Memory;
use self::observe::Pass;
pub(crate) use self::observe::find_project;
use self::record::Findings;
use super::observing::Plan;
use super::wake::Look;
use super::{Error, Reconciler, Result, Step, Written, observing, wake};
use crate::atlas::lane::Lane;
use crate::atlas::{AtlasError, Credentials};
use crate::crd::{ClusterEncryption, DeletionPolicy, ManagementPolicy, ProjectEncryption};

pub async fn reconcile(ce: Arc<ClusterEncryption>, reconciler: Arc<Reconciler<Memory>>) -> Result<Action> {
    let (ctx, memory) = (&reconciler.ctx, &reconciler.state);
    let namespace = ce.namespace().ok_or(Error::InvalidObject)?;
    let api: Api<ClusterEncryption> = Api::namespaced(ctx.client.clone(), &namespace);

    if ce.meta().deletion_timestamp.is_some() {
        memory.forget(&wake::gate_key(ce.as_ref()));
        return cleanup(&ce, &reconciler, &api, &namespace).await;
    }
    // One read of the project from the cache serves the whole pass, so the finalizer's decision and
    // the pass cannot see two different projects.
    let project = find_project(ce.as_ref(), ctx);
    let state = project.as_deref().map(project_state);
    let observed = decide::observed(project.as_deref());
    let policy = ce.spec.deletion_policy;
    let ce = match decide::finalizer_needed(policy, ce.spec.enabled, state, observed) {
        true => match super::ensure_finalizer(&api, ce).await? {
            Some(ce) => ce,
            None => return Ok(Action::await_change()),
        },
        false => ce,
    };
    let fingerprint = gate_fingerprint(ce.as_ref(), project.as_deref());
    let look = match memory.gate.look(ce.as_ref(), fingerprint, &ctx.failures) {
        Ok(look) => look,
        // Our own status write, or a project change that does not concern this cluster.
        Err(wait) => return Ok(Action::requeue(wait)),
    };

    let previous = ce.status.clone().unwrap_or_default();
    let pass = Pass::new(&reconciler, &ce, project, &namespace, &previous, look, false);
    let mut found = Findings::default();
    let result = crate::atlas::lane::within(lane_of(look), drive(&pass, &mut found)).await;
    let status = record::status(&previous, &found, ce.metadata.generation, pass.now);
    let next = result.as_ref().map(Step::next_look).ok();
    let ended = super::finish(
        ce.as_ref(),
        ce.status.as_ref(),
        ctx,
        &api,
        status,
        result,
        pass.now,
    )
    .await;
    memory.gate.pass_ended(ce.as_ref(), fingerprint, &ended, next);
    ended
}

/// The worker lane of a pass over `ce` (see `controller::workers`), or how long it still waits: its
/// wake gate answers first, so a pass with nothing to do takes no worker.
pub fn worker_lane(
    ce: &ClusterEncryption,
    reconciler: &Reconciler<Memory>,
) -> std::result::Result<Lane, Duration> {
    let ctx = &reconciler.ctx;
    if ce.meta().deletion_timestamp.is_some() {
        return Ok(Lane::Change);
    }
    let project = find_project(ce, ctx);
    let fingerprint = gate_fingerprint(ce, project.as_deref());
    let look = reconciler.state.gate.look(ce, fingerprint, &ctx.failures)?;
    let project = project.as_deref().map(project_state);
    Ok(decide::worker_lane(lane_of(look), ce.spec.enabled, project))
}

/// The lane of a cluster's pass. Its follow-up looks only watch (an update under way, a blocker a
/// person must lift), so they travel with the resyncs, after the writes that start Atlas's work on
/// other clusters: with the budget short, every update starts first and the polls that see them end
/// come after, which ends a wave sooner than polls queued between the writes.
fn lane_of(look: Look) -> Lane {
    match look {
        Look::FollowUp => Lane::Routine,
        look => look.lane(),
    }
}

/// What makes a cluster worth a look before its resync: its spec, labels and annotations, and where its
/// project stands (its state, its Atlas project). Not the project's generation: a change to the
/// project's spec reaches the cluster only if it changes the project's state (see [`project_state`]).
fn gate_fingerprint(ce: &ClusterEncryption, pe: Option<&ProjectEncryption>) -> u64 {
    let project = pe.map(|pe| {
        (
            pe.uid(),
            project_state(pe),
            decide::project_stall_reason(pe),
            pe.status.as_ref().and_then(|s| s.project_id.clone()),
        )
    });
    wake::fingerprint((
        ce.metadata.generation,
        &ce.metadata.labels,
        &ce.metadata.annotations,
        project,
    ))
}

/// The project stage, then the cluster in Atlas.
async fn drive(pass: &Pass<'_>, found: &mut Findings) -> Result<Step> {
    let want = pass.want;
    let generation = pass.ce.metadata.generation;
    let project = pass.project();
    let verdict = decide::project_verdict(
        want,
        project.as_deref(),
        pass.namespace,
        pass.previous,
        generation,
    );
    found.project_ready = Some(verdict.project_ready);
    if let Some(stop) = verdict.stop {
        return Ok(read_ahead(pass, project.as_deref(), found).await.unwrap_or(stop));
    }
    let Some(pe) = project else {
        return Err(Error::InvalidObject);
    };
    let group_id = match decide::group_id(want, &pe, pass.previous) {
        Ok(group_id) => group_id,
        Err(stop) => return Ok(stop),
    };
    found.project_id = Some(group_id.clone());
    let resync = pass.ctx.resync_period();
    let state = project_state(&pe);
    if let Some(step) = decide::still_verified(want, state, pass.previous, pass.verified_ago(), resync) {
        return Ok(step);
    }
    let creds = match pass.credentials(&pe, false).await {
        Ok(creds) => creds,
        Err(e) => return decide::unreadable_credentials(want, e),
    };
    let observing = pe.spec.management_policy == ManagementPolicy::Observe;
    drive_cluster(pass, &creds, &group_id, observing, found).await
}

/// While the project is on its way to Ready: the cluster read once, with budget to spare (see
/// [`decide::read_ahead_wanted`]), and what that read tells at once. A read that cannot be made now
/// (no Atlas project yet, credentials, Atlas) is left to the pass after the project's Ready.
async fn read_ahead(
    pass: &Pass<'_>,
    project: Option<&ProjectEncryption>,
    found: &mut Findings,
) -> Option<Step> {
    let pe = project?;
    let (key, owned) = (&pass.memory_key, pass.owned_fingerprint());
    let already_read = pass.memory.was_read_ahead(key, owned);
    if !decide::read_ahead_wanted(pass.want, project_state(pe), already_read) {
        return None;
    }
    let group_id = decide::group_id(pass.want, pe, pass.previous).ok()?;
    let creds = pass.credentials(pe, true).await.ok()?;
    let read = crate::atlas::lane::within(Lane::Spare, pass.cluster(&creds, &group_id)).await;
    let cluster = match read {
        Ok(cluster) => cluster,
        // Not sent: the budget is busy with change-driven work. The next wake may find some to spare.
        Err(AtlasError::NoSpareBudget { .. }) => return None,
        Err(e) => {
            tracing::debug!(error = %e, "cluster read ahead of its project");
            pass.memory.remember_read_ahead(key, owned, None);
            return None;
        }
    };
    pass.memory.remember_read_ahead(key, owned, Some(cluster.clone()));
    let finding = decide::read_ahead_finding(pass.want.cluster, &cluster);
    found.cluster = Some(cluster);
    finding
}

/// The cluster stage: read it, take the one step it needs.
async fn drive_cluster(
    pass: &Pass<'_>,
    creds: &Credentials,
    group_id: &str,
    observing: bool,
    found: &mut Findings,
) -> Result<Step> {
    let want = pass.want;
    let cluster = match pass.cluster_now(creds, group_id).await {
        Ok(cluster) => cluster,
        Err(e) => return refused(pass, e, group_id, found),
    };
    found.cluster = Some(cluster.clone());
    let plan = decide::cluster_plan(want.aws, &cluster);
    let updating_for = pass.remember(&plan);
    let moment = Moment {
        generation: pass.ce.metadata.generation,
        now: pass.now,
        resync: pass.ctx.resync_period(),
        updating_for,
    };
    let mut planned = Vec::new();
    let next = decide::next(want, &plan, &cluster, pass.previous, moment);
    let provider = match next {
        Next::Done(step) => {
            found.planned = Some(planned);
            return Ok(step);
        }
        Next::Set(provider) => provider,
    };
    let plan = Plan {
        observing,
        into: &mut planned,
    };
    let written = pass.set_provider(creds, group_id, &cluster, provider, plan).await;
    found.planned = Some(planned.clone());
    match written {
        Ok(Written::Planned) => Ok(observing::changes_planned_step(&planned, moment.resync)),
        Ok(Written::Made(updated)) => {
            let (step, update_started) = decide::after_write(want, &updated, provider, moment.resync);
            found.cluster = Some(updated);
            if update_started {
                pass.remember_update_started();
            }
            Ok(step)
        }
        Err(e) => refused(pass, e, group_id, found),
    }
}

/// An Atlas error on the cluster: a status a person can act on, or an error to retry.
fn refused(pass: &Pass<'_>, error: AtlasError, group_id: &str, found: &mut Findings) -> Result<Step> {
    // The provider as last read: this pass's read if it got that far, else the status's.
    let provider = match &found.cluster {
        Some(cluster) => Some(cluster.provider()),
        None => pass.previous.provider(),
    };
    let refused = decide::refused(pass.want, error, group_id, provider)?;
    found.refused_tier = refused.tier;
    found.off_by_tier = refused.off;
    Ok(refused.step)
}

/// Deletion: `Retain` lets go at once without calling Atlas; `Disable` switches the cluster to NONE and
/// waits for Atlas to show NONE and IDLE. Whatever blocks that says how to let go anyway.
async fn cleanup(
    ce: &ClusterEncryption,
    reconciler: &Reconciler<Memory>,
    api: &Api<ClusterEncryption>,
    namespace: &str,
) -> Result<Action> {
    let ctx = reconciler.ctx.as_ref();
    if !ce.finalizers().iter().any(|f| f == crate::crd::FINALIZER) {
        return Ok(Action::await_change());
    }
    let never_reached_atlas = ce.status.as_ref().is_none_or(|s| s.project_id.is_none());
    let project = find_project(ce, ctx);
    // An observed project's clusters never write to Atlas, not even on their way out.
    let observed = decide::observed(project.as_deref());
    if ce.spec.deletion_policy == DeletionPolicy::Retain
        || observed
        || never_reached_atlas && project.is_none()
    {
        super::remove_finalizer(api, ce).await?;
        return Ok(Action::await_change());
    }
    let previous = ce.status.clone().unwrap_or_default();
    let pass = Pass::new(reconciler, ce, project, namespace, &previous, Look::Fresh, true);
    let mut found = Findings::default();
    let result = drive(&pass, &mut found).await;
    let status = record::status(&previous, &found, ce.metadata.generation, pass.now);
    match result {
        Ok(step) if step.outcome.is_ready() => {
            super::remove_finalizer(api, ce).await?;
            Ok(Action::await_change())
        }
        Ok(step) => {
            let step = decide::while_deleting(step);
            super::finish(ce, ce.status.as_ref(), ctx, api, status, Ok(step), pass.now).await
        }
        Err(e) => super::finish(ce, ce.status.as_ref(), ctx, api, status, Err(e), pass.now).await,
    }
}
