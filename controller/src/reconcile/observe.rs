//! Observe: the watches of SealedSecrets and of the Secrets the controller
//! owns, decoded into the store (each change queuing its SealedSecret), and
//! what they see that concerns bitnami's reconciler (`Again`).

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::client::watch::{ShortBackoff, watch_config};
use crate::keys::ring::Keys;
use crate::state::objects::{CachedSealed, OwnedSecret};
use crate::state::queue::Queue;
use crate::state::store::{Key, Store};

/// Watches the SealedSecrets of `scope` (all namespaces when `None`) into
/// `store`, queuing each change; `synced` turns true after the first list.
pub(crate) async fn watch_sealed(
    api: Api<CachedSealed>,
    scope: Option<String>,
    synced: watch::Sender<bool>,
    store: Arc<Store>,
    queue: Arc<Queue>,
    again: Option<Again>,
) {
    let events = watcher(api, watch_config()).backoff(ShortBackoff::default());
    follow(events, scope.as_deref(), synced, |e, seen| {
        sealed_event(&store, &queue, again.as_ref(), e, seen)
    })
    .await
}

/// Watches the Secrets the controller owns in `scope` into `store` (as
/// salted digests, their annotations settled against `keys`), queuing the
/// SealedSecret of each change that matters.
pub(crate) async fn watch_owned(
    api: Api<OwnedSecret>,
    scope: Option<String>,
    synced: watch::Sender<bool>,
    store: Arc<Store>,
    queue: Arc<Queue>,
    keys: Arc<Keys>,
    again: Option<Again>,
) {
    let events = watcher(api, watch_config().labels(coffer_core::api::OWNED_LABEL))
        .backoff(ShortBackoff::default());
    follow(events, scope.as_deref(), synced, |e, seen| {
        owned_event(&store, &queue, &keys, again.as_ref(), e, seen)
    })
    .await
}

/// Drives one watch: applies each event through `apply` (given the keys a
/// re-list has returned so far, to forget what it did not), and marks
/// `synced` at the end of the first list. Errors are logged and retried
/// with the stream's backoff.
async fn follow<K, S>(
    events: S,
    scope: Option<&str>,
    synced: watch::Sender<bool>,
    mut apply: impl FnMut(watcher::Event<K>, ListState<'_>),
) where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut seen: Option<HashSet<Key>> = None;
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(e) => {
                let done = matches!(e, watcher::Event::InitDone);
                if matches!(e, watcher::Event::Init) {
                    seen = Some(HashSet::new());
                }
                apply(
                    e,
                    ListState {
                        scope,
                        seen: &mut seen,
                    },
                );
                if done {
                    seen = None;
                    let _ = synced.send(true);
                }
            }
            Err(e) => tracing::warn!(error = %e, "watch failed; retrying"),
        }
    }
}

/// Where a watch is in a (re-)list.
struct ListState<'a> {
    scope: Option<&'a str>,
    /// The keys listed so far, while a list is under way.
    seen: &'a mut Option<HashSet<Key>>,
}

/// With `--bitnami`: the names whose bitnami SealedSecret is to be
/// reconciled again, from Coffer's own watches (no watch of its own: the
/// Secrets Coffer labels and its SealedSecrets are watched already). Each
/// bitnami reconciler (one per watched scope) subscribes; a name outside
/// its scope is not in its store and is skipped. A subscriber that falls
/// behind by more than the buffer loses names, which the resync
/// (`--bitnami-resync`) makes up for.
#[derive(Clone)]
pub(crate) struct Again(tokio::sync::broadcast::Sender<ObjectRef<BitnamiSealed>>);

type BitnamiSealed = coffer_core::bitnami::BitnamiSealedSecret;

impl Again {
    pub(crate) fn new() -> Self {
        Again(tokio::sync::broadcast::channel(4096).0)
    }

    fn send(&self, ns: &str, name: &str) {
        let _ = self.0.send(ObjectRef::new(name).within(ns));
    }

    pub(crate) fn subscribe(
        &self,
    ) -> impl futures::Stream<Item = ObjectRef<BitnamiSealed>> + Send + 'static {
        futures::stream::unfold(self.0.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(r) => return Some((r, rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "bitnami re-checks fell behind; the resync makes up for them"
                        );
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

fn sealed_event(
    store: &Store,
    queue: &Queue,
    again: Option<&Again>,
    event: watcher::Event<CachedSealed>,
    list: ListState<'_>,
) {
    match event {
        watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
            if let Some(key) = store.put_sealed(Arc::new(s)) {
                if let Some(seen) = list.seen.as_mut() {
                    seen.insert(key.clone());
                }
                // Every event reconciles, as kube-runtime's controller
                // does; one whose last unseal still holds costs no read
                // and no decryption.
                queue.add(key);
            }
        }
        watcher::Event::Delete(s) => {
            if let (Some(ns), Some(name)) = (s.metadata.namespace, s.metadata.name) {
                store.remove_sealed(&ns, &name);
                // A Keep SealedSecret gone releases its Secret to the
                // bitnami SealedSecret of its name.
                if let Some(again) = again {
                    again.send(&ns, &name);
                }
            }
        }
        watcher::Event::Init => {}
        watcher::Event::InitDone => {
            if let Some(seen) = list.seen.as_ref() {
                store.retain(true, list.scope, seen);
            }
        }
    }
}

fn owned_event(
    store: &Store,
    queue: &Queue,
    keys: &Keys,
    again: Option<&Again>,
    event: watcher::Event<OwnedSecret>,
    list: ListState<'_>,
) {
    match event {
        watcher::Event::Apply(mut s) => {
            // A Secret that changed owner (taken over, kept, released)
            // concerns the bitnami SealedSecret of its name; the start's
            // list (InitApply) does not, bitnami's reconciler lists its
            // objects itself.
            if let (Some(again), Some(ns), Some(name)) = (
                again,
                s.metadata.namespace.as_deref(),
                s.metadata.name.as_deref(),
            ) && !store.owned_controller_is(ns, name, s.controller_uid.as_deref())
            {
                again.send(ns, name);
            }
            keys.current().settle(&mut s);
            if let Some((key, reconcile)) = store.put_owned(&s)
                && reconcile
            {
                queue.add(key);
            }
        }
        watcher::Event::InitApply(mut s) => {
            // Its annotation verified now, while the Secret is at hand:
            // the store keeps the verdict, not the claim.
            keys.current().settle(&mut s);
            if let Some((key, reconcile)) = store.put_owned(&s) {
                if let Some(seen) = list.seen.as_mut() {
                    seen.insert(key.clone());
                }
                if reconcile {
                    queue.add(key);
                }
            }
        }
        watcher::Event::Delete(s) => {
            if let (Some(ns), Some(name)) = (s.metadata.namespace, s.metadata.name) {
                // Deleted (or no longer labelled): the bitnami SealedSecret
                // of its name, if any, writes it again.
                if let Some(again) = again {
                    again.send(&ns, &name);
                }
                if let Some(key) = store.remove_owned(&ns, &name) {
                    queue.add(key);
                }
            }
        }
        watcher::Event::Init => {}
        watcher::Event::InitDone => {
            if let Some(seen) = list.seen.as_ref() {
                queue.add_all(store.retain(false, list.scope, seen));
            }
        }
    }
}
