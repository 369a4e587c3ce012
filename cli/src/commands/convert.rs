//! `coffer convert`: bitnami sealed-secrets files rewritten in place as
//! Coffer SealedSecrets with the same scope, place and template. Through
//! the controller (`POST /v1/bitnami/convert`: plaintext never leaves the
//! cluster), or offline from a bitnami key backup for disaster recovery.
//! Comments, separators and every other document are kept byte for byte.

use std::path::PathBuf;

use coffer_cli::cluster::{Target, parse_recipients};
use coffer_cli::documents::{Document, Edit, InPlace, Rewrite};
use coffer_cli::error::{Failure, Result};
use coffer_cli::io::{files_under, read_file};
use coffer_core::SealedSecret;
use coffer_core::bitnami::{self, BitnamiKey};
use coffer_format::PublicKey;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  coffer convert k8s/                                   # through the controller (started with --bitnami)
  coffer convert --dry-run k8s/                          # list what would be converted
  coffer convert --bitnami-keys main.key -r clusters/prod.txt k8s/   # offline, from bitnami's key backup

Every bitnami.com/v1alpha1 SealedSecret becomes a coffer.dev/v1alpha1 SealedSecret of the
same name and namespace, sealed with the same scope (strict, namespace-wide -> namespace,
cluster-wide -> cluster) and the same template; comments and other documents are kept.")]
pub(crate) struct ConvertArgs {
    /// Files or directories (searched for *.yaml, *.yml, *.json); the current directory when none.
    paths: Vec<PathBuf>,
    /// Show what would be converted; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Offline: open the values with this bitnami key backup (`kubectl get secret -n kube-system
    /// -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`, or a PEM key) instead of asking
    /// the controller. Needs -r.
    #[arg(long, value_name = "FILE", requires = "recipients")]
    bitnami_keys: Option<PathBuf>,
    /// With --bitnami-keys: the recipients file(s) to seal to (repeatable: many clusters).
    #[arg(
        long = "recipients",
        short = 'r',
        value_name = "FILE",
        requires = "bitnami_keys"
    )]
    recipients: Vec<PathBuf>,
}

/// What convert rewrites: bitnami's SealedSecrets. A list holding one is
/// refused before anything changes.
const IN_PLACE: InPlace = InPlace {
    command: "convert",
    what: "bitnami SealedSecrets",
    edits: bitnami::is_bitnami_sealed_secret,
};

/// Where values are opened and sealed again.
enum Converter {
    Offline {
        keys: Vec<BitnamiKey>,
        recipients: Vec<PublicKey>,
    },
    Controller {
        client: Option<kube::Client>,
    },
}

impl Converter {
    /// Offline from `--bitnami-keys` and `-r`, else the controller (asked
    /// nothing in a dry run).
    async fn new(args: &ConvertArgs, target: &Target) -> Result<Converter> {
        let Some(path) = &args.bitnami_keys else {
            let client = if args.dry_run || target.controller_url.is_some() {
                None
            } else {
                Some(target.client().await?)
            };
            return Ok(Converter::Controller { client });
        };
        let input = read_file(path)?;
        let keys = bitnami::read_key_backup(&input.text)
            .map_err(|e| Failure::input(format!("{}: {e}", input.name)))?;
        for (from, k) in &keys {
            eprintln!(
                "bitnami key {} ({} bits) from {from}",
                k.short_id(),
                k.bits()
            );
        }
        let mut recipients = Vec::new();
        for f in &args.recipients {
            let input = read_file(f)?;
            recipients.extend(parse_recipients(&input.name, &input.text)?.keys());
        }
        Ok(Converter::Offline {
            keys: keys.into_iter().map(|(_, k)| k).collect(),
            recipients,
        })
    }

    async fn convert(
        &self,
        target: &Target,
        label: &str,
        doc: &bitnami::BitnamiSealedSecret,
    ) -> Result<SealedSecret> {
        match self {
            Converter::Offline { keys, recipients } => bitnami::convert(doc, keys, recipients)
                .map_err(|e| {
                    Failure::refused(format!("{label}: not converted ({}): {e}", e.reason())).hint(
                        "the file is unchanged; a value that does not open was sealed for another place, scope or key",
                    )
                }),
            Converter::Controller { client } => {
                let body = serde_json::to_vec(doc).map_err(|e| Failure::new(1, e.to_string()))?;
                let (code, text) = target
                    .post_with_retry(client.as_ref(), "/v1/bitnami/convert", body)
                    .await?;
                match code {
                    200 => {}
                    404 => {
                        return Err(Failure::cluster(format!(
                            "{label}: the controller does not convert: {}",
                            text.trim()
                        ))
                        .hint("start it with --bitnami (Helm: bitnami.enabled=true; kustomize: the component deploy/bitnami)"));
                    }
                    409 => {
                        return Err(Failure::refused(format!(
                            "{label}: the controller cannot open it: {}",
                            text.trim()
                        ))
                        .hint("import bitnami's keys first (`coffer keys import-bitnami`); a value sealed for another cluster, place or scope does not open"));
                    }
                    _ => {
                        return Err(Failure::cluster(format!(
                            "{label}: the controller refused to convert (HTTP {code}): {}",
                            text.trim()
                        )));
                    }
                }
                coffer_cli::cluster::sealed_reply(label, &text)
            }
        }
    }
}

pub(crate) async fn run(args: ConvertArgs, target: &Target) -> Result<()> {
    let paths = files_under(&args.paths)?;
    let converter = Converter::new(&args, target).await?;
    let files = Rewrite::read_all(&paths, &IN_PLACE)?;
    let (mut changed_files, mut converted) = (0usize, 0usize);
    for file in &files {
        let changed = file
            .rewrite(args.dry_run, async |doc| {
                let Some(bitnami) = read_bitnami(doc)? else {
                    return Ok(Edit::Keep);
                };
                converted += 1;
                if args.dry_run {
                    let (ns, name, scope) = bitnami.place();
                    println!(
                        "{}: would convert {ns}/{name} ({scope}, {} item(s))",
                        doc.label,
                        bitnami.spec.encrypted_data.len()
                    );
                    return Ok(Edit::WouldReplace);
                }
                let sealed = converter.convert(target, &doc.label, &bitnami).await?;
                Ok(Edit::Replace(Box::new(sealed)))
            })
            .await?;
        if changed {
            changed_files += 1;
            if !args.dry_run {
                eprintln!("converted {}", file.input.name);
            }
        }
    }
    let verb = if args.dry_run {
        "would convert"
    } else {
        "converted"
    };
    println!(
        "{verb} {converted} bitnami SealedSecret(s) in {changed_files} of {} file(s)",
        paths.len()
    );
    Ok(())
}

/// The bitnami SealedSecret `doc` is, if it is one. One without a
/// namespace is refused: its place is part of what it is sealed for.
fn read_bitnami(doc: &Document<'_>) -> Result<Option<bitnami::BitnamiSealedSecret>> {
    let bitnami = match doc.value().map(bitnami::read_sealed_secret) {
        Some(Ok(Some(b))) => b,
        Some(Err(e)) => return Err(Failure::input(format!("{}: {e}", doc.label))),
        _ => return Ok(None),
    };
    let (ns, name, _) = bitnami.place();
    if ns.is_empty() {
        return Err(Failure::input(format!(
            "{}: the bitnami SealedSecret {name} has no metadata.namespace",
            doc.label
        ))
        .hint("add the namespace it is applied to, then run convert again"));
    }
    Ok(Some(bitnami))
}
