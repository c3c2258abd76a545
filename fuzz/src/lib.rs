//! Fuzz harnesses for the operator's parsers of untrusted input: Atlas response bodies (models and the
//! error envelope) and the AWS identifiers users write (regions, KMS key references, IAM role ARNs).
//!
//! The three modules below are the operator's own source files, compiled here by path rather than
//! through the `atlas-encryption-operator` library. Two reasons:
//! - the harness reaches what the client really runs, including crate-private items (`Page<T>`,
//!   `CloudProviderAccessRoles`, `AtlasError::from_response`);
//! - an instrumented build stays small (serde, serde_json, chrono, thiserror) instead of the whole
//!   operator with kube, reqwest and the AWS SDK, which takes many minutes to instrument on 2 cores.
//!
//! These files only depend on each other and on those crates; if one of them grows a dependency on
//! another operator module, include that module here too (the fuzz build fails loudly until then).
//!
//! Every harness panics when an invariant breaks; libFuzzer reports the panic as a crash.

#[allow(dead_code)]
#[path = "../../src/aws.rs"]
pub mod aws;

/// `crate::atlas::{error, model}` as in the operator. (The files are declared at the top level: a
/// `#[path]` inside an inline module resolves through `src/atlas/`, a directory this crate lacks.)
pub mod atlas {
    pub use super::atlas_error as error;
    pub use super::atlas_model as model;
}

#[allow(dead_code)]
#[path = "../../src/atlas/error.rs"]
pub mod atlas_error;

#[allow(dead_code)]
#[path = "../../src/atlas/model.rs"]
pub mod atlas_model;

use std::fmt::Debug;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use atlas::error::{AtlasError, ErrorEnvelope};
use atlas::model::{
    AwsIamRole, AwsKmsConfig, AwsKmsPatch, CloudProviderAccessRoles, Cluster, ControlPlaneIpAddresses,
    EncryptionAtRest, EncryptionAtRestPatch, Group, Page, Snapshot, tier_number,
};
use aws::{IdError, KeyArn, KeyRef, REGIONS, Region, RoleArn};

// ----------------------------------------------------------------------------------------------------
// Atlas responses

/// Decodes `body` as every response type the Atlas client decodes, and checks each that decodes.
pub fn atlas_response(body: &[u8]) {
    if let Some(ear) = decode::<EncryptionAtRest>(body) {
        check_encryption_at_rest(&ear);
    }
    if let Some(roles) = decode::<CloudProviderAccessRoles>(body) {
        roles.aws_iam_roles.iter().for_each(check_role);
    }
    // create/get/authorize answer with one role.
    if let Some(role) = decode::<AwsIamRole>(body) {
        check_role(&role);
    }
    if let Some(cluster) = decode::<Cluster>(body) {
        check_cluster(&cluster);
    }
    if let Some(page) = decode::<Page<Cluster>>(body) {
        page.results.iter().for_each(check_cluster);
    }
    if let Some(page) = decode::<Page<Snapshot>>(body) {
        page.results.iter().for_each(round_trip);
    }
    if let Some(group) = decode::<Group>(body) {
        round_trip(&group);
    }
    if let Some(ips) = decode::<ControlPlaneIpAddresses>(body) {
        check_control_plane_ips(&ips);
    }
    if let Some(env) = ErrorEnvelope::parse(body) {
        assert!(
            env.error_code.is_some(),
            "an envelope without errorCode is not Atlas's"
        );
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

/// What the operator decodes, re-encoded, decodes to the same value (status and logs show the
/// re-encoded form, and the tests' fixtures are written in it).
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let text = serde_json::to_vec(value).expect("a decoded value encodes");
    let back: T = serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "re-decoding {} failed: {e}\nvalue: {value:?}",
            String::from_utf8_lossy(&text)
        )
    });
    assert_eq!(
        &back,
        value,
        "round trip through {}",
        String::from_utf8_lossy(&text)
    );
}

fn check_encryption_at_rest(ear: &EncryptionAtRest) {
    round_trip(ear);
    assert_eq!(
        ear.aws_enabled(),
        ear.aws_kms.as_ref().is_some_and(|a| a.enabled == Some(true))
    );
    if let Some(aws) = &ear.aws_kms {
        check_aws_kms(aws);
    }
}

fn check_aws_kms(aws: &AwsKmsConfig) {
    assert_eq!(aws.is_valid(), aws.valid == Some(true));
    let key = aws.key();
    if let Some(key) = &key {
        let written = aws
            .customer_master_key_id
            .as_deref()
            .expect("a key comes from the field");
        check_key_ref(written, key);
    }
    let region = aws.region();
    if let Some(region) = region {
        let written = aws.region.as_deref().expect("a region comes from the field");
        assert!(written == region.atlas_name() || written == region.aws_name());
        check_region(region);
    }
    // What the operator would send back to enable exactly this configuration decodes, as Atlas's
    // answer, to the same key and region: desired and observed state compare equal, no update loop.
    if let (Some(key), Some(region)) = (key, region) {
        let role_id = aws.role_id.as_deref().unwrap_or("65f0a1b2c3d4e5f607182930");
        let patch = AwsKmsPatch::enable(
            &key,
            region,
            role_id,
            aws.require_private_networking == Some(true),
        );
        assert!(!patch.is_empty());
        let whole = EncryptionAtRestPatch {
            aws_kms: Some(&patch),
            enabled_for_search_nodes: None,
        };
        let body = serde_json::to_vec(&whole).expect("encodes");
        let echoed: EncryptionAtRest = serde_json::from_slice(&body).expect("a patch reads as a config");
        let echoed = echoed.aws_kms.expect("awsKms is set");
        assert!(echoed.is_enabled());
        assert!(echoed.key().expect("the key re-parses").same_key(&key));
        assert_eq!(echoed.region(), Some(region));
        assert_eq!(echoed.region.as_deref(), Some(region.atlas_name()));
        let rotate = serde_json::to_value(AwsKmsPatch::rotate_key(&key)).expect("encodes");
        assert_eq!(
            rotate.as_object().map(|o| o.len()),
            Some(1),
            "rotation sends only the key"
        );
    }
}

fn check_role(role: &AwsIamRole) {
    round_trip(role);
    if role.is_authorized() {
        assert!(role.iam_assumed_role_arn.is_some() && role.authorized_date.is_some());
    }
    if let Some(arn) = role.role_arn() {
        let written = role.iam_assumed_role_arn.as_deref().expect("from the field");
        check_role_arn(written, &arn);
    }
    assert_eq!(
        role.used_for_encryption_at_rest(),
        role.feature_usages
            .iter()
            .any(|u| u.feature_type == "ENCRYPTION_AT_REST")
    );
}

fn check_cluster(cluster: &Cluster) {
    round_trip(cluster);
    let sizes = cluster.instance_sizes();
    for (i, a) in sizes.iter().enumerate() {
        assert!(!sizes[i + 1..].contains(a), "instance_sizes repeats {a:?}");
        if let Some(n) = tier_number(a) {
            assert!(a.starts_with(['M', 'R']), "{a:?} has tier {n}");
        }
    }
    if cluster.supports_customer_key() {
        assert!(!cluster.is_tenant());
        assert!(!sizes.is_empty());
        assert!(sizes.iter().all(|s| tier_number(s).is_some_and(|n| n >= 10)));
        assert!(!sizes.iter().any(|s| matches!(*s, "M0" | "M2" | "M5" | "FLEX")));
    }
    assert_eq!(cluster.is_idle(), cluster.state_name.as_deref() == Some("IDLE"));
    assert_eq!(
        cluster.provider(),
        cluster.encryption_at_rest_provider.unwrap_or_default()
    );
}

fn check_control_plane_ips(ips: &ControlPlaneIpAddresses) {
    round_trip(ips);
    let cidrs = ips.outbound_aws_cidrs();
    assert!(cidrs.windows(2).all(|w| w[0] < w[1]), "sorted and deduplicated");
    for c in &cidrs {
        assert!(ips.outbound.aws.values().any(|v| v.iter().any(|x| x == c)));
    }
    let all: usize = ips.outbound.aws.values().map(Vec::len).sum();
    assert!(cidrs.len() <= all);
}

// ----------------------------------------------------------------------------------------------------
// Atlas errors

/// The first two bytes are the HTTP status, the third says whether a Retry-After came, the rest is
/// the body: exactly the inputs `AtlasError::from_response` gets from the client.
pub fn atlas_error(data: &[u8]) {
    let [hi, lo, retry, body @ ..] = data else {
        return;
    };
    let status = u16::from_be_bytes([*hi, *lo]);
    let retry_after = (*retry & 1 == 1).then(|| Duration::from_secs(u64::from(*retry >> 1)));
    check_atlas_error(status, body, retry_after);
}

const ENDPOINT: &str = "/groups/{groupId}/encryptionAtRest";

pub fn check_atlas_error(status: u16, body: &[u8], retry_after: Option<Duration>) {
    let err = AtlasError::from_response("PATCH", ENDPOINT, status, body, retry_after);
    let env = ErrorEnvelope::parse(body);
    let code = env
        .as_ref()
        .and_then(|e| e.error_code.clone())
        .unwrap_or_else(|| "UNKNOWN".to_string());
    assert_eq!(err.error_code(), Some(code.as_str()));
    assert!(err.is_error_code(&code));
    match &err {
        AtlasError::RateLimited { retry_after: r, .. } => {
            assert_eq!(status, 429);
            assert_eq!(*r, retry_after);
            assert!(err.is_transient());
        }
        AtlasError::Unauthorized {
            status: s, detail, ..
        } => {
            assert_eq!((*s, status), (401, 401));
            assert_ne!(
                code, "NOT_IN_GROUP",
                "NOT_IN_GROUP means an unknown project, not bad keys"
            );
            assert!(!err.is_transient());
            check_detail(detail);
        }
        AtlasError::Api {
            status: s,
            detail,
            parameters,
            ..
        } => {
            assert_eq!(*s, status);
            assert_ne!(status, 429);
            assert!(status != 401 || code == "NOT_IN_GROUP");
            assert_eq!(err.is_transient(), status >= 500);
            assert_eq!(parameters, &env.map(|e| e.parameters).unwrap_or_default());
            check_detail(detail);
        }
        other => panic!("from_response built {other:?}"),
    }
    assert_eq!(err.status(), Some(status));
    assert_eq!(err.is_not_found(), status == 404);
    assert!(!err.category().is_empty());
    // The message carries no body beyond the bounded detail and the errorCode.
    let message = err.to_string();
    assert!(message.starts_with("Atlas PATCH /groups/{groupId}/encryptionAtRest"));
    assert!(
        message.chars().count() <= 1025 + code.chars().count() + 160,
        "{} chars",
        message.len()
    );
}

/// Atlas's human text is bounded before it can reach a status message or an Event.
fn check_detail(detail: &str) {
    assert!(
        detail.chars().count() <= 1025,
        "detail of {} chars",
        detail.chars().count()
    );
}

// ----------------------------------------------------------------------------------------------------
// AWS identifiers

/// Arbitrary text as a user would write it in `spec.awsKms`.
pub fn aws_ids(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match KeyRef::parse(text) {
        Ok(key) => check_key_ref(text, &key),
        Err(e) => check_id_error(&e),
    }
    match RoleArn::parse(text) {
        Ok(role) => check_role_arn(text, &role),
        Err(e) => {
            assert!(matches!(e, IdError::MalformedRole(_)), "{e:?}");
            check_id_error(&e);
        }
    }
    match Region::parse(text) {
        Ok(region) => {
            assert!(text == region.aws_name() || text == region.atlas_name());
            check_region(region);
        }
        Err(e) => {
            assert!(matches!(e, IdError::UnknownRegion(_)), "{e:?}");
            check_id_error(&e);
        }
    }
}

fn check_key_ref(written: &str, key: &KeyRef) {
    // Normalisation is idempotent: the printed form parses back to the same key.
    let printed = key.to_string();
    let again = KeyRef::parse(&printed).unwrap_or_else(|e| panic!("{printed:?} does not re-parse: {e}"));
    assert_eq!(&again, key, "{written:?} -> {printed:?}");
    assert_eq!(again.to_string(), printed);
    assert!(key.same_key(key) && key.same_key(&again));
    // Only case may change: ids are normalised to lower case, nothing else is rewritten
    // except an Atlas-spelled region inside an ARN.
    let id = key.key_id();
    assert!(!id.is_empty() && id.bytes().all(|b| !b.is_ascii_uppercase()));
    assert!(
        written.to_ascii_lowercase().contains(id),
        "{written:?} does not hold {id:?}"
    );
    assert_eq!(key.is_multi_region(), id.starts_with("mrk-"));
    match key {
        KeyRef::Id(id) => {
            assert_eq!(written.to_ascii_lowercase(), *id);
            // A bare id matches any ARN with that id.
            let arn = KeyRef::Arn(KeyArn {
                partition: "aws".into(),
                region: Region::parse("us-east-1").expect("known"),
                account: "111122223333".into(),
                key_id: id.clone(),
            });
            assert!(key.same_key(&arn) && arn.same_key(key));
        }
        KeyRef::Arn(arn) => {
            assert!(written.starts_with("arn:"));
            assert_eq!(arn.account.len(), 12);
            check_region(arn.region);
            assert!(matches!(arn.partition.as_str(), "aws" | "aws-cn" | "aws-us-gov"));
            // The same id in another account is another key.
            let mut other = arn.clone();
            other.account = if arn.account == "000000000000" {
                "999999999999"
            } else {
                "000000000000"
            }
            .into();
            assert!(!key.same_key(&KeyRef::Arn(other)));
        }
    }
}

fn check_role_arn(written: &str, role: &RoleArn) {
    let printed = role.to_string();
    let again = RoleArn::parse(&printed).unwrap_or_else(|e| panic!("{printed:?} does not re-parse: {e}"));
    assert_eq!(&again, role);
    // Nothing in a role ARN is normalised: what parses is printed back verbatim.
    assert_eq!(printed, written);
    let name = role.role_name();
    assert!(
        !name.is_empty() && !name.contains('/'),
        "role name {name:?} of {written:?}"
    );
    assert!(role.name.ends_with(name));
}

fn check_region(region: Region) {
    assert_eq!(Region::parse(region.aws_name()), Ok(region));
    assert_eq!(Region::parse(region.atlas_name()), Ok(region));
    assert_eq!(region.to_string(), region.aws_name());
    assert!(REGIONS.contains(&(region.aws_name(), region.atlas_name())));
}

/// Errors echo the input, bounded, and say what to write.
fn check_id_error(e: &IdError) {
    let message = e.to_string();
    let echoed = match e {
        IdError::UnknownRegion(v)
        | IdError::MalformedKey(v)
        | IdError::KeyAlias(v)
        | IdError::MalformedRole(v) => v,
    };
    assert!(
        echoed.chars().count() <= 129,
        "echo of {} chars",
        echoed.chars().count()
    );
    assert!(message.len() < 1024, "{} bytes", message.len());
}

// ----------------------------------------------------------------------------------------------------
// AWS identifiers, structured: well-formed parts assembled into ARNs, so every accept path is reached
// and parse(display(x)) == x is checked for values that certainly are valid.

#[derive(Debug, arbitrary::Arbitrary)]
pub struct IdParts {
    partition: u8,
    region: u8,
    atlas_spelling: bool,
    account: u64,
    key_hex: [u8; 16],
    multi_region: bool,
    upper_case: bool,
    role_path: Vec<RoleSegment>,
    /// Bytes spliced into the assembled text at `splice_at`, to reach the refusal paths near valid input.
    splice: Option<(u16, String)>,
}

#[derive(Debug, arbitrary::Arbitrary)]
pub struct RoleSegment(String);

pub fn aws_ids_structured(parts: &IdParts) {
    let partition = ["aws", "aws-cn", "aws-us-gov"][usize::from(parts.partition) % 3];
    let (aws_region, atlas_region) = REGIONS[usize::from(parts.region) % REGIONS.len()];
    let region_text = if parts.atlas_spelling {
        atlas_region
    } else {
        aws_region
    };
    let account = format!("{:012}", parts.account % 1_000_000_000_000);
    let mut hex: String = parts.key_hex.iter().map(|b| format!("{b:02x}")).collect();
    // Hex digits may come in either case; the `mrk-` prefix is lower case only (as in the CRD rule).
    if parts.upper_case {
        hex = hex.to_ascii_uppercase();
    }
    let key_id = if parts.multi_region {
        format!("mrk-{hex}")
    } else {
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    };

    let arn_text = format!("arn:{partition}:kms:{region_text}:{account}:key/{key_id}");
    let key = KeyRef::parse(&arn_text).unwrap_or_else(|e| panic!("{arn_text:?} refused: {e}"));
    let KeyRef::Arn(arn) = &key else {
        panic!("{arn_text:?} parsed as {key:?}")
    };
    assert_eq!(arn.region.aws_name(), aws_region);
    assert_eq!(arn.account, account);
    assert_eq!(arn.partition, partition);
    assert_eq!(arn.key_id, key_id.to_ascii_lowercase());
    assert_eq!(arn.is_multi_region(), parts.multi_region);
    check_key_ref(&arn_text, &key);

    let id = KeyRef::parse(&key_id).unwrap_or_else(|e| panic!("{key_id:?} refused: {e}"));
    assert!(matches!(&id, KeyRef::Id(_)));
    assert!(id.same_key(&key));
    check_key_ref(&key_id, &id);

    let alias = format!("arn:{partition}:kms:{aws_region}:{account}:alias/{key_id}");
    assert!(matches!(KeyRef::parse(&alias), Err(IdError::KeyAlias(_))));

    // Role names: the IAM character set, path segments joined by '/'.
    let name: String = parts
        .role_path
        .iter()
        .map(|s| {
            s.0.chars()
                .filter(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c))
                .take(64)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    let role_text = format!("arn:{partition}:iam::{account}:role/{name}");
    let role = RoleArn::parse(&role_text);
    if name.is_empty() || name.len() > 512 {
        assert!(role.is_err(), "{role_text:?} accepted");
    } else {
        let role = role.unwrap_or_else(|e| panic!("{role_text:?} refused: {e}"));
        assert_eq!(role.name, name);
        assert_eq!(role.account, account);
        check_role_arn(&role_text, &role);
    }

    // Near-valid text: whatever the splice does, parsing holds its invariants and never panics.
    if let Some((at, insert)) = &parts.splice {
        for base in [&arn_text, &key_id, &role_text] {
            let mut text = base.clone();
            let mut at = usize::from(*at) % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert_str(at, insert);
            aws_ids(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    //! Replays the checked-in seeds on every harness without libFuzzer, so `cargo test` in fuzz/
    //! catches a broken harness or a regression on stable.

    use std::fs;
    use std::path::Path;

    use super::*;

    fn seeds(target: &str) -> Vec<Vec<u8>> {
        // Read at run time: checkouts sharing the cached fuzz target dir reuse each other's test
        // binaries, and a compile-time path would point into whichever checkout built them.
        let manifest_dir =
            std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR: run with cargo test");
        let dir = Path::new(&manifest_dir).join("seeds").join(target);
        let mut out: Vec<Vec<u8>> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| fs::read(e.expect("entry").path()).expect("readable"))
            .collect();
        out.sort();
        assert!(!out.is_empty(), "no seeds in {}", dir.display());
        out
    }

    #[test]
    fn atlas_response_seeds() {
        for s in seeds("atlas_response") {
            atlas_response(&s);
        }
    }

    #[test]
    fn atlas_error_seeds() {
        for s in seeds("atlas_error") {
            atlas_error(&s);
        }
    }

    #[test]
    fn aws_ids_seeds() {
        for s in seeds("aws_ids") {
            aws_ids(&s);
        }
    }

    #[test]
    fn structured_ids_from_fixed_bytes() {
        use arbitrary::{Arbitrary, Unstructured};
        for seed in 0u8..64 {
            let bytes: Vec<u8> = (0..512u32)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect();
            let parts = IdParts::arbitrary(&mut Unstructured::new(&bytes)).expect("enough bytes");
            aws_ids_structured(&parts);
        }
    }
}
