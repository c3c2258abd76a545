//! KMS preflight: before asking Atlas to use a key, check with AWS that the key exists, is enabled,
//! is a symmetric encrypt/decrypt key and lives in the region the spec names. Atlas would refuse such a
//! key too, but later and with less precise errors; the preflight gives a distinct reason per problem.
//!
//! Contract:
//! - [`KmsPreflight::check`] never fails for a usable key and returns a [`KeyReport`]; every problem is
//!   one [`PreflightFailure`] variant with a static [`PreflightFailure::reason`] and a secret-free,
//!   actionable [`PreflightFailure::message`].
//! - Credentials: the default AWS chain (IRSA on EKS, env, profiles), or the static credentials passed
//!   per call (read by the reconciler from a Secret). `AWS_ENDPOINT_URL(_KMS)` is honoured through
//!   aws-config; [`KmsPreflightConfig::endpoint_url`] overrides it (moto in tests).
//! - Results are cached per key + region + credential identity: successes for `cache_ttl`, failures
//!   for the shorter `failure_ttl`, so reconciles do not hammer KMS and a fixed key is noticed soon.
//! - Disabled preflight ([`KmsPreflight::disabled`]) answers `Ok(KeyReport::unchecked(..))` with
//!   `checked == false`: the reconciler then relies on Atlas's `awsKms.valid` alone.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::describe_key::DescribeKeyError;
use aws_sdk_kms::types::{KeyMetadata, KeySpec, KeyState, KeyUsageType};
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use crate::aws::{KeyArn, KeyRef, Region, RoleArn};

/// The preflight's reasons live with every other reason, in [`crate::status::reasons`].
pub use crate::status::reasons;

/// Static AWS credentials from a Secret. `Debug` shows only the access key id.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticAwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for StaticAwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticAwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl StaticAwsCredentials {
    /// Cache identity: the access key id plus a hash of the secret, so a rotated secret is a new
    /// identity and a stale verdict (e.g. AccessDenied) is not reused for it.
    fn identity(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.secret_access_key.as_bytes());
        h.update(self.session_token.as_deref().unwrap_or("").as_bytes());
        format!(
            "static:{}:{}",
            self.access_key_id,
            hex::encode(&h.finalize()[..8])
        )
    }
}

const DEFAULT_CHAIN: &str = "default-chain";

#[derive(Clone, Debug)]
pub struct KmsPreflightConfig {
    pub enabled: bool,
    /// Counts each verdict that came from KMS (not from the cache).
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    /// Overrides the KMS endpoint (moto); `None` uses AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    pub cache_ttl: Duration,
    pub failure_ttl: Duration,
    /// Whole DescribeKey operation, retries included.
    pub timeout: Duration,
    /// SDK attempts per DescribeKey (the SDK retries throttling and 5xx itself).
    pub max_attempts: u32,
}

impl Default for KmsPreflightConfig {
    fn default() -> Self {
        KmsPreflightConfig {
            enabled: true,
            metrics: None,
            endpoint_url: None,
            cache_ttl: Duration::from_secs(60),
            failure_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            max_attempts: 2,
        }
    }
}

/// What the preflight learnt about a usable key.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyReport {
    /// `false` when preflight is disabled: nothing below was confirmed by KMS.
    pub checked: bool,
    pub key_arn: Option<String>,
    pub key_id: String,
    pub account: Option<String>,
    pub region: Region,
    pub multi_region: bool,
    pub creation_date: Option<DateTime<Utc>>,
}

impl KeyReport {
    /// What can be said without asking KMS: taken from the key reference alone.
    pub fn unchecked(key: &KeyRef, region: Region) -> KeyReport {
        let (key_arn, account) = match key {
            KeyRef::Arn(arn) => (Some(arn.to_string()), Some(arn.account.clone())),
            KeyRef::Id(_) => (None, None),
        };
        KeyReport {
            checked: false,
            key_arn,
            key_id: key.key_id().to_string(),
            account,
            region,
            multi_region: key.is_multi_region(),
            creation_date: None,
        }
    }

    /// Atlas looks a bare key id up in the account of the IAM role it assumes. A key the preflight found
    /// in another account (the operator's credentials see it there) is then out of Atlas's sight: across
    /// accounts only the full key ARN works, so say so before any Atlas role is created.
    pub fn require_reachable_by(&self, key: &KeyRef, role: &RoleArn) -> Result<(), PreflightFailure> {
        match (key, &self.account) {
            (KeyRef::Id(key_id), Some(key_account)) if *key_account != role.account => {
                Err(PreflightFailure::KeyArnRequired {
                    key_id: key_id.clone(),
                    key_arn: self.key_arn.clone().unwrap_or_else(|| key_id.clone()),
                    key_account: key_account.clone(),
                    role_account: role.account.clone(),
                })
            }
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PreflightFailure {
    #[error("{}", self.message())]
    KeyNotFound { key: String, region: Region },
    #[error("{}", self.message())]
    KeyDisabled { key_arn: String },
    #[error("{}", self.message())]
    KeyPendingDeletion {
        key_arn: String,
        deletion_date: Option<DateTime<Utc>>,
    },
    #[error("{}", self.message())]
    KeyPendingImport { key_arn: String },
    /// Creating, Updating, Unavailable (custom key store disconnected) or a state this build does not know.
    #[error("{}", self.message())]
    KeyUnavailable { key_arn: String, state: String },
    #[error("{}", self.message())]
    KeyNotSymmetric {
        key_arn: String,
        key_spec: String,
        key_usage: String,
    },
    #[error("{}", self.message())]
    KeyRegionMismatch {
        key: String,
        key_region: String,
        region: Region,
    },
    #[error("{}", self.message())]
    KmsAccessDenied {
        key: String,
        region: Region,
        code: String,
    },
    #[error("{}", self.message())]
    KmsUnreachable { region: Region, detail: String },
    /// The TLS handshake refused the KMS endpoint's certificate: nothing was sent, and retrying cannot
    /// help until the trust store holds the CA that signed it.
    #[error("{}", self.message())]
    KmsCertificateUntrusted { region: Region, detail: String },
    #[error("{}", self.message())]
    KeyArnRequired {
        key_id: String,
        key_arn: String,
        key_account: String,
        role_account: String,
    },
}

impl PreflightFailure {
    pub fn reason(&self) -> &'static str {
        use reasons::*;
        match self {
            PreflightFailure::KeyNotFound { .. } => KEY_NOT_FOUND,
            PreflightFailure::KeyDisabled { .. } => KEY_DISABLED,
            PreflightFailure::KeyPendingDeletion { .. } => KEY_PENDING_DELETION,
            PreflightFailure::KeyPendingImport { .. } => KEY_PENDING_IMPORT,
            PreflightFailure::KeyUnavailable { .. } => KEY_UNAVAILABLE,
            PreflightFailure::KeyNotSymmetric { .. } => KEY_NOT_SYMMETRIC,
            PreflightFailure::KeyRegionMismatch { .. } => KEY_REGION_MISMATCH,
            PreflightFailure::KmsAccessDenied { .. } => KMS_ACCESS_DENIED,
            PreflightFailure::KmsUnreachable { .. } => KMS_UNREACHABLE,
            PreflightFailure::KmsCertificateUntrusted { .. } => KMS_CERTIFICATE_UNTRUSTED,
            PreflightFailure::KeyArnRequired { .. } => KEY_ARN_REQUIRED,
        }
    }

    /// Retrying later may succeed without anyone changing the key.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PreflightFailure::KmsUnreachable { .. } | PreflightFailure::KeyUnavailable { .. }
        )
    }

    pub fn message(&self) -> String {
        match self {
            PreflightFailure::KeyNotFound { key, region } => format!(
                "KMS key {key} does not exist in {region} (or is not visible to these credentials): check the key id, account and region"
            ),
            PreflightFailure::KeyDisabled { key_arn } => {
                format!("KMS key {key_arn} is disabled: enable it (kms:EnableKey) or name another key")
            }
            PreflightFailure::KeyPendingDeletion {
                key_arn,
                deletion_date,
            } => format!(
                "KMS key {key_arn} is scheduled for deletion{}: cancel the deletion (kms:CancelKeyDeletion) and enable it, or name another key",
                deletion_date
                    .map(|d| format!(" on {}", d.to_rfc3339()))
                    .unwrap_or_default()
            ),
            PreflightFailure::KeyPendingImport { key_arn } => format!(
                "KMS key {key_arn} has no key material yet: import it (kms:ImportKeyMaterial) or name another key"
            ),
            PreflightFailure::KeyUnavailable { key_arn, state } => {
                format!(
                    "KMS key {key_arn} is not usable now (state {state}): wait, or check its custom key store"
                )
            }
            PreflightFailure::KeyNotSymmetric {
                key_arn,
                key_spec,
                key_usage,
            } => format!(
                "KMS key {key_arn} is {key_spec} for {key_usage}: Atlas needs a SYMMETRIC_DEFAULT key for ENCRYPT_DECRYPT"
            ),
            PreflightFailure::KeyRegionMismatch {
                key,
                key_region,
                region,
            } => format!(
                "KMS key {key} is in {key_region} but the region is {region}: set the region to {key_region}, or use a key (or multi-Region replica) in {region}"
            ),
            PreflightFailure::KmsAccessDenied { key, region, code } => format!(
                "AWS refused kms:DescribeKey on {key} in {region} ({code}): allow kms:DescribeKey for the operator's credentials in the key policy or IAM policy, and check those credentials"
            ),
            PreflightFailure::KmsUnreachable { region, detail } => {
                format!("KMS in {region} could not be reached: {detail}")
            }
            PreflightFailure::KmsCertificateUntrusted { region, detail } => format!(
                "the TLS certificate of KMS in {region} is not trusted, so nothing was sent (a TLS-inspecting proxy or a private CA?): add that CA to the operator's trust store (chart value trustedCA.configMap, or SSL_CERT_DIR); verification cannot be turned off. {detail}"
            ),
            PreflightFailure::KeyArnRequired {
                key_id,
                key_arn,
                key_account,
                role_account,
            } => format!(
                "KMS key {key_id} is in account {key_account}, but the IAM role is in account {role_account}, where Atlas would look for a bare key id: across accounts set customerMasterKeyId to the full key ARN {key_arn}"
            ),
        }
    }
}

/// The preflight; cheap to clone (shares clients and cache).
#[derive(Clone)]
pub struct KmsPreflight {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    sdk: SdkConfig,
    config: KmsPreflightConfig,
    clients: Mutex<HashMap<(&'static str, String), aws_sdk_kms::Client>>,
    cache: Mutex<HashMap<CacheKey, CachedVerdict>>,
    materials: Mutex<HashMap<CacheKey, CachedMaterial>>,
}

/// Key, region, credential identity.
type CacheKey = (String, &'static str, String);
/// Valid until, what KMS said of the key's material.
type CachedMaterial = (Instant, Result<KeyMaterial, MaterialUnread>);
/// KMS answers by key, region and credential identity, each with the instant it goes stale.
type AnswerCache<T> = Mutex<HashMap<CacheKey, (Instant, T)>>;
/// Valid until, verdict.
type CachedVerdict = (Instant, Result<KeyReport, PreflightFailure>);

impl fmt::Debug for KmsPreflight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsPreflight")
            .field("config", &self.inner.as_ref().map(|i| &i.config))
            .finish()
    }
}

impl KmsPreflight {
    /// Loads the default AWS configuration (credential chain, `AWS_ENDPOINT_URL`). A disabled config
    /// gives [`KmsPreflight::disabled`] without touching AWS configuration at all.
    pub async fn from_env(config: KmsPreflightConfig) -> KmsPreflight {
        if !config.enabled {
            return KmsPreflight::disabled();
        }
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        KmsPreflight::with_sdk_config(sdk, config)
    }

    /// Uses a prepared SDK config (tests point it at moto). Per-call regions and static credentials
    /// override the config's.
    pub fn with_sdk_config(sdk: SdkConfig, config: KmsPreflightConfig) -> KmsPreflight {
        if !config.enabled {
            return KmsPreflight::disabled();
        }
        KmsPreflight {
            inner: Some(Arc::new(Inner {
                sdk,
                config,
                clients: Mutex::new(HashMap::new()),
                cache: Mutex::new(HashMap::new()),
                materials: Mutex::new(HashMap::new()),
            })),
        }
    }

    pub fn disabled() -> KmsPreflight {
        KmsPreflight { inner: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Forgets every cached verdict (e.g. after the user says they fixed the key).
    pub fn clear_cache(&self) {
        if let Some(inner) = &self.inner {
            inner.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
            inner.materials.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    pub async fn check(
        &self,
        key: &KeyRef,
        region: &Region,
        creds: Option<&StaticAwsCredentials>,
    ) -> Result<KeyReport, PreflightFailure> {
        let Some(inner) = &self.inner else {
            return Ok(KeyReport::unchecked(key, *region));
        };
        // An ARN names its region: a mismatch is certain without asking KMS (which would only say
        // NotFound when asked in the wrong region).
        if let KeyRef::Arn(arn) = key
            && arn.region != *region
        {
            return Err(region_mismatch(&arn.to_string(), arn.region.aws_name(), *region));
        }
        let identity = creds.map_or_else(|| DEFAULT_CHAIN.to_string(), StaticAwsCredentials::identity);
        let cache_key = (key.to_string(), region.aws_name(), identity.clone());
        if let Some(verdict) = cached(&inner.cache, &cache_key) {
            return verdict;
        }
        let verdict = inner.describe(key, *region, creds, identity).await;
        if let Some(metrics) = &inner.config.metrics {
            metrics.kms_preflight(verdict.as_ref().map_or_else(PreflightFailure::reason, |_| "ok"));
        }
        remember(&inner.cache, cache_key, &verdict, &inner.config);
        verdict
    }

    /// How old the key's material is, as KMS tells: automatic rotation (`GetKeyRotationStatus`) and the
    /// rotations so far (`ListKeyRotations`). Cached like [`KmsPreflight::check`]'s verdicts. A refusal is
    /// no preflight failure: the caller counts the age from when it first saw the key instead.
    pub async fn material(
        &self,
        key: &KeyRef,
        region: &Region,
        creds: Option<&StaticAwsCredentials>,
    ) -> Result<KeyMaterial, MaterialUnread> {
        let Some(inner) = &self.inner else {
            return Err(MaterialUnread::PreflightOff);
        };
        let identity = creds.map_or_else(|| DEFAULT_CHAIN.to_string(), StaticAwsCredentials::identity);
        let cache_key = (key.to_string(), region.aws_name(), identity.clone());
        if let Some(material) = cached(&inner.materials, &cache_key) {
            return material;
        }
        let client = inner.client(*region, creds, identity);
        let material = read_material(&client, key).await;
        remember(&inner.materials, cache_key, &material, &inner.config);
        material
    }
}

/// A KMS answer still fresh in `cache`.
fn cached<T: Clone>(cache: &AnswerCache<T>, key: &CacheKey) -> Option<T> {
    let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .get(key)
        .filter(|(until, _)| Instant::now() < *until)
        .map(|(_, answer)| answer.clone())
}

/// Keeps a KMS answer: a success for `cache_ttl`, a failure for the shorter `failure_ttl`; drops stale ones.
fn remember<V: Clone, E: Clone>(
    cache: &AnswerCache<Result<V, E>>,
    key: CacheKey,
    answer: &Result<V, E>,
    config: &KmsPreflightConfig,
) {
    let ttl = if answer.is_ok() {
        config.cache_ttl
    } else {
        config.failure_ttl
    };
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    cache.retain(|_, (until, _)| *until > now);
    cache.insert(key, (now + ttl, answer.clone()));
}

/// What KMS says of a key's material.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyMaterial {
    /// The latest rotation of the material, automatic or on demand; `None` when never rotated.
    pub last_rotation: Option<DateTime<Utc>>,
    /// Automatic rotation, when it is on.
    pub automatic: Option<AutomaticRotation>,
}

/// KMS rotates the key material by itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AutomaticRotation {
    /// The rotation period; AWS's default of 365 days when KMS does not report one.
    pub period_days: u32,
    /// The next rotation, when KMS reports it.
    pub next: Option<DateTime<Utc>>,
}

/// AWS's rotation period when none is set.
pub const DEFAULT_ROTATION_PERIOD_DAYS: u32 = 365;

/// Why the key's material could not be read from KMS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaterialUnread {
    /// The preflight is off: the operator does not ask KMS.
    PreflightOff,
    /// KMS refused or failed one of the rotation calls.
    Refused { call: &'static str, code: String },
}

/// `GetKeyRotationStatus`, then every page of `ListKeyRotations`.
async fn read_material(client: &aws_sdk_kms::Client, key: &KeyRef) -> Result<KeyMaterial, MaterialUnread> {
    let refused = |call: &'static str| {
        move |e: &dyn ProvideErrorMetadata| MaterialUnread::Refused {
            call,
            code: e.code().unwrap_or("Unreachable").to_string(),
        }
    };
    let status = client
        .get_key_rotation_status()
        .key_id(key.to_string())
        .send()
        .await
        .map_err(|e| refused("kms:GetKeyRotationStatus")(&e))?;
    let automatic = status.key_rotation_enabled().then(|| AutomaticRotation {
        period_days: status
            .rotation_period_in_days()
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(DEFAULT_ROTATION_PERIOD_DAYS),
        next: status.next_rotation_date().and_then(to_chrono),
    });
    let mut last_rotation: Option<DateTime<Utc>> = None;
    let mut marker: Option<String> = None;
    loop {
        let page = client
            .list_key_rotations()
            .key_id(key.to_string())
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| refused("kms:ListKeyRotations")(&e))?;
        let dates = page
            .rotations()
            .iter()
            .filter_map(|r| r.rotation_date().and_then(to_chrono));
        last_rotation = last_rotation.into_iter().chain(dates).max();
        match page.next_marker() {
            Some(next) if page.truncated() => marker = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(KeyMaterial {
        last_rotation,
        automatic,
    })
}

impl Inner {
    fn client(
        &self,
        region: Region,
        creds: Option<&StaticAwsCredentials>,
        identity: String,
    ) -> aws_sdk_kms::Client {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry((region.aws_name(), identity))
            .or_insert_with(|| {
                let timeouts = aws_sdk_kms::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(self.config.timeout.min(Duration::from_secs(5)))
                    .operation_timeout(self.config.timeout)
                    .build();
                let retries = aws_sdk_kms::config::retry::RetryConfig::standard()
                    .with_max_attempts(self.config.max_attempts.max(1));
                let mut b = aws_sdk_kms::config::Builder::from(&self.sdk)
                    .region(aws_sdk_kms::config::Region::new(region.aws_name()))
                    .timeout_config(timeouts)
                    .retry_config(retries);
                if let Some(url) = &self.config.endpoint_url {
                    b = b.endpoint_url(url);
                }
                if let Some(c) = creds {
                    b = b.credentials_provider(aws_sdk_kms::config::Credentials::new(
                        c.access_key_id.clone(),
                        c.secret_access_key.clone(),
                        c.session_token.clone(),
                        None,
                        "atlas-encryption-operator-secret",
                    ));
                }
                aws_sdk_kms::Client::from_conf(b.build())
            })
            .clone()
    }

    async fn describe(
        &self,
        key: &KeyRef,
        region: Region,
        creds: Option<&StaticAwsCredentials>,
        identity: String,
    ) -> Result<KeyReport, PreflightFailure> {
        let client = self.client(region, creds, identity);
        match client.describe_key().key_id(key.to_string()).send().await {
            Ok(out) => match out.key_metadata() {
                Some(md) => evaluate(md, key, region),
                None => Err(PreflightFailure::KmsUnreachable {
                    region,
                    detail: "DescribeKey answered without key metadata".to_string(),
                }),
            },
            Err(e) => Err(classify_error(&e, key, region)),
        }
    }
}

fn region_mismatch(key: &str, key_region: &str, region: Region) -> PreflightFailure {
    PreflightFailure::KeyRegionMismatch {
        key: key.to_string(),
        key_region: key_region.to_string(),
        region,
    }
}

/// Judges DescribeKey's metadata. Type problems come first (no state change fixes them), then region,
/// then state.
pub fn evaluate(md: &KeyMetadata, key: &KeyRef, region: Region) -> Result<KeyReport, PreflightFailure> {
    let key_arn = md.arn().map(str::to_string).unwrap_or_else(|| key.to_string());
    let spec = md.key_spec();
    let usage = md.key_usage();
    if spec.is_some_and(|s| *s != KeySpec::SymmetricDefault)
        || usage.is_some_and(|u| *u != KeyUsageType::EncryptDecrypt)
    {
        return Err(PreflightFailure::KeyNotSymmetric {
            key_arn,
            key_spec: spec.map_or("unknown spec", |s| s.as_str()).to_string(),
            key_usage: usage.map_or("unknown usage", |u| u.as_str()).to_string(),
        });
    }
    let parsed_arn: Option<KeyArn> = match KeyRef::parse(&key_arn) {
        Ok(KeyRef::Arn(arn)) => Some(arn),
        _ => None,
    };
    if let Some(arn) = &parsed_arn
        && arn.region != region
    {
        return Err(region_mismatch(&key_arn, arn.region.aws_name(), region));
    }
    match md.key_state() {
        Some(KeyState::Enabled) => {}
        Some(KeyState::Disabled) => return Err(PreflightFailure::KeyDisabled { key_arn }),
        Some(KeyState::PendingDeletion | KeyState::PendingReplicaDeletion) => {
            return Err(PreflightFailure::KeyPendingDeletion {
                key_arn,
                deletion_date: md.deletion_date().and_then(to_chrono),
            });
        }
        Some(KeyState::PendingImport) => return Err(PreflightFailure::KeyPendingImport { key_arn }),
        other => {
            return Err(PreflightFailure::KeyUnavailable {
                key_arn,
                state: other.map_or("unknown", |s| s.as_str()).to_string(),
            });
        }
    }
    Ok(KeyReport {
        checked: true,
        key_id: md.key_id().to_string(),
        account: md
            .aws_account_id()
            .map(str::to_string)
            .or_else(|| parsed_arn.as_ref().map(|a| a.account.clone())),
        key_arn: Some(key_arn),
        region,
        multi_region: md
            .multi_region()
            .unwrap_or_else(|| md.key_id().starts_with("mrk-")),
        creation_date: md.creation_date().and_then(to_chrono),
    })
}

fn to_chrono(t: &aws_sdk_kms::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Error codes meaning "these credentials may not do this", as opposed to "KMS is not there".
const DENIED_CODES: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredTokenException",
    "ExpiredToken",
];

fn classify_error<R: fmt::Debug + 'static>(
    e: &SdkError<DescribeKeyError, R>,
    key: &KeyRef,
    region: Region,
) -> PreflightFailure {
    let key_text = key.to_string();
    if let SdkError::ServiceError(se) = e {
        let err = se.err();
        if err.is_not_found_exception() || err.is_invalid_arn_exception() {
            return PreflightFailure::KeyNotFound {
                key: key_text,
                region,
            };
        }
        if let Some(code) = err.code()
            && DENIED_CODES.contains(&code)
        {
            return PreflightFailure::KmsAccessDenied {
                key: key_text,
                region,
                code: code.to_string(),
            };
        }
    }
    let detail = DisplayErrorContext(e).to_string();
    // No credentials at all surfaces before any request is sent; that is an access problem to fix,
    // not an outage to wait out.
    if !matches!(e, SdkError::ServiceError(_))
        && (detail.contains("no credentials") || detail.contains("credentials provider"))
    {
        return PreflightFailure::KmsAccessDenied {
            key: key_text,
            region,
            code: "NoCredentials".to_string(),
        };
    }
    if matches!(e, SdkError::DispatchFailure(_)) && crate::tls::refused_certificate(e) {
        return PreflightFailure::KmsCertificateUntrusted {
            region,
            detail: bounded(&detail),
        };
    }
    PreflightFailure::KmsUnreachable {
        region,
        detail: bounded(&detail),
    }
}

/// SDK error chains can be long; a status message needs the gist.
fn bounded(text: &str) -> String {
    const MAX: usize = 512;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    fn region(r: &str) -> Region {
        Region::parse(r).unwrap()
    }

    fn md(state: KeyState) -> aws_sdk_kms::types::builders::KeyMetadataBuilder {
        KeyMetadata::builder()
            .key_id(ID)
            .arn(format!("arn:aws:kms:eu-west-2:111122223333:key/{ID}"))
            .aws_account_id("111122223333")
            .key_state(state)
            .key_spec(KeySpec::SymmetricDefault)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .multi_region(false)
            .creation_date(aws_sdk_kms::primitives::DateTime::from_secs(1_700_000_000))
    }

    fn verdict(
        b: aws_sdk_kms::types::builders::KeyMetadataBuilder,
        r: &str,
    ) -> Result<KeyReport, PreflightFailure> {
        evaluate(&b.build().unwrap(), &KeyRef::parse(ID).unwrap(), region(r))
    }

    #[test]
    fn a_bare_key_id_must_be_in_the_role_account() {
        let report = verdict(md(KeyState::Enabled), "eu-west-2").unwrap();
        let bare = KeyRef::parse(ID).unwrap();
        let same = RoleArn::parse("arn:aws:iam::111122223333:role/atlas").unwrap();
        let other = RoleArn::parse("arn:aws:iam::444455556666:role/atlas").unwrap();
        assert_eq!(report.require_reachable_by(&bare, &same), Ok(()));
        let refused = report.require_reachable_by(&bare, &other).unwrap_err();
        assert_eq!(refused.reason(), reasons::KEY_ARN_REQUIRED);
        assert!(!refused.is_transient());
        let message = refused.message();
        assert!(
            message.contains("444455556666")
                && message.contains(&format!("arn:aws:kms:eu-west-2:111122223333:key/{ID}")),
            "{message}"
        );
        // The full ARN works across accounts (the key policy decides), and an unchecked report of a
        // bare id knows no account to compare.
        let arn = KeyRef::parse(&format!("arn:aws:kms:eu-west-2:111122223333:key/{ID}")).unwrap();
        assert_eq!(report.require_reachable_by(&arn, &other), Ok(()));
        let unchecked = KeyReport::unchecked(&bare, region("eu-west-2"));
        assert_eq!(unchecked.require_reachable_by(&bare, &other), Ok(()));
    }

    #[test]
    fn enabled_symmetric_key_in_region_passes() {
        let report = verdict(md(KeyState::Enabled), "eu-west-2").unwrap();
        assert!(report.checked && !report.multi_region);
        assert_eq!(report.account.as_deref(), Some("111122223333"));
        assert_eq!(report.key_id, ID);
        assert_eq!(report.creation_date.unwrap().timestamp(), 1_700_000_000);
    }

    #[test]
    fn states_map_to_distinct_reasons() {
        let cases = [
            (KeyState::Disabled, reasons::KEY_DISABLED),
            (KeyState::PendingDeletion, reasons::KEY_PENDING_DELETION),
            (KeyState::PendingReplicaDeletion, reasons::KEY_PENDING_DELETION),
            (KeyState::PendingImport, reasons::KEY_PENDING_IMPORT),
            (KeyState::Unavailable, reasons::KEY_UNAVAILABLE),
            (KeyState::Creating, reasons::KEY_UNAVAILABLE),
            (KeyState::from("SomethingNew"), reasons::KEY_UNAVAILABLE),
        ];
        for (state, reason) in cases {
            let err = verdict(md(state.clone()), "eu-west-2").unwrap_err();
            assert_eq!(err.reason(), reason, "{state:?}");
            assert!(!err.message().is_empty());
        }
    }

    #[test]
    fn asymmetric_and_hmac_keys_are_not_symmetric() {
        let rsa = md(KeyState::Enabled)
            .key_spec(KeySpec::Rsa2048)
            .key_usage(KeyUsageType::SignVerify);
        let err = verdict(rsa, "eu-west-2").unwrap_err();
        assert_eq!(err.reason(), reasons::KEY_NOT_SYMMETRIC);
        assert!(
            err.message().contains("RSA_2048") && err.message().contains("SIGN_VERIFY"),
            "{err}"
        );
        let hmac = md(KeyState::Disabled)
            .key_spec(KeySpec::Hmac256)
            .key_usage(KeyUsageType::GenerateVerifyMac);
        assert_eq!(
            verdict(hmac, "eu-west-2").unwrap_err().reason(),
            reasons::KEY_NOT_SYMMETRIC
        );
    }

    #[test]
    fn region_comes_from_the_returned_arn() {
        let err = verdict(md(KeyState::Enabled), "us-east-1").unwrap_err();
        assert_eq!(err.reason(), reasons::KEY_REGION_MISMATCH);
        assert!(
            err.message().contains("eu-west-2") && err.message().contains("us-east-1"),
            "{err}"
        );
    }

    #[test]
    fn multi_region_is_reported() {
        let mrk = format!("mrk-{}", "a".repeat(32));
        let b = md(KeyState::Enabled)
            .key_id(&mrk)
            .arn(format!("arn:aws:kms:eu-west-2:111122223333:key/{mrk}"))
            .multi_region(true);
        assert!(verdict(b, "eu-west-2").unwrap().multi_region);
    }

    #[tokio::test]
    async fn disabled_preflight_reports_unchecked() {
        let key = KeyRef::parse(&format!(
            "arn:aws:kms:us-east-1:111122223333:key/mrk-{}",
            "b".repeat(32)
        ))
        .unwrap();
        let pf = KmsPreflight::disabled();
        assert!(!pf.is_enabled());
        // Even a region mismatch passes: nothing is checked when the preflight is off.
        let report = pf.check(&key, &region("eu-west-2"), None).await.unwrap();
        assert!(!report.checked && report.multi_region);
        assert_eq!(report.account.as_deref(), Some("111122223333"));
    }

    #[test]
    fn static_credentials_never_show_their_secret() {
        let c = StaticAwsCredentials {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI-secret".into(),
            session_token: Some("token-secret".into()),
        };
        let text = format!("{c:?}");
        assert!(
            !text.contains("secret\"") && !text.contains("wJalr") && !text.contains("token-secret"),
            "{text}"
        );
        assert!(c.identity().starts_with("static:AKIAEXAMPLE:") && !c.identity().contains("wJalr"));
    }
}
