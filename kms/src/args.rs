//! The KEK's flags, the same for the controller and the CLI. Secrets
//! (tokens, PINs) are read from files, never from arguments.

use std::path::PathBuf;

use crate::KekRef;

/// Where the key-encryption key is and how to reach it.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Key-encryption key (docs/kms.md)")]
pub struct KekArgs {
    /// The KEK that wraps the key ring's private keys: transit:NAME,
    /// pkcs11:LABEL or awskms:KEY (id, ARN or alias/NAME). Without it,
    /// key Secrets hold their keys in plain.
    #[arg(long, env = "COFFER_KEK", value_name = "PROVIDER:KEY")]
    pub kek: Option<KekRef>,

    /// Transit: the OpenBao/Vault address.
    #[arg(long, env = "COFFER_KEK_ADDRESS", value_name = "URL")]
    pub kek_address: Option<String>,

    /// Transit: the mount path of the Transit engine.
    #[arg(
        long,
        env = "COFFER_KEK_TRANSIT_MOUNT",
        default_value = "transit",
        value_name = "PATH"
    )]
    pub kek_transit_mount: String,

    /// Transit: log in through the Kubernetes auth method with this role,
    /// presenting the ServiceAccount token (--kek-sa-token-file).
    #[arg(long, env = "COFFER_KEK_KUBERNETES_ROLE", value_name = "ROLE")]
    pub kek_kubernetes_role: Option<String>,

    /// Transit: the mount path of the Kubernetes auth method.
    #[arg(
        long,
        env = "COFFER_KEK_KUBERNETES_MOUNT",
        default_value = "kubernetes",
        value_name = "PATH"
    )]
    pub kek_kubernetes_mount: String,

    /// Transit: the ServiceAccount token presented to the Kubernetes auth
    /// method (re-read at every login: the kubelet rotates it).
    #[arg(
        long,
        env = "COFFER_KEK_SA_TOKEN_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token",
        value_name = "FILE"
    )]
    pub kek_sa_token_file: PathBuf,

    /// Transit: a file holding an OpenBao/Vault token, instead of the
    /// Kubernetes auth method (re-read when the server refuses it).
    #[arg(long, env = "COFFER_KEK_TOKEN_FILE", value_name = "FILE")]
    pub kek_token_file: Option<PathBuf>,

    /// Transit: CA certificates (PEM) to trust for the server, besides the
    /// system's.
    #[arg(long, env = "COFFER_KEK_CA_FILE", value_name = "FILE")]
    pub kek_ca_file: Option<PathBuf>,

    /// PKCS#11: the module (shared library) of the token.
    #[arg(long, env = "COFFER_KEK_PKCS11_MODULE", value_name = "FILE")]
    pub kek_pkcs11_module: Option<PathBuf>,

    /// PKCS#11: the label of the token holding the AES key.
    #[arg(long, env = "COFFER_KEK_PKCS11_TOKEN", value_name = "LABEL")]
    pub kek_pkcs11_token: Option<String>,

    /// PKCS#11: a file holding the user PIN (mount it from a Secret).
    #[arg(long, env = "COFFER_KEK_PKCS11_PIN_FILE", value_name = "FILE")]
    pub kek_pkcs11_pin_file: Option<PathBuf>,

    /// AWS KMS: the region (else the SDK's chain: AWS_REGION, profile).
    #[arg(long, env = "COFFER_KEK_AWS_REGION", value_name = "REGION")]
    pub kek_aws_region: Option<String>,

    /// AWS KMS: another endpoint (a VPC endpoint; a test server).
    #[arg(long, env = "COFFER_KEK_AWS_ENDPOINT", value_name = "URL")]
    pub kek_aws_endpoint: Option<String>,
}
