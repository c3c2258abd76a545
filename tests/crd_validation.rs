//! The CRDs' admission rules, enforced by the real kube-apiserver: every bad manifest is refused with
//! the message a user sees, every good one is accepted and defaulted.
#![cfg(feature = "integration")]

mod common;

use atlas_encryption_operator::crd::{ClusterEncryption, DeletionPolicy, ProjectEncryption};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const KEY_ARN: &str = "arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/atlas-kms";

fn project(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "encryption.atlasops.dev/v1alpha1",
        "kind": "ProjectEncryption",
        "metadata": {"name": name},
        "spec": spec,
    })
}

fn good_spec() -> Value {
    json!({
        "projectName": "proj-a",
        "credentialsRef": {"name": "atlas-credentials"},
        "awsKms": {"customerMasterKeyId": KEY_ARN, "region": "eu-west-2", "roleArn": ROLE_ARN},
    })
}

/// `good_spec()` with one JSON pointer replaced (or removed, for `Value::Null`).
fn spec_with(pointer: &str, value: Value) -> Value {
    let mut spec = good_spec();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = if parent.is_empty() {
        &mut spec
    } else {
        spec.pointer_mut(parent).unwrap()
    };
    if value.is_null() {
        target.as_object_mut().unwrap().remove(key);
    } else {
        target[key] = value;
    }
    spec
}

async fn create_error(api: &kube::Api<ProjectEncryption>, manifest: Value) -> Option<String> {
    let object: ProjectEncryption = match serde_json::from_value(manifest.clone()) {
        Ok(object) => object,
        // A manifest the Rust types cannot even hold (wrong JSON type) goes through the dynamic path.
        Err(_) => {
            let pp = PatchParams::apply(common::FIELD_MANAGER);
            let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
            return api
                .patch(&name, &pp, &Patch::Apply(&manifest))
                .await
                .err()
                .map(|e| e.to_string());
        }
    };
    api.create(&PostParams::default(), &object)
        .await
        .err()
        .map(|e| e.to_string())
}

#[tokio::test]
async fn bad_project_encryptions_are_refused_with_what_to_write() {
    common::testenv();
    let client = common::client().await.unwrap();
    common::install_crds(&client).await.unwrap();
    let ns = common::TestNamespace::new("crd-validation-pe").await.unwrap();
    let api = ns.api::<ProjectEncryption>();

    let long_name = "p".repeat(65);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "neither project id nor name",
            spec_with("/projectName", Value::Null),
            "set exactly one of spec.projectId",
        ),
        (
            "both project id and name",
            spec_with("/projectId", json!("6512a0f0c0ffee0000000001")),
            "set exactly one of spec.projectId",
        ),
        (
            "short project id",
            spec_with("/projectName", Value::Null)
                .as_object()
                .cloned()
                .map(|mut s| {
                    s.insert("projectId".into(), json!("6512a0f0"));
                    Value::Object(s)
                })
                .unwrap(),
            "24 lowercase hexadecimal",
        ),
        (
            "uppercase project id",
            spec_with("/projectName", Value::Null)
                .as_object()
                .cloned()
                .map(|mut s| {
                    s.insert("projectId".into(), json!("6512A0F0C0FFEE0000000001"));
                    Value::Object(s)
                })
                .unwrap(),
            "24 lowercase hexadecimal",
        ),
        (
            "project name with a space",
            spec_with("/projectName", json!("my project")),
            "projectName must be 1 to 64",
        ),
        (
            "project name too long",
            spec_with("/projectName", json!(long_name)),
            "Too long",
        ),
        (
            "unknown region",
            spec_with("/awsKms/region", json!("eu-west-9")),
            "lowercase AWS name of a region",
        ),
        (
            "Atlas region spelling",
            spec_with("/awsKms/region", json!("EU_WEST_2")),
            "lowercase AWS name of a region",
        ),
        (
            "key ARN region differs from region",
            spec_with("/awsKms/region", json!("us-east-1")),
            "region inside the key ARN differs",
        ),
        (
            "malformed key",
            spec_with("/awsKms/customerMasterKeyId", json!("my-key")),
            "customerMasterKeyId must be a KMS key ARN",
        ),
        (
            "key alias",
            spec_with(
                "/awsKms/customerMasterKeyId",
                json!("arn:aws:kms:eu-west-2:123456789012:alias/atlas"),
            ),
            "aliases are not accepted",
        ),
        (
            "key ARN with a short account",
            spec_with(
                "/awsKms/customerMasterKeyId",
                json!("arn:aws:kms:eu-west-2:1234:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
            ),
            "customerMasterKeyId must be a KMS key ARN",
        ),
        (
            "S3 ARN as key",
            spec_with("/awsKms/customerMasterKeyId", json!("arn:aws:s3:::bucket")),
            "customerMasterKeyId must be a KMS key ARN",
        ),
        (
            "user ARN as role",
            spec_with("/awsKms/roleArn", json!("arn:aws:iam::123456789012:user/bob")),
            "roleArn must be an IAM role ARN",
        ),
        (
            "role ARN with a region",
            spec_with(
                "/awsKms/roleArn",
                json!("arn:aws:iam:eu-west-2:123456789012:role/x"),
            ),
            "roleArn must be an IAM role ARN",
        ),
        (
            "malformed Atlas role id",
            spec_with("/awsKms/atlasRoleId", json!("role-1")),
            "atlasRoleId must be the 24",
        ),
        (
            "enabled without a role",
            spec_with("/awsKms/roleArn", Value::Null),
            "either roleArn",
        ),
        (
            "enabled without a key",
            spec_with("/awsKms/customerMasterKeyId", Value::Null),
            "either roleArn",
        ),
        (
            "rotation age not a duration",
            spec_with("/rotation", json!({"maxKeyAge": "90 days"})),
            "maxKeyAge must be a duration",
        ),
        (
            "rotation age too short",
            spec_with("/rotation", json!({"maxKeyAge": "30m"})),
            "maxKeyAge must be a duration",
        ),
        (
            "unknown deletion policy",
            spec_with("/deletionPolicy", json!("Delete")),
            "Unsupported value",
        ),
        (
            "credentials ref without name",
            spec_with("/credentialsRef", json!({})),
            "Required value",
        ),
        (
            "project id of the wrong JSON type",
            spec_with("/projectName", Value::Null)
                .as_object()
                .cloned()
                .map(|mut s| {
                    s.insert("projectId".into(), json!(12345));
                    Value::Object(s)
                })
                .unwrap(),
            "expected string",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (case, spec, expected)) in cases.iter().enumerate() {
        match create_error(&api, project(&format!("bad-{i}"), spec.clone())).await {
            None => failures.push(format!("{case}: accepted")),
            Some(message) if !message.contains(expected) => {
                failures.push(format!("{case}: refused with {message:?}, expected {expected:?}"))
            }
            Some(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        api.list(&Default::default()).await.unwrap().items.is_empty(),
        "nothing bad was stored"
    );
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn good_project_encryptions_are_accepted_and_defaulted() {
    common::testenv();
    let client = common::client().await.unwrap();
    common::install_crds(&client).await.unwrap();
    let ns = common::TestNamespace::new("crd-validation-good").await.unwrap();
    let api = ns.api::<ProjectEncryption>();

    let mrk = format!("arn:aws:kms:us-east-1:123456789012:key/mrk-{}", "0a".repeat(16));
    let goods = [
        good_spec(),
        spec_with("/projectName", json!("Prøjekt_ü-(1)")),
        spec_with(
            "/awsKms",
            json!({"customerMasterKeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "region": "eu-west-2", "atlasRoleId": "6512a0f0c0ffee00000000aa"}),
        ),
        spec_with(
            "/awsKms",
            json!({"customerMasterKeyId": mrk, "region": "us-east-1", "roleArn": ROLE_ARN}),
        ),
        spec_with("/awsKms", json!({"enabled": false, "region": "eu-west-2"})),
        spec_with("/rotation", json!({"maxKeyAge": "720h30m"})),
    ];
    for (i, spec) in goods.iter().enumerate() {
        let object: ProjectEncryption =
            serde_json::from_value(project(&format!("good-{i}"), spec.clone())).unwrap();
        if let Err(e) = api.create(&PostParams::default(), &object).await {
            panic!("good spec {i} refused: {e}\n{spec}");
        }
    }
    let stored = api.get("good-0").await.unwrap();
    assert!(stored.spec.aws_kms.enabled, "enabled defaults to true");
    assert!(stored.spec.kms_preflight.enabled, "preflight defaults to on");
    assert_eq!(stored.spec.rotation.max_key_age, "2160h");
    assert_eq!(stored.spec.deletion_policy, DeletionPolicy::Retain);
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn project_and_cluster_references_are_immutable() {
    common::testenv();
    let client = common::client().await.unwrap();
    common::install_crds(&client).await.unwrap();
    let ns = common::TestNamespace::new("crd-validation-immutable")
        .await
        .unwrap();
    let pp = PatchParams::apply(common::FIELD_MANAGER);

    let pes = ns.api::<ProjectEncryption>();
    pes.patch("pe", &pp, &Patch::Apply(project("pe", good_spec())))
        .await
        .unwrap();
    let moved = spec_with("/projectName", json!("proj-b"));
    let err = pes
        .patch("pe", &pp, &Patch::Apply(project("pe", moved)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot change"), "{err}");
    let by_id = spec_with("/projectName", Value::Null)
        .as_object()
        .cloned()
        .map(|mut s| {
            s.insert("projectId".into(), json!("6512a0f0c0ffee0000000001"));
            Value::Object(s)
        });
    let err = pes
        .patch("pe", &pp, &Patch::Apply(project("pe", by_id.unwrap())))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot change"),
        "switching name to id is a change: {err}"
    );
    // Other fields stay editable: a key rotation is a spec change like any other.
    let rotated = spec_with(
        "/awsKms/customerMasterKeyId",
        json!("1234abcd-12ab-34cd-56ef-1234567890ff"),
    );
    pes.patch("pe", &pp, &Patch::Apply(project("pe", rotated)))
        .await
        .unwrap();

    let ces = ns.api::<ClusterEncryption>();
    let cluster = |project: &str, cluster: &str| {
        json!({
            "apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": "ClusterEncryption",
            "metadata": {"name": "ce"},
            "spec": {"projectEncryptionRef": {"name": project}, "clusterName": cluster},
        })
    };
    ces.patch("ce", &pp, &Patch::Apply(cluster("pe", "Cluster0")))
        .await
        .unwrap();
    let err = ces
        .patch("ce", &pp, &Patch::Apply(cluster("pe", "Cluster1")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("clusterName cannot change"), "{err}");
    let err = ces
        .patch("ce", &pp, &Patch::Apply(cluster("other", "Cluster0")))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("projectEncryptionRef cannot change"),
        "{err}"
    );
    let err = ces
        .patch(
            "bad",
            &pp,
            &Patch::Apply(json!({
                "apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": "ClusterEncryption",
                "metadata": {"name": "bad"},
                "spec": {"projectEncryptionRef": {"name": "pe"}, "clusterName": "-bad_name"},
            })),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("clusterName must be an Atlas cluster name"),
        "{err}"
    );
    let stored = ces.get("ce").await.unwrap();
    assert!(stored.spec.enabled);
    ns.cleanup().await.unwrap();
}
