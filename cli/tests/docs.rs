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

use coffer_test_support::{ControllerProcess, Server, docflow, root, target_dir};

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

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .current_dir(dir)
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
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
