//! coffer-format: Coffer's sealing format v1 and the keys it is built on.
//! Sealing and opening one value for one place, key ids, the key ring,
//! recipients files and key backups. It knows no Kubernetes types, no cache
//! and no command line: bytes and bindings in, bytes out. The build enforces
//! that: this crate does not depend on `kube` or `k8s-openapi`.

#![warn(missing_docs)]

pub mod backup;
pub mod envelope;
pub mod key;
pub mod keyring;
pub mod pq;
pub mod recipients;
mod x25519;

pub use envelope::{Binding, Location, OpenError, Scope, SealError, open, seal};
pub use key::{KeyId, PublicKey, SecretKey};
pub use keyring::Keyring;
pub use recipients::RecipientsFile;
