//! The docs' flows, run command for command (`coffer_test_support::docflow`):
//! a README section or guide that stops working fails `tests/run`.
//!
//! What the test API server cannot do, and what stands in for it: it has
//! no kubelet, so the controller Deployment `deploy/` installs never runs a
//! Pod. The test starts the same controller as a process, with a token of
//! the ServiceAccount `deploy/` ships, right after the doc installs
//! `deploy/`; and since its Service has no endpoints, the CLI reaches it
//! through `COFFER_CONTROLLER_URL` instead of the API server's service
//! proxy. Every other command is the doc's own.

use std::path::{Path, PathBuf};
use std::process::Command;

use coffer_test_support::{ControllerProcess, Server, docflow, git, root, target_dir};

fn controller_bin() -> PathBuf {
    target_dir().join("debug/coffer-controller")
}

/// A git repository of the reader's, with Coffer's `deploy/` (and the
/// `crds/` it includes) beside.
fn readers_repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-R")
        .arg(root().join("deploy"))
        .arg(root().join("crds"))
        .arg(dir.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "copying deploy/ and crds/");
    git(dir.path(), &["init", "-q"]);
    dir
}

/// Env for a doc run: the server's kubeconfig, the controller's address,
/// and a git identity (commits are part of the flows).
fn env(server: &Server, ctrl: &ControllerProcess) -> Vec<(String, String)> {
    vec![
        (
            "KUBECONFIG".into(),
            server.kubeconfig().display().to_string(),
        ),
        (
            "COFFER_CONTROLLER_URL".into(),
            format!("http://{}", ctrl.http),
        ),
        ("GIT_AUTHOR_NAME".into(), "Reader".into()),
        ("GIT_AUTHOR_EMAIL".into(), "reader@example.invalid".into()),
        ("GIT_COMMITTER_NAME".into(), "Reader".into()),
        (
            "GIT_COMMITTER_EMAIL".into(),
            "reader@example.invalid".into(),
        ),
    ]
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// README.md, "Five minutes with Coffer": install, seal, apply, merge,
/// inspect, verify, rotate with the old key retired once the re-encrypted
/// file is live, back up to an admin key made on the spot, and recover.
#[tokio::test]
async fn the_readme_five_minutes_run_as_written() {
    let server = Server::start_private("readme").unwrap();
    let _stop = server.stop_on_drop();
    let repo = readers_repository();
    let kubeconfig = server.kubeconfig().display().to_string();
    docflow::run(
        &docflow::script("README.md", "five-minutes-install"),
        repo.path(),
        &[("KUBECONFIG", &kubeconfig)],
    );
    // What the Deployment would run, had the server a kubelet.
    let ctrl = ControllerProcess::start(&server, &controller_bin(), "readme", &[])
        .await
        .unwrap();
    let env = env(&server, &ctrl);
    let out = docflow::run(
        &docflow::script("README.md", "five-minutes"),
        repo.path(),
        &as_refs(&env),
    );

    // The flow did what it says: the Secret holds the merged value, the
    // rotated file is sealed to the new key only, the old key is retired,
    // and the backup holds the ring.
    let admin = server.admin().await;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(admin.clone(), "shop");
    let db = secrets.get("db").await.unwrap();
    assert_eq!(db.data.unwrap()["password"].0, b"n3w");
    assert!(
        out.contains("READY"),
        "kubectl get printed the table: {out}"
    );
    let keys: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(admin, "coffer-system");
    let ring = keys
        .list(&kube::api::ListParams::default().labels("coffer.dev/key-id"))
        .await
        .unwrap();
    let states: Vec<String> = ring
        .items
        .iter()
        .map(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("coffer.dev/key-state"))
                .cloned()
                .unwrap_or_else(|| "usable".into())
        })
        .collect();
    assert_eq!(ring.items.len(), 2, "{states:?}");
    assert!(states.contains(&"retired".to_string()), "{states:?}");
    let backup = std::fs::read_to_string(repo.path().join("coffer-keys.age")).unwrap();
    assert!(backup.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    ctrl.assert_log_free_of(&["s3cr3t", "n3w"]);
}

/// A server's kubeconfig with its cluster, user and context named `name`,
/// so two servers make two contexts of one `KUBECONFIG`.
fn named_kubeconfig(server: &Server, name: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(server.kubeconfig()).unwrap();
    let renamed = text
        .replace("envtest-admin", &format!("{name}-admin"))
        .replace("name: envtest", &format!("name: {name}"))
        .replace("cluster: envtest", &format!("cluster: {name}"))
        .replace(
            "current-context: envtest",
            &format!("current-context: {name}"),
        );
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, renamed).unwrap();
    path
}

/// examples/gitops/README.md, "From an empty repository": two clusters
/// (two test API servers, each with `deploy/` and its controller), the
/// example's rules and kustomizations in a repository of the reader's
/// (without the published example keys and values, as a real one starts),
/// recipients fetched per context, values sealed by the rules alone,
/// `coffer check`, and each overlay applied to its cluster by hand.
#[tokio::test]
async fn the_gitops_example_from_an_empty_repository_runs_as_written() {
    let prod = Server::start_private("gitops-prod").unwrap();
    let _stop_prod = prod.stop_on_drop();
    let dr = Server::start_private("gitops-dr").unwrap();
    let _stop_dr = dr.stop_on_drop();
    let mut ctrls = Vec::new();
    for (server, name) in [(&prod, "gitops-prod"), (&dr, "gitops-dr")] {
        server.install_deploy();
        ctrls.push(
            ControllerProcess::start(server, &controller_bin(), name, &[])
                .await
                .unwrap(),
        );
    }
    // Step 1's "install the controller": installed means it has published
    // its recipients.
    for c in &ctrls {
        c.wait_ready(std::time::Duration::from_secs(60))
            .await
            .unwrap();
    }
    let repo = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-R")
        .arg(root().join("examples/gitops/."))
        .arg(repo.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "copying the example");
    // A reader's repository has neither the example's keys nor its values.
    std::fs::remove_dir_all(repo.path().join("example-keys")).unwrap();
    for f in [
        "recipients/prod.txt",
        "recipients/dr.txt",
        "base/db.sealed.yaml",
        "clusters/prod/payment-api.sealed.yaml",
        "clusters/dr/payment-api.sealed.yaml",
    ] {
        std::fs::remove_file(repo.path().join(f)).unwrap();
    }
    git(repo.path(), &["init", "-q"]);
    let configs = tempfile::tempdir().unwrap();
    let kubeconfig = std::env::join_paths([
        named_kubeconfig(&prod, "prod", configs.path()),
        named_kubeconfig(&dr, "dr", configs.path()),
    ])
    .unwrap()
    .into_string()
    .unwrap();
    let env = [
        ("KUBECONFIG", kubeconfig.as_str()),
        ("DB_PASSWORD", "gitops-doc-db"),
        ("PROD_TOKEN", "gitops-doc-prod"),
        ("DR_TOKEN", "gitops-doc-dr"),
        ("GIT_AUTHOR_NAME", "Reader"),
        ("GIT_AUTHOR_EMAIL", "reader@example.invalid"),
        ("GIT_COMMITTER_NAME", "Reader"),
        ("GIT_COMMITTER_EMAIL", "reader@example.invalid"),
    ];
    docflow::run(
        &docflow::script("examples/gitops/README.md", "from-empty"),
        repo.path(),
        &env,
    );

    for (server, token) in [(&prod, "gitops-doc-prod"), (&dr, "gitops-doc-dr")] {
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(server.admin().await, "shop");
        let db = secrets.get("db").await.unwrap().data.unwrap();
        assert_eq!(db["password"].0, b"gitops-doc-db");
        let api = secrets.get("payment-api").await.unwrap().data.unwrap();
        assert_eq!(api["token"].0, token.as_bytes());
    }
    for c in &ctrls {
        c.assert_log_free_of(&["gitops-doc-db", "gitops-doc-prod", "gitops-doc-dr"]);
    }
}
