//! Fault injection, Atlas-style token-bucket rate limits, and the call log. These wrap the Atlas routes
//! only; the `/__sim` control API is never faulted, limited or logged, so tests can always steer the sim.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FaultKind {
    /// Adds latency, then lets the request through.
    Latency { ms: u64 },
    /// Answers with this status (5xx or anything else) and an Atlas error body.
    Status {
        status: u16,
        #[serde(default, rename = "errorCode")]
        error_code: Option<String>,
    },
    /// 429 RATE_LIMITED with Retry-After.
    RateLimit {
        #[serde(default = "one", rename = "retryAfter")]
        retry_after: u64,
    },
    /// Closes the connection without answering.
    Drop,
}

fn one() -> u64 {
    1
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSpec {
    /// HTTP method, or absent/"*" for any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path pattern: segments are literal, `*` or `{name}` (one segment), or `**` (any number). Matched
    /// against the request path, e.g. `/api/atlas/v2/groups/*/encryptionAtRest`.
    pub path: String,
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Let this many matching requests through untouched first, so a fault can hit the second call of
    /// a kind rather than the first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub after: u64,
    /// Apply to the next N matching requests only; absent = until removed.
    #[serde(default)]
    pub count: Option<u64>,
    /// Chance that a matching request is hit (default 1).
    #[serde(default)]
    pub probability: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub id: u64,
    #[serde(flatten)]
    pub spec: FaultSpec,
    pub hits: u64,
}

pub fn path_matches(pattern: &str, path: &str) -> bool {
    fn go(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(&"**"), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some(seg), Some(x)) => {
                (*seg == "*" || (seg.starts_with('{') && seg.ends_with('}')) || seg == x)
                    && go(&p[1..], &s[1..])
            }
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let s: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    go(&p, &s)
}

#[derive(Default)]
pub struct Faults {
    pub rules: Vec<Fault>,
    next_id: u64,
}

/// What the fault layer decided for one request.
#[derive(Default)]
pub struct FaultDecision {
    pub latency_ms: u64,
    pub terminal: Option<FaultKind>,
}

impl Faults {
    pub fn add(&mut self, spec: FaultSpec) -> Fault {
        self.next_id += 1;
        let f = Fault {
            id: self.next_id,
            spec,
            hits: 0,
        };
        self.rules.push(f.clone());
        f
    }

    pub fn decide(&mut self, method: &str, path: &str) -> FaultDecision {
        let mut d = FaultDecision::default();
        if self.rules.is_empty() {
            return d;
        }
        let mut rng = rand::rng();
        for f in &mut self.rules {
            let s = &f.spec;
            if let Some(m) = &s.method
                && m != "*"
                && !m.eq_ignore_ascii_case(method)
            {
                continue;
            }
            if !path_matches(&s.path, path) {
                continue;
            }
            if s.count == Some(0) {
                continue;
            }
            let is_terminal = !matches!(s.kind, FaultKind::Latency { .. });
            if is_terminal && d.terminal.is_some() {
                continue;
            }
            if s.after > 0 {
                f.spec.after -= 1;
                continue;
            }
            if let Some(p) = s.probability
                && rng.random::<f64>() >= p
            {
                continue;
            }
            f.hits += 1;
            if let Some(c) = &mut f.spec.count {
                *c -= 1;
            }
            match &f.spec.kind {
                FaultKind::Latency { ms } => d.latency_ms += ms,
                k => d.terminal = Some(k.clone()),
            }
        }
        self.rules.retain(|f| f.spec.count != Some(0));
        d
    }
}

/// Atlas's token bucket: `capacity` requests of burst, `refill_rate` tokens every `refill_seconds`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BucketConfig {
    pub capacity: u64,
    pub refill_rate: u64,
    pub refill_seconds: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitConfig {
    #[serde(default)]
    pub project: Option<BucketConfig>,
    #[serde(default)]
    pub organization: Option<BucketConfig>,
    /// Whether `GET /rateLimits` publishes these buckets. Off, it answers 404 as an Atlas without the
    /// endpoint would (or `hiddenStatus`, e.g. 403 for a key lacking the role to read them), so clients'
    /// fallback is testable.
    #[serde(default)]
    pub published: bool,
    /// The status `/rateLimits` answers while unpublished: 404 (default) or 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_status: Option<u16>,
}

/// An endpoint set's scope, as the official specification spells it: whose bucket a call draws from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Scope {
    Ip,
    Group,
    Organization,
    User,
}

/// One published endpoint set: the endpoints that share a bucket per `scope` key.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSet {
    pub id: &'static str,
    pub name: &'static str,
    pub scope: Scope,
    pub bucket: BucketConfig,
    /// (method, path template) of every endpoint the set covers.
    pub endpoints: Vec<(&'static str, &'static str)>,
}

impl EndpointSet {
    /// The set as `RateLimitEndpointSetResponse` renders it.
    pub fn render(&self) -> serde_json::Value {
        let endpoints: Vec<_> = self
            .endpoints
            .iter()
            .map(|(method, path)| serde_json::json!({"method": method, "path": path}))
            .collect();
        serde_json::json!({
            "endpointSetId": self.id,
            "endpointSetName": self.name,
            "scope": self.scope,
            "capacity": {"value": self.bucket.capacity},
            "refillRate": {"value": self.bucket.refill_rate},
            "refillDurationSeconds": {"value": self.bucket.refill_seconds},
            "endpoints": endpoints,
        })
    }
}

/// Every endpoint a project or organization bucket covers: the project-scoped operations.
fn project_endpoints() -> Vec<(&'static str, &'static str)> {
    crate::routes::OPERATIONS
        .iter()
        .filter(|(_, path)| path.starts_with("/api/atlas/v2/groups/"))
        .copied()
        .collect()
}

impl RateLimitConfig {
    /// The configured buckets as endpoint sets: the project bucket is a `GROUP`-scoped set, the
    /// organization bucket an `ORGANIZATION`-scoped one, both over the project endpoints (so a project
    /// call draws from both, as the sim has always limited it).
    pub fn endpoint_sets(&self) -> Vec<EndpointSet> {
        let set = |id, name, scope, bucket: &Option<BucketConfig>| {
            bucket.clone().map(|bucket| EndpointSet {
                id,
                name,
                scope,
                bucket,
                endpoints: project_endpoints(),
            })
        };
        [
            set(
                "projectResources_group",
                "Project Resources",
                Scope::Group,
                &self.project,
            ),
            set(
                "projectResources_organization",
                "Project Resources per Organization",
                Scope::Organization,
                &self.organization,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
pub struct RateLimiter {
    pub config: RateLimitConfig,
    buckets: HashMap<String, Bucket>,
}

pub enum RateOutcome {
    /// Allowed; the tightest (limit, remaining) pair, if any bucket applied.
    Allowed(Option<(u64, u64)>),
    Limited {
        cfg: BucketConfig,
        retry_after: u64,
    },
}

impl RateLimiter {
    /// New limits empty the buckets' history; publishing or hiding them leaves it alone.
    pub fn set(&mut self, config: RateLimitConfig) {
        if config.project != self.config.project || config.organization != self.config.organization {
            self.buckets.clear();
        }
        self.config = config;
    }

    pub fn check(&mut self, project_id: Option<&str>, org_id: Option<&str>) -> RateOutcome {
        let mut headers: Option<(u64, u64)> = None;
        let scopes = [
            (self.config.project.clone(), project_id.map(|p| format!("g:{p}"))),
            (self.config.organization.clone(), org_id.map(|o| format!("o:{o}"))),
        ];
        // Refill and test every applicable bucket before taking, so a refusal costs nothing.
        let now = Instant::now();
        let mut applicable = vec![];
        for (cfg, key) in scopes {
            let (Some(cfg), Some(key)) = (cfg, key) else {
                continue;
            };
            let b = self.buckets.entry(key.clone()).or_insert(Bucket {
                tokens: cfg.capacity as f64,
                last: now,
            });
            let per_sec = cfg.refill_rate as f64 / cfg.refill_seconds.max(1) as f64;
            b.tokens =
                (b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec).min(cfg.capacity as f64);
            b.last = now;
            if b.tokens < 1.0 {
                let retry_after = ((1.0 - b.tokens) / per_sec.max(1e-9)).ceil().max(1.0) as u64;
                return RateOutcome::Limited { cfg, retry_after };
            }
            applicable.push((cfg, key));
        }
        for (cfg, key) in applicable {
            if let Some(b) = self.buckets.get_mut(&key) {
                b.tokens -= 1.0;
                let remaining = b.tokens.floor().max(0.0) as u64;
                if headers.is_none_or(|(_, r)| remaining < r) {
                    headers = Some((cfg.capacity, remaining));
                }
            }
        }
        RateOutcome::Allowed(headers)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub seq: u64,
    pub timestamp: DateTime<Utc>,
    pub method: String,
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// The matched route template, e.g. `/api/atlas/v2/groups/{groupId}/clusters/{clusterName}`.
    pub route: Option<String>,
    /// HTTP status; 0 when the connection was dropped by a fault.
    pub status: u16,
    pub error_code: Option<String>,
    pub duration_ms: f64,
    pub principal: Option<String>,
    /// The Accept header's version date, if any.
    pub version: Option<String>,
    /// Who called, as the client named itself: tells replicas of one operator apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

pub const CALL_LOG_CAP: usize = 100_000;

#[derive(Default)]
pub struct CallLog {
    pub records: VecDeque<CallRecord>,
    pub next_seq: u64,
    pub counters: BTreeMap<String, u64>,
}

impl CallLog {
    pub fn push(&mut self, mut r: CallRecord) {
        self.next_seq += 1;
        r.seq = self.next_seq;
        *self.counters.entry("total".into()).or_default() += 1;
        let route = r.route.clone().unwrap_or_else(|| "(unmatched)".into());
        *self
            .counters
            .entry(format!("{} {}", r.method, route))
            .or_default() += 1;
        *self
            .counters
            .entry(format!("{} {} {}", r.method, route, r.status))
            .or_default() += 1;
        *self.counters.entry(format!("status {}", r.status)).or_default() += 1;
        if self.records.len() >= CALL_LOG_CAP {
            self.records.pop_front();
        }
        self.records.push_back(r);
    }

    pub fn since(&self, since: u64) -> Vec<CallRecord> {
        self.records.iter().filter(|r| r.seq > since).cloned().collect()
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.counters.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(path_matches(
            "/api/atlas/v2/groups/*/encryptionAtRest",
            "/api/atlas/v2/groups/abc/encryptionAtRest"
        ));
        assert!(path_matches(
            "/api/atlas/v2/groups/{groupId}/clusters/{clusterName}",
            "/api/atlas/v2/groups/a/clusters/b"
        ));
        assert!(path_matches(
            "/api/atlas/v2/**",
            "/api/atlas/v2/groups/a/clusters/b"
        ));
        assert!(path_matches("**", "/x"));
        assert!(!path_matches(
            "/api/atlas/v2/groups/*",
            "/api/atlas/v2/groups/a/clusters"
        ));
    }

    #[test]
    fn after_lets_the_first_matches_through_then_counts() {
        let mut faults = Faults::default();
        faults.add(FaultSpec {
            method: Some("POST".into()),
            path: "/x/*".into(),
            kind: FaultKind::Status {
                status: 500,
                error_code: None,
            },
            after: 2,
            count: Some(1),
            probability: None,
        });
        let hit = |f: &mut Faults, method: &str, path: &str| f.decide(method, path).terminal.is_some();
        assert!(!hit(&mut faults, "GET", "/x/a"), "another method does not count");
        assert!(!hit(&mut faults, "POST", "/x/a"));
        assert!(!hit(&mut faults, "POST", "/x/b"));
        assert!(hit(&mut faults, "POST", "/x/c"), "the third match is hit");
        assert!(faults.rules.is_empty(), "spent after its count");
        assert!(!hit(&mut faults, "POST", "/x/d"));
    }

    #[test]
    fn bucket_refuses_when_empty() {
        let mut rl = RateLimiter::default();
        rl.set(RateLimitConfig {
            project: Some(BucketConfig {
                capacity: 2,
                refill_rate: 1,
                refill_seconds: 60,
            }),
            ..Default::default()
        });
        assert!(matches!(
            rl.check(Some("p"), None),
            RateOutcome::Allowed(Some((2, 1)))
        ));
        assert!(matches!(
            rl.check(Some("p"), None),
            RateOutcome::Allowed(Some((2, 0)))
        ));
        assert!(matches!(
            rl.check(Some("p"), None),
            RateOutcome::Limited { retry_after: 60, .. }
        ));
        assert!(matches!(rl.check(Some("q"), None), RateOutcome::Allowed(_)));
    }
}
