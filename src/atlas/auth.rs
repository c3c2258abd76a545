//! Atlas credentials and the two ways of presenting them: HTTP Digest (RFC 7616) for programmatic API
//! keys and OAuth 2.0 client-credentials bearer tokens for service accounts.
//!
//! Secrets live only in [`Credentials`], whose `Debug` redacts them; nothing here formats a secret into
//! an error or a log line.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use md5::Md5;
use rand::Rng;
use sha2::{Digest as _, Sha256};

/// Credentials for one Atlas organization: a programmatic API key pair or a service account.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    ApiKey {
        public_key: String,
        private_key: String,
    },
    ServiceAccount {
        client_id: String,
        client_secret: String,
    },
}

impl Credentials {
    pub fn api_key(public_key: impl Into<String>, private_key: impl Into<String>) -> Self {
        Credentials::ApiKey {
            public_key: public_key.into(),
            private_key: private_key.into(),
        }
    }

    pub fn service_account(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Credentials::ServiceAccount {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }

    /// The public half (public key or client id): safe to log, and the key of per-organization state
    /// (rate limiter, nonce and token caches), because a key or service account belongs to one org.
    pub fn identity(&self) -> &str {
        match self {
            Credentials::ApiKey { public_key, .. } => public_key,
            Credentials::ServiceAccount { client_id, .. } => client_id,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::ApiKey { .. } => "apiKey",
            Credentials::ServiceAccount { .. } => "serviceAccount",
        }
    }

    /// A short hash of the secret, so caches notice a rotated secret without holding it as a key.
    pub(crate) fn secret_fingerprint(&self) -> [u8; 8] {
        let secret = match self {
            Credentials::ApiKey { private_key, .. } => private_key,
            Credentials::ServiceAccount { client_secret, .. } => client_secret,
        };
        let digest = Sha256::digest(secret.as_bytes());
        let mut out = [0u8; 8];
        out.copy_from_slice(&digest[..8]);
        out
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ApiKey { public_key, .. } => f
                .debug_struct("ApiKey")
                .field("public_key", public_key)
                .field("private_key", &"<redacted>")
                .finish(),
            Credentials::ServiceAccount { client_id, .. } => f
                .debug_struct("ServiceAccount")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl DigestAlgorithm {
    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_uppercase().as_str() {
            "MD5" => Some(DigestAlgorithm::Md5),
            "MD5-SESS" => Some(DigestAlgorithm::Md5Sess),
            "SHA-256" => Some(DigestAlgorithm::Sha256),
            "SHA-256-SESS" => Some(DigestAlgorithm::Sha256Sess),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Md5Sess => "MD5-sess",
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            DigestAlgorithm::Md5 | DigestAlgorithm::Md5Sess => hex::encode(Md5::digest(data.as_bytes())),
            DigestAlgorithm::Sha256 | DigestAlgorithm::Sha256Sess => {
                hex::encode(Sha256::digest(data.as_bytes()))
            }
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, DigestAlgorithm::Md5Sess | DigestAlgorithm::Sha256Sess)
    }

    /// RFC 7616 §3.7: prefer the strongest algorithm the server offers.
    fn strength(self) -> u8 {
        match self {
            DigestAlgorithm::Md5 | DigestAlgorithm::Md5Sess => 1,
            DigestAlgorithm::Sha256 | DigestAlgorithm::Sha256Sess => 2,
        }
    }
}

/// One `Digest` challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: DigestAlgorithm,
    /// Whether the server offered `qop=auth`; without it the RFC 2069 form is used.
    pub qop_auth: bool,
    pub stale: bool,
}

/// Splits a `WWW-Authenticate` value into `(scheme, params)` challenges. A header may carry several
/// challenges, and quoted values may contain commas, so this is a small tokenizer rather than a split.
pub fn parse_www_authenticate(header: &str) -> Vec<(String, HashMap<String, String>)> {
    let mut out: Vec<(String, HashMap<String, String>)> = Vec::new();
    let bytes: Vec<char> = header.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == ' ' || bytes[*i] == '\t' || bytes[*i] == ',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && !matches!(bytes[i], ' ' | '\t' | ',' | '=') {
            i += 1;
        }
        let token: String = bytes[start..i].iter().collect();
        let mut j = i;
        while j < bytes.len() && (bytes[j] == ' ' || bytes[j] == '\t') {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == '=' {
            // `token=value`: a parameter of the current challenge (or token68 junk before any scheme).
            i = j + 1;
            while i < bytes.len() && (bytes[i] == ' ' || bytes[i] == '\t') {
                i += 1;
            }
            let mut value = String::new();
            if i < bytes.len() && bytes[i] == '"' {
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        '\\' if i + 1 < bytes.len() => {
                            value.push(bytes[i + 1]);
                            i += 2;
                        }
                        '"' => {
                            i += 1;
                            break;
                        }
                        c => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
            } else {
                while i < bytes.len() && bytes[i] != ',' {
                    value.push(bytes[i]);
                    i += 1;
                }
                value = value.trim().to_string();
            }
            if let Some((_, params)) = out.last_mut() {
                params.insert(token.to_ascii_lowercase(), value);
            }
        } else {
            out.push((token, HashMap::new()));
            i = j;
        }
    }
    out
}

impl DigestChallenge {
    /// The strongest usable Digest challenge among all `WWW-Authenticate` values.
    pub fn select<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<DigestChallenge> {
        headers
            .into_iter()
            .flat_map(parse_www_authenticate)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("digest"))
            .filter_map(|(_, params)| DigestChallenge::from_params(&params))
            .max_by_key(|c| c.algorithm.strength())
    }

    fn from_params(params: &HashMap<String, String>) -> Option<DigestChallenge> {
        let algorithm = match params.get("algorithm") {
            Some(a) => DigestAlgorithm::parse(a)?,
            None => DigestAlgorithm::Md5,
        };
        let qop = params.get("qop");
        // A server offering only qop=auth-int is not one we can talk to (no body hashing here).
        let qop_auth = qop.is_some_and(|q| q.split(',').any(|v| v.trim().eq_ignore_ascii_case("auth")));
        if qop.is_some() && !qop_auth {
            return None;
        }
        Some(DigestChallenge {
            realm: params.get("realm").cloned().unwrap_or_default(),
            nonce: params.get("nonce").cloned()?,
            opaque: params.get("opaque").cloned(),
            algorithm,
            qop_auth,
            stale: params
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The `Authorization` value for one request (RFC 7616 §3.4).
    pub fn authorization(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let alg = self.algorithm;
        let mut ha1 = alg.hash(&format!("{username}:{}:{password}", self.realm));
        if alg.is_sess() {
            ha1 = alg.hash(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = alg.hash(&format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let response = if self.qop_auth {
            alg.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            alg.hash(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let mut out = format!(
            "Digest username=\"{}\", realm=\"{}\", uri=\"{}\", algorithm={}, nonce=\"{}\"",
            quote(username),
            quote(&self.realm),
            quote(uri),
            alg.name(),
            quote(&self.nonce),
        );
        if self.qop_auth {
            out.push_str(&format!(", nc={nc}, cnonce=\"{}\", qop=auth", quote(cnonce)));
        }
        out.push_str(&format!(", response=\"{response}\""));
        if let Some(opaque) = &self.opaque {
            out.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
        }
        out
    }
}

fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

pub(crate) fn new_cnonce() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

/// The last Digest challenge per API key, reused with an incrementing `nc` so that most requests need
/// one round trip instead of two.
#[derive(Default)]
pub(crate) struct NonceCache {
    map: Mutex<HashMap<String, (DigestChallenge, u32)>>,
}

impl NonceCache {
    /// The cached challenge and the next `nc` for it.
    pub fn next(&self, public_key: &str) -> Option<(DigestChallenge, u32)> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (challenge, nc) = map.get_mut(public_key)?;
        *nc += 1;
        Some((challenge.clone(), *nc))
    }

    pub fn store(&self, public_key: &str, challenge: DigestChallenge) -> u32 {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(public_key.to_string(), (challenge, 1));
        1
    }

    pub fn forget(&self, public_key: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(public_key);
    }
}

#[derive(Clone)]
pub(crate) struct CachedToken {
    pub token: String,
    pub expires_at: Instant,
    lifetime: Duration,
    fingerprint: [u8; 8],
}

/// Service-account tokens per client id. Each client id has its own async lock so one refresh serves
/// every concurrent caller instead of each minting a token.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<CachedToken>>>>>,
}

/// Refresh this long before expiry, so a token never expires between our check and Atlas's.
pub(crate) const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

impl TokenCache {
    pub fn slot(&self, client_id: &str) -> Arc<tokio::sync::Mutex<Option<CachedToken>>> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(client_id.to_string())
            .or_default()
            .clone()
    }
}

impl CachedToken {
    pub fn new(token: String, expires_in: Duration, creds: &Credentials) -> CachedToken {
        CachedToken {
            token,
            expires_at: Instant::now() + expires_in,
            lifetime: expires_in,
            fingerprint: creds.secret_fingerprint(),
        }
    }

    /// Usable for a request starting now: same secret, and not within the refresh margin of expiry.
    /// Tokens shorter-lived than twice the margin are refreshed at half-life instead.
    pub fn is_fresh(&self, creds: &Credentials) -> bool {
        let margin = TOKEN_REFRESH_MARGIN.min(self.lifetime / 2);
        self.fingerprint == creds.secret_fingerprint() && Instant::now() + margin < self.expires_at
    }
}

/// The OAuth token endpoint's answer.
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7616 §3.9.1: the worked example, with both algorithms.
    const RFC_CHALLENGE_MD5: &str = r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
    const RFC_CHALLENGE_SHA256: &str = r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
    const RFC_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn response_of(header: &str) -> String {
        let params = &parse_www_authenticate(header)[0].1;
        params["response"].clone()
    }

    #[test]
    fn rfc7616_md5_example() {
        let c = DigestChallenge::select([RFC_CHALLENGE_MD5]).unwrap();
        assert_eq!(c.algorithm, DigestAlgorithm::Md5);
        let h = c.authorization(
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            1,
            RFC_CNONCE,
        );
        assert_eq!(response_of(&h), "8ca523f5e9506fed4657c9700eebdbec");
        assert!(h.contains("nc=00000001"), "{h}");
        assert!(
            h.contains(r#"opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#),
            "{h}"
        );
        assert!(h.contains("qop=auth,") || h.contains("qop=auth"), "{h}");
    }

    #[test]
    fn rfc7616_sha256_example() {
        let c = DigestChallenge::select([RFC_CHALLENGE_SHA256]).unwrap();
        assert_eq!(c.algorithm, DigestAlgorithm::Sha256);
        let h = c.authorization(
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            1,
            RFC_CNONCE,
        );
        assert_eq!(
            response_of(&h),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(h.contains("algorithm=SHA-256"), "{h}");
    }

    #[test]
    fn strongest_challenge_wins_across_headers_and_within_one() {
        let both = format!("{RFC_CHALLENGE_MD5}, {RFC_CHALLENGE_SHA256}");
        assert_eq!(
            DigestChallenge::select([both.as_str()]).unwrap().algorithm,
            DigestAlgorithm::Sha256
        );
        let c = DigestChallenge::select([RFC_CHALLENGE_MD5, RFC_CHALLENGE_SHA256]).unwrap();
        assert_eq!(c.algorithm, DigestAlgorithm::Sha256);
    }

    #[test]
    fn atlas_challenge_is_parsed() {
        let h = r#"Digest realm="MMS Public API", domain="", nonce="abc,def==", algorithm=MD5, qop="auth", stale=true"#;
        let c = DigestChallenge::select([h]).unwrap();
        assert_eq!(c.realm, "MMS Public API");
        assert_eq!(c.nonce, "abc,def==");
        assert!(c.qop_auth && c.stale);
        assert_eq!(c.opaque, None);
        let fresh = h.replace("stale=true", "stale=false");
        assert!(!DigestChallenge::select([fresh.as_str()]).unwrap().stale);
    }

    #[test]
    fn non_digest_and_unsupported_challenges_are_skipped() {
        assert_eq!(DigestChallenge::select([r#"Bearer realm="x""#]), None);
        assert_eq!(
            DigestChallenge::select([r#"Digest realm="x", nonce="n", algorithm=SHA-512-256"#]),
            None
        );
        assert_eq!(
            DigestChallenge::select([r#"Digest realm="x", nonce="n", qop="auth-int""#]),
            None
        );
        let mixed = r#"Basic realm="x", Digest realm="y", nonce="n", qop=auth"#;
        assert_eq!(DigestChallenge::select([mixed]).unwrap().realm, "y");
    }

    #[test]
    fn legacy_rfc2069_form_without_qop() {
        let c = DigestChallenge::select([r#"Digest realm="r", nonce="n""#]).unwrap();
        let h = c.authorization("u", "p", "GET", "/", 1, "c");
        let ha1 = hex::encode(Md5::digest(b"u:r:p"));
        let ha2 = hex::encode(Md5::digest(b"GET:/"));
        let expected = hex::encode(Md5::digest(format!("{ha1}:n:{ha2}").as_bytes()));
        assert_eq!(response_of(&h), expected);
        assert!(!h.contains("nc="));
    }

    #[test]
    fn nonce_cache_counts_up_and_restarts_on_a_new_challenge() {
        let cache = NonceCache::default();
        assert!(cache.next("pk").is_none());
        let c = DigestChallenge::select([RFC_CHALLENGE_MD5]).unwrap();
        assert_eq!(cache.store("pk", c.clone()), 1);
        assert_eq!(cache.next("pk").unwrap().1, 2);
        assert_eq!(cache.next("pk").unwrap().1, 3);
        cache.store("pk", c);
        assert_eq!(cache.next("pk").unwrap().1, 2);
        cache.forget("pk");
        assert!(cache.next("pk").is_none());
    }

    #[test]
    fn debug_redacts_secrets() {
        let k = Credentials::api_key("PUBKEY", "very-secret-private");
        let s = Credentials::service_account("mdb_sa_id_1", "very-secret-client");
        let text = format!("{k:?} {s:?}");
        assert!(!text.contains("very-secret"), "{text}");
        assert!(text.contains("PUBKEY") && text.contains("mdb_sa_id_1"));
    }

    #[test]
    fn token_freshness_respects_margin_and_secret() {
        let creds = Credentials::service_account("id", "s1");
        let t = CachedToken::new("t".into(), Duration::from_secs(3600), &creds);
        assert!(t.is_fresh(&creds));
        assert!(
            !t.is_fresh(&Credentials::service_account("id", "s2")),
            "a rotated secret mints anew"
        );
        let short = CachedToken::new("t".into(), Duration::from_secs(30), &creds);
        assert!(
            short.is_fresh(&creds),
            "short-lived tokens are refreshed at half-life, not after 60 s"
        );
        let mut stale = CachedToken::new("t".into(), Duration::from_secs(3600), &creds);
        stale.expires_at = Instant::now() + Duration::from_secs(30);
        assert!(!stale.is_fresh(&creds), "inside the 60 s margin");
    }
}
