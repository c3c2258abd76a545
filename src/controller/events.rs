//! Events: published directly, on transitions, never failing a reconcile.

use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::Api;
use kube::runtime::events::EventType;

use super::Context;

pub(crate) const WARNING: EventType = EventType::Warning;
pub(crate) const NORMAL: EventType = EventType::Normal;

impl Context {
    /// Publishes an Event. Failing to record one must never fail a reconcile: the status carries the
    /// same information.
    pub async fn event<K>(&self, object: &K, type_: EventType, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let note = truncate_note(note);
        tracing::info!(event_type = ?type_, reason, action, note = %note, "event");
        // Published directly rather than through kube-runtime's Recorder. A shared Recorder keeps every
        // Event for 6 minutes to fold repeats into a series: ours are published on transitions, not
        // repeated, and at 1,000 projects that cache held 20-30 MB (~8,000 Events in a convergence
        // wave); it also folded a later `EncryptionProviderSet` into an earlier one with the other
        // direction in its note. And its Event name, `<object name>.<hex time>`, passes the API server's
        // 253-character limit for names over 236 characters, so those objects got no Events at all.
        let now = Timestamp::now();
        let regarding = object.object_ref(&());
        let event = k8s_openapi::api::events::v1::Event {
            metadata: kube::api::ObjectMeta {
                name: Some(event_name(
                    regarding.name.as_deref().unwrap_or(&self.reporter.controller),
                    now.as_nanosecond(),
                )),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(note),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now)),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            regarding: Some(regarding),
            ..Default::default()
        };
        let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), namespace);
        if let Err(e) = events.create(&Default::default(), &event).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}

/// `<object name>.<hex time>`, as kube-runtime names Events, with the object's name cut so the whole
/// stays within the 253 characters the API server allows (the Event's `regarding` carries the full
/// name; `kubectl describe` finds Events by that, not by their own name).
fn event_name(object: &str, nanos: i128) -> String {
    const MAX: usize = 253;
    let suffix = format!(".{nanos:x}");
    let room = MAX.saturating_sub(suffix.len());
    let mut stem = &object[..object.len().min(room)];
    // Each dot-separated part of a name must end with a letter or digit.
    stem = stem.trim_end_matches(['-', '.']);
    format!("{stem}{suffix}")
}

/// Event notes are capped at 1 KiB by the API.
pub(crate) fn truncate_note(note: String) -> String {
    match note.char_indices().nth(1000) {
        Some((at, _)) => format!("{}…", &note[..at]),
        None => note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_fit_the_api_servers_limit_whatever_the_object_name() {
        let nanos = 1_796_052_427_123_456_789_i128;
        assert_eq!(event_name("demo", nanos), format!("demo.{nanos:x}"));
        let longest = "a".repeat(253);
        let name = event_name(&longest, nanos);
        assert_eq!(name.len(), 253);
        assert!(name.starts_with(&"a".repeat(200)) && name.ends_with(&format!(".{nanos:x}")));
        // A cut that would leave "-." (not a valid name part) drops the dash.
        let dashed = format!("{}-bbbb", "a".repeat(235));
        let name = event_name(&dashed, nanos);
        assert!(name.len() <= 253 && !name.contains("-."), "{name}");
        assert!(name.starts_with(&"a".repeat(235)));
    }

    #[test]
    fn notes_are_capped() {
        assert!(truncate_note("x".repeat(5000)).chars().count() <= 1001);
    }
}
