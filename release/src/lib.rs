//! coffer-release writes Coffer's release artifacts byte for byte the same
//! from the same inputs: the controller's OCI image layout (`oci`, with the
//! image's files from `rootfs`), the CLI's `.tar.gz` archives (`tarball`)
//! and the krew plugin manifest (`krew`). The scripts in `release/` build
//! the binaries and call it; nothing here needs a container engine.

pub mod krew;
pub mod oci;
pub mod rootfs;
pub mod tarball;

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `data`, as OCI names a blob.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// The SHA-256 of `data` in lowercase hex (SHA256SUMS, krew).
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// RFC 3339 UTC time of a Unix timestamp (SOURCE_DATE_EPOCH).
pub fn rfc3339(epoch: i64) -> anyhow::Result<String> {
    Ok(jiff::Timestamp::from_second(epoch)?.to_string())
}
