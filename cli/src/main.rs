//! coffer: seal Kubernetes Secrets for a GitOps repository, and manage the
//! keys that open them. A thin layer over coffer-core: it reads, calls the
//! library, and writes.

mod cluster;
mod documents;
mod error;
mod inspect;
mod io;
mod key_admin;
mod recover;
mod rotate;
mod seal;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use coffer_format::recipients::{RecipientEntry, RecipientsFile};

use crate::cluster::Target;
use crate::error::{Failure, Result};
use crate::io::Format;

#[derive(Parser, Debug)]
#[command(
    name = "coffer",
    version,
    about = "Seal Kubernetes Secrets so they are safe to commit; only the cluster's controller can open them",
    after_help = "Examples:
  coffer recipients -w recipients.txt                 # once: fetch the cluster's public key
  coffer seal -r recipients.txt secret.yaml -w sealed.yaml
  kubectl apply -f sealed.yaml

Exit codes: 0 ok, 1 failure, 2 usage, 3 bad input, 4 cluster error, 5 refused (see docs/cli.md)."
)]
struct Cli {
    /// Kubeconfig file (default: $KUBECONFIG, which may list several files, or ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace of the Secrets (default: the manifest's, then the context's, then `default`).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "format", global = true, value_enum, default_value_t = Format::Yaml)]
    format: Format,
    /// Namespace where the controller runs and publishes its recipients.
    #[arg(
        long,
        global = true,
        env = "COFFER_CONTROLLER_NAMESPACE",
        default_value = "coffer-system"
    )]
    controller_namespace: String,
    /// Reach the controller's HTTP API at this URL (e.g. after `kubectl port-forward`) instead of through the API server's service proxy.
    #[arg(long, global = true, env = "COFFER_CONTROLLER_URL")]
    controller_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Seal Secret manifests (or one raw value) into SealedSecrets.
    Seal(seal::SealArgs),
    /// Print or save the cluster's recipients file (public keys; safe to commit).
    #[command(
        after_help = "Examples:\n  coffer recipients\n  coffer recipients -w clusters/prod.txt"
    )]
    Recipients {
        /// Write here (atomically) instead of stdout.
        #[arg(short = 'w', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Show scopes, items, key ids and size buckets of SealedSecrets, offline.
    Inspect(inspect::InspectArgs),
    /// Ask the controller whether each SealedSecret opens in this cluster.
    Verify(verify::VerifyArgs),
    /// Rotate: get a new key, then re-encrypt every SealedSecret under PATH in place.
    Rotate(rotate::RotateArgs),
    /// Manage the key ring (key admins).
    #[command(subcommand)]
    Keys(key_admin::KeysCmd),
    /// Disaster recovery: open SealedSecrets offline with backed-up keys.
    Recover(recover::RecoverArgs),
    /// Make a new identity and its recipients file (tests, bring-your-own-key).
    #[command(
        after_help = "Example:\n  coffer keygen -w identity.txt --recipients-out recipients.txt"
    )]
    Keygen {
        /// Identity file to write (mode 0600); refused if it exists.
        #[arg(short = 'w', long = "output", value_name = "FILE", required = true)]
        output: PathBuf,
        /// Recipients file to write beside it.
        #[arg(long, value_name = "FILE")]
        recipients_out: Option<PathBuf>,
        /// Cluster name for the recipients file comment.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Print shell completions.
    #[command(after_help = "Example:\n  coffer completion bash > /etc/bash_completion.d/coffer")]
    Completion { shell: clap_complete::Shell },
}

async fn run(cli: Cli) -> Result<()> {
    let target = Target {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        controller_namespace: cli.controller_namespace.clone(),
        controller_url: cli.controller_url.clone(),
    };
    match cli.command {
        Command::Seal(args) => seal::run(args, &target, cli.namespace, cli.format).await,
        Command::Recipients { output } => {
            let text = target.recipients_text().await?;
            cluster::parse_recipients("the cluster's recipients file", &text)?;
            io::emit(output.as_deref(), &text)
        }
        Command::Inspect(args) => inspect::run(args, cli.format),
        Command::Verify(args) => verify::verify(args, &target).await,
        Command::Rotate(args) => rotate::rotate(args, &target).await,
        Command::Keys(cmd) => key_admin::run(cmd, &target).await,
        Command::Recover(args) => recover::run(args, cli.format),
        Command::Keygen {
            output,
            recipients_out,
            cluster,
        } => keygen(&output, recipients_out.as_deref(), cluster),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "coffer", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn keygen(
    output: &std::path::Path,
    recipients_out: Option<&std::path::Path>,
    cluster: Option<String>,
) -> Result<()> {
    if output.exists() {
        return Err(Failure::input(format!(
            "{}: already exists; refusing to overwrite a key",
            output.display()
        )));
    }
    let key = coffer_format::SecretKey::generate();
    let now = jiff::Timestamp::now();
    io::write_atomic(output, key.to_identity_file(&now).as_bytes(), true)?;
    let file = RecipientsFile {
        entries: vec![RecipientEntry {
            key: key.public().clone(),
            cluster,
            created: Some(now),
        }],
    };
    if let Some(r) = recipients_out {
        io::write_atomic(r, file.render().as_bytes(), false)?;
    }
    eprintln!(
        "key {}: identity in {}, public key {}",
        key.id(),
        output.display(),
        key.public()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                error::code::USAGE
            } else {
                0
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(error::code::FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{f}");
            ExitCode::from(f.code)
        }
    }
}
