//! `coffer keygen`: a new identity and its recipients file, offline (tests,
//! bring-your-own-key).

use std::path::PathBuf;

use coffer_cli::error::{Failure, Result};
use coffer_cli::io::write_atomic;
use coffer_format::key::KeyKind;
use coffer_format::recipients::{RecipientEntry, RecipientsFile};

#[derive(clap::Args, Debug)]
pub(crate) struct KeygenArgs {
    /// Identity file to write (mode 0600); refused if it exists.
    #[arg(short = 'w', long = "output", value_name = "FILE", required = true)]
    output: PathBuf,
    /// Recipients file to write beside it.
    #[arg(long, value_name = "FILE")]
    recipients_out: Option<PathBuf>,
    /// Cluster name for the recipients file comment.
    #[arg(long)]
    cluster: Option<String>,
    /// Key kind: x25519, or mlkem768x25519 (age 1.3's hybrid
    /// post-quantum keys, `age-keygen -pq`).
    #[arg(long, default_value = "x25519", value_parser = parse_key_kind)]
    kind: KeyKind,
}

pub(crate) fn run(args: KeygenArgs) -> Result<()> {
    let KeygenArgs {
        output,
        recipients_out,
        cluster,
        kind,
    } = args;
    if output.exists() {
        return Err(Failure::input(format!(
            "{}: already exists; refusing to overwrite a key",
            output.display()
        )));
    }
    let key = coffer_format::SecretKey::generate_kind(kind);
    let now = jiff::Timestamp::now();
    write_atomic(&output, key.to_identity_file(&now).as_bytes(), true)?;
    let file = RecipientsFile {
        entries: vec![RecipientEntry {
            key: key.public().clone(),
            cluster,
            created: Some(now),
        }],
    };
    if let Some(r) = &recipients_out {
        write_atomic(r, file.render().as_bytes(), false)?;
    }
    eprintln!(
        "key {} ({kind}): identity in {}, public key {}",
        key.id(),
        output.display(),
        key.public()
    );
    Ok(())
}

fn parse_key_kind(s: &str) -> std::result::Result<KeyKind, String> {
    s.parse()
}
