//! `coffer verify`: asks the controller, through the API server's service
//! proxy, whether each value opens where its SealedSecret says it is.

use std::path::PathBuf;

use coffer_cli::cluster::Target;
use coffer_cli::documents::{read_sealed, to_json};
use coffer_cli::error::{Failure, Result};
use coffer_cli::io::{Input, files_under, read_inputs};

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  coffer verify k8s/shop/*.yaml && echo all open")]
pub(crate) struct VerifyArgs {
    /// SealedSecret files, or directories (every *.yaml, *.yml, *.json under them); stdin when none or `-`. A file that cannot be read is reported and the others are still verified.
    pub(crate) files: Vec<PathBuf>,
}

/// Reads every file on its own: one that cannot be read or parsed is
/// reported (`error: FILE: why` on stderr) and counted, and the others are
/// still verified.
fn read_each(files: &[PathBuf]) -> (Vec<Input>, usize) {
    let stdin = [PathBuf::from("-")];
    let given = if files.is_empty() { &stdin[..] } else { files };
    let mut paths = Vec::new();
    let mut failed = 0;
    for p in given {
        if p.is_dir() {
            match files_under(std::slice::from_ref(p)) {
                Ok(found) => paths.extend(found),
                Err(f) => {
                    eprintln!("error: {}", f.message);
                    failed += 1;
                }
            }
        } else {
            paths.push(p.clone());
        }
    }
    let mut inputs = Vec::new();
    for p in &paths {
        match read_inputs(std::slice::from_ref(p)) {
            Ok(i) => inputs.extend(i),
            Err(f) => {
                eprintln!("error: {}", f.message);
                failed += 1;
            }
        }
    }
    (inputs, failed)
}

pub(crate) async fn run(args: VerifyArgs, target: &Target) -> Result<()> {
    let (inputs, mut unreadable) = read_each(&args.files);
    let mut docs = Vec::new();
    for input in &inputs {
        match read_sealed(std::slice::from_ref(input), true) {
            Ok(found) => docs.extend(found),
            Err(f) => {
                eprintln!("error: {}", f.message);
                unreadable += 1;
            }
        }
    }
    if docs.is_empty() {
        if unreadable > 0 {
            return Err(Failure::input(format!(
                "{unreadable} file(s) could not be read (above), and no SealedSecret was found in the others"
            )));
        }
        return Err(coffer_cli::documents::none_found(&inputs));
    }
    let client = match target.controller_url {
        Some(_) => None,
        None => Some(target.client().await?),
    };
    let mut failed = 0;
    for d in &docs {
        let (code, _) = target
            .post_with_retry(client.as_ref(), "/v1/verify", to_json(&d.sealed)?)
            .await?;
        match code {
            200 => println!("{}: opens", d.label()),
            409 => {
                failed += 1;
                println!("{}: does NOT open in this cluster", d.label());
            }
            other => {
                return Err(Failure::cluster(format!(
                    "{}: the controller answered HTTP {other}",
                    d.label()
                ))
                .hint(
                    "is the controller running and its Service reachable through the API server?",
                ));
            }
        }
    }
    let opened = match failed {
        0 => format!(
            "the {} SealedSecret(s) found in the others open",
            docs.len()
        ),
        _ => format!("{failed} of {} SealedSecrets do not open", docs.len()),
    };
    if unreadable > 0 {
        // Input first: the answer is incomplete whatever the others did.
        return Err(Failure::input(format!(
            "{unreadable} file(s) could not be read (above); {opened}"
        ))
        .hint("fix or leave out the files named above; the others were verified"));
    }
    if failed > 0 {
        return Err(Failure::refused(opened));
    }
    Ok(())
}
