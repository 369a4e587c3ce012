//! coffer-core: Coffer's Kubernetes side, without a client. The
//! `SealedSecret` API types, the key Secrets of the key ring, reading Secret
//! manifests, and the transforms between Secrets and SealedSecrets (one
//! `unseal` for the controller, `/v1/verify` and offline recovery). The
//! sealing format itself is `coffer-format`; the controller and the CLI
//! fetch, call these, and write.

pub mod api;
pub mod bitnami;
pub mod key_users;
pub mod manifest;
pub mod template;
pub mod transform;
pub mod wipe;

pub use api::{SealedSecret, SealedSecretSpec, SealedSecretStatus, SecretTemplate};
