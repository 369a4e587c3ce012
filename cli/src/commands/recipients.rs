//! `coffer recipients`: the recipients file the cluster publishes (public
//! keys, safe to commit), printed or saved.

use std::path::PathBuf;

use coffer_cli::cluster::{Target, parse_recipients};
use coffer_cli::error::Result;
use coffer_cli::io::emit;

#[derive(clap::Args, Debug)]
pub(crate) struct RecipientsArgs {
    /// Write here (atomically) instead of stdout.
    #[arg(short = 'w', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

pub(crate) async fn run(args: RecipientsArgs, target: &Target) -> Result<()> {
    let text = target.recipients_text().await?;
    parse_recipients("the cluster's recipients file", &text)?;
    emit(args.output.as_deref(), &text)
}
