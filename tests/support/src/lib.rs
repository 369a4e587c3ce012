//! Test support for Coffer's end-to-end tests: one real kube-apiserver (from
//! `tests/envtest/`) shared by every test of a run, a fresh namespace per
//! test, clients for the admin and for a ServiceAccount token, and the
//! controller started under the RBAC that `deploy/` ships ([`Cluster`]: the
//! setup every end-to-end suite shares).

pub mod cluster;
pub mod docflow;
pub mod flux;
pub mod githttp;
pub mod openbao;
pub mod procfs;
pub mod tools;

pub use cluster::{Cluster, WAIT, published_recipients, secret_data};

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, Config};

/// Repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Where test artifacts (server dir, logs) go.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The envtest kubectl, built from the same Kubernetes module as the server.
pub fn kubectl_bin() -> PathBuf {
    std::env::var_os("COFFER_ENVTEST_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("envtest/bin"))
        .join("kubectl")
}

/// A Go age 1.3 binary (`age`, `age-keygen`) installed by
/// `tests/age-pq/build` into `$COFFER_AGE_PQ_DIR/bin` (default
/// `<target>/age-pq/bin`), beside the stock age of tests/setup. Panics with
/// the fix when it is missing: the post-quantum interop tests never skip.
pub fn go_age_bin(tool: &str) -> PathBuf {
    let bin = std::env::var_os("COFFER_AGE_PQ_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("age-pq"))
        .join("bin")
        .join(tool);
    assert!(
        bin.is_file(),
        "Go age 1.3 (`{tool}`) is required for this test and is not at {}; run tests/age-pq/build",
        bin.display()
    );
    bin
}

/// A running API server started by `tests/envtest/start`.
#[derive(Clone, Debug)]
pub struct Server {
    pub dir: PathBuf,
}

impl Server {
    /// The server shared by every test of this run (started on first use,
    /// guarded by a file lock so parallel test binaries agree).
    pub fn shared() -> &'static Server {
        static SHARED: OnceLock<Server> = OnceLock::new();
        SHARED.get_or_init(|| {
            let dir = target_dir().join("envtest/shared");
            std::fs::create_dir_all(&dir).expect("create envtest dir");
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(target_dir().join("envtest/shared.lock"))
                .expect("lock file");
            lock.lock().expect("lock envtest");
            let server = Server { dir: dir.clone() };
            if !server.answers() {
                let _ = Command::new(root().join("tests/envtest/stop"))
                    .arg(&dir)
                    .status();
                Server::start_in(&dir).expect("start the shared envtest API server");
            }
            drop(lock);
            server
        })
    }

    /// A private server in `dir` (for tests that restart it).
    pub fn start_in(dir: &Path) -> anyhow::Result<Server> {
        let status = Command::new(root().join("tests/envtest/start"))
            .arg(dir)
            .status()
            .context("running tests/envtest/start")?;
        if !status.success() {
            bail!("tests/envtest/start {} failed", dir.display());
        }
        Ok(Server {
            dir: dir.to_path_buf(),
        })
    }

    /// A private server in `target/envtest/PREFIX-xxxxxxxx`, for a test
    /// that restarts it or needs a second cluster.
    pub fn start_private(prefix: &str) -> anyhow::Result<Server> {
        Server::start_in(&target_dir().join(format!("envtest/{prefix}-{}", suffix())))
    }

    /// A guard that stops this server when it is dropped (however the test
    /// or the benchmark ends).
    pub fn stop_on_drop(&self) -> StopOnDrop {
        StopOnDrop(self.clone())
    }

    /// Stops the server; with `keep_data` a later `start_in` resumes it.
    pub fn stop(&self, keep_data: bool) {
        let mut c = Command::new(root().join("tests/envtest/stop"));
        if keep_data {
            c.arg("--keep-data");
        }
        let _ = c.arg(&self.dir).status();
    }

    fn answers(&self) -> bool {
        self.kubeconfig().exists()
            && self.dir.join("ready").exists()
            && Command::new(kubectl_bin())
                .arg("--kubeconfig")
                .arg(self.kubeconfig())
                .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// An admin client (system:masters).
    pub async fn admin(&self) -> Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig");
        let cfg = Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        Client::try_from(cfg).expect("client")
    }

    /// kubectl as admin.
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new(kubectl_bin());
        c.arg("--kubeconfig").arg(self.kubeconfig());
        c
    }

    /// Runs kubectl as admin and returns stdout, failing on error.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, "")
    }

    /// Runs kubectl as admin with `stdin`; returns stdout, failing on error.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write as _;
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let mut pipe = child.stdin.take().expect("kubectl stdin");
        pipe.write_all(stdin.as_bytes())
            .expect("write kubectl stdin");
        drop(pipe);
        let out = child.wait_with_output().expect("wait for kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies `deploy/` (CRD, namespace, RBAC, Deployment) once per
    /// process and server.
    pub fn install_deploy(&self) {
        static DONE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
        if !done.contains(&self.dir) {
            let deploy = root().join("deploy");
            self.kubectl_ok(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-k",
                deploy.to_str().unwrap(),
            ]);
            self.kubectl_ok(&[
                "wait",
                "--for=condition=Established",
                "crd/sealedsecrets.coffer.dev",
                "--timeout=60s",
            ]);
            done.push(self.dir.clone());
        }
    }

    /// A kubeconfig file for a ServiceAccount token.
    pub async fn token_kubeconfig(
        &self,
        namespace: &str,
        sa: &str,
        path: &Path,
    ) -> anyhow::Result<()> {
        let client = self.admin().await;
        let token = token(&client, namespace, sa).await?;
        let admin = std::fs::read_to_string(self.kubeconfig())?;
        let server = field(&admin, "server:")?;
        let ca = field(&admin, "certificate-authority-data:")?;
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {sa}\n  user:\n    token: {token}\ncontexts:\n- name: {sa}\n  context:\n    cluster: envtest\n    user: {sa}\ncurrent-context: {sa}\n"
            ),
        )?;
        Ok(())
    }

    /// A client authenticated as a ServiceAccount.
    pub async fn sa_client(&self, namespace: &str, sa: &str) -> anyhow::Result<Client> {
        let dir = target_dir().join("e2e");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("sa-{namespace}-{sa}.kubeconfig"));
        self.token_kubeconfig(namespace, sa, &path).await?;
        let kc = kube::config::Kubeconfig::read_from(&path)?;
        Ok(Client::try_from(
            Config::from_custom_kubeconfig(kc, &Default::default()).await?,
        )?)
    }
}

/// Stops its server on drop; see [`Server::stop_on_drop`].
pub struct StopOnDrop(Server);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop(false);
    }
}

fn field(text: &str, name: &str) -> anyhow::Result<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
        .with_context(|| format!("kubeconfig has no {name}"))
}

/// A token for a ServiceAccount through the TokenRequest API.
pub async fn token(client: &Client, namespace: &str, sa: &str) -> anyhow::Result<String> {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    if sas.get_opt(sa).await?.is_none() {
        sas.create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta(sa),
                ..Default::default()
            },
        )
        .await?;
    }
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(6 * 3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let tr: TokenRequest = sas
        .create_subresource("token", sa, &PostParams::default(), &req)
        .await?;
    Ok(tr.status.context("token request has no status")?.token)
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        ..Default::default()
    }
}

/// A random lowercase suffix.
pub fn suffix() -> String {
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates a fresh namespace `PREFIX-xxxxxxxx`.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", suffix());
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &Namespace {
            metadata: meta(&name),
            ..Default::default()
        },
    )
    .await
    .expect("create namespace");
    name
}

/// Gives the controller's ServiceAccount in `coffer-system` the shipped
/// `coffer-controller` Role in `key_namespace` too, copied from the applied
/// deploy/ (so a test's private key ring runs under the same rules).
pub async fn grant_key_namespace(client: &Client, key_namespace: &str) {
    let shipped: Api<Role> = Api::namespaced(client.clone(), "coffer-system");
    let role = shipped
        .get("coffer-controller")
        .await
        .expect("deploy/ is applied");
    let roles: Api<Role> = Api::namespaced(client.clone(), key_namespace);
    roles
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta("coffer-controller"),
                rules: role.rules,
            },
        )
        .await
        .expect("create role");
    let shipped_rb: Api<RoleBinding> = Api::namespaced(client.clone(), "coffer-system");
    let rb = shipped_rb
        .get("coffer-controller")
        .await
        .expect("deploy/ is applied");
    let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), key_namespace);
    rbs.create(
        &PostParams::default(),
        &RoleBinding {
            metadata: meta("coffer-controller"),
            role_ref: rb.role_ref,
            subjects: rb.subjects,
        },
    )
    .await
    .expect("create rolebinding");
}

/// `to` relative to the directory `from` (both absolute), as kustomize
/// wants it: it refuses absolute paths to other kustomizations.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    for c in &to[common..] {
        rel.push(c.as_os_str());
    }
    rel
}

/// Writes, under `dir`, the kustomization that docs/operations.md describes
/// for namespaced mode: the `deploy/` base moved to `home` (unless it is
/// `coffer-system`), the component `deploy/namespaced`, one directory per
/// watched namespace built from `deploy/namespaced/watched`, and the
/// controller's `--namespaces`. Returns the directory to `kubectl
/// kustomize`.
pub fn namespaced_kustomization(dir: &Path, home: &str, watched: &[&str]) -> PathBuf {
    let write = |path: PathBuf, text: String| {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create dir");
        std::fs::write(path, text).expect("write kustomization");
    };
    std::fs::create_dir_all(dir).expect("create dir");
    let dir = dir.canonicalize().expect("canonical dir");
    let deploy = root().join("deploy");
    let mut resources = Vec::new();
    if home == "coffer-system" {
        resources.push(relative_path(&dir, &deploy).display().to_string());
    } else {
        let controller = dir.join("controller");
        write(
            controller.join("kustomization.yaml"),
            format!(
                "namespace: {home}\nresources:\n  - {}\n",
                relative_path(&controller, &deploy).display()
            ),
        );
        resources.push("controller".into());
    }
    for ns in watched {
        let sub = dir.join(format!("watched-{ns}"));
        write(
            sub.join("kustomization.yaml"),
            format!(
                "namespace: {ns}\nresources:\n  - {}\n",
                relative_path(&sub, &deploy.join("namespaced/watched")).display()
            ),
        );
        resources.push(format!("watched-{ns}"));
    }
    let mut top = String::from("resources:\n");
    for r in &resources {
        top.push_str(&format!("  - {r}\n"));
    }
    top.push_str(&format!(
        "components:\n  - {}\npatches:\n  - target: {{kind: Deployment, name: coffer-controller}}\n    patch: |-\n      - op: add\n        path: /spec/template/spec/containers/0/args/-\n        value: --namespaces={}\n",
        relative_path(&dir, &deploy.join("namespaced")).display(),
        watched.join(",")
    ));
    write(dir.join("kustomization.yaml"), top);
    dir
}

/// The objects of a multi-document YAML stream (empty documents dropped).
pub fn yaml_objects(text: &str) -> Vec<serde_json::Value> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
        .unwrap_or_else(|e| panic!("parse YAML stream: {e}\n{text}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Makes the process `cmd` starts die with the test process, even if the
/// test panics or is killed.
pub fn dies_with_the_test(cmd: &mut Command) {
    #[allow(
        unsafe_code,
        reason = "prctl(PR_SET_PDEATHSIG) in the child, through libc"
    )]
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// The debug coffer-controller binary, built (once per test process) so
/// that a suite of another crate runs the current controller.
pub fn controller_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let ok = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "coffer-controller"])
                .current_dir(root())
                .status()
                .expect("run cargo")
                .success();
            assert!(ok, "building coffer-controller");
            target_dir().join("debug/coffer-controller")
        })
        .clone()
}

/// A free loopback port (bound, then released for the caller to use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The controller's log level in the end-to-end tests: its own debug lines,
/// not those of the HTTP and TLS stacks.
pub const LOG_LEVEL: &str = "debug,hyper=info,tower=info,rustls=info,kube_client=info";

/// A controller process, killed on drop.
pub struct ControllerProcess {
    child: Child,
    pub log: PathBuf,
    /// Its HTTP listener, on loopback.
    pub http: std::net::SocketAddr,
    /// Its probe listener (`/healthz`, `/readyz` only), on loopback, when
    /// started by [`ControllerProcess::start`].
    pub probe: Option<std::net::SocketAddr>,
}

impl ControllerProcess {
    /// Starts `bin` (the coffer-controller binary) with a token of the
    /// deploy/ ServiceAccount and `args`; output goes to `target/e2e/NAME.log`.
    pub async fn start(
        server: &Server,
        bin: &Path,
        name: &str,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_as(server, bin, name, "coffer-system", args).await
    }

    /// As [`ControllerProcess::start`], with a token of the ServiceAccount
    /// `coffer-controller` of namespace `sa_namespace` (deploy/ moved there).
    pub async fn start_as(
        server: &Server,
        bin: &Path,
        name: &str,
        sa_namespace: &str,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_with_env(server, bin, name, sa_namespace, args, &[]).await
    }

    /// As [`ControllerProcess::start_as`], with `env` added to its
    /// environment (what a Pod's env would hold: cloud credentials, ...).
    pub async fn start_with_env(
        server: &Server,
        bin: &Path,
        name: &str,
        sa_namespace: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = target_dir().join("e2e");
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        server
            .token_kubeconfig(sa_namespace, "coffer-controller", &kubeconfig)
            .await?;
        let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let probe: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut cmd = Command::new(bin);
        cmd.arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--listen")
            .arg(http.to_string())
            .args(args)
            .env("COFFER_LOG_LEVEL", LOG_LEVEL)
            // On loopback, not the default 0.0.0.0:8081 every controller
            // would share; a variable, which a controller built before the
            // probe listener ignores.
            .env("COFFER_PROBE_LISTEN", probe.to_string())
            .env_remove("KUBECONFIG")
            .envs(env.iter().copied());
        let mut ctrl = Self::spawn(cmd, name, http)?;
        ctrl.probe = Some(probe);
        Ok(ctrl)
    }

    /// Runs `cmd`, a controller listening on `http`, however it is started
    /// (e.g. inside an unpacked image); output goes to `target/e2e/NAME.log`.
    /// Give it a loopback `COFFER_PROBE_LISTEN` (or `--probe-listen`) too.
    pub fn spawn(mut cmd: Command, name: &str, http: std::net::SocketAddr) -> anyhow::Result<Self> {
        let dir = target_dir().join("e2e");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log)?;
        cmd.stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null());
        dies_with_the_test(&mut cmd);
        let child = cmd.spawn().context("spawn coffer-controller")?;
        Ok(ControllerProcess {
            child,
            log,
            http,
            probe: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until its `/readyz` answers 200; fails when the process has
    /// exited or after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = http_get(self.http, "/readyz").await {
                return Ok(());
            }
            // A process that has exited (a zombie too) has no VmRSS.
            if procfs::proc_status_kib(self.pid() as i32, "VmRSS:").is_none()
                || tokio::time::Instant::now() > deadline
            {
                bail!(
                    "the controller did not become ready; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails if any of `values` appears in the log.
    pub fn assert_log_free_of(&self, values: &[&str]) {
        let text = self.log_text();
        assert!(!text.is_empty(), "controller log is empty");
        for v in values {
            assert!(
                !text.contains(v),
                "controller log contains a plaintext value"
            );
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        #[allow(
            unsafe_code,
            reason = "std sends only SIGKILL; SIGTERM lets it shut down"
        )]
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL (a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET on a new connection from 127.0.0.1: (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_get_with(addr, path, &[]).await
}

/// [`http_get`] with extra request headers.
pub async fn http_get_with(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: coffer\r\nConnection: close\r\n{extra}\r\n")
            .as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}

/// Polls `f` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `git ARGS` in `dir` as a test user (name and email set, so
/// commits work on a machine with no git identity); panics with git's
/// stderr on failure. Returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The commit checked out, as `build/commit.rs` stamps it into the
/// binaries: 12 hex digits, or `unknown` outside a git checkout.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .chars()
                .take(12)
                .collect()
        })
        .unwrap_or_else(|| "unknown".into())
}
