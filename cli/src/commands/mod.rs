//! The commands, one module each: each takes its parsed arguments (and,
//! when it talks to the cluster, the target its cluster flags name) and
//! does the work. Here, in the binary, is what one command alone uses; what
//! several share, and what the fuzz targets run, is the library
//! (`coffer_cli`: documents, the cluster, the checker, files and errors).
//!
//! A command uses another only for that command's own act: `rotate`
//! requests a key as `keys` does and reads `--timeout` as `seal` reads
//! periods; `keys restore` opens a backup as `recover` does.

pub(crate) mod check;
pub(crate) mod convert;
pub(crate) mod inspect;
pub(crate) mod kek;
pub(crate) mod keygen;
pub(crate) mod keys;
pub(crate) mod recipients;
pub(crate) mod recover;
pub(crate) mod rotate;
pub(crate) mod seal;
pub(crate) mod verify;
pub(crate) mod web;
pub(crate) mod wire;
