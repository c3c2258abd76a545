//! What the cluster reconciler remembers between passes: its wake gate, when each cluster was last
//! found converged, and when each cluster's update began.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    updates: Mutex<HashMap<String, Instant>>,
}

/// The fingerprint of what a person controls when the cluster was found converged, and when.
type Verified = (u64, Instant);

impl Memory {
    pub fn forget(&self, key: &str) {
        self.gate.forget(key);
        self.forget_verified(key);
        self.update_over(key);
    }

    pub fn update_started(&self, key: &str) {
        self.updates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), Instant::now());
    }

    /// How long this cluster has been updating, as far as this process knows; the clock starts at the
    /// first look that finds it busy.
    pub fn updating_for(&self, key: &str) -> Duration {
        self.updates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_insert_with(Instant::now)
            .elapsed()
    }

    pub fn update_over(&self, key: &str) {
        self.updates.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
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
