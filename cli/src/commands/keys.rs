//! `coffer keys`: the key ring through the Kubernetes API (key admins only,
//! by RBAC on Secrets in the controller's namespace).
//!
//! A key Secret is read with [`coffer_core::ring::read_key_secret`], as the
//! controller reads it, so both agree on states, order and the active key.
//! Private keys are written only through the wire module, which wipes
//! what it sends and what comes back. A wrapped ring (docs/kms.md) is
//! unwrapped with the KEK each Secret names where a command needs the keys
//! themselves (backup, retire's proof): the `kek` module.

use std::path::{Path, PathBuf};

use coffer_core::ring::*;
use coffer_core::wipe::{self};
use coffer_format::backup::{self, BackupEntry};
use coffer_format::recipients::RecipientEntry;
use coffer_format::{KeyId, PublicKey};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

use super::kek::Keks;
use super::recover::load_keys;
use super::wire::create_key_secret;
use coffer_cli::cluster::{Target, parse_recipients};
use coffer_cli::error::{Failure, Result};
use coffer_cli::io::{emit, read_file, write_atomic};
use coffer_kms::KekArgs;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum KeysCmd {
    /// List the sealing keys (whole id, state, kind, sequence, creation time), then the imported bitnami keys.
    #[command(after_help = "Example:\n  coffer keys list")]
    List,
    /// Retire a key: values sealed only to it stop opening. Re-encrypt first (`coffer rotate`).
    ///
    /// Refused while the controller says live SealedSecrets still need the
    /// key, or cannot say (apply the re-encrypted files and wait until they
    /// are Ready first), and when the controller cannot be asked.
    #[command(
        after_help = "Example:\n  coffer rotate k8s/ && kubectl apply -R -f k8s/   # or let GitOps sync\n  \
        kubectl wait --for=condition=Ready sealedsecrets.coffer.dev --all -A\n  \
        coffer keys retire 3f2a9c0d11e4b7a5\n  \
        coffer keys retire --superseded   # every usable key but the active one"
    )]
    Retire {
        /// Key id: the 64 hex digits, or a prefix of at least 8 that names one key.
        #[arg(required_unless_present = "superseded", conflicts_with = "superseded")]
        id: Option<String>,
        /// Every usable key other than the active one (what a rotation left
        /// behind); none is retired while any of them is still needed.
        #[arg(long)]
        superseded: bool,
        /// Retire it even though SealedSecrets still need it (they go
        /// Ready=False, KeyRetired), or the controller cannot be asked.
        #[arg(long)]
        force: bool,
    },
    /// Make a key the active sealing key (e.g. a restored, open-only key). Logged by the controller.
    #[command(after_help = "Example:\n  coffer keys activate 3f2a9c0d11e4b7a5\n  \
        coffer recipients -w clusters/prod.txt   # then commit the new recipients file")]
    Activate {
        /// Key id: the 64 hex digits, or a prefix of at least 8 that names one key.
        id: String,
    },
    /// Write the whole key ring, age-encrypted to an admin's recipient. Never plaintext on disk.
    #[command(after_help = "Example:\n  coffer keys backup --to age1… -w coffer-keys.age")]
    Backup {
        /// Admin age recipient(s) able to open the backup: age1…, or a
        /// recipients file (as `coffer keygen --recipients-out` writes).
        #[arg(long, required = true, value_name = "RECIPIENT|FILE")]
        to: Vec<String>,
        /// Write here (atomically, mode 0600) instead of stdout.
        #[arg(short = 'w', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Import bitnami sealed-secrets' RSA keys as open-only keys (for --bitnami and `coffer convert`).
    ///
    /// From the cluster (Secrets labelled sealedsecrets.bitnami.com/sealed-secrets-key=active in
    /// --from-namespace), or from a backup file (`kubectl get secret -l
    /// sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`). They are stored in the controller's
    /// namespace as Secrets of type coffer.dev/bitnami-key; Coffer never seals to them.
    #[command(after_help = "Examples:\n  coffer keys import-bitnami\n  \
        coffer keys import-bitnami --from-namespace sealed-secrets\n  \
        coffer keys import-bitnami --file main.key")]
    ImportBitnami {
        /// Namespace of bitnami's controller and its key Secrets.
        #[arg(
            long,
            default_value = coffer_core::bitnami::DEFAULT_KEY_NAMESPACE,
            value_name = "NS",
            conflicts_with = "file"
        )]
        from_namespace: String,
        /// A bitnami key backup (YAML or JSON Secrets or List, or a PEM key) instead of the cluster.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Wrap every key Secret with a key-encryption key (KMS/HSM): the private keys leave etcd.
    ///
    /// Plain keys are wrapped, keys under --kek are rewrapped to its newest
    /// version (after a Transit key rotation), keys under another KEK are
    /// moved to --kek. Each key is unwrapped again and checked before its
    /// Secret is replaced. Idempotent; the controller keeps serving. Start
    /// (or restart) the controller with the same --kek (docs/kms.md).
    #[command(after_help = "Examples:\n  \
        coffer keys wrap --kek transit:coffer --kek-address https://bao.example:8200 --dry-run\n  \
        coffer keys wrap --kek awskms:alias/coffer --kek-aws-region eu-west-1\n  \
        coffer keys wrap --kek pkcs11:coffer-kek --kek-pkcs11-module /usr/lib/softhsm/libsofthsm2.so \\\n    \
        --kek-pkcs11-token coffer --kek-pkcs11-pin-file pin.txt")]
    Wrap {
        /// Say what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Put every wrapped key back in its Secret in plain (a rollback from a KEK).
    ///
    /// The keys are unwrapped with the KEK each Secret names (its provider
    /// flags are needed). Afterwards anyone who can read Secrets in the
    /// controller's namespace, or an etcd backup, can read the keys.
    #[command(
        after_help = "Example:\n  coffer keys unwrap --kek-address https://bao.example:8200 --dry-run"
    )]
    Unwrap {
        /// Say what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Restore keys from a backup, as open-only keys: they open values and seal nothing.
    ///
    /// A backup is encrypted to the admin's *public* key, so anyone can
    /// write one. Each key is printed, and restored only if its public key
    /// is in a recipients file named with --trust (e.g. the one committed in
    /// git; older keys are in its older versions); a backup with no such key
    /// is refused. Restored keys never become the active key by themselves; see
    /// `coffer keys activate`.
    #[command(
        after_help = "Example:\n  coffer keys restore coffer-keys.age --identity admin.txt \
        --trust clusters/prod.txt\n  \
        coffer keys restore coffer-keys.age -i admin.txt --trust <(git show v1.2:clusters/prod.txt)"
    )]
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The admin identity that opens it.
        #[arg(long, short = 'i', required = true, value_name = "FILE")]
        identity: Vec<PathBuf>,
        /// Recipients file listing the keys this cluster is known to have
        /// had (repeatable). Keys not listed are named and not restored.
        #[arg(long, value_name = "FILE", required_unless_present = "trust_any")]
        trust: Vec<PathBuf>,
        /// Restore keys not listed in any --trust file, once you have checked
        /// the key ids printed by a first run some other way.
        #[arg(long, conflicts_with = "trust")]
        trust_any: bool,
    },
}

/// The key Secrets of the controller's namespace, read and checked. Bad
/// ones are reported and left out, as the controller leaves them out.
async fn ring(target: &Target) -> Result<(Api<Secret>, Vec<RingKey>)> {
    let client = target.client().await?;
    let api: Api<Secret> = Api::namespaced(client, &target.controller_namespace);
    let mut list = api
        .list(&ListParams::default().labels(KEY_ID_LABEL))
        .await?;
    let now = jiff::Timestamp::now();
    let mut keys = Vec::new();
    for s in list
        .items
        .iter()
        .filter(|s| s.type_.as_deref() == Some(KEY_SECRET_TYPE))
    {
        match read_key_secret(s, now) {
            Ok(k) => {
                if let Some(why) = &k.suspect {
                    eprintln!("warning: {why}");
                }
                keys.push(k)
            }
            Err(why) => eprintln!("warning: ignored, as the controller does: {why}"),
        }
    }
    for s in &mut list.items {
        wipe::secret(s);
    }
    keys.sort_by(RingKey::newest_first);
    Ok((api, keys))
}

/// The one key `id` names: the whole id or an unambiguous prefix of at
/// least 8 hex digits. Naming a key is a person's convenience; the key then
/// found is acted on by its whole id.
fn find<'a>(keys: &'a [RingKey], id: &str, target: &Target) -> Result<&'a RingKey> {
    if id.len() < 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        // Not echoed: it may be a private key pasted by mistake.
        return Err(Failure::usage(
            "that is not a key id: give at least 8 hex digits (see `coffer keys list`)",
        ));
    }
    let id = id.to_ascii_lowercase();
    let found: Vec<&RingKey> = keys.iter().filter(|k| k.id().starts_with(&id)).collect();
    match found[..] {
        [one] => Ok(one),
        [] => Err(Failure::input(format!(
            "no key {id} in namespace {}",
            target.controller_namespace
        ))
        .hint("list the keys with `coffer keys list`")),
        _ => Err(Failure::usage(format!(
            "{id} names {} keys; give more digits",
            found.len()
        ))),
    }
}

/// What `GET /v1/keys/ID/users` answers.
#[derive(serde::Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct KeyUsers {
    count: usize,
    objects: Vec<String>,
    pending: usize,
    #[serde(default)]
    pending_objects: Vec<String>,
    /// Whether the controller accepted the key admin's proof and named the
    /// objects (an older controller names them always).
    #[serde(default = "named")]
    names: bool,
}

fn named() -> bool {
    true
}

/// How to make a key unneeded before retiring it.
const BEFORE_RETIRING: &str = "re-encrypt (`coffer rotate PATH`), apply or sync the re-encrypted files \
    (`kubectl apply`, or let Argo CD/Flux sync), wait until they are Ready \
    (`kubectl wait --for=condition=Ready sealedsecrets.coffer.dev --all -A`), then retire again";

/// Asks the controller which live SealedSecrets still need key `id`, and
/// refuses while any do, while it cannot tell (SealedSecrets it has not yet
/// unsealed at their current generation), or when it cannot be asked;
/// `force` turns each refusal into a warning. The request carries a proof
/// made with the key itself (read by the caller, a key admin), so the
/// controller names the SealedSecrets ([`coffer_core::key_users`]).
async fn check_no_users(
    target: &Target,
    key: &RingKey,
    private: &coffer_format::SecretKey,
    force: bool,
) -> Result<()> {
    let id = key.id();
    let short = id.short();
    let proof = coffer_core::key_users::make(private, jiff::Timestamp::now().as_second());
    let asked = match target
        .get_with_retry(
            &format!("/v1/keys/{id}/users"),
            Some((coffer_core::key_users::HEADER, proof)),
        )
        .await
    {
        Ok((200, text)) => serde_json::from_str::<KeyUsers>(&text).map_err(|_| {
            Failure::cluster("the controller's answer about the key's users is not understood")
        }),
        Ok((code, reason)) => Err(Failure::cluster(format!(
            "the controller answered HTTP {code}: {reason}"
        ))),
        Err(f) => Err(f),
    };
    let users = match asked {
        Ok(u) => u,
        Err(f) if force => {
            eprintln!(
                "warning: {}; cannot tell which SealedSecrets still need key {short}: retiring it anyway (--force)",
                f.message
            );
            return Ok(());
        }
        Err(f) => {
            return Err(Failure::cluster(format!(
                "not retiring key {short}: cannot ask the controller which SealedSecrets still need it: {}",
                f.message
            ))
            .hint(
                "make sure coffer-controller runs and is reachable (--controller-namespace, --controller-name, \
                 --controller-url); --force retires without asking",
            ));
        }
    };
    let withheld = !users.names;
    let list = |names: &[String], total: usize| {
        let mut out = String::new();
        if withheld {
            return " (names withheld: the controller did not accept this command's key admin proof; are the clocks more than 5 minutes apart?)".to_string();
        }
        for n in names {
            out.push_str(&format!("\n  {n}"));
        }
        if total > names.len() {
            out.push_str(&format!("\n  … and {} more", total - names.len()));
        }
        out
    };
    let mut why = Vec::new();
    if users.count > 0 {
        why.push(format!(
            "{} live SealedSecret(s) still need it (a value no other usable key opens):{}",
            users.count,
            list(&users.objects, users.count)
        ));
    }
    if users.pending > 0 {
        why.push(format!(
            "{} SealedSecret(s) not yet unsealed by the controller at their current generation, which may need it:{}",
            users.pending,
            list(&users.pending_objects, users.pending)
        ));
    }
    if why.is_empty() {
        return Ok(());
    }
    let why = why.join("\n");
    if force {
        eprintln!(
            "warning: retiring key {short} anyway (--force): {why}\nthose go Ready=False, reason KeyRetired, until re-encrypted"
        );
        return Ok(());
    }
    Err(
        Failure::refused(format!("not retiring key {short}: {why}")).hint(format!(
            "{BEFORE_RETIRING}; --force retires it now, and those SealedSecrets go Ready=False, reason KeyRetired"
        )),
    )
}

fn state_word(k: &RingKey, active: Option<KeyId>) -> &'static str {
    if Some(k.id()) == active {
        "active"
    } else {
        k.status.as_str()
    }
}

/// Rows under a header, each column as wide as its widest cell, two spaces
/// apart (`SEQ`, a number, right-aligned); the last column is not padded.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else if header[i] == "SEQ" {
                out.push_str(&format!("{cell:>w$}  "));
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// An imported bitnami key, as `keys list` shows it.
struct BitnamiRow {
    id: String,
    bits: usize,
    created: Option<jiff::Timestamp>,
    secret_name: String,
}

/// The imported bitnami keys (Secrets of type `coffer.dev/bitnami-key`,
/// labelled `coffer.dev/bitnami-key-id`) of the controller's namespace, read
/// as the controller reads them; bad ones are reported and left out.
async fn bitnami_keys(target: &Target) -> Result<Vec<BitnamiRow>> {
    use coffer_core::bitnami;
    let client = target.client().await?;
    let api: Api<Secret> = Api::namespaced(client, &target.controller_namespace);
    let mut list = api
        .list(&ListParams::default().labels(bitnami::KEY_ID_LABEL))
        .await?;
    let mut rows = Vec::new();
    for s in &list.items {
        let name = s.metadata.name.clone().unwrap_or_default();
        if s.type_.as_deref() != Some(bitnami::KEY_SECRET_TYPE) {
            eprintln!(
                "warning: ignored, as the controller does: bitnami key Secret {name}: not of type {}",
                bitnami::KEY_SECRET_TYPE
            );
            continue;
        }
        match bitnami::key_from_secret(s) {
            Ok(Some(k)) => rows.push(BitnamiRow {
                id: k.id(),
                bits: k.bits(),
                created: s.metadata.creation_timestamp.as_ref().map(|t| t.0),
                secret_name: name,
            }),
            Ok(None) => eprintln!(
                "warning: ignored, as the controller does: bitnami key Secret {name}: no data.{}",
                bitnami::TLS_KEY
            ),
            Err(e) => eprintln!(
                "warning: ignored, as the controller does: bitnami key Secret {name}: {e}"
            ),
        }
    }
    for s in &mut list.items {
        wipe::secret(s);
    }
    rows.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    Ok(rows)
}

pub(crate) async fn run(cmd: KeysCmd, target: &Target, kek: &KekArgs) -> Result<()> {
    let mut keks = Keks::new(kek);
    match cmd {
        KeysCmd::List => list(target).await,
        KeysCmd::Wrap { dry_run } => super::kek::wrap(target, kek, dry_run).await,
        KeysCmd::Unwrap { dry_run } => super::kek::unwrap(target, kek, dry_run).await,
        KeysCmd::Retire {
            id,
            superseded,
            force,
        } => retire(target, &mut keks, id.as_deref(), superseded, force).await,
        KeysCmd::Activate { id } => activate(target, &id).await,
        KeysCmd::Backup { to, output } => {
            write_backup(target, &mut keks, &to, output.as_deref()).await
        }
        KeysCmd::Restore {
            file,
            identity,
            trust,
            trust_any,
        } => restore(target, kek, &file, &identity, &trust, trust_any).await,
        KeysCmd::ImportBitnami {
            from_namespace,
            file,
        } => import_bitnami(target, &from_namespace, file.as_deref()).await,
    }
}

/// `coffer keys list`: the sealing keys, then the imported bitnami keys.
async fn list(target: &Target) -> Result<()> {
    let (_, keys) = ring(target).await?;
    let active = active_key(&keys).map(RingKey::id);
    let created = |t: Option<jiff::Timestamp>| {
        t.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    };
    let mut rows: Vec<[String; 7]> = keys
        .iter()
        .map(|k| {
            [
                k.id().to_string(),
                state_word(k, active).to_string(),
                k.public.kind().to_string(),
                k.sequence.to_string(),
                created(k.created),
                k.secret_name.clone(),
                k.wrapped.as_ref().map_or("-".into(), |w| w.kek.clone()),
            ]
        })
        .collect();
    for b in bitnami_keys(target).await? {
        rows.push([
            b.id,
            "open-only".into(),
            format!("bitnami-rsa{}", b.bits),
            "-".into(),
            created(b.created),
            b.secret_name,
            "-".into(),
        ]);
    }
    emit(
        None,
        &table(
            &["KEY ID", "STATE", "KIND", "SEQ", "CREATED", "SECRET", "KEK"],
            &rows,
        ),
    )
}

/// `coffer keys retire`: key `id`, or with `superseded` every usable key
/// but the active one; none while the controller says a live SealedSecret
/// needs one, unless `force`.
async fn retire(
    target: &Target,
    keks: &mut Keks,
    id: Option<&str>,
    superseded: bool,
    force: bool,
) -> Result<()> {
    let (api, keys) = ring(target).await?;
    let active = active_key(&keys).map(RingKey::id);
    let chosen: Vec<&RingKey> = match id {
        Some(id) => vec![find(&keys, id, target)?],
        None => keys
            .iter()
            .filter(|k| k.status == KeyStatus::Usable && Some(k.id()) != active)
            .collect(),
    };
    if superseded && chosen.is_empty() {
        eprintln!("no usable key other than the active one: nothing to retire");
        return Ok(());
    }
    // Every key is asked about before any is retired: none or all.
    for key in &chosen {
        if key.status != KeyStatus::Retired {
            let private = keks.private_key(key).await?;
            check_no_users(target, key, &private, force).await?;
        }
    }
    for key in chosen {
        if active == Some(key.id()) {
            eprintln!(
                "warning: {} is the active key; the controller will make the next usable key active, or create a new one",
                key.id().short()
            );
        }
        let patch = serde_json::json!({"metadata": {"labels": {KEY_STATE_LABEL: "retired"}}});
        merge_patch(&api, &key.secret_name, patch).await?;
        eprintln!(
            "retired key {}: values sealed only to it no longer open",
            key.id()
        );
    }
    Ok(())
}

/// `coffer keys activate`: key `id` becomes the active sealing key, its
/// activation annotated with when and by whom.
async fn activate(target: &Target, id: &str) -> Result<()> {
    let (api, keys) = ring(target).await?;
    let key = find(&keys, id, target)?;
    let next = keys.iter().map(|k| k.sequence).max().unwrap_or(0) + 1;
    let by = whoami(target.client().await?).await;
    let mut annotations = serde_json::json!({
        SEQUENCE_ANNOTATION: next.to_string(),
        ACTIVATED_ANNOTATION: jiff::Timestamp::now().to_string(),
    });
    if let Some(by) = &by {
        annotations[ACTIVATED_BY_ANNOTATION] = serde_json::Value::String(by.clone());
    }
    // A merge patch with `null` removes the state label: usable.
    let patch = serde_json::json!({"metadata": {
        "labels": {KEY_STATE_LABEL: null},
        "annotations": annotations,
    }});
    merge_patch(&api, &key.secret_name, patch).await?;
    eprintln!(
        "activated key {} (was {}), sequence {next}{}: new values are sealed to it once the controller publishes it\n\
         next: coffer recipients -w FILE, and commit the recipients file",
        key.id(),
        state_word(key, active_key(&keys).map(RingKey::id)),
        by.map(|b| format!(", by {b}")).unwrap_or_default(),
    );
    Ok(())
}

/// `coffer keys backup`: the whole key ring, age-encrypted to the admin
/// recipients `to`, written to `output` or stdout.
async fn write_backup(
    target: &Target,
    keks: &mut Keks,
    to: &[String],
    output: Option<&Path>,
) -> Result<()> {
    let mut admins: Vec<PublicKey> = Vec::new();
    for r in to {
        match r.parse::<PublicKey>() {
            Ok(k) => admins.push(k),
            Err(_) if Path::new(r).is_file() => {
                let input = read_file(Path::new(r))?;
                admins.extend(parse_recipients(&input.name, &input.text)?.keys());
            }
            Err(e) => {
                return Err(Failure::usage(format!("--to {r}: {e}"))
                    .hint("give an age1… recipient, or a recipients file"));
            }
        }
    }
    let (_, keys) = ring(target).await?;
    if keys.is_empty() {
        return Err(Failure::cluster(format!(
            "no sealing key found in namespace {}",
            target.controller_namespace
        )));
    }
    // Wrapped keys are unwrapped with their KEK: a backup holds the keys
    // themselves, so losing the KMS loses nothing while a backup exists.
    let mut entries: Vec<BackupEntry> = Vec::new();
    for k in &keys {
        entries.push(BackupEntry {
            key: keks.private_key(k).await?,
            created: k.created_claimed.or(k.created),
            retired: k.status == KeyStatus::Retired,
        });
    }
    let plain = backup::render(&entries, jiff::Timestamp::now());
    let armored = backup::encrypt(&plain, &admins).map_err(|e| Failure::new(1, e.to_string()))?;
    match output {
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

/// `coffer keys import-bitnami`: bitnami's RSA keys, from their Secrets in
/// the cluster or from a backup file, into the controller's namespace as
/// Secrets of type `coffer.dev/bitnami-key`. They only open bitnami
/// values (with `--bitnami`); Coffer never seals to them.
async fn import_bitnami(target: &Target, from_namespace: &str, file: Option<&Path>) -> Result<()> {
    use coffer_core::bitnami;
    let client = target.client().await?;
    let keys: Vec<(String, bitnami::BitnamiKey)> = match file {
        Some(path) => {
            let input = read_file(path)?;
            bitnami::read_key_backup(&input.text)
                .map_err(|e| Failure::input(format!("{}: {e}", input.name)))?
                .into_iter()
                .map(|(name, k)| (format!("{}:{name}", input.name), k))
                .collect()
        }
        None => {
            let api: Api<Secret> = Api::namespaced(client.clone(), from_namespace);
            let mut list = api
                .list(&ListParams::default().labels(bitnami::KEY_LABEL))
                .await?;
            let mut keys = Vec::new();
            for s in &list.items {
                let name = s.metadata.name.clone().unwrap_or_default();
                let state = s
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(bitnami::KEY_LABEL))
                    .cloned()
                    .unwrap_or_default();
                // bitnami's controller uses only keys labelled `active`;
                // another word (e.g. `compromised`) takes a key out.
                if state != "active" {
                    eprintln!(
                        "skipped {from_namespace}/{name}: labelled {}={state}, which bitnami's controller does not use",
                        bitnami::KEY_LABEL
                    );
                    continue;
                }
                match bitnami::key_from_secret(s) {
                    Ok(Some(k)) => keys.push((format!("{from_namespace}/{name}"), k)),
                    Ok(None) => eprintln!("skipped {from_namespace}/{name}: no data.tls.key"),
                    Err(e) => eprintln!("skipped {from_namespace}/{name}: {e}"),
                }
            }
            for s in &mut list.items {
                wipe::secret(s);
            }
            keys
        }
    };
    if keys.is_empty() {
        return Err(Failure::input(format!(
            "no bitnami key found {}",
            match file {
                Some(f) => format!("in {}", f.display()),
                None => format!(
                    "in namespace {from_namespace} (Secrets labelled {}=active)",
                    bitnami::KEY_LABEL
                ),
            }
        ))
        .hint(format!("bitnami keeps its keys in the controller's namespace, {} by default: --from-namespace NS, or --file BACKUP", bitnami::DEFAULT_KEY_NAMESPACE)));
    }
    let ns = &target.controller_namespace;
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let (mut imported, mut present) = (0usize, 0usize);
    for (from, key) in &keys {
        let mut secret = bitnami::key_secret(key, from);
        let name = secret.metadata.name.clone().unwrap_or_default();
        if api.get_metadata_opt(&name).await?.is_some() {
            println!(
                "bitnami key {} ({} bits) from {from}: already imported as {ns}/{name}",
                key.short_id(),
                key.bits()
            );
            present += 1;
        } else {
            create_key_secret(&client, ns, &secret).await?;
            println!(
                "bitnami key {} ({} bits) from {from}: imported as {ns}/{name} (opens bitnami values; never seals)",
                key.short_id(),
                key.bits()
            );
            imported += 1;
        }
        wipe::secret(&mut secret);
    }
    eprintln!(
        "{imported} key(s) imported, {present} already there; start the controller with --bitnami to unseal bitnami's SealedSecrets"
    );
    Ok(())
}

async fn restore(
    target: &Target,
    kek: &KekArgs,
    file: &Path,
    identity: &[PathBuf],
    trust: &[PathBuf],
    trust_any: bool,
) -> Result<()> {
    let admins = load_keys(identity, &[])?;
    let data = std::fs::read(file).map_err(|e| {
        Failure::input(format!(
            "{}: cannot read: {}",
            file.display(),
            coffer_cli::io::io_reason(&e)
        ))
    })?;
    let plain = backup::decrypt(&data, &admins)
        .map_err(|e| Failure::input(format!("{}: {e}", file.display())))?;
    let mut entries = backup::parse(&plain, jiff::Timestamp::now())
        .map_err(|e| Failure::input(format!("{}: {e}", file.display())))?;
    let mut trusted: Vec<(String, RecipientEntry)> = Vec::new();
    for t in trust {
        let input = read_file(t)?;
        let file = parse_recipients(&input.name, &input.text)?;
        trusted.extend(file.entries.into_iter().map(|e| (input.name.clone(), e)));
    }
    eprintln!("{} holds {} key(s):", file.display(), entries.len());
    let mut untrusted = Vec::new();
    for e in &entries {
        let listed = trusted.iter().any(|(_, t)| &t.key == e.key.public());
        eprintln!(
            "  {}  {}  {}{}",
            e.key.id(),
            e.key.public(),
            if e.retired { "retired" } else { "usable" },
            match (trust_any, listed) {
                (_, true) => "  (listed in --trust)",
                (true, false) => "  (NOT listed; restored because of --trust-any)",
                (false, false) => "  (NOT listed in any --trust file)",
            }
        );
        if !listed {
            untrusted.push(e);
        }
    }
    // Only keys a --trust file lists are restored: a backup can be written
    // by anyone who knows the admin's public key, and a key in no trusted
    // file may be theirs. A backup with none of them is refused whole.
    if !trust_any && !untrusted.is_empty() {
        let why: Vec<String> = untrusted
            .iter()
            .map(|e| format!("  {}: {}", e.key.id(), why_untrusted(e, &trusted)))
            .collect();
        let why = why.join("\n");
        if untrusted.len() == entries.len() {
            return Err(Failure::refused(format!(
                "refusing the whole backup: its {} key(s) are in no recipients file named with --trust; nothing was restored\n{why}",
                entries.len()
            ))
            .hint(UNTRUSTED_HINT));
        }
        eprintln!(
            "warning: not restoring {} of the backup's {} keys, in no recipients file named with --trust:\n{why}\nhint: {UNTRUSTED_HINT}",
            untrusted.len(),
            entries.len()
        );
        let skip: Vec<KeyId> = untrusted.iter().map(|e| e.key.id()).collect();
        entries.retain(|e| !skip.contains(&e.key.id()));
    }
    let (api, existing) = ring(target).await?;
    let client = target.client().await?;
    let wrap_with = coffer_kms::connect(kek)
        .await
        .map_err(|e| Failure::cluster(e.to_string()))?;
    let (mut restored, mut skipped) = (0, 0);
    for e in entries {
        if existing.iter().any(|k| k.id() == e.key.id()) {
            skipped += 1;
            continue;
        }
        let status = if e.retired {
            KeyStatus::Retired
        } else {
            KeyStatus::OpenOnly
        };
        let mut secret = key_secret(&e.key, e.created, status, None);
        let r = match wrap_restored(wrap_with.as_deref(), &e.key, &mut secret).await {
            Ok(()) => create_key_secret(&client, &target.controller_namespace, &secret).await,
            Err(f) => Err(f),
        };
        wipe::secret(&mut secret);
        r?;
        restored += 1;
    }
    drop(api);
    eprintln!(
        "restored {restored} key(s) as open-only (or retired, as the backup says); {skipped} already present\n\
         they open values sealed to them and seal nothing: the active key is unchanged\n\
         to seal with a restored key: coffer keys activate ID"
    );
    Ok(())
}

/// With `--kek`, a restored key is wrapped before its Secret is sent: the
/// plain key never reaches the API server.
async fn wrap_restored(
    kek: Option<&dyn coffer_kms::Kek>,
    key: &coffer_format::SecretKey,
    secret: &mut Secret,
) -> Result<()> {
    let Some(kek) = kek else { return Ok(()) };
    let text = key.to_secret_string();
    let wrapped = kek
        .wrap(text.as_bytes(), &key.id().to_string())
        .await
        .map_err(|e| Failure::cluster(e.to_string()))?;
    wrap_key_secret(secret, &kek.reference().to_string(), wrapped);
    Ok(())
}

const UNTRUSTED_HINT: &str = "a backup can be written by anyone who knows the admin's public key, so only keys a --trust file lists are restored. \
    Name the committed recipients files that list these keys: git history holds the older ones \
    (`git log --format='%h %cs' -S 'key=ID' -- FILE` lists the commits that added and removed key ID; then `--trust <(git show REV:FILE)` \
    with the one that added it); \
    or check the ids above another way and pass --trust-any";

/// Why backup entry `e` is in none of the `trusted` files, as far as the
/// creation times tell: a key older than the newest key they list is one
/// the cluster had before (in an earlier version of the file, found in git
/// history); one newer than all of them is a key they cannot know yet, or
/// not the cluster's at all.
fn why_untrusted(e: &BackupEntry, trusted: &[(String, RecipientEntry)]) -> String {
    let newest = trusted
        .iter()
        .filter_map(|(file, t)| t.created.map(|c| (c, file, t)))
        .max_by_key(|(c, _, _)| *c);
    let (Some(created), Some((newest, file, t))) = (e.created, newest) else {
        return "the backup or the --trust files give no creation time to compare; \
                if it is an older key of the cluster, an earlier version of the recipients file lists it"
            .into();
    };
    let newest_id = coffer_format::KeyId::of(&t.key);
    // To the second: recipients files write whole seconds, a backup may not.
    let second = |t: jiff::Timestamp| jiff::Timestamp::from_second(t.as_second()).unwrap_or(t);
    let (created, newest) = (second(created), second(newest));
    if created <= newest {
        format!(
            "created {created}, not after {file}'s key {newest_id} (created {newest}): an older key of the cluster is listed \
             in an earlier version of {file}, which --trust can name"
        )
    } else {
        format!(
            "created {created}, after every key the --trust files list (the newest, {newest_id} in {file}, was created {newest}): \
             either those files predate it (fetch a fresh one with `coffer recipients` from the cluster the backup came from), \
             or it is no key of that cluster"
        )
    }
}

/// The user name the API server knows this client as (SelfSubjectReview),
/// for the activation annotation; `None` when the server does not say.
async fn whoami(client: kube::Client) -> Option<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: Api<SelfSubjectReview> = Api::all(client);
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()?;
    review.status?.user_info?.username
}

/// A JSON merge patch of one key Secret's metadata.
async fn merge_patch(api: &Api<Secret>, name: &str, patch: serde_json::Value) -> Result<()> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Asks the controller for a new key by annotating the active key's Secret
/// (the key the controller publishes, so CLI and controller agree on which
/// one is active); returns the id of the key being replaced.
pub(crate) async fn request_rotation(target: &Target, active: &KeyId) -> Result<KeyId> {
    let (api, keys) = ring(target).await?;
    let Some(key) = keys
        .iter()
        .find(|k| k.id() == *active && k.status == KeyStatus::Usable)
    else {
        return Err(Failure::cluster(format!(
            "the published active key {} has no usable key Secret in namespace {}",
            active.short(),
            target.controller_namespace
        )));
    };
    let patch = serde_json::json!({"metadata": {"annotations": {ROTATION_ANNOTATION: jiff::Timestamp::now().to_string()}}});
    merge_patch(&api, &key.secret_name, patch).await?;
    Ok(*active)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 27: `keys list` padded ids to 16 and states to 9 whatever the
    /// cells held, so longer cells pushed the columns out of line.
    #[test]
    fn every_column_starts_under_its_header_whatever_the_widths() {
        let id = "ab".repeat(32);
        let cells = |a: &str, b: &str, c: &str, d: &str| {
            [
                a.to_string(),
                b.to_string(),
                c.to_string(),
                d.to_string(),
                "2026-01-01T00:00:00Z".to_string(),
                "coffer-key-x".to_string(),
            ]
        };
        let rows = [
            cells(&id, "active", "x25519", "3"),
            cells(&id, "open-only", "mlkem768x25519", "12"),
            cells("c0ffee", "usable", "bitnami-rsa4096", "-"),
        ];
        let header = ["KEY ID", "STATE", "KIND", "SEQ", "CREATED", "SECRET"];
        let text = table(&header, &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[1].starts_with(&format!("{id}  active     x25519")),
            "{text}"
        );
        for column in ["STATE", "KIND", "CREATED", "SECRET"] {
            let at = lines[0].find(column).unwrap();
            for l in &lines[1..] {
                assert_eq!(&l[at - 2..at], "  ", "{column} in\n{text}");
                assert_ne!(&l[at..at + 1], " ", "{column} in\n{text}");
            }
        }
        // SEQ is a number: right-aligned under its header.
        let end = lines[0].find("SEQ").unwrap() + 3;
        for (l, seq) in lines[1..].iter().zip(["3", "12", "-"]) {
            assert_eq!(&l[end - seq.len()..end], seq, "{text}");
        }
        assert!(!text.lines().any(|l| l.ends_with(' ')), "{text:?}");
    }
}
