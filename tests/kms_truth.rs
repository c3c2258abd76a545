//! What KMS knows, on the real parts (kube-apiserver, atlas-sim, moto), issue #17: the key's age
//! comes from KMS (its creation or last rotation, automatic rotation quiets `KeyRotationDue`), and a
//! retired key that snapshots need is watched in KMS (`PreviousKeyAtRisk`).
#![cfg(feature = "integration")]

mod common;

use std::time::Duration;

use atlas_encryption_operator::crd::{KeyAgeSource, KeyStatus, ProjectEncryption};
use common::operator::{OperatorEnv, REGION, condition, project_on_key, project_ready, seed};
use common::snapshots::{self, Expect};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn key_status(pe: &ProjectEncryption) -> Option<&KeyStatus> {
    pe.status.as_ref().and_then(|s| s.key.as_ref())
}

fn age_source(pe: &ProjectEncryption) -> Option<KeyAgeSource> {
    key_status(pe).and_then(|k| k.age_source)
}

/// `materialSince` in whole seconds, as a status keeps it.
fn material_since(pe: &ProjectEncryption) -> i64 {
    key_status(pe)
        .and_then(|k| k.material_since.as_ref())
        .expect("status.key.materialSince")
        .0
        .as_second()
}

/// A key's age counts from its creation in KMS, then from its rotation on demand; deleting and
/// recreating the ProjectEncryption keeps that age.
#[tokio::test]
async fn the_key_age_comes_from_kms_and_survives_recreating_the_object() {
    let mut env = OperatorEnv::start("kms-age", &seed(&[("proj-age", &[])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    let handshake = env.encrypt_project("age", "proj-age").await.unwrap();
    let described = env
        .kms
        .describe_key()
        .key_id(&handshake.key)
        .send()
        .await
        .unwrap();
    let created = described.key_metadata().unwrap().creation_date().unwrap().secs();
    let ready = env
        .wait_project("age", WAIT, "aged from KMS", |pe| {
            age_source(pe) == Some(KeyAgeSource::KmsCreation)
        })
        .await
        .unwrap();
    assert_eq!(material_since(&ready), created, "the key's creation date in KMS");

    env.kms
        .rotate_key_on_demand()
        .key_id(&handshake.key)
        .send()
        .await
        .unwrap();
    let rotations = env
        .kms
        .list_key_rotations()
        .key_id(&handshake.key)
        .send()
        .await
        .unwrap();
    let rotated_at = rotations.rotations()[0].rotation_date().unwrap().secs();
    env.projects()
        .patch("age", &Default::default(), &common::poke())
        .await
        .unwrap();
    let rotated = env
        .wait_project("age", WAIT, "aged from the rotation", |pe| {
            age_source(pe) == Some(KeyAgeSource::KmsRotation)
        })
        .await
        .unwrap();
    assert_eq!(material_since(&rotated), rotated_at, "the rotation date in KMS");
    let due_at = key_status(&rotated).unwrap().rotation_due_at.as_ref().unwrap().0;
    assert_eq!(
        due_at.as_second(),
        rotated_at + 2160 * 3600,
        "due maxKeyAge after the rotation"
    );

    env.projects().delete("age", &Default::default()).await.unwrap();
    common::operator::wait_gone(&env.projects(), "age", WAIT)
        .await
        .unwrap();
    env.apply_project(
        "age",
        json!({"projectName": "proj-age", "credentialsRef": {"name": "atlas-credentials"},
               "awsKms": {"customerMasterKeyId": handshake.key, "region": REGION,
                          "roleArn": handshake.role_arn}}),
    )
    .await
    .unwrap();
    let recreated = env
        .wait_project("age", WAIT, "Ready again", |pe| {
            project_ready(pe) && age_source(pe).is_some()
        })
        .await
        .unwrap();
    assert_eq!(age_source(&recreated), Some(KeyAgeSource::KmsRotation));
    assert_eq!(
        material_since(&recreated),
        rotated_at,
        "recreating the object keeps the key's age"
    );
    env.finish().await;
}

/// While KMS rotates the key material automatically, `KeyRotationDue` says so (False, `RotatedByKms`)
/// instead of counting `maxKeyAge`, with no Warning Event, and the due date is KMS's rotation period.
#[tokio::test]
async fn automatic_rotation_in_kms_keeps_rotation_due_quiet() {
    let mut env = OperatorEnv::start("kms-auto", &seed(&[("proj-auto", &[])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    let handshake = env.encrypt_project("auto", "proj-auto").await.unwrap();
    env.kms
        .enable_key_rotation()
        .key_id(&handshake.key)
        .send()
        .await
        .unwrap();
    env.projects()
        .patch(
            "auto",
            &Default::default(),
            &kube::api::Patch::Merge(json!({"spec": {"rotation": {"maxKeyAge": "1h"}}})),
        )
        .await
        .unwrap();
    let quiet = env
        .wait_project("auto", WAIT, "RotatedByKms", |pe| {
            project_ready(pe)
                && pe
                    .status
                    .as_ref()
                    .and_then(|s| condition(&s.conditions, "KeyRotationDue"))
                    == Some(("False".into(), "RotatedByKms".into()))
        })
        .await
        .unwrap();
    let key = key_status(&quiet).unwrap();
    let since = key.material_since.as_ref().unwrap().0.as_second();
    assert_eq!(
        key.rotation_due_at.as_ref().unwrap().0.as_second(),
        since + 365 * 86_400,
        "due with KMS's rotation period (AWS's default 365 days), not maxKeyAge's 1h"
    );
    let events = env.event_reasons("auto").await.unwrap();
    assert!(
        !events.iter().any(|(r, _)| r == "KeyRotationDue"),
        "no nagging: {events:?}"
    );
    env.finish().await;
}

/// `PreviousKeyAtRisk` as (status, reason).
fn at_risk(pe: &ProjectEncryption) -> Option<(String, String)> {
    pe.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "PreviousKeyAtRisk"))
}

/// Makes the operator look again, then waits for `PreviousKeyAtRisk` to read `(status, reason)`.
async fn look_for_risk(env: &OperatorEnv, status: &str, reason: &str) -> ProjectEncryption {
    env.projects()
        .patch("risk", &Default::default(), &common::poke())
        .await
        .unwrap();
    let wanted = Some((status.to_string(), reason.to_string()));
    env.wait_project("risk", WAIT, reason, |pe| {
        project_ready(pe) && at_risk(pe) == wanted
    })
    .await
    .unwrap()
}

/// The Event of `reason` whose message says `says`.
async fn event_saying(env: &OperatorEnv, reason: &str, says: &str) -> String {
    let events = env.wait_event("risk", reason, WAIT).await.unwrap();
    events
        .into_iter()
        .find(|(r, m)| r == reason && m.contains(says))
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("no {reason} Event saying {says:?}"))
}

/// A rotation leaves the old key needed by a snapshot. Disabled in KMS, then scheduled for deletion, it
/// raises `PreviousKeyAtRisk` with a Warning Event that names the key, the snapshot count and the fix;
/// the project stays Ready (its key in force works). Usable again, the condition clears.
#[tokio::test]
async fn a_retired_key_snapshots_need_is_watched_in_kms() {
    let mut env = OperatorEnv::start("kms-risk", &seed(&[("proj-risk", &["Cluster0:M10"])]))
        .await
        .unwrap();
    env.start_controller().await.unwrap();
    let handshake = env.encrypt_project("risk", "proj-risk").await.unwrap();
    let group = env.group_id("proj-risk").await.unwrap();
    env.sim_patch_cluster(
        &group,
        "Cluster0",
        json!({"encryptionAtRestProvider": "AWS", "stateName": "IDLE"}),
    )
    .await
    .unwrap();
    env.take_snapshot(&group, "Cluster0", json!({})).await.unwrap();
    let new_key = env.rotate_key("risk", "proj-risk", &handshake).await.unwrap();
    let rotated = env
        .wait_project("risk", WAIT, "rotated", |pe| {
            project_on_key(pe, &new_key) && at_risk(pe).is_some()
        })
        .await
        .unwrap();
    let old = &rotated.status.as_ref().unwrap().previous_keys[0];
    assert_eq!((old.snapshots_using_key, old.safe_to_delete), (1, false));
    assert_eq!(
        at_risk(&rotated),
        Some(("False".into(), "RetiredKeysUsable".into()))
    );

    let old_key = handshake.key.as_str();
    // moto looks keys up by id only; the operator's fix names the key as the status records it.
    let old_id = old_key.rsplit('/').next().unwrap();
    env.kms.disable_key().key_id(old_id).send().await.unwrap();
    let disabled = look_for_risk(&env, "True", "RetiredKeyDisabled").await;
    snapshots::capture("kms-risk", "retired-key-disabled", &disabled, Expect::Ready);
    let fix = format!("aws kms enable-key --key-id {old_key}");
    let event = event_saying(&env, "RetiredKeyDisabled", &fix).await;
    assert!(event.contains("1 snapshot"), "{event}");

    env.kms
        .schedule_key_deletion()
        .key_id(old_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    look_for_risk(&env, "True", "RetiredKeyPendingDeletion").await;
    let fix = format!("aws kms cancel-key-deletion --key-id {old_key}");
    let event = event_saying(&env, "RetiredKeyPendingDeletion", &fix).await;
    assert!(event.contains("1 snapshot"), "{event}");

    env.kms.cancel_key_deletion().key_id(old_id).send().await.unwrap();
    env.kms.enable_key().key_id(old_id).send().await.unwrap();
    look_for_risk(&env, "False", "RetiredKeysUsable").await;
    env.finish().await;
}
