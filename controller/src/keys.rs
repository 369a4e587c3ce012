//! The key ring in the cluster: sealing keys are Secrets of type
//! `coffer.dev/sealing-key` in the controller's namespace, labelled with
//! their key id. This module watches them, creates the first key, renews the
//! active key on schedule and publishes its recipients file.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use coffer_core::recipients::{RecipientEntry, RecipientsFile};
use coffer_core::{KeyId, Keyring, PublicKey, SecretKey};
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use tokio::sync::watch;
use zeroize::Zeroize;

pub use coffer_core::api::ring::{
    CREATED_ANNOTATION, IDENTITY_KEY, KEY_ID_LABEL, KEY_SECRET_TYPE, KEY_STATE_LABEL,
    RECIPIENTS_CONFIGMAP, RECIPIENTS_KEY, ROTATION_ANNOTATION,
};

/// One key as the controller sees it.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    pub id: KeyId,
    pub public: PublicKey,
    pub created: Timestamp,
    pub retired: bool,
    pub secret_name: String,
    /// Whether a key admin asked for a new key to replace this one.
    pub rotation_requested: bool,
}

/// A consistent view of the ring at one moment.
#[derive(Clone, Debug, Default)]
pub struct KeyState {
    pub ring: Keyring,
    /// Every key, newest first.
    pub keys: Vec<KeyInfo>,
    /// Whether the first full list of key Secrets has been read.
    pub synced: bool,
    /// Grows whenever a key that was usable stops being usable (retired or
    /// deleted). Adding a key leaves it: whatever opened still opens, so an
    /// outcome remembered under the same epoch still holds.
    pub epoch: u64,
}

impl KeyState {
    /// The newest usable key: new seals use it.
    pub fn active(&self) -> Option<&KeyInfo> {
        self.keys.iter().find(|k| !k.retired)
    }

    /// The recipients file of the active key.
    pub fn recipients_file(&self, cluster: Option<&str>) -> Option<RecipientsFile> {
        let a = self.active()?;
        Some(RecipientsFile {
            entries: vec![RecipientEntry {
                key: a.public.clone(),
                cluster: cluster.map(str::to_string),
                created: Some(a.created),
            }],
        })
    }

    fn fingerprint(&self) -> Vec<(KeyId, bool, bool)> {
        self.keys
            .iter()
            .map(|k| (k.id, k.retired, k.rotation_requested))
            .collect()
    }

    /// Whether a key admin asked to replace the active key.
    pub fn rotation_pending(&self) -> bool {
        self.active().is_some_and(|a| a.rotation_requested)
    }
}

/// Shared, watchable key state.
pub struct Keys {
    state: RwLock<Arc<KeyState>>,
    changed: watch::Sender<u64>,
}

impl Keys {
    pub fn new() -> Arc<Self> {
        Arc::new(Keys {
            state: RwLock::new(Arc::new(KeyState::default())),
            changed: watch::channel(0).0,
        })
    }

    /// The current state.
    pub fn current(&self) -> Arc<KeyState> {
        self.state.read().expect("key state lock").clone()
    }

    /// A receiver notified whenever the set of keys or their states change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn publish(&self, mut new: KeyState) {
        let mut guard = self.state.write().expect("key state lock");
        let differs = guard.fingerprint() != new.fingerprint() || guard.synced != new.synced;
        let still_usable = new.ring.usable_ids();
        let lost_a_key = guard
            .ring
            .usable_ids()
            .iter()
            .any(|id| !still_usable.contains(id));
        new.epoch = guard.epoch + u64::from(lost_a_key);
        *guard = Arc::new(new);
        drop(guard);
        if differs {
            self.changed.send_modify(|n| *n += 1);
        }
    }
}

/// Reads one key Secret. Never logs or returns the identity.
fn parse_key_secret(secret: &Secret) -> Result<(SecretKey, KeyInfo), String> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    if secret.type_.as_deref() != Some(KEY_SECRET_TYPE) {
        return Err(format!(
            "key Secret {name} is not of type {KEY_SECRET_TYPE}"
        ));
    }
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(IDENTITY_KEY))
        .ok_or_else(|| format!("key Secret {name} has no data.{IDENTITY_KEY}"))?;
    let text = std::str::from_utf8(&data.0)
        .map_err(|_| format!("key Secret {name}: data.{IDENTITY_KEY} is not text"))?;
    let key = SecretKey::parse(text).map_err(|_| {
        format!("key Secret {name}: data.{IDENTITY_KEY} is not an age X25519 identity")
    })?;
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    if let Some(label) = labels.get(KEY_ID_LABEL)
        && label != &key.id().to_string()
    {
        return Err(format!(
            "key Secret {name} is labelled {KEY_ID_LABEL}={label} but holds key {}",
            key.id()
        ));
    }
    let created = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CREATED_ANNOTATION))
        .and_then(|t| t.parse::<Timestamp>().ok())
        .or_else(|| secret.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let retired = labels.get(KEY_STATE_LABEL).map(String::as_str) == Some("retired");
    let rotation_requested = secret
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ROTATION_ANNOTATION));
    let info = KeyInfo {
        id: key.id(),
        public: key.public().clone(),
        created,
        retired,
        secret_name: name,
        rotation_requested,
    };
    Ok((key, info))
}

fn build_state(keys: &HashMap<String, (SecretKey, KeyInfo)>, synced: bool) -> KeyState {
    let mut ring = Keyring::new();
    let mut infos: Vec<KeyInfo> = Vec::new();
    for (key, info) in keys.values() {
        // The same key may exist twice (a restore beside the original): a
        // single usable copy keeps it usable.
        if let Some(existing) = infos.iter_mut().find(|i| i.id == info.id) {
            if existing.retired && !info.retired {
                *existing = info.clone();
                ring.insert(key.clone(), false);
            }
            continue;
        }
        ring.insert(key.clone(), info.retired);
        infos.push(info.clone());
    }
    infos.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    KeyState {
        ring,
        keys: infos,
        synced,
        epoch: 0,
    }
}

fn wipe(secret: &mut Secret) {
    for v in secret.data.iter_mut().flat_map(|d| d.values_mut()) {
        v.0.zeroize();
    }
}

/// Watches the key Secrets and keeps `keys` up to date. Runs until the
/// watch stream ends (it retries with backoff on API errors).
pub async fn watch_keys(api: Api<Secret>, keys: Arc<Keys>) -> anyhow::Result<()> {
    use kube::runtime::WatchStreamExt;
    let cfg = crate::run::watch_config().labels(KEY_ID_LABEL);
    let mut stream = watcher(api, cfg)
        .backoff(crate::run::ShortBackoff::default())
        .boxed();
    let mut current: HashMap<String, (SecretKey, KeyInfo)> = HashMap::new();
    let mut init: HashMap<String, (SecretKey, KeyInfo)> = HashMap::new();
    let mut synced = false;
    let apply = |map: &mut HashMap<String, (SecretKey, KeyInfo)>, mut s: Secret| {
        let name = s.metadata.name.clone().unwrap_or_default();
        match parse_key_secret(&s) {
            Ok(parsed) => {
                map.insert(name, parsed);
            }
            Err(why) => {
                map.remove(&name);
                tracing::warn!(secret = %name, "ignoring key Secret: {why}");
            }
        }
        wipe(&mut s);
    };
    while let Some(event) = stream.try_next().await? {
        match event {
            watcher::Event::Init => init.clear(),
            watcher::Event::InitApply(s) => apply(&mut init, s),
            watcher::Event::InitDone => {
                current = std::mem::take(&mut init);
                synced = true;
                keys.publish(build_state(&current, synced));
            }
            watcher::Event::Apply(s) => {
                apply(&mut current, s);
                keys.publish(build_state(&current, synced));
            }
            watcher::Event::Delete(mut s) => {
                current.remove(&s.metadata.name.clone().unwrap_or_default());
                wipe(&mut s);
                keys.publish(build_state(&current, synced));
            }
        }
    }
    Ok(())
}

/// What the key manager needs.
pub struct KeyManager {
    pub secrets: Api<Secret>,
    pub configmaps: Api<ConfigMap>,
    pub keys: Arc<Keys>,
    /// Zero turns automatic renewal off.
    pub renewal_period: Duration,
    pub cluster_name: Option<String>,
}

impl KeyManager {
    /// Creates a new key Secret and returns its id.
    pub async fn create_key(&self, reason: &str) -> anyhow::Result<KeyId> {
        let key = SecretKey::generate();
        let id = key.id();
        let created = Timestamp::now();
        let mut secret = coffer_core::api::key_secret(&key, Some(created), false);
        let result = self.secrets.create(&PostParams::default(), &secret).await;
        wipe(&mut secret);
        result?;
        tracing::info!(key_id = %id, reason, "created a new sealing key");
        Ok(id)
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
        let Some(active) = state.active() else {
            let reason = if state.keys.is_empty() {
                "first start"
            } else {
                "every key is retired"
            };
            self.create_key(reason).await?;
            // The watch will deliver the new key and wake the loop.
            return Ok(Some(Duration::from_secs(10)));
        };
        self.publish_recipients(state).await?;
        if state.rotation_pending() {
            self.create_key("rotation requested").await?;
            return Ok(Some(Duration::from_secs(10)));
        }
        if self.renewal_period.is_zero() {
            return Ok(None);
        }
        let due = active.created + jiff::SignedDuration::try_from(self.renewal_period)?;
        let now = Timestamp::now();
        if now >= due {
            self.create_key("renewal period elapsed").await?;
            return Ok(Some(Duration::from_secs(10)));
        }
        let left = due.duration_since(now).unsigned_abs();
        Ok(Some(left.min(Duration::from_secs(300))))
    }
}

/// Waits until the first full list of key Secrets has been read and at
/// least one usable key exists.
pub async fn wait_ready(keys: &Keys) {
    let mut rx = keys.subscribe();
    loop {
        let s = keys.current();
        if s.synced && s.active().is_some() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A stream that yields once per key-ring change (to re-reconcile every
/// SealedSecret: a new or restored key may open values that failed).
pub fn changes(keys: &Keys) -> impl futures::Stream<Item = ()> + Send + 'static {
    let rx = keys.subscribe();
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
}
