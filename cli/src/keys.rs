//! `coffer keys`: the key ring through the Kubernetes API (key admins only,
//! by RBAC on Secrets in the controller's namespace).

use std::path::PathBuf;

use coffer_core::api::ring::*;
use coffer_core::backup::{self, BackupEntry};
use coffer_core::{PublicKey, SecretKey};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

use crate::cluster::Target;
use crate::error::{Failure, Result};
use crate::io::{emit, write_atomic};
use crate::recover::load_keys;

#[derive(clap::Subcommand, Debug)]
pub enum KeysCmd {
    /// List the sealing keys: id, state, creation time.
    #[command(after_help = "Example:\n  coffer keys list")]
    List,
    /// Retire a key: values sealed only to it stop opening. Re-encrypt first (`coffer rotate`).
    #[command(after_help = "Example:\n  coffer keys retire 3f2a9c0d11e4b7a5")]
    Retire {
        /// Key id (16 hex digits).
        id: String,
    },
    /// Write the whole key ring, age-encrypted to an admin's recipient. Never plaintext on disk.
    #[command(after_help = "Example:\n  coffer keys backup --to age1… -w coffer-keys.age")]
    Backup {
        /// Admin age recipient(s) (age1…) able to open the backup.
        #[arg(long, required = true, value_name = "RECIPIENT")]
        to: Vec<String>,
        /// Write here (atomically, mode 0600) instead of stdout.
        #[arg(short = 'w', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Restore keys from a backup into the cluster (existing keys are left as they are).
    #[command(after_help = "Example:\n  coffer keys restore coffer-keys.age --identity admin.txt")]
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The admin identity that opens it.
        #[arg(long, short = 'i', required = true, value_name = "FILE")]
        identity: Vec<PathBuf>,
    },
}

async fn key_secrets(target: &Target) -> Result<(Api<Secret>, Vec<Secret>)> {
    let client = target.client().await?;
    let api: Api<Secret> = Api::namespaced(client, &target.controller_namespace);
    let list = api
        .list(&ListParams::default().labels(KEY_ID_LABEL))
        .await?;
    let mut items: Vec<Secret> = list
        .items
        .into_iter()
        .filter(|s| s.type_.as_deref() == Some(KEY_SECRET_TYPE))
        .collect();
    items.sort_by_key(|s| std::cmp::Reverse(created(s)));
    Ok((api, items))
}

fn created(s: &Secret) -> Option<jiff::Timestamp> {
    s.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CREATED_ANNOTATION))
        .and_then(|t| t.parse().ok())
        .or_else(|| s.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn retired(s: &Secret) -> bool {
    s.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(KEY_STATE_LABEL))
        .map(String::as_str)
        == Some("retired")
}

fn key_id(s: &Secret) -> String {
    s.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(KEY_ID_LABEL))
        .cloned()
        .unwrap_or_default()
}

fn wipe_all(items: &mut [Secret]) {
    for s in items {
        coffer_core::transform::wipe(s);
    }
}

pub async fn run(cmd: KeysCmd, target: &Target) -> Result<()> {
    match cmd {
        KeysCmd::List => {
            let (_, mut items) = key_secrets(target).await?;
            let active = items.iter().find(|s| !retired(s)).map(key_id);
            let mut out = format!(
                "{:<16}  {:<8}  {:<25}  SECRET\n",
                "KEY ID", "STATE", "CREATED"
            );
            for s in &items {
                let id = key_id(s);
                let state = if retired(s) {
                    "retired"
                } else if Some(&id) == active.as_ref() {
                    "active"
                } else {
                    "usable"
                };
                out.push_str(&format!(
                    "{:<16}  {:<8}  {:<25}  {}\n",
                    id,
                    state,
                    created(s)
                        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or("")
                ));
            }
            wipe_all(&mut items);
            emit(None, &out)
        }
        KeysCmd::Retire { id } => {
            let (api, mut items) = key_secrets(target).await?;
            let usable: Vec<String> = items.iter().filter(|s| !retired(s)).map(key_id).collect();
            let found = items
                .iter()
                .find(|s| key_id(s) == id)
                .and_then(|s| s.metadata.name.clone());
            wipe_all(&mut items);
            let Some(name) = found else {
                return Err(Failure::input(format!(
                    "no key {id} in namespace {}",
                    target.controller_namespace
                ))
                .hint("list the keys with `coffer keys list`"));
            };
            if usable.first() == Some(&id) {
                eprintln!(
                    "warning: {id} is the active key; the controller will make the next usable key active, or create a new one"
                );
            }
            let patch = serde_json::json!({"metadata": {"labels": {KEY_STATE_LABEL: "retired"}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            eprintln!("retired key {id}: values sealed only to it no longer open");
            Ok(())
        }
        KeysCmd::Backup { to, output } => {
            let admins: Vec<PublicKey> = to
                .iter()
                .map(|r| {
                    r.parse()
                        .map_err(|e| Failure::usage(format!("--to {r}: {e}")))
                })
                .collect::<Result<_>>()?;
            let (_, mut items) = key_secrets(target).await?;
            let mut entries = Vec::new();
            for s in &items {
                let Some(data) = s.data.as_ref().and_then(|d| d.get(IDENTITY_KEY)) else {
                    continue;
                };
                let Ok(text) = std::str::from_utf8(&data.0) else {
                    continue;
                };
                match SecretKey::parse(text) {
                    Ok(key) => entries.push(BackupEntry {
                        key,
                        created: created(s),
                        retired: retired(s),
                    }),
                    Err(_) => eprintln!(
                        "warning: key Secret {} holds no valid identity; skipped",
                        s.metadata.name.as_deref().unwrap_or("?")
                    ),
                }
            }
            wipe_all(&mut items);
            if entries.is_empty() {
                return Err(Failure::cluster(format!(
                    "no sealing key found in namespace {}",
                    target.controller_namespace
                )));
            }
            let plain = backup::render(&entries, jiff::Timestamp::now());
            let armored =
                backup::encrypt(&plain, &admins).map_err(|e| Failure::new(1, e.to_string()))?;
            match &output {
                Some(p) if p.as_os_str() != "-" => write_atomic(p, armored.as_bytes(), true)?,
                _ => emit(None, &armored)?,
            }
            eprintln!(
                "backed up {} key(s), encrypted to {} recipient(s)",
                entries.len(),
                admins.len()
            );
            Ok(())
        }
        KeysCmd::Restore { file, identity } => {
            let admins = load_keys(&identity, &[])?;
            let data = std::fs::read(&file).map_err(|e| {
                Failure::input(format!(
                    "{}: cannot read: {}",
                    file.display(),
                    crate::io::io_reason(&e)
                ))
            })?;
            let plain = backup::decrypt(&data, &admins)
                .map_err(|e| Failure::input(format!("{}: {e}", file.display())))?;
            let entries = backup::parse(&plain)
                .map_err(|e| Failure::input(format!("{}: {e}", file.display())))?;
            let (api, mut existing) = key_secrets(target).await?;
            let have: Vec<String> = existing.iter().map(key_id).collect();
            wipe_all(&mut existing);
            let (mut restored, mut skipped) = (0, 0);
            for e in entries {
                let id = e.key.id().to_string();
                if have.contains(&id) {
                    skipped += 1;
                    continue;
                }
                let mut secret = coffer_core::api::key_secret(&e.key, e.created, e.retired);
                let r = api.create(&PostParams::default(), &secret).await;
                coffer_core::transform::wipe(&mut secret);
                r?;
                restored += 1;
            }
            eprintln!("restored {restored} key(s); {skipped} already present");
            Ok(())
        }
    }
}

/// Asks the controller for a new key by annotating the active key's Secret
/// (the key the controller publishes, so CLI and controller agree on which
/// one is active); returns the id of the key being replaced.
pub async fn request_rotation(target: &Target, active: &str) -> Result<String> {
    let (api, mut items) = key_secrets(target).await?;
    let found = items
        .iter()
        .find(|s| key_id(s) == active && !retired(s))
        .and_then(|s| s.metadata.name.clone());
    wipe_all(&mut items);
    let Some(name) = found else {
        return Err(Failure::cluster(format!(
            "the published active key {active} has no usable key Secret in namespace {}",
            target.controller_namespace
        )));
    };
    let patch = serde_json::json!({"metadata": {"annotations": {ROTATION_ANNOTATION: jiff::Timestamp::now().to_string()}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(active.to_string())
}
