//! `coffer check [PATHS]`: what must not be committed, found offline. One
//! line per problem, with the fix; exit 5 when there is any:
//! - a plain `Secret` with values (`data` or `stringData`);
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use coffer_core::api::{is_sealed_secret, read_sealed_secret};
use coffer_format::{KeyId, envelope};

use crate::cluster::parse_recipients;
use crate::documents::documents;
use crate::error::{Failure, Result};
use crate::io::{files_under, read_file};
use crate::rules::Rules;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  coffer check                      # the current directory, recursively
  coffer check clusters/ base/db.yaml
Exit status: 0 when nothing was found, 5 when something was (one line each), 3 when a path or .coffer.yaml cannot be read.")]
pub struct CheckArgs {
    /// Files and directories (*.yaml, *.yml, *.json under them); the current directory when none.
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
    let files = files_under(&args.paths)?;
    let mut problems = Vec::new();
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
        match check_file(file, rules.as_deref(), &mut key_ids, &mut problems) {
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
) -> Checked {
    let name = file.display().to_string();
    let input = match read_file(file) {
        Ok(i) => i,
        Err(e) => {
            problems.push(Problem {
                at: name,
                what: format!("cannot be read: {}", e.message),
                fix: "fix the file, or move it out of the checked paths".into(),
            });
            return Checked::Read(0);
        }
    };
    let docs = match documents(&input) {
        Ok(d) => d,
        // Not YAML or JSON: a Helm template, a Go template, a patch
        // fragment. Only one that speaks of Secrets may be hiding one.
        Err(_) if !input.text.contains("Secret") => return Checked::Skipped,
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
            return Checked::Read(0);
        }
    };
    let rule = rules.and_then(|r| r.for_path(file).map(|rule| (r, rule)));
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
        let at = format!(
            "{name}: document {} ({} {}/{})",
            i + 1,
            field("kind"),
            meta("namespace"),
            meta("name")
        );
        if field("kind") == "Secret" && field("apiVersion") == "v1" {
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
            let Some((rules, rule)) = rule else { continue };
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
            for (path, written) in rules
                .recipients_paths(rule)
                .into_iter()
                .zip(&rule.recipients)
            {
                let ids = key_ids
                    .entry(path.clone())
                    .or_insert_with(|| recipients_ids(&path));
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
    Checked::Read(count)
}

fn recipients_ids(path: &Path) -> std::result::Result<Vec<KeyId>, String> {
    let input = read_file(path).map_err(|e| e.message)?;
    let file = parse_recipients(&input.name, &input.text).map_err(|e| e.message)?;
    Ok(file.keys().iter().map(|k| k.id()).collect())
}
