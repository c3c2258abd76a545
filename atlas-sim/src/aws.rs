//! Where `awsKms.valid` and `CANNOT_ASSUME_ROLE` come from: a real check against an AWS endpoint (moto in
//! tests). moto enforces neither trust policies nor key state on Encrypt, so the trust policy, the role's
//! permissions and the key state are read and judged here, the way real AWS would judge them.

use aws_sdk_kms::config::Credentials;
use aws_sdk_kms::primitives::Blob;
use serde_json::Value;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsFailure {
    CannotAssumeRole(String),
    RegionNotSupported(String),
    KeyNotFound,
    KeyNotEnabled,
    KeyPendingDeletion,
    KeyPendingImport,
    NoPermission(String),
    Unreachable(String),
}

impl AwsFailure {
    pub fn to_api_error(&self, group_id: &str) -> ApiError {
        match self {
            AwsFailure::CannotAssumeRole(arn) => ApiError::new(
                400,
                "CANNOT_ASSUME_ROLE",
                format!("Atlas cannot assume the specified role ({arn})."),
            )
            .params([arn.as_str()]),
            AwsFailure::RegionNotSupported(r) => ApiError::new(
                400,
                "AWS_KMS_REGION_NOT_SUPPORTED",
                format!("The AWS KMS region {r} is not supported."),
            )
            .params([r.as_str()]),
            AwsFailure::KeyNotFound => ApiError::new(
                404,
                "AWS_CUSTOMER_MASTER_KEY_NOT_FOUND",
                format!("No AWS customer master key found for group {group_id}."),
            )
            .params([group_id]),
            AwsFailure::KeyNotEnabled => ApiError::new(
                400,
                "AWS_KMS_CUSTOMER_MASTER_KEY_NOT_ENABLED",
                "The AWS customer master key is not enabled.",
            ),
            AwsFailure::KeyPendingDeletion => ApiError::new(
                400,
                "AWS_KMS_CUSTOMER_MASTER_KEY_PENDING_DELETION",
                "The AWS customer master key is pending deletion.",
            ),
            AwsFailure::KeyPendingImport => ApiError::new(
                400,
                "AWS_KMS_CUSTOMER_MASTER_KEY_PENDING_IMPORT",
                "The AWS customer master key is pending import.",
            ),
            AwsFailure::NoPermission(why) => ApiError::new(
                400,
                "NO_PERMISSION_TO_ENCRYPT_DECRYPT",
                format!(
                    "The provided credentials do not have permission to encrypt and decrypt using the AWS customer master key ({why})."
                ),
            ),
            AwsFailure::Unreachable(_) => {
                ApiError::unexpected("Unexpected error while validating the AWS KMS configuration.")
            }
        }
    }
}

/// The inputs of one validity check.
#[derive(Clone, Debug)]
pub struct KeyCheck {
    pub role_arn: String,
    pub external_id: String,
    pub key_id: String,
    /// Atlas region enum value, e.g. `US_EAST_1`.
    pub region: String,
}

#[derive(Clone)]
pub struct AwsChecker {
    pub endpoint: Option<String>,
    pub atlas_account_arn: String,
    /// Like real IAM, a new trust relationship takes a while to be usable: until this much time has passed
    /// since the trust was first seen valid, assuming the role still fails (CANNOT_ASSUME_ROLE).
    pub trust_propagation_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub first_trusted:
        std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}

fn role_name(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:aws")?.split_once(":iam::")?.1;
    let (acct, res) = rest.split_once(':')?;
    if acct.len() != 12 || !acct.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let path = res.strip_prefix("role/")?;
    let name = path.rsplit('/').next()?;
    (!name.is_empty()).then_some(name)
}

pub fn is_role_arn(arn: &str) -> bool {
    role_name(arn).is_some()
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// Key ids Atlas accepts: a key UUID, a Multi-Region `mrk-` id, or a key ARN.
pub fn key_id_well_formed(key: &str) -> bool {
    let id = if let Some(rest) = key.strip_prefix("arn:aws") {
        // ":kms:<region>:<account>:key/<id>"
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        if parts.len() != 5 || parts[1] != "kms" || parts[3].len() != 12 {
            return false;
        }
        match parts[4].strip_prefix("key/") {
            Some(id) => id,
            None => return false,
        }
    } else {
        key
    };
    is_uuid(id)
        || (id.starts_with("mrk-") && id.len() == 36 && id[4..].bytes().all(|b| b.is_ascii_hexdigit()))
}

fn key_arn_region(key: &str) -> Option<&str> {
    key.strip_prefix("arn:aws")?.split(':').nth(2)
}

fn parse_policy(doc: &str) -> Option<Value> {
    serde_json::from_str(doc).ok().or_else(|| {
        let decoded = percent_encoding::percent_decode_str(doc).decode_utf8().ok()?;
        serde_json::from_str(&decoded).ok()
    })
}

fn as_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        _ => vec![],
    }
}

fn statements(policy: &Value) -> Vec<Value> {
    match policy.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => vec![],
    }
}

/// IAM-style wildcard match (`*` any run, `?` one char), case-insensitive as IAM actions are.
pub fn glob(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = if case_insensitive {
        (
            pattern.to_lowercase().chars().collect(),
            value.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), value.chars().collect())
    };
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| a.len() == 12)
}

/// The trust policy must let the sim's Atlas account assume the role, bound to the external id.
pub fn trust_allows(doc: &Value, atlas_arn: &str, external_id: &str) -> bool {
    let atlas_account = account_of(atlas_arn).unwrap_or("");
    statements(doc).iter().any(|st| {
        if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
            return false;
        }
        if !as_list(st.get("Action"))
            .iter()
            .any(|a| glob(a, "sts:AssumeRole", true))
        {
            return false;
        }
        let principals = match st.get("Principal") {
            Some(Value::String(s)) if s == "*" => vec!["*".to_string()],
            Some(p) => as_list(p.get("AWS")),
            None => vec![],
        };
        let principal_ok = principals.iter().any(|p| {
            p == "*"
                || p == atlas_arn
                || p == atlas_account
                || p == &format!("arn:aws:iam::{atlas_account}:root")
        });
        if !principal_ok {
            return false;
        }
        let ext = st
            .get("Condition")
            .and_then(|c| c.get("StringEquals"))
            .map(|se| as_list(se.get("sts:ExternalId")))
            .unwrap_or_default();
        ext.iter().any(|e| e == external_id)
    })
}

/// Whether identity policies Allow (and do not Deny) `action` on `resource`.
pub fn policies_allow(policies: &[Value], action: &str, resource: &str) -> bool {
    let mut allowed = false;
    for p in policies {
        for st in statements(p) {
            let effect = st.get("Effect").and_then(Value::as_str).unwrap_or("");
            let action_hit = as_list(st.get("Action")).iter().any(|a| glob(a, action, true));
            let resource_hit = as_list(st.get("Resource"))
                .iter()
                .any(|r| glob(r, resource, false));
            if action_hit && resource_hit {
                match effect {
                    "Deny" => return false,
                    "Allow" => allowed = true,
                    _ => {}
                }
            }
        }
    }
    allowed
}

impl AwsChecker {
    fn creds() -> aws_sdk_kms::config::Credentials {
        aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "atlas-sim")
    }

    async fn sdk_config(&self, endpoint: &str, region: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new(region.to_string()))
            .credentials_provider(Self::creds())
            .load()
            .await
    }

    /// The authorize step: can Atlas assume `role_arn` with `external_id`?
    pub async fn check_trust(&self, role_arn: &str, external_id: &str) -> Result<(), AwsFailure> {
        self.assume(role_arn, external_id).await.map(|_| ())
    }

    /// Assumes `role_arn` as Atlas would, honouring the configured trust propagation delay: the
    /// credentials of the session, or `None` without an AWS endpoint (nothing to check against).
    async fn assume(&self, role_arn: &str, external_id: &str) -> Result<Option<Credentials>, AwsFailure> {
        let key = format!("{role_arn}|{external_id}");
        let assumed = match self.assume_now(role_arn, external_id).await {
            Ok(assumed) => assumed,
            Err(e) => {
                self.first_trusted.lock().remove(&key);
                return Err(e);
            }
        };
        let delay = std::time::Duration::from_millis(
            self.trust_propagation_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let first = *self
            .first_trusted
            .lock()
            .entry(key)
            .or_insert_with(std::time::Instant::now);
        if first.elapsed() < delay {
            return Err(AwsFailure::CannotAssumeRole(role_arn.to_string()));
        }
        Ok(assumed)
    }

    async fn assume_now(&self, role_arn: &str, external_id: &str) -> Result<Option<Credentials>, AwsFailure> {
        let cannot = || AwsFailure::CannotAssumeRole(role_arn.to_string());
        let Some(name) = role_name(role_arn) else {
            return Err(cannot());
        };
        let Some(endpoint) = &self.endpoint else {
            return Ok(None);
        };
        let conf = self.sdk_config(endpoint, "us-east-1").await;
        let iam = aws_sdk_iam::Client::new(&conf);
        let role = iam.get_role().role_name(name).send().await.map_err(|e| {
            let se = e.into_service_error();
            if se.is_no_such_entity_exception() {
                cannot()
            } else {
                AwsFailure::Unreachable(se.to_string())
            }
        })?;
        let doc = role
            .role()
            .and_then(|r| r.assume_role_policy_document())
            .and_then(parse_policy)
            .ok_or_else(cannot)?;
        if !trust_allows(&doc, &self.atlas_account_arn, external_id) {
            return Err(cannot());
        }
        let sts = aws_sdk_sts::Client::new(&conf);
        let assumed = sts
            .assume_role()
            .role_arn(role_arn)
            .external_id(external_id)
            .role_session_name("atlas-sim-kms-check")
            .send()
            .await
            .map_err(|_| cannot())?;
        let creds = assumed.credentials().map(|k| {
            Credentials::new(
                k.access_key_id(),
                k.secret_access_key(),
                Some(k.session_token().to_string()),
                None,
                "assumed-role",
            )
        });
        Ok(Some(creds.unwrap_or_else(Self::creds)))
    }

    async fn role_policies(&self, iam: &aws_sdk_iam::Client, name: &str) -> Result<Vec<Value>, AwsFailure> {
        let unreachable = |e: String| AwsFailure::Unreachable(e);
        let mut out = vec![];
        let inline = iam
            .list_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| unreachable(e.into_service_error().to_string()))?;
        for pname in inline.policy_names() {
            let p = iam
                .get_role_policy()
                .role_name(name)
                .policy_name(pname)
                .send()
                .await
                .map_err(|e| unreachable(e.into_service_error().to_string()))?;
            if let Some(v) = parse_policy(p.policy_document()) {
                out.push(v);
            }
        }
        let attached = iam
            .list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| unreachable(e.into_service_error().to_string()))?;
        for ap in attached.attached_policies() {
            let Some(arn) = ap.policy_arn() else { continue };
            let pol = iam
                .get_policy()
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| unreachable(e.into_service_error().to_string()))?;
            let Some(ver) = pol.policy().and_then(|p| p.default_version_id()) else {
                continue;
            };
            let pv = iam
                .get_policy_version()
                .policy_arn(arn)
                .version_id(ver)
                .send()
                .await
                .map_err(|e| unreachable(e.into_service_error().to_string()))?;
            if let Some(v) = pv
                .policy_version()
                .and_then(|v| v.document())
                .and_then(parse_policy)
            {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The full check behind `awsKms.valid`: assume the role, then the key must exist in the region, be
    /// enabled, symmetric and ENCRYPT_DECRYPT, the role must be allowed to use it, and a probe must round-trip.
    pub async fn check_key(&self, c: &KeyCheck) -> Result<(), AwsFailure> {
        let Some(region) = crate::state::aws_region(&c.region) else {
            return Err(AwsFailure::RegionNotSupported(c.region.clone()));
        };
        if !key_id_well_formed(&c.key_id) {
            return Err(AwsFailure::KeyNotFound);
        }
        if let Some(r) = key_arn_region(&c.key_id)
            && r != region
        {
            return Err(AwsFailure::KeyNotFound);
        }
        // The reads that do not depend on one another go together (Atlas's own check is no slower for
        // it); failures are still told in the order the checks are listed.
        let Some(endpoint) = &self.endpoint else {
            return self.check_trust(&c.role_arn, &c.external_id).await;
        };
        let conf = self.sdk_config(endpoint, "us-east-1").await;
        let iam = aws_sdk_iam::Client::new(&conf);
        let (assumed, policies) = tokio::join!(
            self.assume(&c.role_arn, &c.external_id),
            self.role_policies(&iam, role_name(&c.role_arn).unwrap_or_default())
        );
        let creds = assumed?.unwrap_or_else(Self::creds);
        let policies = policies?;
        let kconf = self.sdk_config(endpoint, &region).await;
        let kms = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&kconf)
                .credentials_provider(creds)
                .build(),
        );

        let probe = b"atlas-sim encryption at rest probe";
        let (meta, enc) = tokio::join!(
            kms.describe_key().key_id(&c.key_id).send(),
            kms.encrypt()
                .key_id(&c.key_id)
                .plaintext(Blob::new(probe.to_vec()))
                .send()
        );
        let meta = meta.map_err(|e| {
            let se = e.into_service_error();
            if se.is_not_found_exception() || se.is_invalid_arn_exception() {
                AwsFailure::KeyNotFound
            } else {
                AwsFailure::Unreachable(se.to_string())
            }
        })?;
        let Some(meta) = meta.key_metadata() else {
            return Err(AwsFailure::KeyNotFound);
        };
        let key_arn = meta.arn().unwrap_or(&c.key_id).to_string();
        for action in ["kms:DescribeKey", "kms:Encrypt", "kms:Decrypt"] {
            if !policies_allow(&policies, action, &key_arn) {
                return Err(AwsFailure::NoPermission(format!("{action} is not allowed")));
            }
        }
        use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType};
        match meta.key_state() {
            Some(KeyState::Enabled) => {}
            Some(KeyState::PendingDeletion) | Some(KeyState::PendingReplicaDeletion) => {
                return Err(AwsFailure::KeyPendingDeletion);
            }
            Some(KeyState::PendingImport) => return Err(AwsFailure::KeyPendingImport),
            _ => return Err(AwsFailure::KeyNotEnabled),
        }
        // moto omits KeyUsage; AWS's default (and the only usage a symmetric default key can have) is ENCRYPT_DECRYPT.
        if meta.key_spec().is_some_and(|k| *k != KeySpec::SymmetricDefault)
            || meta
                .key_usage()
                .is_some_and(|u| *u != KeyUsageType::EncryptDecrypt)
        {
            return Err(AwsFailure::NoPermission(
                "the key is not a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key".into(),
            ));
        }
        let enc =
            enc.map_err(|e| AwsFailure::NoPermission(format!("Encrypt failed: {}", e.into_service_error())))?;
        let blob = enc
            .ciphertext_blob()
            .cloned()
            .ok_or_else(|| AwsFailure::NoPermission("Encrypt returned no ciphertext".into()))?;
        let dec = kms
            .decrypt()
            .key_id(&c.key_id)
            .ciphertext_blob(blob)
            .send()
            .await
            .map_err(|e| AwsFailure::NoPermission(format!("Decrypt failed: {}", e.into_service_error())))?;
        if dec.plaintext().map(|b| b.as_ref()) != Some(&probe[..]) {
            return Err(AwsFailure::NoPermission(
                "Decrypt did not return the probe".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trust_policy_needs_principal_and_external_id() {
        let atlas = "arn:aws:iam::536727724300:root";
        let good = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": atlas},
            "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "x"}}}]});
        assert!(trust_allows(&good, atlas, "x"));
        assert!(!trust_allows(&good, atlas, "y"));
        assert!(!trust_allows(&good, "arn:aws:iam::111111111111:root", "x"));
        let no_cond = json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": [atlas]}, "Action": ["sts:AssumeRole"]}});
        assert!(!trust_allows(&no_cond, atlas, "x"));
    }

    #[test]
    fn permissions_with_wildcards() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let p = json!({"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]});
        assert!(policies_allow(std::slice::from_ref(&p), "kms:Encrypt", arn));
        let q = json!({"Statement": [{"Effect": "Allow", "Action": ["kms:Encrypt"], "Resource": arn}]});
        assert!(policies_allow(std::slice::from_ref(&q), "kms:Encrypt", arn));
        assert!(!policies_allow(std::slice::from_ref(&q), "kms:Decrypt", arn));
        let d = json!({"Statement": [{"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}]});
        assert!(!policies_allow(&[p, d], "kms:Decrypt", arn));
    }

    #[test]
    fn key_ids() {
        assert!(key_id_well_formed("1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(key_id_well_formed(
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        assert!(key_id_well_formed("mrk-1234abcd12ab34cd56ef1234567890ab"));
        assert!(!key_id_well_formed("alias/foo"));
        assert!(!key_id_well_formed("nope"));
        assert_eq!(role_name("arn:aws:iam::123456789012:role/path/x"), Some("x"));
    }
}
