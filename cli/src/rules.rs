//! `.coffer.yaml`: which recipients, and which scope, the SealedSecrets
//! under a path of the repository are sealed for, the way `.sops.yaml`
//! creation rules work. `coffer seal -w PATH` takes its recipients and
//! scope from the rule that matches PATH; `coffer check` checks every
//! SealedSecret against the rule of its file.
//!
//! ```yaml
//! rules:
//!   - path: "clusters/dr/**"
//!     recipients: [recipients/dr.txt]
//!   - path: "base/**"                     # sealed once for both clusters
//!     recipients: [recipients/prod.txt, recipients/dr.txt]
//!     scope: strict
//! ```
//!
//! Paths are globs relative to the directory holding `.coffer.yaml`
//! (`*` stays within a directory, `**` crosses them); the first rule that
//! matches wins. Recipients files are relative to that directory too, and
//! must be inside the repository: rules come from files anyone with write
//! access to the repository changes, so they may only point at files
//! reviewed with it (`-r` takes any file).
//!
//! In the library because `check` applies the rules and the fuzz target
//! `rules_and_check` parses them; `seal` and `rotate` follow them too.

use std::path::{Path, PathBuf};

use coffer_format::Scope;
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;

use crate::error::{Failure, Result};
use crate::repository::{self, Repository, join_within};

/// The file's name.
pub const FILE: &str = ".coffer.yaml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: String,
    recipients: Vec<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// One rule.
#[derive(Debug)]
pub struct Rule {
    /// The glob as written.
    pub path: String,
    /// Its place in the file, from 1, for messages.
    number: usize,
    matcher: GlobMatcher,
    /// Recipients files, as written (relative to the rules' directory).
    pub recipients: Vec<String>,
    /// The same, joined to the rules' directory; inside the repository.
    paths: Vec<PathBuf>,
    pub scope: Option<Scope>,
}

/// The rules of one `.coffer.yaml`.
#[derive(Debug)]
pub struct Rules {
    /// The directory holding `.coffer.yaml`.
    pub root: PathBuf,
    /// The repository it belongs to; `None` for rules parsed on their own.
    repo: Option<Repository>,
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Parses the rules of `text`, read from `root/.coffer.yaml` in the
    /// repository whose root is `top`. A recipients file must be named
    /// relative to `root` and stay under `top`: an absolute path, or `..`
    /// climbing out, is refused (exit 3); `-r` takes any file.
    pub fn parse(root: &Path, top: &Path, text: &str) -> Result<Rules> {
        let at = root.join(FILE).display().to_string();
        let raw: RawFile = serde_saphyr::from_str(text)
            .map_err(|e| Failure::input(format!("{at}: {e}")).hint(EXAMPLE))?;
        let mut rules = Vec::new();
        for (i, r) in raw.rules.into_iter().enumerate() {
            let which = format!("{at}: rule {} ({:?})", i + 1, r.path);
            let matcher = GlobBuilder::new(&r.path)
                .literal_separator(true)
                .build()
                .map_err(|e| Failure::input(format!("{which}: {e}")))?
                .compile_matcher();
            if r.recipients.is_empty() {
                return Err(Failure::input(format!("{which}: no recipients")).hint(EXAMPLE));
            }
            let mut paths = Vec::new();
            for written in &r.recipients {
                let path = join_within(top, root, written).ok_or_else(|| {
                    let why = if Path::new(written).is_absolute() {
                        "is an absolute path".to_string()
                    } else {
                        format!("leads out of the repository {} through `..`", top.display())
                    };
                    Failure::input(format!(
                        "{which}: recipients file {written:?} {why}; rules name only recipients files inside the repository, relative to {FILE}"
                    ))
                    .hint("move the file into the repository, or pass it with -r")
                })?;
                paths.push(path);
            }
            let scope = r
                .scope
                .as_deref()
                .map(str::parse::<Scope>)
                .transpose()
                .map_err(|e| Failure::input(format!("{which}: {e}")))?;
            rules.push(Rule {
                path: r.path,
                number: i + 1,
                matcher,
                recipients: r.recipients,
                paths,
                scope,
            });
        }
        Ok(Rules {
            root: root.to_path_buf(),
            repo: None,
            rules,
        })
    }

    /// The `.coffer.yaml` nearest above `path` (a file or directory, which
    /// need not exist yet) within its git repository. Rules decide whose
    /// keys values are sealed to, so they are taken only from the
    /// repository the user works in, found from `path` as typed
    /// (`repository`): outside a git repository there are none; a rules
    /// file reached through a symlink that leads out of the repository, one
    /// writable by its group or by everyone, or owned by another user than
    /// the one running coffer (or root), is refused.
    pub fn find(path: &Path) -> Result<Option<Rules>> {
        let Some(abs) = repository::lexical(path) else {
            return Ok(None);
        };
        let start = if abs.is_dir() {
            abs
        } else {
            match abs.parent() {
                Some(p) => p.to_path_buf(),
                None => return Ok(None),
            }
        };
        let Some(repo) = repository::root_of(&start).and_then(Repository::new) else {
            return Ok(None);
        };
        for dir in start.ancestors() {
            let file = dir.join(FILE);
            if std::fs::symlink_metadata(&file).is_ok() {
                refuse_link_out(&repo, &file, "to take recipients from it")?;
                trusted(&file, "to take recipients from it")?;
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    Failure::input(format!("{}: {}", file.display(), crate::io::io_reason(&e)))
                })?;
                let mut rules = Rules::parse(dir, &repo.root, &text)?;
                rules.repo = Some(repo);
                return Ok(Some(rules));
            }
            if dir == repo.root {
                break;
            }
        }
        Ok(None)
    }

    /// The first rule matching `path` (as typed: its place in the
    /// repository, not where a symlink leads), which must lie under the
    /// root.
    pub fn for_path(&self, path: &Path) -> Option<&Rule> {
        let abs = repository::lexical(path)?;
        let rel = abs.strip_prefix(&self.root).ok()?;
        self.rules.iter().find(|r| r.matcher.is_match(rel))
    }

    /// A rule's recipients files as paths to read, each checked as the
    /// rules file is: not reached through a symlink out of the repository,
    /// not writable by group or everyone, owned by the user or root. A
    /// file that does not exist passes; reading it says so.
    pub fn recipients_paths(&self, rule: &Rule) -> Result<Vec<PathBuf>> {
        if let Some(repo) = &self.repo {
            let doing = format!(
                "to seal to the keys in it (rule {} ({:?}) of {})",
                rule.number,
                rule.path,
                self.root.join(FILE).display()
            );
            for path in &rule.paths {
                refuse_link_out(repo, path, &doing)?;
                trusted(path, &doing)?;
            }
        }
        Ok(rule.paths.clone())
    }
}

fn refuse_link_out(repo: &Repository, file: &Path, doing: &str) -> Result<()> {
    match repo.link_out(file) {
        None => Ok(()),
        Some(link) => Err(Failure::input(format!(
            "{}: reached through the symlink {}, which leads out of the repository {}; refusing {doing}",
            file.display(),
            link.display(),
            repo.root.display()
        ))
        .hint("keep rules and recipients files inside the repository, or pass the recipients with -r")),
    }
}

/// Refuses a rules or recipients file that someone other than the user
/// may have put or changed: writable by its group or by everyone, or
/// owned by another user than the one running coffer. Files owned by root
/// are accepted, as OpenSSH and sudo accept them: root can change the
/// user's own files anyway. A file that cannot be read is left to the
/// reader to report.
#[cfg(unix)]
fn trusted(file: &Path, doing: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(file) else {
        return Ok(());
    };
    let me = rustix::process::geteuid().as_raw();
    let why = if meta.mode() & 0o002 != 0 {
        "writable by every user".to_string()
    } else if meta.mode() & 0o020 != 0 {
        "writable by its group".to_string()
    } else if meta.uid() != me && meta.uid() != 0 {
        format!("owned by uid {}, not by you (uid {me}) or root", meta.uid())
    } else {
        return Ok(());
    };
    Err(Failure::input(format!(
        "{}: {why}; refusing {doing}",
        file.display()
    ))
    .hint("check its content, then make it yours and writable only by you (chown, chmod go-w), or pass the recipients with -r"))
}

#[cfg(not(unix))]
fn trusted(_file: &Path, _doing: &str) -> Result<()> {
    Ok(())
}

const EXAMPLE: &str = "write it as: rules: [{path: \"clusters/prod/**\", recipients: [recipients/prod.txt], scope: strict}]";

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::parse(
            Path::new("/repo"),
            Path::new("/repo"),
            "rules:\n  - path: \"clusters/dr/**\"\n    recipients: [r/dr.txt]\n    scope: namespace\n  - path: \"clusters/*/db.yaml\"\n    recipients: [r/prod.txt]\n  - path: \"**\"\n    recipients: [r/prod.txt, r/dr.txt]\n",
        )
        .unwrap()
    }

    fn matched(r: &Rules, rel: &str) -> Option<String> {
        let rel = Path::new(rel);
        r.rules
            .iter()
            .find(|x| x.matcher.is_match(rel))
            .map(|x| x.path.clone())
    }

    #[test]
    fn the_first_matching_rule_wins_and_star_stays_in_its_directory() {
        let r = rules();
        assert_eq!(
            matched(&r, "clusters/dr/a/db.yaml").as_deref(),
            Some("clusters/dr/**")
        );
        assert_eq!(
            matched(&r, "clusters/prod/db.yaml").as_deref(),
            Some("clusters/*/db.yaml")
        );
        assert_eq!(
            matched(&r, "clusters/prod/x/db.yaml").as_deref(),
            Some("**")
        );
        assert_eq!(r.rules[0].scope, Some(Scope::Namespace));
        assert_eq!(r.rules[1].scope, None);
    }

    #[test]
    fn mistakes_are_refused_naming_the_rule() {
        for (text, says) in [
            (
                "rules:\n  - path: \"a/**\"\n    recipients: []\n",
                "rule 1 (\"a/**\"): no recipients",
            ),
            (
                "rules:\n  - path: \"a/[\"\n    recipients: [x]\n",
                "rule 1 (\"a/[\")",
            ),
            (
                "rules:\n  - path: a\n    recipients: [x]\n    scope: planet\n",
                "rule 1",
            ),
            ("rules:\n  - path: a\n    recipient: [x]\n", "unknown field"),
            (
                "rules:\n  - path: a\n    recipients: [/etc/prod.txt]\n",
                "rule 1 (\"a\"): recipients file \"/etc/prod.txt\" is an absolute path",
            ),
            (
                "rules:\n  - path: a\n    recipients: [r/../../prod.txt]\n",
                "recipients file \"r/../../prod.txt\" leads out of the repository /repo through `..`",
            ),
        ] {
            let e = Rules::parse(Path::new("/repo"), Path::new("/repo"), text).unwrap_err();
            assert!(e.message.contains(says), "{text}: {}", e.message);
        }
    }
}
