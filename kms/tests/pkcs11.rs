//! The PKCS#11 KEK against a real SoftHSM2 token (tests/setup installs it).
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, when the library is first
//! initialised, and a process loads the library once: every test of this
//! binary therefore shares one token directory, set up before any test
//! touches PKCS#11, and each test works in tokens of its own (one token
//! label per test), so the tests run in parallel without seeing each
//! other's keys or logins. They take turns, though (`serial()`): SoftHSM2
//! rescans its token directory on every `C_GetSlotList`, and a rescan in
//! one thread fails another thread's calls now and then (CKR_GENERAL_ERROR,
//! CKR_SESSION_HANDLE_INVALID), which the test's own helper sessions would
//! run into.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use coffer_kms::{KekArgs, KmsError};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

/// The user PIN of every test token: distinctive, so that the tests can
/// assert that no message carries it.
const PIN: &str = "user-pin-5f1c93";
const SO_PIN: &str = "so-pin-8d20a4";
/// A plaintext no error message may show.
const MARKER: &[u8] = b"PLAINTEXT-MARKER-never-in-a-message";

/// Every token the tests use, one (or two) per test.
const TOKENS: &[&str] = &[
    "roundtrip",
    "tamper",
    "pin",
    "removed",
    "no-ops",
    "other-a",
    "other-b",
    "adversarial",
    "config",
];

const MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

struct Fixture {
    dir: tempfile::TempDir,
    module: PathBuf,
}

impl Fixture {
    fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    fn args(&self, kek: &str, token: &str) -> KekArgs {
        KekArgs {
            kek: Some(kek.parse().unwrap()),
            kek_pkcs11_module: Some(self.module.clone()),
            kek_pkcs11_token: Some(token.into()),
            kek_pkcs11_pin_file: Some(self.pin_file()),
            ..KekArgs::default()
        }
    }
}

/// The SoftHSM token directory with every test's token, and
/// `SOFTHSM2_CONF` pointing at it; made once per test binary.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let module = MODULES.iter().map(PathBuf::from).find(|p| p.is_file()).unwrap_or_else(|| {
            panic!("SoftHSM2's module (libsofthsm2.so) is not installed (looked in {MODULES:?}): run tests/setup")
        });
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        for label in TOKENS {
            let out = Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &conf)
                .args(["--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN])
                .output()
                .unwrap_or_else(|e| panic!("softhsm2-util cannot be run ({e}): run tests/setup"));
            assert!(out.status.success(), "softhsm2-util --init-token: {out:?}");
        }
        // The PIN file as a Secret mounts it: with a trailing newline.
        std::fs::write(dir.path().join("pin"), format!("{PIN}\n")).unwrap();
        set_softhsm2_conf(&conf);
        Fixture { dir, module }
    })
}

#[allow(
    unsafe_code,
    reason = "SOFTHSM2_CONF must be in this process's environment before SoftHSM initialises"
)]
fn set_softhsm2_conf(conf: &Path) {
    // SAFETY: called once, inside the fixture's OnceLock, which every test
    // enters before it does anything else: no other thread of this binary
    // reads the environment through libc (SoftHSM) before this returns, and
    // std's own readers are serialised with set_var by std's lock.
    unsafe { std::env::set_var("SOFTHSM2_CONF", conf) };
}

/// A logged-in read-write session on `token`, through the test's own
/// PKCS#11 context (the same library, already initialised or not).
fn admin(token: &str) -> Session {
    let fx = fixture();
    let ctx = Pkcs11::new(&fx.module).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == token)
        .unwrap_or_else(|| panic!("no token {token}"));
    let session = ctx.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::from(PIN))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login: {e}"),
    }
    session
}

/// Makes an AES-256 KEK labelled `label` in `token`, as an operator would:
/// sensitive, not extractable, for encryption and decryption only.
fn create_key(token: &str, label: &str, encrypt_decrypt: bool) {
    let session = admin(token);
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Encrypt(encrypt_decrypt),
                Attribute::Decrypt(encrypt_decrypt),
            ],
        )
        .unwrap();
}

fn destroy_key(token: &str, label: &str) {
    let session = admin(token);
    for key in session
        .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .unwrap()
    {
        session.destroy_object(key).unwrap();
    }
}

/// One test at a time in the token directory (see the top of the file).
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// Checks that the message of `e` carries neither PIN nor plaintext.
fn clean(e: &KmsError) -> String {
    let message = format!("{e} {e:?}");
    for secret in [PIN, SO_PIN, "wrong-pin-77a1e0"] {
        assert!(!message.contains(secret), "a PIN in {message}");
    }
    assert!(
        !message.contains(std::str::from_utf8(MARKER).unwrap()),
        "the plaintext in {message}"
    );
    message
}

fn plaintext(len: usize) -> Vec<u8> {
    MARKER.iter().copied().cycle().take(len).collect()
}

#[tokio::test]
async fn wraps_and_unwraps_short_and_long_keys() {
    let _serial = serial().await;
    let fx = fixture();
    create_key("roundtrip", "coffer-kek", true);
    let kek = coffer_kms::connect(&fx.args("pkcs11:coffer-kek", "roundtrip"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kek.reference().to_string(), "pkcs11:coffer-kek");
    for len in [32, 2_500] {
        let key = plaintext(len);
        let wrapped = kek.wrap(&key, "key-1").await.unwrap();
        assert!(wrapped.starts_with(b"c11\x01"));
        assert_eq!(wrapped.len(), 4 + 12 + len + 16);
        let again = kek.wrap(&key, "key-1").await.unwrap();
        assert_ne!(wrapped, again, "every wrap has a fresh IV");
        assert_eq!(
            kek.unwrap(&wrapped, "key-1").await.unwrap().as_slice(),
            key.as_slice()
        );
        assert_eq!(
            kek.unwrap(&again, "key-1").await.unwrap().as_slice(),
            key.as_slice()
        );
        // No versions to move to.
        assert!(kek.rewrap(&wrapped, "key-1").await.unwrap().is_none());
    }
    // A second connection (the CLI beside the controller) opens the same.
    let other = coffer_kms::connect(&fx.args("pkcs11:coffer-kek", "roundtrip"))
        .await
        .unwrap()
        .unwrap();
    let wrapped = kek.wrap(b"shared", "k").await.unwrap();
    assert_eq!(
        other.unwrap(&wrapped, "k").await.unwrap().as_slice(),
        b"shared"
    );
}

#[tokio::test]
async fn tampered_truncated_and_other_context_are_rejected() {
    let _serial = serial().await;
    let fx = fixture();
    create_key("tamper", "kek", true);
    let kek = coffer_kms::connect(&fx.args("pkcs11:kek", "tamper"))
        .await
        .unwrap()
        .unwrap();
    let wrapped = kek.wrap(&plaintext(64), "key-1").await.unwrap();
    // Every byte of header, IV, ciphertext and tag.
    for i in 0..wrapped.len() {
        let mut bad = wrapped.clone();
        bad[i] ^= 0x01;
        let e = kek.unwrap(&bad, "key-1").await.unwrap_err();
        assert!(matches!(e, KmsError::Rejected { .. }), "byte {i}: {e}");
        clean(&e);
    }
    for len in [
        wrapped.len() - 1,
        wrapped.len() - 16,
        4 + 12 + 16,
        4 + 12 + 15,
        10,
        3,
    ] {
        let e = kek.unwrap(&wrapped[..len], "key-1").await.unwrap_err();
        assert!(matches!(e, KmsError::Rejected { .. }), "{len} bytes: {e}");
        clean(&e);
    }
    let mut longer = wrapped.clone();
    longer.push(0);
    let e = kek.unwrap(&longer, "key-1").await.unwrap_err();
    assert!(matches!(e, KmsError::Rejected { .. }), "{e}");
    for context in ["key-2", "", "key-1 ", "key-"] {
        let e = kek.unwrap(&wrapped, context).await.unwrap_err();
        assert!(matches!(e, KmsError::Rejected { .. }), "{context:?}: {e}");
        let message = clean(&e);
        assert!(message.contains("pkcs11:kek"), "{message}");
    }
    // Still opens with the right context after all that.
    assert_eq!(
        kek.unwrap(&wrapped, "key-1").await.unwrap().as_slice(),
        plaintext(64).as_slice()
    );
}

#[tokio::test]
async fn adversarial_inputs_are_one_clear_error() {
    let _serial = serial().await;
    let fx = fixture();
    create_key("adversarial", "kek", true);
    let kek = coffer_kms::connect(&fx.args("pkcs11:kek", "adversarial"))
        .await
        .unwrap()
        .unwrap();
    let garbage: Vec<u8> = (0..1024 * 1024)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut headed = b"c11\x01".to_vec();
    headed.extend_from_slice(&garbage);
    let mut minimal = b"c11\x01".to_vec();
    minimal.extend_from_slice(&[0; 28]);
    for input in [
        &[][..],
        &garbage,
        &headed,
        &minimal,
        b"c11\x02aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let e = kek.unwrap(input, "key-1").await.unwrap_err();
        assert!(
            matches!(e, KmsError::Rejected { .. }),
            "{} bytes: {e}",
            input.len()
        );
        let message = clean(&e);
        assert!(message.len() < 500, "{message}");
    }
    // An empty plaintext and an empty context still round-trip.
    let wrapped = kek.wrap(b"", "").await.unwrap();
    assert!(kek.unwrap(&wrapped, "").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_wrong_pin_is_denied_without_showing_it() {
    let _serial = serial().await;
    let fx = fixture();
    create_key("pin", "kek", true);
    let wrong = fx.dir.path().join("wrong-pin");
    std::fs::write(&wrong, "wrong-pin-77a1e0\n").unwrap();
    let args = KekArgs {
        kek_pkcs11_pin_file: Some(wrong),
        ..fx.args("pkcs11:kek", "pin")
    };
    let e = coffer_kms::connect(&args).await.unwrap_err();
    assert!(matches!(e, KmsError::Denied { .. }), "{e}");
    assert!(!e.is_transient());
    let message = clean(&e);
    assert!(message.contains("--kek-pkcs11-pin-file"), "{message}");
    assert!(message.contains("pkcs11:kek"), "{message}");
    // The right PIN (with its newline trimmed) still works.
    coffer_kms::connect(&fx.args("pkcs11:kek", "pin"))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_removed_key_is_unusable() {
    let _serial = serial().await;
    let fx = fixture();
    create_key("removed", "kek", true);
    let kek = coffer_kms::connect(&fx.args("pkcs11:kek", "removed"))
        .await
        .unwrap()
        .unwrap();
    let wrapped = kek.wrap(&plaintext(32), "key-1").await.unwrap();
    destroy_key("removed", "kek");
    let e = kek.unwrap(&wrapped, "key-1").await.unwrap_err();
    assert!(matches!(e, KmsError::KeyUnusable { .. }), "{e}");
    clean(&e);
    let e = kek.wrap(&plaintext(32), "key-1").await.unwrap_err();
    assert!(matches!(e, KmsError::KeyUnusable { .. }), "{e}");
    clean(&e);
    let e = coffer_kms::connect(&fx.args("pkcs11:kek", "removed"))
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::KeyUnusable { .. }), "{e}");
    // A label nothing carries, in a token that exists.
    let e = coffer_kms::connect(&fx.args("pkcs11:never-made", "removed"))
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::KeyUnusable { .. }), "{e}");
}

#[tokio::test]
async fn a_key_that_may_not_encrypt_is_unusable() {
    let _serial = serial().await;
    let fx = fixture();
    create_key("no-ops", "kek", false);
    let e = coffer_kms::connect(&fx.args("pkcs11:kek", "no-ops"))
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::KeyUnusable { .. }), "{e}");
    let message = clean(&e);
    assert!(message.contains("CKA_ENCRYPT"), "{message}");
}

#[tokio::test]
async fn another_tokens_key_of_the_same_label_rejects() {
    let _serial = serial().await;
    let fx = fixture();
    create_key("other-a", "kek", true);
    create_key("other-b", "kek", true);
    let a = coffer_kms::connect(&fx.args("pkcs11:kek", "other-a"))
        .await
        .unwrap()
        .unwrap();
    let b = coffer_kms::connect(&fx.args("pkcs11:kek", "other-b"))
        .await
        .unwrap()
        .unwrap();
    let wrapped = a.wrap(&plaintext(32), "key-1").await.unwrap();
    let e = b.unwrap(&wrapped, "key-1").await.unwrap_err();
    assert!(matches!(e, KmsError::Rejected { .. }), "{e}");
    clean(&e);
    assert_eq!(
        a.unwrap(&wrapped, "key-1").await.unwrap().as_slice(),
        plaintext(32).as_slice()
    );
}

#[tokio::test]
async fn configuration_errors_name_the_flag() {
    let _serial = serial().await;
    let fx = fixture();
    create_key("config", "kek", true);
    let base = fx.args("pkcs11:kek", "config");
    let config = |e: KmsError, flag: &str| {
        assert!(matches!(e, KmsError::Config(_)), "{e}");
        let message = clean(&e);
        assert!(message.contains(flag), "{flag}: {message}");
    };
    let missing_module = KekArgs {
        kek_pkcs11_module: None,
        ..base.clone()
    };
    config(
        coffer_kms::connect(&missing_module).await.unwrap_err(),
        "--kek-pkcs11-module",
    );
    let missing_token = KekArgs {
        kek_pkcs11_token: None,
        ..base.clone()
    };
    config(
        coffer_kms::connect(&missing_token).await.unwrap_err(),
        "--kek-pkcs11-token",
    );
    let missing_pin = KekArgs {
        kek_pkcs11_pin_file: None,
        ..base.clone()
    };
    config(
        coffer_kms::connect(&missing_pin).await.unwrap_err(),
        "--kek-pkcs11-pin-file",
    );
    let no_module = KekArgs {
        kek_pkcs11_module: Some(fx.dir.path().join("no-such-module.so")),
        ..base.clone()
    };
    config(
        coffer_kms::connect(&no_module).await.unwrap_err(),
        "--kek-pkcs11-module",
    );
    let no_pin_file = KekArgs {
        kek_pkcs11_pin_file: Some(fx.dir.path().join("no-such-pin")),
        ..base.clone()
    };
    config(
        coffer_kms::connect(&no_pin_file).await.unwrap_err(),
        "--kek-pkcs11-pin-file",
    );
    let empty = fx.dir.path().join("empty-pin");
    std::fs::write(&empty, "\n").unwrap();
    let empty_pin = KekArgs {
        kek_pkcs11_pin_file: Some(empty),
        ..base.clone()
    };
    config(
        coffer_kms::connect(&empty_pin).await.unwrap_err(),
        "--kek-pkcs11-pin-file",
    );
    // A file that is not a PKCS#11 module: it fails to load, at start.
    let not_module = KekArgs {
        kek_pkcs11_module: Some(fx.pin_file()),
        ..base.clone()
    };
    let e = coffer_kms::connect(&not_module).await.unwrap_err();
    assert!(matches!(e, KmsError::Unavailable { .. }), "{e}");
    clean(&e);
    // A token label no slot carries.
    let no_token = KekArgs {
        kek_pkcs11_token: Some("no-such-token".into()),
        ..base.clone()
    };
    let e = coffer_kms::connect(&no_token).await.unwrap_err();
    assert!(matches!(e, KmsError::KeyUnusable { .. }), "{e}");
    assert!(clean(&e).contains("no-such-token"));
    coffer_kms::connect(&base).await.unwrap().unwrap();
}
