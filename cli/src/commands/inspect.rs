//! `coffer inspect`: what a SealedSecret holds, offline, without a key.

use std::collections::BTreeSet;
use std::path::PathBuf;

use coffer_core::inspect::SealedReport;

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
struct Report {
    file: String,
    document: usize,
    #[serde(flatten)]
    sealed: SealedReport,
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
    let any_problem = reports.iter().any(|r| !r.sealed.problems.is_empty());
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

/// What one SealedSecret holds, and its problems (the same report the web
/// page shows).
fn report(d: Doc, known: Option<&BTreeSet<String>>) -> Report {
    let mut sealed = coffer_core::inspect::report(&d.sealed, known);
    sealed
        .problems
        .extend(coffer_core::inspect::template_problem(&d.sealed));
    Report {
        sealed,
        file: d.file,
        document: d.index,
    }
}

fn human(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!(
            "{}: document {}: SealedSecret {}/{}\n  scope: {}\n",
            r.file,
            r.document,
            r.sealed.namespace.as_deref().unwrap_or("?"),
            r.sealed.name.as_deref().unwrap_or("?"),
            if r.sealed.scopes.is_empty() {
                "?".into()
            } else {
                r.sealed.scopes.join(", ")
            }
        ));
        let width = r
            .sealed
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
        for i in &r.sealed.items {
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
        for p in &r.sealed.problems {
            out.push_str(&format!("  problem: {p}\n"));
        }
    }
    out
}
