//! `coffer verify`: asks the controller, through the API server's service
//! proxy, whether each value opens where its SealedSecret says it is.

use std::path::PathBuf;

use crate::cluster::Target;
use crate::documents::{read_sealed, to_json};
use crate::error::{Failure, Result};
use crate::io::read_inputs;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  coffer verify k8s/shop/*.yaml && echo all open")]
pub struct VerifyArgs {
    /// SealedSecret files; stdin when none or `-`.
    pub files: Vec<PathBuf>,
}

pub async fn verify(args: VerifyArgs, target: &Target) -> Result<()> {
    let inputs = read_inputs(&args.files)?;
    let docs = read_sealed(&inputs, true)?;
    if docs.is_empty() {
        return Err(crate::documents::none_found(&inputs));
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
    if failed > 0 {
        return Err(Failure::refused(format!(
            "{failed} of {} SealedSecrets do not open",
            docs.len()
        )));
    }
    Ok(())
}
