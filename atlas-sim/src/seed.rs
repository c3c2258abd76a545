//! The seed file (YAML). Fields are optional wherever Atlas would generate them, so a seed stays short;
//! new fields must keep old seed files loading.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub organizations: Vec<SeedOrg>,
    #[serde(default)]
    pub api_keys: Vec<SeedApiKey>,
    #[serde(default)]
    pub service_accounts: Vec<SeedServiceAccount>,
    #[serde(default)]
    pub projects: Vec<SeedProject>,
}

impl Seed {
    pub fn from_yaml_str(s: &str) -> anyhow::Result<Seed> {
        Ok(serde_yaml::from_str(s)?)
    }
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Seed> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading seed {}: {e}", path.display()))?;
        Self::from_yaml_str(&text).map_err(|e| anyhow::anyhow!("parsing seed {}: {e}", path.display()))
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedOrg {
    pub name: String,
    #[serde(default)]
    pub id: Option<String>,
}

/// Grants: `projects` holds project names or ids; `"*"` reaches every project (like an org owner key),
/// `organizations` reaches every project of the named (or id'd) organizations.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedApiKey {
    pub public_key: String,
    pub private_key: String,
    #[serde(default)]
    pub projects: Vec<String>,
    #[serde(default)]
    pub organizations: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedServiceAccount {
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub projects: Vec<String>,
    #[serde(default)]
    pub organizations: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedProject {
    pub name: String,
    #[serde(default)]
    pub id: Option<String>,
    /// Organization name or id; absent means the default organization.
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub clusters: Vec<SeedCluster>,
    /// An Encryption at Rest configuration made before the simulator started: by hand, by another tool,
    /// or with the legacy access keys Atlas reports but no longer accepts in a PATCH.
    #[serde(default)]
    pub encryption_at_rest: Option<SeedEncryptionAtRest>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedEncryptionAtRest {
    #[serde(default)]
    pub aws_kms: Option<SeedAwsKms>,
    #[serde(default)]
    pub enabled_for_search_nodes: Option<bool>,
}

/// An enabled AWS KMS configuration on legacy access keys (a role-based one is made through the API).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedAwsKms {
    #[serde(rename = "customerMasterKeyID")]
    pub customer_master_key_id: String,
    /// Atlas's region name, e.g. `US_EAST_1`.
    pub region: String,
    #[serde(rename = "accessKeyID")]
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub require_private_networking: Option<bool>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedCluster {
    pub name: String,
    #[serde(default)]
    pub id: Option<String>,
    /// M10…, or M0/M2/M5 (a TENANT cluster), or FLEX.
    #[serde(default = "default_size")]
    pub instance_size: String,
    #[serde(default = "default_provider")]
    pub provider_name: String,
    #[serde(default = "default_region")]
    pub region_name: String,
    #[serde(default)]
    pub backup_enabled: bool,
    /// The cluster runs legacy (non-cloud) backup, which Atlas refuses to combine with CMK.
    #[serde(default)]
    pub legacy_backup: bool,
    #[serde(default)]
    pub paused: bool,
    /// `dedicated` (default), `tenant`, `flex` or `serverless`; flex and serverless are refused by the cluster API.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub encryption_at_rest_provider: Option<String>,
    #[serde(default)]
    pub mongo_db_major_version: Option<String>,
    /// `REPLICASET` (default) or `SHARDED` (two shards, one replication spec each) for dedicated clusters.
    #[serde(default)]
    pub cluster_type: Option<String>,
}

fn default_size() -> String {
    "M10".into()
}
fn default_provider() -> String {
    "AWS".into()
}
fn default_region() -> String {
    "US_EAST_1".into()
}

/// A snapshot created through the control API.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotRequest {
    #[serde(default)]
    pub id: Option<String>,
    /// Defaults to now.
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub retention_days: Option<i64>,
    #[serde(default)]
    pub snapshot_type: Option<String>,
    #[serde(default)]
    pub frequency_type: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// Override of the key in force (otherwise the project's current AWS key when the cluster uses AWS).
    #[serde(default)]
    pub master_key_uuid: Option<String>,
    /// `replicaSet` (default) or `shardedCluster`.
    #[serde(default)]
    pub r#type: Option<String>,
}
