//! Wiring: client, key ring, HTTP, leader election, controllers, shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use coffer_core::SealedSecret;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::args::RunArgs;
use crate::bitnami::BitnamiKeys;

use crate::client::events::Events;
use crate::http::{ClientLimiter, HttpState, Opening};
use crate::keys::manager::{self, KeyManager};
use crate::keys::ring::{self, Keys};
use crate::metrics::Metrics;
use crate::pool::UnsealPool;
use crate::reconcile::observe::{self, Again};
use crate::reconcile::secret_types::SecretTypePolicy;
use crate::reconcile::{self, Context};
use crate::state::objects::{CachedSealed, OwnedSecret};
use crate::state::queue::Queue;
use crate::state::store::Store;
use coffer_core::ring::KeyStatus;

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
    let clients = crate::client::build(&args, &metrics).await?;
    let client = clients.main.clone();
    let keys = Keys::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    let (secret_types, bitnami_keys) = preflight(&args, &client).await?;
    let mut tasks = Tasks::default();
    if let Some(keys) = bitnami_keys.clone() {
        let api = Api::namespaced(client.clone(), &args.key_namespace);
        tasks.background(
            "the bitnami key watch",
            log_error(
                "the bitnami key watch",
                crate::bitnami::watch_keys(api, keys),
            ),
        );
    }

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
    let mut http_state = match &bitnami_keys {
        Some(keys) => http_state.with_bitnami(keys.clone()),
        None => http_state,
    };
    http_state.web = args.web;
    let http_state = Arc::new(http_state);
    listen(&mut tasks, &args, http_state, &stop_rx).await?;

    let key_secrets: Api<Secret> = Api::namespaced(client.clone(), &args.key_namespace);
    let kek = crate::keys::kek::Kek::new(&args.kek, metrics.clone());
    if let Some(kek) = &kek {
        tracing::info!(kek = %kek.reference(), "key Secrets are wrapped by a key-encryption key");
    }
    tasks.background(
        "the key watch",
        log_error(
            "the key watch",
            manager::watch_keys(key_secrets, keys.clone(), kek.clone(), metrics.clone()),
        ),
    );
    tasks.background(
        "the key metrics",
        key_metrics(keys.clone(), metrics.clone()),
    );
    tasks.background("the readiness", {
        let keys = keys.clone();
        let ready = ready.clone();
        async move {
            ring::wait_ready(&keys).await;
            ready.store(true, Ordering::Release);
            tracing::info!(active = %keys.current().active().map(|k| k.id.to_string()).unwrap_or_default(), "key ring loaded");
        }
    });

    let shared = Shared {
        args: &args,
        identity: std::env::var("POD_NAME").ok(),
        clients: &clients,
        keys: &keys,
        metrics: &metrics,
        secret_types: &secret_types,
        pool: &pool,
        bitnami: bitnami_keys.as_ref(),
        kek: kek.as_ref(),
    };
    let result = if args.leader_elect {
        lead_when_elected(&shared, stop_rx.clone()).await
    } else {
        leader(&shared, stop_rx.clone()).await
    };
    tasks.shutdown(Duration::from_secs(5)).await;
    tracing::info!(
        api_requests = metrics.api_request_count(),
        secret_writes = metrics.api_write_count(),
        "controller stopped"
    );
    result
}

/// Before anything starts: fails early with a clear message when the CRD
/// or the permission is missing, and reads the Secret type policy and, with
/// `--bitnami`, makes the imported keys' holder.
async fn preflight(
    args: &RunArgs,
    client: &Client,
) -> anyhow::Result<(Arc<SecretTypePolicy>, Option<Arc<BitnamiKeys>>)> {
    // Cluster-wide without --namespaces, else in each namespace
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
    Ok((secret_types, bitnami_keys))
}

/// The HTTP listeners: the main port and the probes' own port.
async fn listen(
    tasks: &mut Tasks,
    args: &RunArgs,
    http_state: Arc<HttpState>,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    // The kubelet's probes on a port of their own: no client of the main
    // port can make them wait for a connection slot.
    let probe_listener = tokio::net::TcpListener::bind(args.probe_listen)
        .await
        .with_context(|| format!("listening for probes on {}", args.probe_listen))?;
    tasks.draining(
        "the probe listener",
        log_error(
            "the probe listener",
            crate::http::serve_probes(probe_listener, http_state.clone(), on(stop_rx.clone())),
        ),
    );
    tasks.draining(
        "the HTTP listener",
        log_error(
            "the HTTP listener",
            crate::http::serve(listener, http_state, on(stop_rx.clone())),
        ),
    );

    Ok(())
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
    /// This replica's name (`POD_NAME`, read once at start), for Events'
    /// reporting instance and the leader lease.
    identity: Option<String>,
    clients: &'a crate::client::Clients,
    keys: &'a Arc<Keys>,
    metrics: &'a Arc<Metrics>,
    secret_types: &'a Arc<SecretTypePolicy>,
    pool: &'a UnsealPool,
    bitnami: Option<&'a Arc<BitnamiKeys>>,
    kek: Option<&'a Arc<crate::keys::kek::Kek>>,
}

impl Shared<'_> {
    /// The name Events give as their reporting instance.
    fn instance(&self) -> String {
        self.identity
            .clone()
            .unwrap_or_else(|| "coffer-controller".into())
    }

    /// The holder name in the leader Lease: the pod's name, else the host's
    /// and the process id (outside a cluster, two processes on one host).
    fn lease_identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .unwrap_or_default()
                    .trim(),
                std::process::id()
            )
        })
    }
}

async fn lead_when_elected(
    shared: &Shared<'_>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Shared { args, clients, .. } = shared;
    let identity = shared.lease_identity();
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
        ..
    } = shared;
    let _leading = Leading::start(metrics);
    let manager = key_manager(shared);
    let manage = async move { manager.run().await };
    tokio::pin!(manage);
    // The key manager creates the first key; reconciling waits for it.
    tokio::select! {
        _ = ring::wait_ready(keys) => {}
        r = &mut manage => return r,
        _ = on(stop.clone()) => return Ok(()),
    }

    let client = &clients.main;
    let scopes: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let store = Arc::new(Store::default());
    let queue = Queue::new();
    // --bitnami: what Coffer's watches see that concerns the bitnami
    // SealedSecret of the same name (the bitnami module), passed on.
    let again = shared.bitnami.map(|_| Again::new());
    let mut tasks = Tasks::default();

    // Observe. Both caches hold compact records (the store module): owned
    // Secrets as salted digests, never their values; SealedSecrets
    // without their ciphertexts.
    let synced = observe(&mut tasks, shared, &scopes, &store, &queue, again.as_ref());
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

    tasks.background("the queue's timers", {
        let queue = queue.clone();
        async move { queue.run_timers().await }
    });
    tasks.background(
        "the read-ahead",
        read_ahead(client.clone(), store.clone(), queue.clone(), keys.clone()),
    );
    let ctx = reconcile_context(shared, &store);
    for _ in 0..args.concurrency.max(1) {
        tasks.draining("a reconcile worker", worker(queue.clone(), ctx.clone()));
    }
    if let (Some(bitnami_keys), Some(again)) = (shared.bitnami, &again) {
        bitnami_reconcilers(&mut tasks, shared, bitnami_keys, again, &scopes, &stop);
    }
    tracing::info!("controller started");
    tasks.background(
        "the caught-up log",
        caught_up(queue.clone(), metrics.clone(), sealed_n),
    );
    let result = tokio::select! {
        _ = on(stop.clone()) => Ok(()),
        r = &mut manage => r,
        ended = tasks.critical_ended() => Err(anyhow::anyhow!("{ended}")),
    };
    // Finish the reconciles under way, then stop.
    queue.close();
    tasks.shutdown(Duration::from_secs(10)).await;
    result
}

/// Starts the watches of each scope into the store, queuing each change;
/// returns one flag per watch, true once its first list is in.
fn observe(
    tasks: &mut Tasks,
    shared: &Shared<'_>,
    scopes: &[Option<String>],
    store: &Arc<Store>,
    queue: &Arc<Queue>,
    again: Option<&Again>,
) -> Vec<watch::Receiver<bool>> {
    let client = &shared.clients.main;
    let keys = shared.keys;
    let mut synced = Vec::new();
    for scope in scopes {
        let (sealed_api, owned_api): (Api<CachedSealed>, Api<OwnedSecret>) = match scope {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let (tx, rx) = watch::channel(false);
        synced.push(rx);
        tasks.critical(
            "the SealedSecret watch",
            observe::watch_sealed(
                sealed_api,
                scope.clone(),
                tx,
                store.clone(),
                queue.clone(),
                again.cloned(),
            ),
        );
        let (tx, rx) = watch::channel(false);
        synced.push(rx);
        tasks.critical(
            "the owned Secret watch",
            observe::watch_owned(
                owned_api,
                scope.clone(),
                tx,
                store.clone(),
                queue.clone(),
                keys.clone(),
                again.cloned(),
            ),
        );
    }
    synced
}

/// What the reconcile workers share.
fn reconcile_context(shared: &Shared<'_>, store: &Arc<Store>) -> Arc<Context> {
    let &Shared {
        clients,
        keys,
        metrics,
        ..
    } = shared;
    let client = &clients.main;
    Arc::new(Context {
        client: client.clone(),
        keys: keys.clone(),
        store: store.clone(),
        events: Events::start(
            client.clone(),
            clients.background.clone(),
            shared.instance(),
            metrics.clone(),
        ),
        metrics: metrics.clone(),
        secret_types: shared.secret_types.clone(),
        pool: shared.pool.clone(),
    })
}

/// The key manager of the leader: creates the first key, renews, publishes
/// the recipients.
fn key_manager(shared: &Shared<'_>) -> KeyManager {
    let Shared { args, clients, .. } = shared;
    KeyManager {
        client: clients.main.clone(),
        namespace: args.key_namespace.clone(),
        configmaps: Api::<ConfigMap>::namespaced(clients.main.clone(), &args.key_namespace),
        keys: shared.keys.clone(),
        renewal_period: args.key_renewal_period,
        cluster_name: args.cluster_name.clone(),
        key_kind: args.key_kind,
        kek: shared.kek.cloned(),
        pending: Default::default(),
    }
}

/// One reconcile worker: takes keys from the queue until it is closed.
async fn worker(queue: Arc<Queue>, ctx: Arc<Context>) {
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
}

/// Reads ahead what the first reconciles must open, and again whenever a
/// key-ring change queues every object.
async fn read_ahead(client: Client, store: Arc<Store>, queue: Arc<Queue>, keys: Arc<Keys>) {
    let start = || {
        tokio::spawn(crate::reconcile::read_ahead::run(
            client.clone(),
            store.clone(),
            queue.clone(),
            keys.clone(),
        ))
    };
    // Aborted with this task: a read-ahead does not outlive leading.
    struct Reading(tokio::task::JoinHandle<()>);
    impl Drop for Reading {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut reading = Reading(start());
    let mut changes = std::pin::pin!(ring::changes(&keys));
    while changes.next().await.is_some() {
        queue.add_all(store.sealed_keys());
        reading = Reading(start());
    }
    drop(reading);
}

/// bitnami's SealedSecrets: their own reconciler per scope (the bitnami
/// module).
fn bitnami_reconcilers(
    tasks: &mut Tasks,
    shared: &Shared<'_>,
    keys: &Arc<BitnamiKeys>,
    again: &Again,
    scopes: &[Option<String>],
    stop: &watch::Receiver<bool>,
) {
    let &Shared {
        args,
        clients,
        metrics,
        ..
    } = shared;
    let client = &clients.main;
    metrics.start_bitnami();
    let ctx = Arc::new(crate::bitnami::Context {
        client: client.clone(),
        keys: keys.clone(),
        events: Events::start(
            client.clone(),
            clients.background.clone(),
            shared.instance(),
            metrics.clone(),
        ),
        secret_types: shared.secret_types.clone(),
        pool: shared.pool.clone(),
        resync: args.bitnami_resync,
        metrics: metrics.clone(),
    });
    for scope in scopes {
        let api: Api<coffer_core::bitnami::BitnamiSealedSecret> = match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        tasks.background(
            "a bitnami reconciler",
            crate::bitnami::run(api, ctx.clone(), again.subscribe(), on(stop.clone())),
        );
    }
}

/// Logs once that every SealedSecret listed at start has been reconciled,
/// with what it cost.
async fn caught_up(queue: Arc<Queue>, metrics: Arc<Metrics>, sealed_n: usize) {
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

/// Runs `f`, logging the error it ends with.
async fn log_error<E: std::fmt::Display>(
    what: &'static str,
    f: impl Future<Output = Result<(), E>>,
) {
    if let Err(e) = f.await {
        tracing::error!("{what} ended: {e:#}");
    }
}

/// The tasks of one scope of the wiring (the process, or one term as
/// leader), each named, stopped together by [`Tasks::shutdown`]:
/// `critical` ones must run as long as the scope (one that ends is an
/// error), `draining` ones are given the grace period to finish what they
/// do, `background` ones are stopped at once.
#[derive(Default)]
struct Tasks {
    critical: tokio::task::JoinSet<&'static str>,
    draining: tokio::task::JoinSet<()>,
    background: tokio::task::JoinSet<()>,
}

impl Tasks {
    fn critical(&mut self, name: &'static str, f: impl Future<Output = ()> + Send + 'static) {
        self.critical.spawn(async move {
            f.await;
            name
        });
    }

    fn draining(&mut self, name: &'static str, f: impl Future<Output = ()> + Send + 'static) {
        self.draining.spawn(async move {
            f.await;
            tracing::debug!(task = name, "finished");
        });
    }

    fn background(&mut self, name: &'static str, f: impl Future<Output = ()> + Send + 'static) {
        self.background.spawn(async move {
            f.await;
            tracing::debug!(task = name, "finished");
        });
    }

    /// Resolves when a critical task ends, saying which; never when there
    /// is none.
    async fn critical_ended(&mut self) -> String {
        match self.critical.join_next().await {
            Some(Ok(name)) => format!("{name} ended"),
            Some(Err(e)) => format!("a watch failed: {e}"),
            None => std::future::pending().await,
        }
    }

    /// Stops everything: background and critical tasks at once, draining
    /// ones after at most `grace`.
    async fn shutdown(mut self, grace: Duration) {
        self.critical.abort_all();
        self.background.abort_all();
        let _ = tokio::time::timeout(grace, async {
            while self.draining.join_next().await.is_some() {}
        })
        .await;
        self.draining.abort_all();
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
