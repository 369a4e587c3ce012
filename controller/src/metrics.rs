//! Prometheus metrics. No object names as labels: cardinality stays bounded
//! however many SealedSecrets exist.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

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

/// Every series the controller exports.
pub struct Metrics {
    pub registry: Registry,
    unseal: Family<ReasonLabel, Counter>,
    errors: Family<ErrorLabel, Counter>,
    duration: Histogram,
    pub api_requests: Counter<u64, AtomicU64>,
    pub keys: Family<StateLabel, Gauge>,
    pub active_key_age: Gauge<f64, AtomicU64>,
    pub http: Family<HttpLabel, Counter>,
    /// HTTP connections open now.
    pub http_connections: Gauge,
    /// HTTP connections closed unserved: their client address already had
    /// `--http-max-connections-per-client` open.
    pub http_connections_refused: Counter,
    events_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("coffer");
        let unseal = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "unseal",
            "Unseal results by reason (Unsealed or why not)",
            unseal.clone(),
        );
        let errors = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed and will be retried",
            errors.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        let api_requests = Counter::default();
        registry.register(
            "kube_api_requests",
            "Requests sent to the Kubernetes API",
            api_requests.clone(),
        );
        let keys = Family::<StateLabel, Gauge>::default();
        registry.register(
            "keys",
            "Sealing keys by state (active, usable, retired)",
            keys.clone(),
        );
        let active_key_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "active_key_age_seconds",
            "Age of the active sealing key",
            active_key_age.clone(),
        );
        let http = Family::<HttpLabel, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by path and status code",
            http.clone(),
        );
        let http_connections = Gauge::default();
        registry.register(
            "http_connections",
            "HTTP connections open",
            http_connections.clone(),
        );
        let http_connections_refused = Counter::default();
        registry.register(
            "http_connections_refused",
            "HTTP connections closed unserved because their client address had too many open",
            http_connections_refused.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Normal Events not published because too many were waiting for spare API tokens",
            events_dropped.clone(),
        );
        Metrics {
            events_dropped,
            registry,
            unseal,
            errors,
            duration,
            api_requests,
            keys,
            active_key_age,
            http,
            http_connections,
            http_connections_refused,
        }
    }
}

impl Metrics {
    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub fn unseal(&self, reason: &str) {
        self.unseal
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
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
    pub fn api_request_count(&self) -> u64 {
        self.api_requests.get()
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

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Metrics>();
    let _ = Ordering::Relaxed;
}
