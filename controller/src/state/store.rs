//! What the controller keeps in memory between reconciles, one compact
//! record per object, so that 100,000 SealedSecrets fit in the chart's
//! memory limit (see `docs/decisions.md`, "A digest-only cache").
//!
//! For each `namespace/name` the store keeps, in one map entry:
//! - of the SealedSecret: uid, resourceVersion, generation, whether it is
//!   being deleted, and a summary of its status (no ciphertext at all);
//! - of the Secret of that name, when it carries the owned label: a salted
//!   digest of everything the controller writes, and what a write needs
//!   (uid, resourceVersion, type, immutability);
//! - the outcome of the last reconcile (the last successful unseal, or the
//!   last refusal).
//!
//! Reconciling an object whose last unseal still holds needs nothing else.
//! Otherwise the SealedSecret itself is needed: from [`Fresh`], the copies
//! that watch events brought and no reconcile has used yet (bounded), else
//! one GET served from the API server's watch cache.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use sha2::{Digest, Sha256};

use crate::keys::attest::Attested;
use crate::keys::users::Use;
use crate::state::objects::{CachedSealed, MergeTarget, Outcome, OwnedSecret, Refusal};

/// The `reason` of a SealedSecret the controller has not yet acted on at
/// its current generation.
pub const PENDING: &str = "Pending";

/// Ciphertext bytes of fresh copies kept at most (about 2,900 objects of 3
/// values).
pub const FRESH_CAP: usize = 8 << 20;

/// `namespace/name`: neither may hold a `/`.
pub type Key = Arc<str>;

/// The key of `ns/name`.
pub fn key(ns: &str, name: &str) -> Key {
    format!("{ns}/{name}").into()
}

/// The namespace and name of a key.
pub fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// A uid or resourceVersion, held as bytes when it has the usual form (a
/// UUID; a decimal number) and as text otherwise; it prints back to exactly
/// the text it was made from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Token {
    Uuid([u8; 16]),
    Number(u64),
    Text(Box<str>),
}

impl Token {
    pub fn new(s: &str) -> Self {
        if let Ok(n) = s.parse::<u64>()
            && n.to_string() == s
        {
            return Token::Number(n);
        }
        if let Some(b) = parse_uuid(s) {
            return Token::Uuid(b);
        }
        Token::Text(s.into())
    }

    pub fn of(s: Option<&str>) -> Option<Self> {
        s.map(Token::new)
    }
}

/// The 16 bytes of a lowercase 8-4-4-4-12 UUID; `None` for anything else
/// (uids come from whoever wrote the object: an owner reference's uid or
/// an annotation can hold any text).
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let dash = |i: usize| matches!(i, 8 | 13 | 18 | 23);
    if b.iter().enumerate().any(|(i, &c)| dash(i) != (c == b'-')) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let hex: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Number(n) => write!(f, "{n}"),
            Token::Text(t) => f.write_str(t),
            Token::Uuid(b) => {
                for (i, x) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{x:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// The `Ready` condition as far as writing the next status needs it:
/// whether it says the same (status, reason, a digest of the message) and
/// since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyMemo {
    pub status: Box<str>,
    pub reason: Box<str>,
    message: [u8; 16],
    pub since: Time,
}

fn message_digest(message: &str) -> [u8; 16] {
    let d = Sha256::digest(message.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

impl ReadyMemo {
    pub fn of(c: &Condition) -> Self {
        ReadyMemo {
            status: c.status.as_str().into(),
            reason: c.reason.as_str().into(),
            message: message_digest(&c.message),
            since: c.last_transition_time.clone(),
        }
    }

    /// Whether it says `status`, `reason` and `message`.
    pub fn says(&self, status: &str, reason: &str, message: &str) -> bool {
        &*self.status == status
            && &*self.reason == reason
            && self.message == message_digest(message)
    }
}

/// A SealedSecret's status as far as the controller reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusMemo {
    pub observed_generation: Option<i64>,
    pub ready: Option<ReadyMemo>,
    /// `Stalled` or `Reconciling` is `True`.
    pub stalled: bool,
    pub reconciling: bool,
}

impl StatusMemo {
    pub fn of(s: &CachedSealed) -> Self {
        StatusMemo {
            observed_generation: s.observed_generation,
            ready: s.ready.as_ref().map(ReadyMemo::of),
            stalled: s.stalled,
            reconciling: s.reconciling,
        }
    }
}

/// A SealedSecret as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedEntry {
    pub uid: Option<Token>,
    pub resource_version: Option<Token>,
    pub generation: Option<i64>,
    pub deleting: bool,
    pub status: StatusMemo,
}

impl SealedEntry {
    pub fn of(s: &CachedSealed) -> Self {
        let m = &s.metadata;
        SealedEntry {
            uid: Token::of(m.uid.as_deref()),
            resource_version: Token::of(m.resource_version.as_deref()),
            generation: m.generation,
            deleting: m.deletion_timestamp.is_some(),
            status: StatusMemo::of(s),
        }
    }

    /// The `reason` label of `coffer_sealed_secrets`.
    pub fn state_reason(&self) -> &str {
        let s = &self.status;
        let current = s.observed_generation.is_some() && s.observed_generation == self.generation;
        match &s.ready {
            Some(ready) if current => &ready.reason,
            _ => PENDING,
        }
    }
}

/// An owned Secret as the store keeps it: no values, only a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEntry {
    uid: Option<Token>,
    resource_version: Option<Token>,
    controller_uid: Option<Token>,
    type_: Option<Box<str>>,
    immutable: bool,
    adoptable: bool,
    /// What only kept and merged-into Secrets have, boxed so that the
    /// other Secrets pay one pointer for it.
    extra: Option<Box<OwnedExtra>>,
    digest: [u8; 32],
    /// Its verified [`coffer_core::api::UNSEALED_ANNOTATION`]: what a
    /// restarted controller knows of the last unseal without opening
    /// anything. Dropped once the outcome is remembered.
    attested: Option<Attested>,
}

/// [`OwnedSecret::kept_for`] and [`OwnedSecret::merge`].
#[derive(Clone, Debug, PartialEq, Eq)]
struct OwnedExtra {
    kept_for: Option<Token>,
    merge: Option<MergeTarget>,
}

impl OwnedEntry {
    pub fn of(s: &OwnedSecret) -> Self {
        OwnedEntry {
            uid: Token::of(s.metadata.uid.as_deref()),
            resource_version: Token::of(s.metadata.resource_version.as_deref()),
            controller_uid: Token::of(s.controller_uid.as_deref()),
            type_: s.type_.clone(),
            immutable: s.immutable,
            adoptable: s.adoptable,
            extra: (s.kept_for.is_some() || s.merge.is_some()).then(|| {
                Box::new(OwnedExtra {
                    kept_for: Token::of(s.kept_for.as_deref()),
                    merge: s.merge.as_deref().cloned(),
                })
            }),
            digest: s.digest,
            attested: s.attested,
        }
    }

    /// Whether its verified annotation says it holds the last unseal of
    /// the SealedSecret `sealed` at its generation, under key `epoch`.
    fn vouches_for(&self, sealed: &SealedEntry, epoch: u64) -> bool {
        let owner = self
            .controller_uid
            .as_ref()
            .or_else(|| self.extra.as_ref()?.kept_for.as_ref());
        self.attested
            .is_some_and(|a| Some(a.generation) == sealed.generation && a.key_epoch == epoch)
            && owner.is_some()
            && owner == sealed.uid.as_ref()
    }

    /// The Secret `ns/name` it stands for, as the planner reads it.
    pub fn secret(&self, ns: &str, name: &str) -> OwnedSecret {
        OwnedSecret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                uid: self.uid.as_ref().map(Token::to_string),
                resource_version: self.resource_version.as_ref().map(Token::to_string),
                ..Default::default()
            },
            controller_uid: self.controller_uid.as_ref().map(|t| t.to_string().into()),
            type_: self.type_.clone(),
            immutable: self.immutable,
            adoptable: self.adoptable,
            kept_for: self
                .extra
                .as_ref()
                .and_then(|e| e.kept_for.as_ref())
                .map(|t| t.to_string().into()),
            merge: self
                .extra
                .as_ref()
                .and_then(|e| e.merge.clone())
                .map(Box::new),
            bitnami_managed: false,
            coffer_controlled: false,
            digest: self.digest,
            claim: None,
            attested: self.attested,
        }
    }
}

/// The last reconcile of one SealedSecret, for its uid.
#[derive(Clone, Copy, Debug)]
enum Memo {
    Unsealed(Outcome),
    Refused(Refusal),
}

#[derive(Debug, Default)]
struct Slot {
    sealed: Option<SealedEntry>,
    owned: Option<OwnedEntry>,
    /// Belongs to `sealed` (same uid); dropped when another object takes
    /// the name.
    memo: Option<Memo>,
}

/// Copies of SealedSecrets (with their ciphertexts) that watch events
/// brought and no reconcile has used yet, up to [`Fresh::CAP`] bytes of
/// ciphertext: most changes are then reconciled without a GET, and memory
/// stays bounded however many arrive at once.
#[derive(Default)]
struct Fresh {
    /// Each copy, and whether the read-ahead brought it (else its watch
    /// event did).
    objects: HashMap<Key, (Arc<CachedSealed>, bool)>,
    bytes: usize,
}

impl Fresh {
    const CAP: usize = FRESH_CAP;

    fn cost(s: &CachedSealed) -> usize {
        s.sealed_bytes() + 256
    }

    fn remove(&mut self, key: &str) -> Option<(Arc<CachedSealed>, bool)> {
        let (s, ahead) = self.objects.remove(key)?;
        self.bytes -= Self::cost(&s);
        Some((s, ahead))
    }

    /// Keeps `s` if it fits; returns whether it did.
    fn offer(&mut self, key: &Key, s: Arc<CachedSealed>, ahead: bool) -> bool {
        self.remove(key);
        let cost = Self::cost(&s);
        let fits = self.bytes + cost <= Self::CAP;
        if fits {
            self.bytes += cost;
            self.objects.insert(key.clone(), (s, ahead));
        }
        fits
    }
}

#[derive(Default)]
struct Inner {
    /// Boxed: a hash table keeps slack room for its entries, and a slot is
    /// some 400 bytes while a box is 8.
    slots: HashMap<Key, Box<Slot>>,
    fresh: Fresh,
}

impl Inner {
    fn tidy(&mut self, key: &str) {
        if let Some(slot) = self.slots.get(key)
            && slot.sealed.is_none()
            && slot.owned.is_none()
        {
            self.slots.remove(key);
        }
    }
}

/// The store; see the module documentation.
#[derive(Default)]
pub struct Store(Mutex<Inner>);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sealed, owned, fresh) = self.counts();
        f.debug_struct("Store")
            .field("sealed", &sealed)
            .field("owned", &owned)
            .field("fresh", &fresh)
            .finish()
    }
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("store lock")
    }

    /// The key the store holds for `ns/name`, so that keys share one
    /// allocation.
    fn key_of(inner: &Inner, ns: &str, name: &str) -> Key {
        let k = key(ns, name);
        match inner.slots.get_key_value(&*k) {
            Some((held, _)) => held.clone(),
            None => k,
        }
    }

    /// Records a SealedSecret from a watch event; returns its key.
    pub fn put_sealed(&self, s: Arc<CachedSealed>) -> Option<Key> {
        let ns = s.metadata.namespace.as_deref()?;
        let name = s.metadata.name.as_deref()?;
        let entry = SealedEntry::of(&s);
        let mut inner = self.lock();
        let k = Self::key_of(&inner, ns, name);
        let slot = inner.slots.entry(k.clone()).or_default();
        if slot.sealed.as_ref().map(|e| &e.uid) != Some(&entry.uid) {
            slot.memo = None;
        }
        // The echo of a status write (or any event at a generation already
        // unsealed) will not be opened: its copy would only hold room that
        // the objects still to open need.
        let echo = matches!(slot.memo, Some(Memo::Unsealed(o)) if o.generation == entry.generation);
        slot.sealed = Some(entry);
        if echo {
            inner.fresh.remove(&k);
        } else {
            inner.fresh.offer(&k, s, false);
        }
        Some(k)
    }

    /// Forgets a SealedSecret (deleted), with its outcome.
    pub fn remove_sealed(&self, ns: &str, name: &str) {
        let k = key(ns, name);
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(&*k) {
            slot.sealed = None;
            slot.memo = None;
        }
        inner.fresh.remove(&k);
        inner.tidy(&k);
    }

    /// Records an owned Secret; returns its key and whether it should
    /// reconcile its SealedSecret: any change, except the Secret arriving
    /// exactly as the controller last wrote it (the echo of its own write).
    pub fn put_owned(&self, s: &OwnedSecret) -> Option<(Key, bool)> {
        let ns = s.metadata.namespace.as_deref()?;
        let name = s.metadata.name.as_deref()?;
        let mut entry = OwnedEntry::of(s);
        let mut inner = self.lock();
        let k = Self::key_of(&inner, ns, name);
        let slot = inner.slots.entry(k.clone()).or_default();
        let echo = match (&slot.memo, &slot.sealed) {
            (Some(Memo::Unsealed(o)), Some(sealed)) => {
                o.digest == entry.digest
                    && sealed.uid.is_some()
                    && entry.controller_uid == sealed.uid
            }
            _ => false,
        };
        if echo {
            // What its annotation says is remembered already.
            entry.attested = None;
        }
        let has_sealed = slot.sealed.is_some();
        slot.owned = Some(entry);
        Some((k, has_sealed && !echo))
    }

    /// Forgets an owned Secret (deleted); returns its key when a
    /// SealedSecret of that name is known.
    pub fn remove_owned(&self, ns: &str, name: &str) -> Option<Key> {
        let k = key(ns, name);
        let mut inner = self.lock();
        let slot = inner.slots.get_mut(&*k)?;
        slot.owned = None;
        let has_sealed = slot.sealed.is_some();
        let held = inner.slots.get_key_value(&*k).map(|(k, _)| k.clone());
        inner.tidy(&k);
        held.filter(|_| has_sealed)
    }

    /// After a re-list of `scope` (a namespace, or all): forgets the
    /// SealedSecrets (`sealed`) or owned Secrets that the list did not
    /// return, since a re-list reports no deletions. Returns the keys of
    /// SealedSecrets whose owned Secret went.
    pub fn retain(&self, sealed: bool, scope: Option<&str>, seen: &HashSet<Key>) -> Vec<Key> {
        let mut inner = self.lock();
        let in_scope = |k: &str| scope.is_none_or(|ns| split(k).0 == ns);
        let mut gone = Vec::new();
        let mut fresh_gone = Vec::new();
        for (k, slot) in inner.slots.iter_mut() {
            if !in_scope(k) || seen.contains(k) {
                continue;
            }
            if sealed && slot.sealed.is_some() {
                slot.sealed = None;
                slot.memo = None;
                fresh_gone.push(k.clone());
            } else if !sealed && slot.owned.is_some() {
                slot.owned = None;
                if slot.sealed.is_some() {
                    gone.push(k.clone());
                }
            }
        }
        for k in fresh_gone {
            inner.fresh.remove(&k);
        }
        inner
            .slots
            .retain(|_, s| s.sealed.is_some() || s.owned.is_some());
        gone
    }

    /// The SealedSecret of `key`, as the store keeps it.
    pub fn sealed(&self, key: &str) -> Option<SealedEntry> {
        self.lock().slots.get(key)?.sealed.clone()
    }

    /// The owned Secret of `key`, as the planner reads it.
    /// Whether the owned Secret `ns/name` is known with controller owner
    /// `controller` (a uid, or none): `false` when it is not known, or
    /// known with another.
    pub fn owned_controller_is(&self, ns: &str, name: &str, controller: Option<&str>) -> bool {
        let k = key(ns, name);
        let inner = self.lock();
        inner
            .slots
            .get(&*k)
            .and_then(|s| s.owned.as_ref())
            .is_some_and(|o| o.controller_uid == Token::of(controller))
    }

    pub fn owned(&self, key: &str) -> Option<OwnedSecret> {
        let inner = self.lock();
        let (ns, name) = split(key);
        Some(inner.slots.get(key)?.owned.as_ref()?.secret(ns, name))
    }

    /// The copy a watch event or the read-ahead brought, if it is still
    /// the one of `entry` (same uid and resourceVersion), and whether the
    /// read-ahead brought it; it is handed out once.
    pub fn take_fresh(&self, key: &str, entry: &SealedEntry) -> Option<(Arc<CachedSealed>, bool)> {
        let mut inner = self.lock();
        let (s, ahead) = inner.fresh.remove(key)?;
        let same = Token::of(s.metadata.uid.as_deref()) == entry.uid
            && Token::of(s.metadata.resource_version.as_deref()) == entry.resource_version;
        same.then_some((s, ahead))
    }

    /// Offers a copy read ahead of the reconciles (the read-ahead in `prefetch.rs`):
    /// kept when it is the object the store holds (same uid and
    /// resourceVersion), its values must be opened (no last unseal holds at
    /// generation and key `epoch`), no copy is kept yet, and it fits.
    pub fn prefetched(&self, s: Arc<CachedSealed>, epoch: u64) -> bool {
        let (Some(ns), Some(name)) = (s.metadata.namespace.as_deref(), s.metadata.name.as_deref())
        else {
            return false;
        };
        let mut inner = self.lock();
        let k = Self::key_of(&inner, ns, name);
        let Some(slot) = inner.slots.get(&k) else {
            return false;
        };
        let Some(entry) = slot.sealed.as_ref() else {
            return false;
        };
        let same = Token::of(s.metadata.uid.as_deref()) == entry.uid
            && Token::of(s.metadata.resource_version.as_deref()) == entry.resource_version;
        let holds = matches!(slot.memo, Some(Memo::Unsealed(o))
            if o.generation == entry.generation && o.key_epoch == epoch);
        if !same || holds || entry.deleting || inner.fresh.objects.contains_key(&k) {
            return false;
        }
        inner.fresh.offer(&k, s, true)
    }

    /// Ciphertext bytes [`Store::take_fresh`] can still be offered.
    pub fn fresh_room(&self) -> usize {
        Fresh::CAP.saturating_sub(self.lock().fresh.bytes)
    }

    /// Keys of the copies kept.
    pub fn fresh_keys(&self) -> Vec<Key> {
        self.lock().fresh.objects.keys().cloned().collect()
    }

    /// Drops the copies kept of `keys` (no reconcile will take them).
    pub fn drop_fresh(&self, keys: &[Key]) {
        let mut inner = self.lock();
        for k in keys {
            inner.fresh.remove(k);
        }
    }

    /// Drops the copy kept of `key` unless it is of a later generation than
    /// `generation`: a reconcile found that generation unsealed, so a copy
    /// of it will not be opened, but a newer one that arrived meanwhile
    /// will be.
    pub fn drop_fresh_upto(&self, key: &str, generation: Option<i64>) {
        let mut inner = self.lock();
        let newer = inner
            .fresh
            .objects
            .get(key)
            .is_some_and(|(s, _)| s.metadata.generation > generation);
        if !newer {
            inner.fresh.remove(key);
        }
    }

    /// The SealedSecrets whose values must be opened (no last unseal holds
    /// at key `epoch`) and that hold no copy yet, by namespace, in order.
    pub fn to_open(&self, epoch: u64) -> Vec<(String, Vec<Key>)> {
        let inner = self.lock();
        let mut by_ns: std::collections::BTreeMap<&str, Vec<Key>> = Default::default();
        for (k, slot) in &inner.slots {
            let open = match (&slot.sealed, slot.memo) {
                (None, _) => false,
                (Some(e), Some(Memo::Unsealed(o))) => {
                    o.generation != e.generation || o.key_epoch != epoch
                }
                // Unsealed before this controller started, if its Secret's
                // annotation says so for this object at this generation.
                (Some(e), None) => !slot.owned.as_ref().is_some_and(|o| o.vouches_for(e, epoch)),
                (Some(_), _) => true,
            };
            if open && !inner.fresh.objects.contains_key(k) {
                by_ns.entry(split(k).0).or_default().push(k.clone());
            }
        }
        by_ns
            .into_iter()
            .map(|(ns, keys)| (ns.to_string(), keys))
            .collect()
    }

    /// Keys of every SealedSecret held.
    pub fn sealed_keys(&self) -> Vec<Key> {
        let inner = self.lock();
        inner
            .slots
            .iter()
            .filter(|(_, s)| s.sealed.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// `(namespace, state reason)` of every SealedSecret, for the metrics.
    pub fn states(&self) -> Vec<(String, String)> {
        let inner = self.lock();
        inner
            .slots
            .iter()
            .filter_map(|(k, s)| {
                let sealed = s.sealed.as_ref()?;
                Some((split(k).0.to_string(), sealed.state_reason().to_string()))
            })
            .collect()
    }

    /// What the controller knows of each live SealedSecret's use of keys
    /// (crate::keys::users), for `f`, under the store's lock. With `epoch`,
    /// an outcome or refusal from before a key was lost is pending: the
    /// object will be opened again. Without, the last outcome at the
    /// current generation counts whatever the epoch (the gauge).
    pub fn each_use(&self, epoch: Option<u64>, mut f: impl FnMut(&Key, Use)) {
        let inner = self.lock();
        for (k, slot) in &inner.slots {
            let Some(e) = slot.sealed.as_ref().filter(|e| !e.deleting) else {
                continue;
            };
            let current = |generation: Option<i64>, key_epoch: u64| {
                generation == e.generation && epoch.is_none_or(|ep| ep == key_epoch)
            };
            let u = match slot.memo {
                Some(Memo::Unsealed(o)) if current(o.generation, o.key_epoch) => {
                    Use::Needs(o.needs)
                }
                Some(Memo::Refused(r)) if current(r.generation, r.key_epoch) => Use::Refused,
                _ => Use::Pending,
            };
            f(k, u);
        }
    }

    /// How many live SealedSecrets need each key, by their last outcome at
    /// their current generation (`coffer_key_sealed_secrets`).
    pub fn key_counts(&self) -> std::collections::BTreeMap<coffer_format::KeyId, usize> {
        let mut sets = Vec::new();
        self.each_use(None, |_, u| {
            if let Use::Needs(s) = u
                && !s.is_empty()
            {
                sets.push(s);
            }
        });
        crate::keys::users::counts(sets)
    }

    fn memo(&self, key: &str, uid: &str) -> Option<Memo> {
        let inner = self.lock();
        let slot = inner.slots.get(key)?;
        let held = slot.sealed.as_ref()?.uid.as_ref()?;
        (*held == Token::new(uid)).then_some(slot.memo?)
    }

    fn set_memo(&self, key: &str, uid: &str, memo: Memo) {
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(key)
            && slot.sealed.as_ref().and_then(|s| s.uid.as_ref()) == Some(&Token::new(uid))
        {
            if let (Memo::Unsealed(o), Some(owned)) = (&memo, slot.owned.as_mut())
                && owned.digest == o.digest
            {
                // Remembered now: its annotation's verdict is not needed.
                owned.attested = None;
            }
            slot.memo = Some(memo);
        }
    }

    /// The last successful unseal of SealedSecret `uid` at `key`, if that
    /// is what happened last.
    pub fn last_unsealed(&self, key: &str, uid: &str) -> Option<Outcome> {
        match self.memo(key, uid)? {
            Memo::Unsealed(o) => Some(o),
            Memo::Refused(_) => None,
        }
    }

    /// Whether anything (an unseal or a refusal) is remembered of the
    /// SealedSecret `uid` at `key` since this controller started.
    pub fn remembers(&self, key: &str, uid: &str) -> bool {
        self.memo(key, uid).is_some()
    }

    pub fn set_unsealed(&self, key: &str, uid: &str, o: Outcome) {
        self.set_memo(key, uid, Memo::Unsealed(o));
    }

    /// Records a refusal; returns whether it is the same as the last one
    /// (then it is not news).
    pub fn refused(&self, key: &str, uid: &str, r: Refusal) -> bool {
        let again = matches!(self.memo(key, uid), Some(Memo::Refused(last)) if last == r);
        self.set_memo(key, uid, Memo::Refused(r));
        again
    }

    /// Objects held: SealedSecrets, owned Secrets, fresh copies.
    pub fn counts(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        let sealed = inner.slots.values().filter(|s| s.sealed.is_some()).count();
        let owned = inner.slots.values().filter(|s| s.owned.is_some()).count();
        (sealed, owned, inner.fresh.objects.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::users::KeySet;

    #[test]
    fn tokens_print_back_exactly() {
        for s in [
            "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "123456",
            "0",
            "007",
            "7C9E6679-7425-40DE-944B-E07FC1F90AE7",
            "not-a-uuid",
            "",
            "18446744073709551616",
            // Dashes where digits belong: 31 or 30 digits left (these
            // panicked, or printed back as another uid).
            "00000000-0000-0000-0000-00000000000-",
            "00000000-0000-0000-0000-0000000000--",
            "00000000-0000-0000-0000-0-0000000000",
            // 36 bytes, 35 characters.
            "7c9e6679-7425-40de-944b-e07fc1f90a\u{e9}",
            "7c9e6679x7425-40de-944b-e07fc1f90ae7",
        ] {
            assert_eq!(Token::new(s).to_string(), s);
        }
        assert!(matches!(
            Token::new("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
            Token::Uuid(_)
        ));
        assert!(matches!(Token::new("123456"), Token::Number(123456)));
        assert!(matches!(Token::new("007"), Token::Text(_)));
    }

    fn sealed(ns: &str, name: &str, rv: &str, generation: i64) -> Arc<CachedSealed> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": ns, "name": name, "resourceVersion": rv,
                    "uid": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "generation": generation},
                "spec": {"encryptedData": {"x": "A".repeat(4000)}}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_read_ahead_copy_is_kept_only_when_it_will_be_opened() {
        let store = Store::default();
        let k = store.put_sealed(sealed("app", "db", "10", 2)).unwrap();
        // The watch event's own copy is there: no second one.
        assert!(!store.prefetched(sealed("app", "db", "10", 2), 0));
        let entry = store.sealed(&k).unwrap();
        assert!(store.take_fresh(&k, &entry).is_some());
        // Another resourceVersion than the store's is not the object that
        // will be reconciled.
        assert!(!store.prefetched(sealed("app", "db", "9", 2), 0));
        // Unknown objects are not kept.
        assert!(!store.prefetched(sealed("app", "other", "10", 2), 0));
        assert_eq!(store.to_open(0), vec![("app".to_string(), vec![k.clone()])]);
        assert!(store.prefetched(sealed("app", "db", "10", 2), 0));
        // A namespace whose objects all hold a copy needs no list.
        assert!(store.to_open(0).is_empty());
        assert!(store.take_fresh(&k, &entry).is_some());
        // Once unsealed at this generation and key epoch, nothing to open.
        let outcome = Outcome {
            generation: Some(2),
            key_epoch: 0,
            items: 1,
            digest: [0; 32],
            needs: KeySet::EMPTY,
        };
        store.set_unsealed(&k, "7c9e6679-7425-40de-944b-e07fc1f90ae7", outcome);
        assert!(!store.prefetched(sealed("app", "db", "10", 2), 0));
        assert!(store.to_open(0).is_empty());
        // A key lost since (a new epoch) means opening again.
        assert_eq!(store.to_open(1), vec![("app".to_string(), vec![k.clone()])]);
        assert!(store.prefetched(sealed("app", "db", "10", 2), 1));
        store.drop_fresh(std::slice::from_ref(&k));
        assert_eq!(store.fresh_room(), FRESH_CAP);
    }

    /// After a restart (nothing remembered), a Secret whose verified
    /// annotation vouches for its SealedSecret at its generation needs no
    /// read ahead; once the outcome is remembered the verdict is dropped.
    #[test]
    fn a_vouched_for_sealed_secret_is_not_read_ahead() {
        const UID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
        let store = Store::default();
        let k = store.put_sealed(sealed("app", "db", "10", 2)).unwrap();
        store.drop_fresh(std::slice::from_ref(&k));
        let owned = |controller: &str, generation: i64, epoch: u64| OwnedSecret {
            metadata: ObjectMeta {
                namespace: Some("app".into()),
                name: Some("db".into()),
                uid: Some("0b4a3c7e-3f53-4c2e-9a39-1f2d3c4b5a69".into()),
                ..Default::default()
            },
            controller_uid: Some(controller.into()),
            type_: None,
            immutable: false,
            adoptable: false,
            kept_for: None,
            merge: None,
            bitnami_managed: false,
            coffer_controlled: false,
            digest: [9; 32],
            claim: None,
            attested: Some(Attested {
                generation,
                items: 1,
                key_epoch: epoch,
                keys: KeySet::EMPTY,
            }),
        };
        let to_open = || vec![("app".to_string(), vec![k.clone()])];
        store.put_owned(&owned(UID, 2, 0));
        assert!(store.to_open(0).is_empty());
        // A key lost since, another generation, another owner: opened.
        assert_eq!(store.to_open(1), to_open());
        store.put_owned(&owned(UID, 1, 0));
        assert_eq!(store.to_open(0), to_open());
        store.put_owned(&owned("6f1c2b3a-0d4e-4f5a-8b6c-7d8e9fa0b1c2", 2, 0));
        assert_eq!(store.to_open(0), to_open());
        // Remembered: the verdict goes, the outcome decides.
        store.put_owned(&owned(UID, 2, 0));
        let outcome = Outcome {
            generation: Some(2),
            key_epoch: 0,
            items: 1,
            digest: [9; 32],
            needs: KeySet::EMPTY,
        };
        store.set_unsealed(&k, UID, outcome);
        assert_eq!(store.owned(&k).unwrap().attested, None);
        assert!(store.to_open(0).is_empty());
    }

    #[test]
    fn a_reconcile_that_reads_nothing_keeps_a_newer_copy() {
        let store = Store::default();
        let k = store.put_sealed(sealed("app", "db", "10", 2)).unwrap();
        store.drop_fresh_upto(&k, Some(2));
        assert_eq!(store.fresh_room(), FRESH_CAP);
        // A newer generation arrived while the reconcile of 2 ran.
        let k = store.put_sealed(sealed("app", "db", "11", 3)).unwrap();
        let room = store.fresh_room();
        assert!(room < FRESH_CAP);
        store.drop_fresh_upto(&k, Some(2));
        assert_eq!(store.fresh_room(), room);
        store.drop_fresh_upto(&k, Some(3));
        assert_eq!(store.fresh_room(), FRESH_CAP);
    }

    #[test]
    fn the_echo_of_a_status_write_keeps_no_copy() {
        let store = Store::default();
        let uid = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
        let k = store.put_sealed(sealed("app", "db", "10", 2)).unwrap();
        let entry = store.sealed(&k).unwrap();
        assert!(store.take_fresh(&k, &entry).is_some());
        let outcome = Outcome {
            generation: Some(2),
            key_epoch: 0,
            items: 1,
            digest: [0; 32],
            needs: KeySet::EMPTY,
        };
        store.set_unsealed(&k, uid, outcome);
        // The status write comes back at the same generation: no copy.
        store.put_sealed(sealed("app", "db", "11", 2));
        assert_eq!(store.fresh_room(), FRESH_CAP);
        assert!(store.fresh_keys().is_empty());
        // An edit (a new generation) is kept, to be opened without a GET.
        store.put_sealed(sealed("app", "db", "12", 3));
        assert_eq!(store.fresh_keys(), vec![k.clone()]);
        // Its own echo, before it was unsealed, is the object to open.
        store.put_sealed(sealed("app", "db", "13", 3));
        let entry = store.sealed(&k).unwrap();
        let (copy, ahead) = store.take_fresh(&k, &entry).unwrap();
        assert_eq!(copy.metadata.resource_version.as_deref(), Some("13"));
        assert!(!ahead);
    }

    #[test]
    fn read_ahead_copies_stay_within_the_bound() {
        let store = Store::default();
        let mut kept = 0;
        for i in 0..20_000 {
            let name = format!("s{i:05}");
            let k = store.put_sealed(sealed("app", &name, "1", 1)).unwrap();
            let entry = store.sealed(&k).unwrap();
            store.take_fresh(&k, &entry);
            kept += usize::from(store.prefetched(sealed("app", &name, "1", 1), 0));
        }
        assert!(kept > 1000 && kept < 20_000, "{kept}");
        assert!(store.fresh_room() < 4096, "{}", store.fresh_room());
        assert_eq!(store.fresh_keys().len(), kept);
    }

    /// The store hands the planner back what merging and Keep read.
    #[test]
    fn an_owned_entry_keeps_what_keep_and_merge_read() {
        let secret = OwnedSecret {
            metadata: ObjectMeta {
                uid: Some("0b4a3c7e-3f53-4c2e-9a39-1f2d3c4b5a69".into()),
                resource_version: Some("12".into()),
                ..Default::default()
            },
            controller_uid: None,
            type_: Some("Opaque".into()),
            immutable: false,
            adoptable: false,
            kept_for: Some("6f1c2b3a-0d4e-4f5a-8b6c-7d8e9fa0b1c2".into()),
            merge: Some(Box::new(MergeTarget {
                keys: Box::new([Box::from("a"), Box::from("b")]),
                merged: Box::new([Box::from("a")]),
                digest: [3; 32],
            })),
            bitnami_managed: false,
            coffer_controlled: false,
            digest: [4; 32],
            claim: None,
            attested: None,
        };
        let back = OwnedEntry::of(&secret).secret("ns", "db");
        assert_eq!(back.kept_for, secret.kept_for);
        assert_eq!(back.merge, secret.merge);
        assert_eq!(back.metadata.uid, secret.metadata.uid);
        // Secrets that are neither kept nor merged into (nearly all) pay
        // one pointer for the two features.
        let plain = OwnedSecret {
            kept_for: None,
            merge: None,
            ..secret
        };
        assert!(OwnedEntry::of(&plain).extra.is_none());
        assert_eq!(std::mem::size_of::<Option<Box<OwnedExtra>>>(), 8);
    }

    /// What the users of a key are counted from: the outcome of the
    /// current generation, under the current key epoch; anything else is
    /// pending; a deleted object is not live.
    #[test]
    fn each_use_tells_what_the_current_generation_needs() {
        use coffer_format::SecretKey;
        const UID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
        let store = Store::default();
        let k = store.put_sealed(sealed("app", "db", "10", 2)).unwrap();
        let uses = |epoch| {
            let mut v = Vec::new();
            store.each_use(epoch, |k, u| v.push((k.clone(), u)));
            v
        };
        assert_eq!(uses(Some(0)), [(k.clone(), Use::Pending)]);
        let old = SecretKey::generate().id();
        let needs = KeySet::of(&[old]);
        let outcome = Outcome {
            generation: Some(2),
            key_epoch: 0,
            items: 1,
            digest: [0; 32],
            needs,
        };
        store.set_unsealed(&k, UID, outcome);
        assert_eq!(uses(Some(0)), [(k.clone(), Use::Needs(needs))]);
        assert_eq!(store.key_counts(), [(old, 1)].into());
        // A key lost since: it will be opened again; the gauge keeps the
        // last outcome meanwhile.
        assert_eq!(uses(Some(1)), [(k.clone(), Use::Pending)]);
        assert_eq!(uses(None), [(k.clone(), Use::Needs(needs))]);
        // A new generation (the rotated file applied) is pending until
        // it is unsealed or refused.
        store.put_sealed(sealed("app", "db", "11", 3));
        assert_eq!(uses(Some(0)), [(k.clone(), Use::Pending)]);
        assert_eq!(uses(None), [(k.clone(), Use::Pending)]);
        assert!(store.key_counts().is_empty());
        let refusal = Refusal {
            generation: Some(3),
            key_epoch: 0,
            reason: coffer_core::reason::Reason::ScopeMismatch,
        };
        store.refused(&k, UID, refusal);
        assert_eq!(uses(Some(0)), [(k.clone(), Use::Refused)]);
        let mut deleting: CachedSealed = (*sealed("app", "db", "12", 3)).clone();
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        store.put_sealed(Arc::new(deleting));
        assert!(uses(Some(0)).is_empty());
    }

    #[test]
    fn keys_split_into_namespace_and_name() {
        assert_eq!(split(&key("app", "db")), ("app", "db"));
    }

    #[test]
    fn a_ready_memo_compares_by_message() {
        let c = Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Unsealed".into(),
            message: "unsealed 3 item(s)".into(),
            observed_generation: Some(1),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        };
        let m = ReadyMemo::of(&c);
        assert!(m.says("True", "Unsealed", "unsealed 3 item(s)"));
        assert!(!m.says("True", "Unsealed", "unsealed 2 item(s)"));
        assert!(!m.says("False", "Unsealed", "unsealed 3 item(s)"));
    }
}
