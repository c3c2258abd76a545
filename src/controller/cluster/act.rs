//! The writes of a ClusterEncryption pass: the provider PATCH with its Event, and what the reconciler
//! remembers about the cluster. Nothing here decides what to write.

use std::time::Duration;

use crate::atlas::{AtlasError, Cluster, Credentials, EncryptionProvider, Write};
use crate::controller::observing::Plan;
use crate::controller::{NORMAL, Written};
use crate::status::reasons;

use super::decide::ClusterStep;
use super::messages;
use super::observe::Pass;

impl Pass<'_> {
    /// Sends `provider` for the cluster, and tells of the change; when `observing` (the project's
    /// `managementPolicy: Observe`), plans it instead.
    pub async fn set_provider(
        &self,
        creds: &Credentials,
        group_id: &str,
        before: &Cluster,
        provider: EncryptionProvider,
        plan: Plan<'_>,
    ) -> Result<Written<Cluster>, AtlasError> {
        let name = self.want.cluster;
        let write = Write::set_cluster_encryption_provider(group_id, name, provider)?;
        let updated = match plan.write(&self.ctx.atlas, creds, write).await? {
            Written::Made(updated) => updated,
            Written::Planned => return Ok(Written::Planned),
        };
        let note = messages::provider_set(name, before.provider(), provider);
        self.ctx.event(
            self.ce,
            NORMAL,
            reasons::PROVIDER_SET,
            "SetEncryptionProvider",
            note,
        );
        Ok(Written::Made(updated))
    }

    /// Remembers what `plan` found: a cluster converged on the key needs no Atlas read until its
    /// resync, and an update's clock runs while the cluster is busy. Returns how long it has been
    /// updating.
    pub fn remember(&self, plan: &ClusterStep) -> Duration {
        let memory = self.memory;
        let key = &self.memory_key;
        if *plan == ClusterStep::Converged && self.want.aws {
            memory.mark_verified(key, self.owned_fingerprint());
        } else {
            memory.forget_verified(key);
        }
        if *plan != ClusterStep::AwaitIdle {
            memory.update_over(key);
            return Duration::ZERO;
        }
        memory.updating_for(key)
    }

    /// Our PATCH started an update: its polls are timed from now.
    pub fn remember_update_started(&self) {
        self.memory.update_started(&self.memory_key);
    }
}
