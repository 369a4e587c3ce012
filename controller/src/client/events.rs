//! `events.k8s.io/v1` Events about SealedSecrets.
//!
//! Warnings (a value that does not open, a Secret that is not ours, ...) are
//! published at once, in the reconcile that found the problem. Normal
//! Events ("Unsealed", "Updated") say what the status already says, so they
//! go through a bounded queue to a publisher whose client takes only spare
//! API tokens ([`crate::client::ratelimit::Priority::Background`]): on a cold start
//! of thousands of objects the Secrets and statuses are written first and
//! the Events follow. When more than [`QUEUE`] wait, newer ones are dropped
//! and counted (`coffer_events_dropped_total`), as client-go's broadcaster
//! drops beyond 1,000.
//!
//! Events are only published when the outcome changes (a write, or a new
//! status), so kube-runtime's `Recorder` and its six-minute de-duplication
//! cache (about 26 MiB at 10,000 objects) are not needed.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::state::objects::CachedSealed;

/// Normal Events waiting for spare API tokens, at most.
pub const QUEUE: usize = 1024;

/// The bytes of an Event's note at most: the API server refuses a longer
/// one (`events.k8s.io/v1` validation).
pub const MAX_NOTE: usize = 1024;

/// The bytes of a condition's message at most. The CRD allows 32,768 (as
/// `metav1.Condition` does); a status is read by every GitOps UI and
/// `kubectl describe`, so a few KiB is all a message may use.
pub const MAX_MESSAGE: usize = 4096;

/// `message` cut to at most `max` bytes, on a character boundary, saying
/// how much was cut. Messages are built from templates, item keys and
/// names that a SealedSecret's author chooses, so their length is too.
pub fn capped(mut message: String, max: usize) -> String {
    if message.len() <= max {
        return message;
    }
    let cut_note = |n: usize| format!("… ({n} bytes cut)");
    // The note is at most 30 bytes; keep what fits before it.
    let mut keep = max.saturating_sub(30);
    while !message.is_char_boundary(keep) {
        keep -= 1;
    }
    let note = cut_note(message.len() - keep);
    message.truncate(keep);
    message.push_str(&note);
    message
}

/// Event severity.
#[derive(Clone, Copy, Debug)]
pub enum EventType {
    Normal,
    Warning,
}

/// One Event to publish.
struct Pending {
    regarding: ObjectReference,
    type_: EventType,
    reason: &'static str,
    note: String,
}

/// Publishes Events; see the module documentation.
pub struct Events {
    client: Client,
    instance: String,
    queue: mpsc::Sender<Pending>,
    metrics: Arc<Metrics>,
}

impl Events {
    /// `client` publishes Warnings; `background` (a client of background
    /// priority) publishes the queued Normal Events, from a task that ends
    /// when the returned value is dropped. `instance` is the
    /// `reportingInstance` (the pod name).
    pub fn start(
        client: Client,
        background: Client,
        instance: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (queue, mut rx) = mpsc::channel::<Pending>(QUEUE);
        let worker_instance = instance.clone();
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                publish(&background, &worker_instance, p).await;
            }
        });
        Events {
            client,
            instance,
            queue,
            metrics,
        }
    }

    /// Publishes an Event about `sealed`.
    pub async fn publish(
        &self,
        sealed: &CachedSealed,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) {
        self.publish_about(sealed.object_ref(&()), type_, reason, note)
            .await
    }

    /// Publishes an Event about any object (bitnami's SealedSecrets too).
    pub async fn publish_about(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) {
        let p = Pending {
            regarding,
            type_,
            reason,
            note: capped(note, MAX_NOTE),
        };
        match type_ {
            EventType::Warning => publish(&self.client, &self.instance, p).await,
            EventType::Normal => {
                if self.queue.try_send(p).is_err() {
                    self.metrics.event_dropped();
                }
            }
        }
    }
}

async fn publish(client: &Client, instance: &str, p: Pending) {
    let ns = p.regarding.namespace.clone().unwrap_or_default();
    let name = p.regarding.name.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let ev = Event {
        metadata: ObjectMeta {
            // As client-go names them: object name, then the time in hex.
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(
            match p.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        reason: Some(p.reason.into()),
        note: Some(p.note.chars().take(1000).collect()),
        action: Some("Unseal".into()),
        regarding: Some(p.regarding),
        reporting_controller: Some("coffer.dev/coffer-controller".into()),
        reporting_instance: Some(instance.to_string()),
        ..Default::default()
    };
    if let Err(e) = crate::client::gateway::create::<Event>(client, &ns, &ev).await {
        tracing::warn!(namespace = %ns, name = %ev.name_any(), error = %e, "could not publish an Event");
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary_and_say_so() {
        assert_eq!(capped("short".into(), 10), "short");
        let long = "é".repeat(100_000);
        for max in [MAX_NOTE, MAX_MESSAGE, 64, 65, 66] {
            let c = capped(long.clone(), max);
            assert!(c.len() <= max, "{max}: {}", c.len());
            assert!(c.ends_with("bytes cut)"), "{c}");
            assert!(c.starts_with('é'), "{max}");
        }
    }
}
