//! `coffer check [PATHS]`: what must not be committed, found offline. One
//! line per problem, with the fix; exit 5 when there is any:
//! - a plain `Secret` with values (`data` or `stringData`), also inside a
//!   list (`List`, `SecretList`, any `*List`);
//! - a kustomize `secretGenerator` with `literals`, or whose `envs` or
//!   `files` name files that exist (plaintext beside the kustomization);
//! - a symlink that leads out of the repository (what it points to is not
//!   checked);
//! - a SealedSecret that cannot be read, or an item that is not a sealed
//!   value (altered, truncated, sealed by another tool); a file that is
//!   not YAML or JSON counts only if it mentions a Secret (so templates
//!   are skipped, and said to be);
//! - under a `.coffer.yaml` rule: an item not sealed to a key of every
//!   recipients file the rule names (e.g. stale after a rotation), or
//!   sealed with another scope than the rule's.
//!
//! Without a private key nothing can tell a well-formed value from one
//! re-encrypted by someone else: `coffer verify` asks the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use coffer_core::api::{is_sealed_secret, read_sealed_secret};
use coffer_format::{KeyId, envelope};

use crate::cluster::parse_recipients;
use crate::documents::documents;
use crate::error::{Failure, Result};
use crate::io::{io_reason, read_file};
use crate::repository::{self, Repository};
use crate::rules::Rules;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  coffer check                      # the current directory, recursively
  coffer check clusters/ base/db.yaml
Exit status: 0 when nothing was found, 5 when something was (one line each), 3 when a path or .coffer.yaml cannot be read, or .coffer.yaml or a recipients file it names is refused.")]
pub struct CheckArgs {
    /// Files and directories (*.yaml, *.yml, *.json in any case, and Kustomization, under them, hidden ones too); the current directory when none.
    pub paths: Vec<PathBuf>,
}

/// One problem, with where and how to fix it.
#[doc(hidden)]
pub struct Problem {
    pub at: String,
    pub what: String,
    pub fix: String,
}

pub fn run(args: CheckArgs) -> Result<()> {
    let mut problems = Vec::new();
    let files = files_to_check(&args.paths, &mut problems)?;
    let mut sealed = 0;
    let mut skipped = 0;
    // Recipients files read once each: their key ids, or why not.
    let mut key_ids: BTreeMap<PathBuf, std::result::Result<Vec<KeyId>, String>> = BTreeMap::new();
    // The rules of each directory, found and parsed once.
    let mut rules_of: BTreeMap<PathBuf, Option<std::rc::Rc<Rules>>> = BTreeMap::new();
    for file in &files {
        let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let rules = match rules_of.get(&dir) {
            Some(r) => r.clone(),
            None => {
                let r = Rules::find(file)?.map(std::rc::Rc::new);
                rules_of.insert(dir, r.clone());
                r
            }
        };
        match check_file(file, rules.as_deref(), &mut key_ids, &mut problems)? {
            Checked::Read(n) => sealed += n,
            Checked::Skipped => skipped += 1,
        }
    }
    for p in &problems {
        println!("{}: {}; fix: {}", p.at, p.what, p.fix);
    }
    eprintln!(
        "coffer check: {} file(s), {sealed} SealedSecret(s), {} problem(s){}",
        files.len(),
        problems.len(),
        if skipped > 0 {
            format!(
                "; {skipped} file(s) not YAML or JSON and with no Secret in them skipped (e.g. templates)"
            )
        } else {
            String::new()
        }
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::refused(format!(
            "{} problem(s) found; see above",
            problems.len()
        )))
    }
}

/// The files `coffer check` reads: files named as given; under
/// directories, every `*.yaml`, `*.yml` and `*.json` (in any case) and
/// kustomize's `Kustomization`, hidden ones too, but nothing under `.git`.
/// Symlinks are followed while they stay inside the repository (or the
/// directory checked, outside a repository), and each directory is read
/// once, so a symlink cycle ends; a symlink that leads out of it, to a
/// directory or named like a manifest, is a problem, since what it points
/// to is not checked.
fn files_to_check(paths: &[PathBuf], problems: &mut Vec<Problem>) -> Result<Vec<PathBuf>> {
    let roots = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    for root in roots {
        let unreadable =
            |e: std::io::Error| Failure::input(format!("{}: {}", root.display(), io_reason(&e)));
        std::fs::symlink_metadata(&root).map_err(unreadable)?;
        let Some(within) = boundary(&root) else {
            return Err(Failure::input(format!(
                "{}: cannot be resolved",
                root.display()
            )));
        };
        let meta = match follow(&root, &within, problems) {
            Some(m) => m,
            None => continue,
        };
        if meta.is_dir() {
            walk(&root, &within, &mut seen, &mut files, problems)?;
        } else {
            files.push(root);
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// What symlinks may lead into: the repository holding `root`, else the
/// directory checked (or holding the file checked).
fn boundary(root: &Path) -> Option<Repository> {
    let abs = repository::lexical(root)?;
    let dir = if std::fs::metadata(&abs).is_ok_and(|m| m.is_dir()) {
        abs
    } else {
        abs.parent()?.to_path_buf()
    };
    Repository::new(repository::root_of(&dir).unwrap_or(dir))
}

/// The metadata of `path` with symlinks followed, or `None` when it is a
/// symlink leading out of `within` or one that cannot be followed; that is
/// a problem when the link is to a directory or named like a manifest.
fn follow(
    path: &Path,
    within: &Repository,
    problems: &mut Vec<Problem>,
) -> Option<std::fs::Metadata> {
    if !repository::is_symlink(path) {
        return std::fs::metadata(path).ok();
    }
    let at = path.display().to_string();
    match path.canonicalize() {
        Ok(real) if within.holds(&real) => std::fs::metadata(&real).ok(),
        // Only what check would have read matters: a directory, or a file
        // named like a manifest (a link to a tool outside is no problem).
        Ok(real) if !real.is_dir() && !looks_like_manifest(path) => None,
        Ok(real) => {
            problems.push(Problem {
                at,
                what: format!(
                    "a symlink to {}, out of the repository {}; what it points to is not checked",
                    real.display(),
                    within.root.display()
                ),
                fix: "commit the file itself inside the repository, or remove the link".into(),
            });
            None
        }
        Err(e) => {
            if looks_like_manifest(path) {
                problems.push(Problem {
                    at,
                    what: format!("a symlink that cannot be followed: {}", io_reason(&e)),
                    fix: "fix or remove the link".into(),
                });
            }
            None
        }
    }
}

fn walk(
    dir: &Path,
    within: &Repository,
    seen: &mut BTreeSet<PathBuf>,
    files: &mut Vec<PathBuf>,
    problems: &mut Vec<Problem>,
) -> Result<()> {
    let unreadable =
        |e: std::io::Error| Failure::input(format!("{}: {}", dir.display(), io_reason(&e)));
    if !seen.insert(dir.canonicalize().map_err(unreadable)?) {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.file_name() == ".git" {
            continue;
        }
        let path = e.path();
        let Some(meta) = follow(&path, within, problems) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, within, seen, files, problems)?;
        } else if meta.is_file() && looks_like_manifest(&path) {
            files.push(path);
        }
    }
    Ok(())
}

fn looks_like_manifest(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| name.ends_with(ext))
        || path.file_name().is_some_and(|n| n == "Kustomization")
}

/// What checking one file came to.
#[doc(hidden)]
pub enum Checked {
    /// Read: how many SealedSecrets it held.
    Read(usize),
    /// Not YAML or JSON, and no mention of a Secret: skipped.
    Skipped,
}

/// Checks one file. Public for the fuzz target `rules_and_check` only.
#[doc(hidden)]
pub fn check_file(
    file: &Path,
    rules: Option<&Rules>,
    key_ids: &mut BTreeMap<PathBuf, std::result::Result<Vec<KeyId>, String>>,
    problems: &mut Vec<Problem>,
) -> Result<Checked> {
    let name = file.display().to_string();
    let input = match read_file(file) {
        Ok(i) => i,
        Err(e) => {
            problems.push(Problem {
                at: name,
                what: format!("cannot be read: {}", e.message),
                fix: "fix the file, or move it out of the checked paths".into(),
            });
            return Ok(Checked::Read(0));
        }
    };
    let docs = match documents(&input) {
        Ok(d) => d,
        // Not YAML or JSON: a Helm template, a Go template, a patch
        // fragment. Only one that speaks of Secrets may be hiding one.
        Err(_) if !input.text.contains("Secret") => return Ok(Checked::Skipped),
        Err(e) => {
            let why = e
                .message
                .strip_prefix(&format!("{}: ", input.name))
                .unwrap_or(&e.message)
                .to_string();
            problems.push(Problem {
                at: name,
                what: format!("mentions a Secret but cannot be parsed: {why}"),
                fix: "fix the file; if it is a template, check what it renders with `coffer check` on the output".into(),
            });
            return Ok(Checked::Read(0));
        }
    };
    let rule = match rules.and_then(|r| r.for_path(file).map(|rule| (r, rule))) {
        Some((rules, rule)) => Some((rules, rule, rules.recipients_paths(rule)?)),
        None => None,
    };
    let mut count = 0;
    for (i, doc) in docs.into_iter().enumerate() {
        let field = |f: &str| {
            doc.get(f)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let meta = |f: &str| {
            doc.get("metadata")
                .and_then(|m| m.get(f))
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string()
        };
        let generators = doc.get("secretGenerator").and_then(|g| g.as_array());
        let kustomization = generators.is_some()
            && matches!(field("kind").as_str(), "" | "Kustomization" | "Component");
        let at = format!(
            "{name}: document {} ({} {}/{})",
            i + 1,
            if kustomization && field("kind").is_empty() {
                "Kustomization".to_string()
            } else {
                field("kind")
            },
            meta("namespace"),
            meta("name")
        );
        if kustomization {
            for g in generators.into_iter().flatten() {
                check_generator(file, &at, g, problems);
            }
            continue;
        }
        // What `coffer seal` takes as a Secret: apiVersion v1, or none.
        if field("kind") == "Secret" && matches!(field("apiVersion").as_str(), "v1" | "") {
            let has = |f: &str| {
                doc.get(f)
                    .and_then(|d| d.as_object())
                    .is_some_and(|m| !m.is_empty())
            };
            if has("data") || has("stringData") {
                problems.push(Problem {
                    at,
                    what: "a plain Secret with values is committed".into(),
                    fix: format!(
                        "seal it (`coffer seal {name} -w SEALED.yaml`), delete this file, and remove it from git history"
                    ),
                });
            }
            continue;
        }
        if !is_sealed_secret(&doc) {
            continue;
        }
        count += 1;
        let s = match read_sealed_secret(doc) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                problems.push(Problem {
                    at,
                    what: format!("cannot be read: {e}"),
                    fix: "re-seal it with `coffer seal`".into(),
                });
                continue;
            }
        };
        for (key, value) in &s.spec.encrypted_data {
            let env = match envelope::inspect(value) {
                Ok((env, _)) => env,
                Err(e) => {
                    problems.push(Problem {
                        at: at.clone(),
                        what: format!("item {key:?} is not a sealed value: {e}"),
                        fix: "take the value from git history, or re-seal it with `coffer seal --merge-into`".into(),
                    });
                    continue;
                }
            };
            let Some((rules, rule, paths)) = &rule else {
                continue;
            };
            if let Some(scope) = rule.scope
                && env.scope != scope
            {
                problems.push(Problem {
                    at: at.clone(),
                    what: format!(
                        "item {key:?} is sealed with scope {}, but rule {:?} of {} asks for {scope}",
                        env.scope,
                        rule.path,
                        rules.root.join(crate::rules::FILE).display()
                    ),
                    fix: format!("re-seal it with `--scope {scope}`"),
                });
            }
            for (path, written) in paths.iter().zip(&rule.recipients) {
                let ids = key_ids
                    .entry(path.clone())
                    .or_insert_with(|| recipients_ids(path));
                match ids {
                    Err(e) => {
                        problems.push(Problem {
                            at: at.clone(),
                            what: format!("its rule's recipients file {written} cannot be read: {e}"),
                            fix: "fix the rule in .coffer.yaml, or fetch the file with `coffer recipients -w FILE`".into(),
                        });
                    }
                    Ok(ids) => {
                        for id in ids.iter() {
                            if !env.key_ids.contains(id) {
                                problems.push(Problem {
                                    at: at.clone(),
                                    what: format!(
                                        "item {key:?} is not sealed to key {id} of {written} (sealed to {})",
                                        env.key_ids
                                            .iter()
                                            .map(|k| k.to_string())
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    ),
                                    fix: format!(
                                        "re-encrypt it for the current keys: `coffer rotate --no-new-key {name}` (with access to that cluster), or re-seal it"
                                    ),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Checked::Read(count))
}

/// A kustomize `secretGenerator` entry builds a Secret from plaintext:
/// its `literals`, and the files its `envs` (or the older `env`) and
/// `files` name, relative to the kustomization. Each is a problem when it
/// holds something: literals at all, files when they exist beside it.
/// Never quotes a value.
fn check_generator(file: &Path, at: &str, g: &serde_json::Value, problems: &mut Vec<Problem>) {
    let secret = g.get("name").and_then(|n| n.as_str()).unwrap_or("?");
    let strings = |f: &str| -> Vec<String> {
        match g.get(f) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let fix = "seal the values instead (`coffer seal`), commit the SealedSecret in place of the generator, and remove the plaintext from git history";
    let literals = strings("literals").len();
    if literals > 0 {
        problems.push(Problem {
            at: at.to_string(),
            what: format!(
                "secretGenerator {secret:?} has {literals} literal value(s) in plaintext"
            ),
            fix: fix.into(),
        });
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let from = |field: &'static str| strings(field).into_iter().map(move |s| (field, s));
    // A `files` entry is `PATH` or `KEY=PATH`.
    let files = from("files").map(|(field, f)| match f.split_once('=') {
        Some((_, path)) => (field, path.to_string()),
        None => (field, f),
    });
    for (field, source) in from("envs").chain(from("env")).chain(files) {
        if dir.join(&source).is_file() {
            problems.push(Problem {
                at: at.to_string(),
                what: format!(
                    "secretGenerator {secret:?} reads plaintext from its {field} entry {source:?}"
                ),
                fix: fix.into(),
            });
        }
    }
}

fn recipients_ids(path: &Path) -> std::result::Result<Vec<KeyId>, String> {
    let input = read_file(path).map_err(|e| e.message)?;
    let file = parse_recipients(&input.name, &input.text).map_err(|e| e.message)?;
    Ok(file.keys().iter().map(|k| k.id()).collect())
}
