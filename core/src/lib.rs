//! coffer-core: Coffer's Kubernetes side, without a client. The
//! `SealedSecret` API types, the key Secrets of the key ring, reading Secret
//! manifests, and the transforms between Secrets and SealedSecrets (one
//! `unseal` for the controller, `/v1/verify` and offline recovery). The
//! sealing format itself is `coffer-format`; the controller and the CLI
//! fetch, call these, and write.
//!
//! Features: `bitnami` (off by default) adds bitnami sealed-secrets'
//! SealedSecrets, RSA keys and values, for moving a cluster to Coffer, and
//! with it the RSA stack (aws-lc-rs); `test-util` adds what only tests,
//! benchmarks and fuzz targets use (with `bitnami`: sealing a value the way
//! kubeseal does, generating an RSA key).

#![warn(missing_docs)]

pub mod api;
#[cfg(feature = "bitnami")]
pub mod bitnami;
pub mod inspect;
pub mod key_users;
pub mod manifest;
pub mod reason;
pub mod ring;
pub mod template;
pub mod transform;
pub mod wipe;

pub use api::{SealedSecret, SealedSecretSpec, SealedSecretStatus, SecretTemplate};
pub use reason::Reason;
