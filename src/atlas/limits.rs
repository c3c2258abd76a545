//! Atlas's published rate limits: which token buckets each call draws from, learnt per credential from
//! `GET /rateLimits` (the first time the credential is used, then again every refresh period).
//!
//! Atlas keeps one bucket per endpoint set and scope key: per project for `GROUP` sets, per organization,
//! per key (`USER`), per address (`IP`). The client mirrors them so it can send as fast as Atlas allows
//! and no faster. An API key or service account belongs to one organization, so the credential stands for
//! its organization's key: two credentials of one organization get two local buckets for Atlas's one,
//! which the answers' `RateLimit-Remaining` and the 429 safety net correct.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::model::{RateLimitEndpointSet, RateLimitScope};
use super::retry::BucketLimit;

/// Tokens of a published bucket the client keeps in hand: Atlas's clock runs one network latency behind
/// ours, and a call that travels faster than the one before it would otherwise arrive before its token.
/// One token absorbs a jitter of one refill interval.
pub const HELD_TOKENS: u64 = 1;

/// A bucket a call draws from: the limiter's key and the limit it is paced by.
#[derive(Clone, Debug)]
pub struct BucketRef {
    pub key: String,
    pub limit: BucketLimit,
    /// The published endpoint set this bucket mirrors; `None` for the configured fallback or ceiling.
    pub set: Option<PublishedSet>,
}

/// A published endpoint set as the answers name it.
#[derive(Clone, Debug)]
pub struct PublishedSet {
    pub id: Arc<str>,
    pub scope: RateLimitScope,
    /// Atlas's capacity (`RateLimit-Limit`); the local bucket holds [`HELD_TOKENS`] fewer.
    pub capacity: u64,
}

#[derive(Clone, Debug)]
struct SetLimit {
    set: PublishedSet,
    limit: BucketLimit,
}

/// One credential's published endpoint sets, indexed by the endpoints they cover.
#[derive(Debug, Default)]
pub struct Coverage {
    by_endpoint: HashMap<(String, String), Vec<SetLimit>>,
}

/// A path with the `/api/atlas/v2` prefix dropped and every `{parameter}` alike, so Atlas's parameter
/// names need not be ours (`{clusterName}` and `{name}` are one endpoint).
fn shape(path: &str) -> String {
    let path = path.strip_prefix("/api/atlas/v2").unwrap_or(path);
    path.trim_end_matches('/')
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "{}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl Coverage {
    /// The sets that carry a usable limit; a set without capacity or refill is left out (unpaced by it).
    pub fn from_sets(sets: &[RateLimitEndpointSet]) -> Coverage {
        let mut by_endpoint: HashMap<(String, String), Vec<SetLimit>> = HashMap::new();
        for set in sets {
            let (Some(capacity), Some(refill), Some(every)) = (
                set.capacity.applied(),
                set.refill_rate.applied(),
                set.refill_duration_seconds.applied(),
            ) else {
                continue;
            };
            if capacity <= 0 || refill <= 0 || every <= 0 {
                continue;
            }
            let held = capacity.saturating_sub(HELD_TOKENS as i64).max(1);
            let limit = SetLimit {
                set: PublishedSet {
                    id: Arc::from(set.endpoint_set_id.as_str()),
                    scope: set.scope,
                    capacity: capacity as u64,
                },
                limit: BucketLimit::new(held as f64, refill as f64 / every as f64),
            };
            for ep in &set.endpoints {
                let key = (ep.method.to_ascii_uppercase(), shape(&ep.path));
                by_endpoint.entry(key).or_default().push(limit.clone());
            }
        }
        Coverage { by_endpoint }
    }

    pub fn is_empty(&self) -> bool {
        self.by_endpoint.is_empty()
    }

    /// The reads per second a whole fleet under this credential can sustain: the slowest refill of the
    /// sets that cover reads and are not per project (a `GROUP` bucket grows with the projects, so it
    /// never bounds the fleet). `None` when no such set is published.
    pub fn sustained_read_rate(&self) -> Option<f64> {
        self.by_endpoint
            .iter()
            .filter(|((method, _), _)| method == "GET")
            .flat_map(|(_, sets)| sets)
            .filter(|s| s.set.scope != RateLimitScope::Group)
            .map(|s| s.limit.rate)
            .min_by(f64::total_cmp)
    }

    /// The buckets a call to `method template` draws from (empty when no published set covers it).
    /// `group` is the project the call's path names, the key of `GROUP` buckets.
    pub fn buckets(
        &self,
        method: &str,
        template: &str,
        identity: &str,
        group: Option<&str>,
    ) -> Vec<BucketRef> {
        let Some(sets) = self.by_endpoint.get(&(method.to_string(), shape(template))) else {
            return vec![];
        };
        sets.iter()
            .map(|s| {
                let scope_key = match (s.set.scope, group) {
                    (RateLimitScope::Group, Some(group)) => format!("group:{group}"),
                    (RateLimitScope::Ip, _) => "ip".to_string(),
                    // A key belongs to one organization; unknown scopes are paced per key too.
                    _ => format!("credential:{identity}"),
                };
                BucketRef {
                    key: format!("set:{}/{scope_key}", s.set.id),
                    limit: s.limit,
                    set: Some(s.set.clone()),
                }
            })
            .collect()
    }
}

/// What one credential's last read of `/rateLimits` found.
#[derive(Clone, Debug)]
pub enum Learned {
    Published(Arc<Coverage>),
    /// Not readable (an older Atlas, a key without the role) or empty: the configured pace applies.
    Unpublished,
}

#[derive(Clone, Debug)]
pub struct LearnedLimits {
    pub learned: Learned,
    pub refresh_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<LearnedLimits>>>;

/// The learnt limits per credential identity. One async slot per credential, so one caller reads the
/// limits while the others of that credential wait for the answer instead of each asking.
#[derive(Default)]
pub struct LimitsCache {
    slots: Mutex<HashMap<String, Slot>>,
    /// The fallback is logged once per process, not once per credential and hour.
    pub fallback_logged: AtomicBool,
}

impl LimitsCache {
    pub fn slot(&self, identity: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(identity.to_string()).or_default().clone()
    }

    /// The slowest [`Coverage::sustained_read_rate`] of the credentials whose limits were read; `None`
    /// while none published one. A slot being refreshed this instant is skipped, not waited for.
    pub fn sustained_read_rate(&self) -> Option<f64> {
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        slots
            .iter()
            .filter_map(|slot| {
                let learned = slot.try_lock().ok()?;
                match &learned.as_ref()?.learned {
                    Learned::Published(coverage) => coverage.sustained_read_rate(),
                    Learned::Unpublished => None,
                }
            })
            .min_by(f64::total_cmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atlas::model::{RateLimitEndpoint, RateLimitValue};

    fn value(v: i64) -> RateLimitValue {
        RateLimitValue {
            value: Some(v),
            default_value: None,
        }
    }

    fn set(id: &str, scope: RateLimitScope, capacity: i64, path: &str) -> RateLimitEndpointSet {
        RateLimitEndpointSet {
            endpoint_set_id: id.into(),
            scope,
            capacity: value(capacity),
            refill_rate: value(10),
            refill_duration_seconds: value(60),
            endpoints: vec![RateLimitEndpoint {
                method: "GET".into(),
                path: path.into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn buckets_follow_the_scope_and_match_paths_whatever_the_parameter_names() {
        let coverage = Coverage::from_sets(&[
            set(
                "clusters_group",
                RateLimitScope::Group,
                100,
                "/api/atlas/v2/groups/{groupId}/clusters/{name}",
            ),
            set(
                "clusters_org",
                RateLimitScope::Organization,
                500,
                "/api/atlas/v2/groups/{groupId}/clusters/{name}",
            ),
            set(
                "empty",
                RateLimitScope::Group,
                0,
                "/api/atlas/v2/groups/{groupId}",
            ),
        ]);
        let b = coverage.buckets(
            "GET",
            "/groups/{groupId}/clusters/{clusterName}",
            "pub",
            Some("g1"),
        );
        let keys: Vec<&str> = b.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(
            keys,
            ["set:clusters_group/group:g1", "set:clusters_org/credential:pub"]
        );
        assert_eq!(b[0].limit, BucketLimit::new(99.0, 10.0 / 60.0), "one token held");
        assert_eq!(b[1].set.as_ref().unwrap().capacity, 500);
        assert!(
            coverage
                .buckets(
                    "PATCH",
                    "/groups/{groupId}/clusters/{clusterName}",
                    "pub",
                    Some("g1")
                )
                .is_empty()
        );
        assert!(
            coverage
                .buckets("GET", "/groups/{groupId}", "pub", Some("g1"))
                .is_empty(),
            "a set without a usable limit paces nothing"
        );
    }

    #[test]
    fn the_fleets_sustained_read_rate_is_the_slowest_set_not_per_project() {
        let refilled = |id, scope, path, per_minute| RateLimitEndpointSet {
            refill_rate: value(per_minute),
            ..set(id, scope, 500, path)
        };
        let slow_org = refilled(
            "org",
            RateLimitScope::Organization,
            "/api/atlas/v2/groups/{groupId}",
            120,
        );
        let fast_user = refilled(
            "user",
            RateLimitScope::User,
            "/api/atlas/v2/groups/{groupId}/clusters",
            600,
        );
        let slow_group = refilled(
            "group",
            RateLimitScope::Group,
            "/api/atlas/v2/groups/{groupId}",
            1,
        );
        let coverage = Coverage::from_sets(&[slow_org, fast_user, slow_group]);
        assert_eq!(
            coverage.sustained_read_rate(),
            Some(2.0),
            "120 per 60 s, the slowest shared set"
        );
        let only_group = Coverage::from_sets(&[set(
            "g",
            RateLimitScope::Group,
            10,
            "/api/atlas/v2/groups/{groupId}",
        )]);
        assert_eq!(only_group.sustained_read_rate(), None);
    }
}
