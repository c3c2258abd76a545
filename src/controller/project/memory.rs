//! What the project reconciler remembers between passes: its wake gate, when each project's role in
//! force was last known from Atlas, and since when each has awaited its customer's trust policy.

use std::collections::HashSet;
use std::time::Duration;

use crate::controller::Moments;
use crate::controller::wake::WakeGate;

/// What the project reconciler remembers, per ProjectEncryption (by uid). A restarted controller starts
/// afresh, so its first look at every project reads the role list again.
#[derive(Default)]
pub struct Memory {
    /// When each project is next due a look: see [`WakeGate`].
    pub(crate) gate: WakeGate,
    /// When Atlas last showed which role its encryption settings use: the role list read, or a key PATCH
    /// that named our role (after which ours is the one in force).
    role_in_force_known: Moments,
    /// When this process first saw a project await its customer's trust policy, so the looks grow with
    /// the wait to the millisecond (a restarted process counts from its first look).
    trust_awaited: Moments,
}

impl Memory {
    pub fn forget(&self, key: &str) {
        self.gate.forget(key);
        self.role_in_force_known.forget(key);
        self.trust_awaited.forget(key);
    }

    /// Forgets every object but those whose gate key is in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        self.gate.retain(live);
        self.role_in_force_known.retain(live);
        self.trust_awaited.retain(live);
    }

    /// How long the project has awaited its trust policy, the clock starting now on the first ask.
    pub fn trust_awaited_for(&self, key: &str) -> Duration {
        self.trust_awaited.since_or_from_now(key)
    }

    /// Atlas can assume the role: the next wait for a trust policy starts its own clock.
    pub fn trust_in_place(&self, key: &str) {
        self.trust_awaited.forget(key);
    }

    pub fn role_in_force_known_now(&self, key: &str) {
        self.role_in_force_known.mark(key);
    }

    /// How long ago Atlas last showed which role is in force, as far as this process knows.
    pub fn role_in_force_known_ago(&self, key: &str) -> Option<Duration> {
        self.role_in_force_known.since(key)
    }
}
