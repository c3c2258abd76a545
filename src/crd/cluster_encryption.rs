// NB: each `printcolumn(..)` repeats `type_ = ..` by design; clippy takes the repeats for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{DeletionPolicy, LocalObjectReference, PlannedChange, conditions_schema};

/// Switches Encryption at Rest with the project's AWS KMS key on (or off) for one Atlas cluster, in the
/// order Atlas requires: only once the project's key is in place, and off before the project turns off.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "encryption.atlasops.dev",
    version = "v1alpha1",
    kind = "ClusterEncryption",
    namespaced,
    status = "ClusterEncryptionStatus",
    shortname = "ce",
    category = "atlas",
    category = "encryption",
    doc = "Encryption at Rest for one MongoDB Atlas cluster, using its project's ProjectEncryption key.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterName"),
    printcolumn(name = "Provider", type_ = "string", json_path = ".status.provider"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.stateName"),
    printcolumn(name = "Tier", type_ = "string", json_path = ".status.tier"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Project",
        type_ = "string",
        json_path = ".spec.projectEncryptionRef.name",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEncryptionSpec {
    /// The ProjectEncryption, in this namespace, of the cluster's Atlas project.
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("projectEncryptionRef cannot change: create a new ClusterEncryption for a cluster of another project"))]
    pub project_encryption_ref: LocalObjectReference,

    /// The Atlas cluster name.
    #[x_kube(
        validation = Rule::new("self.matches('^[a-zA-Z0-9][a-zA-Z0-9-]{0,63}$')")
            .message("clusterName must be an Atlas cluster name: up to 64 letters, digits and hyphens, starting with a letter or digit"),
        validation = Rule::new("self == oldSelf")
            .message("clusterName cannot change: create a new ClusterEncryption for another cluster"),
    )]
    pub cluster_name: String,

    /// Whether the cluster uses the project's key (`encryptionAtRestProvider: AWS`) or not (`NONE`).
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// What happens in Atlas when this object is deleted: `Retain` (default) leaves the cluster encrypted,
    /// and the object carries no finalizer (deleting it needs nothing from the operator); `Disable`
    /// switches it to `NONE` first, held by a finalizer from its first write.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_true() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEncryptionStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling` and `Stalled` (kstatus), plus `ProjectReady`.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// The Atlas project id of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,

    /// The cluster's `encryptionAtRestProvider` as Atlas reports it (`AWS` or `NONE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,

    /// The cluster's `stateName` (`IDLE`, `UPDATING`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_name: Option<String>,

    /// The cluster's instance size (the smallest of its electable specs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,

    /// Whether the cluster is paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,

    /// While the ProjectEncryption is under `managementPolicy: Observe`, the Atlas write the operator
    /// would make for this cluster. Empty when managing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planned_changes: Vec<PlannedChange>,
}

impl ClusterEncryptionStatus {
    /// The cluster's `encryptionAtRestProvider` as last read from Atlas, typed.
    pub fn provider(&self) -> Option<crate::atlas::EncryptionProvider> {
        self.provider
            .as_deref()
            .map(crate::atlas::EncryptionProvider::from_name)
    }
}
