//! End to end against a real kube-apiserver (tests/envtest). The controller
//! runs as a process with a token of the ServiceAccount that `deploy/`
//! creates, after `deploy/` is applied: the RBAC tested is the RBAC shipped.
//! Each test gets its own namespaces and its own key ring namespace.
#![allow(
    clippy::too_many_lines,
    reason = "an end-to-end scenario reads top to bottom, one step after another"
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use coffer_core::SealedSecret;

use coffer_format::{Scope, SecretKey};
use coffer_test_support::{
    ControllerProcess, Server, eventually, namespace, namespaced_kustomization, yaml_objects,
};
use common::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

#[tokio::test]
async fn applied_sealed_secret_becomes_a_secret_with_data_type_labels_annotations_and_owner() {
    let t = setup("unseal", &[]).await;
    let yaml = secret_yaml("db", &[("username", "admin"), ("password", "hunter2-e2e")])
        .replace("type: Opaque", "type: kubernetes.io/basic-auth");
    let s = t.sealed(&yaml, Scope::Strict);
    t.apply(&s).await;
    let ready = t.wait_reason(&t.ns, "db", "Unsealed").await;
    let c = ready.ready_condition().unwrap();
    assert_eq!(c.status, "True");
    assert_eq!(ready.status.as_ref().unwrap().observed_generation, Some(1));

    let secret = t.secrets(&t.ns).get("db").await.unwrap();
    assert_eq!(secret.data.as_ref().unwrap()["password"].0, b"hunter2-e2e");
    assert_eq!(secret.data.as_ref().unwrap()["username"].0, b"admin");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(secret.labels()["app"], "shop");
    assert_eq!(secret.annotations()["team"], "payments");
    let owner = &secret.owner_references()[0];
    assert_eq!(owner.kind, "SealedSecret");
    assert_eq!(owner.controller, Some(true));
    assert_eq!(Some(&owner.uid), ready.metadata.uid.as_ref());
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(t.admin.clone(), &t.ns);
    let ev = eventually(WAIT, "a Normal Unsealed event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.type_.as_deref() == Some("Normal") && e.reason.as_deref() == Some("Unsealed")
        })
    })
    .await;
    assert_eq!(ev.regarding.unwrap().name.as_deref(), Some("db"));
    assert!(!ev.note.unwrap_or_default().contains("hunter2"));
    t.ctrl.assert_log_free_of(&["hunter2-e2e"]);
}

#[tokio::test]
async fn item_and_template_changes_reach_the_secret() {
    let t = setup("update", &[]).await;
    t.apply(&t.sealed(
        &secret_yaml("db", &[("a", "one-e2e"), ("b", "two-e2e")]),
        Scope::Strict,
    ))
    .await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;

    // Update one item, add one, remove one, change a label.
    let yaml = secret_yaml("db", &[("a", "uno-e2e"), ("c", "tres-e2e")])
        .replace("app: shop", "app: shop2");
    let mut s = t.sealed(&yaml, Scope::Strict);
    s.metadata.namespace = Some(t.ns.clone());
    t.apply(&s).await;
    let data = eventually(WAIT, "the Secret to follow", || async {
        let d = t.secret_data(&t.ns, "db").await;
        (d.get("a").map(Vec::as_slice) == Some(b"uno-e2e".as_slice())).then_some(d)
    })
    .await;
    assert_eq!(data.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(data["c"], b"tres-e2e");
    let secret = t.secrets(&t.ns).get("db").await.unwrap();
    assert_eq!(secret.labels()["app"], "shop2");
    let ready = t.wait_reason(&t.ns, "db", "Unsealed").await;
    assert_eq!(ready.status.unwrap().observed_generation, Some(2));
    t.ctrl
        .assert_log_free_of(&["one-e2e", "two-e2e", "uno-e2e", "tres-e2e"]);
}

#[tokio::test]
async fn hand_edits_are_undone_and_a_deleted_secret_is_recreated() {
    let t = setup("drift", &[]).await;
    t.apply(&t.sealed(
        &secret_yaml("db", &[("password", "drift-e2e")]),
        Scope::Strict,
    ))
    .await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;

    let secrets = t.secrets(&t.ns);
    let mut edited = secrets.get("db").await.unwrap();
    edited
        .data
        .as_mut()
        .unwrap()
        .insert("password".into(), ByteString(b"tampered".to_vec()));
    edited
        .data
        .as_mut()
        .unwrap()
        .insert("extra".into(), ByteString(b"x".to_vec()));
    secrets
        .replace("db", &PostParams::default(), &edited)
        .await
        .unwrap();
    eventually(WAIT, "the hand edit to be undone", || async {
        let d = t.secret_data(&t.ns, "db").await;
        (d.len() == 1 && d["password"] == b"drift-e2e").then_some(())
    })
    .await;

    secrets
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "the Secret to be re-created", || async {
        let s = secrets.get_opt("db").await.ok()??;
        (s.data?["password"].0 == b"drift-e2e").then_some(())
    })
    .await;
    t.ctrl.assert_log_free_of(&["drift-e2e"]);
}

#[tokio::test]
async fn values_copied_elsewhere_are_refused_unless_their_scope_allows_it() {
    let t = setup_on(Server::shared().clone(), "scope", &[], 2).await;
    let other_ns = t.watched[1].clone();
    let strict = t.sealed(
        &secret_yaml("db", &[("password", "scoped-e2e")]),
        Scope::Strict,
    );
    t.apply(&strict).await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;

    // Same ciphertext, another namespace.
    let mut moved = strict.clone();
    moved.metadata.namespace = Some(other_ns.clone());
    t.apply(&moved).await;
    let s = t.wait_reason(&other_ns, "db", "ScopeMismatch").await;
    let msg = &s.ready_condition().unwrap().message;
    assert!(
        msg.contains(&format!(
            "sealed for {}/db item \"password\", found at {other_ns}/db item \"password\"",
            t.ns
        )),
        "{msg}"
    );
    assert!(t.secrets(&other_ns).get_opt("db").await.unwrap().is_none());

    // Same ciphertext, another name.
    let mut renamed = strict.clone();
    renamed.metadata.name = Some("db2".into());
    t.apply(&renamed).await;
    t.wait_reason(&t.ns, "db2", "ScopeMismatch").await;

    // Same ciphertext, another item key.
    let mut rekeyed = strict.clone();
    rekeyed.metadata.name = Some("db3".into());
    let v = rekeyed.spec.encrypted_data.remove("password").unwrap();
    rekeyed.spec.encrypted_data.insert("pw".into(), v);
    t.apply(&rekeyed).await;
    let s = t.wait_reason(&t.ns, "db3", "ScopeMismatch").await;
    assert!(s.ready_condition().unwrap().message.contains("item \"pw\""));

    // Namespace scope: any name in the namespace, not another namespace.
    let mut ns_scoped = t.sealed(
        &secret_yaml("web", &[("token", "ns-e2e")]),
        Scope::Namespace,
    );
    ns_scoped.metadata.name = Some("web-renamed".into());
    t.apply(&ns_scoped).await;
    t.wait_reason(&t.ns, "web-renamed", "Unsealed").await;
    ns_scoped.metadata.namespace = Some(other_ns.clone());
    t.apply(&ns_scoped).await;
    t.wait_reason(&other_ns, "web-renamed", "ScopeMismatch")
        .await;

    // Cluster scope: anywhere.
    let mut cluster = t.sealed(
        &secret_yaml("shared", &[("ca", "cluster-e2e")]),
        Scope::Cluster,
    );
    cluster.metadata.namespace = Some(other_ns.clone());
    cluster.metadata.name = Some("anything".into());
    t.apply(&cluster).await;
    t.wait_reason(&other_ns, "anything", "Unsealed").await;
    assert_eq!(
        t.secret_data(&other_ns, "anything").await["ca"],
        b"cluster-e2e"
    );
    t.ctrl
        .assert_log_free_of(&["scoped-e2e", "ns-e2e", "cluster-e2e"]);
}

#[tokio::test]
async fn an_unowned_secret_is_left_alone_until_annotated_for_adoption() {
    let t = setup("adopt", &[]).await;
    let secrets = t.secrets(&t.ns);
    let mut mine = Secret::default();
    mine.metadata.name = Some("db".into());
    mine.data = Some(BTreeMap::from([(
        "password".into(),
        ByteString(b"handmade".to_vec()),
    )]));
    let created = secrets.create(&PostParams::default(), &mine).await.unwrap();

    t.apply(&t.sealed(
        &secret_yaml("db", &[("password", "adopt-e2e")]),
        Scope::Strict,
    ))
    .await;
    let s = t.wait_reason(&t.ns, "db", "SecretNotOwned").await;
    assert!(
        s.ready_condition()
            .unwrap()
            .message
            .contains("coffer.dev/managed")
    );
    let still = secrets.get("db").await.unwrap();
    assert_eq!(still.resource_version(), created.resource_version());
    assert_eq!(still.data.unwrap()["password"].0, b"handmade");

    let patch = serde_json::json!({"metadata": {"annotations": {"coffer.dev/managed": "true"}}});
    secrets
        .patch("db", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    // The controller looks again on its periodic requeue or on a change to
    // the SealedSecret; touch it so the test does not wait minutes.
    let touch = serde_json::json!({"metadata": {"annotations": {"touched": "1"}}});
    t.sealed_api(&t.ns)
        .patch("db", &PatchParams::default(), &Patch::Merge(touch))
        .await
        .unwrap();
    t.wait_reason(&t.ns, "db", "Unsealed").await;
    let adopted = secrets.get("db").await.unwrap();
    assert_eq!(adopted.data.as_ref().unwrap()["password"].0, b"adopt-e2e");
    assert_eq!(adopted.owner_references()[0].kind, "SealedSecret");
    t.ctrl.assert_log_free_of(&["adopt-e2e", "handmade"]);
}

#[tokio::test]
async fn a_secret_the_api_server_refuses_is_reported_with_the_fields_not_retried() {
    let t = setup("invalid", &[]).await;
    // A TLS Secret needs tls.crt and tls.key; this one has neither.
    let yaml = secret_yaml("db", &[("password", "invalid-e2e")])
        .replace("type: Opaque", "type: kubernetes.io/tls");
    t.apply(&t.sealed(&yaml, Scope::Strict)).await;
    let s = t.wait_reason(&t.ns, "db", "SecretInvalid").await;
    let msg = &s.ready_condition().unwrap().message;
    assert!(msg.contains("data[tls.crt]"), "{msg}");
    t.ctrl.assert_log_free_of(&["invalid-e2e"]);
}

#[tokio::test]
async fn a_value_sealed_to_an_unknown_key_names_that_key() {
    let t = setup("nokey", &[]).await;
    let stranger = SecretKey::generate();
    let s = t.sealed_to(
        &secret_yaml("db", &[("password", "nokey-e2e")]),
        Scope::Strict,
        &[stranger.public().clone()],
    );
    t.apply(&s).await;
    let s = t.wait_reason(&t.ns, "db", "NoMatchingKey").await;
    let msg = &s.ready_condition().unwrap().message;
    assert!(msg.contains(&stranger.id().to_string()), "{msg}");
    assert!(msg.contains("item \"password\""), "{msg}");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(t.admin.clone(), &t.ns);
    eventually(WAIT, "a Warning event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("NoMatchingKey")
        })
    })
    .await;
}

#[tokio::test]
async fn renewal_publishes_a_new_key_old_values_open_until_their_key_is_retired() {
    let t = setup("renew", &["--key-renewal-period", "4s"]).await;
    let first = t.recipients[0].clone();
    t.apply(&t.sealed(
        &secret_yaml("db", &[("password", "renew-e2e")]),
        Scope::Strict,
    ))
    .await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;

    let cms: Api<ConfigMap> = Api::namespaced(t.admin.clone(), &t.key_ns);
    let old_text =
        cms.get("coffer-recipients").await.unwrap().data.unwrap()["recipients.txt"].clone();
    let newer = published_recipients(&t.admin, &t.key_ns, Some(&old_text)).await;
    assert_ne!(newer[0].id(), first.id());

    // A value sealed to the old key after renewal still opens.
    let s = t.sealed_to(
        &secret_yaml("db2", &[("password", "renew2-e2e")]),
        Scope::Strict,
        std::slice::from_ref(&first),
    );
    t.apply(&s).await;
    t.wait_reason(&t.ns, "db2", "Unsealed").await;

    // Retire the first key by label: its values stop opening, and say why.
    let keys: Api<Secret> = Api::namespaced(t.admin.clone(), &t.key_ns);
    let patch = serde_json::json!({"metadata": {"labels": {"coffer.dev/key-state": "retired"}}});
    keys.patch(
        &format!("coffer-key-{}", first.id()),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .unwrap();
    let s = t.wait_reason(&t.ns, "db", "KeyRetired").await;
    assert!(
        s.ready_condition()
            .unwrap()
            .message
            .contains(&first.id().to_string())
    );
    t.ctrl.assert_log_free_of(&["renew-e2e", "renew2-e2e"]);
}

#[tokio::test]
async fn a_restarted_controller_rewrites_nothing() {
    let mut t = setup("restart", &[]).await;
    for i in 0..5 {
        t.apply(&t.sealed(
            &secret_yaml(&format!("s{i}"), &[("k", "restart-e2e")]),
            Scope::Strict,
        ))
        .await;
    }
    for i in 0..5 {
        t.wait_reason(&t.ns, &format!("s{i}"), "Unsealed").await;
    }
    let versions = |list: Vec<Secret>| {
        list.into_iter()
            .map(|s| (s.name_any(), s.resource_version()))
            .collect::<BTreeMap<_, _>>()
    };
    let sealed_versions = |list: Vec<SealedSecret>| {
        list.into_iter()
            .map(|s| (s.name_any(), s.resource_version()))
            .collect::<BTreeMap<_, _>>()
    };
    let before = versions(
        t.secrets(&t.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    );
    let sealed_before = sealed_versions(
        t.sealed_api(&t.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    );
    t.ctrl.stop();

    let ctrl = t
        .controller(&format!("{}-second", t.ns), &t.watched, &[])
        .await;
    eventually(WAIT, "the second controller to start", || async {
        ctrl.log_text().contains("controller started").then_some(())
    })
    .await;
    // Give it time to reconcile everything it would touch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = versions(
        t.secrets(&t.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    );
    let sealed_after = sealed_versions(
        t.sealed_api(&t.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    );
    assert_eq!(before, after);
    assert_eq!(sealed_before, sealed_after);
    t.ctrl = ctrl;
    // It opened nothing and read no SealedSecret: each Secret's annotation,
    // verified by the controller's keys, said it was unsealed already.
    let metrics = eventually(WAIT, "5 outcomes restored", || async {
        let (_, text) = get(&t, "/metrics");
        text.contains("coffer_outcomes_restored_total 5\n")
            .then_some(text)
    })
    .await;
    for source in ["watch", "read_ahead", "get"] {
        assert!(
            metrics.contains(&format!(
                "coffer_sealed_reads_total{{source=\"{source}\"}} 0\n"
            )),
            "{metrics}"
        );
    }
    t.ctrl.assert_log_free_of(&["restart-e2e"]);
}

/// A refusal is counted once: a restarted controller finds it again in
/// the status and does not count it again, so `CofferUnsealFailuresRising`
/// (an `increase` of `coffer_unseal_total`) stays quiet across rollouts.
#[tokio::test]
async fn a_restarted_controller_does_not_count_known_refusals_again() {
    let mut t = setup("recount", &[]).await;
    let mut moved = t.sealed(&secret_yaml("db", &[("k", "recount-e2e")]), Scope::Strict);
    moved.metadata.name = Some("db-moved".into());
    t.apply(&moved).await;
    t.wait_reason(&t.ns, "db-moved", "ScopeMismatch").await;
    let (_, text) = get(&t, "/metrics");
    assert!(
        text.contains("coffer_unseal_total{reason=\"ScopeMismatch\"} 1\n"),
        "{text}"
    );
    t.ctrl.stop();

    let ctrl = t
        .controller(&format!("{}-second", t.ns), &t.watched, &[])
        .await;
    t.ctrl = ctrl;
    // A new object after the restart: once it is unsealed, and the refused
    // one has been looked at again, the counter still says 0 refusals.
    t.apply(&t.sealed(
        &secret_yaml("fresh", &[("k", "recount-e2e")]),
        Scope::Strict,
    ))
    .await;
    t.wait_reason(&t.ns, "fresh", "Unsealed").await;
    let text = eventually(
        WAIT,
        "the refused object to be reconciled again",
        || async {
            let (_, text) = get(&t, "/metrics");
            text.contains("coffer_sealed_reads_total{source=\"watch\"} 2\n")
                .then_some(text)
        },
    )
    .await;
    assert!(
        text.contains("coffer_unseal_total{reason=\"ScopeMismatch\"} 0\n"),
        "{text}"
    );
    // It is still refused, with the same status.
    t.wait_reason(&t.ns, "db-moved", "ScopeMismatch").await;
    t.ctrl.assert_log_free_of(&["recount-e2e"]);
}

/// What a tenant who may edit Secrets (but holds no private key) can do
/// while the controller is down, to make the restarted one trust a Secret
/// it did not write: hand-edit a value under the controller's annotation,
/// or copy another Secret's values and annotation. Neither is trusted; the
/// values are put back. A SealedSecret changed meanwhile is unsealed anew;
/// only the untouched Secret is trusted as it stands.
#[tokio::test]
async fn a_restarted_controller_trusts_only_annotations_its_keys_made() {
    let mut t = setup("attest", &[]).await;
    let original = |name: &str| format!("{name}-attest-e2e");
    for name in ["kept", "edited", "copied", "changed"] {
        t.apply(&t.sealed(&secret_yaml(name, &[("k", &original(name))]), Scope::Strict))
            .await;
    }
    for name in ["kept", "edited", "copied", "changed"] {
        t.wait_reason(&t.ns, name, "Unsealed").await;
    }
    let secrets = t.secrets(&t.ns);
    let kept = secrets.get("kept").await.unwrap();
    t.ctrl.stop();

    // A hand edit of a value under the controller's own annotation.
    let edit = serde_json::json!({"data": {"k": ByteString(b"tampered-attest-e2e".to_vec())}});
    secrets
        .patch("edited", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    // Another Secret's values and annotation, both valid for that one.
    let copy = serde_json::json!({
        "metadata": {"annotations": {
            "coffer.dev/unsealed": kept.annotations()["coffer.dev/unsealed"],
        }},
        "data": {"k": ByteString(original("kept").into_bytes())},
    });
    secrets
        .patch("copied", &PatchParams::default(), &Patch::Merge(&copy))
        .await
        .unwrap();
    // New values while the controller is down.
    t.apply(&t.sealed(
        &secret_yaml("changed", &[("k", "new-attest-e2e")]),
        Scope::Strict,
    ))
    .await;

    t.ctrl = t
        .controller(&format!("{}-second", t.ns), &t.watched, &[])
        .await;
    for (name, want) in [
        ("edited", original("edited")),
        ("copied", original("copied")),
        ("changed", "new-attest-e2e".to_string()),
        ("kept", original("kept")),
    ] {
        eventually(WAIT, &format!("{name} to hold {want}"), || async {
            let s = secrets.get(name).await.ok()?;
            (s.data.as_ref()?.get("k")?.0 == want.as_bytes()).then_some(())
        })
        .await;
    }
    // The untouched one was trusted as it stands: not written again.
    let metrics = eventually(WAIT, "the restart to be reconciled", || async {
        let (_, text) = get(&t, "/metrics");
        text.contains("coffer_outcomes_restored_total 1\n")
            .then_some(text)
    })
    .await;
    assert_eq!(
        secrets.get("kept").await.unwrap().resource_version(),
        kept.resource_version()
    );
    assert!(metrics.contains("coffer_outcomes_restored_total 1\n"));
    t.ctrl.assert_log_free_of(&[
        "kept-attest-e2e",
        "edited-attest-e2e",
        "copied-attest-e2e",
        "changed-attest-e2e",
        "new-attest-e2e",
        "tampered-attest-e2e",
    ]);
}

#[tokio::test]
async fn the_controller_recovers_when_the_api_server_restarts() {
    let server = Server::start_private("restart").unwrap();
    let guard = server.stop_on_drop();
    let t = setup_on(server.clone(), "apirestart", &[], 1).await;
    t.apply(&t.sealed(
        &secret_yaml("before", &[("k", "before-e2e")]),
        Scope::Strict,
    ))
    .await;
    t.wait_reason(&t.ns, "before", "Unsealed").await;

    server.stop(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    Server::start_in(&server.dir).unwrap();
    let admin = server.admin().await;
    let t2 = Cluster { admin, ..t };
    t2.apply(&t2.sealed(&secret_yaml("after", &[("k", "after-e2e")]), Scope::Strict))
        .await;
    t2.wait_reason(&t2.ns, "after", "Unsealed").await;
    assert_eq!(t2.secret_data(&t2.ns, "before").await["k"], b"before-e2e");
    assert_eq!(t2.secret_data(&t2.ns, "after").await["k"], b"after-e2e");
    t2.ctrl.assert_log_free_of(&["before-e2e", "after-e2e"]);
    drop(t2);
    drop(guard);
}

#[tokio::test]
async fn the_deploy_kustomization_passes_server_side_dry_run() {
    let server = Server::shared();
    let deploy = coffer_test_support::root().join("deploy");
    server.kubectl_ok(&["apply", "--dry-run=server", "-k", deploy.to_str().unwrap()]);
}

#[tokio::test]
async fn a_sealed_secret_of_a_refused_type_gets_no_secret_and_names_the_type_and_the_flag() {
    // The default deny list, plus an allow list.
    let t = setup(
        "sectype",
        &["--secret-types-allow", "Opaque,kubernetes.io/basic-auth"],
    )
    .await;
    let token_yaml = secret_yaml("token", &[("token", "satoken-e2e")])
        .replace("type: Opaque", "type: kubernetes.io/service-account-token");
    let token = t.sealed(&token_yaml, Scope::Strict);
    t.apply(&token).await;
    let s = t.wait_reason(&t.ns, "token", "SecretTypeRefused").await;
    let c = s.ready_condition().unwrap();
    assert_eq!(c.status, "False");
    assert!(
        c.message
            .contains("\"kubernetes.io/service-account-token\"")
            && c.message.contains("--secret-types-deny"),
        "{}",
        c.message
    );

    // Not on the allow list.
    let tls_yaml = secret_yaml("tls", &[("tls.crt", "crt-e2e"), ("tls.key", "key-e2e")])
        .replace("type: Opaque", "type: kubernetes.io/tls");
    t.apply(&t.sealed(&tls_yaml, Scope::Strict)).await;
    let s = t.wait_reason(&t.ns, "tls", "SecretTypeRefused").await;
    let msg = &s.ready_condition().unwrap().message;
    assert!(
        msg.contains("\"kubernetes.io/tls\"") && msg.contains("--secret-types-allow"),
        "{msg}"
    );

    // The type is checked before anything is decrypted: values sealed to a
    // key this cluster does not hold are refused for their type, not for
    // the key.
    let stranger = SecretKey::generate();
    let mut unknown = t.sealed_to(&token_yaml, Scope::Strict, &[stranger.public().clone()]);
    unknown.metadata.name = Some("token-unknown-key".into());
    t.apply(&unknown).await;
    t.wait_reason(&t.ns, "token-unknown-key", "SecretTypeRefused")
        .await;

    // An allowed type still unseals.
    t.apply(&t.sealed(
        &secret_yaml("db", &[("password", "allowed-e2e")]),
        Scope::Strict,
    ))
    .await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;

    for name in ["token", "tls", "token-unknown-key"] {
        assert!(
            t.secrets(&t.ns).get_opt(name).await.unwrap().is_none(),
            "a Secret {name} was written"
        );
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(t.admin.clone(), &t.ns);
    eventually(WAIT, "a Warning SecretTypeRefused event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("SecretTypeRefused")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("token")
        })
    })
    .await;
    let (_, metrics) = get(&t, "/metrics");
    assert!(
        metrics.contains("coffer_unseal_total{reason=\"SecretTypeRefused\"}"),
        "{metrics}"
    );

    // /v1/verify answers "does not open here" for the refused type; the
    // same values as an allowed type open.
    assert_eq!(post(&t, "/v1/verify", &json(&token)).0, 409);
    let mut opaque = token.clone();
    opaque.spec.template.as_mut().unwrap().type_ = None;
    assert_eq!(post(&t, "/v1/verify", &json(&opaque)).0, 200);
    t.ctrl
        .assert_log_free_of(&["satoken-e2e", "crt-e2e", "key-e2e", "allowed-e2e"]);
}

#[tokio::test]
async fn a_namespaced_controller_unseals_its_namespaces_and_cannot_read_secrets_elsewhere() {
    let server = Server::shared().clone();
    server.install_deploy();
    let admin = server.admin().await;
    // deploy/ moved to `home` (as the controller's and keys' namespace),
    // with the namespaced component for `a` and `b`, exactly as documented.
    let home = namespace(&admin, "nsmode").await;
    let a = namespace(&admin, "nsmode-a").await;
    let b = namespace(&admin, "nsmode-b").await;
    let other = namespace(&admin, "nsmode-other").await;
    let dir = coffer_test_support::target_dir().join(format!("e2e/kustomize-{home}"));
    let overlay = namespaced_kustomization(&dir, &home, &[&a, &b]);
    let rendered = server.kubectl_ok(&["kustomize", overlay.to_str().unwrap()]);
    let objects = yaml_objects(&rendered);
    let kind = |o: &serde_json::Value| o["kind"].as_str().unwrap_or_default().to_string();
    assert!(
        !objects
            .iter()
            .any(|o| matches!(kind(o).as_str(), "ClusterRole" | "ClusterRoleBinding")),
        "namespaced mode renders cluster-wide RBAC"
    );
    let rbac: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| matches!(kind(o).as_str(), "ServiceAccount" | "Role" | "RoleBinding"))
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": rbac});
    server.kubectl_stdin(&["apply", "-f", "-"], &list.to_string());

    let namespaces = format!("{a},{b}");
    let ctrl = ControllerProcess::start_as(
        &server,
        Path::new(BIN),
        &home,
        &home,
        &["--namespaces", &namespaces, "--key-namespace", &home],
    )
    .await
    .unwrap();
    let t = Cluster::around(
        server.clone(),
        admin.clone(),
        Path::new(BIN),
        vec![a.clone(), b.clone()],
        home.clone(),
        ctrl,
    )
    .await;
    for ns in [&a, &b] {
        let yaml = secret_yaml("db", &[("password", "nsmode-e2e")])
            .replace("metadata:\n", &format!("metadata:\n  namespace: {ns}\n"));
        let s = t.sealed(&yaml, Scope::Strict);
        assert_eq!(s.metadata.namespace.as_deref(), Some(ns.as_str()));
        t.apply(&s).await;
        t.wait_reason(ns, "db", "Unsealed").await;
        assert_eq!(t.secret_data(ns, "db").await["password"], b"nsmode-e2e");
    }

    // What the ServiceAccount may do, asked as the ServiceAccount.
    let sa = server.sa_client(&home, "coffer-controller").await.unwrap();
    let can = |verb: &str, resource: &str, ns: Option<&str>, name: Option<&str>| {
        let sa = sa.clone();
        let (group, resource) = match resource.split_once('.') {
            Some((r, g)) => (g.to_string(), r.to_string()),
            None => (String::new(), resource.to_string()),
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group),
                    resource: Some(resource),
                    namespace: ns.map(str::to_string),
                    name: name.map(str::to_string),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        async move {
            let reviews: Api<SelfSubjectAccessReview> = Api::all(sa);
            reviews
                .create(&PostParams::default(), &review)
                .await
                .unwrap()
                .status
                .unwrap()
                .allowed
        }
    };
    assert!(can("get", "secrets", Some(&a), Some("db")).await);
    assert!(can("list", "secrets", Some(&b), None).await);
    for verb in [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ] {
        assert!(
            !can(verb, "secrets", Some(&other), None).await,
            "{verb} secrets in an unlisted namespace"
        );
        assert!(
            !can(verb, "secrets", None, None).await,
            "{verb} secrets cluster-wide"
        );
    }
    assert!(can("list", "sealedsecrets.coffer.dev", Some(&b), None).await);
    assert!(!can("list", "sealedsecrets.coffer.dev", None, None).await);
    assert!(!can("list", "sealedsecrets.coffer.dev", Some(&other), None).await);
    // In its own namespace: the recipients ConfigMap and the Lease by name.
    let lease = "leases.coordination.k8s.io";
    assert!(
        can(
            "patch",
            "configmaps",
            Some(&home),
            Some("coffer-recipients")
        )
        .await
    );
    assert!(!can("get", "configmaps", Some(&home), Some("another")).await);
    assert!(!can("list", "configmaps", Some(&home), None).await);
    assert!(can("patch", lease, Some(&home), Some("coffer-controller")).await);
    assert!(!can("patch", lease, Some(&home), Some("another")).await);
    assert!(!can("get", lease, Some(&home), Some("another")).await);

    // And a real read of a Secret elsewhere is refused.
    let mut bystander = Secret::default();
    bystander.metadata.name = Some("bystander".into());
    t.secrets(&other)
        .create(&PostParams::default(), &bystander)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(sa, &other);
    match secrets.get("bystander").await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403),
        other => panic!("expected 403, got {other:?}"),
    }
    t.ctrl.assert_log_free_of(&["nsmode-e2e"]);
}
