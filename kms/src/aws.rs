//! AWS KMS: a symmetric customer-managed key, through the official SDK.
//!
//! - wrap = `Encrypt` with `KeyId` = the reference's key (id, ARN, alias
//!   name or alias ARN) and the encryption context
//!   `{"coffer.dev/key-id": context}`; the stored bytes are the
//!   `CiphertextBlob`.
//! - unwrap = `Decrypt` with the same encryption context and `KeyId`
//!   pinned, so that a blob of another KMS key is refused rather than
//!   opened with whatever key it names.
//! - rewrap: AWS rotates a key's material behind the same key id and keeps
//!   every older material to decrypt, so there is no newer version to move
//!   to: always `Ok(None)`. Moving to another KMS key is
//!   `coffer keys wrap --kek awskms:NEW` (unwrap, then wrap by the caller).
//!
//! Credentials come from the SDK's default chain (environment, profile,
//! web identity token file as with EKS IRSA, the container credentials of
//! EKS Pod Identity, IMDS); the region from `--kek-aws-region`, else the
//! key ARN, else the chain. Every call has a connect and an operation
//! timeout, and the SDK's standard retry is bounded (three attempts, short
//! back-off), so an unreachable KMS is `Unavailable` within seconds.
//!
//! The plaintext is handed to the SDK as a `Blob` it owns and serialises
//! (base64 in a JSON body); those buffers, and the response body that
//! carries an unwrapped key, are the SDK's and are not zeroised. What this
//! module keeps (the returned plaintext) is `Zeroizing`.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::Credentials;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use futures::future::BoxFuture;
use zeroize::Zeroizing;

use crate::{Kek, KekArgs, KekRef, KmsError, Result};

/// The encryption context's key; its value is the Coffer key id.
const CONTEXT_KEY: &str = "coffer.dev/key-id";
/// What `Encrypt` accepts (KMS's limit for a symmetric key).
const MAX_PLAINTEXT: usize = 4096;
/// What `Decrypt` accepts (`CiphertextBlob` is at most 6144 bytes).
const MAX_CIPHERTEXT: usize = 6144;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(25);
const MAX_ATTEMPTS: u32 = 3;

/// A KMS key, reached through one SDK client.
pub(crate) struct AwsKek {
    reference: KekRef,
    client: Client,
}

impl fmt::Debug for AwsKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKek")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

/// Connects with the SDK's default credential chain.
pub(crate) async fn connect(reference: KekRef, args: &KekArgs) -> Result<Arc<dyn Kek>> {
    connect_with(reference, args, None).await
}

/// Connects with `credentials` instead of the default chain when given.
/// Nothing is sent yet: a wrong key or missing credentials show at the
/// first wrap or unwrap.
pub(crate) async fn connect_with(
    reference: KekRef,
    args: &KekArgs,
    credentials: Option<Credentials>,
) -> Result<Arc<dyn Kek>> {
    let endpoint = args
        .kek_aws_endpoint
        .as_deref()
        .map(|e| check_endpoint(&reference, e))
        .transpose()?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let retries = RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(2));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts)
        .retry_config(retries);
    if let Some(region) = args
        .kek_aws_region
        .clone()
        .or_else(|| arn_region(&reference.key))
    {
        loader = loader.region(Region::new(region));
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(KmsError::Config(format!(
            "{reference}: no AWS region: pass --kek-aws-region, set AWS_REGION, or name the key by its ARN"
        )));
    }
    if sdk.credentials_provider().is_none() {
        return Err(KmsError::Config(format!(
            "{reference}: no AWS credentials provider"
        )));
    }
    let mut config = aws_sdk_kms::config::Builder::from(&sdk);
    // On the KMS client only: STS (web identity) keeps its own endpoint.
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    Ok(Arc::new(AwsKek {
        reference,
        client: Client::from_conf(config.build()),
    }))
}

fn check_endpoint(kek: &KekRef, endpoint: &str) -> Result<String> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .unwrap_or_default();
    if rest.is_empty() || rest.starts_with('/') || endpoint.chars().any(char::is_whitespace) {
        return Err(KmsError::Config(format!(
            "{kek}: --kek-aws-endpoint {endpoint:?} is not an http(s) URL"
        )));
    }
    Ok(endpoint.to_string())
}

/// The region of a key or alias ARN (`arn:PARTITION:kms:REGION:...`).
fn arn_region(key: &str) -> Option<String> {
    let mut parts = key.split(':');
    let (Some("arn"), Some(_), Some("kms"), Some(region)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!region.is_empty()).then(|| region.to_string())
}

impl Kek for AwsKek {
    fn reference(&self) -> &KekRef {
        &self.reference
    }

    fn wrap<'a>(&'a self, plaintext: &'a [u8], context: &'a str) -> BoxFuture<'a, Result<Vec<u8>>> {
        Box::pin(async move {
            if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
                return Err(KmsError::KeyUnusable {
                    kek: self.reference.clone(),
                    detail: format!(
                        "KMS encrypts 1 to {MAX_PLAINTEXT} bytes, this key is {} bytes",
                        plaintext.len()
                    ),
                });
            }
            let output = self
                .client
                .encrypt()
                .key_id(&self.reference.key)
                .plaintext(Blob::new(plaintext.to_vec()))
                .encryption_context(CONTEXT_KEY, context)
                .send()
                .await
                .map_err(|e| classify(&self.reference, Op::Encrypt, &e))?;
            match output.ciphertext_blob {
                Some(blob) if !blob.as_ref().is_empty() => Ok(blob.into_inner()),
                _ => Err(KmsError::Unavailable {
                    kek: self.reference.clone(),
                    detail: "Encrypt answered without a CiphertextBlob".into(),
                }),
            }
        })
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        context: &'a str,
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>>> {
        Box::pin(async move {
            if wrapped.is_empty() || wrapped.len() > MAX_CIPHERTEXT {
                return Err(KmsError::Rejected {
                    kek: self.reference.clone(),
                    detail: format!(
                        "a KMS ciphertext is 1 to {MAX_CIPHERTEXT} bytes, this one is {} bytes",
                        wrapped.len()
                    ),
                });
            }
            let output = self
                .client
                .decrypt()
                .key_id(&self.reference.key)
                .ciphertext_blob(Blob::new(wrapped.to_vec()))
                .encryption_context(CONTEXT_KEY, context)
                .send()
                .await
                .map_err(|e| classify(&self.reference, Op::Decrypt, &e))?;
            match output.plaintext {
                Some(blob) => Ok(Zeroizing::new(blob.into_inner())),
                None => Err(KmsError::Unavailable {
                    kek: self.reference.clone(),
                    detail: "Decrypt answered without a Plaintext".into(),
                }),
            }
        })
    }

    /// Always `Ok(None)`: AWS KMS rotates a key's material behind the same
    /// key id and decrypts older blobs with their own material, so a blob
    /// is never under an older version of the KEK that could be retired.
    /// (`ReEncrypt` to the same key would only produce an equivalent blob,
    /// and needs a further permission.)
    fn rewrap<'a>(
        &'a self,
        _wrapped: &'a [u8],
        _context: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async { Ok(None) })
    }
}

/// The operation that failed: what an unknown client error means depends
/// on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Encrypt,
    Decrypt,
}

/// What an SDK error means for Coffer. The detail is the SDK's account of
/// it (codes, messages, the connection error): requests' bodies, and so
/// plaintexts, never appear in it.
pub(crate) fn classify<E, R>(kek: &KekRef, op: Op, err: &SdkError<E, R>) -> KmsError
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: fmt::Debug + 'static,
{
    let kek = kek.clone();
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("unknown error");
            let detail = format!("{code}: {}", e.message().unwrap_or("(no message)"));
            classify_code(kek, op, code, detail)
        }
        SdkError::TimeoutError(_) => KmsError::Unavailable {
            kek,
            detail: format!("no answer within the timeout: {}", chain(err)),
        },
        SdkError::DispatchFailure(dispatch) => match dispatch
            .as_connector_error()
            .and_then(|c| credentials_error(c))
        {
            Some(cred) => classify_credentials(kek, cred),
            None => KmsError::Unavailable {
                kek,
                detail: chain(err),
            },
        },
        SdkError::ConstructionFailure(_) => KmsError::Config(format!("{kek}: {}", chain(err))),
        // An unreadable answer (a proxy's error page, a cut connection).
        _ => KmsError::Unavailable {
            kek,
            detail: chain(err),
        },
    }
}

/// An error and its causes, by their messages (`a: b: c`), without the
/// Debug dump the SDK's own formatter adds.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let message = e.to_string();
        if !out.contains(&message) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&message);
        }
        next = e.source();
    }
    out
}

/// The message AWS gives when the ciphertext names a KMS key the
/// caller cannot use: with `KeyId` pinned, a blob of another key.
const OTHER_KEY_MESSAGE: &str = "The ciphertext refers to a customer master key";

fn classify_code(kek: KekRef, op: Op, code: &str, detail: String) -> KmsError {
    match code {
        "DisabledException"
        | "KMSInvalidStateException"
        | "NotFoundException"
        | "KeyUnavailableException"
        | "InvalidKeyUsageException" => KmsError::KeyUnusable { kek, detail },
        "InvalidCiphertextException" | "IncorrectKeyException" => {
            KmsError::Rejected { kek, detail }
        }
        "AccessDeniedException" if op == Op::Decrypt && detail.contains(OTHER_KEY_MESSAGE) => {
            KmsError::Rejected { kek, detail }
        }
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationToken" => KmsError::Denied { kek, detail },
        "KMSInternalException"
        | "KMSInternalFailure"
        | "DependencyTimeoutException"
        | "ThrottlingException"
        | "ServiceUnavailableException"
        | "InternalFailure"
        | "LimitExceededException" => KmsError::Unavailable { kek, detail },
        _ if op == Op::Decrypt => KmsError::Rejected { kek, detail },
        _ => KmsError::KeyUnusable { kek, detail },
    }
}

/// The credential chain's error behind a dispatch failure, if that is why.
fn credentials_error<'e>(err: &'e (dyn StdError + 'static)) -> Option<&'e CredentialsError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(cred) = e.downcast_ref::<CredentialsError>() {
            return Some(cred);
        }
        next = e.source();
    }
    None
}

/// What STS and the token services answer when they refuse a role.
const DENIED_WORDS: [&str; 5] = [
    "AccessDenied",
    "InvalidIdentityToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "not authorized",
];

pub(crate) fn classify_credentials(kek: KekRef, err: &CredentialsError) -> KmsError {
    let detail = chain(err);
    match err {
        CredentialsError::CredentialsNotLoaded(_) => KmsError::Config(format!(
            "{kek}: no AWS credentials: the SDK's chain (AWS_ACCESS_KEY_ID, profile, web identity token \
             as with EKS IRSA, EKS Pod Identity, instance metadata) found none: {detail}"
        )),
        CredentialsError::InvalidConfiguration(_) => KmsError::Config(format!(
            "{kek}: the AWS credentials' configuration: {detail}"
        )),
        CredentialsError::ProviderError(_) if DENIED_WORDS.iter().any(|w| detail.contains(w)) => {
            KmsError::Denied { kek, detail }
        }
        _ => KmsError::Unavailable { kek, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::error::CredentialsError;

    fn kek() -> KekRef {
        "awskms:alias/coffer".parse().unwrap()
    }

    /// The codes moto does not produce (it does not enforce key states,
    /// and answers a pinned-key mismatch with AccessDenied), classified as
    /// AWS sends them.
    #[test]
    fn codes_map_to_classes() {
        let cases = [
            ("DisabledException", Op::Encrypt, "key_unusable"),
            ("DisabledException", Op::Decrypt, "key_unusable"),
            ("KMSInvalidStateException", Op::Encrypt, "key_unusable"),
            ("KMSInvalidStateException", Op::Decrypt, "key_unusable"),
            ("NotFoundException", Op::Decrypt, "key_unusable"),
            ("AccessDeniedException", Op::Encrypt, "denied"),
            ("AccessDeniedException", Op::Decrypt, "denied"),
            ("UnrecognizedClientException", Op::Decrypt, "denied"),
            ("ExpiredTokenException", Op::Encrypt, "denied"),
            ("InvalidSignatureException", Op::Encrypt, "denied"),
            ("InvalidCiphertextException", Op::Decrypt, "rejected"),
            ("IncorrectKeyException", Op::Decrypt, "rejected"),
            ("KMSInternalException", Op::Encrypt, "unavailable"),
            ("DependencyTimeoutException", Op::Decrypt, "unavailable"),
            ("ValidationException", Op::Decrypt, "rejected"),
            ("ValidationException", Op::Encrypt, "key_unusable"),
        ];
        for (code, op, want) in cases {
            let got = classify_code(kek(), op, code, format!("{code}: x"));
            assert_eq!(got.outcome(), want, "{code} {op:?}: {got}");
        }
        let other = format!("AccessDeniedException: {OTHER_KEY_MESSAGE}, ...");
        assert_eq!(
            classify_code(kek(), Op::Decrypt, "AccessDeniedException", other).outcome(),
            "rejected"
        );
    }

    #[test]
    fn credential_failures_map_to_classes() {
        let none = CredentialsError::not_loaded("no providers in chain provided credentials");
        let e = classify_credentials(kek(), &none);
        assert_eq!(e.outcome(), "config", "{e}");
        assert!(e.to_string().contains("awskms:alias/coffer"), "{e}");
        let refused = CredentialsError::provider_error("InvalidIdentityToken: token expired");
        assert_eq!(classify_credentials(kek(), &refused).outcome(), "denied");
        let down = CredentialsError::provider_error("dispatch failure: connection refused");
        assert_eq!(classify_credentials(kek(), &down).outcome(), "unavailable");
        let slow = CredentialsError::provider_timed_out(Duration::from_secs(5));
        assert_eq!(classify_credentials(kek(), &slow).outcome(), "unavailable");
    }

    #[test]
    fn regions_come_from_arns_and_endpoints_are_urls() {
        assert_eq!(
            arn_region("arn:aws:kms:eu-west-1:111122223333:key/1234").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws:kms:us-east-2:111122223333:alias/x").as_deref(),
            Some("us-east-2")
        );
        assert_eq!(arn_region("alias/coffer"), None);
        assert_eq!(arn_region("1234abcd-12ab-34cd-56ef-1234567890ab"), None);
        assert!(check_endpoint(&kek(), "https://kms.eu-west-1.amazonaws.com").is_ok());
        assert!(check_endpoint(&kek(), "http://127.0.0.1:4566").is_ok());
        for bad in [
            "kms.example",
            "https://",
            "ftp://x",
            "http:///x",
            "https://a b",
        ] {
            let e = check_endpoint(&kek(), bad).unwrap_err().to_string();
            assert!(e.contains("--kek-aws-endpoint"), "{e}");
        }
    }
}
