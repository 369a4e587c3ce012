//! `coffer keys wrap` and `coffer keys unwrap` (docs/kms.md), and the
//! unwrapping the other `keys` commands need for a wrapped ring (backup,
//! retire). Every key is wrapped, then unwrapped again and checked to be
//! the same key, before its Secret is replaced: a KEK that can encrypt
//! but not decrypt (a policy missing `Decrypt`) never leaves a key that
//! nothing can open. Each Secret is replaced on its own, at the
//! resourceVersion read: a concurrent change is a conflict, not lost.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_core::ring::{self, RingKey};
use coffer_core::wipe;
use coffer_format::SecretKey;
use coffer_kms::{Kek, KekArgs, KekRef};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

use coffer_cli::cluster::Target;
use coffer_cli::error::{Failure, Result};

/// The KEKs a command uses, connected once each: `--kek` and those the
/// key Secrets name, all with the provider flags given.
pub(crate) struct Keks {
    args: KekArgs,
    connected: BTreeMap<KekRef, Arc<dyn Kek>>,
}

impl Keks {
    pub(crate) fn new(args: &KekArgs) -> Self {
        Keks {
            args: args.clone(),
            connected: BTreeMap::new(),
        }
    }

    /// `--kek`, or a usage error saying it is needed for `what`.
    fn wanted(&self, what: &str) -> Result<KekRef> {
        self.args.kek.clone().ok_or_else(|| {
            Failure::usage(format!("{what} needs --kek PROVIDER:KEY")).hint(
                "transit:NAME, pkcs11:LABEL or awskms:KEY, with the provider's flags (docs/kms.md)",
            )
        })
    }

    async fn get(&mut self, reference: &KekRef) -> Result<Arc<dyn Kek>> {
        if let Some(k) = self.connected.get(reference) {
            return Ok(k.clone());
        }
        let args = KekArgs {
            kek: Some(reference.clone()),
            ..self.args.clone()
        };
        let kek = coffer_kms::connect(&args)
            .await
            .map_err(kms_failure)?
            .ok_or_else(|| Failure::usage("no KEK"))?;
        self.connected.insert(reference.clone(), kek.clone());
        Ok(kek)
    }

    /// The private key of `k`, unwrapping it with the KEK its Secret names
    /// when it is wrapped.
    pub(crate) async fn private_key(&mut self, k: &RingKey) -> Result<SecretKey> {
        if let Some(key) = &k.key {
            return Ok(key.clone());
        }
        let wrapped = k.wrapped.as_ref().ok_or_else(|| {
            Failure::cluster(format!("key Secret {} holds no key", k.secret_name))
        })?;
        let reference: KekRef = wrapped.kek.parse().map_err(kms_failure)?;
        let kek = self.get(&reference).await.map_err(|e| {
            e.hint(format!(
                "key {} is wrapped by {reference}: give that KEK's provider flags (docs/kms.md)",
                k.id().short()
            ))
        })?;
        let plain = kek
            .unwrap(&wrapped.ciphertext, &wrapped.id.to_string())
            .await
            .map_err(|e| Failure::cluster(format!("key {}: {e}", k.id())))?;
        k.clone()
            .unwrapped(&plain)
            .map_err(Failure::cluster)?
            .key
            .ok_or_else(|| Failure::cluster("unwrapped no key"))
    }
}

fn kms_failure(e: coffer_kms::KmsError) -> Failure {
    match e {
        coffer_kms::KmsError::Config(_) => Failure::usage(e.to_string()),
        _ => Failure::cluster(e.to_string()),
    }
}

/// What `wrap` does to one key Secret.
enum Step {
    /// Plain: wrap it.
    Wrap,
    /// Under `--kek` already: rewrap to its newest version (if any).
    Rewrap,
    /// Under another KEK: unwrap with it, wrap with `--kek`.
    Move(KekRef),
}

/// `coffer keys wrap`: every key Secret ends up wrapped by `--kek`'s newest
/// version. Idempotent; says what it will do, then does it key by key.
pub(crate) async fn wrap(target: &Target, args: &KekArgs, dry_run: bool) -> Result<()> {
    let mut keks = Keks::new(args);
    let to = keks.wanted("coffer keys wrap")?;
    let (api, mut secrets) = key_secrets(target).await?;
    let mut plan = Vec::new();
    for s in &secrets {
        let k = ring::read_key_secret(s, jiff::Timestamp::now()).map_err(Failure::cluster)?;
        let step = match &k.wrapped {
            None => Step::Wrap,
            Some(w) if w.kek == to.to_string() => Step::Rewrap,
            Some(w) => Step::Move(w.kek.parse().map_err(kms_failure)?),
        };
        eprintln!(
            "  {}  {}",
            k.id(),
            match &step {
                Step::Wrap => format!("plain -> wrapped by {to}"),
                Step::Rewrap => format!("wrapped by {to}: rewrapped to its newest version"),
                Step::Move(from) => format!("wrapped by {from} -> wrapped by {to}"),
            }
        );
        plan.push((k, step));
    }
    // What this breaks if done out of order: a controller without this
    // KEK leaves every wrapped key out of its ring.
    eprintln!(
        "the controller must already run with --kek {to}: one without it leaves the wrapped keys out of its ring and opens nothing sealed to them (docs/kms.md)"
    );
    if dry_run || plan.is_empty() {
        eprintln!(
            "{} key Secret(s); nothing written{}",
            plan.len(),
            if dry_run { " (--dry-run)" } else { "" }
        );
        wipe_all(&mut secrets);
        return Ok(());
    }
    let kek = keks.get(&to).await?;
    let mut changed = 0;
    for ((k, step), secret) in plan.into_iter().zip(secrets.iter_mut()) {
        let id = k.id().to_string();
        let ciphertext = match step {
            Step::Rewrap => {
                let w = k.wrapped.as_ref().expect("wrapped");
                match kek.rewrap(&w.ciphertext, &id).await.map_err(kms_failure)? {
                    Some(c) => c,
                    None => {
                        eprintln!("  {id}: already under the newest version of {to}");
                        continue;
                    }
                }
            }
            Step::Wrap | Step::Move(_) => {
                let key = keks.private_key(&k).await?;
                let text = key.to_secret_string();
                kek.wrap(text.as_bytes(), &id).await.map_err(kms_failure)?
            }
        };
        // Unwrapped again before it replaces anything: the KEK must open
        // what it wrapped, as this very key.
        let back = kek.unwrap(&ciphertext, &id).await.map_err(|e| {
            Failure::cluster(format!("key {id}: {to} wrapped the key but cannot unwrap it ({e}); nothing was written for it"))
                .hint("the controller needs both encrypt and decrypt on the KEK (docs/kms.md)")
        })?;
        ring::WrappedKey {
            id: k.id(),
            kek: to.to_string(),
            ciphertext: Vec::new(),
        }
        .open(&back)
        .map_err(Failure::cluster)?;
        ring::wrap_key_secret(secret, &to.to_string(), ciphertext);
        api.replace(&k.secret_name, &Default::default(), secret)
            .await
            .map_err(|e| {
                Failure::cluster(format!(
                    "key Secret {}: {e}; rerun `coffer keys wrap`",
                    k.secret_name
                ))
            })?;
        changed += 1;
        eprintln!("  {id}: wrapped by {to}");
    }
    wipe_all(&mut secrets);
    eprintln!(
        "{changed} key Secret(s) rewritten; every key Secret is wrapped by {to}. The controller needs --kek {to} to load them (docs/kms.md)"
    );
    Ok(())
}

/// `coffer keys unwrap`: every wrapped key Secret holds its key in plain
/// again (a rollback). Says what it will do first: the keys return to etcd.
pub(crate) async fn unwrap(target: &Target, args: &KekArgs, dry_run: bool) -> Result<()> {
    let mut keks = Keks::new(args);
    let (_, mut secrets) = key_secrets(target).await?;
    let mut wrapped = Vec::new();
    for s in &secrets {
        let k = ring::read_key_secret(s, jiff::Timestamp::now()).map_err(Failure::cluster)?;
        if let Some(w) = &k.wrapped {
            eprintln!("  {}  wrapped by {} -> plain", k.id(), w.kek);
            wrapped.push((k, s.clone()));
        }
    }
    wipe_all(&mut secrets);
    if dry_run || wrapped.is_empty() {
        eprintln!(
            "{} wrapped key Secret(s); nothing written{}",
            wrapped.len(),
            if dry_run { " (--dry-run)" } else { "" }
        );
        return Ok(());
    }
    eprintln!(
        "warning: the private keys go back into the Secrets in plain: anyone who reads Secrets in {} or an etcd backup can read them",
        target.controller_namespace
    );
    let client = target.client().await?;
    for (k, mut secret) in wrapped {
        let key = keks.private_key(&k).await?;
        ring::unwrap_key_secret(&mut secret, &key);
        let sent =
            super::wire::send_key_secret(&client, &target.controller_namespace, &secret, true)
                .await;
        wipe::secret(&mut secret);
        sent?;
        eprintln!("  {}: plain", k.id());
    }
    eprintln!("done. Start the controller without --kek only once no key Secret is wrapped");
    Ok(())
}

/// The key Secrets, as read (each replaced at its resourceVersion).
async fn key_secrets(target: &Target) -> Result<(Api<Secret>, Vec<Secret>)> {
    let api: Api<Secret> = Api::namespaced(target.client().await?, &target.controller_namespace);
    let list = api
        .list(&ListParams::default().labels(ring::KEY_ID_LABEL))
        .await?;
    let secrets = list
        .items
        .into_iter()
        .filter(|s| s.type_.as_deref() == Some(ring::KEY_SECRET_TYPE))
        .collect();
    Ok((api, secrets))
}

fn wipe_all(secrets: &mut [Secret]) {
    for s in secrets {
        wipe::secret(s);
    }
}
