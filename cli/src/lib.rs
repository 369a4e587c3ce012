//! What the `coffer` commands share, as a library: SealedSecret documents
//! (read, and rewritten in place), the cluster and its flags, the checker
//! behind `coffer check`, `.coffer.yaml` rules and the repository they
//! trust, files in and out, and the one error type. A library so that the
//! fuzz targets (`fuzz/fuzz_targets/rules_and_check.rs`, `bitnami.rs`) run
//! the CLI's own code; the binary (src/main.rs, and one module per command
//! under src/commands/) is the only other user, and this is no public API.
//! Each module says why it is here.

pub mod check;
pub mod cluster;
pub mod documents;
pub mod error;
pub mod io;
pub(crate) mod repository;
pub mod rules;
