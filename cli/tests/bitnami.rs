//! Moving a cluster from bitnami sealed-secrets to Coffer, end to end, with
//! bitnami's real controller and kubeseal built from their Go module
//! (tests/bitnami/build, v0.40.0): bitnami makes its key, kubeseal seals
//! Secrets in all three scopes, bitnami's controller unseals them and is
//! stopped; Coffer imports the keys and unseals the same SealedSecrets
//! into identical Secrets; `coffer convert` rewrites the files (through
//! the controller, and offline from bitnami's key backup); applied, they
//! leave the Secrets unchanged; moved values are refused.
#![allow(
    clippy::too_many_lines,
    reason = "an end-to-end scenario reads top to bottom, one step after another"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use coffer_core::bitnami::DEFAULT_KEY_NAMESPACE;
use coffer_test_support::{
    Cluster, Server, WAIT, eventually, free_port, namespace, root, suffix, target_dir,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

/// bitnami's binaries and CRD, built once and cached by tests/bitnami/build.
struct Bitnami {
    bin: PathBuf,
    crd: PathBuf,
}

fn bitnami() -> Bitnami {
    let out = Command::new(root().join("tests/bitnami/build"))
        .output()
        .expect("run tests/bitnami/build");
    assert!(
        out.status.success(),
        "tests/bitnami/build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        PathBuf::from(
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("tests/bitnami/build printed no {name}")),
        )
    };
    Bitnami {
        bin: field("bin"),
        crd: field("crd"),
    }
}

/// bitnami's controller, killed on drop. It only supports the in-cluster
/// configuration, so it gets a token, the CA and `KUBERNETES_SERVICE_*`
/// through a private mount namespace (as tests/bench/compare runs it).
struct BitnamiController {
    child: Child,
    log: PathBuf,
}

impl BitnamiController {
    async fn start(server: &Server, bin: &Path, home: &str, watched: &[String]) -> Self {
        let admin = server.admin().await;
        let sa = "sealed-secrets-controller";
        let token = coffer_test_support::token(&admin, home, sa).await.unwrap();
        // bitnami's controller needs Secrets cluster-wide and its own CRD;
        // cluster-admin keeps this test about the migration, not its RBAC.
        server.kubectl_stdin(
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {home}-bitnami\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n  - kind: ServiceAccount\n    name: {sa}\n    namespace: {home}\n"
            ),
        );
        let dir = target_dir().join(format!("e2e/bitnami-sa-{home}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), token).unwrap();
        std::fs::copy(server.dir.join("pki/ca.crt"), dir.join("ca.crt")).unwrap();
        std::fs::write(dir.join("namespace"), home).unwrap();
        let url = std::fs::read_to_string(server.dir.join("ready")).unwrap();
        let hostport = url.trim().trim_start_matches("https://").to_string();
        let (host, port) = hostport.rsplit_once(':').unwrap();
        let log = target_dir().join(format!("e2e/bitnami-controller-{home}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount -t tmpfs -o size=1m tmpfs /run && \
                 mkdir -p /run/secrets/kubernetes.io/serviceaccount && \
                 mount --bind \"$SA_DIR\" /run/secrets/kubernetes.io/serviceaccount && \
                 exec \"$0\" \"$@\"",
            )
            .arg(bin.join("controller"))
            .args([
                "--all-namespaces=false",
                &format!("--additional-namespaces={}", watched.join(",")),
                &format!("--listen-addr=127.0.0.1:{}", free_port()),
                &format!("--listen-metrics-addr=127.0.0.1:{}", free_port()),
            ])
            .env("SA_DIR", &dir)
            .env("KUBERNETES_SERVICE_HOST", host)
            .env("KUBERNETES_SERVICE_PORT", port)
            .env("POD_NAMESPACE", home)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start bitnami's controller (needs unshare and root)");
        BitnamiController { child, log }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BitnamiController {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "command failed ({:?}): {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// What of a Secret the migration must keep: type, labels, annotations,
/// data, and the owner.
#[derive(Debug, PartialEq)]
struct Kept {
    type_: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    data: BTreeMap<String, Vec<u8>>,
}

fn kept(s: &Secret) -> Kept {
    Kept {
        type_: s.type_.clone(),
        labels: s.metadata.labels.clone().unwrap_or_default(),
        annotations: s.metadata.annotations.clone().unwrap_or_default(),
        data: coffer_test_support::secret_data(s),
    }
}

fn controller_of(s: &Secret) -> Option<(String, String)> {
    s.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.api_version.clone(), o.uid.clone()))
}

/// The bitnami SealedSecret's `Synced` condition: (status, reason, message).
async fn synced(admin: &kube::Client, ns: &str, name: &str) -> Option<(String, String, String)> {
    let api: Api<coffer_core::bitnami::BitnamiSealedSecret> = Api::namespaced(admin.clone(), ns);
    let s = api.get(name).await.ok()?;
    let c = s
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Synced")?;
    Some((
        c.status,
        c.reason.unwrap_or_default(),
        c.message.unwrap_or_default(),
    ))
}

#[tokio::test]
async fn a_bitnami_cluster_moves_to_coffer_without_a_secret_changing() {
    let b = bitnami();
    let server = Server::shared().clone();
    server.install_deploy();
    server.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        b.crd.to_str().unwrap(),
    ]);
    server.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/sealedsecrets.bitnami.com",
        "--timeout=60s",
    ]);
    // deploy/bitnami's rules, bound to the tests' controller ServiceAccount.
    let rbac = std::fs::read_to_string(root().join("deploy/bitnami/rbac.yaml")).unwrap();
    server.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &format!("{rbac}    namespace: coffer-system\n"),
    );

    // Two watched namespaces; Coffer's controller runs without --bitnami
    // beside bitnami's for now.
    let mut c = Cluster::start_on(
        server.clone(),
        &coffer_test_support::controller_bin(),
        "bitnami",
        &[],
        2,
    )
    .await;
    let (ns, other) = (c.watched[0].clone(), c.watched[1].clone());
    let admin = c.admin.clone();
    let home = namespace(&admin, "bitnami-home").await;
    let mut ss = BitnamiController::start(&server, &b.bin, &home, &c.watched).await;

    // bitnami generates its key.
    let bitnami_secrets: Api<Secret> = Api::namespaced(admin.clone(), &home);
    let key = eventually(WAIT, "bitnami's controller to generate its key", || async {
        let list = bitnami_secrets
            .list(&ListParams::default().labels(coffer_core::bitnami::KEY_LABEL))
            .await
            .ok()?;
        list.items.into_iter().next()
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let cert = work.path().join("cert.pem");
    std::fs::write(&cert, &key.data.as_ref().unwrap()["tls.crt"].0).unwrap();

    // kubeseal seals Secrets in all three scopes, into a repository with
    // comments and other documents.
    let tag = suffix();
    let plain = |what: &str| format!("{what}-{tag}-migration-plaintext");
    let kubeseal = |scope: &str, manifest: &str| {
        ok(&run(
            Command::new(b.bin.join("kubeseal"))
                .arg("--kubeconfig")
                .arg(server.kubeconfig())
                .arg("--cert")
                .arg(&cert)
                .args(["--scope", scope, "-o", "yaml"]),
            Some(manifest),
        ))
    };
    let strict = kubeseal(
        "strict",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {ns}\n  labels: {{app: shop}}\n  annotations: {{team: payments}}\ntype: kubernetes.io/basic-auth\nstringData:\n  username: admin\n  password: {}\n",
            plain("db")
        ),
    );
    let namespace_wide = kubeseal(
        "namespace-wide",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: shared\n  namespace: {ns}\nstringData:\n  token: {}\n",
            plain("shared")
        ),
    );
    let cluster_wide = kubeseal(
        "cluster-wide",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: global\n  namespace: {ns}\nstringData:\n  api-key: {}\n",
            plain("global")
        ),
    );
    let repo = work.path().join("repo");
    std::fs::create_dir_all(repo.join("apps")).unwrap();
    let db_file = format!("# the shop's database login\n{strict}");
    let configmap = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {ns}\ndata:\n  mode: live # keep this comment\n"
    );
    let more_file = format!(
        "# shared things\n{configmap}---\n# namespace-wide\n{}---\n# cluster-wide\n{}",
        namespace_wide.trim_start_matches("---\n"),
        cluster_wide.trim_start_matches("---\n")
    );
    std::fs::write(repo.join("db.yaml"), &db_file).unwrap();
    std::fs::write(repo.join("apps/more.yaml"), &more_file).unwrap();
    let original = work.path().join("original");
    std::fs::create_dir_all(&original).unwrap();
    std::fs::write(original.join("db.yaml"), &db_file).unwrap();
    std::fs::write(original.join("more.yaml"), &more_file).unwrap();
    server.kubectl_ok(&["apply", "-R", "-f", repo.to_str().unwrap()]);

    // bitnami's controller unseals them.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let names = ["db", "shared", "global"];
    let mut by_bitnami = BTreeMap::new();
    for name in names {
        let s = eventually(WAIT, &format!("bitnami to unseal {name}"), || async {
            secrets.get_opt(name).await.ok()?
        })
        .await;
        by_bitnami.insert(name, (kept(&s), controller_of(&s)));
    }
    assert_eq!(
        by_bitnami["db"].0.data["password"],
        plain("db").into_bytes(),
        "bitnami unsealed the strict value"
    );
    assert_eq!(
        by_bitnami["db"].0.type_.as_deref(),
        Some("kubernetes.io/basic-auth")
    );
    assert_eq!(
        by_bitnami["global"].0.data["api-key"],
        plain("global").into_bytes()
    );
    let bitnami_log = std::fs::read_to_string(&ss.log).unwrap_or_default();
    ss.stop();

    // Coffer imports the keys, and replaces bitnami's controller.
    let coffer = |dir: &Path, args: &[&str], url: &str| {
        run(
            Command::new(env!("CARGO_BIN_EXE_coffer"))
                .current_dir(dir)
                .arg("--kubeconfig")
                .arg(server.kubeconfig())
                .args(["--controller-namespace", &c.key_ns])
                .args(["--controller-url", url])
                .args(args),
            None,
        )
    };
    let url = format!("http://{}", c.ctrl.http);
    let imported = ok(&coffer(
        work.path(),
        &["keys", "import-bitnami", "--from-namespace", &home],
        &url,
    ));
    assert!(imported.contains("imported as"), "{imported}");
    // Importing again changes nothing.
    let again = ok(&coffer(
        work.path(),
        &["keys", "import-bitnami", "--from-namespace", &home],
        &url,
    ));
    assert!(again.contains("already imported"), "{again}");
    c.ctrl.stop();
    let ctrl = c
        .controller(
            "bitnami-coffer",
            &c.watched,
            &["--bitnami", "--bitnami-resync", "3s"],
        )
        .await;

    // Coffer takes bitnami's SealedSecrets over: each one's status says
    // so, counted once each, the Secrets untouched.
    for name in names {
        eventually(WAIT, &format!("Coffer to take {name} over"), || async {
            synced(&admin, &ns, name)
                .await
                .filter(|c| c.0 == "True" && c.2 == "Secret unsealed by Coffer")
        })
        .await;
        let s = secrets.get(name).await.unwrap();
        assert_eq!(
            (kept(&s), controller_of(&s)),
            by_bitnami[name],
            "{name}: taken over unchanged"
        );
    }
    let (_, metrics) = coffer_test_support::http_get(ctrl.http, "/metrics")
        .await
        .unwrap();
    for line in [
        "coffer_bitnami_unseal_total{reason=\"Unsealed\"} 3",
        "coffer_bitnami_unseal_total{reason=\"NoMatchingKey\"} 0",
        "coffer_bitnami_unseal_total{reason=\"TakenOver\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }

    // Coffer unseals the same SealedSecrets: bitnami's Secrets, deleted,
    // come back identical, with bitnami's owner reference.
    for name in names {
        secrets.delete(name, &Default::default()).await.unwrap();
    }
    for name in names {
        let s = eventually(
            WAIT,
            &format!("Coffer to unseal bitnami's {name}"),
            || async {
                let s = secrets.get_opt(name).await.ok()??;
                s.metadata.deletion_timestamp.is_none().then_some(s)
            },
        )
        .await;
        assert_eq!(
            (kept(&s), controller_of(&s)),
            by_bitnami[name],
            "{name}: the Secret Coffer made is the one bitnami made"
        );
        let condition = eventually(WAIT, "Synced=True", || async {
            synced(&admin, &ns, name).await.filter(|c| c.0 == "True")
        })
        .await;
        assert_eq!(condition.0, "True");
    }

    // A bitnami value copied to another namespace is refused, and says so.
    let moved = strict.replace(&format!("namespace: {ns}"), &format!("namespace: {other}"));
    server.kubectl_stdin(&["apply", "-f", "-"], &moved);
    let refused = eventually(WAIT, "the moved bitnami value to be refused", || async {
        synced(&admin, &other, "db")
            .await
            .filter(|c| c.0 == "False")
    })
    .await;
    assert_eq!(refused.1, "NoMatchingKey", "{refused:?}");
    assert!(refused.2.contains("item \"password\""), "{refused:?}");
    let others: Api<Secret> = Api::namespaced(admin.clone(), &other);
    assert!(others.get_opt("db").await.unwrap().is_none());
    // Each Secret taken over once and written once, the refusal counted
    // once.
    let (_, metrics) = coffer_test_support::http_get(ctrl.http, "/metrics")
        .await
        .unwrap();
    for line in [
        "coffer_bitnami_unseal_total{reason=\"Unsealed\"} 6",
        "coffer_bitnami_unseal_total{reason=\"NoMatchingKey\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }

    // A restart (a rollout) does not count the refusal its status already
    // shows again (CofferBitnamiUnsealFailuresRising stays quiet,
    // tests/prometheus/rules_test.yaml), nor take over again what it took
    // over. From here the resync is the default 10 minutes: what follows
    // happens at once or not within the test.
    let first_log = ctrl.log.clone();
    drop(ctrl);
    let ctrl = c
        .controller("bitnami-coffer-again", &c.watched, &["--bitnami"])
        .await;
    let url = format!("http://{}", ctrl.http);
    eventually(
        WAIT,
        "the restarted controller to see the refusal",
        || async {
            let log = std::fs::read_to_string(&ctrl.log).ok()?;
            log.lines()
                .any(|l| l.contains("bitnami SealedSecret not unsealed") && l.contains(&other))
                .then_some(())
        },
    )
    .await;
    let (_, metrics) = coffer_test_support::http_get(ctrl.http, "/metrics")
        .await
        .unwrap();
    for line in [
        "coffer_bitnami_unseal_total{reason=\"Unsealed\"} 0",
        "coffer_bitnami_unseal_total{reason=\"NoMatchingKey\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }

    // coffer convert rewrites the files through the controller, keeping
    // comments and the other document byte for byte.
    let dry = ok(&coffer(&repo, &["convert", "--dry-run", "."], &url));
    assert!(
        dry.contains("would convert 3 bitnami SealedSecret(s) in 2 of 2 file(s)"),
        "{dry}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("db.yaml")).unwrap(),
        db_file
    );
    let converted = ok(&coffer(&repo, &["convert", "."], &url));
    assert!(
        converted.contains("converted 3 bitnami SealedSecret(s) in 2 of 2 file(s)"),
        "{converted}"
    );
    let db_now = std::fs::read_to_string(repo.join("db.yaml")).unwrap();
    let more_now = std::fs::read_to_string(repo.join("apps/more.yaml")).unwrap();
    assert!(
        db_now.starts_with("# the shop's database login\n"),
        "{db_now}"
    );
    assert!(
        more_now.starts_with(&format!(
            "# shared things\n{configmap}---\n# namespace-wide\n"
        )),
        "{more_now}"
    );
    assert!(more_now.contains("---\n# cluster-wide\n"));
    for text in [&db_now, &more_now] {
        assert!(!text.contains("bitnami.com/v1alpha1"), "{text}");
        assert!(text.contains("apiVersion: coffer.dev/v1alpha1"), "{text}");
        for name in names {
            assert!(!text.contains(&plain(name)));
        }
    }

    // Applied, the Coffer SealedSecrets take their Secrets over; nothing
    // in them changes but the owner, Coffer's own label and Coffer's
    // own annotation.
    server.kubectl_ok(&["apply", "-R", "-f", repo.to_str().unwrap()]);
    for name in names {
        c.wait_reason(&ns, name, "Unsealed").await;
        let s = secrets.get(name).await.unwrap();
        let mut now = kept(&s);
        assert_eq!(
            now.labels.remove(coffer_core::api::OWNED_LABEL).as_deref(),
            Some(name)
        );
        assert!(
            now.annotations
                .remove(coffer_core::api::UNSEALED_ANNOTATION)
                .is_some_and(|a| a.starts_with("v1;"))
        );
        assert_eq!(now, by_bitnami[name].0, "{name}: unchanged by the move");
        let owner = controller_of(&s).unwrap();
        assert_eq!(owner.0, "coffer.dev/v1alpha1");
        // The bitnami object, not pruned here, leaves the Secret to Coffer's
        // and says so at once (its Secret changed owner), not at a resync.
        let c = eventually(
            WAIT,
            &format!("bitnami's {name} to say TakenOver"),
            || async {
                synced(&admin, &ns, name)
                    .await
                    .filter(|c| c.1 == "TakenOver")
            },
        )
        .await;
        assert_eq!(c.0, "False", "{c:?}");
    }
    // Taken over is no refusal: not in the refusal alert's series.
    let (_, metrics) = coffer_test_support::http_get(ctrl.http, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "coffer_bitnami_unseal_total{reason=\"TakenOver\"} 3"),
        "{metrics}"
    );

    // The old rollback advice, deleting the Coffer SealedSecret first: the
    // garbage collector deletes its Secret, and the bitnami SealedSecret
    // of that name writes it again at once (not at the next resync).
    let coffer_db = c.sealed_api(&ns);
    let gone_uid = secrets.get("db").await.unwrap().metadata.uid;
    coffer_db.delete("db", &Default::default()).await.unwrap();
    let back = eventually(WAIT, "bitnami's db to write its Secret again", || async {
        let s = secrets.get_opt("db").await.ok()??;
        (s.metadata.uid != gone_uid && s.metadata.deletion_timestamp.is_none()).then_some(s)
    })
    .await;
    assert_eq!(kept(&back), by_bitnami["db"].0);
    assert_eq!(
        controller_of(&back).map(|o| o.0).as_deref(),
        Some("bitnami.com/v1alpha1")
    );
    eventually(WAIT, "bitnami's db to be Synced again", || async {
        synced(&admin, &ns, "db").await.filter(|c| c.0 == "True")
    })
    .await;

    // A converted strict value moved to another namespace is refused; the
    // cluster-wide one opens there, as its scope allows.
    let converted_db = coffer_core::api::read_sealed_secret(
        serde_saphyr::from_str::<serde_json::Value>(&db_now).unwrap(),
    )
    .unwrap()
    .unwrap();
    let mut copy = converted_db.clone();
    copy.metadata.namespace = Some(other.clone());
    copy.metadata.name = Some("db-copy".into());
    let sealed: Api<coffer_core::SealedSecret> = Api::namespaced(admin.clone(), &other);
    sealed.create(&Default::default(), &copy).await.unwrap();
    let s = c.wait_reason(&other, "db-copy", "ScopeMismatch").await;
    let msg = &s.ready_condition().unwrap().message;
    assert!(msg.contains(&format!("sealed for {ns}/db")), "{msg}");
    assert!(others.get_opt("db-copy").await.unwrap().is_none());

    // Offline, from bitnami's key backup, for disaster recovery: the same
    // conversion without the controller opening anything.
    let backup = server.kubectl_ok(&[
        "get",
        "secret",
        "-n",
        &home,
        "-l",
        coffer_core::bitnami::KEY_LABEL,
        "-o",
        "yaml",
    ]);
    std::fs::write(work.path().join("main.key"), &backup).unwrap();
    ok(&coffer(
        work.path(),
        &["recipients", "-w", "prod.txt"],
        &url,
    ));
    let offline = ok(&coffer(
        &original,
        &[
            "convert",
            "--bitnami-keys",
            work.path().join("main.key").to_str().unwrap(),
            "-r",
            work.path().join("prod.txt").to_str().unwrap(),
            ".",
        ],
        &url,
    ));
    assert!(
        offline.contains("converted 3 bitnami SealedSecret(s) in 2 of 2 file(s)"),
        "{offline}"
    );
    let verified = ok(&coffer(
        &original,
        &["verify", "db.yaml", "more.yaml"],
        &url,
    ));
    assert_eq!(verified.matches("opens").count(), 3, "{verified}");
    // A wrong key does not open them: the file is left as it was.
    let stranger = coffer_core::bitnami::BitnamiKey::generate(4096);
    std::fs::write(work.path().join("other.pem"), &*stranger.to_pem()).unwrap();
    let wrong = work.path().join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::write(wrong.join("db.yaml"), &db_file).unwrap();
    let o = coffer(
        &wrong,
        &[
            "convert",
            "--bitnami-keys",
            work.path().join("other.pem").to_str().unwrap(),
            "-r",
            work.path().join("prod.txt").to_str().unwrap(),
            ".",
        ],
        &url,
    );
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("NoMatchingKey"));
    assert_eq!(
        std::fs::read_to_string(wrong.join("db.yaml")).unwrap(),
        db_file
    );

    // No plaintext in any log.
    let values: Vec<String> = names.iter().map(|n| plain(n)).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    ctrl.assert_log_free_of(&values);
    c.ctrl.assert_log_free_of(&values);
    let first = std::fs::read_to_string(&first_log).unwrap();
    for v in &values {
        assert!(!first.contains(v));
    }
    for v in &values {
        assert!(!bitnami_log.is_empty() && !bitnami_log.contains(v));
    }
}

/// bitnami's CRD and deploy/bitnami's rules for the tests' controller.
fn install_bitnami(server: &Server, b: &Bitnami) {
    server.install_deploy();
    server.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        b.crd.to_str().unwrap(),
    ]);
    server.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/sealedsecrets.bitnami.com",
        "--timeout=60s",
    ]);
    let rbac = std::fs::read_to_string(root().join("deploy/bitnami/rbac.yaml")).unwrap();
    server.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &format!("{rbac}    namespace: coffer-system\n"),
    );
}

/// Coffer's controller for the doc's flow: watching `shop`, always on the
/// same port (the doc's `COFFER_CONTROLLER_URL` outlives a restart), with
/// `--bitnami` and the default 10-minute resync when `bitnami`: what the
/// doc's rollback needs must happen at once, not at a resync.
async fn doc_controller(
    server: &Server,
    key_ns: &str,
    http: std::net::SocketAddr,
    bitnami: bool,
    name: &str,
) -> coffer_test_support::ControllerProcess {
    let dir = target_dir().join("e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    server
        .token_kubeconfig("coffer-system", "coffer-controller", &kubeconfig)
        .await
        .unwrap();
    let mut cmd = Command::new(coffer_test_support::controller_bin());
    cmd.arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--listen", &http.to_string()])
        .args(["--namespaces", "shop", "--key-namespace", key_ns])
        .env("COFFER_LOG_LEVEL", coffer_test_support::LOG_LEVEL)
        .env("COFFER_PROBE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env_remove("KUBECONFIG");
    if bitnami {
        cmd.arg("--bitnami");
    }
    let ctrl = coffer_test_support::ControllerProcess::spawn(cmd, name, http).unwrap();
    ctrl.wait_ready(WAIT).await.unwrap();
    ctrl
}

/// What the doc's flow runs that this machine has no counterpart for,
/// done by the test as the flow goes: `helm upgrade` (a stand-in on PATH
/// that asks the test to restart Coffer's controller with or without
/// `--bitnami`, as the chart's `bitnami.enabled` would), and bitnami's
/// Deployment (a Deployment object that `kubectl scale` really scales;
/// with no kubelet, the test runs bitnami's controller as a process while
/// its replicas are above 0).
struct Stand {
    server: Server,
    admin: kube::Client,
    bitnami: Bitnami,
    hooks: PathBuf,
    key_ns: String,
    http: std::net::SocketAddr,
    coffer: Option<coffer_test_support::ControllerProcess>,
    coffer_runs: usize,
    bitnami_ctrl: Option<BitnamiController>,
    bitnami_logs: Vec<PathBuf>,
    coffer_logs: Vec<PathBuf>,
}

impl Stand {
    /// Follows bitnami's Deployment, then answers `helm upgrade`.
    async fn step(&mut self) {
        let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(self.admin.clone(), DEFAULT_KEY_NAMESPACE);
        let replicas = deployments
            .get("sealed-secrets-controller")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        match (replicas > 0, self.bitnami_ctrl.is_some()) {
            (true, false) => {
                let c = BitnamiController::start(
                    &self.server,
                    &self.bitnami.bin,
                    DEFAULT_KEY_NAMESPACE,
                    &["shop".to_string()],
                )
                .await;
                self.bitnami_logs.push(c.log.clone());
                self.bitnami_ctrl = Some(c);
            }
            (false, true) => {
                let mut c = self.bitnami_ctrl.take().unwrap();
                c.stop();
            }
            _ => {}
        }
        let mut requests: Vec<PathBuf> = std::fs::read_dir(&self.hooks)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "request"))
            .collect();
        requests.sort();
        for request in requests {
            let done = request.with_extension("done");
            if done.exists() {
                continue;
            }
            let args = std::fs::read_to_string(&request).unwrap();
            let on = args.lines().any(|a| a == "bitnami.enabled=true");
            let off = args.lines().any(|a| a == "bitnami.enabled=false");
            assert!(
                args.starts_with("upgrade\ncoffer\n") && (on ^ off),
                "the doc runs a helm command the test does not stand in for: {args:?}"
            );
            if let Some(mut c) = self.coffer.take() {
                c.stop();
            }
            self.coffer_runs += 1;
            let name = format!("migration-doc-coffer-{}", self.coffer_runs);
            let c = doc_controller(&self.server, &self.key_ns, self.http, on, &name).await;
            self.coffer_logs.push(c.log.clone());
            self.coffer = Some(c);
            std::fs::write(&done, "Release \"coffer\" has been upgraded.\n").unwrap();
        }
    }

    /// Runs the doc's flow `name` in `dir` with `env`, standing in as it
    /// goes; returns its output.
    async fn run(&mut self, name: &str, dir: &Path, env: Vec<(String, String)>) -> String {
        let script = coffer_test_support::docflow::script("docs/migration.md", name);
        let dir = dir.to_path_buf();
        let flow = tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (&**k, &**v)).collect();
            coffer_test_support::docflow::run(&script, &dir, &env)
        });
        while !flow.is_finished() {
            self.step().await;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let out = flow.await.expect("the doc's flow");
        self.step().await;
        out
    }
}

/// The Secrets of `shop` by name: uid, resourceVersion, what must be kept,
/// and the controller owner.
async fn shop_secrets(
    admin: &kube::Client,
    names: &[&str],
) -> BTreeMap<String, (String, String, Kept, Option<(String, String)>)> {
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "shop");
    let mut out = BTreeMap::new();
    for name in names {
        let s = secrets.get(name).await.unwrap();
        out.insert(
            name.to_string(),
            (
                s.metadata.uid.clone().unwrap(),
                s.metadata.resource_version.clone().unwrap(),
                kept(&s),
                controller_of(&s),
            ),
        );
    }
    out
}

/// docs/migration.md, run command for command against the API server:
/// forward (bitnami's controller replaced, the repository converted, the
/// bitnami objects deleted once Coffer has taken over) and back (Keep
/// first, then the revert applied with prune, then bitnami's controller
/// scaled up), every Secret keeping its data and its uid throughout.
/// What the doc runs that has no counterpart here is stood in for
/// ([`Stand`]: `helm upgrade`, and the bitnami Deployment's pods).
#[tokio::test]
async fn the_migration_doc_runs_forward_and_back_keeping_every_secret() {
    let b = bitnami();
    let server = Server::shared().clone();
    install_bitnami(&server, &b);
    let admin = server.admin().await;
    // The doc's namespace, fresh (a run before may have left it).
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    let _ = namespaces.delete("shop", &Default::default()).await;
    eventually(WAIT, "an old namespace shop to go", || async {
        namespaces
            .get_opt("shop")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    server.kubectl_ok(&["create", "namespace", "shop"]);
    let key_ns = namespace(&admin, "migration-doc-keys").await;
    coffer_test_support::grant_key_namespace(&admin, &key_ns).await;
    // bitnami's Deployment, as its Helm chart names it: an object only.
    server.kubectl_stdin(
        &["apply", "-f", "-"],
&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: sealed-secrets-controller\n  namespace: {DEFAULT_KEY_NAMESPACE}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: sealed-secrets-doc}}\n  template:\n    metadata:\n      labels: {{app: sealed-secrets-doc}}\n    spec:\n      containers:\n        - name: controller\n          image: example.invalid/sealed-secrets-controller\n"
        ),
    );
    server.kubectl_ok(&[
        "scale",
        "-n",
        DEFAULT_KEY_NAMESPACE,
        "deployment/sealed-secrets-controller",
        "--replicas=1",
    ]);

    let work = tempfile::tempdir().unwrap();
    let hooks = work.path().join("hooks");
    let shims = work.path().join("shims");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::create_dir_all(&shims).unwrap();
    let helm = shims.join("helm");
    std::fs::write(
        &helm,
        "#!/usr/bin/env bash\n# helm, stood in for by the test: it restarts Coffer's controller as asked.\nset -euo pipefail\nreq=\"$DOCFLOW_HOOKS/$(date +%s%N).$$\"\nprintf '%s\\n' \"$@\" >\"$req.tmp\"\nmv \"$req.tmp\" \"$req.request\"\nuntil [ -e \"$req.done\" ]; do sleep 0.2; done\ncat \"$req.done\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755)).unwrap();

    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let coffer = doc_controller(&server, &key_ns, http, false, "migration-doc-coffer-0").await;
    let mut stand = Stand {
        server: server.clone(),
        admin: admin.clone(),
        bitnami: b,
        hooks: hooks.clone(),
        key_ns: key_ns.clone(),
        http,
        coffer_logs: vec![coffer.log.clone()],
        coffer: Some(coffer),
        coffer_runs: 0,
        bitnami_ctrl: None,
        bitnami_logs: Vec::new(),
    };
    stand.step().await;

    // What the doc assumes: bitnami's key, and a repository whose k8s/
    // holds SealedSecrets kubeseal made (strict and namespace-wide) beside
    // another object, committed and applied, unsealed by bitnami.
    let keys: Api<Secret> = Api::namespaced(admin.clone(), DEFAULT_KEY_NAMESPACE);
    let key = eventually(WAIT, "bitnami's controller to have a key", || async {
        let list = keys
            .list(&ListParams::default().labels(coffer_core::bitnami::KEY_LABEL))
            .await
            .ok()?;
        list.items.into_iter().last()
    })
    .await;
    let cert = work.path().join("cert.pem");
    std::fs::write(&cert, &key.data.as_ref().unwrap()["tls.crt"].0).unwrap();
    let tag = suffix();
    let plain = |what: &str| format!("{what}-{tag}-doc-plaintext");
    let kubeseal = |scope: &str, manifest: &str| {
        ok(&run(
            Command::new(stand.bitnami.bin.join("kubeseal"))
                .arg("--kubeconfig")
                .arg(server.kubeconfig())
                .arg("--cert")
                .arg(&cert)
                .args(["--scope", scope, "-o", "yaml"]),
            Some(manifest),
        ))
    };
    let repo = work.path().join("repo");
    std::fs::create_dir_all(repo.join("k8s")).unwrap();
    std::fs::write(
        repo.join("k8s/db.yaml"),
        kubeseal(
            "strict",
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: shop\n  labels: {{app: shop}}\n  annotations: {{team: payments}}\ntype: kubernetes.io/basic-auth\nstringData:\n  username: admin\n  password: {}\n",
                plain("db")
            ),
        ),
    )
    .unwrap();
    std::fs::write(
        repo.join("k8s/api.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  mode: live\n---\n{}",
            kubeseal(
                "namespace-wide",
                &format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n  namespace: shop\nstringData:\n  token: {}\n",
                    plain("api")
                ),
            )
            .trim_start_matches("---\n")
        ),
    )
    .unwrap();
    let git_env: Vec<(String, String)> = [
        ("GIT_AUTHOR_NAME", "Doc Test"),
        ("GIT_AUTHOR_EMAIL", "doc@example.invalid"),
        ("GIT_COMMITTER_NAME", "Doc Test"),
        ("GIT_COMMITTER_EMAIL", "doc@example.invalid"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["commit", "-qm", "bitnami SealedSecrets"],
    ] {
        ok(&run(
            Command::new("git")
                .args(args)
                .current_dir(&repo)
                .envs(git_env.iter().map(|(k, v)| (k, v))),
            None,
        ));
    }
    server.kubectl_ok(&["apply", "-R", "-f", repo.join("k8s").to_str().unwrap()]);
    let names = ["db", "api"];
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "shop");
    for name in names {
        eventually(WAIT, &format!("bitnami to unseal {name}"), || async {
            secrets.get_opt(name).await.ok()?
        })
        .await;
    }
    let before = shop_secrets(&admin, &names).await;
    assert_eq!(
        before["db"].2.data["password"],
        plain("db").into_bytes(),
        "bitnami unsealed the value"
    );
    for (name, b) in &before {
        assert_eq!(
            b.3.as_ref().map(|o| o.0.as_str()),
            Some("bitnami.com/v1alpha1"),
            "{name}"
        );
    }

    let kubeconfig = server.kubeconfig().display().to_string();
    let path = std::env::join_paths(
        [
            shims.clone(),
            coffer_test_support::docflow::bin_dir(),
            coffer_test_support::kubectl_bin()
                .parent()
                .unwrap()
                .to_path_buf(),
        ]
        .into_iter()
        .chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap()
    .into_string()
    .unwrap();
    let mut env = git_env.clone();
    env.extend(
        [
            ("KUBECONFIG", kubeconfig.as_str()),
            ("COFFER_CONTROLLER_NAMESPACE", key_ns.as_str()),
            ("COFFER_CONTROLLER_URL", &format!("http://{http}")),
            ("DOCFLOW_HOOKS", hooks.to_str().unwrap()),
            ("PATH", &path),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );

    // Forward.
    let forward = stand.run("migration", &repo, env.clone()).await;
    assert!(
        forward.contains("Secret unsealed by Coffer"),
        "the check shows that Coffer took over:\n{forward}"
    );
    assert!(stand.bitnami_ctrl.is_none(), "bitnami's controller stopped");
    let after = shop_secrets(&admin, &names).await;
    for name in names {
        let (uid, _, was, _) = &before[name];
        let (now_uid, _, now, owner) = &after[name];
        assert_eq!(now_uid, uid, "{name}: the same Secret, never re-created");
        assert_eq!(now.data, was.data, "{name}: the same values");
        assert_eq!(now.type_, was.type_, "{name}");
        assert_eq!(
            owner.as_ref().map(|o| o.0.as_str()),
            Some("coffer.dev/v1alpha1"),
            "{name}: Coffer's now"
        );
        let mut labels = now.labels.clone();
        assert_eq!(
            labels.remove(coffer_core::api::OWNED_LABEL).as_deref(),
            Some(name)
        );
        assert_eq!(labels, was.labels, "{name}");
        let mut annotations = now.annotations.clone();
        assert!(
            annotations
                .remove(coffer_core::api::UNSEALED_ANNOTATION)
                .is_some()
        );
        assert_eq!(annotations, was.annotations, "{name}: as the doc says");
    }
    let bitnami_api: Api<coffer_core::bitnami::BitnamiSealedSecret> =
        Api::namespaced(admin.clone(), "shop");
    assert!(
        bitnami_api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // And back, with prune.
    let back = stand.run("migration-rollback", &repo, env).await;
    let coffer_api: Api<coffer_core::SealedSecret> = Api::namespaced(admin.clone(), "shop");
    assert!(
        coffer_api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "pruned:\n{back}"
    );
    let restored = shop_secrets(&admin, &names).await;
    for name in names {
        let (uid, _, was, _) = &before[name];
        let (now_uid, _, now, owner) = &restored[name];
        assert_eq!(now_uid, uid, "{name}: the same Secret, never re-created");
        assert_eq!(now, was, "{name}: exactly as bitnami wrote it");
        let bitnami_uid = bitnami_api.get(name).await.unwrap().metadata.uid.unwrap();
        assert_eq!(
            owner.clone(),
            Some(("bitnami.com/v1alpha1".to_string(), bitnami_uid)),
            "{name}: bitnami's again"
        );
    }
    // bitnami's own controller, scaled back up, finds them its own and
    // writes nothing.
    let log = stand.bitnami_ctrl.as_ref().expect("scaled up").log.clone();
    for name in names {
        eventually(
            WAIT,
            &format!("bitnami's controller to check {name}"),
            || async {
                let text = std::fs::read_to_string(&log).ok()?;
                text.lines()
                    .any(|l| l.contains("msg=Updating") && l.contains(&format!("key=shop/{name}")))
                    .then_some(())
            },
        )
        .await;
        let (status, _, _) = eventually(WAIT, "Synced", || async {
            synced(&admin, "shop", name).await
        })
        .await;
        assert_eq!(status, "True");
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("Error updating"), "{text}");
    let last = shop_secrets(&admin, &names).await;
    for name in names {
        assert_eq!(last[name].1, restored[name].1, "{name}: not written");
    }

    // No plaintext in any log or in the flow's output.
    let values: Vec<String> = names.iter().map(|n| plain(n)).collect();
    for path in stand.coffer_logs.iter().chain(&stand.bitnami_logs) {
        let text = std::fs::read_to_string(path).unwrap();
        for v in &values {
            assert!(!text.contains(v), "{} holds a value", path.display());
        }
    }
    for v in &values {
        assert!(!forward.contains(v) && !back.contains(v));
    }
    let _ = namespaces.delete("shop", &Default::default()).await;
}
