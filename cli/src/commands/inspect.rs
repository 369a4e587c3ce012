//! `coffer inspect`: what a SealedSecret holds, offline, without a key.

use std::collections::BTreeSet;
use std::path::PathBuf;

use coffer_format::envelope;

use coffer_cli::cluster::parse_recipients;
use coffer_cli::documents::{Doc, none_found, read_sealed};
use coffer_cli::error::{Failure, Result};
use coffer_cli::io::{read_file, read_inputs};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  coffer inspect sealed.yaml
  coffer inspect --recipients recipients.txt k8s/*.yaml   # flag values sealed to keys not in the file")]
pub(crate) struct InspectArgs {
    /// SealedSecret files; stdin when none or `-`.
    pub(crate) files: Vec<PathBuf>,
    /// Flag values sealed to no key of these recipients files.
    #[arg(long = "recipients", short = 'r', value_name = "FILE")]
    pub(crate) recipients: Vec<PathBuf>,
    /// Output format [default: table].
    #[arg(short = 'o', long = "format", value_enum)]
    pub(crate) format: Option<InspectFormat>,
}

#[derive(serde::Serialize)]
struct Item {
    key: String,
    scope: Option<String>,
    key_ids: Vec<String>,
    /// Kind of each named key (`x25519`, `mlkem768x25519`), in key id order.
    key_kinds: Vec<String>,
    recipients: usize,
    /// Whether every recipient is post-quantum: only then does the value
    /// stay secret against a quantum computer.
    post_quantum: Option<bool>,
    size_bucket: Option<usize>,
    problem: Option<String>,
}

#[derive(serde::Serialize)]
struct Report {
    file: String,
    document: usize,
    namespace: Option<String>,
    name: Option<String>,
    scopes: Vec<String>,
    items: Vec<Item>,
    problems: Vec<String>,
}

/// What `inspect` prints: a table for people, or JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum InspectFormat {
    Table,
    Json,
}

pub(crate) fn run(args: InspectArgs, format: InspectFormat) -> Result<()> {
    let known = known_ids(&args.recipients)?;
    let inputs = read_inputs(&args.files)?;
    let docs = read_sealed(&inputs, true)?;
    if docs.is_empty() {
        return Err(none_found(&inputs));
    }
    let reports: Vec<Report> = docs
        .into_iter()
        .map(|d| report(d, known.as_ref()))
        .collect();
    let any_problem = reports.iter().any(|r| !r.problems.is_empty());
    let text = match format {
        InspectFormat::Json => {
            serde_json::to_string_pretty(&reports).map_err(|e| Failure::new(1, e.to_string()))?
                + "\n"
        }
        InspectFormat::Table => human(&reports),
    };
    print!("{text}");
    if any_problem {
        return Err(Failure::refused("problems found (see above)"));
    }
    Ok(())
}

/// The key ids of the `-r` recipients files; `None` without any.
fn known_ids(recipients: &[PathBuf]) -> Result<Option<BTreeSet<String>>> {
    if recipients.is_empty() {
        return Ok(None);
    }
    let mut ids = BTreeSet::new();
    for f in recipients {
        let input = read_file(f)?;
        for k in parse_recipients(&input.name, &input.text)?.keys() {
            ids.insert(k.id().to_string());
        }
    }
    Ok(Some(ids))
}

/// What one SealedSecret holds, and its problems; with `known`, a value
/// sealed to none of those key ids is one.
fn report(d: Doc, known: Option<&BTreeSet<String>>) -> Report {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    let mut scopes = BTreeSet::new();
    for (key, value) in &d.sealed.spec.encrypted_data {
        let item = item(key, value, known);
        if let Some(scope) = &item.scope {
            scopes.insert(scope.clone());
        }
        if let Some(p) = &item.problem {
            problems.push(format!("item {key:?}: {p}"));
        }
        items.push(item);
    }
    if scopes.len() > 1 {
        problems.push(format!(
            "mixed scopes: {}",
            scopes.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if d.sealed.spec.encrypted_data.is_empty() {
        problems.push("no items".into());
    }
    // Templates are plain text: a mistyped item or a syntax error is
    // found here, before the controller reports TemplateFailed.
    if let Some(t) = &d.sealed.spec.template {
        let templates: Vec<(&str, &str)> = t
            .data
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let keys: Vec<&str> = d
            .sealed
            .spec
            .encrypted_data
            .keys()
            .map(String::as_str)
            .collect();
        if let Err(e) = coffer_core::template::check(&templates, &keys) {
            problems.push(e.to_string());
        }
    }
    Report {
        file: d.file,
        document: d.index,
        namespace: d.sealed.metadata.namespace.clone(),
        name: d.sealed.metadata.name.clone(),
        scopes: scopes.into_iter().collect(),
        items,
        problems,
    }
}

/// One sealed value, read without a key.
fn item(key: &str, value: &str, known: Option<&BTreeSet<String>>) -> Item {
    let env = match envelope::inspect(value) {
        Ok((env, _)) => env,
        Err(e) => {
            return Item {
                key: key.to_string(),
                scope: None,
                key_ids: vec![],
                key_kinds: vec![],
                recipients: 0,
                post_quantum: None,
                size_bucket: None,
                problem: Some(e.to_string()),
            };
        }
    };
    let ids: Vec<String> = env.key_ids.iter().map(|k| k.to_string()).collect();
    let problem = known.and_then(|known| {
        (!ids.iter().any(|i| known.contains(i))).then(|| {
            format!(
                "sealed only to key(s) {} that no given recipients file holds",
                ids.join(", ")
            )
        })
    });
    Item {
        key: key.to_string(),
        scope: Some(env.scope.to_string()),
        key_ids: ids,
        key_kinds: env.key_kinds.iter().map(|k| k.to_string()).collect(),
        recipients: env.recipient_stanzas,
        post_quantum: Some(env.post_quantum()),
        size_bucket: Some(env.size_bucket()),
        problem,
    }
}

fn human(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!(
            "{}: document {}: SealedSecret {}/{}\n  scope: {}\n",
            r.file,
            r.document,
            r.namespace.as_deref().unwrap_or("?"),
            r.name.as_deref().unwrap_or("?"),
            if r.scopes.is_empty() {
                "?".into()
            } else {
                r.scopes.join(", ")
            }
        ));
        let width = r
            .items
            .iter()
            .map(|i| i.key.len())
            .max()
            .unwrap_or(4)
            .max(4);
        out.push_str(&format!(
            "  {:<width$}  {:<16}  {:>10}  {:<6}  {}\n",
            "ITEM", "SIZE", "RECIPIENTS", "PQ", "KEY IDS"
        ));
        for i in &r.items {
            let size = i
                .size_bucket
                .map(|b| format!("<= {b} B"))
                .unwrap_or_else(|| "-".into());
            // "mixed": some recipients are post-quantum, so the value is
            // only as strong as X25519.
            let pq = match i.post_quantum {
                None => "-",
                Some(true) => "yes",
                Some(false) if i.key_kinds.iter().any(|k| k == "mlkem768x25519") => "mixed",
                Some(false) => "no",
            };
            out.push_str(&format!(
                "  {:<width$}  {:<16}  {:>10}  {:<6}  {}\n",
                i.key,
                size,
                i.recipients,
                pq,
                if i.key_ids.is_empty() {
                    "-".into()
                } else {
                    i.key_ids.join(",")
                }
            ));
        }
        for p in &r.problems {
            out.push_str(&format!("  problem: {p}\n"));
        }
    }
    out
}
