//! Pure decisions of the ProjectEncryption reconciler: given the spec, what the pass observed and the
//! status it started from, what comes next. No I/O, no clock (`now` is an argument), no lock; so every
//! branch is unit-tested without a runtime.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::messages;
use crate::atlas::{AtlasError, AwsIamRole, AwsKmsConfig, AwsKmsPatch, Group};
use crate::aws::{KeyRef, Region, RoleArn};
use crate::controller::wake::Look;
use crate::controller::{
    CredentialsError, Error, Result, Step, credentials, observing, patient_delay, waited_since,
};
use crate::crd::{
    AtlasRoleStatus, AwsKmsSpec, KeyAgeSource, KeyStatus, ManagementPolicy, PlannedChange, PreviousKeyStatus,
    ProjectEncryptionStatus, SearchNodesSpec,
};
use crate::kms::{AutomaticRotation, KeyMaterial, KeyReport, MaterialUnread, PreflightFailure};
use crate::status::{self, DesiredCondition, Outcome, condition, reasons};

/// The key, region and IAM role the spec asks for, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub key: KeyRef,
    pub region: Region,
    pub role_arn: Option<RoleArn>,
}

/// The spec's key and region, or the Stalled step for an object stored before admission refused such
/// values.
pub fn target(spec: &AwsKmsSpec) -> Result<Target, Step> {
    let key = spec
        .customer_master_key_id
        .as_deref()
        .and_then(|k| KeyRef::parse(k).ok());
    match (key, Region::parse(&spec.region)) {
        (Some(key), Ok(region)) => Ok(Target {
            key,
            region,
            role_arn: spec.role_arn.as_deref().and_then(|a| RoleArn::parse(a).ok()),
        }),
        _ => Err(Step::stalled(
            reasons::KEY_REJECTED,
            messages::invalid_key_or_region(),
        )),
    }
}

/// A credentials Secret that cannot be read: retried while the API server is the problem, Stalled
/// while the Secret itself is.
pub fn unreadable_credentials(error: CredentialsError) -> Result<Step> {
    credentials::unreadable(error, true, CredentialsError::to_string)
}

/// Deletion cannot turn encryption off without the credentials: Stalled, saying how to let go.
pub fn unreadable_credentials_while_deleting(error: CredentialsError) -> Result<Step> {
    credentials::unreadable(error, false, messages::cannot_disable)
}

pub fn duplicate_project(group: &Group, owner: &str) -> Step {
    Step::stalled(
        reasons::DUPLICATE_PROJECT,
        messages::duplicate_project(group, owner),
    )
}

/// Atlas refusals that a person must act on become Stalled; everything else stays an error to retry.
pub fn stalled_on_access(error: Error) -> Result<Step> {
    let (reason, message) = match &error {
        Error::Atlas(AtlasError::Unauthorized { .. }) => (
            reasons::CREDENTIALS_REJECTED,
            messages::credentials_refused(&error),
        ),
        Error::Atlas(e) if e.status() == Some(403) => (
            reasons::CREDENTIALS_REJECTED,
            messages::no_access_to_project(&error),
        ),
        // NOT_IN_GROUP is Atlas's 401 for a project that does not exist or that this key cannot see:
        // the same fix as a 404, not an outage to retry.
        Error::Atlas(e) if e.is_not_found() || e.is_error_code("NOT_IN_GROUP") => {
            (reasons::PROJECT_NOT_FOUND, messages::project_not_found(&error))
        }
        _ => return Err(error),
    };
    Ok(Step::stalled(reason, message))
}

/// [`stalled_on_access`], and any other 400 or 409 of Atlas's is a refusal a person must read.
pub fn stalled_on_atlas_refusal(error: Error) -> Result<Step> {
    match &error {
        Error::Atlas(e) if matches!(e.status(), Some(400 | 409)) => {
            Ok(Step::stalled(reasons::ATLAS_REFUSED, error.to_string()))
        }
        _ => stalled_on_access(error),
    }
}

/// The KMS preflight's verdict.
#[derive(Debug)]
pub enum Preflight {
    Passed(KeyReport),
    /// The key cannot be used: what `KeyValid` says, and how the pass ends.
    Refused {
        key_valid: DesiredCondition,
        step: Step,
    },
}

pub fn preflight(checked: Result<KeyReport, PreflightFailure>, target: &Target) -> Preflight {
    let reachable = checked.and_then(|report| match &target.role_arn {
        Some(arn) => report.require_reachable_by(&target.key, arn).map(|()| report),
        None => Ok(report),
    });
    let failure = match reachable {
        Ok(report) => return Preflight::Passed(report),
        Err(failure) => failure,
    };
    let key_valid = condition(reasons::KEY_VALID)
        .false_because(failure.reason())
        .saying(failure.message());
    let step = if failure.is_transient() {
        Step::new(
            Outcome::progressing(failure.reason(), failure.message()),
            Duration::from_secs(30),
        )
    } else {
        Step::stalled(failure.reason(), failure.message())
    };
    Preflight::Refused { key_valid, step }
}

/// Whether the key survives a regional outage: as KMS reported it, else as its id says.
pub fn multi_region(report: Option<&KeyReport>, key: &KeyRef) -> DesiredCondition {
    let multi_region = report.map(|r| r.multi_region).unwrap_or(key.is_multi_region());
    let reason = if multi_region {
        reasons::IS_MULTI_REGION_KEY
    } else {
        reasons::SINGLE_REGION_KEY
    };
    condition(reasons::MULTI_REGION_KEY)
        .holds(multi_region, reason)
        .saying(messages::multi_region(multi_region))
}

/// A project on deprecated access keys moves to a role only when the spec acknowledges that Atlas
/// cannot go back.
pub fn role_switch_guard(spec: &AwsKmsSpec, current: Option<&AwsKmsConfig>) -> Option<Step> {
    let on_access_keys = current.is_some_and(|c| c.is_enabled() && c.access_key_id.is_some());
    (on_access_keys && !spec.acknowledge_irreversible_switch_to_role).then(|| {
        Step::stalled(
            reasons::ROLE_SWITCH_NOT_ACKNOWLEDGED,
            messages::role_switch_not_acknowledged(),
        )
    })
}

/// What to do about the Atlas cloud-provider-access role.
#[derive(Clone, Debug, PartialEq)]
pub enum RoleStep {
    /// This role is authorized for the IAM role we want: use it.
    Use(AwsIamRole),
    /// Authorize this role with the IAM role ARN (the trust policy may not be in place yet).
    Authorize { role: AwsIamRole, role_arn: RoleArn },
    /// No usable role exists: create one.
    Create,
    /// The user named an Atlas role that does not exist.
    NamedRoleMissing { role_id: String },
    /// The user named an Atlas role that is not authorized, and gave no IAM role to authorize it with.
    NamedRoleUnauthorized { role_id: String },
}

/// Chooses the role, preferring in order: the role the user named, the one recorded in status (so a
/// restart never creates a second), one already authorized for `roleArn`, and the operator's own
/// orphan: an unauthorized unused role Atlas created at or after `creation_requested_at` (the intent
/// written to status before the creation), left behind when the operator stopped between creating a
/// role and recording it. Any other unauthorized role belongs to someone else and is left alone.
pub fn role_step(
    atlas_role_id: Option<&str>,
    role_arn: Option<&RoleArn>,
    recorded_role_id: Option<&str>,
    creation_requested_at: Option<Timestamp>,
    roles: &[AwsIamRole],
) -> RoleStep {
    let find = |id: &str| roles.iter().find(|r| r.role_id == id).cloned();
    let wanted = |role: AwsIamRole| match role_arn {
        Some(arn) if role.role_arn().as_ref() != Some(arn) => RoleStep::Authorize {
            role,
            role_arn: arn.clone(),
        },
        _ if role.is_authorized() => RoleStep::Use(role),
        _ => RoleStep::NamedRoleUnauthorized {
            role_id: role.role_id.clone(),
        },
    };

    if let Some(id) = atlas_role_id {
        return match find(id) {
            Some(role) => wanted(role),
            None => RoleStep::NamedRoleMissing {
                role_id: id.to_string(),
            },
        };
    }
    let Some(arn) = role_arn else {
        // Admission requires roleArn or atlasRoleId whenever a role is needed.
        return RoleStep::Create;
    };
    if let Some(role) = recorded_role_id.and_then(find) {
        return wanted(role);
    }
    if let Some(role) = roles
        .iter()
        .find(|r| r.is_authorized() && r.role_arn().as_ref() == Some(arn))
    {
        return RoleStep::Use(role.clone());
    }
    let orphan = roles
        .iter()
        .filter(|r| !r.is_authorized() && r.feature_usages.is_empty())
        .filter(|r| created_since(r, creation_requested_at))
        .max_by_key(|r| r.created_date);
    match orphan {
        Some(role) => RoleStep::Authorize {
            role: role.clone(),
            role_arn: arn.clone(),
        },
        None => RoleStep::Create,
    }
}

/// Whether Atlas created `role` at or after the operator's intent to create one (in whole seconds, as the
/// status keeps the intent). No intent, or no creation date, is no claim.
fn created_since(role: &AwsIamRole, requested_at: Option<Timestamp>) -> bool {
    match (role.created_date, requested_at) {
        (Some(created), Some(requested)) => created.timestamp() >= requested.as_second(),
        _ => false,
    }
}

/// The role recorded in status, when it can be used without listing Atlas's roles: it is authorized for
/// the IAM role the spec names (or is the Atlas role the spec names), and Atlas, just read, reports the
/// key in force valid, which it cannot be without a working role. Anything else lists the roles.
pub fn recorded_role_in_use(
    atlas_role_id: Option<&str>,
    role_arn: Option<&RoleArn>,
    recorded: Option<&AtlasRoleStatus>,
    atlas_reports_valid: bool,
) -> Option<AwsIamRole> {
    let recorded = recorded.filter(|r| r.authorized && r.authorized_at.is_some() && atlas_reports_valid)?;
    let matches = match (atlas_role_id, role_arn) {
        (Some(id), _) => id == recorded.role_id,
        (None, Some(arn)) => recorded.iam_role_arn.as_deref() == Some(arn.to_string().as_str()),
        (None, None) => false,
    };
    matches.then(|| AwsIamRole {
        role_id: recorded.role_id.clone(),
        atlas_aws_account_arn: recorded.atlas_aws_account_arn.clone(),
        atlas_assumed_role_external_id: recorded.external_id.clone(),
        iam_assumed_role_arn: recorded.iam_role_arn.clone(),
        authorized_date: recorded
            .authorized_at
            .as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0)),
        ..Default::default()
    })
}

/// The role recorded in status that this operator created and is waiting to see trusted, with the IAM
/// role to authorize it for: no Atlas role named in the spec, a `roleArn`, and the recorded role not
/// authorized. Such a role can only need authorizing, so the pass tries that first without listing.
pub fn pending_authorization(
    atlas_role_id: Option<&str>,
    role_arn: Option<&RoleArn>,
    recorded: Option<&AtlasRoleStatus>,
) -> Option<(AwsIamRole, RoleArn)> {
    let (None, Some(arn), Some(recorded)) = (atlas_role_id, role_arn, recorded) else {
        return None;
    };
    (!recorded.authorized).then(|| {
        (
            AwsIamRole {
                role_id: recorded.role_id.clone(),
                atlas_aws_account_arn: recorded.atlas_aws_account_arn.clone(),
                atlas_assumed_role_external_id: recorded.external_id.clone(),
                ..Default::default()
            },
            arn.clone(),
        )
    })
}

/// The Atlas role the spec names does not exist: what `RoleAuthorized` says, and the Stalled step.
pub fn role_not_found(role_id: &str) -> (DesiredCondition, Step) {
    role_refused(reasons::ROLE_NOT_FOUND, messages::role_not_found(role_id))
}

/// The Atlas role the spec names is not authorized, and no IAM role was given to authorize it with.
pub fn role_not_authorized(role_id: &str) -> (DesiredCondition, Step) {
    role_refused(
        reasons::ROLE_NOT_AUTHORIZED,
        messages::role_not_authorized(role_id),
    )
}

fn role_refused(reason: &'static str, message: String) -> (DesiredCondition, Step) {
    let role_authorized = condition(reasons::ROLE_AUTHORIZED)
        .false_because(reason)
        .saying(message.clone());
    (role_authorized, Step::stalled(reason, message))
}

/// `RoleAuthorized` for a role Atlas may assume.
pub fn role_authorized(role: &AwsIamRole) -> DesiredCondition {
    condition(reasons::ROLE_AUTHORIZED)
        .true_because(reasons::AUTHORIZED)
        .saying(messages::atlas_assumes(role))
}

/// `RoleAuthorized` while Atlas cannot assume the IAM role yet: the policies it needs.
pub fn trust_requested(role: &AwsIamRole, role_arn: &RoleArn, key: &KeyRef) -> DesiredCondition {
    condition(reasons::ROLE_AUTHORIZED)
        .false_because(reasons::AWAITING_TRUST_POLICY)
        .saying(messages::trust_instructions(role, role_arn, key))
}

/// The trust instructions are raised as a Warning Event once, as the wait for them begins.
pub fn trust_newly_requested(previous: &ProjectEncryptionStatus) -> bool {
    status::find(&previous.conditions, reasons::ROLE_AUTHORIZED)
        .is_none_or(|c| c.reason != reasons::AWAITING_TRUST_POLICY)
}

/// The first look for the customer's trust policy after asking for it. Automation that reads the
/// external ID from the status and writes the policy (Terraform, Crossplane, a pipeline, the bench's
/// customer in a fifth of a second) can be done within a second; a person takes minutes. Each look is
/// one authorization, refused while the trust is missing (see [`pending_authorization`]), and the
/// looks double from here to every 5 s: starting at a quarter second rather than a second costs a
/// slow customer two more refused calls in the whole wait and saves a fast one up to 0.75 s.
const TRUST_FIRST_LOOK: Duration = Duration::from_millis(250);

/// The look while Atlas refuses the key of a role it has authorized (AWS IAM is eventually consistent).
const IAM_PROPAGATION_LOOK: Duration = Duration::from_secs(1);

/// Waiting for Atlas to be able to assume the IAM role, given `RoleAuthorized` as it was and as this
/// pass writes it, and how long this process has seen the trust awaited (`waited`, from the reconciler's
/// memory: the condition's time is kept to the second, too coarse for looks a quarter second apart).
pub fn awaiting_trust(
    previous: Option<&Condition>,
    written: Option<&DesiredCondition>,
    waited: Duration,
) -> Step {
    let (trust_missing, message) = match written {
        Some(written) => (!written.holds, written.stored_message()),
        None => (
            previous.is_some_and(|c| c.status == "False"),
            previous.map_or_else(
                || messages::awaiting_trust_default().to_string(),
                |c| c.message.clone(),
            ),
        ),
    };
    // With the role authorized (Atlas still refuses the key while IAM propagates) there is no wait
    // to grow with: it stays at a second rather than a quarter.
    let requeue = if trust_missing {
        patient_delay(waited, TRUST_FIRST_LOOK)
    } else {
        IAM_PROPAGATION_LOOK
    };
    Step::new(
        Outcome::progressing(reasons::AWAITING_TRUST_POLICY, message),
        requeue,
    )
}

/// The role Encryption at Rest uses now, as Atlas's role list tells: roles belong to one project, so
/// the role carrying the `ENCRYPTION_AT_REST` usage is the one this project's configuration uses (its
/// `featureId` is null in the official specification). `None` on legacy access keys.
pub fn role_in_force(roles: &[AwsIamRole]) -> Option<String> {
    roles
        .iter()
        .find(|r| r.used_for_encryption_at_rest())
        .map(|r| r.role_id.clone())
}

/// What the desired key assignment needs from Atlas.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyStep {
    /// Atlas already has it.
    InPlace,
    /// Send this PATCH. `rotation` is set when it replaces a key that was in force.
    Patch { patch: AwsKmsPatch, rotation: bool },
}

/// What a pass knows of the role Atlas's encryption settings use. `roleId` is write-only in Atlas: only
/// the role list's feature usages tell, so the list is read only when the answer can change a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleInForce<'a> {
    /// Not read this pass. A PATCH made anyway names our role, which makes it the one in force.
    Unread,
    /// Read from the role list: the role in force, if any.
    Read(Option<&'a str>),
}

/// How often a converged project's role list is read to see a role switched outside the operator:
/// the only way to see it (`roleId` is write-only), and a read per project that a resync would
/// otherwise not need. Every fresh look (a spec change, `kubectl annotate`, a restart) reads it too.
pub const ROLE_IN_FORCE_CHECK: Duration = Duration::from_secs(3600);

/// Whether this pass reads the role list to learn the role in force, when nothing else is to be
/// written: on every fresh look, and otherwise once Atlas last showed it [`ROLE_IN_FORCE_CHECK`] ago.
pub fn role_in_force_check_due(look: Look, known_ago: Option<Duration>) -> bool {
    look == Look::Fresh || known_ago.is_none_or(|ago| ago >= ROLE_IN_FORCE_CHECK)
}

/// Compares the desired key with Atlas's `awsKms`. `roleId` is write-only in Atlas, so whether the role
/// changed is judged against the role Atlas's role list shows Encryption at Rest using
/// (`assigned_role_id`, see [`role_in_force`]): none (legacy access keys) or another tool's role gets
/// `roleId`, also the first time the operator takes a configuration over.
pub fn key_step(
    key: &KeyRef,
    region: Region,
    role_id: &str,
    require_private_networking: bool,
    atlas: Option<&AwsKmsConfig>,
    in_force: RoleInForce<'_>,
) -> KeyStep {
    let Some(current) = atlas.filter(|c| c.is_enabled()) else {
        return KeyStep::Patch {
            patch: AwsKmsPatch::enable(key, region, role_id, require_private_networking),
            rotation: false,
        };
    };
    let mut patch = AwsKmsPatch::default();
    let current_key = current.key();
    let key_changed = !current_key.as_ref().is_some_and(|k| k.same_key(key));
    if key_changed {
        patch.customer_master_key_id = Some(key.to_string());
    }
    if current.region() != Some(region) {
        patch.region = Some(region);
    }
    if let RoleInForce::Read(in_force) = in_force
        && in_force != Some(role_id)
    {
        patch.role_id = Some(role_id.to_string());
    }
    if current.require_private_networking.unwrap_or(false) != require_private_networking {
        patch.require_private_networking = Some(require_private_networking);
    }
    if patch.is_empty() {
        return KeyStep::InPlace;
    }
    // A key change alone is a rotation; when the region changes too, Atlas needs the role with it. A
    // PATCH made without reading the role in force names our role, so ours is in force after it.
    if patch.region.is_some() || in_force == RoleInForce::Unread {
        patch.role_id = Some(role_id.to_string());
    }
    KeyStep::Patch {
        patch,
        rotation: key_changed && current_key.is_some(),
    }
}

/// `enabledForSearchNodes` to send: the spec's value when it names one and Atlas differs (Atlas reports
/// a missing value as off). A spec without `searchNodes` leaves Atlas's setting alone.
pub fn search_nodes_change(wanted: Option<&SearchNodesSpec>, atlas: Option<bool>) -> Option<bool> {
    let wanted = wanted?.enabled;
    (atlas.unwrap_or(false) != wanted).then_some(wanted)
}

/// `enabledForSearchNodes` to send when Atlas's settings were not read this pass (the PATCH carries
/// everything): the spec's value whenever it names one.
pub fn search_nodes_unread(wanted: Option<&SearchNodesSpec>) -> Option<bool> {
    wanted.map(|s| s.enabled)
}

/// Which Event a key PATCH raises: restoring the recorded key's settings changed outside the operator
/// is drift; a new key replacing one in force is a rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyChange {
    DriftCorrected,
    Rotated,
    Other,
}

pub fn key_change(
    previous: Option<&KeyStatus>,
    key: &KeyRef,
    atlas_had_settings: bool,
    rotation: bool,
) -> KeyChange {
    let recorded = previous.is_some_and(|k| k.is_key(key));
    match (recorded && atlas_had_settings, rotation) {
        (true, _) => KeyChange::DriftCorrected,
        (false, true) => KeyChange::Rotated,
        (false, false) => KeyChange::Other,
    }
}

/// Why Atlas refused a key PATCH, when a person or time (not a retry) must answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Atlas cannot assume the IAM role yet: expected for a while after the trust policy is created.
    IamNotReady,
    Rejected,
}

pub fn key_refusal(error: &AtlasError) -> Option<KeyRefusal> {
    if error.error_code().is_some_and(is_iam_propagation) {
        Some(KeyRefusal::IamNotReady)
    } else if matches!(error.status(), Some(400 | 404 | 409)) {
        Some(KeyRefusal::Rejected)
    } else {
        None
    }
}

/// Whether an authorization Atlas refused means the trust policy is not in place yet.
pub fn authorization_awaits_trust(error: &AtlasError) -> bool {
    error.error_code().is_some_and(is_iam_propagation) || error.status() == Some(400)
}

/// Atlas says the IAM side is not ready yet: expected for a while after the trust policy is created.
fn is_iam_propagation(code: &str) -> bool {
    matches!(
        code,
        "CANNOT_ASSUME_ROLE" | "CLOUD_PROVIDER_ACCESS_ROLE_NOT_AUTHORIZED" | "INVALID_AWS_CREDENTIALS"
    )
}

pub fn key_rejected(error: &AtlasError) -> (DesiredCondition, Step) {
    let message = messages::key_refused(error);
    let key_valid = condition(reasons::KEY_VALID)
        .false_because(reasons::KEY_REJECTED)
        .saying(message.clone());
    (key_valid, Step::stalled(reasons::KEY_REJECTED, message))
}

/// The key in force and the keys it replaced, once `key` is in force in Atlas.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyHistory {
    pub key: KeyStatus,
    pub previous_keys: Vec<PreviousKeyStatus>,
}

impl KeyHistory {
    /// Whether every retired key is known to be in no snapshot.
    pub fn all_retired_safe(&self) -> bool {
        self.previous_keys.iter().all(|p| p.safe_to_delete)
    }
}

/// The key history once `key` is in force: a key other than the recorded one moves that one to the
/// history, and a key that comes back from the history is in force again, not retired.
pub fn key_history(
    previous: &ProjectEncryptionStatus,
    key: &KeyRef,
    region: Region,
    multi_region: bool,
    now: Timestamp,
) -> KeyHistory {
    let mut previous_keys = previous.previous_keys.clone();
    let mut in_force = match &previous.key {
        Some(k) if k.is_key(key) => k.clone(),
        recorded => {
            if let Some(retired) = recorded {
                previous_keys.push(retired_key(&retired.customer_master_key_id, now));
            }
            previous_keys.retain(|p| !p.is_key(key));
            KeyStatus {
                customer_master_key_id: key.to_string(),
                region: region.aws_name().to_string(),
                since: Time(now),
                rotation_due_at: None,
                valid: None,
                multi_region: None,
                material_since: None,
                age_source: None,
            }
        }
    };
    in_force.multi_region = Some(multi_region);
    in_force.region = region.aws_name().to_string();
    KeyHistory {
        key: in_force,
        previous_keys,
    }
}

pub fn retired_key(key: &str, now: Timestamp) -> PreviousKeyStatus {
    PreviousKeyStatus {
        customer_master_key_id: key.to_string(),
        replaced_at: Time(now),
        snapshots_using_key: 0,
        safe_to_delete: false,
    }
}

/// The retired keys with the snapshots that still use each, when this pass read the snapshots; as
/// recorded otherwise.
pub fn retired_keys_counted(
    previous_keys: &[PreviousKeyStatus],
    snapshot_key_ids: Option<&[String]>,
) -> Vec<PreviousKeyStatus> {
    let mut counted = previous_keys.to_vec();
    if let Some(key_ids) = snapshot_key_ids {
        for previous in counted.iter_mut() {
            let id = previous.key_id();
            let count = key_ids.iter().filter(|k| k.eq_ignore_ascii_case(&id)).count();
            previous.snapshots_using_key = count as u32;
            previous.safe_to_delete = count == 0;
        }
    }
    counted
}

/// The retired keys to look up in KMS: those snapshots still need. Keys safe to delete cost no call.
pub fn retired_keys_needed(counted: &[PreviousKeyStatus]) -> Vec<PreviousKeyStatus> {
    counted
        .iter()
        .filter(|p| !p.safe_to_delete && p.snapshots_using_key > 0)
        .cloned()
        .collect()
}

/// A retired key that snapshots need and that KMS cannot use now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetiredKeyAtRisk {
    pub key: String,
    pub snapshots: u32,
    pub pending_deletion: bool,
}

/// `PreviousKeyAtRisk` from the needed retired keys as KMS described them, and whether it newly holds
/// (or its reason changed: the fix did), which a Warning Event tells once. Any other answer of KMS (the
/// key usable, or not readable now) puts no key at risk.
pub fn previous_key_at_risk(
    seen: &[(PreviousKeyStatus, Result<KeyReport, PreflightFailure>)],
    previous: &ProjectEncryptionStatus,
) -> (DesiredCondition, bool) {
    let at_risk: Vec<RetiredKeyAtRisk> = seen
        .iter()
        .filter_map(|(retired, described)| {
            let pending_deletion = match described {
                Err(PreflightFailure::KeyDisabled { .. }) => false,
                Err(PreflightFailure::KeyPendingDeletion { .. }) => true,
                _ => return None,
            };
            Some(RetiredKeyAtRisk {
                key: retired.customer_master_key_id.clone(),
                snapshots: retired.snapshots_using_key,
                pending_deletion,
            })
        })
        .collect();
    let risk = condition(reasons::PREVIOUS_KEY_AT_RISK);
    if at_risk.is_empty() {
        let usable = risk
            .false_because(reasons::RETIRED_KEYS_USABLE)
            .saying(messages::retired_keys_usable(seen.len()));
        return (usable, false);
    }
    let reason = if at_risk.iter().any(|k| k.pending_deletion) {
        reasons::RETIRED_KEY_PENDING_DELETION
    } else {
        reasons::RETIRED_KEY_DISABLED
    };
    let newly = status::find(&previous.conditions, reasons::PREVIOUS_KEY_AT_RISK)
        .is_none_or(|c| c.status != "True" || c.reason != reason);
    let raised = risk
        .true_because(reason)
        .saying(messages::retired_keys_at_risk(&at_risk));
    (raised, newly)
}

/// `clustersUsingKey` without reading Atlas: the managed clusters as their ClusterEncryptions last saw
/// them (name, uses the key), plus the unmanaged names of the last list. Sorted, so it is stable.
pub fn clusters_using_key(previous: &[String], managed: &[(String, bool)]) -> Vec<String> {
    let mut using: Vec<String> = previous
        .iter()
        .filter(|name| !managed.iter().any(|(m, _)| m == *name))
        .cloned()
        .chain(managed.iter().filter(|(_, uses)| *uses).map(|(m, _)| m.clone()))
        .collect();
    using.sort();
    using.dedup();
    using
}

/// When the key in force since `since` is due for rotation, and whether it is by `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub due_at: Timestamp,
    pub due: bool,
}

pub fn rotation(max_key_age: &str, since: Timestamp, now: Timestamp) -> Rotation {
    let max_age = crate::duration::parse_duration(max_key_age).unwrap_or(Duration::from_secs(90 * 86400));
    let due_at = since
        .checked_add(SignedDuration::from_secs(max_age.as_secs() as i64))
        .unwrap_or(Timestamp::MAX);
    Rotation {
        due_at,
        due: now >= due_at,
    }
}

/// `KeyRotationDue` for `rotation`, and whether it newly became due (a Warning Event says so once).
pub fn rotation_condition(
    rotation: Rotation,
    max_key_age: &str,
    previous: &ProjectEncryptionStatus,
) -> (DesiredCondition, bool) {
    let due = condition(reasons::KEY_ROTATION_DUE);
    if !rotation.due {
        return (due.false_because(reasons::WITHIN_MAX_AGE), false);
    }
    let newly = !status::is_true(&previous.conditions, reasons::KEY_ROTATION_DUE);
    (
        due.true_because(reasons::ROTATION_DUE)
            .saying(messages::rotation_due(max_key_age)),
        newly,
    )
}

/// How old the key material in force is, and where that age comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyAge {
    pub material_since: Timestamp,
    pub source: KeyAgeSource,
    /// KMS rotates the material by itself.
    pub automatic: Option<AutomaticRotation>,
    /// Why KMS could not tell the age (it is then counted from when the operator first saw the key).
    pub unread: Option<MaterialUnread>,
}

/// The key's age from KMS: its last rotation, else its creation; when KMS could not be asked, from
/// `first_seen` (the operator's own record), saying why.
pub fn key_age(
    report: Option<&KeyReport>,
    material: &Result<KeyMaterial, MaterialUnread>,
    first_seen: Timestamp,
) -> KeyAge {
    let first_seen_because = |unread: Option<MaterialUnread>| KeyAge {
        material_since: first_seen,
        source: KeyAgeSource::FirstSeen,
        automatic: None,
        unread,
    };
    let material = match material {
        Ok(material) => material,
        Err(unread) => return first_seen_because(Some(unread.clone())),
    };
    let created = report.and_then(|r| r.creation_date);
    let (since, source) = match (material.last_rotation, created) {
        (Some(rotated), _) => (rotated, KeyAgeSource::KmsRotation),
        (None, Some(created)) => (created, KeyAgeSource::KmsCreation),
        (None, None) => return first_seen_because(None),
    };
    match Timestamp::from_second(since.timestamp()) {
        Ok(material_since) => KeyAge {
            material_since,
            source,
            automatic: material.automatic,
            unread: None,
        },
        Err(_) => first_seen_because(None),
    }
}

/// When the key is due for rotation: KMS's next automatic rotation (or the material's age plus the
/// rotation period) while KMS rotates it, never due then; else `rotation.maxKeyAge` after the material.
pub fn rotation_of(max_key_age: &str, age: &KeyAge, now: Timestamp) -> Rotation {
    let Some(automatic) = age.automatic else {
        return rotation(max_key_age, age.material_since, now);
    };
    let period = SignedDuration::from_hours(i64::from(automatic.period_days) * 24);
    let next = automatic
        .next
        .and_then(|next| Timestamp::from_second(next.timestamp()).ok());
    let due_at = next.unwrap_or_else(|| age.material_since.checked_add(period).unwrap_or(Timestamp::MAX));
    Rotation { due_at, due: false }
}

/// `KeyRotationDue` for the key's age, and whether it newly became due: while KMS rotates the material,
/// False (`RotatedByKms`) without nagging; a fallback age says it is one.
pub fn key_age_condition(
    rotation: Rotation,
    age: &KeyAge,
    max_key_age: &str,
    previous: &ProjectEncryptionStatus,
) -> (DesiredCondition, bool) {
    if let Some(automatic) = age.automatic {
        let due = condition(reasons::KEY_ROTATION_DUE)
            .false_because(reasons::ROTATED_BY_KMS)
            .saying(messages::rotated_by_kms(automatic.period_days, rotation.due_at));
        return (due, false);
    }
    let (due, newly) = rotation_condition(rotation, max_key_age, previous);
    match &age.unread {
        Some(unread) => {
            let message = messages::age_from_first_seen(&due.message, unread);
            (due.saying(message), newly)
        }
        None => (due, newly),
    }
}

/// Atlas's verdict on the key in force: `KeyValid`, `Degraded` (when known) and how the pass ends.
pub struct Validity {
    pub key_valid: DesiredCondition,
    pub degraded: Option<DesiredCondition>,
    pub step: Step,
}

pub fn validity(
    valid: Option<bool>,
    key: &KeyRef,
    role: &AwsIamRole,
    clusters_using_key: usize,
    resync: Duration,
) -> Validity {
    let key_valid = condition(reasons::KEY_VALID);
    let degraded = condition(reasons::DEGRADED);
    match valid {
        Some(true) => Validity {
            key_valid: key_valid
                .true_because(reasons::KEY_ASSIGNED)
                .saying(messages::key_valid()),
            degraded: Some(degraded.false_because(reasons::RECONCILED)),
            step: Step::new(
                Outcome::ready(reasons::RECONCILED, messages::reconciled(key, clusters_using_key)),
                resync,
            ),
        },
        // The Stalled outcome raises the Warning Event as the object enters it.
        Some(false) => {
            let message = messages::key_invalid(key, role);
            Validity {
                key_valid: key_valid
                    .false_because(reasons::KEY_INVALID)
                    .saying(message.clone()),
                degraded: Some(
                    degraded
                        .true_because(reasons::KEY_INVALID)
                        .saying(message.clone()),
                ),
                step: Step::stalled(reasons::KEY_INVALID, message),
            }
        }
        None => Validity {
            key_valid: key_valid
                .false_because(reasons::AWAITING_VALIDATION)
                .saying(messages::awaiting_validation_condition()),
            degraded: None,
            step: Step::new(
                Outcome::progressing(reasons::AWAITING_VALIDATION, messages::awaiting_validation()),
                Duration::from_secs(15),
            ),
        },
    }
}

/// Encryption is off in Atlas: the project is done turning it off.
pub fn encryption_off(resync: Duration) -> Step {
    Step::new(
        Outcome::ready(reasons::ENCRYPTION_DISABLED, messages::encryption_off()),
        resync,
    )
}

/// Atlas refused to turn encryption off because a cluster turned on since the read: look again soon.
pub fn disable_raced(error: &AtlasError) -> Option<Step> {
    error.is_error_code("CANNOT_DISABLE_ENCRYPTION_AT_REST").then(|| {
        Step::new(
            Outcome::progressing(
                reasons::DISABLE_BLOCKED_BY_CLUSTERS,
                messages::disable_refused(error),
            ),
            Duration::from_secs(15),
        )
    })
}

/// Clusters still use the key. Those managed by a ClusterEncryption that is turning off will clear by
/// themselves (Progressing, looked at again patiently since the wait began); any other needs a person
/// (Stalled), and is named.
pub fn blocked_by_clusters(
    using: &[String],
    turning_off: &[String],
    previous: &ProjectEncryptionStatus,
    now: Timestamp,
) -> Step {
    let unmanaged: Vec<&str> = using
        .iter()
        .filter(|name| !turning_off.contains(name))
        .map(String::as_str)
        .collect();
    if unmanaged.is_empty() {
        let since = status::find(&previous.conditions, reasons::READY)
            .filter(|c| c.reason == reasons::DISABLE_BLOCKED_BY_CLUSTERS)
            .map(|c| c.last_transition_time.0);
        return Step::new(
            Outcome::progressing(
                reasons::DISABLE_BLOCKED_BY_CLUSTERS,
                messages::waiting_for_clusters(using),
            ),
            patient_delay(waited_since(since, now), Duration::from_secs(5)).min(Duration::from_secs(30)),
        );
    }
    Step::new(
        Outcome::stalled(
            reasons::DISABLE_BLOCKED_BY_CLUSTERS,
            messages::unmanaged_clusters_block(&unmanaged),
        ),
        Duration::from_secs(30),
    )
}

/// Deletion could not turn encryption off: the step says how to let go anyway.
pub fn while_deleting(mut step: Step) -> Step {
    if let Outcome::Progressing { message, .. } | Outcome::Stalled { message, .. } = &mut step.outcome {
        message.insert_str(0, messages::DELETING);
    }
    step
}

/// Deletion cannot reach the Atlas project: a refusal a person must act on says how to let go anyway.
pub fn stalled_on_access_while_deleting(error: Error) -> Result<Step> {
    let mut step = stalled_on_access(error)?;
    if let Outcome::Stalled { message, .. } = &mut step.outcome {
        message.push_str(&messages::release_suffix());
    }
    Ok(step)
}

/// Whether the finalizer must be in place before this pass: only when deleting the object would owe
/// Atlas a write (see [`release_at_once`]). `Retain` (the default) leaves Atlas as it is, so its objects
/// carry none: deleting one needs nothing from the operator (it goes at once, even with the operator
/// stopped), and the first pass of a new project has one Kubernetes write less before its first Atlas
/// call. A project switched to `Disable` gets it on the pass that follows, before any write.
pub fn finalizer_needed(
    spec: &crate::crd::ProjectEncryptionSpec,
    previous: Option<&ProjectEncryptionStatus>,
) -> bool {
    !release_at_once(spec, previous)
}

/// Whether deletion can let go without turning encryption off: `Retain`, an observed object (which
/// never writes to Atlas, not even on its way out), or nothing was ever on.
pub fn release_at_once(
    spec: &crate::crd::ProjectEncryptionSpec,
    previous: Option<&ProjectEncryptionStatus>,
) -> bool {
    spec.deletion_policy == crate::crd::DeletionPolicy::Retain
        || spec.management_policy == ManagementPolicy::Observe
        || !spec.aws_kms.enabled && previous.is_none_or(|s| s.key.is_none() && s.project_id.is_none())
}

/// What the management policy makes of a pass's outcome: under `Observe`, the `Observing` condition,
/// and writes planned end the pass as `ChangesPlanned` until a person switches to `Manage`; a pass that
/// planned nothing keeps its own outcome (Atlas already matches, or the pass waits on something a
/// write would not change). Under `Manage`, no `Observing` condition and the outcome as it is.
pub fn under_policy(
    policy: ManagementPolicy,
    planned: &[PlannedChange],
    step: Step,
    resync: Duration,
) -> (Option<DesiredCondition>, Step) {
    if policy == ManagementPolicy::Manage {
        return (None, step);
    }
    let condition = condition(reasons::OBSERVING);
    if planned.is_empty() {
        let observing = condition
            .true_because(reasons::NO_CHANGES_PLANNED)
            .saying(observing::nothing_planned());
        return (Some(observing), step);
    }
    let observing = condition
        .true_because(reasons::CHANGES_PLANNED)
        .saying(observing::changes_planned(planned));
    (Some(observing), observing::changes_planned_step(planned, resync))
}
mod key_policy;
mod private_endpoints;
pub use key_policy::*;
pub use private_endpoints::*;

#[cfg(test)]
mod tests;
