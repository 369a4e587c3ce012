//! Reading Secret manifests a user wants to seal: YAML (several documents
//! separated by `---`), JSON, or a `kind: List` of Secrets. Values are kept
//! in buffers wiped on drop and never printed.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use zeroize::{Zeroize, Zeroizing};

/// Largest manifest input accepted (many Secrets of up to 1 MiB each).
pub const MAX_INPUT_LEN: usize = 64 * 1024 * 1024;

/// Most YAML documents read from one input.
pub const MAX_DOCUMENTS: usize = 100_000;

/// A secret value from a manifest; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub Zeroizing<Vec<u8>>);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted {} bytes]", self.0.len())
    }
}

/// A `data` or `stringData` entry as YAML or JSON wrote it: text, or
/// something else, kept as what it is (never its value) so that the error
/// can name the item's key once the document is known to be a Secret.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Scalar {
    /// A string: the value, wiped on drop.
    Text(SecretValue),
    /// `port: 5432`, `debug: true`, a list or a mapping: what it is, as
    /// "a number", "a boolean", …
    Other(&'static str),
}

impl Scalar {
    /// The text, or why the item (named `what`, e.g. `stringData item
    /// "port"`) is refused. Never quotes the value.
    fn text(self, what: &str) -> Result<SecretValue, String> {
        match self {
            Scalar::Text(v) => Ok(v),
            Scalar::Other(kind) => Err(format!(
                "{what} is {kind}, not a string; quote it to make it a string"
            )),
        }
    }
}

/// A `data` entry: base64 in the manifest, kept as text until the
/// document is known to be a Secret (a ConfigMap's `data` is not base64),
/// then decoded with the item's key at hand for the error.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Base64Value(pub Scalar);

impl Base64Value {
    /// Decodes the base64 text; `None` when it is not valid base64.
    pub fn decode(text: &SecretValue) -> Option<SecretValue> {
        // Kubernetes prints `data` as canonical standard base64.
        let text = std::str::from_utf8(&text.0).ok()?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(text.len() * 3 / 4));
        STANDARD.decode_vec(text.trim(), &mut bytes).ok()?;
        Some(SecretValue(bytes))
    }
}
/// A `stringData` entry: the text itself.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TextValue(pub Scalar);

struct ValueVisitor;

impl ValueVisitor {
    fn convert<E: de::Error>(&self, s: &str) -> Result<Scalar, E> {
        // `data` stays base64 text here; `flatten` decodes it once the
        // document is known to be a Secret.
        Ok(Scalar::Text(SecretValue(Zeroizing::new(
            s.as_bytes().to_vec(),
        ))))
    }
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.convert(v)
    }
    fn visit_string<E: de::Error>(self, mut v: String) -> Result<Self::Value, E> {
        let r = self.convert(&v);
        v.zeroize();
        r
    }
    // YAML turns `port: 5432` or `debug: true` into numbers and booleans;
    // kubectl refuses those in stringData, and so do we, naming the item
    // once the document is known to be a Secret, never the value.
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a number"))
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a number"))
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Text(SecretValue(Zeroizing::new(Vec::new()))))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("a list"))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Scalar::Other("a mapping"))
    }
}

impl<'de> Deserialize<'de> for Base64Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor).map(Base64Value)
    }
}

impl<'de> Deserialize<'de> for TextValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor).map(TextValue)
    }
}

/// Metadata fields Coffer keeps; everything else (uid, resourceVersion,
/// managedFields, ownerReferences, …) is dropped.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ManifestMeta {
    /// `metadata.name`.
    #[serde(default)]
    pub name: Option<String>,
    /// `metadata.namespace`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `metadata.labels`.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// `metadata.annotations`.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// One document of an input stream: a Secret or a List of documents.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct RawDoc {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<ManifestMeta>,
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    immutable: Option<bool>,
    #[serde(default)]
    data: Option<BTreeMap<String, Base64Value>>,
    #[serde(default)]
    string_data: Option<BTreeMap<String, TextValue>>,
    #[serde(default)]
    items: Option<Vec<RawDoc>>,
}

/// A Secret manifest read from the user's input.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretManifest {
    /// Position in the input stream, from 1, counting List items in order.
    pub index: usize,
    /// The metadata Coffer keeps.
    pub metadata: ManifestMeta,
    /// The Secret's `type`.
    pub type_: Option<String>,
    /// The Secret's `immutable`.
    pub immutable: Option<bool>,
    /// `data` and `stringData` merged; `stringData` wins, as in Kubernetes.
    pub data: BTreeMap<String, SecretValue>,
}

/// Why an input could not be read. Never holds a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The input is over [`MAX_INPUT_LEN`].
    #[error("input is {len} bytes; at most {MAX_INPUT_LEN} are accepted")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// The input does not parse.
    #[error("input is not valid {format}: {why}")]
    Syntax {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// Where and why, without quoting the input.
        why: String,
    },
    /// One document is not a Secret Coffer can seal.
    #[error("document {index}: {why}")]
    Document {
        /// Its position in the stream, from 1.
        index: usize,
        /// Why, never quoting a value.
        why: String,
    },
    /// The input holds no document.
    #[error("input holds no document")]
    Empty,
}

/// Reads every Secret in `text` (YAML stream or JSON).
pub fn read_secrets(text: &str) -> Result<Vec<SecretManifest>, ManifestError> {
    if text.len() > MAX_INPUT_LEN {
        return Err(ManifestError::TooLarge { len: text.len() });
    }
    let docs: Vec<RawDoc> = if text.trim_start().starts_with('{') {
        let doc = serde_json::from_str(text).map_err(|e| ManifestError::Syntax {
            format: "JSON",
            why: scrub(&e.to_string()),
        })?;
        vec![doc]
    } else {
        // The parser's default budget (1,024 documents, 250,000 nodes) is
        // for configuration files; a repository's Secrets in one stream can
        // be many more. The input is capped at MAX_INPUT_LEN and anchors and
        // aliases keep their default limits, so alias bombs stay refused.
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_documents: MAX_DOCUMENTS,
                max_nodes: 40 * MAX_DOCUMENTS,
                max_events: 80 * MAX_DOCUMENTS,
            },
        };
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
            ManifestError::Syntax {
                format: "YAML",
                why: scrub(&e.to_string()),
            }
        })?
    };
    let mut out = Vec::new();
    for doc in docs {
        flatten(doc, &mut out)?;
    }
    if out.is_empty() {
        return Err(ManifestError::Empty);
    }
    Ok(out)
}

/// Parser messages may quote the input near the error, which can be a
/// value: keep only the first line and drop any quoted snippet.
fn scrub(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let cut = first
        .find(['"', '`', '\''])
        .map(|i| &first[..i])
        .unwrap_or(first);
    let cut = cut.trim_end_matches([' ', ':', ',']);
    // YAML: `line L column C: what: text`. The text after the reason can
    // be the input unquoted (`duplicate mapping key: <a line of a value>`):
    // keep the place and the reason only.
    match cut.split_once(": ") {
        Some((place, reason)) if place.starts_with("line ") => {
            // A budget breach names the budget only (the parser's own words).
            if reason.starts_with("budget breached") {
                return format!("{place}: {reason}");
            }
            let reason = reason
                .split(':')
                .next()
                .unwrap_or("")
                .trim_end_matches([' ', ',']);
            format!("{place}: {reason}")
        }
        _ => cut.to_string(),
    }
}

fn flatten(doc: RawDoc, out: &mut Vec<SecretManifest>) -> Result<(), ManifestError> {
    let index = out.len() + 1;
    let err = |why: String| ManifestError::Document { index, why };
    match doc.kind.as_deref() {
        Some("List") | Some("SecretList") => {
            for item in doc.items.unwrap_or_default() {
                flatten(item, out)?;
            }
            Ok(())
        }
        Some("Secret") => {
            match doc.api_version.as_deref() {
                Some("v1") | None => {}
                Some(other) => return Err(err(format!("apiVersion {other:?} is not v1"))),
            }
            let metadata = doc.metadata.unwrap_or_default();
            if metadata.name.as_deref().unwrap_or("").is_empty() {
                return Err(err("the Secret has no metadata.name".into()));
            }
            let mut data: BTreeMap<String, SecretValue> = BTreeMap::new();
            for (k, v) in doc.data.unwrap_or_default() {
                let text = v.0.text(&format!("data item {k:?}")).map_err(err)?;
                let value = Base64Value::decode(&text).ok_or_else(|| {
                    err(format!(
                        "data item {k:?} is not valid base64 (use stringData for plain text)"
                    ))
                })?;
                data.insert(k, value);
            }
            for (k, v) in doc.string_data.unwrap_or_default() {
                let value = v.0.text(&format!("stringData item {k:?}")).map_err(err)?;
                data.insert(k, value);
            }
            out.push(SecretManifest {
                index,
                metadata,
                type_: doc.type_,
                immutable: doc.immutable,
                data,
            });
            Ok(())
        }
        Some(other) => Err(err(format!("kind {other:?} is not a Secret"))),
        None => Err(err("the document has no kind".into())),
    }
}

/// The documents of a YAML or JSON text (JSON when it starts with `{`),
/// with the items of a list (`kind: List`, `SecretList`, any `*List`) in
/// its place. An empty document is a `null`, so that numbering matches the
/// file. A parse error says where, never what it stopped at (that can be a
/// value).
pub fn documents(text: &str) -> Result<Vec<serde_json::Value>, String> {
    let values: Vec<serde_json::Value> = if text.trim_start().starts_with('{') {
        vec![serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?]
    } else {
        serde_saphyr::from_multiple(text)
            .map_err(|e| format!("not valid YAML{}", yaml_error_place(&e.to_string())))?
    };
    let mut out = Vec::new();
    for v in values {
        flatten_list(v, &mut out);
    }
    Ok(out)
}

/// The one SealedSecret of a YAML or JSON text (`--merge-into`, the web
/// page's "add to", `coffer rotate` reading a document). An error says
/// what is wrong (never a value: parse errors say only where); the caller
/// names the input.
pub fn one_sealed_secret(text: &str) -> Result<crate::api::SealedSecret, String> {
    let docs = documents(text).map_err(|e| format!("not a SealedSecret: {e}"))?;
    let mut docs: Vec<_> = docs.into_iter().filter(|d| !d.is_null()).collect();
    if docs.len() != 1 {
        return Err(format!(
            "give exactly one SealedSecret, got {} documents",
            docs.len()
        ));
    }
    match crate::api::read_sealed_secret(docs.remove(0)) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(
            "not a SealedSecret: kind and apiVersion are not those of a coffer.dev SealedSecret"
                .into(),
        ),
        Err(e) => Err(e.to_string()),
    }
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
pub fn flatten_list(mut v: serde_json::Value, out: &mut Vec<serde_json::Value>) {
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
        flatten_list(item, out);
    }
}

/// YAML as Coffer writes it: block style, every string on one line (no
/// folded `>` blocks), so sealed values stay greppable and diffs stay small.
pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, String> {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(value, options).map_err(|e| e.to_string())
}

/// Renders objects as Coffer prints them: YAML documents separated by
/// `---`, or JSON (one object, or a `List` for several), ending in a newline.
/// The CLI's output and the web page's are this one function.
pub fn render<T: serde::Serialize>(items: &[T], json: bool) -> Result<String, String> {
    if !json {
        let mut out = String::new();
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&to_yaml(item).map_err(|e| format!("cannot render YAML: {e}"))?);
        }
        return Ok(out);
    }
    let value = if items.len() == 1 {
        serde_json::to_value(&items[0])
    } else {
        serde_json::to_value(
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
        )
    }
    .map_err(|e| format!("cannot render JSON: {e}"))?;
    let mut s =
        serde_json::to_string_pretty(&value).map_err(|e| format!("cannot render JSON: {e}"))?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_never_quotes_the_input() {
        let dup = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  hunter2-line: 1\n  hunter2-line: 2\n";
        let e = read_secrets(dup).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("line 7 column 3: duplicate mapping key"), "{e}");
        assert_eq!(
            scrub("line 1 column 2: invalid type: string \"x\""),
            "line 1 column 2: invalid type"
        );
    }

    #[test]
    fn a_yaml_error_says_where_only() {
        assert_eq!(yaml_error_place("no place"), "");
        assert_eq!(
            yaml_error_place("duplicate mapping key: x at line 5 column 3\nmore"),
            " at line 5 column 3"
        );
    }

    #[test]
    fn reads_data_and_string_data_from_a_yaml_stream() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: n}\ndata:\n  x: aGk=\nstringData:\n  y: there\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\nstringData: {z: \"1\"}\n";
        let s = read_secrets(text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].data["x"].0.as_slice(), b"hi");
        assert_eq!(s[0].data["y"].0.as_slice(), b"there");
        assert_eq!(s[1].index, 2);
    }

    #[test]
    fn reads_a_stream_of_ten_thousand_secrets() {
        let one = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: n\n  labels: {app: a}\ntype: Opaque\nstringData:\n  a: one\n  b: two\n  c: three\n";
        let text = vec![one; 10_000].join("---\n");
        let s = read_secrets(&text).unwrap();
        assert_eq!(s.len(), 10_000);
        assert_eq!(s[9_999].data["c"].0.as_slice(), b"three");
        // Past the cap: one clear error, not a partial read.
        let text =
            vec!["kind: Secret\nmetadata: {name: s}\nstringData: {a: b}\n"; MAX_DOCUMENTS + 1]
                .join("---\n");
        let e = read_secrets(&text).unwrap_err().to_string();
        assert!(e.contains("document"), "{e}");
    }

    #[test]
    fn reads_a_json_list() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"kind":"Secret","metadata":{"name":"a"},"stringData":{"k":"v"}}]}"#;
        assert_eq!(read_secrets(text).unwrap()[0].data["k"].0.as_slice(), b"v");
    }

    #[test]
    fn errors_never_quote_values() {
        let text = "kind: Secret\nmetadata: {name: a}\nstringData:\n  pw: \"s3cr3t-value\n";
        let e = read_secrets(text).unwrap_err().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        let text = "kind: Secret\nmetadata: {name: a}\ndata:\n  pw: s3cr3t-value!\n";
        let e = read_secrets(text).unwrap_err().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn bad_base64_names_the_item_and_is_not_a_syntax_error() {
        let text = "kind: Secret\nmetadata: {name: a}\ndata:\n  ok: aGk=\n  pw: s3cr3t-value!\n";
        let e = read_secrets(text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "document 1: data item \"pw\" is not valid base64 (use stringData for plain text)"
        );
        assert!(!matches!(e, ManifestError::Syntax { .. }));
    }

    #[test]
    fn a_value_that_is_no_string_names_its_item_and_is_not_a_syntax_error() {
        for (value, kind) in [
            ("5432", "a number"),
            ("-17.25", "a number"),
            ("true", "a boolean"),
            ("[s3cr3t, other]", "a list"),
            ("{s3cr3t: 1}", "a mapping"),
        ] {
            let text = format!(
                "kind: Secret\nmetadata: {{name: a}}\nstringData:\n  ok: text\n  port: {value}\n"
            );
            let e = read_secrets(&text).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "document 1: stringData item \"port\" is {kind}, not a string; quote it to make it a string"
                )
            );
            assert!(!e.to_string().contains(value), "{e}");
            let text = format!("---\nkind: Secret\nmetadata: {{name: b}}\ndata:\n  n: {value}\n");
            assert_eq!(
                read_secrets(&text).unwrap_err().to_string(),
                format!(
                    "document 1: data item \"n\" is {kind}, not a string; quote it to make it a string"
                )
            );
        }
        let json = r#"{"kind":"Secret","metadata":{"name":"a"},"stringData":{"port":5432}}"#;
        assert_eq!(
            read_secrets(json).unwrap_err().to_string(),
            "document 1: stringData item \"port\" is a number, not a string; quote it to make it a string"
        );
    }

    #[test]
    fn a_config_map_is_named_as_such_even_when_its_data_is_not_base64() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  mode: fast and loose\n";
        assert_eq!(
            read_secrets(text).unwrap_err().to_string(),
            "document 1: kind \"ConfigMap\" is not a Secret"
        );
    }

    #[test]
    fn other_kinds_are_refused_with_the_document_index() {
        let text = "kind: Secret\nmetadata: {name: a}\n---\nkind: ConfigMap\nmetadata: {name: b}\n";
        assert_eq!(
            read_secrets(text).unwrap_err().to_string(),
            "document 2: kind \"ConfigMap\" is not a Secret"
        );
    }

    #[test]
    fn one_sealed_secret_takes_exactly_one_and_never_echoes_what_it_read() {
        let one = "apiVersion: coffer.dev/v1alpha1\nkind: SealedSecret\nmetadata: {name: db, namespace: app}\nspec:\n  encryptedData: {password: AAAA}\n";
        let s = one_sealed_secret(&format!("# a comment\n---\n{one}")).unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("db"));
        let list = format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{}]}}",
            serde_json::to_string(&serde_saphyr::from_str::<serde_json::Value>(one).unwrap())
                .unwrap()
        );
        assert!(one_sealed_secret(&list).is_ok(), "a list of one");
        assert_eq!(
            one_sealed_secret(&format!("{one}---\n{one}")).unwrap_err(),
            "give exactly one SealedSecret, got 2 documents"
        );
        assert_eq!(
            one_sealed_secret("").unwrap_err(),
            "give exactly one SealedSecret, got 0 documents"
        );
        assert_eq!(
            one_sealed_secret("apiVersion: v1\nkind: Secret\nmetadata: {name: db}\n").unwrap_err(),
            "not a SealedSecret: kind and apiVersion are not those of a coffer.dev SealedSecret"
        );
        let broken = "apiVersion: coffer.dev/v1alpha1\nkind: SealedSecret\nspec:\n  encryptedData:\n    hunter2-secret: a\n    hunter2-secret: b\n";
        let e = one_sealed_secret(broken).unwrap_err();
        assert!(
            e.starts_with("not a SealedSecret: not valid YAML at line "),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }
}
