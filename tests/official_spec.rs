//! The operator's Atlas client judged by the official Atlas Administration API v2 specification, the
//! one shipped in MongoDB's Go SDK module pinned in `tests/atlas-sdk` (`scripts/atlas-spec.sh` prints
//! its path; `ATLAS_OPENAPI_SPEC` names a copy). Our simulator is judged by the same document, so a
//! wrong assumption shared by the client and the simulator is caught here rather than agreed on.

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use atlas_encryption_operator::atlas::{
    AwsIamRole, AwsKmsConfig, AwsKmsPatch, Cluster, ControlPlaneIpAddresses, ENDPOINTS, EarPrivateEndpoint,
    EncryptionAtRest, FeatureUsage, Group, HardwareSpec, RateLimitEndpoint, RateLimitEndpointSet,
    RateLimitValue, RegionConfig, ReplicationSpec, Snapshot,
};
use atlas_encryption_operator::aws::{KeyRef, Region};
use serde::Serialize;
use serde_json::Value;

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = match std::env::var("ATLAS_OPENAPI_SPEC") {
            Ok(p) => p,
            Err(_) => {
                let script = common::repo_root().join("scripts/atlas-spec.sh");
                let out = std::process::Command::new("bash").arg(&script).output().unwrap();
                assert!(
                    out.status.success(),
                    "{}: {}",
                    script.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8(out.stdout).unwrap().trim().to_string()
            }
        };
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        serde_yaml::from_str(&text).expect("the specification parses")
    })
}

fn resolve(reference: &str) -> &'static Value {
    spec()
        .pointer(reference.strip_prefix('#').expect("a local $ref"))
        .unwrap_or_else(|| panic!("unresolved {reference}"))
}

/// Every property name a schema declares, through `$ref`, `allOf`, `oneOf`/`anyOf` and every variant
/// a discriminator maps to.
fn declared(schema: &Value, seen: &mut BTreeSet<String>, out: &mut BTreeSet<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        if seen.insert(r.to_string()) {
            declared(resolve(r), seen, out);
        }
        return;
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for part in schema.get(key).and_then(Value::as_array).into_iter().flatten() {
            declared(part, seen, out);
        }
    }
    if let Some(mapping) = schema
        .pointer("/discriminator/mapping")
        .and_then(Value::as_object)
    {
        for target in mapping.values().filter_map(Value::as_str) {
            declared(&serde_json::json!({ "$ref": target }), seen, out);
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        out.extend(props.keys().cloned());
    }
}

fn schema_properties(names: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in names {
        let reference = format!("#/components/schemas/{name}");
        declared(
            &serde_json::json!({ "$ref": reference }),
            &mut BTreeSet::new(),
            &mut out,
        );
    }
    assert!(!out.is_empty(), "{names:?} declare no properties");
    out
}

/// The wire names of a model's fields: a value with every field present, serialized.
fn wire_fields<T: Serialize>(value: &T) -> BTreeSet<String> {
    match serde_json::to_value(value).unwrap() {
        Value::Object(m) => m.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn every_endpoint_the_client_calls_is_an_official_operation_at_its_version() {
    let paths = spec()["paths"].as_object().unwrap();
    for e in ENDPOINTS {
        let path = format!("/api/atlas/v2{}", e.template);
        let op = paths
            .get(&path)
            .and_then(|p| p.get(e.method.to_lowercase()))
            .unwrap_or_else(|| panic!("{} {path} is not in the official specification", e.method));
        let media: Vec<&String> = op["responses"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(code, _)| code.starts_with('2'))
            .filter_map(|(_, r)| r.get("content").and_then(Value::as_object))
            .flat_map(|c| c.keys())
            .collect();
        let ours = format!("application/vnd.atlas.{}+json", e.version);
        // A 204 has no content; its version still shows in the error responses' siblings, so only
        // operations with a success body are held to their media type.
        assert!(
            media.is_empty() || media.contains(&&ours),
            "{} {path}: the client asks for {ours}, the specification serves {media:?}",
            e.method
        );
    }
}

#[test]
fn every_field_the_client_reads_or_writes_is_declared_by_its_official_schema() {
    // Every field a PATCH can carry: a first enable sends them all.
    let full_patch = AwsKmsPatch::enable(
        &KeyRef::parse("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
            .unwrap(),
        Region::parse("us-east-1").unwrap(),
        "6512a0f0c0ffee0000000001",
        true,
    );
    let cases: Vec<(&str, BTreeSet<String>, &[&str])> = vec![
        ("Group", wire_fields(&Group::default()), &["Group"]),
        (
            "EncryptionAtRest",
            wire_fields(&EncryptionAtRest::default()),
            &["EncryptionAtRest"],
        ),
        (
            "AwsKmsConfig",
            wire_fields(&AwsKmsConfig::default()),
            &["AWSKMSConfiguration"],
        ),
        ("AwsKmsPatch", wire_fields(&full_patch), &["AWSKMSConfiguration"]),
        (
            "AwsIamRole",
            wire_fields(&AwsIamRole::default()),
            &["CloudProviderAccessAWSIAMRole"],
        ),
        (
            "FeatureUsage",
            wire_fields(&FeatureUsage::default()),
            &["CloudProviderAccessFeatureUsage"],
        ),
        (
            "Cluster",
            wire_fields(&Cluster::default()),
            &["ClusterDescription20240805"],
        ),
        (
            "ReplicationSpec",
            wire_fields(&ReplicationSpec::default()),
            &["ReplicationSpec20240805"],
        ),
        (
            "RegionConfig",
            wire_fields(&RegionConfig::default()),
            &["CloudRegionConfig20240805"],
        ),
        (
            "HardwareSpec",
            wire_fields(&HardwareSpec::default()),
            &["HardwareSpec20240805"],
        ),
        (
            "Snapshot",
            wire_fields(&Snapshot::default()),
            &["DiskBackupReplicaSet", "DiskBackupShardedClusterSnapshot"],
        ),
        (
            "EarPrivateEndpoint",
            wire_fields(&EarPrivateEndpoint::default()),
            &["AWSKMSEARPrivateEndpoint"],
        ),
        (
            "RateLimitEndpointSet",
            wire_fields(&RateLimitEndpointSet::default()),
            &["RateLimitEndpointSetResponse"],
        ),
        (
            "RateLimitValue",
            wire_fields(&RateLimitValue::default()),
            &["RateLimitEndpointSetCapacity", "RateLimitEndpointSetRefillRate"],
        ),
        (
            "RateLimitEndpoint",
            wire_fields(&RateLimitEndpoint::default()),
            &["RateLimitEndpointSetEndpoint"],
        ),
        (
            "ControlPlaneIpAddresses",
            wire_fields(&ControlPlaneIpAddresses::default()),
            &["ControlPlaneIPAddresses"],
        ),
    ];
    let mut wrong = vec![];
    for (model, fields, schemas) in &cases {
        let official = schema_properties(schemas);
        for f in fields.difference(&official) {
            wrong.push(format!("{model}.{f} is not declared by {schemas:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "fields the official schemas do not declare: {wrong:#?}"
    );
    eprintln!(
        "{} models and {} endpoints judged by the official specification",
        cases.len(),
        ENDPOINTS.len()
    );
}
