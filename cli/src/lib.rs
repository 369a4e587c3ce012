//! The parts of the `coffer` CLI that read files: SealedSecret documents,
//! `.coffer.yaml` rules and `coffer check`, with the error, I/O and
//! recipients helpers they use. A library so that the fuzz targets
//! (`fuzz/fuzz_targets/rules_and_check.rs`, `bitnami.rs`) run the CLI's own
//! code; the binary (src/main.rs) is the only other user, and this is no
//! public API.

pub mod check;
pub mod cluster;
pub mod documents;
pub mod error;
pub mod io;
pub mod repository;
pub mod rules;
