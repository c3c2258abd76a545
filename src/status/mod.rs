//! Status conditions, written the way kstatus and GitOps tools read them.
//!
//! A condition is built with [`condition`] and written by [`DesiredCondition::apply`]: it keeps
//! `lastTransitionTime` unless the status flips, stamps the generation, and takes `now` as an argument
//! so tests are deterministic. [`Outcome`] then derives the
//! three kstatus conditions together, so `Ready`, `Reconciling` and `Stalled` can never contradict.

pub mod reasons;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Kubernetes caps condition messages at 32 KiB; ours stay far below so `kubectl get` stays readable
/// and an echoed value can never bloat the object.
const MAX_MESSAGE: usize = 1024;

/// Starts a condition of `type_`: `condition(KEY_VALID).true_because(KEY_ASSIGNED).saying("…")`.
pub fn condition(type_: &'static str) -> ConditionType {
    ConditionType(type_)
}

/// A condition type waiting for its verdict (see [`condition`]).
#[derive(Clone, Copy, Debug)]
pub struct ConditionType(&'static str);

impl ConditionType {
    pub fn true_because(self, reason: &str) -> DesiredCondition {
        self.holds(true, reason)
    }

    pub fn false_because(self, reason: &str) -> DesiredCondition {
        self.holds(false, reason)
    }

    /// A verdict known only at run time (`holds` true or false).
    pub fn holds(self, holds: bool, reason: &str) -> DesiredCondition {
        DesiredCondition {
            type_: self.0,
            holds,
            reason: reason.to_string(),
            message: String::new(),
        }
    }
}

/// One condition as a pass wants it: what [`DesiredCondition::apply`] writes into a status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub holds: bool,
    pub reason: String,
    pub message: String,
}

impl DesiredCondition {
    pub fn saying(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Sets (or adds) the condition. It keeps `lastTransitionTime` unless the status flips. Returns true
    /// when something a reader would notice changed.
    pub fn apply(&self, conditions: &mut Vec<Condition>, generation: Option<i64>, now: Timestamp) -> bool {
        let status = if self.holds { "True" } else { "False" };
        let message = truncate(&self.message);
        let Some(existing) = conditions.iter_mut().find(|c| c.type_ == self.type_) else {
            conditions.push(Condition {
                type_: self.type_.to_string(),
                status: status.to_string(),
                reason: self.reason.clone(),
                message,
                observed_generation: generation,
                last_transition_time: Time(now),
            });
            return true;
        };
        let changed = existing.status != status
            || existing.reason != self.reason
            || existing.message != message
            || existing.observed_generation != generation;
        if existing.status != status {
            existing.last_transition_time = Time(now);
        }
        existing.status = status.to_string();
        existing.reason = self.reason.clone();
        existing.message = message;
        existing.observed_generation = generation;
        changed
    }

    /// When this condition, written over `previous` at `now`, last changed between true and false.
    pub fn transition_time(&self, previous: Option<&Condition>, now: Timestamp) -> Timestamp {
        let status = if self.holds { "True" } else { "False" };
        previous
            .filter(|p| p.status == status)
            .map_or(now, |p| p.last_transition_time.0)
    }

    /// The message as it is stored (capped at the length a condition keeps).
    pub fn stored_message(&self) -> String {
        truncate(&self.message)
    }
}

pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Where one reconcile left an object, as kstatus sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Desired state reached: `Ready=True`.
    Ready { reason: String, message: String },
    /// Work under way or an expected wait: `Reconciling=True`, `Ready=False`.
    Progressing { reason: String, message: String },
    /// Nothing will change until a person acts: `Stalled=True`, `Ready=False`.
    Stalled { reason: String, message: String },
}

impl Outcome {
    pub fn ready(reason: &str, message: impl Into<String>) -> Self {
        Outcome::Ready {
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn progressing(reason: &str, message: impl Into<String>) -> Self {
        Outcome::Progressing {
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Outcome::Stalled {
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Outcome::Ready { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            Outcome::Ready { reason, .. }
            | Outcome::Progressing { reason, .. }
            | Outcome::Stalled { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Outcome::Ready { message, .. }
            | Outcome::Progressing { message, .. }
            | Outcome::Stalled { message, .. } => message,
        }
    }

    /// Writes `Ready`, `Reconciling` and `Stalled` from this outcome. The abnormal-true conditions are
    /// kept as `False` rather than removed, so a reader sees the last transition time.
    pub fn apply(&self, conditions: &mut Vec<Condition>, generation: Option<i64>, now: Timestamp) {
        let (ready, reconciling, stalled) = match self {
            Outcome::Ready { .. } => (true, false, false),
            Outcome::Progressing { .. } => (false, true, false),
            Outcome::Stalled { .. } => (false, false, true),
        };
        let (reason, message) = (self.reason(), self.message());
        condition(reasons::READY)
            .holds(ready, reason)
            .saying(message)
            .apply(conditions, generation, now);
        let (r_reason, r_message) = if reconciling {
            (reason, message)
        } else {
            (reasons::RECONCILED, "")
        };
        condition(reasons::RECONCILING)
            .holds(reconciling, r_reason)
            .saying(r_message)
            .apply(conditions, generation, now);
        let (s_reason, s_message) = if stalled {
            (reason, message)
        } else {
            (reasons::RECONCILED, "")
        };
        condition(reasons::STALLED)
            .holds(stalled, s_reason)
            .saying(s_message)
            .apply(conditions, generation, now);
    }
}

fn truncate(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut conditions = Vec::new();
        assert!(
            condition("KeyValid")
                .holds(false, "AwaitingValidation")
                .saying("")
                .apply(&mut conditions, Some(1), at(0))
        );
        assert!(
            condition("KeyValid")
                .holds(false, "KeyInvalid")
                .saying("disabled")
                .apply(&mut conditions, Some(1), at(10))
        );
        assert_eq!(
            conditions[0].last_transition_time,
            Time(at(0)),
            "same status keeps the time"
        );
        assert!(condition("KeyValid").holds(true, "KeyAssigned").saying("").apply(
            &mut conditions,
            Some(2),
            at(20)
        ));
        assert_eq!(conditions[0].last_transition_time, Time(at(20)));
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn setting_the_same_condition_again_reports_no_change() {
        let mut conditions = Vec::new();
        condition("Ready")
            .holds(true, "Reconciled")
            .saying("ok")
            .apply(&mut conditions, Some(1), at(0));
        let before = conditions.clone();
        assert!(!condition("Ready").holds(true, "Reconciled").saying("ok").apply(
            &mut conditions,
            Some(1),
            at(99)
        ));
        assert_eq!(conditions, before, "no status write loop from a re-set condition");
    }

    #[test]
    fn outcomes_keep_the_kstatus_trio_consistent() {
        let mut conditions = Vec::new();
        Outcome::stalled("KeyDisabled", "enable the key").apply(&mut conditions, Some(3), at(0));
        assert!(is_true(&conditions, "Stalled"));
        assert!(!is_true(&conditions, "Ready"));
        assert!(!is_true(&conditions, "Reconciling"));
        assert_eq!(find(&conditions, "Ready").unwrap().reason, "KeyDisabled");

        Outcome::progressing("AwaitingTrustPolicy", "create the trust").apply(
            &mut conditions,
            Some(3),
            at(5),
        );
        assert!(is_true(&conditions, "Reconciling"));
        assert!(!is_true(&conditions, "Stalled"));

        Outcome::ready("Reconciled", "encrypted").apply(&mut conditions, Some(3), at(9));
        assert!(is_true(&conditions, "Ready"));
        assert!(!is_true(&conditions, "Reconciling") && !is_true(&conditions, "Stalled"));
        assert_eq!(conditions.len(), 3);
    }

    #[test]
    fn long_messages_are_truncated() {
        let mut conditions = Vec::new();
        condition("Ready")
            .holds(false, "X")
            .saying("m".repeat(5000))
            .apply(&mut conditions, None, at(0));
        assert!(conditions[0].message.chars().count() <= MAX_MESSAGE + 1);
    }
}
