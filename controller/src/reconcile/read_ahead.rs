//! Reading ahead of the reconciles, when many SealedSecrets must be opened
//! at once (a cold start, a restart, a key lost from the ring).
//!
//! The store keeps no ciphertext ([`crate::state::store`]), so a reconcile that
//! must open values reads its SealedSecret: the copy its watch event
//! brought when there is one, else one GET. The first list brings every
//! object within seconds, long before the reconciles reach them, and only
//! the first few thousand copies fit in the store's bound. Without more,
//! 100,000 SealedSecrets would cost 100,000 GETs, a third of the API
//! requests of a cold start and nearly all of a restart's.
//!
//! Instead this task lists, namespace by namespace in pages, the objects
//! whose values must be opened, in the order the queue hands them out, and
//! offers each page to the store once there is room for it: the reconciles
//! find their copy waiting, and memory stays within the same bound. It is
//! only an optimisation: a copy that is no longer current is not taken, and
//! when the read-ahead falls behind, fails or a continue token expires, the
//! reconciles read what they need themselves.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ListParams, ObjectList};

use crate::keys::ring::Keys;
use crate::state::objects::CachedSealed;
use crate::state::queue::Queue;
use crate::state::store::{self, Key, Store};

/// Objects per list page: about 0.6 MiB of JSON at 3 values each.
const PAGE: u32 = 200;

/// Namespaces whose first page is requested before the one before them is
/// offered: a list takes about as long as the reconciles take to use a page
/// on a restart, so one list at a time falls behind.
const AHEAD: usize = 4;

/// Room the store must have before the next page is offered.
const ROOM: usize = store::FRESH_CAP / 4;

/// Reads ahead until every namespace with values to open was listed once.
pub async fn run(client: Client, store: Arc<Store>, queue: Arc<Queue>, keys: Arc<Keys>) {
    let epoch = keys.current().epoch;
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    let todo = store.to_open(epoch);
    tracing::debug!(
        namespaces = todo.len(),
        queued = queue.len(),
        epoch,
        "read-ahead starts"
    );
    // A namespace whose objects the reconciles have all taken already is
    // not listed: they read what they needed themselves.
    let firsts = futures::stream::iter(todo)
        .filter_map(|(ns, keys)| {
            let queue = queue.clone();
            async move { keys.iter().any(|k| queue.waiting(k)).then_some(ns) }
        })
        .map(|ns| {
            let api: Api<CachedSealed> = Api::namespaced(client.clone(), &ns);
            async move {
                let first = page(&api, None).await;
                (api, ns, first)
            }
        })
        .buffered(AHEAD);
    let mut firsts = std::pin::pin!(firsts);
    'namespaces: while let Some((api, ns, mut next)) = firsts.next().await {
        if queue.is_empty() || queue.closed() {
            break;
        }
        tally.namespaces += 1;
        let mut restarts = 0;
        loop {
            match next {
                Ok(list) => {
                    if !room(&store, &queue).await {
                        break 'namespaces;
                    }
                    tally.pages += 1;
                    tally.listed += list.items.len();
                    for s in list.items {
                        let (Some(n), Some(name)) = (&s.metadata.namespace, &s.metadata.name)
                        else {
                            continue;
                        };
                        if queue.waiting(&store::key(n, name))
                            && store.prefetched(Arc::new(s), epoch)
                        {
                            tally.kept += 1;
                        }
                    }
                    match list.metadata.continue_ {
                        Some(t) if !t.is_empty() => next = page(&api, Some(&t)).await,
                        _ => break,
                    }
                }
                // The continue token expired (etcd compacted past it): list
                // again; what was reconciled meanwhile is not offered.
                Err(kube::Error::Api(e)) if e.code == 410 && restarts < 2 => {
                    restarts += 1;
                    next = page(&api, None).await;
                }
                Err(e) => {
                    tally.failed += 1;
                    tracing::debug!(namespace = %ns, error = %e, "read-ahead stopped for this namespace; reconciles read what they need");
                    break;
                }
            }
        }
    }
    tracing::info!(
        namespaces = tally.namespaces,
        pages = tally.pages,
        listed = tally.listed,
        kept = tally.kept,
        failed_lists = tally.failed,
        seconds = started.elapsed().as_secs_f64(),
        "read ahead of the reconciles"
    );
}

/// One page of a namespace's SealedSecrets.
async fn page(
    api: &Api<CachedSealed>,
    continue_token: Option<&str>,
) -> Result<ObjectList<CachedSealed>, kube::Error> {
    let mut params = ListParams::default().limit(PAGE);
    if let Some(t) = continue_token {
        params = params.continue_token(t);
    }
    api.list(&params).await
}

/// What one read-ahead did, for its log line.
#[derive(Default)]
struct Tally {
    namespaces: usize,
    pages: usize,
    listed: usize,
    kept: usize,
    failed: usize,
}

/// Waits until the store has room for a page. Copies whose key is neither
/// waiting nor running will not be taken (their reconcile read the object
/// itself): they are dropped so that they do not hold the room. `false`
/// once the queue is closed (the controller stops or lost the lease).
async fn room(store: &Store, queue: &Queue) -> bool {
    let mut polls = 0u32;
    while store.fresh_room() < ROOM {
        if queue.closed() {
            return false;
        }
        polls += 1;
        if polls.is_multiple_of(50) {
            let idle: Vec<Key> = store
                .fresh_keys()
                .into_iter()
                .filter(|k| !queue.pending(k))
                .collect();
            store.drop_fresh(&idle);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    !queue.closed()
}
