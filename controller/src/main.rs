//! coffer-controller binary: parse flags, set up logging, run.

use clap::Parser;
use coffer_controller::args::{Cli, Command, LogFormat};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Crd { bitnami }) = cli.command {
        if bitnami {
            print!("{}", coffer_core::bitnami::crd_yaml());
        } else {
            print!("{}", coffer_core::api::crd_yaml());
        }
        return std::process::ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(cli.run.worker_threads))
        .enable_all()
        .build();
    match runtime {
        // Everything runs on the worker threads. Driven from this thread
        // instead, the controller would hand every API request to a worker
        // and take every answer back: two wakeups between threads each.
        Ok(rt) => rt.block_on(async move {
            tokio::spawn(run(cli))
                .await
                .unwrap_or(std::process::ExitCode::FAILURE)
        }),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.run.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: redirected to a file, a pipe
    // or a log collector, escape codes would end up in the text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match cli.run.log_format {
        // The message and the event's fields at the top level of each line,
        // where log pipelines look for them, not under "fields".
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    match coffer_controller::run::run(cli.run).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
