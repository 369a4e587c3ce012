//! coffer: seal Kubernetes Secrets for a GitOps repository, and manage the
//! keys that open them. A thin layer over coffer-core: it reads, calls the
//! library, and writes.

mod convert;
mod inspect;
mod key_admin;
mod recover;
mod rotate;
mod seal;
mod verify;

// The readers of files live in the library (src/lib.rs), where the fuzz
// targets reach them; `crate::rules` and the like still name them here.
use coffer_cli::{check, cluster, documents, error, io, rules};

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches as _, Parser, Subcommand};
use coffer_format::recipients::{RecipientEntry, RecipientsFile};

use crate::cluster::Target;
use crate::error::{Failure, Result};
use crate::io::Format;

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
    cluster: TopClusterArgs,
    /// Before the command, for compatibility: `seal -n`.
    #[arg(short = 'n', long, hide = true)]
    namespace: Option<String>,
    /// Before the command, for compatibility: the `-o` of seal, inspect, recover.
    #[arg(short = 'o', long = "format", hide = true, value_enum)]
    format: Option<Format>,
    #[command(subcommand)]
    command: Command,
}

/// Where the cluster and the controller are; only the commands that talk
/// to them take these (after the command name; also before it, see Cli).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Kubeconfig file (default: $KUBECONFIG, which may list several files, or ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// Namespace where the controller runs and publishes its recipients [default: coffer-system].
    #[arg(
        long,
        global = true,
        env = "COFFER_CONTROLLER_NAMESPACE",
        value_name = "NS"
    )]
    controller_namespace: Option<String>,
    /// Reach the controller's HTTP API at this URL (e.g. after `kubectl port-forward`) instead of through the API server's service proxy.
    #[arg(long, global = true, env = "COFFER_CONTROLLER_URL", value_name = "URL")]
    controller_url: Option<String>,
    /// Name of the controller's Service, reached through the API server's service proxy [default: coffer-controller].
    #[arg(
        long,
        global = true,
        env = "COFFER_CONTROLLER_NAME",
        value_name = "NAME"
    )]
    controller_name: Option<String>,
}

/// The same flags before the command name; not passed down to commands
/// that have no use for them, so their help does not list them.
#[derive(clap::Args, Debug, Clone, Default)]
struct TopClusterArgs {
    /// Kubeconfig file (default: $KUBECONFIG, which may list several files, or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Namespace where the controller runs and publishes its recipients [default: coffer-system].
    #[arg(long, env = "COFFER_CONTROLLER_NAMESPACE", value_name = "NS")]
    controller_namespace: Option<String>,
    /// Reach the controller's HTTP API at this URL instead of through the API server's service proxy.
    #[arg(long, env = "COFFER_CONTROLLER_URL", value_name = "URL")]
    controller_url: Option<String>,
    /// Name of the controller's Service [default: coffer-controller].
    #[arg(long, env = "COFFER_CONTROLLER_NAME", value_name = "NAME")]
    controller_name: Option<String>,
}

impl TopClusterArgs {
    /// The command's own flags win over those before the command.
    fn target(&self, own: &ClusterArgs) -> Target {
        Target {
            kubeconfig: own.kubeconfig.clone().or(self.kubeconfig.clone()),
            context: own.context.clone().or(self.context.clone()),
            controller_namespace: own
                .controller_namespace
                .clone()
                .or(self.controller_namespace.clone())
                .unwrap_or_else(|| "coffer-system".into()),
            controller_url: own.controller_url.clone().or(self.controller_url.clone()),
            service: own
                .controller_name
                .clone()
                .or(self.controller_name.clone())
                .unwrap_or_else(|| cluster::SERVICE.into()),
        }
    }
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
        /// Write here (atomically) instead of stdout.
        #[arg(short = 'w', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
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
    Keys {
        #[command(subcommand)]
        cmd: key_admin::KeysCmd,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
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
        /// Key kind: x25519, or mlkem768x25519 (age 1.3's hybrid
        /// post-quantum keys, `age-keygen -pq`).
        #[arg(long, default_value = "x25519", value_parser = parse_key_kind)]
        kind: coffer_format::key::KeyKind,
    },
    /// Print shell completions.
    #[command(after_help = "Example:\n  coffer completion bash > /etc/bash_completion.d/coffer")]
    Completion { shell: clap_complete::Shell },
}

async fn run(cli: Cli) -> Result<()> {
    let top = &cli.cluster;
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
    match cli.command {
        Command::Seal { args, cluster } => {
            let namespace = args.namespace.clone().or(cli.namespace);
            let format = args.format.or(cli.format).unwrap_or_default();
            seal::run(args, &top.target(&cluster), namespace, format).await
        }
        Command::Recipients { output, cluster } => {
            let text = top.target(&cluster).recipients_text().await?;
            cluster::parse_recipients("the cluster's recipients file", &text)?;
            io::emit(output.as_deref(), &text)
        }
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
        Command::Verify { args, cluster } => verify::verify(args, &top.target(&cluster)).await,
        Command::Rotate { args, cluster } => rotate::rotate(args, &top.target(&cluster)).await,
        Command::Convert { args, cluster } => convert::run(args, &top.target(&cluster)).await,
        Command::Keys { cmd, cluster } => key_admin::run(cmd, &top.target(&cluster)).await,
        Command::Recover(args) => {
            let format = args.format.or(cli.format).unwrap_or_default();
            recover::run(args, format)
        }
        Command::Keygen {
            output,
            recipients_out,
            cluster,
            kind,
        } => keygen(&output, recipients_out.as_deref(), cluster, kind),
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
    kind: coffer_format::key::KeyKind,
) -> Result<()> {
    if output.exists() {
        return Err(Failure::input(format!(
            "{}: already exists; refusing to overwrite a key",
            output.display()
        )));
    }
    let key = coffer_format::SecretKey::generate_kind(kind);
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
        "key {} ({kind}): identity in {}, public key {}",
        key.id(),
        output.display(),
        key.public()
    );
    Ok(())
}

fn parse_key_kind(s: &str) -> std::result::Result<coffer_format::key::KeyKind, String> {
    s.parse()
}

/// kubectl runs a plugin `kubectl coffer ARGS` as the executable
/// `kubectl-coffer` on PATH (the name krew links `coffer` under), and
/// passes that path as argv[0].
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
