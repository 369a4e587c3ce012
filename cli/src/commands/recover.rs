//! `coffer recover`: offline disaster recovery. SealedSecrets -> Secrets
//! with identities from an identity file or an encrypted key ring backup.
//! Refuses scope mismatches just like the controller.

use std::path::PathBuf;

use coffer_core::transform::{render_templates, unseal};
use coffer_format::key::parse_identity_file;
use coffer_format::{Keyring, SecretKey, backup};

use coffer_cli::documents::read_sealed;
use coffer_cli::error::{Failure, Result};
use coffer_cli::io::{Format, emit, read_file, read_inputs, render};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  coffer recover --identity keys.txt sealed.yaml > secrets.yaml
  coffer recover --identity admin.txt --backup ring-backup.age k8s/*.yaml -w secrets.yaml

This prints plaintext Secrets: it exists for disaster recovery. Prefer piping
into `kubectl apply -f -` over writing files.")]
pub(crate) struct RecoverArgs {
    /// SealedSecret files; stdin when none or `-`.
    pub(crate) files: Vec<PathBuf>,
    /// age identity file (AGE-SECRET-KEY-1… lines): sealing keys, or the admin key of --backup.
    #[arg(long, short = 'i', value_name = "FILE", required = true)]
    pub(crate) identity: Vec<PathBuf>,
    /// An encrypted key ring backup (`coffer keys backup`), opened with --identity.
    #[arg(long, value_name = "FILE")]
    pub(crate) backup: Vec<PathBuf>,
    /// Write the Secrets here (atomically, mode 0600) instead of stdout.
    #[arg(short = 'w', long = "output", value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Output format [default: yaml].
    #[arg(short = 'o', long = "format", value_enum)]
    pub(crate) format: Option<Format>,
}

/// Loads identities, and the keys of any backups they open.
pub(crate) fn load_keys(identity: &[PathBuf], backups: &[PathBuf]) -> Result<Vec<SecretKey>> {
    let mut keys = Vec::new();
    for p in identity {
        let input = read_file(p)?;
        keys.extend(
            parse_identity_file(&input.text)
                .map_err(|e| Failure::input(format!("{}: {e}", input.name)))?,
        );
    }
    let admins = keys.clone();
    for p in backups {
        let data = std::fs::read(p).map_err(|e| {
            Failure::input(format!(
                "{}: cannot read: {}",
                p.display(),
                coffer_cli::io::io_reason(&e)
            ))
        })?;
        let plain = backup::decrypt(&data, &admins).map_err(|e| {
            Failure::input(format!("{}: {e}", p.display()))
                .hint("give the admin identity the backup was made for with --identity")
        })?;
        let entries = backup::parse(&plain, jiff::Timestamp::now())
            .map_err(|e| Failure::input(format!("{}: {e}", p.display())))?;
        keys.extend(entries.into_iter().map(|e| e.key));
    }
    Ok(keys)
}

pub(crate) fn run(args: RecoverArgs, format: Format) -> Result<()> {
    let ring = Keyring::from_keys(load_keys(&args.identity, &args.backup)?);
    let inputs = read_inputs(&args.files)?;
    let docs = read_sealed(&inputs, true)?;
    if docs.is_empty() {
        return Err(coffer_cli::documents::none_found(&inputs));
    }
    let mut secrets = Vec::new();
    let mut refused = Vec::new();
    for d in &docs {
        // The Secret as the controller writes it: `template.data` rendered.
        let view = d.sealed.view();
        match unseal(&view, &ring) {
            Ok(mut desired) => match render_templates(&view, &mut desired) {
                Ok(()) => secrets.push(desired.to_secret(None)),
                Err(e) => refused.push(format!("{}: {e}", d.label())),
            },
            Err(e) => refused.push(format!("{}: {e}", d.label())),
        }
    }
    if !refused.is_empty() {
        for s in secrets.iter_mut() {
            coffer_core::wipe::secret(s);
        }
        return Err(Failure::refused(format!(
            "{} of {} SealedSecrets did not open; nothing was written:\n  {}",
            refused.len(),
            docs.len(),
            refused.join("\n  ")
        )));
    }
    let text = zeroize::Zeroizing::new(render(&secrets, format)?);
    for s in secrets.iter_mut() {
        coffer_core::wipe::secret(s);
    }
    match &args.output {
        Some(p) if p.as_os_str() != "-" => coffer_cli::io::write_atomic(p, text.as_bytes(), true),
        _ => emit(None, &text),
    }
}
