//! Stock `age` (Go) and `rage` (Rust) decrypt a Coffer value with an
//! identity file written by Coffer, and show the binding header and value.
//! These tools are part of the test setup (`.ci/run` installs them): a
//! missing tool fails the test rather than skipping it.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_format::{Location, Scope, SecretKey, seal};

fn decrypt_with(tool: &str, dir: &Path, key: &SecretKey, extra: &SecretKey) {
    let id_path = dir.join("identity.txt");
    std::fs::write(
        &id_path,
        key.to_identity_file(&jiff::Timestamp::now()).as_bytes(),
    )
    .unwrap();
    let at = Location {
        namespace: "shop",
        name: "db",
        key: "password",
    };
    // Two recipients: the tool must find its X25519 stanza among them and
    // skip the coffer-kid stanzas it does not know.
    let recipients = [extra.public().clone(), key.public().clone()];
    let sealed = seal(
        b"correct horse battery staple",
        Scope::Strict,
        at,
        &recipients,
    )
    .unwrap();
    let ct_path = dir.join("value.age");
    std::fs::write(&ct_path, STANDARD.decode(&sealed).unwrap()).unwrap();

    let out = Command::new(tool)
        .arg("-d")
        .arg("-i")
        .arg(&id_path)
        .arg(&ct_path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "`{tool}` is required for this test and could not be run ({e}); .ci/run installs it"
            )
        });
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(
            "coffer.dev/v1\nscope: strict\nnamespace: shop\nname: db\nkey: password\npad: "
        ),
        "{tool} output did not start with the binding header"
    );
    assert!(text.ends_with("\n\ncorrect horse battery staple"));
}

#[test]
fn stock_age_decrypts_a_sealed_value() {
    let dir = tempfile::tempdir().unwrap();
    decrypt_with(
        "age",
        dir.path(),
        &SecretKey::generate(),
        &SecretKey::generate(),
    );
}

#[test]
fn rage_decrypts_a_sealed_value() {
    let dir = tempfile::tempdir().unwrap();
    decrypt_with(
        "rage",
        dir.path(),
        &SecretKey::generate(),
        &SecretKey::generate(),
    );
}
