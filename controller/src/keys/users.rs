//! Which live SealedSecrets still need each key of the ring, so that a key
//! is not retired from under them (`GET /v1/keys/ID/users`,
//! `coffer_key_sealed_secrets`, `coffer keys retire`).
//!
//! A SealedSecret needs key K when its current generation was unsealed and
//! some value opened with K alone: its header names no other key of the
//! ring that was usable then. A value sealed to several keys of the ring
//! (re-encrypted to a new key and still to an old one, or sealed to two
//! keys) needs neither while the other is usable; once one is retired the
//! key epoch grows, every object is opened again, and the other becomes
//! needed. See docs/decisions.md, "Which SealedSecrets need a key".
//!
//! What the controller does not know is said, not guessed: a SealedSecret
//! whose current generation it has not unsealed (or refused) under the
//! current key epoch is *pending*, and may need any key.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use coffer_format::KeyId;

/// An object's `namespace/name`, as the store keys it (`store::Key`;
/// named here without importing the store, which imports this module).
type Key = std::sync::Arc<str>;

/// A set of key ids, interned for the process: what one unseal needs costs
/// 4 bytes in each remembered outcome, however many keys it names. The
/// sets are subsets of the keys the ring held (a value naming no key of
/// the ring does not open), so the table stays small: keys are few.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeySet(u32);

#[derive(Default)]
struct Interner {
    sets: Vec<Arc<[KeyId]>>,
    index: HashMap<Arc<[KeyId]>, u32>,
}

static SETS: LazyLock<Mutex<Interner>> = LazyLock::new(|| {
    let empty: Arc<[KeyId]> = Arc::from(Vec::new());
    Mutex::new(Interner {
        sets: vec![empty.clone()],
        index: [(empty, 0)].into(),
    })
});

impl KeySet {
    /// The empty set: needs no key.
    pub const EMPTY: KeySet = KeySet(0);

    /// The set of `ids` (in any order, repeats ignored).
    pub fn of(ids: &[KeyId]) -> KeySet {
        if ids.is_empty() {
            return KeySet::EMPTY;
        }
        let mut sorted = ids.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut t = SETS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&i) = t.index.get(&sorted[..]) {
            return KeySet(i);
        }
        let i = u32::try_from(t.sets.len()).expect("fewer than 2^32 sets of keys");
        let set: Arc<[KeyId]> = Arc::from(sorted);
        t.sets.push(set.clone());
        t.index.insert(set, i);
        KeySet(i)
    }

    /// Its ids, sorted.
    pub fn ids(self) -> Arc<[KeyId]> {
        let t = SETS.lock().unwrap_or_else(|e| e.into_inner());
        t.sets
            .get(self.0 as usize)
            .cloned()
            .unwrap_or_else(|| t.sets[0].clone())
    }

    pub fn is_empty(self) -> bool {
        self == KeySet::EMPTY
    }
}

/// What the controller knows of one live SealedSecret's use of keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Its current generation was unsealed; without these keys it would not
    /// open (empty: any one usable key of several would do).
    Needs(KeySet),
    /// Its current generation was refused: it does not open now, whatever
    /// is retired.
    Refused,
    /// Not yet unsealed or refused at its current generation (or since a
    /// key was lost): it may need any key.
    Pending,
}

/// Most object names one answer lists.
pub const LISTED: usize = 10;

/// The SealedSecrets that need one key, and those that might.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users {
    /// How many need it.
    pub count: usize,
    /// The first [`LISTED`] of them, `namespace/name`, sorted.
    pub objects: Vec<Key>,
    /// How many are pending.
    pub pending: usize,
    /// The first [`LISTED`] pending ones, sorted.
    pub pending_objects: Vec<Key>,
}

/// The first `n` of `keys`, sorted, without sorting them all.
fn first_sorted(mut keys: Vec<Key>, n: usize) -> Vec<Key> {
    if keys.len() > n {
        keys.select_nth_unstable(n);
        keys.truncate(n);
    }
    keys.sort_unstable();
    keys
}

/// Counts who needs one key, object by object.
pub struct Tally {
    id: KeyId,
    /// Whether each set seen holds `id`: one lookup per distinct set
    /// rather than per object.
    sets: HashMap<KeySet, bool>,
    users: Vec<Key>,
    pending: Vec<Key>,
}

impl Tally {
    pub fn new(id: KeyId) -> Self {
        Tally {
            id,
            sets: HashMap::new(),
            users: Vec::new(),
            pending: Vec::new(),
        }
    }

    pub fn add(&mut self, key: &Key, u: Use) {
        match u {
            Use::Needs(set) => {
                let id = self.id;
                let hit = *self
                    .sets
                    .entry(set)
                    .or_insert_with(|| set.ids().contains(&id));
                if hit {
                    self.users.push(key.clone());
                }
            }
            Use::Pending => self.pending.push(key.clone()),
            Use::Refused => {}
        }
    }

    pub fn finish(self) -> Users {
        Users {
            count: self.users.len(),
            objects: first_sorted(self.users, LISTED),
            pending: self.pending.len(),
            pending_objects: first_sorted(self.pending, LISTED),
        }
    }
}

/// Who needs key `id`, of the live SealedSecrets `uses` describes.
#[cfg(test)]
pub fn users_of<'a>(id: KeyId, uses: impl IntoIterator<Item = (&'a Key, Use)>) -> Users {
    let mut t = Tally::new(id);
    for (key, u) in uses {
        t.add(key, u);
    }
    t.finish()
}

/// How many SealedSecrets need each key, for `coffer_key_sealed_secrets`.
pub fn counts(sets: impl IntoIterator<Item = KeySet>) -> BTreeMap<KeyId, usize> {
    let mut by_set: HashMap<KeySet, usize> = HashMap::new();
    for set in sets {
        *by_set.entry(set).or_default() += 1;
    }
    let mut out = BTreeMap::new();
    for (set, n) in by_set {
        for id in set.ids().iter() {
            *out.entry(*id).or_default() += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_format::SecretKey;

    fn k(s: &str) -> Key {
        s.into()
    }

    #[test]
    fn sets_are_interned_whatever_the_order() {
        let (a, b) = (SecretKey::generate().id(), SecretKey::generate().id());
        assert_eq!(KeySet::of(&[a, b]), KeySet::of(&[b, a, b]));
        assert_ne!(KeySet::of(&[a]), KeySet::of(&[a, b]));
        assert!(KeySet::of(&[]).is_empty());
        let mut both = [a, b];
        both.sort();
        assert_eq!(&*KeySet::of(&[b, a]).ids(), &both[..]);
    }

    /// What an unseal says a SealedSecret needs: a value sealed to one key
    /// of the ring needs it; a value sealed to two usable keys needs
    /// neither (either opens it); with one of them retired, the other is
    /// needed.
    #[test]
    fn a_value_needs_a_key_only_when_no_other_usable_key_opens_it() {
        use coffer_core::transform::{SealedItem, SealedView, unseal};
        use coffer_format::{Keyring, Location, Scope, seal};
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let at = |key| Location {
            namespace: "shop",
            name: "db",
            key,
        };
        let only_old = seal(b"v", Scope::Strict, at("a"), &[old.public().clone()]).unwrap();
        let both = seal(
            b"v",
            Scope::Strict,
            at("b"),
            &[old.public().clone(), new.public().clone()],
        )
        .unwrap();
        let needs = |items: Vec<(&'static str, &str)>, ring: &Keyring| {
            let view = SealedView {
                namespace: "shop",
                name: "db",
                items: items
                    .into_iter()
                    .map(|(k, v)| (k, SealedItem::Base64(v)))
                    .collect(),
                type_: None,
                immutable: None,
                labels: vec![],
                annotations: vec![],
                template_data: vec![],
            };
            unseal(&view, ring)
                .map(|d| d.needs)
                .map_err(|e| e.reason().as_str())
        };
        let ring = Keyring::from_keys([old.clone(), new.clone()]);
        assert_eq!(needs(vec![("b", &both)], &ring), Ok(vec![]));
        assert_eq!(
            needs(vec![("a", &only_old), ("b", &both)], &ring),
            Ok(vec![old.id()])
        );
        let mut retired = Keyring::from_keys([new.clone()]);
        retired.insert(old.clone(), true);
        assert_eq!(needs(vec![("b", &both)], &retired), Ok(vec![new.id()]));
        assert_eq!(needs(vec![("a", &only_old)], &retired), Err("KeyRetired"));
    }

    /// The counting: an object counts for a key only when its current
    /// generation needs that key; one that needs no key in particular (a
    /// value any of several usable keys opens) or was refused counts for
    /// none; pending ones are counted apart; names are listed sorted, at
    /// most ten.
    #[test]
    fn users_of_a_key_are_those_that_need_it_and_pending_ones_are_apart() {
        let (old, new) = (SecretKey::generate().id(), SecretKey::generate().id());
        let mut objects: Vec<(Key, Use)> = vec![
            (k("shop/db"), Use::Needs(KeySet::of(&[old]))),
            (k("shop/api"), Use::Needs(KeySet::of(&[new]))),
            (k("shop/both"), Use::Needs(KeySet::of(&[old, new]))),
            // Sealed to old and new: either opens it, so neither is needed.
            (k("shop/either"), Use::Needs(KeySet::EMPTY)),
            (k("shop/broken"), Use::Refused),
            (k("shop/new-generation"), Use::Pending),
        ];
        for i in (0..12).rev() {
            objects.push((k(&format!("bulk/s{i:02}")), Use::Needs(KeySet::of(&[old]))));
        }
        let users = users_of(old, objects.iter().map(|(k, u)| (k, *u)));
        assert_eq!(users.count, 14);
        let listed: Vec<&str> = users.objects.iter().map(|k| &**k).collect();
        assert_eq!(
            listed,
            [
                "bulk/s00", "bulk/s01", "bulk/s02", "bulk/s03", "bulk/s04", "bulk/s05", "bulk/s06",
                "bulk/s07", "bulk/s08", "bulk/s09"
            ]
        );
        assert_eq!(users.pending, 1);
        assert_eq!(users.pending_objects, vec![k("shop/new-generation")]);

        let users = users_of(new, objects.iter().map(|(k, u)| (k, *u)));
        assert_eq!(users.count, 2);
        assert_eq!(users.objects, vec![k("shop/api"), k("shop/both")]);

        let other = SecretKey::generate().id();
        let users = users_of(other, objects.iter().map(|(k, u)| (k, *u)));
        assert_eq!((users.count, users.objects.len()), (0, 0));

        let c = counts(objects.iter().filter_map(|(_, u)| match u {
            Use::Needs(s) => Some(*s),
            _ => None,
        }));
        assert_eq!(c[&old], 14);
        assert_eq!(c[&new], 2);
        assert_eq!(c.len(), 2);
    }
}
