//! `managementPolicy: Observe`, as both kinds carry it out: a write is planned instead of made, and the
//! plan holds exactly what would have been sent.

use serde::de::DeserializeOwned;

use crate::atlas::{AtlasClient, AtlasError, Credentials, Write};
use crate::crd::PlannedChange;

/// What became of a write: Atlas's answer, or, under `Observe`, a line in the plan.
#[derive(Debug)]
pub enum Written<T> {
    Made(T),
    Planned,
}

/// Where a pass's writes go: to Atlas, or, when `observing`, `into` the plan.
pub struct Plan<'a> {
    pub observing: bool,
    pub into: &'a mut Vec<PlannedChange>,
}

impl Plan<'_> {
    /// Sends `write` and decodes Atlas's answer, or plans it.
    pub async fn write<T: DeserializeOwned>(
        self,
        atlas: &AtlasClient,
        creds: &Credentials,
        write: Write,
    ) -> Result<Written<T>, AtlasError> {
        if self.planned(&write) {
            return Ok(Written::Planned);
        }
        atlas.send(creds, &write).await.map(Written::Made)
    }

    /// [`Plan::write`] for a write whose answer carries nothing to read (a DELETE).
    pub async fn write_unanswered(
        self,
        atlas: &AtlasClient,
        creds: &Credentials,
        write: Write,
    ) -> Result<Written<()>, AtlasError> {
        if self.planned(&write) {
            return Ok(Written::Planned);
        }
        atlas.send_unanswered(creds, &write).await.map(Written::Made)
    }

    /// When observing, adds `write` to the plan and says so.
    fn planned(self, write: &Write) -> bool {
        if self.observing {
            self.into.push(planned_change(write));
        }
        self.observing
    }
}

/// The plan's line for `write`: the method, path and fields it sends.
fn planned_change(write: &Write) -> PlannedChange {
    PlannedChange {
        method: write.method().to_string(),
        path: write.path(),
        fields: write.fields(),
    }
}

// The words of the policy, shared by both kinds' conditions and outcomes.

pub fn nothing_planned() -> &'static str {
    "managementPolicy is Observe: the operator reads Atlas and KMS and writes nothing; Atlas needs no write to match the spec"
}

/// The plan in one line: how many writes, each as method and path with the fields it sets.
pub fn changes_planned(planned: &[PlannedChange]) -> String {
    let writes: Vec<String> = planned
        .iter()
        .map(|change| {
            let fields: Vec<&str> = change.fields.keys().map(String::as_str).collect();
            if fields.is_empty() {
                format!("{} {}", change.method, change.path)
            } else {
                format!("{} {} ({})", change.method, change.path, fields.join(", "))
            }
        })
        .collect();
    let count = match planned.len() {
        1 => "1 Atlas write".to_string(),
        n => format!("{n} Atlas writes"),
    };
    format!(
        "managementPolicy is Observe: {count} planned and not made, listed in status.plannedChanges: {}. Set spec.managementPolicy: Manage on the ProjectEncryption to make exactly these",
        writes.join("; ")
    )
}

/// Writes are planned. The operator has done all it may: `Ready` (what kstatus, Flux and
/// `kubectl wait` need to move on, as Crossplane's observe-only resources are Ready once observed) with
/// the reason `ChangesPlanned`, which the Argo CD health check shows as Suspended. Held until a person
/// switches to `Manage` (a spec change, which wakes the object at once); looked at again on the resync
/// so the plan follows Atlas.
pub fn changes_planned_step(planned: &[PlannedChange], resync: std::time::Duration) -> super::Step {
    super::Step::new(
        crate::status::Outcome::ready(crate::status::reasons::CHANGES_PLANNED, changes_planned(planned)),
        resync,
    )
}
