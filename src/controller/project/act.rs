//! The writes of a ProjectEncryption pass, each one a decision asked for, with the Event that tells
//! of it. Nothing here decides what to write. Every Atlas write goes through [`Pass::write`], which
//! under `managementPolicy: Observe` adds it to the plan instead of sending it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, ResourceExt};
use serde::de::DeserializeOwned;

use crate::atlas::{
    AtlasError, AwsIamRole, AwsKmsPatch, EarPrivateEndpoint, EncryptionAtRest, EncryptionAtRestPatch, Write,
};
use crate::aws::{KeyRef, Region, RoleArn};
use crate::controller::observing::Plan;
use crate::controller::{Error, NORMAL, Result, WARNING, Written, apply_status};
use crate::crd::{ManagementPolicy, ProjectEncryption};
use crate::status::{DesiredCondition, reasons};

use super::decide::{self, KeyChange};
use super::messages;
use super::observe::{Access, Pass};
use super::record::Findings;

impl Pass<'_> {
    pub fn observing(&self) -> bool {
        self.pe.spec.management_policy == ManagementPolicy::Observe
    }

    /// Where this pass's writes go: to Atlas, or under `Observe` into the findings' plan.
    fn plan<'f>(&self, found: &'f mut Findings) -> Plan<'f> {
        Plan {
            observing: self.observing(),
            into: &mut found.planned,
        }
    }

    /// Sends `write` to Atlas, or under `Observe` plans it instead.
    async fn write<T: DeserializeOwned>(
        &self,
        access: &Access,
        found: &mut Findings,
        write: Write,
    ) -> Result<Written<T>, AtlasError> {
        self.plan(found)
            .write(&self.ctx.atlas, &access.creds, write)
            .await
    }

    /// Authorizes `role` for `role_arn`. `Ok(None)` means Atlas cannot assume the IAM role yet (the
    /// findings then hold the trust policy it needs), or, when observing, that the authorization is
    /// planned.
    pub async fn authorize(
        &self,
        access: &Access,
        found: &mut Findings,
        role: AwsIamRole,
        role_arn: RoleArn,
        key: &KeyRef,
    ) -> Result<Option<AwsIamRole>> {
        let write = Write::authorize_aws_role(&access.group.id, &role.role_id, &role_arn);
        let authorized = match self.write(access, found, write).await {
            Ok(Written::Planned) => return Ok(None),
            Ok(Written::Made(authorized)) => Ok(authorized),
            Err(e) => Err(e),
        };
        found.role = Some(role.clone());
        match authorized {
            Ok(authorized) => {
                let note = messages::role_authorized_event(&authorized, &role_arn);
                self.ctx
                    .event(self.pe, NORMAL, reasons::AUTHORIZED, "AuthorizeRole", note);
                Ok(Some(authorized))
            }
            Err(e) if decide::authorization_awaits_trust(&e) => {
                self.request_trust_policy(found, &role, &role_arn, key);
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
        let create = Write::create_aws_role(&access.group.id);
        // Observing plans the POST and creates nothing, so it records no intent either.
        if !self.observing() {
            self.record_role_creation_intent(found).await?;
        }
        let role: AwsIamRole = match self.write(access, found, create).await? {
            Written::Made(role) => role,
            Written::Planned => return Ok(()),
        };
        // Recorded in the status this pass ends with: nothing between here and that write can fail,
        // and should the write itself fail (or the operator stop), the next pass finds the role unused,
        // unauthorized and created after the intent in Atlas's list and adopts it rather than create a
        // second.
        found.role = Some(role.clone());
        let note = messages::role_created(&role);
        self.ctx
            .event(self.pe, NORMAL, reasons::ROLE_CREATED, "CreateRole", note);
        let role_arn = role_arn.ok_or(Error::InvalidObject)?;
        self.request_trust_policy(found, &role, role_arn, key);
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
    fn request_trust_policy(
        &self,
        found: &mut Findings,
        role: &AwsIamRole,
        role_arn: &RoleArn,
        key: &KeyRef,
    ) {
        let request = decide::trust_requested(role, role_arn, key);
        if decide::trust_newly_requested(self.previous) {
            let note = messages::trust_instructions(role, role_arn, key);
            self.ctx.event(
                self.pe,
                WARNING,
                reasons::ROLE_ASSIGNED_TRUST_POLICY,
                "AuthorizeRole",
                note,
            );
        }
        found.role_authorized = Some(request);
    }

    /// Sends the key PATCH (with `enabledForSearchNodes` when that differs), and tells of a drift
    /// corrected or a key rotated.
    pub async fn assign_key(
        &self,
        access: &Access,
        found: &mut Findings,
        body: &EncryptionAtRestPatch<'_>,
        change: KeyChange,
        key: &KeyRef,
    ) -> Result<Written<EncryptionAtRest>, AtlasError> {
        let write = Write::patch_encryption_at_rest(&access.group.id, body);
        let updated = match self.write(access, found, write).await? {
            Written::Made(updated) => updated,
            Written::Planned => return Ok(Written::Planned),
        };
        let (reason, action, note) = match (change, body.aws_kms) {
            (KeyChange::DriftCorrected, Some(patch)) => (
                reasons::DRIFT_CORRECTED,
                "AssignKey",
                messages::drift_corrected(patch),
            ),
            (KeyChange::Rotated, _) => (reasons::KEY_ROTATED, "RotateKey", messages::key_rotated(key)),
            _ => return Ok(Written::Made(updated)),
        };
        self.ctx.event(self.pe, NORMAL, reason, action, note);
        Ok(Written::Made(updated))
    }

    pub fn tell_rotation_due(&self, key: &KeyRef) {
        let note = messages::rotation_due_event(key, &self.pe.spec.rotation.max_key_age);
        self.ctx
            .event(self.pe, WARNING, reasons::KEY_ROTATION_DUE, "CheckKeyAge", note);
    }

    /// A retired key that snapshots need became unusable in KMS: the Warning Event names it, the snapshot
    /// count and the command that makes it usable again.
    pub fn tell_previous_key_at_risk(&self, at_risk: &DesiredCondition) {
        let note = at_risk.message.clone();
        self.ctx
            .event(self.pe, WARNING, &at_risk.reason, "CheckRetiredKeys", note);
    }

    /// Tells that Atlas's control-plane CIDRs in the key's region changed: a key policy restricting
    /// `aws:SourceIp` must allow the new ones.
    pub fn tell_control_plane_changed(&self, region: Region, cidrs: &[String]) {
        let note = messages::control_plane_changed(region, &self.previous.control_plane_cidrs, cidrs);
        self.ctx.event(
            self.pe,
            NORMAL,
            reasons::CONTROL_PLANE_CIDRS_CHANGED,
            "ReadControlPlaneAddresses",
            note,
        );
    }

    /// Asks Atlas for a private endpoint to AWS KMS in `region`.
    pub async fn create_private_endpoint(
        &self,
        access: &Access,
        found: &mut Findings,
        region: Region,
    ) -> Result<Written<EarPrivateEndpoint>, AtlasError> {
        let write = Write::create_ear_private_endpoint(&access.group.id, region);
        let created: EarPrivateEndpoint = match self.write(access, found, write).await? {
            Written::Made(created) => created,
            Written::Planned => return Ok(Written::Planned),
        };
        let note = messages::private_endpoint_created(&created);
        self.ctx.event(
            self.pe,
            NORMAL,
            reasons::PRIVATE_ENDPOINT_CREATED,
            "CreatePrivateEndpoint",
            note,
        );
        Ok(Written::Made(created))
    }

    /// Asks Atlas to delete a private endpoint to AWS KMS.
    pub async fn delete_private_endpoint(
        &self,
        access: &Access,
        found: &mut Findings,
        endpoint: &EarPrivateEndpoint,
    ) -> Result<Written<()>, AtlasError> {
        let write = Write::delete_ear_private_endpoint(&access.group.id, &endpoint.id);
        let plan = self.plan(found);
        if let Written::Planned = plan
            .write_unanswered(&self.ctx.atlas, &access.creds, write)
            .await?
        {
            return Ok(Written::Planned);
        }
        let note = messages::private_endpoint_deleted(endpoint);
        self.ctx.event(
            self.pe,
            NORMAL,
            reasons::PRIVATE_ENDPOINT_DELETED,
            "DeletePrivateEndpoint",
            note,
        );
        Ok(Written::Made(()))
    }

    /// Turns project encryption off in Atlas.
    pub async fn turn_off(&self, access: &Access, found: &mut Findings) -> Result<Written<()>, AtlasError> {
        let off = AwsKmsPatch::disable();
        let body = EncryptionAtRestPatch {
            aws_kms: Some(&off),
            ..Default::default()
        };
        let write = Write::patch_encryption_at_rest(&access.group.id, &body);
        match self.write::<EncryptionAtRest>(access, found, write).await? {
            Written::Made(_) => {}
            Written::Planned => return Ok(Written::Planned),
        }
        let note = messages::encryption_turned_off().to_string();
        self.ctx.event(
            self.pe,
            NORMAL,
            reasons::ENCRYPTION_DISABLED,
            "DisableEncryption",
            note,
        );
        Ok(Written::Made(()))
    }
}
