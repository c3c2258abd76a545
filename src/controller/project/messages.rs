//! The words of the ProjectEncryption reconciler: every message its conditions, outcomes and Events
//! carry. Decisions pick a message; none is built in control flow.

use crate::atlas::{AwsIamRole, AwsKmsPatch, EarPrivateEndpoint, Group};
use crate::aws::{KeyRef, RoleArn};
use crate::controller::Error;

pub fn invalid_key_or_region() -> &'static str {
    "spec.awsKms.customerMasterKeyId or region is not valid"
}

/// `name (id)`, or the id alone while the name is not known.
fn project_label(group: &Group) -> String {
    match group.name.as_str() {
        "" => group.id.clone(),
        name => format!("{name} ({})", group.id),
    }
}

pub fn duplicate_project(group: &Group, owner: &str) -> String {
    format!(
        "Atlas project {} is already managed by ProjectEncryption {owner}; delete this one or point it at another project",
        project_label(group)
    )
}

pub fn credentials_refused(error: &Error) -> String {
    format!(
        "Atlas refused the credentials: {error}. Check the Secret holds a valid key with Project Owner on this project"
    )
}

pub fn no_access_to_project(error: &Error) -> String {
    format!(
        "the Atlas credentials have no access to this project: {error}. Grant the key Project Owner on it"
    )
}

pub fn project_not_found(error: &Error) -> String {
    format!("the Atlas project was not found or the key cannot see it: {error}")
}

pub fn multi_region(multi_region: bool) -> &'static str {
    if multi_region {
        "the key is a multi-Region key"
    } else {
        "the key is a single-Region key; a multi-Region key keeps data readable through a regional AWS outage"
    }
}

pub fn role_switch_not_acknowledged() -> &'static str {
    "the project uses deprecated access-key credentials for AWS KMS; switching it to a role cannot be undone in Atlas. Set spec.awsKms.acknowledgeIrreversibleSwitchToRole: true to proceed"
}

pub fn role_not_found(role_id: &str) -> String {
    format!(
        "Atlas has no cloud provider access role {role_id} in this project: fix spec.awsKms.atlasRoleId or use roleArn to let the operator create one"
    )
}

pub fn role_not_authorized(role_id: &str) -> String {
    format!(
        "Atlas role {role_id} is not authorized: set spec.awsKms.roleArn to the IAM role it should assume"
    )
}

pub fn role_created(role: &AwsIamRole) -> String {
    format!(
        "created Atlas cloud provider access role {}; its IAM role must trust {} with external ID {}",
        role.role_id,
        role.atlas_aws_account_arn.as_deref().unwrap_or("?"),
        role.atlas_assumed_role_external_id.as_deref().unwrap_or("?"),
    )
}

pub fn role_authorized_event(role: &AwsIamRole, role_arn: &RoleArn) -> String {
    format!("Atlas role {} is authorized to assume {role_arn}", role.role_id)
}

pub fn atlas_assumes(role: &AwsIamRole) -> String {
    format!(
        "Atlas assumes {}",
        role.iam_assumed_role_arn.as_deref().unwrap_or("the IAM role")
    )
}

pub fn awaiting_trust_default() -> &'static str {
    "waiting for the IAM role to trust Atlas"
}

/// What the user must put on their IAM role, in the words `kubectl describe` shows.
pub fn trust_instructions(role: &AwsIamRole, role_arn: &RoleArn, key: &KeyRef) -> String {
    let principal = role
        .atlas_aws_account_arn
        .as_deref()
        .unwrap_or("<Atlas AWS account ARN>");
    let external_id = role
        .atlas_assumed_role_external_id
        .as_deref()
        .unwrap_or("<external ID>");
    let key_resource = match key {
        KeyRef::Arn(arn) => arn.to_string(),
        KeyRef::Id(id) => format!("arn:aws:kms:*:{}:key/{id}", role_arn.account),
    };
    format!(
        "Atlas cannot assume {role_arn} yet. Give that IAM role this trust policy: {} and this permission policy: {} (for example: aws iam update-assume-role-policy --role-name {} --policy-document file://trust.json). The operator retries by itself.",
        super::policy::trust_policy(principal, external_id),
        super::policy::permission_policy(&key_resource),
        role_arn.role_name(),
    )
}

pub fn drift_corrected(patch: &AwsKmsPatch) -> String {
    format!(
        "Atlas's AWS KMS settings differed from the spec (changed outside the operator); restored {}",
        serde_json::to_string(patch).unwrap_or_default()
    )
}

pub fn key_rotated(key: &KeyRef) -> String {
    format!(
        "customer master key rotated to {key}; the previous key must stay usable while snapshots still use it"
    )
}

pub fn key_refused(error: &crate::atlas::AtlasError) -> String {
    format!("Atlas refused the key: {error}")
}

pub fn rotation_due_event(key: &KeyRef, max_key_age: &str) -> String {
    format!(
        "key {key} is older than rotation.maxKeyAge ({max_key_age}): create a new KMS key and set spec.awsKms.customerMasterKeyId"
    )
}

pub fn rotation_due(max_key_age: &str) -> String {
    format!("the key is older than {max_key_age}: rotate it by setting a new customerMasterKeyId")
}

pub fn rotated_by_kms(period_days: u32, next: k8s_openapi::jiff::Timestamp) -> String {
    format!(
        "KMS rotates the key material automatically every {period_days} days (next rotation by {next}); rotation.maxKeyAge does not apply"
    )
}

/// The `KeyRotationDue` message when the key's age is counted from when the operator first saw it.
pub fn age_from_first_seen(message: &str, unread: &crate::kms::MaterialUnread) -> String {
    let why = match unread {
        crate::kms::MaterialUnread::PreflightOff => {
            "spec.kmsPreflight is off, so KMS is not asked".to_string()
        }
        crate::kms::MaterialUnread::Refused { call, code } => format!(
            "KMS refused {call} ({code}): allow kms:GetKeyRotationStatus and kms:ListKeyRotations for the operator's credentials to count from the key's creation or last rotation"
        ),
    };
    let sep = if message.is_empty() { "" } else { "; " };
    format!(
        "{message}{sep}the key's age counts from when the operator first saw it (status.key.ageSource FirstSeen) because {why}"
    )
}

pub fn retired_keys_usable(checked: usize) -> String {
    match checked {
        0 => "no retired key is needed by a snapshot".to_string(),
        n => format!("the {n} retired key(s) that snapshots still need are usable in KMS"),
    }
}

/// Each retired key at risk, with the snapshots that need it and the command that makes it usable again.
pub fn retired_keys_at_risk(at_risk: &[super::decide::RetiredKeyAtRisk]) -> String {
    let each: Vec<String> = at_risk
        .iter()
        .map(|k| {
            let (state, fix) = if k.pending_deletion {
                (
                    "is scheduled for deletion in KMS",
                    format!(
                        "aws kms cancel-key-deletion --key-id {key} && aws kms enable-key --key-id {key}",
                        key = k.key
                    ),
                )
            } else {
                (
                    "is disabled in KMS",
                    format!("aws kms enable-key --key-id {}", k.key),
                )
            };
            format!(
                "retired key {} {state} while {} snapshot(s) still need it to be restored: {fix}",
                k.key, k.snapshots
            )
        })
        .collect();
    each.join("; ")
}

pub fn key_valid() -> &'static str {
    "Atlas can encrypt and decrypt with the key"
}

pub fn reconciled(key: &KeyRef, clusters: usize) -> String {
    format!("Encryption at Rest uses key {key}; {clusters} cluster(s) use it")
}

pub fn key_invalid(key: &KeyRef, role: &AwsIamRole) -> String {
    format!(
        "Atlas reports key {key} invalid: check the key is enabled and not pending deletion, the IAM role {} still allows kms:Encrypt, kms:Decrypt and kms:DescribeKey, and any aws:SourceIp condition allows Atlas's control-plane IPs",
        role.iam_assumed_role_arn.as_deref().unwrap_or("?")
    )
}

pub fn awaiting_validation_condition() -> &'static str {
    "Atlas has not reported the key valid yet"
}

pub fn awaiting_validation() -> &'static str {
    "waiting for Atlas to validate the key"
}

pub fn encryption_off() -> &'static str {
    "Encryption at Rest with AWS KMS is off for this project"
}

pub fn encryption_turned_off() -> &'static str {
    "Encryption at Rest with AWS KMS turned off for the project"
}

pub fn disable_refused(error: &crate::atlas::AtlasError) -> String {
    format!("Atlas refused to disable: {error}")
}

pub fn waiting_for_clusters(using: &[String]) -> String {
    format!(
        "waiting for clusters {} to turn encryption off before the project can",
        using.join(", ")
    )
}

pub fn unmanaged_clusters_block(names: &[&str]) -> String {
    format!(
        "clusters {} still use the key, so Atlas cannot turn project encryption off: set a ClusterEncryption with enabled: false for each, or set encryptionAtRestProvider NONE on them in Atlas",
        names.join(", ")
    )
}

/// How to let go of a ProjectEncryption being deleted whose encryption cannot be turned off.
pub fn release() -> String {
    format!(
        "to delete without disabling, set spec.deletionPolicy: Retain, or remove the finalizer {}",
        crate::crd::FINALIZER
    )
}

pub fn release_suffix() -> String {
    format!("; {}", release())
}

pub fn cannot_disable(problem: &impl std::fmt::Display) -> String {
    format!("cannot disable encryption: {problem}; {}", release())
}

pub const DELETING: &str = "deleting: ";

/// An endpoint as a reader finds it: its region (AWS spelling) and Atlas's state.
fn endpoint_where(endpoint: &EarPrivateEndpoint) -> String {
    let region = endpoint.region().map_or_else(
        || endpoint.region_name.clone().unwrap_or_default(),
        |r| r.aws_name().to_string(),
    );
    format!("{region} ({})", endpoint.status.as_str())
}

fn endpoints_where(endpoints: &[&EarPrivateEndpoint]) -> String {
    endpoints
        .iter()
        .map(|e| endpoint_where(e))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn private_endpoints_pending(waiting: &[&EarPrivateEndpoint]) -> String {
    format!(
        "waiting for Atlas's private endpoints to AWS KMS to become active: {}",
        endpoints_where(waiting)
    )
}

pub fn private_endpoints_deleting(waiting: &[&EarPrivateEndpoint]) -> String {
    format!(
        "deleting Atlas's private endpoints to AWS KMS before private networking or encryption is turned off: {}",
        endpoints_where(waiting)
    )
}

pub fn private_endpoint_failed(endpoint: &EarPrivateEndpoint) -> String {
    format!(
        "Atlas's private endpoint {} to AWS KMS in {} failed: {}. Fix the cause, then delete the endpoint in Atlas; the operator creates a new one",
        endpoint.id,
        endpoint_where(endpoint),
        endpoint
            .error_message
            .as_deref()
            .unwrap_or("Atlas gave no reason")
    )
}

pub fn private_endpoint_created(endpoint: &EarPrivateEndpoint) -> String {
    format!(
        "asked Atlas for private endpoint {} to AWS KMS in {}",
        endpoint.id,
        endpoint_where(endpoint)
    )
}

pub fn private_endpoint_deleted(endpoint: &EarPrivateEndpoint) -> String {
    format!(
        "asked Atlas to delete private endpoint {} to AWS KMS in {}",
        endpoint.id,
        endpoint_where(endpoint)
    )
}

pub fn with_key_policy_statement(message: &str, statement: &serde_json::Value) -> String {
    format!(
        "{message}. If the key policy restricts aws:SourceIp, it needs this statement allowing Atlas's control-plane CIDRs of the key's region: {statement}"
    )
}

pub fn control_plane_changed(region: crate::aws::Region, before: &[String], now: &[String]) -> String {
    format!(
        "Atlas's control-plane CIDRs in {region} changed from [{}] to [{}]: a key policy that restricts aws:SourceIp must allow the new ones (status.controlPlaneCidrs)",
        before.join(", "),
        now.join(", ")
    )
}
