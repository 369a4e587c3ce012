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

// ---------------------------------------------------------------------------
// Post-quantum (mlkem768x25519) values and Go age 1.3, both ways. Go age
// 1.3 is not Debian's: `tests/age-pq/build` (run by tests/run) installs it
// into <target>/age-pq/bin (or $COFFER_AGE_PQ_DIR/bin), beside stock age.

use coffer_format::envelope::{self, OpenError};
use coffer_format::key::{KeyKind, parse_identity_file};
use coffer_format::{Binding, Keyring};

/// A Go age 1.3 binary; a missing one fails the test.
fn go_age(tool: &str) -> Command {
    let dir = match std::env::var_os("COFFER_AGE_PQ_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("age-pq"),
    };
    let bin = dir.join("bin").join(tool);
    assert!(
        bin.is_file(),
        "Go age 1.3 (`{tool}`) is required for this test and is not at {}; run tests/age-pq/build",
        bin.display()
    );
    Command::new(bin)
}

fn run_ok(mut c: Command, what: &str) -> Vec<u8> {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const AT: Location<'static> = Location {
    namespace: "shop",
    name: "db",
    key: "password",
};

/// A fresh post-quantum key and the identity file Coffer writes for it.
fn pq_identity_file(dir: &Path) -> (SecretKey, std::path::PathBuf) {
    let key = SecretKey::generate_kind(KeyKind::MlKem768X25519);
    let id_path = dir.join("identity.txt");
    std::fs::write(
        &id_path,
        key.to_identity_file(&jiff::Timestamp::now()).as_bytes(),
    )
    .unwrap();
    (key, id_path)
}

#[test]
fn go_age_1_3_reads_coffer_post_quantum_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (key, id_path) = pq_identity_file(dir.path());
    let mut c = go_age("age-keygen");
    c.arg("-y").arg(&id_path);
    let printed = String::from_utf8(run_ok(c, "age-keygen -y")).unwrap();
    assert_eq!(printed.trim_end(), key.public().to_string());
    assert!(printed.starts_with("age1pq1"));
}

#[test]
fn go_age_1_3_decrypts_post_quantum_and_mixed_values() {
    let dir = tempfile::tempdir().unwrap();
    let (key, id_path) = pq_identity_file(dir.path());
    let other_pq = SecretKey::generate_kind(KeyKind::MlKem768X25519);
    let other_x = SecretKey::generate();
    for (what, recipients) in [
        (
            "post-quantum only",
            vec![other_pq.public().clone(), key.public().clone()],
        ),
        (
            "mixed with X25519",
            vec![
                other_x.public().clone(),
                key.public().clone(),
                other_pq.public().clone(),
            ],
        ),
    ] {
        let sealed = seal(
            b"correct horse battery staple",
            Scope::Strict,
            AT,
            &recipients,
        )
        .unwrap();
        let ct_path = dir.path().join("value.age");
        std::fs::write(&ct_path, STANDARD.decode(&sealed).unwrap()).unwrap();
        let mut c = go_age("age");
        c.arg("-d").arg("-i").arg(&id_path).arg(&ct_path);
        let text = String::from_utf8(run_ok(c, &format!("age 1.3 -d ({what})"))).unwrap();
        assert!(
            text.starts_with(
                "coffer.dev/v1\nscope: strict\nnamespace: shop\nname: db\nkey: password\npad: "
            ),
            "{what}: no binding header"
        );
        assert!(text.ends_with("\n\ncorrect horse battery staple"), "{what}");
    }
}

/// A Coffer v1 plaintext written by hand, as docs/format.md specifies it:
/// header, dots to 256 bytes, blank line, value.
fn hand_written_plaintext(value: &str) -> String {
    let head = "coffer.dev/v1\nscope: strict\nnamespace: shop\nname: db\nkey: password\n";
    let bare = head.len() + "pad: \n\n".len() + value.len();
    format!("{head}pad: {}\n\n{value}", ".".repeat(256 - bare))
}

#[test]
fn coffer_opens_what_go_age_1_3_encrypts_to_a_post_quantum_recipient() {
    let dir = tempfile::tempdir().unwrap();
    // The key is Go's: `age-keygen -pq` writes the identity file Coffer reads.
    let id_path = dir.path().join("go-identity.txt");
    let mut c = go_age("age-keygen");
    c.arg("-pq").arg("-o").arg(&id_path);
    run_ok(c, "age-keygen -pq");
    let file = std::fs::read_to_string(&id_path).unwrap();
    let keys = parse_identity_file(&file).unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key.kind(), KeyKind::MlKem768X25519);
    let go_public = file
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key as a comment");
    assert_eq!(key.public().to_string(), go_public);

    // Go age encrypts a binding header and value to the recipient.
    let plain_path = dir.path().join("plain");
    std::fs::write(&plain_path, hand_written_plaintext("from go")).unwrap();
    let ct_path = dir.path().join("value.age");
    let mut c = go_age("age");
    c.arg("-r")
        .arg(go_public)
        .arg("-o")
        .arg(&ct_path)
        .arg(&plain_path);
    run_ok(c, "age 1.3 -r age1pq1…");
    let ct = std::fs::read(&ct_path).unwrap();

    // Coffer's identity opens it, and the binding header parses and binds.
    let d = age::Decryptor::new_buffered(&ct[..]).unwrap();
    let mut r = d
        .decrypt(std::iter::once(key.identity()))
        .expect("Coffer's mlkem768x25519 identity unwraps Go's stanza");
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut plain).unwrap();
    let (binding, value) = envelope::parse_plaintext(&plain).unwrap();
    assert_eq!(binding, Binding::new(Scope::Strict, AT));
    assert_eq!(value, b"from go");

    // As a sealed value it is refused for what it lacks, not for its
    // cryptography: plain age writes no coffer-kid stanza (docs/format.md,
    // "Values without a key id are refused").
    let ring = Keyring::from_keys([key.clone()]);
    assert_eq!(
        coffer_format::open(&STANDARD.encode(&ct), AT, &ring).unwrap_err(),
        OpenError::NoKeyId
    );
}

/// Backups are plain age files: one Go age 1.3 encrypts to an admin's
/// post-quantum recipient opens with Coffer's backup reader.
#[test]
fn coffer_opens_a_backup_go_age_1_3_encrypts_to_a_post_quantum_admin() {
    let dir = tempfile::tempdir().unwrap();
    let admin = SecretKey::generate_kind(KeyKind::MlKem768X25519);
    let sealing = SecretKey::generate_kind(KeyKind::MlKem768X25519);
    let plain_path = dir.path().join("backup.txt");
    std::fs::write(
        &plain_path,
        format!(
            "# coffer: key={} state=usable\n{}\n",
            sealing.id(),
            sealing.to_secret_string().as_str()
        ),
    )
    .unwrap();
    let out = dir.path().join("backup.age");
    let mut c = go_age("age");
    c.arg("-a")
        .arg("-r")
        .arg(admin.public().to_string())
        .arg("-o")
        .arg(&out)
        .arg(&plain_path);
    run_ok(c, "age 1.3 -a -r age1pq1…");
    let text = coffer_format::backup::decrypt(&std::fs::read(&out).unwrap(), &[admin]).unwrap();
    let entries = coffer_format::backup::parse(&text, jiff::Timestamp::now()).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].key.id(), sealing.id());
    assert_eq!(entries[0].key.kind(), KeyKind::MlKem768X25519);
}
