//! The AWS KMS provider against moto's server (`moto_server`, moto 5.2.1),
//! started on loopback for each test and killed when the test ends.
//!
//! moto shows that the provider speaks the KMS API (Encrypt / Decrypt,
//! encryption context, pinned KeyId, errors) as the SDK sends it; it is
//! not AWS. moto 5.2.1 does not enforce key states (a disabled key or one
//! pending deletion still encrypts and decrypts) and answers a pinned-key
//! mismatch with a message-less AccessDeniedException where AWS says
//! IncorrectKeyException: `moto_does_not_enforce_key_states` and
//! `assert_moto_access_denied` pin both down, and the unit tests in
//! src/aws.rs classify the codes AWS sends.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use coffer_kms::{Kek, KekArgs, KmsError};

const ACCESS_KEY: &str = "AKIACOFFERTESTKEY";
const SECRET_KEY: &str = "coffer-test-secret-9f3e1c";
const REGION: &str = "us-east-1";
/// Set in the environment of a child test process (the default-chain
/// tests, which need their own environment).
const CHILD: &str = "COFFER_KMS_AWS_TEST_CHILD";

/// A moto server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Starts moto on a free port; tries another port if it exits at once
    /// (another process took the port between our probe and its bind).
    fn start() -> Moto {
        for _ in 0..3 {
            if let Some(moto) = Moto::try_start() {
                return moto;
            }
        }
        panic!(
            "moto_server exited three times before listening: is moto[server] 5.2.1 installed (tests/setup)?"
        )
    }

    fn try_start() -> Option<Moto> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server ({e}): install it with tests/setup (moto[server] 5.2.1)")
            });
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(_)) = moto.child.try_wait() {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(moto)
    }

    /// An SDK client for the test's own calls (CreateKey, DisableKey).
    fn admin(&self) -> Client {
        let config = aws_sdk_kms::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.url)
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        Client::from_conf(config)
    }

    fn args(&self, kek: &str) -> KekArgs {
        KekArgs {
            kek: Some(format!("awskms:{kek}").parse().unwrap()),
            kek_aws_region: Some(REGION.into()),
            kek_aws_endpoint: Some(self.url.clone()),
            ..KekArgs::default()
        }
    }

    async fn kek(&self, kek: &str) -> Arc<dyn Kek> {
        coffer_kms::connect_aws_with_static_credentials(&self.args(kek), ACCESS_KEY, SECRET_KEY)
            .await
            .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a symmetric key; returns its id and ARN.
async fn create_key(admin: &Client) -> (String, String) {
    let meta = admin
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    (meta.key_id, meta.arn.unwrap())
}

fn plaintext(len: usize) -> Vec<u8> {
    // Distinct, recognisable bytes: printable so that a leak into a message
    // would show as text.
    (0..len).map(|i| b"PLAINTEXTKEY"[i % 12]).collect()
}

/// The error's message names the KEK and holds nothing secret.
fn assert_clean(e: &KmsError, kek: &str) {
    let m = e.to_string();
    assert!(m.contains(kek), "{m}");
    for secret in [SECRET_KEY, "PLAINTEXTKEY", "UExBSU5URVhUS0VZ"] {
        assert!(!m.contains(secret), "{m} holds {secret}");
    }
}

fn assert_class(r: Result<impl std::fmt::Debug, KmsError>, want: &str, kek: &str) {
    let e = r.expect_err("expected an error");
    assert_eq!(e.outcome(), want, "{e}");
    assert_clean(&e, kek);
}

#[tokio::test]
async fn round_trip_by_key_id_arn_and_alias() {
    let moto = Moto::start();
    let admin = moto.admin();
    let (id, arn) = create_key(&admin).await;
    admin
        .create_alias()
        .alias_name("alias/coffer")
        .target_key_id(&id)
        .send()
        .await
        .unwrap();
    let by_id = moto.kek(&id).await;
    let by_arn = moto.kek(&arn).await;
    let by_alias = moto.kek("alias/coffer").await;
    assert_eq!(by_alias.reference().to_string(), "awskms:alias/coffer");
    for len in [32, 2500] {
        let key = plaintext(len);
        for (wrapper, opener) in [(&by_id, &by_alias), (&by_alias, &by_id), (&by_arn, &by_arn)] {
            let wrapped = wrapper.wrap(&key, "age1key").await.unwrap();
            assert!(!wrapped.windows(12).any(|w| w == b"PLAINTEXTKEY"));
            assert_eq!(*opener.unwrap(&wrapped, "age1key").await.unwrap(), key);
            assert!(opener.rewrap(&wrapped, "age1key").await.unwrap().is_none());
        }
    }
    // KMS encrypts at most 4 KiB: one clear error, before any request.
    assert_class(
        by_id.wrap(&plaintext(5000), "age1key").await,
        "key_unusable",
        &id,
    );
}

#[tokio::test]
async fn another_context_tampering_and_garbage_are_rejected() {
    let moto = Moto::start();
    let (id, _) = create_key(&moto.admin()).await;
    let kek = moto.kek(&id).await;
    let wrapped = kek.wrap(&plaintext(32), "age1one").await.unwrap();
    assert_class(kek.unwrap(&wrapped, "age1two").await, "rejected", &id);
    assert_class(kek.unwrap(&wrapped, "").await, "rejected", &id);
    // moto's blob: a 36-byte key id, a 12-byte IV, a 16-byte tag, then
    // AES-GCM ciphertext. Flipping a bit past the key id fails AES-GCM.
    for at in [36, 50, 70, wrapped.len() / 2, wrapped.len() - 1] {
        let mut bad = wrapped.clone();
        bad[at] ^= 0x01;
        assert_class(kek.unwrap(&bad, "age1one").await, "rejected", &id);
    }
    // Flipping one in the key id makes it name a key that does not exist:
    // moto answers AccessDeniedException without a message (see
    // a_blob_of_another_key_is_refused), AWS would answer
    // InvalidCiphertextException or AccessDeniedException "The ciphertext
    // refers to a customer master key ..." (both -> rejected).
    for at in [0, 10] {
        let mut bad = wrapped.clone();
        bad[at] ^= 0x01;
        assert_moto_access_denied(kek.unwrap(&bad, "age1one").await, &id);
    }
    for len in [wrapped.len() - 1, wrapped.len() / 2, 10, 1] {
        assert_class(
            kek.unwrap(&wrapped[..len], "age1one").await,
            "rejected",
            &id,
        );
    }
    assert_class(kek.unwrap(&[], "age1one").await, "rejected", &id);
    let huge: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    assert_class(kek.unwrap(&huge, "age1one").await, "rejected", &id);
    // The largest KMS accepts, still garbage: moto's answer, not ours.
    assert_class(kek.unwrap(&huge[..6144], "age1one").await, "rejected", &id);
    // The genuine blob still opens.
    assert_eq!(
        *kek.unwrap(&wrapped, "age1one").await.unwrap(),
        plaintext(32)
    );
}

/// Refused, not transient, and as moto 5.2.1 answers a ciphertext whose
/// key is not the pinned one (or does not exist): AccessDeniedException
/// with no message, hence `denied`. AWS answers IncorrectKeyException
/// (or AccessDeniedException "The ciphertext refers to a customer master
/// key ..."), which the unit tests in src/aws.rs map to `rejected`; the
/// provider does not guess at a message-less AccessDeniedException, which
/// on AWS means a missing kms:Decrypt permission.
fn assert_moto_access_denied(r: Result<impl std::fmt::Debug, KmsError>, kek: &str) {
    let e = r.expect_err("expected an error");
    assert!(!e.is_transient(), "{e}");
    assert_clean(&e, kek);
    assert!(
        e.outcome() == "denied"
            && e.to_string()
                .contains("AccessDeniedException: (no message)"),
        "moto's answer changed (AWS's IncorrectKeyException would be rejected): {e}"
    );
}

/// Decrypt pins KeyId: a blob of key A does not open with KEK B, even
/// though B's caller may decrypt A's blobs.
#[tokio::test]
async fn a_blob_of_another_key_is_refused() {
    let moto = Moto::start();
    let admin = moto.admin();
    let (a, _) = create_key(&admin).await;
    let (b, _) = create_key(&admin).await;
    let (kek_a, kek_b) = (moto.kek(&a).await, moto.kek(&b).await);
    let wrapped = kek_a.wrap(&plaintext(32), "age1key").await.unwrap();
    assert_moto_access_denied(kek_b.unwrap(&wrapped, "age1key").await, &b);
    assert_eq!(
        *kek_a.unwrap(&wrapped, "age1key").await.unwrap(),
        plaintext(32)
    );
}

#[tokio::test]
async fn a_missing_key_or_alias_is_unusable() {
    let moto = Moto::start();
    let (id, _) = create_key(&moto.admin()).await;
    let wrapped = moto
        .kek(&id)
        .await
        .wrap(&plaintext(32), "age1key")
        .await
        .unwrap();
    for missing in ["alias/missing", "0b1e2a3c-1111-2222-3333-444455556666"] {
        let kek = moto.kek(missing).await;
        assert_class(
            kek.wrap(&plaintext(32), "age1key").await,
            "key_unusable",
            missing,
        );
        assert_class(
            kek.unwrap(&wrapped, "age1key").await,
            "key_unusable",
            missing,
        );
    }
}

/// moto 5.2.1 keeps encrypting and decrypting with a disabled key and with
/// one pending deletion (AWS answers DisabledException and
/// KMSInvalidStateException, which src/aws.rs's unit tests map to
/// KeyUnusable). This pins moto's behaviour down: when a newer moto
/// enforces key states, this test fails and should then expect
/// `key_unusable` on wrap and unwrap.
#[tokio::test]
async fn moto_does_not_enforce_key_states() {
    let moto = Moto::start();
    let admin = moto.admin();
    let (disabled, _) = create_key(&admin).await;
    let (deleted, _) = create_key(&admin).await;
    let kek_disabled = moto.kek(&disabled).await;
    let kek_deleted = moto.kek(&deleted).await;
    let wrapped_disabled = kek_disabled.wrap(&plaintext(32), "age1key").await.unwrap();
    let wrapped_deleted = kek_deleted.wrap(&plaintext(32), "age1key").await.unwrap();
    admin.disable_key().key_id(&disabled).send().await.unwrap();
    admin
        .schedule_key_deletion()
        .key_id(&deleted)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    for (kek, wrapped, state) in [
        (&kek_disabled, &wrapped_disabled, "Disabled"),
        (&kek_deleted, &wrapped_deleted, "PendingDeletion"),
    ] {
        let id = &kek.reference().key;
        let meta = admin
            .describe_key()
            .key_id(id)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        assert_eq!(meta.key_state.unwrap().as_str(), state);
        let wrap = kek.wrap(&plaintext(32), "age1key").await;
        let unwrap = kek.unwrap(wrapped, "age1key").await;
        assert!(
            wrap.is_ok() && unwrap.is_ok(),
            "moto now refuses a {state} key (wrap: {:?}, unwrap: {:?}): make this test expect key_unusable",
            wrap.err(),
            unwrap.err().map(|e| e.to_string())
        );
    }
}

#[tokio::test]
async fn an_endpoint_that_is_down_is_unavailable_fast() {
    let port = free_port();
    let args = KekArgs {
        kek: Some("awskms:alias/coffer".parse().unwrap()),
        kek_aws_region: Some(REGION.into()),
        kek_aws_endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..KekArgs::default()
    };
    let kek = coffer_kms::connect_aws_with_static_credentials(&args, ACCESS_KEY, SECRET_KEY)
        .await
        .unwrap();
    let started = Instant::now();
    let e = kek.wrap(&plaintext(32), "age1key").await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_clean(&e, "alias/coffer");
    let e = kek.unwrap(&[1; 200], "age1key").await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_clean(&e, "alias/coffer");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "two failures took {took:?}");
}

#[tokio::test]
async fn a_bad_endpoint_flag_is_config() {
    let args = KekArgs {
        kek: Some("awskms:alias/coffer".parse().unwrap()),
        kek_aws_region: Some(REGION.into()),
        kek_aws_endpoint: Some("kms.internal:443".into()),
        ..KekArgs::default()
    };
    let e = coffer_kms::connect(&args).await.unwrap_err();
    assert_eq!(e.outcome(), "config", "{e}");
    assert!(e.to_string().contains("--kek-aws-endpoint"), "{e}");
}

/// Runs the test `name` again in a child process with only `env` for AWS
/// (no AWS_* of this machine, no profile files, no instance metadata):
/// the SDK's default chain reads the process environment, which tests
/// running in parallel threads must not change.
fn in_child(name: &str, env: &[(&str, &str)]) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads", "1"]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let nowhere: PathBuf = home.path().join("nowhere");
    cmd.env(CHILD, "1")
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", &nowhere)
        .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child test {name} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("1 passed"),
        "child test {name} did not run:\n{text}"
    );
}

#[tokio::test]
async fn the_default_chain_reads_credentials_and_region_from_the_environment() {
    const NAME: &str = "the_default_chain_reads_credentials_and_region_from_the_environment";
    if std::env::var_os(CHILD).is_none() {
        return in_child(
            NAME,
            &[
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                ("AWS_REGION", REGION),
            ],
        );
    }
    let moto = Moto::start();
    let (id, _) = create_key(&moto.admin()).await;
    let args = KekArgs {
        kek_aws_region: None,
        ..moto.args(&id)
    };
    let kek = coffer_kms::connect(&args).await.unwrap().unwrap();
    let wrapped = kek.wrap(&plaintext(32), "age1key").await.unwrap();
    assert_eq!(
        *kek.unwrap(&wrapped, "age1key").await.unwrap(),
        plaintext(32)
    );
}

#[tokio::test]
async fn no_credentials_or_no_region_is_config() {
    const NAME: &str = "no_credentials_or_no_region_is_config";
    if std::env::var_os(CHILD).is_none() {
        return in_child(NAME, &[]);
    }
    let moto = Moto::start();
    let (id, _) = create_key(&moto.admin()).await;
    // No region anywhere (the flag, the key, the environment).
    let no_region = KekArgs {
        kek_aws_region: None,
        ..moto.args(&id)
    };
    let e = coffer_kms::connect(&no_region).await.unwrap_err();
    assert_eq!(e.outcome(), "config", "{e}");
    assert!(e.to_string().contains("--kek-aws-region"), "{e}");
    // A region, no credentials: the first call says so.
    let kek = coffer_kms::connect(&moto.args(&id)).await.unwrap().unwrap();
    let started = Instant::now();
    let e = kek.wrap(&plaintext(32), "age1key").await.unwrap_err();
    assert_eq!(e.outcome(), "config", "{e}");
    assert!(e.to_string().contains("no AWS credentials"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
