//! End to end: what GitOps agents read of a SealedSecret. Flux's health
//! checks use kstatus (`sigs.k8s.io/cli-utils/pkg/kstatus`); here kstatus
//! itself (built from its Go module by `tests/kstatus/build`) judges live
//! objects from the test API server: InProgress before the controller acts
//! and while it retries, Current when unsealed, Failed when refused. Argo CD
//! (built from its module by `tests/argocd/build`), with the health check of
//! `deploy/argocd`, must agree on each: Progressing, Healthy, Degraded.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use coffer_core::SealedSecret;
use coffer_core::ring::{KeyStatus, key_secret};
use coffer_format::key::parse_identity_file;
use coffer_format::{Scope, SecretKey};
use coffer_test_support::tools::{Scratch, argocd_health_of, argocd_health_run, output_text, tool};
use coffer_test_support::{
    ControllerProcess, Server, eventually, grant_key_namespace, namespace, root, suffix,
};
use common::*;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};

/// The kstatus command, built once.
fn kstatus_bin() -> PathBuf {
    tool("tests/kstatus/build")
}

/// kstatus' (status, message) for the live SealedSecret `ns/name`, read
/// from the API server as it stores it (defaults applied, nothing of it
/// interpreted by Coffer's types).
async fn kstatus(t: &Cluster, ns: &str, name: &str) -> (String, String) {
    let live = live_json(t, ns, name).await;
    let mut child = Command::new(kstatus_bin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&live).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kstatus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["status"].as_str().unwrap().to_string(),
        v["message"].as_str().unwrap().to_string(),
    )
}

/// Waits until kstatus says `want` of `ns/name`; returns its message. Then
/// Argo CD, with the health check of `deploy/argocd`, must say the same of
/// the same live object: Progressing, Healthy or Degraded.
async fn wait_kstatus(t: &Cluster, ns: &str, name: &str, want: &str) -> String {
    let message = eventually(WAIT, &format!("kstatus {want} for {ns}/{name}"), || async {
        let (status, message) = kstatus(t, ns, name).await;
        (status == want).then_some(message)
    })
    .await;
    let argo = match want {
        "InProgress" => "Progressing",
        "Current" => "Healthy",
        _ => "Degraded",
    };
    let (health, _) = argocd_health(t, ns, name).await;
    assert_eq!(
        health, argo,
        "Argo CD's health of {ns}/{name} (kstatus {want})"
    );
    message
}

/// Argo CD's (health, message) of the live SealedSecret `ns/name`, with
/// the check of `deploy/argocd/argocd-cm.yaml`.
async fn argocd_health(t: &Cluster, ns: &str, name: &str) -> (String, String) {
    let scratch = Scratch::new("argocd-live");
    let object = scratch.write("object.json", live_json(t, ns, name).await);
    let out = argocd_health_run(&object, &root().join("deploy/argocd/argocd-cm.yaml"));
    argocd_health_of(&out).unwrap_or_else(|| panic!("argocd: {}", output_text(&out)))
}

/// The live object as the API server returns it.
async fn live_json(t: &Cluster, ns: &str, name: &str) -> Vec<u8> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        t.admin.clone(),
        ns,
        &ApiResource::erase::<SealedSecret>(&()),
    );
    serde_json::to_vec(&api.get(name).await.unwrap()).unwrap()
}

/// The conditions of a live SealedSecret by type: (status, reason, message).
async fn conditions(t: &Cluster, ns: &str, name: &str) -> Vec<(String, String, String, String)> {
    let s = t.sealed_api(ns).get(name).await.unwrap();
    s.status
        .map(|st| st.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.status, c.reason, c.message))
        .collect()
}

#[tokio::test]
async fn kstatus_sees_in_progress_then_current_or_failed() {
    let t = setup("kstatus", &["--key-renewal-period", "4s"]).await;

    // Before any controller acts (a namespace nobody watches): the CRD's
    // status default makes it InProgress, not Current.
    let idle = namespace(&t.admin, "kstatus-idle").await;
    let mut waiting = t.sealed(&secret_yaml("db", &[("k", "ks-idle")]), Scope::Namespace);
    waiting.metadata.namespace = Some(idle.clone());
    t.apply(&waiting).await;
    let (status, message) = kstatus(&t, &idle, "db").await;
    assert_eq!(status, "InProgress", "{message}");
    assert!(message.contains("observed generation is -1"), "{message}");
    assert_eq!(argocd_health(&t, &idle, "db").await.0, "Progressing");

    // Unsealed: Current, and only a Ready condition.
    let first = t.recipients[0].clone();
    t.apply(&t.sealed(&secret_yaml("ok", &[("k", "ks-ok")]), Scope::Strict))
        .await;
    t.wait_reason(&t.ns, "ok", "Unsealed").await;
    wait_kstatus(&t, &t.ns, "ok", "Current").await;
    let c = conditions(&t, &t.ns, "ok").await;
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!((c[0].0.as_str(), c[0].1.as_str()), ("Ready", "True"));

    // Refused, scope mismatch: Failed, with Stalled beside Ready.
    let mut moved = t.sealed(&secret_yaml("orig", &[("k", "ks-moved")]), Scope::Strict);
    moved.metadata.name = Some("moved".into());
    t.apply(&moved).await;
    t.wait_reason(&t.ns, "moved", "ScopeMismatch").await;
    let message = wait_kstatus(&t, &t.ns, "moved", "Failed").await;
    assert!(message.contains("sealed for"), "{message}");
    let c = conditions(&t, &t.ns, "moved").await;
    let stalled = c
        .iter()
        .find(|c| c.0 == "Stalled")
        .expect("a Stalled condition");
    let ready = c.iter().find(|c| c.0 == "Ready").unwrap();
    assert_eq!(stalled.1, "True");
    assert_eq!((&stalled.2, &stalled.3), (&ready.2, &ready.3));
    assert_eq!(ready.1, "False");

    // Refused, sealed to a key this cluster does not hold: Failed.
    let stranger = SecretKey::generate();
    t.apply(&t.sealed_to(
        &secret_yaml("nokey", &[("k", "ks-nokey")]),
        Scope::Strict,
        &[stranger.public().clone()],
    ))
    .await;
    t.wait_reason(&t.ns, "nokey", "NoMatchingKey").await;
    wait_kstatus(&t, &t.ns, "nokey", "Failed").await;

    // Refused, sealed only to a retired key: after renewal, retire the
    // first key; what was Current becomes Failed.
    let cms: Api<ConfigMap> = Api::namespaced(t.admin.clone(), &t.key_ns);
    let text = cms.get("coffer-recipients").await.unwrap().data.unwrap()["recipients.txt"].clone();
    let newer = published_recipients(&t.admin, &t.key_ns, Some(&text)).await;
    let keys: Api<Secret> = Api::namespaced(t.admin.clone(), &t.key_ns);
    keys.patch(
        &format!("coffer-key-{}", first.id()),
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"metadata": {"labels": {"coffer.dev/key-state": "retired"}}}),
        ),
    )
    .await
    .unwrap();
    t.wait_reason(&t.ns, "ok", "KeyRetired").await;
    wait_kstatus(&t, &t.ns, "ok", "Failed").await;

    // Updated to a new generation: InProgress until the controller has
    // acted on it, then Current again (sealed to the new key).
    t.apply(&t.sealed_to(
        &secret_yaml("ok", &[("k", "ks-ok2")]),
        Scope::Strict,
        &newer,
    ))
    .await;
    eventually(WAIT, "ok to be unsealed at its new generation", || async {
        let s = t.sealed_api(&t.ns).get("ok").await.ok()?;
        let current = s.status.as_ref()?.observed_generation == s.metadata.generation;
        (current && s.ready_condition()?.reason == "Unsealed").then_some(())
    })
    .await;
    wait_kstatus(&t, &t.ns, "ok", "Current").await;
    assert!(
        conditions(&t, &t.ns, "ok")
            .await
            .iter()
            .all(|c| c.0 == "Ready"),
        "Stalled is gone once it unseals"
    );
    t.ctrl
        .assert_log_free_of(&["ks-idle", "ks-ok", "ks-moved", "ks-nokey", "ks-ok2"]);
}

#[tokio::test]
async fn a_write_the_api_server_keeps_refusing_is_reconciling_until_it_goes_through() {
    let t = setup("reconciling", &[]).await;
    // An admission policy refusing Secrets in the namespace (403) until
    // it goes, as a webhook or policy engine might.
    let policy = format!("coffer-e2e-deny-{}", t.ns);
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(t.admin.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(t.admin.clone());
    let deny: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": policy},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["secrets"]
            }]},
            "validations": [{"expression": "false", "message": "no Secrets here", "reason": "Forbidden"}]
        }
    }))
    .unwrap();
    let bind: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": policy},
        "spec": {
            "policyName": policy,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": t.ns}}}
        }
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &deny)
        .await
        .unwrap();
    bindings
        .create(&PostParams::default(), &bind)
        .await
        .unwrap();
    // The API server loads policies asynchronously: wait until a dry-run
    // create is refused.
    let secrets: Api<Secret> = Api::namespaced(t.admin.clone(), &t.ns);
    let probe: Secret =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "probe"}})).unwrap();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(WAIT, "the policy to refuse Secrets", || async {
        matches!(secrets.create(&dry, &probe).await, Err(kube::Error::Api(e)) if e.code == 403)
            .then_some(())
    })
    .await;
    t.apply(&t.sealed(&secret_yaml("db", &[("k", "rec-e2e")]), Scope::Strict))
        .await;
    wait_kstatus(&t, &t.ns, "db", "InProgress").await;
    let c = eventually(WAIT, "a Reconciling condition", || async {
        let c = conditions(&t, &t.ns, "db").await;
        c.iter().any(|c| c.0 == "Reconciling").then_some(c)
    })
    .await;
    let rec = c.iter().find(|c| c.0 == "Reconciling").unwrap();
    assert_eq!(
        (rec.1.as_str(), rec.2.as_str()),
        ("True", "Retrying"),
        "{c:?}"
    );
    assert!(
        rec.3.contains("answered 403 (Forbidden)"),
        "the code and reason, not the API's text: {}",
        rec.3
    );
    assert!(
        rec.3
            .ends_with(&format!("to create secrets in namespace {}", t.ns)),
        "the request refused, its verb and resource: {}",
        rec.3
    );
    let ready = c.iter().find(|c| c.0 == "Ready").unwrap();
    assert_eq!(ready.1, "Unknown", "{c:?}");
    assert!(!c.iter().any(|c| c.0 == "Stalled"), "{c:?}");

    bindings
        .delete(&policy, &DeleteParams::default())
        .await
        .unwrap();
    policies
        .delete(&policy, &DeleteParams::default())
        .await
        .unwrap();
    t.wait_reason(&t.ns, "db", "Unsealed").await;
    wait_kstatus(&t, &t.ns, "db", "Current").await;
    assert!(
        conditions(&t, &t.ns, "db")
            .await
            .iter()
            .all(|c| c.0 == "Ready"),
        "Reconciling is gone once the Secret is written"
    );
    t.ctrl.assert_log_free_of(&["rec-e2e"]);
}

/// The example repository (`examples/gitops`), as a user would run it:
/// each cluster's overlay applied with `kubectl apply -k` to its own API
/// server, whose controller holds that cluster's (published example) key.
/// The base value, sealed once for both, opens in both; each overlay's own
/// value opens only where it was sealed for.
#[tokio::test]
async fn the_example_repository_unseals_in_each_cluster_it_was_sealed_for() {
    let example = root().join("examples/gitops");
    for (cluster, other, token) in [
        ("prod", "dr", "example-prod-payment-token"),
        ("dr", "prod", "example-dr-payment-token"),
    ] {
        let server = Server::start_private(&format!("gitops-{cluster}")).unwrap();
        let _stop = server.stop_on_drop();
        server.install_deploy();
        let admin = server.admin().await;
        // The cluster's key, loaded as an open-only key before the
        // controller starts (docs/operations.md, "Adding a key by hand").
        let key_ns = namespace(&admin, &format!("gitops-{cluster}-keys")).await;
        grant_key_namespace(&admin, &key_ns).await;
        let identity =
            std::fs::read_to_string(example.join(format!("example-keys/{cluster}.txt"))).unwrap();
        let key = parse_identity_file(&identity).unwrap().remove(0);
        let keys: Api<Secret> = Api::namespaced(admin.clone(), &key_ns);
        keys.create(
            &PostParams::default(),
            &key_secret(&key, None, KeyStatus::OpenOnly, None),
        )
        .await
        .unwrap();

        let overlay = example.join(format!("clusters/{cluster}"));
        server.kubectl_ok(&["apply", "-k", overlay.to_str().unwrap()]);
        let ctrl = ControllerProcess::start(
            &server,
            Path::new(BIN),
            &format!("gitops-{cluster}-{}", suffix()),
            &["--namespaces", "shop", "--key-namespace", &key_ns],
        )
        .await
        .unwrap();
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), "shop");
        let value = |name: &'static str, item: &'static str| {
            let secrets = secrets.clone();
            async move {
                let s = secrets.get(name).await.ok()?;
                Some(s.data?.get(item)?.0.clone())
            }
        };
        eventually(WAIT, &format!("{cluster}: shop/db"), || async {
            (value("db", "password").await? == b"example-db-password").then_some(())
        })
        .await;
        eventually(WAIT, &format!("{cluster}: shop/payment-api"), || async {
            (value("payment-api", "token").await? == token.as_bytes()).then_some(())
        })
        .await;

        // The other cluster's value, applied here, is refused and says so.
        let foreign = example.join(format!("clusters/{other}/payment-api.sealed.yaml"));
        let mut moved: SealedSecret =
            serde_saphyr::from_str(&std::fs::read_to_string(foreign).unwrap()).unwrap();
        moved.metadata.name = Some("payment-api-from-elsewhere".into());
        Api::<SealedSecret>::namespaced(admin.clone(), "shop")
            .create(&PostParams::default(), &moved)
            .await
            .unwrap();
        eventually(
            WAIT,
            &format!("{cluster}: the foreign value refused"),
            || async {
                let s = Api::<SealedSecret>::namespaced(admin.clone(), "shop")
                    .get("payment-api-from-elsewhere")
                    .await
                    .ok()?;
                (s.ready_condition()?.reason == "NoMatchingKey").then_some(())
            },
        )
        .await;
        ctrl.assert_log_free_of(&["example-db-password", token]);
    }
}
