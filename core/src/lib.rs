//! coffer-core: the pure heart of Coffer. The v1 sealing format, keys and
//! key ids, recipients files, the `SealedSecret` API types, and the
//! transforms between Secrets and SealedSecrets. No network, no cluster: the
//! controller and the CLI fetch, call this crate, and write.

pub mod api;
pub mod backup;
pub mod envelope;
pub mod keyring;
pub mod keys;
pub mod manifest;
pub mod recipients;
pub mod transform;

pub use api::{SealedSecret, SealedSecretSpec, SealedSecretStatus, SecretTemplate};
pub use envelope::{Binding, Location, OpenError, Scope, SealError, open, seal};
pub use keyring::Keyring;
pub use keys::{KeyId, PublicKey, SecretKey};
pub use recipients::RecipientsFile;
