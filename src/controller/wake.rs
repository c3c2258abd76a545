//! When each object is next due a look, and the one count of its failures in a row.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::Resource;

use crate::atlas::Lane;

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
    due: Due,
    /// The lane of the look that is due: `Routine` for a converged object's resync.
    lane: Lane,
}

/// When an object's next look is due.
#[derive(Clone, Copy, Debug)]
enum Due {
    At(Instant),
    /// After the failure backoff (counted by [`Failures`], the one count) from `at`, and not before
    /// Atlas's `retry_after`.
    AfterFailure {
        at: Instant,
        retry_after: Duration,
    },
}

impl WakeGate {
    /// Whether `key` is looked at now, and as what kind of look, or how long it still has to wait.
    /// `backoff` is what its failures in a row call for ([`Failures::backoff`]).
    pub fn open(
        &self,
        key: &str,
        fingerprint: u64,
        now: Instant,
        backoff: Duration,
    ) -> Result<Look, Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = entries.get(key).filter(|entry| entry.fingerprint == fingerprint) else {
            return Ok(Look::Fresh);
        };
        let due = match entry.due {
            Due::At(due) => due,
            Due::AfterFailure { at, retry_after } => at + backoff.max(retry_after),
        };
        if due > now {
            return Err(due - now);
        }
        Ok(match (entry.due, entry.lane) {
            (Due::AfterFailure { .. }, _) => Look::Fresh,
            (Due::At(_), Lane::Change) => Look::FollowUp,
            (Due::At(_), Lane::Routine | Lane::Spare) => Look::Routine,
        })
    }

    /// How long the object still has to wait, or `None` when it should be reconciled now (the tests'
    /// view of [`WakeGate::open`]).
    #[cfg(test)]
    pub fn wait(&self, key: &str, fingerprint: u64, now: Instant, backoff: Duration) -> Option<Duration> {
        self.open(key, fingerprint, now, backoff).err()
    }

    /// A reconcile finished and wants the next look, in `lane`, after `after`.
    pub fn finished(&self, key: &str, fingerprint: u64, now: Instant, after: Duration, lane: Lane) {
        self.set(key, fingerprint, Due::At(now + after), lane);
    }

    /// A reconcile failed: quiet for the failure backoff (the controller's own), at least `retry_after`.
    pub fn failed(&self, key: &str, fingerprint: u64, now: Instant, retry_after: Option<Duration>) {
        let retry_after = retry_after.unwrap_or_default();
        let due = Due::AfterFailure { at: now, retry_after };
        self.set(key, fingerprint, due, Lane::Change);
    }

    fn set(&self, key: &str, fingerprint: u64, due: Due, lane: Lane) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = GateEntry {
            fingerprint,
            due,
            lane,
        };
        entries.insert(key.to_string(), entry);
    }

    pub fn forget(&self, key: &str) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Forgets every object but those whose gate key is in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|key, _| live.contains(key));
    }

    /// How long `object` still has to wait, its failures so far counted in `failures`; or, when it
    /// should be reconciled now, the lane its Atlas calls travel in.
    pub(crate) fn look<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        fingerprint: u64,
        failures: &Failures,
    ) -> Result<Look, Duration> {
        let backoff = failures.backoff(&object_key(object));
        self.open(&gate_key(object), fingerprint, Instant::now(), backoff)
    }

    /// Remembers how a pass over `object` ended: the next look it asked for (`next`), or the failure
    /// backoff.
    pub(crate) fn pass_ended<K: Resource<DynamicType = ()>, T>(
        &self,
        object: &K,
        fingerprint: u64,
        ended: &super::Result<T>,
        next: Option<(Duration, Lane)>,
    ) {
        let key = gate_key(object);
        match (ended, next) {
            (Ok(_), Some((after, lane))) => self.finished(&key, fingerprint, Instant::now(), after, lane),
            (Err(e), _) => self.failed(&key, fingerprint, Instant::now(), e.retry_after()),
            (Ok(_), None) => self.forget(&key),
        }
    }
}

/// Why an object is looked at now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Look {
    /// Something changed (spec, labels, annotations, a dependency), the object is new to this process,
    /// or a failure is being retried: everything is read afresh.
    Fresh,
    /// A look the last pass scheduled while waiting on something under way (a trust policy, an update):
    /// nothing a person controls changed since.
    FollowUp,
    /// A converged object's resync.
    Routine,
}

impl Look {
    /// The lane its Atlas calls travel in: only a resync gives way to change-driven work.
    pub fn lane(self) -> Lane {
        match self {
            Look::Routine => Lane::Routine,
            Look::Fresh | Look::FollowUp => Lane::Change,
        }
    }
}

/// The gate's key of an object: its uid, so a new object of the same name starts afresh.
pub(crate) fn gate_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    object.meta().uid.clone().unwrap_or_default()
}

/// The one count of each object's failed reconciles in a row, by [`object_key`]: the controller's
/// backoff and the wake gates both read it.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    /// Counts one more failure of `key`; returns the wait before the next try.
    pub fn record(&self, key: &str) -> Duration {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let failures = counts.entry(key.to_string()).or_insert(0);
        *failures = failures.saturating_add(1);
        failure_backoff(*failures)
    }

    /// The wait the failures of `key` so far call for; zero without any.
    pub fn backoff(&self, key: &str) -> Duration {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .get(key)
            .map_or(Duration::ZERO, |failures| failure_backoff(*failures))
    }

    /// `key` succeeded: its count starts again.
    pub fn clear(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Forgets the counts of every object but those whose [`object_key`] is in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.retain(|key, _| live.contains(key));
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

/// How long to wait before looking again at something on its way (a trust policy being created, a
/// cluster updating, clusters turning off), given how long it has been waited for already: at least
/// `first`; then as long again as has been waited (each look doubles the wait) up to 5 s; then a
/// quarter of the time waited, at most 5 min. A quick outcome (an automated customer, a short update)
/// is seen soon after it happens, a long one costs few looks (one every 5 s in its first 20 s, then
/// ever fewer), and nothing needs counting: the wait derives from a condition's transition time or the
/// controller's memory.
pub fn patient_delay(waited: Duration, first: Duration) -> Duration {
    const STEP: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(300);
    waited.min(STEP.max(waited / 4)).max(first).min(MAX)
}

/// The time from `since` to `now`; zero when unknown (or in the future, a clock skew).
pub fn waited_since(since: Option<Timestamp>, now: Timestamp) -> Duration {
    since
        .map(|since| Duration::from_millis(now.duration_since(since).as_millis().max(0) as u64))
        .unwrap_or_default()
}

pub(crate) fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_due_resync_of_an_unchanged_converged_object_is_routine() {
        let gate = WakeGate::default();
        let t0 = Instant::now();
        // Looked at once every look is due.
        let kind =
            |key, fingerprint| gate.open(key, fingerprint, t0 + Duration::from_secs(3600), Duration::ZERO);
        assert_eq!(kind("new", 1), Ok(Look::Fresh), "a new object");
        gate.finished("ready", 1, t0, Duration::from_secs(60), Lane::Routine);
        assert_eq!(kind("ready", 1), Ok(Look::Routine), "its resync");
        assert_eq!(kind("ready", 2), Ok(Look::Fresh), "a spec edit on it");
        gate.finished("polling", 1, t0, Duration::from_secs(1), Lane::Change);
        assert_eq!(kind("polling", 1), Ok(Look::FollowUp), "a wait under way");
        assert_eq!(
            Look::FollowUp.lane(),
            Lane::Change,
            "polls of a change are change-driven"
        );
        gate.failed("ready", 1, t0, None);
        assert_eq!(kind("ready", 1), Ok(Look::Fresh), "a retry after a failure");
        assert_eq!(
            gate.open("ready", 1, t0, Duration::from_secs(5)),
            Err(Duration::from_secs(5)),
            "not before its backoff"
        );
    }

    #[test]
    fn the_wake_gate_holds_own_status_writes_until_due_and_opens_on_change() {
        let gate = WakeGate::default();
        let t0 = Instant::now();
        assert_eq!(gate.wait("a", 1, t0, Duration::ZERO), None);
        gate.finished("a", 1, t0, Duration::from_secs(60), Lane::Change);
        assert_eq!(
            gate.wait("a", 1, t0 + Duration::from_secs(10), Duration::ZERO),
            Some(Duration::from_secs(50))
        );
        assert_eq!(
            gate.wait("a", 2, t0 + Duration::from_secs(10), Duration::ZERO),
            None,
            "spec changed"
        );
        assert_eq!(
            gate.wait("a", 1, t0 + Duration::from_secs(60), Duration::ZERO),
            None,
            "due"
        );
        assert_eq!(gate.wait("b", 1, t0, Duration::ZERO), None);
        gate.forget("a");
        assert_eq!(gate.wait("a", 1, t0, Duration::ZERO), None);
    }

    #[test]
    fn failures_back_off_from_one_second_doubling_to_five_minutes() {
        let waits: Vec<u64> = (1..=12).map(|n| failure_backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(failure_backoff(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn the_failures_of_objects_that_are_gone_are_forgotten() {
        let failures = Failures::default();
        for key in ["here", "gone"] {
            failures.record(key);
        }
        failures.retain(&HashSet::from(["here".to_string()]));
        assert_eq!(failures.backoff("here"), Duration::from_secs(1));
        assert_eq!(failures.backoff("gone"), Duration::ZERO);
    }

    #[test]
    fn the_wake_gate_backs_off_failures_and_honours_retry_after() {
        let gate = WakeGate::default();
        let failures = Failures::default();
        let t0 = Instant::now();
        // A failed reconcile: the controller counts it once, and the gate holds the object as long.
        let failed = |retry_after: Option<Duration>| {
            failures.record("a");
            gate.failed("a", 1, t0, retry_after);
            gate.wait("a", 1, t0, failures.backoff("a")).unwrap_or_default()
        };
        assert_eq!(failed(None), Duration::from_secs(1));
        assert_eq!(failed(None), Duration::from_secs(2));
        assert_eq!(failed(None), Duration::from_secs(4));
        assert_eq!(failed(Some(Duration::from_secs(60))), Duration::from_secs(60));
        for _ in 0..10 {
            failed(None);
        }
        assert_eq!(failed(None), Duration::from_secs(300));
        gate.finished("a", 1, t0, Duration::from_secs(1), Lane::Change);
        failures.clear("a");
        assert_eq!(failed(None), Duration::from_secs(1), "success resets");
        assert_eq!(failures.record("b"), Duration::from_secs(1));
        assert_eq!(fingerprint(("x", 1)), fingerprint(("x", 1)));
        assert_ne!(fingerprint(("x", 1)), fingerprint(("x", 2)));
    }

    #[test]
    fn patient_delay_doubles_then_grows_with_the_wait_and_is_bounded() {
        let s = Duration::from_secs;
        let first = s(1);
        assert_eq!(patient_delay(s(0), first), s(1), "the first look comes soon");
        assert_eq!(patient_delay(s(1), first), s(1));
        assert_eq!(patient_delay(s(2), first), s(2));
        assert_eq!(patient_delay(s(4), first), s(4));
        assert_eq!(patient_delay(s(8), first), s(5), "then every 5 s");
        assert_eq!(patient_delay(s(20), first), s(5));
        assert_eq!(patient_delay(s(400), first), s(100), "then a quarter of the wait");
        assert_eq!(patient_delay(s(100_000), first), s(300));
        assert_eq!(patient_delay(s(0), s(3)), s(3));
        assert_eq!(patient_delay(s(3), s(3)), s(3));
        assert_eq!(patient_delay(s(6), s(3)), s(5));
        assert_eq!(
            patient_delay(s(10), s(5)),
            s(5),
            "a first of 5 s is a steady 5 s at first"
        );
    }

    #[test]
    fn waited_since_is_never_negative() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let at = |s: i64| Some(Timestamp::from_second(s).unwrap());
        assert_eq!(waited_since(at(1_699_999_990), now), Duration::from_secs(10));
        assert_eq!(waited_since(at(1_700_000_010), now), Duration::ZERO);
        assert_eq!(waited_since(None, now), Duration::ZERO);
    }
}
