//! `coffer rotate`: a new key, then every value of a repository
//! re-encrypted to it in place by the controller (through the API server's
//! service proxy), so no plaintext leaves the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use coffer_core::SealedSecret;
use coffer_core::api::read_sealed_secret;

use coffer_format::envelope;

use crate::cluster::{Target, parse_recipients};
use crate::documents::{chunks_of, is_sealed, read_sealed, split_yaml};
use crate::error::{Failure, Result};
use crate::io::{read_file, write_atomic};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  coffer rotate k8s/                       # new key, then re-encrypt every SealedSecret under k8s/
  coffer rotate --dry-run k8s/             # show what would change
  coffer rotate --no-new-key k8s/          # only re-encrypt to the current active key
  coffer rotate -r other-cluster.txt k8s/  # keep values that also open in another cluster")]
pub struct RotateArgs {
    /// Files or directories (searched for *.yaml, *.yml, *.json); the current directory when none.
    pub paths: Vec<PathBuf>,
    /// Show what would change; write nothing and request no key.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not request a new key; re-encrypt to the active one.
    #[arg(long)]
    pub no_new_key: bool,
    /// Recipients of other clusters some values are also sealed to: they are kept.
    #[arg(long = "recipients", short = 'r', value_name = "FILE")]
    pub recipients: Vec<PathBuf>,
    /// How long to wait for the new key to become active.
    #[arg(long, default_value = "120s", value_parser = crate::seal::parse_period)]
    pub timeout: Duration,
}

/// Lists (`kind: List`, `SealedSecretList`) holding SealedSecrets are not rewritten in place
/// (their items have no text of their own to keep); refuse before anything
/// changes, so the summary of key ids still referenced is never wrong.
fn refuse_lists(files: &[PathBuf]) -> Result<()> {
    for f in files {
        let input = read_file(f)?;
        if let Ok(docs) = read_sealed(std::slice::from_ref(&input), true) {
            let listed = split_yaml(&input.text).iter().any(|(_, c)| {
                let v: Option<serde_json::Value> = serde_saphyr::from_str(&c.body).ok();
                v.is_some_and(|v| crate::documents::is_list(&v))
            });
            if listed && !docs.is_empty() {
                return Err(Failure::input(format!(
                    "{}: holds SealedSecrets inside a list (kind: List or SealedSecretList), which rotate does not rewrite",
                    input.name
                ))
                .hint("split the List into one document per SealedSecret (separated by ---), then run rotate again"));
            }
        }
    }
    Ok(())
}

fn active_key_id(text: &str) -> Result<coffer_format::KeyId> {
    let f = parse_recipients("the cluster's recipients file", text)?;
    // parse_recipients refuses a file without entries.
    f.entries
        .first()
        .map(|e| e.key.id())
        .ok_or_else(|| Failure::cluster("the cluster's recipients file lists no key"))
}

pub async fn rotate(args: RotateArgs, target: &Target) -> Result<()> {
    let files = crate::io::files_under(&args.paths)?;
    refuse_lists(&files)?;
    let mut extra = Vec::new();
    for f in &args.recipients {
        let input = read_file(f)?;
        for k in parse_recipients(&input.name, &input.text)?.keys() {
            extra.push(k.to_string());
        }
    }
    let client = target.client().await?;
    let before = active_key_id(&target.recipients_text().await?)?;
    // A dry run requests no key; it shows what a rotation would touch:
    // every value, unless --no-new-key.
    let pretend_new = args.dry_run && !args.no_new_key;
    let active = if args.dry_run || args.no_new_key {
        before
    } else {
        let old = crate::key_admin::request_rotation(target, &before).await?;
        eprintln!(
            "requested a new key to replace {}; waiting for it to become active",
            old.short()
        );
        let deadline = tokio::time::Instant::now() + args.timeout;
        loop {
            let now = active_key_id(&target.recipients_text().await?)?;
            if now != old {
                eprintln!("new active key: {}", now.short());
                break now;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Failure::cluster(format!(
                    "the controller did not publish a new key within {}",
                    humantime::format_duration(args.timeout)
                ))
                .hint("check the controller's logs and that it runs as leader"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };

    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(files.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let (mut changed_files, mut values) = (0usize, 0usize);
    let mut referenced: BTreeMap<coffer_format::KeyId, usize> = BTreeMap::new();
    for path in &files {
        let input = read_file(path)?;
        let (json, chunks) = chunks_of(&input.text);
        let mut out = String::new();
        let mut file_changed = false;
        for (i, (sep, c)) in chunks.iter().enumerate() {
            out.push_str(sep);
            out.push_str(&c.prefix);
            if c.body.trim().is_empty() || !is_sealed(&c.body) {
                out.push_str(&c.body);
                out.push_str(&c.suffix);
                continue;
            }
            let label = format!("{}: document {}", input.name, i + 1);
            let sealed = crate::documents::read_one(&label, &c.body)?;
            let stale: Vec<&String> = sealed
                .spec
                .encrypted_data
                .iter()
                .filter(|(_, v)| {
                    pretend_new
                        || envelope::inspect(v)
                            .map(|(e, _)| !e.key_ids.contains(&active))
                            .unwrap_or(true)
                })
                .map(|(k, _)| k)
                .collect();
            if stale.is_empty() {
                count_ids(&sealed, &mut referenced);
                out.push_str(&c.body);
                out.push_str(&c.suffix);
                continue;
            }
            if args.dry_run {
                println!("{label}: would re-encrypt {} value(s)", stale.len());
                values += stale.len();
                file_changed = true;
                count_ids(&sealed, &mut referenced);
                out.push_str(&c.body);
                out.push_str(&c.suffix);
                continue;
            }
            let body = serde_json::to_vec(
                &serde_json::json!({"sealedSecret": sealed, "additionalRecipients": extra}),
            )
            .map_err(|e| Failure::new(1, e.to_string()))?;
            let (code, text) = target
                .post_with_retry(Some(&client), "/v1/reencrypt", body)
                .await?;
            if code != 200 {
                return Err(Failure::cluster(format!("{label}: the controller refused to re-encrypt (HTTP {code}): {}", text.trim()))
                    .hint("nothing was written for this file; after fixing it, run `coffer rotate --no-new-key` to finish without another key"));
            }
            let reply = sealed_reply(&label, &text)?;
            let mut updated = sealed.clone();
            for k in &stale {
                if let Some(v) = reply.spec.encrypted_data.get(*k) {
                    updated.spec.encrypted_data.insert((*k).clone(), v.clone());
                    values += 1;
                }
            }
            count_ids(&updated, &mut referenced);
            let rendered = if json {
                crate::io::render(&[updated], crate::io::Format::Json)?
            } else {
                crate::io::render(&[updated], crate::io::Format::Yaml)?
            };
            out.push_str(&rendered);
            out.push_str(&c.suffix);
            file_changed = true;
        }
        if file_changed {
            changed_files += 1;
            if !args.dry_run {
                write_atomic(path, out.as_bytes(), false)?;
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        } else if file_changed && !args.dry_run {
            eprintln!("re-encrypted {}", input.name);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let verb = if args.dry_run {
        "would change"
    } else {
        "changed"
    };
    let to = if pretend_new {
        "a new key".to_string()
    } else {
        format!("key {}", active.short())
    };
    println!(
        "{verb} {changed_files} of {} file(s); {values} value(s) re-encrypted to {to}",
        files.len()
    );
    let others: BTreeSet<_> = referenced.keys().filter(|k| **k != active).collect();
    if referenced.is_empty() {
        println!("no SealedSecret found");
    } else {
        println!("key ids still referenced:");
        for (k, n) in &referenced {
            println!(
                "  {}  {n} value(s){}",
                k.short(),
                if *k == active { "  (active)" } else { "" }
            );
        }
        if others.is_empty() && !args.dry_run {
            println!(
                "no value needs an older key of this cluster any more: retire them with `coffer keys retire ID`"
            );
        }
    }
    Ok(())
}

fn count_ids(s: &SealedSecret, into: &mut BTreeMap<coffer_format::KeyId, usize>) {
    for v in s.spec.encrypted_data.values() {
        if let Ok((e, _)) = envelope::inspect(v) {
            for k in e.key_ids {
                *into.entry(k).or_default() += 1;
            }
        }
    }
}

/// The SealedSecret a controller endpoint answered with (`/v1/reencrypt`,
/// `/v1/bitnami/convert`), or one error naming the file.
pub(crate) fn sealed_reply(label: &str, text: &str) -> Result<SealedSecret> {
    serde_json::from_str(text)
        .map_err(|e| e.to_string())
        .and_then(|v| match read_sealed_secret(v) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err("not a SealedSecret".to_string()),
            Err(e) => Err(e.to_string()),
        })
        .map_err(|e| Failure::cluster(format!("{label}: bad reply from the controller: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
