//! The command-line options the benchmarks share, flattened into each
//! binary's own.

use std::path::PathBuf;

/// Where the API server is and where the report goes (every benchmark).
#[derive(clap::Args, Debug)]
pub struct Run {
    /// The envtest API server's directory (tests/envtest/start DIR).
    #[arg(long)]
    pub envtest_dir: PathBuf,
    /// Markdown report to write (it is printed too).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// How many objects, where, and how long the controller has for them.
#[derive(clap::Args, Debug)]
pub struct Load {
    /// Number of SealedSecrets.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub n: u32,
    /// Namespaces to spread them over.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub namespaces: u32,
    /// SealedSecrets created at once before a controller starts.
    #[arg(long, default_value_t = 32)]
    pub create_concurrency: usize,
    /// Seconds from controller start until all must be done.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// The coffer-controller under measurement.
#[derive(clap::Args, Debug)]
pub struct Controller {
    /// The coffer-controller binary to measure.
    #[arg(long)]
    pub controller: PathBuf,
    /// Extra controller flags.
    #[arg(last = true)]
    pub controller_args: Vec<String>,
}
