//! Every read of a ProjectEncryption pass: the Kubernetes caches and Secrets, KMS, and Atlas. Staged:
//! each stage is read only once the decisions before it ask for it (the role list only while the role
//! is unknown or a check of the role in force is due, snapshots only while a retired key may still be
//! in one).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Resource, ResourceExt};

use super::decide::{self, KeyHistory, RoleStep, Target};
use super::memory::Memory;
use crate::atlas::lane::{self, Lane};
use crate::atlas::{
    AtlasError, AwsIamRole, AwsKmsConfig, Cluster, Credentials, EarPrivateEndpoint, EncryptionAtRest,
    EncryptionProvider, Group,
};
use crate::aws::{KeyRef, Region};
use crate::controller::wake::{self, Look};
use crate::controller::{Context, CredentialsError, Error, Result, credentials};
use crate::crd::{ClusterEncryption, PreviousKeyStatus, ProjectEncryption, ProjectEncryptionStatus};
use crate::kms::{KeyMaterial, KeyReport, MaterialUnread, PreflightFailure, StaticAwsCredentials};

/// What every stage of one pass over a ProjectEncryption works with.
pub struct Pass<'a> {
    pub ctx: &'a Context,
    /// What the project reconciler remembers between passes.
    pub memory: &'a Memory,
    pub pe: &'a ProjectEncryption,
    pub secrets: Api<Secret>,
    /// The status the pass started from: what the operator last published, never what this pass wrote.
    pub previous: &'a ProjectEncryptionStatus,
    pub now: Timestamp,
    /// Why the object is looked at now.
    pub look: Look,
}

/// The Atlas credentials and project of a pass.
pub struct Access {
    pub creds: Credentials,
    pub group: Group,
}

impl Pass<'_> {
    pub async fn atlas_credentials(&self) -> Result<Credentials, CredentialsError> {
        let namespace = self.pe.namespace().unwrap_or_default();
        let name = &self.pe.spec.credentials_ref.name;
        let reuse = self.look != Look::Fresh;
        self.ctx
            .credentials
            .atlas(&self.secrets, &namespace, name, reuse)
            .await
    }

    /// The Atlas project. A `projectId` names one project for good, so it is taken from status while
    /// the spec names the same id; a `projectName` is resolved on every fresh look and every resync, so
    /// a project deleted and recreated under the same name is followed, but not again on the polls of a
    /// wait under way (the trust policy, validation), where nothing a person controls changed.
    pub async fn project(&self, creds: &Credentials) -> Result<Group> {
        let spec = &self.pe.spec;
        if let (Some(id), Some(name)) = (&self.previous.project_id, &self.previous.project_name) {
            let same = spec.project_id.as_ref().is_some_and(|wanted| wanted == id)
                || self.look == Look::FollowUp && spec.project_name.as_ref() == Some(name);
            if same {
                return Ok(Group {
                    id: id.clone(),
                    name: name.clone(),
                    ..Default::default()
                });
            }
        }
        match (&spec.project_id, &spec.project_name) {
            (Some(id), _) => self.project_by_id(creds, id).await,
            (None, Some(name)) => Ok(self.ctx.atlas.get_project_by_name(creds, name).await?),
            (None, None) => Err(Error::InvalidObject),
        }
    }

    /// Another ProjectEncryption that manages the same Atlas project and came first (by creation time,
    /// then namespace/name), so two objects never fight over one project.
    pub fn claimed_by_other(&self, group: &Group) -> Option<String> {
        let pe = self.pe;
        let me = (
            pe.metadata.creation_timestamp.clone(),
            pe.namespace(),
            pe.name_any(),
        );
        self.ctx
            .projects
            .state()
            .into_iter()
            .filter(|other| other.uid() != pe.uid() && other.meta().deletion_timestamp.is_none())
            .filter(|other| {
                let status = other.status.as_ref();
                other.spec.project_id.as_deref() == Some(&group.id)
                    || status.and_then(|s| s.project_id.as_deref()) == Some(&group.id)
                    || (other.spec.project_name.as_deref() == Some(&group.name)
                        && other.namespace() == pe.namespace())
            })
            .filter(|other| {
                (
                    other.metadata.creation_timestamp.clone(),
                    other.namespace(),
                    other.name_any(),
                ) < me
            })
            .map(|other| format!("{}/{}", other.namespace().unwrap_or_default(), other.name_any()))
            .next()
    }

    /// The AWS credentials the KMS preflight uses: the spec's Secret, or the default chain (`None`).
    pub async fn preflight_credentials(&self) -> Result<Option<StaticAwsCredentials>, CredentialsError> {
        match &self.pe.spec.kms_preflight.credentials_ref {
            Some(reference) => credentials::aws_credentials(&self.secrets, &reference.name)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    pub async fn key_in_kms(
        &self,
        target: &Target,
        aws: Option<&StaticAwsCredentials>,
    ) -> Result<KeyReport, PreflightFailure> {
        self.ctx.kms.check(&target.key, &target.region, aws).await
    }

    /// The age of the key's material, as KMS tells (see [`crate::kms::KmsPreflight::material`]).
    pub async fn key_material(
        &self,
        target: &Target,
        aws: Option<&StaticAwsCredentials>,
    ) -> Result<KeyMaterial, MaterialUnread> {
        self.ctx.kms.material(&target.key, &target.region, aws).await
    }

    /// The retired keys snapshots need, each as one DescribeKey finds it (in the region its ARN names,
    /// else the key in force's).
    pub async fn retired_keys_in_kms(
        &self,
        needed: Vec<PreviousKeyStatus>,
        region: Region,
        aws: Option<&StaticAwsCredentials>,
    ) -> Vec<(PreviousKeyStatus, Result<KeyReport, PreflightFailure>)> {
        let mut seen = Vec::with_capacity(needed.len());
        for retired in needed {
            let described = match KeyRef::parse(&retired.customer_master_key_id) {
                Ok(key) => {
                    let region = match &key {
                        KeyRef::Arn(arn) => arn.region,
                        KeyRef::Id(_) => region,
                    };
                    self.ctx.kms.check(&key, &region, aws).await
                }
                Err(_) => continue,
            };
            seen.push((retired, described));
        }
        seen
    }

    /// Atlas's outbound control-plane CIDRs in `region`, from the operator's one read; `None` before it.
    pub fn control_plane_cidrs(&self, region: Region) -> Option<Vec<String>> {
        self.ctx.control_plane.outbound_cidrs(region)
    }

    pub async fn encryption_at_rest(&self, access: &Access) -> Result<EncryptionAtRest> {
        Ok(self
            .ctx
            .atlas
            .get_encryption_at_rest(&access.creds, &access.group.id)
            .await?)
    }

    /// Atlas's Encryption at Rest private endpoints to AWS KMS of the project.
    pub async fn ear_private_endpoints(&self, access: &Access) -> Result<Vec<EarPrivateEndpoint>> {
        Ok(self
            .ctx
            .atlas
            .list_ear_private_endpoints(&access.creds, &access.group.id)
            .await?)
    }

    /// The role stage: the recorded role while Atlas, just read, shows it working; otherwise Atlas's
    /// list of roles decides.
    pub async fn role_step(
        &self,
        access: &Access,
        target: &Target,
        current: Option<&AwsKmsConfig>,
        pre_authorized: Option<AwsIamRole>,
    ) -> Result<RoleStep> {
        let spec = &self.pe.spec.aws_kms;
        let atlas_reports_valid = current.is_some_and(|c| c.is_enabled() && c.valid == Some(true));
        let in_use = pre_authorized.or_else(|| {
            decide::recorded_role_in_use(
                spec.atlas_role_id.as_deref(),
                target.role_arn.as_ref(),
                self.previous.role.as_ref(),
                atlas_reports_valid,
            )
        });
        if let Some(role) = in_use {
            return Ok(RoleStep::Use(role));
        }
        let roles = self
            .ctx
            .atlas
            .list_aws_roles(&access.creds, &access.group.id)
            .await?;
        Ok(decide::role_step(
            spec.atlas_role_id.as_deref(),
            target.role_arn.as_ref(),
            self.previous.role.as_ref().map(|r| r.role_id.as_str()),
            self.previous.role_creation_requested_at.as_ref().map(|t| t.0),
            &roles,
        ))
    }

    /// A project named by id. Its name is for the status only, so it is looked up on a resync of the
    /// converged project, with budget to spare, never on the way to Ready: in a wave of new projects
    /// the lookups spent one call in twenty of a budget the handshakes and cluster toggles were waiting
    /// for. Every call of the pass names the project by id, and one that does not exist fails the first
    /// of them as it would fail the lookup (`PROJECT_NOT_FOUND` either way).
    async fn project_by_id(&self, creds: &Credentials, id: &str) -> Result<Group> {
        let unnamed = || Group {
            id: id.to_string(),
            ..Default::default()
        };
        if self.look != Look::Routine {
            return Ok(unnamed());
        }
        let lookup = lane::within(Lane::Spare, self.ctx.atlas.get_project(creds, id)).await;
        match lookup {
            Err(AtlasError::NoSpareBudget { .. }) => Ok(unnamed()),
            lookup => Ok(lookup?),
        }
    }

    /// How long ago Atlas last showed which role is in force for this project.
    pub fn role_in_force_known_ago(&self) -> Option<std::time::Duration> {
        self.memory.role_in_force_known_ago(&wake::gate_key(self.pe))
    }

    pub fn role_in_force_known_now(&self) {
        self.memory.role_in_force_known_now(&wake::gate_key(self.pe));
    }

    /// How long this process has seen the project await its customer's trust policy.
    pub fn trust_awaited_for(&self) -> std::time::Duration {
        self.memory.trust_awaited_for(&wake::gate_key(self.pe))
    }

    /// Atlas can assume the role: a later wait for a trust policy starts its own clock.
    pub fn trust_in_place(&self) {
        self.memory.trust_in_place(&wake::gate_key(self.pe));
    }

    /// The role Atlas's encryption settings use now (the role list's `featureUsages`); only read while
    /// encryption is on, since turning it on sends the role anyway.
    pub async fn role_in_force(&self, access: &Access, ear: &EncryptionAtRest) -> Result<Option<String>> {
        if !ear.aws_enabled() {
            return Ok(None);
        }
        let roles = self
            .ctx
            .atlas
            .list_aws_roles(&access.creds, &access.group.id)
            .await?;
        Ok(decide::role_in_force(&roles))
    }

    /// The clusters stage. Atlas's cluster list is read only while a retired key may still be in
    /// snapshots (and then the snapshots too); otherwise the ClusterEncryptions' own status (each read
    /// from Atlas by its reconciler) keeps `clustersUsingKey` current, and clusters nobody manages keep
    /// their entry from the last list.
    pub async fn clusters(&self, access: &Access, history: &KeyHistory) -> Result<ClustersSeen> {
        if history.all_retired_safe() {
            let managed: Vec<(String, bool)> = self
                .clusters_of_project()
                .iter()
                .map(|c| {
                    (
                        c.spec.cluster_name.clone(),
                        c.status.as_ref().and_then(|s| s.provider()) == Some(EncryptionProvider::Aws),
                    )
                })
                .collect();
            return Ok(ClustersSeen {
                using_key: decide::clusters_using_key(&self.previous.clusters_using_key, &managed),
                snapshot_key_ids: None,
            });
        }
        let (creds, group_id) = (&access.creds, &access.group.id);
        let clusters = self.ctx.atlas.list_clusters(creds, group_id).await?;
        let mut using_key = using_key(&clusters);
        using_key.sort();
        let mut key_ids: Vec<String> = Vec::new();
        for cluster in clusters.iter().filter(|c| c.backup_enabled == Some(true)) {
            key_ids.extend(self.snapshot_key_ids(access, cluster).await?);
        }
        Ok(ClustersSeen {
            using_key,
            snapshot_key_ids: Some(key_ids),
        })
    }

    /// The key ids of every snapshot of one cluster: its replica-set snapshots and, unless it is a
    /// replica set, its sharded-cluster snapshots, every page of each. Any failure but "none there" fails
    /// the pass, so a retired key is never called safe to delete on a partial count.
    async fn snapshot_key_ids(&self, access: &Access, cluster: &Cluster) -> Result<Vec<String>> {
        let (atlas, creds, group_id) = (&self.ctx.atlas, &access.creds, &access.group.id);
        let mut lists = vec![atlas.list_snapshots(creds, group_id, &cluster.name).await];
        if cluster.may_have_sharded_snapshots() {
            lists.push(atlas.list_sharded_snapshots(creds, group_id, &cluster.name).await);
        }
        let mut key_ids = Vec::new();
        for listed in lists {
            match listed {
                Ok(snapshots) => key_ids.extend(snapshots.into_iter().filter_map(|s| s.master_key_uuid)),
                // A cluster without a backup schedule (or of the other topology) has none there.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(key_ids)
    }

    /// The clusters of the project that use its key, as Atlas lists them (for turning encryption off).
    pub async fn clusters_using_key(&self, access: &Access) -> Result<Vec<String>> {
        let clusters = self
            .ctx
            .atlas
            .list_clusters(&access.creds, &access.group.id)
            .await?;
        Ok(using_key(&clusters))
    }

    /// The ClusterEncryptions of this project, from the cache.
    pub fn clusters_of_project(&self) -> Vec<Arc<ClusterEncryption>> {
        self.ctx.clusters_of(self.pe)
    }

    /// The Atlas clusters of this project's ClusterEncryptions that are turning encryption off.
    pub fn clusters_turning_off(&self) -> Vec<String> {
        self.clusters_of_project()
            .iter()
            .filter(|c| !c.spec.enabled || c.meta().deletion_timestamp.is_some())
            .map(|c| c.spec.cluster_name.clone())
            .collect()
    }
}

/// What the clusters stage found.
pub struct ClustersSeen {
    pub using_key: Vec<String>,
    /// The key ids of the project's snapshots, when they were read.
    pub snapshot_key_ids: Option<Vec<String>>,
}

fn using_key(clusters: &[crate::atlas::Cluster]) -> Vec<String> {
    clusters
        .iter()
        .filter(|c| c.provider() == EncryptionProvider::Aws)
        .map(|c| c.name.clone())
        .collect()
}
