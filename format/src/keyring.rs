//! A set of private keys indexed by key id, as the controller (or a
//! disaster-recovery run) holds them.

use std::collections::HashMap;

use crate::key::{KeyId, SecretKey};

/// Private keys by id. Retired keys are remembered so that a value sealed to
/// one is refused with that reason rather than "unknown key".
#[derive(Default, Clone, Debug)]
pub struct Keyring {
    usable: HashMap<KeyId, SecretKey>,
    retired: HashMap<KeyId, SecretKey>,
}

impl Keyring {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// A ring of usable keys.
    pub fn from_keys(keys: impl IntoIterator<Item = SecretKey>) -> Self {
        let mut ring = Self::new();
        for k in keys {
            ring.insert(k, false);
        }
        ring
    }

    /// Adds a key, usable or retired.
    pub fn insert(&mut self, key: SecretKey, retired: bool) {
        let id = key.id();
        if retired {
            self.usable.remove(&id);
            self.retired.insert(id, key);
        } else {
            self.retired.remove(&id);
            self.usable.insert(id, key);
        }
    }

    /// The usable key with this id.
    pub fn usable(&self, id: KeyId) -> Option<&SecretKey> {
        self.usable.get(&id)
    }

    /// Whether this id names a retired key.
    pub fn is_retired(&self, id: KeyId) -> bool {
        self.retired.contains_key(&id)
    }

    /// Ids of the usable keys, sorted.
    pub fn usable_ids(&self) -> Vec<KeyId> {
        let mut ids: Vec<_> = self.usable.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.usable.len()
    }

    /// Whether no key is usable.
    pub fn is_empty(&self) -> bool {
        self.usable.is_empty()
    }
}
