//! Every read of a ClusterEncryption pass: its project from the cache, the project's credentials, the
//! cluster in Atlas, and what the reconciler remembers.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt};

use super::decide::Want;
use super::memory::Memory;
use crate::atlas::{AtlasError, Cluster, Credentials};
use crate::controller::wake::{self, Look};
use crate::controller::{Context, CredentialsError, Reconciler};
use crate::crd::{ClusterEncryption, ClusterEncryptionStatus, ProjectEncryption};

/// What every stage of one pass over a ClusterEncryption works with.
pub struct Pass<'a> {
    pub ctx: &'a Context,
    /// What the cluster reconciler remembers between passes.
    pub memory: &'a Memory,
    pub ce: &'a ClusterEncryption,
    /// Its ProjectEncryption, as the reflector store held it when the pass began.
    project: Option<Arc<ProjectEncryption>>,
    pub namespace: &'a str,
    /// The status the pass started from: what the operator last published, never what this pass wrote.
    pub previous: &'a ClusterEncryptionStatus,
    pub now: Timestamp,
    /// Why the object is looked at now.
    pub look: Look,
    pub want: Want<'a>,
    /// The key of this object in the reconciler's memory.
    pub memory_key: String,
}

impl<'a> Pass<'a> {
    pub fn new(
        reconciler: &'a Reconciler<Memory>,
        ce: &'a ClusterEncryption,
        project: Option<Arc<ProjectEncryption>>,
        namespace: &'a str,
        previous: &'a ClusterEncryptionStatus,
        look: Look,
        deleting: bool,
    ) -> Self {
        Pass {
            ctx: &reconciler.ctx,
            memory: &reconciler.state,
            ce,
            project,
            namespace,
            previous,
            now: reconciler.ctx.now(),
            look,
            want: Want {
                cluster: &ce.spec.cluster_name,
                project: &ce.spec.project_encryption_ref.name,
                aws: ce.spec.enabled && !deleting,
                deleting,
            },
            memory_key: wake::gate_key(ce),
        }
    }

    pub fn project(&self) -> Option<Arc<ProjectEncryption>> {
        self.project.clone()
    }

    /// What a person controls on this object: touching any of it asks for a fresh look at Atlas.
    pub fn owned_fingerprint(&self) -> u64 {
        let meta = &self.ce.metadata;
        wake::fingerprint((meta.generation, &meta.labels, &meta.annotations))
    }

    /// How long ago this cluster was found converged on the key, with what a person controls unchanged.
    pub fn verified_ago(&self) -> Option<Duration> {
        self.memory
            .verified_ago(&self.memory_key, self.owned_fingerprint())
    }

    /// The project's Atlas credentials: read anew on a fresh look, unless `ahead` (a read made ahead of
    /// need, which stale credentials can only make fail, harmlessly) or the look follows a read ahead
    /// with this object unchanged since (its project turned Ready: no person's edit to honour);
    /// otherwise as read moments ago.
    pub async fn credentials(
        &self,
        project: &ProjectEncryption,
        ahead: bool,
    ) -> Result<Credentials, CredentialsError> {
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), self.namespace);
        let name = &project.spec.credentials_ref.name;
        let after_read_ahead = self
            .memory
            .was_read_ahead(&self.memory_key, self.owned_fingerprint());
        let reuse = ahead || after_read_ahead || self.look != Look::Fresh;
        self.ctx
            .credentials
            .atlas(&secrets, self.namespace, name, reuse)
            .await
    }

    /// The cluster: as read ahead of the project's Ready moments ago, or read now.
    pub async fn cluster_now(&self, creds: &Credentials, group_id: &str) -> Result<Cluster, AtlasError> {
        let fresh_for = super::decide::READ_AHEAD_FRESH;
        match self
            .memory
            .take_read_ahead(&self.memory_key, self.owned_fingerprint(), fresh_for)
        {
            Some(cluster) => Ok(cluster),
            None => self.cluster(creds, group_id).await,
        }
    }

    pub async fn cluster(&self, creds: &Credentials, group_id: &str) -> Result<Cluster, AtlasError> {
        self.ctx
            .atlas
            .get_cluster(creds, group_id, self.want.cluster)
            .await
    }
}

/// The referenced ProjectEncryption, from the reflector store (no API call).
pub(crate) fn find_project(ce: &ClusterEncryption, ctx: &Context) -> Option<Arc<ProjectEncryption>> {
    ctx.projects
        .get(ce.namespace().as_deref(), &ce.spec.project_encryption_ref.name)
}
