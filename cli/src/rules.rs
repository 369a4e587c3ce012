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
//! matches wins. Recipients files are relative to that directory too.

use std::path::{Path, PathBuf};

use coffer_format::Scope;
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;

use crate::error::{Failure, Result};

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
    matcher: GlobMatcher,
    /// Recipients files, as written (relative to the rules' directory).
    pub recipients: Vec<String>,
    pub scope: Option<Scope>,
}

/// The rules of one `.coffer.yaml`.
#[derive(Debug)]
pub struct Rules {
    /// The directory holding `.coffer.yaml`.
    pub root: PathBuf,
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Parses the rules of `text`, read from `root/.coffer.yaml`.
    pub fn parse(root: &Path, text: &str) -> Result<Rules> {
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
            let scope = r
                .scope
                .as_deref()
                .map(str::parse::<Scope>)
                .transpose()
                .map_err(|e| Failure::input(format!("{which}: {e}")))?;
            rules.push(Rule {
                path: r.path,
                matcher,
                recipients: r.recipients,
                scope,
            });
        }
        Ok(Rules {
            root: root.to_path_buf(),
            rules,
        })
    }

    /// The `.coffer.yaml` nearest above `path` (a file or directory, which
    /// need not exist yet) within its git repository. Rules decide whose
    /// keys values are sealed to, so they are taken only from the
    /// repository the user works in: outside a git repository there are
    /// none, and a file writable by everyone, or owned by another user than
    /// the directory being written to, is refused.
    pub fn find(path: &Path) -> Result<Option<Rules>> {
        let Some(start) = absolute_dir(path) else {
            return Ok(None);
        };
        let Some(repo) = start.ancestors().find(|d| d.join(".git").exists()) else {
            return Ok(None);
        };
        for dir in start.ancestors() {
            let file = dir.join(FILE);
            if file.is_file() {
                trusted(&file, &start)?;
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    Failure::input(format!("{}: {}", file.display(), crate::io::io_reason(&e)))
                })?;
                return Rules::parse(dir, &text).map(Some);
            }
            if dir == repo {
                break;
            }
        }
        Ok(None)
    }

    /// The first rule matching `path`, which must lie under the root.
    pub fn for_path(&self, path: &Path) -> Option<&Rule> {
        let abs = absolute(path)?;
        let rel = abs.strip_prefix(&self.root).ok()?;
        self.rules.iter().find(|r| r.matcher.is_match(rel))
    }

    /// A rule's recipients files as paths to read.
    pub fn recipients_paths(&self, rule: &Rule) -> Vec<PathBuf> {
        rule.recipients.iter().map(|r| self.root.join(r)).collect()
    }
}

/// Refuses a rules file that someone other than the user may have put or
/// changed: writable by everyone, or owned by another user than `start`.
#[cfg(unix)]
fn trusted(file: &Path, start: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(file)
        .map_err(|e| Failure::input(format!("{}: {}", file.display(), crate::io::io_reason(&e))))?;
    let refuse = |why: &str| {
        Err(Failure::input(format!(
            "{}: {why}; refusing to take recipients from it",
            file.display()
        ))
        .hint("fix its owner or mode (chmod o-w), or pass -r"))
    };
    if meta.mode() & 0o002 != 0 {
        return refuse("writable by every user");
    }
    if let Ok(dir) = std::fs::metadata(start)
        && dir.uid() != meta.uid()
    {
        return refuse("owned by another user than the directory it applies to");
    }
    Ok(())
}

#[cfg(not(unix))]
fn trusted(_file: &Path, _start: &Path) -> Result<()> {
    Ok(())
}

const EXAMPLE: &str = "write it as: rules: [{path: \"clusters/prod/**\", recipients: [recipients/prod.txt], scope: strict}]";

/// `path` made absolute, with `..` and symlinks of its existing part
/// resolved (the file itself may not exist yet).
fn absolute(path: &Path) -> Option<PathBuf> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let parent = path.parent()?.canonicalize().ok()?;
    Some(parent.join(path.file_name()?))
}

/// The directory to start searching from: `path` if it is one, else its
/// parent.
fn absolute_dir(path: &Path) -> Option<PathBuf> {
    let abs = absolute(path)?;
    if abs.is_dir() {
        Some(abs)
    } else {
        abs.parent().map(Path::to_path_buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::parse(
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
        ] {
            let e = Rules::parse(Path::new("/repo"), text).unwrap_err();
            assert!(e.message.contains(says), "{text}: {}", e.message);
        }
    }
}
