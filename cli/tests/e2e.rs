//! The coffer command against a real API server and a running controller
//! (tests/envtest): seal -> apply -> Secret, recipients, verify, rotate over
//! a folder, key backup -> recover, and one value for two clusters.
#![allow(
    clippy::too_many_lines,
    reason = "an end-to-end scenario reads top to bottom, one step after another"
)]

use std::collections::BTreeSet;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::Output;

use coffer_test_support::{
    Cluster, Server, WAIT, eventually, git, http_get, http_get_with, namespace, root,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};

/// The shared cluster setup, and a working directory for the coffer command.
struct CliCluster {
    cluster: Cluster,
    dir: tempfile::TempDir,
}

impl Deref for CliCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl DerefMut for CliCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

async fn cluster_on(server: Server, name: &str) -> CliCluster {
    CliCluster {
        cluster: Cluster::start_on(server, &coffer_test_support::controller_bin(), name, &[], 1)
            .await,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl CliCluster {
    fn coffer(&self, args: &[&str]) -> Output {
        self.coffer_in(self.dir.path(), args, None)
    }

    fn coffer_in(&self, dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let url = format!("http://{}", self.ctrl.http);
        self.coffer_run(dir, &url, args, stdin)
    }

    /// `coffer` with the controller's HTTP API at `url`.
    fn coffer_at(&self, url: &str, args: &[&str]) -> Output {
        self.coffer_run(self.dir.path(), url, args, None)
    }

    fn coffer_run(&self, dir: &Path, url: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.current_dir(dir)
            .arg("--kubeconfig")
            .arg(self.server.kubeconfig())
            .args(["--controller-namespace", &self.key_ns])
            .args(["--controller-url", url])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.server.kubectl_ok(args)
    }

    async fn wait_ready(&self, name: &str) {
        self.wait_reason(&self.ns, name, "Unsealed").await;
    }

    async fn secret_value(&self, name: &str, key: &str) -> Vec<u8> {
        self.secret_data(&self.ns, name).await[key].clone()
    }

    /// Waits until `n` SealedSecrets of the test namespace are Unsealed
    /// at their current generation.
    async fn all_unsealed(&self, n: usize, what: &str) {
        let api: Api<coffer_core::SealedSecret> = Api::namespaced(self.admin.clone(), &self.ns);
        eventually(WAIT, what, || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let ready = list
                .items
                .iter()
                .filter(|s| {
                    s.ready_condition().is_some_and(|c| c.reason == "Unsealed")
                        && s.status.as_ref().and_then(|st| st.observed_generation)
                            == s.metadata.generation
                })
                .count();
            (ready == n).then_some(())
        })
        .await;
    }

    /// `coffer rotate .` in `repo`: all `n` files re-encrypted to a new
    /// active key, other than `old`. Returns its id and the output.
    async fn rotate_all(&self, repo: &Path, n: usize, old: &str) -> (String, String) {
        let out = ok(&self.coffer_in(repo, &["rotate", "."], None));
        let new = self.active_key().await;
        assert_ne!(new, old);
        assert!(
            out.contains(&format!(
                "changed {n} of {n} file(s); {n} value(s) re-encrypted to key {}",
                &new[..16]
            )),
            "{out}"
        );
        (new, out)
    }

    async fn active_key(&self) -> String {
        let cms: Api<ConfigMap> = Api::namespaced(self.admin.clone(), &self.key_ns);
        let text =
            cms.get("coffer-recipients").await.unwrap().data.unwrap()["recipients.txt"].clone();
        coffer_format::RecipientsFile::parse(&text).unwrap().entries[0]
            .key
            .id()
            .to_string()
    }
}

/// The fields of the line of `coffer keys list` for the key with the whole
/// id `id` (ids are shown whole, as `inspect` shows them).
fn row<'a>(list: &'a str, id: &str) -> Vec<&'a str> {
    assert_eq!(id.len(), 64, "a whole key id: {id}");
    list.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&id))
        .unwrap_or_else(|| panic!("no line for key {id} in\n{list}"))
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "coffer failed ({:?}): {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn secret(ns: &str, name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\nstringData:\n  password: {value}\n"
    )
}

#[tokio::test]
async fn sealed_with_the_cli_applied_with_kubectl_becomes_a_secret() {
    let c = cluster_on(Server::shared().clone(), "cli-seal").await;
    // No --recipients: fetched from the cluster's ConfigMap.
    let sealed = ok(&c.coffer_in(
        c.dir.path(),
        &["seal"],
        Some(&secret(&c.ns, "db", "cli-e2e-1")),
    ));
    std::fs::write(c.dir.path().join("sealed.yaml"), &sealed).unwrap();
    c.kubectl(&[
        "apply",
        "-f",
        c.dir.path().join("sealed.yaml").to_str().unwrap(),
    ]);
    c.wait_ready("db").await;
    assert_eq!(c.secret_value("db", "password").await, b"cli-e2e-1");

    // recipients equals the ConfigMap.
    let text = ok(&c.coffer(&["recipients"]));
    let cms: Api<ConfigMap> = Api::namespaced(c.admin.clone(), &c.key_ns);
    assert_eq!(
        text,
        cms.get("coffer-recipients").await.unwrap().data.unwrap()["recipients.txt"]
    );

    // verify: 0 when it opens, 5 when a copy does not.
    ok(&c.coffer(&["verify", "sealed.yaml"]));
    std::fs::write(
        c.dir.path().join("moved.yaml"),
        sealed.replace(&c.ns, "elsewhere"),
    )
    .unwrap();
    let o = c.coffer(&["verify", "moved.yaml"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&o.stdout).contains("does NOT open"));

    // A directory: an unparsable file is reported and the others are
    // still verified; the exit status says a file could not be read.
    let dir = c.dir.path().join("k8s");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a-broken.yaml"), "kind: SealedSecret\n  bad: [\n").unwrap();
    std::fs::write(dir.join("b-db.yaml"), &sealed).unwrap();
    std::fs::write(dir.join("c-broken.json"), "{\"kind\": ").unwrap();
    let o = c.coffer(&["verify", "k8s"]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert!(
        out.contains("b-db.yaml: document 1") && out.contains("opens"),
        "{out}"
    );
    assert!(err.contains("a-broken.yaml: not valid YAML"), "{err}");
    assert!(err.contains("c-broken.json: not valid JSON"), "{err}");
    assert!(err.contains("2 file(s) could not be read"), "{err}");
    c.ctrl.assert_log_free_of(&["cli-e2e-1"]);
}

#[tokio::test]
async fn rotate_reencrypts_a_folder_in_place_and_retiring_the_old_key_breaks_nothing() {
    let c = cluster_on(Server::shared().clone(), "cli-rotate").await;
    ok(&c.coffer(&["recipients", "-w", "r.txt"]));
    let repo = c.dir.path().join("repo");
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    let n = 200;
    for i in 0..n {
        let sealed = ok(&c.coffer_in(
            c.dir.path(),
            &["seal", "-r", "r.txt"],
            Some(&secret(&c.ns, &format!("s{i}"), &format!("rot-e2e-{i}"))),
        ));
        let dir = if i % 2 == 0 {
            repo.clone()
        } else {
            repo.join("sub")
        };
        // A comment outside the SealedSecret and a second, unrelated document.
        let text = format!(
            "# secret {i}, owned by team shop\n{sealed}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n"
        );
        std::fs::write(dir.join(format!("s{i}.yaml")), text).unwrap();
    }
    std::fs::write(repo.join("README.md"), "not yaml").unwrap();
    c.kubectl(&["apply", "-R", "-f", repo.to_str().unwrap(), "-n", &c.ns]);
    for i in [0, n / 2, n - 1] {
        c.wait_ready(&format!("s{i}")).await;
    }
    let old = c.active_key().await;

    let dry = ok(&c.coffer_in(&repo, &["rotate", "--dry-run", "."], None));
    assert!(
        dry.contains(&format!(
            "would change {n} of {n} file(s); {n} value(s) re-encrypted to a new key"
        )),
        "{dry}"
    );
    assert_eq!(c.active_key().await, old, "a dry run requests no key");

    let (new, out) = c.rotate_all(&repo, n, &old).await;
    assert!(
        out.contains(&format!("  {new}  {n} value(s)  (active)")),
        "{out}"
    );
    assert!(
        !out.contains(&format!("  {old}  ")),
        "old key still referenced: {out}"
    );
    // The advice speaks of the paths given only, and names the old key.
    assert!(
        out.contains(&format!(
            "no value under the paths given needs this cluster's older key(s) {}; apply or sync these files",
            &old[..16]
        )),
        "{out}"
    );
    let sample = std::fs::read_to_string(repo.join("s0.yaml")).unwrap();
    assert!(sample.starts_with("# secret 0, owned by team shop\napiVersion: coffer.dev/v1alpha1"));
    assert!(sample.contains("kind: ConfigMap"));
    assert_eq!(
        std::fs::read_to_string(repo.join("README.md")).unwrap(),
        "not yaml"
    );

    c.kubectl(&["apply", "-R", "-f", repo.to_str().unwrap(), "-n", &c.ns]);
    // Retiring waits until the re-encrypted files are applied and Ready.
    c.all_unsealed(n, "all re-encrypted SealedSecrets Ready")
        .await;
    ok(&c.coffer(&["keys", "retire", &old]));
    // Every Secret still opens with only the new key usable.
    c.all_unsealed(n, "all SealedSecrets Ready after retirement")
        .await;
    assert_eq!(c.secret_value("s7", "password").await, b"rot-e2e-7");
    let list = ok(&c.coffer(&["keys", "list"]));
    assert_eq!(row(&list, &old)[1], "retired", "{list}");
    assert_eq!(row(&list, &new)[1], "active", "{list}");
}

/// The README's rotation steps, with the step they lacked: `coffer keys
/// retire` asks the controller which live SealedSecrets still need the
/// key. While one does (its file re-encrypted but not applied), retiring
/// is refused, naming it, and the key stays usable; once the re-encrypted
/// file is applied and Ready, the key retires. `--force` retires a key
/// despite its users, which then go `KeyRetired`; a controller that cannot
/// be asked is a refusal too.
#[tokio::test]
async fn retiring_a_key_live_sealed_secrets_need_is_refused_until_they_are_reencrypted() {
    let c = cluster_on(Server::shared().clone(), "cli-retire").await;
    ok(&c.coffer(&["recipients", "-w", "r.txt"]));
    let repo = c.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for name in ["api", "db"] {
        let sealed = ok(&c.coffer_in(
            c.dir.path(),
            &["seal", "-r", "r.txt"],
            Some(&secret(&c.ns, name, &format!("retire-e2e-{name}"))),
        ));
        std::fs::write(repo.join(format!("{name}.yaml")), sealed).unwrap();
    }
    c.kubectl(&["apply", "-f", repo.to_str().unwrap(), "-n", &c.ns]);
    c.all_unsealed(2, "both SealedSecrets Ready").await;
    let old = c.active_key().await;
    let (new, _) = c.rotate_all(&repo, 2, &old).await;
    let (api, db) = (format!("{}/api", c.ns), format!("{}/db", c.ns));

    // Rotated and committed, not applied: the live objects need the old key.
    let (code, body) = http_get(c.ctrl.http, &format!("/v1/keys/{old}/users"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let users: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(users["key"], old.as_str());
    assert_eq!(users["count"], 2, "{users}");
    // Any Pod may ask: without a key admin's proof the counts come, the
    // names (another tenant's objects) do not.
    assert_eq!(users["objects"], serde_json::json!([]), "{users}");
    assert_eq!(users["names"], false, "{users}");
    // With a proof made from the key itself, they do; one made with
    // another key, one for another time, or a replayed one for another
    // key id, names nothing.
    let secrets: Api<Secret> = Api::namespaced(c.admin.clone(), &c.key_ns);
    let key_secret = secrets
        .list(&ListParams::default().labels(&format!("coffer.dev/key-id={}", &old[..16])))
        .await
        .unwrap()
        .items
        .remove(0);
    let old_key = coffer_core::ring::read_key_secret(&key_secret, jiff::Timestamp::now())
        .unwrap()
        .key
        .expect("a plain key Secret");
    let now = jiff::Timestamp::now().as_second();
    let addr = c.ctrl.http;
    let ask = |proof: String, id: String| async move {
        let (code, body) = http_get_with(
            addr,
            &format!("/v1/keys/{id}/users"),
            &[(coffer_core::key_users::HEADER, &proof)],
        )
        .await
        .unwrap();
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let named = ask(coffer_core::key_users::make(&old_key, now), old.clone()).await;
    assert_eq!(named["objects"], serde_json::json!([api, db]), "{named}");
    assert_eq!(named["names"], true);
    let forged = coffer_format::SecretKey::generate();
    for (proof, id) in [
        (coffer_core::key_users::make(&forged, now), old.clone()),
        (
            coffer_core::key_users::make(&old_key, now - 3600),
            old.clone(),
        ),
        (coffer_core::key_users::make(&old_key, now), new.clone()),
    ] {
        let answer = ask(proof, id).await;
        assert_eq!(answer["objects"], serde_json::json!([]), "{answer}");
        assert_eq!(answer["names"], false, "{answer}");
    }
    let (_, metrics) = http_get(c.ctrl.http, "/metrics").await.unwrap();
    for line in [
        format!("coffer_key_sealed_secrets{{key=\"{}\"}} 2\n", &old[..16]),
        format!("coffer_key_sealed_secrets{{key=\"{}\"}} 0\n", &new[..16]),
    ] {
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
    let refused = c.coffer(&["keys", "retire", &old]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!("not retiring key {}", &old[..16]))
            && err.contains("2 live SealedSecret(s) still need it")
            && err.contains(&format!("\n  {api}\n  {db}"))
            && err.contains("kubectl wait --for=condition=Ready sealedsecrets.coffer.dev --all -A"),
        "{err}"
    );
    let list = ok(&c.coffer(&["keys", "list"]));
    assert_eq!(row(&list, &old)[1], "usable", "{list}");

    // One re-encrypted file applied: only the other still needs the key.
    c.kubectl(&["apply", "-f", repo.join("db.yaml").to_str().unwrap()]);
    c.all_unsealed(2, "db Ready at its new generation").await;
    let refused = c.coffer(&["keys", "retire", &old]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "{err}");
    assert!(
        err.contains("1 live SealedSecret(s) still need it") && err.contains(&format!("\n  {api}")),
        "{err}"
    );
    assert!(!err.contains(&db), "{err}");
    // --superseded (every usable key but the active one) is refused alike,
    // and retires nothing.
    let refused = c.coffer(&["keys", "retire", "--superseded"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "{err}");
    assert!(
        err.contains("1 live SealedSecret(s) still need it"),
        "{err}"
    );
    let list = ok(&c.coffer(&["keys", "list"]));
    assert_eq!(row(&list, &old)[1], "usable", "{list}");
    // Both objects stayed Ready on the old key's values and the new one's.
    c.all_unsealed(2, "both SealedSecrets still Ready").await;

    c.kubectl(&["apply", "-f", repo.join("api.yaml").to_str().unwrap()]);
    c.all_unsealed(2, "both re-encrypted SealedSecrets Ready")
        .await;
    let retired = c.coffer(&["keys", "retire", &old]);
    assert!(
        retired.status.success(),
        "{}",
        String::from_utf8_lossy(&retired.stderr)
    );
    let list = ok(&c.coffer(&["keys", "list"]));
    assert_eq!(row(&list, &old)[1], "retired", "{list}");
    c.all_unsealed(2, "both SealedSecrets Ready with the old key retired")
        .await;
    assert_eq!(c.secret_value("db", "password").await, b"retire-e2e-db");

    // No controller to ask: refused, unless --force.
    let unreachable = format!("http://127.0.0.1:{}", coffer_test_support::free_port());
    let o = c.coffer_at(&unreachable, &["keys", "retire", &new]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("cannot ask the controller"), "{err}");
    let list = ok(&c.coffer(&["keys", "list"]));
    assert_eq!(row(&list, &new)[1], "active", "{list}");

    // --force retires the key both objects need; they go KeyRetired.
    let forced = c.coffer(&["keys", "retire", "--force", &new]);
    let err = String::from_utf8_lossy(&forced.stderr);
    assert!(forced.status.success(), "{err}");
    assert!(
        err.contains("retiring key") && err.contains("(--force)") && err.contains(&api),
        "{err}"
    );
    c.wait_reason(&c.ns, "db", "KeyRetired").await;
    c.ctrl
        .assert_log_free_of(&["retire-e2e-db", "retire-e2e-api"]);
}

/// A cluster moves from X25519 to post-quantum keys. Restarted with
/// `--key-kind mlkem768x25519`, the controller keeps its X25519 key active
/// (a change of kind never rotates by itself); `coffer rotate` then makes a
/// post-quantum key and re-encrypts the repository to it, and with the
/// X25519 key retired every Secret is unchanged. New values sealed to the
/// cluster's published recipients are post-quantum and unseal.
#[tokio::test]
async fn rotate_moves_a_repository_from_x25519_to_post_quantum_keys() {
    let mut c = cluster_on(Server::shared().clone(), "cli-pq").await;
    ok(&c.coffer(&["recipients", "-w", "r.txt"]));
    let repo = c.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let n = 20;
    for i in 0..n {
        let sealed = ok(&c.coffer_in(
            c.dir.path(),
            &["seal", "-r", "r.txt"],
            Some(&secret(&c.ns, &format!("p{i}"), &format!("pq-e2e-{i}"))),
        ));
        std::fs::write(repo.join(format!("p{i}.yaml")), sealed).unwrap();
    }
    c.kubectl(&["apply", "-f", repo.to_str().unwrap(), "-n", &c.ns]);
    let mut before = Vec::new();
    for i in 0..n {
        c.wait_ready(&format!("p{i}")).await;
        before.push(c.secret_data(&c.ns, &format!("p{i}")).await);
    }
    let old = c.active_key().await;

    c.ctrl.stop();
    let watched = c.watched.clone();
    let ctrl = c
        .controller(
            &format!("{}-pq", c.ns),
            &watched,
            &["--key-kind", "mlkem768x25519"],
        )
        .await;
    c.ctrl = ctrl;
    assert_eq!(c.active_key().await, old, "no rotation without a request");

    let (new, _) = c.rotate_all(&repo, n, &old).await;
    let published = ok(&c.coffer(&["recipients"]));
    assert!(published.contains("\nage1pq1"), "{published}");
    let list = ok(&c.coffer(&["keys", "list"]));
    assert_eq!(
        row(&list, &new)[1..3],
        ["active", "mlkem768x25519"],
        "{list}"
    );
    let inspected = ok(&c.coffer_in(&repo, &["inspect", "p0.yaml"], None));
    assert!(
        inspected.contains(&format!("1  yes     {}", &new[..16])),
        "{inspected}"
    );

    c.kubectl(&["apply", "-f", repo.to_str().unwrap(), "-n", &c.ns]);
    // Retiring waits until the re-encrypted files are applied and Ready.
    c.all_unsealed(n, "all re-encrypted SealedSecrets Ready")
        .await;
    ok(&c.coffer(&["keys", "retire", &old]));
    c.all_unsealed(n, "all SealedSecrets Ready with the X25519 key retired")
        .await;
    for (i, data) in before.iter().enumerate() {
        assert_eq!(&c.secret_data(&c.ns, &format!("p{i}")).await, data, "p{i}");
    }

    // A new value, sealed to what the cluster publishes now.
    let sealed = ok(&c.coffer_in(
        c.dir.path(),
        &["seal"],
        Some(&secret(&c.ns, "fresh", "pq-e2e-fresh")),
    ));
    std::fs::write(c.dir.path().join("fresh.yaml"), &sealed).unwrap();
    let inspected = ok(&c.coffer(&["inspect", "fresh.yaml"]));
    assert!(inspected.contains("1  yes"), "{inspected}");
    c.kubectl(&[
        "apply",
        "-f",
        c.dir.path().join("fresh.yaml").to_str().unwrap(),
    ]);
    c.wait_ready("fresh").await;
    assert_eq!(c.secret_value("fresh", "password").await, b"pq-e2e-fresh");
    c.ctrl.assert_log_free_of(&["pq-e2e-"]);
}

#[tokio::test]
async fn a_key_backup_recovers_the_secrets_offline() {
    let c = cluster_on(Server::shared().clone(), "cli-backup").await;
    let sealed = ok(&c.coffer_in(
        c.dir.path(),
        &["seal"],
        Some(&secret(&c.ns, "db", "backup-e2e")),
    ));
    std::fs::write(c.dir.path().join("sealed.yaml"), &sealed).unwrap();
    ok(&c.coffer(&["keygen", "-w", "admin.txt", "--recipients-out", "admin.pub"]));
    let admin_pub = std::fs::read_to_string(c.dir.path().join("admin.pub")).unwrap();
    let admin_recipient = admin_pub
        .lines()
        .find(|l| l.starts_with("age1"))
        .unwrap()
        .to_string();
    ok(&c.coffer(&["keys", "backup", "--to", &admin_recipient, "-w", "ring.age"]));
    let backup = std::fs::read_to_string(c.dir.path().join("ring.age")).unwrap();
    assert!(backup.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!backup.contains("AGE-SECRET-KEY"));

    let out = ok(&c.coffer(&[
        "recover",
        "--identity",
        "admin.txt",
        "--backup",
        "ring.age",
        "sealed.yaml",
    ]));
    assert!(out.contains("kind: Secret"));
    let v: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
    use base64::Engine;
    let pw = base64::engine::general_purpose::STANDARD
        .decode(v["data"]["password"].as_str().unwrap())
        .unwrap();
    assert_eq!(pw, b"backup-e2e");

    // Restoring into a fresh key namespace brings the same keys back, as
    // open-only keys, once they are checked against the committed
    // recipients file.
    ok(&c.coffer(&["recipients", "-w", "prod.txt"]));
    let fresh = namespace(&c.admin, "cli-restore").await;
    let restore = |trust: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .current_dir(c.dir.path())
            .arg("--kubeconfig")
            .arg(c.server.kubeconfig())
            .args([
                "--controller-namespace",
                &fresh,
                "keys",
                "restore",
                "ring.age",
                "--identity",
                "admin.txt",
            ])
            .args(trust)
            .output()
            .unwrap()
    };
    // Without a trust anchor, restore refuses to run at all.
    assert!(!restore(&[]).status.success());
    let o = restore(&["--trust", "prod.txt"]);
    ok(&o);
    let said = String::from_utf8_lossy(&o.stderr).to_string();
    let active = c.active_key().await;
    assert!(
        said.contains(&active),
        "restore prints each whole key id: {said}"
    );
    let keys: Api<Secret> = Api::namespaced(c.admin.clone(), &fresh);
    let restored = keys
        .list(&ListParams::default().labels("coffer.dev/key-id"))
        .await
        .unwrap()
        .items;
    assert_eq!(restored.len(), 1);
    let labels = restored[0].metadata.labels.as_ref().unwrap();
    assert_eq!(labels["coffer.dev/key-id"], active[..16]);
    assert_eq!(labels["coffer.dev/key-state"], "open-only");
}

/// Issue 27: `keys list` shows whole ids in aligned columns and the
/// imported bitnami keys; `keys restore --trust` with the committed
/// recipients file (which lists the active key only) restores the keys it
/// lists from a backup that also holds older ones, and refuses one taken
/// before the rotation saying why: its keys are older than the file's, so
/// an earlier version of the file lists them.
#[tokio::test]
async fn keys_list_and_restore_across_a_rotation() {
    let c = cluster_on(Server::shared().clone(), "cli-ring").await;
    ok(&c.coffer(&["keygen", "-w", "admin.txt", "--recipients-out", "admin.pub"]));
    let admin_pub = std::fs::read_to_string(c.dir.path().join("admin.pub")).unwrap();
    let admin = admin_pub.lines().find(|l| l.starts_with("age1")).unwrap();
    let old = c.active_key().await;
    ok(&c.coffer(&["recipients", "-w", "old.txt"]));
    ok(&c.coffer(&["keys", "backup", "--to", admin, "-w", "before.age"]));
    std::fs::create_dir_all(c.dir.path().join("empty")).unwrap();
    ok(&c.coffer(&["rotate", "empty"]));
    let new = c.active_key().await;
    assert_ne!(new, old);
    ok(&c.coffer(&["recipients", "-w", "prod.txt"]));
    ok(&c.coffer(&["keys", "backup", "--to", admin, "-w", "after.age"]));

    let bitnami = coffer_core::bitnami::BitnamiKey::generate(2048);
    std::fs::write(c.dir.path().join("main.key"), bitnami.to_pem().as_bytes()).unwrap();
    ok(&c.coffer(&["keys", "import-bitnami", "--file", "main.key"]));
    let list = ok(&c.coffer(&["keys", "list"]));
    assert_eq!(row(&list, &new)[1], "active", "{list}");
    assert_eq!(row(&list, &old)[1], "usable", "{list}");
    let b = row(&list, &bitnami.id());
    assert_eq!(b[1..4], ["open-only", "bitnami-rsa2048", "-"], "{list}");
    // Every column starts where its header does.
    let lines: Vec<&str> = list.lines().collect();
    for column in ["STATE", "KIND", "CREATED", "SECRET"] {
        let at = lines[0].find(column).unwrap();
        for l in &lines[1..] {
            assert!(
                l.as_bytes()[at - 1] == b' ' && l.as_bytes()[at] != b' ',
                "{column} misaligned:\n{list}"
            );
        }
    }

    let restore = |into: &str, file: &str, trust: &[&str]| {
        let mut args = vec!["keys", "restore", file, "-i", "admin.txt"];
        for t in trust {
            args.extend(["--trust", t]);
        }
        std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .current_dir(c.dir.path())
            .arg("--kubeconfig")
            .arg(c.server.kubeconfig())
            .args(["--controller-namespace", into])
            .args(&args)
            .output()
            .unwrap()
    };
    let restored = |ns: String| {
        let admin = c.admin.clone();
        async move {
            let api: Api<Secret> = Api::namespaced(admin, &ns);
            let mut ids: Vec<String> = api
                .list(&ListParams::default().labels("coffer.dev/key-id"))
                .await
                .unwrap()
                .items
                .iter()
                .map(|s| s.metadata.labels.as_ref().unwrap()["coffer.dev/key-id"].clone())
                .collect();
            ids.sort();
            ids
        }
    };

    // Taken before the rotation: none of its keys is in prod.txt. Refused,
    // saying the key is older than prod.txt's and where to find it.
    let fresh = namespace(&c.admin, "cli-ring-a").await;
    let o = restore(&fresh, "before.age", &["prod.txt"]);
    let said = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(5), "{said}");
    assert!(
        said.contains("in no recipients file named with --trust"),
        "{said}"
    );
    assert!(
        said.contains(&format!("{old}: created"))
            && said.contains(&format!("not after prod.txt's key {new}"))
            && said.contains("earlier version of prod.txt"),
        "{said}"
    );
    assert!(said.contains("git log"), "{said}");
    assert!(restored(fresh.clone()).await.is_empty(), "nothing restored");
    // With the version of the file that lists it, it is restored.
    ok(&restore(&fresh, "before.age", &["old.txt", "prod.txt"]));
    assert_eq!(restored(fresh).await, [old[..16].to_string()]);

    // Taken after: prod.txt lists the new key, which is restored; the old
    // one is not, and the warning says why.
    let fresh = namespace(&c.admin, "cli-ring-b").await;
    let o = restore(&fresh, "after.age", &["prod.txt"]);
    let said = ok(&o) + &String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("not restoring 1 of the backup's 2 keys"),
        "{said}"
    );
    assert!(said.contains(&format!("{old}: created")), "{said}");
    assert_eq!(restored(fresh.clone()).await, [new[..16].to_string()]);
    // Then the old one too, once trusted: keys present are left alone.
    ok(&restore(&fresh, "after.age", &["old.txt", "prod.txt"]));
    let mut both = vec![old[..16].to_string(), new[..16].to_string()];
    both.sort();
    assert_eq!(restored(fresh).await, both);
}

/// Finding 1 of the adversarial review: a backup is encrypted to the
/// admin's *public* key, so anyone can forge one with stock `age`. The
/// forged key, dated in the future, became the active sealing key. Now a
/// forged backup is refused (a future date; a key in no trusted recipients
/// file), and even forced in with --trust-any it only opens values: the
/// sealing key changes only through `coffer keys activate`, which the
/// controller logs.
#[tokio::test]
async fn a_forged_backup_made_with_stock_age_cannot_change_the_sealing_key() {
    let c = cluster_on(Server::shared().clone(), "cli-forged").await;
    let genuine = c.active_key().await;
    ok(&c.coffer(&["recipients", "-w", "prod.txt"]));
    ok(&c.coffer(&["keygen", "-w", "admin.txt", "--recipients-out", "admin.pub"]));
    let admin_pub = std::fs::read_to_string(c.dir.path().join("admin.pub")).unwrap();
    let admin_recipient = admin_pub.lines().find(|l| l.starts_with("age1")).unwrap();

    // The attacker: a key of their own, a backup written by hand, and stock
    // age with nothing but the admin's public recipient.
    ok(&c.coffer(&[
        "keygen",
        "-w",
        "attacker.txt",
        "--recipients-out",
        "attacker.pub",
    ]));
    let attacker = std::fs::read_to_string(c.dir.path().join("attacker.txt")).unwrap();
    let attacker_secret = attacker
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap();
    let attacker_id = coffer_format::key::parse_identity_file(&attacker).unwrap()[0].id();
    let forge = |file: &str, created: &str| {
        let plain = format!(
            "# Coffer key ring backup\n# coffer: created={created} state=usable\n{attacker_secret}\n"
        );
        std::fs::write(c.dir.path().join(format!("{file}.txt")), plain).unwrap();
        let st = std::process::Command::new("age")
            .current_dir(c.dir.path())
            .args([
                "-a",
                "-r",
                admin_recipient,
                "-o",
                file,
                &format!("{file}.txt"),
            ])
            .status()
            .expect("stock age (tests/setup installs it)");
        assert!(st.success());
    };
    forge("future.age", "2099-01-01T00:00:00Z");
    forge("past.age", "2026-01-01T00:00:00Z");
    let key_secrets = || async {
        let api: Api<Secret> = Api::namespaced(c.admin.clone(), &c.key_ns);
        api.list(&ListParams::default().labels("coffer.dev/key-id"))
            .await
            .unwrap()
            .items
            .len()
    };
    let before = key_secrets().await;

    let o = c.coffer(&[
        "keys",
        "restore",
        "future.age",
        "-i",
        "admin.txt",
        "--trust-any",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("in the future"));
    let o = c.coffer(&[
        "keys",
        "restore",
        "past.age",
        "-i",
        "admin.txt",
        "--trust",
        "prod.txt",
    ]);
    assert_eq!(o.status.code(), Some(5), "refused");
    let said = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        said.contains(&attacker_id.to_string()),
        "prints the key id: {said}"
    );
    assert!(
        said.contains("in no recipients file named with --trust"),
        "{said}"
    );
    assert_eq!(key_secrets().await, before, "nothing restored");

    // Forced in: it opens values sealed to it, and seals nothing.
    ok(&c.coffer(&[
        "keys",
        "restore",
        "past.age",
        "-i",
        "admin.txt",
        "--trust-any",
    ]));
    assert_eq!(key_secrets().await, before + 1);
    let sealed = ok(&c.coffer_in(
        c.dir.path(),
        &["seal", "-r", "attacker.pub"],
        Some(&secret(&c.ns, "forged", "opens-here")),
    ));
    std::fs::write(c.dir.path().join("forged.yaml"), &sealed).unwrap();
    c.kubectl(&[
        "apply",
        "-f",
        c.dir.path().join("forged.yaml").to_str().unwrap(),
    ]);
    c.wait_ready("forged").await;
    assert_eq!(
        c.active_key().await,
        genuine,
        "the sealing key is unchanged"
    );
    let published = ok(&c.coffer(&["recipients"]));
    assert!(published.contains(&genuine) && !published.contains(&attacker_id.to_string()));

    // Only an explicit, logged activation makes it seal.
    ok(&c.coffer(&["keys", "activate", &attacker_id.short()]));
    eventually(WAIT, "the activated key is published", || async {
        (c.active_key().await == attacker_id.to_string()).then_some(())
    })
    .await;
    eventually(WAIT, "the controller logs the change", || async {
        c.ctrl
            .log_text()
            .contains("the active sealing key changed")
            .then_some(())
    })
    .await;
    c.ctrl.assert_log_free_of(&["opens-here", attacker_secret]);
}

#[tokio::test]
async fn one_value_sealed_for_two_clusters_opens_in_both() {
    let a = cluster_on(Server::shared().clone(), "cli-multi").await;
    let second = Server::start_private("second").unwrap();
    let _stop = second.stop_on_drop();
    let b = cluster_on(second, "cli-multi").await;
    ok(&a.coffer(&["recipients", "-w", "a.txt"]));
    ok(&b.coffer_in(a.dir.path(), &["recipients", "-w", "b.txt"], None));

    // The same namespace name in both clusters.
    b.kubectl(&["create", "namespace", &a.ns]);
    let sealed = ok(&a.coffer_in(
        a.dir.path(),
        &["seal", "-r", "a.txt", "-r", "b.txt"],
        Some(&secret(&a.ns, "db", "multi-e2e")),
    ));
    let file = a.dir.path().join("sealed.yaml");
    std::fs::write(&file, &sealed).unwrap();
    a.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    a.wait_ready("db").await;
    assert_eq!(a.secret_value("db", "password").await, b"multi-e2e");

    // Replace cluster b's controller by one that watches a.ns (a graceful
    // stop releases the leader lease at once).
    let mut b = b;
    b.ctrl.stop();
    let ctrl_b = b
        .controller(&format!("{}-b2", a.ns), std::slice::from_ref(&a.ns), &[])
        .await;
    b.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    let api: Api<coffer_core::SealedSecret> = Api::namespaced(b.admin.clone(), &a.ns);
    eventually(WAIT, "cluster b to unseal", || async {
        let s = api.get("db").await.ok()?;
        (s.ready_condition()?.reason == "Unsealed").then_some(())
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(b.admin.clone(), &a.ns);
    assert_eq!(
        secrets.get("db").await.unwrap().data.unwrap()["password"].0,
        b"multi-e2e"
    );
    ctrl_b.assert_log_free_of(&["multi-e2e"]);
    a.ctrl.assert_log_free_of(&["multi-e2e"]);
}

#[tokio::test]
async fn verify_says_when_the_controller_service_has_no_endpoints() {
    // The API server's service proxy answers for a Service with no ready
    // endpoints (here: no pod matches it); that is not the controller.
    let server = Server::shared().clone();
    let admin = server.admin().await;
    let ns = namespace(&admin, "cli-noep").await;
    server.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: coffer-controller}\nspec:\n  selector: {app: nothing-runs-here}\n  ports: [{name: http, port: 8080}]\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let coffer = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .current_dir(dir.path())
            .env_remove("COFFER_CONTROLLER_URL")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(["--controller-namespace", &ns])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    ok(&coffer(
        &["keygen", "-w", "id.txt", "--recipients-out", "r.txt"],
        "",
    ));
    let sealed = ok(&coffer(
        &["seal", "-r", "r.txt"],
        &secret("shop", "db", "cli-e2e-noep"),
    ));
    let o = coffer(&["verify"], &sealed);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!(
            "error: the controller Service {ns}/coffer-controller has no ready endpoints (is coffer-controller running?)"
        )),
        "{err}"
    );
    assert!(!err.contains("the controller answered HTTP"), "{err}");
    assert!(!err.contains("cli-e2e-noep"), "{err}");

    // --controller-name: another Service name, here also without endpoints.
    server.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: sealer}\nspec:\n  selector: {app: nothing-runs-here}\n  ports: [{name: http, port: 8080}]\n",
    );
    let o = coffer(&["verify", "--controller-name", "sealer"], &sealed);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!(
            "error: the controller Service {ns}/sealer has no ready endpoints"
        )),
        "{err}"
    );

    // Without the Service at all, it says so.
    server.kubectl_ok(&["delete", "service", "-n", &ns, "coffer-controller"]);
    let o = coffer(&["verify"], &sealed);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!(
            "error: the API server has no Service {ns}/coffer-controller (is coffer-controller installed?)"
        )),
        "{err}"
    );
}

/// The project's own two-cluster layout (examples/gitops: `.coffer.yaml`
/// says `base/**` is prod plus dr): `coffer rotate` in prod takes dr's
/// recipients from the rule, so the run the dry run announced succeeds
/// file for file, both clusters still open the shared value, prod's
/// recipients file is refreshed, and `coffer check` passes right after.
/// A value of dr's overlay is left alone. Before, the dry run said "would
/// change 2 of 2" and the real run created a key, then stopped at HTTP 422.
#[tokio::test]
async fn rotate_follows_coffer_yaml_in_the_two_cluster_layout() {
    let prod = cluster_on(Server::shared().clone(), "rot-prod").await;
    let dr = cluster_on(Server::shared().clone(), "rot-dr").await;
    let repo = prod.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::copy(
        root().join("examples/gitops/.coffer.yaml"),
        repo.join(".coffer.yaml"),
    )
    .unwrap();
    ok(&prod.coffer_in(&repo, &["recipients", "-w", "recipients/prod.txt"], None));
    ok(&dr.coffer_in(&repo, &["recipients", "-w", "recipients/dr.txt"], None));
    let ns = &prod.ns;
    for (file, name) in [
        ("base/db.sealed.yaml", "db"),
        ("clusters/prod/payment-api.sealed.yaml", "payment-api"),
        ("clusters/dr/payment-api.sealed.yaml", "payment-api"),
    ] {
        // No -r: the rule of the file written picks the recipients.
        ok(&prod.coffer_in(
            &repo,
            &["seal", "-w", file],
            Some(&secret(ns, name, &format!("two-cluster-{name}"))),
        ));
    }
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "two clusters"]);
    let old = prod.active_key().await;
    let committed = |f: &str| std::fs::read_to_string(repo.join(f)).unwrap();
    let db_before = committed("base/db.sealed.yaml");

    let dry = ok(&prod.coffer_in(
        &repo,
        &["rotate", "--dry-run", "base", "clusters/prod"],
        None,
    ));
    assert!(
        dry.contains("would change 2 of 2 file(s); 2 value(s) re-encrypted to a new key"),
        "{dry}"
    );
    assert!(
        dry.contains("would refresh") && dry.contains("recipients/prod.txt"),
        "{dry}"
    );
    assert_eq!(prod.active_key().await, old, "a dry run requests no key");
    assert_eq!(committed("base/db.sealed.yaml"), db_before);

    let out = ok(&prod.coffer_in(&repo, &["rotate", "base", "clusters/prod"], None));
    let new = prod.active_key().await;
    assert_ne!(new, old);
    assert!(
        out.contains(&format!(
            "changed 2 of 2 file(s); 2 value(s) re-encrypted to key {}",
            &new[..16]
        )),
        "{out}"
    );
    assert_ne!(committed("base/db.sealed.yaml"), db_before);
    // prod's recipients file follows the rotation; dr's is not touched.
    assert_eq!(
        committed("recipients/prod.txt"),
        ok(&prod.coffer(&["recipients"]))
    );
    assert_eq!(
        committed("recipients/dr.txt"),
        ok(&dr.coffer(&["recipients"]))
    );
    // Both clusters still open the shared value, prod its own.
    ok(&prod.coffer_in(
        &repo,
        &["verify", "base/db.sealed.yaml", "clusters/prod"],
        None,
    ));
    ok(&dr.coffer_in(
        &repo,
        &["verify", "base/db.sealed.yaml", "clusters/dr"],
        None,
    ));
    let check = prod.coffer_in(&repo, &["check"], None);
    assert!(
        check.status.success(),
        "check after rotate: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // check's two fixes for a rotation, each run as named, each making the
    // next check pass. A recipients file older than the values (a
    // teammate's checkout from before the rotation): refresh it.
    git(&repo, &["checkout", "--", "recipients/prod.txt"]);
    let fix = check_fix(&prod, &repo, "never listed, newer than the file");
    assert_eq!(fix[..2], ["coffer", "recipients"], "{fix:?}");
    ok(&prod.coffer_in(
        &repo,
        &fix[1..].iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    ));
    ok(&prod.coffer_in(&repo, &["check"], None));
    git(&repo, &["commit", "-qam", "rotate prod"]);
    // A value sealed to the replaced key (a file the rotation did not
    // see): re-encrypt it.
    let before = git(&repo, &["show", "HEAD~1:recipients/prod.txt"]);
    std::fs::write(repo.join("old-prod.txt"), before).unwrap();
    ok(&prod.coffer_in(
        &repo,
        &[
            "seal",
            "-r",
            "old-prod.txt",
            "-w",
            "clusters/prod/late.sealed.yaml",
        ],
        Some(&secret(ns, "late", "two-cluster-late")),
    ));
    let fix = check_fix(&prod, &repo, "listed before");
    assert_eq!(fix[..3], ["coffer", "rotate", "--no-new-key"], "{fix:?}");
    ok(&prod.coffer_in(
        &repo,
        &fix[1..].iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    ));
    ok(&prod.coffer_in(&repo, &["check"], None));

    // The whole repository in prod: dr's overlay is not prod's, and left alone.
    let dr_file = committed("clusters/dr/payment-api.sealed.yaml");
    let all = ok(&prod.coffer_in(&repo, &["rotate", "--no-new-key", "."], None));
    assert!(
        all.contains("clusters/dr/payment-api.sealed.yaml: document 1: sealed to no key of this cluster; left as it is"),
        "{all}"
    );
    assert!(all.contains("changed 0 of"), "{all}");
    assert_eq!(committed("clusters/dr/payment-api.sealed.yaml"), dr_file);
    assert_eq!(prod.active_key().await, new);
    for c in [&prod, &dr] {
        c.ctrl.assert_log_free_of(&[
            "two-cluster-db",
            "two-cluster-payment-api",
            "two-cluster-late",
        ]);
    }
}

/// A rotation that cannot finish creates no key: a value also sealed to a
/// cluster no recipients file names, or one that does not open here, is
/// found before the key is requested, and nothing is written. Before, the
/// key was created first and the run stopped at the first such file.
#[tokio::test]
async fn a_rotation_that_cannot_finish_requests_no_key_and_writes_nothing() {
    let c = cluster_on(Server::shared().clone(), "rot-orphan").await;
    ok(&c.coffer(&["recipients", "-w", "r.txt"]));
    ok(&c.coffer(&["keygen", "-w", "other.key", "--recipients-out", "other.txt"]));
    let repo = c.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for (name, extra) in [("a", None), ("b", Some("other.txt"))] {
        let mut args = vec!["seal", "-r", "r.txt"];
        if let Some(e) = extra {
            args.extend(["-r", e]);
        }
        let sealed = ok(&c.coffer_in(
            c.dir.path(),
            &args,
            Some(&secret(&c.ns, name, &format!("orphan-{name}"))),
        ));
        std::fs::write(repo.join(format!("{name}.yaml")), sealed).unwrap();
    }
    let keys_api: Api<Secret> = Api::namespaced(c.admin.clone(), &c.key_ns);
    let key_secrets = || async {
        keys_api
            .list(&ListParams::default().labels("coffer.dev/key-id"))
            .await
            .unwrap()
            .items
            .len()
    };
    let (old, ring) = (c.active_key().await, key_secrets().await);
    let files =
        |dir: &Path| ["a.yaml", "b.yaml"].map(|f| std::fs::read_to_string(dir.join(f)).unwrap());
    let before = files(&repo);
    let other_id = coffer_format::RecipientsFile::parse(
        &std::fs::read_to_string(c.dir.path().join("other.txt")).unwrap(),
    )
    .unwrap()
    .entries[0]
        .key
        .id()
        .to_string();

    // Another cluster's key that no file names: refused offline, exit 3.
    for dry in [true, false] {
        let mut args = vec!["rotate", "."];
        if dry {
            args.insert(1, "--dry-run");
        }
        let o = c.coffer_in(&repo, &args, None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{err}");
        assert!(
            err.contains(&format!(
                "./b.yaml: document 1: also sealed to key {other_id}"
            )),
            "{err}"
        );
        assert!(err.contains("no key was requested"), "{err}");
        assert!(err.contains("pass it with -r FILE"), "{err}");
    }
    // A value moved to another namespace does not open here: the
    // controller refuses it in the check before any key, exit 4.
    let moved = before[0].replace(&c.ns, "elsewhere");
    std::fs::write(repo.join("a.yaml"), &moved).unwrap();
    let o = c.coffer_in(&repo, &["rotate", "-r", "../other.txt", "."], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains("./a.yaml: document 1: the controller refused to re-encrypt (HTTP 409)"),
        "{err}"
    );
    assert!(err.contains("no key was requested"), "{err}");
    assert_eq!(c.active_key().await, old, "no key was requested");
    assert_eq!(key_secrets().await, ring, "no key Secret was created");
    assert_eq!(files(&repo), [moved.clone(), before[1].clone()]);

    // Once every value can be re-encrypted, the same command succeeds.
    std::fs::write(repo.join("a.yaml"), &before[0]).unwrap();
    let out = ok(&c.coffer_in(&repo, &["rotate", "-r", "../other.txt", "."], None));
    assert!(
        out.contains("changed 2 of 2 file(s); 2 value(s) re-encrypted"),
        "{out}"
    );
    assert_ne!(c.active_key().await, old);
    assert!(
        std::fs::read_to_string(repo.join("b.yaml"))
            .unwrap()
            .contains("encryptedData"),
    );
    c.ctrl.assert_log_free_of(&["orphan-a", "orphan-b"]);
}

/// The problems `coffer check` reports in `repo`, which must all say
/// `says` and name one command as their fix (between backticks); returns
/// it, split.
fn check_fix(c: &CliCluster, repo: &Path, says: &str) -> Vec<String> {
    let o = c.coffer_in(repo, &["check"], None);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let fixes: BTreeSet<&str> = out
        .lines()
        .map(|l| {
            assert!(l.contains(says), "{out}");
            l.split("; fix: ")
                .nth(1)
                .unwrap()
                .split('`')
                .nth(1)
                .unwrap()
        })
        .collect();
    assert_eq!(fixes.len(), 1, "{out}");
    fixes
        .first()
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}
