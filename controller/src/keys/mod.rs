//! The key ring: its state in memory and the Secrets that hold it (`ring`),
//! the outcomes persisted on written Secrets (`attest`), and which live
//! SealedSecrets need each key (`users`).

pub mod attest;
pub(crate) mod manager;
pub mod reencrypt;
pub mod ring;
pub(crate) mod users;
