//! What `coffer check [PATHS]` finds, offline, that must not be committed,
//! each problem with its fix (the command, in the binary, prints them and
//! exits 5 when there is any). In the library because the fuzz target
//! `rules_and_check` runs `check_file`. It finds:
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
//!   recipients file the rule names, or sealed with another scope than the
//!   rule's. The fix says which of three cases it is, from the repository's
//!   own history: a cluster the value was never sealed for (re-seal from
//!   plaintext), a value sealed to a key the file listed before (re-encrypt
//!   with `coffer rotate --no-new-key`), or a recipients file older than
//!   the value (refresh it with `coffer recipients -w`);
//! - an age identity (a private key, `AGE-SECRET-KEY-…`) in any file.
//!
//! Files a `.gitignore` leaves out of the repository, and those matching
//! `--exclude`, are not read.
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
use crate::rules::{Rule, Rules};

/// One problem, with where and how to fix it.
#[doc(hidden)]
pub struct Problem {
    pub at: String,
    pub what: String,
    pub fix: String,
}

/// What `coffer check` found under the paths it was given.
pub struct Findings {
    /// Manifests read.
    pub files: usize,
    /// SealedSecrets read in them.
    pub sealed: usize,
    /// Files neither YAML nor JSON, with no Secret in them (templates):
    /// skipped.
    pub skipped: usize,
    pub problems: Vec<Problem>,
}

/// Checks every file under `paths` (the current directory when none) but
/// those the `exclude` globs name.
pub fn check_paths(paths: &[PathBuf], exclude: &[String]) -> Result<Findings> {
    let mut problems = Vec::new();
    let excluded = Excludes::new(exclude)?;
    let (files, others) = files_to_check(paths, &excluded, &mut problems)?;
    // Manifests are searched as check_file reads them; other files here.
    for f in &others {
        find_identity(f, &mut problems);
    }
    let mut sealed = 0;
    let mut skipped = 0;
    // Recipients files read once each: their key ids, or why not.
    let mut key_ids: BTreeMap<PathBuf, std::result::Result<Vec<KeyId>, String>> = BTreeMap::new();
    // The rules of each directory, found and parsed once.
    let mut rules_of: BTreeMap<PathBuf, Option<std::rc::Rc<Rules>>> = BTreeMap::new();
    let mut history = History::default();
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
        match check_file(
            file,
            rules.as_deref(),
            &mut key_ids,
            &mut history,
            &mut problems,
        )? {
            Checked::Read(n) => sealed += n,
            Checked::Skipped => skipped += 1,
        }
    }
    Ok(Findings {
        files: files.len(),
        sealed,
        skipped,
        problems,
    })
}

/// The files `coffer check` reads: files named as given; under
/// directories, every `*.yaml`, `*.yml` and `*.json` (in any case) and
/// kustomize's `Kustomization`, hidden ones too, but nothing under `.git`,
/// nothing a `.gitignore` of the repository leaves out and nothing
/// `--exclude` names. Returned second: the other files under the
/// directories, searched only for age identities.
/// Symlinks are followed while they stay inside the repository (or the
/// directory checked, outside a repository), and each directory is read
/// once, so a symlink cycle ends; a symlink that leads out of it, to a
/// directory or named like a manifest, is a problem, since what it points
/// to is not checked.
fn files_to_check(
    paths: &[PathBuf],
    excluded: &Excludes,
    problems: &mut Vec<Problem>,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let roots = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    let mut others = Vec::new();
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
            let mut walker = Walker {
                top: root.clone(),
                within: &within,
                excluded,
                seen: &mut seen,
                files: &mut files,
                others: &mut others,
                problems,
            };
            let ignores = walker.ignores_above(&root);
            walker.walk(&root, &ignores)?;
        } else {
            files.push(root);
        }
    }
    files.sort();
    files.dedup();
    others.sort();
    others.dedup();
    Ok((files, others))
}

/// `--exclude` globs, matched against the path relative to the path
/// checked; one without `/` against each name along it too.
struct Excludes(Vec<(globset::GlobMatcher, bool)>);

impl Excludes {
    fn new(globs: &[String]) -> Result<Excludes> {
        let mut out = Vec::new();
        for g in globs {
            let m = globset::GlobBuilder::new(g.trim_end_matches('/'))
                .literal_separator(true)
                .build()
                .map_err(|e| Failure::usage(format!("--exclude {g:?}: {e}")))?
                .compile_matcher();
            out.push((m, !g.trim_end_matches('/').contains('/')));
        }
        Ok(Excludes(out))
    }

    fn matches(&self, rel: &Path) -> bool {
        self.0.iter().any(|(m, by_name)| {
            m.is_match(rel)
                || (*by_name && rel.file_name().is_some_and(|n| m.is_match(Path::new(n))))
        })
    }
}

/// The `.gitignore` files in force in one directory, innermost last.
type Ignores = Vec<std::rc::Rc<ignore::gitignore::Gitignore>>;

/// The walk of one directory given to `coffer check`.
struct Walker<'a> {
    top: PathBuf,
    within: &'a Repository,
    excluded: &'a Excludes,
    seen: &'a mut BTreeSet<PathBuf>,
    files: &'a mut Vec<PathBuf>,
    others: &'a mut Vec<PathBuf>,
    problems: &'a mut Vec<Problem>,
}

/// A directory's `.gitignore`, if it has one that parses.
fn gitignore_of(dir: &Path) -> Option<std::rc::Rc<ignore::gitignore::Gitignore>> {
    let file = dir.join(".gitignore");
    if !file.is_file() {
        return None;
    }
    let (g, _) = ignore::gitignore::Gitignore::new(&file);
    Some(std::rc::Rc::new(g))
}

impl Walker<'_> {
    /// The `.gitignore` files between the repository's root and `dir`
    /// (not `dir` itself), and `.git/info/exclude`.
    fn ignores_above(&self, dir: &Path) -> Ignores {
        let mut out = Ignores::new();
        let Some(abs) = repository::lexical(dir) else {
            return out;
        };
        let Some(root) = repository::root_of(&abs) else {
            return out;
        };
        let exclude = root.join(".git/info/exclude");
        if exclude.is_file() {
            let mut b = ignore::gitignore::GitignoreBuilder::new(&root);
            b.add(&exclude);
            if let Ok(g) = b.build() {
                out.push(std::rc::Rc::new(g));
            }
        }
        let mut chain: Vec<&Path> = abs
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(&root))
            .collect();
        chain.reverse();
        out.extend(chain.into_iter().filter_map(gitignore_of));
        out
    }

    /// Whether `path` (a directory when `dir`) is left out: by `--exclude`,
    /// or by the innermost `.gitignore` that speaks of it.
    fn left_out(&self, path: &Path, dir: bool, ignores: &Ignores) -> bool {
        if let Ok(rel) = path.strip_prefix(&self.top)
            && self.excluded.matches(rel)
        {
            return true;
        }
        let abs = repository::lexical(path).unwrap_or_else(|| path.to_path_buf());
        for g in ignores.iter().rev() {
            match g.matched(&abs, dir) {
                ignore::Match::Ignore(_) => return true,
                ignore::Match::Whitelist(_) => return false,
                ignore::Match::None => {}
            }
        }
        false
    }

    fn walk(&mut self, dir: &Path, above: &Ignores) -> Result<()> {
        let unreadable =
            |e: std::io::Error| Failure::input(format!("{}: {}", dir.display(), io_reason(&e)));
        if !self.seen.insert(dir.canonicalize().map_err(unreadable)?) {
            return Ok(());
        }
        let mut ignores = above.clone();
        if let Some(g) = gitignore_of(dir) {
            ignores.push(g);
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
            let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
            if self.left_out(&path, is_dir, &ignores) {
                continue;
            }
            let Some(meta) = follow(&path, self.within, self.problems) else {
                continue;
            };
            if meta.is_dir() {
                self.walk(&path, &ignores)?;
            } else if meta.is_file() && looks_like_manifest(&path) {
                self.files.push(path);
            } else if meta.is_file() {
                self.others.push(path);
            }
        }
        Ok(())
    }
}

/// Files larger than this are not searched for identities (an identity
/// file is a few hundred bytes; a large file is an artifact).
const IDENTITY_SEARCH_LIMIT: u64 = 4 << 20;

/// An age identity (a private key) committed in `file`: `AGE-SECRET-KEY-1…`
/// or the post-quantum `AGE-SECRET-KEY-PQ-1…`. Never quotes it.
fn find_identity(file: &Path, problems: &mut Vec<Problem>) {
    if std::fs::metadata(file).map_or(true, |m| m.len() > IDENTITY_SEARCH_LIMIT) {
        return;
    }
    let Ok(bytes) = std::fs::read(file) else {
        return;
    };
    let bytes = zeroize::Zeroizing::new(bytes);
    if holds_identity(&bytes) {
        problems.push(identity_problem(file));
    }
}

/// Whether `bytes` hold an age identity's prefix followed by its encoding.
fn holds_identity(bytes: &[u8]) -> bool {
    ["AGE-SECRET-KEY-1", "AGE-SECRET-KEY-PQ-1"]
        .iter()
        .any(|prefix| {
            bytes.windows(prefix.len() + 8).any(|w| {
                w.starts_with(prefix.as_bytes())
                    && w[prefix.len()..].iter().all(u8::is_ascii_alphanumeric)
            })
        })
}

fn identity_problem(file: &Path) -> Problem {
    Problem {
        at: file.display().to_string(),
        what: "holds an age identity (a private key)".into(),
        fix: "remove it from the repository and from git history; treat it as exposed: if it is a cluster key, rotate (`coffer rotate`) and retire it; if it is an admin key, take a new backup to a new one (`coffer keys backup`)".into(),
    }
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
    history: &mut History,
    problems: &mut Vec<Problem>,
) -> Result<Checked> {
    let docs = match documents_of(file, problems) {
        Ok(docs) => docs,
        Err(checked) => return Ok(checked),
    };
    let rule = match rules.and_then(|r| r.for_path(file).map(|rule| (r, rule))) {
        Some((rules, rule)) => Some(RuleOf {
            rules,
            rule,
            paths: rules.recipients_paths(rule)?,
        }),
        None => None,
    };
    let mut check = FileCheck {
        file,
        name: file.display().to_string(),
        rule: rule.as_ref(),
        key_ids,
        history,
        problems,
    };
    let mut count = 0;
    for (i, doc) in docs.into_iter().enumerate() {
        if check.document(i, doc) {
            count += 1;
        }
    }
    Ok(Checked::Read(count))
}

/// The documents of `file`; or, when it cannot be read or parsed, what
/// checking it came to (a problem said, or a template skipped).
fn documents_of(
    file: &Path,
    problems: &mut Vec<Problem>,
) -> std::result::Result<Vec<serde_json::Value>, Checked> {
    let name = file.display().to_string();
    let input = match read_file(file) {
        Ok(i) => i,
        Err(e) => {
            problems.push(Problem {
                at: name,
                what: format!("cannot be read: {}", e.message),
                fix: "fix the file, or move it out of the checked paths".into(),
            });
            return Err(Checked::Read(0));
        }
    };
    if holds_identity(input.text.as_bytes()) {
        problems.push(identity_problem(file));
    }
    match documents(&input) {
        Ok(d) => Ok(d),
        // Not YAML or JSON: a Helm template, a Go template, a patch
        // fragment. Only one that speaks of Secrets may be hiding one.
        Err(_) if !input.text.contains("Secret") => Err(Checked::Skipped),
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
            Err(Checked::Read(0))
        }
    }
}

/// The `.coffer.yaml` rule a file falls under, with the paths of the
/// recipients files it names.
struct RuleOf<'a> {
    rules: &'a Rules,
    rule: &'a Rule,
    paths: Vec<PathBuf>,
}

/// The check of one file's documents.
struct FileCheck<'a> {
    file: &'a Path,
    name: String,
    rule: Option<&'a RuleOf<'a>>,
    key_ids: &'a mut BTreeMap<PathBuf, std::result::Result<Vec<KeyId>, String>>,
    history: &'a mut History,
    problems: &'a mut Vec<Problem>,
}

/// A recipients file of a rule, as written in it, with its key ids now.
struct Listed<'a> {
    path: &'a PathBuf,
    written: &'a String,
    ids: Vec<KeyId>,
}

impl FileCheck<'_> {
    /// Checks document `i` (from 0); whether it is a SealedSecret (counted
    /// even when it cannot be read).
    fn document(&mut self, i: usize, doc: serde_json::Value) -> bool {
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
            "{}: document {} ({} {}/{})",
            self.name,
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
                check_generator(self.file, &at, g, self.problems);
            }
            return false;
        }
        // What `coffer seal` takes as a Secret: apiVersion v1, or none.
        if field("kind") == "Secret" && matches!(field("apiVersion").as_str(), "v1" | "") {
            self.plain_secret(at, &doc);
            return false;
        }
        if !is_sealed_secret(&doc) {
            return false;
        }
        match read_sealed_secret(doc) {
            Ok(Some(s)) => {
                for (key, value) in &s.spec.encrypted_data {
                    self.item(&at, key, value);
                }
            }
            Ok(None) => {}
            Err(e) => self.problems.push(Problem {
                at,
                what: format!("cannot be read: {e}"),
                fix: "re-seal it with `coffer seal`".into(),
            }),
        }
        true
    }

    /// A plain Secret with values is a problem.
    fn plain_secret(&mut self, at: String, doc: &serde_json::Value) {
        let has = |f: &str| {
            doc.get(f)
                .and_then(|d| d.as_object())
                .is_some_and(|m| !m.is_empty())
        };
        if has("data") || has("stringData") {
            self.problems.push(Problem {
                at,
                what: "a plain Secret with values is committed".into(),
                fix: format!(
                    "seal it (`coffer seal {} -w SEALED.yaml`), delete this file, and remove it from git history",
                    self.name
                ),
            });
        }
    }

    /// One item of a SealedSecret: a sealed value, and under a rule, with
    /// the rule's scope and sealed to a key of every recipients file the
    /// rule names.
    fn item(&mut self, at: &str, key: &str, value: &str) {
        let env = match envelope::inspect(value) {
            Ok((env, _)) => env,
            Err(e) => {
                self.problems.push(Problem {
                    at: at.to_string(),
                    what: format!("item {key:?} is not a sealed value: {e}"),
                    fix: "take the value from git history, or re-seal it with `coffer seal --merge-into`".into(),
                });
                return;
            }
        };
        let Some(RuleOf { rules, rule, paths }) = self.rule else {
            return;
        };
        if let Some(scope) = rule.scope
            && env.scope != scope
        {
            self.problems.push(Problem {
                at: at.to_string(),
                what: format!(
                    "item {key:?} is sealed with scope {}, but rule {:?} of {} asks for {scope}",
                    env.scope,
                    rule.path,
                    rules.root.join(crate::rules::FILE).display()
                ),
                fix: format!("re-seal it with `--scope {scope}`"),
            });
        }
        let current = self.listed(at, rule, paths);
        self.missing_keys(at, key, &env.key_ids, &current);
    }

    /// The keys of every recipients file of the rule, as they are now; a
    /// file that cannot be read is a problem.
    fn listed<'p>(&mut self, at: &str, rule: &'p Rule, paths: &'p [PathBuf]) -> Vec<Listed<'p>> {
        let mut current = Vec::new();
        for (path, written) in paths.iter().zip(&rule.recipients) {
            let ids = self
                .key_ids
                .entry(path.clone())
                .or_insert_with(|| recipients_ids(path));
            match ids {
                Err(e) => {
                    self.problems.push(Problem {
                        at: at.to_string(),
                        what: format!("its rule's recipients file {written} cannot be read: {e}"),
                        fix: "fix the rule in .coffer.yaml, or fetch the file with `coffer recipients -w FILE`".into(),
                    });
                }
                Ok(ids) => current.push(Listed {
                    path,
                    written,
                    ids: ids.clone(),
                }),
            }
        }
        current
    }

    /// A problem for every key of a recipients file of the rule the value
    /// (sealed to `sealed_to`) is not sealed to, with the fix that fits.
    fn missing_keys(&mut self, at: &str, key: &str, sealed_to: &[KeyId], current: &[Listed<'_>]) {
        // Key ids of the value no recipients file of the rule lists:
        // a newer key than a file lists, or an older one.
        let unknown: Vec<KeyId> = sealed_to
            .iter()
            .filter(|k| !current.iter().any(|l| l.ids.contains(k)))
            .copied()
            .collect();
        let missing: Vec<&Listed<'_>> = current
            .iter()
            .filter(|l| l.ids.iter().any(|id| !sealed_to.contains(id)))
            .collect();
        for listed in &missing {
            for id in listed.ids.iter().filter(|id| !sealed_to.contains(id)) {
                let fix = self.missing_key_fix(listed, &unknown, current, missing.len());
                let sealed_to = sealed_to
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.problems.push(Problem {
                    at: at.to_string(),
                    what: format!(
                        "item {key:?} is not sealed to key {id} of {} (sealed to {sealed_to})",
                        listed.written
                    ),
                    fix,
                });
            }
        }
    }

    /// The fix for a value not sealed to a key of `listed`, told from the
    /// repository's history: which of the value's `unknown` keys (listed by
    /// no file of the rule now) could be that file's.
    fn missing_key_fix(
        &mut self,
        listed: &Listed<'_>,
        unknown: &[KeyId],
        current: &[Listed<'_>],
        missing: usize,
    ) -> String {
        let (name, path, written) = (&self.name, listed.path, listed.written);
        // An unknown key some other file of the rule once listed is that
        // cluster's: it says nothing of this one.
        let mut candidates: Vec<KeyId> = Vec::new();
        for k in unknown {
            let mut theirs = false;
            for other in current {
                if other.path != path
                    && self
                        .history
                        .listed(other.path)
                        .is_some_and(|h| h.contains(k))
                {
                    theirs = true;
                }
            }
            if !theirs {
                candidates.push(*k);
            }
        }
        match self.history.listed(path) {
            _ if candidates.is_empty() => reseal_fix(name),
            Some(h) if candidates.iter().any(|k| h.contains(k)) => format!(
                "it is sealed to a key {written} listed before: re-encrypt it for the current keys with `coffer rotate --no-new-key {name}` (with access to that cluster)"
            ),
            Some(_) if missing <= candidates.len() => format!(
                "it is sealed to a key {written} never listed, newer than the file: refresh the file with `coffer recipients -w {}` (with access to that cluster)",
                path.display()
            ),
            _ => format!(
                "if {written} is older than the value, refresh it with `coffer recipients -w {}`; if the value is older, re-encrypt it with `coffer rotate --no-new-key {name}`; else {}",
                path.display(),
                reseal_fix(name)
            ),
        }
    }
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

/// The fix for a value never sealed for a cluster its rule names:
/// re-encryption keeps a value's readers, so only its plaintext can add one.
fn reseal_fix(name: &str) -> String {
    format!(
        "it was never sealed for that cluster, and re-encryption adds no reader: re-seal it from its plaintext with `coffer seal --merge-into {name} SECRET.yaml` (the rule picks every recipients file)"
    )
}

/// Every key id a recipients file has listed in the repository's history
/// (`git log -p`), read once per file; `None` outside a git repository,
/// without git, or for a file git does not know.
#[derive(Default)]
pub struct History(BTreeMap<PathBuf, Option<BTreeSet<KeyId>>>);

impl History {
    fn listed(&mut self, file: &Path) -> Option<&BTreeSet<KeyId>> {
        self.0
            .entry(file.to_path_buf())
            .or_insert_with(|| git_listed(file))
            .as_ref()
    }
}

fn git_listed(file: &Path) -> Option<BTreeSet<KeyId>> {
    let dir = file.parent()?;
    let name = file.file_name()?;
    let out = std::process::Command::new("git")
        .current_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
        .args([
            "log",
            "--format=",
            "-p",
            "--no-ext-diff",
            "--no-color",
            "--",
        ])
        .arg(name)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ids = BTreeSet::new();
    for line in text.lines() {
        let Some(body) = line.strip_prefix('+').or_else(|| line.strip_prefix('-')) else {
            continue;
        };
        for word in body.split_whitespace() {
            if let Ok(k) = word.parse::<coffer_format::PublicKey>() {
                ids.insert(k.id());
            }
        }
    }
    if ids.is_empty() { None } else { Some(ids) }
}
