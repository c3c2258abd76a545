//! The simulator's world: organizations, projects and everything inside them. Plain data, serializable so
//! `--state FILE` can carry it across restarts; time-dependent fields (cluster `stateName`, private-endpoint
//! `status`) are stored as deadlines and computed when read, so no background task has to tick them.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::seed::{Seed, SeedCluster, SeedEncryptionAtRest, SeedProject};

pub const DEFAULT_ORG_NAME: &str = "Default Organization";
pub const ATLAS_BASE: &str = "https://cloud.mongodb.com";

/// A 24-hex id shaped like a MongoDB ObjectId: a seconds timestamp followed by random bytes.
pub fn new_id() -> String {
    let secs = Utc::now().timestamp() as u32;
    let tail: [u8; 8] = rand::rng().random();
    format!("{secs:08x}{}", hex::encode(tail))
}

pub fn is_object_id(s: &str) -> bool {
    s.len() == 24
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Org {
    pub id: String,
    pub name: String,
}

/// Who may call: an API key (digest) or a service account (OAuth). Grants name projects or organizations
/// by name or id; `"*"` in `projects` reaches everything.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    pub secret: String,
    pub projects: Vec<String>,
    pub organizations: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    pub client_id: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsKms {
    pub enabled: bool,
    pub customer_master_key_id: Option<String>,
    pub region: Option<String>,
    pub role_id: Option<String>,
    pub require_private_networking: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Last computed validity (cached for `validity_ttl`).
    pub valid: bool,
    pub checked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ear {
    /// None = never configured or disabled (disable erases the configuration, as Atlas does).
    pub aws: Option<AwsKms>,
    pub azure: Option<Value>,
    pub gcp: Option<Value>,
    pub enabled_for_search_nodes: Option<bool>,
    /// Control-API override of `awsKms.valid` (both with and without an AWS endpoint).
    pub valid_override: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyChange {
    pub at: DateTime<Utc>,
    pub action: String,
    pub customer_master_key_id: Option<String>,
    pub region: Option<String>,
    pub role_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub role_id: String,
    pub provider_name: String,
    pub created_date: DateTime<Utc>,
    pub atlas_aws_account_arn: Option<String>,
    pub external_id: Option<String>,
    pub authorized_date: Option<DateTime<Utc>>,
    pub iam_assumed_role_arn: Option<String>,
    /// Azure/GCP fields as sent.
    #[serde(default)]
    pub extra: serde_json::Map<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateEndpoint {
    pub id: String,
    pub cloud_provider: String,
    pub region_name: String,
    pub created_at: DateTime<Utc>,
    pub deleting_since: Option<DateTime<Utc>>,
    pub status_override: Option<String>,
    pub error_message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterKind {
    Dedicated,
    Tenant,
    Flex,
    Serverless,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub id: String,
    pub name: String,
    pub kind: ClusterKind,
    pub legacy_backup: bool,
    /// The ClusterDescription20240805 document as stored; `stateName` is computed on read.
    pub doc: Value,
    pub updating_until: Option<DateTime<Utc>>,
    pub snapshots: Vec<Value>,
}

impl Cluster {
    pub fn state_name(&self, now: DateTime<Utc>) -> &'static str {
        match self.updating_until {
            Some(t) if now < t => "UPDATING",
            _ => "IDLE",
        }
    }
    pub fn paused(&self) -> bool {
        self.doc.get("paused").and_then(Value::as_bool).unwrap_or(false)
    }
    pub fn ear_provider(&self) -> &str {
        self.doc
            .get("encryptionAtRestProvider")
            .and_then(Value::as_str)
            .unwrap_or("NONE")
    }
    pub fn render(&self, now: DateTime<Utc>) -> Value {
        let mut doc = self.doc.clone();
        doc["stateName"] = json!(self.state_name(now));
        doc
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub created: DateTime<Utc>,
    pub ear: Ear,
    pub roles: Vec<Role>,
    pub private_endpoints: Vec<PrivateEndpoint>,
    pub clusters: Vec<Cluster>,
    pub alerts: Vec<Value>,
    pub key_history: Vec<KeyChange>,
}

impl Project {
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }
    pub fn cluster_mut(&mut self, name: &str) -> Option<&mut Cluster> {
        self.clusters.iter_mut().find(|c| c.name == name)
    }
    pub fn render(&self) -> Value {
        let count = self
            .clusters
            .iter()
            .filter(|c| matches!(c.kind, ClusterKind::Dedicated | ClusterKind::Tenant))
            .count();
        json!({
            "id": self.id,
            "name": self.name,
            "orgId": self.org_id,
            "clusterCount": count,
            "created": ts(self.created),
            "tags": [],
            "withDefaultAlertsSettings": true,
            "links": [{"href": format!("{ATLAS_BASE}/api/atlas/v2/groups/{}", self.id), "rel": "self"}],
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub orgs: Vec<Org>,
    pub projects: BTreeMap<String, Project>,
    pub api_keys: BTreeMap<String, Credential>,
    pub service_accounts: BTreeMap<String, Credential>,
    pub tokens: BTreeMap<String, Token>,
    pub cluster_update_delay_ms: u64,
    /// Overrides "today" when deciding whether a version is past its sunset (for VERSION_GONE tests).
    pub today_override: Option<NaiveDate>,
    /// What `GET /unauth/controlPlaneIPAddresses` answers; Atlas changes it over time.
    #[serde(default)]
    pub control_plane_ips: crate::routes::control_plane_ips::ControlPlaneIps,
}

impl State {
    pub fn project_by_name(&self, name: &str) -> Vec<&Project> {
        self.projects.values().filter(|p| p.name == name).collect()
    }

    pub fn org_for(&mut self, name_or_id: Option<&str>) -> String {
        let key = name_or_id.unwrap_or(DEFAULT_ORG_NAME);
        if let Some(o) = self.orgs.iter().find(|o| o.id == key || o.name == key) {
            return o.id.clone();
        }
        let id = if is_object_id(key) {
            key.to_string()
        } else {
            new_id()
        };
        let name = if is_object_id(key) {
            format!("org-{key}")
        } else {
            key.to_string()
        };
        self.orgs.push(Org { id: id.clone(), name });
        id
    }

    pub fn apply_seed(&mut self, seed: &Seed) -> anyhow::Result<()> {
        for o in &seed.organizations {
            let id = o.id.clone().unwrap_or_else(new_id);
            anyhow::ensure!(is_object_id(&id), "organization id {id} is not 24 hex characters");
            if !self.orgs.iter().any(|x| x.id == id) {
                self.orgs.push(Org {
                    id,
                    name: o.name.clone(),
                });
            }
        }
        for k in &seed.api_keys {
            self.api_keys.insert(
                k.public_key.clone(),
                Credential {
                    secret: k.private_key.clone(),
                    projects: k.projects.clone(),
                    organizations: k.organizations.clone(),
                },
            );
        }
        for sa in &seed.service_accounts {
            self.service_accounts.insert(
                sa.client_id.clone(),
                Credential {
                    secret: sa.client_secret.clone(),
                    projects: sa.projects.clone(),
                    organizations: sa.organizations.clone(),
                },
            );
        }
        for p in &seed.projects {
            self.add_project(p)?;
        }
        Ok(())
    }

    pub fn add_project(&mut self, p: &SeedProject) -> anyhow::Result<String> {
        let id = p.id.clone().unwrap_or_else(new_id);
        anyhow::ensure!(
            is_object_id(&id),
            "project id {id} is not 24 lowercase hex characters"
        );
        anyhow::ensure!(
            !p.name.is_empty() && p.name.chars().count() <= 64,
            "project name must have 1 to 64 characters"
        );
        let org_id = self.org_for(p.org.as_deref());
        let project = self.projects.entry(id.clone()).or_insert_with(|| Project {
            id: id.clone(),
            name: p.name.clone(),
            org_id,
            created: Utc::now(),
            ear: Ear::default(),
            roles: vec![],
            private_endpoints: vec![],
            clusters: vec![],
            alerts: vec![],
            key_history: vec![],
        });
        for c in &p.clusters {
            let cluster = build_cluster(&id, c)?;
            project.clusters.retain(|x| x.name != cluster.name);
            project.clusters.push(cluster);
        }
        if let Some(ear) = &p.encryption_at_rest {
            seed_encryption_at_rest(project, ear)?;
        }
        Ok(id)
    }
}

/// Stores a configuration as another tool left it, without the checks a PATCH runs (they would
/// refuse the legacy access keys it exists to represent).
fn seed_encryption_at_rest(project: &mut Project, seed: &SeedEncryptionAtRest) -> anyhow::Result<()> {
    if let Some(b) = seed.enabled_for_search_nodes {
        project.ear.enabled_for_search_nodes = Some(b);
    }
    let Some(aws) = &seed.aws_kms else {
        return Ok(());
    };
    anyhow::ensure!(
        crate::routes::AWS_REGIONS.contains(&aws.region.as_str()),
        "encryptionAtRest.awsKms.region {} is not an Atlas AWS region",
        aws.region
    );
    anyhow::ensure!(
        !aws.access_key_id.is_empty() && !aws.secret_access_key.is_empty(),
        "encryptionAtRest.awsKms needs accessKeyID and secretAccessKey"
    );
    project.ear.aws = Some(AwsKms {
        enabled: true,
        customer_master_key_id: Some(aws.customer_master_key_id.clone()),
        region: Some(aws.region.clone()),
        role_id: None,
        require_private_networking: aws.require_private_networking,
        access_key_id: Some(aws.access_key_id.clone()),
        secret_access_key: Some(aws.secret_access_key.clone()),
        valid: true,
        checked_at: None,
    });
    project.key_history.push(KeyChange {
        at: Utc::now(),
        action: "enabled".into(),
        customer_master_key_id: Some(aws.customer_master_key_id.clone()),
        region: Some(aws.region.clone()),
        role_id: None,
    });
    Ok(())
}

const TENANT_SIZES: [&str; 3] = ["M0", "M2", "M5"];

pub fn build_cluster(group_id: &str, c: &SeedCluster) -> anyhow::Result<Cluster> {
    anyhow::ensure!(
        !c.name.is_empty()
            && c.name.chars().next().is_some_and(|ch| ch.is_ascii_alphanumeric())
            && c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-'),
        "cluster name {:?} does not match ^[a-zA-Z0-9][a-zA-Z0-9-]*$",
        c.name
    );
    let size = c.instance_size.to_ascii_uppercase();
    let kind = match c.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("flex") => ClusterKind::Flex,
        Some("serverless") => ClusterKind::Serverless,
        Some("tenant") => ClusterKind::Tenant,
        Some("dedicated") => ClusterKind::Dedicated,
        Some(other) => anyhow::bail!("cluster kind {other} is not dedicated/tenant/flex/serverless"),
        None if size == "FLEX" => ClusterKind::Flex,
        None if TENANT_SIZES.contains(&size.as_str()) => ClusterKind::Tenant,
        None => ClusterKind::Dedicated,
    };
    let id = c.id.clone().unwrap_or_else(new_id);
    anyhow::ensure!(is_object_id(&id), "cluster id {id} is not 24 hex characters");
    let provider = c.provider_name.to_ascii_uppercase();
    let region_config = if kind == ClusterKind::Dedicated {
        let mut spec = json!({"instanceSize": size, "nodeCount": 3, "diskSizeGB": 10.0});
        if provider == "AWS" {
            spec["diskIOPS"] = json!(3000);
            spec["ebsVolumeType"] = json!("STANDARD");
        }
        json!({"providerName": provider, "regionName": c.region_name, "priority": 7,
               "electableSpecs": spec})
    } else {
        let tenant_size = if TENANT_SIZES.contains(&size.as_str()) {
            size.clone()
        } else {
            "M5".into()
        };
        let effective = if kind == ClusterKind::Tenant {
            tenant_size.clone()
        } else {
            "FLEX".into()
        };
        json!({"providerName": "TENANT", "backingProviderName": provider, "regionName": c.region_name,
               "priority": 7,
               "electableSpecs": {"instanceSize": tenant_size, "effectiveInstanceSize": effective}})
    };
    let cluster_type = c
        .cluster_type
        .as_deref()
        .unwrap_or("REPLICASET")
        .to_ascii_uppercase();
    anyhow::ensure!(
        cluster_type == "REPLICASET" || (cluster_type == "SHARDED" && kind == ClusterKind::Dedicated),
        "clusterType {cluster_type} is not REPLICASET or (for dedicated clusters) SHARDED"
    );
    let shards = if cluster_type == "SHARDED" { 2 } else { 1 };
    let replication_specs: Vec<Value> = (0..shards)
        .map(|_| {
            json!({"id": new_id(), "zoneId": new_id(), "zoneName": "Zone 1",
                   "regionConfigs": [region_config.clone()]})
        })
        .collect();
    let major = c.mongo_db_major_version.clone().unwrap_or_else(|| "8.0".into());
    let host = format!("{}.{}.mongodb.net", c.name.to_ascii_lowercase(), &id[18..]);
    let doc = json!({
        "id": id,
        "groupId": group_id,
        "name": c.name,
        "clusterType": cluster_type,
        "backupEnabled": c.backup_enabled,
        "pitEnabled": false,
        "paused": c.paused,
        "encryptionAtRestProvider": c.encryption_at_rest_provider.clone().unwrap_or_else(|| "NONE".into()),
        "mongoDBMajorVersion": major,
        "mongoDBVersion": format!("{major}.4"),
        "versionReleaseSystem": "LTS",
        "featureCompatibilityVersion": major,
        "createDate": ts(Utc::now()),
        "terminationProtectionEnabled": false,
        "diskWarmingMode": "FULLY_WARMED",
        "replicaSetScalingStrategy": "WORKLOAD_TYPE",
        "rootCertType": "ISRGROOTX1",
        "redactClientLogData": false,
        "globalClusterSelfManagedSharding": false,
        "configServerManagementMode": "ATLAS_MANAGED",
        "biConnector": {"enabled": false, "readPreference": "SECONDARY"},
        "connectionStrings": {"standardSrv": format!("mongodb+srv://{host}")},
        "tags": [],
        "labels": [],
        "replicationSpecs": replication_specs,
        "links": [{"href": format!("{ATLAS_BASE}/api/atlas/v2/groups/{group_id}/clusters/{}", c.name), "rel": "self"}],
    });
    Ok(Cluster {
        id,
        name: c.name.clone(),
        kind,
        legacy_backup: c.legacy_backup,
        doc,
        updating_until: None,
        snapshots: vec![],
    })
}

/// The UUID part of a KMS key id or ARN (`arn:aws:kms:r:a:key/<uuid>` → `<uuid>`); Multi-Region `mrk-` ids
/// and aliases are returned as they are, since Atlas's mapping for them is unknown.
pub fn key_uuid(key: &str) -> String {
    key.rsplit('/').next().unwrap_or(key).to_string()
}

/// Atlas region enum → AWS region name (`US_EAST_1` → `us-east-1`).
pub fn aws_region(atlas: &str) -> Option<String> {
    if atlas == "GLOBAL" || !crate::routes::AWS_REGIONS.contains(&atlas) {
        return None;
    }
    Some(atlas.to_ascii_lowercase().replace('_', "-"))
}
