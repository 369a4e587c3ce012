//! bitnami's imported RSA keys: Secrets of type `coffer.dev/bitnami-key`
//! in the key namespace (written by `coffer keys import-bitnami`), watched
//! into [`BitnamiKeys`] on every replica (followers serve
//! `/v1/bitnami/convert` too).

use std::sync::{Arc, RwLock};

use coffer_core::bitnami::{self, BitnamiKey};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tokio::sync::watch;

use crate::client::watch::{KeysSeen, follow_key_secrets};

/// The imported bitnami keys, shared by the reconciler and the HTTP API.
pub struct BitnamiKeys {
    keys: RwLock<Arc<Vec<BitnamiKey>>>,
    synced: watch::Sender<bool>,
}

impl BitnamiKeys {
    pub fn new() -> Arc<Self> {
        Arc::new(BitnamiKeys {
            keys: RwLock::new(Arc::new(Vec::new())),
            synced: watch::channel(false).0,
        })
    }

    /// The keys now.
    pub fn current(&self) -> Arc<Vec<BitnamiKey>> {
        self.keys.read().expect("bitnami keys lock").clone()
    }

    /// Whether the first list of key Secrets is in.
    pub fn synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Resolves once the first list of key Secrets is in.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|s| *s).await;
    }

    fn publish(&self, keys: Vec<BitnamiKey>) {
        *self.keys.write().expect("bitnami keys lock") = Arc::new(keys);
        self.synced.send_replace(true);
    }
}

/// Watches the imported key Secrets of the key namespace and keeps `keys`
/// current (added and removed keys are picked up without a restart).
pub async fn watch_keys(api: Api<Secret>, keys: Arc<BitnamiKeys>) -> anyhow::Result<()> {
    let read = |s: &Secret| {
        if s.type_.as_deref() != Some(bitnami::KEY_SECRET_TYPE) {
            return Err(format!("not of type {}", bitnami::KEY_SECRET_TYPE));
        }
        match bitnami::key_from_secret(s) {
            Ok(Some(k)) => Ok(k),
            Ok(None) => Err("no data.tls.key".to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    follow_key_secrets(
        api,
        bitnami::KEY_ID_LABEL,
        "bitnami key Secret",
        read,
        |current, seen| {
            if seen == KeysSeen::Listed {
                tracing::info!(keys = current.len(), "imported bitnami keys loaded");
            }
            keys.publish(current.values().cloned().collect());
        },
    )
    .await
}
