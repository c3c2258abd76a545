//! ClusterEncryption driver: finalizer → ProjectEncryption (from the reflector store) → credentials →
//! cluster → `cluster_plan` → provider PATCH → UPDATING … IDLE → status.
//!
//! The project decides when a cluster may turn on: nothing is sent to Atlas until the ProjectEncryption
//! is Ready with a valid key, and the project's watch wakes this controller when that happens. Turning
//! off (`enabled: false`, or deletion with `Disable`) never waits for the project, since clusters going
//! to NONE is exactly what lets a project disable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::wake::{self, WakeGate};
use super::{Context, Error, NORMAL, Result, Step, USER_ACTION_REQUEUE, credentials, patient_delay};
use crate::atlas::{AtlasError, Cluster, Credentials, EncryptionProvider, model::tier_number};
use crate::crd::{ClusterEncryption, ClusterEncryptionStatus, DeletionPolicy, ProjectEncryption};
use crate::status::{self, Outcome, reasons};

/// An update usually takes minutes in Atlas; polling it more often than this buys nothing.
const MAX_UPDATE_POLL: Duration = Duration::from_secs(30);

/// The first look at a cluster after its update began. Most Atlas updates take minutes, but a provider
/// change can finish in seconds (the simulator's takes 3 s by default): a first read at 3 s sees those
/// done without a second poll, and costs a long update one read before the patient schedule.
const FIRST_UPDATE_POLL: Duration = Duration::from_secs(3);

/// A write Atlas refused for a reason a person must fix is not retried within this window, so the
/// reconcile caused by our own status write does not send the same refused PATCH again.
const REFUSAL_QUIET: Duration = Duration::from_secs(30);

const FLEX_CODE: &str = "CANNOT_USE_FLEX_CLUSTER_IN_CLUSTER_API";
const SERVERLESS_CODE: &str = "CANNOT_USE_SERVERLESS_INSTANCE_IN_CLUSTER_API";
const TENANT_CODE: &str = "CANNOT_USE_ENCRYPTION_AT_REST_TENANT";
const BACKUP_CODE: &str = "CANNOT_USE_ENCRYPTION_AT_REST_BACKUP_TYPE";
const PAUSED_CODE: &str = "CANNOT_UPDATE_PAUSED_CLUSTER";

pub async fn reconcile(ce: Arc<ClusterEncryption>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = ce.namespace().ok_or(Error::InvalidObject)?;
    let api: Api<ClusterEncryption> = Api::namespaced(ctx.client.clone(), &namespace);

    let memory = &ctx.cluster_memory;
    let gate_key = ce.uid().unwrap_or_default();
    if ce.meta().deletion_timestamp.is_some() {
        memory.forget(&gate_key);
        return cleanup(&ce, &ctx, &api, &namespace).await;
    }
    let Some(ce) = super::ensure_finalizer(&api, ce).await? else {
        return Ok(Action::await_change());
    };
    let fingerprint = gate_fingerprint(ce.as_ref(), find_project(ce.as_ref(), &ctx).as_deref());
    if let Some(wait) = memory.gate.wait(&gate_key, fingerprint, Instant::now()) {
        // Our own status write, or a project change that does not concern this cluster.
        return Ok(Action::requeue(wait));
    }

    let now = ctx.now();
    let mut status = ce.status.clone().unwrap_or_default();
    let result = drive(&ce, &ctx, &namespace, &mut status, now, false).await;
    let next = result.as_ref().map(|step| step.requeue).ok();
    let action = super::finish(ce.as_ref(), ce.status.as_ref(), &ctx, &api, status, result, now).await;
    match (&action, next) {
        (Ok(_), Some(after)) => memory
            .gate
            .finished(&gate_key, fingerprint, Instant::now(), after),
        (Err(e), _) => {
            memory
                .gate
                .failed(&gate_key, fingerprint, Instant::now(), e.retry_after());
        }
        (Ok(_), None) => memory.gate.forget(&gate_key),
    }
    action
}

/// What the cluster reconciler remembers between passes, per ClusterEncryption (by uid). It lives in
/// the controller's [`Context`], so a restarted controller, or a second one in the same process
/// (tests), starts afresh.
#[derive(Default)]
pub struct Memory {
    /// When each cluster is next due a look: see [`WakeGate`].
    pub(crate) gate: WakeGate,
    /// When each cluster was last read from Atlas and found converged on the project's key, for what a
    /// person controls on its ClusterEncryption then (generation, labels, annotations): touching any
    /// of them, `kubectl annotate` included, asks for a fresh look at Atlas.
    verified: Mutex<HashMap<String, Verified>>,
    /// When each cluster's update began: our PATCH, or the first time it was seen busy. Polls are
    /// timed from then, not from when the object stopped being Ready (which includes the wait for its
    /// project).
    updates: Mutex<HashMap<String, Instant>>,
}

/// The fingerprint of what a person controls when the cluster was found converged, and when.
type Verified = (u64, Instant);

impl Memory {
    fn forget(&self, key: &str) {
        self.gate.forget(key);
        self.forget_verified(key);
        self.update_over(key);
    }

    fn update_started(&self, key: &str) {
        self.updates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), Instant::now());
    }

    /// How long this cluster has been updating, as far as this process knows.
    fn updating_for(&self, key: &str) -> Duration {
        self.updates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_insert_with(Instant::now)
            .elapsed()
    }

    fn update_over(&self, key: &str) {
        self.updates.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    fn mark_verified(&self, key: &str, owned: u64) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), (owned, Instant::now()));
    }

    fn forget_verified(&self, key: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// How long ago this cluster was found converged on the key, with what a person controls unchanged.
    fn verified_ago(&self, key: &str, owned: u64) -> Option<Duration> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified
            .get(key)
            .filter(|(o, _)| *o == owned)
            .map(|(_, at)| at.elapsed())
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
            project_stall_reason(pe),
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

/// The referenced ProjectEncryption, from the reflector store (no API call).
pub(crate) fn find_project(ce: &ClusterEncryption, ctx: &Context) -> Option<Arc<ProjectEncryption>> {
    let namespace = ce.namespace();
    ctx.projects
        .state()
        .into_iter()
        .find(|p| p.namespace() == namespace && p.name_any() == ce.spec.project_encryption_ref.name)
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
fn project_stall_reason(pe: &ProjectEncryption) -> Option<&str> {
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

/// What an Atlas error on a cluster read or write means for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Flex, Serverless or shared tier; the text names which.
    Tier(&'static str),
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
        (Some(FLEX_CODE), _) => Refusal::Tier("a Flex cluster"),
        (Some(SERVERLESS_CODE), _) => Refusal::Tier("a Serverless instance"),
        (Some(TENANT_CODE), _) => Refusal::Tier("a shared-tier (M0/M2/M5) cluster"),
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

/// The smallest electable tier, which is the one that decides eligibility.
fn smallest_tier(cluster: &Cluster) -> Option<String> {
    let sizes = cluster.instance_sizes();
    sizes
        .iter()
        .min_by_key(|s| tier_number(s).unwrap_or(0))
        .map(|s| s.to_string())
}

fn record_cluster(status: &mut ClusterEncryptionStatus, cluster: &Cluster) {
    status.provider = Some(provider_name(cluster.provider()).to_string());
    status.state_name = cluster.state_name.clone();
    status.tier = smallest_tier(cluster);
    status.paused = Some(cluster.is_paused());
}

fn provider_name(provider: EncryptionProvider) -> &'static str {
    provider.as_str()
}

fn set_project_ready(
    status: &mut ClusterEncryptionStatus,
    ready: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    status::condition(reasons::PROJECT_READY)
        .holds(ready, reason)
        .saying(message)
        .apply(&mut status.conditions, generation, now);
}

/// The delay before looking again at a cluster that has been updating for `waited`: patient, but
/// never longer than [`MAX_UPDATE_POLL`], and never a spin.
fn updating_delay(waited: Duration) -> Duration {
    patient_delay(waited, FIRST_UPDATE_POLL).min(MAX_UPDATE_POLL)
}

/// `deleting` drives the cluster to NONE for deletion with `Disable`: the project's readiness does not
/// matter then, and a cluster that is gone or cannot use the key is as good as turned off.
async fn drive(
    ce: &ClusterEncryption,
    ctx: &Context,
    namespace: &str,
    status: &mut ClusterEncryptionStatus,
    now: Timestamp,
    deleting: bool,
) -> Result<Step> {
    let generation = ce.metadata.generation;
    let want_aws = ce.spec.enabled && !deleting;
    let project_name = &ce.spec.project_encryption_ref.name;
    let cluster_name = &ce.spec.cluster_name;

    let Some(pe) = find_project(ce, ctx) else {
        let message = format!(
            "ProjectEncryption {project_name} does not exist in namespace {namespace}: create it (this object waits for it), or recreate this ClusterEncryption with the right spec.projectEncryptionRef.name"
        );
        set_project_ready(
            status,
            false,
            reasons::PROJECT_ENCRYPTION_NOT_FOUND,
            &message,
            generation,
            now,
        );
        return Ok(Step::stalled(reasons::PROJECT_ENCRYPTION_NOT_FOUND, message));
    };

    match project_state(&pe) {
        ProjectState::Ready => set_project_ready(
            status,
            true,
            reasons::RECONCILED,
            &format!("ProjectEncryption {project_name} is Ready and Atlas reports its key valid"),
            generation,
            now,
        ),
        ProjectState::Disabling => {
            let message = format!(
                "ProjectEncryption {project_name} is turning Encryption at Rest off (spec.awsKms.enabled: false, or deleted with deletionPolicy: Disable)"
            );
            set_project_ready(
                status,
                false,
                reasons::PROJECT_DISABLING,
                &message,
                generation,
                now,
            );
            if want_aws {
                return Ok(Step::stalled(
                    reasons::PROJECT_DISABLING,
                    format!(
                        "{message}, but this ClusterEncryption still wants cluster {cluster_name} encrypted, which blocks it: set spec.enabled: false here so the cluster turns off first, or set spec.awsKms.enabled: true on the project again"
                    ),
                ));
            }
        }
        state @ (ProjectState::NotReady | ProjectState::Stalled) => {
            // Not the project's own message: it changes as the handshake goes on (and carries the trust
            // instructions), and copying it would rewrite this status each time. Its stall reason is
            // stable, and a new one wakes this object (see `gate_fingerprint`).
            let (reason, message) = match project_stall_reason(&pe) {
                Some(stall) => (
                    reasons::PROJECT_STALLED,
                    format!(
                        "ProjectEncryption {project_name} is stalled ({stall}) and needs a person: kubectl describe projectencryption {project_name} says what to do; this object acts again once it is Ready"
                    ),
                ),
                None => (
                    reasons::WAITING_FOR_PROJECT,
                    format!(
                        "waiting for ProjectEncryption {project_name} to be Ready with a valid key: kubectl describe projectencryption {project_name} says what it waits for"
                    ),
                ),
            };
            set_project_ready(status, false, reason, &message, generation, now);
            if want_aws {
                if let Some(own) = own_blocker(status, generation) {
                    return Ok(own);
                }
                // The project's watch requeues this object the moment the project changes.
                return Ok(if state == ProjectState::Stalled {
                    Step::stalled(reason, message)
                } else {
                    Step::new(Outcome::progressing(reason, message), USER_ACTION_REQUEUE)
                });
            }
        }
    }

    let Some(group_id) = pe
        .status
        .as_ref()
        .and_then(|s| s.project_id.clone())
        .or_else(|| status.project_id.clone())
    else {
        let message = format!("ProjectEncryption {project_name} has not resolved its Atlas project yet");
        return Ok(if deleting {
            Step::stalled(reasons::WAITING_FOR_PROJECT, message)
        } else {
            Step::new(
                Outcome::progressing(reasons::WAITING_FOR_PROJECT, message),
                USER_ACTION_REQUEUE,
            )
        });
    };
    status.project_id = Some(group_id.clone());

    // A cluster found converged on the key less than a resync period ago stays so until the resync
    // reads it again: the project becoming Ready again (after a rotation, say) needs no Atlas call.
    let memory = &ctx.cluster_memory;
    let verified_key = ce.uid().unwrap_or_default();
    let owned = wake::fingerprint((generation, &ce.metadata.labels, &ce.metadata.annotations));
    let resync = ctx.resync_period();
    if want_aws
        && project_state(&pe) == ProjectState::Ready
        && status.provider.as_deref() == Some("AWS")
        && let Some(ago) = memory
            .verified_ago(&verified_key, owned)
            .filter(|ago| *ago < resync)
    {
        return Ok(Step::new(
            Outcome::ready(
                reasons::RECONCILED,
                format!("cluster {cluster_name} is encrypted with the project's AWS KMS key"),
            ),
            resync - ago,
        ));
    }

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let creds = match credentials::atlas_credentials(&secrets, &pe.spec.credentials_ref.name).await {
        Ok(creds) => creds,
        Err(e) if e.is_transient() && !deleting => return Err(Error::Credentials(e)),
        Err(e) => {
            return Ok(Step::stalled(
                reasons::CREDENTIALS_INVALID,
                format!("the credentials of ProjectEncryption {project_name}: {e}"),
            ));
        }
    };

    let cluster = match ctx.atlas.get_cluster(&creds, &group_id, cluster_name).await {
        Ok(cluster) => cluster,
        Err(e) => return refused(ce, e, &group_id, status, want_aws, deleting),
    };
    record_cluster(status, &cluster);

    let plan = cluster_plan(want_aws, &cluster);
    if plan == ClusterStep::Converged && want_aws {
        memory.mark_verified(&verified_key, owned);
    } else {
        memory.forget_verified(&verified_key);
    }
    if plan != ClusterStep::AwaitIdle {
        memory.update_over(&verified_key);
    }
    match plan {
        ClusterStep::Converged => Ok(converged(ce, ctx, &cluster)),
        ClusterStep::AwaitIdle => Ok(awaiting_idle(ce, &cluster, memory.updating_for(&verified_key))),
        ClusterStep::UnsupportedTier => Ok(unsupported_tier(
            cluster_name,
            &smallest_tier(&cluster).map_or_else(
                || "a cluster of unknown tier".to_string(),
                // "an M0", said "an em-zero"; any other tier name starts with a consonant sound.
                |tier| {
                    if tier.starts_with(['M', 'A', 'E', 'I', 'O', 'U']) {
                        format!("an {tier} cluster")
                    } else {
                        format!("a {tier} cluster")
                    }
                },
            ),
        )),
        ClusterStep::Paused => Ok(paused(cluster_name)),
        ClusterStep::OtherProvider(provider) => Ok(other_provider(cluster_name, provider_name(provider))),
        ClusterStep::Set(provider) => {
            if recently_refused(status, generation, now) {
                // Same refusal, same spec, moments ago: the Stalled status already says what to do.
                let ready = status::find(&status.conditions, reasons::READY);
                let (reason, message) = ready
                    .map(|c| (c.reason.clone(), c.message.clone()))
                    .unwrap_or_default();
                return Ok(Step::stalled(&reason, message));
            }
            set_provider(ce, ctx, &creds, &group_id, &cluster, provider, status, deleting).await
        }
    }
}

/// A blocker of the cluster's own (its tier, say), found by the last Atlas read of this spec. It needs a
/// person whatever the project does, so a project that is not Ready must not hide it; the cluster is
/// read again once the project is Ready.
fn own_blocker(status: &ClusterEncryptionStatus, generation: Option<i64>) -> Option<Step> {
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

/// A refused PATCH recorded as Stalled for this generation within [`REFUSAL_QUIET`].
fn recently_refused(status: &ClusterEncryptionStatus, generation: Option<i64>, now: Timestamp) -> bool {
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

#[allow(clippy::too_many_arguments)]
async fn set_provider(
    ce: &ClusterEncryption,
    ctx: &Context,
    creds: &Credentials,
    group_id: &str,
    before: &Cluster,
    provider: EncryptionProvider,
    status: &mut ClusterEncryptionStatus,
    deleting: bool,
) -> Result<Step> {
    let name = &ce.spec.cluster_name;
    let want_aws = provider == EncryptionProvider::Aws;
    match ctx
        .atlas
        .set_cluster_encryption_provider(creds, group_id, name, provider)
        .await
    {
        Ok(cluster) => {
            record_cluster(status, &cluster);
            ctx.event(
                ce,
                NORMAL,
                reasons::PROVIDER_SET,
                "SetEncryptionProvider",
                format!(
                    "cluster {name}: encryptionAtRestProvider {} → {}",
                    provider_name(before.provider()),
                    provider_name(provider)
                ),
            )
            .await;
            if cluster.provider() == provider && cluster.is_idle() {
                return Ok(converged(ce, ctx, &cluster));
            }
            ctx.cluster_memory.update_started(&ce.uid().unwrap_or_default());
            Ok(awaiting_idle(ce, &cluster, Duration::ZERO))
        }
        Err(e) => refused(ce, e, group_id, status, want_aws, deleting),
    }
}

/// Turns an Atlas error on the cluster into a status a person can act on, or an error to retry.
fn refused(
    ce: &ClusterEncryption,
    error: AtlasError,
    group_id: &str,
    status: &mut ClusterEncryptionStatus,
    want_aws: bool,
    deleting: bool,
) -> Result<Step> {
    let name = &ce.spec.cluster_name;
    match classify_error(&error) {
        Refusal::Tier(what) => {
            status.tier = match what {
                "a Flex cluster" => Some("FLEX".into()),
                "a Serverless instance" => Some("SERVERLESS".into()),
                _ => status.tier.clone(),
            };
            if want_aws {
                Ok(unsupported_tier(name, what))
            } else {
                // It cannot use the key, so it is as off as it can be.
                status.provider = Some("NONE".into());
                Ok(Step::new(
                    Outcome::ready(
                        reasons::ENCRYPTION_DISABLED,
                        format!("cluster {name} is {what}, which cannot use the project's key"),
                    ),
                    Duration::from_secs(300),
                ))
            }
        }
        Refusal::NotFound if deleting => Ok(Step::new(
            Outcome::ready(
                reasons::CLUSTER_NOT_FOUND,
                format!("cluster {name} no longer exists in Atlas"),
            ),
            USER_ACTION_REQUEUE,
        )),
        Refusal::NotFound => Ok(Step::stalled(
            reasons::CLUSTER_NOT_FOUND,
            format!(
                "Atlas project {group_id} has no cluster {name}: create it, or recreate this ClusterEncryption with the right spec.clusterName (it cannot change). The operator looks again every minute"
            ),
        )),
        Refusal::LegacyBackup => Ok(Step::stalled(
            reasons::LEGACY_BACKUP,
            format!(
                "cluster {name} uses legacy backup, and Atlas allows customer-managed keys only with Cloud Backup: move the cluster to Cloud Backup in Atlas; the operator retries by itself. Atlas said: {error}"
            ),
        )),
        Refusal::Paused => Ok(paused(name)),
        Refusal::OtherProvider => Ok(other_provider(
            name,
            status.provider.as_deref().unwrap_or("another provider"),
        )),
        Refusal::ProjectNotReady => Ok(Step::new(
            Outcome::progressing(
                reasons::WAITING_FOR_PROJECT,
                format!(
                    "Atlas does not consider the project's AWS KMS configuration enabled and valid yet: {error}"
                ),
            ),
            Duration::from_secs(15),
        )),
        Refusal::Credentials => Ok(Step::stalled(
            reasons::CREDENTIALS_REJECTED,
            format!(
                "Atlas refused the ProjectEncryption's credentials for this cluster: {error}. Give the key Project Owner (or Project Cluster Manager) on project {group_id}"
            ),
        )),
        Refusal::Refused => Ok(Step::stalled(reasons::ATLAS_REFUSED, format!("{error}"))),
        Refusal::Retry => Err(error.into()),
    }
}

fn converged(ce: &ClusterEncryption, ctx: &Context, cluster: &Cluster) -> Step {
    let name = &ce.spec.cluster_name;
    let outcome = if cluster.provider() == EncryptionProvider::Aws {
        Outcome::ready(
            reasons::RECONCILED,
            format!("cluster {name} is encrypted with the project's AWS KMS key"),
        )
    } else {
        Outcome::ready(
            reasons::ENCRYPTION_DISABLED,
            format!(
                "cluster {name} does not use the project's AWS KMS key (encryptionAtRestProvider {})",
                provider_name(cluster.provider())
            ),
        )
    };
    Step::new(outcome, ctx.resync_period())
}

fn awaiting_idle(ce: &ClusterEncryption, cluster: &Cluster, updating_for: Duration) -> Step {
    let want = if ce.spec.enabled && ce.meta().deletion_timestamp.is_none() {
        "AWS"
    } else {
        "NONE"
    };
    Step::new(
        Outcome::progressing(
            reasons::CLUSTER_UPDATING,
            format!(
                "cluster {} is {}; waiting for it to be IDLE with encryptionAtRestProvider {want} (now {})",
                ce.spec.cluster_name,
                cluster.state_name.as_deref().unwrap_or("in an unknown state"),
                provider_name(cluster.provider()),
            ),
        ),
        updating_delay(updating_for),
    )
}

fn unsupported_tier(name: &str, what: &str) -> Step {
    Step::stalled(
        reasons::UNSUPPORTED_TIER,
        format!(
            "cluster {name} is {what}: Atlas allows customer-managed keys only on dedicated M10 or larger clusters (not M0/M2/M5, Flex or Serverless). Scale it to a dedicated M10+ tier, or delete this ClusterEncryption"
        ),
    )
}

fn paused(name: &str) -> Step {
    Step::stalled(
        reasons::CLUSTER_PAUSED,
        format!(
            "cluster {name} is paused, and Atlas refuses changes to paused clusters: resume it in Atlas; the operator retries by itself"
        ),
    )
}

fn other_provider(name: &str, provider: &str) -> Step {
    Step::stalled(
        reasons::OTHER_PROVIDER_IN_USE,
        format!(
            "cluster {name} uses {provider} key management, and Atlas switches providers only through NONE: set its encryptionAtRestProvider to NONE in Atlas first if it should use the project's AWS KMS key"
        ),
    )
}

/// Deletion: `Retain` lets go at once without calling Atlas; `Disable` switches the cluster to NONE and
/// waits for Atlas to show NONE and IDLE. Whatever blocks that says how to let go anyway.
async fn cleanup(
    ce: &ClusterEncryption,
    ctx: &Context,
    api: &Api<ClusterEncryption>,
    namespace: &str,
) -> Result<Action> {
    if !ce.finalizers().iter().any(|f| f == crate::crd::FINALIZER) {
        return Ok(Action::await_change());
    }
    let never_reached_atlas = ce.status.as_ref().is_none_or(|s| s.project_id.is_none());
    if ce.spec.deletion_policy == DeletionPolicy::Retain
        || never_reached_atlas && find_project(ce, ctx).is_none()
    {
        super::remove_finalizer(api, ce).await?;
        return Ok(Action::await_change());
    }
    let now = ctx.now();
    let mut status = ce.status.clone().unwrap_or_default();
    let result = drive(ce, ctx, namespace, &mut status, now, true).await;
    match result {
        Ok(step) if step.outcome.is_ready() => {
            super::remove_finalizer(api, ce).await?;
            Ok(Action::await_change())
        }
        Ok(mut step) => {
            match &mut step.outcome {
                Outcome::Stalled { message, .. } => {
                    message.insert_str(0, "deleting: ");
                    message.push_str(&format!(
                        "; to delete without turning encryption off, set spec.deletionPolicy: Retain, or remove the finalizer {}",
                        crate::crd::FINALIZER
                    ));
                }
                Outcome::Progressing { message, .. } => message.insert_str(0, "deleting: "),
                Outcome::Ready { .. } => {}
            }
            super::finish(ce, ce.status.as_ref(), ctx, api, status, Ok(step), now).await
        }
        Err(e) => super::finish(ce, ce.status.as_ref(), ctx, api, status, Err(e), now).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ProjectEncryptionStatus;
    use serde_json::json;

    fn cluster(size: &str, provider: &str, state: &str, paused: bool) -> Cluster {
        let region = if matches!(size, "M0" | "M2" | "M5") {
            json!({"providerName": "TENANT", "backingProviderName": "AWS",
                   "electableSpecs": {"instanceSize": size}})
        } else {
            json!({"providerName": "AWS", "electableSpecs": {"instanceSize": size}})
        };
        serde_json::from_value(json!({"name": "c", "stateName": state, "paused": paused,
            "encryptionAtRestProvider": provider,
            "replicationSpecs": [{"regionConfigs": [region]}]}))
        .unwrap()
    }

    #[test]
    fn sets_the_provider_only_when_it_differs() {
        let off = cluster("M10", "NONE", "IDLE", false);
        let on = cluster("M10", "AWS", "IDLE", false);
        assert_eq!(
            cluster_plan(true, &off),
            ClusterStep::Set(EncryptionProvider::Aws)
        );
        assert_eq!(cluster_plan(true, &on), ClusterStep::Converged);
        assert_eq!(
            cluster_plan(false, &on),
            ClusterStep::Set(EncryptionProvider::None)
        );
        assert_eq!(cluster_plan(false, &off), ClusterStep::Converged);
    }

    #[test]
    fn ready_only_once_idle() {
        assert_eq!(
            cluster_plan(true, &cluster("M10", "AWS", "UPDATING", false)),
            ClusterStep::AwaitIdle
        );
        assert_eq!(
            cluster_plan(false, &cluster("M10", "NONE", "UPDATING", false)),
            ClusterStep::AwaitIdle
        );
        // Busy with something else: no write that could race it.
        assert_eq!(
            cluster_plan(true, &cluster("M10", "NONE", "UPDATING", false)),
            ClusterStep::AwaitIdle
        );
    }

    #[test]
    fn refuses_before_writing_what_atlas_would_refuse() {
        for size in ["M0", "M2", "M5"] {
            assert_eq!(
                cluster_plan(true, &cluster(size, "NONE", "IDLE", false)),
                ClusterStep::UnsupportedTier,
                "{size}"
            );
        }
        assert_eq!(
            cluster_plan(true, &cluster("M10", "NONE", "IDLE", true)),
            ClusterStep::Paused
        );
        assert_eq!(
            cluster_plan(false, &cluster("M10", "AWS", "IDLE", true)),
            ClusterStep::Paused,
            "turning off a paused cluster is refused too"
        );
        assert_eq!(
            cluster_plan(true, &cluster("M30", "AZURE", "IDLE", false)),
            ClusterStep::OtherProvider(EncryptionProvider::Azure)
        );
    }

    #[test]
    fn enabled_false_leaves_other_providers_and_tiers_alone() {
        assert_eq!(
            cluster_plan(false, &cluster("M30", "AZURE", "IDLE", false)),
            ClusterStep::Converged
        );
        assert_eq!(
            cluster_plan(false, &cluster("M0", "NONE", "IDLE", true)),
            ClusterStep::Converged
        );
        // A converged paused cluster is fine: nothing to change.
        assert_eq!(
            cluster_plan(true, &cluster("M10", "AWS", "IDLE", true)),
            ClusterStep::Converged
        );
    }

    #[test]
    fn atlas_error_codes_map_to_reasons() {
        assert_eq!(
            classify(Some(FLEX_CODE), Some(400)),
            Refusal::Tier("a Flex cluster")
        );
        assert_eq!(
            classify(Some(SERVERLESS_CODE), Some(400)),
            Refusal::Tier("a Serverless instance")
        );
        assert!(matches!(classify(Some(TENANT_CODE), Some(400)), Refusal::Tier(_)));
        assert_eq!(classify(Some(BACKUP_CODE), Some(400)), Refusal::LegacyBackup);
        assert_eq!(classify(Some(PAUSED_CODE), Some(409)), Refusal::Paused);
        assert_eq!(classify(Some("CLUSTER_NOT_FOUND"), Some(404)), Refusal::NotFound);
        assert_eq!(
            classify(Some("ENCRYPTION_AT_REST_NOT_ENABLED"), Some(400)),
            Refusal::ProjectNotReady
        );
        assert_eq!(classify(Some("NOT_IN_GROUP"), Some(401)), Refusal::Credentials);
        assert_eq!(classify(Some("SOMETHING_NEW"), Some(409)), Refusal::Refused);
        assert_eq!(classify(Some("UNEXPECTED_ERROR"), Some(500)), Refusal::Retry);
        assert_eq!(classify(None, None), Refusal::Retry);
    }

    fn project(enabled: bool, ready: bool, key_valid: bool, generation: i64) -> ProjectEncryption {
        let mut pe = ProjectEncryption::new(
            "p",
            serde_json::from_value(json!({"projectName": "x", "credentialsRef": {"name": "s"},
                "awsKms": {"enabled": enabled, "customerMasterKeyId": "k", "region": "eu-west-2"}}))
            .unwrap(),
        );
        pe.metadata.generation = Some(2);
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let mut status = ProjectEncryptionStatus {
            observed_generation: Some(generation),
            ..Default::default()
        };
        let outcome = if ready {
            Outcome::ready(reasons::RECONCILED, "ok")
        } else {
            Outcome::progressing(reasons::AWAITING_TRUST_POLICY, "trust me")
        };
        outcome.apply(&mut status.conditions, Some(generation), now);
        status::condition(reasons::KEY_VALID).holds(key_valid, "x").apply(
            &mut status.conditions,
            Some(generation),
            now,
        );
        pe.status = Some(status);
        pe
    }

    #[test]
    fn the_project_must_be_ready_current_and_valid() {
        assert_eq!(project_state(&project(true, true, true, 2)), ProjectState::Ready);
        assert_eq!(
            project_state(&project(true, true, true, 1)),
            ProjectState::Ready,
            "applying a new spec (a rotation) with the last one in force and valid"
        );
        assert_eq!(
            project_state(&project(true, true, false, 2)),
            ProjectState::NotReady,
            "key not valid"
        );
        assert_eq!(
            project_state(&project(true, false, false, 2)),
            ProjectState::NotReady
        );
        assert_eq!(
            project_state(&project(false, true, true, 2)),
            ProjectState::Disabling
        );
        let mut turned_back_on = project(true, true, true, 1);
        Outcome::ready(reasons::ENCRYPTION_DISABLED, "off").apply(
            &mut turned_back_on.status.as_mut().unwrap().conditions,
            Some(1),
            Timestamp::from_second(1_700_000_000).unwrap(),
        );
        assert_eq!(
            project_state(&turned_back_on),
            ProjectState::NotReady,
            "Ready because encryption was off is not a key in force"
        );
        let mut deleting = project(true, true, true, 2);
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(1_700_000_000).unwrap(),
        ));
        assert_eq!(
            project_state(&deleting),
            ProjectState::Ready,
            "Retain keeps it on"
        );
        deleting.spec.deletion_policy = DeletionPolicy::Disable;
        assert_eq!(project_state(&deleting), ProjectState::Disabling);
        let mut invalid = project(true, true, true, 2);
        Outcome::stalled(reasons::KEY_INVALID, "disabled in KMS").apply(
            &mut invalid.status.as_mut().unwrap().conditions,
            Some(2),
            Timestamp::from_second(1_700_000_000).unwrap(),
        );
        assert_eq!(project_state(&invalid), ProjectState::Stalled);
        assert_eq!(project_stall_reason(&invalid), Some(reasons::KEY_INVALID));
        assert_eq!(project_stall_reason(&project(true, false, false, 2)), None);
    }

    #[test]
    fn the_clusters_own_blocker_outlasts_its_project_but_not_its_spec() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let mut status = ClusterEncryptionStatus::default();
        Outcome::stalled(reasons::UNSUPPORTED_TIER, "M0").apply(&mut status.conditions, Some(3), now);
        let kept = own_blocker(&status, Some(3)).expect("the tier verdict of this spec");
        assert_eq!(kept.outcome, Outcome::stalled(reasons::UNSUPPORTED_TIER, "M0"));
        assert!(
            own_blocker(&status, Some(4)).is_none(),
            "a new spec is judged afresh"
        );

        Outcome::stalled(reasons::PROJECT_STALLED, "project").apply(&mut status.conditions, Some(3), now);
        assert!(
            own_blocker(&status, Some(3)).is_none(),
            "the project's stall is not the cluster's"
        );
        Outcome::progressing(reasons::CLUSTER_UPDATING, "busy").apply(&mut status.conditions, Some(3), now);
        assert!(own_blocker(&status, Some(3)).is_none());
    }

    #[test]
    fn the_smallest_tier_is_reported() {
        let c: Cluster = serde_json::from_value(json!({"name": "c", "replicationSpecs": [{"regionConfigs": [
            {"providerName": "AWS", "electableSpecs": {"instanceSize": "M30"}},
            {"providerName": "AWS", "electableSpecs": {"instanceSize": "M10"}}]}]}))
        .unwrap();
        assert_eq!(smallest_tier(&c).as_deref(), Some("M10"));
    }

    #[test]
    fn a_recent_refusal_is_not_resent() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let mut status = ClusterEncryptionStatus::default();
        Outcome::stalled(reasons::LEGACY_BACKUP, "move to cloud backup").apply(
            &mut status.conditions,
            Some(1),
            now,
        );
        assert!(recently_refused(&status, Some(1), now));
        assert!(!recently_refused(&status, Some(2), now), "a new spec tries again");
        let later = Timestamp::from_second(1_700_000_000 + 61).unwrap();
        assert!(!recently_refused(&status, Some(1), later));
        Outcome::stalled(reasons::CLUSTER_PAUSED, "resume").apply(&mut status.conditions, Some(1), now);
        assert!(!recently_refused(&status, Some(1), now));
    }
}
