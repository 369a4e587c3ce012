//! Key-encryption keys (KEKs) for the key ring's Secrets.
//!
//! With a KEK configured, a key Secret holds its private key only as the
//! KEK's ciphertext (core's ring module, `wrapped-identity`) plus the KEK's
//! reference; the plaintext key never reaches the API server. The
//! controller unwraps each key once when it loads it and wraps every key
//! it creates; `coffer keys wrap` / `unwrap` move a ring in and out.
//!
//! Every provider is one [`Kek`]: wrap, unwrap and rewrap bytes, with the
//! key id as context (the provider binds it where it can: AWS KMS's
//! encryption context, PKCS#11 AES-GCM's associated data, Transit's
//! associated data). Whatever the provider, the caller also checks that the
//! key it unwrapped is the key the Secret names.
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use futures::future::BoxFuture;
use zeroize::Zeroizing;

mod args;
pub use args::KekArgs;
#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "pkcs11")]
mod pkcs11;
#[cfg(feature = "transit")]
mod transit;

/// The kinds of KEK Coffer can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// OpenBao or HashiCorp Vault's Transit secrets engine.
    Transit,
    /// An AES key in a PKCS#11 token (an HSM; SoftHSM2 in the tests).
    Pkcs11,
    /// AWS KMS (a symmetric customer-managed key).
    AwsKms,
}

impl Provider {
    /// Every provider, in the order the docs list them.
    pub const ALL: [Provider; 3] = [Provider::Transit, Provider::Pkcs11, Provider::AwsKms];

    /// The reference's prefix, and the `provider` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Transit => "transit",
            Provider::Pkcs11 => "pkcs11",
            Provider::AwsKms => "awskms",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which KEK wrapped a key: `PROVIDER:KEY`, as written in the key Secret's
/// `coffer.dev/kek` annotation and given to `--kek`.
///
/// - `transit:NAME`: the Transit key NAME (the mount and the server are
///   configuration, not part of the reference, so a ring survives a move of
///   the server);
/// - `pkcs11:LABEL`: the AES key with that label in the configured token;
/// - `awskms:KEY`: a key id, key ARN, alias name (`alias/...`) or alias ARN.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KekRef {
    /// The provider.
    pub provider: Provider,
    /// The key's name in the provider.
    pub key: String,
}

impl fmt::Display for KekRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.key)
    }
}

impl FromStr for KekRef {
    type Err = KmsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| KmsError::Config(format!("KEK reference {s:?}: {why}"));
        let (provider, key) = s.split_once(':').ok_or_else(|| {
            bad("expected PROVIDER:KEY (transit:NAME, pkcs11:LABEL or awskms:KEY)")
        })?;
        let provider = Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == provider)
            .ok_or_else(|| bad("the provider is one of transit, pkcs11, awskms"))?;
        if key.is_empty()
            || key.len() > 2048
            || key.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(bad(
                "the key name is empty, too long, or holds spaces or control characters",
            ));
        }
        Ok(KekRef {
            provider,
            key: key.to_string(),
        })
    }
}

/// Why a KEK operation failed. Messages name the KEK and the provider's
/// answer, never a key or a plaintext.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// The configuration is wrong or incomplete (a missing address, PIN
    /// file, module; a provider this build lacks).
    #[error("KEK configuration: {0}")]
    Config(String),
    /// The provider could not be reached or answered with a server error:
    /// retrying later may work.
    #[error("{kek}: the KMS is unavailable: {detail}")]
    Unavailable {
        /// The KEK.
        kek: KekRef,
        /// What failed (connection refused, timeout, 5xx, ...).
        detail: String,
    },
    /// The provider refused the caller: a bad or expired login, a revoked
    /// role, a wrong PIN, a missing permission.
    #[error("{kek}: the KMS refused access: {detail}")]
    Denied {
        /// The KEK.
        kek: KekRef,
        /// The provider's answer.
        detail: String,
    },
    /// The KEK does not exist, is disabled or scheduled for deletion, or
    /// cannot encrypt.
    #[error("{kek}: the KEK cannot be used: {detail}")]
    KeyUnusable {
        /// The KEK.
        kek: KekRef,
        /// The provider's answer.
        detail: String,
    },
    /// The provider rejected the ciphertext: tampered with, truncated,
    /// wrapped by another KEK, or under another context (key id).
    #[error("{kek}: the wrapped key was rejected: {detail}")]
    Rejected {
        /// The KEK.
        kek: KekRef,
        /// The provider's answer.
        detail: String,
    },
}

impl KmsError {
    /// Whether trying again later may succeed (an outage), as opposed to
    /// an answer that needs a person (a revoked role, a deleted KEK, a
    /// ciphertext that will never open).
    pub fn is_transient(&self) -> bool {
        matches!(self, KmsError::Unavailable { .. })
    }

    /// A short word for the metrics' `outcome` label.
    pub fn outcome(&self) -> &'static str {
        match self {
            KmsError::Config(_) => "config",
            KmsError::Unavailable { .. } => "unavailable",
            KmsError::Denied { .. } => "denied",
            KmsError::KeyUnusable { .. } => "key_unusable",
            KmsError::Rejected { .. } => "rejected",
        }
    }
}

/// What the KEK operations return.
pub type Result<T, E = KmsError> = std::result::Result<T, E>;

/// One key-encryption key. `context` is the key id of the key being
/// wrapped: a provider that can bind it to the ciphertext does, so a
/// wrapped key moved to another key's Secret does not open.
pub trait Kek: Send + Sync + fmt::Debug {
    /// The KEK this is.
    fn reference(&self) -> &KekRef;

    /// Encrypts `plaintext` (a private key) under the KEK's newest version.
    fn wrap<'a>(&'a self, plaintext: &'a [u8], context: &'a str) -> BoxFuture<'a, Result<Vec<u8>>>;

    /// Decrypts what [`Kek::wrap`] returned.
    fn unwrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        context: &'a str,
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>>>;

    /// Re-encrypts `wrapped` under the KEK's newest version, without the
    /// plaintext leaving the KMS where the provider can (Transit's
    /// `rewrap`). `Ok(None)`: it already is under the newest version.
    fn rewrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        context: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>>;
}

/// Connects to the KEK `args` configure; `Ok(None)` when no `--kek` is
/// given. Credentials are read (a login, a PIN file) here and whenever the
/// provider needs them again.
pub async fn connect(args: &KekArgs) -> Result<Option<Arc<dyn Kek>>> {
    let Some(reference) = args.kek.clone() else {
        return Ok(None);
    };
    let kek: Arc<dyn Kek> = match reference.provider {
        #[cfg(feature = "transit")]
        Provider::Transit => transit::connect(reference, args).await?,
        #[cfg(not(feature = "transit"))]
        Provider::Transit => not_built(&reference, "transit")?,
        #[cfg(feature = "pkcs11")]
        Provider::Pkcs11 => pkcs11::connect(reference, args).await?,
        #[cfg(not(feature = "pkcs11"))]
        Provider::Pkcs11 => not_built(&reference, "pkcs11")?,
        #[cfg(feature = "aws")]
        Provider::AwsKms => aws::connect(reference, args).await?,
        #[cfg(not(feature = "aws"))]
        Provider::AwsKms => not_built(&reference, "aws")?,
    };
    Ok(Some(kek))
}

/// Connects to the AWS KMS key `args.kek` names (`awskms:KEY`) with the
/// static credentials given here instead of the SDK's default chain: for a
/// KMS-compatible test server (moto) and for callers that hold their own
/// keys. The secret is handed to the SDK, never logged or put in errors.
#[cfg(feature = "aws")]
pub async fn connect_aws_with_static_credentials(
    args: &KekArgs,
    access_key_id: &str,
    secret_access_key: &str,
) -> Result<Arc<dyn Kek>> {
    let reference = match &args.kek {
        Some(r) if r.provider == Provider::AwsKms => r.clone(),
        other => {
            let given = other
                .as_ref()
                .map_or_else(|| "none".to_string(), ToString::to_string);
            return Err(KmsError::Config(format!(
                "static AWS credentials need an awskms:KEY --kek, not {given}"
            )));
        }
    };
    let credentials = aws_sdk_kms::config::Credentials::new(
        access_key_id,
        secret_access_key,
        None,
        None,
        "coffer-static",
    );
    aws::connect_with(reference, args, Some(credentials)).await
}

/// Runs `work` (a blocking KMS call: HTTP through ureq, PKCS#11) on
/// tokio's blocking pool; a call that panicked or was cancelled is an
/// outage to retry, not a crash.
#[cfg(any(feature = "transit", feature = "pkcs11"))]
pub(crate) async fn blocking<T: Send + 'static>(
    kek: &KekRef,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(KmsError::Unavailable {
            kek: kek.clone(),
            detail: format!("the KMS call did not finish: {e}"),
        })
    })
}

#[allow(
    dead_code,
    reason = "unused in a build with every provider's feature on"
)]
fn not_built(kek: &KekRef, feature: &str) -> Result<Arc<dyn Kek>> {
    Err(KmsError::Config(format!(
        "{kek}: this build of Coffer has no {} support (cargo feature `{feature}`)",
        kek.provider
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_print_back() {
        for s in [
            "transit:coffer",
            "pkcs11:coffer-kek",
            "awskms:alias/coffer",
            "awskms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ] {
            let r: KekRef = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        assert_eq!("awskms:arn:x".parse::<KekRef>().unwrap().key, "arn:x");
        for bad in [
            "coffer",
            "vault:x",
            "transit:",
            "transit:a b",
            "transit:a\nb",
            "",
        ] {
            let e = bad.parse::<KekRef>().unwrap_err().to_string();
            assert!(e.contains("KEK reference"), "{e}");
        }
    }
}
