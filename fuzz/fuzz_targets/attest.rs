//! The controller's persisted outcomes (`coffer_controller::keys::attest`): the
//! `coffer.dev/unsealed` annotation on every Secret it writes, which a
//! restarted controller trusts instead of opening the SealedSecret again.
//! Whoever may edit Secrets controls that annotation and the rest of the
//! Secret, so the claim parser and the MAC check see hostile input.
//!
//! Each input describes a Secret (type, labels, annotations, owner
//! references, data), the SealedSecret uid, generation, item count and the
//! keys that opened it; the Secret is stamped with the ring of the test
//! identities and the keys of `keys.txt`, then edited: the annotation
//! replaced by arbitrary text, spliced, dropped, or any other part of the
//! Secret changed. The claim of the edited Secret is then verified, for
//! the same or another uid.
//!
//! Properties: never panics; what is stamped verifies (no false refusal);
//! a claim verifies only for the uid, generation and item count that were
//! stamped, on a Secret whose content (everything but the annotation) is
//! unchanged, and never under a ring lacking the key that made it; two
//! Secrets have the same content digest exactly when their content is the
//! same (no ambiguity in what the MAC covers).
#![no_main]

use std::collections::BTreeMap;

use coffer_controller::keys::attest::{AttestKeys, Attested, claim, content_digest, stamp, verify};
use coffer_core::api::{DEFAULT_SECRET_TYPE, UNSEALED_ANNOTATION};
use coffer_format::{KeyId, Keyring};
use coffer_fuzz::{other_keys, pq_test_key, test_key};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

const EPOCH: u64 = 7;

#[derive(Arbitrary, Debug)]
struct Input {
    uid: Uid,
    generation: i64,
    items: u32,
    /// The keys that opened the values: indices into the ring (mod 5).
    opened_by: Vec<u8>,
    secret: SecretModel,
    edits: Vec<Edit>,
    /// Verify for another uid than the stamped one.
    other_uid: Option<Uid>,
}

#[derive(Arbitrary, Debug, Clone)]
enum Uid {
    Typical,
    Empty,
    Raw(String),
}

impl Uid {
    fn text(&self) -> String {
        match self {
            Uid::Typical => "3f2c8a40-0000-4000-8000-000000000000".into(),
            Uid::Empty => String::new(),
            Uid::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct SecretModel {
    type_: Option<String>,
    immutable: Option<bool>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owners: Option<Vec<Owner>>,
    data: Option<BTreeMap<String, Vec<u8>>>,
}

#[derive(Arbitrary, Debug, Clone)]
struct Owner {
    api_version: String,
    kind: String,
    name: String,
    uid: String,
    controller: Option<bool>,
    block_owner_deletion: Option<bool>,
}

impl Owner {
    fn reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: self.controller,
            block_owner_deletion: self.block_owner_deletion,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Edit {
    /// The annotation's value replaced by arbitrary text.
    Annotation(String),
    /// Text inserted into the annotation's value at a character boundary.
    Splice {
        at: u16,
        text: String,
    },
    /// Characters cut from the annotation's value.
    Cut {
        at: u16,
        len: u8,
    },
    /// One byte of the annotation's value (ASCII) replaced by another.
    Byte {
        at: u16,
        to: u8,
    },
    DropAnnotation,
    Type(Option<String>),
    Immutable(Option<bool>),
    Label(String, String),
    DropLabels,
    /// Another annotation than the stamp.
    OtherAnnotation(String, String),
    EmptyAnnotationsBesidesStamp,
    Owner(Owner),
    DropOwners,
    Data(String, Vec<u8>),
    DropDatum(u8),
    DropData,
}

/// The ring every claim is stamped and verified with: both test
/// identities and the three keys of `keys.txt`.
fn ring_keys() -> &'static [coffer_format::SecretKey] {
    static KEYS: std::sync::OnceLock<Vec<coffer_format::SecretKey>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let mut k = vec![test_key().clone(), pq_test_key().clone()];
        k.extend(other_keys().iter().cloned());
        k
    })
}

fn attest_keys() -> &'static AttestKeys {
    static K: std::sync::OnceLock<AttestKeys> = std::sync::OnceLock::new();
    K.get_or_init(|| AttestKeys::of(&Keyring::from_keys(ring_keys().iter().cloned())))
}

/// The same ring without the test identity.
fn without_test_key() -> &'static AttestKeys {
    static K: std::sync::OnceLock<AttestKeys> = std::sync::OnceLock::new();
    K.get_or_init(|| AttestKeys::of(&Keyring::from_keys(ring_keys()[1..].iter().cloned())))
}

fn build(m: &SecretModel) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("db".into()),
            namespace: Some("shop".into()),
            labels: m.labels.clone(),
            annotations: m.annotations.clone(),
            owner_references: m
                .owners
                .as_ref()
                .map(|o| o.iter().map(Owner::reference).collect()),
            ..Default::default()
        },
        type_: m.type_.clone(),
        immutable: m.immutable,
        data: m.data.as_ref().map(|d| {
            d.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect()
        }),
        ..Default::default()
    }
}

/// What the content digest covers, with the defaults it applies: an absent
/// type is the default type, an absent map an empty one, the annotation
/// itself left out.
type OwnerView = (String, String, String, String, bool, bool);
type View = (
    String,
    bool,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    Vec<OwnerView>,
    BTreeMap<String, Vec<u8>>,
);

fn view(s: &Secret) -> View {
    let mut annotations = s.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(UNSEALED_ANNOTATION);
    (
        s.type_
            .clone()
            .unwrap_or_else(|| DEFAULT_SECRET_TYPE.into()),
        s.immutable.unwrap_or(false),
        s.metadata.labels.clone().unwrap_or_default(),
        annotations,
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .map(|o| {
                (
                    o.api_version.clone(),
                    o.kind.clone(),
                    o.name.clone(),
                    o.uid.clone(),
                    o.controller.unwrap_or(false),
                    o.block_owner_deletion.unwrap_or(false),
                )
            })
            .collect(),
        s.data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
    )
}

fn floor_char(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn edit(s: &mut Secret, e: &Edit) {
    let stamp = s
        .metadata
        .annotations
        .as_mut()
        .and_then(|a| a.get_mut(UNSEALED_ANNOTATION));
    match e {
        Edit::Annotation(text) => {
            s.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(UNSEALED_ANNOTATION.into(), text.clone());
        }
        Edit::Splice { at, text } => {
            if let Some(v) = stamp {
                let i = floor_char(v, *at as usize % (v.len() + 1));
                v.insert_str(i, text);
            }
        }
        Edit::Cut { at, len } => {
            if let Some(v) = stamp {
                let i = floor_char(v, *at as usize % (v.len() + 1));
                let j = floor_char(v, i + *len as usize);
                v.replace_range(i..j, "");
            }
        }
        Edit::Byte { at, to } => {
            if let Some(v) = stamp
                && !v.is_empty()
                && v.is_ascii()
                && to.is_ascii()
            {
                let i = *at as usize % v.len();
                v.replace_range(i..i + 1, &char::from(*to).to_string());
            }
        }
        Edit::DropAnnotation => {
            if let Some(a) = s.metadata.annotations.as_mut() {
                a.remove(UNSEALED_ANNOTATION);
            }
        }
        Edit::Type(t) => s.type_ = t.clone(),
        Edit::Immutable(i) => s.immutable = *i,
        Edit::Label(k, v) => {
            s.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(k.clone(), v.clone());
        }
        Edit::DropLabels => s.metadata.labels = None,
        Edit::OtherAnnotation(k, v) => {
            if k != UNSEALED_ANNOTATION {
                s.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(k.clone(), v.clone());
            }
        }
        Edit::EmptyAnnotationsBesidesStamp => {
            if let Some(a) = s.metadata.annotations.as_mut() {
                a.retain(|k, _| k == UNSEALED_ANNOTATION);
            }
        }
        Edit::Owner(o) => s
            .metadata
            .owner_references
            .get_or_insert_with(Default::default)
            .push(o.reference()),
        Edit::DropOwners => s.metadata.owner_references = None,
        Edit::Data(k, v) => {
            s.data
                .get_or_insert_with(Default::default)
                .insert(k.clone(), ByteString(v.clone()));
        }
        Edit::DropDatum(i) => {
            if let Some(d) = s.data.as_mut()
                && !d.is_empty()
            {
                let k = d.keys().nth(*i as usize % d.len()).cloned().unwrap();
                d.remove(&k);
            }
        }
        Edit::DropData => s.data = None,
    }
}

fuzz_target!(|input: Input| {
    let keys = attest_keys();
    let ring = ring_keys();
    let opened_by: Vec<KeyId> = input
        .opened_by
        .iter()
        .take(10)
        .map(|i| ring[*i as usize % ring.len()].id())
        .collect();
    let uid = input.uid.text();

    let mut original = build(&input.secret);
    stamp(
        &mut original,
        &uid,
        input.generation,
        input.items as usize,
        &opened_by,
        keys,
    );
    let stamped = original
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(UNSEALED_ANNOTATION))
        .is_some();
    // Stamped exactly when some key opened the values, and no more of them
    // than a real SealedSecret needs.
    assert_eq!(
        stamped,
        !opened_by.is_empty() && opened_by.len() <= 8,
        "stamped with {} keys",
        opened_by.len()
    );
    let want = (input.generation, input.items, EPOCH);
    if stamped {
        let c = claim(&original).expect("a stamped Secret has a claim");
        assert_eq!(
            verify(&c, &uid, keys, EPOCH).map(|a: Attested| (a.generation, a.items, a.key_epoch)),
            Some(want),
            "a stamp that does not verify"
        );
        if opened_by[0] == test_key().id() {
            assert_eq!(verify(&c, &uid, without_test_key(), EPOCH), None);
        }
    }

    let mut edited = original.clone();
    for e in input.edits.iter().take(16) {
        edit(&mut edited, e);
    }
    let same_content = view(&edited) == view(&original);
    assert_eq!(
        content_digest(&edited) == content_digest(&original),
        same_content,
        "the content digest is ambiguous"
    );

    let Some(c) = claim(&edited) else {
        return;
    };
    let verify_uid = input.other_uid.as_ref().map_or(uid.clone(), Uid::text);
    if let Some(got) = verify(&c, &verify_uid, keys, EPOCH) {
        assert!(stamped, "a claim verified that no key made");
        assert_eq!(
            (got.generation, got.items, got.key_epoch),
            want,
            "a claim verified with other figures"
        );
        assert_eq!(verify_uid, uid, "a claim verified for another uid");
        assert!(same_content, "a claim verified on other content");
    }
});
