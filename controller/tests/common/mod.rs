//! The controller's end-to-end helpers, on top of the cluster setup that
//! every suite shares (`coffer_test_support::Cluster`).
#![allow(dead_code, unused_imports)]

pub mod raw;

use std::path::Path;
use std::time::Duration;

use coffer_core::SealedSecret;
use coffer_core::manifest::read_secrets;
use coffer_core::transform::seal_secret;
use coffer_format::{PublicKey, Scope};
use coffer_test_support::Server;
pub use coffer_test_support::{Cluster, WAIT, published_recipients};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};

pub const BIN: &str = env!("CARGO_BIN_EXE_coffer-controller");

/// The shared cluster setup, with this crate's controller binary.
pub async fn setup(name: &str, extra: &[&str]) -> Cluster {
    Cluster::start(Path::new(BIN), name, extra).await
}

pub async fn setup_on(
    server: Server,
    name: &str,
    extra: &[&str],
    extra_namespaces: usize,
) -> Cluster {
    Cluster::start_on(server, Path::new(BIN), name, extra, extra_namespaces).await
}

/// What the controller's tests do on top of the shared cluster: seal with
/// coffer-core and apply the SealedSecret through the API.
pub trait Sealing {
    fn sealed(&self, yaml: &str, scope: Scope) -> SealedSecret;
    fn sealed_to(&self, yaml: &str, scope: Scope, to: &[PublicKey]) -> SealedSecret;
    async fn apply(&self, s: &SealedSecret);
}

impl Sealing for Cluster {
    fn sealed(&self, yaml: &str, scope: Scope) -> SealedSecret {
        self.sealed_to(yaml, scope, &self.recipients)
    }

    fn sealed_to(&self, yaml: &str, scope: Scope, to: &[PublicKey]) -> SealedSecret {
        let m = &read_secrets(yaml).unwrap()[0];
        seal_secret(m, Some(&self.ns), false, scope, to).unwrap()
    }

    async fn apply(&self, s: &SealedSecret) {
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

pub fn get(t: &Cluster, path: &str) -> (u16, String) {
    get_from(t.ctrl.http, path)
}

/// GET `path` from the controller listening at `addr`.
pub fn get_from(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut r = agent()
        .get(format!("http://{addr}{path}"))
        .call()
        .expect("HTTP GET");
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

pub fn post(t: &Cluster, path: &str, body: &[u8]) -> (u16, String) {
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
