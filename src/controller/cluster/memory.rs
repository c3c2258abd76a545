//! What the cluster reconciler remembers between passes: its wake gate, when each cluster was last
//! found converged, when each cluster's update began, and each cluster read ahead of its project.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::atlas::Cluster;
use crate::controller::Moments;
use crate::controller::wake::WakeGate;

/// What the cluster reconciler remembers between passes, per ClusterEncryption (by uid). It lives in
/// the controller's [`Context`](crate::controller::Context), so a restarted controller, or a second one in the same process
/// (tests), starts afresh.
#[derive(Default)]
pub struct Memory {
    /// When each cluster is next due a look: see [`WakeGate`].
    pub(crate) gate: WakeGate,
    /// When each cluster was last read from Atlas and found converged on the project's key, for what a
    /// person controls on its ClusterEncryption then (generation, labels, annotations): touching any
    /// of them, `kubectl annotate` included, asks for a fresh look at Atlas.
    verified: Mutex<HashMap<String, Verified>>,
    /// When each cluster's update began: our PATCH, or the first time it was seen busy. Polls are
    /// timed from then, not from when the object stopped being Ready (which includes the wait for its
    /// project).
    updates: Moments,
    /// Each cluster read while its project was on its way to Ready (`None`: the read failed), for what
    /// a person controlled then: read once per wait, taken by the first pass after the project's Ready.
    read_ahead: Mutex<HashMap<String, ReadAhead>>,
}

struct ReadAhead {
    owned: u64,
    at: Instant,
    cluster: Option<Cluster>,
}

/// The fingerprint of what a person controls when the cluster was found converged, and when.
type Verified = (u64, Instant);

impl Memory {
    pub fn forget(&self, key: &str) {
        self.gate.forget(key);
        self.forget_verified(key);
        self.update_over(key);
        self.read_ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Whether this cluster was read ahead of its project's Ready, with what a person controls unchanged.
    /// Forgets every object but those whose gate key is in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        self.gate.retain(live);
        self.updates.retain(live);
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.retain(|key, _| live.contains(key));
        let mut read_ahead = self.read_ahead.lock().unwrap_or_else(|e| e.into_inner());
        read_ahead.retain(|key, _| live.contains(key));
    }

    pub fn was_read_ahead(&self, key: &str, owned: u64) -> bool {
        let read_ahead = self.read_ahead.lock().unwrap_or_else(|e| e.into_inner());
        read_ahead.get(key).is_some_and(|r| r.owned == owned)
    }

    pub fn remember_read_ahead(&self, key: &str, owned: u64, cluster: Option<Cluster>) {
        let entry = ReadAhead {
            owned,
            at: Instant::now(),
            cluster,
        };
        self.read_ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), entry);
    }

    /// The cluster read ahead of its project's Ready, if that read is younger than `fresh_for` and what
    /// a person controls is unchanged. Taken once: any later pass reads Atlas.
    pub fn take_read_ahead(&self, key: &str, owned: u64, fresh_for: Duration) -> Option<Cluster> {
        let taken = self
            .read_ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)?;
        (taken.owned == owned && taken.at.elapsed() < fresh_for)
            .then_some(taken.cluster)
            .flatten()
    }

    pub fn update_started(&self, key: &str) {
        self.updates.mark(key);
    }

    /// How long this cluster has been updating, as far as this process knows; the clock starts at the
    /// first look that finds it busy.
    pub fn updating_for(&self, key: &str) -> Duration {
        self.updates.since_or_from_now(key)
    }

    pub fn update_over(&self, key: &str) {
        self.updates.forget(key);
    }

    pub fn mark_verified(&self, key: &str, owned: u64) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), (owned, Instant::now()));
    }

    pub fn forget_verified(&self, key: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// How long ago this cluster was found converged on the key, with what a person controls unchanged.
    pub fn verified_ago(&self, key: &str, owned: u64) -> Option<Duration> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified
            .get(key)
            .filter(|(o, _)| *o == owned)
            .map(|(_, at)| at.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_still_there_are_remembered() {
        let memory = Memory::default();
        for key in ["here", "gone"] {
            memory.remember_read_ahead(key, 1, None);
            memory.mark_verified(key, 1);
            memory.update_started(key);
            memory.gate.finished(
                key,
                1,
                Instant::now(),
                Duration::from_secs(60),
                crate::atlas::Lane::Routine,
            );
        }
        memory.retain(&HashSet::from(["here".to_string()]));
        assert!(memory.was_read_ahead("here", 1));
        assert!(memory.verified_ago("here", 1).is_some());
        assert!(!memory.was_read_ahead("gone", 1));
        assert!(memory.verified_ago("gone", 1).is_none());
        // A forgotten update or gate entry starts afresh: no time waited, a fresh look.
        assert!(memory.updating_for("gone") < Duration::from_millis(50));
        let now = Instant::now();
        assert!(
            memory.gate.wait("here", 1, now, Duration::ZERO).is_some(),
            "still waits its turn"
        );
        assert!(
            memory.gate.wait("gone", 1, now, Duration::ZERO).is_none(),
            "forgotten"
        );
    }

    #[test]
    fn a_read_ahead_is_taken_once_fresh_and_for_the_same_spec() {
        let memory = Memory::default();
        let cluster = Cluster {
            name: "Cluster0".into(),
            ..Default::default()
        };
        let fresh = Duration::from_secs(30);
        assert!(!memory.was_read_ahead("a", 1));
        memory.remember_read_ahead("a", 1, Some(cluster.clone()));
        assert!(memory.was_read_ahead("a", 1));
        assert!(!memory.was_read_ahead("a", 2), "another spec");
        assert_eq!(memory.take_read_ahead("a", 1, fresh), Some(cluster.clone()));
        assert_eq!(memory.take_read_ahead("a", 1, fresh), None, "taken once");

        memory.remember_read_ahead("a", 1, Some(cluster.clone()));
        assert_eq!(
            memory.take_read_ahead("a", 2, fresh),
            None,
            "the spec changed since"
        );
        memory.remember_read_ahead("a", 1, Some(cluster));
        assert_eq!(memory.take_read_ahead("a", 1, Duration::ZERO), None, "too old");
        memory.remember_read_ahead("a", 1, None);
        assert!(
            memory.was_read_ahead("a", 1),
            "a failed read is not retried in the same wait"
        );
        assert_eq!(memory.take_read_ahead("a", 1, fresh), None);
    }
}
