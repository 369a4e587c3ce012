//! The krew plugin manifest (`coffer.yaml`, krew.googlecode.com/v1alpha2
//! Plugin) for the CLI archives: krew downloads the archive for the
//! user's platform, checks its SHA-256, and links `coffer` as
//! `kubectl-coffer`, so `kubectl coffer seal ...` runs it.

use std::fmt::Write as _;

/// One archive: krew's `os`/`arch` labels, its URL and SHA-256 (hex).
pub struct Archive {
    pub os: String,
    pub arch: String,
    pub uri: String,
    pub sha256: String,
}

pub const SHORT_DESCRIPTION: &str = "Seal Secrets for GitOps; only the cluster opens them";

/// The manifest for version `version` (without the `v`), as YAML.
pub fn manifest(version: &str, homepage: &str, archives: &[Archive]) -> String {
    let mut y = format!(
        "apiVersion: krew.googlecode.com/v1alpha2
kind: Plugin
metadata:
  name: coffer
spec:
  version: v{version}
  homepage: {homepage}
  shortDescription: {SHORT_DESCRIPTION}
  description: |
    Seals a Kubernetes Secret with the cluster's public key into a
    SealedSecret that is safe to commit; only the Coffer controller in the
    cluster can open it. Also inspects sealed files, asks the controller
    whether they open, rotates keys and re-encrypts a repository.
  caveats: |
    The plugin needs the Coffer controller in the cluster
    (the chart coffer, or kubectl apply -k of its deploy/ directory).
    Start with: kubectl coffer recipients -w recipients.txt
  platforms:
"
    );
    for a in archives {
        let _ = write!(
            y,
            "  - selector:
      matchLabels:
        os: {os}
        arch: {arch}
    uri: {uri}
    sha256: {sha256}
    bin: coffer
    files:
      - from: coffer
        to: .
      - from: LICENSE
        to: .
",
            os = a.os,
            arch = a.arch,
            uri = a.uri,
            sha256 = a.sha256
        );
    }
    y
}
