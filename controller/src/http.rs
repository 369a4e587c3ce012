//! The HTTP listener: health, readiness, metrics, and the public side of the
//! key ring. Nothing here can change keys, and no response or log line
//! carries a plaintext byte.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use coffer_core::envelope::{self, OpenError};
use coffer_core::transform::{MAX_ITEMS, unseal};
use coffer_core::{KeyId, Location, PublicKey, SealedSecret};
use serde::Deserialize;

use crate::keys::Keys;
use crate::metrics::{HttpLabel, Metrics};
use crate::secret_types::SecretTypePolicy;

/// Largest request body: a SealedSecret holds at most about 1.4 MiB of base64.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// What the handlers share.
pub struct HttpState {
    pub keys: Arc<Keys>,
    pub metrics: Arc<Metrics>,
    /// Set once the key ring's watch has synced and an active key exists.
    pub ready: Arc<AtomicBool>,
    pub cluster_name: Option<String>,
    pub limiter: ClientLimiter,
    /// `/v1/verify` says "does not open here" for a type the controller
    /// refuses to write, as reconcile would.
    pub secret_types: Arc<SecretTypePolicy>,
}

/// A token bucket per client address for the POST endpoints.
pub struct ClientLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl ClientLimiter {
    pub fn new(rate: f64, burst: u32) -> Self {
        ClientLimiter {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` may make one more request now.
    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() > 10_000 {
            // Bounded memory: forget idle clients.
            map.retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(60));
        }
        let (tokens, last) = map.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

type Shared = Arc<HttpState>;

/// The router.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/recipients", get(recipients))
        .route("/v1/verify", post(verify))
        .route("/v1/reencrypt", post(reencrypt))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "HTTP listening");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

async fn count(
    State(state): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = match req.uri().path() {
        p @ ("/healthz" | "/readyz" | "/metrics" | "/v1/recipients" | "/v1/verify"
        | "/v1/reencrypt") => p,
        _ => "other",
    }
    .to_string();
    let resp = next.run(req).await;
    state
        .metrics
        .http
        .get_or_create(&HttpLabel {
            path,
            code: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}

async fn readyz(State(state): State<Shared>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the key ring is not loaded yet\n",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
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

/// A refusal: a status code and a short reason, sent as `{"error": …}`.
pub struct Reject(StatusCode, String);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": self.1 }).to_string(),
        )
            .into_response()
    }
}

impl Reject {
    /// The status code the refusal is sent with.
    pub fn status(&self) -> StatusCode {
        self.0
    }
}

fn reject(code: StatusCode, reason: &str) -> Reject {
    Reject(code, reason.to_string())
}

/// Parses a SealedSecret from a request body, with a short reason on failure.
fn parse_sealed(value: serde_json::Value) -> Result<SealedSecret, Reject> {
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let api = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or("");
    if kind != "SealedSecret" || api != "coffer.dev/v1alpha1" {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "expected a coffer.dev/v1alpha1 SealedSecret",
        ));
    }
    let s: SealedSecret = serde_json::from_value(value)
        .map_err(|_| reject(StatusCode::BAD_REQUEST, "not a valid SealedSecret"))?;
    if s.metadata.name.as_deref().unwrap_or("").is_empty()
        || s.metadata.namespace.as_deref().unwrap_or("").is_empty()
    {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "metadata.name and metadata.namespace are required",
        ));
    }
    if s.spec.encrypted_data.is_empty() {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "spec.encryptedData is empty",
        ));
    }
    Ok(s)
}

fn guard(state: &HttpState, addr: SocketAddr) -> Option<Reject> {
    if !state.limiter.allow(addr.ip()) {
        return Some(reject(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded; slow down",
        ));
    }
    if !state.ready.load(Ordering::Acquire) {
        return Some(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "key ring not loaded yet",
        ));
    }
    None
}

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
async fn verify(
    State(state): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    if let Some(r) = guard(&state, addr) {
        return r.into_response();
    }
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
    let opens = if state.secret_types.check(type_).is_err() {
        false
    } else {
        let ring = state.keys.current().ring.clone();
        tokio::task::spawn_blocking(move || unseal(&sealed, &ring).is_ok())
            .await
            .unwrap_or(false)
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
async fn reencrypt(
    State(state): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    if let Some(r) = guard(&state, addr) {
        return r.into_response();
    }
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
    let result = tokio::task::spawn_blocking(move || {
        reencrypt_values(sealed, &ring, &active, &held, &extra_keys)
    })
    .await;
    match result {
        Ok(Ok(s)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&s).unwrap_or_default(),
        )
            .into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(_) => reject(StatusCode::INTERNAL_SERVER_ERROR, "re-encryption failed").into_response(),
    }
}

/// Re-encrypts every value of `sealed` to `active` (plus those of `extra`
/// whose key ids a value already names, for keys not `held`). Pure apart
/// from the sealing randomness; the handler runs it on a blocking thread,
/// the `http_body` fuzz target directly.
pub fn reencrypt_values(
    mut sealed: SealedSecret,
    ring: &coffer_core::Keyring,
    active: &PublicKey,
    held: &BTreeSet<KeyId>,
    extra: &[PublicKey],
) -> Result<SealedSecret, Reject> {
    // As verify (and reconcile) refuse it: a body of 2 MiB holds about three
    // times as many values, each costing an unwrap and a sealing.
    if sealed.spec.encrypted_data.len() > MAX_ITEMS {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            &format!("more than {MAX_ITEMS} items; a SealedSecret holds at most that many"),
        ));
    }
    let ns = sealed.metadata.namespace.clone().unwrap_or_default();
    let name = sealed.metadata.name.clone().unwrap_or_default();
    let mut out = std::collections::BTreeMap::new();
    for (key, value) in &sealed.spec.encrypted_data {
        let (env, _) = envelope::inspect(value)
            .map_err(|_| reject(StatusCode::BAD_REQUEST, "a value is malformed"))?;
        let opened = match envelope::open_unchecked(value, ring) {
            Ok(o) => o,
            Err(
                OpenError::TooLarge { .. }
                | OpenError::Base64
                | OpenError::Malformed(_)
                | OpenError::TooManyStanzas { .. },
            ) => {
                return Err(reject(StatusCode::BAD_REQUEST, "a value is malformed"));
            }
            Err(_) => return Err(reject(StatusCode::CONFLICT, "a value does not open here")),
        };
        // Only values that open where they are found are re-encrypted, as
        // verify would say.
        if !opened.binding.allows(Location {
            namespace: &ns,
            name: &name,
            key,
        }) {
            return Err(reject(StatusCode::CONFLICT, "a value does not open here"));
        }
        let foreign: Vec<KeyId> = env
            .key_ids
            .iter()
            .copied()
            .filter(|k| !held.contains(k))
            .collect();
        let mut to = vec![active.clone()];
        for k in &foreign {
            match extra.iter().find(|e| e.id() == *k) {
                Some(e) => to.push(e.clone()),
                None => {
                    return Err(reject(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &format!(
                            "a value is also sealed to key {k}, which this cluster does not hold; pass that cluster's recipients file"
                        ),
                    ));
                }
            }
        }
        let resealed = envelope::reseal(&opened, &to)
            .map_err(|_| reject(StatusCode::INTERNAL_SERVER_ERROR, "sealing failed"))?;
        out.insert(key.clone(), resealed);
    }
    sealed.spec.encrypted_data = out;
    sealed.status = None;
    sealed.metadata.managed_fields = None;
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found while writing the `http_body` fuzz target's property "anything
    /// re-encrypted would verify": verify refuses more than `MAX_ITEMS`
    /// items (409), but re-encryption sealed them all again. Now it refuses
    /// them too, before opening any.
    #[test]
    fn reencryption_refuses_more_items_than_verify_accepts() {
        use coffer_core::{Keyring, Scope, SealedSecretSpec, SecretKey, seal};
        let key = SecretKey::generate();
        let ring = Keyring::from_keys([key.clone()]);
        let held: BTreeSet<KeyId> = [key.id()].into();
        let to = [key.public().clone()];
        let encrypted_data = (0..=MAX_ITEMS)
            .map(|i| {
                let item = format!("k{i}");
                let at = Location {
                    namespace: "shop",
                    name: "db",
                    key: &item,
                };
                (item.clone(), seal(b"v", Scope::Strict, at, &to).unwrap())
            })
            .collect();
        let mut sealed = SealedSecret::new(
            "db",
            SealedSecretSpec {
                encrypted_data,
                template: None,
            },
        );
        sealed.metadata.namespace = Some("shop".into());
        assert!(unseal(&sealed, &ring).is_err(), "verify says no");
        match reencrypt_values(sealed, &ring, key.public(), &held, &[]) {
            Err(r) => assert_eq!(r.status(), StatusCode::BAD_REQUEST),
            Ok(_) => panic!("re-encryption said yes"),
        }
    }

    #[test]
    fn limiter_allows_a_burst_then_refuses() {
        let l = ClientLimiter::new(1.0, 3);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..3).all(|_| l.allow(ip)));
        assert!(!l.allow(ip));
        assert!(l.allow("127.0.0.2".parse().unwrap()));
    }
}
