//! The docs' flows as tests: the fenced shell blocks a document marks
//! with the info string `sh test:NAME` are extracted in order and run, so
//! a README or guide that stops working fails `tests/run`.
//!
//! GitHub renders such a block as ordinary `sh`. A document may hold
//! several flows (`test:migration`, `test:migration-rollback`); blocks of
//! one flow are joined in document order into one script, run by
//! `bash -euo pipefail`. Blocks may be indented (inside a list item); the
//! fence's indentation is removed from each line.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One extracted line: its text and where it is in the document.
struct Line {
    text: String,
    at: usize,
}

/// The lines of the blocks of flow `name` in `text`, in document order.
fn lines(text: &str, name: &str) -> Vec<Line> {
    let wanted = format!("sh test:{name}");
    let mut out = Vec::new();
    // (fence characters, indentation, whether this block is wanted)
    let mut open: Option<(String, usize, bool)> = None;
    for (i, raw) in text.lines().enumerate() {
        let indent = raw.len() - raw.trim_start().len();
        let trimmed = raw.trim_start();
        match &open {
            None => {
                for fence in ["```", "~~~"] {
                    if let Some(info) = trimmed.strip_prefix(fence) {
                        let info = info.trim_start_matches(&fence[..1]);
                        let run = trimmed.len() - trimmed.trim_start_matches(&fence[..1]).len();
                        open = Some((fence[..1].repeat(run), indent, info.trim() == wanted));
                        break;
                    }
                }
            }
            Some((fence, fence_indent, wanted)) => {
                if trimmed.starts_with(fence.as_str())
                    && trimmed.trim_start_matches(&fence[..1]).trim().is_empty()
                {
                    open = None;
                    continue;
                }
                if *wanted {
                    let cut = indent.min(*fence_indent);
                    out.push(Line {
                        text: raw[cut..].to_string(),
                        at: i + 1,
                    });
                }
            }
        }
    }
    out
}

/// The blocks of `doc` (a path relative to the repository root) marked
/// `sh test:NAME`, in document order, joined into one script. Panics when
/// there is none: a flow renamed in the doc must not pass by running
/// nothing.
pub fn script(doc: &str, name: &str) -> String {
    let path = crate::root().join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let found = lines(&text, name);
    assert!(
        !found.is_empty(),
        "{doc} has no block marked `sh test:{name}`"
    );
    // Each line is preceded by a marker naming its place in the doc, so a
    // failure is reported against the document, not the joined script.
    // Not inside a command continued with `\` (heredocs are not
    // supported in tested blocks).
    let mut out = String::new();
    let mut continued = false;
    for l in found {
        if !continued {
            out.push_str(&format!("__doc_line={} # {doc}\n", l.at));
        }
        out.push_str(&l.text);
        out.push('\n');
        continued = l.text.trim_end().ends_with('\\');
    }
    out
}

/// The directory of the `coffer` and `coffer-controller` binaries the
/// tests built.
pub fn bin_dir() -> PathBuf {
    let dir = crate::target_dir().join("debug");
    assert!(
        dir.join("coffer").is_file(),
        "coffer is not built in {}; run cargo build -p coffer",
        dir.display()
    );
    dir
}

/// Runs `script` with `bash -euo pipefail` in `dir`, with `PATH` = the
/// built `coffer`'s directory, the test kubectl's directory, then the
/// system `PATH`, and `env` added. Returns stdout. Panics naming the
/// document line whose command failed, with the script's output; the
/// commands themselves are not traced (a doc's example values stay out of
/// the test log beyond what the doc already shows).
pub fn run(script: &str, dir: &Path, env: &[(&str, &str)]) -> String {
    let kubectl_dir = crate::kubectl_bin()
        .parent()
        .expect("kubectl has a directory")
        .to_path_buf();
    let path = std::env::join_paths([bin_dir(), kubectl_dir].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let wrapped = format!(
        "set -E\n__doc_line=0\ntrap 'echo \"docflow: the command at line $__doc_line failed (exit $?)\" >&2' ERR\n{script}"
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &wrapped])
        .current_dir(dir)
        .env("PATH", path)
        // No colour, no pager, no prompt: the doc runs as in CI.
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the documented flow failed in {}:\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        dir.display()
    );
    stdout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_blocks_are_joined_in_order_and_others_are_left_out() {
        let doc = "intro\n```sh test:a\none\n```\n```sh\nnot me\n```\n1. step\n\n   ```sh test:a\n   two\n     indented\n   ```\n````sh test:b\nb\n````\n~~~sh test:a\nthree\n~~~\n";
        let got: Vec<(String, usize)> = lines(doc, "a")
            .into_iter()
            .map(|l| (l.text, l.at))
            .collect();
        assert_eq!(
            got,
            vec![
                ("one".to_string(), 3),
                ("two".to_string(), 11),
                ("  indented".to_string(), 12),
                ("three".to_string(), 18)
            ]
        );
        assert_eq!(lines(doc, "b").len(), 1);
        assert!(lines(doc, "c").is_empty());
    }

    #[test]
    fn a_longer_fence_holds_a_shorter_one() {
        let doc = "````sh test:a\n```\ninside\n```\n````\n";
        let got: Vec<String> = lines(doc, "a").into_iter().map(|l| l.text).collect();
        assert_eq!(got, vec!["```", "inside", "```"]);
    }
}
