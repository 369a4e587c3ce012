//! SealedSecret documents: reading files (YAML streams or JSON, in order)
//! through core's one SealedSecret reader, one document at a time, and
//! rewriting files in place (`rotate`, `convert`), the YAML documents of a
//! file with the comments around them kept. In the library because the
//! fuzz targets read files through it, and most commands do.

use std::path::{Path, PathBuf};

use coffer_core::SealedSecret;
use coffer_core::api::{is_sealed_secret, read_sealed_secret};
use coffer_core::manifest::is_list;

use crate::error::{Failure, Result};
use crate::io::{Format, Input, read_file, render, write_atomic};

/// A SealedSecret and where it came from.
pub struct Doc {
    pub file: String,
    /// From 1, in file order.
    pub index: usize,
    pub sealed: SealedSecret,
}

impl Doc {
    pub fn label(&self) -> String {
        format!(
            "{}: document {} ({}/{})",
            self.file,
            self.index,
            self.sealed.metadata.namespace.as_deref().unwrap_or("?"),
            self.sealed.metadata.name.as_deref().unwrap_or("?")
        )
    }
}

/// The documents of an input in order: a JSON object or a YAML stream,
/// with the items of a list (`kind: List`, `SecretList`, any `*List`) in
/// its place. An empty document is a
/// `null`, so that numbering matches the file.
pub fn documents(input: &Input) -> Result<Vec<serde_json::Value>> {
    coffer_core::manifest::documents(&input.text)
        .map_err(|e| Failure::input(format!("{}: {e}", input.name)))
}

/// Every SealedSecret in the inputs; other kinds are skipped when
/// `skip_other_kinds`, refused otherwise.
pub fn read_sealed(inputs: &[Input], skip_other_kinds: bool) -> Result<Vec<Doc>> {
    let mut out = Vec::new();
    for input in inputs {
        for (i, item) in documents(input)?.into_iter().enumerate() {
            let index = i + 1;
            let kind = item.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            let api = item
                .get("apiVersion")
                .and_then(|k| k.as_str())
                .unwrap_or("");
            let not_sealed = format!(
                "{}: document {index}: kind {kind:?} ({api}) is not a coffer.dev SealedSecret",
                input.name
            );
            let sealed = match read_sealed_secret(item) {
                Ok(Some(s)) => s,
                Ok(None) if skip_other_kinds => continue,
                Ok(None) => return Err(Failure::input(not_sealed)),
                Err(e) => {
                    return Err(Failure::input(format!(
                        "{}: document {index}: {e}",
                        input.name
                    )));
                }
            };
            out.push(Doc {
                file: input.name.clone(),
                index,
                sealed,
            });
        }
    }
    Ok(out)
}

/// The error when the inputs hold no Coffer SealedSecret: it says so, and
/// points at `coffer convert` when they hold bitnami ones.
pub fn none_found(inputs: &[Input]) -> Failure {
    let bitnami: usize = inputs
        .iter()
        .filter_map(|i| documents(i).ok())
        .flatten()
        .filter(|d| {
            d.get("kind").and_then(|k| k.as_str()) == Some("SealedSecret")
                && d.get("apiVersion")
                    .and_then(|a| a.as_str())
                    .is_some_and(|a| a.starts_with("bitnami.com/"))
        })
        .count();
    if bitnami > 0 {
        Failure::input(format!(
            "no coffer.dev SealedSecret found in the input, but {bitnami} bitnami.com one(s): \
             convert them with `coffer convert FILES` (docs/migration.md)"
        ))
    } else {
        Failure::input("no SealedSecret found in the input")
    }
}

/// Parses one document (YAML or JSON) as a SealedSecret.
pub fn read_one(name: &str, text: &str) -> Result<SealedSecret> {
    coffer_core::manifest::one_sealed_secret(text)
        .map_err(|e| Failure::input(format!("{name}: {e}")))
}

/// Whether one document (YAML or JSON) is a `coffer.dev` SealedSecret.
pub fn is_sealed(body: &str) -> bool {
    let v: std::result::Result<serde_json::Value, _> = if body.trim_start().starts_with('{') {
        serde_json::from_str(body).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_str(body).map_err(|e| e.to_string())
    };
    v.ok().is_some_and(|v| is_sealed_secret(&v))
}

/// A SealedSecret as a JSON request body.
pub fn to_json(s: &SealedSecret) -> Result<Vec<u8>> {
    serde_json::to_vec(s).map_err(|e| Failure::new(1, e.to_string()))
}

/// One document (YAML or JSON) as JSON, if it parses.
pub fn value_of(body: &str) -> Option<serde_json::Value> {
    if body.trim().is_empty() {
        return None;
    }
    if body.trim_start().starts_with('{') {
        serde_json::from_str(body).ok()
    } else {
        serde_saphyr::from_str(body).ok()
    }
}

/// The documents of a file to rewrite in place, each with the separator
/// before it and the comments around it (a JSON file is one document);
/// and whether the file is JSON. [`Rewrite`] splits files with it.
pub fn chunks_of(text: &str) -> (bool, Vec<(String, Chunk)>) {
    if text.trim_start().starts_with('{') {
        let whole = Chunk {
            prefix: String::new(),
            body: text.to_string(),
            suffix: String::new(),
        };
        (true, vec![(String::new(), whole)])
    } else {
        (false, split_yaml(text))
    }
}

/// What a command rewrites in place: its name and what it calls the
/// documents it edits, for messages, and which documents those are.
pub struct InPlace {
    pub command: &'static str,
    pub what: &'static str,
    pub edits: fn(&serde_json::Value) -> bool,
}

/// A file rewritten in place (`rotate`, `convert`): read whole, split into
/// its documents, each with the separator before it and the comment lines
/// around it, all written back as they were but the documents an edit
/// replaces.
pub struct Rewrite {
    pub path: PathBuf,
    pub input: Input,
    json: bool,
    chunks: Vec<(String, Chunk)>,
}

/// One document of a file being rewritten.
pub struct Document<'a> {
    /// From 0, in file order (an empty document before a leading `---`
    /// counts).
    pub index: usize,
    /// `FILE: document N`, N from 1.
    pub label: String,
    /// Its text, without the comment lines around it.
    pub body: &'a str,
}

impl Document<'_> {
    /// The document (YAML or JSON) as JSON, if it parses.
    pub fn value(&self) -> Option<serde_json::Value> {
        value_of(self.body)
    }
}

/// What an edit does with one document.
pub enum Edit {
    /// Written back byte for byte.
    Keep,
    /// Replaced by this SealedSecret, rendered as the file is written (YAML
    /// or JSON); the comment lines around it are kept, those inside lost.
    Replace(Box<SealedSecret>),
    /// In a dry run: would be replaced. Counted as a change; nothing is
    /// rendered.
    WouldReplace,
}

impl Rewrite {
    /// Reads every file of `paths` to rewrite it, all before any is
    /// edited, so a refusal comes before anything changes. Refused: a file
    /// with a list (`kind: List`, `SealedSecretList`, any `*List`) holding
    /// a document the command edits, whose items have no text of their own
    /// to keep.
    pub fn read_all(paths: &[PathBuf], command: &InPlace) -> Result<Vec<Rewrite>> {
        paths.iter().map(|p| Rewrite::read(p, command)).collect()
    }

    fn read(path: &Path, command: &InPlace) -> Result<Rewrite> {
        let input = read_file(path)?;
        let (json, chunks) = chunks_of(&input.text);
        let file = Rewrite {
            path: path.to_path_buf(),
            input,
            json,
            chunks,
        };
        for doc in file.documents() {
            let Some(kind) = doc.value().and_then(|v| list_holding(v, command.edits)) else {
                continue;
            };
            return Err(Failure::input(format!(
                "{}: holds {} inside a list (kind: {kind}, document {}), which {} does not rewrite",
                file.input.name,
                command.what,
                doc.index + 1,
                command.command
            ))
            .hint(format!(
                "split the list into one document per SealedSecret (separated by ---), then run {} again",
                command.command
            )));
        }
        Ok(file)
    }

    /// Its documents, in file order.
    pub fn documents(&self) -> impl Iterator<Item = Document<'_>> {
        self.chunks
            .iter()
            .enumerate()
            .map(|(index, (_, c))| Document {
                index,
                label: format!("{}: document {}", self.input.name, index + 1),
                body: &c.body,
            })
    }

    /// Calls `edit` on every document in order, then writes the file
    /// (atomically) if an edit replaced a document, unless `dry_run`.
    /// Returns whether any document changed (or, in a dry run, would).
    /// An edit that fails stops it, the file unwritten.
    pub async fn rewrite(
        &self,
        dry_run: bool,
        mut edit: impl AsyncFnMut(&Document<'_>) -> Result<Edit>,
    ) -> Result<bool> {
        let format = if self.json {
            Format::Json
        } else {
            Format::Yaml
        };
        let mut out = String::new();
        let (mut changed, mut replaced) = (false, false);
        for (doc, (separator, chunk)) in self.documents().zip(&self.chunks) {
            out.push_str(separator);
            out.push_str(&chunk.prefix);
            match edit(&doc).await? {
                Edit::Keep => out.push_str(&chunk.body),
                Edit::Replace(sealed) => {
                    out.push_str(&render(std::slice::from_ref(&*sealed), format)?);
                    (changed, replaced) = (true, true);
                }
                Edit::WouldReplace => {
                    out.push_str(&chunk.body);
                    changed = true;
                }
            }
            out.push_str(&chunk.suffix);
        }
        if replaced && !dry_run {
            write_atomic(&self.path, out.as_bytes(), false)?;
        }
        Ok(changed)
    }
}

/// The kind of `v` when it is a list holding a document `edits` picks
/// (nested lists too; the items of a typed list take its kind and
/// apiVersion, as [`documents`] reads them).
fn list_holding(v: serde_json::Value, edits: fn(&serde_json::Value) -> bool) -> Option<String> {
    if !is_list(&v) {
        return None;
    }
    let kind = v
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    let mut items = Vec::new();
    coffer_core::manifest::flatten_list(v, &mut items);
    items.iter().any(edits).then_some(kind)
}

/// One YAML document of a file, with the comment lines around it kept.
pub struct Chunk {
    pub prefix: String,
    pub body: String,
    pub suffix: String,
}

pub(crate) fn split_yaml(text: &str) -> Vec<(String, Chunk)> {
    // (separator line before the chunk, chunk)
    let mut out = Vec::new();
    let mut sep = String::new();
    let mut cur = String::new();
    for line in text.split_inclusive('\n') {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") {
            out.push((std::mem::take(&mut sep), chunk(&std::mem::take(&mut cur))));
            sep = line.to_string();
        } else {
            cur.push_str(line);
        }
    }
    out.push((sep, chunk(&cur)));
    out
}

fn chunk(text: &str) -> Chunk {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is_meta = |l: &&str| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    };
    let start = lines
        .iter()
        .position(|l| !is_meta(l))
        .unwrap_or(lines.len());
    let end = lines
        .iter()
        .rposition(|l| !is_meta(l))
        .map(|e| e + 1)
        .unwrap_or(start);
    Chunk {
        prefix: lines[..start].concat(),
        body: lines[start..end].concat(),
        suffix: lines[end..].concat(),
    }
}

#[cfg(test)]
mod yaml_error_tests {
    use super::*;

    #[test]
    fn a_yaml_error_says_where_and_never_what_it_quotes() {
        let input = Input {
            name: "x.yaml".into(),
            text: zeroize::Zeroizing::new(
                "apiVersion: v1\nkind: Secret\nstringData:\n  s3cr3t-value: 1\n  s3cr3t-value: 2\n"
                    .into(),
            ),
        };
        let e = documents(&input).unwrap_err();
        assert!(!e.message.contains("s3cr3t"), "{}", e.message);
        assert!(
            e.message.contains("not valid YAML at line 5"),
            "{}",
            e.message
        );
    }
}

#[cfg(test)]
mod rewrite_tests {
    use super::*;

    const SEALED: &str = "apiVersion: coffer.dev/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: db\n  namespace: shop\nspec:\n  encryptedData:\n    password: c2VhbGVk\n";

    const ROTATE: InPlace = InPlace {
        command: "rotate",
        what: "SealedSecrets",
        edits: is_sealed_secret,
    };

    const CONVERT: InPlace = InPlace {
        command: "convert",
        what: "bitnami SealedSecrets",
        edits: coffer_core::bitnami::is_bitnami_sealed_secret,
    };

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn yaml_split_keeps_separators_and_comments() {
        let text = "# top\na: 1\n# after a\n---\n# before b\nb: 2\n";
        let parts = split_yaml(text);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1.prefix, "# top\n");
        assert_eq!(parts[0].1.body, "a: 1\n");
        assert_eq!(parts[0].1.suffix, "# after a\n");
        assert_eq!(parts[1].0, "---\n");
        assert_eq!(parts[1].1.prefix, "# before b\n");
        let joined: String = parts
            .iter()
            .map(|(s, c)| format!("{s}{}{}{}", c.prefix, c.body, c.suffix))
            .collect();
        assert_eq!(joined, text);
    }

    /// rotate and convert refuse a list holding what they rewrite in one
    /// wording, naming the file, the document and the fix, and only such a
    /// list: one of other kinds is kept as it is.
    #[test]
    fn a_list_holding_what_a_command_rewrites_is_refused_in_one_wording() {
        let dir = tempfile::tempdir().unwrap();
        // A typed list, whose items take its kind and apiVersion.
        let typed = file(
            &dir,
            "typed.yaml",
            "kind: ConfigMap\napiVersion: v1\nmetadata: {name: c}\n---\napiVersion: coffer.dev/v1alpha1\nkind: SealedSecretList\nitems:\n  - metadata: {name: db, namespace: shop}\n    spec: {encryptedData: {password: c2VhbGVk}}\n",
        );
        let e = Rewrite::read_all(std::slice::from_ref(&typed), &ROTATE)
            .err()
            .unwrap();
        assert_eq!(
            e.message,
            format!(
                "{}: holds SealedSecrets inside a list (kind: SealedSecretList, document 2), which rotate does not rewrite",
                typed.display()
            )
        );
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "split the list into one document per SealedSecret (separated by ---), then run rotate again"
            )
        );
        let bitnami = file(
            &dir,
            "bitnami.json",
            r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "metadata": {"name": "db"}}]}"#,
        );
        let e = Rewrite::read_all(std::slice::from_ref(&bitnami), &CONVERT)
            .err()
            .unwrap();
        assert_eq!(
            e.message,
            format!(
                "{}: holds bitnami SealedSecrets inside a list (kind: List, document 1), which convert does not rewrite",
                bitnami.display()
            )
        );
        assert_eq!(e.code, crate::error::code::INPUT);
        // Lists of what the command does not rewrite are no concern of it.
        assert!(Rewrite::read_all(std::slice::from_ref(&bitnami), &ROTATE).is_ok());
        assert!(Rewrite::read_all(std::slice::from_ref(&typed), &CONVERT).is_ok());
    }

    /// Every byte an edit does not replace is written back as it was; a
    /// dry run counts the change and writes nothing.
    #[test]
    fn a_rewrite_replaces_only_what_the_edit_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "# the shop\n---\n# config\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}  # kept\n---\n{SEALED}# after\n"
        );
        let path = file(&dir, "shop.yaml", &text);
        let files = Rewrite::read_all(std::slice::from_ref(&path), &ROTATE).unwrap();
        let labels: Vec<String> = files[0].documents().map(|d| d.label).collect();
        let name = path.display();
        assert_eq!(
            labels,
            [
                format!("{name}: document 1"),
                format!("{name}: document 2"),
                format!("{name}: document 3")
            ]
        );
        let mut sealed = read_one("x", SEALED).unwrap();
        sealed
            .spec
            .encrypted_data
            .insert("password".into(), "cmVwbGFjZWQ=".into());
        let edit = async |doc: &Document<'_>| -> Result<Edit> {
            Ok(if is_sealed(doc.body) {
                Edit::Replace(Box::new(sealed.clone()))
            } else {
                Edit::Keep
            })
        };
        assert!(block_on(files[0].rewrite(true, edit)).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert!(block_on(files[0].rewrite(false, edit)).unwrap());
        let written = std::fs::read_to_string(&path).unwrap();
        let (kept, replaced) = written.split_at(written.rfind("---\n").unwrap() + 4);
        assert_eq!(kept, &text[..text.rfind("---\n").unwrap() + 4]);
        assert!(replaced.contains("password: cmVwbGFjZWQ="), "{replaced}");
        assert!(replaced.ends_with("# after\n"), "{replaced}");
        let unchanged = async |_: &Document<'_>| -> Result<Edit> { Ok(Edit::Keep) };
        assert!(!block_on(files[0].rewrite(false, unchanged)).unwrap());
    }
}
