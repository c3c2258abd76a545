//! Table-driven tests of the ClusterEncryption decisions: no runtime, no I/O.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::atlas::{Cluster, EncryptionProvider, Lane};
use crate::controller::testing::{atlas_error, kind};
use crate::crd::{ClusterEncryptionStatus, DeletionPolicy, ProjectEncryption, ProjectEncryptionStatus};
use crate::status::{self, Outcome, reasons};

fn cluster(size: &str, provider: &str, state: &str, paused: bool) -> Cluster {
    let region = if matches!(size, "M0" | "M2" | "M5") {
        json!({"providerName": "TENANT", "backingProviderName": "AWS",
               "electableSpecs": {"instanceSize": size}})
    } else {
        json!({"providerName": "AWS", "electableSpecs": {"instanceSize": size}})
    };
    serde_json::from_value(json!({"name": "c", "stateName": state, "paused": paused,
        "encryptionAtRestProvider": provider,
        "replicationSpecs": [{"regionConfigs": [region]}]}))
    .unwrap()
}

#[test]
fn sets_the_provider_only_when_it_differs() {
    let off = cluster("M10", "NONE", "IDLE", false);
    let on = cluster("M10", "AWS", "IDLE", false);
    assert_eq!(
        cluster_plan(true, &off),
        ClusterStep::Set(EncryptionProvider::Aws)
    );
    assert_eq!(cluster_plan(true, &on), ClusterStep::Converged);
    assert_eq!(
        cluster_plan(false, &on),
        ClusterStep::Set(EncryptionProvider::None)
    );
    assert_eq!(cluster_plan(false, &off), ClusterStep::Converged);
}

#[test]
fn ready_only_once_idle() {
    assert_eq!(
        cluster_plan(true, &cluster("M10", "AWS", "UPDATING", false)),
        ClusterStep::AwaitIdle
    );
    assert_eq!(
        cluster_plan(false, &cluster("M10", "NONE", "UPDATING", false)),
        ClusterStep::AwaitIdle
    );
    // Busy with something else: no write that could race it.
    assert_eq!(
        cluster_plan(true, &cluster("M10", "NONE", "UPDATING", false)),
        ClusterStep::AwaitIdle
    );
}

#[test]
fn refuses_before_writing_what_atlas_would_refuse() {
    for size in ["M0", "M2", "M5"] {
        assert_eq!(
            cluster_plan(true, &cluster(size, "NONE", "IDLE", false)),
            ClusterStep::UnsupportedTier,
            "{size}"
        );
    }
    assert_eq!(
        cluster_plan(true, &cluster("M10", "NONE", "IDLE", true)),
        ClusterStep::Paused
    );
    assert_eq!(
        cluster_plan(false, &cluster("M10", "AWS", "IDLE", true)),
        ClusterStep::Paused,
        "turning off a paused cluster is refused too"
    );
    assert_eq!(
        cluster_plan(true, &cluster("M30", "AZURE", "IDLE", false)),
        ClusterStep::OtherProvider(EncryptionProvider::Azure)
    );
}

#[test]
fn enabled_false_leaves_other_providers_and_tiers_alone() {
    assert_eq!(
        cluster_plan(false, &cluster("M30", "AZURE", "IDLE", false)),
        ClusterStep::Converged
    );
    assert_eq!(
        cluster_plan(false, &cluster("M0", "NONE", "IDLE", true)),
        ClusterStep::Converged
    );
    // A converged paused cluster is fine: nothing to change.
    assert_eq!(
        cluster_plan(true, &cluster("M10", "AWS", "IDLE", true)),
        ClusterStep::Converged
    );
}

#[test]
fn atlas_error_codes_map_to_reasons() {
    assert_eq!(classify(Some(FLEX_CODE), Some(400)), Refusal::Tier(Tier::Flex));
    assert_eq!(
        classify(Some(SERVERLESS_CODE), Some(400)),
        Refusal::Tier(Tier::Serverless)
    );
    assert!(matches!(classify(Some(TENANT_CODE), Some(400)), Refusal::Tier(_)));
    assert_eq!(classify(Some(BACKUP_CODE), Some(400)), Refusal::LegacyBackup);
    assert_eq!(classify(Some(PAUSED_CODE), Some(409)), Refusal::Paused);
    assert_eq!(classify(Some("CLUSTER_NOT_FOUND"), Some(404)), Refusal::NotFound);
    assert_eq!(
        classify(Some("ENCRYPTION_AT_REST_NOT_ENABLED"), Some(400)),
        Refusal::ProjectNotReady
    );
    assert_eq!(classify(Some("NOT_IN_GROUP"), Some(401)), Refusal::Credentials);
    assert_eq!(classify(Some("SOMETHING_NEW"), Some(409)), Refusal::Refused);
    assert_eq!(classify(Some("UNEXPECTED_ERROR"), Some(500)), Refusal::Retry);
    assert_eq!(classify(None, None), Refusal::Retry);
}

fn project(enabled: bool, ready: bool, key_valid: bool, generation: i64) -> ProjectEncryption {
    let mut pe = ProjectEncryption::new(
        "p",
        serde_json::from_value(json!({"projectName": "x", "credentialsRef": {"name": "s"},
            "awsKms": {"enabled": enabled, "customerMasterKeyId": "k", "region": "eu-west-2"}}))
        .unwrap(),
    );
    pe.metadata.generation = Some(2);
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let mut status = ProjectEncryptionStatus {
        observed_generation: Some(generation),
        ..Default::default()
    };
    let outcome = if ready {
        Outcome::ready(reasons::RECONCILED, "ok")
    } else {
        Outcome::progressing(reasons::AWAITING_TRUST_POLICY, "trust me")
    };
    outcome.apply(&mut status.conditions, Some(generation), now);
    status::condition(reasons::KEY_VALID).holds(key_valid, "x").apply(
        &mut status.conditions,
        Some(generation),
        now,
    );
    pe.status = Some(status);
    pe
}

#[test]
fn the_project_must_be_ready_current_and_valid() {
    assert_eq!(project_state(&project(true, true, true, 2)), ProjectState::Ready);
    assert_eq!(
        project_state(&project(true, true, true, 1)),
        ProjectState::Ready,
        "applying a new spec (a rotation) with the last one in force and valid"
    );
    assert_eq!(
        project_state(&project(true, true, false, 2)),
        ProjectState::NotReady,
        "key not valid"
    );
    assert_eq!(
        project_state(&project(true, false, false, 2)),
        ProjectState::NotReady
    );
    assert_eq!(
        project_state(&project(false, true, true, 2)),
        ProjectState::Disabling
    );
    let mut turned_back_on = project(true, true, true, 1);
    Outcome::ready(reasons::ENCRYPTION_DISABLED, "off").apply(
        &mut turned_back_on.status.as_mut().unwrap().conditions,
        Some(1),
        Timestamp::from_second(1_700_000_000).unwrap(),
    );
    assert_eq!(
        project_state(&turned_back_on),
        ProjectState::NotReady,
        "Ready because encryption was off is not a key in force"
    );
    let mut deleting = project(true, true, true, 2);
    deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        Timestamp::from_second(1_700_000_000).unwrap(),
    ));
    assert_eq!(
        project_state(&deleting),
        ProjectState::Ready,
        "Retain keeps it on"
    );
    deleting.spec.deletion_policy = DeletionPolicy::Disable;
    assert_eq!(project_state(&deleting), ProjectState::Disabling);
    let mut invalid = project(true, true, true, 2);
    Outcome::stalled(reasons::KEY_INVALID, "disabled in KMS").apply(
        &mut invalid.status.as_mut().unwrap().conditions,
        Some(2),
        Timestamp::from_second(1_700_000_000).unwrap(),
    );
    assert_eq!(project_state(&invalid), ProjectState::Stalled);
    assert_eq!(project_stall_reason(&invalid), Some(reasons::KEY_INVALID));
    assert_eq!(project_stall_reason(&project(true, false, false, 2)), None);
}

#[test]
fn the_clusters_own_blocker_outlasts_its_project_but_not_its_spec() {
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let mut status = ClusterEncryptionStatus::default();
    Outcome::stalled(reasons::UNSUPPORTED_TIER, "M0").apply(&mut status.conditions, Some(3), now);
    let kept = own_blocker(&status, Some(3)).expect("the tier verdict of this spec");
    assert_eq!(kept.outcome, Outcome::stalled(reasons::UNSUPPORTED_TIER, "M0"));
    assert!(
        own_blocker(&status, Some(4)).is_none(),
        "a new spec is judged afresh"
    );

    Outcome::stalled(reasons::PROJECT_STALLED, "project").apply(&mut status.conditions, Some(3), now);
    assert!(
        own_blocker(&status, Some(3)).is_none(),
        "the project's stall is not the cluster's"
    );
    Outcome::progressing(reasons::CLUSTER_UPDATING, "busy").apply(&mut status.conditions, Some(3), now);
    assert!(own_blocker(&status, Some(3)).is_none());
}

#[test]
fn the_smallest_tier_is_reported() {
    let c: Cluster = serde_json::from_value(json!({"name": "c", "replicationSpecs": [{"regionConfigs": [
        {"providerName": "AWS", "electableSpecs": {"instanceSize": "M30"}},
        {"providerName": "AWS", "electableSpecs": {"instanceSize": "M10"}}]}]}))
    .unwrap();
    assert_eq!(smallest_tier(&c).as_deref(), Some("M10"));
}

#[test]
fn a_recent_refusal_is_not_resent() {
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let mut status = ClusterEncryptionStatus::default();
    Outcome::stalled(reasons::LEGACY_BACKUP, "move to cloud backup").apply(
        &mut status.conditions,
        Some(1),
        now,
    );
    assert!(recently_refused(&status, Some(1), now));
    assert!(!recently_refused(&status, Some(2), now), "a new spec tries again");
    let later = Timestamp::from_second(1_700_000_000 + 61).unwrap();
    assert!(!recently_refused(&status, Some(1), later));
    Outcome::stalled(reasons::CLUSTER_PAUSED, "resume").apply(&mut status.conditions, Some(1), now);
    assert!(!recently_refused(&status, Some(1), now));
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

fn want(aws: bool, deleting: bool) -> Want<'static> {
    Want {
        cluster: "c",
        project: "p",
        aws,
        deleting,
    }
}

fn stalled_project(reason: &str) -> ProjectEncryption {
    let mut pe = project(true, false, false, 2);
    Outcome::stalled(reason, "needs a person").apply(
        &mut pe.status.as_mut().unwrap().conditions,
        Some(2),
        at(0),
    );
    pe
}

#[test]
fn the_project_verdict_gates_the_cluster() {
    let none = ClusterEncryptionStatus::default();
    let ready = project(true, true, true, 2);
    let waiting = project(true, false, false, 2);
    let stalled = stalled_project(reasons::KEY_INVALID);
    let disabling = project(false, true, true, 2);
    type Case<'a> = (
        Option<&'a ProjectEncryption>,
        bool,
        bool,
        &'a str,
        Option<(&'a str, &'a str)>,
    );
    let cases: [Case; 9] = [
        (
            None,
            true,
            false,
            reasons::PROJECT_ENCRYPTION_NOT_FOUND,
            Some(("Stalled", reasons::PROJECT_ENCRYPTION_NOT_FOUND)),
        ),
        (
            None,
            false,
            false,
            reasons::PROJECT_ENCRYPTION_NOT_FOUND,
            Some(("Stalled", reasons::PROJECT_ENCRYPTION_NOT_FOUND)),
        ),
        (Some(&ready), true, true, reasons::RECONCILED, None),
        (
            Some(&waiting),
            true,
            false,
            reasons::WAITING_FOR_PROJECT,
            Some(("Progressing", reasons::WAITING_FOR_PROJECT)),
        ),
        (Some(&waiting), false, false, reasons::WAITING_FOR_PROJECT, None),
        (
            Some(&stalled),
            true,
            false,
            reasons::PROJECT_STALLED,
            Some(("Stalled", reasons::PROJECT_STALLED)),
        ),
        (Some(&stalled), false, false, reasons::PROJECT_STALLED, None),
        (
            Some(&disabling),
            true,
            false,
            reasons::PROJECT_DISABLING,
            Some(("Stalled", reasons::PROJECT_DISABLING)),
        ),
        (Some(&disabling), false, false, reasons::PROJECT_DISABLING, None),
    ];
    for (project, aws, holds, reason, stop) in cases {
        let verdict = project_verdict(want(aws, false), project, "ns", &none, Some(1));
        assert_eq!(
            (verdict.project_ready.holds, verdict.project_ready.reason.as_str()),
            (holds, reason),
            "{reason} aws={aws}"
        );
        assert_eq!(verdict.stop.as_ref().map(kind), stop, "{reason} aws={aws}");
    }
    let verdict = project_verdict(want(true, false), Some(&stalled), "ns", &none, Some(1));
    assert!(
        verdict.project_ready.message.contains(reasons::KEY_INVALID),
        "names the project's stall"
    );
    // The cluster's own blocker outlasts a project that is not Ready.
    let mut own = ClusterEncryptionStatus::default();
    Outcome::stalled(reasons::UNSUPPORTED_TIER, "M0").apply(&mut own.conditions, Some(1), at(0));
    let verdict = project_verdict(want(true, false), Some(&waiting), "ns", &own, Some(1));
    assert_eq!(
        verdict.stop.as_ref().map(kind),
        Some(("Stalled", reasons::UNSUPPORTED_TIER))
    );
}

#[test]
fn the_atlas_project_comes_from_the_project_or_the_last_status() {
    let mut pe = project(true, true, true, 2);
    let none = ClusterEncryptionStatus::default();
    let step = group_id(want(true, false), &pe, &none).unwrap_err();
    assert_eq!(kind(&step), ("Progressing", reasons::WAITING_FOR_PROJECT));
    let step = group_id(want(false, true), &pe, &none).unwrap_err();
    assert_eq!(
        kind(&step),
        ("Stalled", reasons::WAITING_FOR_PROJECT),
        "deletion needs a person"
    );
    let recorded = ClusterEncryptionStatus {
        project_id: Some("g0".into()),
        ..Default::default()
    };
    assert_eq!(group_id(want(true, false), &pe, &recorded).unwrap(), "g0");
    pe.spec.project_id = Some("g2".into());
    assert_eq!(
        group_id(want(true, false), &pe, &recorded).unwrap(),
        "g2",
        "a project named by id, before its status says so"
    );
    pe.status.as_mut().unwrap().project_id = Some("g1".into());
    assert_eq!(group_id(want(true, false), &pe, &recorded).unwrap(), "g1");
}

#[test]
fn a_recently_verified_cluster_is_not_read_again_before_its_resync() {
    let resync = Duration::from_secs(600);
    let on_key = ClusterEncryptionStatus {
        provider: Some("AWS".into()),
        ..Default::default()
    };
    let off = ClusterEncryptionStatus {
        provider: Some("NONE".into()),
        ..Default::default()
    };
    let minute = Some(Duration::from_secs(60));
    let cases = [
        (
            want(true, false),
            ProjectState::Ready,
            &on_key,
            minute,
            Some(Duration::from_secs(540)),
        ),
        (
            want(true, false),
            ProjectState::Ready,
            &on_key,
            Some(resync),
            None,
        ),
        (want(true, false), ProjectState::Ready, &on_key, None, None),
        (want(true, false), ProjectState::NotReady, &on_key, minute, None),
        (want(true, false), ProjectState::Ready, &off, minute, None),
        (want(false, false), ProjectState::Ready, &on_key, minute, None),
    ];
    for (want, state, previous, ago, requeue) in cases {
        let step = still_verified(want, state, previous, ago, resync);
        assert_eq!(step.as_ref().map(|s| s.requeue), requeue, "{state:?} {ago:?}");
        if let Some(step) = step {
            assert_eq!(kind(&step), ("Ready", reasons::RECONCILED));
        }
    }
}

#[test]
fn credentials_of_the_project_stall_unless_the_api_server_hiccups() {
    use crate::controller::CredentialsError;
    let missing = || CredentialsError::NotFound {
        secret: "creds".into(),
        holds: crate::controller::credentials::ATLAS_KEYS,
    };
    let unreadable = || CredentialsError::Unreadable {
        secret: "creds".into(),
        reason: "timeout".into(),
    };
    let step = unreadable_credentials(want(true, false), missing()).unwrap();
    assert_eq!(kind(&step), ("Stalled", reasons::CREDENTIALS_INVALID));
    assert!(unreadable_credentials(want(true, false), unreadable()).is_err());
    let step = unreadable_credentials(want(false, true), unreadable()).unwrap();
    assert_eq!(
        kind(&step),
        ("Stalled", reasons::CREDENTIALS_INVALID),
        "deletion says how to let go"
    );
}

#[test]
fn each_plan_ends_the_pass_or_sends_the_provider() {
    let none = ClusterEncryptionStatus::default();
    let moment = Moment {
        generation: Some(1),
        now: at(0),
        resync: Duration::from_secs(600),
        updating_for: Duration::ZERO,
    };
    let cases = [
        (
            want(true, false),
            cluster("M10", "AWS", "IDLE", false),
            Some(("Ready", reasons::RECONCILED)),
        ),
        (
            want(false, false),
            cluster("M10", "NONE", "IDLE", false),
            Some(("Ready", reasons::ENCRYPTION_DISABLED)),
        ),
        (
            want(true, false),
            cluster("M10", "AWS", "UPDATING", false),
            Some(("Progressing", reasons::CLUSTER_UPDATING)),
        ),
        (
            want(true, false),
            cluster("M0", "NONE", "IDLE", false),
            Some(("Stalled", reasons::UNSUPPORTED_TIER)),
        ),
        (
            want(true, false),
            cluster("M10", "NONE", "IDLE", true),
            Some(("Stalled", reasons::CLUSTER_PAUSED)),
        ),
        (
            want(true, false),
            cluster("M30", "AZURE", "IDLE", false),
            Some(("Stalled", reasons::OTHER_PROVIDER_IN_USE)),
        ),
        (want(true, false), cluster("M10", "NONE", "IDLE", false), None),
    ];
    for (want, cluster, expected) in cases {
        let plan = cluster_plan(want.aws, &cluster);
        match next(want, &plan, &cluster, &none, moment) {
            Next::Done(step) => assert_eq!(Some(kind(&step)), expected, "{plan:?}"),
            Next::Set(provider) => {
                assert_eq!(expected, None, "{plan:?}");
                assert_eq!(provider, EncryptionProvider::Aws);
            }
        }
    }
    let Next::Done(step) = next(
        want(true, false),
        &ClusterStep::UnsupportedTier,
        &cluster("M0", "NONE", "IDLE", false),
        &none,
        moment,
    ) else {
        panic!("an M0 is refused");
    };
    assert!(
        step.outcome.message().contains("is an M0 cluster"),
        "{}",
        step.outcome.message()
    );
}

#[test]
fn a_refusal_moments_ago_is_not_sent_again() {
    let moment = Moment {
        generation: Some(1),
        now: at(0),
        resync: Duration::from_secs(600),
        updating_for: Duration::ZERO,
    };
    let mut refused = ClusterEncryptionStatus::default();
    Outcome::stalled(reasons::LEGACY_BACKUP, "move to cloud backup").apply(
        &mut refused.conditions,
        Some(1),
        at(0),
    );
    let plan = ClusterStep::Set(EncryptionProvider::Aws);
    let Next::Done(step) = next(
        want(true, false),
        &plan,
        &cluster("M10", "NONE", "IDLE", false),
        &refused,
        moment,
    ) else {
        panic!("resent a refused PATCH");
    };
    assert_eq!(kind(&step), ("Stalled", reasons::LEGACY_BACKUP));
}

#[test]
fn after_a_write_the_cluster_is_done_or_updating() {
    let resync = Duration::from_secs(600);
    let (step, started) = after_write(
        want(true, false),
        &cluster("M10", "AWS", "IDLE", false),
        EncryptionProvider::Aws,
        resync,
    );
    assert_eq!((kind(&step), started), (("Ready", reasons::RECONCILED), false));
    let (step, started) = after_write(
        want(true, false),
        &cluster("M10", "AWS", "UPDATING", false),
        EncryptionProvider::Aws,
        resync,
    );
    assert_eq!(
        (kind(&step), started),
        (("Progressing", reasons::CLUSTER_UPDATING), true)
    );
    assert_eq!(step.requeue, Duration::from_secs(3), "the first look comes soon");
}

type RefusalCase<'a> = (
    Want<'a>,
    u16,
    &'a str,
    Option<(&'a str, &'a str)>,
    Option<Tier>,
    bool,
);

fn check_refusals(cases: &[RefusalCase]) {
    for (want, status, code, expected, tier, is_off) in cases {
        match refused(
            *want,
            atlas_error(*status, code),
            "g1",
            Some(EncryptionProvider::Azure),
        ) {
            Ok(r) => {
                assert_eq!(Some(kind(&r.step)), *expected, "{status} {code}");
                assert_eq!((&r.tier, r.off), (tier, *is_off), "{status} {code}");
            }
            Err(_) => assert_eq!(*expected, None, "{status} {code} is retried"),
        }
    }
}

#[test]
fn atlas_refusals_while_turning_on_become_reasons() {
    let aws = want(true, false);
    let stalled = |reason| Some(("Stalled", reason));
    check_refusals(&[
        (
            aws,
            400,
            FLEX_CODE,
            stalled(reasons::UNSUPPORTED_TIER),
            Some(Tier::Flex),
            false,
        ),
        (
            aws,
            400,
            TENANT_CODE,
            stalled(reasons::UNSUPPORTED_TIER),
            Some(Tier::Shared),
            false,
        ),
        (
            aws,
            400,
            BACKUP_CODE,
            stalled(reasons::LEGACY_BACKUP),
            None,
            false,
        ),
        (
            aws,
            409,
            PAUSED_CODE,
            stalled(reasons::CLUSTER_PAUSED),
            None,
            false,
        ),
        (
            aws,
            404,
            "CLUSTER_NOT_FOUND",
            stalled(reasons::CLUSTER_NOT_FOUND),
            None,
            false,
        ),
        (
            aws,
            401,
            "NOT_IN_GROUP",
            stalled(reasons::CREDENTIALS_REJECTED),
            None,
            false,
        ),
        (
            aws,
            403,
            "FORBIDDEN",
            stalled(reasons::CREDENTIALS_REJECTED),
            None,
            false,
        ),
        (
            aws,
            409,
            "SOMETHING_NEW",
            stalled(reasons::ATLAS_REFUSED),
            None,
            false,
        ),
        (aws, 503, "SERVICE_UNAVAILABLE", None, None, false),
    ]);
}

#[test]
fn atlas_refusals_about_the_provider_or_the_project_become_reasons() {
    let aws = want(true, false);
    let stalled = |reason| Some(("Stalled", reason));
    let code = "CANNOT_CHANGE_ENCRYPTION_AT_REST_PROVIDER";
    check_refusals(&[(
        aws,
        400,
        code,
        stalled(reasons::OTHER_PROVIDER_IN_USE),
        None,
        false,
    )]);
    let r = refused(aws, atlas_error(400, code), "g1", Some(EncryptionProvider::Azure)).unwrap();
    assert!(r.step.outcome.message().contains("uses AZURE key management"));
    let code = "ENCRYPTION_AT_REST_NOT_ENABLED";
    let waiting = Some(("Progressing", reasons::WAITING_FOR_PROJECT));
    check_refusals(&[(aws, 400, code, waiting, None, false)]);
}

#[test]
fn atlas_refusals_while_turning_off_become_reasons() {
    let off = want(false, false);
    let deleting = want(false, true);
    let disabled = Some(("Ready", reasons::ENCRYPTION_DISABLED));
    let gone = Some(("Ready", reasons::CLUSTER_NOT_FOUND));
    check_refusals(&[
        (off, 400, SERVERLESS_CODE, disabled, Some(Tier::Serverless), true),
        (deleting, 404, "CLUSTER_NOT_FOUND", gone, None, false),
    ]);
    assert_eq!(Tier::Flex.status_name(), Some("FLEX"));
    assert_eq!(Tier::Shared.status_name(), None);
}

#[test]
fn deletion_says_how_to_let_go() {
    let step = while_deleting(Step::stalled(reasons::CLUSTER_PAUSED, "resume it"));
    assert!(
        step.outcome
            .message()
            .starts_with("deleting: resume it; to delete without")
    );
    let step = while_deleting(Step::new(
        Outcome::progressing(reasons::CLUSTER_UPDATING, "busy"),
        Duration::ZERO,
    ));
    assert_eq!(step.outcome.message(), "deleting: busy");
}

#[test]
fn a_cluster_is_read_ahead_once_while_its_project_is_under_way() {
    use ProjectState::*;
    // (wants AWS, project, read already, read now)
    let cases = [
        (true, NotReady, false, true),
        (true, NotReady, true, false),
        (true, Stalled, false, false),
        (true, Disabling, false, false),
        (true, Ready, false, false),
        (false, NotReady, false, false),
    ];
    for (aws, project, already, wanted) in cases {
        assert_eq!(
            read_ahead_wanted(want(aws, false), project, already),
            wanted,
            "{aws} {project:?} {already}"
        );
    }
}

#[test]
fn a_read_ahead_tells_at_once_only_what_the_project_cannot_change() {
    let finding = |c: &Cluster| read_ahead_finding("Cluster0", c).map(|s| s.outcome.reason().to_string());
    assert_eq!(
        finding(&cluster("M0", "NONE", "IDLE", false)).as_deref(),
        Some(reasons::UNSUPPORTED_TIER)
    );
    assert_eq!(
        finding(&cluster("M10", "GCP", "IDLE", false)).as_deref(),
        Some(reasons::OTHER_PROVIDER_IN_USE)
    );
    for waits in [
        cluster("M10", "NONE", "IDLE", false),
        cluster("M10", "NONE", "UPDATING", false),
        cluster("M10", "NONE", "IDLE", true),
        cluster("M10", "AWS", "IDLE", false),
    ] {
        assert_eq!(finding(&waits), None, "{waits:?}");
    }
}

#[test]
fn the_finalizer_waits_for_the_project_only_while_the_cluster_is_to_use_its_key() {
    use ProjectState::*;
    assert!(may_write(true, Some(Ready)));
    assert!(may_write(false, None));
    assert!(may_write(false, Some(NotReady)));
    for project in [None, Some(NotReady), Some(Stalled), Some(Disabling)] {
        assert!(!may_write(true, project), "{project:?}");
    }
    // Only `Disable` owes Atlas a write on deletion, and only from the first pass that may write.
    for (enabled, project) in [(true, Some(Ready)), (false, None), (false, Some(NotReady))] {
        assert!(finalizer_needed(DeletionPolicy::Disable, enabled, project, false));
        assert!(
            !finalizer_needed(DeletionPolicy::Retain, enabled, project, false),
            "Retain leaves Atlas as it is: {enabled} {project:?}"
        );
        assert!(
            !finalizer_needed(DeletionPolicy::Disable, enabled, project, true),
            "an observed project's clusters never write to Atlas: {enabled} {project:?}"
        );
    }
    assert!(!finalizer_needed(
        DeletionPolicy::Disable,
        true,
        Some(NotReady),
        false
    ));
}

#[test]
fn only_passes_that_may_start_atlas_work_keep_the_change_lane() {
    use ProjectState::*;
    // Turning on behind a Ready project, or turning off whatever the project: the look's own lane.
    for (enabled, project) in [(true, Some(Ready)), (false, None), (false, Some(Disabling))] {
        for look in [Lane::Change, Lane::Routine] {
            assert_eq!(worker_lane(look, enabled, project), look, "{enabled} {project:?}");
        }
    }
    // Waiting for the project: only a read ahead and a condition, so it waits with the resyncs.
    for project in [None, Some(NotReady), Some(Stalled)] {
        assert_eq!(
            worker_lane(Lane::Change, true, project),
            Lane::Routine,
            "{project:?}"
        );
    }
}
