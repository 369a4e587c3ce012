//! The Go tools the tests build from their modules (helm, promtool,
//! kstatus, argocd): each `tests/*/build` script builds once, caches, and
//! prints the binary's path last. Built at most once per test process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::{root, suffix, target_dir};

/// The binary that `script` (e.g. `tests/helm/build`) builds.
pub fn tool(script: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(script) {
        return p.clone();
    }
    let out = Command::new(root().join(script))
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let path = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("the build script prints a path"),
    );
    assert!(path.is_file(), "{} is not a file", path.display());
    built.insert(script.to_string(), path.clone());
    path
}

/// A scratch directory under the target dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Self {
        let dir = target_dir().join(format!("scratch/{what}-{}", suffix()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `argocd admin settings resource-overrides health OBJECT --argocd-cm-path
/// CM`, offline, with a HOME of its own so no user config is read.
pub fn argocd_health_run(object: &Path, cm: &Path) -> std::process::Output {
    static HOME: std::sync::OnceLock<Scratch> = std::sync::OnceLock::new();
    let home = HOME.get_or_init(|| Scratch::new("argocd-home"));
    Command::new(tool("tests/argocd/build"))
        .args(["admin", "settings", "resource-overrides", "health"])
        .arg(object)
        .arg("--argocd-cm-path")
        .arg(cm)
        .current_dir(root())
        .env("HOME", &home.0)
        .env_remove("KUBECONFIG")
        .env_remove("ARGOCD_OPTS")
        .output()
        .expect("run argocd")
}

/// The `(status, message)` that `argocd ... health` printed
/// (`STATUS: X\nMESSAGE: Y\n`), or None for anything else.
pub fn argocd_health_of(out: &std::process::Output) -> Option<(String, String)> {
    if !out.status.success() {
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rest = stdout.strip_prefix("STATUS: ")?;
    let (status, rest) = rest.split_once('\n')?;
    let message = rest.strip_prefix("MESSAGE: ")?;
    let message = message.strip_suffix('\n').unwrap_or(message);
    Some((status.to_string(), message.to_string()))
}

/// Everything a command printed, stdout then stderr, for messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, feeding it `stdin` if given; returns stdout, failing on
/// error with everything it printed.
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> String {
    let what = format!("{cmd:?}");
    let out = output(cmd, stdin);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        output_text(&out)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs `cmd`, feeding it `stdin` if given (else an empty stdin); its
/// status and output.
pub fn output(cmd: &mut Command, stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait")
}
