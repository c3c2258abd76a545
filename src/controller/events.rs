//! Events: published on transitions, never failing a reconcile and never delaying one. A pass hands
//! its Event to a queue and goes on; one task publishes the queue (as client-go's broadcaster does),
//! so the API server's time for an Event is not on any object's way to Ready.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Client, Resource};
use tokio::sync::{mpsc, oneshot};

use super::Context;

pub(crate) const WARNING: EventType = EventType::Warning;
pub(crate) const NORMAL: EventType = EventType::Normal;

/// Events waiting to be published. A wave of a thousand projects queues a few hundred at most (the
/// publisher keeps up with the API server); beyond this the newest are dropped and logged, as
/// client-go does, rather than hold a reconcile or grow without bound.
const QUEUE: usize = 1024;
/// Events published at once.
const AT_ONCE: usize = 8;

enum Queued {
    Publish(Box<Event>),
    /// Answered once everything queued before it is published.
    Flush(oneshot::Sender<()>),
}

/// The sending side of the publisher: cheap to call from a pass.
pub(crate) struct EventQueue {
    tx: mpsc::Sender<Queued>,
}

impl EventQueue {
    /// Starts the task that publishes the queue with `client`; it ends once the queue is dropped.
    pub fn start(client: Client) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(publish_all(client, rx));
        EventQueue { tx }
    }

    fn push(&self, event: Event, reason: &str) {
        if self.tx.try_send(Queued::Publish(Box::new(event))).is_err() {
            tracing::warn!(
                reason,
                "event queue full: event dropped (the status carries the same)"
            );
        }
    }

    /// Waits, at most `within`, until every Event queued so far is published: before the process
    /// exits, so the last transitions are not lost.
    pub async fn flush(&self, within: Duration) {
        let (done, published) = oneshot::channel();
        if self.tx.send(Queued::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(within, published).await;
        }
    }
}

async fn publish_all(client: Client, mut rx: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(AT_ONCE);
    while rx.recv_many(&mut batch, AT_ONCE).await > 0 {
        let mut flushes = Vec::new();
        let events: Vec<Box<Event>> = batch
            .drain(..)
            .filter_map(|queued| match queued {
                Queued::Publish(event) => Some(event),
                Queued::Flush(done) => {
                    flushes.push(done);
                    None
                }
            })
            .collect();
        futures::future::join_all(events.into_iter().map(|event| publish(&client, *event))).await;
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn publish(client: &Client, event: Event) {
    let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    if let Err(e) = events.create(&Default::default(), &event).await {
        let reason = event.reason.as_deref().unwrap_or_default();
        tracing::warn!(error = %e, reason, "could not publish event");
    }
}

impl Context {
    /// Queues an Event for publication and returns at once. Failing to record one must never fail a
    /// reconcile: the status carries the same information.
    pub fn event<K>(&self, object: &K, type_: EventType, reason: &str, action: &str, note: String)
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
        // The time is taken now, not when the queue reaches it, so the Event tells when it happened.
        let now = Timestamp::now();
        let regarding = object.object_ref(&());
        let event = Event {
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
        self.events.push(event, reason);
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    /// A stand-in API server that counts the Events it is asked to create, each taking a moment.
    fn counting_client(created: Arc<AtomicUsize>) -> Client {
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let created = created.clone();
            async move {
                assert_eq!(req.method(), http::Method::POST);
                assert!(req.uri().path().ends_with("/events"), "{}", req.uri());
                tokio::time::sleep(Duration::from_millis(20)).await;
                created.fetch_add(1, Ordering::SeqCst);
                let body = kube::client::Body::from(b"{}".to_vec());
                Ok::<_, std::convert::Infallible>(http::Response::new(body))
            }
        });
        Client::new(service, "default")
    }

    fn queued_event(i: usize) -> Event {
        Event {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("demo.{i:x}")),
                namespace: Some("team-a".into()),
                ..Default::default()
            },
            reason: Some("Test".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_pass_queues_its_events_and_a_flush_waits_until_all_are_published() {
        let created = Arc::new(AtomicUsize::new(0));
        let queue = EventQueue::start(counting_client(created.clone()));
        for i in 0..20 {
            queue.push(queued_event(i), "Test");
        }
        // Queuing does not wait for the API server (each create takes 20 ms).
        assert!(created.load(Ordering::SeqCst) < 20);
        queue.flush(Duration::from_secs(10)).await;
        assert_eq!(created.load(Ordering::SeqCst), 20);
    }

    #[test]
    fn notes_are_capped() {
        assert!(truncate_note("x".repeat(5000)).chars().count() <= 1001);
    }
}
