//! The words of the ClusterEncryption reconciler: every message its conditions, outcomes and Events
//! carry. Decisions pick a message; none is built in control flow.

use crate::atlas::{AtlasError, EncryptionProvider};

use super::decide::Tier;

pub fn project_missing(project: &str, namespace: &str) -> String {
    format!(
        "ProjectEncryption {project} does not exist in namespace {namespace}: create it (this object waits for it), or recreate this ClusterEncryption with the right spec.projectEncryptionRef.name"
    )
}

pub fn project_ready(project: &str) -> String {
    format!("ProjectEncryption {project} is Ready and Atlas reports its key valid")
}

pub fn project_disabling(project: &str) -> String {
    format!(
        "ProjectEncryption {project} is turning Encryption at Rest off (spec.awsKms.enabled: false, or deleted with deletionPolicy: Disable)"
    )
}

pub fn project_disabling_blocked(project: &str, cluster: &str) -> String {
    format!(
        "{}, but this ClusterEncryption still wants cluster {cluster} encrypted, which blocks it: set spec.enabled: false here so the cluster turns off first, or set spec.awsKms.enabled: true on the project again",
        project_disabling(project)
    )
}

pub fn project_stalled(project: &str, stall: &str) -> String {
    format!(
        "ProjectEncryption {project} is stalled ({stall}) and needs a person: kubectl describe projectencryption {project} says what to do; this object acts again once it is Ready"
    )
}

pub fn waiting_for_project(project: &str) -> String {
    format!(
        "waiting for ProjectEncryption {project} to be Ready with a valid key: kubectl describe projectencryption {project} says what it waits for"
    )
}

pub fn project_unresolved(project: &str) -> String {
    format!("ProjectEncryption {project} has not resolved its Atlas project yet")
}

pub fn project_credentials(project: &str, problem: &impl std::fmt::Display) -> String {
    format!("the credentials of ProjectEncryption {project}: {problem}")
}

pub fn encrypted(cluster: &str) -> String {
    format!("cluster {cluster} is encrypted with the project's AWS KMS key")
}

pub fn not_using_key(cluster: &str, provider: EncryptionProvider) -> String {
    format!("cluster {cluster} does not use the project's AWS KMS key (encryptionAtRestProvider {provider})")
}

pub fn updating(
    cluster: &str,
    state: Option<&str>,
    want: EncryptionProvider,
    now: EncryptionProvider,
) -> String {
    format!(
        "cluster {cluster} is {}; waiting for it to be IDLE with encryptionAtRestProvider {want} (now {now})",
        state.unwrap_or("in an unknown state"),
    )
}

/// The cluster as a tier, for a sentence: "an M0 cluster", "a Flex cluster".
pub fn tier_phrase(tier: &Tier) -> String {
    match tier {
        Tier::Flex => "a Flex cluster".to_string(),
        Tier::Serverless => "a Serverless instance".to_string(),
        Tier::Shared => "a shared-tier (M0/M2/M5) cluster".to_string(),
        Tier::Unknown => "a cluster of unknown tier".to_string(),
        // "an M0", said "an em-zero"; any other tier name starts with a consonant sound.
        Tier::Named(name) if name.starts_with(['M', 'A', 'E', 'I', 'O', 'U']) => format!("an {name} cluster"),
        Tier::Named(name) => format!("a {name} cluster"),
    }
}

pub fn unsupported_tier(cluster: &str, tier: &Tier) -> String {
    format!(
        "cluster {cluster} is {}: Atlas allows customer-managed keys only on dedicated M10 or larger clusters (not M0/M2/M5, Flex or Serverless). Scale it to a dedicated M10+ tier, or delete this ClusterEncryption",
        tier_phrase(tier)
    )
}

pub fn off_by_tier(cluster: &str, tier: &Tier) -> String {
    format!(
        "cluster {cluster} is {}, which cannot use the project's key",
        tier_phrase(tier)
    )
}

pub fn paused(cluster: &str) -> String {
    format!(
        "cluster {cluster} is paused, and Atlas refuses changes to paused clusters: resume it in Atlas; the operator retries by itself"
    )
}

pub fn other_provider(cluster: &str, provider: Option<EncryptionProvider>) -> String {
    let provider = provider.map_or("another provider", EncryptionProvider::as_str);
    format!(
        "cluster {cluster} uses {provider} key management, and Atlas switches providers only through NONE: set its encryptionAtRestProvider to NONE in Atlas first if it should use the project's AWS KMS key"
    )
}

pub fn cluster_gone(cluster: &str) -> String {
    format!("cluster {cluster} no longer exists in Atlas")
}

pub fn cluster_not_found(cluster: &str, group_id: &str) -> String {
    format!(
        "Atlas project {group_id} has no cluster {cluster}: create it, or recreate this ClusterEncryption with the right spec.clusterName (it cannot change). The operator looks again every minute"
    )
}

pub fn legacy_backup(cluster: &str, error: &AtlasError) -> String {
    format!(
        "cluster {cluster} uses legacy backup, and Atlas allows customer-managed keys only with Cloud Backup: move the cluster to Cloud Backup in Atlas; the operator retries by itself. Atlas said: {error}"
    )
}

pub fn project_not_valid_in_atlas(error: &AtlasError) -> String {
    format!("Atlas does not consider the project's AWS KMS configuration enabled and valid yet: {error}")
}

pub fn credentials_refused(group_id: &str, error: &AtlasError) -> String {
    format!(
        "Atlas refused the ProjectEncryption's credentials for this cluster: {error}. Give the key Project Owner (or Project Cluster Manager) on project {group_id}"
    )
}

pub fn provider_set(cluster: &str, from: EncryptionProvider, to: EncryptionProvider) -> String {
    format!("cluster {cluster}: encryptionAtRestProvider {from} → {to}")
}

pub const DELETING: &str = "deleting: ";

pub fn release() -> String {
    format!(
        "; to delete without turning encryption off, set spec.deletionPolicy: Retain, or remove the finalizer {}",
        crate::crd::FINALIZER
    )
}
