//! The test API server is a real kube-apiserver with etcd, RBAC, watches and
//! garbage collection, not a mock.

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_core::{SealedSecret, SealedSecretSpec};
use coffer_test_support::{Server, eventually, namespace};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn crd_installs_and_sealed_secrets_and_secrets_can_be_written_and_read() {
    let server = Server::shared();
    let crds = coffer_test_support::root().join("crds/sealedsecret.yaml");
    server.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crds.to_str().unwrap(),
    ]);
    server.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/sealedsecrets.coffer.dev",
        "--timeout=60s",
    ]);
    let client = server.admin().await;
    let ns = namespace(&client, "envtest-crd").await;

    let sealed: Api<SealedSecret> = Api::namespaced(client.clone(), &ns);
    let mut s = SealedSecret::new(
        "db",
        SealedSecretSpec {
            encrypted_data: BTreeMap::from([("k".into(), "dmFsdWU=".into())]),
            template: None,
            ..Default::default()
        },
    );
    s.metadata.namespace = Some(ns.clone());
    sealed.create(&PostParams::default(), &s).await.unwrap();
    let back = sealed.get("db").await.unwrap();
    assert_eq!(back.spec.encrypted_data["k"], "dmFsdWU=");
    assert_eq!(back.metadata.generation, Some(1));

    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    let secret = Secret {
        metadata: meta("plain"),
        data: Some(BTreeMap::from([("a".into(), ByteString(b"b".to_vec()))])),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(
        secrets.get("plain").await.unwrap().data.unwrap()["a"].0,
        b"b"
    );
}

#[tokio::test]
async fn service_account_tokens_are_subject_to_rbac() {
    let server = Server::shared();
    let admin = server.admin().await;
    let ns = namespace(&admin, "envtest-rbac").await;
    let sa = server.sa_client(&ns, "reader").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(sa, &ns);
    let err = secrets.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(e) if e.code == 403),
        "{err}"
    );

    let roles: Api<Role> = Api::namespaced(admin.clone(), &ns);
    roles
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta("read-secrets"),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["".into()]),
                    resources: Some(vec!["secrets".into()]),
                    verbs: vec!["list".into()],
                    ..Default::default()
                }]),
            },
        )
        .await
        .unwrap();
    let rbs: Api<RoleBinding> = Api::namespaced(admin, &ns);
    rbs.create(
        &PostParams::default(),
        &RoleBinding {
            metadata: meta("read-secrets"),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: "read-secrets".into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: "reader".into(),
                namespace: Some(ns.clone()),
                ..Default::default()
            }]),
        },
    )
    .await
    .unwrap();
    eventually(
        Duration::from_secs(10),
        "RoleBinding to take effect",
        || async { secrets.list(&ListParams::default()).await.ok() },
    )
    .await;
}

#[tokio::test]
async fn a_watch_delivers_a_secret_created_by_another_client() {
    let server = Server::shared();
    let admin = server.admin().await;
    let ns = namespace(&admin, "envtest-watch").await;
    let watched: Api<Secret> = Api::namespaced(server.admin().await, &ns);
    let mut stream = watcher(watched, watcher::Config::default())
        .applied_objects()
        .boxed();
    let writer: Api<Secret> = Api::namespaced(admin, &ns);
    let create = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        writer
            .create(
                &PostParams::default(),
                &Secret {
                    metadata: meta("seen"),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    };
    let seen = async {
        while let Some(s) = stream.try_next().await.unwrap() {
            if s.metadata.name.as_deref() == Some("seen") {
                return;
            }
        }
    };
    let (_, r) = tokio::join!(create, tokio::time::timeout(Duration::from_secs(20), seen));
    r.expect("the watch delivered the Secret");
}

#[tokio::test]
async fn the_garbage_collector_deletes_dependents_of_a_deleted_owner() {
    let server = Server::shared();
    let admin = server.admin().await;
    let ns = namespace(&admin, "envtest-gc").await;
    let cms: Api<ConfigMap> = Api::namespaced(admin, &ns);
    let owner = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("owner"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut dep = meta("dependent");
    dep.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.unwrap(),
        ..Default::default()
    }]);
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: dep,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    eventually(
        Duration::from_secs(60),
        "the dependent to be collected",
        || async {
            cms.get_opt("dependent")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
}
