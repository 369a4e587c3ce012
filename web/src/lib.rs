//! coffer-web: Coffer's web page. This crate, compiled to WebAssembly
//! (`web/build`), seals in the browser with the same functions as `coffer
//! seal`: [`seal`] reads Secret manifests with `coffer_core::manifest`,
//! seals them with `coffer_core::transform::seal_secret` (envelope, binding,
//! padding and recipient kinds from `coffer-format`) and renders them with
//! `coffer_core::manifest::render`. [`inspect`] is `coffer inspect`'s
//! report. The page (`web/page/`) calls these through `wasm-bindgen`
//! (`src/bindings.rs`); plaintext never leaves the page.
//!
//! Natively, the crate also carries the page's files ([`assets`]) for the
//! controller's `/ui` and `coffer web export`.

#![warn(missing_docs)]

#[cfg(not(target_arch = "wasm32"))]
pub mod assets;
#[cfg(target_arch = "wasm32")]
mod bindings;

use std::collections::{BTreeMap, BTreeSet};

use coffer_core::SealedSecret;
use coffer_core::api::read_sealed_secret;
use coffer_core::inspect::SealedReport;
use coffer_core::manifest::{documents, read_secrets, render};
use coffer_core::transform::{kept_scopes, merge_into, seal_secret};
use coffer_format::{PublicKey, RecipientsFile, Scope};
use zeroize::Zeroize;

/// The namespace `coffer seal` uses when neither the manifest nor the
/// command line names one, as kubectl does.
const DEFAULT_NAMESPACE: &str = "default";

/// A recipients file as the page holds it: its name (a file name, or what
/// the page calls the controller's keys) and its text.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Named {
    /// What messages call it.
    pub name: String,
    /// The recipients file, or one `age1…` recipient.
    pub text: String,
}

/// What the page asks to seal; JSON from the page.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealRequest {
    /// Secret manifests, YAML or JSON (the plaintext: zeroized on drop).
    pub secret: String,
    /// The namespace asked for, as `-n`: when given, a manifest naming
    /// another is refused.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `strict`, `namespace` or `cluster`, as `--scope`; unset, strict (or,
    /// when merging, the scope of the values kept).
    #[serde(default)]
    pub scope: Option<String>,
    /// Every recipients file to seal to, as `-r a.txt -r b.txt`.
    pub recipients: Vec<Named>,
    /// An existing SealedSecret to add the items to, as `--merge-into`.
    #[serde(default)]
    pub merge_into: Option<String>,
    /// JSON output instead of YAML (a merge keeps the existing file's).
    #[serde(default)]
    pub json: bool,
}

impl Drop for SealRequest {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl std::fmt::Debug for SealRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealRequest")
            .field("secret", &"<redacted>")
            .field("namespace", &self.namespace)
            .field("scope", &self.scope)
            .field("merge_into", &self.merge_into.is_some())
            .finish_non_exhaustive()
    }
}

/// What sealing gave.
#[derive(Debug, serde::Serialize)]
pub struct Sealed {
    /// The SealedSecret(s), YAML or JSON, as `coffer seal` prints them.
    pub output: String,
    /// `namespace/name` of each SealedSecret, in order.
    pub sealed: Vec<String>,
    /// What the CLI says on stderr as `note:`.
    pub notes: Vec<String>,
    /// What the CLI says on stderr as `warning:`.
    pub warnings: Vec<String>,
    /// The key ids sealed to.
    pub key_ids: Vec<String>,
}

/// Seals the request's Secret(s) as `coffer seal -r … [-n …] [--scope …]
/// [--merge-into …]` does. Errors are for people and never hold a value.
pub fn seal(req: &SealRequest) -> Result<Sealed, String> {
    let manifests = read_secrets(&req.secret).map_err(|e| format!("the Secret: {e}"))?;
    if manifests.is_empty() {
        return Err("the Secret: no Secret found; paste a Secret manifest (kind: Secret)".into());
    }
    for m in &manifests {
        if m.data.is_empty() {
            return Err(format!(
                "the Secret: document {} ({}): the Secret has no data or stringData; there is nothing to seal",
                m.index,
                m.metadata.name.as_deref().unwrap_or_default()
            ));
        }
    }
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    let (ns, explicit) = namespace(req, &manifests, &mut notes);
    let asked: Option<Scope> = match req.scope.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse()?),
        None => None,
    };
    let existing = match &req.merge_into {
        Some(text) if !text.trim().is_empty() => {
            if manifests.len() != 1 {
                return Err(format!(
                    "adding to a SealedSecret takes exactly one Secret, got {}",
                    manifests.len()
                ));
            }
            Some(read_one_sealed(text)?)
        }
        _ => None,
    };
    let scope = match &existing {
        Some(existing) => merge_scope(existing, &manifests[0], asked, &mut notes)?,
        None => asked.unwrap_or_default(),
    };
    let keys = recipients(&req.recipients)?;
    if let Some(w) = mixed_warning(&keys) {
        warnings.push(w);
    }
    let mut sealed = Vec::new();
    for m in &manifests {
        sealed.push(seal_secret(m, Some(&ns), explicit, scope, &keys).map_err(|e| e.to_string())?);
    }
    let names = |s: &[SealedSecret]| -> Vec<String> {
        s.iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect()
    };
    let key_ids = keys.iter().map(|k| k.id().to_string()).collect();
    if let (Some(existing), Some(text)) = (existing, &req.merge_into) {
        let update = &sealed[0];
        if existing.metadata.name != update.metadata.name
            || existing.metadata.namespace != update.metadata.namespace
        {
            return Err(format!(
                "the SealedSecret is {}/{}, but the Secret is {}/{}; add to the SealedSecret of the same name and namespace",
                existing.metadata.namespace.as_deref().unwrap_or("?"),
                existing.metadata.name.as_deref().unwrap_or("?"),
                update.metadata.namespace.as_deref().unwrap_or("?"),
                update.metadata.name.as_deref().unwrap_or("?"),
            ));
        }
        let merged = merge_into(&existing, update);
        let json = text.trim_start().starts_with('{');
        return Ok(Sealed {
            sealed: names(std::slice::from_ref(&merged)),
            output: render(&[merged], json)?,
            notes,
            warnings,
            key_ids,
        });
    }
    Ok(Sealed {
        output: render(&sealed, req.json)?,
        sealed: names(&sealed),
        notes,
        warnings,
        key_ids,
    })
}

/// The namespace asked for (explicit, as `-n`), else `default` with the
/// CLI's note when a manifest names none.
fn namespace(
    req: &SealRequest,
    manifests: &[coffer_core::manifest::SecretManifest],
    notes: &mut Vec<String>,
) -> (String, bool) {
    match req
        .namespace
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        Some(n) => (n.to_string(), true),
        None => {
            if manifests.iter().any(|m| m.metadata.namespace.is_none()) {
                notes.push(format!(
                    "no namespace in the manifest or the form; using namespace \"{DEFAULT_NAMESPACE}\""
                ));
            }
            (DEFAULT_NAMESPACE.to_string(), false)
        }
    }
}

/// `--merge-into`'s scope: the scope of the values kept, so that one
/// SealedSecret never mixes scopes (as `coffer seal --merge-into`).
fn merge_scope(
    existing: &SealedSecret,
    update: &coffer_core::manifest::SecretManifest,
    asked: Option<Scope>,
    notes: &mut Vec<String>,
) -> Result<Scope, String> {
    if existing.metadata.name != update.metadata.name {
        // Another SealedSecret: refused once the namespace is known.
        return Ok(asked.unwrap_or_default());
    }
    let kept = kept_scopes(existing, |item| update.data.contains_key(item));
    let listed = |kept: &[(Scope, Vec<&str>)]| {
        kept.iter()
            .map(|(s, items)| format!("{} with scope {s}", items.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match (&kept[..], asked) {
        ([], asked) => Ok(asked.unwrap_or_default()),
        ([(theirs, _)], None) => {
            if *theirs != Scope::default() {
                notes.push(format!(
                    "its other values are sealed with scope {theirs}; sealing the given items with scope {theirs} too"
                ));
            }
            Ok(*theirs)
        }
        ([(theirs, _)], Some(asked)) if *theirs == asked => Ok(asked),
        ([_], Some(asked)) => Err(format!(
            "the values the SealedSecret keeps ({}) would stay as they are, but scope {asked} was chosen for the new items: \
             one SealedSecret would mix scopes; choose no scope to use theirs, or give every item to re-seal them all",
            listed(&kept)
        )),
        (_, _) => Err(format!(
            "the SealedSecret's values already mix scopes ({}); give every item of the Secret to re-seal them all with one scope",
            listed(&kept)
        )),
    }
}

/// The warning `coffer seal` gives when X25519 and post-quantum recipients
/// are mixed: such values are only as strong as X25519.
fn mixed_warning(keys: &[PublicKey]) -> Option<String> {
    let pq = keys.iter().filter(|k| k.kind().is_post_quantum()).count();
    (pq > 0 && pq < keys.len()).then(|| {
        format!(
            "sealing to {pq} post-quantum (mlkem768x25519) and {} X25519 recipient(s): these values are not \
             protected against a quantum computer, since breaking X25519 opens them",
            keys.len() - pq
        )
    })
}

/// Every key of the recipients files, each once, in order.
fn recipients(files: &[Named]) -> Result<Vec<PublicKey>, String> {
    if files.is_empty() {
        return Err(
            "no recipients: load the controller's keys or add a recipients file".to_string(),
        );
    }
    let mut keys: Vec<PublicKey> = Vec::new();
    for f in files {
        for k in parse(f)?.keys() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    Ok(keys)
}

fn parse(f: &Named) -> Result<RecipientsFile, String> {
    RecipientsFile::parse(&f.text).map_err(|e| format!("{}: {e}", f.name))
}

/// One SealedSecret, YAML or JSON.
fn read_one_sealed(text: &str) -> Result<SealedSecret, String> {
    coffer_core::manifest::one_sealed_secret(text).map_err(|e| format!("the SealedSecret: {e}"))
}

/// One key of a recipients file, for the page.
#[derive(Debug, serde::Serialize)]
pub struct KeyInfo {
    /// The full key id.
    pub id: String,
    /// `x25519` or `mlkem768x25519`.
    pub kind: String,
    /// The cluster its comment names.
    pub cluster: Option<String>,
    /// When its comment says it was created (RFC 3339).
    pub created: Option<String>,
}

/// The keys of one recipients file; an error names what is wrong with it.
pub fn recipients_info(file: &Named) -> Result<Vec<KeyInfo>, String> {
    Ok(parse(file)?
        .entries
        .iter()
        .map(|e| KeyInfo {
            id: e.key.id().to_string(),
            kind: e.key.kind().to_string(),
            cluster: e.cluster.clone(),
            created: e.created.map(|t| t.to_string()),
        })
        .collect())
}

/// What the page asks to inspect.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectRequest {
    /// SealedSecret(s), YAML or JSON.
    pub text: String,
    /// Recipients files: a value sealed to none of their keys is a problem,
    /// and each item says which of them it is sealed to.
    #[serde(default)]
    pub recipients: Vec<Named>,
}

/// What inspecting gave.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    /// Each SealedSecret's report (`coffer inspect -o json`, without file).
    pub documents: Vec<SealedReport>,
    /// For each key id of the given recipients files, the files holding it.
    pub key_files: BTreeMap<String, Vec<String>>,
    /// Problems of the text as a whole (as `coffer check` reports them).
    pub problems: Vec<String>,
    /// What the page does not check that `coffer inspect` does.
    pub notes: Vec<String>,
}

/// `coffer inspect [-r …]` of a pasted text, plus the whole-text checks of
/// `coffer check` that apply to it.
pub fn inspect(req: &InspectRequest) -> Result<Inspection, String> {
    let mut problems = Vec::new();
    if req.text.contains("AGE-SECRET-KEY-") {
        problems.push(
            "the text holds an age private key (AGE-SECRET-KEY-…): never commit it, and treat the key as leaked if it was"
                .to_string(),
        );
    }
    let mut key_files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &req.recipients {
        for k in parse(f)?.keys() {
            let files = key_files.entry(k.id().to_string()).or_default();
            if !files.contains(&f.name) {
                files.push(f.name.clone());
            }
        }
    }
    let known: BTreeSet<String> = key_files.keys().cloned().collect();
    let mut reports = Vec::new();
    let mut notes = Vec::new();
    for (i, doc) in documents(&req.text)?.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        match read_sealed_secret(doc.clone()) {
            Ok(Some(s)) => {
                if s.spec.template.as_ref().is_some_and(|t| !t.data.is_empty()) {
                    notes.push(format!(
                        "document {}: its templates (spec.template.data) are not checked here; `coffer inspect` checks them",
                        i + 1
                    ));
                }
                reports.push(coffer_core::inspect::report(
                    &s,
                    (!req.recipients.is_empty()).then_some(&known),
                ));
            }
            Ok(None) if kind == "Secret" => problems.push(format!(
                "document {}: a plain Secret: its values are not sealed; seal it instead of committing it",
                i + 1
            )),
            Ok(None) => problems.push(format!(
                "document {}: kind {kind:?} is not a coffer.dev SealedSecret",
                i + 1
            )),
            Err(e) => problems.push(format!("document {}: {e}", i + 1)),
        }
    }
    if reports.is_empty() && problems.is_empty() {
        problems.push("no SealedSecret found".into());
    }
    Ok(Inspection {
        documents: reports,
        key_files,
        problems,
        notes,
    })
}

#[cfg(test)]
mod tests;
