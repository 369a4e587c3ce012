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

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Buf;
use coffer_core::SealedSecret;
use coffer_core::api::{ReadSealedError, read_sealed_secret};
use coffer_core::transform::{MAX_ITEMS, unseal};
use coffer_format::envelope::{self, OpenError};
use coffer_format::{KeyId, Location, PublicKey};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt as _;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tower::Service as _;

use crate::bitnami::BitnamiKeys;
use crate::key_secrets::Keys;
use crate::metrics::Metrics;
use crate::pool::UnsealPool;
use crate::ratelimit::TokenBucket;
use crate::secret_types::SecretTypePolicy;

/// Largest request body: a SealedSecret holds at most about 1.4 MiB of base64.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// What one connection buffers at most: a request's headers must fit (431
/// otherwise), and body and response bytes pass through in pieces of at most
/// this size. hyper's default, about 400 KiB, let slow clients grow the
/// process by that much each.
pub const CONN_BUF: usize = 16 * 1024;

/// How long the handlers of the POST endpoints may take once the body is in.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(10);

/// The bounds on what clients can make the HTTP side hold; the flags
/// `--http-*` set them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more wait unaccepted.
    pub max_connections: usize,
    /// Connections open at once from one client address; more are closed
    /// unserved. 0: no limit but `max_connections`.
    pub max_connections_per_client: usize,
    /// Time for a request's headers to arrive, counted from the connection's
    /// start or the end of the previous response (so also the longest a
    /// keep-alive connection idles).
    pub header_timeout: Duration,
    /// Time for a POST body to arrive, and the longest a response write may
    /// make no progress.
    pub body_timeout: Duration,
    /// Bytes of request bodies held at once, over all requests.
    pub body_budget: usize,
    /// Bytes of request bodies held at once for one client address (at most
    /// `body_budget`): however many connections it opens, one address
    /// cannot take the whole budget from the others.
    pub body_budget_per_client: usize,
}

impl Default for Limits {
    /// The documented defaults of the flags.
    fn default() -> Self {
        Limits {
            max_connections: 512,
            max_connections_per_client: 64,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            body_budget: 8 * 1024 * 1024,
            body_budget_per_client: 2 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// The probe listener's: a small cap of its own, a few connections per
    /// address (the kubelet probes from its node's address, one connection
    /// a probe), and heads that come at once.
    pub fn probes(&self) -> Limits {
        Limits {
            max_connections: PROBE_MAX_CONNECTIONS,
            max_connections_per_client: PROBE_MAX_CONNECTIONS_PER_CLIENT,
            header_timeout: self.header_timeout.min(PROBE_HEADER_TIMEOUT),
            ..self.clone()
        }
    }
}

/// Connections open at once on the probe listener.
pub const PROBE_MAX_CONNECTIONS: usize = 32;
/// Connections open at once on the probe listener from one address.
pub const PROBE_MAX_CONNECTIONS_PER_CLIENT: usize = 8;
/// Longest a probe's head may take to arrive (the kubelet sends it at once).
const PROBE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// What a chunked body is charged before any of it is read: the first
/// buffer it is read into. It then grows, charged as it does.
pub const CHUNKED_START: usize = CONN_BUF;

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
        }
    }

    /// Serves `POST /v1/bitnami/convert` with these keys.
    pub fn with_bitnami(mut self, keys: Arc<BitnamiKeys>) -> Self {
        self.bitnami = Some(keys);
        self
    }
}

/// A token bucket per client address for the POST endpoints.
pub struct ClientLimiter {
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl ClientLimiter {
    pub fn new(rate: f64, burst: u32) -> Self {
        ClientLimiter {
            rate,
            burst,
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
            map.retain(|_, b| now.duration_since(b.last_used()) < Duration::from_secs(60));
        }
        map.entry(ip)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now))
            .take_spare(now)
            .is_ok()
    }
}

/// Bytes of request bodies held, over all clients and per client address.
/// Holds an entry only for addresses with bytes charged, so at most one per
/// open connection.
pub struct BodyBudget {
    total: usize,
    per_client: usize,
    held: Mutex<BudgetHeld>,
    /// `coffer_http_body_bytes`: the bytes held now.
    gauge: Gauge,
}

#[derive(Default)]
struct BudgetHeld {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Which bound a charge did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spent {
    /// The budget over all clients.
    Total,
    /// The client address's share.
    Client,
}

impl BodyBudget {
    fn new(limits: &Limits, gauge: Gauge) -> Arc<Self> {
        Arc::new(BodyBudget {
            total: limits.body_budget,
            per_client: limits.body_budget_per_client.min(limits.body_budget),
            held: Mutex::new(BudgetHeld::default()),
            gauge,
        })
    }

    /// An empty charge for a request from `ip`.
    fn charge(self: &Arc<Self>, ip: IpAddr) -> Charge {
        Charge {
            budget: self.clone(),
            ip,
            bytes: 0,
        }
    }
}

/// A request's bytes of the body budget, given back when dropped.
struct Charge {
    budget: Arc<BodyBudget>,
    ip: IpAddr,
    bytes: usize,
}

impl Charge {
    /// Takes `n` more bytes if both the budget and the address's share have
    /// them; takes nothing otherwise.
    fn grow(&mut self, n: usize) -> Result<(), Spent> {
        if n == 0 {
            return Ok(());
        }
        let b = &*self.budget;
        let mut held = b.held.lock().unwrap_or_else(|e| e.into_inner());
        let mine = held.by_client.get(&self.ip).copied().unwrap_or(0);
        if mine + n > b.per_client {
            return Err(Spent::Client);
        }
        if held.total + n > b.total {
            return Err(Spent::Total);
        }
        held.total += n;
        *held.by_client.entry(self.ip).or_insert(0) += n;
        self.bytes += n;
        b.gauge.set(i64::try_from(held.total).unwrap_or(i64::MAX));
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let b = &*self.budget;
        let mut held = b.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total -= self.bytes;
        if let Some(n) = held.by_client.get_mut(&self.ip) {
            *n -= self.bytes;
            if *n == 0 {
                held.by_client.remove(&self.ip);
            }
        }
        b.gauge.set(i64::try_from(held.total).unwrap_or(i64::MAX));
    }
}

/// The 429 for a charge that does not fit.
fn busy(spent: Spent) -> Reject {
    reject(
        StatusCode::TOO_MANY_REQUESTS,
        match spent {
            Spent::Total => "server busy: too many request bodies in flight; retry",
            Spent::Client => {
                "server busy: too many request bodies in flight from this address; retry"
            }
        },
    )
}

/// Adds `Retry-After: 1` to a 429 for a spent budget.
fn retry_soon(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    resp
}

/// Open connections per client address. Holds an entry only for addresses
/// with a connection open, so at most `max_connections` entries.
struct PerClient {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of a client; counted until dropped.
struct ClientSlot {
    owner: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

type Shared = Arc<HttpState>;

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
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/recipients", get(recipients))
        .route("/v1/keys/{id}/users", get(key_users))
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

/// The accept loop of one listener: at most `limits.max_connections` open,
/// `limits.max_connections_per_client` from one address. Connections are
/// counted in `metrics` when given (the main port's).
async fn accept(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &Limits,
    metrics: Option<Arc<Metrics>>,
    what: &'static str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_client = Arc::new(PerClient {
        max: limits.max_connections_per_client,
        open: Mutex::new(HashMap::new()),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(CONN_BUF)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tracing::info!(addr = %listener.local_addr()?, listener = what, "HTTP listening");
    tokio::pin!(shutdown);
    loop {
        // A free slot first: beyond the cap, connections wait in the
        // kernel's accept queue and cost this process nothing.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Per-connection failures (aborted before accept) are
                    // harmless; running out of descriptors needs a pause.
                    tracing::debug!(error = %e, listener = what, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let Some(client) = per_client.enter(peer.ip()) else {
            if let Some(m) = &metrics {
                m.http_connections_refused.inc();
            }
            tracing::debug!(client = %peer.ip(), listener = what, "too many HTTP connections from one address; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(WriteDeadline::new(stream, limits.body_timeout));
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(req.map(Body::new))
        });
        let conn = graceful.watch(builder.serve_connection(io, service));
        let metrics = metrics.clone();
        if let Some(m) = &metrics {
            m.http_connections.inc();
        }
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            if let Some(m) = &metrics {
                m.http_connections.dec();
            }
            drop((slot, client));
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A connection whose writes fail once they have made no progress for
/// `limit`: a client that stops reading cannot keep its response, and the
/// body budget that response holds, forever.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Running while a write is pending.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After the inner write returned `Pending`: an error once the stall
    /// has lasted `limit`.
    fn check<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        p: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match p {
            Poll::Pending => self.check(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(p, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(p, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let p = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(p, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let p = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(p, cx)
    }
}

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

/// Most body bytes read and thrown away after a refusal.
const DRAIN_LIMIT: usize = 2 * MAX_BODY;

/// Answers `r` at once, without keeping any of the request's body. The
/// body, if one is coming, is discarded ([`discard`]). A client that waits
/// for `100 Continue` sends no body and is not waited for.
fn refuse(req: Request, r: Reject, within: Duration) -> Response {
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let body = req.into_body();
    if !expects_continue {
        discard(body, within);
    }
    r.into_response()
}

/// Reads the rest of a refused request's body and throws it away, after
/// the answer (at most [`DRAIN_LIMIT`] bytes, for at most `within`): a
/// client still sending it would otherwise have its connection reset and
/// might never see the answer.
fn discard(mut body: Body, within: Duration) {
    let hint = body.size_hint();
    let coming = hint.upper() != Some(0) && hint.lower() <= DRAIN_LIMIT as u64;
    if coming {
        tokio::spawn(tokio::time::timeout(within, async move {
            let mut seen = 0;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, Bytes::len);
                if seen > DRAIN_LIMIT {
                    break;
                }
            }
        }));
    }
}

/// Reads a body of at most [`MAX_BODY`] bytes into one buffer. A body of
/// `declared` length was charged in full and is read into a buffer of that
/// size; a chunked one was charged [`CHUNKED_START`], and its buffer
/// doubles as it fills, each growth charged to `charge` first (429 when the
/// budget or the address's share cannot take it).
async fn read_body(
    body: &mut Body,
    charge: &mut Charge,
    declared: Option<usize>,
) -> Result<Bytes, Reject> {
    let mut buf: Vec<u8> = Vec::with_capacity(declared.unwrap_or(CHUNKED_START));
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|_| reject(StatusCode::BAD_REQUEST, "could not read the request body"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let need = buf.len() + data.len();
        if need > MAX_BODY {
            return Err(reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body larger than 2 MiB",
            ));
        }
        if need > charge.bytes {
            // Only a chunked body grows (hyper ends a declared one at its
            // length): to twice its buffer, or what this piece needs.
            let to = need.max(2 * charge.bytes).min(MAX_BODY);
            charge.grow(to - charge.bytes).map_err(busy)?;
            buf.reserve_exact(to - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}

/// A response body handed out in pieces of [`CONN_BUF`] (so the connection
/// never buffers more than that of it), holding its request's charge to the
/// body budget until the last piece is taken.
struct Held {
    rest: Bytes,
    charge: Option<Charge>,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            self.charge = None;
            return Poll::Ready(None);
        }
        // A copy, so no piece keeps the whole buffer alive.
        let n = self.rest.len().min(CONN_BUF);
        let piece = Bytes::copy_from_slice(&self.rest[..n]);
        self.rest.advance(n);
        if self.rest.is_empty() {
            self.rest = Bytes::new();
            self.charge = None;
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
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

async fn healthz() -> &'static str {
    "ok\n"
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
/// current key ring: they may need any key. See crate::key_users. Reads no
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
        let mut tally = crate::key_users::Tally::new(id);
        store.each_use(Some(epoch), |k, u| tally.add(k, u));
        tally.finish()
    })
    .await;
    let Ok(users) = users else {
        return reject(StatusCode::INTERNAL_SERVER_ERROR, "counting failed").into_response();
    };
    let names = |keys: &[crate::store::Key]| {
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
        Err(r) => r.into_response(),
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
        Err(e) if e.reason() == "Malformed" => {
            reject(StatusCode::BAD_REQUEST, "a value is malformed").into_response()
        }
        Err(_) => reject(StatusCode::CONFLICT, "a value does not open here").into_response(),
    }
}

/// Re-encrypts every value of `sealed` to `active` (plus those of `extra`
/// whose key ids a value already names, for keys not `held`). Pure apart
/// from the sealing randomness; the handler runs it on a blocking thread,
/// the `http_body` fuzz target directly.
pub fn reencrypt_values(
    mut sealed: SealedSecret,
    ring: &coffer_format::Keyring,
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

    /// Found while writing the `http_body` fuzz target's property "anything
    /// re-encrypted would verify": verify refuses more than `MAX_ITEMS`
    /// items (409), but re-encryption sealed them all again. Now it refuses
    /// them too, before opening any.
    #[test]
    fn reencryption_refuses_more_items_than_verify_accepts() {
        use coffer_core::SealedSecretSpec;
        use coffer_format::{Keyring, Scope, SecretKey, seal};
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
                ..Default::default()
            },
        );
        sealed.metadata.namespace = Some("shop".into());
        assert!(unseal(&sealed.view(), &ring).is_err(), "verify says no");
        match reencrypt_values(sealed, &ring, key.public(), &held, &[]) {
            Err(r) => assert_eq!(r.status(), StatusCode::BAD_REQUEST),
            Ok(_) => panic!("re-encryption said yes"),
        }
    }

    /// Moving to post-quantum keys through `/v1/reencrypt`: a value sealed
    /// to this cluster's X25519 key and another cluster's post-quantum key
    /// comes back sealed to this cluster's new post-quantum key and the
    /// other cluster's key (given as an `age1pq1…` additional recipient),
    /// with the same binding, and post-quantum as a whole.
    #[test]
    fn reencryption_moves_values_to_a_post_quantum_active_key() {
        use coffer_core::SealedSecretSpec;
        use coffer_format::key::KeyKind;
        use coffer_format::{Keyring, Scope, SecretKey, seal};
        let old = SecretKey::generate();
        let new = SecretKey::generate_kind(KeyKind::MlKem768X25519);
        let other_cluster = SecretKey::generate_kind(KeyKind::MlKem768X25519);
        let ring = Keyring::from_keys([old.clone(), new.clone()]);
        let held: BTreeSet<KeyId> = [old.id(), new.id()].into();
        let at = Location {
            namespace: "shop",
            name: "db",
            key: "password",
        };
        let value = seal(
            b"v",
            Scope::Strict,
            at,
            &[old.public().clone(), other_cluster.public().clone()],
        )
        .unwrap();
        let mut sealed = SealedSecret::new(
            "db",
            SealedSecretSpec {
                encrypted_data: [("password".to_string(), value)].into(),
                template: None,
                ..Default::default()
            },
        );
        sealed.metadata.namespace = Some("shop".into());
        let extra: Vec<PublicKey> = vec![other_cluster.public().to_string().parse().unwrap()];
        let out = reencrypt_values(sealed, &ring, new.public(), &held, &extra)
            .unwrap_or_else(|r| panic!("refused: {}", r.status()));
        let resealed = &out.spec.encrypted_data["password"];
        let (env, _) = envelope::inspect(resealed).unwrap();
        assert_eq!(env.key_ids, [new.id(), other_cluster.id()]);
        assert!(env.post_quantum());
        for k in [&new, &other_cluster] {
            let ring = Keyring::from_keys([k.clone()]);
            assert_eq!(
                coffer_format::open(resealed, at, &ring).unwrap().as_slice(),
                b"v"
            );
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

    #[tokio::test]
    async fn a_write_that_makes_no_progress_fails_after_the_limit() {
        use tokio::io::AsyncWriteExt as _;
        // A peer that never reads: 64 bytes fit, the next one waits forever.
        let (conn, _peer) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(conn, Duration::from_millis(100));
        w.write_all(&[0; 64]).await.unwrap();
        let err = tokio::time::timeout(Duration::from_secs(20), w.write_all(&[0; 1]))
            .await
            .expect("a stalled write was waited for without end")
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }

    fn budget(total: usize, per_client: usize) -> Arc<BodyBudget> {
        BodyBudget::new(
            &Limits {
                body_budget: total,
                body_budget_per_client: per_client,
                ..Limits::default()
            },
            Gauge::default(),
        )
    }

    fn held(b: &BodyBudget) -> usize {
        b.held.lock().unwrap().total
    }

    #[test]
    fn a_response_leaves_in_pieces_and_gives_the_budget_back_with_the_last() {
        let budget = budget(10, 10);
        let mut charge = budget.charge("127.0.0.1".parse().unwrap());
        charge.grow(10).unwrap();
        let mut body = Held {
            rest: Bytes::from(vec![7u8; 2 * CONN_BUF + 1]),
            charge: Some(charge),
        };
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut sizes = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            sizes.push(frame.into_data().unwrap().len());
            if sizes.len() < 3 {
                assert_eq!(held(&budget), 10, "given back early");
            }
        }
        assert_eq!(sizes, [CONN_BUF, CONN_BUF, 1]);
        assert_eq!(held(&budget), 0);
    }

    /// One address takes at most its share, whatever the budget has left;
    /// other addresses take the rest; a refused charge takes nothing, and
    /// every byte comes back when the charges go.
    #[test]
    fn a_charge_must_fit_the_budget_and_the_address_share() {
        let budget = budget(10, 4);
        let (a, b, c) = (
            "127.0.0.2".parse().unwrap(),
            "127.0.0.3".parse().unwrap(),
            "127.0.0.4".parse().unwrap(),
        );
        let mut a1 = budget.charge(a);
        let mut a2 = budget.charge(a);
        a1.grow(3).unwrap();
        assert_eq!(a2.grow(2), Err(Spent::Client));
        a2.grow(1).unwrap();
        assert_eq!(a1.grow(1), Err(Spent::Client));
        let mut b1 = budget.charge(b);
        b1.grow(4).unwrap();
        let mut c1 = budget.charge(c);
        assert_eq!(c1.grow(3), Err(Spent::Total));
        c1.grow(2).unwrap();
        assert_eq!(held(&budget), 10);
        drop(a1);
        assert_eq!(held(&budget), 7);
        let mut a3 = budget.charge(a);
        a3.grow(3).unwrap();
        drop((a2, a3, b1, c1));
        assert_eq!(held(&budget), 0);
        assert!(budget.held.lock().unwrap().by_client.is_empty());
    }
}
