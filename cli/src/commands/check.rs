//! `coffer check [PATHS]`: the command line and the report, one line per
//! problem with its fix, exit 5 when there is any. What it looks for, and
//! how, is the library's checker (its `check` module), which the fuzz
//! target `rules_and_check` runs too.

use std::path::PathBuf;

use coffer_cli::check::check_paths;
use coffer_cli::error::{Failure, Result};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  coffer check                      # the current directory, recursively
  coffer check clusters/ base/db.yaml
  coffer check --exclude 'charts/**' --exclude '*.tpl.yaml'
Exit status: 0 when nothing was found, 5 when something was (one line each), 3 when a path or .coffer.yaml cannot be read, or .coffer.yaml or a recipients file it names is refused.")]
pub(crate) struct CheckArgs {
    /// Files and directories (*.yaml, *.yml, *.json in any case, and Kustomization, under them, hidden ones too); the current directory when none.
    paths: Vec<PathBuf>,
    /// Leave out paths matching this glob (repeatable), relative to the path checked: `vendor/**`, `*.tpl.yaml`; a glob without `/` matches a name at any depth. `.gitignore` files are honoured too.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
}

pub(crate) fn run(args: CheckArgs) -> Result<()> {
    let found = check_paths(&args.paths, &args.exclude)?;
    for p in &found.problems {
        println!("{}: {}; fix: {}", p.at, p.what, p.fix);
    }
    eprintln!(
        "coffer check: {} file(s), {} SealedSecret(s), {} problem(s){}",
        found.files,
        found.sealed,
        found.problems.len(),
        if found.skipped > 0 {
            format!(
                "; {} file(s) not YAML or JSON and with no Secret in them skipped (e.g. templates)",
                found.skipped
            )
        } else {
            String::new()
        }
    );
    if found.problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::refused(format!(
            "{} problem(s) found; see above",
            found.problems.len()
        )))
    }
}
