//! The HTTP listeners: health, readiness, metrics, and the public side of
//! the key ring. Nothing here can change keys, and no response or log line
//! carries a plaintext byte.
//!
//! The main port is reachable by anyone the NetworkPolicy lets in, so what
//! a client can make the process hold is bounded (see [`Limits`]):
//!
//! - connections: at most `max_connections` open (more wait in the kernel's
//!   accept queue, unread), at most `max_connections_per_client` from one
//!   address (more are closed at once); each buffers at most [`CONN_BUF`]
//!   bytes of headers or body, and must deliver its headers within
//!   `header_timeout` (which also closes idle keep-alive connections);
//! - request bodies (the POST endpoints only): the client's rate limit and
//!   readiness are checked, and the declared length against [`MAX_BODY`],
//!   *before* a byte of the body is read. Bodies are then charged to a
//!   budget of `body_budget` bytes over all clients, of which one client
//!   address may hold at most `body_budget_per_client` ([`BodyBudget`]): a
//!   body with a declared length is charged in full before it is read, a
//!   chunked one [`CHUNKED_START`] before and then as the buffer it is read
//!   into grows (at most twice what has arrived). A charge that does not
//!   fit is refused with 429, before the body or as it arrives; the budget
//!   stays taken until the response has been handed to the connection, and
//!   the body must arrive within `body_timeout`;
//! - responses: a client that stops reading its response for `body_timeout`
//!   is disconnected.
//!
//! `/healthz`, `/readyz`, `/metrics`, `/v1/recipients` and
//! `/v1/keys/{id}/users` read no body and
//! take nothing from the budget, so they answer while the POST endpoints are
//! saturated. The kubelet's probes have a listener of their own
//! ([`serve_probes`], `--probe-listen`) serving only `/healthz` and
//! `/readyz`, with its own small connection cap: no number of connections to
//! the main port can make a probe wait for a slot.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use coffer_core::SealedSecret;
use coffer_core::api::{ReadSealedError, read_sealed_secret};
use coffer_core::transform::unseal;
use coffer_format::{KeyId, PublicKey};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use serde::Deserialize;

pub(crate) mod limits;
pub(crate) mod reject;
mod web;

use crate::http::limits::{
    BodyBudget, HANDLER_TIMEOUT, Held, accept, busy, discard, read_body, refuse, retry_soon,
};
pub use crate::http::limits::{
    CHUNKED_START, CONN_BUF, ClientLimiter, Limits, MAX_BODY, PROBE_MAX_CONNECTIONS,
    PROBE_MAX_CONNECTIONS_PER_CLIENT,
};
pub use crate::http::reject::Reject;
use crate::http::reject::reject;

use crate::bitnami::BitnamiKeys;
use crate::keys::reencrypt::reencrypt_values;
use crate::keys::ring::Keys;
use crate::metrics::Metrics;
use crate::pool::UnsealPool;
use crate::reconcile::secret_types::SecretTypePolicy;

type Shared = Arc<HttpState>;

/// Admission to the POST endpoints, before their body is read: the
/// client's rate limit, readiness, the declared length, and the body's
/// charge to the budget (all of a declared length, [`CHUNKED_START`] of a
/// chunked body). Then the body is read, within `body_timeout`, a chunked
/// one charged as it grows, and the charge is kept until the response has
/// been handed to the connection.
async fn admit(
    State(state): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let within = state.limits.body_timeout;
    let ip = addr.ip().to_canonical();
    if !state.limiter.allow(ip) {
        let r = reject(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded; slow down",
        );
        return refuse(req, r, within);
    }
    if !state.ready.load(Ordering::Acquire) {
        let r = reject(StatusCode::SERVICE_UNAVAILABLE, "key ring not loaded yet");
        return refuse(req, r, within);
    }
    // hyper knows the length from Content-Length; a chunked body's is known
    // only once it has arrived.
    let declared = match req.body().size_hint().exact() {
        Some(n) if n > MAX_BODY as u64 => {
            let r = reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body larger than 2 MiB",
            );
            return refuse(req, r, within);
        }
        Some(n) => Some(n as usize),
        None => None,
    };
    let mut charge = state.budget.charge(ip);
    if let Err(spent) = charge.grow(declared.unwrap_or(CHUNKED_START)) {
        return retry_soon(refuse(req, busy(spent), within));
    }
    let (parts, mut body) = req.into_parts();
    let read = tokio::time::timeout(within, read_body(&mut body, &mut charge, declared)).await;
    let body = match read {
        Ok(Ok(b)) => b,
        Ok(Err(r)) => {
            // Refused as it arrived (too large, or past the budget): the
            // rest is discarded, so the client sees the answer.
            let too_many = r.status() == StatusCode::TOO_MANY_REQUESTS;
            drop(charge);
            discard(body, within);
            let resp = r.into_response();
            return if too_many { retry_soon(resp) } else { resp };
        }
        Err(_) => {
            return reject(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            )
            .into_response();
        }
    };
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = resp.into_parts();
    // The handlers answer from memory: this takes the one piece they made.
    let rest = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    Response::from_parts(
        parts,
        Body::new(Held {
            rest,
            charge: Some(charge),
        }),
    )
}

async fn count(
    State(state): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = match req.uri().path() {
        p @ ("/healthz"
        | "/readyz"
        | "/metrics"
        | "/v1/recipients"
        | "/v1/verify"
        | "/v1/reencrypt"
        | "/v1/bitnami/convert") => p,
        p if p.starts_with("/v1/keys/") && p.ends_with("/users") => "/v1/keys/{id}/users",
        p if p == "/ui" || p.starts_with("/ui/") => "/ui",
        _ => "other",
    }
    .to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .http_request(&path, resp.status().as_u16(), started.elapsed());
    resp
}

/// How the POST endpoints open values: as reconcile does.
pub struct Opening {
    /// `/v1/verify` says "does not open here" for a type the controller
    /// refuses to write.
    pub secret_types: Arc<SecretTypePolicy>,
    /// Where request bodies are decrypted, off the async thread.
    pub pool: UnsealPool,
}

/// What the handlers share.
pub struct HttpState {
    pub keys: Arc<Keys>,
    pub metrics: Arc<Metrics>,
    /// Set once the key ring's watch has synced and an active key exists.
    pub ready: Arc<AtomicBool>,
    pub cluster_name: Option<String>,
    pub limiter: ClientLimiter,
    pub opening: Opening,
    pub limits: Limits,
    /// [`Limits::body_budget`] and [`Limits::body_budget_per_client`].
    budget: Arc<BodyBudget>,
    /// The imported bitnami keys, with `--bitnami`; `POST
    /// /v1/bitnami/convert` answers 404 without.
    pub bitnami: Option<Arc<BitnamiKeys>>,
    /// `--web`: serve the page at `/ui/` (404 without).
    pub web: bool,
}

impl HttpState {
    pub fn new(
        keys: Arc<Keys>,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        cluster_name: Option<String>,
        limiter: ClientLimiter,
        opening: Opening,
        limits: Limits,
    ) -> Self {
        let budget = BodyBudget::new(&limits, metrics.http_body_bytes.clone());
        HttpState {
            keys,
            metrics,
            ready,
            cluster_name,
            limiter,
            opening,
            limits,
            budget,
            bitnami: None,
            web: false,
        }
    }

    /// Serves `POST /v1/bitnami/convert` with these keys.
    pub fn with_bitnami(mut self, keys: Arc<BitnamiKeys>) -> Self {
        self.bitnami = Some(keys);
        self
    }
}

/// The router. It expects the client's address as a
/// `ConnectInfo<SocketAddr>` request extension, as [`serve`] inserts it.
pub fn router(state: Shared) -> Router {
    let timeout = tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        HANDLER_TIMEOUT,
    );
    // Admission runs first and reads the body; the timeout then covers the
    // handler only.
    let posts = Router::new()
        .route("/v1/verify", post(verify))
        .route("/v1/reencrypt", post(reencrypt))
        .route("/v1/bitnami/convert", post(bitnami_convert))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(timeout)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), admit));
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/recipients", get(recipients))
        .route("/v1/keys/{id}/users", get(key_users));
    let router = if state.web {
        router
            .route("/ui", get(web::redirect))
            .route("/ui/", get(web::page))
            .route("/ui/{file}", get(web::file))
    } else {
        router
    };
    router
        .layer(timeout)
        .merge(posts)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// The probe listener's router: `/healthz` and `/readyz` only, counted in
/// the same metrics as on the main port.
pub fn probe_router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting and
/// lets the requests in progress finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = state.limits.clone();
    let metrics = state.metrics.clone();
    accept(
        listener,
        router(state),
        &limits,
        Some(metrics),
        "main",
        shutdown,
    )
    .await
}

/// Serves the kubelet's probes (`/healthz`, `/readyz`) on `listener`, a
/// port of their own with its own small cap ([`Limits::probes`]), until
/// `shutdown` resolves. The main port's connections, however many, take
/// none of its slots.
pub async fn serve_probes(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = state.limits.probes();
    accept(
        listener,
        probe_router(state),
        &limits,
        None,
        "probes",
        shutdown,
    )
    .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Shared>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let keys = state.keys.current();
    let mut why = String::from("not ready: the key ring is not loaded yet\n");
    for u in &keys.unavailable {
        // What the KEK answered names the key and the KEK, never a key.
        why.push_str(&format!(
            "key Secret {} cannot be unwrapped: {}\n",
            u.secret, u.why
        ));
    }
    (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
}

/// `GET /metrics`: OpenMetrics 1.0.0, or Prometheus' classic text format
/// 0.0.4 when the `Accept` header prefers `text/plain` (scrapers that do
/// not read OpenMetrics, or a Prometheus told to scrape it); each answer
/// says its format in `Content-Type`.
async fn metrics(State(state): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let text = state.metrics.encode();
    match crate::metrics::negotiate(&accept) {
        crate::metrics::Exposition::OpenMetrics => (
            [(
                header::CONTENT_TYPE,
                crate::metrics::OPENMETRICS_CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        crate::metrics::Exposition::Classic => (
            [(header::CONTENT_TYPE, crate::metrics::CLASSIC_CONTENT_TYPE)],
            crate::metrics::to_classic(&text),
        )
            .into_response(),
    }
}

async fn recipients(State(state): State<Shared>) -> Response {
    match state
        .keys
        .current()
        .recipients_file(state.cluster_name.as_deref())
    {
        Some(f) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            f.render(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no active key yet\n").into_response(),
    }
}

/// `GET /v1/keys/ID/users` (ID: the key id's 64 hex digits): which live
/// SealedSecrets still need that key, as `{"key", "count", "objects",
/// "pending", "pendingObjects"}`; the object lists hold at most ten
/// `namespace/name`, sorted. `pending` counts those whose current
/// generation the controller has not yet unsealed (or refused) under the
/// current key ring: they may need any key. See crate::keys::users. Reads no
/// body; only the leader knows its SealedSecrets, so a follower answers
/// 503, as the leader does until its watches have synced.
///
/// Any Pod may reach this port, so the names (which tell one tenant of
/// another's objects) go only to a request carrying a key admin's proof
/// ([`coffer_core::key_users`]); others get the counts, empty lists and
/// `"names": false`. Each request walks every SealedSecret, so it is
/// charged to the client's rate limit, as a POST is.
async fn key_users(
    State(state): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request_headers: axum::http::HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if !state.limiter.allow(addr.ip().to_canonical()) {
        return reject(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded; slow down",
        )
        .into_response();
    }
    let Ok(id) = id.parse::<KeyId>() else {
        return reject(
            StatusCode::BAD_REQUEST,
            "expected a key id: its 64 hex digits",
        )
        .into_response();
    };
    if !state.ready.load(Ordering::Acquire) {
        return reject(StatusCode::SERVICE_UNAVAILABLE, "key ring not loaded yet").into_response();
    }
    let Some(store) = state.metrics.leader_store() else {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "this replica does not reconcile SealedSecrets (not the leader, or not synced yet); retry",
        )
        .into_response();
    };
    let keys = state.keys.current();
    let epoch = keys.epoch;
    let admin = request_headers
        .get(coffer_core::key_users::HEADER)
        .and_then(|h| h.to_str().ok())
        .zip(keys.ring.usable(id))
        .is_some_and(|(proof, key)| {
            coffer_core::key_users::verify(key, proof, jiff::Timestamp::now().as_second())
        });
    drop(keys);
    // Every object is looked at: off the async thread.
    let users = tokio::task::spawn_blocking(move || {
        let mut tally = crate::keys::users::Tally::new(id);
        store.each_use(Some(epoch), |k, u| tally.add(k, u));
        tally.finish()
    })
    .await;
    let Ok(users) = users else {
        return reject(StatusCode::INTERNAL_SERVER_ERROR, "counting failed").into_response();
    };
    let names = |keys: &[crate::state::store::Key]| {
        if admin {
            keys.iter().map(|k| k.to_string()).collect::<Vec<_>>()
        } else {
            Vec::new()
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({
            "key": id.to_string(),
            "count": users.count,
            "objects": names(&users.objects),
            "pending": users.pending,
            "pendingObjects": names(&users.pending_objects),
            "names": admin,
        })
        .to_string(),
    )
        .into_response()
}

const PLACE_REQUIRED: &str = "metadata.name and metadata.namespace are required";

/// Parses a SealedSecret from a request body, with a short reason on failure.
fn parse_sealed(value: serde_json::Value) -> Result<SealedSecret, Reject> {
    let s = match read_sealed_secret(value) {
        Ok(Some(s)) => s,
        Ok(None) | Err(ReadSealedError::UnknownVersion(_)) => {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "expected a coffer.dev/v1alpha1 SealedSecret",
            ));
        }
        Err(ReadSealedError::Invalid(_)) => {
            return Err(reject(StatusCode::BAD_REQUEST, "not a valid SealedSecret"));
        }
        Err(ReadSealedError::NoName) => {
            return Err(reject(StatusCode::BAD_REQUEST, PLACE_REQUIRED));
        }
    };
    has_place_and_values(
        s.metadata.namespace.as_deref(),
        s.spec.encrypted_data.is_empty(),
    )?;
    Ok(s)
}

/// What `/v1/reencrypt` and `/v1/bitnami/convert` need of a SealedSecret
/// besides its name: a namespace and at least one value.
fn has_place_and_values(namespace: Option<&str>, no_values: bool) -> Result<(), Reject> {
    if namespace.unwrap_or("").is_empty() {
        return Err(reject(StatusCode::BAD_REQUEST, PLACE_REQUIRED));
    }
    if no_values {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "spec.encryptedData is empty",
        ));
    }
    Ok(())
}

/// A POST body as JSON (admission, by [`admit`], is already done).
fn parse_json(body: &[u8]) -> Result<serde_json::Value, Reject> {
    serde_json::from_slice(body)
        .map_err(|_| reject(StatusCode::BAD_REQUEST, "body is not valid JSON"))
}

/// A `POST /v1/verify` body as the handler reads it: a JSON SealedSecret.
/// Pure (no state, no key), so the `http_body` fuzz target runs exactly
/// this; the handler checks the rate limit and readiness first.
pub fn parse_verify_body(body: &[u8]) -> Result<SealedSecret, Reject> {
    parse_json(body).and_then(parse_sealed)
}

/// A `POST /v1/reencrypt` body as the handler reads it: a JSON
/// SealedSecret, or `{"sealedSecret": …, "additionalRecipients": […]}`.
/// Returns the SealedSecret and the parsed additional recipients. Pure, like
/// [`parse_verify_body`].
pub fn parse_reencrypt_body(body: &[u8]) -> Result<(SealedSecret, Vec<PublicKey>), Reject> {
    let value = parse_json(body)?;
    let (sealed_value, extra) = if value.get("sealedSecret").is_some() {
        let r = serde_json::from_value::<ReencryptRequest>(value)
            .map_err(|_| reject(StatusCode::BAD_REQUEST, "not a valid re-encryption request"))?;
        (r.sealed_secret, r.additional_recipients)
    } else {
        (value, Vec::new())
    };
    let sealed = parse_sealed(sealed_value)?;
    let mut extra_keys = Vec::new();
    for r in &extra {
        let k = r.parse::<PublicKey>().map_err(|_| {
            reject(
                StatusCode::BAD_REQUEST,
                "additionalRecipients holds something that is not an age1 recipient",
            )
        })?;
        extra_keys.push(k);
    }
    Ok((sealed, extra_keys))
}

/// 200 when every value opens where the SealedSecret says it is and the
/// controller would write its Secret type, 409 when not. Nothing else is
/// revealed: no reason, no item.
async fn verify(State(state): State<Shared>, body: Bytes) -> Response {
    let sealed = match parse_verify_body(&body) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    // The type first, as reconcile does: a refused type costs no decryption.
    let type_ = sealed
        .spec
        .template
        .as_ref()
        .and_then(|t| t.type_.as_deref());
    let opens = if state.opening.secret_types.check(type_).is_err() {
        false
    } else {
        let ring = state.keys.current().ring.clone();
        state
            .opening
            .pool
            .run(move || unseal(&sealed.view(), &ring).is_ok())
            .await
    };
    if opens {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"opens\":true}",
        )
            .into_response()
    } else {
        (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"opens\":false}",
        )
            .into_response()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReencryptRequest {
    sealed_secret: serde_json::Value,
    /// Recipients of other clusters the values are also sealed to. Only
    /// those whose key id a value already names are used: re-encryption
    /// never adds a reader.
    #[serde(default)]
    additional_recipients: Vec<String>,
}

/// The same SealedSecret with every value sealed to the active key (plus the
/// other clusters it was sealed to), each keeping exactly the binding of its
/// authenticated header.
async fn reencrypt(State(state): State<Shared>, body: Bytes) -> Response {
    let (sealed, extra_keys) = match parse_reencrypt_body(&body) {
        Ok(parsed) => parsed,
        Err(r) => return r.into_response(),
    };
    let keys = state.keys.current();
    let Some(active) = keys.active().map(|a| a.public.clone()) else {
        return reject(StatusCode::SERVICE_UNAVAILABLE, "no active key yet").into_response();
    };
    let held: BTreeSet<KeyId> = keys.keys.iter().map(|k| k.id).collect();
    let ring = keys.ring.clone();
    let result = state
        .opening
        .pool
        .run(move || reencrypt_values(sealed, &ring, &active, &held, &extra_keys))
        .await;
    match result {
        Ok(s) => json_ok(&s),
        Err(e) => Reject::from(e).into_response(),
    }
}

/// `200` with `value` as JSON; `500` (never a `200` with an empty body)
/// if it cannot be serialised.
fn json_ok(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(_) => reject(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the answer could not be written",
        )
        .into_response(),
    }
}

/// A `POST /v1/bitnami/convert` body as the handler reads it: a JSON
/// bitnami SealedSecret with a name and a namespace. Pure, like
/// [`parse_verify_body`].
pub fn parse_bitnami_body(
    body: &[u8],
) -> Result<coffer_core::bitnami::BitnamiSealedSecret, Reject> {
    let value = parse_json(body)?;
    let s = match coffer_core::bitnami::read_sealed_secret(value) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "expected a bitnami.com/v1alpha1 SealedSecret",
            ));
        }
        Err(_) => {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "not a valid bitnami SealedSecret",
            ));
        }
    };
    has_place_and_values(
        s.metadata.namespace.as_deref(),
        s.spec.encrypted_data.is_empty(),
    )?;
    Ok(s)
}

/// bitnami's SealedSecret as a Coffer SealedSecret: the same values sealed
/// to the active key with the same scope, for the same place, with the
/// same template. As `/v1/reencrypt`, it says only whether values open
/// (409), never why, and no value changes its scope or place.
async fn bitnami_convert(State(state): State<Shared>, body: Bytes) -> Response {
    let Some(bitnami_keys) = state.bitnami.clone() else {
        return reject(
            StatusCode::NOT_FOUND,
            "bitnami support is off: start the controller with --bitnami",
        )
        .into_response();
    };
    let sealed = match parse_bitnami_body(&body) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(active) = state.keys.current().active().map(|a| a.public.clone()) else {
        return reject(StatusCode::SERVICE_UNAVAILABLE, "no active key yet").into_response();
    };
    let keys = bitnami_keys.current();
    let result = state
        .opening
        .pool
        .run(move || coffer_core::bitnami::convert(&sealed, &keys, &[active]))
        .await;
    use coffer_core::bitnami::{BitnamiConvertError, BitnamiUnsealError};
    match result {
        Ok(s) => json_ok(&s),
        Err(BitnamiConvertError::Unseal(
            e @ (BitnamiUnsealError::LegacyData | BitnamiUnsealError::TemplateData),
        )) => reject(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()).into_response(),
        Err(e) if e.reason() == coffer_core::reason::Reason::Malformed => {
            reject(StatusCode::BAD_REQUEST, "a value is malformed").into_response()
        }
        Err(_) => reject(StatusCode::CONFLICT, "a value does not open here").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_cannot_be_serialised_is_a_500_not_an_empty_200() {
        // JSON object keys must be strings: bytes as keys do not serialise.
        let bad: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1u8], 1u8)].into();
        assert_eq!(json_ok(&bad).status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            json_ok(&serde_json::json!({"a": 1})).status(),
            StatusCode::OK
        );
    }
}
