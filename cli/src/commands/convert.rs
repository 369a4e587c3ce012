//! `coffer convert`: bitnami sealed-secrets files rewritten in place as
//! Coffer SealedSecrets with the same scope, place and template. Through
//! the controller (`POST /v1/bitnami/convert`: plaintext never leaves the
//! cluster), or offline from a bitnami key backup for disaster recovery.
//! Comments, separators and every other document are kept byte for byte.

use std::path::PathBuf;

use coffer_core::SealedSecret;
use coffer_core::bitnami::{self, BitnamiKey};
use coffer_format::PublicKey;

use coffer_cli::cluster::{Target, parse_recipients};
use coffer_cli::documents::{chunks_of, value_of};
use coffer_cli::error::{Failure, Result};
use coffer_cli::io::{Format, read_file, render, write_atomic};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  coffer convert k8s/                                   # through the controller (started with --bitnami)
  coffer convert --dry-run k8s/                          # list what would be converted
  coffer convert --bitnami-keys main.key -r clusters/prod.txt k8s/   # offline, from bitnami's key backup

Every bitnami.com/v1alpha1 SealedSecret becomes a coffer.dev/v1alpha1 SealedSecret of the
same name and namespace, sealed with the same scope (strict, namespace-wide -> namespace,
cluster-wide -> cluster) and the same template; comments and other documents are kept.")]
pub struct ConvertArgs {
    /// Files or directories (searched for *.yaml, *.yml, *.json); the current directory when none.
    pub paths: Vec<PathBuf>,
    /// Show what would be converted; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Offline: open the values with this bitnami key backup (`kubectl get secret -n kube-system
    /// -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`, or a PEM key) instead of asking
    /// the controller. Needs -r.
    #[arg(long, value_name = "FILE", requires = "recipients")]
    pub bitnami_keys: Option<PathBuf>,
    /// With --bitnami-keys: the recipients file(s) to seal to (repeatable: many clusters).
    #[arg(
        long = "recipients",
        short = 'r',
        value_name = "FILE",
        requires = "bitnami_keys"
    )]
    pub recipients: Vec<PathBuf>,
}

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
    async fn convert(
        &self,
        target: &Target,
        label: &str,
        doc: &bitnami::SealedSecret,
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

pub async fn run(args: ConvertArgs, target: &Target) -> Result<()> {
    let files = coffer_cli::io::files_under(&args.paths)?;
    let converter = match &args.bitnami_keys {
        Some(path) => {
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
            Converter::Offline {
                keys: keys.into_iter().map(|(_, k)| k).collect(),
                recipients,
            }
        }
        None if args.dry_run => Converter::Controller { client: None },
        None => Converter::Controller {
            client: if target.controller_url.is_some() {
                None
            } else {
                Some(target.client().await?)
            },
        },
    };

    let (mut changed_files, mut converted) = (0usize, 0usize);
    for path in &files {
        let input = read_file(path)?;
        let (json, chunks) = chunks_of(&input.text);
        let mut out = String::new();
        let mut file_changed = false;
        for (i, (sep, c)) in chunks.iter().enumerate() {
            out.push_str(sep);
            out.push_str(&c.prefix);
            let label = format!("{}: document {}", input.name, i + 1);
            let value = value_of(&c.body);
            let is_list = value
                .as_ref()
                .and_then(|v| v.get("kind"))
                .and_then(|k| k.as_str())
                == Some("List");
            if is_list
                && value
                    .as_ref()
                    .and_then(|v| v.get("items"))
                    .and_then(|i| i.as_array())
                    .is_some_and(|items| items.iter().any(bitnami::is_bitnami_sealed_secret))
            {
                return Err(Failure::input(format!(
                    "{label}: holds bitnami SealedSecrets inside a kind: List, which convert does not rewrite"
                ))
                .hint("split the List into one document per SealedSecret (separated by ---), then run convert again"));
            }
            let doc = match value.map(bitnami::read_sealed_secret) {
                Some(Ok(Some(doc))) => doc,
                Some(Err(e)) => return Err(Failure::input(format!("{label}: {e}"))),
                _ => {
                    out.push_str(&c.body);
                    out.push_str(&c.suffix);
                    continue;
                }
            };
            let (ns, name, scope) = doc.place();
            if ns.is_empty() {
                return Err(Failure::input(format!(
                    "{label}: the bitnami SealedSecret {name} has no metadata.namespace"
                ))
                .hint("add the namespace it is applied to, then run convert again"));
            }
            file_changed = true;
            converted += 1;
            if args.dry_run {
                println!(
                    "{label}: would convert {ns}/{name} ({scope}, {} item(s))",
                    doc.spec.encrypted_data.len()
                );
                out.push_str(&c.body);
                out.push_str(&c.suffix);
                continue;
            }
            let sealed = converter.convert(target, &label, &doc).await?;
            let format = if json { Format::Json } else { Format::Yaml };
            out.push_str(&render(&[sealed], format)?);
            out.push_str(&c.suffix);
        }
        if file_changed {
            changed_files += 1;
            if !args.dry_run {
                write_atomic(path, out.as_bytes(), false)?;
                eprintln!("converted {}", input.name);
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
        files.len()
    );
    Ok(())
}
