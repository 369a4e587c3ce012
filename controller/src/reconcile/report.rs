//! Report: every reconcile ends here, once: the status (`Ready`, and
//! `Stalled` or `Reconciling` beside it), an Event when something changed,
//! the metrics, the log, and the outcome the store remembers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use coffer_core::reason::{Class, Reason};

use crate::client::events::EventType;
use crate::client::gateway;
use crate::keys::ring::KeyState;
use crate::keys::users::KeySet;
use crate::reconcile::apply::Did;
use crate::reconcile::context::{Context, Next};
use crate::reconcile::plan;
use crate::state::objects::{self, CachedSealed, Outcome};
use crate::state::store::{Key, ReadyMemo, SealedEntry, StatusMemo, split};

/// What the status says of the SealedSecret's current generation, in the
/// conditions kstatus (Flux), Argo CD and `kubectl wait` read: `Ready`,
/// plus `Stalled` beside a refusal (it will not fix itself: someone must
/// change the SealedSecret, the keys or the flags) and `Reconciling` while
/// the controller keeps retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// `Ready=True`.
    Unsealed,
    /// `Ready=False` and `Stalled=True`, with the same reason and message.
    Refused,
    /// `Ready=Unknown` and `Reconciling=True`, reason `Retrying`.
    Retrying,
}

impl Readiness {
    /// What the status says for `reason`, by its class: a refusal needs a
    /// person (`Stalled`), a retry passes by itself (`Reconciling`).
    pub(crate) fn of(reason: Reason) -> Self {
        match reason.class() {
            Class::Done => Readiness::Unsealed,
            Class::Stalled => Readiness::Refused,
            Class::Retrying => Readiness::Retrying,
        }
    }

    fn ready_status(self) -> &'static str {
        match self {
            Readiness::Unsealed => "True",
            Readiness::Refused => "False",
            Readiness::Retrying => "Unknown",
        }
    }
}

/// The conditions for `readiness`; each keeps its transition time while
/// its status stays the same.
pub fn conditions(
    readiness: Readiness,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    old_ready: Option<&ReadyMemo>,
    now: Time,
) -> Vec<Condition> {
    let condition = |type_: &str, status: &str, since: Option<&ReadyMemo>| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: match since {
            Some(o) if &*o.status == status => o.since.clone(),
            _ => now.clone(),
        },
    };
    let mut out = vec![condition("Ready", readiness.ready_status(), old_ready)];
    match readiness {
        Readiness::Unsealed => {}
        // Stalled and Reconciling are written only while True: when the
        // refusal or the retrying ends, the next status drops them.
        Readiness::Refused => out.push(condition("Stalled", "True", None)),
        Readiness::Retrying => out.push(condition("Reconciling", "True", None)),
    }
    out
}

/// The object whose status is written: where it is, its generation, and
/// its status as last read.
pub struct StatusOf<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub generation: Option<i64>,
    pub status: StatusMemo,
}

impl<'a> StatusOf<'a> {
    pub(crate) fn sealed(s: &'a CachedSealed) -> Self {
        StatusOf {
            namespace: s.metadata.namespace.as_deref().unwrap_or_default(),
            name: s.metadata.name.as_deref().unwrap_or_default(),
            generation: s.metadata.generation,
            status: StatusMemo::of(s),
        }
    }

    pub(crate) fn entry(key: &'a str, e: &SealedEntry) -> Self {
        let (namespace, name) = split(key);
        StatusOf {
            namespace,
            name,
            generation: e.generation,
            status: e.status.clone(),
        }
    }
}

/// Writes the status for `reason` when it differs; returns whether it
/// changed.
pub(crate) async fn set_status(
    ctx: &Context,
    of: &StatusOf<'_>,
    reason: Reason,
    message: String,
) -> Result<bool, kube::Error> {
    let readiness = Readiness::of(reason);
    let reason = reason.as_str();
    let message = crate::client::events::capped(message, crate::client::events::MAX_MESSAGE);
    let generation = of.generation;
    let old = of.status.ready.as_ref();
    if let Some(o) = old
        && o.says(readiness.ready_status(), reason, &message)
        && of.status.observed_generation == generation
        && of.status.stalled == (readiness == Readiness::Refused)
        && of.status.reconciling == (readiness == Readiness::Retrying)
    {
        return Ok(false);
    }
    let conditions = conditions(
        readiness,
        reason,
        &message,
        generation,
        old,
        Time(jiff::Timestamp::now()),
    );
    // A merge patch replaces the whole list: conditions no longer true go.
    let patch = serde_json::json!({
        "status": { "observedGeneration": generation, "conditions": conditions }
    });
    gateway::patch_status::<CachedSealed>(&ctx.client, of.namespace, of.name, &patch).await?;
    Ok(true)
}

/// What a reconcile came to.
pub(crate) enum Done<'a> {
    /// Nothing to report (the SealedSecret is being deleted).
    Nothing,
    /// The Secret is right and nothing was written; at most the status
    /// lags behind. `restored`: the outcome just read back from the
    /// Secret's annotation (with the SealedSecret's uid), to remember.
    Current {
        of: StatusOf<'a>,
        items: usize,
        restored: Option<(&'a str, Outcome)>,
    },
    /// The plan's write went through (or was not needed).
    Written {
        sealed: &'a CachedSealed,
        items: usize,
        did: Did,
        digest: [u8; 32],
        needs: KeySet,
    },
    /// Refused, as the plan decided.
    Refused {
        sealed: &'a CachedSealed,
        refusal: plan::Refusal,
    },
}

/// Reports what was done, once: status, Event, metrics, log, and the
/// remembered outcome. Every reconcile that gets this far ends here, the
/// one whose last unseal still holds included.
pub(crate) async fn report(
    ctx: &Context,
    key: &Key,
    keys: &KeyState,
    done: Done<'_>,
) -> Result<Next, kube::Error> {
    match done {
        Done::Nothing => Ok(Next::AwaitChange),
        Done::Current {
            of,
            items,
            restored,
        } => {
            if let Some((uid, outcome)) = restored {
                ctx.store.set_unsealed(key, uid, outcome);
                ctx.metrics.outcome_restored();
            }
            let message = unsealed(items, of.namespace, of.name);
            set_status(ctx, &of, Reason::Unsealed, message).await?;
            Ok(Next::AwaitChange)
        }
        Done::Written {
            sealed,
            items,
            did,
            digest,
            needs,
        } => {
            let (ns, name) = (sealed.namespace().unwrap_or_default(), sealed.name_any());
            let message = unsealed(items, &ns, &name);
            ctx.metrics.unseal(Reason::Unsealed);
            if let Some(uid) = sealed.metadata.uid.as_deref() {
                ctx.store.set_unsealed(
                    key,
                    uid,
                    Outcome {
                        generation: sealed.metadata.generation,
                        key_epoch: keys.epoch,
                        items,
                        digest,
                        needs,
                    },
                );
            }
            set_status(
                ctx,
                &StatusOf::sealed(sealed),
                Reason::Unsealed,
                message.clone(),
            )
            .await?;
            let (event, log) = match did {
                Did::Unchanged => return Ok(Next::AwaitChange),
                Did::Created => ("Unsealed", "created Secret"),
                Did::Merged => ("Merged", "merged items into Secret"),
                Did::Replaced | Did::UpdatedInPlace | Did::Recreated => {
                    ("Updated", "updated Secret")
                }
            };
            tracing::info!(namespace = %ns, name = %name, items, "{log}");
            ctx.events
                .publish(sealed, EventType::Normal, event, message)
                .await;
            Ok(Next::AwaitChange)
        }
        Done::Refused { sealed, refusal } => {
            let plan::Refusal {
                reason,
                message,
                requeue,
            } = refusal;
            let remembered = objects::Refusal {
                generation: sealed.metadata.generation,
                key_epoch: keys.epoch,
                reason,
            };
            // Remembering the refusal also forgets the last successful
            // unseal: the Secret no longer follows this SealedSecret.
            let again = match sealed.metadata.uid.as_deref() {
                Some(uid) => ctx.store.refused(key, uid, remembered),
                None => false,
            };
            // The status already shows this refusal for this generation: a
            // restarted controller (or a new leader) found it again. It was
            // counted and logged when it happened, so the counter does not
            // count it once more after every restart (which fired
            // CofferUnsealFailuresRising on each rollout).
            // Capped as the status holds it.
            let message =
                crate::client::events::capped(message, crate::client::events::MAX_MESSAGE);
            let shown = shows_refusal(
                &StatusMemo::of(sealed),
                sealed.metadata.generation,
                reason.as_str(),
                &message,
            );
            let again = again || shown;
            refuse(ctx, sealed, reason, message, again).await?;
            // A refusal is final until something changes: a key-ring change
            // re-queues every object; only a new template, new values or a
            // restart with other flags can change the others. The plan
            // says when one that others must resolve is looked at again.
            Ok(requeue.map_or(Next::AwaitChange, Next::RequeueAfter))
        }
    }
}

/// Whether `status` already says `Ready=False` with this `reason` and
/// `message` (capped, as a status holds it) at `generation`.
fn shows_refusal(
    status: &StatusMemo,
    generation: Option<i64>,
    reason: &str,
    message: &str,
) -> bool {
    status.observed_generation == generation
        && status.stalled
        && status
            .ready
            .as_ref()
            .is_some_and(|r| r.says("False", reason, message))
}

/// Reports a SealedSecret that was not turned into its Secret: counts the
/// reason and logs it unless it is the same refusal `again`, sets
/// `Ready=False` and, when that changed the status, publishes a Warning
/// Event. The message never holds a plaintext byte.
async fn refuse(
    ctx: &Context,
    sealed: &CachedSealed,
    reason: Reason,
    message: String,
    again: bool,
) -> Result<(), kube::Error> {
    if !again {
        ctx.metrics.unseal(reason);
        tracing::warn!(namespace = %sealed.namespace().unwrap_or_default(), name = %sealed.name_any(), reason = reason.as_str(), "{message}");
    }
    let of = StatusOf::sealed(sealed);
    if set_status(ctx, &of, reason, message.clone()).await? {
        ctx.events
            .publish(sealed, EventType::Warning, reason.as_str(), message)
            .await;
    }
    Ok(())
}

fn unsealed(items: usize, ns: &str, name: &str) -> String {
    format!("unsealed {items} item(s) into Secret {ns}/{name}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::client::events::Events;
    use crate::client::mock::{Log, ok, scripted};
    use crate::keys::ring::Keys;
    use crate::metrics::Metrics;
    use crate::pool::UnsealPool;
    use crate::reconcile::secret_types::SecretTypePolicy;
    use crate::state::store::{Store, key};

    fn context(answers: Vec<(u16, String)>) -> (Context, Log) {
        let (client, log) = scripted(answers);
        let metrics = Arc::new(Metrics::new(10));
        let events = Events::start(
            client.clone(),
            client.clone(),
            "test".into(),
            metrics.clone(),
        );
        let ctx = Context {
            client,
            keys: Keys::new(),
            store: Arc::new(Store::default()),
            events,
            metrics,
            pool: UnsealPool::new(1),
            secret_types: Arc::new(SecretTypePolicy::new(&[], &[])),
        };
        (ctx, log)
    }

    /// A SealedSecret at generation 2, with `status` as its status.
    fn sealed(status: serde_json::Value) -> CachedSealed {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "coffer.dev/v1alpha1",
            "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": "shop", "uid": "u1", "generation": 2},
            "spec": {"encryptedData": {}},
            "status": status,
        }))
        .unwrap()
    }

    /// The status patches sent, as JSON.
    fn status_patches(log: &Log) -> Vec<serde_json::Value> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "PATCH" && s.uri.trim_end_matches('?').ends_with("/status"))
            .map(|s| serde_json::from_slice(&s.body).unwrap())
            .collect()
    }

    fn counted(ctx: &Context, reason: &str) -> bool {
        ctx.metrics.encode().lines().any(|l| {
            l.starts_with("coffer_unseal_total{") && l.contains(reason) && l.ends_with(" 1")
        })
    }

    #[tokio::test]
    async fn a_refusal_sets_ready_false_and_stalled_counts_once_and_requeues_as_planned() {
        let (ctx, log) = context(vec![ok(200), ok(201)]);
        let s = sealed(serde_json::json!({}));
        let keys = ctx.keys.current();
        let refusal = plan::Refusal::not_owned("Secret shop/db exists".into());
        let done = Done::Refused {
            sealed: &s,
            refusal,
        };
        let next = report(&ctx, &key("shop", "db"), &keys, done).await.unwrap();
        assert_eq!(next, Next::RequeueAfter(plan::RECHECK_OTHERS_SECRET));
        let patches = status_patches(&log);
        assert_eq!(patches.len(), 1);
        let conditions = &patches[0]["status"]["conditions"];
        assert_eq!(conditions[0]["type"], "Ready");
        assert_eq!(conditions[0]["status"], "False");
        assert_eq!(conditions[0]["reason"], "SecretNotOwned");
        assert_eq!(conditions[1]["type"], "Stalled");
        assert_eq!(patches[0]["status"]["observedGeneration"], 2);
        assert!(counted(&ctx, "SecretNotOwned"), "{}", ctx.metrics.encode());
    }

    #[tokio::test]
    async fn a_refusal_the_status_already_shows_is_neither_counted_nor_written_again() {
        let (ctx, log) = context(vec![]);
        let message = "the API server refused Secret shop/db: invalid content";
        let s = sealed(serde_json::json!({
            "observedGeneration": 2,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "SecretInvalid", "message": message,
                 "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Stalled", "status": "True", "reason": "SecretInvalid", "message": message,
                 "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
        }));
        let keys = ctx.keys.current();
        let refusal = plan::Refusal::final_(Reason::SecretInvalid, message.into());
        let done = Done::Refused {
            sealed: &s,
            refusal,
        };
        let next = report(&ctx, &key("shop", "db"), &keys, done).await.unwrap();
        assert_eq!(next, Next::AwaitChange);
        assert!(log.lock().unwrap().is_empty(), "nothing sent");
        assert!(!counted(&ctx, "SecretInvalid"));
    }

    #[tokio::test]
    async fn a_write_is_remembered_reported_ready_and_announced() {
        // The status patch, then the Event.
        let (ctx, log) = context(vec![ok(200), ok(201)]);
        // The store remembers outcomes of the objects its watch holds.
        let s = Arc::new(sealed(serde_json::json!({})));
        ctx.store.put_sealed(s.clone());
        let keys = ctx.keys.current();
        let done = Done::Written {
            sealed: &s,
            items: 3,
            did: Did::Created,
            digest: [7; 32],
            needs: KeySet::default(),
        };
        let k = key("shop", "db");
        let next = report(&ctx, &k, &keys, done).await.unwrap();
        assert_eq!(next, Next::AwaitChange);
        let remembered = ctx.store.last_unsealed(&k, "u1").expect("remembered");
        assert_eq!(
            (remembered.items, remembered.digest, remembered.generation),
            (3, [7; 32], Some(2))
        );
        let patches = status_patches(&log);
        assert_eq!(patches[0]["status"]["conditions"][0]["status"], "True");
        assert_eq!(
            patches[0]["status"]["conditions"][0]["message"],
            "unsealed 3 item(s) into Secret shop/db"
        );
        assert!(counted(&ctx, "Unsealed"));
        // The Event goes out from its own task.
        for _ in 0..100 {
            if log
                .lock()
                .unwrap()
                .iter()
                .any(|s| s.uri.contains("/events"))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "no Event sent: {:?}",
            log.lock()
                .unwrap()
                .iter()
                .map(|s| &s.uri)
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn the_fast_path_reports_through_the_same_door_and_remembers_a_restored_outcome() {
        let (ctx, log) = context(vec![ok(200)]);
        let k = key("shop", "db");
        let s = Arc::new(sealed(serde_json::json!({})));
        ctx.store.put_sealed(s.clone());
        let entry = SealedEntry::of(&s);
        let keys = ctx.keys.current();
        let outcome = Outcome {
            generation: Some(2),
            key_epoch: keys.epoch,
            items: 1,
            digest: [1; 32],
            needs: KeySet::default(),
        };
        let done = Done::Current {
            of: StatusOf::entry(&k, &entry),
            items: 1,
            restored: Some(("u1", outcome)),
        };
        assert_eq!(
            report(&ctx, &k, &keys, done).await.unwrap(),
            Next::AwaitChange
        );
        assert!(ctx.store.last_unsealed(&k, "u1").is_some());
        assert!(ctx.metrics.restored_count() == 1);
        assert_eq!(status_patches(&log).len(), 1);
    }
}
