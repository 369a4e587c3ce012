//! End to end: Flux's own controllers apply the example repository. Flux's
//! source-controller and kustomize-controller (built from their Go modules
//! by `tests/flux/build`) run against a test API server; `examples/gitops`
//! is a Git repository served over HTTP by git's own `git http-backend`
//! (`coffer_test_support::githttp`); the GitRepository and Kustomization
//! are `examples/gitops/agents/flux/prod.yaml`, with only the repository's
//! URL changed. The Kustomization (`wait: true`) goes Ready once the
//! controller has unsealed every value, and fails, naming the refused
//! SealedSecret, when a commit copies a value into another namespace; the
//! SealedSecret says why.
#![allow(
    clippy::too_many_lines,
    reason = "an end-to-end scenario reads top to bottom, one step after another"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use coffer_core::SealedSecret;
use coffer_core::ring::{KeyStatus, key_secret};
use coffer_format::key::parse_identity_file;
use coffer_test_support::flux::Flux;
use coffer_test_support::githttp::{GitHttpServer, GitRepo};
use coffer_test_support::tools::Scratch;
use coffer_test_support::{
    ControllerProcess, Server, eventually, grant_key_namespace, namespace, root, suffix,
};
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

/// Flux's first reconcile includes cloning, building and applying; on two
/// shared cores that takes a while.
const FLUX_WAIT: Duration = Duration::from_secs(180);

/// The Kustomization `flux-system/secrets` as the API server has it.
fn kustomization(server: &Server) -> serde_json::Value {
    let out = server.kubectl_ok(&[
        "get",
        "kustomizations.kustomize.toolkit.fluxcd.io",
        "-n",
        "flux-system",
        "secrets",
        "-o",
        "json",
    ]);
    serde_json::from_str(&out).unwrap()
}

/// Its condition `type`: (status, reason, message).
fn condition(k: &serde_json::Value, type_: &str) -> Option<(String, String, String)> {
    let c = k["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
        c["message"].as_str()?.to_string(),
    ))
}

/// Waits until the Kustomization has tried `commit` and its Ready
/// condition has `status`; returns (reason, message).
async fn wait_kustomization(
    server: &Server,
    flux: &mut Flux,
    commit: &str,
    status: &str,
) -> (String, String) {
    eventually(
        FLUX_WAIT,
        &format!("the Kustomization Ready={status} at {commit}"),
        || {
            flux.assert_running().unwrap();
            let k = kustomization(server);
            let attempted = k["status"]["lastAttemptedRevision"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ready = condition(&k, "Ready");
            async move {
                let (s, reason, message) = ready?;
                (attempted.ends_with(commit) && s == status).then_some((reason, message))
            }
        },
    )
    .await
}

/// Asks Flux to reconcile now, as `flux reconcile kustomization secrets
/// --with-source` does: the requestedAt annotation on both objects.
fn reconcile_now(server: &Server) {
    let at = format!("reconcile.fluxcd.io/requestedAt={}", suffix());
    for object in [
        "gitrepositories.source.toolkit.fluxcd.io/platform",
        "kustomizations.kustomize.toolkit.fluxcd.io/secrets",
    ] {
        server.kubectl_ok(&["annotate", "--overwrite", "-n", "flux-system", object, &at]);
    }
}

#[tokio::test]
async fn flux_applies_the_example_repository_and_fails_on_a_copied_value() {
    let example = root().join("examples/gitops");
    let server = Server::start_private("flux").unwrap();
    let _stop = server.stop_on_drop();
    server.install_deploy();
    let admin = server.admin().await;

    // prod's key (the published example key), loaded as in gitops.rs.
    let key_ns = namespace(&admin, "flux-prod-keys").await;
    grant_key_namespace(&admin, &key_ns).await;
    let identity = std::fs::read_to_string(example.join("example-keys/prod.txt")).unwrap();
    let key = parse_identity_file(&identity).unwrap().remove(0);
    Api::<Secret>::namespaced(admin.clone(), &key_ns)
        .create(
            &PostParams::default(),
            &key_secret(&key, None, KeyStatus::OpenOnly, None),
        )
        .await
        .unwrap();
    let ctrl = ControllerProcess::start(
        &server,
        Path::new(BIN),
        &format!("flux-prod-{}", suffix()),
        &["--namespaces", "shop,shop-copy", "--key-namespace", &key_ns],
    )
    .await
    .unwrap();
    ctrl.wait_ready(WAIT).await.unwrap();

    // The repository, at the path agents/flux/prod.yaml names
    // (./examples/gitops/clusters/prod), served over smart HTTP.
    let scratch = Scratch::new("flux-git");
    let repo = GitRepo::init(&scratch.0, "platform");
    repo.copy(&example, "examples/gitops");
    let first = repo.commit("shop: sealed values for prod and dr");
    let git = GitHttpServer::start(&scratch.0).unwrap();

    // Both Flux controllers; a Kustomization whose source is not ready yet
    // is retried after --requeue-dependency (30 s by default).
    let name = format!("flux-{}", suffix());
    let mut flux = Flux::start(&server, &name, &["--requeue-dependency=2s"]).unwrap();
    let agent = std::fs::read_to_string(example.join("agents/flux/prod.yaml"))
        .unwrap()
        .replace("https://github.com/example/platform", &git.url("platform"));
    assert!(agent.contains(&git.url("platform")), "the agent's URL");
    server.kubectl_stdin(&["apply", "-f", "-"], &agent);

    // Ready only once the controller has unsealed both values.
    let (reason, message) = wait_kustomization(&server, &mut flux, &first, "True").await;
    assert_eq!(reason, "ReconciliationSucceeded", "{message}");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "shop");
    for (name, item, want) in [
        ("db", "password", "example-db-password"),
        ("payment-api", "token", "example-prod-payment-token"),
    ] {
        let s = secrets.get(name).await.unwrap();
        let got = s.data.unwrap_or_default().get(item).map(|v| v.0.clone());
        assert!(
            got.as_deref() == Some(want.as_bytes()),
            "shop/{name} {item} is not the sealed value"
        );
    }
    let healthy = condition(&kustomization(&server), "Healthy").unwrap();
    assert_eq!(healthy.0, "True", "{healthy:?}");

    // A commit copies base/db.sealed.yaml into another namespace: the
    // controller refuses it (sealed for shop/db), and wait: true fails the
    // Kustomization on it.
    let db = std::fs::read_to_string(example.join("base/db.sealed.yaml")).unwrap();
    let copied = db.replace("namespace: shop\n", "namespace: shop-copy\n");
    assert_ne!(copied, db, "the copy's namespace");
    repo.write(
        "examples/gitops/clusters/prod/db-copy.sealed.yaml",
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop-copy\n---\n{copied}"),
    );
    let overlay = std::fs::read_to_string(example.join("clusters/prod/kustomization.yaml"))
        .unwrap()
        .replace(
            "  - payment-api.sealed.yaml\n",
            "  - payment-api.sealed.yaml\n  - db-copy.sealed.yaml\n",
        );
    repo.write("examples/gitops/clusters/prod/kustomization.yaml", &overlay);
    let second = repo.commit("shop-copy: the db password, copied");
    reconcile_now(&server);
    let (reason, message) = wait_kustomization(&server, &mut flux, &second, "False").await;
    assert_eq!(reason, "HealthCheckFailed", "{message}");
    assert!(
        message.contains("SealedSecret/shop-copy/db status: 'Failed'"),
        "Flux names the refused SealedSecret: {message}"
    );
    // What the refused SealedSecret says (kubectl describe, flux events).
    let refused = Api::<SealedSecret>::namespaced(admin.clone(), "shop-copy")
        .get("db")
        .await
        .unwrap();
    let ready = refused.ready_condition().unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ScopeMismatch")
    );
    assert!(
        ready.message.contains("sealed for shop/db"),
        "the refusal's reason: {}",
        ready.message
    );
    assert!(
        Api::<Secret>::namespaced(admin.clone(), "shop-copy")
            .get_opt("db")
            .await
            .unwrap()
            .is_none(),
        "no Secret from a refused value"
    );
    eprintln!(
        "Flux: {message}\nSealedSecret shop-copy/db: {}",
        ready.message
    );

    // Reverted: prune removes the copy, and the Kustomization is Ready again.
    repo.write(
        "examples/gitops/clusters/prod/kustomization.yaml",
        &std::fs::read_to_string(example.join("clusters/prod/kustomization.yaml")).unwrap(),
    );
    std::fs::remove_file(
        repo.dir()
            .join("examples/gitops/clusters/prod/db-copy.sealed.yaml"),
    )
    .unwrap();
    let third = repo.commit("shop-copy: removed");
    reconcile_now(&server);
    let (reason, _) = wait_kustomization(&server, &mut flux, &third, "True").await;
    assert_eq!(reason, "ReconciliationSucceeded");
    eventually(WAIT, "the copy pruned", || async {
        Api::<SealedSecret>::namespaced(admin.clone(), "shop-copy")
            .get_opt("db")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    let plaintexts = ["example-db-password", "example-prod-payment-token"];
    ctrl.assert_log_free_of(&plaintexts);
    let logs = flux.logs();
    assert!(!logs.is_empty(), "Flux's logs");
    for p in plaintexts {
        assert!(!logs.contains(p), "a plaintext value in Flux's logs");
    }
}
