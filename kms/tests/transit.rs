//! The Transit KEK against a real OpenBao dev server on loopback (`bao`,
//! installed by tests/setup). Each test starts its own server in a temporary
//! directory and kills it when done.
//!
//! The Kubernetes auth method needs a real API server's TokenReview (the
//! lead's end-to-end test covers it); its login path (`POST
//! /v1/auth/<mount>/login` with a role and a JWT, the lease, the re-login) is
//! tested here against OpenBao's JWT auth method, which takes the same
//! request.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use coffer_kms::{Kek, KekArgs, KmsError};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    SystemRandom::new().fill(&mut v).unwrap();
    v
}

fn random_hex(n: usize) -> String {
    random_bytes(n).iter().map(|b| format!("{b:02x}")).collect()
}

/// A `bao server -dev`, killed on drop.
struct Bao {
    child: Child,
    addr: String,
    root: String,
    dir: tempfile::TempDir,
}

impl Bao {
    fn start() -> Bao {
        match Command::new("bao").arg("version").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "`bao version` failed ({:?}): run tests/setup to install OpenBao",
                o.status
            ),
            Err(e) => panic!("OpenBao (`bao`) is not installed ({e}): run tests/setup"),
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = random_hex(16);
        let log = std::fs::File::create(dir.path().join("bao.log")).unwrap();
        let child = Command::new("bao")
            .args([
                "server",
                "-dev",
                "-dev-no-store-token",
                &format!("-dev-root-token-id={root}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting bao: run tests/setup");
        let mut bao = Bao {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            root,
            dir,
        };
        bao.wait_ready();
        bao.cli(&["secrets", "enable", "transit"]);
        bao.cli(&["write", "-f", "transit/keys/coffer"]);
        bao
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("bao exited ({status}): {}", self.log());
            }
            if self.run(&["status"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "bao did not start in 30 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("bao")
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", &self.root)
            .env("HOME", self.dir.path())
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .output()
            .unwrap()
    }

    /// Runs the `bao` CLI as root; its stdout, trimmed.
    fn cli(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "bao {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// A token with only `policy` (HCL).
    fn token_with(&self, name: &str, policy: &str) -> String {
        let path = self.file(&format!("{name}.hcl"), policy);
        self.cli(&["policy", "write", name, path.to_str().unwrap()]);
        self.cli(&[
            "token",
            "create",
            &format!("-policy={name}"),
            "-field=token",
        ])
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal}");
        if signal == "-STOP" {
            self.wait_stopped();
        }
    }

    /// Waits until every thread of the server is stopped (state `T` in
    /// /proc): `kill` returns once the signal is queued, and on a loaded
    /// machine a thread may still answer a request right after it.
    fn wait_stopped(&self) {
        let tasks = PathBuf::from(format!("/proc/{}/task", self.child.id()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let states: Vec<String> = std::fs::read_dir(&tasks)
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
                // The state follows the command name, which is in parentheses.
                .filter_map(|stat| Some(stat.rsplit_once(") ")?.1.chars().next()?.to_string()))
                .collect();
            if !states.is_empty() && states.iter().all(|s| s == "T" || s == "t") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server's threads are not all stopped 10 s after SIGSTOP: {states:?}; its log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn args(&self, kek: &str, token_file: &Path) -> KekArgs {
        KekArgs {
            kek: Some(kek.parse().unwrap()),
            kek_address: Some(self.addr.clone()),
            kek_token_file: Some(token_file.to_path_buf()),
            ..base_args()
        }
    }

    /// The KEK `kek`, with a token file holding `token`.
    async fn kek(&self, kek: &str, token: &str) -> Arc<dyn Kek> {
        let path = self.file(&format!("token-{}", random_hex(4)), &format!("{token}\n"));
        connect(&self.args(kek, &path)).await.unwrap()
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// KekArgs as clap builds them without flags (`Default` leaves the mounts
/// empty).
fn base_args() -> KekArgs {
    KekArgs {
        kek_transit_mount: "transit".into(),
        kek_kubernetes_mount: "kubernetes".into(),
        kek_sa_token_file: "/nonexistent/token".into(),
        ..KekArgs::default()
    }
}

async fn connect(args: &KekArgs) -> Result<Arc<dyn Kek>, KmsError> {
    Ok(coffer_kms::connect(args).await?.expect("a KEK"))
}

/// The error's message names the KEK and holds none of `secrets`.
fn assert_clean(e: &KmsError, kek: &str, secrets: &[&str]) {
    let msg = e.to_string();
    for s in secrets {
        assert!(!msg.contains(s), "{msg:?} holds a secret");
    }
    if !matches!(e, KmsError::Config(_)) {
        assert!(msg.contains(kek), "{msg:?} does not name {kek}");
    }
}

/// The plaintext as it could appear in a message.
fn shown(plaintext: &[u8]) -> Vec<String> {
    vec![B64.encode(plaintext), hex(plaintext)]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[track_caller]
fn expect_rejected(e: KmsError) -> KmsError {
    assert!(matches!(e, KmsError::Rejected { .. }), "{e:?}");
    assert!(!e.is_transient());
    e
}

#[tokio::test]
async fn round_trip_and_tampering() {
    let bao = Bao::start();
    let kek = bao.kek("transit:coffer", &bao.root).await;
    assert_eq!(kek.reference().to_string(), "transit:coffer");
    for len in [32, 2500] {
        let plaintext = random_bytes(len);
        let wrapped = kek.wrap(&plaintext, "age1key").await.unwrap();
        assert!(
            wrapped.starts_with(b"vault:v1:"),
            "{}",
            String::from_utf8_lossy(&wrapped)
        );
        assert_eq!(*kek.unwrap(&wrapped, "age1key").await.unwrap(), plaintext);
        let mut secrets: Vec<String> = shown(&plaintext);
        secrets.push(bao.root.clone());
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();

        let other = expect_rejected(kek.unwrap(&wrapped, "age1other").await.unwrap_err());
        assert_clean(&other, "transit:coffer", &secrets);
        let mut tampered = wrapped.clone();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        expect_rejected(kek.unwrap(&tampered, "age1key").await.unwrap_err());
        for cut in [4, 1, wrapped.len() - "vault:v1:".len()] {
            let e = kek
                .unwrap(&wrapped[..wrapped.len() - cut], "age1key")
                .await
                .unwrap_err();
            assert_clean(&expect_rejected(e), "transit:coffer", &secrets);
        }
        // Another key's ciphertext under this key's name.
        let mut v2 = b"vault:v2:".to_vec();
        v2.extend_from_slice(&wrapped[9..]);
        expect_rejected(kek.unwrap(&v2, "age1key").await.unwrap_err());
    }
}

#[tokio::test]
async fn adversarial_ciphertexts_give_one_clear_error() {
    let bao = Bao::start();
    let kek = bao.kek("transit:coffer", &bao.root).await;
    let mut huge_prefixed = b"vault:v1:".to_vec();
    huge_prefixed.resize(1 << 20, b'A');
    let mut big_prefixed = b"vault:v1:".to_vec();
    big_prefixed.resize(60 << 10, b'A');
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("1 MiB of garbage", random_bytes(1 << 20)),
        ("1 MiB with a prefix", huge_prefixed),
        ("60 KiB with a prefix", big_prefixed),
        (
            "not UTF-8",
            [&b"vault:v1:"[..], &[0xff, 0xfe, 0x00]].concat(),
        ),
        ("no prefix", b"garbage".to_vec()),
        ("quotes", br#"vault:v1:"},"x":{"#.to_vec()),
        ("only the prefix", b"vault:v1:".to_vec()),
        ("huge version", b"vault:v99999999999:AAAA".to_vec()),
    ];
    for (what, wrapped) in cases {
        let started = Instant::now();
        let e = kek.unwrap(&wrapped, "age1key").await.unwrap_err();
        assert!(matches!(e, KmsError::Rejected { .. }), "{what}: {e:?}");
        assert!(e.to_string().len() < 1000, "{what}: {e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        let r = kek.rewrap(&wrapped, "age1key").await.unwrap_err();
        assert!(
            matches!(r, KmsError::Rejected { .. }),
            "{what}: rewrap: {r:?}"
        );
    }
}

#[tokio::test]
async fn rotation_and_rewrap() {
    let bao = Bao::start();
    let kek = bao.kek("transit:coffer", &bao.root).await;
    let plaintext = random_bytes(2500);
    let v1 = kek.wrap(&plaintext, "age1key").await.unwrap();
    assert_eq!(
        kek.rewrap(&v1, "age1key").await.unwrap(),
        None,
        "already newest"
    );
    bao.cli(&["write", "-f", "transit/keys/coffer/rotate"]);
    let v2 = kek
        .rewrap(&v1, "age1key")
        .await
        .unwrap()
        .expect("a new version");
    assert!(
        v2.starts_with(b"vault:v2:"),
        "{}",
        String::from_utf8_lossy(&v2)
    );
    assert_eq!(*kek.unwrap(&v2, "age1key").await.unwrap(), plaintext);
    assert_eq!(
        *kek.unwrap(&v1, "age1key").await.unwrap(),
        plaintext,
        "v1 still opens"
    );
    assert_eq!(
        kek.rewrap(&v2, "age1key").await.unwrap(),
        None,
        "idempotent"
    );
    // The context stays bound through a rewrap.
    expect_rejected(kek.unwrap(&v2, "age1other").await.unwrap_err());
    expect_rejected(kek.rewrap(&v1, "age1other").await.unwrap_err());
    // New wraps use the newest version.
    assert!(
        kek.wrap(&plaintext, "age1key")
            .await
            .unwrap()
            .starts_with(b"vault:v2:")
    );
    // A version below min_decryption_version no longer opens: the key
    // (that version of it) is unusable, not the ciphertext bad.
    bao.cli(&[
        "write",
        "transit/keys/coffer/config",
        "min_decryption_version=2",
    ]);
    let e = kek.unwrap(&v1, "age1key").await.unwrap_err();
    assert!(matches!(e, KmsError::KeyUnusable { .. }), "{e:?}");
}

/// What the controller needs, and nothing more: `update` on the key's
/// encrypt and decrypt paths (no `create`: a deleted key is not silently
/// made again by a wrap; no `rewrap`: rewrap is a decrypt and an encrypt).
const LEAST_PRIVILEGE: &str = r#"
path "transit/encrypt/coffer" { capabilities = ["update"] }
path "transit/decrypt/coffer" { capabilities = ["update"] }
"#;

#[tokio::test]
async fn least_privilege_policy_is_enough() {
    let bao = Bao::start();
    let token = bao.token_with("coffer", LEAST_PRIVILEGE);
    let kek = bao.kek("transit:coffer", &token).await;
    let plaintext = random_bytes(32);
    let v1 = kek.wrap(&plaintext, "age1key").await.unwrap();
    assert_eq!(*kek.unwrap(&v1, "age1key").await.unwrap(), plaintext);
    bao.cli(&["write", "-f", "transit/keys/coffer/rotate"]);
    let v2 = kek.rewrap(&v1, "age1key").await.unwrap().unwrap();
    assert_eq!(*kek.unwrap(&v2, "age1key").await.unwrap(), plaintext);

    bao.cli(&["write", "-f", "transit/keys/other"]);
    let other = bao.kek("transit:other", &token).await;
    let e = other.wrap(&plaintext, "age1key").await.unwrap_err();
    assert!(matches!(e, KmsError::Denied { .. }), "{e:?}");
    assert_clean(&e, "transit:other", &[&token, &bao.root]);
}

#[tokio::test]
async fn token_file_is_read_again_after_a_refusal() {
    let bao = Bao::start();
    let first = bao.token_with("coffer", LEAST_PRIVILEGE);
    let file = bao.file("token", &first);
    let kek = connect(&bao.args("transit:coffer", &file)).await.unwrap();
    let plaintext = random_bytes(32);
    let wrapped = kek.wrap(&plaintext, "age1key").await.unwrap();

    bao.cli(&["token", "revoke", &first]);
    let second = bao.cli(&["token", "create", "-policy=coffer", "-field=token"]);
    std::fs::write(&file, format!("  {second}\n")).unwrap();
    assert_eq!(
        *kek.unwrap(&wrapped, "age1key").await.unwrap(),
        plaintext,
        "re-read the file"
    );

    // Revoked and not replaced: one re-read, then Denied.
    bao.cli(&["token", "revoke", &second]);
    let e = kek.unwrap(&wrapped, "age1key").await.unwrap_err();
    assert!(matches!(e, KmsError::Denied { .. }), "{e:?}");
    assert!(!e.is_transient());
    let mut secrets = shown(&plaintext);
    secrets.extend([first.clone(), second.clone(), bao.root.clone()]);
    assert_clean(
        &e,
        "transit:coffer",
        &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let e = kek.wrap(&plaintext, "age1key").await.unwrap_err();
    assert!(matches!(e, KmsError::Denied { .. }), "{e:?}");
    assert_clean(
        &e,
        "transit:coffer",
        &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    // Files that cannot be used are configuration errors naming the flag.
    let missing = bao.dir.path().join("missing");
    let e = connect(&bao.args("transit:coffer", &missing))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, KmsError::Config(m) if m.contains("--kek-token-file")),
        "{e:?}"
    );
    let empty = bao.file("empty", " \n");
    let e = connect(&bao.args("transit:coffer", &empty))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, KmsError::Config(m) if m.contains("empty")),
        "{e:?}"
    );
}

#[tokio::test]
async fn deleted_and_unusable_keys() {
    let bao = Bao::start();
    let plaintext = random_bytes(32);
    bao.cli(&["write", "-f", "transit/keys/gone"]);
    let root = bao.kek("transit:gone", &bao.root).await;
    let wrapped = root.wrap(&plaintext, "age1key").await.unwrap();
    bao.cli(&["write", "transit/keys/gone/config", "deletion_allowed=true"]);
    bao.cli(&["delete", "transit/keys/gone"]);
    let e = root.unwrap(&wrapped, "age1key").await.unwrap_err();
    assert!(matches!(e, KmsError::KeyUnusable { .. }), "{e:?}");
    assert!(e.to_string().contains("not found"), "{e}");
    assert_clean(&e, "transit:gone", &[&bao.root, &shown(&plaintext)[0]]);
    // Without `create`, a wrap under a deleted key is refused (OpenBao
    // answers 403 for a missing key when the token may not create it).
    let token = bao.token_with("gone", &LEAST_PRIVILEGE.replace("coffer", "gone"));
    let least = bao.kek("transit:gone", &token).await;
    let e = least.wrap(&plaintext, "age1key").await.unwrap_err();
    assert!(matches!(e, KmsError::Denied { .. }), "{e:?}");

    // Soft-deleted (OpenBao): neither wraps nor unwraps.
    bao.cli(&["write", "-f", "transit/keys/soft"]);
    let soft = bao.kek("transit:soft", &bao.root).await;
    let wrapped = soft.wrap(&plaintext, "age1key").await.unwrap();
    bao.cli(&["delete", "transit/keys/soft/soft-delete"]);
    let e = soft.unwrap(&wrapped, "age1key").await.unwrap_err();
    assert!(matches!(e, KmsError::KeyUnusable { .. }), "{e:?}");
    let e = soft.wrap(&plaintext, "age1key").await.unwrap_err();
    assert!(matches!(e, KmsError::KeyUnusable { .. }), "{e:?}");

    // Key types that cannot wrap with associated data.
    bao.cli(&["write", "transit/keys/signing", "type=ed25519"]);
    bao.cli(&["write", "transit/keys/rsa", "type=rsa-2048"]);
    for name in ["transit:signing", "transit:rsa"] {
        let e = bao
            .kek(name, &bao.root)
            .await
            .wrap(&plaintext, "age1key")
            .await
            .unwrap_err();
        assert!(matches!(e, KmsError::KeyUnusable { .. }), "{name}: {e:?}");
    }

    // No Transit engine at the mount.
    let path = bao.file("root", &bao.root);
    let args = KekArgs {
        kek_transit_mount: "elsewhere".into(),
        ..bao.args("transit:coffer", &path)
    };
    let e = connect(&args)
        .await
        .unwrap()
        .wrap(&plaintext, "k")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, KmsError::KeyUnusable { detail, .. } if detail.contains("--kek-transit-mount")),
        "{e:?}"
    );
}

#[tokio::test]
async fn derived_keys_bind_the_context_too() {
    let bao = Bao::start();
    bao.cli(&["write", "transit/keys/derived", "derived=true"]);
    let kek = bao.kek("transit:derived", &bao.root).await;
    let plaintext = random_bytes(32);
    let wrapped = kek.wrap(&plaintext, "age1key").await.unwrap();
    assert_eq!(*kek.unwrap(&wrapped, "age1key").await.unwrap(), plaintext);
    expect_rejected(kek.unwrap(&wrapped, "age1other").await.unwrap_err());
}

#[tokio::test]
async fn outage_is_unavailable_within_the_timeout() {
    let mut bao = Bao::start();
    let kek = bao.kek("transit:coffer", &bao.root).await;
    let plaintext = random_bytes(32);
    let wrapped = kek.wrap(&plaintext, "age1key").await.unwrap();

    // Sealed: 503.
    bao.cli(&["operator", "seal"]);
    let e = kek.unwrap(&wrapped, "age1key").await.unwrap_err();
    assert!(
        matches!(e, KmsError::Unavailable { .. }) && e.is_transient(),
        "{e:?}"
    );

    // Hung (stopped): the kernel accepts the connection, nothing answers.
    bao.signal("-STOP");
    let started = Instant::now();
    let e = kek.wrap(&plaintext, "age1key").await.unwrap_err();
    let took = started.elapsed();
    bao.signal("-CONT");
    assert!(matches!(e, KmsError::Unavailable { .. }), "{e:?}");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(60),
        "{took:?}: {e:?}; the server's log: {}",
        bao.log()
    );

    // Gone: connection refused, at once.
    bao.child.kill().unwrap();
    bao.child.wait().unwrap();
    let started = Instant::now();
    let e = kek.unwrap(&wrapped, "age1key").await.unwrap_err();
    assert!(
        matches!(e, KmsError::Unavailable { .. }) && e.is_transient(),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut secrets = shown(&plaintext);
    secrets.push(bao.root.clone());
    assert_clean(
        &e,
        "transit:coffer",
        &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}

#[tokio::test]
async fn settings_are_checked() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "s.token").unwrap();
    let ok = KekArgs {
        kek: Some("transit:coffer".parse().unwrap()),
        kek_address: Some("http://127.0.0.1:1".into()),
        kek_token_file: Some(file.path().to_path_buf()),
        ..base_args()
    };
    let cases = [
        (
            KekArgs {
                kek_address: Some("127.0.0.1:8200".into()),
                ..ok.clone()
            },
            "--kek-address",
        ),
        (
            KekArgs {
                kek_address: Some("http://h/path?x".into()),
                ..ok.clone()
            },
            "--kek-address",
        ),
        (
            KekArgs {
                kek_transit_mount: "a/../b".into(),
                ..ok.clone()
            },
            "--kek-transit-mount",
        ),
        (
            KekArgs {
                kek: Some("transit:a%2fb".parse().unwrap()),
                ..ok.clone()
            },
            "Transit key name",
        ),
        (
            KekArgs {
                kek_ca_file: Some("/nonexistent/ca.pem".into()),
                ..ok.clone()
            },
            "--kek-ca-file",
        ),
        (
            KekArgs {
                kek_ca_file: Some(file.path().to_path_buf()),
                ..ok.clone()
            },
            "--kek-ca-file",
        ),
        (
            KekArgs {
                kek_kubernetes_role: Some("coffer".into()),
                ..ok.clone()
            },
            "--kek-sa-token-file",
        ),
    ];
    for (args, flag) in cases {
        let e = connect(&args).await.unwrap_err();
        assert!(
            matches!(&e, KmsError::Config(m) if m.contains(flag) && m.starts_with("transit:")),
            "{flag}: {e:?}"
        );
        assert!(!e.to_string().contains("s.token"), "{e}");
    }
}

/// A CA file is added to Mozilla's roots: TLS to a server with a private CA.
#[tokio::test]
async fn a_ca_file_is_trusted() {
    let bao = Bao::start();
    let dir = bao.dir.path();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The dev server's own TLS mode writes its CA and serves HTTPS.
    let root = random_hex(16);
    let log = std::fs::File::create(dir.join("tls.log")).unwrap();
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).unwrap();
    let _server = KillOnDrop(
        Command::new("bao")
            .args([
                "server",
                "-dev-tls",
                "-dev-no-store-token",
                &format!("-dev-tls-cert-dir={}", certs.display()),
                &format!("-dev-root-token-id={root}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .current_dir(dir)
            .env("HOME", dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let ca = certs.join("vault-ca.pem");
    let address = format!("https://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = || {
        Command::new("bao")
            .args(["secrets", "enable", "transit"])
            .env("BAO_ADDR", &address)
            .env("BAO_TOKEN", &root)
            .env("BAO_CACERT", &ca)
            .env("HOME", dir)
            .output()
            .unwrap()
            .status
            .success()
    };
    while !(ca.exists() && ready()) {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(dir.join("tls.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let token = bao.file("tls-token", &root);
    let args = KekArgs {
        kek_address: Some(address.clone()),
        ..bao.args("transit:coffer", &token)
    };
    // Without the CA: the server's certificate is not trusted.
    let e = connect(&args)
        .await
        .unwrap()
        .wrap(b"k", "c")
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::Unavailable { .. }), "{e:?}");
    let kek = connect(&KekArgs {
        kek_ca_file: Some(ca),
        ..args
    })
    .await
    .unwrap();
    let wrapped = kek.wrap(b"k", "c").await.unwrap();
    assert_eq!(*kek.unwrap(&wrapped, "c").await.unwrap(), b"k");
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The token from BAO_TOKEN / VAULT_TOKEN and the address from BAO_ADDR /
/// VAULT_ADDR, in a child process (the environment is the process's).
#[test]
fn environment_token_and_address() {
    let bao = Bao::start();
    for scenario in ["bao", "vault", "no-token", "no-address"] {
        // The "bao" scenario revokes its token.
        let token = bao.cli(&["token", "create", "-field=token"]);
        let env: &[(&str, &str)] = match scenario {
            "bao" => &[("BAO_ADDR", &bao.addr), ("BAO_TOKEN", &token)],
            "vault" => &[("VAULT_ADDR", &bao.addr), ("VAULT_TOKEN", &token)],
            "no-token" => &[("BAO_ADDR", &bao.addr)],
            _ => &[("BAO_TOKEN", &token)],
        };
        let mut child = Command::new(std::env::current_exe().unwrap());
        child
            .args([
                "environment_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("COFFER_TEST_ENV_SCENARIO", scenario)
            .env("HOME", bao.dir.path());
        for var in [
            "BAO_ADDR",
            "VAULT_ADDR",
            "BAO_TOKEN",
            "VAULT_TOKEN",
            "BAO_CACERT",
            "VAULT_CACERT",
        ] {
            child.env_remove(var);
        }
        for (k, v) in env {
            child.env(k, v);
        }
        let out = child.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{scenario}: {text}");
        assert!(text.contains("1 passed"), "{scenario}: {text}");
        assert!(!text.contains(&token), "{scenario}: the token was printed");
    }
}

/// Runs one scenario of [`environment_token_and_address`]; does nothing
/// when run by itself.
#[tokio::test]
async fn environment_child() {
    let Ok(scenario) = std::env::var("COFFER_TEST_ENV_SCENARIO") else {
        return;
    };
    let args = KekArgs {
        kek: Some("transit:coffer".parse().unwrap()),
        ..base_args()
    };
    match scenario.as_str() {
        "bao" | "vault" => {
            let kek = connect(&args).await.unwrap();
            let plaintext = random_bytes(32);
            let wrapped = kek.wrap(&plaintext, "age1key").await.unwrap();
            assert_eq!(*kek.unwrap(&wrapped, "age1key").await.unwrap(), plaintext);
            // An environment token cannot be renewed: revoked -> Denied.
            if scenario == "bao" {
                let revoke = Command::new("bao")
                    .args(["token", "revoke", "-self"])
                    .output()
                    .unwrap();
                assert!(
                    revoke.status.success(),
                    "{}",
                    String::from_utf8_lossy(&revoke.stderr)
                );
                let e = kek.unwrap(&wrapped, "age1key").await.unwrap_err();
                assert!(matches!(e, KmsError::Denied { .. }), "{e:?}");
                let token = std::env::var("BAO_TOKEN").unwrap();
                assert_clean(&e, "transit:coffer", &[&token]);
            }
        }
        "no-token" => {
            let e = connect(&args).await.unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, KmsError::Config(_)), "{e:?}");
            assert!(
                msg.contains("--kek-token-file") && msg.contains("--kek-kubernetes-role"),
                "{msg}"
            );
        }
        "no-address" => {
            let e = connect(&args).await.unwrap_err();
            assert!(
                matches!(&e, KmsError::Config(m) if m.contains("--kek-address")),
                "{e:?}"
            );
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// A JWT signed by `key` for the JWT auth method.
fn jwt(key: &Ed25519KeyPair, subject: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = B64URL.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "sub": subject, "aud": "coffer", "iat": now, "nbf": now - 5, "exp": now + 3600,
    });
    let claims = B64URL.encode(claims.to_string());
    let signed = format!("{header}.{claims}");
    let signature = B64URL.encode(key.sign(signed.as_bytes()).as_ref());
    format!("{signed}.{signature}")
}

fn public_pem(key: &Ed25519KeyPair) -> String {
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(key.public_key().as_ref());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        B64.encode(spki)
    )
}

/// The `--kek-kubernetes-role` login (same request as the JWT auth
/// method's): log in at connect, again after a revocation (403) and when
/// the lease nears its end; a deleted role is Denied.
#[tokio::test]
async fn role_login_renews_and_fails_as_denied() {
    let bao = Bao::start();
    bao.token_with("coffer", LEAST_PRIVILEGE);
    let key = Ed25519KeyPair::from_seed_unchecked(&random_bytes(32)).unwrap();
    let pem = bao.file("jwt.pem", &public_pem(&key));
    bao.cli(&["auth", "enable", "-path=sa", "jwt"]);
    bao.cli(&[
        "write",
        "auth/sa/config",
        &format!("jwt_validation_pubkeys=@{}", pem.display()),
        "jwt_supported_algs=EdDSA",
    ]);
    let role = [
        "write",
        "auth/sa/role/coffer",
        "role_type=jwt",
        "user_claim=sub",
        "bound_audiences=coffer",
        "token_policies=coffer",
        "token_ttl=4s",
        "token_max_ttl=4s",
    ];
    bao.cli(&role);
    let sa_token = jwt(&key, "system:serviceaccount:coffer:coffer");
    let sa_file = bao.file("sa-token", &sa_token);
    let args = KekArgs {
        kek: Some("transit:coffer".parse().unwrap()),
        kek_address: Some(bao.addr.clone()),
        kek_kubernetes_role: Some("coffer".into()),
        kek_kubernetes_mount: "sa".into(),
        kek_sa_token_file: sa_file.clone(),
        ..base_args()
    };
    let kek = connect(&args).await.unwrap();
    let plaintext = random_bytes(2500);
    let wrapped = kek.wrap(&plaintext, "age1key").await.unwrap();

    // Every token of the auth method revoked: a 403, a new login.
    bao.cli(&["token", "revoke", "-mode=path", "auth/sa"]);
    assert_eq!(*kek.unwrap(&wrapped, "age1key").await.unwrap(), plaintext);
    // Past the lease (4 s; renewed after 3 s).
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(*kek.unwrap(&wrapped, "age1key").await.unwrap(), plaintext);

    // The role deleted: the login is refused -> Denied.
    bao.cli(&["delete", "auth/sa/role/coffer"]);
    bao.cli(&["token", "revoke", "-mode=path", "auth/sa"]);
    let e = kek.unwrap(&wrapped, "age1key").await.unwrap_err();
    assert!(matches!(e, KmsError::Denied { .. }), "{e:?}");
    let mut secrets = shown(&plaintext);
    secrets.extend([sa_token.clone(), bao.root.clone()]);
    assert_clean(
        &e,
        "transit:coffer",
        &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    // A token the auth method does not accept: Denied at connect.
    bao.cli(&role);
    let other = Ed25519KeyPair::from_seed_unchecked(&random_bytes(32)).unwrap();
    std::fs::write(&sa_file, jwt(&other, "system:serviceaccount:coffer:coffer")).unwrap();
    let e = connect(&args).await.unwrap_err();
    assert!(matches!(e, KmsError::Denied { .. }), "{e:?}");
    std::fs::write(&sa_file, &sa_token).unwrap();
    connect(&args).await.unwrap();
    let e = connect(&KekArgs {
        kek_kubernetes_mount: "nowhere".into(),
        ..args
    })
    .await
    .unwrap_err();
    assert!(matches!(e, KmsError::Denied { .. }), "{e:?}");
}
