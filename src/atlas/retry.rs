//! Backoff, `Retry-After`, and the client-side token bucket that keeps many projects of one Atlas
//! organization from stampeding the API (Atlas's own limits are per organization and endpoint set).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// `Retry-After` as Atlas sends it (delta seconds). The HTTP-date form is accepted too, because a proxy
/// in front of Atlas may use it.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Exponential backoff with a cap and "equal jitter": the delay for `attempt` (0-based) lies in
/// `[d/2, d]` with `d = min(cap, base * 2^attempt)`, so retries spread out but never collapse to zero.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        (half + Duration::from_millis(jitter)).min(ceiling)
    }
}

struct Bucket {
    tokens: f64,
    /// Calls per second this organization is paced at now: the configured rate, or less after a 429.
    rate: f64,
    last: Instant,
    /// Set when Atlas answered 429: nobody using this organization's credentials sends before then.
    blocked_until: Option<Instant>,
    /// When a 429 last cut `rate`.
    last_cut: Option<Instant>,
}

/// Token buckets keyed by credential identity. A caller takes a token immediately when one is there;
/// otherwise it reserves the next one (the balance goes negative) and sleeps until it is due, so
/// waiting callers are served in arrival order without holding a lock while asleep.
///
/// The configured rate is a ceiling, not a promise: Atlas's limits can be lower than the budget (other
/// tools share the organization, or the budget is simply set too high). Each 429 halves the
/// organization's pace (once per [`RateLimiter::CUT_INTERVAL`], since one overload refuses every call
/// in flight at once) down to a sixteenth of the configured rate, and the pace then climbs back by a
/// [`RateLimiter::RECOVERY`] share of the configured rate per second: the same additive increase,
/// multiplicative decrease that keeps TCP below a link's capacity, so a budget above Atlas's limit
/// costs a few refused calls per climb instead of a stream of them.
pub struct RateLimiter {
    rate_per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// 429s closer together than this are one overload and cut the pace once.
    pub const CUT_INTERVAL: Duration = Duration::from_secs(1);
    /// The share of the configured rate regained per second without a 429: back to full in 5 min.
    pub const RECOVERY: f64 = 1.0 / 300.0;
    /// The pace never falls below the configured rate divided by this.
    pub const FLOOR_DIVISOR: f64 = 16.0;

    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        RateLimiter {
            rate_per_second: rate_per_second.max(0.001),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The key's bucket brought up to `now`: tokens refilled and the pace regained since it was last
    /// touched.
    fn advanced<'a>(
        &self,
        buckets: &'a mut HashMap<String, Bucket>,
        key: &str,
        now: Instant,
    ) -> &'a mut Bucket {
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            rate: self.rate_per_second,
            last: now,
            blocked_until: None,
            last_cut: None,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.rate = (b.rate + elapsed * self.rate_per_second * Self::RECOVERY).min(self.rate_per_second);
        b.tokens = (b.tokens + elapsed * b.rate).min(self.burst);
        b.last = b.last.max(now);
        b
    }

    /// Takes (or reserves) one token and returns how long the caller must wait before sending.
    pub fn reserve(&self, key: &str) -> Duration {
        self.reserve_at(key, Instant::now())
    }

    fn reserve_at(&self, key: &str, now: Instant) -> Duration {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = self.advanced(&mut buckets, key, now);
        b.tokens -= 1.0;
        let mut wait = if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / b.rate)
        };
        if let Some(until) = b.blocked_until {
            if until > now {
                wait = wait.max(until - now);
            } else {
                b.blocked_until = None;
            }
        }
        wait
    }

    /// Atlas said 429: hold every caller of this organization until `retry_after` (when given) has
    /// passed, and slow its pace. Returns the new pace in calls per second when this 429 cut it.
    pub fn throttled(&self, key: &str, retry_after: Option<Duration>) -> Option<f64> {
        self.throttled_at(key, retry_after, Instant::now())
    }

    fn throttled_at(&self, key: &str, retry_after: Option<Duration>, now: Instant) -> Option<f64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = self.advanced(&mut buckets, key, now);
        if let Some(retry_after) = retry_after {
            let until = now + retry_after;
            b.blocked_until = Some(b.blocked_until.map_or(until, |u| u.max(until)));
        }
        if b.last_cut
            .is_some_and(|at| now.saturating_duration_since(at) < Self::CUT_INTERVAL)
        {
            return None;
        }
        b.last_cut = Some(now);
        b.rate = (b.rate / 2.0).max(self.rate_per_second / Self::FLOOR_DIVISOR);
        Some(b.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("55"), Some(Duration::from_secs(55)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("-3"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "past dates mean now"
        );
        let future = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let d = parse_retry_after(&future).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
    }

    #[test]
    fn backoff_stays_within_bounds_and_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        };
        for attempt in 0..40 {
            let ceiling = b.ceiling(attempt);
            assert!(ceiling <= Duration::from_secs(5));
            for _ in 0..20 {
                let d = b.delay(attempt);
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "attempt {attempt}: {d:?} vs {ceiling:?}"
                );
            }
        }
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(10), Duration::from_secs(5));
    }

    #[test]
    fn bucket_allows_burst_then_paces_per_key() {
        let rl = RateLimiter::new(10.0, 3);
        for _ in 0..3 {
            assert_eq!(rl.reserve("org-a"), Duration::ZERO);
        }
        let w1 = rl.reserve("org-a");
        let w2 = rl.reserve("org-a");
        assert!(
            w1 > Duration::from_millis(80) && w1 <= Duration::from_millis(100),
            "{w1:?}"
        );
        assert!(
            w2 > Duration::from_millis(180) && w2 <= Duration::from_millis(200),
            "{w2:?}"
        );
        assert_eq!(
            rl.reserve("org-b"),
            Duration::ZERO,
            "another organization has its own bucket"
        );
    }

    #[test]
    fn a_429_blocks_the_whole_organization() {
        let rl = RateLimiter::new(100.0, 10);
        rl.throttled("org-a", Some(Duration::from_secs(2)));
        let w = rl.reserve("org-a");
        assert!(w > Duration::from_millis(1900), "{w:?}");
        assert_eq!(rl.reserve("org-b"), Duration::ZERO);
    }

    #[test]
    fn a_429_halves_the_pace_once_per_overload_and_the_pace_climbs_back() {
        let rl = RateLimiter::new(100.0, 1);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(rl.throttled_at("org", None, t0), Some(50.0));
        assert_eq!(
            rl.throttled_at("org", None, t0 + Duration::from_millis(300)),
            None,
            "the other calls refused in the same overload"
        );
        // A second later: half of 50 plus the 1/3 call/s regained in that second.
        let second = rl.throttled_at("org", None, t0 + s(1)).unwrap();
        assert!((second - 25.17).abs() < 0.01, "{second}");
        for i in 2..10 {
            rl.throttled_at("org", None, t0 + s(i));
        }
        // The floor: a sixteenth of the budget. One token, then the next is 1/6.25 s away.
        assert_eq!(rl.reserve_at("org", t0 + s(9)), Duration::ZERO);
        let wait = rl.reserve_at("org", t0 + s(9));
        assert!((wait.as_secs_f64() - 0.16).abs() < 0.001, "{wait:?}");
        // A minute without a 429 regains a fifth of the budget; five minutes all of it.
        let rate_after = |at: Duration| {
            rl.reserve_at("org", t0 + at);
            1.0 / rl.reserve_at("org", t0 + at).as_secs_f64()
        };
        let after_a_minute = rate_after(s(69));
        assert!((20.0..28.0).contains(&after_a_minute), "{after_a_minute}");
        let much_later = rate_after(s(1_000));
        assert!((95.0..=100.5).contains(&much_later), "{much_later}");
        assert_eq!(
            rl.reserve_at("org-b", t0 + s(9)),
            Duration::ZERO,
            "another organization keeps its pace"
        );
    }
}
