//! Bad input, all in one table: every way a user can get a ProjectEncryption or ClusterEncryption wrong,
//! with what must happen. Either the kube-apiserver refuses the object (its CEL or schema message), or
//! the operator stalls it with a named reason and a message saying what to fix. For every case the
//! operator handles, the suite also asserts:
//! - zero Atlas writes for that case (from atlas-sim's call log),
//! - no secret value in the object's status or Events,
//! - the operator is still working afterwards: a good object in the same namespace goes Ready.
//!
//! Three groups share one namespace (and, for the two operator groups, one atlas-sim and controller)
//! each, so the whole table runs in a couple of minutes. Several cases are also covered one by one in
//! crd_validation.rs, project_encryption.rs and cluster_encryption.rs; here they are listed together.
#![cfg(feature = "integration")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use atlas_encryption_operator::crd::{ClusterEncryption, ProjectEncryption};
use common::operator::{API_PRIVATE_KEY, API_PUBLIC_KEY, CUSTOMER_ACCOUNT, OperatorEnv, REGION, seed};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// Every secret value any case puts in a Secret: none may show up in a status or an Event.
const SECRET_VALUES: &[&str] = &[
    API_PRIVATE_KEY,
    "TOPSECRET-wrong-private-key",
    "TOPSECRET-password",
    "TOPSECRET-client-secret",
    "TOPSECRET-only-public",
];

/// What must happen to one bad object.
#[derive(Clone, Debug)]
enum Expect {
    /// The kube-apiserver refuses it; its answer contains this text.
    Refused(&'static str),
    /// Stalled=True, Ready=False with this reason, and a Ready message containing the hint.
    Stalled {
        reason: &'static str,
        hint: &'static str,
    },
    /// Not stalled: the operator waits for the user (Reconciling=True) with this reason and hint.
    Waits {
        reason: &'static str,
        hint: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Project,
    Cluster,
}

struct Case {
    /// metadata.name of the object.
    name: String,
    what: &'static str,
    kind: Kind,
    spec: Value,
    expect: Expect,
    /// Atlas writes this case may cause (method, route suffix); empty for all but the documented few.
    writes: &'static [(&'static str, &'static str)],
    /// The Atlas project the case names, when the seed has it (to attribute writes by group id).
    project: Option<&'static str>,
}

fn case(name: &str, what: &'static str, kind: Kind, spec: Value, expect: Expect) -> Case {
    Case {
        name: name.to_string(),
        what,
        kind,
        spec,
        expect,
        writes: &[],
        project: None,
    }
}

fn stalled(reason: &'static str, hint: &'static str) -> Expect {
    Expect::Stalled { reason, hint }
}

fn pe_spec(project: &str, secret: &str, key: &str, region: &str, role_arn: &str) -> Value {
    json!({"projectName": project, "credentialsRef": {"name": secret},
           "awsKms": {"customerMasterKeyId": key, "region": region, "roleArn": role_arn}})
}

fn ce_spec(project_encryption: &str, cluster: &str) -> Value {
    json!({"projectEncryptionRef": {"name": project_encryption}, "clusterName": cluster})
}

fn manifest(kind: Kind, name: &str, spec: &Value) -> Value {
    let kind = match kind {
        Kind::Project => "ProjectEncryption",
        Kind::Cluster => "ClusterEncryption",
    };
    json!({"apiVersion": "encryption.atlasops.dev/v1alpha1", "kind": kind,
           "metadata": {"name": name}, "spec": spec})
}

fn random_key_id() -> String {
    let hex = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn role(name: &str) -> String {
    format!("arn:aws:iam::{CUSTOMER_ACCOUNT}:role/{name}")
}

// ------------------------------------------------------------------------------------------------
// Reading an object's outcome, the same way for both kinds.

struct Observed {
    conditions: Vec<Condition>,
    status_json: String,
}

async fn observe(env: &OperatorEnv, kind: Kind, name: &str) -> Option<Observed> {
    let status = match kind {
        Kind::Project => env
            .projects()
            .get_opt(name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o.status).unwrap()),
        Kind::Cluster => env
            .clusters()
            .get_opt(name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o.status).unwrap()),
    }?;
    let conditions = status
        .get("conditions")
        .cloned()
        .map(|c| serde_json::from_value(c).unwrap())
        .unwrap_or_default();
    Some(Observed {
        conditions,
        status_json: status.to_string(),
    })
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn settled(observed: &Observed, expect: &Expect) -> bool {
    let ready = find(&observed.conditions, "Ready");
    match expect {
        Expect::Stalled { reason, .. } => {
            ready.is_some_and(|c| c.reason == *reason && c.status == "False")
                && find(&observed.conditions, "Stalled").is_some_and(|c| c.status == "True")
        }
        Expect::Waits { reason, .. } => {
            ready.is_some_and(|c| c.reason == *reason && c.status == "False")
                && find(&observed.conditions, "Reconciling").is_some_and(|c| c.status == "True")
        }
        Expect::Refused(_) => unreachable!("refused objects are never stored"),
    }
}

/// Waits for every case to reach its outcome (they converge in parallel) and checks reason, hint,
/// kstatus shape and the absence of secret values in status and Events.
async fn assert_outcomes(env: &OperatorEnv, cases: &[Case]) {
    for c in cases {
        let deadline = tokio::time::Instant::now() + WAIT;
        let observed = loop {
            let observed = observe(env, c.kind, &c.name).await;
            if let Some(o) = observed
                && settled(&o, &c.expect)
            {
                break o;
            }
            if tokio::time::Instant::now() > deadline {
                let now = observe(env, c.kind, &c.name).await.map(|o| o.status_json);
                panic!(
                    "case {:?} ({}): expected {:?}, status after {WAIT:?}: {now:?}",
                    c.name, c.what, c.expect
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let ready = find(&observed.conditions, "Ready").unwrap();
        let (Expect::Stalled { hint, reason } | Expect::Waits { hint, reason }) = &c.expect else {
            unreachable!()
        };
        assert!(
            ready.message.contains(hint),
            "case {:?} ({}): the Ready message should say what to fix ({hint:?}): {}",
            c.name,
            c.what,
            ready.message
        );
        if matches!(c.expect, Expect::Waits { .. }) {
            assert!(
                find(&observed.conditions, "Stalled").is_none_or(|s| s.status != "True"),
                "case {:?}: waiting is not stalled",
                c.name
            );
        }
        // The Event is published from a queue after the status is written: give it the same deadline.
        let events = if matches!(c.expect, Expect::Stalled { .. }) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let events = env.wait_event(&c.name, reason, left).await.unwrap();
            assert!(
                events.iter().any(|(r, _)| r == reason),
                "case {:?} ({}): a Warning Event {reason}: {events:?}",
                c.name,
                c.what
            );
            events
        } else {
            env.event_reasons(&c.name).await.unwrap()
        };
        let events = serde_json::to_string(&events).unwrap();
        for secret in SECRET_VALUES {
            assert!(
                !observed.status_json.contains(secret) && !events.contains(secret),
                "case {:?}: secret value {secret:?} leaked into status or Events",
                c.name
            );
        }
    }
}

/// The Atlas writes of the whole run must be exactly the ones the cases allow, attributed by project.
/// A write Atlas refused changed nothing (a role waiting for its trust policy is offered for
/// authorization at each look, and refused until the customer trusts it); those are only bounded, so
/// a refusal can never turn into a hot loop.
async fn assert_writes(env: &OperatorEnv, groups: &BTreeMap<String, String>, cases: &[Case]) {
    let (writes, refused): (Vec<_>, Vec<_>) = env
        .atlas_writes()
        .into_iter()
        .partition(|w| (200..300).contains(&w.status));
    assert!(refused.len() <= 20, "refused Atlas writes: {refused:?}");
    let mut explained = BTreeSet::new();
    for c in cases {
        let Some(project) = c.project else {
            assert!(c.writes.is_empty(), "{}: writes need a project", c.name);
            continue;
        };
        let group = &groups[project];
        let mine: Vec<_> = writes
            .iter()
            .filter(|w| {
                w.path.contains(&format!("/groups/{group}/")) || w.path.ends_with(&format!("/groups/{group}"))
            })
            .collect();
        let expected: Vec<_> = c.writes.iter().map(|(m, r)| format!("{m} {r}")).collect();
        let actual: Vec<_> = mine
            .iter()
            .map(|w| {
                let route = w.route.as_deref().unwrap_or(&w.path);
                let suffix = c
                    .writes
                    .iter()
                    .map(|(_, r)| *r)
                    .find(|r| route.ends_with(r))
                    .unwrap_or(route);
                format!("{} {suffix}", w.method)
            })
            .collect();
        assert_eq!(
            actual, expected,
            "case {:?} ({}): Atlas writes {mine:?}",
            c.name, c.what
        );
        explained.extend(mine.iter().map(|w| w.seq));
    }
    let unexplained: Vec<_> = writes.iter().filter(|w| !explained.contains(&w.seq)).collect();
    assert!(
        unexplained.is_empty(),
        "Atlas writes no case explains: {unexplained:?}"
    );
}

/// Atlas project ids by name, read before any fault is injected.
async fn group_ids(env: &OperatorEnv, names: &[&str]) -> BTreeMap<String, String> {
    let (atlas, creds) = env.atlas();
    let mut out = BTreeMap::new();
    for name in names {
        let group = atlas.get_project_by_name(&creds, name).await.unwrap();
        out.insert(name.to_string(), group.id);
    }
    out
}

async fn apply(env: &OperatorEnv, c: &Case) {
    match c.kind {
        Kind::Project => {
            env.apply_project(&c.name, c.spec.clone())
                .await
                .unwrap_or_else(|e| panic!("case {:?} ({}) should be admitted: {e}", c.name, c.what));
        }
        Kind::Cluster => {
            env.apply_cluster(&c.name, c.spec.clone())
                .await
                .unwrap_or_else(|e| panic!("case {:?} ({}) should be admitted: {e}", c.name, c.what));
        }
    }
}

fn is_ready(conditions: &[Condition]) -> bool {
    find(conditions, "Ready").is_some_and(|c| c.status == "True")
}

// ------------------------------------------------------------------------------------------------
// Group 1: refused at admission (no operator involved).

#[tokio::test]
async fn bad_manifests_are_refused_by_the_api_server() {
    common::testenv();
    let client = common::client().await.unwrap();
    common::install_crds(&client).await.unwrap();
    let ns = common::TestNamespace::new("bad-admission").await.unwrap();
    let projects = ns.api::<ProjectEncryption>();
    let clusters = ns.api::<ClusterEncryption>();

    let key = format!("arn:aws:kms:{REGION}:{CUSTOMER_ACCOUNT}:key/{}", random_key_id());
    let good = |project: &str| pe_spec(project, "atlas-credentials", &key, REGION, &role("atlas-kms"));
    let with = |pointer: &str, value: Value| {
        let mut spec = good("proj-a");
        *spec.pointer_mut(pointer).unwrap() = value;
        spec
    };
    let with_endpoint_regions = |regions: Value| {
        let mut spec = good("proj-a");
        spec["awsKms"]["privateEndpointRegions"] = regions;
        spec
    };
    let key_msg = "customerMasterKeyId must be a KMS key ARN";
    let region_msg = "region must be the lowercase AWS name";
    let role_msg = "roleArn must be an IAM role ARN";
    let p = Kind::Project;
    let c = Kind::Cluster;
    let mut no_role = good("proj-a");
    no_role["awsKms"].as_object_mut().unwrap().remove("roleArn");

    let cases = vec![
        case("key-alias-name", "a key alias instead of a key", p, with("/awsKms/customerMasterKeyId", json!("alias/atlas")), Expect::Refused(key_msg)),
        case("key-alias-arn", "an alias ARN", p,
            with("/awsKms/customerMasterKeyId", json!(format!("arn:aws:kms:{REGION}:{CUSTOMER_ACCOUNT}:alias/atlas"))),
            Expect::Refused("aliases are not accepted")),
        case("key-short-account", "a key ARN with an 11-digit account", p,
            with("/awsKms/customerMasterKeyId", json!(format!("arn:aws:kms:{REGION}:12345678901:key/{}", random_key_id()))),
            Expect::Refused(key_msg)),
        case("key-truncated-id", "a truncated key id", p, with("/awsKms/customerMasterKeyId", json!("1234abcd-12ab-34cd-56ef-1234567890")), Expect::Refused(key_msg)),
        case("key-other-service", "an S3 ARN as the key", p,
            with("/awsKms/customerMasterKeyId", json!(format!("arn:aws:s3:{REGION}:{CUSTOMER_ACCOUNT}:key/{}", random_key_id()))),
            Expect::Refused(key_msg)),
        case("key-fullwidth-digits", "a key id in unicode full-width digits", p,
            with("/awsKms/customerMasterKeyId", json!("１２３４abcd-12ab-34cd-56ef-1234567890ab")), Expect::Refused(key_msg)),
        case("key-huge", "a 4 KiB key id", p, with("/awsKms/customerMasterKeyId", json!("a".repeat(4096))), Expect::Refused("Too long")),
        case("key-region-mismatch", "a key ARN in eu-west-1 with region eu-west-2", p,
            with("/awsKms/customerMasterKeyId", json!(format!("arn:aws:kms:eu-west-1:{CUSTOMER_ACCOUNT}:key/{}", random_key_id()))),
            Expect::Refused("the region inside the key ARN differs from spec.awsKms.region")),
        case("region-unknown", "an unknown region", p, with("/awsKms/region", json!("eu-west-9")), Expect::Refused(region_msg)),
        case("region-atlas-spelling", "Atlas's region spelling", p, with("/awsKms/region", json!("EU_WEST_2")), Expect::Refused(region_msg)),
        case("region-global", "Atlas's GLOBAL pseudo-region", p, with("/awsKms/region", json!("GLOBAL")), Expect::Refused(region_msg)),
        case("endpoint-region-atlas-spelling", "Atlas's region spelling among privateEndpointRegions", p,
            with_endpoint_regions(json!(["us-east-1", "US_EAST_1"])), Expect::Refused("privateEndpointRegions must list lowercase AWS names")),
        case("endpoint-regions-many", "17 privateEndpointRegions", p,
            with_endpoint_regions(json!(vec!["us-east-1"; 17])), Expect::Refused("must have at most 16 items")),
        case("role-of-a-user", "an IAM user ARN as the role", p,
            with("/awsKms/roleArn", json!(format!("arn:aws:iam::{CUSTOMER_ACCOUNT}:user/bob"))), Expect::Refused(role_msg)),
        case("role-with-region", "a role ARN with a region", p,
            with("/awsKms/roleArn", json!(format!("arn:aws:iam:{REGION}:{CUSTOMER_ACCOUNT}:role/x"))), Expect::Refused(role_msg)),
        case("role-unicode", "a role name with unicode", p,
            with("/awsKms/roleArn", json!(format!("arn:aws:iam::{CUSTOMER_ACCOUNT}:role/rôle-kms"))), Expect::Refused(role_msg)),
        case("no-role", "enabled without roleArn or atlasRoleId", p, no_role,
            Expect::Refused("either roleArn (the IAM role Atlas assumes) or atlasRoleId")),
        case("atlas-role-id-bad", "a malformed atlasRoleId", p, with("/awsKms/roleArn", Value::Null).as_object().cloned().map(|mut s| {
                s["awsKms"] = json!({"customerMasterKeyId": key, "region": REGION, "atlasRoleId": "not-an-object-id"});
                Value::Object(s)
            }).unwrap(),
            Expect::Refused("atlasRoleId must be the 24 lowercase hexadecimal")),
        case("project-emoji", "a project name with an emoji", p, good("payments-🔒"), Expect::Refused("projectName must be 1 to 64")),
        case("project-huge", "a 10 000-character project name", p, good(&"p".repeat(10_000)), Expect::Refused("Too long")),
        case("project-unicode-65", "65 unicode letters as the project name", p, good(&"é".repeat(65)), Expect::Refused("Too long")),
        case(&"n".repeat(254), "a 254-character object name", p, good("proj-a"), Expect::Refused("253")),
        case("zahlungen-ä", "a unicode object name", p, good("proj-a"), Expect::Refused("RFC 1123")),
        case("cluster-unicode", "a unicode cluster name", c, ce_spec("payments", "orders-ü"), Expect::Refused("clusterName must be an Atlas cluster name")),
        case("cluster-huge", "a 65-character cluster name", c, ce_spec("payments", &"c".repeat(65)), Expect::Refused("clusterName must be an Atlas cluster name")),
    ];

    let pp = PatchParams::apply(common::FIELD_MANAGER);
    for c in &cases {
        let Expect::Refused(message) = c.expect else {
            unreachable!()
        };
        let object = manifest(c.kind, &c.name, &c.spec);
        let result = match c.kind {
            Kind::Project => projects
                .patch(&c.name, &pp, &Patch::Apply(&object))
                .await
                .map(drop),
            Kind::Cluster => clusters
                .patch(&c.name, &pp, &Patch::Apply(&object))
                .await
                .map(drop),
        };
        let error = match result {
            Ok(()) => panic!("case {:?} ({}) was admitted", c.name, c.what),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains(message),
            "case {:?} ({}): expected {message:?} in {error}",
            c.name,
            c.what
        );
    }
    // The good manifest itself is admitted: the refusals above come from the one bad field.
    projects
        .patch("good", &pp, &Patch::Apply(&manifest(p, "good", &good("proj-a"))))
        .await
        .unwrap();
    clusters
        .patch(
            "good",
            &pp,
            &Patch::Apply(&manifest(c, "good", &ce_spec("payments", "orders"))),
        )
        .await
        .unwrap();
}

// ------------------------------------------------------------------------------------------------
// Group 2: ProjectEncryptions the API server accepts and the operator must stall (or hold).

const PROJECTS: &[&str] = &[
    "proj-nosecret",
    "proj-wrongkeys",
    "proj-empty",
    "proj-onlypublic",
    "proj-both",
    "proj-401",
    "proj-sa",
    "proj-403",
    "proj-disabled",
    "proj-pending",
    "proj-asym",
    "proj-missing",
    "proj-otherregion",
    "proj-xacct-arn",
    "proj-xacct-role",
    "proj-xacct-id",
    "proj-norole",
    "proj-longname",
    "proj-good",
];

#[tokio::test]
async fn bad_project_encryptions_stall_with_what_to_fix_and_no_atlas_write() {
    let entries: Vec<(&str, &[&str])> = PROJECTS.iter().map(|p| (*p, &[][..])).collect();
    // One more project the API key cannot reach.
    let seed_yaml = format!("{}  - name: proj-noaccess\n    clusters: []\n", seed(&entries));
    let mut env = OperatorEnv::start("bad-pe", &seed_yaml).await.unwrap();

    // The customer's AWS side: keys in every bad state, in moto.
    let good_key = env.create_key(REGION).await.unwrap();
    let key_id = |arn: &str| arn.rsplit('/').next().unwrap().to_string();
    let disabled = env.create_key(REGION).await.unwrap();
    env.kms
        .disable_key()
        .key_id(key_id(&disabled))
        .send()
        .await
        .unwrap();
    let pending = env.create_key(REGION).await.unwrap();
    env.kms
        .schedule_key_deletion()
        .key_id(key_id(&pending))
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let asymmetric = env
        .kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Rsa2048)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let missing = format!("arn:aws:kms:{REGION}:{CUSTOMER_ACCOUNT}:key/{}", random_key_id());
    let in_eu_west_1 = env.create_key("eu-west-1").await.unwrap();
    let other_account = "111122223333";
    let cross_account_key = format!("arn:aws:kms:{REGION}:{other_account}:key/{}", random_key_id());
    let other_account_role = format!("arn:aws:iam::{other_account}:role/atlas-kms");

    // Secrets with every kind of mistake.
    env.apply_secret(
        "wrong-keys",
        &[("user", "atlas"), ("password", "TOPSECRET-password")],
    )
    .await
    .unwrap();
    env.apply_secret("empty-values", &[("publicKey", ""), ("privateKey", "  \n")])
        .await
        .unwrap();
    env.apply_secret("only-public", &[("publicKey", "TOPSECRET-only-public")])
        .await
        .unwrap();
    env.apply_secret(
        "both-kinds",
        &[
            ("publicKey", API_PUBLIC_KEY),
            ("privateKey", API_PRIVATE_KEY),
            ("clientId", "mdb_sa_id_x"),
            ("clientSecret", "TOPSECRET-client-secret"),
        ],
    )
    .await
    .unwrap();
    env.apply_secret(
        "wrong-private-key",
        &[
            ("publicKey", API_PUBLIC_KEY),
            ("privateKey", "TOPSECRET-wrong-private-key"),
        ],
    )
    .await
    .unwrap();
    env.apply_secret(
        "unknown-service-account",
        &[
            ("clientId", "mdb_sa_id_nobody"),
            ("clientSecret", "TOPSECRET-client-secret"),
        ],
    )
    .await
    .unwrap();

    let groups = group_ids(&env, PROJECTS).await;
    env.sim().clear_calls();

    // Atlas answering 403 for a project the key may list but not manage.
    let fault = json!({"method": "GET", "path": "/api/atlas/v2/groups/byName/proj-403",
                       "kind": "status", "status": 403, "errorCode": "USER_CANNOT_ACCESS_ORG"});
    let response = reqwest::Client::new()
        .post(format!("{}/__sim/faults", env.sim().base_url()))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "fault: {}", response.status());

    let creds = "atlas-credentials";
    let r = role("atlas-kms");
    let p = Kind::Project;
    let long_name = "l".repeat(253);
    let cases = vec![
        case(
            "no-secret",
            "credentialsRef names no Secret",
            p,
            pe_spec("proj-nosecret", "does-not-exist", &good_key, REGION, &r),
            stalled("CredentialsInvalid", "create it with publicKey and privateKey"),
        ),
        case(
            "wrong-keys",
            "a Secret with user/password instead of the API key fields",
            p,
            pe_spec("proj-wrongkeys", "wrong-keys", &good_key, REGION, &r),
            stalled("CredentialsInvalid", "none of the keys publicKey/privateKey"),
        ),
        case(
            "empty-values",
            "a Secret whose values are empty or blank",
            p,
            pe_spec("proj-empty", "empty-values", &good_key, REGION, &r),
            stalled("CredentialsInvalid", "must both be set and non-empty"),
        ),
        case(
            "only-public",
            "a Secret with publicKey only",
            p,
            pe_spec("proj-onlypublic", "only-public", &good_key, REGION, &r),
            stalled("CredentialsInvalid", "must both be set and non-empty"),
        ),
        case(
            "both-kinds",
            "a Secret with an API key and a service account",
            p,
            pe_spec("proj-both", "both-kinds", &good_key, REGION, &r),
            stalled("CredentialsInvalid", "keep one"),
        ),
        case(
            "wrong-api-key",
            "a wrong private key: Atlas answers 401",
            p,
            pe_spec("proj-401", "wrong-private-key", &good_key, REGION, &r),
            stalled("CredentialsRejected", "Check the Secret holds a valid key"),
        ),
        case(
            "unknown-sa",
            "an unknown service account: the token endpoint answers 401",
            p,
            pe_spec("proj-sa", "unknown-service-account", &good_key, REGION, &r),
            stalled("CredentialsRejected", "Check the Secret holds a valid key"),
        ),
        case(
            "forbidden",
            "Atlas answers 403 for the project",
            p,
            pe_spec("proj-403", creds, &good_key, REGION, &r),
            stalled("CredentialsRejected", "Grant the key Project Owner"),
        ),
        case(
            "no-access",
            "the key has no access to the project: Atlas answers 401 NOT_IN_GROUP",
            p,
            pe_spec("proj-noaccess", creds, &good_key, REGION, &r),
            stalled("ProjectNotFound", "not found or the key cannot see it"),
        ),
        case(
            "unknown-project",
            "a project name Atlas does not know",
            p,
            pe_spec("proj-nowhere", creds, &good_key, REGION, &r),
            stalled("ProjectNotFound", "not found or the key cannot see it"),
        ),
        case(
            "unknown-project-id",
            "a project id Atlas does not know",
            p,
            json!({"projectId": "0123456789abcdef01234567", "credentialsRef": {"name": creds},
                   "awsKms": {"customerMasterKeyId": good_key, "region": REGION, "roleArn": r}}),
            stalled("ProjectNotFound", "not found or the key cannot see it"),
        ),
        case(
            "unicode-project",
            "a unicode project name (admitted, unknown to Atlas)",
            p,
            pe_spec("Zahlungen-Prüfung-支払い", creds, &good_key, REGION, &r),
            stalled("ProjectNotFound", "not found or the key cannot see it"),
        ),
        case(
            "disabled-key",
            "a disabled KMS key",
            p,
            pe_spec("proj-disabled", creds, &disabled, REGION, &r),
            stalled("KeyDisabled", "enable it (kms:EnableKey)"),
        ),
        case(
            "pending-key",
            "a key pending deletion",
            p,
            pe_spec("proj-pending", creds, &pending, REGION, &r),
            stalled("KeyPendingDeletion", "cancel the deletion"),
        ),
        case(
            "asymmetric-key",
            "an asymmetric (RSA sign/verify) key",
            p,
            pe_spec("proj-asym", creds, &asymmetric, REGION, &r),
            stalled("KeyNotSymmetric", "SYMMETRIC_DEFAULT"),
        ),
        case(
            "missing-key",
            "a key ARN that does not exist",
            p,
            pe_spec("proj-missing", creds, &missing, REGION, &r),
            stalled("KeyNotFound", "check the key id, account and region"),
        ),
        case(
            "key-other-region",
            "the bare id of a key that lives in eu-west-1, region eu-west-2",
            p,
            pe_spec("proj-otherregion", creds, &key_id(&in_eu_west_1), REGION, &r),
            stalled("KeyNotFound", "check the key id, account and region"),
        ),
        case(
            "cross-account-key",
            "a key ARN in another account the operator cannot see",
            p,
            pe_spec("proj-xacct-arn", creds, &cross_account_key, REGION, &r),
            stalled("KeyNotFound", "check the key id, account and region"),
        ),
        case(
            "unknown-atlas-role",
            "an atlasRoleId Atlas does not have",
            p,
            json!({"projectName": "proj-norole", "credentialsRef": {"name": creds},
                   "awsKms": {"customerMasterKeyId": good_key, "region": REGION, "atlasRoleId": "0123456789abcdef01234567"}}),
            stalled("RoleNotFound", "fix spec.awsKms.atlasRoleId"),
        ),
    ];
    let mut cases = cases;
    // An Event is named "<object name>.<16 hex digits>", which the API server refuses past 253
    // characters: the operator cuts the object's part, so the longest name still gets its Warning Event.
    cases.push(case(
        &long_name,
        "a 253-character object name (the maximum)",
        p,
        pe_spec("proj-longname", "does-not-exist", &good_key, REGION, &r),
        stalled("CredentialsInvalid", "create it with publicKey and privateKey"),
    ));
    // A full key ARN in another account than the role is legal (the key policy decides): the operator
    // creates the Atlas role and waits for the trust policy, never assigning the key. One role POST, no
    // encryptionAtRest PATCH.
    let mut wrong_account_role = case(
        "role-other-account",
        "a role ARN in another account than the key ARN",
        p,
        pe_spec("proj-xacct-role", creds, &good_key, REGION, &other_account_role),
        Expect::Waits {
            reason: "AwaitingTrustPolicy",
            hint: "sts:ExternalId",
        },
    );
    wrong_account_role.writes = &[("POST", "/cloudProviderAccess")];
    cases.push(wrong_account_role);
    // A bare key id means "the key in the role's account" to Atlas; the preflight finds the key in the
    // operator's account, another than the role's, so the ARN is required: refused before any Atlas
    // role is created.
    cases.push(case(
        "bare-id-other-account",
        "a bare key id with a role in another account",
        p,
        pe_spec(
            "proj-xacct-id",
            creds,
            &key_id(&good_key),
            REGION,
            &other_account_role,
        ),
        stalled("KeyArnRequired", "full key ARN"),
    ));
    for c in &mut cases {
        let project = c.spec["projectName"].as_str().unwrap_or_default();
        c.project = PROJECTS.iter().copied().find(|p| *p == project);
    }

    env.start_controller().await.unwrap();
    for c in &cases {
        apply(&env, c).await;
    }
    assert_outcomes(&env, &cases).await;
    // Let a few more reconciles pass (requeues, Events) before counting writes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_writes(&env, &groups, &cases).await;

    // The operator is still working: a good object in the same namespace goes Ready.
    env.encrypt_project("good", "proj-good").await.unwrap();
    let good = env.projects().get("good").await.unwrap();
    assert!(is_ready(&good.status.unwrap().conditions));
    env.finish().await;
}

// ------------------------------------------------------------------------------------------------
// Group 3: ClusterEncryptions and conflicts, next to an encrypted project; then a Secret deleted later.

#[tokio::test]
async fn bad_cluster_encryptions_and_conflicts_stall_without_atlas_writes() {
    let mut env = OperatorEnv::start(
        "bad-ce",
        &seed(&[("proj-ce", &["Orders0:M10", "Free0:M0", "Flex0:FLEX", "Good0:M10"])]),
    )
    .await
    .unwrap();
    env.start_controller().await.unwrap();
    let handshake = env.encrypt_project("payments", "proj-ce").await.unwrap();
    let groups = group_ids(&env, &["proj-ce"]).await;
    env.sim().clear_calls();
    // The operator tells the first claimant of a project by creation time, which Kubernetes keeps to
    // the second (ties go by name): the duplicate below must come a second later to be the later one.
    // The handshake can take less than a second now that the first trust look comes after 0.25 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let c = Kind::Cluster;
    let long_ref = "r".repeat(253);
    let mut cases = vec![
        case(
            "missing-pe",
            "projectEncryptionRef names no ProjectEncryption",
            c,
            ce_spec("nobody", "Orders0"),
            stalled("ProjectEncryptionNotFound", "nobody"),
        ),
        case(
            "long-ref",
            "a 253-character projectEncryptionRef that does not exist",
            c,
            ce_spec(&long_ref, "Orders0"),
            stalled("ProjectEncryptionNotFound", "rrrrrrrr"),
        ),
        case(
            "unknown-cluster",
            "a cluster the project does not have",
            c,
            ce_spec("payments", "Missing0"),
            stalled("ClusterNotFound", "spec.clusterName"),
        ),
        case(
            "free-tier",
            "an M0 cluster",
            c,
            ce_spec("payments", "Free0"),
            stalled("UnsupportedTier", "M10"),
        ),
        case(
            "flex-tier",
            "a Flex cluster",
            c,
            ce_spec("payments", "Flex0"),
            stalled("UnsupportedTier", "Flex"),
        ),
        case(
            "duplicate-pe",
            "a second ProjectEncryption for an Atlas project already managed",
            Kind::Project,
            pe_spec(
                "proj-ce",
                "atlas-credentials",
                &handshake.key,
                REGION,
                &handshake.role_arn,
            ),
            stalled("DuplicateProject", "already managed by ProjectEncryption"),
        ),
    ];
    for c in &mut cases {
        c.project = Some("proj-ce");
    }
    for c in &cases {
        apply(&env, c).await;
    }
    assert_outcomes(&env, &cases).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_writes(&env, &groups, &cases).await;

    // The operator still works: a good cluster of the same project is encrypted.
    env.apply_cluster("good", ce_spec("payments", "Good0"))
        .await
        .unwrap();
    env.wait_cluster("good", WAIT, "Ready", |ce| {
        ce.status.as_ref().is_some_and(|s| is_ready(&s.conditions))
    })
    .await
    .unwrap();

    // The credentials Secret deleted after everything worked: the project stalls without writing, and
    // recovers once the Secret is back.
    let secrets = env.ns.api::<Secret>();
    secrets
        .delete("atlas-credentials", &Default::default())
        .await
        .unwrap();
    env.sim().clear_calls();
    env.projects()
        .patch("payments", &Default::default(), &common::poke())
        .await
        .unwrap();
    let deleted_later = [case(
        "payments",
        "the credentials Secret deleted after the project was Ready",
        Kind::Project,
        Value::Null,
        stalled("CredentialsInvalid", "create it with publicKey and privateKey"),
    )];
    assert_outcomes(&env, &deleted_later).await;
    assert!(
        env.atlas_writes().is_empty(),
        "no Atlas write without credentials: {:?}",
        env.atlas_writes()
    );
    env.apply_secret(
        "atlas-credentials",
        &[("publicKey", API_PUBLIC_KEY), ("privateKey", API_PRIVATE_KEY)],
    )
    .await
    .unwrap();
    env.projects()
        .patch("payments", &Default::default(), &common::poke())
        .await
        .unwrap();
    env.wait_project("payments", WAIT, "Ready again", |pe| {
        pe.status.as_ref().is_some_and(|s| is_ready(&s.conditions))
    })
    .await
    .unwrap();
    assert!(
        env.atlas_writes().is_empty(),
        "recovering needs no Atlas write: {:?}",
        env.atlas_writes()
    );
    env.finish().await;
}
