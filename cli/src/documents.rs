//! SealedSecret documents: reading files (YAML streams or JSON, in order)
//! through core's one SealedSecret reader, one document at a time, and
//! the YAML documents of a file with the comments around them kept.

use coffer_core::SealedSecret;
use coffer_core::api::{is_sealed_secret, read_sealed_secret};

use crate::error::{Failure, Result};
use crate::io::Input;

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
    let values: Vec<serde_json::Value> = if input.text.trim_start().starts_with('{') {
        vec![
            serde_json::from_str(&input.text)
                .map_err(|e| Failure::input(format!("{}: not valid JSON: {e}", input.name)))?,
        ]
    } else {
        serde_saphyr::from_multiple(&input.text).map_err(|e| {
            Failure::input(format!(
                "{}: not valid YAML{}",
                input.name,
                yaml_error_place(&e.to_string())
            ))
        })?
    };
    let mut out = Vec::new();
    for v in values {
        flatten(v, &mut out);
    }
    Ok(out)
}

/// Where a YAML error is (` at line L column C`), and nothing else: the
/// parser's text quotes what it stopped at (a duplicated key, a scalar),
/// which in a broken file can be a value (found by the `rules_and_check`
/// fuzz target: `duplicate mapping key: <the text>`).
fn yaml_error_place(error: &str) -> String {
    let first = error.lines().next().unwrap_or("");
    let number_after = |word: &str| -> Option<u64> {
        let at = first.find(word)? + word.len();
        let digits: String = first[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    match (number_after("line "), number_after("column ")) {
        (Some(line), Some(column)) => format!(" at line {line} column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

/// Whether `v` is a list: `kind: List`, or a typed list such as
/// `SecretList` (any kind ending in `List` with an `items` array).
pub fn is_list(v: &serde_json::Value) -> bool {
    v.get("kind")
        .and_then(|k| k.as_str())
        .is_some_and(|k| k.ends_with("List"))
        && v.get("items").is_some_and(|i| i.is_array())
}

/// Puts `v`, or the items of a list (of lists) in its place, into `out`.
/// The items of a typed list (`SecretList`, what the API server returns)
/// need not name their kind and apiVersion: they take the list's.
fn flatten(mut v: serde_json::Value, out: &mut Vec<serde_json::Value>) {
    if !is_list(&v) {
        out.push(v);
        return;
    }
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let item_kind = kind.strip_suffix("List").unwrap_or("").to_string();
    let api = v.get("apiVersion").cloned();
    let items = match v.get_mut("items") {
        Some(serde_json::Value::Array(items)) => std::mem::take(items),
        _ => Vec::new(),
    };
    for mut item in items {
        if let Some(fields) = item.as_object_mut()
            && !item_kind.is_empty()
        {
            fields
                .entry("kind")
                .or_insert_with(|| serde_json::Value::String(item_kind.clone()));
            if let Some(api) = &api {
                fields.entry("apiVersion").or_insert_with(|| api.clone());
            }
        }
        flatten(item, out);
    }
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
    let value: std::result::Result<serde_json::Value, String> =
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_saphyr::from_str(text)
                .map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())
        };
    let value = value.map_err(|e| Failure::input(format!("{name}: not a SealedSecret: {e}")))?;
    match read_sealed_secret(value) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Failure::input(format!(
            "{name}: not a SealedSecret: kind and apiVersion are not those of a coffer.dev SealedSecret"
        ))),
        Err(e) => Err(Failure::input(format!("{name}: {e}"))),
    }
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
/// and whether the file is JSON. `rotate` and `convert` rewrite through
/// this, writing back every piece they do not change.
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

/// One YAML document of a file, with the comment lines around it kept.
pub struct Chunk {
    pub prefix: String,
    pub body: String,
    pub suffix: String,
}

pub fn split_yaml(text: &str) -> Vec<(String, Chunk)> {
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
        assert_eq!(yaml_error_place("no place"), "");
    }
}
