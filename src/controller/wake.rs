//! When each object is next due a look, and the one count of its failures in a row.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per object, when its next look is due and a fingerprint of what could make an earlier look worth
/// it. A reconcile's own status write comes back as a watch event; answering it with the rest of the
/// wait instead of a second pass over Atlas halves the calls of every change and keeps a converged
/// object quiet until its resync. A change to the fingerprint (spec, labels, annotations, or for a
/// cluster its project's state) opens the gate at once.
#[derive(Default)]
pub struct WakeGate {
    entries: Mutex<HashMap<String, GateEntry>>,
}

#[derive(Clone, Copy, Debug)]
struct GateEntry {
    fingerprint: u64,
    due: Instant,
    failures: u32,
}

impl WakeGate {
    /// How long the object still has to wait, or `None` when it should be reconciled now.
    pub fn wait(&self, key: &str, fingerprint: u64, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(key)?;
        (entry.fingerprint == fingerprint && entry.due > now).then(|| entry.due - now)
    }

    /// A reconcile finished and wants the next look after `after`.
    pub fn finished(&self, key: &str, fingerprint: u64, now: Instant, after: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(
            key.to_string(),
            GateEntry {
                fingerprint,
                due: now + after,
                failures: 0,
            },
        );
    }

    /// A reconcile failed: quiet for [`failure_backoff`] (the controller's own backoff), at least
    /// `retry_after`. Returns the delay.
    pub fn failed(
        &self,
        key: &str,
        fingerprint: u64,
        now: Instant,
        retry_after: Option<Duration>,
    ) -> Duration {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let failures = entries
            .get(key)
            .map(|e| e.failures)
            .unwrap_or(0)
            .saturating_add(1);
        let delay = failure_backoff(failures).max(retry_after.unwrap_or_default());
        entries.insert(
            key.to_string(),
            GateEntry {
                fingerprint,
                due: now + delay,
                failures,
            },
        );
        delay
    }

    pub fn forget(&self, key: &str) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// The wait after an object's `failures`-th reconcile failure in a row: 1 s doubling to 5 min. The
/// errors that get here are transient (a person's part is a Stalled status, not an error), and most
/// clear within seconds (a dropped connection, an Atlas 503, an API server restart), so the first
/// retries come soon; the doubling keeps a long outage cheap.
pub fn failure_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(9);
    Duration::from_secs((1u64 << doublings).min(300))
}

/// A stable fingerprint of anything hashable.
pub fn fingerprint(value: impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wake_gate_holds_own_status_writes_until_due_and_opens_on_change() {
        let gate = WakeGate::default();
        let t0 = Instant::now();
        assert_eq!(gate.wait("a", 1, t0), None);
        gate.finished("a", 1, t0, Duration::from_secs(60));
        assert_eq!(
            gate.wait("a", 1, t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(
            gate.wait("a", 2, t0 + Duration::from_secs(10)),
            None,
            "spec changed"
        );
        assert_eq!(gate.wait("a", 1, t0 + Duration::from_secs(60)), None, "due");
        assert_eq!(gate.wait("b", 1, t0), None);
        gate.forget("a");
        assert_eq!(gate.wait("a", 1, t0), None);
    }

    #[test]
    fn failures_back_off_from_one_second_doubling_to_five_minutes() {
        let waits: Vec<u64> = (1..=12).map(|n| failure_backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(failure_backoff(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn the_wake_gate_backs_off_failures_and_honours_retry_after() {
        let gate = WakeGate::default();
        let t0 = Instant::now();
        assert_eq!(gate.failed("a", 1, t0, None), Duration::from_secs(1));
        assert_eq!(gate.failed("a", 1, t0, None), Duration::from_secs(2));
        assert_eq!(gate.failed("a", 1, t0, None), Duration::from_secs(4));
        assert_eq!(
            gate.failed("a", 1, t0, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        for _ in 0..10 {
            gate.failed("a", 1, t0, None);
        }
        assert_eq!(gate.failed("a", 1, t0, None), Duration::from_secs(300));
        gate.finished("a", 1, t0, Duration::from_secs(1));
        assert_eq!(
            gate.failed("a", 1, t0, None),
            Duration::from_secs(1),
            "success resets"
        );
        assert_eq!(fingerprint(("x", 1)), fingerprint(("x", 1)));
        assert_ne!(fingerprint(("x", 1)), fingerprint(("x", 2)));
    }
}
