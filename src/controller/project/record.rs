//! The status a ProjectEncryption pass ends with, computed from the status it started from and what
//! the pass found. Nothing here is read back to decide anything.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::decide::{self, KeyAge, KeyHistory, Rotation};
use crate::atlas::{AwsIamRole, Group};
use crate::crd::{AtlasRoleStatus, KmsPrivateEndpointStatus, PlannedChange, ProjectEncryptionStatus};
use crate::status::{DesiredCondition, reasons};

/// What one pass found and did. Each field stays `None` when the pass did not get that far; the
/// status it started from then stands for that part.
#[derive(Default)]
pub struct Findings {
    pub group: Option<Group>,
    /// The role the pass used, created or tried to authorize.
    pub role: Option<AwsIamRole>,
    /// When the pass set out to create a role (written to status before the creation, and kept).
    pub role_creation_requested_at: Option<Timestamp>,
    pub multi_region: Option<DesiredCondition>,
    pub role_authorized: Option<DesiredCondition>,
    pub key_valid: Option<DesiredCondition>,
    pub degraded: Option<DesiredCondition>,
    pub rotation_due: Option<DesiredCondition>,
    /// Whether a retired key that snapshots need is unusable in KMS; only while the preflight is on.
    pub previous_key_at_risk: Option<DesiredCondition>,
    pub key: Option<KeyHistory>,
    /// The key material's age and where it comes from, once known.
    pub key_age: Option<KeyAge>,
    /// Atlas's verdict on the key in force, once read after its assignment.
    pub key_valid_in_atlas: Option<Option<bool>>,
    pub rotation: Option<Rotation>,
    pub clusters_using_key: Option<Vec<String>>,
    /// The key ids of the project's snapshots, when they were counted.
    pub snapshot_key_ids: Option<Vec<String>>,
    pub disabled: Option<Disabled>,
    /// Atlas's `enabledForSearchNodes`, once read after the key's assignment.
    pub search_nodes_encrypted: Option<bool>,
    /// Atlas's outbound control-plane CIDRs in the key's region, once the operator has read them.
    pub control_plane_cidrs: Option<Vec<String>>,
    /// The Atlas writes planned instead of made (`managementPolicy: Observe`), in the order decided.
    pub planned: Vec<PlannedChange>,
    /// `Observing` as the management policy makes it, once the pass has an outcome; `None` when
    /// managing (the condition goes).
    pub observing: Option<Option<DesiredCondition>>,
    /// Atlas's private endpoints to AWS KMS, once read (and written) this pass.
    pub private_endpoints: Option<Vec<KmsPrivateEndpointStatus>>,
}

/// Encryption found off, or turned off by this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disabled {
    /// Off in Atlas: the key retires, and the conditions about it go.
    AlreadyOff,
    /// This pass turned it off: the key retires; the next pass finds it off.
    TurnedOff,
}

/// The domain conditions a key in force carries, removed once encryption is off.
const KEY_CONDITIONS: [&str; 4] = [
    reasons::KEY_VALID,
    reasons::KEY_ROTATION_DUE,
    reasons::DEGRADED,
    reasons::MULTI_REGION_KEY,
];

/// The new status: `previous` with what the pass found. The kstatus trio (`Ready`, `Reconciling`,
/// `Stalled`) is the outcome's, written by `finish`.
pub fn status(
    previous: &ProjectEncryptionStatus,
    found: &Findings,
    generation: Option<i64>,
    now: Timestamp,
) -> ProjectEncryptionStatus {
    let mut status = previous.clone();
    if let Some(group) = &found.group {
        // A project named by id is looked up only with budget to spare (see `Pass::project`): an
        // unknown name keeps the one recorded for the same project.
        status.project_name = match group.name.as_str() {
            "" if previous.project_id.as_deref() == Some(group.id.as_str()) => previous.project_name.clone(),
            "" => None,
            name => Some(name.to_string()),
        };
        status.project_id = Some(group.id.clone());
    }
    if let Some(role) = &found.role {
        status.role = Some(role_status(role));
    }
    if let Some(requested_at) = found.role_creation_requested_at {
        status.role_creation_requested_at = Some(Time(requested_at));
    }
    record_key(&mut status, found);
    if let Some(using) = &found.clusters_using_key {
        status.clusters_using_key = using.clone();
    }
    if let Some(cidrs) = &found.control_plane_cidrs {
        status.control_plane_cidrs = cidrs.clone();
    }
    if let Some(endpoints) = &found.private_endpoints {
        status.private_endpoints = endpoints.clone();
    }
    if let Some(encrypted) = found.search_nodes_encrypted {
        status.search_nodes_encrypted = Some(encrypted);
    }
    if let Some(disabled) = found.disabled {
        // Without a key, search nodes encrypt with nothing of the customer's, whatever Atlas's flag says.
        status.search_nodes_encrypted = None;
        status.control_plane_cidrs.clear();
        if let Some(retired) = status.key.take() {
            let retired = decide::retired_key(&retired.customer_master_key_id, now);
            status.previous_keys.push(retired);
        }
        if disabled == Disabled::AlreadyOff {
            status.clusters_using_key.clear();
            status
                .conditions
                .retain(|c| !KEY_CONDITIONS.contains(&c.type_.as_str()));
        }
    }
    if let Some(observing) = &found.observing {
        status.planned_changes = found.planned.clone();
        match observing {
            Some(observing) => {
                observing.apply(&mut status.conditions, generation, now);
            }
            None => crate::status::remove_condition(&mut status.conditions, reasons::OBSERVING),
        }
    }
    // In the order a first pass adds them, so a reader sees them as before.
    let conditions = [
        &found.multi_region,
        &found.role_authorized,
        &found.rotation_due,
        &found.key_valid,
        &found.degraded,
        &found.previous_key_at_risk,
    ];
    for desired in conditions.into_iter().flatten() {
        desired.apply(&mut status.conditions, generation, now);
    }
    status
}

fn record_key(status: &mut ProjectEncryptionStatus, found: &Findings) {
    let Some(history) = &found.key else {
        return;
    };
    let mut key = history.key.clone();
    if let Some(valid) = found.key_valid_in_atlas {
        key.valid = valid;
    }
    if let Some(rotation) = found.rotation {
        key.rotation_due_at = Some(Time(rotation.due_at));
    }
    if let Some(age) = &found.key_age {
        key.material_since = Some(Time(age.material_since));
        key.age_source = Some(age.source);
    }
    status.key = Some(key);
    status.previous_keys =
        decide::retired_keys_counted(&history.previous_keys, found.snapshot_key_ids.as_deref());
}

fn role_status(role: &AwsIamRole) -> AtlasRoleStatus {
    AtlasRoleStatus {
        role_id: role.role_id.clone(),
        atlas_aws_account_arn: role.atlas_aws_account_arn.clone(),
        external_id: role.atlas_assumed_role_external_id.clone(),
        iam_role_arn: role.iam_assumed_role_arn.clone(),
        authorized: role.is_authorized(),
        authorized_at: role
            .authorized_date
            .and_then(|d| Timestamp::from_second(d.timestamp()).ok())
            .map(Time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atlas::Group;

    #[test]
    fn a_project_name_not_looked_up_keeps_the_one_recorded_for_the_same_project() {
        let previous = ProjectEncryptionStatus {
            project_id: Some("p1".into()),
            project_name: Some("payments".into()),
            ..Default::default()
        };
        let name_after = |id: &str, name: &str| {
            let found = Findings {
                group: Some(Group {
                    id: id.into(),
                    name: name.into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let now = Timestamp::from_second(1_700_000_000).unwrap();
            status(&previous, &found, Some(1), now).project_name
        };
        assert_eq!(name_after("p1", "").as_deref(), Some("payments"));
        assert_eq!(name_after("p2", ""), None, "another project's name is not kept");
        assert_eq!(name_after("p1", "renamed").as_deref(), Some("renamed"));
    }
}
