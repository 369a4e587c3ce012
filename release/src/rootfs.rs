//! The files of the controller image, the same for every platform but the
//! binary: the static `coffer-controller`, the TLS root certificates, and
//! `/etc/passwd` and `/etc/group` naming the nonroot user 65532 the
//! container runs as. No shell, no libc, no package manager: nothing a
//! static binary does not use. deploy/Dockerfile copies the same tree
//! (`coffer-release rootfs`) into a `scratch` image.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::oci::ExecConfig;
use crate::tarball::Entry;

/// The user and group the container runs as (distroless' `nonroot`; the
/// Deployment's runAsUser and runAsGroup).
pub const USER: &str = "65532:65532";
/// Where the controller binary is, and the entrypoint.
pub const ENTRYPOINT: &str = "/coffer-controller";
/// The CA bundle, where Debian, distroless and Go and OpenSSL look.
pub const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
";
const GROUP: &str = "root:x:0:
nobody:x:65534:
nonroot:x:65532:
";

/// Mozilla's TLS server roots as PEM, from the webpki-root-certs crate at
/// the version Cargo.lock pins (its checksum with it): the same list on
/// every machine, where the build host's own bundle would make the image
/// differ from one host to the next.
pub fn ca_bundle() -> String {
    let mut pem = String::from(
        "# Mozilla's trusted TLS server root certificates (the CCADB list),\n\
         # as the webpki-root-certs crate ships them; written by coffer-release.\n",
    );
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let b64 = STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// The image's files around `controller` (the binary's bytes).
pub fn files(controller: Vec<u8>) -> Vec<Entry> {
    vec![
        Entry::file(ENTRYPOINT.trim_start_matches('/'), 0o755, controller),
        Entry::dir("etc", 0o755),
        Entry::file("etc/passwd", 0o644, PASSWD),
        Entry::file("etc/group", 0o644, GROUP),
        Entry::dir("etc/ssl", 0o755),
        Entry::dir("etc/ssl/certs", 0o755),
        Entry::file(CA_BUNDLE, 0o644, ca_bundle()),
        // Sticky and world-writable, as everywhere; the chart mounts the
        // root filesystem read-only, so this is for `kubectl debug` copies.
        Entry::dir("tmp", 0o1777),
    ]
}

/// How the controller's container runs; `labels` are the image's
/// org.opencontainers.image.* labels.
pub fn exec_config(labels: BTreeMap<String, String>) -> ExecConfig {
    ExecConfig {
        user: USER.into(),
        entrypoint: vec![ENTRYPOINT.into()],
        env: vec![format!("SSL_CERT_FILE=/{CA_BUNDLE}")],
        working_dir: "/".into(),
        // The HTTP port and the probes' port.
        exposed_ports: BTreeMap::from([
            ("8080/tcp".to_string(), BTreeMap::new()),
            ("8081/tcp".to_string(), BTreeMap::new()),
        ]),
        labels,
    }
}
