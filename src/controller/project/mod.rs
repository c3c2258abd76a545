//! ProjectEncryption reconciler. Each pass reads as its pipeline: observe (`observe.rs`, staged), decide
//! (`decide.rs`, pure), act (`act.rs`, only the writes decided), record (`record.rs`, a whole new
//! status). The stages: finalizer → credentials → project → KMS preflight → role handshake → key
//! assignment → clusters and snapshots → validity and rotation.
//!
//! Each step observes Atlas first and writes only what the decisions say differs, so a converged
//! object costs reads only. Waiting (for a trust policy, for clusters to turn off) is an `Ok` with a
//! condition and a growing requeue; an `Err` is a failure that backs off.

mod act;
mod decide;
mod memory;
mod messages;
mod observe;
mod policy;
mod record;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use self::decide::{KeyStep, RoleInForce, RoleStep, Target};
pub use self::memory::Memory;
use self::observe::{Access, Pass};
use self::record::{Disabled, Findings};
use super::wake::{self, Look};
use super::{Context, Error, Reconciler, Result, Step, Written, observing};
use crate::atlas::{AwsIamRole, EncryptionAtRest, EncryptionAtRestPatch, Lane};
use crate::aws::{Region, RoleArn};
use crate::control_plane::ControlPlaneWatch;
use crate::crd::{PreviousKeyStatus, ProjectEncryption, ProjectEncryptionStatus};
use crate::kms::{KeyMaterial, KeyReport, MaterialUnread, StaticAwsCredentials};
use crate::status::{DesiredCondition, reasons};

pub async fn reconcile(pe: Arc<ProjectEncryption>, reconciler: Arc<Reconciler<Memory>>) -> Result<Action> {
    let (ctx, memory) = (&reconciler.ctx, &reconciler.state);
    let gate = &memory.gate;
    let namespace = pe.namespace().ok_or(Error::InvalidObject)?;
    let api: Api<ProjectEncryption> = Api::namespaced(ctx.client.clone(), &namespace);

    if pe.meta().deletion_timestamp.is_some() {
        memory.forget(&wake::gate_key(pe.as_ref()));
        return cleanup(&pe, ctx, memory, &api, &namespace).await;
    }
    let pe = match decide::finalizer_needed(&pe.spec, pe.status.as_ref()) {
        true => match super::ensure_finalizer(&api, pe).await? {
            Some(pe) => pe,
            None => return Ok(Action::await_change()),
        },
        false => pe,
    };
    let fingerprint = gate_fingerprint(pe.as_ref(), &ctx.control_plane);
    let look = match gate.look(pe.as_ref(), fingerprint, &ctx.failures) {
        Ok(look) => look,
        // Our own status write, or nothing the user controls changed: the look already scheduled stands.
        Err(wait) => return Ok(Action::requeue(wait)),
    };

    let previous = pe.status.clone().unwrap_or_default();
    let pass = Pass::new(ctx, memory, &pe, &namespace, &previous, look);
    let mut found = Findings::default();
    let result = crate::atlas::lane::within(look.lane(), drive(&pass, &mut found)).await;
    let status = record::status(&previous, &found, pe.metadata.generation, pass.now);
    let next = result.as_ref().map(Step::next_look).ok();
    let ended = super::finish(
        pe.as_ref(),
        pe.status.as_ref(),
        ctx,
        &api,
        status,
        result,
        pass.now,
    )
    .await;
    gate.pass_ended(pe.as_ref(), fingerprint, &ended, next);
    ended
}

/// The worker lane of a pass over `pe` (see `controller::workers`), or how long it still waits: its
/// wake gate answers first, so a pass with nothing to do takes no worker. A deletion, a change and a
/// look the last pass scheduled (a trust policy awaited) go before resyncs.
pub fn worker_lane(
    pe: &ProjectEncryption,
    reconciler: &Reconciler<Memory>,
) -> std::result::Result<Lane, Duration> {
    let ctx = &reconciler.ctx;
    if pe.meta().deletion_timestamp.is_some() {
        return Ok(Lane::Change);
    }
    let fingerprint = gate_fingerprint(pe, &ctx.control_plane);
    let look = reconciler.state.gate.look(pe, fingerprint, &ctx.failures)?;
    Ok(look.lane())
}

/// What a person can change to make the operator look again before the next resync: the spec (its
/// generation), labels and annotations (`kubectl annotate` to force a look); and Atlas's control-plane
/// CIDRs in the key's region while encryption is on, so a change there is told at once.
fn gate_fingerprint(pe: &ProjectEncryption, control_plane: &ControlPlaneWatch) -> u64 {
    let cidrs = Region::parse(&pe.spec.aws_kms.region)
        .ok()
        .filter(|_| pe.spec.aws_kms.enabled)
        .and_then(|region| control_plane.outbound_cidrs(region));
    wake::fingerprint((
        pe.metadata.generation,
        &pe.metadata.labels,
        &pe.metadata.annotations,
        cidrs,
    ))
}

impl<'a> Pass<'a> {
    fn new(
        ctx: &'a Context,
        memory: &'a Memory,
        pe: &'a ProjectEncryption,
        namespace: &str,
        previous: &'a ProjectEncryptionStatus,
        look: Look,
    ) -> Self {
        Pass {
            ctx,
            memory,
            pe,
            secrets: Api::<Secret>::namespaced(ctx.client.clone(), namespace),
            previous,
            now: ctx.now(),
            look,
        }
    }
}

/// The pipeline, then what the management policy makes of its outcome: under `Observe` the writes it
/// planned hold the object until a person switches to `Manage`.
async fn drive(pass: &Pass<'_>, found: &mut Findings) -> Result<Step> {
    let step = pipeline(pass, found).await?;
    let policy = pass.pe.spec.management_policy;
    let resync = pass.ctx.resync_period();
    let (observing, step) = decide::under_policy(policy, &found.planned, step, resync);
    found.observing = Some(observing);
    Ok(step)
}

/// Credentials → project → claim, then encryption on or off as the spec asks.
async fn pipeline(pass: &Pass<'_>, found: &mut Findings) -> Result<Step> {
    let access = match access(pass, false).await? {
        Ok(access) => access,
        Err(stop) => return Ok(stop),
    };
    found.group = Some(access.group.clone());
    if let Some(owner) = pass.claimed_by_other(&access.group) {
        return Ok(decide::duplicate_project(&access.group, &owner));
    }
    if !pass.pe.spec.aws_kms.enabled {
        return disable(pass, &access, found).await;
    }
    enable(pass, &access, found)
        .await
        .or_else(decide::stalled_on_atlas_refusal)
}

/// The enable pipeline. Each stage ends the pass early with a step when it cannot go on.
async fn enable(pass: &Pass<'_>, access: &Access, found: &mut Findings) -> Result<Step> {
    let target = match decide::target(&pass.pe.spec.aws_kms) {
        Ok(target) => target,
        Err(stop) => return Ok(stop),
    };
    control_plane_cidrs(pass, &target, found);
    let pending = decide::pending_authorization(
        pass.pe.spec.aws_kms.atlas_role_id.as_deref(),
        target.role_arn.as_ref(),
        pass.previous.role.as_ref(),
    );
    let (kms, settings) =
        match preflight_beside_settings(pass, access, &target, pending.is_none(), found).await? {
            Ok(seen) => seen,
            Err(stop) => return Ok(stop),
        };
    let multi_region = decide::multi_region(kms.report.as_ref(), &target.key);
    let is_multi_region = multi_region.holds;
    found.multi_region = Some(multi_region);
    let (role, ear) = match role_in_use(pass, access, &target, (pending, settings), found).await? {
        Ok(in_use) => in_use,
        Err(stop) => return Ok(stop),
    };
    found.role_authorized = Some(decide::role_authorized(&role));
    if let Some(wait) = endpoints_before_key(pass, access, ear.as_ref(), found).await? {
        return Ok(wait);
    }
    let ear = match assign_key(pass, access, &target, &role, ear, found).await? {
        Ok(ear) => ear,
        Err(stop) => return Ok(stop),
    };
    let endpoints = endpoints_after_key(pass, access, &target, found).await?;
    // Only now is this the role Atlas uses for the key: `status.role` never names another.
    found.role = Some(role.clone());
    let history = decide::key_history(
        pass.previous,
        &target.key,
        target.region,
        is_multi_region,
        pass.now,
    );
    let valid = ear.aws_kms.as_ref().and_then(|k| k.valid);
    found.key_valid_in_atlas = Some(valid);
    found.search_nodes_encrypted = Some(ear.enabled_for_search_nodes.unwrap_or(false));
    found.key = Some(history.clone());
    let clusters = pass.clusters(access, &history).await?;
    let clusters_using_key = clusters.using_key.len();
    found.clusters_using_key = Some(clusters.using_key);
    let counted = decide::retired_keys_counted(&history.previous_keys, clusters.snapshot_key_ids.as_deref());
    found.previous_key_at_risk = retired_keys_in_kms(pass, &target, &kms, &counted).await;
    found.snapshot_key_ids = clusters.snapshot_key_ids;

    let max_key_age = &pass.pe.spec.rotation.max_key_age;
    let age = decide::key_age(kms.report.as_ref(), &kms.material, history.key.since.0);
    let rotation = decide::rotation_of(max_key_age, &age, pass.now);
    let (rotation_due, newly_due) = decide::key_age_condition(rotation, &age, max_key_age, pass.previous);
    if newly_due {
        pass.tell_rotation_due(&target.key);
    }
    found.key_age = Some(age);
    found.rotation = Some(rotation);
    found.rotation_due = Some(rotation_due);
    let validity = decide::validity(
        valid,
        &target.key,
        &role,
        clusters_using_key,
        pass.ctx.resync_period(),
    );
    found.key_valid = Some(decide::with_key_policy_statement(
        validity.key_valid,
        &role,
        found.control_plane_cidrs.as_deref(),
    ));
    found.degraded = validity.degraded;
    Ok(decide::with_endpoints(validity.step, endpoints))
}

/// The control-plane CIDRs of the key's region, and the Event when they changed since the last pass.
fn control_plane_cidrs(pass: &Pass<'_>, target: &Target, found: &mut Findings) {
    found.control_plane_cidrs = pass.control_plane_cidrs(target.region);
    let read = found.control_plane_cidrs.as_deref();
    if let Some(cidrs) = decide::control_plane_changed(pass.previous, target.region, read) {
        pass.tell_control_plane_changed(target.region, cidrs);
    }
}

/// With `requirePrivateNetworking` true, after the PATCH that sets it: Atlas creates endpoints only for
/// a project that requires them (see `decide::private_endpoints`).
async fn endpoints_after_key(
    pass: &Pass<'_>,
    access: &Access,
    target: &Target,
    found: &mut Findings,
) -> Result<Option<Step>> {
    let spec = &pass.pe.spec.aws_kms;
    if !spec.require_private_networking {
        return Ok(None);
    }
    let wanted = decide::endpoint_regions(spec, target.region);
    private_endpoints(pass, access, &wanted, found).await
}

/// With `requirePrivateNetworking` false, endpoints left from when it was true are deleted before the
/// PATCH turns the requirement off; the step waits until they are gone.
async fn endpoints_before_key(
    pass: &Pass<'_>,
    access: &Access,
    ear: Option<&EncryptionAtRest>,
    found: &mut Findings,
) -> Result<Option<Step>> {
    if pass.pe.spec.aws_kms.require_private_networking || !decide::endpoints_may_remain(ear, pass.previous) {
        return Ok(None);
    }
    private_endpoints(pass, access, &[], found).await
}

/// The private-endpoints stage: an endpoint to AWS KMS in each `wanted` region and none elsewhere
/// (none at all when `wanted` is empty). Creates and deletes what differs, records them, and returns
/// the step while any is not as wanted.
async fn private_endpoints(
    pass: &Pass<'_>,
    access: &Access,
    wanted: &[Region],
    found: &mut Findings,
) -> Result<Option<Step>> {
    let listed = pass.ear_private_endpoints(access).await?;
    let writes = decide::endpoint_writes(wanted, &listed);
    let mut created = Vec::new();
    for region in writes.create {
        if let Written::Made(endpoint) = pass.create_private_endpoint(access, found, region).await? {
            created.push(endpoint);
        }
    }
    let mut deleted = Vec::new();
    for endpoint in &writes.delete {
        match pass.delete_private_endpoint(access, found, endpoint).await {
            Ok(Written::Made(())) => deleted.push(endpoint.id.clone()),
            Ok(Written::Planned) => {}
            // Gone already is what was asked.
            Err(e) if e.is_not_found() => deleted.push(endpoint.id.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    let endpoints = decide::after_writes(listed, &deleted, created);
    found.private_endpoints = Some(decide::endpoint_statuses(&endpoints));
    Ok(decide::endpoints_step(
        wanted,
        &endpoints,
        pass.previous,
        pass.now,
    ))
}

/// What KMS told a pass about the key in force, with the credentials the preflight used.
struct KmsSeen {
    /// `None` when the preflight is off.
    report: Option<KeyReport>,
    material: Result<KeyMaterial, MaterialUnread>,
    aws: Option<StaticAwsCredentials>,
}

/// The KMS preflight stage, before anything is written to Atlas; then the key material's age, whose
/// refusal is no failure.
async fn preflight(pass: &Pass<'_>, target: &Target, found: &mut Findings) -> Result<Result<KmsSeen, Step>> {
    if !pass.pe.spec.kms_preflight.enabled {
        return Ok(Ok(KmsSeen {
            report: None,
            material: Err(MaterialUnread::PreflightOff),
            aws: None,
        }));
    }
    let aws = match pass.preflight_credentials().await {
        Ok(aws) => aws,
        Err(e) => return decide::unreadable_credentials(e).map(Err),
    };
    match decide::preflight(pass.key_in_kms(target, aws.as_ref()).await, target) {
        decide::Preflight::Passed(report) => {
            let material = pass.key_material(target, aws.as_ref()).await;
            Ok(Ok(KmsSeen {
                report: Some(report),
                material,
                aws,
            }))
        }
        decide::Preflight::Refused { key_valid, step } => {
            found.key_valid = Some(key_valid);
            Ok(Err(step))
        }
    }
}

/// The KMS preflight and, when `read_settings` (the pass does not begin with a pending authorization,
/// a write), Atlas's encryption settings read beside it: the preflight gates every write to Atlas,
/// not the reads. A refused preflight ends the pass whatever the read found.
async fn preflight_beside_settings(
    pass: &Pass<'_>,
    access: &Access,
    target: &Target,
    read_settings: bool,
    found: &mut Findings,
) -> Result<Result<(KmsSeen, Option<EncryptionAtRest>), Step>> {
    let settings = async {
        match read_settings {
            true => Some(pass.encryption_at_rest(access).await),
            false => None,
        }
    };
    let (kms, settings) = tokio::join!(preflight(pass, target, found), settings);
    let kms = match kms? {
        Ok(kms) => kms,
        Err(stop) => return Ok(Err(stop)),
    };
    Ok(Ok((kms, settings.transpose()?)))
}

/// The retired keys stage: `PreviousKeyAtRisk` from KMS's view of the retired keys snapshots still need,
/// with a Warning Event as a risk begins. Only while the preflight is on: the operator asks KMS only then.
async fn retired_keys_in_kms(
    pass: &Pass<'_>,
    target: &Target,
    kms: &KmsSeen,
    counted: &[PreviousKeyStatus],
) -> Option<DesiredCondition> {
    kms.report.as_ref()?;
    let needed = decide::retired_keys_needed(counted);
    let seen = pass
        .retired_keys_in_kms(needed, target.region, kms.aws.as_ref())
        .await;
    let (at_risk, newly) = decide::previous_key_at_risk(&seen, pass.previous);
    if newly {
        pass.tell_previous_key_at_risk(&at_risk);
    }
    Some(at_risk)
}

/// The role handshake stage: the role Atlas may assume, with Atlas's encryption settings as read on the
/// way (`None` when the role was authorized just now, see below), or the step that waits for the
/// customer's trust policy or a fix of the spec. `begun` is the role awaiting authorization, if any
/// (see [`decide::pending_authorization`]), and Atlas's settings if already read this pass.
async fn role_in_use(
    pass: &Pass<'_>,
    access: &Access,
    target: &Target,
    begun: (Option<(AwsIamRole, RoleArn)>, Option<EncryptionAtRest>),
    found: &mut Findings,
) -> Result<Result<(AwsIamRole, Option<EncryptionAtRest>), Step>> {
    let spec = &pass.pe.spec.aws_kms;
    let (pending, settings) = begun;
    // A role this operator created and recorded, waiting for the customer's trust policy: try the
    // authorization first. While the trust is missing that one refused call is the whole pass (no
    // reads), and once it succeeds the roles need not be listed again. A role gone from Atlas is found
    // (or replaced) by the list below.
    let mut pre_authorized = None;
    if let Some((role, role_arn)) = pending {
        match pass.authorize(access, found, role, role_arn, &target.key).await {
            Ok(Some(role)) => pre_authorized = Some(role),
            Ok(None) => return Ok(Err(awaiting_trust(pass, found))),
            Err(Error::Atlas(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    // A role this pass just authorized that Atlas's answer shows unused is not the one Atlas uses for
    // the key, so the key PATCH carries everything anyway: Atlas's settings, read before the trust wait
    // (where they also passed the legacy-keys guard before the role was created), are not read again.
    // A role the answer shows in use (authorized again after a crash) is read as usual.
    let ear = match (&pre_authorized, settings) {
        (Some(role), _) if !role.used_for_encryption_at_rest() => None,
        (_, Some(settings)) => Some(settings),
        (_, None) => Some(pass.encryption_at_rest(access).await?),
    };
    let current = ear.as_ref().and_then(|ear| ear.aws_kms.as_ref());
    if let Some(stop) = decide::role_switch_guard(spec, current) {
        return Ok(Err(stop));
    }
    let role = match pass.role_step(access, target, current, pre_authorized).await? {
        RoleStep::Use(role) => Some(role),
        RoleStep::Create => {
            pass.create_role(access, found, target.role_arn.as_ref(), &target.key)
                .await?;
            None
        }
        RoleStep::Authorize { role, role_arn } => {
            pass.authorize(access, found, role, role_arn, &target.key).await?
        }
        RoleStep::NamedRoleMissing { role_id } => {
            let (role_authorized, stop) = decide::role_not_found(&role_id);
            found.role_authorized = Some(role_authorized);
            return Ok(Err(stop));
        }
        RoleStep::NamedRoleUnauthorized { role_id } => {
            let (role_authorized, stop) = decide::role_not_authorized(&role_id);
            found.role_authorized = Some(role_authorized);
            return Ok(Err(stop));
        }
    };
    match role {
        Some(role) => {
            pass.trust_in_place();
            Ok(Ok((role, ear)))
        }
        None => Ok(Err(awaiting_trust(pass, found))),
    }
}

/// Waiting for the trust policy, as `RoleAuthorized` is written this pass.
fn awaiting_trust(pass: &Pass<'_>, found: &Findings) -> Step {
    let previous = crate::status::find(&pass.previous.conditions, reasons::ROLE_AUTHORIZED);
    let waited = pass.trust_awaited_for();
    decide::awaiting_trust(previous, found.role_authorized.as_ref(), waited)
}

/// The key assignment stage: Atlas's encryption settings once the key is in force. `ear` is `None`
/// when they were not read this pass (a role authorized just now): the PATCH then carries everything.
async fn assign_key(
    pass: &Pass<'_>,
    access: &Access,
    target: &Target,
    role: &AwsIamRole,
    ear: Option<EncryptionAtRest>,
    found: &mut Findings,
) -> Result<Result<EncryptionAtRest, Step>> {
    let step = key_step(pass, access, target, role, ear.as_ref()).await?;
    let atlas_had_settings = ear.as_ref().is_some_and(|ear| ear.aws_kms.is_some());
    let wanted_search_nodes = pass.pe.spec.search_nodes.as_ref();
    let search_nodes = match &ear {
        Some(ear) => decide::search_nodes_change(wanted_search_nodes, ear.enabled_for_search_nodes),
        None => decide::search_nodes_unread(wanted_search_nodes),
    };
    let (patch, change) = match step {
        KeyStep::Patch { patch, rotation } => {
            let change = decide::key_change(
                pass.previous.key.as_ref(),
                &target.key,
                atlas_had_settings,
                rotation,
            );
            (Some(patch), change)
        }
        KeyStep::InPlace if search_nodes.is_some() => (None, decide::KeyChange::Other),
        // In place means Atlas's settings were read and match.
        KeyStep::InPlace => return Ok(Ok(ear.unwrap_or_default())),
    };
    let body = EncryptionAtRestPatch {
        aws_kms: patch.as_ref(),
        enabled_for_search_nodes: search_nodes,
    };
    match pass.assign_key(access, found, &body, change, &target.key).await {
        Ok(Written::Made(updated)) => {
            if body.aws_kms.is_some_and(|patch| patch.role_id.is_some()) {
                pass.role_in_force_known_now();
            }
            Ok(Ok(updated))
        }
        // Observing: the pass goes on with Atlas as it is, so the rest of the status reads true (Atlas's
        // settings were read: observing never authorizes a role).
        Ok(Written::Planned) => Ok(Ok(ear.unwrap_or_default())),
        Err(e) => match decide::key_refusal(&e) {
            Some(decide::KeyRefusal::IamNotReady) => Ok(Err(awaiting_trust(pass, found))),
            Some(decide::KeyRefusal::Rejected) => {
                let (key_valid, stop) = decide::key_rejected(&e);
                found.key_valid = Some(key_valid);
                Ok(Err(stop))
            }
            None => Err(e.into()),
        },
    }
}

/// The key step, reading the role list only when nothing else is to be written and a check of the role
/// in force is due (see [`decide::role_in_force_check_due`]): a PATCH made anyway names our role.
async fn key_step(
    pass: &Pass<'_>,
    access: &Access,
    target: &Target,
    role: &AwsIamRole,
    ear: Option<&EncryptionAtRest>,
) -> Result<KeyStep> {
    let spec = &pass.pe.spec.aws_kms;
    let current = ear.and_then(|ear| ear.aws_kms.as_ref());
    let step_for = |in_force| {
        decide::key_step(
            &target.key,
            target.region,
            &role.role_id,
            spec.require_private_networking,
            current,
            in_force,
        )
    };
    let step = step_for(RoleInForce::Unread);
    let check_due = decide::role_in_force_check_due(pass.look, pass.role_in_force_known_ago());
    // Atlas's settings off means a PATCH (never in place), so the list is read only while they are on.
    let Some(ear) = ear.filter(|_| step == KeyStep::InPlace && check_due) else {
        return Ok(step);
    };
    let in_force = pass.role_in_force(access, ear).await?;
    pass.role_in_force_known_now();
    Ok(step_for(RoleInForce::Read(in_force.as_deref())))
}

/// `enabled: false`: turn project encryption off once Atlas shows no cluster using it.
async fn disable(pass: &Pass<'_>, access: &Access, found: &mut Findings) -> Result<Step> {
    let resync = pass.ctx.resync_period();
    let ear = pass.encryption_at_rest(access).await?;
    if !ear.aws_enabled() {
        found.disabled = Some(Disabled::AlreadyOff);
        return Ok(decide::encryption_off(resync));
    }
    let using = pass.clusters_using_key(access).await?;
    found.clusters_using_key = Some(using.clone());
    if !using.is_empty() {
        let turning_off = pass.clusters_turning_off();
        return Ok(decide::blocked_by_clusters(
            &using,
            &turning_off,
            pass.previous,
            pass.now,
        ));
    }
    // Atlas refuses to turn encryption off while private endpoints exist: they go first.
    if decide::endpoints_may_remain(Some(&ear), pass.previous)
        && let Some(wait) = private_endpoints(pass, access, &[], found).await?
    {
        return Ok(wait);
    }
    match pass.turn_off(access, found).await {
        Ok(Written::Made(())) => {
            found.disabled = Some(Disabled::TurnedOff);
            Ok(decide::encryption_off(resync))
        }
        Ok(Written::Planned) => Ok(observing::changes_planned_step(&found.planned, resync)),
        // Endpoints neither Atlas's settings nor the last pass showed: delete them, never retry blindly.
        Err(e) if decide::disable_blocked_by_endpoints(&e) => Ok(private_endpoints(pass, access, &[], found)
            .await?
            .unwrap_or_else(|| decide::disable_refused_for_endpoints(&e))),
        Err(e) => decide::disable_raced(&e).ok_or_else(|| e.into()),
    }
}

/// Deletion: `Retain` lets go at once without calling Atlas; `Disable` turns encryption off first.
async fn cleanup(
    pe: &ProjectEncryption,
    ctx: &Context,
    memory: &Memory,
    api: &Api<ProjectEncryption>,
    namespace: &str,
) -> Result<Action> {
    if !pe.finalizers().iter().any(|f| f == crate::crd::FINALIZER) {
        return Ok(Action::await_change());
    }
    if decide::release_at_once(&pe.spec, pe.status.as_ref()) {
        super::remove_finalizer(api, pe).await?;
        return Ok(Action::await_change());
    }
    let previous = pe.status.clone().unwrap_or_default();
    let pass = Pass::new(ctx, memory, pe, namespace, &previous, Look::Fresh);
    let mut found = Findings::default();
    let result = disable_for_deletion(&pass, &mut found).await;
    let status = record::status(&previous, &found, pe.metadata.generation, pass.now);
    match result {
        Ok(step) if step.outcome.reason() == reasons::ENCRYPTION_DISABLED => {
            super::remove_finalizer(api, pe).await?;
            Ok(Action::await_change())
        }
        Ok(step) => {
            let step = decide::while_deleting(step);
            super::finish(pe, pe.status.as_ref(), ctx, api, status, Ok(step), pass.now).await
        }
        Err(e) => super::finish(pe, pe.status.as_ref(), ctx, api, status, Err(e), pass.now).await,
    }
}

/// Turns encryption off for a ProjectEncryption being deleted; what blocks it says how to let go.
async fn disable_for_deletion(pass: &Pass<'_>, found: &mut Findings) -> Result<Step> {
    match access(pass, true).await? {
        Ok(access) => disable(pass, &access, found).await,
        Err(stop) => Ok(stop),
    }
}

/// The credentials and the Atlas project stage, or the step that ends the pass when either is out of
/// reach (saying how to let go when `deleting`).
async fn access(pass: &Pass<'_>, deleting: bool) -> Result<Result<Access, Step>> {
    let creds = match pass.atlas_credentials().await {
        Ok(creds) => creds,
        Err(e) if deleting => return decide::unreadable_credentials_while_deleting(e).map(Err),
        Err(e) => return decide::unreadable_credentials(e).map(Err),
    };
    match pass.project(&creds).await {
        Ok(group) => Ok(Ok(Access { creds, group })),
        Err(e) if deleting => decide::stalled_on_access_while_deleting(e).map(Err),
        Err(e) => decide::stalled_on_access(e).map(Err),
    }
}
