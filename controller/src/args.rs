//! Command-line flags; each has an environment-variable equivalent.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "coffer-controller",
    version,
    about = "Unseals Coffer SealedSecrets into Secrets and keeps the sealing keys",
    after_help = "Examples:\n  coffer-controller                       # in cluster, all namespaces\n  coffer-controller --kubeconfig ~/.kube/config --namespaces shop,web\n  coffer-controller crd > crds/sealedsecret.yaml"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the SealedSecret CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Kubeconfig file; in-cluster configuration when unset.
    /// ($KUBECONFIG, which may list several files, is honoured when unset.)
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long, env = "COFFER_CONTEXT", global = true)]
    pub context: Option<String>,
    /// Namespaces to watch for SealedSecrets (comma-separated); all when unset.
    #[arg(long, env = "COFFER_NAMESPACES", value_delimiter = ',', global = true)]
    pub namespaces: Vec<String>,
    /// Namespace holding the key Secrets and the recipients ConfigMap.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "coffer-system",
        global = true
    )]
    pub key_namespace: String,
    /// SealedSecrets reconciled at once.
    #[arg(long, env = "COFFER_CONCURRENCY", default_value_t = 16, global = true)]
    pub concurrency: u16,
    /// Threads running reconciles, watches and HTTP. Decryption for HTTP
    /// requests runs on a separate blocking pool. One is plenty: the work
    /// is waiting on the API server, and fewer threads mean fewer wakeups.
    #[arg(long, env = "COFFER_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64), global = true)]
    pub worker_threads: u16,
    /// Threads that open large SealedSecrets and serve /v1/verify and
    /// /v1/reencrypt, off the async thread (objects under 16 KiB of
    /// ciphertext open in place).
    #[arg(long, env = "COFFER_UNSEAL_THREADS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64), global = true)]
    pub unseal_threads: u16,
    /// Kubernetes API requests per second (0: unlimited). A reconcile that
    /// writes costs 2 requests (Secret, status) plus a Normal Event, which
    /// only takes tokens the writes leave free.
    #[arg(long, env = "COFFER_KUBE_QPS", default_value_t = 200.0, global = true)]
    pub kube_qps: f64,
    /// Kubernetes API burst above the QPS.
    #[arg(long, env = "COFFER_KUBE_BURST", default_value_t = 400, global = true)]
    pub kube_burst: u32,
    /// A new sealing key every period (e.g. 720h, 30d); 0 turns renewal off.
    #[arg(long, env = "COFFER_KEY_RENEWAL_PERIOD", default_value = "720h", value_parser = parse_duration, global = true)]
    pub key_renewal_period: Duration,
    /// Cluster name written into the published recipients file.
    #[arg(long, env = "COFFER_CLUSTER_NAME", global = true)]
    pub cluster_name: Option<String>,
    /// HTTP listener for health, metrics and the public endpoints.
    #[arg(
        long,
        env = "COFFER_LISTEN",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub listen: std::net::SocketAddr,
    /// Elect one writer among replicas through a coordination.k8s.io Lease.
    #[arg(long, env = "COFFER_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub leader_elect: bool,
    /// Name of the Lease in the key namespace.
    #[arg(
        long,
        env = "COFFER_LEASE_NAME",
        default_value = "coffer-controller",
        global = true
    )]
    pub lease_name: String,
    /// Lease duration: how long followers wait before taking over a silent leader.
    #[arg(long, env = "COFFER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration, global = true)]
    pub lease_duration: Duration,
    /// Requests per second each client may make to the POST endpoints (0: unlimited).
    #[arg(long, env = "COFFER_HTTP_RATE", default_value_t = 20.0, global = true)]
    pub http_rate: f64,
    /// Burst above that rate.
    #[arg(long, env = "COFFER_HTTP_BURST", default_value_t = 40, global = true)]
    pub http_burst: u32,
    /// Secret types a SealedSecret may ask for in spec.template.type
    /// (comma-separated; an unset type is Opaque). Empty: every type that
    /// is not denied.
    #[arg(
        long,
        env = "COFFER_SECRET_TYPES_ALLOW",
        value_delimiter = ',',
        global = true
    )]
    pub secret_types_allow: Vec<String>,
    /// Secret types refused even if allowed (comma-separated). A refused
    /// SealedSecret gets Ready=False, reason SecretTypeRefused, and no
    /// Secret. `--secret-types-deny=` denies nothing.
    #[arg(
        long,
        env = "COFFER_SECRET_TYPES_DENY",
        value_delimiter = ',',
        default_value = crate::secret_types::DEFAULT_DENY,
        global = true
    )]
    pub secret_types_deny: Vec<String>,
    /// Log filter (error, warn, info, debug, or a tracing directive).
    #[arg(long, env = "COFFER_LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "COFFER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Parses `0`, `90s`, `720h`, `30d`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 720h or 30d: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_kubernetes_users_write_them() {
        assert_eq!(
            parse_duration("720h").unwrap(),
            Duration::from_secs(720 * 3600)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn flags_have_documented_defaults() {
        let cli = Cli::try_parse_from(["coffer-controller"]).unwrap();
        assert_eq!(cli.run.key_namespace, "coffer-system");
        assert_eq!(cli.run.key_renewal_period, Duration::from_secs(720 * 3600));
        assert!(cli.run.namespaces.is_empty());
        assert!(cli.run.secret_types_allow.is_empty());
        assert_eq!(
            cli.run.secret_types_deny,
            [
                "kubernetes.io/service-account-token",
                "coffer.dev/sealing-key"
            ]
        );
    }

    #[test]
    fn secret_type_lists_take_commas_and_an_empty_deny_list_denies_nothing() {
        let cli = Cli::try_parse_from([
            "coffer-controller",
            "--secret-types-allow=Opaque,kubernetes.io/tls",
            "--secret-types-deny=",
        ])
        .unwrap();
        assert_eq!(cli.run.secret_types_allow, ["Opaque", "kubernetes.io/tls"]);
        let policy = crate::secret_types::SecretTypePolicy::new(
            &cli.run.secret_types_allow,
            &cli.run.secret_types_deny,
        );
        assert_eq!(policy.check(Some("kubernetes.io/tls")), Ok(()));
        assert!(
            policy
                .check(Some("kubernetes.io/service-account-token"))
                .is_err()
        );
        let open = Cli::try_parse_from(["coffer-controller", "--secret-types-deny="]).unwrap();
        let policy = crate::secret_types::SecretTypePolicy::new(
            &open.run.secret_types_allow,
            &open.run.secret_types_deny,
        );
        assert_eq!(
            policy.check(Some("kubernetes.io/service-account-token")),
            Ok(())
        );
    }
}
