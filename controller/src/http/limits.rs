//! The listeners' limits: connections per client address and in all, the
//! budget of request bodies held at once, per-client request rates, write
//! deadlines, and reading a body within them. What a handler sees has
//! passed all of them.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Buf;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt as _;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tower::Service as _;

use crate::client::ratelimit::TokenBucket;
use crate::http::reject::{Reject, reject};
use crate::metrics::Metrics;

/// Largest request body: a SealedSecret holds at most about 1.4 MiB of base64.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// What one connection buffers at most: a request's headers must fit (431
/// otherwise), and body and response bytes pass through in pieces of at most
/// this size. hyper's default, about 400 KiB, let slow clients grow the
/// process by that much each.
pub const CONN_BUF: usize = 16 * 1024;

/// How long the handlers of the POST endpoints may take once the body is in.
pub(crate) const HANDLER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections open at once on the probe listener.
pub const PROBE_MAX_CONNECTIONS: usize = 32;

/// Connections open at once on the probe listener from one address.
pub const PROBE_MAX_CONNECTIONS_PER_CLIENT: usize = 8;

/// Longest a probe's head may take to arrive (the kubelet sends it at once).
pub(crate) const PROBE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// What a chunked body is charged before any of it is read: the first
/// buffer it is read into. It then grows, charged as it does.
pub const CHUNKED_START: usize = CONN_BUF;

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
pub(crate) struct BudgetHeld {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Which bound a charge did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spent {
    /// The budget over all clients.
    Total,
    /// The client address's share.
    Client,
}

impl BodyBudget {
    pub(crate) fn new(limits: &Limits, gauge: Gauge) -> Arc<Self> {
        Arc::new(BodyBudget {
            total: limits.body_budget,
            per_client: limits.body_budget_per_client.min(limits.body_budget),
            held: Mutex::new(BudgetHeld::default()),
            gauge,
        })
    }

    /// An empty charge for a request from `ip`.
    pub(crate) fn charge(self: &Arc<Self>, ip: IpAddr) -> Charge {
        Charge {
            budget: self.clone(),
            ip,
            bytes: 0,
        }
    }
}

/// A request's bytes of the body budget, given back when dropped.
pub(crate) struct Charge {
    budget: Arc<BodyBudget>,
    ip: IpAddr,
    bytes: usize,
}

impl Charge {
    /// Takes `n` more bytes if both the budget and the address's share have
    /// them; takes nothing otherwise.
    pub(crate) fn grow(&mut self, n: usize) -> Result<(), Spent> {
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
pub(crate) fn busy(spent: Spent) -> Reject {
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
pub(crate) fn retry_soon(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    resp
}

/// Open connections per client address. Holds an entry only for addresses
/// with a connection open, so at most `max_connections` entries.
pub(crate) struct PerClient {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of a client; counted until dropped.
pub(crate) struct ClientSlot {
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

/// The accept loop of one listener: at most `limits.max_connections` open,
/// `limits.max_connections_per_client` from one address. Connections are
/// counted in `metrics` when given (the main port's).
pub(crate) async fn accept(
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
pub(crate) struct WriteDeadline<S> {
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

/// Most body bytes read and thrown away after a refusal.
pub(crate) const DRAIN_LIMIT: usize = 2 * MAX_BODY;

/// Answers `r` at once, without keeping any of the request's body. The
/// body, if one is coming, is discarded ([`discard`]). A client that waits
/// for `100 Continue` sends no body and is not waited for.
pub(crate) fn refuse(req: Request, r: Reject, within: Duration) -> Response {
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
pub(crate) fn discard(mut body: Body, within: Duration) {
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
pub(crate) async fn read_body(
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
pub(crate) struct Held {
    pub(crate) rest: Bytes,
    pub(crate) charge: Option<Charge>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
