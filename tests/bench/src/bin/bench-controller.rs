//! bench-controller: how fast the controller turns N SealedSecrets into
//! Secrets against a real kube-apiserver, and what it costs (RSS, CPU, API
//! requests). Driven by `tests/bench/controller`, which builds the binaries,
//! starts a private envtest server and applies `deploy/` first.
//!
//! Steps: a sealing key Secret is created in `coffer-system` exactly as the
//! controller would create it; N SealedSecrets (3 items each) are sealed to
//! it with coffer-core and created before the controller runs; then the
//! release controller starts under the deploy/ ServiceAccount and a watch
//! counts Ready=True until all are. The controller is stopped with SIGTERM
//! once idle, and reports its API request count in its last log line.
//!
//! Every run also measures the controller's time from process start to
//! `/readyz` 200 (its key ring loaded). With `--kek-openbao` the sealing key
//! is stored wrapped by an OpenBao Transit key (docs/kms.md) on a dev
//! server started for the run, the controller is given that KEK, and its
//! `/metrics` must show exactly one unwrap (one key), whose latency is
//! reported.
#![allow(
    clippy::too_many_lines,
    reason = "a benchmark driver: each run is one long sequence of timed steps"
)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use coffer_bench::objects::{Item, create_all, ensure_namespace, make_items};
use coffer_bench::process::{help_default, scrub_env, spawn_logged};
use coffer_bench::report::{Marks, Table, cores, machine, mib, mib_text, publish, say, secs};
use coffer_bench::{objects, options};
use coffer_core::SealedSecret;
use coffer_core::manifest::{ManifestMeta, SecretManifest, SecretValue};
use coffer_core::ring::{KEY_ID_LABEL, RECIPIENTS_CONFIGMAP, RECIPIENTS_KEY};
use coffer_core::transform::seal_secret;
use coffer_format::key::KeyKind;
use coffer_format::{RecipientsFile, Scope, SecretKey};
use coffer_test_support::procfs::{Child, clk_tck, proc_cpu, proc_status_kib, read_pid};
use coffer_test_support::{Server, free_port, http_get, secret_data};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use zeroize::Zeroizing;

/// Label on every benchmark SealedSecret (the readiness watch selects it).
const BENCH_LABEL: &str = "coffer.dev/bench";
/// What a client-side `kubectl apply` adds.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ITEMS: [&str; 3] = ["password", "url", "username"];

#[derive(Parser, Debug)]
#[command(
    name = "bench-controller",
    about = "Controller throughput benchmark; run it through tests/bench/controller"
)]
struct Args {
    /// The envtest server is started, with deploy/ applied.
    #[command(flatten)]
    run: options::Run,
    #[command(flatten)]
    load: options::Load,
    #[command(flatten)]
    controller: options::Controller,
    /// Controller --kube-qps (0: unlimited); the controller's default when unset.
    #[arg(long)]
    qps: Option<f64>,
    /// Controller --kube-burst; the controller's default when unset.
    #[arg(long)]
    burst: Option<u32>,
    /// Controller --concurrency (the controller's default when unset).
    #[arg(long)]
    concurrency: Option<u16>,
    /// Give every SealedSecret the `kubectl.kubernetes.io/last-applied-configuration`
    /// annotation that a client-side `kubectl apply` (and Argo CD by
    /// default) writes: a second, JSON copy of the whole object.
    #[arg(long)]
    last_applied: bool,
    /// Kind of the sealing key: x25519, or mlkem768x25519 (age 1.3's
    /// hybrid post-quantum keys).
    #[arg(long, default_value = "x25519", value_parser = |s: &str| s.parse::<KeyKind>())]
    key_kind: KeyKind,
    /// Once all are Ready (and after the restart, if any): update this
    /// many SealedSecrets with new values while the controller restarts
    /// twice (a SIGKILL, then a SIGTERM); every Secret must end right.
    #[arg(long, default_value_t = 0)]
    churn: usize,
    /// Controller log file.
    #[arg(long)]
    log: PathBuf,
    /// What is measured (e.g. `git describe --dirty`), for the report.
    #[arg(long, default_value = "")]
    revision: String,
    /// Measure the ceiling instead of the controller: a minimal client
    /// that makes exactly the writes a correct controller must (create
    /// each Secret, patch each status) after one paged list, with no
    /// decryption, at the same concurrency and with no client rate limit.
    #[arg(long)]
    ceiling_only: bool,
    /// The JSON figures of a ceiling run on an identical API server, to
    /// report Coffer's throughput against.
    #[arg(long)]
    ceiling_from: Option<PathBuf>,
    /// Once all are Ready and the controller stopped, start it again and
    /// measure how long until it has reconciled every SealedSecret, and
    /// what it sent meanwhile.
    #[arg(long)]
    restart: bool,
    /// Wrap the sealing key with a key-encryption key (docs/kms.md): start
    /// an OpenBao dev server for the run (in memory, on loopback; killed
    /// at exit), enable Transit with the key `coffer`, store the key Secret
    /// wrapped by it, and give the controller `--kek transit:coffer
    /// --kek-address ... --kek-token-file ...`. The run fails unless the
    /// controller's /metrics show exactly one unwrap (one key).
    #[arg(long)]
    kek_openbao: bool,
    /// The KEK flags every controller of the run is given (set once the
    /// OpenBao server is up).
    #[arg(skip)]
    kek_flags: Vec<String>,
}

/// The Transit key of `--kek-openbao`.
const KEK_KEY: &str = "coffer";

/// The figures of one run, as JSON beside the report (for the plot).
#[derive(serde::Serialize, serde::Deserialize, Default, Debug)]
struct Figures {
    n: usize,
    namespaces: u32,
    all_ready_s: Option<f64>,
    objects_per_s: f64,
    peak_rss_mib: f64,
    idle_rss_mib: f64,
    cpu_s: f64,
    api_requests: Option<u64>,
    api_writes: Option<u64>,
    ceiling_s: Option<f64>,
    ceiling_objects_per_s: Option<f64>,
    restart_caught_up_s: Option<f64>,
    restart_api_requests: Option<u64>,
    restart_api_writes: Option<u64>,
    restart_peak_rss_mib: Option<f64>,
    #[serde(default)]
    churn_updates: Option<usize>,
    #[serde(default)]
    churn_settled_s: Option<f64>,
    #[serde(default)]
    secrets_right: Option<usize>,
    /// Controller process start to its first `/readyz` 200.
    #[serde(default)]
    time_to_ready_s: Option<f64>,
    /// The KEK the key ring was wrapped by (`--kek-openbao`).
    #[serde(default)]
    kek: Option<String>,
    /// `coffer_kms_calls_total{operation="unwrap"}`, every outcome.
    #[serde(default)]
    kms_unwrap_calls: Option<u64>,
    /// Their mean latency (`coffer_kms_call_duration_seconds` sum / count).
    #[serde(default)]
    kms_unwrap_mean_s: Option<f64>,
}

/// What the restart measured.
#[derive(Clone)]
struct Restart {
    caught_up: Option<Duration>,
    requests: Option<u64>,
    writes: Option<u64>,
    hwm: u64,
    exit: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    coffer_bench::report::speak_as("bench", false);
    coffer_bench::report::exit_code("bench-controller", run(Args::parse()).await)
}

async fn run(mut args: Args) -> anyhow::Result<bool> {
    let n = args.load.n as usize;
    let controller = &args.controller.controller;
    let server = Server {
        dir: args.run.envtest_dir.canonicalize().context("envtest dir")?,
    };
    let admin = server.admin().await;
    let mut report = Report::default();
    report.row(
        "SealedSecrets",
        format!(
            "{n} × {} items, {} namespaces, scope strict{}",
            ITEMS.len(),
            args.load.namespaces,
            if args.last_applied {
                ", with a last-applied-configuration annotation"
            } else {
                ""
            }
        ),
    );
    // The limits in force: as given, else the controller's defaults.
    let qps = args.qps.map(|q| q.to_string()).unwrap_or_else(|| {
        help_default(controller, "--kube-qps").unwrap_or_else(|| "default".into())
    });
    let burst = args.burst.map(|b| b.to_string()).unwrap_or_else(|| {
        help_default(controller, "--kube-burst").unwrap_or_else(|| "default".into())
    });
    let mut flags = format!(
        "--kube-qps {qps}{} --kube-burst {burst}{}",
        if args.qps.is_none() { " (default)" } else { "" },
        if args.burst.is_none() {
            " (default)"
        } else {
            ""
        }
    );
    if let Some(c) = args.concurrency {
        write!(flags, " --concurrency {c}")?;
    }
    for a in &args.controller.controller_args {
        write!(flags, " {a}")?;
    }
    report.row("controller flags", format!("`{flags}`"));
    report.row("controller binary", format!("`{}`", controller.display()));
    if !args.revision.is_empty() {
        report.row("source tree", format!("`{}`", args.revision));
    }

    // The sealing key, stored the way KeyManager::create_key stores it, so
    // the controller loads it instead of creating one.
    let key = SecretKey::generate_kind(args.key_kind);
    // With --kek-openbao: the KEK, on a dev server that lives as long as
    // this function (killed on drop, and with this process).
    let mut bao = None;
    let mut kek: Option<Arc<dyn coffer_kms::Kek>> = None;
    if args.kek_openbao {
        let dir = server.dir.join("openbao");
        say(format!(
            "starting an OpenBao dev server in {}",
            dir.display()
        ));
        let b = coffer_bench::openbao::DevOpenBao::start(&dir)?;
        b.transit_key(KEK_KEY)?;
        let kek_args = coffer_kms::KekArgs {
            kek: Some(format!("transit:{KEK_KEY}").parse()?),
            kek_address: Some(b.addr.clone()),
            kek_token_file: Some(b.token_file.clone()),
            kek_transit_mount: "transit".into(),
            ..Default::default()
        };
        kek = coffer_kms::connect(&kek_args)
            .await
            .context("connecting to the OpenBao dev server's Transit")?;
        args.kek_flags = vec![
            "--kek".into(),
            format!("transit:{KEK_KEY}"),
            "--kek-address".into(),
            b.addr.clone(),
            "--kek-token-file".into(),
            b.token_file.display().to_string(),
        ];
        report.row(
            "key-encryption key",
            format!(
                "Transit key `{KEK_KEY}` (aes256-gcm96) on an {} dev server (in memory) on loopback, root token from a file; controller flags `--kek transit:{KEK_KEY} --kek-address http://127.0.0.1:PORT --kek-token-file FILE`",
                b.version()
            ),
        );
        bao = Some(b);
    }
    report.row(
        "sealing key",
        format!(
            "one, {}{}",
            args.key_kind,
            if kek.is_some() {
                ", stored wrapped by the KEK (`wrapped-identity`)"
            } else {
                ", stored in plain"
            }
        ),
    );
    create_key_secret(&admin, &key, kek.as_deref()).await?;
    let recipients = vec![key.public().clone()];

    let namespaces = objects::namespaces(args.load.namespaces);
    for ns in &namespaces {
        ensure_namespace(&admin, ns).await?;
    }

    // Seal.
    say(format!("sealing {n} SealedSecrets"));
    let t = Instant::now();
    let (items, mut sealed) = seal_all(n, &namespaces, &recipients)?;
    if args.last_applied {
        for s in &mut sealed {
            let copy = format!("{}\n", serde_json::to_string(s)?);
            s.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(LAST_APPLIED.into(), copy);
        }
    }
    let seal_time = t.elapsed();
    let sealed_bytes: usize = sealed
        .iter()
        .flat_map(|s| s.spec.encrypted_data.values())
        .map(String::len)
        .sum();
    let json_bytes: usize = sealed
        .iter()
        .map(|s| serde_json::to_vec(s).map(|v| v.len()).unwrap_or(0))
        .sum();
    report.row(
        "seal (coffer-core)",
        format!(
            "{} ({:.0}/s); sealed values {:.0} B/object, JSON {:.0} B/object",
            secs(seal_time),
            n as f64 / seal_time.as_secs_f64(),
            sealed_bytes as f64 / n as f64,
            json_bytes as f64 / n as f64
        ),
    );

    // Create, before the controller runs.
    let in_flight = args.load.create_concurrency;
    say(format!("creating them ({in_flight} at once)"));
    let t = Instant::now();
    create_all(sealed, in_flight, |s: &SealedSecret| {
        Api::namespaced(admin.clone(), &s.namespace().unwrap_or_default())
    })
    .await?;
    let create_time = t.elapsed();
    report.row(
        "create (kube-rs, before the controller starts)",
        format!(
            "{} ({:.0}/s, {} in flight)",
            secs(create_time),
            n as f64 / create_time.as_secs_f64(),
            in_flight
        ),
    );

    // Readiness is observed the same way in both runs: a watch of every
    // SealedSecret, started before the writes. It costs the API server
    // (and this process) CPU beside the writes; the ceiling must bear it
    // too, or it measures a lighter load than the controller's run.
    let (mut watch, mut ready, mut init) = readiness_watch(&admin).await?;
    if ready.len() != n {
        bail!("watch sees {} SealedSecrets, expected {n}", ready.len());
    }

    if args.ceiling_only {
        let concurrency = args.concurrency.map(usize::from).unwrap_or(16);
        say(format!("ceiling: the writes alone, {concurrency} at once"));
        let start = Instant::now();
        let writes = ceiling(&admin, &items, concurrency);
        tokio::pin!(writes);
        let mut writes_done: Option<Duration> = None;
        let mut count = ready.values().filter(|r| **r).count();
        while count < n || writes_done.is_none() {
            tokio::select! {
                w = &mut writes, if writes_done.is_none() => writes_done = Some(w?),
                ev = watch.try_next(), if count < n => {
                    match ev? {
                        Some(ev) => apply_event(&mut ready, &mut init, ev),
                        None => bail!("SealedSecret watch ended"),
                    }
                    count = ready.values().filter(|r| **r).count();
                }
            }
        }
        // As for the controller: until the watch has seen every one Ready.
        let took = start.elapsed();
        drop(watch);
        say(format!(
            "ceiling: writes done after {}, all Ready seen after {}",
            secs(writes_done.unwrap_or_default()),
            secs(took)
        ));
        let figures = Figures {
            n,
            namespaces: args.load.namespaces,
            ceiling_s: Some(took.as_secs_f64()),
            ceiling_objects_per_s: Some(n as f64 / took.as_secs_f64()),
            ..Default::default()
        };
        report.row(
            "**ceiling**: list, then create Secret + patch status each, no decryption; until the same readiness watch saw all Ready",
            format!(
                "**{}** ({:.1} objects/s, {concurrency} at once, no client rate limit)",
                secs(took),
                n as f64 / took.as_secs_f64()
            ),
        );
        let text = format!(
            "# Ceiling of this API server: {n} SealedSecrets\n\n{}\n\n{}",
            machine("CPUs"),
            report.render()
        );
        publish(&text, args.run.out.as_deref())?;
        write_figures(&args, &figures)?;
        return Ok(true);
    }

    // Start the controller under the deploy/ ServiceAccount.
    let kubeconfig = server.dir.join("bench-controller.kubeconfig");
    server
        .token_kubeconfig("coffer-system", "coffer-controller", &kubeconfig)
        .await?;
    let apiserver_pid = read_pid(&server.dir.join("pid"));
    let kcm_pid = read_pid(&server.dir.join("kcm.pid"));
    let before = Snapshot::take(None, apiserver_pid, kcm_pid);
    let start = Instant::now();
    let (mut ctrl, listeners) = Controller::spawn(&args, &kubeconfig)?;
    say(format!(
        "controller started (pid {}), log {}",
        ctrl.pid,
        args.log.display()
    ));
    // Process start to /readyz 200 (the key ring loaded, every key
    // unwrapped): polled beside the readiness watch.
    let ready_probe = tokio::spawn(time_to_ready(
        listeners.probe,
        start,
        Duration::from_secs(args.load.timeout),
    ));

    // Wait until every SealedSecret is Ready.
    let deadline = start + Duration::from_secs(args.load.timeout);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut marks = Marks::default();
    let mut all_ready: Option<Duration> = None;
    let mut peak_sampled_rss = 0u64;
    let mut last_progress = Instant::now();
    let mut count = ready.values().filter(|r| **r).count();
    while count < n {
        tokio::select! {
            ev = watch.try_next() => {
                match ev? {
                    Some(ev) => apply_event(&mut ready, &mut init, ev),
                    None => bail!("SealedSecret watch ended"),
                }
                count = ready.values().filter(|r| **r).count();
                marks.note(count, n, start.elapsed());
            }
            _ = tick.tick() => {
                if let Some(exit) = ctrl.exited() {
                    bail!("the controller exited early ({exit}); see {}", args.log.display());
                }
                let rss = proc_status_kib(ctrl.pid, "VmRSS:").unwrap_or(0);
                peak_sampled_rss = peak_sampled_rss.max(rss);
                if last_progress.elapsed() >= Duration::from_secs(10) {
                    last_progress = Instant::now();
                    say(format!(
                        "{:>6.1}s: {count}/{n} Ready, controller RSS {:.1} MiB, CPU {:.1} s",
                        start.elapsed().as_secs_f64(),
                        mib(rss),
                        proc_cpu(ctrl.pid).unwrap_or(0.0)
                    ));
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    if count == n {
        all_ready = Some(start.elapsed());
    }
    let at_ready = Snapshot::take(Some(ctrl.pid), apiserver_pid, kcm_pid);
    let rss_at_ready = Rss::of(ctrl.pid);
    drop(watch);
    match all_ready {
        Some(d) => say(format!("all {n} Ready after {}", secs(d))),
        None => say(format!(
            "TIMEOUT: {count}/{n} Ready after {}s",
            args.load.timeout
        )),
    }

    // Let the controller finish its tail (events, re-reconciles after its
    // own status writes), then stop it and read its counters.
    let settle_start = Instant::now();
    let mut prev = proc_cpu(ctrl.pid).unwrap_or(0.0);
    let mut idle = 0;
    while idle < 2 && settle_start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = proc_cpu(ctrl.pid).unwrap_or(0.0);
        idle = if now - prev < 0.02 { idle + 1 } else { 0 };
        prev = now;
    }
    let hwm = proc_status_kib(ctrl.pid, "VmHWM:").unwrap_or(0);
    let rss_at_stop = Rss::of(ctrl.pid);
    let threads = proc_status_kib(ctrl.pid, "Threads:").unwrap_or(0);
    // Ready long before all were Ready, or never.
    ready_probe.abort();
    let time_to_ready = ready_probe.await.ok().flatten();
    match time_to_ready {
        Some(d) => say(format!("controller /readyz 200 after {}", secs(d))),
        None => say("the controller's /readyz never answered 200"),
    }
    // Its KEK calls, before it stops.
    let kms = match http_get(listeners.http, "/metrics").await {
        Ok((200, text)) => Some(KmsFigures::parse(&text, "unwrap")),
        Ok((code, _)) => {
            say(format!("controller /metrics answered {code}"));
            None
        }
        Err(e) => {
            say(format!("controller /metrics: {e}"));
            None
        }
    };
    let (exit, rusage_cpu, killed) = ctrl.stop(Duration::from_secs(30));
    if killed {
        say("the controller ignored SIGTERM for 30 s; killed it");
    }
    let api_requests = api_requests_from_log(&args.log, "api_requests");
    let api_writes = api_requests_from_log(&args.log, "secret_writes");

    // A restart with everything unsealed: how long until every
    // SealedSecret is reconciled, and what it sends.
    let mut restart: Option<Restart> = None;
    if args.restart && all_ready.is_some() {
        let log = args.log.with_extension("restart.log");
        let (mut again, _) = Controller::spawn_logged_to(&args, &kubeconfig, &log)?;
        let t = Instant::now();
        say("restarted the controller");
        let mut caught_up = None;
        while t.elapsed() < Duration::from_secs(args.load.timeout) {
            if let Some(exit) = again.exited() {
                bail!(
                    "the restarted controller exited ({exit}); see {}",
                    log.display()
                );
            }
            if log_has(&log, "caught up: every SealedSecret reconciled since start") {
                caught_up = Some(t.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        say(format!("restart caught up: {caught_up:?}"));
        let hwm = proc_status_kib(again.pid, "VmHWM:").unwrap_or(0);
        let (exit, _, _) = again.stop(Duration::from_secs(30));
        restart = Some(Restart {
            caught_up,
            requests: api_requests_from_log(&log, "api_requests"),
            writes: api_requests_from_log(&log, "secret_writes"),
            hwm,
            exit,
        });
    }

    // Updates during two restarts.
    let mut items = items;
    let churn = if args.churn > 0 && all_ready.is_some() {
        Some(churn(&args, &admin, &kubeconfig, &mut items, &recipients).await?)
    } else {
        None
    };

    // Correctness of every Secret, and of the key ring.
    let checked = verify_all(&admin, &items).await?;
    let key_ok = verify_key_ring(&admin, &key).await?;

    // Report.
    let total = all_ready.unwrap_or_else(|| at_ready.at.duration_since(start));
    let ready_n = if all_ready.is_some() { n } else { count };
    report.row(
        "**controller start → /readyz 200** (key ring loaded)",
        match time_to_ready {
            Some(d) => format!("**{:.0} ms**", d.as_secs_f64() * 1000.0),
            None => "**never**".into(),
        },
    );
    // One key, so exactly one unwrap with a KEK; none without.
    let unwraps_expected = u64::from(kek.is_some());
    let unwraps_ok = kms.as_ref().is_some_and(|k| k.calls == unwraps_expected);
    if kek.is_some() {
        report.row(
            "**KEK unwrap calls** (`coffer_kms_calls_total{operation=\"unwrap\"}`) / latency (`coffer_kms_call_duration_seconds` sum ÷ count)",
            match &kms {
                Some(k) => format!(
                    "**{}**{} / **{}**",
                    k.calls,
                    if unwraps_ok {
                        " (one key: as meant)".to_string()
                    } else {
                        format!(" — WRONG: the ring has {unwraps_expected} key")
                    },
                    k.mean_s()
                        .map_or_else(|| "-".into(), |s| format!("{:.1} ms", s * 1000.0))
                ),
                None => "**/metrics not read**".into(),
            },
        );
    }
    report.row(
        "controller start → first / 50 % / 90 % Ready",
        marks.render(secs, "-"),
    );
    report.row(
        "**controller start → all Ready**",
        match all_ready {
            Some(d) => format!("**{}**", secs(d)),
            None => format!(
                "**TIMEOUT after {}s: {count}/{n} Ready**",
                args.load.timeout
            ),
        },
    );
    report.row(
        "**throughput**",
        format!("**{:.1} objects/s**", ready_n as f64 / total.as_secs_f64()),
    );
    report.row(
        "**controller peak RSS** (VmHWM)",
        format!("**{:.1} MiB**", mib(hwm)),
    );
    report.row(
        "controller RSS when all Ready / when idle",
        format!("{rss_at_ready} / {rss_at_stop} ({threads} threads)"),
    );
    let ctrl_cpu_ready = at_ready.controller - before.controller;
    report.row(
        "**controller CPU** until all Ready / whole run",
        format!(
            "**{:.2} s** ({:.0} % of one core) / {:.2} s",
            ctrl_cpu_ready,
            100.0 * ctrl_cpu_ready / total.as_secs_f64(),
            rusage_cpu
        ),
    );
    report.row(
        "**controller API requests** (whole run)",
        match api_requests {
            Some(r) => format!(
                "**{r}** ({:.2}/object, {:.1}/s until all Ready at most)",
                r as f64 / n as f64,
                r as f64 / total.as_secs_f64()
            ),
            None => "not found in the controller log".into(),
        },
    );
    let window = total.as_secs_f64();
    report.row(
        "API server + etcd CPU until all Ready",
        format!(
            "{:.1} s ({:.0} % of one core)",
            at_ready.apiserver - before.apiserver,
            100.0 * (at_ready.apiserver - before.apiserver) / window
        ),
    );
    report.row(
        "controller-manager (GC) CPU until all Ready",
        format!("{:.1} s", at_ready.kcm - before.kcm),
    );
    report.row(
        "bench process (its watch) CPU until all Ready",
        format!("{:.1} s", at_ready.own - before.own),
    );
    let (busy, cores) = at_ready.machine_busy_since(&before);
    let others = busy
        - (at_ready.controller - before.controller)
        - (at_ready.apiserver - before.apiserver)
        - (at_ready.kcm - before.kcm)
        - (at_ready.own - before.own);
    report.row(
        "machine CPU busy until all Ready",
        format!(
            "{:.0} % of {cores} cores ({busy:.1} core-s; other processes {others:.1} core-s){}",
            100.0 * busy / (window * cores as f64),
            // Another build on the machine slows the API server and the
            // controller: times and CPU figures are then not comparable.
            if others > 0.1 * window * cores as f64 {
                " ⚠ other processes took over 10 % of the machine: times are perturbed"
            } else {
                ""
            }
        ),
    );
    if let Some(c) = &churn {
        report_churn(&mut report, c);
    }
    report.row(
        "correctness",
        format!(
            "{checked}/{n} Secrets (every one) hold the sealed data; key ring {}",
            if key_ok {
                "is the bench key only"
            } else {
                "WRONG"
            }
        ),
    );
    report.row("controller exit", exit.clone());
    if let Some(r) = &restart {
        report_restart(&mut report, r);
    }
    let ceiling: Option<Figures> = match &args.ceiling_from {
        Some(p) => Some(serde_json::from_slice(&std::fs::read(p)?)?),
        None => None,
    };
    let figures = Figures {
        n,
        namespaces: args.load.namespaces,
        all_ready_s: all_ready.map(|d| d.as_secs_f64()),
        objects_per_s: ready_n as f64 / total.as_secs_f64(),
        peak_rss_mib: mib(hwm),
        idle_rss_mib: mib(rss_at_stop.total),
        cpu_s: ctrl_cpu_ready,
        api_requests,
        api_writes,
        ceiling_s: ceiling.as_ref().and_then(|c| c.ceiling_s),
        ceiling_objects_per_s: ceiling.as_ref().and_then(|c| c.ceiling_objects_per_s),
        restart_caught_up_s: restart
            .as_ref()
            .and_then(|r| r.caught_up)
            .map(|d| d.as_secs_f64()),
        restart_api_requests: restart.as_ref().and_then(|r| r.requests),
        restart_api_writes: restart.as_ref().and_then(|r| r.writes),
        restart_peak_rss_mib: restart.as_ref().map(|r| mib(r.hwm)),
        churn_updates: churn.as_ref().map(|c| c.updates),
        churn_settled_s: churn
            .as_ref()
            .and_then(|c| c.settled)
            .map(|d| d.as_secs_f64()),
        secrets_right: Some(checked),
        time_to_ready_s: time_to_ready.map(|d| d.as_secs_f64()),
        kek: kek.as_ref().map(|k| k.reference().to_string()),
        kms_unwrap_calls: kms.as_ref().map(|k| k.calls),
        kms_unwrap_mean_s: kms.as_ref().and_then(KmsFigures::mean_s),
    };
    if let (Some(cs), Some(cr)) = (figures.ceiling_s, figures.ceiling_objects_per_s) {
        report.row(
            "**against the ceiling** (same writes, no decryption, fresh identical API server)",
            format!(
                "ceiling {cs:.1} s, {cr:.1} objects/s: **Coffer at {:.0} %**",
                100.0 * figures.objects_per_s / cr
            ),
        );
    }
    write_figures(&args, &figures)?;

    let title = format!("# Controller benchmark: {n} SealedSecrets, qps {qps} burst {burst}");
    let text = format!(
        "{title}\n\n{} · envtest kube-apiserver + etcd on loopback\n\n{}",
        machine("CPUs"),
        report.render()
    );
    publish(&text, args.run.out.as_deref())?;

    let ok = all_ready.is_some()
        && checked == n
        && time_to_ready.is_some()
        && unwraps_ok
        && churn
            .as_ref()
            .is_none_or(|c| c.settled.is_some() && c.exits_ok)
        && key_ok
        && api_requests.is_some()
        && exit == "exit 0"
        && (!args.restart
            || restart
                .as_ref()
                .is_some_and(|r| r.caught_up.is_some() && r.writes == Some(0)));
    if !ok {
        say("FAILED (see the report above)");
    }
    drop(bao);
    Ok(ok)
}

/// From `start` until `/readyz` on `probe` answers 200, polled every 5 ms;
/// `None` after `timeout`.
async fn time_to_ready(probe: SocketAddr, start: Instant, timeout: Duration) -> Option<Duration> {
    while start.elapsed() < timeout {
        if let Ok((200, _)) = http_get(probe, "/readyz").await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// One operation's KEK calls, from the controller's `/metrics`.
#[derive(Debug, Default)]
struct KmsFigures {
    /// `coffer_kms_calls_total`, every provider and outcome.
    calls: u64,
    /// `coffer_kms_call_duration_seconds` sum and count.
    seconds: f64,
    timed: u64,
}

impl KmsFigures {
    fn parse(text: &str, operation: &str) -> Self {
        let mut f = KmsFigures::default();
        let op = format!("operation=\"{operation}\"");
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            if !series.contains(&op) {
                continue;
            }
            let name = series.split('{').next().unwrap_or_default();
            match name {
                "coffer_kms_calls_total" => f.calls += value.parse::<u64>().unwrap_or(0),
                "coffer_kms_call_duration_seconds_sum" => {
                    f.seconds += value.parse::<f64>().unwrap_or(0.0);
                }
                "coffer_kms_call_duration_seconds_count" => {
                    f.timed += value.parse::<u64>().unwrap_or(0);
                }
                _ => {}
            }
        }
        f
    }

    /// Mean seconds a call.
    fn mean_s(&self) -> Option<f64> {
        (self.timed > 0).then(|| self.seconds / self.timed as f64)
    }
}

/// Ready, and at the generation it has now.
fn is_ready(s: &SealedSecret) -> bool {
    s.ready_condition().is_some_and(|c| c.status == "True")
        && s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation
}

/// The bench's SealedSecret watch, and whether each is Ready, once its
/// first list is in (the map of a re-list under way starts empty).
async fn readiness_watch(
    admin: &Client,
) -> anyhow::Result<(
    futures::stream::BoxStream<'static, Result<watcher::Event<SealedSecret>, watcher::Error>>,
    HashMap<String, bool>,
    HashMap<String, bool>,
)> {
    let sealed_api: Api<SealedSecret> = Api::all(admin.clone());
    let mut watch = watcher(sealed_api, watcher::Config::default().labels(BENCH_LABEL)).boxed();
    let (mut ready, mut init) = (HashMap::new(), HashMap::new());
    loop {
        match watch.try_next().await? {
            Some(watcher::Event::InitDone) => {
                ready = std::mem::take(&mut init);
                return Ok((watch, ready, init));
            }
            Some(ev) => apply_event(&mut ready, &mut init, ev),
            None => bail!("SealedSecret watch ended"),
        }
    }
}

fn apply_event(
    ready: &mut HashMap<String, bool>,
    init: &mut HashMap<String, bool>,
    ev: watcher::Event<SealedSecret>,
) {
    let key = |s: &SealedSecret| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
    match ev {
        watcher::Event::Init => init.clear(),
        watcher::Event::InitApply(s) => {
            init.insert(key(&s), is_ready(&s));
        }
        watcher::Event::InitDone => *ready = std::mem::take(init),
        watcher::Event::Apply(s) => {
            ready.insert(key(&s), is_ready(&s));
        }
        watcher::Event::Delete(s) => {
            ready.remove(&key(&s));
        }
    }
}

async fn create_key_secret(
    admin: &Client,
    key: &SecretKey,
    kek: Option<&dyn coffer_kms::Kek>,
) -> anyhow::Result<()> {
    // Exactly the Secret the controller makes for a new key.
    let mut secret = coffer_core::ring::key_secret(
        key,
        Some(jiff::Timestamp::now()),
        coffer_core::ring::KeyStatus::Usable,
        Some(1),
    );
    // With a KEK, wrapped as the controller wraps a new key: the identity's
    // text under the KEK, with the key id as context.
    if let Some(kek) = kek {
        let text = key.to_secret_string();
        let wrapped = kek
            .wrap(text.as_bytes(), &key.id().to_string())
            .await
            .context("wrapping the sealing key with the KEK")?;
        coffer_core::ring::wrap_key_secret(&mut secret, &kek.reference().to_string(), wrapped);
    }
    let api: Api<Secret> = Api::namespaced(admin.clone(), "coffer-system");
    api.create(&PostParams::default(), &secret)
        .await
        .context("creating the key Secret in coffer-system")?;
    Ok(())
}

/// Seals `n` Secrets of 3 items, spread over `namespaces`, on every core.
fn seal_all(
    n: usize,
    namespaces: &[String],
    recipients: &[coffer_format::PublicKey],
) -> anyhow::Result<(Vec<Item>, Vec<SealedSecret>)> {
    let items = make_items(n, ITEMS.len(), namespaces)?;
    let chunk = n.div_ceil(cores()).max(1);
    let sealed: Vec<anyhow::Result<Vec<SealedSecret>>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                s.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(j, item)| seal_one(c * chunk + j, item, recipients))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sealing thread"))
            .collect()
    });
    let mut all = Vec::with_capacity(n);
    for part in sealed {
        all.extend(part?);
    }
    Ok((items, all))
}

fn seal_one(
    i: usize,
    item: &Item,
    recipients: &[coffer_format::PublicKey],
) -> anyhow::Result<SealedSecret> {
    let manifest = SecretManifest {
        index: i + 1,
        metadata: ManifestMeta {
            name: Some(item.name.clone()),
            namespace: Some(item.namespace.clone()),
            labels: Some(BTreeMap::from([("app".into(), item.name.clone())])),
            annotations: Some(BTreeMap::from([("team".into(), "bench".into())])),
        },
        type_: Some("Opaque".into()),
        immutable: None,
        data: item
            .expected
            .iter()
            .map(|(k, v)| (k.clone(), SecretValue(Zeroizing::new(v.clone()))))
            .collect(),
    };
    let mut sealed = seal_secret(&manifest, None, false, Scope::Strict, recipients)?;
    sealed
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(BENCH_LABEL.into(), "controller".into());
    Ok(sealed)
}

/// Checks every Secret against the plaintext that was last sealed for it
/// (one paged list of the owned Secrets); returns how many are right. At
/// most 10 wrong ones are named, never with their values.
async fn verify_all(admin: &Client, items: &[Item]) -> anyhow::Result<usize> {
    let api: Api<Secret> = Api::all(admin.clone());
    let mut live: HashMap<String, Secret> = HashMap::with_capacity(items.len());
    let mut params = ListParams::default()
        .labels(coffer_core::api::OWNED_LABEL)
        .limit(1000);
    loop {
        let page = api.list(&params).await.context("listing the Secrets")?;
        for s in page.items {
            live.insert(
                format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()),
                s,
            );
        }
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => params = params.continue_token(&t),
            _ => break,
        }
    }
    let mut ok = 0;
    let mut named = 0;
    for item in items {
        let right = live.get(&item.key()).is_some_and(|secret| {
            secret_data(secret) == item.expected
                && secret
                    .labels()
                    .get(coffer_core::api::OWNED_LABEL)
                    .is_some_and(|v| v == &item.name)
                && secret.type_.as_deref() == Some("Opaque")
        });
        if right {
            ok += 1;
        } else if named < 10 {
            named += 1;
            say(format!(
                "{}: no Secret, or it differs from what was sealed",
                item.key()
            ));
        }
    }
    Ok(ok)
}

/// What the churn measured.
struct Churn {
    updates: usize,
    /// From the last update sent to every SealedSecret Ready at its
    /// generation (after the second restart).
    settled: Option<Duration>,
    /// The first controller was killed (SIGKILL) and the second stopped
    /// cleanly.
    exits_ok: bool,
    final_exit: String,
}

/// Updates `args.churn` SealedSecrets (new values, sealed again) over
/// about 40 s, while the controller starts, is killed with SIGKILL, starts
/// again, is stopped with SIGTERM and starts a third time; then waits until
/// every SealedSecret is Ready at its generation. `items` then holds the
/// new plaintexts.
async fn churn(
    args: &Args,
    admin: &Client,
    kubeconfig: &Path,
    items: &mut [Item],
    recipients: &[coffer_format::PublicKey],
) -> anyhow::Result<Churn> {
    let (mut watch, mut ready, mut init) = readiness_watch(admin).await?;
    let n = items.len();
    let u = args.churn.min(n);
    // Distinct random picks.
    let mut seed = [0u8; 8];
    getrandom::getrandom(&mut seed).context("no randomness")?;
    let mut x = u64::from_le_bytes(seed) | 1;
    let mut picks = std::collections::BTreeSet::new();
    while picks.len() < u {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        picks.insert((x % n as u64) as usize);
    }
    let mut updates = Vec::with_capacity(u);
    for &i in &picks {
        let fresh = make_items(1, ITEMS.len(), std::slice::from_ref(&items[i].namespace))?;
        items[i].expected = fresh.into_iter().next().expect("one item").expected;
        updates.push(seal_one(i, &items[i], recipients)?);
    }
    say(format!("churn: {u} updates over ~40 s during two restarts"));
    let pace = Duration::from_secs(40) / u.max(1) as u32;
    let sender = {
        let admin = admin.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let mut generations = HashMap::new();
            for (j, s) in updates.into_iter().enumerate() {
                tokio::time::sleep_until((t + pace * j as u32).into()).await;
                let api: Api<SealedSecret> =
                    Api::namespaced(admin.clone(), &s.namespace().unwrap_or_default());
                let patch = serde_json::json!({ "spec": s.spec });
                let mut attempt = 0;
                loop {
                    match api
                        .patch(
                            &s.name_any(),
                            &kube::api::PatchParams::default(),
                            &kube::api::Patch::Merge(&patch),
                        )
                        .await
                    {
                        Ok(done) => {
                            let key = format!(
                                "{}/{}",
                                done.namespace().unwrap_or_default(),
                                done.name_any()
                            );
                            generations.insert(key, done.metadata.generation.unwrap_or_default());
                            break;
                        }
                        Err(e) if attempt < 5 => {
                            attempt += 1;
                            say(format!("update {} failed ({e}); retrying", s.name_any()));
                            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                        }
                        Err(e) => return Err(anyhow::Error::new(e).context("updating")),
                    }
                }
            }
            anyhow::Ok((Instant::now(), generations))
        })
    };
    // Three controllers in turn: killed, stopped, kept.
    let mut exits = Vec::new();
    let mut last = None;
    for (round, how) in ["sigkill", "sigterm", "kept"].into_iter().enumerate() {
        let log = args.log.with_extension(format!("churn{}.log", round + 1));
        let (mut c, _) = Controller::spawn_logged_to(args, kubeconfig, &log)?;
        let t = Instant::now();
        while !log_has(&log, "controller started") {
            if let Some(exit) = c.exited() {
                bail!("a churn controller exited ({exit}); see {}", log.display());
            }
            if t.elapsed() > Duration::from_secs(args.load.timeout) {
                bail!("a churn controller did not start; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match how {
            "kept" => last = Some(c),
            _ => {
                // Mid-work: some of the updates are being reconciled.
                tokio::time::sleep(Duration::from_secs(8)).await;
                if how == "sigkill" {
                    #[allow(unsafe_code, reason = "kill through libc")]
                    unsafe {
                        libc::kill(c.pid, libc::SIGKILL)
                    };
                    exits.push(c.reap(true).map(|r| r.0).unwrap_or_default());
                } else {
                    exits.push(c.stop(Duration::from_secs(30)).0);
                }
                say(format!(
                    "churn: controller {} {}",
                    round + 1,
                    exits.last().expect("pushed")
                ));
            }
        }
    }
    let (last_sent, mut generations) = sender.await.context("the update task")??;
    say("churn: all updates sent; waiting for every SealedSecret to be Ready");
    let deadline = last_sent + Duration::from_secs(args.load.timeout);
    let mut settled = None;
    loop {
        // Ready at a generation the watch has shown to be the updated one
        // (a relist, after the watch was idle meanwhile, replaces `ready`
        // whole).
        let all = generations.is_empty() && ready.len() == n && ready.values().all(|r| *r);
        if all {
            settled = Some(last_sent.elapsed());
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
            Ok(Some(Ok(ev))) => {
                if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = &ev {
                    let key = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                    // Seen Ready at (at least) the updated generation. The
                    // generation alone is not enough: while a relist runs,
                    // `ready` is the map from before it, where an updated
                    // object may still read as Ready at its old generation.
                    if is_ready(o)
                        && generations
                            .get(&key)
                            .is_some_and(|g| o.metadata.generation >= Some(*g))
                    {
                        generations.remove(&key);
                    }
                }
                apply_event(&mut ready, &mut init, ev)
            }
            Ok(Some(Err(e))) => say(format!("watch: {e}")),
            Ok(None) => bail!("SealedSecret watch ended"),
            Err(_) => {}
        }
    }
    say(format!("churn settled: {settled:?}"));
    let mut last = last.expect("the third controller runs");
    let (final_exit, _, _) = last.stop(Duration::from_secs(30));
    let exits_ok = exits.first().is_some_and(|e| e == "killed by signal 9")
        && exits.get(1).is_some_and(|e| e == "exit 0")
        && final_exit == "exit 0";
    Ok(Churn {
        updates: u,
        settled,
        exits_ok,
        final_exit,
    })
}

fn report_churn(report: &mut Report, c: &Churn) {
    report.row(
        "**churn**: updates while the controller was killed (SIGKILL), restarted, stopped (SIGTERM), restarted",
        format!(
            "{} SealedSecrets got new values; every one Ready at its generation {} after the last update; controllers {}",
            c.updates,
            match c.settled {
                Some(d) => secs(d),
                None => "NEVER (timeout)".into(),
            },
            if c.exits_ok {
                format!("exited as meant (last: {})", c.final_exit)
            } else {
                format!("did NOT exit as meant (last: {})", c.final_exit)
            }
        ),
    );
}

/// The controller used the bench key: no other key Secret, and the
/// published recipients file names it.
async fn verify_key_ring(admin: &Client, key: &SecretKey) -> anyhow::Result<bool> {
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "coffer-system");
    let keys = secrets
        .list_metadata(&ListParams::default().labels(KEY_ID_LABEL))
        .await?;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "coffer-system");
    let published = cms
        .get_opt(RECIPIENTS_CONFIGMAP)
        .await?
        .and_then(|cm| cm.data?.get(RECIPIENTS_KEY).cloned())
        .and_then(|t| RecipientsFile::parse(&t).ok())
        .map(|f| f.keys());
    let ok = keys.items.len() == 1 && published.as_deref() == Some(&[key.public().clone()][..]);
    if !ok {
        say(format!(
            "key ring: {} key Secrets, recipients file {:?}",
            keys.items.len(),
            published.map(|k| k.iter().map(|p| p.id().to_string()).collect::<Vec<_>>())
        ));
    }
    Ok(ok)
}

/// The running controller process.
struct Controller;

/// Where a controller listens, on loopback.
struct Listeners {
    /// The main port (`/metrics`).
    http: SocketAddr,
    /// The probes' port (`/readyz`).
    probe: SocketAddr,
}

impl Controller {
    fn spawn(args: &Args, kubeconfig: &Path) -> anyhow::Result<(Child, Listeners)> {
        Self::spawn_logged_to(args, kubeconfig, &args.log)
    }

    fn spawn_logged_to(
        args: &Args,
        kubeconfig: &Path,
        log: &Path,
    ) -> anyhow::Result<(Child, Listeners)> {
        let controller = &args.controller.controller;
        let mut cmd = Command::new(controller);
        cmd.arg("--kubeconfig").arg(kubeconfig);
        if let Some(q) = args.qps {
            cmd.arg("--kube-qps").arg(q.to_string());
        }
        if let Some(b) = args.burst {
            cmd.arg("--kube-burst").arg(b.to_string());
        }
        // Warnings from everything; the few INFO lines of run.rs (the
        // last one carries the API request count) and of the read-ahead;
        // unless the flags after `--` choose.
        if !args
            .controller
            .controller_args
            .iter()
            .any(|a| a.starts_with("--log-level"))
        {
            cmd.args([
                "--log-level",
                "warn,coffer_controller::run=info,coffer_controller::reconcile::read_ahead=info",
            ]);
        }
        cmd.args(["--log-format", "json"]);
        if let Some(c) = args.concurrency {
            cmd.arg("--concurrency").arg(c.to_string());
        }
        cmd.args(&args.kek_flags);
        cmd.args(&args.controller.controller_args);
        // Loopback only, on free ports the bench then polls (/readyz) and
        // reads (/metrics). Environment variables rather than --listen and
        // --probe-listen: a controller without those listeners ignores them.
        let listeners = Listeners {
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            probe: SocketAddr::from(([127, 0, 0, 1], free_port())),
        };
        scrub_env(&mut cmd)
            .env("COFFER_LISTEN", listeners.http.to_string())
            .env("COFFER_PROBE_LISTEN", listeners.probe.to_string());
        let child = spawn_logged(&mut cmd, log, &controller.display().to_string())?;
        Ok((child, listeners))
    }
}

/// `field` (`api_requests`, `secret_writes`) from the controller's JSON
/// "controller stopped" line.
fn api_requests_from_log(log: &Path, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v.get("message")?.as_str()? == "controller stopped").then(|| v.get(field)?.as_u64())?
    })
}

/// Whether the controller's log has a line with this message.
fn log_has(log: &Path, message: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains(message))
}

fn report_restart(report: &mut Report, r: &Restart) {
    report.row(
        "**restart**, all unsealed: start → every SealedSecret reconciled",
        match r.caught_up {
            Some(d) => format!("**{}**", secs(d)),
            None => "**not caught up before the timeout**".into(),
        },
    );
    let n = |x: Option<u64>| x.map_or_else(|| "?".into(), |x| x.to_string());
    report.row(
        "restart: API requests (of them writes to Secrets and SealedSecrets), peak RSS, exit",
        format!(
            "{} ({}), {:.1} MiB, {}",
            n(r.requests),
            n(r.writes),
            mib(r.hwm),
            r.exit
        ),
    );
}

/// Writes the figures as JSON beside the report.
fn write_figures(args: &Args, f: &Figures) -> anyhow::Result<()> {
    if let Some(out) = &args.run.out {
        std::fs::write(out.with_extension("json"), serde_json::to_vec_pretty(f)?)?;
    }
    Ok(())
}

/// The ceiling run: one paged list, then per SealedSecret exactly the two
/// writes a controller must make, `concurrency` at once.
async fn ceiling(admin: &Client, items: &[Item], concurrency: usize) -> anyhow::Result<Duration> {
    let expected: HashMap<String, &Item> = items.iter().map(|i| (i.key(), i)).collect();
    let start = Instant::now();
    let api: Api<SealedSecret> = Api::all(admin.clone());
    let mut listed = Vec::with_capacity(items.len());
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().labels(BENCH_LABEL).limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await?;
        listed.extend(page.items);
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    futures::stream::iter(listed)
        .map(|s| {
            let admin = admin.clone();
            let place = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
            let item = expected.get(&place).copied();
            async move {
                let item = item.context("listed an unknown SealedSecret")?;
                let ns = s.namespace().unwrap_or_default();
                let owner = s.controller_owner_ref(&()).context("owner reference")?;
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(item.name.clone()),
                        namespace: Some(ns.clone()),
                        labels: Some(BTreeMap::from([(
                            coffer_core::api::OWNED_LABEL.to_string(),
                            item.name.clone(),
                        )])),
                        owner_references: Some(vec![owner]),
                        ..Default::default()
                    },
                    type_: Some("Opaque".into()),
                    data: Some(
                        item.expected
                            .iter()
                            .map(|(k, v)| (k.clone(), k8s_openapi::ByteString(v.clone())))
                            .collect(),
                    ),
                    ..Default::default()
                };
                Api::<Secret>::namespaced(admin.clone(), &ns)
                    .create(&PostParams::default(), &secret)
                    .await?;
                let generation = s.metadata.generation;
                let message = format!(
                    "unsealed {} item(s) into Secret {ns}/{}",
                    item.expected.len(),
                    item.name
                );
                let status = serde_json::json!({"status": {
                    "observedGeneration": generation,
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Unsealed",
                        "message": message, "observedGeneration": generation,
                        "lastTransitionTime": jiff::Timestamp::now().to_string()}]}});
                Api::<SealedSecret>::namespaced(admin, &ns)
                    .patch_status(
                        &item.name,
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&status),
                    )
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<()>()
        .await?;
    Ok(start.elapsed())
}

/// CPU seconds of every process involved, and of the machine.
struct Snapshot {
    at: Instant,
    controller: f64,
    apiserver: f64,
    kcm: f64,
    own: f64,
    /// (busy, total) jiffies over all CPUs from /proc/stat.
    machine: (u64, u64),
}

impl Snapshot {
    fn take(controller: Option<i32>, apiserver: Option<i32>, kcm: Option<i32>) -> Self {
        let cpu = |pid: Option<i32>| pid.and_then(proc_cpu).unwrap_or(0.0);
        Snapshot {
            at: Instant::now(),
            controller: cpu(controller),
            apiserver: cpu(apiserver),
            kcm: cpu(kcm),
            own: cpu(Some(std::process::id() as i32)),
            machine: machine_jiffies(),
        }
    }

    /// Busy core-seconds since `earlier`, and the number of cores.
    fn machine_busy_since(&self, earlier: &Snapshot) -> (f64, usize) {
        let busy = self.machine.0.saturating_sub(earlier.machine.0) as f64 / clk_tck();
        (busy, cores())
    }
}

/// Resident memory, split into heap and stacks (anonymous) and mapped
/// files (mostly the executable's own pages).
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
}

impl Rss {
    fn of(pid: i32) -> Self {
        let f = |name| proc_status_kib(pid, name).unwrap_or(0);
        Rss {
            total: f("VmRSS:"),
            anon: f("RssAnon:"),
            file: f("RssFile:") + f("RssShmem:"),
        }
    }
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (anon {:.1} + file {:.1})",
            mib_text(self.total),
            mib(self.anon),
            mib(self.file)
        )
    }
}

fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The report: one measure a row.
struct Report(Table);

impl Default for Report {
    fn default() -> Self {
        Report(Table::new(&["measure", "value"]))
    }
}

impl Report {
    fn row(&mut self, k: &str, v: String) {
        self.0.row([k.to_string(), v]);
    }

    fn render(&self) -> String {
        self.0.render()
    }
}
