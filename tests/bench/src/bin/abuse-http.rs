//! abuse-http: what abusive HTTP clients cost the controller, in memory and
//! in `/healthz` latency. Driven by `tests/abuse/http`, which builds the
//! binaries first.
//!
//! A private envtest API server is started (and stopped at the end), the
//! `deploy/` manifests are applied, and the controller runs under the
//! deploy/ ServiceAccount on a loopback port, creating its first key. Then,
//! while `/healthz` is probed from 127.0.0.1 on a new connection every
//! 100 ms (as the kubelet does, 3 s timeout) and the controller's RSS is
//! sampled every 100 ms:
//!
//! 1. baseline: nothing else;
//! 2. slow headers: N connections (default 300) from other loopback
//!    addresses each send a request head 8 KiB at a time, every 100 ms, up
//!    to 392 KiB, and never finish it; a connection the server closes is
//!    opened again after 0.5 s;
//! 3. slow bodies: N connections (default 60) each announce a 2 MiB POST to
//!    /v1/verify, send part of it (default half) and stall; a connection the
//!    server answers or closes is opened again after 0.5 s.
//!
//! Each phase lasts a fixed time, every loop stops at its deadline, and only
//! loopback addresses are used.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use coffer_bench::options;
use coffer_bench::report::{Table, machine, mib, ms, publish, quantile, say};
use coffer_test_support::procfs::proc_status_kib;
use coffer_test_support::{ControllerProcess, Server, http_get};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;

/// The largest body the controller takes (its `http::MAX_BODY`).
const BODY: usize = 2 * 1024 * 1024;
/// Header bytes a slow-header client sends at most: under hyper's former
/// default buffer limit (~400 KiB), so the old controller kept them all.
const HEADER_BYTES: usize = 392 * 1024;
/// The kubelet's probe timeout in deploy/.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
const TICK: Duration = Duration::from_millis(100);
const RECONNECT: Duration = Duration::from_millis(500);

#[derive(Parser, Debug)]
#[command(
    name = "abuse-http",
    about = "Memory and /healthz latency of the controller under HTTP abuse; run it through tests/abuse/http"
)]
struct Args {
    /// A private envtest API server is started in --envtest-dir and stopped here.
    #[command(flatten)]
    run: options::Run,
    #[command(flatten)]
    controller: options::Controller,
    /// Seconds of baseline and of each abuse phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    phase_secs: u64,
    /// Connections sending headers that never end.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=2000))]
    slow_headers: u64,
    /// Connections announcing a 2 MiB POST and sending only part of it.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=500))]
    slow_bodies: u64,
    /// Bytes of each 2 MiB body sent before stalling (default: half).
    #[arg(long, default_value_t = BODY / 2)]
    body_sent: usize,
    /// Loopback addresses the abusive clients come from (127.0.1.1 up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=250))]
    sources: u8,
    /// What is measured, for the report's title (e.g. a commit).
    #[arg(long, default_value = "")]
    label: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    coffer_bench::report::speak_as("abuse", false);
    coffer_bench::report::exit_code("abuse-http", run(Args::parse()).await.map(|()| true))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.body_sent >= BODY {
        bail!("--body-sent must be below {BODY}: the body is never finished");
    }
    std::fs::create_dir_all(&args.run.envtest_dir)?;
    let dir = args.run.envtest_dir.canonicalize().context("envtest dir")?;
    say(format!("envtest API server in {}", dir.display()));
    let server = Server::start_in(&dir)?;
    let _stop = server.stop_on_drop();
    server.install_deploy();

    let mut flags: Vec<&str> = vec!["--log-level", "info"];
    flags.extend(args.controller.controller_args.iter().map(String::as_str));
    let ctrl = ControllerProcess::start(&server, &args.controller.controller, "abuse-http", &flags)
        .await?;
    let pid = ctrl.pid() as i32;
    let addr = ctrl.http;
    say(format!(
        "controller pid {pid} on {addr}, log {}",
        ctrl.log.display()
    ));
    ctrl.wait_ready(Duration::from_secs(120)).await?;
    // Let start-up allocations settle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let phase = Duration::from_secs(args.phase_secs);
    let sources: Vec<IpAddr> = (1..=args.sources)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, i)))
        .collect();
    let mut rows = Vec::new();

    say(format!("baseline, {}s", args.phase_secs));
    rows.push(measure("baseline", pid, addr, phase, |_| async {}.boxed()).await);

    say(format!(
        "{} connections with unfinished headers, {}s",
        args.slow_headers, args.phase_secs
    ));
    let n = args.slow_headers as usize;
    let srcs = sources.clone();
    rows.push(
        measure(
            &format!("{n} slow-header connections"),
            pid,
            addr,
            phase,
            move |stats| attack(n, srcs, addr, phase, stats, slow_headers).boxed(),
        )
        .await,
    );
    settle().await;

    say(format!(
        "{} POSTs of 2 MiB sending {} KiB and stalling, {}s",
        args.slow_bodies,
        args.body_sent / 1024,
        args.phase_secs
    ));
    let n = args.slow_bodies as usize;
    let sent = args.body_sent;
    rows.push(
        measure(
            &format!(
                "{n} POSTs of 2 MiB, {} KiB sent, stalled",
                args.body_sent / 1024
            ),
            pid,
            addr,
            phase,
            move |stats| {
                attack(n, sources, addr, phase, stats, move |c, d, s| {
                    slow_body(c, d, s, sent)
                })
                .boxed()
            },
        )
        .await,
    );
    settle().await;
    let rss_end = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let alive = proc_status_kib(pid, "VmRSS:").is_some();

    let report = render(&args, &rows, rss_end, alive);
    publish(&report, args.run.out.as_deref())?;
    drop(ctrl);
    Ok(())
}

/// Boxes a future (the attack closures return different future types).
trait Boxed<'a>: std::future::Future<Output = ()> + Send + Sized + 'a {
    fn boxed(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self)
    }
}
impl<'a, F: std::future::Future<Output = ()> + Send + 'a> Boxed<'a> for F {}

type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// After a phase: the attackers are gone; give the controller a moment.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// What the abusive clients saw in one phase.
#[derive(Default)]
struct AttackStats {
    opened: u64,
    connect_failed: u64,
    /// The server's answers by status code ("closed": no answer).
    answers: BTreeMap<String, u64>,
}

/// One row of the report.
struct Row {
    name: String,
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
    /// Probe latencies; failures (timeouts, refusals) count as the timeout.
    probes: Vec<Duration>,
    failed: usize,
    stats: AttackStats,
}

/// Runs `attack` for `phase` while probing /healthz and sampling RSS.
async fn measure(
    name: &str,
    pid: i32,
    addr: SocketAddr,
    phase: Duration,
    attack: impl FnOnce(Arc<Mutex<AttackStats>>) -> BoxFuture,
) -> Row {
    let rss_before = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let stats = Arc::new(Mutex::new(AttackStats::default()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(proc_status_kib(pid, "VmRSS:").unwrap_or(0));
                tokio::time::sleep(TICK).await;
            }
            peak
        })
    };
    let prober = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut probes = Vec::new();
            let mut failed = 0;
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                let t = Instant::now();
                match tokio::time::timeout(PROBE_TIMEOUT, http_get(addr, "/healthz")).await {
                    Ok(Ok((200, _))) => probes.push(t.elapsed()),
                    _ => {
                        failed += 1;
                        probes.push(PROBE_TIMEOUT.max(t.elapsed()));
                    }
                }
            }
            (probes, failed)
        })
    };
    let attacking = tokio::spawn(attack(stats.clone()));
    tokio::time::sleep(phase).await;
    // The attackers stop at the same deadline; the last samples see them.
    let _ = attacking.await;
    done.store(true, Ordering::Relaxed);
    let rss_peak = sampler.await.unwrap_or(0);
    let (probes, failed) = prober.await.unwrap_or_default();
    let rss_after = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let stats = std::mem::take(&mut *stats.lock().await);
    Row {
        name: name.to_string(),
        rss_before,
        rss_peak: rss_peak.max(rss_after),
        rss_after,
        probes,
        failed,
        stats,
    }
}

/// `n` abusive clients running `one` over and over until `phase` is over.
async fn attack<F, Fut>(
    n: usize,
    sources: Vec<IpAddr>,
    addr: SocketAddr,
    phase: Duration,
    stats: Arc<Mutex<AttackStats>>,
    one: F,
) where
    F: Fn(TcpStream, Instant, Arc<Mutex<AttackStats>>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let deadline = Instant::now() + phase;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let from = sources[i % sources.len()];
            let stats = stats.clone();
            let one = one.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    match tokio::time::timeout(PROBE_TIMEOUT, connect_from(from, addr)).await {
                        Ok(Ok(c)) => {
                            stats.lock().await.opened += 1;
                            let left = deadline.saturating_duration_since(Instant::now());
                            let _ =
                                tokio::time::timeout(left, one(c, deadline, stats.clone())).await;
                        }
                        _ => stats.lock().await.connect_failed += 1,
                    }
                    tokio::time::sleep(RECONNECT).await;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// Counts one answer of the server (or "reset").
async fn tally(stats: &Mutex<AttackStats>, answer: String) {
    *stats.lock().await.answers.entry(answer).or_default() += 1;
}

/// Sends a request head 8 KiB at a time and never ends it.
async fn slow_headers(mut c: TcpStream, deadline: Instant, stats: Arc<Mutex<AttackStats>>) {
    let _ = c
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: coffer\r\n")
        .await;
    let mut sent = 0;
    let mut k = 0;
    while Instant::now() < deadline {
        if let Some(answer) = answered(&c) {
            tally(&stats, answer).await;
            return;
        }
        if sent < HEADER_BYTES {
            let line = format!("X-Pad-{k}: {}\r\n", "a".repeat(8 * 1024 - 16));
            if c.write_all(line.as_bytes()).await.is_err() {
                tally(&stats, "reset".into()).await;
                return;
            }
            sent += line.len();
            k += 1;
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Announces a 2 MiB POST, sends `sent` bytes of it and stalls.
async fn slow_body(
    mut c: TcpStream,
    deadline: Instant,
    stats: Arc<Mutex<AttackStats>>,
    sent: usize,
) {
    let head = format!(
        "POST /v1/verify HTTP/1.1\r\nHost: coffer\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
    );
    let _ = c.write_all(head.as_bytes()).await;
    let piece = vec![b' '; 64 * 1024];
    let mut done = 0;
    while Instant::now() < deadline {
        if let Some(answer) = answered(&c) {
            tally(&stats, answer).await;
            return;
        }
        if done < sent {
            let n = piece.len().min(sent - done);
            if c.write_all(&piece[..n]).await.is_err() {
                tally(&stats, "reset".into()).await;
                return;
            }
            done += n;
        } else {
            tokio::time::sleep(TICK).await;
        }
    }
}

/// Whether the server has answered (its status code) or closed the
/// connection, without waiting.
fn answered(c: &TcpStream) -> Option<String> {
    let mut buf = [0u8; 512];
    match c.try_read(&mut buf) {
        Ok(0) => Some("closed".into()),
        Ok(n) => {
            let text = String::from_utf8_lossy(&buf[..n]);
            let code = text.split_whitespace().nth(1).unwrap_or("?");
            // The controller's two kinds of 429.
            let why = if text.contains("busy") {
                " busy"
            } else if text.contains("rate limit") {
                " rate limit"
            } else {
                ""
            };
            Some(format!("{code}{why}"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(_) => Some("reset".into()),
    }
}

async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

fn render(args: &Args, rows: &[Row], rss_end: u64, alive: bool) -> String {
    let mut s = String::new();
    let title = if args.label.is_empty() {
        "# HTTP abuse".to_string()
    } else {
        format!("# HTTP abuse: {}", args.label)
    };
    let controller = &args.controller;
    let _ = writeln!(
        s,
        "{title}\n\n{} · controller `{}`{} · {} s per phase · abusive clients from {} loopback addresses\n",
        machine("CPUs"),
        controller
            .controller
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        if controller.controller_args.is_empty() {
            String::new()
        } else {
            format!(" `{}`", controller.controller_args.join(" "))
        },
        args.phase_secs,
        args.sources,
    );
    let mut table = Table::new(&[
        "phase",
        "RSS before",
        "RSS peak (growth)",
        "RSS after",
        "/healthz p50 / p99 / max (ms)",
        "probes failed",
        "abusive connections",
        "server's answers",
    ]);
    for r in rows {
        let mut sorted = r.probes.clone();
        sorted.sort();
        let answers = if r.stats.answers.is_empty() {
            "—".to_string()
        } else {
            r.stats
                .answers
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.row([
            r.name.clone(),
            format!("{:.1} MiB", mib(r.rss_before)),
            format!(
                "{:.1} MiB (+{:.1})",
                mib(r.rss_peak),
                mib(r.rss_peak.saturating_sub(r.rss_before))
            ),
            format!("{:.1} MiB", mib(r.rss_after)),
            format!(
                "{:.1} / {:.1} / {:.1}",
                ms(quantile(&sorted, 0.5)),
                ms(quantile(&sorted, 0.99)),
                ms(sorted.last().copied().unwrap_or_default())
            ),
            format!("{} of {}", r.failed, r.probes.len()),
            format!(
                "{}{}",
                r.stats.opened,
                if r.stats.connect_failed > 0 {
                    format!(" ({} failed to connect)", r.stats.connect_failed)
                } else {
                    String::new()
                }
            ),
            answers,
        ]);
    }
    s.push_str(&table.render());
    let _ = writeln!(
        s,
        "\nRSS at the end: {:.1} MiB{}. Failed probes count as {} ms in the latencies.",
        mib(rss_end),
        if alive {
            ""
        } else {
            " (the controller had exited)"
        },
        PROBE_TIMEOUT.as_millis()
    );
    s
}
