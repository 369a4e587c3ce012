//! Keeps the key ring in its Secrets: watches the key Secrets into the
//! ring's state (the ring module), creates the first key, renews the
//! active key on schedule and publishes its recipients file.

use std::sync::Arc;
use std::time::Duration;

use coffer_format::key::KeyKind;
use coffer_format::{KeyId, SecretKey};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};

use coffer_core::ring::KeyStatus;
use coffer_core::wipe;

use crate::client::watch::{KeysSeen, follow_key_secrets};
use crate::keys::kek::{Kek, Read, load_keys};
use crate::keys::ring::{KEY_ID_LABEL, KeyState, Keys, RECIPIENTS_CONFIGMAP, RECIPIENTS_KEY};
use crate::metrics::Metrics;

/// Watches the key Secrets and keeps `keys` up to date, unwrapping wrapped
/// keys with `kek` (the kek module's loader). Runs until the watch stream
/// ends (it retries with backoff on API errors).
pub async fn watch_keys(
    api: Api<Secret>,
    keys: Arc<Keys>,
    kek: Option<Arc<Kek>>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let plain_under_kek = kek.as_ref().map(|k| k.reference().to_string());
    let read = |s: &Secret| {
        let k =
            coffer_core::ring::read_key_secret(s, Timestamp::now()).map_err(|e| e.to_string())?;
        let name = s.metadata.name.as_deref().unwrap_or_default();
        if let Some(why) = &k.suspect {
            tracing::warn!(secret = %name, key_id = %k.id(), "{why}");
        }
        if let Some(kek) = &plain_under_kek
            && k.wrapped.is_none()
        {
            tracing::warn!(secret = %name, key_id = %k.id(), "the key Secret holds its key in plain although --kek {kek} is set: wrap it with `coffer keys wrap` (docs/kms.md)");
        }
        Ok(Read::new(k, s))
    };
    let (tx, rx) = tokio::sync::watch::channel(None);
    let follow = async move {
        let result = follow_key_secrets(api, KEY_ID_LABEL, "key Secret", read, |current, seen| {
            let synced = match seen {
                KeysSeen::Listed => true,
                KeysSeen::Changed { synced } => synced,
            };
            tx.send_replace(Some((Arc::new(current.clone()), synced)));
        })
        .await;
        drop(tx);
        result
    };
    let (result, ()) = tokio::join!(follow, load_keys(rx, keys, kek, metrics));
    result
}

/// What the key manager needs.
pub struct KeyManager {
    pub client: kube::Client,
    pub namespace: String,
    pub configmaps: Api<ConfigMap>,
    pub keys: Arc<Keys>,
    /// Zero turns automatic renewal off.
    pub renewal_period: Duration,
    pub cluster_name: Option<String>,
    /// Kind of the keys it creates.
    pub key_kind: KeyKind,
    /// The KEK that wraps every key it creates (docs/kms.md).
    pub kek: Option<Arc<Kek>>,
    /// The key this manager created last and when, until the watch shows
    /// it: no second key is made while the first is on its way.
    pub pending: std::sync::Mutex<Option<(KeyId, std::time::Instant)>>,
}

/// How long a created key may take to appear in the watch before the
/// manager may create another.
const PENDING_FOR: Duration = Duration::from_secs(60);

impl KeyManager {
    /// Creates a new key Secret, newest in the ring, and returns its id.
    /// The private key is sent through the wiping write path.
    pub async fn create_key(&self, state: &KeyState, reason: &str) -> anyhow::Result<KeyId> {
        let key = SecretKey::generate_kind(self.key_kind);
        let id = key.id();
        let sequence = state.next_sequence();
        let mut secret = coffer_core::ring::key_secret(
            &key,
            Some(Timestamp::now()),
            KeyStatus::Usable,
            Some(sequence),
        );
        if let Some(kek) = &self.kek {
            // Wrapped before anything is sent: the plain key never reaches
            // the API server. A KMS outage only postpones the new key.
            match kek.wrap(&key).await {
                Ok(wrapped) => coffer_core::ring::wrap_key_secret(
                    &mut secret,
                    &kek.reference().to_string(),
                    wrapped,
                ),
                Err(e) => {
                    wipe::secret(&mut secret);
                    anyhow::bail!("a new key ({reason}) could not be wrapped: {e}");
                }
            }
        }
        let result =
            crate::client::gateway::create_secret(&self.client, &self.namespace, &secret).await;
        wipe::secret(&mut secret);
        result?;
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((id, std::time::Instant::now()));
        tracing::info!(key_id = %id, kind = %self.key_kind, sequence, reason, "created a new sealing key");
        Ok(id)
    }

    /// Whether a key this manager created is not in the ring yet (and not
    /// overdue): then no other key is created.
    fn waiting_for_created_key(&self, state: &KeyState) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match *pending {
            Some((id, at))
                if at.elapsed() < PENDING_FOR && !state.keys.iter().any(|k| k.id == id) =>
            {
                true
            }
            _ => {
                *pending = None;
                false
            }
        }
    }

    /// Publishes the active key's recipients file when it differs.
    async fn publish_recipients(&self, state: &KeyState) -> anyhow::Result<()> {
        let Some(file) = state.recipients_file(self.cluster_name.as_deref()) else {
            return Ok(());
        };
        let text = file.render();
        if let Some(cm) = self.configmaps.get_opt(RECIPIENTS_CONFIGMAP).await?
            && cm.data.as_ref().and_then(|d| d.get(RECIPIENTS_KEY)) == Some(&text)
        {
            return Ok(());
        }
        let cm = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": RECIPIENTS_CONFIGMAP,
                "labels": {"app.kubernetes.io/name": "coffer", "app.kubernetes.io/component": "recipients"},
            },
            "data": { RECIPIENTS_KEY: text },
        });
        self.configmaps
            .patch(
                RECIPIENTS_CONFIGMAP,
                &PatchParams::apply("coffer-controller").force(),
                &Patch::Apply(cm),
            )
            .await?;
        tracing::info!(key_id = %state.active().map(|k| k.id.to_string()).unwrap_or_default(), "published recipients file");
        Ok(())
    }

    /// Keeps the ring healthy: a first key, renewal on schedule, the
    /// recipients ConfigMap up to date. Runs until cancelled.
    pub async fn run(&self) -> anyhow::Result<()> {
        let mut changes = self.keys.subscribe();
        loop {
            let state = self.keys.current();
            let mut wait = Duration::from_secs(300);
            if state.synced {
                match self.tick(&state).await {
                    Ok(Some(next)) => wait = next,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "key management step failed; retrying");
                        wait = Duration::from_secs(5);
                    }
                }
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One step; returns how long until the next renewal is due.
    async fn tick(&self, state: &KeyState) -> anyhow::Result<Option<Duration>> {
        if self.waiting_for_created_key(state) {
            return Ok(Some(Duration::from_secs(2)));
        }
        if let Some(u) = state.unavailable.first() {
            // Part of the ring is unknown: a new key could take a sequence a
            // hidden key holds, and "no usable key" may be false. The
            // recipients file stays as published.
            tracing::warn!(
                unavailable = state.unavailable.len(),
                "no key is created or renewed while key {} (Secret {}) cannot be unwrapped",
                u.id,
                u.secret
            );
            return Ok(Some(Duration::from_secs(30)));
        }
        let Some(active) = state.active() else {
            let reason = if state.keys.is_empty() {
                "first start"
            } else {
                "no usable key (every key is retired or open-only)"
            };
            self.create_key(state, reason).await?;
            // The watch will deliver the new key and wake the loop.
            return Ok(Some(Duration::from_secs(10)));
        };
        self.publish_recipients(state).await?;
        if state.rotation_pending() {
            self.create_key(state, "rotation requested").await?;
            return Ok(Some(Duration::from_secs(10)));
        }
        if self.renewal_period.is_zero() {
            return Ok(None);
        }
        // Counted from when the API server created the key Secret (or an
        // admin activated it): a clock value written into the Secret can
        // neither postpone nor stop renewal.
        let due = active.sealing_since + jiff::SignedDuration::try_from(self.renewal_period)?;
        let now = Timestamp::now();
        if now >= due {
            self.create_key(state, "renewal period elapsed").await?;
            return Ok(Some(Duration::from_secs(10)));
        }
        let left = due.duration_since(now).unsigned_abs();
        Ok(Some(left.min(Duration::from_secs(300))))
    }
}
