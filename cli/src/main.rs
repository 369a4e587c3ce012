//! coffer: seal Kubernetes Secrets for a GitOps repository, and manage the
//! keys that open them. A thin layer over coffer-core: it reads, calls the
//! library, and writes.

mod commands;

use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches as _, Parser, Subcommand};
use coffer_cli::cluster::ClusterArgs;
use coffer_cli::error::{self, Failure, Result};
use coffer_cli::io::Format;

use crate::commands::{
    check, convert, inspect, keygen, keys, recipients, recover, rotate, seal, verify, web,
};

#[derive(Parser, Debug)]
#[command(
    name = "coffer",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("COFFER_COMMIT"), ")"),
    about = "Seal Kubernetes Secrets so they are safe to commit; only the cluster's controller can open them",
    after_help = "Examples:
  coffer recipients -w recipients.txt                 # once: fetch the cluster's public key
  coffer seal -r recipients.txt secret.yaml -w sealed.yaml
  kubectl apply -f sealed.yaml

Exit codes: 0 ok, 1 failure, 2 usage, 3 bad input, 4 cluster error, 5 refused (see docs/cli.md)."
)]
struct Cli {
    /// Cluster flags given before the command (every cluster command also
    /// takes them after it, where its help lists them).
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Before the command, for compatibility: `seal -n`.
    #[arg(short = 'n', long, hide = true)]
    namespace: Option<String>,
    /// Before the command, for compatibility: the `-o` of seal, inspect, recover.
    #[arg(short = 'o', long = "format", hide = true, value_enum)]
    format: Option<Format>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Seal Secret manifests (or one raw value) into SealedSecrets.
    Seal {
        #[command(flatten)]
        args: seal::SealArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Print or save the cluster's recipients file (public keys; safe to commit).
    #[command(
        after_help = "Examples:\n  coffer recipients\n  coffer recipients -w clusters/prod.txt"
    )]
    Recipients {
        #[command(flatten)]
        args: recipients::RecipientsArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Show scopes, items, key ids and size buckets of SealedSecrets, offline.
    Inspect(inspect::InspectArgs),
    /// Find what must not be committed, offline: plain Secrets, unreadable or altered SealedSecrets, values not sealed as .coffer.yaml asks.
    Check(check::CheckArgs),
    /// Ask the controller whether each SealedSecret opens in this cluster.
    Verify {
        #[command(flatten)]
        args: verify::VerifyArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Rotate: get a new key, then re-encrypt every SealedSecret under PATH in place.
    Rotate {
        #[command(flatten)]
        args: rotate::RotateArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Rewrite bitnami sealed-secrets files in place as Coffer SealedSecrets (same scope and template).
    Convert {
        #[command(flatten)]
        args: convert::ConvertArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Manage the key ring (key admins).
    // The cluster flags go on to the subcommands: `coffer keys list
    // --context prod`, whose help lists them, and `coffer keys --context
    // prod list`.
    #[command(mut_args(|flag| flag.global(true)))]
    Keys {
        #[command(subcommand)]
        cmd: keys::KeysCmd,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        kek: coffer_kms::KekArgs,
    },
    /// Disaster recovery: open SealedSecrets offline with backed-up keys.
    Recover(recover::RecoverArgs),
    /// Make a new identity and its recipients file (tests, bring-your-own-key).
    #[command(
        after_help = "Example:\n  coffer keygen -w identity.txt --recipients-out recipients.txt"
    )]
    Keygen(keygen::KeygenArgs),
    /// The web page that seals in the browser (docs/web.md).
    Web {
        #[command(subcommand)]
        cmd: web::WebCmd,
    },
    /// Print shell completions.
    #[command(after_help = "Example:\n  coffer completion bash > /etc/bash_completion.d/coffer")]
    Completion { shell: clap_complete::Shell },
}

async fn run(cli: Cli) -> Result<()> {
    refuse_misplaced_flags(&cli)?;
    let top = &cli.cluster;
    match cli.command {
        Command::Seal { args, cluster } => {
            let namespace = args.namespace.clone().or(cli.namespace);
            let format = args.format.or(cli.format).unwrap_or_default();
            seal::run(args, &cluster.target(top), namespace, format).await
        }
        Command::Recipients { args, cluster } => recipients::run(args, &cluster.target(top)).await,
        Command::Check(args) => check::run(args),
        Command::Inspect(args) => {
            let format = match (args.format, cli.format) {
                (Some(f), _) => f,
                (None, Some(Format::Json)) => inspect::InspectFormat::Json,
                (None, Some(Format::Yaml)) => {
                    return Err(Failure::usage(
                        "inspect prints a table or JSON: -o table or -o json",
                    ));
                }
                (None, None) => inspect::InspectFormat::Table,
            };
            inspect::run(args, format)
        }
        Command::Verify { args, cluster } => verify::run(args, &cluster.target(top)).await,
        Command::Rotate { args, cluster } => rotate::run(args, &cluster.target(top)).await,
        Command::Convert { args, cluster } => convert::run(args, &cluster.target(top)).await,
        Command::Keys { cmd, cluster, kek } => keys::run(cmd, &cluster.target(top), &kek).await,
        Command::Recover(args) => {
            let format = args.format.or(cli.format).unwrap_or_default();
            recover::run(args, format)
        }
        Command::Keygen(args) => keygen::run(args),
        Command::Web { cmd } => web::run(cmd),
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "coffer", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// `-o` and `-n` before the command, kept for compatibility, belong to
/// the commands that take them after it.
fn refuse_misplaced_flags(cli: &Cli) -> Result<()> {
    let takes_format = matches!(
        cli.command,
        Command::Seal { .. } | Command::Inspect(_) | Command::Recover(_)
    );
    if cli.format.is_some() && !takes_format {
        return Err(Failure::usage(
            "-o applies to seal, inspect and recover only; this command has one output",
        ));
    }
    if cli.namespace.is_some() && !matches!(cli.command, Command::Seal { .. }) {
        return Err(Failure::usage("-n applies to seal only"));
    }
    Ok(())
}

/// kubectl runs a plugin `kubectl coffer ARGS` as the executable
/// `kubectl-coffer` on PATH (the name krew links `coffer` under), and
/// passes that path as `argv[0]`.
const PLUGIN_EXECUTABLE: &str = "kubectl-coffer";

/// Whether this process was started as the kubectl plugin.
fn run_as_kubectl_plugin() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|argv0| Path::new(&argv0).file_name() == Some(PLUGIN_EXECUTABLE.as_ref()))
}

/// The command line as a kubectl plugin: usage lines and examples say
/// `kubectl coffer ...`, which is what the user types.
fn as_kubectl_plugin(cmd: clap::Command) -> clap::Command {
    fn examples(cmd: clap::Command) -> clap::Command {
        let cmd = match cmd.get_after_help().map(ToString::to_string) {
            Some(help) => cmd.after_help(
                help.replace("\n  coffer ", "\n  kubectl coffer ")
                    .replace("| coffer ", "| kubectl coffer "),
            ),
            None => cmd,
        };
        let subcommands: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        subcommands
            .into_iter()
            .fold(cmd, |cmd, name| cmd.mut_subcommand(name, examples))
    }
    examples(cmd).bin_name("kubectl coffer")
}

fn main() -> ExitCode {
    let mut command = Cli::command();
    if run_as_kubectl_plugin() {
        command = as_kubectl_plugin(command);
    }
    let parsed = command
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
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
