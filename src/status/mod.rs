//! Status conditions, written the way kstatus and GitOps tools read them.
//!
//! One helper sets a condition: it keeps `lastTransitionTime` unless the status flips, stamps the
//! generation, and takes `now` as an argument so tests are deterministic. [`Outcome`] then derives the
//! three kstatus conditions together, so `Ready`, `Reconciling` and `Stalled` can never contradict.

pub mod reasons;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Kubernetes caps condition messages at 32 KiB; ours stay far below so `kubectl get` stays readable
/// and an echoed value can never bloat the object.
const MAX_MESSAGE: usize = 1024;

/// Sets (or adds) one condition. Returns true when something a reader would notice changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = if status { "True" } else { "False" };
    let message = truncate(message);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let changed = existing.status != status
                || existing.reason != reason
                || existing.message != message
                || existing.observed_generation != generation;
            if existing.status != status {
                existing.last_transition_time = Time(now);
            }
            existing.status = status.to_string();
            existing.reason = reason.to_string();
            existing.message = message;
            existing.observed_generation = generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message,
                observed_generation: generation,
                last_transition_time: Time(now),
            });
            true
        }
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
        set_condition(
            conditions,
            reasons::READY,
            ready,
            reason,
            message,
            generation,
            now,
        );
        let (r_reason, r_message) = if reconciling {
            (reason, message)
        } else {
            (reasons::RECONCILED, "")
        };
        set_condition(
            conditions,
            reasons::RECONCILING,
            reconciling,
            r_reason,
            r_message,
            generation,
            now,
        );
        let (s_reason, s_message) = if stalled {
            (reason, message)
        } else {
            (reasons::RECONCILED, "")
        };
        set_condition(
            conditions,
            reasons::STALLED,
            stalled,
            s_reason,
            s_message,
            generation,
            now,
        );
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
        assert!(set_condition(
            &mut conditions,
            "KeyValid",
            false,
            "AwaitingValidation",
            "",
            Some(1),
            at(0)
        ));
        assert!(set_condition(
            &mut conditions,
            "KeyValid",
            false,
            "KeyInvalid",
            "disabled",
            Some(1),
            at(10)
        ));
        assert_eq!(
            conditions[0].last_transition_time,
            Time(at(0)),
            "same status keeps the time"
        );
        assert!(set_condition(
            &mut conditions,
            "KeyValid",
            true,
            "KeyAssigned",
            "",
            Some(2),
            at(20)
        ));
        assert_eq!(conditions[0].last_transition_time, Time(at(20)));
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn setting_the_same_condition_again_reports_no_change() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, "Ready", true, "Reconciled", "ok", Some(1), at(0));
        let before = conditions.clone();
        assert!(!set_condition(
            &mut conditions,
            "Ready",
            true,
            "Reconciled",
            "ok",
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
        set_condition(
            &mut conditions,
            "Ready",
            false,
            "X",
            &"m".repeat(5000),
            None,
            at(0),
        );
        assert!(conditions[0].message.chars().count() <= MAX_MESSAGE + 1);
    }
}
