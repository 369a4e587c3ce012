//! Flux's own controllers against a test API server: source-controller and
//! kustomize-controller, built from their Go modules by `tests/flux/build`
//! (cached), their CRDs installed, each run as a process with the admin
//! kubeconfig (as a Pod would run it with its ServiceAccount), on loopback
//! ports, killed with the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::procfs::Child;
use crate::{Server, free_port, root, target_dir};

/// What `tests/flux/build` makes.
#[derive(Clone, Debug)]
pub struct FluxBins {
    pub source_controller: PathBuf,
    pub kustomize_controller: PathBuf,
    /// Every CRD of both controllers.
    pub crds: PathBuf,
}

impl FluxBins {
    /// Builds them once per test process (cached across runs by the script).
    pub fn get() -> &'static FluxBins {
        static BINS: OnceLock<FluxBins> = OnceLock::new();
        BINS.get_or_init(|| {
            let dir = build_dir(&[]);
            FluxBins {
                source_controller: dir.join("source-controller"),
                kustomize_controller: dir.join("kustomize-controller"),
                crds: dir.join("crds"),
            }
        })
    }
}

/// The `sops` CLI (`tests/flux/build sops`).
pub fn sops_bin() -> PathBuf {
    build_dir(&["sops"]).join("sops")
}

fn build_dir(args: &[&str]) -> PathBuf {
    let out = Command::new(root().join("tests/flux/build"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/flux/build");
    assert!(out.status.success(), "tests/flux/build {args:?} failed");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("tests/flux/build prints a path"),
    )
}

/// Both controllers, running.
pub struct Flux {
    pub source: Child,
    pub kustomize: Child,
    /// Their logs: `target/e2e/NAME-source-controller.log`, ...
    pub source_log: PathBuf,
    pub kustomize_log: PathBuf,
    /// source-controller's artifact storage.
    pub storage: PathBuf,
}

impl Flux {
    /// Installs Flux's CRDs and the namespace `flux-system` on `server`,
    /// then starts both controllers (watching every namespace, no leader
    /// election, artifacts served on a loopback port); `name` names their
    /// logs. `kustomize_args` go to kustomize-controller.
    pub fn start(server: &Server, name: &str, kustomize_args: &[&str]) -> anyhow::Result<Flux> {
        let bins = FluxBins::get();
        server.kubectl_ok(&[
            "apply",
            "--server-side",
            "-f",
            bins.crds.to_str().context("CRD path")?,
        ]);
        server.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/gitrepositories.source.toolkit.fluxcd.io",
            "crd/kustomizations.kustomize.toolkit.fluxcd.io",
        ]);
        if server
            .kubectl()
            .args(["get", "namespace", "flux-system"])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            server.kubectl_ok(&["create", "namespace", "flux-system"]);
        }

        let dir = target_dir().join("e2e");
        std::fs::create_dir_all(&dir)?;
        let storage = dir.join(format!("{name}-flux-storage"));
        let _ = std::fs::remove_dir_all(&storage);
        std::fs::create_dir_all(&storage)?;
        let storage_addr = format!("127.0.0.1:{}", free_port());
        let source_log = dir.join(format!("{name}-source-controller.log"));
        let kustomize_log = dir.join(format!("{name}-kustomize-controller.log"));
        let source = spawn(
            server,
            &bins.source_controller,
            &source_log,
            &[
                &format!("--storage-path={}", storage.display()),
                &format!("--storage-addr={storage_addr}"),
                // kustomize-controller fetches artifacts from here.
                &format!("--storage-adv-addr={storage_addr}"),
            ],
        )?;
        let kustomize = spawn(
            server,
            &bins.kustomize_controller,
            &kustomize_log,
            kustomize_args,
        )?;
        Ok(Flux {
            source,
            kustomize,
            source_log,
            kustomize_log,
            storage,
        })
    }

    /// Fails if either controller has exited (with its log's tail).
    pub fn assert_running(&mut self) -> anyhow::Result<()> {
        for (child, log) in [
            (&mut self.source, &self.source_log),
            (&mut self.kustomize, &self.kustomize_log),
        ] {
            if let Some(exit) = child.exited() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                bail!(
                    "{} exited ({exit}):\n{}",
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        Ok(())
    }

    /// Both logs, for checks that no plaintext went into them.
    pub fn logs(&self) -> String {
        let mut text = std::fs::read_to_string(&self.source_log).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(&self.kustomize_log).unwrap_or_default());
        text
    }
}

impl Drop for Flux {
    fn drop(&mut self) {
        self.kustomize.stop(Duration::from_secs(5));
        self.source.stop(Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&self.storage);
    }
}

/// A Flux controller with the admin kubeconfig, its probes and metrics on
/// free loopback ports, its output in `log`.
fn spawn(server: &Server, bin: &Path, log: &Path, args: &[&str]) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log)?;
    let mut cmd = Command::new(bin);
    cmd.args([
        &format!("--metrics-addr=127.0.0.1:{}", free_port()),
        &format!("--health-addr=127.0.0.1:{}", free_port()),
        "--log-level=info",
        "--log-encoding=json",
    ])
    .args(args)
    .env("KUBECONFIG", server.kubeconfig())
    .env("RUNTIME_NAMESPACE", "flux-system")
    .stdin(Stdio::null())
    .stdout(out.try_clone()?)
    .stderr(out);
    Child::spawn(&mut cmd).with_context(|| format!("start {}", bin.display()))
}
