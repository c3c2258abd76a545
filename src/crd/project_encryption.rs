// NB: each `printcolumn(..)` repeats `type_ = ..` by design; clippy takes the repeats for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema, core::Rule};
use serde::{Deserialize, Serialize};

use super::{
    DeletionPolicy, LocalObjectReference, ManagementPolicy, PlannedChange, cel_region_list, conditions_schema,
};

/// Turns on and runs MongoDB Atlas Encryption at Rest for one Atlas project with a customer-managed
/// AWS KMS key: creates and authorizes the Atlas cloud-provider-access role, assigns the key, tracks
/// its validity and rotation, and turns encryption off safely when asked.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "encryption.atlasops.dev",
    version = "v1alpha1",
    kind = "ProjectEncryption",
    namespaced,
    status = "ProjectEncryptionStatus",
    shortname = "pe",
    category = "atlas",
    category = "encryption",
    doc = "Encryption at Rest with a customer-managed AWS KMS key for one MongoDB Atlas project.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Project", type_ = "string", json_path = ".status.projectName"),
    printcolumn(
        name = "Role",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"RoleAuthorized\")].reason"
    ),
    printcolumn(name = "Key Valid", type_ = "string", json_path = ".status.key.valid"),
    printcolumn(name = "Key Since", type_ = "date", json_path = ".status.key.since"),
    printcolumn(
        name = "Rotation Due",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"KeyRotationDue\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Key",
        type_ = "string",
        json_path = ".spec.awsKms.customerMasterKeyId",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.projectId) != has(self.projectName)")
        .message("set exactly one of spec.projectId (the 24-hex-character Atlas project id) or spec.projectName"),
    // Pointing an existing object at another project would leave the first project's state orphaned
    // and silently take over the second; a new object is the honest way to manage another project.
    validation = Rule::new(
        "has(self.projectId) == has(oldSelf.projectId) && has(self.projectName) == has(oldSelf.projectName) \
         && (!has(self.projectId) || self.projectId == oldSelf.projectId) \
         && (!has(self.projectName) || self.projectName == oldSelf.projectName)"
    )
    .message("the Atlas project of a ProjectEncryption cannot change: create a new ProjectEncryption for another project"),
)]
pub struct ProjectEncryptionSpec {
    /// The Atlas project id (24 hexadecimal characters). Set this or `projectName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-f0-9]{24}$')")
        .message("projectId must be the 24 lowercase hexadecimal characters Atlas shows as the project ID, e.g. 6512a0f0c0ffee0000000001"))]
    #[schemars(length(max = 24))]
    pub project_id: Option<String>,

    /// The Atlas project name, resolved to its id on every change and every resync (so a project recreated
    /// under the same name is followed). Set this or `projectId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[\\\\p{L}\\\\p{N}\\\\-_.(),:&@+\\']{1,64}$')")
        .message("projectName must be 1 to 64 letters, digits or - _ . ( ) , : & @ + ' as Atlas allows for project names"))]
    #[schemars(length(max = 64))]
    pub project_name: Option<String>,

    /// A Secret in this namespace holding Atlas credentials: either a programmatic API key
    /// (`publicKey` and `privateKey`) or a service account (`clientId` and `clientSecret`). The role needs
    /// Project Owner. The Secret is read on every use, so rotating it needs no restart.
    pub credentials_ref: LocalObjectReference,

    /// The AWS KMS key and the IAM role Atlas uses to reach it.
    pub aws_kms: AwsKmsSpec,

    /// How the operator checks the key in AWS KMS before handing it to Atlas.
    #[serde(default)]
    pub kms_preflight: KmsPreflightSpec,

    /// When the customer-managed key is due for rotation.
    #[serde(default)]
    pub rotation: RotationSpec,

    /// What happens in Atlas when this object is deleted: `Retain` (default) leaves encryption on, and
    /// the object carries no finalizer (deleting it needs nothing from the operator); `Disable` turns it
    /// off once no cluster of the project uses it, held by a finalizer.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Encryption at Rest for the project's dedicated Atlas Search nodes (Atlas's
    /// `enabledForSearchNodes`). Left out, the operator leaves Atlas's setting as it is, so a project
    /// adopted with search nodes already encrypted stays so; set, Atlas is kept at `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_nodes: Option<SearchNodesSpec>,

    /// `Manage` (default) makes Atlas match this spec. `Observe` only reads Atlas and KMS and lists in
    /// `status.plannedChanges` every Atlas write `Manage` would make, making none; switching back to
    /// `Manage` makes exactly those writes. Clusters of an observed project are observed too.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchNodesSpec {
    /// Whether dedicated search nodes encrypt their indexes with the project's key. Applies while
    /// `awsKms.enabled` is true; without it, search indexes on dedicated nodes stay on Atlas-managed keys.
    pub enabled: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    // A key ARN names its region; Atlas would accept the mismatch and then fail to reach the key.
    validation = Rule::new(
        "!has(self.customerMasterKeyId) || !self.customerMasterKeyId.startsWith('arn:') \
         || self.customerMasterKeyId.matches('^arn:[a-z-]+:kms:' + self.region + ':')"
    )
    .message("the region inside the key ARN differs from spec.awsKms.region: set region to the key's region"),
    validation = Rule::new("!self.enabled || (has(self.customerMasterKeyId) && (has(self.roleArn) || has(self.atlasRoleId)))")
        .message("to enable encryption set customerMasterKeyId and either roleArn (the IAM role Atlas assumes) or atlasRoleId (an Atlas role already authorized)"),
)]
pub struct AwsKmsSpec {
    /// Whether Encryption at Rest with AWS KMS is on for the project. Setting it to false turns it off
    /// once no cluster of the project uses it; the clusters in the way are named in the status.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// The KMS key: its full ARN (`arn:aws:kms:<region>:<account>:key/<key-id>`), required when the key
    /// lives in another AWS account than the role, or its key id. Changing it rotates the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(
        "self.matches('^(arn:aws(-cn|-us-gov)?:kms:[a-z0-9-]+:[0-9]{12}:key/)?(mrk-[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$')"
    )
    .message("customerMasterKeyId must be a KMS key ARN like arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab or a bare key id; aliases are not accepted"))]
    #[schemars(length(max = 2048))]
    pub customer_master_key_id: Option<String>,

    /// The AWS region of the key, as AWS writes it (for example `eu-west-2`).
    #[x_kube(validation = region_rule())]
    #[schemars(length(max = 32))]
    pub region: String,

    /// The IAM role Atlas assumes to use the key. The operator creates an Atlas role, tells you the trust
    /// policy this IAM role needs, and authorizes it once the trust is in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$')")
        .message("roleArn must be an IAM role ARN like arn:aws:iam::111122223333:role/atlas-kms-access"))]
    #[schemars(length(max = 2048))]
    pub role_arn: Option<String>,

    /// An Atlas cloud-provider-access role id that is already authorized, adopted as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-f0-9]{24}$')")
        .message("atlasRoleId must be the 24 lowercase hexadecimal characters of an Atlas cloud provider access roleId"))]
    #[schemars(length(max = 24))]
    pub atlas_role_id: Option<String>,

    /// Reach the key only over AWS PrivateLink. The operator sets Atlas's `requirePrivateNetworking`,
    /// then asks Atlas for an Encryption at Rest private endpoint to AWS KMS in `region` and in each of
    /// `privateEndpointRegions`, and is Ready only once every one is active. Set back to false, the
    /// operator deletes those endpoints first and turns the requirement off once they are gone.
    #[serde(default)]
    pub require_private_networking: bool,

    /// AWS regions besides `region` where Atlas also gets a private endpoint to AWS KMS while
    /// `requirePrivateNetworking` is true (for example the regions of a multi-Region key's replicas).
    /// Removing a region deletes its endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = endpoint_regions_rule())]
    #[schemars(length(max = 16), inner(length(max = 32)))]
    pub private_endpoint_regions: Vec<String>,

    /// Atlas cannot go back from role-based access to the deprecated access-key credentials. When the
    /// project still uses access keys, the operator switches it to the role only if this is true.
    #[serde(default)]
    pub acknowledge_irreversible_switch_to_role: bool,
}

fn region_rule() -> Rule {
    Rule::new(format!("self in {}", cel_region_list())).message(
        "region must be the lowercase AWS name of a region Atlas supports for KMS keys, such as eu-west-2 or us-east-1",
    )
}

fn endpoint_regions_rule() -> Rule {
    Rule::new(format!("self.all(r, r in {})", cel_region_list())).message(
        "privateEndpointRegions must list lowercase AWS names of regions Atlas supports for KMS keys, such as eu-west-2 or us-east-1",
    )
}

fn default_true() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KmsPreflightSpec {
    /// Check the key in AWS KMS (exists, enabled, symmetric, right region) before Atlas is touched. Turn
    /// off when the operator has no AWS access; Atlas's own validity check is then the only one.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// A Secret with `accessKeyId` and `secretAccessKey` (and optional `sessionToken`) for the preflight.
    /// Without it the default AWS credential chain is used (IRSA on EKS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<LocalObjectReference>,
}

impl Default for KmsPreflightSpec {
    fn default() -> Self {
        KmsPreflightSpec {
            enabled: true,
            credentials_ref: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationSpec {
    /// How old the key may get before `KeyRotationDue` is raised, as a duration such as `2160h` (90 days,
    /// the default and Atlas's own rotation alert).
    #[serde(default = "default_max_key_age")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) >= duration('1h')")
        .message("maxKeyAge must be a duration of at least 1h written like 2160h or 720h30m"))]
    #[schemars(length(max = 64))]
    pub max_key_age: String,
}

pub const DEFAULT_MAX_KEY_AGE: &str = "2160h";

fn default_max_key_age() -> String {
    DEFAULT_MAX_KEY_AGE.to_string()
}

impl Default for RotationSpec {
    fn default() -> Self {
        RotationSpec {
            max_key_age: default_max_key_age(),
        }
    }
}

/// What the operator observed and did, the way kstatus and GitOps tools read it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectEncryptionStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling` and `Stalled` (kstatus), plus `RoleAuthorized`, `KeyValid`,
    /// `KeyRotationDue`, `Degraded`, `MultiRegionKey` and `PreviousKeyAtRisk`.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// The Atlas project id, resolved from `projectId` or `projectName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,

    /// The Atlas project name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,

    /// The Atlas cloud-provider-access role and what the IAM role must trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<AtlasRoleStatus>,

    /// The key in force in Atlas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyStatus>,

    /// Keys replaced by rotation. Snapshots taken before a rotation still need their key, so each stays
    /// listed with whether it is safe to delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_keys: Vec<PreviousKeyStatus>,

    /// Clusters of the project with `encryptionAtRestProvider: AWS`, as Atlas reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters_using_key: Vec<String>,

    /// Whether Atlas encrypts the project's dedicated search nodes with the key
    /// (`enabledForSearchNodes`), as last read while encryption is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_nodes_encrypted: Option<bool>,

    /// Atlas's outbound control-plane CIDRs in the key's region: a key policy that restricts
    /// `aws:SourceIp` must allow them. Refreshed hourly for the whole operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_plane_cidrs: Vec<String>,

    /// Under `managementPolicy: Observe`, each Atlas write the operator would make as this pass saw
    /// Atlas (one at a time where a write depends on the one before). Empty when managing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planned_changes: Vec<PlannedChange>,
    /// Atlas's Encryption at Rest private endpoints to AWS KMS, as last read while
    /// `requirePrivateNetworking` is true or while they are being deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private_endpoints: Vec<KmsPrivateEndpointStatus>,

    /// When the operator last set out to create an Atlas role, written before it asks Atlas. After a
    /// crash between the creation and its record, only an unauthorized, unused role created after this
    /// is taken as the operator's own; any other belongs to someone else and is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_creation_requested_at: Option<Time>,
}

/// One Encryption at Rest private endpoint to AWS KMS, as Atlas reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KmsPrivateEndpointStatus {
    /// The AWS region of the endpoint, as AWS writes it.
    pub region: String,
    /// Atlas's id of the endpoint.
    pub id: String,
    /// Atlas's state of the endpoint: `INITIATING`, `ACTIVE`, `FAILED`, `PENDING_RECREATION` or
    /// `DELETING`.
    pub state: String,
    /// Atlas's explanation when the endpoint failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AtlasRoleStatus {
    /// The Atlas cloud-provider-access `roleId`.
    pub role_id: String,
    /// The AWS principal of Atlas that the IAM role must trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atlas_aws_account_arn: Option<String>,
    /// The `sts:ExternalId` the IAM role's trust policy must require.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The IAM role Atlas is authorized to assume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_role_arn: Option<String>,
    pub authorized: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_at: Option<Time>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// The key as assigned in Atlas.
    pub customer_master_key_id: String,
    /// The key's region, as AWS writes it.
    pub region: String,
    /// When this key was assigned (or first seen, for a key assigned before the operator).
    pub since: Time,
    /// When the key is due for rotation: `materialSince` + `rotation.maxKeyAge`, or KMS's next automatic
    /// rotation while KMS rotates the key material.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_due_at: Option<Time>,
    /// Atlas's own verdict that it can encrypt and decrypt with the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    /// Whether the key is a multi-Region key (recommended for surviving a regional outage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_region: Option<bool>,
    /// Since when the key material in use exists: the key's creation or its last rotation as KMS reports
    /// them, or when the operator first saw the key (see `ageSource`). `KeyRotationDue` counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material_since: Option<Time>,
    /// Where `materialSince` comes from: `KmsCreation`, `KmsRotation`, or `FirstSeen` when KMS could not
    /// tell (preflight off, or no permission for `kms:GetKeyRotationStatus` / `kms:ListKeyRotations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_source: Option<KeyAgeSource>,
}

/// Where the age of the key material comes from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum KeyAgeSource {
    /// The key's creation date in KMS: its material was never rotated.
    KmsCreation,
    /// The last rotation of the key material in KMS (automatic or on demand).
    KmsRotation,
    /// When the operator first saw the key: KMS could not be asked, and recreating the object restarts it.
    FirstSeen,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousKeyStatus {
    pub customer_master_key_id: String,
    /// When this key stopped being the project's key.
    pub replaced_at: Time,
    /// Snapshots still encrypted with this key, as last counted.
    #[serde(default)]
    pub snapshots_using_key: u32,
    /// True once no snapshot uses the key: it may then be scheduled for deletion in KMS.
    #[serde(default)]
    pub safe_to_delete: bool,
}

/// The recorded key as a [`KeyRef`]: the one place a key stored in status is parsed.
fn recorded_key(customer_master_key_id: &str) -> Option<crate::aws::KeyRef> {
    crate::aws::KeyRef::parse(customer_master_key_id).ok()
}

impl KeyStatus {
    /// Whether this is `key` (an id and an ARN of one key are the same key).
    pub fn is_key(&self, key: &crate::aws::KeyRef) -> bool {
        recorded_key(&self.customer_master_key_id).is_some_and(|k| k.same_key(key))
    }
}

impl PreviousKeyStatus {
    /// Whether this is `key` (an id and an ARN of one key are the same key).
    pub fn is_key(&self, key: &crate::aws::KeyRef) -> bool {
        recorded_key(&self.customer_master_key_id).is_some_and(|k| k.same_key(key))
    }

    /// The key id that snapshots name (`masterKeyUuid`): the id of the recorded key, or the text as
    /// recorded when it does not parse.
    pub fn key_id(&self) -> String {
        recorded_key(&self.customer_master_key_id)
            .map_or_else(|| self.customer_master_key_id.clone(), |k| k.key_id().to_string())
    }
}
