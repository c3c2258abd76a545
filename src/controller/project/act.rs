//! The writes of a ProjectEncryption pass, each one a decision asked for, with the Event that tells
//! of it. Nothing here decides what to write.

use crate::atlas::{AtlasError, AwsIamRole, AwsKmsPatch, EncryptionAtRest, EncryptionAtRestPatch};
use crate::aws::{KeyRef, RoleArn};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, ResourceExt};

use crate::controller::{Error, NORMAL, Result, WARNING, apply_status};
use crate::crd::ProjectEncryption;
use crate::status::{DesiredCondition, reasons};

use super::decide::{self, KeyChange};
use super::messages;
use super::observe::{Access, Pass};
use super::record::Findings;

impl Pass<'_> {
    /// Authorizes `role` for `role_arn`. `Ok(None)` means Atlas cannot assume the IAM role yet; the
    /// findings then hold the trust policy it needs.
    pub async fn authorize(
        &self,
        access: &Access,
        found: &mut Findings,
        role: AwsIamRole,
        role_arn: RoleArn,
        key: &KeyRef,
    ) -> Result<Option<AwsIamRole>> {
        found.role = Some(role.clone());
        let authorized = self
            .ctx
            .atlas
            .authorize_aws_role(&access.creds, &access.group.id, &role.role_id, &role_arn)
            .await;
        match authorized {
            Ok(authorized) => {
                let note = messages::role_authorized_event(&authorized, &role_arn);
                self.ctx
                    .event(self.pe, NORMAL, reasons::AUTHORIZED, "AuthorizeRole", note)
                    .await;
                Ok(Some(authorized))
            }
            Err(e) if decide::authorization_awaits_trust(&e) => {
                self.request_trust_policy(found, &role, &role_arn, key).await;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Creates an Atlas role for `role_arn`. Its external ID was minted just now, so no IAM role can
    /// trust it yet: the findings ask for the trust policy rather than send an authorization Atlas must
    /// refuse.
    pub async fn create_role(
        &self,
        access: &Access,
        found: &mut Findings,
        role_arn: Option<&RoleArn>,
        key: &KeyRef,
    ) -> Result<()> {
        self.record_role_creation_intent(found).await?;
        let role = self
            .ctx
            .atlas
            .create_aws_role(&access.creds, &access.group.id)
            .await?;
        // Recorded in the status this pass ends with: nothing between here and that write can fail,
        // and should the write itself fail (or the operator stop), the next pass finds the role unused,
        // unauthorized and created after the intent in Atlas's list and adopts it rather than create a
        // second.
        found.role = Some(role.clone());
        let note = messages::role_created(&role);
        self.ctx
            .event(self.pe, NORMAL, reasons::ROLE_CREATED, "CreateRole", note)
            .await;
        let role_arn = role_arn.ok_or(Error::InvalidObject)?;
        self.request_trust_policy(found, &role, role_arn, key).await;
        Ok(())
    }

    /// Writes the intent to create a role to the status, a write of its own before Atlas is asked: after
    /// a crash between the creation and its record, only a role created after the intent is taken as
    /// the operator's own.
    async fn record_role_creation_intent(&self, found: &mut Findings) -> Result<()> {
        let mut intent = self.previous.clone();
        intent.role_creation_requested_at = Some(Time(self.now));
        let namespace = self.pe.namespace().ok_or(Error::InvalidObject)?;
        let api: Api<ProjectEncryption> = Api::namespaced(self.ctx.client.clone(), &namespace);
        apply_status(&api, self.pe, Some(self.previous), &intent).await?;
        found.role_creation_requested_at = Some(self.now);
        Ok(())
    }

    /// Atlas cannot assume the IAM role yet: the condition (and, the first time, a Warning Event) says
    /// which trust and permission policies it needs.
    async fn request_trust_policy(
        &self,
        found: &mut Findings,
        role: &AwsIamRole,
        role_arn: &RoleArn,
        key: &KeyRef,
    ) {
        let request = decide::trust_requested(role, role_arn, key);
        if decide::trust_newly_requested(self.previous) {
            let note = messages::trust_instructions(role, role_arn, key);
            self.ctx
                .event(
                    self.pe,
                    WARNING,
                    reasons::ROLE_ASSIGNED_TRUST_POLICY,
                    "AuthorizeRole",
                    note,
                )
                .await;
        }
        found.role_authorized = Some(request);
    }

    /// Sends the key PATCH (with `enabledForSearchNodes` when that differs), and tells of a drift
    /// corrected or a key rotated.
    pub async fn assign_key(
        &self,
        access: &Access,
        body: &EncryptionAtRestPatch<'_>,
        change: KeyChange,
        key: &KeyRef,
    ) -> Result<EncryptionAtRest, AtlasError> {
        let updated = self
            .ctx
            .atlas
            .patch_encryption_at_rest(&access.creds, &access.group.id, body)
            .await?;
        let (reason, action, note) = match (change, body.aws_kms) {
            (KeyChange::DriftCorrected, Some(patch)) => (
                reasons::DRIFT_CORRECTED,
                "AssignKey",
                messages::drift_corrected(patch),
            ),
            (KeyChange::Rotated, _) => (reasons::KEY_ROTATED, "RotateKey", messages::key_rotated(key)),
            _ => return Ok(updated),
        };
        self.ctx.event(self.pe, NORMAL, reason, action, note).await;
        Ok(updated)
    }

    pub async fn tell_rotation_due(&self, key: &KeyRef) {
        let note = messages::rotation_due_event(key, &self.pe.spec.rotation.max_key_age);
        self.ctx
            .event(self.pe, WARNING, reasons::KEY_ROTATION_DUE, "CheckKeyAge", note)
            .await;
    }

    /// A retired key that snapshots need became unusable in KMS: the Warning Event names it, the snapshot
    /// count and the command that makes it usable again.
    pub async fn tell_previous_key_at_risk(&self, at_risk: &DesiredCondition) {
        let note = at_risk.message.clone();
        self.ctx
            .event(self.pe, WARNING, &at_risk.reason, "CheckRetiredKeys", note)
            .await;
    }

    /// Turns project encryption off in Atlas.
    pub async fn turn_off(&self, access: &Access) -> Result<(), AtlasError> {
        self.ctx
            .atlas
            .update_encryption_at_rest(&access.creds, &access.group.id, &AwsKmsPatch::disable())
            .await?;
        let note = messages::encryption_turned_off().to_string();
        self.ctx
            .event(
                self.pe,
                NORMAL,
                reasons::ENCRYPTION_DISABLED,
                "DisableEncryption",
                note,
            )
            .await;
        Ok(())
    }
}
