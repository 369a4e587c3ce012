//! One cluster setup for every end-to-end suite: a test's own namespaces on
//! an API server with `deploy/` applied, a key-ring namespace under the
//! shipped RBAC, and its own controller process (a token of the deploy/
//! ServiceAccount) that has published its recipients. The controller and
//! CLI suites add their own helpers on top.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_core::SealedSecret;
use coffer_core::ring::{RECIPIENTS_CONFIGMAP, RECIPIENTS_KEY};
use coffer_format::{PublicKey, RecipientsFile};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::Api;

use crate::{ControllerProcess, Server, eventually, grant_key_namespace, namespace};

/// How long an end-to-end test waits for something that must happen.
pub const WAIT: Duration = Duration::from_secs(60);

/// A test's share of an API server, and the controller it runs.
pub struct Cluster {
    pub server: Server,
    pub admin: Client,
    /// The first watched namespace, where a test's objects go by default.
    pub ns: String,
    /// Every namespace the controller watches; `ns` is the first.
    pub watched: Vec<String>,
    /// The controller's key-ring namespace.
    pub key_ns: String,
    pub ctrl: ControllerProcess,
    /// The recipients the controller published when it started.
    pub recipients: Vec<PublicKey>,
    /// The coffer-controller binary, for further controllers.
    pub bin: PathBuf,
}

impl Cluster {
    /// On the shared server: one watched namespace `NAME-xxxxxxxx`.
    pub async fn start(bin: &Path, name: &str, extra: &[&str]) -> Cluster {
        Self::start_on(Server::shared().clone(), bin, name, extra, 1).await
    }

    /// On `server`: `namespaces` watched namespaces `NAME-xxxxxxxx`, a key
    /// namespace `NAME-keys-xxxxxxxx` granted the shipped Role, and `bin`
    /// started on them with `extra` flags. Returns once the controller has
    /// published its recipients.
    pub async fn start_on(
        server: Server,
        bin: &Path,
        name: &str,
        extra: &[&str],
        namespaces: usize,
    ) -> Cluster {
        server.install_deploy();
        let admin = server.admin().await;
        let mut watched = Vec::new();
        for _ in 0..namespaces.max(1) {
            watched.push(namespace(&admin, name).await);
        }
        let key_ns = namespace(&admin, &format!("{name}-keys")).await;
        grant_key_namespace(&admin, &key_ns).await;
        let ctrl = controller(&server, bin, &watched[0], &watched, &key_ns, extra).await;
        Self::around(server, admin, bin, watched, key_ns, ctrl).await
    }

    /// A cluster around a controller started otherwise (e.g. under deploy/
    /// moved to another namespace), once it has published its recipients.
    pub async fn around(
        server: Server,
        admin: Client,
        bin: &Path,
        watched: Vec<String>,
        key_ns: String,
        ctrl: ControllerProcess,
    ) -> Cluster {
        let recipients = published_recipients(&admin, &key_ns, None).await;
        Cluster {
            server,
            admin,
            ns: watched[0].clone(),
            watched,
            key_ns,
            ctrl,
            recipients,
            bin: bin.to_path_buf(),
        }
    }

    /// Another controller on this cluster's key ring, watching `watched`
    /// (a restart, a second replica); its log is `target/e2e/NAME.log`.
    pub async fn controller(
        &self,
        name: &str,
        watched: &[String],
        extra: &[&str],
    ) -> ControllerProcess {
        controller(&self.server, &self.bin, name, watched, &self.key_ns, extra).await
    }

    pub fn sealed_api(&self, ns: &str) -> Api<SealedSecret> {
        Api::namespaced(self.admin.clone(), ns)
    }

    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.admin.clone(), ns)
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

    /// The data of the Secret `ns/name` (it must exist).
    pub async fn secret_data(&self, ns: &str, name: &str) -> BTreeMap<String, Vec<u8>> {
        secret_data(&self.secrets(ns).get(name).await.unwrap())
    }
}

/// `bin` watching `watched` with its key ring in `key_ns`, under the
/// deploy/ ServiceAccount.
async fn controller(
    server: &Server,
    bin: &Path,
    name: &str,
    watched: &[String],
    key_ns: &str,
    extra: &[&str],
) -> ControllerProcess {
    let namespaces = watched.join(",");
    let mut args = vec!["--namespaces", &namespaces, "--key-namespace", key_ns];
    args.extend_from_slice(extra);
    let ctrl = ControllerProcess::start(server, bin, name, &args)
        .await
        .expect("start the controller");
    // Its HTTP API answers 503 until the key ring is loaded: a caller that
    // goes on to use it (e.g. `coffer rotate`) must not race that.
    ctrl.wait_ready(WAIT)
        .await
        .expect("the controller to be ready");
    ctrl
}

/// Waits for the recipients ConfigMap in `key_ns` (and, if given, for a
/// file other than `not`).
pub async fn published_recipients(
    admin: &Client,
    key_ns: &str,
    not: Option<&str>,
) -> Vec<PublicKey> {
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), key_ns);
    let text = eventually(WAIT, "the recipients ConfigMap", || async {
        let cm = cms.get_opt(RECIPIENTS_CONFIGMAP).await.ok()??;
        let t = cm.data?.get(RECIPIENTS_KEY)?.clone();
        (Some(t.as_str()) != not).then_some(t)
    })
    .await;
    RecipientsFile::parse(&text).unwrap().keys()
}

/// A Secret's data, as bytes.
pub fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}
