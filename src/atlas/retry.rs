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

/// What Atlas allows one bucket: `capacity` calls of burst, refilled at `rate` calls per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketLimit {
    pub capacity: f64,
    pub rate: f64,
}

impl BucketLimit {
    pub fn new(capacity: f64, rate: f64) -> Self {
        BucketLimit {
            capacity: capacity.max(1.0),
            rate: rate.max(0.001),
        }
    }
}

struct Bucket {
    limit: BucketLimit,
    tokens: f64,
    /// Calls per second this bucket is paced at now: its limit's rate, or less after a 429.
    rate: f64,
    last: Instant,
    /// Set when Atlas answered 429: nobody drawing from this bucket sends before then.
    blocked_until: Option<Instant>,
    /// When a 429 last cut `rate`.
    last_cut: Option<Instant>,
    /// Tokens taken so far: numbers the reservations, so an answer's `RateLimit-Remaining` can allow for
    /// the calls reserved after it.
    taken: u64,
}

/// Token buckets keyed by what Atlas limits: an endpoint set and scope (a project, an organization, a
/// key), or a credential when Atlas does not publish its limits. A caller takes a token immediately when
/// one is there; otherwise it reserves the next one (the balance goes negative) and sleeps until it is
/// due, so waiting callers are served in arrival order without holding a lock while asleep.
///
/// A bucket's limit is a ceiling, not a promise: others may share Atlas's bucket, and a configured
/// fallback can be set too high. Each 429 halves the bucket's pace (once per
/// [`RateLimiter::CUT_INTERVAL`], since one overload refuses every call in flight at once) down to a
/// sixteenth of its limit, and the pace then climbs back by a [`RateLimiter::RECOVERY`] share of the
/// limit per second: the additive increase, multiplicative decrease that keeps TCP below a link's
/// capacity, so a limit above Atlas's costs a few refused calls per climb instead of a stream of them.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// 429s closer together than this are one overload and cut the pace once.
    pub const CUT_INTERVAL: Duration = Duration::from_secs(1);
    /// The share of the limit's rate regained per second without a 429: back to full in 5 min.
    pub const RECOVERY: f64 = 1.0 / 300.0;
    /// The pace never falls below the limit's rate divided by this.
    pub const FLOOR_DIVISOR: f64 = 16.0;
    /// The share of each bucket kept for change-driven calls while routine ones wait.
    pub const ROUTINE_RESERVE_SHARE: f64 = 0.2;
    /// A waiting routine call looks again no sooner than this (the bucket may be shared, and a token
    /// is rarely worth a tighter loop).
    pub const ROUTINE_RECHECK: Duration = Duration::from_millis(10);

    /// The key's bucket brought up to `now` under `limit`: tokens refilled and the pace regained since
    /// it was last touched. A changed limit (Atlas published new ones) scales the current pace with it.
    fn advanced<'a>(
        buckets: &'a mut HashMap<String, Bucket>,
        key: &str,
        limit: BucketLimit,
        now: Instant,
    ) -> &'a mut Bucket {
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            limit,
            tokens: limit.capacity,
            rate: limit.rate,
            last: now,
            blocked_until: None,
            last_cut: None,
            taken: 0,
        });
        if b.limit != limit {
            b.rate *= limit.rate / b.limit.rate;
            b.limit = limit;
        }
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.rate = (b.rate + elapsed * limit.rate * Self::RECOVERY).min(limit.rate);
        b.tokens = (b.tokens + elapsed * b.rate).min(limit.capacity);
        b.last = b.last.max(now);
        b
    }

    /// Takes (or reserves) one token and returns how long the caller must wait before sending, and the
    /// reservation's number (for [`RateLimiter::observed_remaining`]).
    pub fn reserve(&self, key: &str, limit: BucketLimit) -> (Duration, u64) {
        self.reserve_at(key, limit, Instant::now())
    }

    fn reserve_at(&self, key: &str, limit: BucketLimit, now: Instant) -> (Duration, u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = Self::advanced(&mut buckets, key, limit, now);
        b.tokens -= 1.0;
        b.taken += 1;
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
        (wait, b.taken)
    }

    /// A routine call (see [`super::lane`]) takes a token only while the bucket keeps
    /// [`RateLimiter::routine_reserve`] above it, and never reserves ahead: `Err` is how long to wait
    /// before asking again. So change-driven calls, which reserve in arrival order, always find the
    /// reserve, and any debt they ran up is repaid before a routine call goes.
    pub fn take_above_reserve(&self, key: &str, limit: BucketLimit) -> Result<u64, Duration> {
        self.take_above_reserve_at(key, limit, Instant::now())
    }

    fn take_above_reserve_at(&self, key: &str, limit: BucketLimit, now: Instant) -> Result<u64, Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = Self::advanced(&mut buckets, key, limit, now);
        let blocked = b.blocked_until.filter(|until| *until > now);
        let needed = Self::routine_reserve(limit) + 1.0;
        if blocked.is_none() && b.tokens >= needed {
            b.tokens -= 1.0;
            b.taken += 1;
            return Ok(b.taken);
        }
        let refill = Duration::from_secs_f64((needed - b.tokens).max(0.0) / b.rate);
        let unblock = blocked.map_or(Duration::ZERO, |until| until - now);
        Err(refill.max(unblock).max(Self::ROUTINE_RECHECK))
    }

    /// The tokens routine calls leave to change-driven ones: a fifth of the bucket, less than all of it.
    pub fn routine_reserve(limit: BucketLimit) -> f64 {
        (limit.capacity * Self::ROUTINE_RESERVE_SHARE)
            .min(limit.capacity - 1.0)
            .max(0.0)
    }

    /// Atlas answered the call of reservation `number` with `RateLimit-Remaining: remaining`: Atlas's
    /// count wins when it is lower than ours (others share the bucket, or ours started full after a
    /// restart), less the calls reserved since, which Atlas has not counted yet. It never raises ours:
    /// answers arrive out of order, and a late one would hand back tokens already spent.
    pub fn observed_remaining(&self, key: &str, number: u64, remaining: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get_mut(key) {
            let reserved_since = b.taken.saturating_sub(number) as f64;
            b.tokens = b.tokens.min(remaining as f64 - reserved_since);
        }
    }

    /// Atlas said 429 for this bucket: hold every caller drawing from it until `retry_after` (when
    /// given) has passed, and slow its pace. Returns the new pace in calls per second when this 429
    /// cut it.
    pub fn throttled(&self, key: &str, limit: BucketLimit, retry_after: Option<Duration>) -> Option<f64> {
        self.throttled_at(key, limit, retry_after, Instant::now())
    }

    fn throttled_at(
        &self,
        key: &str,
        limit: BucketLimit,
        retry_after: Option<Duration>,
        now: Instant,
    ) -> Option<f64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = Self::advanced(&mut buckets, key, limit, now);
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
        b.rate = (b.rate / 2.0).max(limit.rate / Self::FLOOR_DIVISOR);
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
        let rl = RateLimiter::default();
        let limit = BucketLimit::new(3.0, 10.0);
        for _ in 0..3 {
            assert_eq!(rl.reserve("org-a", limit).0, Duration::ZERO);
        }
        let (w1, _) = rl.reserve("org-a", limit);
        let (w2, _) = rl.reserve("org-a", limit);
        assert!(
            w1 > Duration::from_millis(80) && w1 <= Duration::from_millis(100),
            "{w1:?}"
        );
        assert!(
            w2 > Duration::from_millis(180) && w2 <= Duration::from_millis(200),
            "{w2:?}"
        );
        assert_eq!(
            rl.reserve("org-b", limit).0,
            Duration::ZERO,
            "another organization has its own bucket"
        );
    }

    #[test]
    fn routine_calls_leave_the_reserve_to_change_driven_ones() {
        let rl = RateLimiter::default();
        let limit = BucketLimit::new(10.0, 10.0);
        let t0 = Instant::now();
        // A full bucket of 10 keeps 2 back: 8 routine calls go, the 9th waits.
        for _ in 0..8 {
            assert!(rl.take_above_reserve_at("k", limit, t0).is_ok());
        }
        let wait = rl.take_above_reserve_at("k", limit, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // A change-driven call still goes at once, and can run the bucket into debt.
        for _ in 0..2 {
            assert_eq!(rl.reserve_at("k", limit, t0).0, Duration::ZERO);
        }
        let (debt_wait, _) = rl.reserve_at("k", limit, t0);
        assert!(
            debt_wait > Duration::ZERO,
            "the third change-driven call waits its turn"
        );
        // The routine call waits until that debt is repaid and the reserve is back: 4 tokens at 10/s.
        let wait = rl.take_above_reserve_at("k", limit, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(390) && wait <= Duration::from_millis(400),
            "{wait:?}"
        );
        assert!(
            rl.take_above_reserve_at("k", limit, t0 + Duration::from_millis(400))
                .is_ok()
        );
    }

    #[test]
    fn a_routine_call_waits_out_a_429_and_a_one_token_bucket_has_no_reserve() {
        let rl = RateLimiter::default();
        let limit = BucketLimit::new(1.0, 100.0);
        assert_eq!(RateLimiter::routine_reserve(limit), 0.0);
        let t0 = Instant::now();
        rl.throttled_at("k", limit, Some(Duration::from_secs(2)), t0);
        let wait = rl.take_above_reserve_at("k", limit, t0).unwrap_err();
        assert!(wait > Duration::from_millis(1900), "{wait:?}");
        assert!(
            rl.take_above_reserve_at("k", limit, t0 + Duration::from_secs(3))
                .is_ok()
        );
    }

    #[test]
    fn a_429_blocks_the_whole_organization() {
        let rl = RateLimiter::default();
        let limit = BucketLimit::new(10.0, 100.0);
        rl.throttled("org-a", limit, Some(Duration::from_secs(2)));
        let (w, _) = rl.reserve("org-a", limit);
        assert!(w > Duration::from_millis(1900), "{w:?}");
        assert_eq!(rl.reserve("org-b", limit).0, Duration::ZERO);
    }

    #[test]
    fn a_429_halves_the_pace_once_per_overload_and_the_pace_climbs_back() {
        let rl = RateLimiter::default();
        let limit = BucketLimit::new(1.0, 100.0);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(rl.throttled_at("org", limit, None, t0), Some(50.0));
        assert_eq!(
            rl.throttled_at("org", limit, None, t0 + Duration::from_millis(300)),
            None,
            "the other calls refused in the same overload"
        );
        // A second later: half of 50 plus the 1/3 call/s regained in that second.
        let second = rl.throttled_at("org", limit, None, t0 + s(1)).unwrap();
        assert!((second - 25.17).abs() < 0.01, "{second}");
        for i in 2..10 {
            rl.throttled_at("org", limit, None, t0 + s(i));
        }
        // The floor: a sixteenth of the budget. One token, then the next is 1/6.25 s away.
        assert_eq!(rl.reserve_at("org", limit, t0 + s(9)).0, Duration::ZERO);
        let wait = rl.reserve_at("org", limit, t0 + s(9)).0;
        assert!((wait.as_secs_f64() - 0.16).abs() < 0.001, "{wait:?}");
        // A minute without a 429 regains a fifth of the budget; five minutes all of it.
        let rate_after = |at: Duration| {
            rl.reserve_at("org", limit, t0 + at);
            1.0 / rl.reserve_at("org", limit, t0 + at).0.as_secs_f64()
        };
        let after_a_minute = rate_after(s(69));
        assert!((20.0..28.0).contains(&after_a_minute), "{after_a_minute}");
        let much_later = rate_after(s(1_000));
        assert!((95.0..=100.5).contains(&much_later), "{much_later}");
        assert_eq!(
            rl.reserve_at("org-b", limit, t0 + s(9)).0,
            Duration::ZERO,
            "another organization keeps its pace"
        );
    }

    #[test]
    fn remaining_lowers_the_estimate_allowing_for_later_reservations_and_never_raises_it() {
        let rl = RateLimiter::default();
        let limit = BucketLimit::new(10.0, 0.001);
        let (_, first) = rl.reserve("project", limit);
        rl.reserve("project", limit);
        // Atlas counted only the first call: 3 left there, and our second call is still on its way.
        rl.observed_remaining("project", first, 3);
        assert_eq!(rl.reserve("project", limit).0, Duration::ZERO, "2 were left");
        assert_eq!(rl.reserve("project", limit).0, Duration::ZERO, "1 was left");
        assert!(
            rl.reserve("project", limit).0 > Duration::from_secs(100),
            "none left"
        );
        rl.observed_remaining("project", first, 9);
        assert!(
            rl.reserve("project", limit).0 > Duration::from_secs(100),
            "a late, higher count gives nothing back"
        );
    }

    #[test]
    fn a_new_limit_rescales_the_pace() {
        let rl = RateLimiter::default();
        let t0 = Instant::now();
        let slow = BucketLimit::new(1.0, 10.0);
        assert_eq!(rl.throttled_at("set", slow, None, t0), Some(5.0));
        rl.reserve_at("set", slow, t0);
        let fast = BucketLimit::new(1.0, 100.0);
        let wait = rl.reserve_at("set", fast, t0).0;
        assert!(
            (wait.as_secs_f64() - 0.02).abs() < 0.001,
            "half of 100/s: {wait:?}"
        );
    }
}
