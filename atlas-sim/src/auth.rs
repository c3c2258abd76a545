//! HTTP Digest (RFC 7616: MD5 and SHA-256, qop=auth) for programmatic API keys and OAuth 2.0 client
//! credentials for service accounts. Secrets are compared here and never logged or echoed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use md5::{Digest as _, Md5};
use parking_lot::Mutex;
use rand::Rng;
use sha2::Sha256;

use crate::error::ApiError;
use crate::state::{Credential, State, Token};

pub const REALM: &str = "MMS Public API";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    ApiKey,
    ServiceAccount,
}

/// The authenticated caller, put into request extensions by the auth middleware.
#[derive(Clone, Debug)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// Public key or client id (never a secret).
    pub id: String,
    pub projects: Vec<String>,
    pub organizations: Vec<String>,
}

impl Principal {
    pub fn label(&self) -> String {
        match self.kind {
            PrincipalKind::ApiKey => format!("apiKey:{}", self.id),
            PrincipalKind::ServiceAccount => format!("serviceAccount:{}", self.id),
        }
    }
    pub fn reaches_all(&self) -> bool {
        self.projects.iter().any(|p| p == "*")
    }
    pub fn reaches(&self, project_id: &str, project_name: &str, org_id: &str, org_name: &str) -> bool {
        self.reaches_all()
            || self.projects.iter().any(|p| p == project_id || p == project_name)
            || self.organizations.iter().any(|o| o == org_id || o == org_name)
    }
}

struct NonceInfo {
    created: Instant,
    // A set, not a high-water mark: concurrent requests sharing a nonce may arrive out of nc order.
    seen: HashSet<u32>,
}

pub struct Nonces {
    map: Mutex<HashMap<String, NonceInfo>>,
    pub lifetime: Duration,
}

impl Nonces {
    pub fn new(lifetime: Duration) -> Self {
        Nonces {
            map: Mutex::new(HashMap::new()),
            lifetime,
        }
    }

    pub fn issue(&self) -> String {
        let bytes: [u8; 24] = rand::rng().random();
        let nonce = base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut map = self.map.lock();
        if map.len() > 50_000 {
            let life = self.lifetime;
            map.retain(|_, n| n.created.elapsed() < life);
        }
        map.insert(
            nonce.clone(),
            NonceInfo {
                created: Instant::now(),
                seen: HashSet::new(),
            },
        );
        nonce
    }

    /// Ok(()) when the nonce is live and `nc` unused; Err(()) means "stale": the client should retry with a
    /// fresh nonce (unknown nonce after a restart, expired nonce, or replayed nc).
    fn consume(&self, nonce: &str, nc: u32) -> Result<(), ()> {
        let mut map = self.map.lock();
        let Some(info) = map.get_mut(nonce) else {
            return Err(());
        };
        if info.created.elapsed() >= self.lifetime {
            map.remove(nonce);
            return Err(());
        }
        if !info.seen.insert(nc) {
            return Err(());
        }
        Ok(())
    }

    pub fn clear(&self) {
        self.map.lock().clear();
    }
}

pub fn challenge(nonces: &Nonces, stale: bool, sha256_too: bool) -> Vec<String> {
    let mut v = vec![format!(
        "Digest realm=\"{REALM}\", domain=\"\", nonce=\"{}\", algorithm=MD5, qop=\"auth\", stale={stale}",
        nonces.issue()
    )];
    if sha256_too {
        v.push(format!(
            "Digest realm=\"{REALM}\", domain=\"\", nonce=\"{}\", algorithm=SHA-256, qop=\"auth\", stale={stale}",
            nonces.issue()
        ));
    }
    v
}

/// Parses `Digest k=v, k="v", …` (quoted values may contain commas).
pub fn parse_digest(header: &str) -> Option<HashMap<String, String>> {
    let rest = header
        .strip_prefix("Digest ")
        .or_else(|| header.strip_prefix("digest "))?;
    let mut out = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | ',' | '\t')) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        chars.next()?; // '='
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.push(chars.next()?),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    Some(out)
}

fn hash(alg: &str, data: &str) -> String {
    if alg.eq_ignore_ascii_case("SHA-256") {
        hex::encode(Sha256::digest(data.as_bytes()))
    } else {
        hex::encode(Md5::digest(data.as_bytes()))
    }
}

pub enum DigestOutcome {
    Ok(Principal),
    Stale,
    Denied,
}

pub fn verify_digest(
    header: &str,
    method: &str,
    request_uri: &str,
    state: &State,
    nonces: &Nonces,
) -> DigestOutcome {
    let Some(p) = parse_digest(header) else {
        return DigestOutcome::Denied;
    };
    let get = |k: &str| p.get(k).map(String::as_str);
    let (Some(user), Some(nonce), Some(uri), Some(response)) =
        (get("username"), get("nonce"), get("uri"), get("response"))
    else {
        return DigestOutcome::Denied;
    };
    let alg = get("algorithm").unwrap_or("MD5");
    if !(alg.eq_ignore_ascii_case("MD5") || alg.eq_ignore_ascii_case("SHA-256")) {
        return DigestOutcome::Denied;
    }
    if get("realm") != Some(REALM) || get("qop") != Some("auth") || uri != request_uri {
        return DigestOutcome::Denied;
    }
    let (Some(nc_s), Some(cnonce)) = (get("nc"), get("cnonce")) else {
        return DigestOutcome::Denied;
    };
    let Ok(nc) = u32::from_str_radix(nc_s, 16) else {
        return DigestOutcome::Denied;
    };
    let Some(cred) = state.api_keys.get(user) else {
        return DigestOutcome::Denied;
    };
    let ha1 = hash(alg, &format!("{user}:{REALM}:{}", cred.secret));
    let ha2 = hash(alg, &format!("{method}:{uri}"));
    let expected = hash(alg, &format!("{ha1}:{nonce}:{nc_s}:{cnonce}:auth:{ha2}"));
    if !constant_time_eq(expected.as_bytes(), response.to_ascii_lowercase().as_bytes()) {
        return DigestOutcome::Denied;
    }
    // Checked after the response so a stale answer is only given to a caller who knows the secret.
    if nonces.consume(nonce, nc).is_err() {
        return DigestOutcome::Stale;
    }
    DigestOutcome::Ok(principal(PrincipalKind::ApiKey, user, cred))
}

fn principal(kind: PrincipalKind, id: &str, cred: &Credential) -> Principal {
    Principal {
        kind,
        id: id.to_string(),
        projects: cred.projects.clone(),
        organizations: cred.organizations.clone(),
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub enum BearerOutcome {
    Ok(Principal),
    Expired,
    Unknown,
}

pub fn verify_bearer(token: &str, state: &mut State) -> BearerOutcome {
    let Some(t) = state.tokens.get(token) else {
        return BearerOutcome::Unknown;
    };
    if t.expires_at <= Utc::now() {
        state.tokens.remove(token);
        return BearerOutcome::Expired;
    }
    let client_id = t.client_id.clone();
    match state.service_accounts.get(&client_id) {
        Some(cred) => BearerOutcome::Ok(principal(PrincipalKind::ServiceAccount, &client_id, cred)),
        None => BearerOutcome::Unknown,
    }
}

/// `Authorization: Basic base64(id:secret)` → (id, secret).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

pub fn check_client(state: &State, id: &str, secret: &str) -> Result<(), ApiError> {
    match state.service_accounts.get(id) {
        Some(c) if constant_time_eq(c.secret.as_bytes(), secret.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            401,
            "INVALID_CLIENT",
            "Invalid client credentials.",
        )),
    }
}

pub fn mint_token(state: &mut State, client_id: &str, ttl: Duration) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    let token = format!("simsa_{}", hex::encode(bytes));
    let now = Utc::now();
    state.tokens.retain(|_, t| t.expires_at > now);
    state.tokens.insert(
        token.clone(),
        Token {
            client_id: client_id.to_string(),
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1)),
        },
    );
    token
}
