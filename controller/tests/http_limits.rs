//! What a client can make the HTTP listener hold: the listener is started
//! in-process on 127.0.0.1:0 with small limits, and clients misbehave by
//! hand (`common/raw.rs`). No API server is needed.
//!
//! Every wait below is either for something that must happen (with a
//! generous bound, far above the limit under test) or for something that
//! must not happen yet (a short look, which can only make a broken server
//! look fine, never a working one look broken).

#[path = "common/raw.rs"]
mod raw;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use coffer_controller::http::{
    ClientLimiter, HttpState, Limits, MAX_BODY, Opening, serve, serve_probes,
};
use coffer_controller::keys::ring::Keys;
use coffer_controller::metrics::Metrics;
use coffer_controller::pool::UnsealPool;
use coffer_controller::reconcile::secret_types::SecretTypePolicy;
use futures::FutureExt as _;
use raw::*;
use tokio::sync::oneshot;

/// Far longer than any limit under test.
const PATIENCE: Duration = Duration::from_secs(20);
/// A look for something that must not have happened.
const GLANCE: Duration = Duration::from_millis(500);

struct Server {
    addr: SocketAddr,
    /// Where the kubelet's probes go.
    probe: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start(limits: Limits, limiter: ClientLimiter) -> Server {
    start_with(limits, limiter, Arc::new(AtomicBool::new(true))).await
}

/// The listener with `ready` as the controller's "keys loaded" flag.
async fn start_with(limits: Limits, limiter: ClientLimiter, ready: Arc<AtomicBool>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(HttpState::new(
        Keys::new(),
        Arc::new(Metrics::default()),
        ready,
        None,
        limiter,
        Opening {
            secret_types: Arc::new(SecretTypePolicy::new(&[], &[])),
            pool: UnsealPool::new(1),
        },
        limits,
    ));
    let probes = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probe = probes.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = stopped.shared();
    tokio::spawn(serve_probes(probes, state.clone(), {
        let stopped = stopped.clone();
        async move {
            let _ = stopped.await;
        }
    }));
    tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        probe,
        _stop: stop,
    }
}

fn unlimited() -> ClientLimiter {
    ClientLimiter::new(0.0, 1)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The kubelet's default probe timeout.
const KUBELET_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `coffer_http_body_bytes`, the body budget in use, as `/metrics` says it
/// (asked from an address of its own).
async fn held_body_bytes(addr: SocketAddr) -> String {
    match request_from(ip("127.0.0.9"), addr, "GET", "/metrics", b"").await {
        Answer::Response(200, text) => text
            .lines()
            .find_map(|l| l.strip_prefix("coffer_http_body_bytes "))
            .unwrap_or("absent")
            .to_string(),
        a => panic!("/metrics: {a:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_do_not_arrive_in_time_close_the_connection() {
    let s = start(
        Limits {
            header_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        unlimited(),
    )
    .await;

    // Half a request head, then nothing.
    let mut slow = connect(s.addr).await;
    send(
        &mut slow,
        b"GET /healthz HTTP/1.1\r\nHost: coffer\r\nX-Slow: a",
    )
    .await;
    assert!(
        ends_within(&mut slow, PATIENCE).await,
        "a connection with unfinished headers was kept open"
    );

    // An idle keep-alive connection is closed the same way.
    let mut idle = connect(s.addr).await;
    send(&mut idle, head("GET", "/healthz", None, true).as_bytes()).await;
    assert_eq!(answer(&mut idle, PATIENCE).await.code(), 200);
    assert!(
        ends_within(&mut idle, PATIENCE).await,
        "an idle keep-alive connection was kept open"
    );

    // Requests that come in time are served.
    assert_eq!(request(s.addr, "GET", "/healthz", b"").await.code(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_larger_than_the_connection_buffer_is_refused_not_buffered() {
    // Headers may take a minute here: only their size ends the connection.
    let s = start(
        Limits {
            header_timeout: Duration::from_secs(60),
            ..Limits::default()
        },
        unlimited(),
    )
    .await;
    let mut c = connect(s.addr).await;
    send(&mut c, b"GET /healthz HTTP/1.1\r\nHost: coffer\r\nX-Pad: ").await;
    send(&mut c, &[b'a'; 64 * 1024]).await;
    match answer(&mut c, PATIENCE).await {
        Answer::Response(code, _) => assert_eq!(code, 431),
        Answer::Closed => {}
        Answer::Nothing => panic!("64 KiB of unfinished headers were buffered, waiting for more"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_unserved_until_one_closes() {
    let s = start(
        Limits {
            max_connections: 3,
            max_connections_per_client: 0,
            header_timeout: Duration::from_secs(60),
            ..Limits::default()
        },
        unlimited(),
    )
    .await;
    // Three keep-alive connections, each served once and then held idle.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect(s.addr).await;
        send(&mut c, head("GET", "/healthz", None, true).as_bytes()).await;
        assert_eq!(answer(&mut c, PATIENCE).await.code(), 200);
        held.push(c);
    }
    let mut fourth = connect(s.addr).await;
    send(&mut fourth, head("GET", "/healthz", None, false).as_bytes()).await;
    assert_eq!(
        answer(&mut fourth, GLANCE).await,
        Answer::Nothing,
        "a connection beyond the cap was served"
    );
    drop(held.pop());
    assert_eq!(answer(&mut fourth, PATIENCE).await.code(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let s = start(
        Limits {
            max_connections_per_client: 2,
            header_timeout: Duration::from_secs(60),
            ..Limits::default()
        },
        unlimited(),
    )
    .await;
    let greedy = ip("127.0.0.1");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from(greedy, s.addr).await;
        send(&mut c, head("GET", "/healthz", None, true).as_bytes()).await;
        assert_eq!(answer(&mut c, PATIENCE).await.code(), 200);
        held.push(c);
    }
    let mut third = connect_from(greedy, s.addr).await;
    send(&mut third, head("GET", "/healthz", None, false).as_bytes()).await;
    assert_eq!(
        answer(&mut third, PATIENCE).await,
        Answer::Closed,
        "a third connection from one address was served"
    );

    // Another address is served, and sees the refusal counted.
    let mut other = connect_from(ip("127.0.0.2"), s.addr).await;
    send(&mut other, head("GET", "/metrics", None, false).as_bytes()).await;
    match answer(&mut other, PATIENCE).await {
        Answer::Response(200, text) => assert!(
            text.contains("coffer_http_connections_refused_total 1\n")
                && text.contains("coffer_http_connections 3\n"),
            "{text}"
        ),
        a => panic!("/metrics from another address: {a:?}"),
    }

    // Once one closes, the address may connect again.
    drop(held.pop());
    let mut again = None;
    for _ in 0..100 {
        let mut c = connect_from(greedy, s.addr).await;
        send(&mut c, head("GET", "/healthz", None, false).as_bytes()).await;
        match answer(&mut c, PATIENCE).await {
            Answer::Response(code, _) => {
                again = Some(code);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(again, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_post_is_refused_before_its_body_is_sent() {
    // One request, then none for 100 s.
    let s = start(Limits::default(), ClientLimiter::new(0.01, 1)).await;
    assert_eq!(
        request(s.addr, "POST", "/v1/verify", b"{}").await.code(),
        400,
        "the first request is admitted (and is not a SealedSecret)"
    );

    // The second announces almost 2 MiB and sends none of it: the answer
    // must come anyway, so the server has not waited for the body.
    let mut c = connect(s.addr).await;
    send(
        &mut c,
        head("POST", "/v1/verify", Some(MAX_BODY - 1), true).as_bytes(),
    )
    .await;
    match answer(&mut c, PATIENCE).await {
        Answer::Response(code, body) => {
            assert_eq!(code, 429, "{body}");
            assert!(body.contains("rate limit"), "{body}");
        }
        a => panic!("no answer before the body was sent: {a:?}"),
    }
    // A client that keeps sending after the refusal still gets its answer
    // (the body is discarded, not buffered, and the connection not reset).
    let mut c = connect(s.addr).await;
    send(
        &mut c,
        head("POST", "/v1/verify", Some(MAX_BODY), true).as_bytes(),
    )
    .await;
    send(&mut c, &vec![b' '; MAX_BODY]).await;
    assert_eq!(answer(&mut c, PATIENCE).await.code(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_are_refused_before_their_body_while_not_ready_or_too_large() {
    let ready = Arc::new(AtomicBool::new(false));
    let s = start_with(Limits::default(), unlimited(), ready.clone()).await;
    let addr = s.addr;

    let mut c = connect(addr).await;
    send(
        &mut c,
        head("POST", "/v1/reencrypt", Some(MAX_BODY), true).as_bytes(),
    )
    .await;
    match answer(&mut c, PATIENCE).await {
        Answer::Response(503, body) => assert!(body.contains("not loaded"), "{body}"),
        a => panic!("not ready: {a:?}"),
    }

    ready.store(true, std::sync::atomic::Ordering::Release);
    let mut c = connect(addr).await;
    send(
        &mut c,
        head("POST", "/v1/reencrypt", Some(MAX_BODY + 1), true).as_bytes(),
    )
    .await;
    assert_eq!(answer(&mut c, PATIENCE).await.code(), 413);

    // A chunked body is bounded as it arrives.
    let mut c = connect(addr).await;
    send(
        &mut c,
        b"POST /v1/reencrypt HTTP/1.1\r\nHost: coffer\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    let chunk = vec![b' '; 64 * 1024];
    let mut code = None;
    for _ in 0..(MAX_BODY / chunk.len() + 2) {
        send(&mut c, format!("{:x}\r\n", chunk.len()).as_bytes()).await;
        send(&mut c, &chunk).await;
        send(&mut c, b"\r\n").await;
    }
    if let Answer::Response(c, _) = answer(&mut c, PATIENCE).await {
        code = Some(c);
    }
    assert_eq!(code, Some(413));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_budget_refuses_when_spent_while_health_and_metrics_answer() {
    let s = start(
        Limits {
            body_budget: MAX_BODY,
            header_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            ..Limits::default()
        },
        unlimited(),
    )
    .await;
    // One upload announces 2 MiB, sends half and stalls: it holds the whole
    // budget.
    let mut hog = connect(s.addr).await;
    send(
        &mut hog,
        head("POST", "/v1/verify", Some(MAX_BODY), true).as_bytes(),
    )
    .await;
    send(&mut hog, &vec![b' '; MAX_BODY / 2]).await;

    // Once it is admitted (the budget in use says so; a POST sent before
    // could be admitted first and have the hog refused instead), another
    // client's POST is refused.
    let mut held = String::new();
    for _ in 0..200 {
        held = held_body_bytes(s.addr).await;
        if held == MAX_BODY.to_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(held, MAX_BODY.to_string(), "the upload was not admitted");
    match request_from(ip("127.0.0.2"), s.addr, "POST", "/v1/verify", b"{}").await {
        Answer::Response(429, body) => assert!(body.contains("busy"), "{body}"),
        a => panic!("a POST while the budget is spent: {a:?}"),
    }

    // The endpoints without a body still answer.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            request(s.addr, "GET", path, b"").await.code(),
            200,
            "{path}"
        );
    }

    // The stalled upload gives the budget back when it goes.
    drop(hog);
    let mut admitted = false;
    for _ in 0..200 {
        if request(s.addr, "POST", "/v1/verify", b"{}").await.code() == 400 {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "the budget was not given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_refused_and_its_budget_freed() {
    let s = start(
        Limits {
            body_budget: MAX_BODY,
            body_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        unlimited(),
    )
    .await;
    let mut slow = connect(s.addr).await;
    send(
        &mut slow,
        head("POST", "/v1/verify", Some(MAX_BODY), true).as_bytes(),
    )
    .await;
    send(&mut slow, b"{\"kind\":").await;
    match answer(&mut slow, PATIENCE).await {
        Answer::Response(408, body) => assert!(body.contains("in time"), "{body}"),
        a => panic!("a slow body was not refused: {a:?}"),
    }
    // Its share of the budget is free again.
    assert_eq!(
        request(s.addr, "POST", "/v1/verify", b"{}").await.code(),
        400
    );
}

/// Finding 6 of the second review: a chunked body was charged the largest
/// body (2 MiB) up front, so four of them, stalled after their head, held
/// the whole 8 MiB budget and every other client's POST got 429 for as
/// long as they stayed (and again after each reconnect). Now a chunked body
/// is charged as it arrives, and one address holds at most its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_stalled_chunked_posts_from_one_address_do_not_lock_out_other_clients() {
    let s = start(Limits::default(), unlimited()).await;
    let attacker = ip("127.0.0.2");
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut c = connect_from(attacker, s.addr).await;
        send(&mut c, chunked_head("/v1/verify").as_bytes()).await;
        assert!(send_chunk(&mut c, b"{\"kind\":").await);
        stalled.push(c);
    }
    // While they stall, another client's POSTs are admitted (and found not
    // to be SealedSecrets: 400), not refused as "busy". Looked at for 2 s.
    for i in 0..10 {
        match request_from(ip("127.0.0.3"), s.addr, "POST", "/v1/verify", b"{}").await {
            Answer::Response(400, _) => {}
            a => panic!("POST {i} from another client while 4 chunked POSTs stall: {a:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The stalled ones are still open: nothing ended them early.
    for c in &mut stalled {
        assert_eq!(answer(c, Duration::from_millis(50)).await, Answer::Nothing);
    }
}

/// Finding 6, the per-address share: one address may hold at most a
/// quarter of the budget (2 MiB of 8 MiB), whether its bodies are declared
/// (charged up front) or chunked (charged as they arrive). Beyond it, its
/// own POSTs get 429 while other clients are admitted; a stalled body
/// gives its share back after `--http-body-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_share_of_the_body_budget() {
    let s = start(
        Limits {
            body_timeout: Duration::from_secs(3),
            ..Limits::default()
        },
        unlimited(),
    )
    .await;
    let greedy = ip("127.0.0.2");
    let half = MAX_BODY / 2;

    // A declared 1 MiB body, one byte of it sent: half the share.
    let mut hog = connect_from(greedy, s.addr).await;
    send(
        &mut hog,
        head("POST", "/v1/verify", Some(half), true).as_bytes(),
    )
    .await;
    send(&mut hog, b"{").await;
    let mut held = String::new();
    for _ in 0..200 {
        held = held_body_bytes(s.addr).await;
        if held == half.to_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(held, half.to_string(), "the declared body was not admitted");

    // The same address's next declared body past the share is refused
    // before it is sent, though the budget as a whole has 7 MiB left.
    let mut c = connect_from(greedy, s.addr).await;
    send(
        &mut c,
        head("POST", "/v1/verify", Some(half + 1), false).as_bytes(),
    )
    .await;
    match answer(&mut c, PATIENCE).await {
        Answer::Response(429, body) => assert!(body.contains("busy"), "{body}"),
        a => panic!("a declared body past the address's share: {a:?}"),
    }

    // A chunked body from that address is admitted, and refused with 429
    // once it has grown past the share (1.25 MiB sent, never finished).
    let mut chunked = connect_from(greedy, s.addr).await;
    send(&mut chunked, chunked_head("/v1/verify").as_bytes()).await;
    let piece = vec![b' '; 64 * 1024];
    for _ in 0..20 {
        let sent = tokio::time::timeout(PATIENCE, send_chunk(&mut chunked, &piece)).await;
        if sent != Ok(true) {
            break;
        }
    }
    match answer(&mut chunked, PATIENCE).await {
        Answer::Response(429, body) => assert!(body.contains("busy"), "{body}"),
        a => panic!("a chunked body past the address's share: {a:?}"),
    }
    // It gave back what it had been charged.
    assert_eq!(held_body_bytes(s.addr).await, half.to_string());

    // Another address is admitted meanwhile.
    assert_eq!(
        request_from(ip("127.0.0.3"), s.addr, "POST", "/v1/verify", b"{}")
            .await
            .code(),
        400
    );

    // The stalled body times out (408) and gives the share back.
    assert_eq!(answer(&mut hog, PATIENCE).await.code(), 408);
    assert_eq!(held_body_bytes(s.addr).await, "0");
    let mut c = connect_from(greedy, s.addr).await;
    send(
        &mut c,
        head("POST", "/v1/verify", Some(MAX_BODY), false).as_bytes(),
    )
    .await;
    send(&mut c, &vec![b' '; MAX_BODY]).await;
    assert_eq!(answer(&mut c, PATIENCE).await.code(), 400);
}

/// Finding 7 of the second review: the kubelet's probes shared the
/// connection cap with every client, so slow-header connections from a few
/// addresses (8 × 64 filled the 512 slots) made `/healthz` wait in the
/// accept queue past the kubelet's 1 s probe timeout. The probes have a
/// listener of their own, with its own cap, which the main port's
/// connections cannot take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_slow_headers_fill_every_connection_slot() {
    let s = start(
        Limits {
            max_connections: 8,
            max_connections_per_client: 2,
            header_timeout: Duration::from_secs(60),
            ..Limits::default()
        },
        unlimited(),
    )
    .await;
    // Four addresses, two connections each, heads never finished.
    let mut slow = Vec::new();
    for a in 2..=5 {
        for _ in 0..2 {
            let mut c = connect_from(ip(&format!("127.0.0.{a}")), s.addr).await;
            send(
                &mut c,
                b"GET /healthz HTTP/1.1\r\nHost: coffer\r\nX-Slow: a",
            )
            .await;
            slow.push(c);
        }
    }
    // The main port is full: a ninth connection waits unserved.
    let mut waiting = connect_from(ip("127.0.0.6"), s.addr).await;
    send(
        &mut waiting,
        head("GET", "/healthz", None, false).as_bytes(),
    )
    .await;
    assert_eq!(
        answer(&mut waiting, GLANCE).await,
        Answer::Nothing,
        "the slow heads did not fill the main port"
    );
    // The kubelet (yet another address) is answered within its default
    // probe timeout, on every probe.
    for _ in 0..5 {
        for (path, text) in [("/healthz", "ok"), ("/readyz", "ready")] {
            let mut probe = connect_from(ip("127.0.0.7"), s.probe).await;
            send(&mut probe, head("GET", path, None, false).as_bytes()).await;
            match answer(&mut probe, KUBELET_PROBE_TIMEOUT).await {
                Answer::Response(200, body) => assert_eq!(body.trim(), text),
                a => panic!("{path} while the main port is full: {a:?}"),
            }
        }
    }
    drop(slow);
    // Once the slow heads are gone the main port serves again.
    assert_eq!(answer(&mut waiting, PATIENCE).await.code(), 200);
}
