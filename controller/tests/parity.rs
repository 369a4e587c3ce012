//! End to end, against a real kube-apiserver with its garbage collector:
//! what bitnami's users rely on beyond unsealing (issue 16):
//! `deletionPolicy: Keep`, merging into a Secret of another owner,
//! `template.data`, and immutable Secrets.

mod common;

use std::collections::BTreeMap;

use coffer_core::SealedSecret;
use coffer_core::api::{DeletionPolicy, KEPT_FOR_ANNOTATION, MERGED_KEYS_ANNOTATION};
use coffer_format::Scope;
use coffer_test_support::eventually;
use common::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

fn with_policy(mut s: SealedSecret, policy: Option<DeletionPolicy>) -> SealedSecret {
    s.spec.deletion_policy = policy;
    s
}

/// Touches the SealedSecret (no new generation) so that the controller
/// looks again now rather than on its periodic retry.
async fn touch(t: &Cluster, name: &str, n: u32) {
    let patch = serde_json::json!({"metadata": {"annotations": {"touched": n.to_string()}}});
    t.sealed_api(&t.ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_kept_secret_survives_its_sealed_secret_and_switching_policies_moves_the_owner() {
    let t = setup("keep", &[]).await;
    let secrets = t.secrets(&t.ns);
    let kept = with_policy(
        t.sealed(
            &secret_yaml("kept", &[("password", "kept-e2e")]),
            Scope::Strict,
        ),
        Some(DeletionPolicy::Keep),
    );
    t.apply(&kept).await;
    let s = t.wait_reason(&t.ns, "kept", "Unsealed").await;
    let uid = s.metadata.uid.clone().unwrap();
    let secret = secrets.get("kept").await.unwrap();
    assert!(secret.owner_references().is_empty(), "Keep: no owner");
    assert_eq!(secret.annotations()[KEPT_FOR_ANNOTATION], uid);
    assert_eq!(secret.data.unwrap()["password"].0, b"kept-e2e");

    // Delete: the SealedSecret takes the Secret back as its owner ...
    t.apply(&with_policy(kept.clone(), None)).await;
    eventually(WAIT, "the Secret to get its owner back", || async {
        let s = secrets.get("kept").await.ok()?;
        (s.owner_references().first()?.uid == uid).then_some(())
    })
    .await;
    // ... and Keep again lets it go.
    t.apply(&with_policy(kept.clone(), Some(DeletionPolicy::Keep)))
        .await;
    eventually(WAIT, "the owner reference to be dropped", || async {
        let s = secrets.get("kept").await.ok()?;
        s.owner_references().is_empty().then_some(())
    })
    .await;
    t.wait_reason(&t.ns, "kept", "Unsealed").await;

    // A SealedSecret with the default policy beside it shows that the
    // garbage collector runs: its Secret goes, the kept one stays.
    t.apply(&t.sealed(
        &secret_yaml("owned", &[("password", "owned-e2e")]),
        Scope::Strict,
    ))
    .await;
    t.wait_reason(&t.ns, "owned", "Unsealed").await;
    for name in ["kept", "owned"] {
        t.sealed_api(&t.ns)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually(WAIT, "the owned Secret to be garbage-collected", || async {
        secrets
            .get_opt("owned")
            .await
            .ok()
            .and_then(|s| s.is_none().then_some(()))
    })
    .await;
    let survivor = secrets.get("kept").await.unwrap();
    assert_eq!(survivor.data.unwrap()["password"].0, b"kept-e2e");

    // A new SealedSecret of that name is another object: it does not take
    // over what the old one kept.
    t.apply(&t.sealed(
        &secret_yaml("kept", &[("password", "kept2-e2e")]),
        Scope::Strict,
    ))
    .await;
    t.wait_reason(&t.ns, "kept", "SecretNotOwned").await;
    assert_eq!(t.secret_data(&t.ns, "kept").await["password"], b"kept-e2e");
    t.ctrl
        .assert_log_free_of(&["kept-e2e", "owned-e2e", "kept2-e2e"]);
}

fn merging(t: &Cluster, items: &[(&str, &str)]) -> SealedSecret {
    let mut s = t.sealed(&secret_yaml("app", items), Scope::Strict);
    s.spec.merge = Some(true);
    s
}

#[tokio::test]
async fn merging_needs_the_owners_consent_and_touches_only_the_keys_it_wrote() {
    let t = setup("merge", &[]).await;
    let secrets = t.secrets(&t.ns);
    // A Secret that belongs to something else (here a ConfigMap).
    let owner = Api::<ConfigMap>::namespaced(t.admin.clone(), &t.ns)
        .create(&PostParams::default(), &{
            let mut c = ConfigMap::default();
            c.metadata.name = Some("app-owner".into());
            c
        })
        .await
        .unwrap();
    let mut theirs = Secret::default();
    theirs.metadata.name = Some("app".into());
    theirs.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "app-owner".into(),
        uid: owner.uid().unwrap(),
        controller: Some(true),
        ..Default::default()
    }]);
    theirs.data = Some(BTreeMap::from([(
        "theirs".into(),
        ByteString(b"foreign-e2e".to_vec()),
    )]));
    let created = secrets
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();

    // Without the owner's annotation: refused, the Secret untouched.
    t.apply(&merging(
        &t,
        &[("password", "merge1-e2e"), ("token", "token-e2e")],
    ))
    .await;
    let s = t.wait_reason(&t.ns, "app", "MergeRefused").await;
    let msg = &s.ready_condition().unwrap().message;
    assert!(msg.contains("coffer.dev/merge"), "{msg}");
    let still = secrets.get("app").await.unwrap();
    assert_eq!(still.resource_version(), created.resource_version());

    let consent = serde_json::json!({"metadata": {"annotations": {"coffer.dev/merge": "true"}}});
    secrets
        .patch("app", &PatchParams::default(), &Patch::Merge(consent))
        .await
        .unwrap();
    touch(&t, "app", 1).await;
    t.wait_reason(&t.ns, "app", "Unsealed").await;
    let merged = secrets.get("app").await.unwrap();
    let data = coffer_test_support::secret_data(&merged);
    assert_eq!(data["theirs"], b"foreign-e2e");
    assert_eq!(data["password"], b"merge1-e2e");
    assert_eq!(data["token"], b"token-e2e");
    assert_eq!(
        merged.annotations()[MERGED_KEYS_ANNOTATION],
        "password,token"
    );
    assert_eq!(merged.owner_references().len(), 1, "no owner taken over");
    assert_eq!(merged.owner_references()[0].kind, "ConfigMap");

    // An item removed from the SealedSecret leaves the Secret; the owner's
    // keys stay.
    t.apply(&merging(&t, &[("password", "merge2-e2e")])).await;
    let data = eventually(WAIT, "the removed item to go", || async {
        let d = t.secret_data(&t.ns, "app").await;
        (!d.contains_key("token")).then_some(d)
    })
    .await;
    assert_eq!(data.keys().collect::<Vec<_>>(), ["password", "theirs"]);
    assert_eq!(data["password"], b"merge2-e2e");
    assert_eq!(data["theirs"], b"foreign-e2e");

    // A key of the owner is never overwritten.
    t.apply(&merging(
        &t,
        &[("password", "merge2-e2e"), ("theirs", "overwrite-e2e")],
    ))
    .await;
    let s = t.wait_reason(&t.ns, "app", "MergeRefused").await;
    let msg = &s.ready_condition().unwrap().message;
    assert!(msg.contains("theirs"), "{msg}");
    assert_eq!(t.secret_data(&t.ns, "app").await["theirs"], b"foreign-e2e");
    t.ctrl.assert_log_free_of(&[
        "foreign-e2e",
        "merge1-e2e",
        "merge2-e2e",
        "token-e2e",
        "overwrite-e2e",
    ]);
}

/// A tenant who may create SealedSecrets cannot use merging to put a value
/// into a ServiceAccount token Secret, even one its owner opened to
/// merging: the Secret types deny list applies to the Secret merged into.
#[tokio::test]
async fn merging_into_a_denied_secret_type_is_refused() {
    let t = setup("merge-type", &[]).await;
    let secrets = t.secrets(&t.ns);
    Api::<ServiceAccount>::namespaced(t.admin.clone(), &t.ns)
        .create(&PostParams::default(), &{
            let mut sa = ServiceAccount::default();
            sa.metadata.name = Some("robot".into());
            sa
        })
        .await
        .unwrap();
    let mut token = Secret::default();
    token.metadata.name = Some("app".into());
    token.metadata.annotations = Some(BTreeMap::from([
        ("kubernetes.io/service-account.name".into(), "robot".into()),
        ("coffer.dev/merge".into(), "true".into()),
    ]));
    token.type_ = Some("kubernetes.io/service-account-token".into());
    secrets
        .create(&PostParams::default(), &token)
        .await
        .unwrap();
    t.apply(&merging(&t, &[("token", "forged-e2e")])).await;
    let s = t.wait_reason(&t.ns, "app", "SecretTypeRefused").await;
    let msg = &s.ready_condition().unwrap().message;
    assert!(msg.contains("service-account-token"), "{msg}");
    let data = secrets.get("app").await.unwrap().data.unwrap_or_default();
    assert!(
        data.get("token").is_none_or(|v| v.0 != b"forged-e2e"),
        "the token was not replaced"
    );
    t.ctrl.assert_log_free_of(&["forged-e2e"]);
}

#[tokio::test]
async fn template_data_is_rendered_follows_changes_and_a_broken_template_writes_nothing() {
    let t = setup("template", &[]).await;
    let with_template = |template: &str| {
        let mut s = t.sealed(
            &secret_yaml("db", &[("user", "app"), ("password", "tmpl-e2e")]),
            Scope::Strict,
        );
        s.spec.template.get_or_insert_with(Default::default).data =
            BTreeMap::from([("url".to_string(), template.to_string())]);
        s
    };
    t.apply(&with_template(
        "postgres://{{ user }}:{{ password }}@db/shop",
    ))
    .await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;
    let data = t.secret_data(&t.ns, "db").await;
    assert_eq!(data["url"], b"postgres://app:tmpl-e2e@db/shop");
    assert_eq!(data["password"], b"tmpl-e2e");

    t.apply(&with_template(
        r#"{"user": {{ user | tojson }}, "pass": {{ items["password"] | tojson }}}"#,
    ))
    .await;
    eventually(WAIT, "the Secret to follow the new template", || async {
        let d = t.secret_data(&t.ns, "db").await;
        (d["url"] == br#"{"user": "app", "pass": "tmpl-e2e"}"#).then_some(())
    })
    .await;

    // /v1/verify answers from the values alone: a template that fails on
    // a value cannot turn it into an oracle on that value (bitnami #2019).
    let oracle = with_template(r#"{% if password[0] == "t" %}{{ password | int }}{% endif %}"#);
    assert_eq!(post(&t, "/v1/verify", &json(&oracle)).0, 200);
    let mut other = oracle.clone();
    other.spec.template.as_mut().unwrap().data = BTreeMap::from([(
        "url".to_string(),
        r#"{% if password[0] == "x" %}{{ password | int }}{% endif %}"#.to_string(),
    )]);
    assert_eq!(post(&t, "/v1/verify", &json(&other)).0, 200);

    // A mistyped variable: refused, and the Secret keeps what it had.
    let broken = with_template("{{ pasword }}");
    t.apply(&broken).await;
    let s = t.wait_reason(&t.ns, "db", "TemplateFailed").await;
    let msg = &s.ready_condition().unwrap().message;
    assert!(msg.contains("pasword") && msg.contains("url"), "{msg}");
    assert!(!msg.contains("tmpl-e2e"), "{msg}");
    assert_eq!(
        t.secret_data(&t.ns, "db").await["url"],
        br#"{"user": "app", "pass": "tmpl-e2e"}"#
    );

    // A hostile template runs out of fuel; the controller goes on.
    t.apply(&with_template(
        "{% for a in range(100000) %}{% for b in range(100000) %}{{ password }}{% endfor %}{% endfor %}",
    ))
    .await;
    let s = t.wait_reason(&t.ns, "db", "TemplateFailed").await;
    let msg = &s.ready_condition().unwrap().message;
    assert!(msg.contains("budget") || msg.contains("exceed"), "{msg}");
    t.apply(&with_template("{{ user }}")).await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;
    assert_eq!(t.secret_data(&t.ns, "db").await["url"], b"app");

    // A new value is rendered again through the same template.
    let mut s = t.sealed(
        &secret_yaml("db", &[("user", "app"), ("password", "tmpl2-e2e")]),
        Scope::Strict,
    );
    s.spec.template.get_or_insert_with(Default::default).data =
        BTreeMap::from([("url".to_string(), "pw={{ password }}".to_string())]);
    t.apply(&s).await;
    eventually(
        WAIT,
        "the rendered value to follow the new item",
        || async {
            let d = t.secret_data(&t.ns, "db").await;
            (d["url"] == b"pw=tmpl2-e2e").then_some(())
        },
    )
    .await;
    t.ctrl.assert_log_free_of(&["tmpl-e2e", "tmpl2-e2e"]);
}

#[tokio::test]
async fn an_immutable_secret_is_recreated_when_its_values_change() {
    let t = setup("immutable", &[]).await;
    let yaml = |v: &str| format!("{}immutable: true\n", secret_yaml("db", &[("password", v)]));
    t.apply(&t.sealed(&yaml("imm1-e2e"), Scope::Strict)).await;
    t.wait_reason(&t.ns, "db", "Unsealed").await;
    let first = t.secrets(&t.ns).get("db").await.unwrap();
    assert_eq!(first.immutable, Some(true));

    // Sealed again with the same value (as `coffer rotate` does): a new
    // generation, the same data. Only the annotation changes, by an
    // update: the Secret is never deleted.
    t.apply(&t.sealed(&yaml("imm1-e2e"), Scope::Strict)).await;
    let resealed = eventually(WAIT, "the annotation of generation 2", || async {
        let s = t.secrets(&t.ns).get("db").await.ok()?;
        s.annotations()[coffer_core::api::UNSEALED_ANNOTATION]
            .starts_with("v1;g=2;")
            .then_some(s)
    })
    .await;
    assert_eq!(resealed.uid(), first.uid(), "updated, not re-created");
    assert_eq!(resealed.data, first.data);

    t.apply(&t.sealed(&yaml("imm2-e2e"), Scope::Strict)).await;
    let second = eventually(WAIT, "the immutable Secret to be re-created", || async {
        let s = t.secrets(&t.ns).get("db").await.ok()?;
        (s.data.as_ref()?["password"].0 == b"imm2-e2e").then_some(s)
    })
    .await;
    assert_ne!(second.uid(), first.uid(), "a new object, not an update");
    assert_eq!(second.immutable, Some(true));
    t.wait_reason(&t.ns, "db", "Unsealed").await;
    t.ctrl.assert_log_free_of(&["imm1-e2e", "imm2-e2e"]);
}
