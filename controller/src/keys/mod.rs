//! The key ring: its state in memory and the Secrets that hold it (`ring`),
//! the outcomes persisted on written Secrets (`attest`), and which live
//! SealedSecrets need each key (`users`), and the key-encryption key that
//! wraps them when one is configured (`kek`).

pub mod attest;
pub mod kek;
pub(crate) mod manager;
pub mod reencrypt;
pub mod ring;
pub(crate) mod users;
