//! Wire types for the Atlas endpoints the operator uses, camelCase as on the wire.
//!
//! Responses are tolerant: unknown fields are ignored and anything Atlas may leave out is an `Option`
//! or defaults, so a new Atlas field or a missing read-only one never breaks a reconcile. Requests
//! serialize only what is set, so PATCHes stay partial.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aws::{KeyRef, Region, RoleArn};

/// `Group` (official specification schema).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub cluster_count: Option<i64>,
    pub created: Option<DateTime<Utc>>,
}

/// `EncryptionAtRest` (official specification schema).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EncryptionAtRest {
    pub aws_kms: Option<AwsKmsConfig>,
    pub azure_key_vault: Option<OtherProvider>,
    pub google_cloud_kms: Option<OtherProvider>,
    pub enabled_for_search_nodes: Option<bool>,
}

impl EncryptionAtRest {
    pub fn aws_enabled(&self) -> bool {
        self.aws_kms.as_ref().is_some_and(AwsKmsConfig::is_enabled)
    }
}

/// Azure and Google blocks: only whether they are on matters here (switching provider is refused).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OtherProvider {
    pub enabled: Option<bool>,
    pub valid: Option<bool>,
}

/// `awsKms` as Atlas returns it (official specification schema).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AwsKmsConfig {
    pub enabled: Option<bool>,
    #[serde(rename = "customerMasterKeyID")]
    pub customer_master_key_id: Option<String>,
    /// Atlas enum spelling, `US_EAST_1`.
    pub region: Option<String>,
    /// writeOnly in the spec: usually absent from GET. Keep the role last written in status instead.
    pub role_id: Option<String>,
    pub require_private_networking: Option<bool>,
    /// readOnly: Atlas can encrypt and decrypt with the key. The health signal.
    pub valid: Option<bool>,
    /// Legacy credentials mode; present means someone configured static IAM keys out of band.
    #[serde(rename = "accessKeyID")]
    pub access_key_id: Option<String>,
}

impl AwsKmsConfig {
    pub fn is_enabled(&self) -> bool {
        self.enabled == Some(true)
    }

    pub fn is_valid(&self) -> bool {
        self.valid == Some(true)
    }

    /// The configured key, parsed; `None` when absent or not something we would have written.
    pub fn key(&self) -> Option<KeyRef> {
        self.customer_master_key_id
            .as_deref()
            .and_then(|k| KeyRef::parse(k).ok())
    }

    pub fn region(&self) -> Option<Region> {
        self.region.as_deref().and_then(|r| Region::parse(r).ok())
    }
}

/// A partial `awsKms` PATCH. Unset fields are not sent, so Atlas keeps their current values.
///
/// The first enable needs every field ([`AwsKmsPatch::enable`]); afterwards only what changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsKmsPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(rename = "customerMasterKeyID", skip_serializing_if = "Option::is_none")]
    pub customer_master_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "atlas_region")]
    pub region: Option<Region>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_private_networking: Option<bool>,
}

fn atlas_region<S: serde::Serializer>(region: &Option<Region>, s: S) -> Result<S::Ok, S::Error> {
    match region {
        Some(r) => s.serialize_str(r.atlas_name()),
        None => s.serialize_none(),
    }
}

impl AwsKmsPatch {
    /// The complete object a first enable (or a re-enable after disable) needs.
    pub fn enable(key: &KeyRef, region: Region, role_id: &str, require_private_networking: bool) -> Self {
        AwsKmsPatch {
            enabled: Some(true),
            customer_master_key_id: Some(key.to_string()),
            region: Some(region),
            role_id: Some(role_id.to_string()),
            require_private_networking: Some(require_private_networking),
        }
    }

    /// Rotation to another key (same region and role): only the key id is sent.
    pub fn rotate_key(key: &KeyRef) -> Self {
        AwsKmsPatch {
            customer_master_key_id: Some(key.to_string()),
            ..Default::default()
        }
    }

    /// `{"enabled": false}`: disables CMK and makes Atlas erase the AWS configuration.
    pub fn disable() -> Self {
        AwsKmsPatch {
            enabled: Some(false),
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == AwsKmsPatch::default()
    }
}

/// A PATCH of the project's `EncryptionAtRest`: the `awsKms` part and `enabledForSearchNodes`, each sent
/// only when set, so Atlas keeps what is left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionAtRestPatch<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_kms: Option<&'a AwsKmsPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled_for_search_nodes: Option<bool>,
}

impl EncryptionAtRestPatch<'_> {
    pub fn is_empty(&self) -> bool {
        self.aws_kms.is_none_or(AwsKmsPatch::is_empty) && self.enabled_for_search_nodes.is_none()
    }
}

/// `CloudProviderAccessRoles` (not paginated). Azure and GCP entries are ignored.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CloudProviderAccessRoles {
    pub aws_iam_roles: Vec<AwsIamRole>,
}

/// `CloudProviderAccessAWSIAMRole`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AwsIamRole {
    pub provider_name: Option<String>,
    pub role_id: String,
    #[serde(rename = "atlasAWSAccountArn")]
    pub atlas_aws_account_arn: Option<String>,
    pub atlas_assumed_role_external_id: Option<String>,
    pub iam_assumed_role_arn: Option<String>,
    pub authorized_date: Option<DateTime<Utc>>,
    pub created_date: Option<DateTime<Utc>>,
    pub feature_usages: Vec<FeatureUsage>,
}

impl AwsIamRole {
    pub fn is_authorized(&self) -> bool {
        self.authorized_date.is_some() && self.iam_assumed_role_arn.is_some()
    }

    /// The authorized IAM role, parsed.
    pub fn role_arn(&self) -> Option<RoleArn> {
        self.iam_assumed_role_arn
            .as_deref()
            .and_then(|a| RoleArn::parse(a).ok())
    }

    /// Atlas reports the usage but never which project or key (`featureId` is always null).
    pub fn used_for_encryption_at_rest(&self) -> bool {
        self.feature_usages
            .iter()
            .any(|u| u.feature_type == "ENCRYPTION_AT_REST")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FeatureUsage {
    pub feature_type: String,
    pub feature_id: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateRoleRequest {
    pub provider_name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthorizeRoleRequest<'a> {
    pub provider_name: &'static str,
    pub iam_assumed_role_arn: &'a str,
}

/// `AWSKMSEARPrivateEndpoint`: a private endpoint Atlas uses to reach AWS KMS in one region.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EarPrivateEndpoint {
    pub id: String,
    pub cloud_provider: Option<String>,
    /// Atlas's region name, e.g. `US_EAST_1`.
    pub region_name: Option<String>,
    pub status: PrivateEndpointStatus,
    /// Atlas's explanation when `status` is `FAILED`.
    pub error_message: Option<String>,
    pub private_endpoint_connection_name: Option<String>,
}

impl EarPrivateEndpoint {
    pub fn region(&self) -> Option<Region> {
        self.region_name.as_deref().and_then(|r| Region::parse(r).ok())
    }
}

/// Where a private endpoint is in Atlas's state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PrivateEndpointStatus {
    #[default]
    Initiating,
    PendingAcceptance,
    Active,
    Failed,
    PendingRecreation,
    Deleting,
    /// A value this operator does not know.
    #[serde(other)]
    Unknown,
}

impl PrivateEndpointStatus {
    /// The name Atlas gives the state.
    pub fn as_str(self) -> &'static str {
        match self {
            PrivateEndpointStatus::Initiating => "INITIATING",
            PrivateEndpointStatus::PendingAcceptance => "PENDING_ACCEPTANCE",
            PrivateEndpointStatus::Active => "ACTIVE",
            PrivateEndpointStatus::Failed => "FAILED",
            PrivateEndpointStatus::PendingRecreation => "PENDING_RECREATION",
            PrivateEndpointStatus::Deleting => "DELETING",
            PrivateEndpointStatus::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EarPrivateEndpointRequest {
    pub region_name: &'static str,
}

/// `encryptionAtRestProvider` of a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EncryptionProvider {
    #[default]
    None,
    Aws,
    Azure,
    Gcp,
    /// A value this operator does not know; never sent.
    #[serde(other)]
    Unknown,
}

impl EncryptionProvider {
    /// The name Atlas gives the provider (and the cluster status shows).
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionProvider::None => "NONE",
            EncryptionProvider::Aws => "AWS",
            EncryptionProvider::Azure => "AZURE",
            EncryptionProvider::Gcp => "GCP",
            EncryptionProvider::Unknown => "UNKNOWN",
        }
    }

    /// The provider Atlas names `name`; [`EncryptionProvider::Unknown`] for a name it does not know.
    pub fn from_name(name: &str) -> EncryptionProvider {
        [
            EncryptionProvider::None,
            EncryptionProvider::Aws,
            EncryptionProvider::Azure,
            EncryptionProvider::Gcp,
        ]
        .into_iter()
        .find(|p| p.as_str() == name)
        .unwrap_or(EncryptionProvider::Unknown)
    }
}

impl std::fmt::Display for EncryptionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterProviderPatch {
    pub encryption_at_rest_provider: EncryptionProvider,
}

/// `ClusterDescription20240805`, the fields the reconciler reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Cluster {
    pub id: Option<String>,
    pub group_id: Option<String>,
    pub name: String,
    pub cluster_type: Option<String>,
    /// `IDLE`, `CREATING`, `UPDATING`, `DELETING`, `REPAIRING`. There is no PAUSED state.
    pub state_name: Option<String>,
    pub paused: Option<bool>,
    pub backup_enabled: Option<bool>,
    pub encryption_at_rest_provider: Option<EncryptionProvider>,
    #[serde(rename = "mongoDBMajorVersion")]
    pub mongo_db_major_version: Option<String>,
    pub replication_specs: Vec<ReplicationSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicationSpec {
    pub id: Option<String>,
    pub zone_name: Option<String>,
    pub region_configs: Vec<RegionConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegionConfig {
    /// `AWS`, `AZURE`, `GCP` or `TENANT`.
    pub provider_name: String,
    pub backing_provider_name: Option<String>,
    pub region_name: Option<String>,
    pub priority: Option<i64>,
    pub electable_specs: Option<HardwareSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HardwareSpec {
    pub instance_size: Option<String>,
    /// Tenants only: `FLEX` for a cluster that became Flex.
    pub effective_instance_size: Option<String>,
    pub node_count: Option<i64>,
}

/// The numeric part of a tier: `M10` → 10, `R40` → 40, `M40_NVME` → 40, `M30_GEN_2` → 30, `FLEX` → None.
pub fn tier_number(instance_size: &str) -> Option<u32> {
    let rest = instance_size.strip_prefix(['M', 'R'])?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Cluster {
    /// Whether Atlas may hold sharded-cluster snapshots of this cluster: a sharded (or global) cluster,
    /// or one whose type Atlas did not say. A replica set never was sharded (Atlas converts replica sets
    /// to sharded clusters, never back), so only its replica-set snapshots exist.
    pub fn may_have_sharded_snapshots(&self) -> bool {
        self.cluster_type.as_deref() != Some("REPLICASET")
    }

    fn region_configs(&self) -> impl Iterator<Item = &RegionConfig> {
        self.replication_specs
            .iter()
            .flat_map(|s| s.region_configs.iter())
    }

    /// The distinct electable tiers, in order of appearance.
    pub fn instance_sizes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for size in self
            .region_configs()
            .filter_map(|rc| rc.electable_specs.as_ref()?.instance_size.as_deref())
        {
            if !out.contains(&size) {
                out.push(size);
            }
        }
        out
    }

    /// M0/M2/M5 shared tiers and Flex: no customer-managed keys there.
    pub fn is_tenant(&self) -> bool {
        self.region_configs().any(|rc| {
            let spec = rc.electable_specs.as_ref();
            rc.provider_name == "TENANT"
                || spec.and_then(|s| s.effective_instance_size.as_deref()) == Some("FLEX")
                || spec
                    .and_then(|s| s.instance_size.as_deref())
                    .is_some_and(|size| matches!(size, "M0" | "M2" | "M5" | "FLEX"))
        })
    }

    /// Dedicated M10+ everywhere: the tiers Atlas accepts CMK on.
    pub fn supports_customer_key(&self) -> bool {
        let sizes = self.instance_sizes();
        !self.is_tenant()
            && !sizes.is_empty()
            && sizes.iter().all(|s| tier_number(s).is_some_and(|n| n >= 10))
    }

    pub fn provider(&self) -> EncryptionProvider {
        self.encryption_at_rest_provider.unwrap_or_default()
    }

    pub fn is_paused(&self) -> bool {
        self.paused == Some(true)
    }

    pub fn is_idle(&self) -> bool {
        self.state_name.as_deref() == Some("IDLE")
    }
}

/// `DiskBackupReplicaSet` and `DiskBackupShardedClusterSnapshot`, the fields that tell which key a
/// snapshot was taken under (`replicaSetName` is the replica set's only).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Snapshot {
    pub id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Opaque identifier of the KMS key; compare with a key id only for single-Region keys.
    #[serde(rename = "masterKeyUUID")]
    pub master_key_uuid: Option<String>,
    /// `queued`, `inProgress`, `completed`, `failed`.
    pub status: Option<String>,
    pub snapshot_type: Option<String>,
    pub replica_set_name: Option<String>,
}

/// `ControlPlaneIPAddresses` (official specification schema).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ControlPlaneIpAddresses {
    pub inbound: CloudIps,
    /// Where Atlas calls KMS from: what an `aws:SourceIp` key policy must allow.
    pub outbound: CloudIps,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct CloudIps {
    pub aws: BTreeMap<String, Vec<String>>,
    pub azure: BTreeMap<String, Vec<String>>,
    pub gcp: BTreeMap<String, Vec<String>>,
}

impl ControlPlaneIpAddresses {
    /// Outbound AWS CIDRs, all regions, sorted and deduplicated.
    pub fn outbound_aws_cidrs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.outbound.aws.values().flatten().map(String::as_str).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// `Paginated*`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Page<T> {
    #[serde(default = "Vec::new")]
    pub results: Vec<T>,
    #[serde(default)]
    pub total_count: Option<u64>,
    #[serde(default)]
    pub links: Vec<Link>,
}

#[derive(Deserialize)]
pub(crate) struct Link {
    #[serde(default)]
    pub rel: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn patch_serializes_only_set_fields() {
        assert_eq!(
            serde_json::to_value(AwsKmsPatch::disable()).unwrap(),
            json!({"enabled": false})
        );
        let key = KeyRef::parse(KEY).unwrap();
        assert_eq!(
            serde_json::to_value(AwsKmsPatch::rotate_key(&key)).unwrap(),
            json!({"customerMasterKeyID": KEY})
        );
        let region = Region::parse("us-east-1").unwrap();
        let full = AwsKmsPatch::enable(&key, region, "65f0a1b2c3d4e5f607182930", false);
        assert_eq!(
            serde_json::to_value(&full).unwrap(),
            json!({"enabled": true, "customerMasterKeyID": KEY, "region": "US_EAST_1",
                   "roleId": "65f0a1b2c3d4e5f607182930", "requirePrivateNetworking": false})
        );
        let body = serde_json::to_value(EncryptionAtRestPatch {
            aws_kms: Some(&AwsKmsPatch::default()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(body, json!({"awsKms": {}}));
        assert!(AwsKmsPatch::default().is_empty());
        let search_only = EncryptionAtRestPatch {
            enabled_for_search_nodes: Some(true),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&search_only).unwrap(),
            json!({"enabledForSearchNodes": true})
        );
        assert!(!search_only.is_empty() && EncryptionAtRestPatch::default().is_empty());
        let both = EncryptionAtRestPatch {
            aws_kms: Some(&full),
            enabled_for_search_nodes: Some(false),
        };
        assert_eq!(
            serde_json::to_value(&both).unwrap()["enabledForSearchNodes"],
            json!(false)
        );
    }

    #[test]
    fn encryption_at_rest_reads_the_reference_example() {
        let ear: EncryptionAtRest = serde_json::from_value(json!({
            "awsKms": {"enabled": true, "customerMasterKeyID": KEY, "region": "US_EAST_1",
                       "requirePrivateNetworking": false, "valid": true, "somethingNew": 1},
            "azureKeyVault": {"enabled": false}, "googleCloudKms": {"enabled": false},
            "enabledForSearchNodes": false}))
        .unwrap();
        let aws = ear.aws_kms.as_ref().unwrap();
        assert!(ear.aws_enabled() && aws.is_valid());
        assert_eq!(aws.role_id, None, "roleId is writeOnly");
        assert_eq!(aws.region().unwrap().aws_name(), "us-east-1");
        assert!(aws.key().unwrap().same_key(&KeyRef::parse(KEY).unwrap()));
        let empty: EncryptionAtRest = serde_json::from_value(json!({})).unwrap();
        assert!(!empty.aws_enabled());
    }

    #[test]
    fn role_reads_the_reference_example() {
        let roles: CloudProviderAccessRoles = serde_json::from_value(json!({"awsIamRoles": [{
            "providerName": "AWS", "roleId": "65f0a1b2c3d4e5f607182930",
            "atlasAWSAccountArn": "arn:aws:iam::012345678901:root",
            "atlasAssumedRoleExternalId": "5d3b0b1e-7a6e-4a59-9d0b-1c2d3e4f5a6b",
            "createdDate": "2026-08-01T10:00:00Z", "authorizedDate": "2026-08-01T10:03:12Z",
            "iamAssumedRoleArn": "arn:aws:iam::111122223333:role/atlas-kms-access",
            "featureUsages": [{"featureType": "ENCRYPTION_AT_REST", "featureId": null}]}],
            "azureServicePrincipals": [{"_id": "x"}], "gcpServiceAccounts": []}))
        .unwrap();
        let role = &roles.aws_iam_roles[0];
        assert!(role.is_authorized() && role.used_for_encryption_at_rest());
        assert_eq!(role.role_arn().unwrap().role_name(), "atlas-kms-access");
        assert_eq!(
            role.atlas_aws_account_arn.as_deref(),
            Some("arn:aws:iam::012345678901:root")
        );
    }

    fn cluster(configs: serde_json::Value) -> Cluster {
        serde_json::from_value(json!({"name": "c", "stateName": "IDLE", "paused": false,
            "encryptionAtRestProvider": "AWS", "replicationSpecs": [{"regionConfigs": configs}]}))
        .unwrap()
    }

    #[test]
    fn tier_helpers() {
        let dedicated = cluster(json!([
            {"providerName": "AWS", "regionName": "US_EAST_1", "electableSpecs": {"instanceSize": "M10"}},
            {"providerName": "AWS", "regionName": "US_WEST_2", "electableSpecs": {"instanceSize": "M30_GEN_2"}},
            {"providerName": "AWS", "regionName": "EU_WEST_1", "electableSpecs": {"instanceSize": "M10"}}]));
        assert_eq!(dedicated.instance_sizes(), vec!["M10", "M30_GEN_2"]);
        assert!(!dedicated.is_tenant() && dedicated.supports_customer_key());
        assert!(dedicated.is_idle() && !dedicated.is_paused());
        assert_eq!(dedicated.provider(), EncryptionProvider::Aws);

        let m0 = cluster(json!([{"providerName": "TENANT", "backingProviderName": "AWS",
            "electableSpecs": {"instanceSize": "M0", "effectiveInstanceSize": "M0"}}]));
        assert!(m0.is_tenant() && !m0.supports_customer_key());
        let flex = cluster(json!([{"providerName": "AWS",
            "electableSpecs": {"instanceSize": "M5", "effectiveInstanceSize": "FLEX"}}]));
        assert!(flex.is_tenant());
        let empty = cluster(json!([]));
        assert!(
            !empty.supports_customer_key(),
            "no tiers, no verdict of eligibility"
        );

        assert_eq!(tier_number("M10"), Some(10));
        assert_eq!(tier_number("R700_GEN_2"), Some(700));
        assert_eq!(tier_number("M40_NVME"), Some(40));
        assert_eq!(tier_number("M0"), Some(0));
        assert_eq!(tier_number("FLEX"), None);
    }

    #[test]
    fn unknown_provider_values_do_not_break_decoding() {
        let c: Cluster =
            serde_json::from_value(json!({"name": "c", "encryptionAtRestProvider": "OCI"})).unwrap();
        assert_eq!(c.provider(), EncryptionProvider::Unknown);
        let none: Cluster = serde_json::from_value(json!({"name": "c"})).unwrap();
        assert_eq!(none.provider(), EncryptionProvider::None);
        assert_eq!(
            serde_json::to_value(ClusterProviderPatch {
                encryption_at_rest_provider: EncryptionProvider::None
            })
            .unwrap(),
            json!({"encryptionAtRestProvider": "NONE"})
        );
    }

    #[test]
    fn snapshot_and_control_plane_ips() {
        let s: Snapshot = serde_json::from_value(json!({"id": "65f0a1b2c3d4e5f607182940",
            "createdAt": "2026-08-20T03:00:00Z", "status": "completed",
            "masterKeyUUID": "1234abcd-12ab-34cd-56ef-1234567890ab"}))
        .unwrap();
        assert_eq!(
            s.master_key_uuid.as_deref(),
            Some("1234abcd-12ab-34cd-56ef-1234567890ab")
        );
        let ips: ControlPlaneIpAddresses = serde_json::from_value(json!({
            "inbound": {"aws": {"us-east-1": ["3.92.113.229/32"]}},
            "outbound": {"aws": {"us-east-1": ["3.214.55.12/32", "3.209.21.10/32"], "eu-west-1": ["3.209.21.10/32"]},
                         "azure": {}, "gcp": {}}}))
        .unwrap();
        assert_eq!(ips.outbound_aws_cidrs(), vec!["3.209.21.10/32", "3.214.55.12/32"]);
    }
}

/// `RateLimitEndpointSetResponse` (official specification schema, version 2025-03-12): endpoints that
/// share one token bucket per `scope` key.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitEndpointSet {
    pub endpoint_set_id: String,
    pub endpoint_set_name: Option<String>,
    pub scope: RateLimitScope,
    pub capacity: RateLimitValue,
    pub refill_rate: RateLimitValue,
    pub refill_duration_seconds: RateLimitValue,
    pub endpoints: Vec<RateLimitEndpoint>,
}

/// Whose bucket a call draws from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RateLimitScope {
    Ip,
    Group,
    Organization,
    User,
    /// A scope this client does not know yet: treated like `USER` (one bucket per credential).
    #[default]
    #[serde(other)]
    Unknown,
}

/// `RateLimitEndpointSetCapacity` / `…RefillRate` / `…RefillDurationSeconds`: the applied value, and the
/// default when an override applies.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitValue {
    pub value: Option<i64>,
    pub default_value: Option<i64>,
}

impl RateLimitValue {
    /// The value Atlas applies.
    pub fn applied(&self) -> Option<i64> {
        self.value.or(self.default_value)
    }
}

/// `RateLimitEndpointSetEndpoint`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitEndpoint {
    pub method: String,
    pub path: String,
}
