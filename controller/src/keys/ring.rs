//! The key ring in the cluster: sealing keys are Secrets of type
//! `coffer.dev/sealing-key` in the controller's namespace, labelled with
//! their key id. This module holds the ring as the controller sees it (its
//! state, published to every reader at once); the manager module keeps it
//! in those Secrets.

use std::sync::{Arc, RwLock};

use coffer_format::recipients::{RecipientEntry, RecipientsFile};
use coffer_format::{KeyId, Keyring, PublicKey, SecretKey};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use tokio::sync::watch;

pub use coffer_core::ring::{
    ACTIVATED_BY_ANNOTATION, IDENTITY_KEY, KEY_ID_LABEL, KEY_SECRET_TYPE, RECIPIENTS_CONFIGMAP,
    RECIPIENTS_KEY,
};
use coffer_core::ring::{KeyStatus, RingKey};

use crate::keys::attest::AttestKeys;
use crate::state::objects::OwnedSecret;

/// One key as the controller sees it.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    pub id: KeyId,
    pub public: PublicKey,
    pub status: KeyStatus,
    /// Place in the ring (the controller's counter).
    pub sequence: u64,
    /// When the API server created the key Secret.
    pub created: Option<Timestamp>,
    /// Since when the key seals (server creation time, or activation).
    pub sealing_since: Timestamp,
    pub secret_name: String,
    /// Whether a key admin asked for a new key to replace this one.
    pub rotation_requested: bool,
    /// Who activated it, when an admin did (for the log).
    pub activated_by: Option<String>,
}

impl KeyInfo {
    pub(crate) fn new(k: &RingKey, secret: &Secret) -> Self {
        KeyInfo {
            id: k.id(),
            public: k.public.clone(),
            status: k.status,
            sequence: k.sequence,
            created: k.created,
            sealing_since: k.sealing_since(),
            secret_name: k.secret_name.clone(),
            rotation_requested: k.rotation_requested,
            activated_by: secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ACTIVATED_BY_ANNOTATION))
                .cloned(),
        }
    }
}

/// A consistent view of the ring at one moment.
#[derive(Clone, Debug, Default)]
pub struct KeyState {
    pub ring: Keyring,
    /// Every key, newest (highest sequence) first.
    pub keys: Vec<KeyInfo>,
    /// Whether the first full list of key Secrets has been read.
    pub synced: bool,
    /// Grows whenever a key that was usable stops being usable (retired or
    /// deleted). Adding a key leaves it: whatever opened still opens, so an
    /// outcome remembered under the same epoch still holds.
    pub epoch: u64,
    /// The MAC keys of the ring's usable keys (crate::keys::attest).
    pub attest: AttestKeys,
    /// Key Secrets whose wrapped key could not be unwrapped (docs/kms.md):
    /// left out of the ring until they are. While any is, the manager
    /// creates and renews no key: it cannot see the whole ring.
    pub unavailable: Vec<Unavailable>,
}

/// A key the ring holds but cannot use: its KEK did not unwrap it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// The key Secret.
    pub secret: String,
    pub id: KeyId,
    /// What the KEK answered (names the key and the KEK, never a key).
    pub why: String,
}

impl KeyState {
    /// Verifies the claim `secret` was read with, if any, into its
    /// `attested`, against the SealedSecret it names as its owner (its
    /// controller, or the one that keeps it). Nothing is trusted before
    /// the ring is loaded.
    pub fn settle(&self, secret: &mut OwnedSecret) {
        if let Some(claim) = secret.claim.take() {
            let owner = secret
                .controller_uid
                .as_deref()
                .or(secret.kept_for.as_deref());
            secret.attested = owner
                .filter(|_| self.synced)
                .and_then(|uid| crate::keys::attest::verify(&claim, uid, &self.attest, self.epoch));
        }
    }

    /// The usable key with the highest sequence: new seals use it.
    /// Open-only keys (restored from a backup) never seal.
    pub fn active(&self) -> Option<&KeyInfo> {
        self.keys.iter().find(|k| k.status == KeyStatus::Usable)
    }

    /// The sequence the next key gets: one more than any key in the ring,
    /// so it is the newest whatever the others claim.
    pub fn next_sequence(&self) -> u64 {
        self.keys
            .iter()
            .map(|k| k.sequence)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }

    /// The recipients file of the active key.
    pub fn recipients_file(&self, cluster: Option<&str>) -> Option<RecipientsFile> {
        let a = self.active()?;
        Some(RecipientsFile {
            entries: vec![RecipientEntry {
                key: a.public.clone(),
                cluster: cluster.map(str::to_string),
                created: Some(a.sealing_since),
            }],
        })
    }

    fn fingerprint(&self) -> Vec<(KeyId, KeyStatus, u64, bool)> {
        self.keys
            .iter()
            .map(|k| (k.id, k.status, k.sequence, k.rotation_requested))
            .collect()
    }

    /// Whether a key admin asked to replace the active key. Done once a
    /// key with a higher sequence is active: the request then sits on a
    /// key that is no longer active.
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

    pub(crate) fn publish(&self, mut new: KeyState) {
        let mut guard = self.state.write().expect("key state lock");
        let differs = guard.fingerprint() != new.fingerprint()
            || guard.synced != new.synced
            || guard.unavailable != new.unavailable;
        let still_usable = new.ring.usable_ids();
        let lost_a_key = guard
            .ring
            .usable_ids()
            .iter()
            .any(|id| !still_usable.contains(id));
        new.epoch = guard.epoch + u64::from(lost_a_key);
        let (was, now) = (guard.active().map(|k| k.id), new.active().map(|k| k.id));
        if new.synced && was != now {
            // Which key seals is the ring's most sensitive fact: say every
            // change, and who activated the key when an admin did.
            let active = new.active();
            tracing::warn!(
                key_id = %now.map(|k| k.to_string()).unwrap_or_default(),
                previous = %was.map(|k| k.to_string()).unwrap_or_default(),
                sequence = active.map(|k| k.sequence).unwrap_or_default(),
                activated_by = %active.and_then(|k| k.activated_by.clone()).unwrap_or_default(),
                "the active sealing key changed"
            );
        }
        *guard = Arc::new(new);
        drop(guard);
        if differs {
            self.changed.send_modify(|n| *n += 1);
        }
    }
}

pub(crate) fn build_state(
    keys: &std::collections::BTreeMap<String, (SecretKey, KeyInfo)>,
    synced: bool,
) -> KeyState {
    let mut ring = Keyring::new();
    let mut infos: Vec<KeyInfo> = Vec::new();
    for (key, info) in keys.values() {
        // The same key may exist twice (a restore beside the original): the
        // copy that may do most decides (usable, then open-only, then
        // retired).
        let rank = |s: KeyStatus| match s {
            KeyStatus::Usable => 0,
            KeyStatus::OpenOnly => 1,
            KeyStatus::Retired => 2,
        };
        if let Some(existing) = infos.iter_mut().find(|i| i.id == info.id) {
            if rank(info.status) < rank(existing.status) {
                *existing = info.clone();
                ring.insert(key.clone(), info.status == KeyStatus::Retired);
            }
            continue;
        }
        ring.insert(key.clone(), info.status == KeyStatus::Retired);
        infos.push(info.clone());
    }
    // The order of `coffer_core::ring::RingKey::newest_first`, which the
    // CLI uses too.
    infos.sort_by_key(|k| std::cmp::Reverse((k.sequence, k.created, k.id)));
    KeyState {
        attest: AttestKeys::of(&ring),
        ring,
        keys: infos,
        synced,
        epoch: 0,
        unavailable: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn secret() -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("app".into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "coffer.dev/v1alpha1".into(),
                    kind: "SealedSecret".into(),
                    name: "db".into(),
                    uid: "u1".into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..Default::default()
            },
            data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
            ..Default::default()
        }
    }

    /// The watch verifies a Secret's annotation against the owner the
    /// Secret names, once the ring is loaded, and keeps only the verdict.
    #[test]
    fn an_owned_secret_settles_its_claim_against_its_own_owner() {
        use crate::keys::attest::{AttestKeys, stamp};
        let key = coffer_format::SecretKey::generate();
        let ring = coffer_format::Keyring::from_keys([key.clone()]);
        let keys = KeyState {
            attest: AttestKeys::of(&ring),
            ring,
            synced: true,
            epoch: 5,
            ..Default::default()
        };
        let stamped = |uid: &str| {
            let mut s = secret();
            stamp(&mut s, uid, 2, 1, &[key.id()], &keys.attest);
            OwnedSecret::from(s)
        };
        let mut o = stamped("u1");
        assert!(o.claim.is_some());
        keys.settle(&mut o);
        assert!(o.claim.is_none());
        assert_eq!(
            o.attested.map(|a| (a.generation, a.key_epoch)),
            Some((2, 5))
        );
        // Stamped for another SealedSecret than its owner reference names.
        let mut o = stamped("u2");
        keys.settle(&mut o);
        assert_eq!(o.attested, None);
        // Before the ring is loaded nothing is trusted.
        let mut o = stamped("u1");
        KeyState {
            synced: false,
            ..keys.clone()
        }
        .settle(&mut o);
        assert_eq!(o.attested, None);
        // The salted digest covers the annotation: another one is a write.
        assert_ne!(
            stamped("u1").digest,
            crate::state::objects::secret_digest(&secret())
        );
    }
}
