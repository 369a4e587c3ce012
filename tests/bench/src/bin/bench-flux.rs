//! Coffer and SOPS side by side in Flux (`tests/bench/flux-sops`): the same
//! N values, once as SOPS-encrypted Secrets (age recipient) that Flux's
//! kustomize-controller decrypts (`decryption.provider: sops`), once as
//! Coffer SealedSecrets that kustomize-controller applies and the Coffer
//! controller unseals. Both from one Git repository served over HTTP to
//! Flux's source-controller, on one envtest API server. For each: the time
//! from the Kustomization's creation until every Secret holds its value,
//! the CPU of kustomize-controller (and of coffer-controller) until then,
//! and the cost of each later reconcile of an unchanged revision (what every
//! `interval` costs): wall time and CPU, median of R forced reconciles.
#![allow(
    clippy::too_many_lines,
    reason = "a benchmark driver: each run is one long sequence of timed steps"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use coffer_bench::objects::{Item, make_items};
use coffer_bench::process::{scrub_env, spawn_logged};
use coffer_bench::report::{Table, exit_code, machine, publish, say, secs_fine, speak_as};
use coffer_core::manifest::read_secrets;
use coffer_core::transform::seal_secret;
use coffer_format::Scope;
use coffer_test_support::flux::Flux;
use coffer_test_support::githttp::{GitHttpServer, GitRepo};
use coffer_test_support::procfs::{Child, proc_cpu};
use coffer_test_support::{
    Server, free_port, grant_key_namespace, published_recipients, secret_data,
};
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

const SOPS_NS: &str = "bench-sops";
const COFFER_NS: &str = "bench-coffer";
const KEY_NS: &str = "bench-coffer-keys";

#[derive(Parser, Debug)]
#[command(about = "Coffer and SOPS side by side in Flux")]
struct Args {
    /// The envtest API server's directory (tests/envtest/start DIR).
    #[arg(long)]
    envtest_dir: PathBuf,
    /// The coffer-controller binary.
    #[arg(long)]
    coffer_controller: PathBuf,
    /// The sops binary (tests/flux/build sops).
    #[arg(long)]
    sops: PathBuf,
    /// age-keygen (Debian's age), for SOPS's age key.
    #[arg(long, default_value = "age-keygen")]
    age_keygen: PathBuf,
    /// Number of Secrets, one value each.
    #[arg(long, default_value_t = 2000)]
    n: usize,
    /// Forced reconciles of the unchanged revision per run.
    #[arg(long, default_value_t = 5)]
    reconciles: usize,
    /// Seconds each run has until every Secret is right.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Where the repository, logs and keys go.
    #[arg(long)]
    work: PathBuf,
    /// Markdown report to write (it is printed too).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The versions line of the report.
    #[arg(long, default_value = "")]
    versions: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    speak_as("bench-flux", true);
    exit_code("bench-flux", run(Args::parse()).await)
}

/// What one side measured.
struct Outcome {
    /// Kustomization created → every Secret right.
    all_right: Duration,
    /// CPU seconds over that time: kustomize-controller, coffer-controller.
    cpu_kustomize: f64,
    cpu_coffer: Option<f64>,
    /// Per forced reconcile: wall (annotation → handled), CPU of each.
    reconcile_wall: Vec<Duration>,
    reconcile_cpu_kustomize: Vec<f64>,
    reconcile_cpu_coffer: Vec<f64>,
    /// Size of the side's directory in the repository.
    repo_bytes: u64,
}

async fn run(args: Args) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&args.work)?;
    let work = args.work.canonicalize()?;
    let server = Server {
        dir: args.envtest_dir.canonicalize().context("envtest dir")?,
    };
    server.install_deploy();
    let admin = server.admin().await;
    for ns in [SOPS_NS, COFFER_NS, KEY_NS] {
        coffer_bench::objects::ensure_namespace(&admin, ns).await?;
    }

    // The values: N Secrets `app-NNNNNN`, one random value each.
    let items = make_items(args.n, 1, &["-".to_string()])?;

    // Coffer's controller, started first: it makes its key and publishes
    // the recipients the values are sealed to (as `coffer seal` would
    // fetch them). Under the shipped RBAC, at its default settings.
    grant_key_namespace(&admin, KEY_NS).await;
    let kubeconfig = work.join("coffer-controller.kubeconfig");
    server
        .token_kubeconfig("coffer-system", "coffer-controller", &kubeconfig)
        .await?;
    let mut cmd = Command::new(&args.coffer_controller);
    cmd.arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--namespaces", COFFER_NS, "--key-namespace", KEY_NS])
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()));
    scrub_env(&mut cmd).env("COFFER_PROBE_LISTEN", format!("127.0.0.1:{}", free_port()));
    let mut coffer = spawn_logged(&mut cmd, &work.join("coffer-controller.log"), "coffer")?;
    let recipients = published_recipients(&admin, KEY_NS, None).await;

    // SOPS's age key: Flux reads it from a Secret (`*.agekey`).
    let age_key = work.join("sops.agekey");
    let _ = std::fs::remove_file(&age_key);
    let out = Command::new(&args.age_keygen)
        .arg("-o")
        .arg(&age_key)
        .output()
        .context("age-keygen")?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let age_recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("Public key: "))
        .context("age-keygen printed no public key")?
        .to_string();

    // The repository: sops/ and coffer/, one file per Secret.
    let git_root = work.join("git");
    let _ = std::fs::remove_dir_all(&git_root);
    let repo = GitRepo::init(&git_root, "bench");
    let t = Instant::now();
    write_sealed(&repo, &items, &recipients)?;
    let seal_time = t.elapsed();
    say(format!(
        "sealed {} values with coffer-core in {}",
        args.n,
        secs_fine(seal_time)
    ));
    let t = Instant::now();
    write_sops(&repo, &items, &args.sops, &age_recipient, &work).await?;
    let sops_time = t.elapsed();
    say(format!(
        "encrypted {} Secrets with sops in {}",
        args.n,
        secs_fine(sops_time)
    ));
    let commit = repo.commit("bench: the same values, sealed and SOPS-encrypted");
    let git = GitHttpServer::start(&git_root)?;
    let coffer_bytes = dir_bytes(&repo.dir().join("coffer"));
    let sops_bytes = dir_bytes(&repo.dir().join("sops"));

    let mut outcomes = BTreeMap::new();
    for side in ["sops", "coffer"] {
        let mut flux = Flux::start(&server, &format!("bench-flux-{side}"), &[])?;
        if side == "sops" {
            let yaml = server.kubectl_ok(&[
                "create",
                "secret",
                "generic",
                "-n",
                "flux-system",
                "sops-age",
                &format!("--from-file=bench.agekey={}", age_key.display()),
                "--dry-run=client",
                "-o",
                "yaml",
            ]);
            server.kubectl_stdin(&["apply", "-f", "-"], &yaml);
        }
        server.kubectl_stdin(
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: bench\n  namespace: flux-system\nspec:\n  interval: 1h\n  url: {}\n  ref:\n    branch: main\n",
                git.url("bench")
            ),
        );
        wait_for(
            &mut flux,
            Duration::from_secs(300),
            "the GitRepository's artifact",
            || {
                let v = get_json(&server, "gitrepositories.source.toolkit.fluxcd.io", "bench");
                v["status"]["artifact"]["revision"]
                    .as_str()
                    .is_some_and(|r| r.ends_with(&commit))
            },
        )?;
        // Both controllers settled (started, caches synced).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let outcome = measure(&args, &server, &admin, &mut flux, &coffer, side, &items).await?;
        let mut outcome = outcome;
        outcome.repo_bytes = if side == "sops" {
            sops_bytes
        } else {
            coffer_bytes
        };
        assert_no_plaintext(&flux.logs(), &items, &format!("Flux's logs ({side})"))?;
        // Deleted while Flux runs (their finalizers), so that the next
        // side starts from nothing: a GitRepository left behind would
        // name the stopped source-controller's artifact.
        server.kubectl_ok(&[
            "delete",
            "-n",
            "flux-system",
            &format!("kustomizations.kustomize.toolkit.fluxcd.io/{side}"),
            "gitrepositories.source.toolkit.fluxcd.io/bench",
            "--timeout=120s",
        ]);
        drop(flux);
        outcomes.insert(side, outcome);
    }
    if let Some(exit) = coffer.exited() {
        bail!("coffer-controller exited ({exit})");
    }
    coffer.stop(Duration::from_secs(5));
    assert_no_plaintext(
        &std::fs::read_to_string(work.join("coffer-controller.log")).unwrap_or_default(),
        &items,
        "coffer-controller's log",
    )?;

    let report = render(&args, &outcomes, seal_time, sops_time);
    publish(&report, args.out.as_deref())?;
    Ok(true)
}

/// One side: the Kustomization created, every Secret right, then forced
/// reconciles of the same revision.
async fn measure(
    args: &Args,
    server: &Server,
    admin: &kube::Client,
    flux: &mut Flux,
    coffer: &Child,
    side: &str,
    items: &[Item],
) -> anyhow::Result<Outcome> {
    let ns = if side == "sops" { SOPS_NS } else { COFFER_NS };
    let decryption = if side == "sops" {
        "  decryption:\n    provider: sops\n    secretRef:\n      name: sops-age\n"
    } else {
        ""
    };
    let kustomization = format!(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: {side}\n  namespace: flux-system\nspec:\n  interval: 1h\n  path: ./{side}\n  prune: false\n  sourceRef:\n    kind: GitRepository\n    name: bench\n  timeout: 10m\n{decryption}"
    );
    let k_pid = flux.kustomize.pid;
    let cpu = |pid: i32| proc_cpu(pid).unwrap_or(0.0);
    let k0 = cpu(k_pid);
    let c0 = cpu(coffer.pid);
    say(format!("{side}: Kustomization created"));
    let t0 = Instant::now();
    server.kubectl_stdin(&["apply", "-f", "-"], &kustomization);

    let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
    let deadline = t0 + Duration::from_secs(args.timeout);
    let mut last_report = Instant::now();
    let all_right = loop {
        flux.assert_running()?;
        let list = secrets.list(&ListParams::default()).await?;
        let by_name: BTreeMap<String, BTreeMap<String, Vec<u8>>> = list
            .items
            .iter()
            .filter_map(|s| Some((s.metadata.name.clone()?, secret_data(s))))
            .collect();
        let right = items
            .iter()
            .filter(|i| by_name.get(&i.name) == Some(&i.expected))
            .count();
        if right == items.len() {
            break t0.elapsed();
        }
        if Instant::now() > deadline {
            bail!(
                "{side}: {right} of {} Secrets right after {}s",
                items.len(),
                args.timeout
            );
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            say(format!("{side}: {right} of {} right", items.len()));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let cpu_kustomize = cpu(k_pid) - k0;
    let cpu_coffer = cpu(coffer.pid) - c0;
    say(format!(
        "{side}: all {} right after {}; CPU kustomize-controller {:.2} s, coffer-controller {:.2} s",
        items.len(),
        secs_fine(all_right),
        cpu_kustomize,
        cpu_coffer
    ));
    // The Kustomization's own first reconcile done (it may report after
    // the Secrets are in).
    wait_for(
        flux,
        Duration::from_secs(args.timeout),
        "the Kustomization Ready",
        || {
            ready(&get_json(
                server,
                "kustomizations.kustomize.toolkit.fluxcd.io",
                side,
            ))
        },
    )?;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut outcome = Outcome {
        all_right,
        cpu_kustomize,
        cpu_coffer: (side == "coffer").then_some(cpu_coffer),
        reconcile_wall: Vec::new(),
        reconcile_cpu_kustomize: Vec::new(),
        reconcile_cpu_coffer: Vec::new(),
        repo_bytes: 0,
    };
    for r in 0..args.reconciles {
        let token = format!("bench-{side}-{r}-{}", coffer_test_support::suffix());
        let k0 = cpu(k_pid);
        let c0 = cpu(coffer.pid);
        let t = Instant::now();
        server.kubectl_ok(&[
            "annotate",
            "--overwrite",
            "-n",
            "flux-system",
            &format!("kustomizations.kustomize.toolkit.fluxcd.io/{side}"),
            &format!("reconcile.fluxcd.io/requestedAt={token}"),
        ]);
        wait_for(
            flux,
            Duration::from_secs(args.timeout),
            "a forced reconcile",
            || {
                let k = get_json(server, "kustomizations.kustomize.toolkit.fluxcd.io", side);
                k["status"]["lastHandledReconcileAt"] == token.as_str() && ready(&k)
            },
        )?;
        let wall = t.elapsed();
        // What the reconcile set off after it reported (the Coffer
        // controller's watch events, if any) finishes within this pause.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let dk = cpu(k_pid) - k0;
        let dc = cpu(coffer.pid) - c0;
        say(format!(
            "{side}: reconcile {}: {} wall, CPU kustomize-controller {:.2} s, coffer-controller {:.3} s",
            r + 1,
            secs_fine(wall),
            dk,
            dc
        ));
        outcome.reconcile_wall.push(wall);
        outcome.reconcile_cpu_kustomize.push(dk);
        outcome.reconcile_cpu_coffer.push(dc);
    }
    // Every Secret still right after the reconciles.
    let list = secrets.list(&ListParams::default()).await?;
    let right = list
        .items
        .iter()
        .filter(|s| {
            items
                .iter()
                .any(|i| Some(&i.name) == s.metadata.name.as_ref() && secret_data(s) == i.expected)
        })
        .count();
    if right != items.len() {
        bail!(
            "{side}: {right} of {} Secrets right after the reconciles",
            items.len()
        );
    }
    Ok(outcome)
}

/// Polls `done` every 250 ms (and that Flux still runs) until `timeout`.
fn wait_for(
    flux: &mut Flux,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        flux.assert_running()?;
        if done() {
            return Ok(());
        }
        if t.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn get_json(server: &Server, kind: &str, name: &str) -> serde_json::Value {
    let out = server
        .kubectl()
        .args(["get", "-n", "flux-system", kind, name, "-o", "json"])
        .output();
    out.ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Ready=True at the object's current generation, and no longer
/// Reconciling (Flux marks Reconciling, and records the handled request,
/// while Ready still holds the previous outcome).
fn ready(k: &serde_json::Value) -> bool {
    let current = k["status"]["observedGeneration"] == k["metadata"]["generation"];
    let has = |type_: &str| {
        k["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == type_ && c["status"] == "True")
        })
    };
    current && has("Ready") && !has("Reconciling")
}

/// The plain Secret of `item` in `namespace`, as YAML with base64 data.
fn secret_yaml(item: &Item, namespace: &str) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}\n  namespace: {namespace}\ntype: Opaque\ndata:\n",
        item.name
    );
    for (k, v) in &item.expected {
        let b64 = serde_json::to_value(ByteString(v.clone())).expect("base64");
        y.push_str(&format!("  {k}: {}\n", b64.as_str().expect("a string")));
    }
    y
}

fn kustomization_file(repo: &GitRepo, dir: &str, items: &[Item]) {
    let mut k = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        .to_string();
    for i in items {
        k.push_str(&format!("  - {}.yaml\n", i.name));
    }
    repo.write(&format!("{dir}/kustomization.yaml"), &k);
}

/// coffer/: each value sealed (strict scope) to the controller's published
/// recipients, as `coffer seal` does, with coffer-core.
fn write_sealed(
    repo: &GitRepo,
    items: &[Item],
    recipients: &[coffer_format::PublicKey],
) -> anyhow::Result<()> {
    for i in items {
        let plain = secret_yaml(i, COFFER_NS);
        let m = &read_secrets(&plain)?[0];
        let sealed = seal_secret(m, None, false, Scope::Strict, recipients)?;
        repo.write(
            &format!("coffer/{}.yaml", i.name),
            &serde_json::to_string_pretty(&sealed)?,
        );
    }
    kustomization_file(repo, "coffer", items);
    Ok(())
}

/// sops/: each Secret encrypted by the sops CLI for the age recipient,
/// data only (the layout Flux's guide gives), two processes at a time.
async fn write_sops(
    repo: &GitRepo,
    items: &[Item],
    sops: &Path,
    recipient: &str,
    work: &Path,
) -> anyhow::Result<()> {
    let plain_dir = work.join("sops-plain");
    let _ = std::fs::remove_dir_all(&plain_dir);
    std::fs::create_dir_all(&plain_dir)?;
    std::fs::create_dir_all(repo.dir().join("sops"))?;
    let jobs = items.iter().map(|i| {
        let plain = plain_dir.join(format!("{}.yaml", i.name));
        let out = repo.dir().join(format!("sops/{}.yaml", i.name));
        let text = secret_yaml(i, SOPS_NS);
        let sops = sops.to_path_buf();
        let recipient = recipient.to_string();
        let dir = plain_dir.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            std::fs::write(&plain, text)?;
            let o = Command::new(&sops)
                .current_dir(&dir)
                .args([
                    "--encrypt",
                    "--age",
                    &recipient,
                    "--encrypted-regex",
                    "^(data|stringData)$",
                    "--input-type",
                    "yaml",
                    "--output-type",
                    "yaml",
                ])
                .arg(&plain)
                .output()?;
            if !o.status.success() {
                bail!("sops: {}", String::from_utf8_lossy(&o.stderr));
            }
            std::fs::write(&out, &o.stdout)?;
            std::fs::remove_file(&plain)?;
            Ok(())
        })
    });
    let results: Vec<_> = futures::stream::iter(jobs)
        .buffer_unordered(2)
        .collect()
        .await;
    for r in results {
        r??;
    }
    let _ = std::fs::remove_dir_all(&plain_dir);
    kustomization_file(repo, "sops", items);
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn assert_no_plaintext(text: &str, items: &[Item], what: &str) -> anyhow::Result<()> {
    for i in items {
        for v in i.expected.values() {
            if text.contains(String::from_utf8_lossy(v).as_ref()) {
                bail!("a plaintext value in {what}");
            }
        }
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() { 0.0 } else { s[s.len() / 2] }
}

fn render(
    args: &Args,
    o: &BTreeMap<&str, Outcome>,
    seal_time: Duration,
    sops_time: Duration,
) -> String {
    let (s, c) = (&o["sops"], &o["coffer"]);
    let n = args.n;
    let wall = |x: &Outcome| {
        median(
            &x.reconcile_wall
                .iter()
                .map(Duration::as_secs_f64)
                .collect::<Vec<_>>(),
        )
    };
    let mut t = Table::new(&["measure", "SOPS in Flux", "Coffer in Flux"]);
    t.row([
        format!(
            "encrypt / seal {n} values (one `sops` process per Secret; coffer-core in one process)"
        ),
        secs_fine(sops_time),
        secs_fine(seal_time),
    ]);
    t.row([
        "repository size of the values".to_string(),
        format!("{:.1} MiB", s.repo_bytes as f64 / 1048576.0),
        format!("{:.1} MiB", c.repo_bytes as f64 / 1048576.0),
    ]);
    t.row([
        format!("**Kustomization created → all {n} Secrets right**"),
        format!("**{}**", secs_fine(s.all_right)),
        format!("**{}**", secs_fine(c.all_right)),
    ]);
    t.row([
        "CPU until then: kustomize-controller".to_string(),
        format!("{:.2} s", s.cpu_kustomize),
        format!("{:.2} s", c.cpu_kustomize),
    ]);
    t.row([
        "CPU until then: coffer-controller".to_string(),
        "–".to_string(),
        format!("{:.2} s", c.cpu_coffer.unwrap_or(0.0)),
    ]);
    t.row([
        "**CPU until then, in all**".to_string(),
        format!("**{:.2} s**", s.cpu_kustomize),
        format!("**{:.2} s**", c.cpu_kustomize + c.cpu_coffer.unwrap_or(0.0)),
    ]);
    t.row([
        format!(
            "each later reconcile of the same revision, wall (median of {})",
            args.reconciles
        ),
        format!("{:.2} s", wall(s)),
        format!("{:.2} s", wall(c)),
    ]);
    t.row([
        "**each later reconcile, CPU: kustomize-controller**".to_string(),
        format!("**{:.2} s**", median(&s.reconcile_cpu_kustomize)),
        format!("**{:.2} s**", median(&c.reconcile_cpu_kustomize)),
    ]);
    t.row([
        "each later reconcile, CPU: coffer-controller".to_string(),
        "–".to_string(),
        format!("{:.3} s", median(&c.reconcile_cpu_coffer)),
    ]);
    let mut r = format!(
        "# Coffer and SOPS in Flux: {n} values\n\n{}\n\n{}\n\n",
        machine("CPUs"),
        args.versions
    );
    r.push_str(&t.render());
    r.push_str(&format!(
        "\nPer reconcile (wall s / kustomize-controller CPU s / coffer-controller CPU s):\n\n- SOPS: {}\n- Coffer: {}\n",
        per_run(s),
        per_run(c)
    ));
    r
}

fn per_run(o: &Outcome) -> String {
    o.reconcile_wall
        .iter()
        .zip(&o.reconcile_cpu_kustomize)
        .zip(&o.reconcile_cpu_coffer)
        .map(|((w, k), c)| format!("{:.2}/{k:.2}/{c:.3}", w.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}
