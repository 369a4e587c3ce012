//! Command-line flags; each has an environment-variable equivalent.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "coffer-controller",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("COFFER_COMMIT"), ")"),
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
    Crd {
        /// bitnami's SealedSecret instead (deploy/bitnami/crd.yaml), for a
        /// cluster that never ran bitnami.
        #[arg(long)]
        bitnami: bool,
    },
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
    /// Kind of the sealing keys this controller creates (first key, renewal,
    /// rotation): x25519, or mlkem768x25519 for age 1.3's hybrid
    /// post-quantum keys. Keys already in the ring keep opening values
    /// whatever their kind; `coffer rotate` moves a repository to a new key.
    #[arg(long, env = "COFFER_KEY_KIND", default_value = "x25519", value_parser = parse_key_kind, global = true)]
    pub key_kind: coffer_format::key::KeyKind,
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
    /// Listener for the kubelet's probes only (/healthz, /readyz), with a
    /// small connection cap of its own, so clients of --listen cannot make
    /// a probe wait. The NetworkPolicy needs no rule for it: probes come
    /// from the pod's own node. /healthz and /readyz stay on --listen too.
    #[arg(
        long,
        env = "COFFER_PROBE_LISTEN",
        default_value = "0.0.0.0:8081",
        global = true
    )]
    pub probe_listen: std::net::SocketAddr,
    /// Serve the web page that seals in the browser at `/ui/` on the main
    /// port (docs/web.md). The page never sends a value: it fetches its
    /// own files and `/v1/recipients`.
    #[arg(long, env = "COFFER_WEB", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", global = true)]
    pub web: bool,
    /// Also unseal bitnami's `bitnami.com/v1alpha1` SealedSecrets with the
    /// keys `coffer keys import-bitnami` imported (docs/migration.md), and
    /// serve `POST /v1/bitnami/convert`. Needs bitnami's CRD and RBAC
    /// (deploy/bitnami/).
    #[arg(long, env = "COFFER_BITNAMI", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", global = true)]
    pub bitnami: bool,
    /// How often each bitnami SealedSecret is reconciled again, undoing
    /// hand edits of its Secret (their Secrets are not watched).
    #[arg(long, env = "COFFER_BITNAMI_RESYNC", default_value = "10m", value_parser = parse_duration, global = true)]
    pub bitnami_resync: Duration,
    /// Elect one writer among replicas through a coordination.k8s.io Lease.
    #[arg(long, env = "COFFER_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub leader_elect: bool,
    /// Namespaces labelled one by one in the `coffer_sealed_secrets` gauge;
    /// the rest are summed under `namespace="_other"` (those with
    /// SealedSecrets that are not unsealed are labelled first). 0: none.
    #[arg(
        long,
        env = "COFFER_METRICS_MAX_NAMESPACES",
        default_value_t = 200,
        global = true
    )]
    pub metrics_max_namespaces: usize,
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
        default_value = crate::reconcile::secret_types::DEFAULT_DENY,
        global = true
    )]
    pub secret_types_deny: Vec<String>,
    /// HTTP connections open at once; further connections wait, unaccepted.
    #[arg(long, env = "COFFER_HTTP_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65_536), global = true)]
    pub http_max_connections: u32,
    /// HTTP connections open at once from one client address; further ones
    /// are closed unserved (0: no per-client limit).
    #[arg(
        long,
        env = "COFFER_HTTP_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 64,
        global = true
    )]
    pub http_max_connections_per_client: u32,
    /// Time for a request's headers to arrive; also the longest an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "COFFER_HTTP_HEADER_TIMEOUT", default_value = "5s", value_parser = parse_timeout, global = true)]
    pub http_header_timeout: Duration,
    /// Time for a POST body to arrive; also the longest a response write may
    /// stall on a client that does not read.
    #[arg(long, env = "COFFER_HTTP_BODY_TIMEOUT", default_value = "10s", value_parser = parse_timeout, global = true)]
    pub http_body_timeout: Duration,
    /// Bytes of POST bodies held at once over all requests (e.g. 8Mi, 16MiB;
    /// at least 2Mi, the largest body). Requests beyond it are refused
    /// with 429 before their body is read.
    #[arg(long, env = "COFFER_HTTP_BODY_BUDGET", default_value = "8Mi", value_parser = parse_body_budget, global = true)]
    pub http_body_budget: usize,
    /// Bytes of POST bodies held at once from one client address (at least
    /// 2Mi; at most the budget). Default: a quarter of --http-body-budget,
    /// at least 2Mi. Through the API server's service proxy every CLI user
    /// shares one address.
    #[arg(long, env = "COFFER_HTTP_BODY_BUDGET_PER_CLIENT", value_parser = parse_body_budget, global = true)]
    pub http_body_budget_per_client: Option<usize>,
    /// Log filter (error, warn, info, debug, or a tracing directive).
    #[arg(long, env = "COFFER_LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "COFFER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// The key-encryption key that wraps the key ring (docs/kms.md).
    #[command(flatten)]
    pub kek: coffer_kms::KekArgs,
}

/// Parses `0`, `90s`, `720h`, `30d`, `1h30m`.
pub fn parse_key_kind(s: &str) -> Result<coffer_format::key::KeyKind, String> {
    s.parse()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 720h or 30d: {e}"))
}

/// A duration that must not be zero.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("a timeout cannot be 0".into()),
        d => Ok(d),
    }
}

/// Parses a size in bytes: `8388608`, `512Ki`, `8Mi`, `8MiB`, `1Gi`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let t = t.strip_suffix('B').unwrap_or(t);
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        _ => return Err(format!("{s:?} is not a size like 8Mi or 8388608")),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a size like 8Mi or 8388608"))
}

fn parse_body_budget(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if n < crate::http::MAX_BODY {
        return Err("the body budget must hold at least one 2Mi body".into());
    }
    Ok(n)
}

impl RunArgs {
    /// The HTTP limits these flags ask for.
    pub fn http_limits(&self) -> crate::http::Limits {
        crate::http::Limits {
            max_connections: self.http_max_connections as usize,
            max_connections_per_client: self.http_max_connections_per_client as usize,
            header_timeout: self.http_header_timeout,
            body_timeout: self.http_body_timeout,
            body_budget: self.http_body_budget,
            body_budget_per_client: self
                .http_body_budget_per_client
                .unwrap_or(self.http_body_budget / 4)
                .max(crate::http::MAX_BODY)
                .min(self.http_body_budget),
        }
    }
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
        assert_eq!(cli.run.key_kind, coffer_format::key::KeyKind::X25519);
        let pq =
            Cli::try_parse_from(["coffer-controller", "--key-kind", "mlkem768x25519"]).unwrap();
        assert_eq!(pq.run.key_kind, coffer_format::key::KeyKind::MlKem768X25519);
        assert!(Cli::try_parse_from(["coffer-controller", "--key-kind", "rsa"]).is_err());
        assert!(cli.run.namespaces.is_empty());
        assert!(cli.run.secret_types_allow.is_empty());
        assert_eq!(
            cli.run.secret_types_deny,
            [
                "kubernetes.io/service-account-token",
                "coffer.dev/sealing-key",
                "coffer.dev/bitnami-key"
            ]
        );
        // The HTTP limits' defaults are the ones documented on Limits.
        assert_eq!(cli.run.http_limits(), crate::http::Limits::default());
        assert_eq!(cli.run.probe_listen, "0.0.0.0:8081".parse().unwrap());
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
        let policy = crate::reconcile::secret_types::SecretTypePolicy::new(
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
        let policy = crate::reconcile::secret_types::SecretTypePolicy::new(
            &open.run.secret_types_allow,
            &open.run.secret_types_deny,
        );
        assert_eq!(
            policy.check(Some("kubernetes.io/service-account-token")),
            Ok(())
        );
    }

    #[test]
    fn http_limits_parse_and_refuse_what_would_open_the_hole_again() {
        assert_eq!(parse_size("8Mi").unwrap(), 8 << 20);
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("512Ki").unwrap(), 512 << 10);
        assert_eq!(parse_size("3145728").unwrap(), 3 << 20);
        assert!(parse_size("8MB").is_err());
        assert!(parse_size("lots").is_err());
        let cli = Cli::try_parse_from([
            "coffer-controller",
            "--http-max-connections=64",
            "--http-max-connections-per-client=0",
            "--http-header-timeout=2s",
            "--http-body-timeout=1m",
            "--http-body-budget=32Mi",
        ])
        .unwrap();
        let l = cli.run.http_limits();
        assert_eq!(
            (
                l.max_connections,
                l.max_connections_per_client,
                l.body_budget
            ),
            (64, 0, 32 << 20)
        );
        assert_eq!(
            (l.header_timeout, l.body_timeout),
            (Duration::from_secs(2), Duration::from_secs(60))
        );
        // A quarter of the budget per address, unless told.
        assert_eq!(l.body_budget_per_client, 8 << 20);
        let share = |flags: &[&str]| {
            let mut argv = vec!["coffer-controller"];
            argv.extend(flags);
            Cli::try_parse_from(argv)
                .unwrap()
                .run
                .http_limits()
                .body_budget_per_client
        };
        assert_eq!(share(&["--http-body-budget=4Mi"]), 2 << 20, "at least 2Mi");
        assert_eq!(
            share(&["--http-body-budget-per-client=6Mi"]),
            6 << 20,
            "as told"
        );
        assert_eq!(
            share(&["--http-body-budget-per-client=16Mi"]),
            8 << 20,
            "at most the budget"
        );
        for bad in [
            "--http-header-timeout=0",
            "--http-body-timeout=0",
            "--http-body-budget=1Mi",
            "--http-body-budget-per-client=1Mi",
            "--probe-listen=8081",
            "--http-max-connections=0",
        ] {
            assert!(
                Cli::try_parse_from(["coffer-controller", bad]).is_err(),
                "{bad} was accepted"
            );
        }
    }
}
