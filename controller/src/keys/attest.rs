//! Persisted outcomes: the [`UNSEALED_ANNOTATION`] on every Secret the
//! controller writes.
//!
//! A running controller remembers the last successful unseal of each
//! SealedSecret (its `Outcome`) and, while it holds, reconciles
//! without reading or decrypting anything. The annotation carries that
//! memory across restarts: it names the SealedSecret's generation, the
//! number of items and the keys that opened them, with a MAC over these,
//! the SealedSecret's uid and a digest of the Secret's content (everything
//! the controller writes but the annotation itself). The MAC is keyed by a
//! key derived from the private key that opened the values, so only a
//! holder of that key can make one: whoever may edit Secrets cannot make
//! the controller trust a Secret it did not write, nor move an annotation
//! to another Secret, another SealedSecret (uid), another generation or
//! other content. A key retired or deleted since leaves the MAC without a
//! key to verify it, and the SealedSecret is opened again, as after a key
//! loss at run time.
//!
//! The value: `v1;g=GENERATION;n=ITEMS;k=KEY[,KEY];m=MAC`, where KEY is a
//! key id's first 16 hex digits and MAC the unpadded base64 of an
//! HMAC-SHA-256. See docs/decisions.md, "Persisted outcomes".

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use coffer_core::api::{DEFAULT_SECRET_TYPE, UNSEALED_ANNOTATION};
use coffer_format::{KeyId, Keyring};
use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::keys::users::KeySet;

/// The HKDF label of the MAC keys, and the MAC's domain. A release that
/// builds a different Secret from the same SealedSecret (a new field, a new
/// label) must change it, and [`VERSION`]: annotations of the old build
/// then no longer verify, and a restart rewrites them.
const LABEL: &[u8] = b"coffer.dev/unsealed v1";
const VERSION: &str = "v1";
/// More keys than any SealedSecret's values were opened with is not an
/// annotation the controller wrote.
const MAX_KEYS: usize = 8;

/// One usable key: its id, the id's short form the annotation names, and
/// its MAC key.
type MacKey = (KeyId, String, Zeroizing<[u8; 32]>);

/// The MAC key of each usable key of a ring, derived once per ring.
#[derive(Clone, Default)]
pub struct AttestKeys(Arc<[MacKey]>);

impl fmt::Debug for AttestKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttestKeys({} keys)", self.0.len())
    }
}

impl AttestKeys {
    /// The MAC keys of the keys of `ring` that open values.
    pub fn of(ring: &Keyring) -> Self {
        AttestKeys(
            ring.usable_ids()
                .into_iter()
                .filter_map(|id| Some((id, id.short(), ring.usable(id)?.derive_key(LABEL))))
                .collect(),
        )
    }

    fn key(&self, id: KeyId) -> Option<&[u8; 32]> {
        self.0
            .iter()
            .find(|(i, _, _)| *i == id)
            .map(|(_, _, k)| &**k)
    }

    /// The one usable key whose id starts with `short`.
    fn by_short(&self, short: &str) -> Option<KeyId> {
        let mut found = self.0.iter().filter(|(_, s, _)| s == short);
        let (id, _, _) = found.next()?;
        found.next().is_none().then_some(*id)
    }
}

/// What a Secret's annotation claims, with the digest of the content it
/// was found on. Verified with [`verify`]; until then it proves nothing.
#[derive(Clone)]
pub struct Claim {
    generation: i64,
    items: u32,
    keys: Vec<String>,
    mac: [u8; 32],
    content: [u8; 32],
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("generation", &self.generation)
            .field("items", &self.items)
            .finish_non_exhaustive()
    }
}

/// A claim that verified: the last unseal of the SealedSecret the Secret
/// names, as the controller that wrote it knew it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attested {
    pub generation: i64,
    pub items: u32,
    /// The key epoch it was verified under: a key lost since invalidates
    /// it, as it does a remembered outcome.
    pub key_epoch: u64,
    /// The keys the annotation names: those that opened the values. Each
    /// is taken as needed (the annotation does not say whether another
    /// key would also open a value).
    pub keys: KeySet,
}

/// The claim of `secret`'s annotation, if it has one that parses.
pub fn claim(secret: &Secret) -> Option<Claim> {
    let value = secret
        .metadata
        .annotations
        .as_ref()?
        .get(UNSEALED_ANNOTATION)?;
    let mut parts = value.split(';');
    if parts.next()? != VERSION {
        return None;
    }
    let mut field = |name: &str| parts.next()?.strip_prefix(name)?.strip_prefix('=');
    let generation = field("g")?.parse().ok()?;
    let items = field("n")?.parse().ok()?;
    // One past the most a real annotation names, so a huge list is not copied.
    let keys: Vec<String> = field("k")?
        .split(',')
        .take(MAX_KEYS + 1)
        .map(String::from)
        .collect();
    let m = field("m")?;
    if parts.next().is_some() || keys.len() > MAX_KEYS {
        return None;
    }
    // Exactly 32 bytes; the engine's length estimate needs one spare.
    let mut decoded = [0u8; 33];
    if STANDARD_NO_PAD.decode_slice(m, &mut decoded).ok()? != 32 {
        return None;
    }
    let mut mac = [0u8; 32];
    mac.copy_from_slice(&decoded[..32]);
    Some(Claim {
        generation,
        items,
        keys,
        mac,
        content: content_digest(secret),
    })
}

fn mac(
    key: &[u8; 32],
    uid: &str,
    generation: i64,
    items: u32,
    ids: &[KeyId],
    content: &[u8; 32],
) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(LABEL);
    m.update(&(uid.len() as u64).to_be_bytes());
    m.update(uid.as_bytes());
    m.update(&generation.to_be_bytes());
    m.update(&items.to_be_bytes());
    m.update(&(ids.len() as u64).to_be_bytes());
    for id in ids {
        m.update(id.as_bytes());
    }
    m.update(content);
    m
}

/// Annotates `secret`, the Secret unsealed from generation `generation` of
/// the SealedSecret `uid`, whose `items` values the keys `opened_by`
/// opened. Without a key to make the MAC (nothing was opened) the Secret
/// gets no annotation, and a restart opens its SealedSecret again.
pub fn stamp(
    secret: &mut Secret,
    uid: &str,
    generation: i64,
    items: usize,
    opened_by: &[KeyId],
    keys: &AttestKeys,
) {
    if let Some(a) = secret.metadata.annotations.as_mut() {
        a.remove(UNSEALED_ANNOTATION);
    }
    let (Ok(items), Some(first)) = (u32::try_from(items), opened_by.first()) else {
        return;
    };
    let Some(key) = keys.key(*first) else {
        return;
    };
    if opened_by.len() > MAX_KEYS {
        return;
    }
    let content = content_digest(secret);
    let tag = mac(key, uid, generation, items, opened_by, &content).finalize();
    let shorts: Vec<String> = opened_by.iter().map(KeyId::short).collect();
    let value = format!(
        "{VERSION};g={generation};n={items};k={};m={}",
        shorts.join(","),
        STANDARD_NO_PAD.encode(tag.into_bytes())
    );
    secret
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(UNSEALED_ANNOTATION.into(), value);
}

/// Whether `claim`, found on a Secret that names the SealedSecret `uid` as
/// its owner, was made by the keys of a ring whose MAC keys are `keys`
/// (at key `epoch`): every key it names is usable and the MAC verifies.
pub fn verify(claim: &Claim, uid: &str, keys: &AttestKeys, epoch: u64) -> Option<Attested> {
    let ids: Vec<KeyId> = claim
        .keys
        .iter()
        .map(|s| keys.by_short(s))
        .collect::<Option<_>>()?;
    let key = keys.key(*ids.first()?)?;
    mac(
        key,
        uid,
        claim.generation,
        claim.items,
        &ids,
        &claim.content,
    )
    .verify_slice(&claim.mac)
    .ok()?;
    Some(Attested {
        generation: claim.generation,
        items: claim.items,
        key_epoch: epoch,
        keys: KeySet::of(&ids),
    })
}

/// Unsalted digest of what the cache's `secret_digest` covers but the
/// [`UNSEALED_ANNOTATION`]: the content that annotation's MAC vouches for,
/// the same in every process. Never kept beyond checking that MAC.
pub fn content_digest(s: &Secret) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"coffer.dev/unsealed content v1");
    hash_secret(&mut h, s, Some(UNSEALED_ANNOTATION));
    h.finalize().into()
}

pub fn hash_secret(h: &mut Sha256, s: &Secret, skip_annotation: Option<&str>) {
    fn field(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    fn map<V>(h: &mut Sha256, m: Option<&BTreeMap<String, V>>, bytes: impl Fn(&V) -> &[u8]) {
        h.update((m.map_or(0, BTreeMap::len) as u64).to_be_bytes());
        for (k, v) in m.into_iter().flatten() {
            field(h, k.as_bytes());
            field(h, bytes(v));
        }
    }
    field(
        h,
        s.type_.as_deref().unwrap_or(DEFAULT_SECRET_TYPE).as_bytes(),
    );
    h.update([u8::from(s.immutable.unwrap_or(false))]);
    map(h, s.metadata.labels.as_ref(), |v| v.as_bytes());
    match (skip_annotation, s.metadata.annotations.as_ref()) {
        (Some(skip), Some(a)) if a.contains_key(skip) => {
            let mut rest = a.clone();
            rest.remove(skip);
            map(h, Some(&rest), |v| v.as_bytes());
        }
        (_, a) => map(h, a, |v| v.as_bytes()),
    }
    let owners = s.metadata.owner_references.as_deref().unwrap_or_default();
    h.update((owners.len() as u64).to_be_bytes());
    for o in owners {
        for f in [&o.api_version, &o.kind, &o.name, &o.uid] {
            field(h, f.as_bytes());
        }
        h.update([
            u8::from(o.controller.unwrap_or(false)),
            u8::from(o.block_owner_deletion.unwrap_or(false)),
        ]);
    }
    map(h, s.data.as_ref(), |v| &v.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_format::SecretKey;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    const UID: &str = "0b4a3c7e-3f53-4c2e-9a39-1f2d3c4b5a69";

    fn state(keys: &[(&SecretKey, bool)]) -> AttestKeys {
        let mut ring = Keyring::new();
        for (k, retired) in keys {
            ring.insert((*k).clone(), *retired);
        }
        AttestKeys::of(&ring)
    }

    fn secret() -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("shop".into()),
                labels: Some([("coffer.dev/sealed-secret".into(), "db".into())].into()),
                annotations: Some([("team".into(), "payments".into())].into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "coffer.dev/v1alpha1".into(),
                    kind: "SealedSecret".into(),
                    name: "db".into(),
                    uid: UID.into(),
                    controller: Some(true),
                    block_owner_deletion: None,
                }]),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some([("password".into(), ByteString(b"hunter2".to_vec()))].into()),
            ..Default::default()
        }
    }

    fn stamped(key: &SecretKey, keys: &AttestKeys) -> Secret {
        let mut s = secret();
        stamp(&mut s, UID, 4, 1, &[key.id()], keys);
        s
    }

    fn verdict(s: &Secret, uid: &str, keys: &AttestKeys) -> Option<Attested> {
        verify(&claim(s)?, uid, keys, 3)
    }

    fn annotation(s: &Secret) -> String {
        s.metadata.annotations.as_ref().unwrap()[UNSEALED_ANNOTATION].clone()
    }

    fn with_annotation(mut s: Secret, value: &str) -> Secret {
        s.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(UNSEALED_ANNOTATION.into(), value.into());
        s
    }

    #[test]
    fn a_stamped_secret_verifies_for_its_sealed_secret_and_generation() {
        let key = SecretKey::generate();
        let keys = state(&[(&key, false)]);
        let s = stamped(&key, &keys);
        let value = annotation(&s);
        assert!(value.starts_with(&format!("v1;g=4;n=1;k={};m=", key.id().short())));
        assert!(!value.contains("hunter2"));
        assert_eq!(
            verdict(&s, UID, &keys),
            Some(Attested {
                generation: 4,
                items: 1,
                key_epoch: 3,
                keys: KeySet::of(&[key.id()]),
            })
        );
        // Deterministic: the same Secret stamps the same, so an unchanged
        // Secret needs no write.
        assert_eq!(annotation(&stamped(&key, &keys)), value);
    }

    /// What someone who may edit Secrets, but holds no private key, can do
    /// to a stamped Secret: none of it is trusted.
    #[test]
    fn an_edited_moved_or_forged_annotation_is_not_trusted() {
        let key = SecretKey::generate();
        let keys = state(&[(&key, false)]);
        let good = stamped(&key, &keys);
        let value = annotation(&good);
        let mut cases: Vec<(&str, Secret)> = Vec::new();
        let mut s = good.clone();
        s.data
            .as_mut()
            .unwrap()
            .insert("password".into(), ByteString(b"evil".to_vec()));
        cases.push(("a value changed", s));
        let mut s = good.clone();
        s.data
            .as_mut()
            .unwrap()
            .insert("extra".into(), ByteString(b"x".to_vec()));
        cases.push(("a value added", s));
        let mut s = good.clone();
        s.type_ = Some("kubernetes.io/tls".into());
        cases.push(("the type changed", s));
        let mut s = good.clone();
        s.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("x".into(), "y".into());
        cases.push(("a label added", s));
        let mut s = good.clone();
        s.metadata.annotations.as_mut().unwrap().remove("team");
        cases.push(("an annotation removed", s));
        let mut s = good.clone();
        s.metadata.owner_references.as_mut().unwrap()[0].name = "other".into();
        cases.push(("the owner changed", s));
        let mut s = good.clone();
        s.immutable = Some(true);
        cases.push(("made immutable", s));
        cases.push((
            "the generation raised",
            with_annotation(good.clone(), &value.replacen("g=4", "g=5", 1)),
        ));
        cases.push((
            "the item count changed",
            with_annotation(good.clone(), &value.replacen("n=1", "n=2", 1)),
        ));
        // The annotation of another Secret (other values) copied over.
        let mut other = secret();
        other
            .data
            .as_mut()
            .unwrap()
            .insert("password".into(), ByteString(b"other".to_vec()));
        stamp(&mut other, UID, 4, 1, &[key.id()], &keys);
        let mut s = good.clone();
        s.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(UNSEALED_ANNOTATION.into(), annotation(&other));
        cases.push(("another Secret's annotation", s));
        // A MAC made with the forger's own key, naming the cluster's key.
        let forger = SecretKey::generate();
        let theirs = state(&[(&forger, false)]);
        let mut forged = secret();
        stamp(&mut forged, UID, 4, 1, &[forger.id()], &theirs);
        let forged_mac = annotation(&forged).rsplit_once("m=").unwrap().1.to_string();
        cases.push((
            "a MAC of another key under this key's id",
            with_annotation(
                good.clone(),
                &format!("{}m={forged_mac}", value.rsplit_once("m=").unwrap().0),
            ),
        ));
        cases.push(("a MAC of another key under its own id", forged.clone()));
        for (what, s) in &cases {
            assert_eq!(verdict(s, UID, &keys), None, "{what}");
        }
        // Another SealedSecret (uid), e.g. one of the same name re-created.
        assert_eq!(
            verdict(&good, "6f1c2b3a-0d4e-4f5a-8b6c-7d8e9fa0b1c2", &keys),
            None
        );
        // The good one still verifies: the cases were refused for what
        // they changed.
        assert!(verdict(&good, UID, &keys).is_some());
    }

    #[test]
    fn a_retired_or_unknown_key_leaves_the_annotation_unverified() {
        let key = SecretKey::generate();
        let newer = SecretKey::generate();
        let keys = state(&[(&key, false), (&newer, false)]);
        let s = stamped(&key, &keys);
        assert!(verdict(&s, UID, &keys).is_some());
        assert_eq!(
            verdict(&s, UID, &state(&[(&key, true), (&newer, false)])),
            None
        );
        assert_eq!(verdict(&s, UID, &state(&[(&newer, false)])), None);
    }

    #[test]
    fn values_opened_by_two_keys_name_both_and_need_both() {
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        let keys = state(&[(&a, false), (&b, false)]);
        let mut ids = [a.id(), b.id()];
        ids.sort();
        let mut s = secret();
        stamp(&mut s, UID, 2, 2, &ids, &keys);
        assert!(annotation(&s).contains(&format!("k={},{};", ids[0].short(), ids[1].short())));
        assert!(verdict(&s, UID, &keys).is_some());
        // Either key gone, and it no longer holds.
        assert_eq!(verdict(&s, UID, &state(&[(&a, false)])), None);
        assert_eq!(verdict(&s, UID, &state(&[(&b, false)])), None);
    }

    #[test]
    fn malformed_annotations_are_ignored_and_nothing_is_stamped_without_a_key() {
        let key = SecretKey::generate();
        let keys = state(&[(&key, false)]);
        let value = annotation(&stamped(&key, &keys));
        let mac = value.rsplit_once("m=").unwrap().1;
        let short = key.id().short();
        for bad in [
            String::new(),
            "v2;g=4;n=1;k=x;m=y".to_string(),
            format!("{value};extra"),
            value.replacen("g=4", "g=four", 1),
            value.replacen("g=4", "g=", 1),
            value.replacen("n=1", "n=-1", 1),
            value.replacen(";n=1", "", 1),
            format!("v1;g=4;n=1;k={short};m={mac}A"),
            format!("v1;g=4;n=1;k={short};m={}", &mac[..mac.len() - 1]),
            format!("v1;g=4;n=1;k={short};m=!!!"),
            format!("v1;g=4;n=1;k={};m={mac}", [short.as_str(); 9].join(",")),
            format!("v1;g=4;n=1;k=;m={mac}"),
            "v1;g=99999999999999999999;n=1;k=a;m=b".to_string(),
        ] {
            let s = with_annotation(secret(), &bad);
            assert_eq!(verdict(&s, UID, &keys), None, "{bad:?}");
        }
        // Nothing opened: no annotation, and a template's own is removed.
        let mut s = with_annotation(secret(), &value);
        stamp(&mut s, UID, 4, 0, &[], &keys);
        assert!(claim(&s).is_none());
        // A key not in the ring makes none either.
        let mut s = secret();
        stamp(&mut s, UID, 4, 1, &[SecretKey::generate().id()], &keys);
        assert!(claim(&s).is_none());
    }

    #[test]
    fn the_content_digest_leaves_out_only_the_annotation() {
        let key = SecretKey::generate();
        let keys = state(&[(&key, false)]);
        let s = stamped(&key, &keys);
        assert_eq!(content_digest(&s), content_digest(&secret()));
        // Anything else it covers.
        let mut changed = secret();
        changed
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("x".into(), "y".into());
        assert_ne!(content_digest(&changed), content_digest(&secret()));
    }

    #[test]
    fn the_mac_keys_never_print() {
        let key = SecretKey::generate();
        let keys = state(&[(&key, false)]);
        let shown = format!("{keys:?}");
        let k = keys.key(key.id()).unwrap();
        let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&hex));
        assert!(!shown.contains(&format!("{:?}", &k[..4])), "{shown}");
    }
}
