//! docs/kms.md end to end: a key ring wrapped by a real OpenBao's Transit
//! engine, the controller logging in with its ServiceAccount token through
//! OpenBao's Kubernetes auth method (checked by the test API server's
//! TokenReview), the CLI moving a ring in and out, and what an outage does.
#![allow(
    clippy::too_many_lines,
    reason = "an end-to-end scenario reads top to bottom, one step after another"
)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use coffer_core::SealedSecret;
use coffer_core::manifest::read_secrets;
use coffer_core::ring::{KEY_ID_LABEL, WRAPPED_IDENTITY_KEY};
use coffer_core::transform::seal_secret;
use coffer_format::{PublicKey, Scope, SecretKey};
use coffer_test_support::openbao::OpenBao;
use coffer_test_support::{
    Cluster, ControllerProcess, Server, WAIT, docflow, eventually, http_get, token,
};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

/// An OpenBao with Transit key `coffer` whose Kubernetes auth role
/// `coffer` admits the controller's ServiceAccount, and the controller's
/// flags for it (its ServiceAccount token in a file, as a Pod has it).
struct Kms {
    bao: OpenBao,
    flags: Vec<String>,
    /// The admin's flags for the CLI: the root token in a file.
    admin_flags: Vec<String>,
}

async fn openbao(server: &Server, name: &str) -> Kms {
    server.install_deploy();
    let admin = server.admin().await;
    let bao = OpenBao::start(name).expect("start OpenBao");
    // The reviewer: a token allowed to create TokenReviews, as OpenBao's
    // Kubernetes auth method needs.
    let reviewer_binding = format!("openbao-reviewer-{name}");
    let _ = server
        .kubectl()
        .args(["delete", "clusterrolebinding", &reviewer_binding])
        .output();
    server.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        &reviewer_binding,
        "--clusterrole=system:auth-delegator",
        "--serviceaccount=coffer-system:openbao-reviewer",
    ]);
    let reviewer = token(&admin, "coffer-system", "openbao-reviewer")
        .await
        .unwrap();
    bao.configure(
        server,
        "coffer",
        "coffer",
        ("coffer-system", "coffer-controller"),
        &reviewer,
    )
    .expect("configure OpenBao");
    let sa_token = bao.dir.join("controller-token");
    std::fs::write(
        &sa_token,
        token(&admin, "coffer-system", "coffer-controller")
            .await
            .unwrap(),
    )
    .unwrap();
    let root_token = bao.dir.join("root-token");
    std::fs::write(&root_token, &bao.root_token).unwrap();
    let flags = vec![
        "--kek".into(),
        "transit:coffer".into(),
        "--kek-address".into(),
        bao.addr.clone(),
        "--kek-kubernetes-role".into(),
        "coffer".into(),
        "--kek-sa-token-file".into(),
        sa_token.display().to_string(),
    ];
    let admin_flags = vec![
        "--kek-address".into(),
        bao.addr.clone(),
        "--kek-token-file".into(),
        root_token.display().to_string(),
    ];
    Kms {
        bao,
        flags,
        admin_flags,
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn coffer(c: &Cluster, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("--kubeconfig")
        .arg(c.server.kubeconfig())
        .args(["--controller-namespace", &c.key_ns])
        .args(["--controller-url", &format!("http://{}", c.ctrl.http)])
        .args(args)
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "coffer failed ({:?}): {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sealed(c: &Cluster, name: &str, value: &str, to: &[PublicKey]) -> SealedSecret {
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\nstringData:\n  password: {value}\n"
    );
    seal_secret(
        &read_secrets(&yaml).unwrap()[0],
        Some(&c.ns),
        false,
        Scope::Strict,
        to,
    )
    .unwrap()
}

async fn apply(c: &Cluster, s: &SealedSecret) {
    c.sealed_api(&c.ns)
        .patch(
            &s.name_any(),
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(s),
        )
        .await
        .unwrap();
}

async fn key_secrets(c: &Cluster) -> Vec<Secret> {
    Api::<Secret>::namespaced(c.admin.clone(), &c.key_ns)
        .list(&ListParams::default().labels(KEY_ID_LABEL))
        .await
        .unwrap()
        .items
}

/// Every key Secret read back from the API server holds its key wrapped,
/// and nothing of any key in plain: no age identity, not its 32 bytes, not
/// their base64. `keys` are the ring's private keys (from a backup).
async fn assert_no_plaintext_key(c: &Cluster, keys: &[SecretKey]) -> usize {
    let secrets = key_secrets(c).await;
    assert!(!secrets.is_empty());
    for s in &secrets {
        let name = s.name_any();
        let data = s.data.as_ref().unwrap();
        assert!(
            data.contains_key(WRAPPED_IDENTITY_KEY),
            "{name} is not wrapped"
        );
        assert!(!data.contains_key("identity"), "{name} holds an identity");
        let text = serde_json::to_string(s).unwrap();
        assert!(
            !text.contains("AGE-SECRET-KEY-"),
            "{name} holds an age identity"
        );
        let raw: Vec<u8> = data.values().flat_map(|v| v.0.clone()).collect();
        for key in keys {
            let identity = key.to_secret_string();
            let (_, bytes) = bech32::decode(&identity).unwrap();
            assert!(
                !raw.windows(bytes.len()).any(|w| w == bytes.as_slice()),
                "{name} holds a raw key"
            );
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            assert!(!text.contains(&b64[..40]), "{name} holds a key in base64");
        }
    }
    secrets.len()
}

/// The ring's private keys, through `coffer keys backup` and the admin's
/// identity (the way an admin gets them).
fn backed_up_keys(c: &Cluster, kms: &Kms, dir: &Path) -> Vec<SecretKey> {
    let admin = SecretKey::generate();
    let file = dir.join("backup.age");
    let mut args = vec!["keys", "backup", "--to"];
    let to = admin.public().to_string();
    args.push(&to);
    args.extend(["-w", file.to_str().unwrap()]);
    args.extend(strs(&kms.admin_flags));
    ok(&coffer(c, &args));
    let plain = coffer_format::backup::decrypt(&std::fs::read(&file).unwrap(), &[admin]).unwrap();
    coffer_format::backup::parse(&plain, jiff::Timestamp::now())
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect()
}

async fn metric(c: &Cluster, ctrl: &ControllerProcess, needle: &str) -> u64 {
    let _ = c;
    let (_, text) = http_get(ctrl.http, "/metrics").await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("coffer_kms_calls_total{") && l.contains(needle))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_wrapped_by_openbao_transit_lives_through_renewal_rotation_and_an_outage() {
    let server = Server::shared().clone();
    let mut kms = openbao(&server, "live").await;
    let mut c = Cluster::start(
        &coffer_test_support::controller_bin(),
        "kms-live",
        &strs(&kms.flags),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();

    // The first key was wrapped before it was written.
    let keys = backed_up_keys(&c, &kms, dir.path());
    assert_eq!(assert_no_plaintext_key(&c, &keys).await, 1);
    apply(&c, &sealed(&c, "one", "pw-one-kms", &c.recipients)).await;
    c.wait_reason(&c.ns, "one", "Unsealed").await;
    assert_eq!(c.secret_data(&c.ns, "one").await["password"], b"pw-one-kms");

    // Renewal: a new key, wrapped too.
    let active = key_secrets(&c).await.remove(0).name_any();
    Api::<Secret>::namespaced(c.admin.clone(), &c.key_ns)
        .patch(
            &active,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"coffer.dev/rotation-requested": "now"}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "a second key", || async {
        (key_secrets(&c).await.len() == 2).then_some(())
    })
    .await;
    let keys = backed_up_keys(&c, &kms, dir.path());
    assert_eq!(assert_no_plaintext_key(&c, &keys).await, 2);

    // The Transit key rotates; `coffer keys wrap` rewraps every key Secret
    // to its newest version, and a second run has nothing to do.
    kms.bao.root(&["write", "-f", "transit/keys/coffer/rotate"]);
    let mut args = vec!["keys", "wrap", "--kek", "transit:coffer"];
    args.extend(strs(&kms.admin_flags));
    let said = ok(&coffer(&c, &args));
    assert!(said.contains("2 key Secret(s) rewritten"), "{said}");
    for s in key_secrets(&c).await {
        let w = &s.data.as_ref().unwrap()[WRAPPED_IDENTITY_KEY].0;
        assert!(
            w.starts_with(b"vault:v2:"),
            "{}",
            String::from_utf8_lossy(w)
        );
    }
    let said = ok(&coffer(&c, &args));
    assert!(said.contains("already under the newest version"), "{said}");
    assert!(said.contains("0 key Secret(s) rewritten"), "{said}");

    // OpenBao goes down while the controller runs: the keys it holds keep
    // working, and a new SealedSecret still unseals.
    kms.bao.kill();
    apply(&c, &sealed(&c, "two", "pw-two-kms", &c.recipients)).await;
    c.wait_reason(&c.ns, "two", "Unsealed").await;

    // The controller restarts with OpenBao down: not ready, says why, and
    // touches nothing.
    let before = versions(&c).await;
    let secrets_before = c
        .secrets(&c.ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    c.ctrl.stop();
    let namespaces = c.watched.join(",");
    let mut args = vec!["--namespaces", &namespaces, "--key-namespace", &c.key_ns];
    args.extend(strs(&kms.flags));
    let ctrl = ControllerProcess::start(
        &server,
        &coffer_test_support::controller_bin(),
        "kms-live-restart",
        &args,
    )
    .await
    .unwrap();
    let why = not_ready_why(&ctrl).await;
    assert!(
        why.contains("transit:coffer") && why.contains("unavailable"),
        "{why}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = versions(&c).await;
    assert_eq!(
        before, after,
        "a SealedSecret was written while no key could be unwrapped"
    );
    assert_eq!(
        c.secrets(&c.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        secrets_before
    );
    assert_eq!(
        key_secrets(&c).await.len(),
        2,
        "a key was created while the ring was unknown"
    );
    assert!(
        ctrl.log_text().contains("cannot be unwrapped")
            || ctrl.log_text().contains("left out of the ring")
    );

    // OpenBao comes back: the controller loads the ring and goes on.
    kms.bao.restart().unwrap();
    ctrl.wait_ready(WAIT).await.unwrap();
    c.ctrl = ctrl;
    apply(&c, &sealed(&c, "three", "pw-three-kms", &c.recipients)).await;
    c.wait_reason(&c.ns, "three", "Unsealed").await;
    assert_eq!(
        c.secret_data(&c.ns, "three").await["password"],
        b"pw-three-kms"
    );
    assert!(metric(&c, &c.ctrl, "outcome=\"unavailable\"").await >= 1);
    assert_eq!(
        metric(&c, &c.ctrl, "operation=\"unwrap\",outcome=\"ok\"").await,
        2
    );
    c.ctrl.assert_log_free_of(&[
        "pw-one-kms",
        "pw-two-kms",
        "pw-three-kms",
        "AGE-SECRET-KEY-",
    ]);
}

/// What `/readyz` of a controller that cannot unwrap its ring says, once it
/// says so (503 naming the key Secrets left out).
async fn not_ready_why(ctrl: &ControllerProcess) -> String {
    eventually(WAIT, "readyz to say why", || async {
        let (code, body) = http_get(ctrl.probe.unwrap(), "/readyz").await.ok()?;
        (code == 503 && body.contains("cannot be unwrapped")).then_some(body)
    })
    .await
}

/// The SealedSecrets of `c.ns` and their resourceVersions: what changes
/// when anything writes them.
async fn versions(c: &Cluster) -> Vec<(String, String)> {
    let list = c
        .sealed_api(&c.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    list.items
        .iter()
        .map(|s| (s.name_any(), s.resource_version().unwrap()))
        .collect()
}

/// SealedSecrets of `c.ns` whose Ready reason is Unsealed.
async fn unsealed(c: &Cluster) -> usize {
    let list = c
        .sealed_api(&c.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    list.items
        .iter()
        .filter(|s| s.ready_condition().is_some_and(|r| r.reason == "Unsealed"))
        .count()
}

async fn gauge(ctrl: &ControllerProcess, name: &str) -> i64 {
    let (_, text) = http_get(ctrl.http, "/metrics").await.unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_ring_moves_into_transit_and_back_and_two_thousand_sealed_secrets_cost_one_unwrap()
{
    let server = Server::shared().clone();
    let kms = openbao(&server, "move").await;
    let mut c = Cluster::start(&coffer_test_support::controller_bin(), "kms-move", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    apply(&c, &sealed(&c, "before", "pw-before-kms", &c.recipients)).await;
    c.wait_reason(&c.ns, "before", "Unsealed").await;
    let keys = backed_up_keys(&c, &kms, dir.path());

    // The order docs/kms.md gives: the controller gets --kek first (a
    // plain ring loads under it), then the CLI wraps the ring.
    c.ctrl.stop();
    c.ctrl = c
        .controller("kms-move-kek", &c.watched.clone(), &strs(&kms.flags))
        .await;
    let mut wrap = vec!["keys", "wrap", "--kek", "transit:coffer"];
    wrap.extend(strs(&kms.admin_flags));
    let mut dry = wrap.clone();
    dry.push("--dry-run");
    let said = ok(&coffer(&c, &dry));
    assert!(
        said.contains("plain -> wrapped by transit:coffer") && said.contains("nothing written"),
        "{said}"
    );
    assert!(
        key_secrets(&c).await[0]
            .data
            .as_ref()
            .unwrap()
            .contains_key("identity")
    );
    // docs/kms.md's flow, as written: wrap, list, back up.
    let env = [
        ("KUBECONFIG", server.kubeconfig().display().to_string()),
        ("COFFER_CONTROLLER_URL", format!("http://{}", c.ctrl.http)),
        ("COFFER_CONTROLLER_NAMESPACE", c.key_ns.clone()),
        ("BAO_ADDR", kms.bao.addr.clone()),
        ("BAO_TOKEN", kms.bao.root_token.clone()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let said = docflow::run(
        &docflow::script("docs/kms.md", "kms-wrap"),
        dir.path(),
        &env,
    );
    // `keys list` (stdout) names the KEK of the one key.
    assert!(said.contains("transit:coffer"), "{said}");
    assert_no_plaintext_key(&c, &keys).await;
    let admin = coffer_format::key::parse_identity_file(
        &std::fs::read_to_string(dir.path().join("admin.txt")).unwrap(),
    )
    .unwrap();
    let plain = coffer_format::backup::decrypt(
        &std::fs::read(dir.path().join("coffer-keys.age")).unwrap(),
        &admin,
    )
    .unwrap();
    let backed_up = coffer_format::backup::parse(&plain, jiff::Timestamp::now()).unwrap();
    assert_eq!(backed_up.len(), 1);
    assert_eq!(backed_up[0].key.id(), keys[0].id());

    // A wrapped key copied into another key's Secret does not load as that
    // key: it is left out, named, and no key is created meanwhile.
    let mut forged = key_secrets(&c).await.remove(0);
    let other = SecretKey::generate();
    forged.metadata = kube::api::ObjectMeta {
        name: Some(format!("coffer-key-{}", other.id())),
        labels: Some([(KEY_ID_LABEL.to_string(), other.id().short())].into()),
        annotations: Some(
            [
                (
                    "coffer.dev/public-key".to_string(),
                    other.public().to_string(),
                ),
                ("coffer.dev/kek".to_string(), "transit:coffer".to_string()),
                ("coffer.dev/sequence".to_string(), "99".to_string()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let key_api = Api::<Secret>::namespaced(c.admin.clone(), &c.key_ns);
    key_api.create(&Default::default(), &forged).await.unwrap();
    eventually(WAIT, "the forged key to be left out", || async {
        (gauge(&c.ctrl, "coffer_kms_keys_unavailable").await == 1).then_some(())
    })
    .await;
    // Transit binds the key id as associated data: OpenBao itself refuses
    // the ciphertext under another key's id (Coffer's own check, that the
    // key returned is the key named, is the second line).
    let log = c.ctrl.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("left out of the ring") && l.contains(&other.id().to_string()))
        .unwrap_or_else(|| panic!("no line names the forged key in\n{log}"));
    assert!(
        line.contains("rejected") && line.contains("transit:coffer"),
        "{line}"
    );
    key_api
        .delete(&forged.name_any(), &Default::default())
        .await
        .unwrap();
    eventually(WAIT, "the ring to be whole again", || async {
        (gauge(&c.ctrl, "coffer_kms_keys_unavailable").await == 0).then_some(())
    })
    .await;

    // A fresh controller unseals 2,000 SealedSecrets with one key: one
    // unwrap, not one per SealedSecret.
    c.ctrl.stop();
    c.ctrl = c
        .controller("kms-move-2000", &c.watched.clone(), &strs(&kms.flags))
        .await;
    let objects: Vec<SealedSecret> = (0..2000)
        .map(|i| sealed(&c, &format!("s{i}"), &format!("pw-{i}-kms"), &c.recipients))
        .collect();
    use futures::StreamExt as _;
    futures::stream::iter(objects.iter())
        .for_each_concurrent(16, |s| apply(&c, s))
        .await;
    eventually(
        Duration::from_secs(300),
        "2,001 SealedSecrets unsealed",
        || async { (unsealed(&c).await == 2001).then_some(()) },
    )
    .await;
    assert_eq!(metric(&c, &c.ctrl, "operation=\"unwrap\"").await, 1);
    assert_eq!(
        c.secret_data(&c.ns, "s1999").await["password"],
        b"pw-1999-kms"
    );

    // Back out: `coffer keys unwrap` puts the keys back in plain, then the
    // controller runs without --kek.
    let mut unwrap = vec!["keys", "unwrap"];
    unwrap.extend(strs(&kms.admin_flags));
    let said = ok(&coffer(&c, &unwrap));
    assert!(said.contains("go back into the Secrets in plain"), "{said}");
    let s = key_secrets(&c).await.remove(0);
    assert!(s.data.as_ref().unwrap().contains_key("identity"));
    assert!(!s.annotations().contains_key("coffer.dev/kek"));
    c.ctrl.stop();
    c.ctrl = c
        .controller("kms-move-plain", &c.watched.clone(), &[])
        .await;
    apply(&c, &sealed(&c, "after", "pw-after-kms", &c.recipients)).await;
    c.wait_reason(&c.ns, "after", "Unsealed").await;
    c.ctrl.assert_log_free_of(&[
        "pw-before-kms",
        "pw-after-kms",
        "pw-7-kms",
        "AGE-SECRET-KEY-",
    ]);
}

/// moto's KMS server on loopback, killed on drop.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start() -> Moto {
        assert!(
            std::process::Command::new("moto_server")
                .arg("--help")
                .output()
                .is_ok(),
            "moto's `moto_server` is required for this test and is not installed; run tests/setup"
        );
        let port = coffer_test_support::free_port();
        let mut cmd = std::process::Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        coffer_test_support::dies_with_the_test(&mut cmd);
        // Killed on drop, whether it listens or not.
        let moto = Moto {
            child: cmd.spawn().unwrap(),
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return moto;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not listen");
    }

    /// One KMS API call (moto checks no signature; the credential names
    /// the account and region).
    fn call(&self, action: &str, body: serde_json::Value) -> serde_json::Value {
        let mut r = ureq::post(&self.url)
            .header("x-amz-target", &format!("TrentService.{action}"))
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0",
            )
            .send(body.to_string())
            .unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }
}

/// The controller with an AWS KMS key (moto's server standing in for AWS:
/// this proves the KMS API and the SDK's credential chain from the Pod's
/// environment, not AWS): the first key is born wrapped, a SealedSecret
/// unseals, a restart costs one Decrypt, and with KMS gone a restarted
/// controller is not ready and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_wrapped_by_aws_kms_through_the_sdk_credential_chain() {
    use coffer_test_support::{grant_key_namespace, namespace};
    let moto = Moto::start();
    let key = moto.call("CreateKey", serde_json::json!({"Description": "coffer"}));
    let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    moto.call(
        "CreateAlias",
        serde_json::json!({"AliasName": "alias/coffer", "TargetKeyId": key_id}),
    );

    let server = Server::shared().clone();
    server.install_deploy();
    let admin = server.admin().await;
    let ns = namespace(&admin, "kms-aws").await;
    let key_ns = namespace(&admin, "kms-aws-keys").await;
    grant_key_namespace(&admin, &key_ns).await;
    let args = |ns: &str, key_ns: &str, url: &str| -> Vec<String> {
        [
            "--namespaces",
            ns,
            "--key-namespace",
            key_ns,
            "--kek",
            "awskms:alias/coffer",
            "--kek-aws-endpoint",
            url,
            "--kek-aws-region",
            "us-east-1",
        ]
        .map(String::from)
        .to_vec()
    };
    // What a Pod's environment would hold (IRSA gives a token file
    // instead; the SDK's chain reads either).
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let url = moto.url.clone();
    let start = |name: &'static str| {
        let a = args(&ns, &key_ns, &url);
        let server = server.clone();
        async move {
            ControllerProcess::start_with_env(
                &server,
                &coffer_test_support::controller_bin(),
                name,
                "coffer-system",
                &strs(&a),
                &env,
            )
            .await
            .unwrap()
        }
    };
    let ctrl = start("kms-aws").await;
    ctrl.wait_ready(WAIT).await.unwrap();
    let c = Cluster::around(
        server.clone(),
        admin.clone(),
        &coffer_test_support::controller_bin(),
        vec![ns.clone()],
        key_ns.clone(),
        ctrl,
    )
    .await;
    let secrets = key_secrets(&c).await;
    assert_eq!(secrets.len(), 1);
    assert_eq!(
        secrets[0].annotations()["coffer.dev/kek"],
        "awskms:alias/coffer"
    );
    assert!(!secrets[0].data.as_ref().unwrap().contains_key("identity"));
    apply(&c, &sealed(&c, "aws", "pw-aws-kms", &c.recipients)).await;
    c.wait_reason(&c.ns, "aws", "Unsealed").await;

    let mut c = c;
    c.ctrl.stop();
    c.ctrl = start("kms-aws-restart").await;
    c.ctrl.wait_ready(WAIT).await.unwrap();
    assert_eq!(
        metric(
            &c,
            &c.ctrl,
            "provider=\"awskms\",operation=\"unwrap\",outcome=\"ok\""
        )
        .await,
        1
    );

    // KMS gone: a restarted controller waits, says why, writes nothing.
    drop(moto);
    let before = versions(&c).await;
    c.ctrl.stop();
    let ctrl = start("kms-aws-down").await;
    let why = not_ready_why(&ctrl).await;
    assert!(
        why.contains("awskms:alias/coffer") && why.contains("unavailable"),
        "{why}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        versions(&c).await,
        before,
        "written while no key could be unwrapped"
    );
    ctrl.assert_log_free_of(&["pw-aws-kms", "AGE-SECRET-KEY-"]);
}
