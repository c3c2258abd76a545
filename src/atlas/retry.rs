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
    last: Instant,
    /// Set when Atlas answered 429: nobody using this organization's credentials sends before then.
    blocked_until: Option<Instant>,
}

/// Token buckets keyed by credential identity. A caller takes a token immediately when one is there;
/// otherwise it reserves the next one (the balance goes negative) and sleeps until it is due, so
/// waiting callers are served in arrival order without holding a lock while asleep.
pub struct RateLimiter {
    rate_per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        RateLimiter {
            rate_per_second: rate_per_second.max(0.001),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes (or reserves) one token and returns how long the caller must wait before sending.
    pub fn reserve(&self, key: &str) -> Duration {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
            blocked_until: None,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate_per_second).min(self.burst);
        b.last = now;
        b.tokens -= 1.0;
        let mut wait = if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / self.rate_per_second)
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

    /// Atlas said 429: hold every caller of this organization until `retry_after` has passed.
    pub fn block(&self, key: &str, retry_after: Duration) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
            blocked_until: None,
        });
        let until = now + retry_after;
        b.blocked_until = Some(b.blocked_until.map_or(until, |u| u.max(until)));
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
        rl.block("org-a", Duration::from_secs(2));
        let w = rl.reserve("org-a");
        assert!(w > Duration::from_millis(1900), "{w:?}");
        assert_eq!(rl.reserve("org-b"), Duration::ZERO);
    }
}
