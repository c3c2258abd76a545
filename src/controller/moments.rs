//! When something last happened to each object (by its gate key), as far as this process knows: the
//! one per-object clock the reconcilers' memories keep (a cluster's update begun, a project's role in
//! force last seen). A restarted process starts with none.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Moments(Mutex<HashMap<String, Instant>>);

impl Moments {
    /// It happened now.
    pub fn mark(&self, key: &str) {
        self.lock().insert(key.to_string(), Instant::now());
    }

    /// How long ago it last happened, if this process saw it.
    pub fn since(&self, key: &str) -> Option<Duration> {
        self.lock().get(key).map(Instant::elapsed)
    }

    /// How long ago it last happened, the clock starting now if this process never saw it.
    pub fn since_or_from_now(&self, key: &str) -> Duration {
        self.lock()
            .entry(key.to_string())
            .or_insert_with(Instant::now)
            .elapsed()
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Forgets every key but those in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        self.lock().retain(|key, _| live.contains(key));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
