//! Pure decisions of the ClusterEncryption reconciler: given the spec, its project as the cache holds
//! it, what Atlas shows and the status the pass started from, what comes next. No I/O, no clock (`now`
//! and the remembered durations are arguments), no lock; so every branch is unit-tested.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Resource;

use super::messages;
use crate::atlas::{AtlasError, Cluster, EncryptionProvider, Lane, model::tier_number};
use crate::controller::{CredentialsError, Result, Step, USER_ACTION_REQUEUE, credentials, patient_delay};
use crate::crd::{ClusterEncryptionStatus, DeletionPolicy, ProjectEncryption};
use crate::status::{self, DesiredCondition, Outcome, condition, reasons};

/// An update usually takes minutes in Atlas; polling it more often than this buys nothing.
const MAX_UPDATE_POLL: Duration = Duration::from_secs(30);

/// The first look at a cluster after its update began. Most Atlas updates take minutes, but a provider
/// change can finish in seconds (the simulator's takes 3 s by default): a first read at 3 s sees those
/// done without a second poll, and costs a long update one read before the patient schedule.
const FIRST_UPDATE_POLL: Duration = Duration::from_secs(3);

/// A write Atlas refused for a reason a person must fix is not retried within this window, so the
/// reconcile caused by our own status write does not send the same refused PATCH again.
const REFUSAL_QUIET: Duration = Duration::from_secs(30);

pub const FLEX_CODE: &str = "CANNOT_USE_FLEX_CLUSTER_IN_CLUSTER_API";
pub const SERVERLESS_CODE: &str = "CANNOT_USE_SERVERLESS_INSTANCE_IN_CLUSTER_API";
pub const TENANT_CODE: &str = "CANNOT_USE_ENCRYPTION_AT_REST_TENANT";
pub const BACKUP_CODE: &str = "CANNOT_USE_ENCRYPTION_AT_REST_BACKUP_TYPE";
pub const PAUSED_CODE: &str = "CANNOT_UPDATE_PAUSED_CLUSTER";

/// What one pass of a ClusterEncryption is for.
#[derive(Clone, Copy, Debug)]
pub struct Want<'a> {
    pub cluster: &'a str,
    pub project: &'a str,
    /// The cluster should use the project's key (`enabled: true` and not being deleted).
    pub aws: bool,
    /// Deletion with `Disable`: the project's readiness does not matter then, and a cluster that is
    /// gone or cannot use the key is as good as turned off.
    pub deleting: bool,
}

/// Where the project stands, as this cluster needs to know it. Only these matter: a cluster is
/// woken when its project moves between them (or stalls for another reason), not on every change of the project's status message
/// (the trust instructions, say), which would rewrite the cluster's status for nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProjectState {
    /// Its last pass found the key in force and Atlas reporting it valid. A change to its spec being
    /// applied (a key rotation, say) leaves it so: Atlas keeps the project's encryption on throughout,
    /// so clusters neither stop being Ready nor wait for it; a change that fails makes it NotReady.
    Ready,
    /// Turning encryption off: `enabled: false`, or being deleted with `deletionPolicy: Disable`.
    Disabling,
    /// Stalled: only a person can move it on (a key Atlas reports invalid, rejected credentials...).
    Stalled,
    /// Anything else: the handshake is under way; the project's own status says where.
    NotReady,
}

/// The reason of the project's `Stalled=True` condition, if it is stalled.
pub fn project_stall_reason(pe: &ProjectEncryption) -> Option<&str> {
    pe.status
        .as_ref()
        .and_then(|s| status::find(&s.conditions, reasons::STALLED))
        .filter(|c| c.status == "True")
        .map(|c| c.reason.as_str())
}

pub fn project_state(pe: &ProjectEncryption) -> ProjectState {
    let deleting_with_disable =
        pe.meta().deletion_timestamp.is_some() && pe.spec.deletion_policy == DeletionPolicy::Disable;
    if !pe.spec.aws_kms.enabled || deleting_with_disable {
        return ProjectState::Disabling;
    }
    let Some(status) = pe.status.as_ref() else {
        return ProjectState::NotReady;
    };
    // Reconciled, not EncryptionDisabled: a project turned back on after a disable is not Ready until
    // its key is in force again.
    let ready = status::find(&status.conditions, reasons::READY)
        .is_some_and(|c| c.status == "True" && c.reason == reasons::RECONCILED);
    if ready && status::is_true(&status.conditions, reasons::KEY_VALID) {
        ProjectState::Ready
    } else if project_stall_reason(pe).is_some() {
        ProjectState::Stalled
    } else {
        ProjectState::NotReady
    }
}

/// How long a cluster read ahead of its project's Ready stands in for a read before the PATCH. The
/// PATCH itself answers with the cluster and Atlas refuses one that no longer fits (paused, gone), so
/// the read is there for the decision only: tier, backup, provider and state change rarely in seconds.
pub const READ_AHEAD_FRESH: Duration = Duration::from_secs(30);

/// Whether to read the cluster while its project is on its way to Ready: once per wait, for a cluster
/// that is to use the key. The read is made only with budget to spare (the spare lane: not sent at all
/// when change-driven work needs the tokens), so that the PATCH follows the project's Ready at once and
/// a cluster that can never use the key says so now rather than after the handshake.
pub fn read_ahead_wanted(want: Want<'_>, project: ProjectState, already_read: bool) -> bool {
    want.aws && project == ProjectState::NotReady && !already_read
}

/// What a cluster read ahead of its project's Ready tells at once: that it can never use the key
/// (its tier, or another provider in force). Anything else waits for the project.
pub fn read_ahead_finding(name: &str, cluster: &Cluster) -> Option<Step> {
    match cluster_plan(true, cluster) {
        ClusterStep::UnsupportedTier => Some(unsupported_tier(name, &Tier::of(cluster))),
        ClusterStep::OtherProvider(provider) => Some(other_provider(name, Some(provider))),
        _ => None,
    }
}

/// Whether this pass may write to Atlas: a cluster turning off never waits for its project (clusters
/// going to `NONE` is what lets a project disable); one turning on waits until the project is Ready.
pub fn may_write(enabled: bool, project: Option<ProjectState>) -> bool {
    !enabled || project == Some(ProjectState::Ready)
}

/// Whether the finalizer must be in place before this pass: only when deleting the object would owe
/// Atlas a write (`deletionPolicy: Disable`), and from the first pass that may write. `Retain` (the
/// default) leaves Atlas as it is, so its objects carry none: deleting one needs nothing from the
/// operator (it goes at once, even with the operator stopped), and a fleet costs two Kubernetes writes
/// per cluster less, one of them on every cluster's way to its first Atlas write.
/// An observed project's clusters never write to Atlas, not even on their way out, so they owe none
/// either (`observed`); one switched to `Manage` gets it in the pass that makes its first write.
pub fn finalizer_needed(
    policy: DeletionPolicy,
    enabled: bool,
    project: Option<ProjectState>,
    observed: bool,
) -> bool {
    policy == DeletionPolicy::Disable && !observed && may_write(enabled, project)
}

/// Whether the project is under `managementPolicy: Observe`, so its clusters write nothing to Atlas.
pub fn observed(project: Option<&ProjectEncryption>) -> bool {
    project.is_some_and(|pe| pe.spec.management_policy == crate::crd::ManagementPolicy::Observe)
}

/// The worker lane of a pass (see `controller::workers`), from the lane of its look: a pass that may
/// write to Atlas goes first when a change asked for it; one that can only read ahead and say that its
/// project is not Ready yet waits with the resyncs and the polls of updates under way, since it
/// starts nothing in Atlas.
pub fn worker_lane(look: Lane, enabled: bool, project: Option<ProjectState>) -> Lane {
    if may_write(enabled, project) {
        look
    } else {
        Lane::Routine
    }
}

/// What the project lets this cluster do: `ProjectReady`, and the step that ends the pass when the
/// cluster must wait for (or be mended with) its project.
pub struct ProjectVerdict {
    pub project_ready: DesiredCondition,
    pub stop: Option<Step>,
}

pub fn project_verdict(
    want: Want<'_>,
    project: Option<&ProjectEncryption>,
    namespace: &str,
    previous: &ClusterEncryptionStatus,
    generation: Option<i64>,
) -> ProjectVerdict {
    let project_ready = condition(reasons::PROJECT_READY);
    let Some(pe) = project else {
        let message = messages::project_missing(want.project, namespace);
        return ProjectVerdict {
            project_ready: project_ready
                .false_because(reasons::PROJECT_ENCRYPTION_NOT_FOUND)
                .saying(message.clone()),
            stop: Some(Step::stalled(reasons::PROJECT_ENCRYPTION_NOT_FOUND, message)),
        };
    };
    let state = project_state(pe);
    let (reason, message) = match state {
        ProjectState::Ready => {
            return ProjectVerdict {
                project_ready: project_ready
                    .true_because(reasons::RECONCILED)
                    .saying(messages::project_ready(want.project)),
                stop: None,
            };
        }
        ProjectState::Disabling => (
            reasons::PROJECT_DISABLING,
            messages::project_disabling(want.project),
        ),
        // Not the project's own message: it changes as the handshake goes on (and carries the trust
        // instructions), and copying it would rewrite this status each time. Its stall reason is
        // stable, and a new one wakes this object (see `gate_fingerprint`).
        ProjectState::NotReady | ProjectState::Stalled => match project_stall_reason(pe) {
            Some(stall) => (
                reasons::PROJECT_STALLED,
                messages::project_stalled(want.project, stall),
            ),
            None => (
                reasons::WAITING_FOR_PROJECT,
                messages::waiting_for_project(want.project),
            ),
        },
    };
    let stop = want.aws.then(|| match state {
        ProjectState::Disabling => Step::stalled(
            reasons::PROJECT_DISABLING,
            messages::project_disabling_blocked(want.project, want.cluster),
        ),
        // The project's watch requeues this object the moment the project changes.
        _ => own_blocker(previous, generation).unwrap_or_else(|| {
            if state == ProjectState::Stalled {
                Step::stalled(reason, message.clone())
            } else {
                Step::new(Outcome::progressing(reason, message.clone()), USER_ACTION_REQUEUE)
            }
        }),
    });
    ProjectVerdict {
        project_ready: project_ready.false_because(reason).saying(message),
        stop,
    }
}

/// A blocker of the cluster's own (its tier, say), found by the last Atlas read of this spec. It needs a
/// person whatever the project does, so a project that is not Ready must not hide it; the cluster is
/// read again once the project is Ready.
pub fn own_blocker(status: &ClusterEncryptionStatus, generation: Option<i64>) -> Option<Step> {
    status::find(&status.conditions, reasons::STALLED)
        .filter(|c| {
            c.status == "True"
                && c.observed_generation == generation
                && matches!(
                    c.reason.as_str(),
                    reasons::UNSUPPORTED_TIER
                        | reasons::LEGACY_BACKUP
                        | reasons::CLUSTER_PAUSED
                        | reasons::CLUSTER_NOT_FOUND
                        | reasons::OTHER_PROVIDER_IN_USE
                )
        })
        .map(|c| Step::stalled(&c.reason, c.message.clone()))
}

/// The Atlas project of the cluster: its project's, or the one recorded when the project is gone.
pub fn group_id(
    want: Want<'_>,
    project: &ProjectEncryption,
    previous: &ClusterEncryptionStatus,
) -> Result<String, Step> {
    // A project named by id needs no resolving: its clusters know their Atlas project before its
    // first pass ends (and may be read ahead of it, see `read_ahead_wanted`).
    let group_id = project
        .status
        .as_ref()
        .and_then(|s| s.project_id.clone())
        .or_else(|| project.spec.project_id.clone())
        .or_else(|| previous.project_id.clone());
    group_id.ok_or_else(|| {
        let message = messages::project_unresolved(want.project);
        if want.deleting {
            Step::stalled(reasons::WAITING_FOR_PROJECT, message)
        } else {
            Step::new(
                Outcome::progressing(reasons::WAITING_FOR_PROJECT, message),
                USER_ACTION_REQUEUE,
            )
        }
    })
}

/// A cluster found converged on the key less than a resync period ago stays so until the resync reads
/// it again: the project becoming Ready again (after a rotation, say) needs no Atlas call.
pub fn still_verified(
    want: Want<'_>,
    project: ProjectState,
    previous: &ClusterEncryptionStatus,
    verified_ago: Option<Duration>,
    resync: Duration,
) -> Option<Step> {
    let ago = verified_ago.filter(|ago| *ago < resync)?;
    let on_key = previous.provider() == Some(EncryptionProvider::Aws);
    (want.aws && project == ProjectState::Ready && on_key).then(|| {
        Step::new(
            Outcome::ready(reasons::RECONCILED, messages::encrypted(want.cluster)),
            resync - ago,
        )
    })
}

/// Credentials of the project that cannot be read: retried while the API server is the problem (and
/// the cluster is not being deleted), Stalled otherwise.
pub fn unreadable_credentials(want: Want<'_>, error: CredentialsError) -> Result<Step> {
    credentials::unreadable(error, !want.deleting, |e| {
        messages::project_credentials(want.project, e)
    })
}

/// The single next thing a cluster needs, given whether it should use the project's key and what Atlas
/// shows. Pure, so every branch is unit-tested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterStep {
    /// Atlas shows what is wanted and the cluster is IDLE.
    Converged,
    /// Either the change is applied and Atlas is rolling it out, or the cluster is busy with something
    /// else; a write now could be refused or race that change.
    AwaitIdle,
    /// Send this `encryptionAtRestProvider`.
    Set(EncryptionProvider),
    /// Not a dedicated M10+ cluster: Atlas refuses customer keys there.
    UnsupportedTier,
    /// Atlas refuses any change to a paused cluster.
    Paused,
    /// The cluster uses another provider's key; Atlas only switches through NONE.
    OtherProvider(EncryptionProvider),
}

pub fn cluster_plan(want_aws: bool, cluster: &Cluster) -> ClusterStep {
    let current = cluster.provider();
    // `enabled: false` means "not the project's AWS key": another provider, set outside this operator,
    // is not ours to turn off.
    let converged = if want_aws {
        current == EncryptionProvider::Aws
    } else {
        current != EncryptionProvider::Aws
    };
    if converged {
        return if cluster.is_idle() {
            ClusterStep::Converged
        } else {
            ClusterStep::AwaitIdle
        };
    }
    if want_aws {
        if !cluster.supports_customer_key() {
            return ClusterStep::UnsupportedTier;
        }
        if current != EncryptionProvider::None {
            return ClusterStep::OtherProvider(current);
        }
    }
    if cluster.is_paused() {
        return ClusterStep::Paused;
    }
    if !cluster.is_idle() {
        return ClusterStep::AwaitIdle;
    }
    ClusterStep::Set(if want_aws {
        EncryptionProvider::Aws
    } else {
        EncryptionProvider::None
    })
}

/// What a pass does after reading the cluster: end with a step, or send a provider.
#[derive(Debug)]
pub enum Next {
    Done(Step),
    Set(EncryptionProvider),
}

/// The next thing after `plan`, given the status the pass started from (a refusal moments ago is not
/// sent again) and how long the cluster has been updating.
pub fn next(
    want: Want<'_>,
    plan: &ClusterStep,
    cluster: &Cluster,
    previous: &ClusterEncryptionStatus,
    context: Moment,
) -> Next {
    let name = want.cluster;
    let step = match plan {
        ClusterStep::Converged => converged(name, cluster, context.resync),
        ClusterStep::AwaitIdle => awaiting_idle(want, cluster, context.updating_for),
        ClusterStep::UnsupportedTier => unsupported_tier(name, &Tier::of(cluster)),
        ClusterStep::Paused => paused(name),
        ClusterStep::OtherProvider(provider) => other_provider(name, Some(*provider)),
        ClusterStep::Set(provider) => match recently_refused(previous, context.generation, context.now) {
            // Same refusal, same spec, moments ago: the Stalled status already says what to do.
            true => {
                let ready = status::find(&previous.conditions, reasons::READY);
                let (reason, message) = ready
                    .map(|c| (c.reason.clone(), c.message.clone()))
                    .unwrap_or_default();
                Step::stalled(&reason, message)
            }
            false => return Next::Set(*provider),
        },
    };
    Next::Done(step)
}

/// The time-dependent inputs of [`next`].
#[derive(Clone, Copy, Debug)]
pub struct Moment {
    pub generation: Option<i64>,
    pub now: Timestamp,
    pub resync: Duration,
    /// How long the cluster has been updating, as far as this process knows.
    pub updating_for: Duration,
}

/// A refused PATCH recorded as Stalled for this generation within [`REFUSAL_QUIET`].
pub fn recently_refused(status: &ClusterEncryptionStatus, generation: Option<i64>, now: Timestamp) -> bool {
    status::find(&status.conditions, reasons::STALLED).is_some_and(|c| {
        c.status == "True"
            && matches!(
                c.reason.as_str(),
                reasons::LEGACY_BACKUP | reasons::ATLAS_REFUSED | reasons::UNSUPPORTED_TIER
            )
            && c.observed_generation == generation
            && now.duration_since(c.last_transition_time.0).as_secs() < REFUSAL_QUIET.as_secs() as i64
    })
}

/// After Atlas took the provider: done when it is in force and IDLE, else the update is under way.
pub fn after_write(
    want: Want<'_>,
    updated: &Cluster,
    provider: EncryptionProvider,
    resync: Duration,
) -> (Step, bool) {
    if updated.provider() == provider && updated.is_idle() {
        return (converged(want.cluster, updated, resync), false);
    }
    (awaiting_idle(want, updated, Duration::ZERO), true)
}

/// A cluster's tier, as far as it decides whether customer keys are allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tier {
    /// The smallest electable instance size Atlas reported (`M0`, `M10`…).
    Named(String),
    Unknown,
    Flex,
    Serverless,
    /// M0/M2/M5, as Atlas's refusal names them without saying which.
    Shared,
}

impl Tier {
    pub fn of(cluster: &Cluster) -> Tier {
        smallest_tier(cluster).map_or(Tier::Unknown, Tier::Named)
    }

    /// What `status.tier` shows for a tier only Atlas's refusal revealed.
    pub fn status_name(&self) -> Option<&'static str> {
        match self {
            Tier::Flex => Some("FLEX"),
            Tier::Serverless => Some("SERVERLESS"),
            _ => None,
        }
    }
}

/// The smallest electable tier, which is the one that decides eligibility.
pub fn smallest_tier(cluster: &Cluster) -> Option<String> {
    let sizes = cluster.instance_sizes();
    sizes
        .iter()
        .min_by_key(|s| tier_number(s).unwrap_or(0))
        .map(|s| s.to_string())
}

/// What an Atlas error on a cluster read or write means for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Flex, Serverless or shared tier.
    Tier(Tier),
    LegacyBackup,
    Paused,
    NotFound,
    /// Atlas says the project's encryption is not (or no longer) enabled and valid.
    ProjectNotReady,
    OtherProvider,
    Credentials,
    /// Another 400/409: Atlas's own words go to the user.
    Refused,
    /// Worth retrying as is (5xx, timeouts, rate limits…).
    Retry,
}

pub fn classify(error_code: Option<&str>, status: Option<u16>) -> Refusal {
    match (error_code, status) {
        (Some(FLEX_CODE), _) => Refusal::Tier(Tier::Flex),
        (Some(SERVERLESS_CODE), _) => Refusal::Tier(Tier::Serverless),
        (Some(TENANT_CODE), _) => Refusal::Tier(Tier::Shared),
        (Some(BACKUP_CODE), _) => Refusal::LegacyBackup,
        (Some(PAUSED_CODE), _) => Refusal::Paused,
        (Some("ENCRYPTION_AT_REST_NOT_ENABLED" | "ENCRYPTION_AT_REST_SETTINGS_INVALID"), _) => {
            Refusal::ProjectNotReady
        }
        (Some("CANNOT_CHANGE_ENCRYPTION_AT_REST_PROVIDER"), _) => Refusal::OtherProvider,
        (_, Some(401 | 403)) => Refusal::Credentials,
        (_, Some(404)) => Refusal::NotFound,
        (_, Some(400 | 409)) => Refusal::Refused,
        _ => Refusal::Retry,
    }
}

fn classify_error(error: &AtlasError) -> Refusal {
    if matches!(error, AtlasError::Unauthorized { .. }) {
        return Refusal::Credentials;
    }
    classify(error.error_code(), error.status())
}

/// An Atlas error on the cluster, turned into a status a person can act on.
#[derive(Debug)]
pub struct Refused {
    pub step: Step,
    /// The tier only the refusal revealed.
    pub tier: Option<Tier>,
    /// The cluster cannot use the key, so it is as off as it can be: its provider is NONE.
    pub off: bool,
}

/// Turns an Atlas error on the cluster into a status a person can act on, or an error to retry.
/// `provider` is the cluster's provider as last read.
pub fn refused(
    want: Want<'_>,
    error: AtlasError,
    group_id: &str,
    provider: Option<EncryptionProvider>,
) -> Result<Refused> {
    let name = want.cluster;
    let step = match classify_error(&error) {
        Refusal::Tier(tier) if want.aws => {
            return Ok(Refused {
                step: unsupported_tier(name, &tier),
                tier: Some(tier),
                off: false,
            });
        }
        Refusal::Tier(tier) => {
            let step = Step::new(
                Outcome::ready(reasons::ENCRYPTION_DISABLED, messages::off_by_tier(name, &tier)),
                Duration::from_secs(300),
            );
            return Ok(Refused {
                step,
                tier: Some(tier),
                off: true,
            });
        }
        Refusal::NotFound if want.deleting => Step::new(
            Outcome::ready(reasons::CLUSTER_NOT_FOUND, messages::cluster_gone(name)),
            USER_ACTION_REQUEUE,
        ),
        Refusal::NotFound => Step::stalled(
            reasons::CLUSTER_NOT_FOUND,
            messages::cluster_not_found(name, group_id),
        ),
        Refusal::LegacyBackup => Step::stalled(reasons::LEGACY_BACKUP, messages::legacy_backup(name, &error)),
        Refusal::Paused => paused(name),
        Refusal::OtherProvider => other_provider(name, provider),
        Refusal::ProjectNotReady => Step::new(
            Outcome::progressing(
                reasons::WAITING_FOR_PROJECT,
                messages::project_not_valid_in_atlas(&error),
            ),
            Duration::from_secs(15),
        ),
        Refusal::Credentials => Step::stalled(
            reasons::CREDENTIALS_REJECTED,
            messages::credentials_refused(group_id, &error),
        ),
        Refusal::Refused => Step::stalled(reasons::ATLAS_REFUSED, error.to_string()),
        Refusal::Retry => return Err(error.into()),
    };
    Ok(Refused {
        step,
        tier: None,
        off: false,
    })
}

fn converged(name: &str, cluster: &Cluster, resync: Duration) -> Step {
    let outcome = match cluster.provider() {
        EncryptionProvider::Aws => Outcome::ready(reasons::RECONCILED, messages::encrypted(name)),
        other => Outcome::ready(reasons::ENCRYPTION_DISABLED, messages::not_using_key(name, other)),
    };
    Step::new(outcome, resync)
}

fn awaiting_idle(want: Want<'_>, cluster: &Cluster, updating_for: Duration) -> Step {
    let wanted = if want.aws {
        EncryptionProvider::Aws
    } else {
        EncryptionProvider::None
    };
    let message = messages::updating(
        want.cluster,
        cluster.state_name.as_deref(),
        wanted,
        cluster.provider(),
    );
    Step::new(
        Outcome::progressing(reasons::CLUSTER_UPDATING, message),
        updating_delay(updating_for),
    )
}

/// The delay before looking again at a cluster that has been updating for `waited`: patient, but
/// never longer than [`MAX_UPDATE_POLL`], and never a spin.
fn updating_delay(waited: Duration) -> Duration {
    patient_delay(waited, FIRST_UPDATE_POLL).min(MAX_UPDATE_POLL)
}

fn unsupported_tier(name: &str, tier: &Tier) -> Step {
    Step::stalled(reasons::UNSUPPORTED_TIER, messages::unsupported_tier(name, tier))
}

fn paused(name: &str) -> Step {
    Step::stalled(reasons::CLUSTER_PAUSED, messages::paused(name))
}

fn other_provider(name: &str, provider: Option<EncryptionProvider>) -> Step {
    Step::stalled(
        reasons::OTHER_PROVIDER_IN_USE,
        messages::other_provider(name, provider),
    )
}

/// A ClusterEncryption being deleted that cannot turn off yet: the step says how to let go anyway.
pub fn while_deleting(mut step: Step) -> Step {
    match &mut step.outcome {
        Outcome::Stalled { message, .. } => {
            message.insert_str(0, messages::DELETING);
            message.push_str(&messages::release());
        }
        Outcome::Progressing { message, .. } => message.insert_str(0, messages::DELETING),
        Outcome::Ready { .. } => {}
    }
    step
}

#[cfg(test)]
mod tests;
