//! ProjectEncryption driver: finalizer → credentials → project → role handshake → KMS preflight → key
//! assignment → validity and rotation → status.
//!
//! Each step observes Atlas first and writes only what `plan` says differs, so a converged object costs
//! reads only. Waiting (for a trust policy, for clusters to turn off) is an `Ok` with a condition and a
//! growing requeue; an `Err` is a failure that backs off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::plan::{self, KeyStep, RoleStep};
use super::{
    Context, Error, NORMAL, Result, Step, USER_ACTION_REQUEUE, WARNING, credentials, patient_delay,
    waited_since,
};
use crate::atlas::{AtlasError, AwsIamRole, AwsKmsPatch, Credentials, EncryptionProvider, Group};
use crate::aws::{KeyRef, Region, RoleArn};
use crate::crd::{
    AtlasRoleStatus, DeletionPolicy, KeyStatus, PreviousKeyStatus, ProjectEncryption, ProjectEncryptionStatus,
};
use crate::status::{self, Outcome, reasons};

pub async fn reconcile(pe: Arc<ProjectEncryption>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = pe.namespace().ok_or(Error::InvalidObject)?;
    let api: Api<ProjectEncryption> = Api::namespaced(ctx.client.clone(), &namespace);

    let gate = &ctx.project_gate;
    let gate_key = pe.uid().unwrap_or_default();
    if pe.meta().deletion_timestamp.is_some() {
        gate.forget(&gate_key);
        return cleanup(&pe, &ctx, &api, &namespace).await;
    }
    let Some(pe) = super::ensure_finalizer(&api, pe).await? else {
        return Ok(Action::await_change());
    };
    let fingerprint = gate_fingerprint(pe.as_ref());
    if let Some(wait) = gate.wait(&gate_key, fingerprint, Instant::now()) {
        // Our own status write, or nothing the user controls changed: the look already scheduled stands.
        return Ok(Action::requeue(wait));
    }

    let now = ctx.now();
    let mut status = pe.status.clone().unwrap_or_default();
    let result = drive(&pe, &ctx, &namespace, &mut status, now).await;
    let next = result.as_ref().map(|step| step.requeue).ok();
    let action = super::finish(pe.as_ref(), pe.status.as_ref(), &ctx, &api, status, result, now).await;
    match (&action, next) {
        (Ok(_), Some(after)) => gate.finished(&gate_key, fingerprint, Instant::now(), after),
        (Err(e), _) => {
            gate.failed(&gate_key, fingerprint, Instant::now(), e.retry_after());
        }
        (Ok(_), None) => gate.forget(&gate_key),
    }
    action
}

/// What a person can change to make the operator look again before the next resync: the spec (its
/// generation), labels and annotations (`kubectl annotate` to force a look).
fn gate_fingerprint(pe: &ProjectEncryption) -> u64 {
    plan::fingerprint((
        pe.metadata.generation,
        &pe.metadata.labels,
        &pe.metadata.annotations,
    ))
}

async fn drive(
    pe: &ProjectEncryption,
    ctx: &Context,
    namespace: &str,
    status: &mut ProjectEncryptionStatus,
    now: Timestamp,
) -> Result<Step> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let creds = match credentials::atlas_credentials(&secrets, &pe.spec.credentials_ref.name).await {
        Ok(creds) => creds,
        Err(e) if e.is_transient() => return Err(Error::Credentials(e)),
        Err(e) => {
            return Ok(Step::new(
                Outcome::stalled(reasons::CREDENTIALS_INVALID, e.to_string()),
                USER_ACTION_REQUEUE,
            ));
        }
    };

    let group = match resolve_project(pe, ctx, &creds, status).await {
        Ok(group) => group,
        Err(e) => return stalled_on_access(e),
    };
    status.project_id = Some(group.id.clone());
    status.project_name = Some(group.name.clone());

    if let Some(owner) = claimed_by_other(pe, ctx, &group) {
        return Ok(Step::new(
            Outcome::stalled(
                reasons::DUPLICATE_PROJECT,
                format!(
                    "Atlas project {} ({}) is already managed by ProjectEncryption {owner}; delete this one or point it at another project",
                    group.name, group.id
                ),
            ),
            USER_ACTION_REQUEUE,
        ));
    }

    if !pe.spec.aws_kms.enabled {
        return disable(pe, ctx, &creds, &group, status, now).await;
    }
    enable(pe, ctx, &secrets, &creds, &group, status, now)
        .await
        .or_else(stalled_on_atlas_refusal)
}

/// Atlas refusals that a person must act on become Stalled; everything else stays an error to retry.
fn stalled_on_access(error: Error) -> Result<Step> {
    match &error {
        Error::Atlas(AtlasError::Unauthorized { .. }) => Ok(Step::new(
            Outcome::stalled(
                reasons::CREDENTIALS_REJECTED,
                format!(
                    "Atlas refused the credentials: {error}. Check the Secret holds a valid key with Project Owner on this project"
                ),
            ),
            USER_ACTION_REQUEUE,
        )),
        Error::Atlas(e) if e.status() == Some(403) => Ok(Step::new(
            Outcome::stalled(
                reasons::CREDENTIALS_REJECTED,
                format!(
                    "the Atlas credentials have no access to this project: {error}. Grant the key Project Owner on it"
                ),
            ),
            USER_ACTION_REQUEUE,
        )),
        // NOT_IN_GROUP is Atlas's 401 for a project that does not exist or that this key cannot see:
        // the same fix as a 404, not an outage to retry.
        Error::Atlas(e) if e.is_not_found() || e.is_error_code("NOT_IN_GROUP") => Ok(Step::new(
            Outcome::stalled(
                reasons::PROJECT_NOT_FOUND,
                format!("the Atlas project was not found or the key cannot see it: {error}"),
            ),
            USER_ACTION_REQUEUE,
        )),
        _ => Err(error),
    }
}

fn stalled_on_atlas_refusal(error: Error) -> Result<Step> {
    match &error {
        Error::Atlas(e) if matches!(e.status(), Some(400 | 409)) => Ok(Step::new(
            Outcome::stalled(reasons::ATLAS_REFUSED, format!("{error}")),
            USER_ACTION_REQUEUE,
        )),
        _ => stalled_on_access(error),
    }
}

/// The Atlas project, read once and then taken from status while the spec still names the same one.
async fn resolve_project(
    pe: &ProjectEncryption,
    ctx: &Context,
    creds: &Credentials,
    status: &ProjectEncryptionStatus,
) -> Result<Group> {
    let cached = match (&status.project_id, &status.project_name) {
        (Some(id), Some(name)) => Some(Group {
            id: id.clone(),
            name: name.clone(),
            ..Default::default()
        }),
        _ => None,
    };
    if let Some(group) = cached {
        let same = match (&pe.spec.project_id, &pe.spec.project_name) {
            (Some(id), _) => *id == group.id,
            (None, Some(name)) => *name == group.name,
            (None, None) => false,
        };
        if same {
            return Ok(group);
        }
    }
    let group = match (&pe.spec.project_id, &pe.spec.project_name) {
        (Some(id), _) => ctx.atlas.get_project(creds, id).await?,
        (None, Some(name)) => ctx.atlas.get_project_by_name(creds, name).await?,
        (None, None) => return Err(Error::InvalidObject),
    };
    Ok(group)
}

/// Another ProjectEncryption that manages the same Atlas project and came first (by creation time,
/// then namespace/name), so two objects never fight over one project.
fn claimed_by_other(pe: &ProjectEncryption, ctx: &Context, group: &Group) -> Option<String> {
    let me = (
        pe.metadata.creation_timestamp.clone(),
        pe.namespace(),
        pe.name_any(),
    );
    ctx.projects
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

#[allow(clippy::too_many_arguments)]
async fn enable(
    pe: &ProjectEncryption,
    ctx: &Context,
    secrets: &Api<Secret>,
    creds: &Credentials,
    group: &Group,
    status: &mut ProjectEncryptionStatus,
    now: Timestamp,
) -> Result<Step> {
    let generation = pe.metadata.generation;
    let spec = &pe.spec.aws_kms;
    let (Some(key), Ok(region)) = (
        spec.customer_master_key_id
            .as_deref()
            .and_then(|k| KeyRef::parse(k).ok()),
        Region::parse(&spec.region),
    ) else {
        // Admission refuses these; an object stored before the rules existed lands here.
        return Ok(Step::new(
            Outcome::stalled(
                reasons::KEY_REJECTED,
                "spec.awsKms.customerMasterKeyId or region is not valid",
            ),
            USER_ACTION_REQUEUE,
        ));
    };
    let role_arn = spec.role_arn.as_deref().and_then(|a| RoleArn::parse(a).ok());

    // KMS preflight, before anything is written to Atlas.
    let report = if pe.spec.kms_preflight.enabled {
        let aws_creds = match &pe.spec.kms_preflight.credentials_ref {
            Some(reference) => match credentials::aws_credentials(secrets, &reference.name).await {
                Ok(c) => Some(c),
                Err(e) if e.is_transient() => return Err(Error::Credentials(e)),
                Err(e) => {
                    return Ok(Step::new(
                        Outcome::stalled(reasons::CREDENTIALS_INVALID, e.to_string()),
                        USER_ACTION_REQUEUE,
                    ));
                }
            },
            None => None,
        };
        let checked =
            ctx.kms
                .check(&key, &region, aws_creds.as_ref())
                .await
                .and_then(|report| match &role_arn {
                    Some(arn) => report.require_reachable_by(&key, arn).map(|()| report),
                    None => Ok(report),
                });
        match checked {
            Ok(report) => Some(report),
            Err(failure) => {
                status::set_condition(
                    &mut status.conditions,
                    reasons::KEY_VALID,
                    false,
                    failure.reason(),
                    &failure.message(),
                    generation,
                    now,
                );
                let outcome = if failure.is_transient() {
                    Step::new(
                        Outcome::progressing(failure.reason(), failure.message()),
                        Duration::from_secs(30),
                    )
                } else {
                    Step::new(
                        Outcome::stalled(failure.reason(), failure.message()),
                        USER_ACTION_REQUEUE,
                    )
                };
                return Ok(outcome);
            }
        }
    } else {
        None
    };
    let multi_region = report
        .as_ref()
        .map(|r| r.multi_region)
        .unwrap_or(key.is_multi_region());
    let (mr_reason, mr_message) = if multi_region {
        (
            reasons::IS_MULTI_REGION_KEY,
            "the key is a multi-Region key".to_string(),
        )
    } else {
        (reasons::SINGLE_REGION_KEY, "the key is a single-Region key; a multi-Region key keeps data readable through a regional AWS outage".to_string())
    };
    status::set_condition(
        &mut status.conditions,
        reasons::MULTI_REGION_KEY,
        multi_region,
        mr_reason,
        &mr_message,
        generation,
        now,
    );

    // A role this operator created and recorded, waiting for the customer's trust policy: try the
    // authorization first. While the trust is missing that one refused call is the whole pass (no
    // reads), and once it succeeds the roles need not be listed again. A role gone from Atlas is found
    // (or replaced) by the list below.
    let mut pre_authorized = None;
    if let Some((role, arn)) = plan::pending_authorization(
        spec.atlas_role_id.as_deref(),
        role_arn.as_ref(),
        status.role.as_ref(),
    ) {
        match authorize(pe, ctx, creds, group, status, role, arn, &key, now).await {
            Ok(Some(role)) => pre_authorized = Some(role),
            Ok(None) => return Ok(awaiting_trust(status, now)),
            Err(Error::Atlas(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }

    let ear = ctx.atlas.get_encryption_at_rest(creds, &group.id).await?;
    let current = ear.aws_kms.as_ref();
    if current.is_some_and(|c| c.is_enabled() && c.access_key_id.is_some())
        && !spec.acknowledge_irreversible_switch_to_role
    {
        return Ok(Step::new(
            Outcome::stalled(
                reasons::ROLE_SWITCH_NOT_ACKNOWLEDGED,
                "the project uses deprecated access-key credentials for AWS KMS; switching it to a role cannot be undone in Atlas. Set spec.awsKms.acknowledgeIrreversibleSwitchToRole: true to proceed",
            ),
            USER_ACTION_REQUEUE,
        ));
    }

    // Role handshake. While Atlas reports the key valid with the role recorded as authorized, that role
    // works and the list of roles is not read again.
    let recorded = status.role.as_ref().map(|r| r.role_id.clone());
    let assigned_role_id = status.key.as_ref().and(recorded.clone());
    let atlas_reports_valid = current.is_some_and(|c| c.is_enabled() && c.valid == Some(true));
    let in_use = pre_authorized.or_else(|| {
        plan::recorded_role_in_use(
            spec.atlas_role_id.as_deref(),
            role_arn.as_ref(),
            status.role.as_ref(),
            atlas_reports_valid,
        )
    });
    let role_step = match in_use {
        Some(role) => RoleStep::Use(role),
        None => {
            let roles = ctx.atlas.list_aws_roles(creds, &group.id).await?;
            plan::role_step(
                spec.atlas_role_id.as_deref(),
                role_arn.as_ref(),
                recorded.as_deref(),
                &roles,
            )
        }
    };
    let role = match role_step {
        RoleStep::Use(role) => Some(role),
        RoleStep::NamedRoleMissing { role_id } => {
            return Ok(role_stalled(
                status,
                generation,
                now,
                reasons::ROLE_NOT_FOUND,
                format!(
                    "Atlas has no cloud provider access role {role_id} in this project: fix spec.awsKms.atlasRoleId or use roleArn to let the operator create one"
                ),
            ));
        }
        RoleStep::NamedRoleUnauthorized { role_id } => {
            return Ok(role_stalled(
                status,
                generation,
                now,
                reasons::ROLE_NOT_AUTHORIZED,
                format!(
                    "Atlas role {role_id} is not authorized: set spec.awsKms.roleArn to the IAM role it should assume"
                ),
            ));
        }
        RoleStep::Create => {
            let role = ctx.atlas.create_aws_role(creds, &group.id).await?;
            // Recorded in the status this pass ends with: nothing between here and that write can
            // fail, and should the write itself fail, the next pass finds the role unused and
            // unauthorized in Atlas's list and adopts it rather than create a second.
            record_role(status, &role);
            ctx.event(pe, NORMAL, reasons::ROLE_CREATED, "CreateRole", format!(
                "created Atlas cloud provider access role {}; its IAM role must trust {} with external ID {}",
                role.role_id,
                role.atlas_aws_account_arn.as_deref().unwrap_or("?"),
                role.atlas_assumed_role_external_id.as_deref().unwrap_or("?"),
            ))
            .await;
            // Its external ID was minted just now, so no IAM role can trust it yet: ask for the trust
            // policy rather than send an authorization Atlas must refuse.
            match role_arn {
                Some(arn) => {
                    request_trust_policy(pe, ctx, status, &role, &arn, &key, now).await;
                    None
                }
                None => return Err(Error::InvalidObject),
            }
        }
        RoleStep::Authorize { role, role_arn } => {
            authorize(pe, ctx, creds, group, status, role, role_arn, &key, now).await?
        }
    };
    let Some(role) = role else {
        return Ok(awaiting_trust(status, now));
    };
    record_role(status, &role);
    status::set_condition(
        &mut status.conditions,
        reasons::ROLE_AUTHORIZED,
        true,
        reasons::AUTHORIZED,
        &format!(
            "Atlas assumes {}",
            role.iam_assumed_role_arn.as_deref().unwrap_or("the IAM role")
        ),
        generation,
        now,
    );

    // Key assignment.
    let step = plan::key_step(
        &key,
        region,
        &role.role_id,
        spec.require_private_networking,
        current,
        assigned_role_id.as_deref(),
    );
    let ear = match step {
        KeyStep::InPlace => ear,
        KeyStep::Patch { patch, rotation } => {
            let drift =
                status.key.as_ref().is_some_and(|k| {
                    KeyRef::parse(&k.customer_master_key_id).is_ok_and(|k| k.same_key(&key))
                }) && current.is_some();
            match ctx
                .atlas
                .update_encryption_at_rest(creds, &group.id, &patch)
                .await
            {
                Ok(updated) => {
                    if drift {
                        ctx.event(pe, NORMAL, reasons::DRIFT_CORRECTED, "AssignKey", format!(
                            "Atlas's AWS KMS settings differed from the spec (changed outside the operator); restored {}", describe_patch(&patch)
                        )).await;
                    }
                    if rotation && !drift {
                        ctx.event(pe, NORMAL, reasons::KEY_ROTATED, "RotateKey", format!(
                            "customer master key rotated to {key}; the previous key must stay usable while snapshots still use it"
                        )).await;
                    }
                    updated
                }
                Err(e) if e.error_code().is_some_and(is_iam_propagation) => {
                    return Ok(awaiting_trust(status, now));
                }
                Err(e) if matches!(e.status(), Some(400 | 404 | 409)) => {
                    let message = format!("Atlas refused the key: {e}");
                    status::set_condition(
                        &mut status.conditions,
                        reasons::KEY_VALID,
                        false,
                        reasons::KEY_REJECTED,
                        &message,
                        generation,
                        now,
                    );
                    return Ok(Step::new(
                        Outcome::stalled(reasons::KEY_REJECTED, message),
                        USER_ACTION_REQUEUE,
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    record_key(status, &key, region, multi_region, now);
    let valid = ear.aws_kms.as_ref().and_then(|k| k.valid);
    if let Some(k) = status.key.as_mut() {
        k.valid = valid;
    }

    // Clusters and the snapshots still holding previous keys. Atlas's cluster list is read only while a
    // retired key may still be in snapshots; otherwise the ClusterEncryptions' own status (each read
    // from Atlas by its reconciler) keeps clustersUsingKey current, and clusters nobody manages keep
    // their entry from the last list.
    if status.previous_keys.iter().all(|p| p.safe_to_delete) {
        let managed = managed_clusters(pe, ctx);
        status.clusters_using_key = plan::clusters_using_key(&status.clusters_using_key, &managed);
    } else {
        let clusters = ctx.atlas.list_clusters(creds, &group.id).await?;
        let mut using: Vec<String> = clusters
            .iter()
            .filter(|c| c.provider() == EncryptionProvider::Aws)
            .map(|c| c.name.clone())
            .collect();
        using.sort();
        status.clusters_using_key = using;
        count_snapshots_on_previous_keys(ctx, creds, &group.id, &clusters, status).await?;
    }

    let rotation_due = rotation_due(pe, status, now);
    if rotation_due {
        if !status::is_true(&status.conditions, reasons::KEY_ROTATION_DUE) {
            ctx.event(pe, WARNING, reasons::KEY_ROTATION_DUE, "CheckKeyAge", format!(
                "key {key} is older than rotation.maxKeyAge ({}): create a new KMS key and set spec.awsKms.customerMasterKeyId", pe.spec.rotation.max_key_age
            )).await;
        }
        status::set_condition(
            &mut status.conditions,
            reasons::KEY_ROTATION_DUE,
            true,
            reasons::ROTATION_DUE,
            &format!(
                "the key is older than {}: rotate it by setting a new customerMasterKeyId",
                pe.spec.rotation.max_key_age
            ),
            generation,
            now,
        );
    } else {
        status::set_condition(
            &mut status.conditions,
            reasons::KEY_ROTATION_DUE,
            false,
            reasons::WITHIN_MAX_AGE,
            "",
            generation,
            now,
        );
    }

    match valid {
        Some(true) => {
            status::set_condition(
                &mut status.conditions,
                reasons::KEY_VALID,
                true,
                reasons::KEY_ASSIGNED,
                "Atlas can encrypt and decrypt with the key",
                generation,
                now,
            );
            status::set_condition(
                &mut status.conditions,
                reasons::DEGRADED,
                false,
                reasons::RECONCILED,
                "",
                generation,
                now,
            );
            let clusters = status.clusters_using_key.len();
            Ok(Step::new(
                Outcome::ready(
                    reasons::RECONCILED,
                    format!("Encryption at Rest uses key {key}; {clusters} cluster(s) use it"),
                ),
                ctx.resync_period(),
            ))
        }
        Some(false) => {
            let message = format!(
                "Atlas reports key {key} invalid: check the key is enabled and not pending deletion, the IAM role {} still allows kms:Encrypt, kms:Decrypt and kms:DescribeKey, and any aws:SourceIp condition allows Atlas's control-plane IPs",
                role.iam_assumed_role_arn.as_deref().unwrap_or("?")
            );
            // The Stalled outcome below raises the Warning Event as the object enters it.
            status::set_condition(
                &mut status.conditions,
                reasons::KEY_VALID,
                false,
                reasons::KEY_INVALID,
                &message,
                generation,
                now,
            );
            status::set_condition(
                &mut status.conditions,
                reasons::DEGRADED,
                true,
                reasons::KEY_INVALID,
                &message,
                generation,
                now,
            );
            Ok(Step::new(
                Outcome::stalled(reasons::KEY_INVALID, message),
                USER_ACTION_REQUEUE,
            ))
        }
        None => {
            status::set_condition(
                &mut status.conditions,
                reasons::KEY_VALID,
                false,
                reasons::AWAITING_VALIDATION,
                "Atlas has not reported the key valid yet",
                generation,
                now,
            );
            Ok(Step::new(
                Outcome::progressing(
                    reasons::AWAITING_VALIDATION,
                    "waiting for Atlas to validate the key",
                ),
                Duration::from_secs(15),
            ))
        }
    }
}

/// The Atlas clusters this project's ClusterEncryptions manage, and whether each uses the key (as its
/// status last read it from Atlas).
fn managed_clusters(pe: &ProjectEncryption, ctx: &Context) -> Vec<(String, bool)> {
    ctx.clusters
        .state()
        .into_iter()
        .filter(|c| c.namespace() == pe.namespace() && c.spec.project_encryption_ref.name == pe.name_any())
        .map(|c| {
            let uses = c.status.as_ref().and_then(|s| s.provider.as_deref()) == Some("AWS");
            (c.spec.cluster_name.clone(), uses)
        })
        .collect()
}

/// Atlas says the IAM side is not ready yet: expected for a while after the trust policy is created.
fn is_iam_propagation(code: &str) -> bool {
    matches!(
        code,
        "CANNOT_ASSUME_ROLE" | "CLOUD_PROVIDER_ACCESS_ROLE_NOT_AUTHORIZED" | "INVALID_AWS_CREDENTIALS"
    )
}

fn describe_patch(patch: &AwsKmsPatch) -> String {
    serde_json::to_string(patch).unwrap_or_default()
}

/// Tries to authorize `role` for `role_arn`. `Ok(None)` means Atlas cannot assume the IAM role yet.
#[allow(clippy::too_many_arguments)]
async fn authorize(
    pe: &ProjectEncryption,
    ctx: &Context,
    creds: &Credentials,
    group: &Group,
    status: &mut ProjectEncryptionStatus,
    role: AwsIamRole,
    role_arn: RoleArn,
    key: &KeyRef,
    now: Timestamp,
) -> Result<Option<AwsIamRole>> {
    record_role(status, &role);
    match ctx
        .atlas
        .authorize_aws_role(creds, &group.id, &role.role_id, &role_arn)
        .await
    {
        Ok(authorized) => {
            ctx.event(
                pe,
                NORMAL,
                reasons::AUTHORIZED,
                "AuthorizeRole",
                format!(
                    "Atlas role {} is authorized to assume {role_arn}",
                    authorized.role_id
                ),
            )
            .await;
            Ok(Some(authorized))
        }
        Err(e) if e.error_code().is_some_and(is_iam_propagation) || e.status() == Some(400) => {
            request_trust_policy(pe, ctx, status, &role, &role_arn, key, now).await;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Atlas cannot assume the IAM role yet: the condition (and, the first time, a Warning Event) says which
/// trust and permission policies it needs.
async fn request_trust_policy(
    pe: &ProjectEncryption,
    ctx: &Context,
    status: &mut ProjectEncryptionStatus,
    role: &AwsIamRole,
    role_arn: &RoleArn,
    key: &KeyRef,
    now: Timestamp,
) {
    let first_time = status::find(&status.conditions, reasons::ROLE_AUTHORIZED)
        .is_none_or(|c| c.reason != reasons::AWAITING_TRUST_POLICY);
    let instructions = trust_instructions(role, role_arn, key);
    if first_time {
        ctx.event(
            pe,
            WARNING,
            reasons::ROLE_ASSIGNED_TRUST_POLICY,
            "AuthorizeRole",
            instructions.clone(),
        )
        .await;
    }
    status::set_condition(
        &mut status.conditions,
        reasons::ROLE_AUTHORIZED,
        false,
        reasons::AWAITING_TRUST_POLICY,
        &instructions,
        pe.metadata.generation,
        now,
    );
}

/// What the user must put on their IAM role, in the words `kubectl describe` shows.
fn trust_instructions(role: &AwsIamRole, role_arn: &RoleArn, key: &KeyRef) -> String {
    let principal = role
        .atlas_aws_account_arn
        .as_deref()
        .unwrap_or("<Atlas AWS account ARN>");
    let external_id = role
        .atlas_assumed_role_external_id
        .as_deref()
        .unwrap_or("<external ID>");
    let key_resource = match key {
        KeyRef::Arn(arn) => arn.to_string(),
        KeyRef::Id(id) => format!("arn:aws:kms:*:{}:key/{id}", role_arn.account),
    };
    format!(
        "Atlas cannot assume {role_arn} yet. Give that IAM role this trust policy: {} and this permission policy: {} (for example: aws iam update-assume-role-policy --role-name {} --policy-document file://trust.json). The operator retries by itself.",
        plan::trust_policy(principal, external_id),
        plan::permission_policy(&key_resource),
        role_arn.role_name(),
    )
}

fn awaiting_trust(status: &ProjectEncryptionStatus, now: Timestamp) -> Step {
    let condition = status::find(&status.conditions, reasons::ROLE_AUTHORIZED);
    let since = condition
        .filter(|c| c.status == "False")
        .map(|c| c.last_transition_time.0);
    let message = condition
        .map(|c| c.message.clone())
        .unwrap_or_else(|| "waiting for the IAM role to trust Atlas".to_string());
    Step::new(
        Outcome::progressing(reasons::AWAITING_TRUST_POLICY, message),
        patient_delay(waited_since(since, now), TRUST_FIRST_LOOK),
    )
}

/// The first look for the customer's trust policy after asking for it. Automation that reads the
/// external ID from the status and writes the policy (Terraform, Crossplane, a pipeline) is done
/// within a second or two; a person takes minutes, and each look is then one refused authorization
/// (see `plan::pending_authorization`), its count growing only with the log of the wait.
const TRUST_FIRST_LOOK: Duration = Duration::from_secs(1);

fn role_stalled(
    status: &mut ProjectEncryptionStatus,
    generation: Option<i64>,
    now: Timestamp,
    reason: &str,
    message: String,
) -> Step {
    status::set_condition(
        &mut status.conditions,
        reasons::ROLE_AUTHORIZED,
        false,
        reason,
        &message,
        generation,
        now,
    );
    Step::new(Outcome::stalled(reason, message), USER_ACTION_REQUEUE)
}

fn record_role(status: &mut ProjectEncryptionStatus, role: &AwsIamRole) {
    status.role = Some(AtlasRoleStatus {
        role_id: role.role_id.clone(),
        atlas_aws_account_arn: role.atlas_aws_account_arn.clone(),
        external_id: role.atlas_assumed_role_external_id.clone(),
        iam_role_arn: role.iam_assumed_role_arn.clone(),
        authorized: role.is_authorized(),
        authorized_at: role
            .authorized_date
            .and_then(|d| Timestamp::from_second(d.timestamp()).ok())
            .map(Time),
    });
}

/// Records the key in force; a different key than the recorded one moves the old one to the history.
fn record_key(
    status: &mut ProjectEncryptionStatus,
    key: &KeyRef,
    region: Region,
    multi_region: bool,
    now: Timestamp,
) {
    let same = status
        .key
        .as_ref()
        .is_some_and(|k| KeyRef::parse(&k.customer_master_key_id).is_ok_and(|k| k.same_key(key)));
    if !same {
        if let Some(previous) = status.key.take() {
            retire_key(status, previous.customer_master_key_id, now);
        }
        // A key that comes back from the history is in force again, not retired.
        status
            .previous_keys
            .retain(|p| !KeyRef::parse(&p.customer_master_key_id).is_ok_and(|p| p.same_key(key)));
        status.key = Some(KeyStatus {
            customer_master_key_id: key.to_string(),
            region: region.aws_name().to_string(),
            since: Time(now),
            rotation_due_at: None,
            valid: None,
            multi_region: None,
        });
    }
    if let Some(k) = status.key.as_mut() {
        k.multi_region = Some(multi_region);
        k.region = region.aws_name().to_string();
    }
}

fn retire_key(status: &mut ProjectEncryptionStatus, key: String, now: Timestamp) {
    status.previous_keys.push(PreviousKeyStatus {
        customer_master_key_id: key,
        replaced_at: Time(now),
        snapshots_using_key: 0,
        safe_to_delete: false,
    });
}

fn rotation_due(pe: &ProjectEncryption, status: &mut ProjectEncryptionStatus, now: Timestamp) -> bool {
    let max_age =
        plan::parse_duration(&pe.spec.rotation.max_key_age).unwrap_or(Duration::from_secs(90 * 86400));
    let Some(key) = status.key.as_mut() else {
        return false;
    };
    let due = key
        .since
        .0
        .checked_add(SignedDuration::from_secs(max_age.as_secs() as i64))
        .unwrap_or(Timestamp::MAX);
    key.rotation_due_at = Some(Time(due));
    now >= due
}

/// Counts, per retired key, the snapshots still encrypted with it. Reads snapshots only while some
/// retired key is not yet known to be safe to delete.
async fn count_snapshots_on_previous_keys(
    ctx: &Context,
    creds: &Credentials,
    group_id: &str,
    clusters: &[crate::atlas::Cluster],
    status: &mut ProjectEncryptionStatus,
) -> Result<()> {
    if status.previous_keys.iter().all(|p| p.safe_to_delete) {
        return Ok(());
    }
    let mut key_ids: Vec<String> = Vec::new();
    for cluster in clusters.iter().filter(|c| c.backup_enabled == Some(true)) {
        match ctx.atlas.list_snapshots(creds, group_id, &cluster.name).await {
            Ok(snapshots) => key_ids.extend(snapshots.into_iter().filter_map(|s| s.master_key_uuid)),
            // A cluster without a backup schedule has no snapshots to hold a key.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    for previous in status.previous_keys.iter_mut() {
        let id = KeyRef::parse(&previous.customer_master_key_id)
            .map(|k| k.key_id().to_string())
            .unwrap_or_else(|_| previous.customer_master_key_id.clone());
        let count = key_ids.iter().filter(|k| k.eq_ignore_ascii_case(&id)).count();
        previous.snapshots_using_key = count as u32;
        previous.safe_to_delete = count == 0;
    }
    Ok(())
}

/// `enabled: false`: turn project encryption off once Atlas shows no cluster using it.
async fn disable(
    pe: &ProjectEncryption,
    ctx: &Context,
    creds: &Credentials,
    group: &Group,
    status: &mut ProjectEncryptionStatus,
    now: Timestamp,
) -> Result<Step> {
    let ear = ctx.atlas.get_encryption_at_rest(creds, &group.id).await?;
    if !ear.aws_enabled() {
        if let Some(previous) = status.key.take() {
            retire_key(status, previous.customer_master_key_id, now);
        }
        status.clusters_using_key.clear();
        for type_ in [
            reasons::KEY_VALID,
            reasons::KEY_ROTATION_DUE,
            reasons::DEGRADED,
            reasons::MULTI_REGION_KEY,
        ] {
            status::remove_condition(&mut status.conditions, type_);
        }
        return Ok(Step::new(
            Outcome::ready(
                reasons::ENCRYPTION_DISABLED,
                "Encryption at Rest with AWS KMS is off for this project",
            ),
            ctx.resync_period(),
        ));
    }
    let clusters = ctx.atlas.list_clusters(creds, &group.id).await?;
    let using: Vec<String> = clusters
        .iter()
        .filter(|c| c.provider() == EncryptionProvider::Aws)
        .map(|c| c.name.clone())
        .collect();
    status.clusters_using_key = using.clone();
    if !using.is_empty() {
        return Ok(blocked_by_clusters(pe, ctx, &using, now, status));
    }
    match ctx
        .atlas
        .update_encryption_at_rest(creds, &group.id, &AwsKmsPatch::disable())
        .await
    {
        Ok(_) => {
            ctx.event(
                pe,
                NORMAL,
                reasons::ENCRYPTION_DISABLED,
                "DisableEncryption",
                "Encryption at Rest with AWS KMS turned off for the project".into(),
            )
            .await;
            if let Some(previous) = status.key.take() {
                retire_key(status, previous.customer_master_key_id, now);
            }
            Ok(Step::new(
                Outcome::ready(
                    reasons::ENCRYPTION_DISABLED,
                    "Encryption at Rest with AWS KMS is off for this project",
                ),
                ctx.resync_period(),
            ))
        }
        // A cluster turned on between our read and the PATCH: look again shortly.
        Err(e) if e.is_error_code("CANNOT_DISABLE_ENCRYPTION_AT_REST") => Ok(Step::new(
            Outcome::progressing(
                reasons::DISABLE_BLOCKED_BY_CLUSTERS,
                format!("Atlas refused to disable: {e}"),
            ),
            Duration::from_secs(15),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Clusters still use the key. Those managed by a ClusterEncryption that is turning off will clear by
/// themselves (Progressing); any other needs a person (Stalled), and is named.
fn blocked_by_clusters(
    pe: &ProjectEncryption,
    ctx: &Context,
    using: &[String],
    now: Timestamp,
    status: &ProjectEncryptionStatus,
) -> Step {
    let managed: Vec<String> = ctx
        .clusters
        .state()
        .into_iter()
        .filter(|c| c.namespace() == pe.namespace() && c.spec.project_encryption_ref.name == pe.name_any())
        .filter(|c| !c.spec.enabled || c.meta().deletion_timestamp.is_some())
        .map(|c| c.spec.cluster_name.clone())
        .collect();
    let unmanaged: Vec<&String> = using.iter().filter(|name| !managed.contains(name)).collect();
    if unmanaged.is_empty() {
        let since = status::find(&status.conditions, reasons::READY)
            .filter(|c| c.reason == reasons::DISABLE_BLOCKED_BY_CLUSTERS)
            .map(|c| c.last_transition_time.0);
        return Step::new(
            Outcome::progressing(
                reasons::DISABLE_BLOCKED_BY_CLUSTERS,
                format!(
                    "waiting for clusters {} to turn encryption off before the project can",
                    using.join(", ")
                ),
            ),
            patient_delay(waited_since(since, now), Duration::from_secs(5)).min(Duration::from_secs(30)),
        );
    }
    let names: Vec<&str> = unmanaged.iter().map(|s| s.as_str()).collect();
    Step::new(
        Outcome::stalled(
            reasons::DISABLE_BLOCKED_BY_CLUSTERS,
            format!(
                "clusters {} still use the key, so Atlas cannot turn project encryption off: set a ClusterEncryption with enabled: false for each, or set encryptionAtRestProvider NONE on them in Atlas",
                names.join(", ")
            ),
        ),
        Duration::from_secs(30),
    )
}

/// Deletion: `Retain` lets go at once without calling Atlas; `Disable` turns encryption off first.
async fn cleanup(
    pe: &ProjectEncryption,
    ctx: &Context,
    api: &Api<ProjectEncryption>,
    namespace: &str,
) -> Result<Action> {
    if !pe.finalizers().iter().any(|f| f == crate::crd::FINALIZER) {
        return Ok(Action::await_change());
    }
    if pe.spec.deletion_policy == DeletionPolicy::Retain
        || !pe.spec.aws_kms.enabled
            && pe
                .status
                .as_ref()
                .is_none_or(|s| s.key.is_none() && s.project_id.is_none())
    {
        super::remove_finalizer(api, pe).await?;
        return Ok(Action::await_change());
    }
    let now = ctx.now();
    let mut status = pe.status.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let release = format!(
        "to delete without disabling, set spec.deletionPolicy: Retain, or remove the finalizer {}",
        crate::crd::FINALIZER
    );
    let result = async {
        let creds = match credentials::atlas_credentials(&secrets, &pe.spec.credentials_ref.name).await {
            Ok(creds) => creds,
            Err(e) => {
                return Ok(Step::new(
                    Outcome::stalled(
                        reasons::CREDENTIALS_INVALID,
                        format!("cannot disable encryption: {e}; {release}"),
                    ),
                    USER_ACTION_REQUEUE,
                ));
            }
        };
        let group = match resolve_project(pe, ctx, &creds, &status).await {
            Ok(group) => group,
            Err(e) => {
                return stalled_on_access(e).map(|mut step| {
                    if let Outcome::Stalled { message, .. } = &mut step.outcome {
                        message.push_str(&format!("; {release}"));
                    }
                    step
                });
            }
        };
        disable(pe, ctx, &creds, &group, &mut status, now).await
    }
    .await;
    match result {
        Ok(step) if step.outcome.reason() == reasons::ENCRYPTION_DISABLED => {
            super::remove_finalizer(api, pe).await?;
            Ok(Action::await_change())
        }
        Ok(mut step) => {
            if let Outcome::Progressing { message, .. } | Outcome::Stalled { message, .. } = &mut step.outcome
            {
                message.insert_str(0, "deleting: ");
            }
            super::finish(pe, pe.status.as_ref(), ctx, api, status, Ok(step), now).await
        }
        Err(e) => super::finish(pe, pe.status.as_ref(), ctx, api, status, Err(e), now).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atlas_error(status: u16, code: &str) -> Error {
        let body = format!(r#"{{"detail":"d","error":{status},"errorCode":"{code}","parameters":[]}}"#);
        Error::Atlas(AtlasError::from_response(
            "GET",
            "/groups/byName/{groupName}",
            status,
            body.as_bytes(),
            None,
        ))
    }

    fn stalled_reason(error: Error) -> Option<String> {
        stalled_on_access(error)
            .ok()
            .map(|step| step.outcome.reason().to_string())
    }

    #[test]
    fn an_unknown_or_unreachable_project_stalls_instead_of_retrying() {
        // Atlas answers NOT_IN_GROUP (401) to a key scoped to other projects, GROUP_NOT_FOUND (404) to
        // an organization-wide key: both mean "fix the project or the key's access".
        assert_eq!(
            stalled_reason(atlas_error(401, "NOT_IN_GROUP")).as_deref(),
            Some(reasons::PROJECT_NOT_FOUND)
        );
        assert_eq!(
            stalled_reason(atlas_error(404, "GROUP_NAME_NOT_FOUND")).as_deref(),
            Some(reasons::PROJECT_NOT_FOUND)
        );
        assert_eq!(
            stalled_reason(atlas_error(401, "USER_UNAUTHORIZED")).as_deref(),
            Some(reasons::CREDENTIALS_REJECTED)
        );
        assert_eq!(
            stalled_reason(atlas_error(403, "USER_CANNOT_ACCESS_ORG")).as_deref(),
            Some(reasons::CREDENTIALS_REJECTED)
        );
        assert!(
            stalled_on_access(atlas_error(503, "SERVICE_UNAVAILABLE")).is_err(),
            "an outage is retried"
        );
    }
}
