//! Build script of `coffer` and `coffer-controller` (both name this file as
//! `package.build`): stamps the git commit into the binary as the
//! `COFFER_COMMIT` environment variable, for `--version` and
//! `coffer_build_info`. `COFFER_COMMIT`, when set, wins (a build without
//! `.git`, e.g. a container build context, passes it); otherwise `git
//! rev-parse`; otherwise `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=COFFER_COMMIT");
    let commit = std::env::var("COFFER_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=COFFER_COMMIT={commit}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit checked out, 12 hex digits; and rebuild when it moves.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "HEAD"])?;
    let dir = git(&["rev-parse", "--path-format=absolute", "--git-dir"])?;
    let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])?;
    // HEAD, the branch it names, and packed refs: a commit changes one of
    // them. Only files that exist: Cargo re-runs for a missing one always.
    let mut watch = vec![format!("{dir}/HEAD"), format!("{common}/packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(format!("{common}/{branch}"));
    }
    for file in watch {
        if Path::new(&file).is_file() {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    Some(commit.chars().take(12).collect())
}
