//! Starting the controllers under measurement.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context as _;
use coffer_test_support::procfs::Child;

/// Removes what would configure a controller behind the benchmark's back:
/// every `COFFER_*` variable, `KUBECONFIG` and the Pod's identity.
pub fn scrub_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("COFFER_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("KUBECONFIG")
        .env_remove("POD_NAMESPACE")
        .env_remove("POD_NAME")
}

/// Starts `cmd` with its output in `log` (and no input); it dies with
/// this process, even on panic.
pub fn spawn_logged(cmd: &mut Command, log: &Path, what: &str) -> anyhow::Result<Child> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    Child::spawn(cmd).with_context(|| format!("starting {what}"))
}

/// The default of `flag` as `bin --help` prints it (`[default: X]`, or Go's
/// `(default X)`).
pub fn help_default(bin: &Path, flag: &str) -> Option<String> {
    let out = Command::new(bin).arg("--help").output().ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let rest = &text[text.find(&format!("{flag} "))? + flag.len()..];
    let part = &rest[..rest.find("\n  -").unwrap_or(rest.len())];
    [("[default: ", ']'), ("(default ", ')')]
        .into_iter()
        .find_map(|(open, close)| {
            let v = &part[part.find(open)? + open.len()..];
            Some(v[..v.find(close).unwrap_or(v.len())].to_string())
        })
}
