//! Wiring: client, key ring, HTTP, leader election, controllers, shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use coffer_core::SealedSecret;
use std::collections::HashSet;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::api_count::CountLayer;
use crate::args::RunArgs;
use crate::bitnami::BitnamiKeys;
use crate::cache::{CachedSealed, OwnedSecret};
use crate::events::Events;
use crate::http::{ClientLimiter, HttpState, Opening};
use crate::key_secrets::{self, KeyManager, Keys};
use crate::metrics::Metrics;
use crate::pool::UnsealPool;
use crate::queue::Queue;
use crate::ratelimit::{Bucket, Priority, RateLimitLayer};
use crate::reconcile::{self, Context};
use crate::secret_types::SecretTypePolicy;
use crate::store::{Key, Store};
use crate::watch::{ShortBackoff, watch_config};
use coffer_core::ring::KeyStatus;

/// API clients built from the flags, sharing one QPS/burst limit and the
/// request counters.
pub struct Clients {
    pub main: Client,
    /// Takes only the tokens `main` leaves free (Normal Events).
    pub background: Client,
}

/// Builds the clients from the flags.
pub async fn client(args: &RunArgs, metrics: &Arc<Metrics>) -> anyhow::Result<Clients> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let opts = kube::config::KubeConfigOptions {
                context: args.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    let layer = RateLimitLayer {
        bucket: Bucket::new(args.kube_qps, args.kube_burst),
        priority: Priority::Normal,
    };
    let background = RateLimitLayer {
        priority: Priority::Background,
        ..layer.clone()
    };
    let count = CountLayer(metrics.clone());
    let main = kube::client::ClientBuilder::try_from(config.clone())?
        .with_layer(&count)
        .with_layer(&layer)
        .build();
    let background = kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .with_layer(&background)
        .build();
    Ok(Clients { main, background })
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A shutdown future from a watch channel.
async fn on(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Waits until the watched flag satisfies `f`, holding no borrow of the
/// channel when it returns (so the future stays `Send`).
async fn until(rx: &mut watch::Receiver<bool>, f: impl Fn(bool) -> bool) {
    let _ = rx.wait_for(|v| f(*v)).await;
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new(args.metrics_max_namespaces));
    metrics.set_renewal_period(args.key_renewal_period);
    let clients = client(&args, &metrics).await?;
    let client = clients.main.clone();
    let keys = Keys::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    // Fail early with a clear message when the CRD or the permission is
    // missing: cluster-wide without --namespaces, else in each namespace
    // (namespaced RBAC grants nothing cluster-wide).
    for ns in &args.namespaces {
        probe_sealed_secrets(Api::namespaced(client.clone(), ns), Some(ns)).await?;
    }
    if args.namespaces.is_empty() {
        probe_sealed_secrets(Api::all(client.clone()), None).await?;
    }
    let secret_types = Arc::new(SecretTypePolicy::new(
        &args.secret_types_allow,
        &args.secret_types_deny,
    ));
    tracing::info!(
        allow = %args.secret_types_allow.join(","),
        deny = %args.secret_types_deny.join(","),
        "Secret types: refusing the denied, and those not allowed when an allow list is set"
    );

    // --bitnami: the imported keys, on every replica (followers serve
    // /v1/bitnami/convert too); their SealedSecrets, by the leader.
    let bitnami_keys = if args.bitnami {
        for ns in &args.namespaces {
            crate::bitnami::probe(
                &Api::namespaced(client.clone(), ns),
                &format!("in namespace {ns}"),
            )
            .await?;
        }
        if args.namespaces.is_empty() {
            crate::bitnami::probe(&Api::all(client.clone()), "in all namespaces").await?;
        }
        Some(BitnamiKeys::new())
    } else {
        None
    };
    let bitnami_watch = bitnami_keys.clone().map(|keys| {
        tokio::spawn(crate::bitnami::watch_keys(
            Api::namespaced(client.clone(), &args.key_namespace),
            keys,
        ))
    });

    let ready = Arc::new(AtomicBool::new(false));
    let pool = UnsealPool::new(usize::from(args.unseal_threads));
    let http_state = HttpState::new(
        keys.clone(),
        metrics.clone(),
        ready.clone(),
        args.cluster_name.clone(),
        ClientLimiter::new(args.http_rate, args.http_burst),
        Opening {
            secret_types: secret_types.clone(),
            pool: pool.clone(),
        },
        args.http_limits(),
    );
    let http_state = Arc::new(match &bitnami_keys {
        Some(keys) => http_state.with_bitnami(keys.clone()),
        None => http_state,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    // The kubelet's probes on a port of their own: no client of the main
    // port can make them wait for a connection slot.
    let probe_listener = tokio::net::TcpListener::bind(args.probe_listen)
        .await
        .with_context(|| format!("listening for probes on {}", args.probe_listen))?;
    let probes = tokio::spawn(crate::http::serve_probes(
        probe_listener,
        http_state.clone(),
        on(stop_rx.clone()),
    ));
    let http = tokio::spawn(crate::http::serve(
        listener,
        http_state,
        on(stop_rx.clone()),
    ));

    let key_secrets: Api<Secret> = Api::namespaced(client.clone(), &args.key_namespace);
    let watch = tokio::spawn(key_secrets::watch_keys(key_secrets.clone(), keys.clone()));
    let key_metrics = tokio::spawn(key_metrics(keys.clone(), metrics.clone()));
    {
        let keys = keys.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            key_secrets::wait_ready(&keys).await;
            ready.store(true, Ordering::Release);
            tracing::info!(active = %keys.current().active().map(|k| k.id.to_string()).unwrap_or_default(), "key ring loaded");
        });
    }

    let shared = Shared {
        args: &args,
        clients: &clients,
        keys: &keys,
        metrics: &metrics,
        secret_types: &secret_types,
        pool: &pool,
        bitnami: bitnami_keys.as_ref(),
    };
    let result = if args.leader_elect {
        lead_when_elected(&shared, stop_rx.clone()).await
    } else {
        leader(&shared, stop_rx.clone()).await
    };
    watch.abort();
    key_metrics.abort();
    if let Some(w) = bitnami_watch {
        w.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = tokio::join!(http, probes);
    })
    .await;
    tracing::info!(
        api_requests = metrics.api_request_count(),
        secret_writes = metrics.api_write_count(),
        "controller stopped"
    );
    result
}

/// Lists one SealedSecret, to fail at start with a clear message when the
/// CRD is not installed or RBAC does not allow reading SealedSecrets.
async fn probe_sealed_secrets(api: Api<SealedSecret>, ns: Option<&str>) -> anyhow::Result<()> {
    api.list(&kube::api::ListParams::default().limit(1))
        .await
        .with_context(|| {
            let place = match ns {
                Some(ns) => format!("in namespace {ns}"),
                None => "in all namespaces".to_string(),
            };
            format!(
                "cannot list SealedSecrets {place}: is crds/sealedsecret.yaml installed and does RBAC allow it?"
            )
        })?;
    Ok(())
}

/// Waits for the Lease, leads while holding it, and exits with an error if
/// it is lost (the pod restarts as a follower, like client-go controllers).
/// What the leader's work needs, built once at start.
struct Shared<'a> {
    args: &'a RunArgs,
    clients: &'a Clients,
    keys: &'a Arc<Keys>,
    metrics: &'a Arc<Metrics>,
    secret_types: &'a Arc<SecretTypePolicy>,
    pool: &'a UnsealPool,
    bitnami: Option<&'a Arc<BitnamiKeys>>,
}

async fn lead_when_elected(
    shared: &Shared<'_>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Shared { args, clients, .. } = shared;
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        format!(
            "{}-{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim(),
            std::process::id()
        )
    });
    let duration = args.lease_duration.as_secs().max(2);
    let manager =
        kube_lease_manager::LeaseManagerBuilder::new(clients.main.clone(), &args.lease_name)
            .with_namespace(&args.key_namespace)
            .with_identity(&identity)
            .with_duration(duration)
            .with_grace((duration / 3).max(1))
            .build()
            .await
            .context("setting up leader election")?;
    let (mut leading, lease_task) = manager.watch().await;
    tracing::info!(%identity, lease = %args.lease_name, "waiting to become leader; serving HTTP as a follower meanwhile");
    let result = loop {
        if *leading.borrow_and_update() {
            tracing::info!(%identity, "became leader");
            let (lead_stop_tx, lead_stop_rx) = watch::channel(false);
            let mut work = Box::pin(leader(shared, lead_stop_rx));
            let outcome = tokio::select! {
                r = &mut work => Some(r),
                _ = until(&mut leading, |l| !l) => None,
                _ = until(&mut stop, |s| s) => {
                    let _ = lead_stop_tx.send(true);
                    let _ = tokio::time::timeout(Duration::from_secs(10), &mut work).await;
                    break Ok(());
                }
            };
            match outcome {
                Some(r) => break r,
                None => {
                    let _ = lead_stop_tx.send(true);
                    break Err(anyhow::anyhow!(
                        "lost the leader lease; exiting so a follower can take over"
                    ));
                }
            }
        }
        tokio::select! {
            r = leading.changed() => if r.is_err() { break Err(anyhow::anyhow!("leader election stopped")); },
            _ = until(&mut stop, |s| s) => break Ok(()),
        }
    };
    // Dropping the receiver makes the lease task release the Lease.
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
        _ => tracing::warn!(
            "could not release the leader lease; followers take over when it expires"
        ),
    }
    result
}

/// What only the leader does: manage keys and reconcile.
async fn leader(shared: &Shared<'_>, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let &Shared {
        args,
        clients,
        keys,
        metrics,
        secret_types,
        pool,
        bitnami,
    } = shared;
    let _leading = Leading::start(metrics);
    let manager = KeyManager {
        client: clients.main.clone(),
        namespace: args.key_namespace.clone(),
        configmaps: Api::<ConfigMap>::namespaced(clients.main.clone(), &args.key_namespace),
        keys: keys.clone(),
        renewal_period: args.key_renewal_period,
        cluster_name: args.cluster_name.clone(),
        key_kind: args.key_kind,
        pending: Default::default(),
    };
    let manage = async move { manager.run().await };
    tokio::pin!(manage);
    // The key manager creates the first key; reconciling waits for it.
    tokio::select! {
        _ = key_secrets::wait_ready(keys) => {}
        r = &mut manage => return r,
        _ = on(stop.clone()) => return Ok(()),
    }

    let client = &clients.main;
    let instance = std::env::var("POD_NAME").unwrap_or_else(|_| "coffer-controller".into());
    let scopes: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let store = Arc::new(Store::default());
    let queue = Queue::new();
    // --bitnami: what Coffer's watches see that concerns the bitnami
    // SealedSecret of the same name (crate::bitnami), passed on.
    let again = bitnami.map(|_| Again::new());
    let ctx = Arc::new(Context {
        client: client.clone(),
        keys: keys.clone(),
        store: store.clone(),
        events: Events::start(
            client.clone(),
            clients.background.clone(),
            instance,
            metrics.clone(),
        ),
        metrics: metrics.clone(),
        secret_types: secret_types.clone(),
        pool: pool.clone(),
    });

    // The watches: SealedSecrets and owned Secrets of each scope, into the
    // store, each change queuing its SealedSecret. Both caches hold compact
    // records (crate::store): owned Secrets as salted digests, never their
    // values; SealedSecrets without their ciphertexts.
    let mut watches = tokio::task::JoinSet::new();
    let mut synced = Vec::new();
    for scope in &scopes {
        let (sealed_api, secret_api): (Api<CachedSealed>, Api<OwnedSecret>) = match scope {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        for owned in [false, true] {
            let (tx, rx) = watch::channel(false);
            synced.push(rx);
            let (store, queue, scope) = (store.clone(), queue.clone(), scope.clone());
            let again = again.clone();
            if owned {
                let api = secret_api.clone();
                let keys = keys.clone();
                watches.spawn(async move {
                    let events = watcher(api, watch_config().labels(reconcile::owned_selector()))
                        .backoff(ShortBackoff::default());
                    follow(events, scope.as_deref(), tx, |e, seen| {
                        owned_event(&store, &queue, &keys, again.as_ref(), e, seen)
                    })
                    .await
                });
            } else {
                let api = sealed_api.clone();
                watches.spawn(async move {
                    let events = watcher(api, watch_config()).backoff(ShortBackoff::default());
                    follow(events, scope.as_deref(), tx, |e, seen| {
                        sealed_event(&store, &queue, again.as_ref(), e, seen)
                    })
                    .await
                });
            }
        }
    }
    // Reconcile once every first list is in: an owned Secret not yet seen
    // would look missing, and its SealedSecret would be written again.
    for mut rx in synced {
        tokio::select! {
            _ = until(&mut rx, |done| done) => {}
            _ = on(stop.clone()) => { queue.close(); return Ok(()) }
            r = &mut manage => return r,
        }
    }
    let (sealed_n, owned_n, _) = store.counts();
    tracing::info!(
        sealed_secrets = sealed_n,
        owned_secrets = owned_n,
        "watches synced; reconciling"
    );
    metrics.count_sealed_in(Some(store.clone()));

    let timers = tokio::spawn({
        let queue = queue.clone();
        async move { queue.run_timers().await }
    });
    // Read ahead what the first reconciles must open, and again whenever a
    // key-ring change queues every object.
    let read_ahead = {
        let (client, store, queue, keys) =
            (client.clone(), store.clone(), queue.clone(), keys.clone());
        move || {
            tokio::spawn(crate::prefetch::run(
                client.clone(),
                store.clone(),
                queue.clone(),
                keys.clone(),
            ))
        }
    };
    let first_read_ahead = read_ahead();
    let rekey = tokio::spawn({
        let (queue, store) = (queue.clone(), store.clone());
        let changes = key_secrets::changes(keys);
        async move {
            let mut reading: Option<tokio::task::JoinHandle<()>> = None;
            let mut changes = std::pin::pin!(changes);
            while changes.next().await.is_some() {
                queue.add_all(store.sealed_keys());
                if let Some(r) = reading.take() {
                    r.abort();
                }
                reading = Some(read_ahead());
            }
        }
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (queue, ctx) = (queue.clone(), ctx.clone());
        workers.spawn(async move {
            while let Some(key) = queue.next().await {
                let next = match reconcile::reconcile(&key, &ctx).await {
                    Ok(next) => next,
                    Err(e) => reconcile::error_policy(&key, &e, &ctx),
                };
                if let reconcile::Next::RequeueAfter(d) = next {
                    queue.add_after(key.clone(), d);
                }
                queue.done(&key);
            }
        });
    }
    // bitnami's SealedSecrets: their own reconciler (crate::bitnami).
    let mut bitnami_runs = tokio::task::JoinSet::new();
    if let Some(bitnami_keys) = bitnami {
        metrics.start_bitnami(crate::bitnami::REASONS);
        let ctx = Arc::new(crate::bitnami::Context {
            client: client.clone(),
            keys: bitnami_keys.clone(),
            events: Events::start(
                client.clone(),
                clients.background.clone(),
                std::env::var("POD_NAME").unwrap_or_else(|_| "coffer-controller".into()),
                metrics.clone(),
            ),
            secret_types: secret_types.clone(),
            pool: pool.clone(),
            resync: args.bitnami_resync,
            metrics: metrics.clone(),
        });
        for scope in &scopes {
            let api: Api<coffer_core::bitnami::BitnamiSealedSecret> = match scope {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let again = again.as_ref().expect("made with --bitnami").subscribe();
            bitnami_runs.spawn(crate::bitnami::run(
                api,
                ctx.clone(),
                again,
                on(stop.clone()),
            ));
        }
    }
    tracing::info!("controller started");
    let caught_up = tokio::spawn({
        let (queue, metrics) = (queue.clone(), metrics.clone());
        async move {
            // Once: every SealedSecret listed at start has been reconciled.
            while !queue.idle() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tracing::info!(
                sealed_secrets = sealed_n,
                api_requests = metrics.api_request_count(),
                secret_writes = metrics.api_write_count(),
                read_from_watch = metrics.sealed_read_count("watch"),
                read_ahead = metrics.sealed_read_count("read_ahead"),
                read_by_get = metrics.sealed_read_count("get"),
                restored_from_annotations = metrics.restored_count(),
                "caught up: every SealedSecret reconciled since start"
            );
        }
    });
    let result = tokio::select! {
        _ = on(stop.clone()) => Ok(()),
        r = &mut manage => r,
        w = watches.join_next() => Err(anyhow::anyhow!("a watch ended: {w:?}")),
    };
    // Finish the reconciles under way, then stop.
    queue.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    workers.abort_all();
    watches.abort_all();
    bitnami_runs.abort_all();
    timers.abort();
    first_read_ahead.abort();
    rekey.abort();
    caught_up.abort();
    result
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
struct Again(tokio::sync::broadcast::Sender<ObjectRef<BitnamiSealed>>);

type BitnamiSealed = coffer_core::bitnami::BitnamiSealedSecret;

impl Again {
    fn new() -> Self {
        Again(tokio::sync::broadcast::channel(4096).0)
    }

    fn send(&self, ns: &str, name: &str) {
        let _ = self.0.send(ObjectRef::new(name).within(ns));
    }

    fn subscribe(&self) -> impl futures::Stream<Item = ObjectRef<BitnamiSealed>> + Send + 'static {
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

/// Marks this replica as the leader in the metrics while alive; when
/// leading ends (however `leader` returns or is dropped) the leader gauge
/// goes back to 0 and the SealedSecret gauge empties, so only the leader
/// reports the state of SealedSecrets.
struct Leading<'a>(&'a Metrics);

impl<'a> Leading<'a> {
    fn start(metrics: &'a Metrics) -> Self {
        metrics.set_leader(true);
        Leading(metrics)
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.count_sealed_in(None);
        self.0.set_leader(false);
    }
}

/// Keeps the key gauges current: at once when the key ring changes, and
/// every 15 s for the active key's age.
async fn key_metrics(keys: Arc<Keys>, metrics: Arc<Metrics>) {
    let mut changed = keys.subscribe();
    loop {
        let s = keys.current();
        let count = |status| s.keys.iter().filter(|k| k.status == status).count() as i64;
        let age = s
            .active()
            .map(|k| {
                jiff::Timestamp::now()
                    .duration_since(k.sealing_since)
                    .as_secs_f64()
            })
            .unwrap_or(0.0);
        metrics.set_keys(
            i64::from(s.active().is_some()),
            count(KeyStatus::Usable),
            count(KeyStatus::OpenOnly),
            count(KeyStatus::Retired),
            age,
        );
        metrics.set_ring_keys(
            s.keys
                .iter()
                .filter(|k| k.status != KeyStatus::Retired)
                .map(|k| k.id)
                .collect(),
        );
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
            r = changed.changed() => if r.is_err() { return },
        }
    }
}
