//! Table-driven tests of the ProjectEncryption decisions: no runtime, no I/O. Between them and the
//! ClusterEncryption's, every reason of README.md's troubleshooting table that a decision can produce
//! is produced here.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::atlas::{AwsIamRole, AwsKmsConfig, AwsKmsPatch};
use crate::aws::{KeyRef, Region, RoleArn};
use crate::controller::testing::{atlas_error, kind};
use crate::crd::KeyAgeSource;
use crate::crd::{AtlasRoleStatus, AwsKmsSpec, KeyStatus, PreviousKeyStatus, ProjectEncryptionStatus};
use crate::kms::{AutomaticRotation, KeyMaterial, KeyReport, MaterialUnread, PreflightFailure};
use crate::status::reasons;

const ARN: &str = "arn:aws:iam::123456789012:role/atlas-kms";
const KEY: &str = "arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn role(id: &str, authorized_for: Option<&str>, created: i64) -> AwsIamRole {
    AwsIamRole {
        role_id: id.to_string(),
        iam_assumed_role_arn: authorized_for.map(str::to_string),
        authorized_date: authorized_for.map(|_| Utc.timestamp_opt(created + 10, 0).unwrap()),
        created_date: Some(Utc.timestamp_opt(created, 0).unwrap()),
        ..Default::default()
    }
}

fn arn() -> RoleArn {
    RoleArn::parse(ARN).unwrap()
}

fn recorded(authorized: bool) -> AtlasRoleStatus {
    AtlasRoleStatus {
        role_id: "r1".into(),
        atlas_aws_account_arn: Some("arn:aws:iam::536727724300:root".into()),
        external_id: Some("ext".into()),
        iam_role_arn: Some(ARN.into()),
        authorized,
        authorized_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap(),
        )),
    }
}

#[test]
fn the_recorded_role_is_reused_only_while_authorized_for_the_spec_and_the_key_valid() {
    let ok = recorded(true);
    let role = recorded_role_in_use(None, Some(&arn()), Some(&ok), true).unwrap();
    assert_eq!(role.role_id, "r1");
    assert_eq!(role.iam_assumed_role_arn.as_deref(), Some(ARN));
    assert!(role.is_authorized());
    assert_eq!(
        role_step(None, Some(&arn()), Some("r1"), None, std::slice::from_ref(&role)),
        RoleStep::Use(role.clone())
    );
    assert!(recorded_role_in_use(None, Some(&arn()), Some(&ok), false).is_none());
    assert!(recorded_role_in_use(None, Some(&arn()), Some(&recorded(false)), true).is_none());
    assert!(recorded_role_in_use(None, Some(&arn()), None, true).is_none());
    let other = RoleArn::parse("arn:aws:iam::123456789012:role/other").unwrap();
    assert!(recorded_role_in_use(None, Some(&other), Some(&ok), true).is_none());
    assert!(recorded_role_in_use(Some("r1"), None, Some(&ok), true).is_some());
    assert!(recorded_role_in_use(Some("r2"), None, Some(&ok), true).is_none());
}

#[test]
fn only_our_unauthorized_recorded_role_is_authorized_without_a_list() {
    let (role, role_arn) = pending_authorization(None, Some(&arn()), Some(&recorded(false))).unwrap();
    assert_eq!(role.role_id, "r1");
    assert_eq!(role.atlas_assumed_role_external_id.as_deref(), Some("ext"));
    assert!(!role.is_authorized());
    assert_eq!(role_arn, arn());
    // The same role listed from Atlas would be authorized for the spec's IAM role too.
    assert_eq!(
        role_step(None, Some(&arn()), Some("r1"), None, std::slice::from_ref(&role)),
        RoleStep::Authorize {
            role: role.clone(),
            role_arn: arn()
        }
    );
    assert!(pending_authorization(None, Some(&arn()), Some(&recorded(true))).is_none());
    assert!(pending_authorization(None, Some(&arn()), None).is_none());
    assert!(pending_authorization(None, None, Some(&recorded(false))).is_none());
    assert!(
        pending_authorization(Some("r1"), Some(&arn()), Some(&recorded(false))).is_none(),
        "a role the user named is checked against Atlas's list"
    );
}

#[test]
fn clusters_using_key_follows_managed_clusters_and_keeps_unmanaged_ones() {
    let previous = vec!["legacy".to_string(), "b".to_string()];
    let managed = vec![
        ("b".to_string(), false),
        ("a".to_string(), true),
        ("c".to_string(), true),
    ];
    assert_eq!(clusters_using_key(&previous, &managed), vec!["a", "c", "legacy"]);
    assert!(clusters_using_key(&[], &[]).is_empty());
}

#[test]
fn creates_a_role_only_when_none_is_usable() {
    assert_eq!(role_step(None, Some(&arn()), None, None, &[]), RoleStep::Create);
    let in_use = AwsIamRole {
        feature_usages: vec![crate::atlas::FeatureUsage {
            feature_type: "EXPORT_SNAPSHOT".into(),
            feature_id: None,
        }],
        ..role("a", None, 1)
    };
    assert_eq!(
        role_step(None, Some(&arn()), None, None, &[in_use]),
        RoleStep::Create
    );
}

#[test]
fn the_recorded_role_wins_so_a_restart_never_creates_a_second() {
    let roles = [role("old", None, 1), role("mine", None, 2)];
    match role_step(None, Some(&arn()), Some("old"), None, &roles) {
        RoleStep::Authorize { role, .. } => assert_eq!(role.role_id, "old"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_an_orphan_created_after_the_operators_intent_is_adopted() {
    // The operator wrote its intent at t=3, then stopped between creating a role and recording it.
    let roles = [role("foreign", None, 1), role("mine", None, 5)];
    match role_step(
        None,
        Some(&arn()),
        None,
        Some(Timestamp::from_second(3).unwrap()),
        &roles,
    ) {
        RoleStep::Authorize { role, role_arn } => {
            assert_eq!(role.role_id, "mine");
            assert_eq!(role_arn, arn());
        }
        other => panic!("{other:?}"),
    }
    // Someone else's pending roles (created before the intent, or with no intent at all) are never
    // adopted: the operator creates its own.
    let foreign = [role("foreign", None, 1), role("also-foreign", None, 2)];
    let intents = [None, Some(Timestamp::from_second(3).unwrap())];
    for intent in intents {
        assert_eq!(
            role_step(None, Some(&arn()), None, intent, &foreign),
            RoleStep::Create,
            "{intent:?}"
        );
    }
    // A role created within the intent's second is the operator's (the status keeps whole seconds).
    let same_second = [role("mine", None, 3)];
    let intent = Some(Timestamp::from_second(3).unwrap() + SignedDuration::from_millis(400));
    assert!(matches!(
        role_step(None, Some(&arn()), None, intent, &same_second),
        RoleStep::Authorize { role, .. } if role.role_id == "mine"
    ));
}

#[test]
fn a_role_authorized_for_the_wanted_arn_is_used_without_a_write() {
    let roles = [
        role("other", Some("arn:aws:iam::123456789012:role/other"), 1),
        role("r", Some(ARN), 2),
    ];
    assert!(
        matches!(role_step(None, Some(&arn()), None, None, &roles), RoleStep::Use(r) if r.role_id == "r")
    );
    assert!(matches!(
        role_step(None, Some(&arn()), Some("r"), None, &roles),
        RoleStep::Use(_)
    ));
}

#[test]
fn a_named_role_is_adopted_as_is() {
    let roles = [role("named", Some("arn:aws:iam::123456789012:role/other"), 1)];
    assert!(matches!(
        role_step(Some("named"), None, None, None, &roles),
        RoleStep::Use(_)
    ));
    assert_eq!(
        role_step(Some("gone"), None, None, None, &roles),
        RoleStep::NamedRoleMissing {
            role_id: "gone".into()
        }
    );
    let unauthorized = [role("named", None, 1)];
    assert_eq!(
        role_step(Some("named"), None, None, None, &unauthorized),
        RoleStep::NamedRoleUnauthorized {
            role_id: "named".into()
        }
    );
    assert!(matches!(
        role_step(Some("named"), Some(&arn()), None, None, &unauthorized),
        RoleStep::Authorize { .. }
    ));
}

fn atlas(key: &str, region: &str) -> AwsKmsConfig {
    AwsKmsConfig {
        enabled: Some(true),
        customer_master_key_id: Some(key.into()),
        region: Some(region.into()),
        valid: Some(true),
        ..Default::default()
    }
}

fn key(text: &str) -> KeyRef {
    KeyRef::parse(text).unwrap()
}

fn region() -> Region {
    Region::parse("eu-west-2").unwrap()
}

/// `key_step` for a key in the test region, without private networking.
fn step_for(key: &KeyRef, role_id: &str, atlas: Option<&AwsKmsConfig>, in_force: RoleInForce<'_>) -> KeyStep {
    key_step(key, region(), role_id, false, atlas, in_force)
}

#[test]
fn first_enable_sends_the_whole_object() {
    let step = step_for(&key(KEY), "r1", None, RoleInForce::Unread);
    let KeyStep::Patch { patch, rotation } = step else {
        panic!()
    };
    assert!(!rotation);
    assert_eq!(patch, AwsKmsPatch::enable(&key(KEY), region(), "r1", false));
    let disabled = AwsKmsConfig {
        enabled: Some(false),
        ..Default::default()
    };
    assert!(matches!(
        step_for(&key(KEY), "r1", Some(&disabled), RoleInForce::Unread),
        KeyStep::Patch { .. }
    ));
}

#[test]
fn equal_state_in_other_spellings_needs_no_write() {
    // Atlas echoes the Atlas region enum and may hold the bare key id: neither is a difference.
    let current = atlas("1234ABCD-12ab-34cd-56ef-1234567890ab", "EU_WEST_2");
    assert_eq!(
        step_for(&key(KEY), "r1", Some(&current), RoleInForce::Read(Some("r1"))),
        KeyStep::InPlace
    );
}

#[test]
fn a_new_key_is_a_rotation_sending_only_the_key() {
    let current = atlas(KEY, "EU_WEST_2");
    let new_key = key("arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ff");
    let KeyStep::Patch { patch, rotation } =
        step_for(&new_key, "r1", Some(&current), RoleInForce::Read(Some("r1")))
    else {
        panic!()
    };
    assert!(rotation);
    assert_eq!(patch, AwsKmsPatch::rotate_key(&new_key));
}

#[test]
fn search_nodes_are_patched_only_when_the_spec_names_a_different_value() {
    let on = crate::crd::SearchNodesSpec { enabled: true };
    let off = crate::crd::SearchNodesSpec { enabled: false };
    // (spec, Atlas, what to send)
    let table = [
        (None, Some(true), None),
        (None, None, None),
        (Some(&on), Some(false), Some(true)),
        (Some(&on), None, Some(true)),
        (Some(&on), Some(true), None),
        (Some(&off), Some(true), Some(false)),
        (Some(&off), Some(false), None),
        (Some(&off), None, None),
    ];
    for (wanted, atlas, send) in table {
        assert_eq!(
            search_nodes_change(wanted, atlas),
            send,
            "{wanted:?} over {atlas:?}"
        );
    }
    // Not read this pass (a role just authorized): the spec's value whenever it names one.
    assert_eq!(search_nodes_unread(Some(&on)), Some(true));
    assert_eq!(search_nodes_unread(Some(&off)), Some(false));
    assert_eq!(search_nodes_unread(None), None);
}

#[test]
fn role_and_networking_changes_are_patched_alone() {
    let current = atlas(KEY, "EU_WEST_2");
    let KeyStep::Patch { patch, rotation } = key_step(
        &key(KEY),
        region(),
        "r2",
        true,
        Some(&current),
        RoleInForce::Read(Some("r1")),
    ) else {
        panic!()
    };
    assert!(!rotation);
    assert_eq!(patch.role_id.as_deref(), Some("r2"));
    assert_eq!(patch.require_private_networking, Some(true));
    assert!(patch.customer_master_key_id.is_none());
}

#[test]
fn the_role_in_force_is_the_one_whose_usage_is_encryption_at_rest() {
    let usage = |feature: &str| crate::atlas::FeatureUsage {
        feature_type: feature.into(),
        feature_id: None,
    };
    let export = AwsIamRole {
        feature_usages: vec![usage("EXPORT_SNAPSHOT")],
        ..role("export", Some(ARN), 1)
    };
    let terraform = AwsIamRole {
        feature_usages: vec![usage("ENCRYPTION_AT_REST")],
        ..role("terraform", Some(ARN), 2)
    };
    assert_eq!(
        role_in_force(&[export.clone(), terraform]).as_deref(),
        Some("terraform")
    );
    assert_eq!(role_in_force(&[export]), None, "legacy access keys use no role");
    assert_eq!(role_in_force(&[]), None);
}

#[test]
fn a_role_other_than_the_one_in_force_is_sent_even_on_takeover() {
    let current = atlas(KEY, "EU_WEST_2");
    for in_force in [None, Some("terraform")] {
        let KeyStep::Patch { patch, rotation } =
            step_for(&key(KEY), "mine", Some(&current), RoleInForce::Read(in_force))
        else {
            panic!("{in_force:?} must move to our role")
        };
        assert!(!rotation);
        assert_eq!(
            patch,
            AwsKmsPatch {
                role_id: Some("mine".into()),
                ..Default::default()
            },
            "{in_force:?}: only the role changes"
        );
    }
    assert_eq!(
        step_for(&key(KEY), "mine", Some(&current), RoleInForce::Read(Some("mine"))),
        KeyStep::InPlace
    );
}

#[test]
fn a_patch_made_without_reading_the_role_in_force_names_ours() {
    let current = atlas(KEY, "EU_WEST_2");
    let new_key = key("arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ff");
    let KeyStep::Patch { patch, rotation } = step_for(&new_key, "mine", Some(&current), RoleInForce::Unread)
    else {
        panic!("a new key is a PATCH")
    };
    assert!(rotation);
    assert_eq!(
        patch,
        AwsKmsPatch {
            role_id: Some("mine".into()),
            ..AwsKmsPatch::rotate_key(&new_key)
        }
    );
    // Nothing else to write: the role alone is no reason to PATCH while it is unread.
    assert_eq!(
        step_for(&key(KEY), "mine", Some(&current), RoleInForce::Unread),
        KeyStep::InPlace
    );
}

#[test]
fn the_role_list_is_read_on_fresh_looks_and_hourly_otherwise() {
    let minute = Duration::from_secs(60);
    // (why the look, how long ago Atlas last showed the role in force, read the list)
    let cases = [
        (Look::Fresh, Some(minute), true),
        (Look::Fresh, None, true),
        (Look::Routine, None, true),
        (Look::Routine, Some(minute), false),
        (Look::FollowUp, Some(minute), false),
        (Look::Routine, Some(ROLE_IN_FORCE_CHECK), true),
        (Look::FollowUp, Some(ROLE_IN_FORCE_CHECK + minute), true),
    ];
    for (look, known_ago, due) in cases {
        assert_eq!(
            role_in_force_check_due(look, known_ago),
            due,
            "{look:?} {known_ago:?}"
        );
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

fn spec(key: Option<&str>, region: &str) -> AwsKmsSpec {
    serde_json::from_value(serde_json::json!({
        "enabled": true, "customerMasterKeyId": key, "region": region, "roleArn": ARN,
    }))
    .unwrap()
}

#[test]
fn the_spec_target_is_parsed_or_refused() {
    let target = super::target(&spec(Some(KEY), "eu-west-2")).unwrap();
    assert_eq!(target.key, key(KEY));
    assert_eq!(target.role_arn, Some(arn()));
    for (key, region) in [
        (Some("not a key"), "eu-west-2"),
        (Some(KEY), "mars-1"),
        (None, "eu-west-2"),
    ] {
        let stop = super::target(&spec(key, region)).unwrap_err();
        assert_eq!(
            kind(&stop),
            ("Stalled", reasons::KEY_REJECTED),
            "{key:?} {region}"
        );
    }
}

type Want = Option<(&'static str, &'static str)>;

#[test]
fn access_errors_map_to_reasons() {
    let cases: [(u16, &str, Want); 6] = [
        (
            401,
            "USER_UNAUTHORIZED",
            Some(("Stalled", reasons::CREDENTIALS_REJECTED)),
        ),
        (
            403,
            "USER_CANNOT_ACCESS_ORG",
            Some(("Stalled", reasons::CREDENTIALS_REJECTED)),
        ),
        (401, "NOT_IN_GROUP", Some(("Stalled", reasons::PROJECT_NOT_FOUND))),
        (
            404,
            "GROUP_NOT_FOUND",
            Some(("Stalled", reasons::PROJECT_NOT_FOUND)),
        ),
        (409, "SOMETHING_NEW", Some(("Stalled", reasons::ATLAS_REFUSED))),
        (503, "SERVICE_UNAVAILABLE", None),
    ];
    for (status, code, want) in cases {
        let got = stalled_on_atlas_refusal(Error::Atlas(atlas_error(status, code)));
        assert_eq!(got.as_ref().ok().map(kind), want, "{status} {code}");
    }
    let missing = CredentialsError::NotFound {
        secret: "creds".into(),
        holds: crate::controller::credentials::ATLAS_KEYS,
    };
    let step = unreadable_credentials(missing).unwrap();
    assert_eq!(kind(&step), ("Stalled", reasons::CREDENTIALS_INVALID));
    let unreadable = CredentialsError::Unreadable {
        secret: "creds".into(),
        reason: "timeout".into(),
    };
    assert!(
        unreadable_credentials(unreadable).is_err(),
        "an API server hiccup is retried"
    );
    let group = Group {
        id: "g1".into(),
        name: "p".into(),
        ..Default::default()
    };
    let step = duplicate_project(&group, "ns/first");
    assert_eq!(kind(&step), ("Stalled", reasons::DUPLICATE_PROJECT));
    assert!(step.outcome.message().contains("ns/first"));
}

#[test]
fn preflight_verdicts_are_the_key_valid_condition_and_the_step() {
    let region = region();
    let failures = [
        (
            PreflightFailure::KeyNotFound {
                key: KEY.into(),
                region,
            },
            "Stalled",
        ),
        (PreflightFailure::KeyDisabled { key_arn: KEY.into() }, "Stalled"),
        (
            PreflightFailure::KeyPendingDeletion {
                key_arn: KEY.into(),
                deletion_date: None,
            },
            "Stalled",
        ),
        (
            PreflightFailure::KeyPendingImport { key_arn: KEY.into() },
            "Stalled",
        ),
        (
            PreflightFailure::KeyUnavailable {
                key_arn: KEY.into(),
                state: "Unavailable".into(),
            },
            "Progressing",
        ),
        (
            PreflightFailure::KeyNotSymmetric {
                key_arn: KEY.into(),
                key_spec: "RSA_2048".into(),
                key_usage: "SIGN_VERIFY".into(),
            },
            "Stalled",
        ),
        (
            PreflightFailure::KeyRegionMismatch {
                key: KEY.into(),
                key_region: "us-east-1".into(),
                region,
            },
            "Stalled",
        ),
        (
            PreflightFailure::KmsAccessDenied {
                key: KEY.into(),
                region,
                code: "AccessDenied".into(),
            },
            "Stalled",
        ),
        (
            PreflightFailure::KmsUnreachable {
                region,
                detail: "timeout".into(),
            },
            "Progressing",
        ),
        (
            PreflightFailure::KmsCertificateUntrusted {
                region,
                detail: "unknown CA".into(),
            },
            "Stalled",
        ),
    ];
    check_preflight(failures);
}

fn check_preflight(failures: impl IntoIterator<Item = (PreflightFailure, &'static str)>) {
    let target = super::target(&spec(Some(KEY), "eu-west-2")).unwrap();
    for (failure, want) in failures {
        let reason = failure.reason();
        let Preflight::Refused { key_valid, step } = preflight(Err(failure), &target) else {
            panic!("{reason} passed");
        };
        assert_eq!(kind(&step), (want, reason));
        assert_eq!(
            (key_valid.type_, key_valid.holds, key_valid.reason.as_str()),
            (reasons::KEY_VALID, false, reason)
        );
    }
}

#[test]
fn a_bare_key_id_in_another_account_than_the_role_needs_its_arn() {
    let region = region();
    // Found in another account than the IAM role's: Atlas could not see it.
    let bare = super::target(&spec(Some("1234abcd-12ab-34cd-56ef-1234567890ab"), "eu-west-2")).unwrap();
    let report = KeyReport {
        account: Some("210987654321".into()),
        ..KeyReport::unchecked(&bare.key, region)
    };
    let Preflight::Refused { step, .. } = preflight(Ok(report.clone()), &bare) else {
        panic!("a key out of the role's sight passed");
    };
    assert_eq!(kind(&step), ("Stalled", reasons::KEY_ARN_REQUIRED));
    let same_account = KeyReport {
        account: Some("123456789012".into()),
        ..report
    };
    assert!(matches!(preflight(Ok(same_account), &bare), Preflight::Passed(_)));
}

#[test]
fn multi_region_is_taken_from_kms_else_from_the_key_id() {
    let single = key(KEY);
    let mrk = key("arn:aws:kms:eu-west-2:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab");
    let cases = [
        (None, &single, false, reasons::SINGLE_REGION_KEY),
        (None, &mrk, true, reasons::IS_MULTI_REGION_KEY),
        (Some(true), &single, true, reasons::IS_MULTI_REGION_KEY),
    ];
    for (reported, key, holds, reason) in cases {
        let report = reported.map(|multi_region| KeyReport {
            multi_region,
            ..KeyReport::unchecked(key, region())
        });
        let condition = multi_region(report.as_ref(), key);
        assert_eq!(
            (condition.holds, condition.reason.as_str()),
            (holds, reason),
            "{key}"
        );
    }
}

#[test]
fn the_role_switch_from_access_keys_needs_the_acknowledgement() {
    let access_keys = AwsKmsConfig {
        access_key_id: Some("AKIA".into()),
        ..atlas(KEY, "EU_WEST_2")
    };
    let role_based = atlas(KEY, "EU_WEST_2");
    let mut acknowledged = spec(Some(KEY), "eu-west-2");
    acknowledged.acknowledge_irreversible_switch_to_role = true;
    let plain = spec(Some(KEY), "eu-west-2");
    let cases = [
        (
            &plain,
            Some(&access_keys),
            Some(reasons::ROLE_SWITCH_NOT_ACKNOWLEDGED),
        ),
        (&acknowledged, Some(&access_keys), None),
        (&plain, Some(&role_based), None),
        (&plain, None, None),
    ];
    for (spec, current, want) in cases {
        let got = role_switch_guard(spec, current);
        assert_eq!(got.as_ref().map(|s| s.outcome.reason()), want);
    }
}

#[test]
fn role_verdicts_write_role_authorized() {
    let (condition, step) = role_not_found("gone");
    assert_eq!(kind(&step), ("Stalled", reasons::ROLE_NOT_FOUND));
    assert_eq!(
        (condition.holds, condition.reason.as_str()),
        (false, reasons::ROLE_NOT_FOUND)
    );
    let (condition, step) = role_not_authorized("named");
    assert_eq!(kind(&step), ("Stalled", reasons::ROLE_NOT_AUTHORIZED));
    assert_eq!(condition.reason, reasons::ROLE_NOT_AUTHORIZED);
    let authorized = role("r", Some(ARN), 1);
    let condition = role_authorized(&authorized);
    assert_eq!(
        (condition.holds, condition.reason.as_str()),
        (true, reasons::AUTHORIZED)
    );
    assert!(condition.message.contains(ARN));
}

#[test]
fn waiting_for_the_trust_policy_grows_with_the_wait() {
    let request = trust_requested(&role("r", None, 1), &arn(), &key(KEY));
    assert_eq!(request.reason, reasons::AWAITING_TRUST_POLICY);
    assert!(request.message.contains("sts:ExternalId"));
    let mut previous = Vec::new();
    // First request: the wait starts now, the first look comes soon.
    let step = awaiting_trust(None, Some(&request), Duration::ZERO);
    assert_eq!(kind(&step), ("Progressing", reasons::AWAITING_TRUST_POLICY));
    assert_eq!(step.requeue, Duration::from_millis(250));
    assert_eq!(step.outcome.message(), request.message);
    request.apply(&mut previous, Some(1), at(0));
    // Then doubling: half a second into the wait, the next look half a second later (whatever second
    // the condition's time was cut to).
    let step = awaiting_trust(previous.first(), Some(&request), Duration::from_millis(500));
    assert_eq!(step.requeue, Duration::from_millis(500));
    let step = awaiting_trust(previous.first(), Some(&request), Duration::from_secs(2));
    assert_eq!(step.requeue, Duration::from_secs(2));
    // Still waiting 400 s later: a quarter of the wait.
    let step = awaiting_trust(previous.first(), Some(&request), Duration::from_secs(400));
    assert_eq!(step.requeue, Duration::from_secs(100));
    // A pass that wrote no RoleAuthorized (the trust look refused) still waits on the trust.
    let step = awaiting_trust(previous.first(), None, Duration::from_secs(2));
    assert_eq!(step.requeue, Duration::from_secs(2));
    // Atlas refusing the key for IAM reasons right after authorizing: the role condition is true.
    let authorized = role_authorized(&role("r", Some(ARN), 1));
    let step = awaiting_trust(previous.first(), Some(&authorized), Duration::from_secs(400));
    assert_eq!(step.requeue, Duration::from_secs(1));
    assert_eq!(step.outcome.message(), authorized.message);
    let mut status = ProjectEncryptionStatus::default();
    assert!(
        trust_newly_requested(&status),
        "the first request raises the Event"
    );
    status.conditions = previous;
    assert!(!trust_newly_requested(&status), "a request already made does not");
}

#[test]
fn key_refusals_classify_atlas_errors() {
    let cases = [
        (400, "CANNOT_ASSUME_ROLE", Some(KeyRefusal::IamNotReady)),
        (
            400,
            "CLOUD_PROVIDER_ACCESS_ROLE_NOT_AUTHORIZED",
            Some(KeyRefusal::IamNotReady),
        ),
        (400, "INVALID_AWS_CREDENTIALS", Some(KeyRefusal::IamNotReady)),
        (400, "INVALID_KEY", Some(KeyRefusal::Rejected)),
        (404, "KEY_NOT_FOUND", Some(KeyRefusal::Rejected)),
        (409, "CONFLICT", Some(KeyRefusal::Rejected)),
        (500, "UNEXPECTED_ERROR", None),
    ];
    for (status, code, want) in cases {
        assert_eq!(key_refusal(&atlas_error(status, code)), want, "{status} {code}");
    }
    let (condition, step) = key_rejected(&atlas_error(400, "INVALID_KEY"));
    assert_eq!(kind(&step), ("Stalled", reasons::KEY_REJECTED));
    assert_eq!(
        (condition.holds, condition.reason.as_str()),
        (false, reasons::KEY_REJECTED)
    );
    assert!(authorization_awaits_trust(&atlas_error(400, "ANY")));
    assert!(authorization_awaits_trust(&atlas_error(
        403,
        "CANNOT_ASSUME_ROLE"
    )));
    assert!(!authorization_awaits_trust(&atlas_error(500, "UNEXPECTED_ERROR")));
}

#[test]
fn key_changes_tell_drift_from_rotation() {
    let recorded = KeyStatus {
        customer_master_key_id: KEY.into(),
        region: "eu-west-2".into(),
        since: Time(at(0)),
        rotation_due_at: None,
        valid: Some(true),
        multi_region: Some(false),
        material_since: None,
        age_source: None,
    };
    let other = key("arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ff");
    let cases = [
        (Some(&recorded), &key(KEY), true, false, KeyChange::DriftCorrected),
        (Some(&recorded), &key(KEY), false, false, KeyChange::Other),
        (Some(&recorded), &other, true, true, KeyChange::Rotated),
        (None, &key(KEY), false, false, KeyChange::Other),
    ];
    for (previous, key, atlas_had_settings, rotation, want) in cases {
        assert_eq!(key_change(previous, key, atlas_had_settings, rotation), want);
    }
}

#[test]
fn the_key_history_retires_the_replaced_key_and_restores_a_returning_one() {
    let old = key("arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ff");
    let mut previous = ProjectEncryptionStatus::default();
    let first = key_history(&previous, &key(KEY), region(), false, at(0));
    assert_eq!(first.key.since, Time(at(0)));
    assert!(first.previous_keys.is_empty() && first.all_retired_safe());
    previous.key = Some(first.key.clone());
    let same = key_history(&previous, &key(KEY), region(), true, at(50));
    assert_eq!(same.key.since, Time(at(0)), "the same key keeps its age");
    assert_eq!(same.key.multi_region, Some(true));
    let rotated = key_history(&previous, &old, region(), false, at(100));
    assert_eq!(rotated.key.since, Time(at(100)));
    assert_eq!(rotated.previous_keys.len(), 1);
    assert!(!rotated.all_retired_safe(), "snapshots must be counted");
    previous.key = Some(rotated.key.clone());
    previous.previous_keys = rotated.previous_keys.clone();
    let back = key_history(&previous, &key(KEY), region(), false, at(200));
    assert_eq!(back.previous_keys.len(), 1, "the returning key left the history");
    assert!(back.previous_keys[0].customer_master_key_id.contains("7890ff"));
}

#[test]
fn rotation_is_due_once_the_key_is_older_than_max_key_age() {
    let day = 86_400;
    let cases = [
        ("2160h", 0, 89 * day, false, reasons::WITHIN_MAX_AGE),
        ("2160h", 0, 90 * day, true, reasons::ROTATION_DUE),
        ("1h", 0, 3_600, true, reasons::ROTATION_DUE),
        ("not a duration", 0, 90 * day, true, reasons::ROTATION_DUE),
    ];
    let previous = ProjectEncryptionStatus::default();
    for (max_key_age, since, now, due, reason) in cases {
        let r = rotation(max_key_age, at(since), at(now));
        assert_eq!(r.due, due, "{max_key_age} at {now}");
        let (condition, newly) = rotation_condition(r, max_key_age, &previous);
        assert_eq!(
            (condition.holds, condition.reason.as_str(), newly),
            (due, reason, due)
        );
    }
    let mut already = ProjectEncryptionStatus::default();
    let due = rotation("1h", at(0), at(3_600));
    rotation_condition(due, "1h", &already)
        .0
        .apply(&mut already.conditions, None, at(3_600));
    assert!(
        !rotation_condition(due, "1h", &already).1,
        "the Event is raised once"
    );
}

/// [`at`] as KMS's SDK writes times.
fn utc(seconds: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(at(seconds).as_second(), 0).unwrap()
}

fn reported(created: i64) -> KeyReport {
    KeyReport {
        checked: true,
        creation_date: Some(utc(created)),
        ..KeyReport::unchecked(&key(KEY), region())
    }
}

#[test]
fn the_key_age_comes_from_kms_and_falls_back_to_first_seen_saying_why() {
    let day = 86_400;
    let created = reported(1_000);
    let never_rotated = Ok(KeyMaterial::default());
    let rotated = Ok(KeyMaterial {
        last_rotation: Some(utc(50 * day)),
        automatic: None,
    });
    let denied = Err(MaterialUnread::Refused {
        call: "kms:ListKeyRotations",
        code: "AccessDeniedException".into(),
    });
    let cases = [
        (Some(&created), &never_rotated, KeyAgeSource::KmsCreation, 1_000),
        (Some(&created), &rotated, KeyAgeSource::KmsRotation, 50 * day),
        (Some(&created), &denied, KeyAgeSource::FirstSeen, 7 * day),
        (
            None,
            &Err(MaterialUnread::PreflightOff),
            KeyAgeSource::FirstSeen,
            7 * day,
        ),
    ];
    for (report, material, source, since) in cases {
        let age = key_age(report, material, at(7 * day));
        assert_eq!(
            (age.source, age.material_since),
            (source, at(since)),
            "{material:?}"
        );
    }

    // Created long ago, rotated lately: not due; the fallback counts from first seen and says why.
    let previous = ProjectEncryptionStatus::default();
    let after_100_days = |material| {
        let age = key_age(Some(&created), material, at(0));
        key_age_condition(
            rotation_of("2160h", &age, at(100 * day)),
            &age,
            "2160h",
            &previous,
        )
    };
    let (due, newly) = after_100_days(&rotated);
    assert_eq!(
        (due.holds, due.reason.as_str(), newly),
        (false, reasons::WITHIN_MAX_AGE, false)
    );
    let (due, newly) = after_100_days(&denied);
    assert_eq!(
        (due.holds, due.reason.as_str(), newly),
        (true, reasons::ROTATION_DUE, true)
    );
    assert!(
        due.message.contains("first saw") && due.message.contains("kms:ListKeyRotations"),
        "{}",
        due.message
    );
}

#[test]
fn automatic_rotation_in_kms_never_raises_rotation_due() {
    let day = 86_400;
    let automatic = |next: Option<i64>| {
        Ok(KeyMaterial {
            last_rotation: None,
            automatic: Some(AutomaticRotation {
                period_days: 180,
                next: next.map(utc),
            }),
        })
    };
    let previous = ProjectEncryptionStatus::default();
    for (material, due_at) in [
        (automatic(None), 180 * day),
        (automatic(Some(170 * day)), 170 * day),
    ] {
        let age = key_age(Some(&reported(0)), &material, at(0));
        // Years past maxKeyAge, yet KMS rotates the material: no nagging, the due date is KMS's.
        let rotation = rotation_of("1h", &age, at(400 * day));
        assert_eq!(
            rotation,
            Rotation {
                due_at: at(due_at),
                due: false
            }
        );
        let (due, newly) = key_age_condition(rotation, &age, "1h", &previous);
        assert_eq!(
            (due.holds, due.reason.as_str(), newly),
            (false, reasons::ROTATED_BY_KMS, false)
        );
        assert!(due.message.contains("180 days"), "{}", due.message);
    }
}

fn retired(key: &str, snapshots: u32) -> PreviousKeyStatus {
    PreviousKeyStatus {
        customer_master_key_id: key.to_string(),
        replaced_at: Time(at(0)),
        snapshots_using_key: snapshots,
        safe_to_delete: snapshots == 0,
    }
}

#[test]
fn only_retired_keys_snapshots_need_are_looked_up_in_kms() {
    let old = "arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890aa";
    let older = "arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890bb";
    let recorded = [retired(old, 0), retired(older, 0)];
    let snapshots = [
        "1234ABCD-12ab-34cd-56ef-1234567890aa".to_string(),
        "other".to_string(),
    ];
    let counted = retired_keys_counted(&recorded, Some(&snapshots));
    assert_eq!(counted, [retired(old, 1), retired(older, 0)]);
    assert_eq!(retired_keys_needed(&counted), [retired(old, 1)]);
    assert_eq!(
        retired_keys_counted(&counted, None),
        counted,
        "no read, no change"
    );
}

#[test]
fn a_retired_key_snapshots_need_is_at_risk_when_kms_cannot_use_it() {
    let old = "arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890aa";
    let disabled = Err(PreflightFailure::KeyDisabled { key_arn: old.into() });
    let pending = Err(PreflightFailure::KeyPendingDeletion {
        key_arn: old.into(),
        deletion_date: None,
    });
    let unreachable = Err(PreflightFailure::KmsUnreachable {
        region: region(),
        detail: "timeout".into(),
    });
    let usable = Ok(reported(0));
    let cases = [
        (
            &disabled,
            true,
            reasons::RETIRED_KEY_DISABLED,
            "aws kms enable-key --key-id",
        ),
        (
            &pending,
            true,
            reasons::RETIRED_KEY_PENDING_DELETION,
            "aws kms cancel-key-deletion --key-id",
        ),
        (&usable, false, reasons::RETIRED_KEYS_USABLE, "usable"),
        (&unreachable, false, reasons::RETIRED_KEYS_USABLE, "usable"),
    ];
    let quiet = ProjectEncryptionStatus::default();
    for (described, holds, reason, says) in cases {
        let seen = [(retired(old, 3), described.clone())];
        let (risk, newly) = previous_key_at_risk(&seen, &quiet);
        assert_eq!((risk.holds, risk.reason.as_str(), newly), (holds, reason, holds));
        assert!(risk.message.contains(says), "{}", risk.message);
        if holds {
            assert!(
                risk.message.contains(old) && risk.message.contains("3 snapshot"),
                "{}",
                risk.message
            );
        }
    }
    assert_eq!(
        previous_key_at_risk(&[], &quiet).0.reason,
        reasons::RETIRED_KEYS_USABLE
    );

    // The Event is raised as a risk begins, and again when the fix changes; not on every pass.
    let mut raised = ProjectEncryptionStatus::default();
    let seen = [(retired(old, 3), disabled.clone())];
    previous_key_at_risk(&seen, &raised)
        .0
        .apply(&mut raised.conditions, None, at(0));
    assert!(!previous_key_at_risk(&seen, &raised).1, "once");
    let seen = [(retired(old, 3), pending)];
    assert!(previous_key_at_risk(&seen, &raised).1, "pending deletion is news");
}

#[test]
fn atlas_validity_decides_how_the_pass_ends() {
    let authorized = role("r", Some(ARN), 1);
    let resync = Duration::from_secs(600);
    let cases = [
        (
            Some(true),
            ("Ready", reasons::RECONCILED),
            true,
            reasons::KEY_ASSIGNED,
            Some(false),
        ),
        (
            Some(false),
            ("Stalled", reasons::KEY_INVALID),
            false,
            reasons::KEY_INVALID,
            Some(true),
        ),
        (
            None,
            ("Progressing", reasons::AWAITING_VALIDATION),
            false,
            reasons::AWAITING_VALIDATION,
            None,
        ),
    ];
    for (valid, want, holds, reason, degraded) in cases {
        let v = validity(valid, &key(KEY), &authorized, 2, resync);
        assert_eq!(kind(&v.step), want, "{valid:?}");
        assert_eq!((v.key_valid.holds, v.key_valid.reason.as_str()), (holds, reason));
        assert_eq!(v.degraded.map(|d| d.holds), degraded);
    }
    assert_eq!(
        validity(Some(true), &key(KEY), &authorized, 2, resync)
            .step
            .requeue,
        resync
    );
}

#[test]
fn disabling_waits_for_managed_clusters_and_stalls_on_unmanaged_ones() {
    let previous = ProjectEncryptionStatus::default();
    let using = vec!["a".to_string(), "b".to_string()];
    let step = blocked_by_clusters(&using, &using, &previous, at(0));
    assert_eq!(kind(&step), ("Progressing", reasons::DISABLE_BLOCKED_BY_CLUSTERS));
    assert_eq!(step.requeue, Duration::from_secs(5));
    let step = blocked_by_clusters(&using, &["a".to_string()], &previous, at(0));
    assert_eq!(kind(&step), ("Stalled", reasons::DISABLE_BLOCKED_BY_CLUSTERS));
    assert!(step.outcome.message().contains("clusters b "));
    let off = encryption_off(Duration::from_secs(600));
    assert_eq!(kind(&off), ("Ready", reasons::ENCRYPTION_DISABLED));
    let raced = disable_raced(&atlas_error(409, "CANNOT_DISABLE_ENCRYPTION_AT_REST")).unwrap();
    assert_eq!(
        kind(&raced),
        ("Progressing", reasons::DISABLE_BLOCKED_BY_CLUSTERS)
    );
    assert!(disable_raced(&atlas_error(500, "UNEXPECTED_ERROR")).is_none());
    let deleting = while_deleting(raced);
    assert!(deleting.outcome.message().starts_with("deleting: "));
}

/// An Atlas error on reading a project by name.
fn project_read_error(status: u16, code: &str) -> Error {
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
        stalled_reason(project_read_error(401, "NOT_IN_GROUP")).as_deref(),
        Some(reasons::PROJECT_NOT_FOUND)
    );
    assert_eq!(
        stalled_reason(project_read_error(404, "GROUP_NAME_NOT_FOUND")).as_deref(),
        Some(reasons::PROJECT_NOT_FOUND)
    );
    assert_eq!(
        stalled_reason(project_read_error(401, "USER_UNAUTHORIZED")).as_deref(),
        Some(reasons::CREDENTIALS_REJECTED)
    );
    assert_eq!(
        stalled_reason(project_read_error(403, "USER_CANNOT_ACCESS_ORG")).as_deref(),
        Some(reasons::CREDENTIALS_REJECTED)
    );
    assert!(
        stalled_on_access(project_read_error(503, "SERVICE_UNAVAILABLE")).is_err(),
        "an outage is retried"
    );
}

fn planned_patch() -> PlannedChange {
    PlannedChange {
        method: "PATCH".into(),
        path: "/api/atlas/v2/groups/65f0c0ffee00000000000001/encryptionAtRest".into(),
        fields: [(
            "awsKms.roleId".to_string(),
            "65f0c0ffee0000000000abcd".to_string(),
        )]
        .into(),
    }
}

#[test]
fn managing_keeps_the_pipelines_outcome_and_no_observing_condition() {
    let ready = encryption_off(Duration::from_secs(600));
    let (observing, step) = under_policy(
        ManagementPolicy::Manage,
        &[],
        ready.clone(),
        Duration::from_secs(600),
    );
    assert!(observing.is_none());
    assert_eq!(step, ready);
}

#[test]
fn observing_with_writes_planned_holds_the_object_and_names_each_write() {
    let waiting = Step::new(
        Outcome::progressing(reasons::AWAITING_TRUST_POLICY, "m"),
        Duration::from_secs(1),
    );
    let resync = Duration::from_secs(600);
    let plan = [planned_patch()];
    let (observing, step) = under_policy(ManagementPolicy::Observe, &plan, waiting, resync);
    let observing = observing.unwrap();
    assert!(observing.holds);
    assert_eq!(observing.reason, reasons::CHANGES_PLANNED);
    assert_eq!(kind(&step), ("Ready", reasons::CHANGES_PLANNED));
    assert_eq!(
        step.requeue, resync,
        "the plan follows Atlas on the resync, not faster"
    );
    let message = step.outcome.message();
    assert!(message.contains("1 Atlas write"), "{message}");
    assert!(
        message
            .contains("PATCH /api/atlas/v2/groups/65f0c0ffee00000000000001/encryptionAtRest (awsKms.roleId)"),
        "{message}"
    );
}

#[test]
fn observing_with_nothing_planned_keeps_the_pipelines_outcome() {
    let ready = encryption_off(Duration::from_secs(600));
    let (observing, step) = under_policy(
        ManagementPolicy::Observe,
        &[],
        ready.clone(),
        Duration::from_secs(600),
    );
    assert_eq!(observing.unwrap().reason, reasons::NO_CHANGES_PLANNED);
    assert_eq!(step, ready, "Atlas already matches: Ready as when managing");
}

#[test]
fn an_observed_object_lets_go_at_once_whatever_its_deletion_policy() {
    let spec: crate::crd::ProjectEncryptionSpec = serde_json::from_value(serde_json::json!({
        "projectName": "p", "credentialsRef": {"name": "c"}, "deletionPolicy": "Disable",
        "managementPolicy": "Observe",
        "awsKms": {"customerMasterKeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "region": "us-east-1",
                   "roleArn": "arn:aws:iam::123456789012:role/r"}
    }))
    .unwrap();
    let was_on = ProjectEncryptionStatus {
        project_id: Some("65f0c0ffee00000000000001".into()),
        ..Default::default()
    };
    assert!(release_at_once(&spec, Some(&was_on)));
    let managed = crate::crd::ProjectEncryptionSpec {
        management_policy: ManagementPolicy::Manage,
        ..spec
    };
    assert!(
        !release_at_once(&managed, Some(&was_on)),
        "Disable turns encryption off when managing"
    );
}

#[test]
fn only_a_deletion_that_owes_atlas_a_write_holds_a_finalizer() {
    let spec = |policy: &str, enabled: bool| -> crate::crd::ProjectEncryptionSpec {
        serde_json::from_value(serde_json::json!({
            "projectId": "65f0c0ffee00000000000001", "credentialsRef": {"name": "c"},
            "deletionPolicy": policy,
            "awsKms": {"enabled": enabled, "customerMasterKeyId": "1234abcd-12ab-34cd-56ef-1234567890ab",
                       "region": "us-east-1", "roleArn": "arn:aws:iam::123456789012:role/r"}
        }))
        .unwrap()
    };
    let was_on = ProjectEncryptionStatus {
        project_id: Some("65f0c0ffee00000000000001".into()),
        ..Default::default()
    };
    for previous in [None, Some(&was_on)] {
        assert!(
            !finalizer_needed(&spec("Retain", true), previous),
            "Retain: {previous:?}"
        );
        assert!(
            finalizer_needed(&spec("Disable", true), previous),
            "Disable: {previous:?}"
        );
    }
    // Turning off, never having turned on: nothing to undo yet.
    assert!(!finalizer_needed(&spec("Disable", false), None));
    assert!(finalizer_needed(&spec("Disable", false), Some(&was_on)));
}
