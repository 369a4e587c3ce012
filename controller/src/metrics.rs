//! Prometheus metrics. No object names as labels, and namespaces only up to
//! `--metrics-max-namespaces`: cardinality stays bounded however many
//! SealedSecrets exist.
//!
//! Failure series exist at zero from the start, so `increase()` and alerts
//! see the first failure, not only the second.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use coffer_core::reason::Reason;
use coffer_format::KeyId;

use crate::state::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

/// Where a reconcile got the SealedSecret whose values it opened.
pub const READ_SOURCES: &[&str] = &["watch", "read_ahead", "get"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabel {
    pub path: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    pub verb: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: String,
    commit: String,
}

/// Every reason a SealedSecret's unseal can end with (its `Ready`
/// reason: `Unsealed` or a refusal; a retry is not an outcome): the
/// `coffer_unseal_total` series that exist at zero from the start.
pub fn unseal_reasons() -> impl Iterator<Item = Reason> {
    Reason::ALL
        .into_iter()
        .filter(|r| r.on_coffer() && *r != Reason::Retrying)
}

/// Every `coffer_reconcile_errors_total` error label.
pub const RECONCILE_ERRORS: &[&str] = &["api_error", "keys_not_ready"];

/// The `reason` of a SealedSecret the controller has not yet acted on at
/// its current generation.
pub use crate::state::store::PENDING;

/// The `namespace` label of the namespaces over `--metrics-max-namespaces`.
/// Not a valid namespace name, so it cannot clash with one.
pub const OTHER_NAMESPACES: &str = "_other";

/// Every series the controller exports.
pub struct Metrics {
    pub registry: Registry,
    unseal: Family<ReasonLabel, Counter>,
    bitnami_unseal: Family<ReasonLabel, Counter>,
    errors: Family<ErrorLabel, Counter>,
    duration: Histogram,
    api_requests: Family<ApiLabel, Counter>,
    api_total: Counter,
    api_writes: Counter,
    keys: Family<StateLabel, Gauge>,
    active_key_age: Gauge<f64, AtomicU64>,
    renewal_period: Gauge<f64, AtomicU64>,
    http: Family<HttpLabel, Counter>,
    http_duration: Family<PathLabel, Histogram>,
    /// HTTP connections open now.
    pub http_connections: Gauge,
    /// HTTP connections closed unserved: their client address already had
    /// `--http-max-connections-per-client` open.
    pub http_connections_refused: Counter,
    /// Bytes of request bodies held now: the part of `--http-body-budget`
    /// in use.
    pub http_body_bytes: Gauge,
    events_dropped: Counter,
    sealed_reads: Family<SourceLabel, Counter>,
    restored: Counter,
    leader: Gauge,
    sealed: Arc<SealedStates>,
    /// Calls to the key-encryption key (docs/kms.md).
    pub kms: KmsMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KmsLabel {
    pub provider: &'static str,
    pub operation: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KmsOpLabel {
    pub provider: &'static str,
    pub operation: &'static str,
}

/// The KEK's series: calls by outcome, their latency, and the keys the
/// controller could not unwrap.
pub struct KmsMetrics {
    calls: Family<KmsLabel, Counter>,
    duration: Family<KmsOpLabel, Histogram>,
    /// Keys in the ring the KEK could not unwrap now.
    pub keys_unavailable: Gauge,
}

impl KmsMetrics {
    fn register(registry: &mut Registry) -> Self {
        let calls = Family::<KmsLabel, Counter>::default();
        add(
            registry,
            "kms_calls",
            "Calls to the key-encryption key by provider, operation (wrap, unwrap, rewrap) and outcome (ok, unavailable, denied, key_unusable, rejected, config)",
            &calls,
        );
        // 1 ms to 32 s.
        let duration = Family::<KmsOpLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 16))) as fn() -> Histogram,
        );
        add(
            registry,
            "kms_call_duration_seconds",
            "Time a call to the key-encryption key took, by provider and operation",
            &duration,
        );
        let keys_unavailable = Gauge::default();
        add(
            registry,
            "kms_keys_unavailable",
            "Key Secrets whose wrapped key the controller could not unwrap (they are left out of the ring until it can)",
            &keys_unavailable,
        );
        KmsMetrics {
            calls,
            duration,
            keys_unavailable,
        }
    }

    /// One call to the KEK, its outcome and how long it took.
    pub fn call(
        &self,
        provider: &'static str,
        operation: &'static str,
        outcome: &'static str,
        took: std::time::Duration,
    ) {
        self.calls
            .get_or_create(&KmsLabel {
                provider,
                operation,
                outcome,
            })
            .inc();
        self.duration
            .get_or_create(&KmsOpLabel {
                provider,
                operation,
            })
            .observe(took.as_secs_f64());
    }

    /// Calls of `operation` so far, whatever their outcome (the tests).
    #[cfg(test)]
    pub fn calls(&self, operation: &'static str) -> u64 {
        let mut n = 0;
        for provider in coffer_kms::Provider::ALL {
            for outcome in [
                "ok",
                "unavailable",
                "denied",
                "key_unusable",
                "rejected",
                "config",
            ] {
                let label = KmsLabel {
                    provider: provider.as_str(),
                    operation,
                    outcome,
                };
                n += self.calls.get(&label).map_or(0, |c| c.get());
            }
        }
        n
    }
}

/// Registers a handle on `metric` (the registry keeps a clone; both count
/// the same series).
fn add<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: &M,
) {
    registry.register(name, help, metric.clone());
}

/// The outcomes of reconciles: unseals and refusals by reason, bitnami's,
/// retried errors, and the time a reconcile takes.
#[allow(clippy::type_complexity)]
fn unseal_series(
    registry: &mut Registry,
) -> (
    Family<ReasonLabel, Counter>,
    Family<ReasonLabel, Counter>,
    Family<ErrorLabel, Counter>,
    Histogram,
) {
    let unseal = Family::<ReasonLabel, Counter>::default();
    for reason in unseal_reasons() {
        let _ = unseal.get_or_create(&ReasonLabel {
            reason: reason.metric_label().into(),
        });
    }
    add(
        registry,
        "unseal",
        "Unseal results by reason (Unsealed or why not); a refusal is counted once until its SealedSecret or the key ring changes",
        &unseal,
    );
    let bitnami_unseal = Family::<ReasonLabel, Counter>::default();
    add(
        registry,
        "bitnami_unseal",
        "bitnami.com SealedSecrets (--bitnami) whose Secret Coffer wrote or took over from bitnami's controller (Unsealed), refused, or left to the Coffer SealedSecret of the same name (TakenOver), by reason; counted when the outcome changes",
        &bitnami_unseal,
    );
    let errors = Family::<ErrorLabel, Counter>::default();
    for error in RECONCILE_ERRORS {
        let _ = errors.get_or_create(&ErrorLabel {
            error: (*error).into(),
        });
    }
    add(
        registry,
        "reconcile_errors",
        "Reconciles that failed and will be retried",
        &errors,
    );
    let duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
    add(
        registry,
        "reconcile_duration_seconds",
        "Time spent in one reconcile",
        &duration,
    );
    (unseal, bitnami_unseal, errors, duration)
}

/// Requests to the API server, and the key ring.
#[allow(clippy::type_complexity)]
fn api_and_key_series(
    registry: &mut Registry,
) -> (
    Family<ApiLabel, Counter>,
    Family<StateLabel, Gauge>,
    Gauge<f64, AtomicU64>,
    Gauge<f64, AtomicU64>,
) {
    let api_requests = Family::<ApiLabel, Counter>::default();
    add(
        registry,
        "kube_api_requests",
        "Requests sent to the Kubernetes API by verb (GET, LIST, WATCH, POST, PUT, PATCH, DELETE) and response code (\"error\": no response)",
        &api_requests,
    );
    let keys = Family::<StateLabel, Gauge>::default();
    add(
        registry,
        "keys",
        "Sealing keys by state (active, usable, open-only, retired)",
        &keys,
    );
    let active_key_age = Gauge::<f64, AtomicU64>::default();
    add(
        registry,
        "active_key_age_seconds",
        "Age of the active sealing key",
        &active_key_age,
    );
    let renewal_period = Gauge::<f64, AtomicU64>::default();
    add(
        registry,
        "key_renewal_period_seconds",
        "--key-renewal-period (0: renewal is off)",
        &renewal_period,
    );
    (api_requests, keys, active_key_age, renewal_period)
}

/// The HTTP listeners.
#[allow(clippy::type_complexity)]
fn http_series(
    registry: &mut Registry,
) -> (
    Family<HttpLabel, Counter>,
    Family<PathLabel, Histogram>,
    Gauge,
    Counter,
    Gauge,
) {
    let http = Family::<HttpLabel, Counter>::default();
    add(
        registry,
        "http_requests",
        "HTTP requests by path and status code",
        &http,
    );
    // 0.5 ms to 16 s.
    let http_duration = Family::<PathLabel, Histogram>::new_with_constructor(
        (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
    );
    add(
        registry,
        "http_request_duration_seconds",
        "Time from an HTTP request's head to its response's head, by path",
        &http_duration,
    );
    let http_connections = Gauge::default();
    add(
        registry,
        "http_connections",
        "HTTP connections open",
        &http_connections,
    );
    let http_connections_refused = Counter::default();
    add(
        registry,
        "http_connections_refused",
        "HTTP connections closed unserved because their client address had too many open",
        &http_connections_refused,
    );
    let http_body_bytes = Gauge::default();
    add(
        registry,
        "http_body_bytes",
        "Bytes of HTTP request bodies held now, of --http-body-budget",
        &http_body_bytes,
    );
    (
        http,
        http_duration,
        http_connections,
        http_connections_refused,
        http_body_bytes,
    )
}

/// Where the work goes: dropped Events, reads, restored outcomes,
/// leadership.
#[allow(clippy::type_complexity)]
fn work_series(registry: &mut Registry) -> (Counter, Family<SourceLabel, Counter>, Counter, Gauge) {
    let events_dropped = Counter::default();
    add(
        registry,
        "events_dropped",
        "Normal Events not published because too many were waiting for spare API tokens",
        &events_dropped,
    );
    let sealed_reads = Family::<SourceLabel, Counter>::default();
    for source in READ_SOURCES {
        let _ = sealed_reads.get_or_create(&SourceLabel { source });
    }
    add(
        registry,
        "sealed_reads",
        "SealedSecrets read to open their values, by where the copy came from: its watch event, the read-ahead list, or a GET of its own",
        &sealed_reads,
    );
    let restored = Counter::default();
    add(
        registry,
        "outcomes_restored",
        "SealedSecrets found unsealed, without being read or opened, by their Secret's annotation, which this controller's keys verified (a restart)",
        &restored,
    );
    let leader = Gauge::default();
    add(
        registry,
        "leader",
        "1 while this replica is the leader (reconciles and renews keys), else 0",
        &leader,
    );
    (events_dropped, sealed_reads, restored, leader)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(usize::MAX)
    }
}

impl Metrics {
    /// The metrics, labelling at most `max_namespaces` namespaces one by
    /// one in `coffer_sealed_secrets`.
    pub fn new(max_namespaces: usize) -> Self {
        let mut registry = Registry::with_prefix("coffer");
        registry.register(
            "build",
            "The controller's version and the git commit it was built from",
            Info::new(BuildLabel {
                version: env!("CARGO_PKG_VERSION").into(),
                commit: env!("COFFER_COMMIT").into(),
            }),
        );
        let (unseal, bitnami_unseal, errors, duration) = unseal_series(&mut registry);
        let (api_requests, keys, active_key_age, renewal_period) =
            api_and_key_series(&mut registry);
        let (http, http_duration, http_connections, http_connections_refused, http_body_bytes) =
            http_series(&mut registry);
        let (events_dropped, sealed_reads, restored, leader) = work_series(&mut registry);
        let sealed = Arc::new(SealedStates {
            store: Mutex::default(),
            max_namespaces,
            ring_keys: Mutex::default(),
        });
        registry.register_collector(Box::new(sealed.clone()));
        let kms = KmsMetrics::register(&mut registry);
        Metrics {
            kms,
            registry,
            unseal,
            bitnami_unseal,
            errors,
            duration,
            api_requests,
            api_total: Counter::default(),
            api_writes: Counter::default(),
            keys,
            active_key_age,
            renewal_period,
            http,
            http_duration,
            http_connections,
            http_connections_refused,
            http_body_bytes,
            events_dropped,
            sealed_reads,
            restored,
            leader,
            sealed,
        }
    }

    /// A SealedSecret read to open its values, from `source` (one of
    /// [`READ_SOURCES`]).
    pub fn sealed_read(&self, source: &'static str) {
        self.sealed_reads
            .get_or_create(&SourceLabel { source })
            .inc();
    }

    /// SealedSecrets read so far from `source`.
    pub fn sealed_read_count(&self, source: &'static str) -> u64 {
        self.sealed_reads
            .get_or_create(&SourceLabel { source })
            .get()
    }

    /// A SealedSecret found unsealed by its Secret's verified annotation.
    pub fn outcome_restored(&self) {
        self.restored.inc();
    }

    pub fn restored_count(&self) -> u64 {
        self.restored.get()
    }

    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub fn unseal(&self, reason: Reason) {
        self.unseal
            .get_or_create(&ReasonLabel {
                reason: reason.metric_label().into(),
            })
            .inc();
    }
    /// With `--bitnami`: the `coffer_bitnami_unseal_total` series of every
    /// reason a bitnami SealedSecret can have, at 0, so that their presence
    /// says the bitnami reconciler runs (and a first refusal is an increase
    /// from 0).
    pub fn start_bitnami(&self) {
        for reason in Reason::ALL.into_iter().filter(|r| r.on_bitnami()) {
            let _ = self.bitnami_unseal.get_or_create(&ReasonLabel {
                reason: reason.metric_label().into(),
            });
        }
    }

    /// A bitnami SealedSecret's Secret written or taken over from bitnami's
    /// controller (`Unsealed`), or its refusal `reason`.
    pub fn bitnami_unseal(&self, reason: Reason) {
        self.bitnami_unseal
            .get_or_create(&ReasonLabel {
                reason: reason.metric_label().into(),
            })
            .inc();
    }

    pub fn reconcile_error(&self, error: &str) {
        self.errors
            .get_or_create(&ErrorLabel {
                error: error.into(),
            })
            .inc();
    }
    pub fn observe_reconcile(&self, d: Duration) {
        self.duration.observe(d.as_secs_f64());
    }
    /// One request to the Kubernetes API has been answered (`code`) or has
    /// failed without an answer (`None`).
    pub fn api_request(&self, verb: &'static str, code: Option<u16>) {
        self.api_total.inc();
        self.api_requests
            .get_or_create(&ApiLabel {
                verb: verb.into(),
                code: code.map_or_else(|| "error".into(), |c| c.to_string()),
            })
            .inc();
    }
    /// Requests sent to the Kubernetes API so far.
    pub fn api_request_count(&self) -> u64 {
        self.api_total.get()
    }
    /// A request about Secrets or SealedSecrets (counted once more here).
    pub fn secret_request(&self, verb: &str) {
        if matches!(
            verb,
            "POST" | "PUT" | "PATCH" | "DELETE" | "DELETECOLLECTION"
        ) {
            self.api_writes.inc();
        }
    }
    /// Writes to Secrets and SealedSecrets so far (POST, PUT, PATCH,
    /// DELETE; their status included).
    pub fn api_write_count(&self) -> u64 {
        self.api_writes.get()
    }
    /// One HTTP request on `path` (already bounded to the known paths).
    pub fn http_request(&self, path: &str, code: u16, took: Duration) {
        self.http
            .get_or_create(&HttpLabel {
                path: path.into(),
                code: code.to_string(),
            })
            .inc();
        self.http_duration
            .get_or_create(&PathLabel { path: path.into() })
            .observe(took.as_secs_f64());
    }
    /// Whether this replica leads now.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }
    pub fn set_renewal_period(&self, period: Duration) {
        self.renewal_period.set(period.as_secs_f64());
    }
    /// The leader's caches of SealedSecrets, counted by
    /// `coffer_sealed_secrets` at each scrape; empty while not leading.
    pub fn count_sealed_in(&self, store: Option<Arc<Store>>) {
        *self.sealed.store.lock().expect("metrics lock") = store;
    }
    /// The leader's caches of SealedSecrets, once its watches have synced;
    /// `None` on a follower (it knows no SealedSecret).
    pub fn leader_store(&self) -> Option<Arc<Store>> {
        self.sealed.store.lock().expect("metrics lock").clone()
    }
    /// The keys of the ring that are not retired: each has a
    /// `coffer_key_sealed_secrets` series, at 0 when nothing needs it.
    pub fn set_ring_keys(&self, ids: Vec<KeyId>) {
        *self.sealed.ring_keys.lock().expect("metrics lock") = ids;
    }
    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode");
        out
    }
    pub fn set_keys(
        &self,
        active: i64,
        usable: i64,
        open_only: i64,
        retired: i64,
        active_age: f64,
    ) {
        for (state, n) in [
            ("active", active),
            ("usable", usable),
            ("open-only", open_only),
            ("retired", retired),
        ] {
            self.keys
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(n);
        }
        self.active_key_age.set(active_age);
    }
}

/// `coffer_sealed_secrets{namespace, reason}`: how many SealedSecrets the
/// leader's caches hold, by namespace and by the reason of their `Ready`
/// condition ([`PENDING`] when the controller has not yet acted on their
/// current generation). Counted at scrape time from what the caches
/// already hold, so it is the state the API server shows, not a tally of
/// events that could drift.
#[derive(Debug)]
struct SealedStates {
    store: Mutex<Option<Arc<Store>>>,
    max_namespaces: usize,
    /// See [`Metrics::set_ring_keys`].
    ring_keys: Mutex<Vec<KeyId>>,
}

/// Counts by (namespace, reason). Over `max_namespaces` namespaces, those
/// with SealedSecrets that are not unsealed keep their own label first
/// (they are what alerts need), then by name; the rest are summed under
/// [`OTHER_NAMESPACES`].
pub fn count_states<'a>(
    states: impl IntoIterator<Item = (&'a str, &'a str)>,
    max_namespaces: usize,
) -> BTreeMap<(String, String), i64> {
    let mut by_ns: HashMap<&str, HashMap<&str, i64>> = HashMap::new();
    for (ns, reason) in states {
        *by_ns.entry(ns).or_default().entry(reason).or_default() += 1;
    }
    let mut namespaces: Vec<(&str, bool)> = by_ns
        .iter()
        .map(|(ns, reasons)| (*ns, reasons.keys().any(|r| *r != "Unsealed")))
        .collect();
    namespaces.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut out = BTreeMap::new();
    for (i, (ns, _)) in namespaces.into_iter().enumerate() {
        let label = if i < max_namespaces {
            ns
        } else {
            OTHER_NAMESPACES
        };
        for (reason, n) in &by_ns[ns] {
            *out.entry((label.to_string(), reason.to_string()))
                .or_default() += n;
        }
    }
    out
}

impl Collector for SealedStates {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let started = Instant::now();
        let store = self.store.lock().expect("metrics lock").clone();
        let objects = store.as_ref().map(|s| s.states()).unwrap_or_default();
        let counts = count_states(
            objects
                .iter()
                .map(|(ns, reason)| (ns.as_str(), reason.as_str())),
            self.max_namespaces,
        );
        let mut family = encoder.encode_descriptor(
            "sealed_secrets",
            "SealedSecrets by namespace and Ready reason (Unsealed, a refusal, or Pending); reported by the leader only",
            None,
            MetricType::Gauge,
        )?;
        for ((namespace, reason), n) in &counts {
            let labels = [
                ("namespace", namespace.as_str()),
                ("reason", reason.as_str()),
            ];
            ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
        }
        // `coffer_key_sealed_secrets{key}`: one series per key (keys are
        // few), labelled with the 16 hex digits `coffer keys list` shows.
        if let Some(store) = store {
            let mut by_key = store.key_counts();
            for id in self.ring_keys.lock().expect("metrics lock").iter() {
                by_key.entry(*id).or_default();
            }
            let mut family = encoder.encode_descriptor(
                "key_sealed_secrets",
                "SealedSecrets whose current generation needs this key to open (a value no other usable key opens); retire a key at 0 only; reported by the leader only",
                None,
                MetricType::Gauge,
            )?;
            for (id, n) in &by_key {
                let short = id.short();
                let labels = [("key", short.as_str())];
                ConstGauge::new(*n as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        tracing::trace!(objects = objects.len(), took = ?started.elapsed(), "counted SealedSecrets for /metrics");
        Ok(())
    }
}

/// The `Content-Type` of OpenMetrics text, what
/// [`prometheus_client::encoding::text::encode`] writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of Prometheus' classic text format.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The two formats `/metrics` answers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    OpenMetrics,
    /// Prometheus' text format 0.0.4.
    Classic,
}

/// The format an `Accept` header asks for, by quality (`q`), a media range
/// naming the type exactly counting before `text/*` or `application/*`,
/// and those before `*/*`. OpenMetrics wins ties, and answers a request
/// without `Accept` or accepting neither (as before content negotiation).
pub fn negotiate(accept: &str) -> Exposition {
    // (specificity, q) of the most specific range matching each format.
    let mut om: Option<(u8, f32)> = None;
    let mut classic: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map(|(_, v)| v.trim().parse::<f32>().unwrap_or(0.0))
            .unwrap_or(1.0);
        let better = |slot: &mut Option<(u8, f32)>, specificity: u8| match slot {
            Some((s, old)) if *s == specificity => *old = old.max(q),
            Some((s, _)) if *s > specificity => {}
            _ => *slot = Some((specificity, q)),
        };
        match media.as_str() {
            "application/openmetrics-text" => better(&mut om, 2),
            "text/plain" => better(&mut classic, 2),
            "application/*" => better(&mut om, 1),
            "text/*" => better(&mut classic, 1),
            "*/*" => {
                better(&mut om, 0);
                better(&mut classic, 0);
            }
            _ => {}
        }
    }
    let q = |slot: Option<(u8, f32)>| slot.map(|(_, q)| q).unwrap_or(0.0);
    if q(classic) > q(om) {
        Exposition::Classic
    } else {
        Exposition::OpenMetrics
    }
}

/// OpenMetrics text as Prometheus' classic text format 0.0.4: the samples
/// unchanged; `# HELP` and `# TYPE` named as the samples are (a counter
/// `x` is `x_total`, an info `x` is the gauge `x_info`, `unknown` is
/// `untyped`); no `# UNIT` and no `# EOF`, which that format lacks.
pub fn to_classic(openmetrics: &str) -> String {
    let mut types: HashMap<&str, &str> = HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            types.insert(name, kind);
        }
    }
    let rename = |name: &str| -> String {
        match types.get(name).copied() {
            Some("counter") => format!("{name}_total"),
            Some("info") => format!("{name}_info"),
            _ => name.to_string(),
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            let kind = match kind {
                "info" => "gauge",
                "unknown" => "untyped",
                "gaugehistogram" => "histogram",
                "stateset" => "gauge",
                other => other,
            };
            out.push_str(&format!("# TYPE {} {kind}\n", rename(name)));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // OpenMetrics escapes `"` in HELP; the classic format does not.
            let help = help.replace("\\\"", "\"");
            out.push_str(&format!("# HELP {} {help}\n", rename(name)));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(list: &[(&'static str, &'static str, usize)]) -> Vec<(&'static str, &'static str)> {
        list.iter()
            .flat_map(|(ns, r, n)| std::iter::repeat_n((*ns, *r), *n))
            .collect()
    }

    fn key(ns: &str, r: &str) -> (String, String) {
        (ns.into(), r.into())
    }

    #[test]
    fn counts_by_namespace_and_reason() {
        let c = count_states(
            states(&[
                ("a", "Unsealed", 3),
                ("a", "ScopeMismatch", 1),
                ("b", "Pending", 2),
            ]),
            10,
        );
        assert_eq!(c.len(), 3);
        assert_eq!(c[&key("a", "Unsealed")], 3);
        assert_eq!(c[&key("a", "ScopeMismatch")], 1);
        assert_eq!(c[&key("b", "Pending")], 2);
    }

    #[test]
    fn namespaces_over_the_cap_are_summed_and_failing_ones_keep_their_label() {
        let c = count_states(
            states(&[
                ("a", "Unsealed", 1),
                ("b", "Unsealed", 2),
                ("z", "Tampered", 1),
                ("c", "Unsealed", 4),
            ]),
            2,
        );
        // z fails, so it is labelled before a, b and c; then a; b and c
        // are summed.
        assert_eq!(c[&key("z", "Tampered")], 1);
        assert_eq!(c[&key("a", "Unsealed")], 1);
        assert_eq!(c[&key(OTHER_NAMESPACES, "Unsealed")], 6);
        assert_eq!(c.len(), 3);
        let none = count_states(states(&[("a", "Unsealed", 1), ("b", "Pending", 1)]), 0);
        assert_eq!(none[&key(OTHER_NAMESPACES, "Unsealed")], 1);
        assert_eq!(none[&key(OTHER_NAMESPACES, "Pending")], 1);
    }

    #[test]
    fn failure_series_exist_at_zero() {
        let m = Metrics::default();
        let text = m.encode();
        for reason in unseal_reasons() {
            let reason = reason.metric_label();
            let line = format!("coffer_unseal_total{{reason=\"{reason}\"}} 0\n");
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        for error in RECONCILE_ERRORS {
            let line = format!("coffer_reconcile_errors_total{{error=\"{error}\"}} 0\n");
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        assert!(text.contains("coffer_leader 0\n"), "{text}");
        m.set_renewal_period(Duration::from_secs(720 * 3600));
        let text = m.encode();
        assert!(
            text.contains("coffer_key_renewal_period_seconds 2592000.0\n"),
            "{text}"
        );
        let build = format!(
            "coffer_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            env!("COFFER_COMMIT")
        );
        assert!(text.contains(&build), "{text}");
    }

    #[test]
    fn bitnami_series_exist_at_zero_only_with_bitnami() {
        let m = Metrics::default();
        assert!(!m.encode().contains("coffer_bitnami_unseal_total{"));
        m.start_bitnami();
        let text = m.encode();
        // The reasons of bitnami's outcomes, from the one list of reasons.
        for reason in ["Unsealed", "NoMatchingKey", "TakenOver", "SecretNotOwned"] {
            let line = format!("coffer_bitnami_unseal_total{{reason=\"{reason}\"}} 0\n");
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn api_requests_are_counted_by_verb_and_code() {
        let m = Metrics::default();
        m.api_request("LIST", Some(200));
        m.api_request("LIST", Some(200));
        m.api_request("PATCH", Some(409));
        m.api_request("POST", None);
        let text = m.encode();
        for line in [
            "coffer_kube_api_requests_total{verb=\"LIST\",code=\"200\"} 2\n",
            "coffer_kube_api_requests_total{verb=\"PATCH\",code=\"409\"} 1\n",
            "coffer_kube_api_requests_total{verb=\"POST\",code=\"error\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert_eq!(m.api_request_count(), 4);
    }

    #[test]
    fn accept_chooses_between_openmetrics_and_the_classic_text_format() {
        use Exposition::*;
        for (accept, want) in [
            ("", OpenMetrics),
            ("*/*", OpenMetrics),
            ("application/json", OpenMetrics),
            ("text/plain;version=0.0.4", Classic),
            ("text/plain; version=0.0.4; charset=utf-8", Classic),
            ("TEXT/PLAIN", Classic),
            ("text/*", Classic),
            ("application/openmetrics-text;version=1.0.0", OpenMetrics),
            // Prometheus 3's default scrape protocols, best first.
            (
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
                 application/openmetrics-text;version=0.0.1;q=0.4,\
                 text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,\
                 text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                OpenMetrics,
            ),
            // A Prometheus told `scrape_protocols: [PrometheusText0.0.4]`.
            ("text/plain;version=0.0.4;q=1,*/*;q=0.1", Classic),
            (
                "application/openmetrics-text;q=0.2,text/plain;version=0.0.4;q=0.9",
                Classic,
            ),
            // An exact type counts before a wildcard that would allow it.
            ("application/openmetrics-text;q=0,*/*", Classic),
            ("text/plain;q=0,*/*", OpenMetrics),
        ] {
            assert_eq!(negotiate(accept), want, "Accept: {accept}");
        }
    }

    #[test]
    fn the_classic_format_names_help_and_type_as_the_samples_and_has_no_openmetrics_lines() {
        let m = Metrics::default();
        m.api_request("LIST", Some(200));
        m.observe_reconcile(Duration::from_millis(3));
        let om = m.encode();
        assert!(
            om.contains("# TYPE coffer_kube_api_requests counter\n"),
            "{om}"
        );
        assert!(om.contains("# TYPE coffer_build info\n"), "{om}");
        let text = to_classic(&om);
        for line in [
            "# TYPE coffer_kube_api_requests_total counter\n",
            "coffer_kube_api_requests_total{verb=\"LIST\",code=\"200\"} 1\n",
            "# TYPE coffer_build_info gauge\n",
            "coffer_leader 0\n",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            text.contains("# HELP coffer_kube_api_requests_total "),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        // Every TYPE is a type of the classic format, and every sample is
        // named as a TYPE is (with a histogram's suffixes).
        let mut typed = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut f = line["# TYPE ".len()..].split(' ');
            let (name, kind) = (f.next().unwrap(), f.next().unwrap());
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.push((name.to_string(), kind.to_string()));
        }
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap();
            assert!(
                typed.iter().any(|(t, kind)| name == t
                    || (kind == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name.strip_suffix(s) == Some(t.as_str())))),
                "{sample}: no # TYPE {name} in\n{text}"
            );
        }
        // Samples are the same lines in both formats.
        let samples = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(String::from)
                .collect()
        };
        assert_eq!(samples(&om), samples(&text));
    }
}
