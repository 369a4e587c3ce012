//! Shared setup of the controller's end-to-end tests.
#![allow(dead_code)]

pub mod raw;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use coffer_core::SealedSecret;
use coffer_core::manifest::read_secrets;
use coffer_core::transform::seal_secret;
use coffer_format::recipients::RecipientsFile;
use coffer_format::{PublicKey, Scope};
use coffer_test_support::{ControllerProcess, Server, eventually, grant_key_namespace, namespace};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

pub const BIN: &str = env!("CARGO_BIN_EXE_coffer-controller");
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Setup {
    pub server: Server,
    pub admin: Client,
    pub ns: String,
    /// Every namespace the controller watches; `ns` is the first.
    pub watched: Vec<String>,
    pub key_ns: String,
    pub ctrl: ControllerProcess,
    pub recipients: Vec<PublicKey>,
}

pub async fn setup(name: &str, extra: &[&str]) -> Setup {
    setup_on(Server::shared().clone(), name, extra, 1).await
}

pub async fn setup_on(
    server: Server,
    name: &str,
    extra: &[&str],
    extra_namespaces: usize,
) -> Setup {
    server.install_deploy();
    let admin = server.admin().await;
    let ns = namespace(&admin, name).await;
    let mut watched = vec![ns.clone()];
    for _ in 1..extra_namespaces.max(1) {
        watched.push(namespace(&admin, name).await);
    }
    let key_ns = namespace(&admin, &format!("{name}-keys")).await;
    grant_key_namespace(&admin, &key_ns).await;
    let namespaces = watched.join(",");
    let mut args = vec!["--namespaces", &namespaces, "--key-namespace", &key_ns];
    args.extend_from_slice(extra);
    let ctrl = ControllerProcess::start(&server, Path::new(BIN), &ns, &args)
        .await
        .unwrap();
    let recipients = published_recipients(&admin, &key_ns, None).await;
    Setup {
        server,
        admin,
        ns,
        watched,
        key_ns,
        ctrl,
        recipients,
    }
}

/// Waits for the recipients ConfigMap (and, if given, for a file other than `not`).
pub async fn published_recipients(
    admin: &Client,
    key_ns: &str,
    not: Option<&str>,
) -> Vec<PublicKey> {
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), key_ns);
    let text = eventually(WAIT, "the recipients ConfigMap", || async {
        let cm = cms.get_opt("coffer-recipients").await.ok()??;
        let t = cm.data?.get("recipients.txt")?.clone();
        (Some(t.as_str()) != not).then_some(t)
    })
    .await;
    RecipientsFile::parse(&text).unwrap().keys()
}

impl Setup {
    pub fn sealed(&self, yaml: &str, scope: Scope) -> SealedSecret {
        self.sealed_to(yaml, scope, &self.recipients)
    }

    pub fn sealed_to(&self, yaml: &str, scope: Scope, to: &[PublicKey]) -> SealedSecret {
        let m = &read_secrets(yaml).unwrap()[0];
        seal_secret(m, Some(&self.ns), false, scope, to).unwrap()
    }

    pub fn sealed_api(&self, ns: &str) -> Api<SealedSecret> {
        Api::namespaced(self.admin.clone(), ns)
    }

    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.admin.clone(), ns)
    }

    pub async fn apply(&self, s: &SealedSecret) {
        let ns = s.namespace().unwrap();
        self.sealed_api(&ns)
            .patch(
                &s.name_any(),
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(s),
            )
            .await
            .unwrap();
    }

    /// Waits until the Ready condition has `reason` for the current generation.
    pub async fn wait_reason(&self, ns: &str, name: &str, reason: &str) -> SealedSecret {
        let api = self.sealed_api(ns);
        eventually(WAIT, &format!("{ns}/{name} to be {reason}"), || async {
            let s = api.get(name).await.ok()?;
            let c = s.ready_condition()?;
            let current = s.status.as_ref()?.observed_generation == s.metadata.generation;
            (current && c.reason == reason).then_some(s.clone())
        })
        .await
    }

    pub async fn secret_data(&self, ns: &str, name: &str) -> BTreeMap<String, Vec<u8>> {
        self.secrets(ns)
            .get(name)
            .await
            .unwrap()
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    }
}

pub fn secret_yaml(name: &str, items: &[(&str, &str)]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  labels: {{app: shop}}\n  annotations: {{team: payments}}\ntype: Opaque\nstringData:\n"
    );
    for (k, v) in items {
        y.push_str(&format!("  {k}: {v:?}\n"));
    }
    y
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

pub fn get(t: &Setup, path: &str) -> (u16, String) {
    let mut r = agent()
        .get(format!("http://{}{path}", t.ctrl.http))
        .call()
        .expect("HTTP GET");
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

pub fn post(t: &Setup, path: &str, body: &[u8]) -> (u16, String) {
    let mut r = agent()
        .post(format!("http://{}{path}", t.ctrl.http))
        .header("content-type", "application/json")
        .send(body)
        .expect("HTTP POST");
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

pub fn json(s: &SealedSecret) -> Vec<u8> {
    serde_json::to_vec(s).unwrap()
}
