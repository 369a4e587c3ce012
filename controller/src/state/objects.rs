//! The compact forms the watches decode objects into: a SealedSecret with
//! its ciphertexts as bytes ([`CachedSealed`]), an owned Secret as a salted
//! digest ([`OwnedSecret`]), and the record of a last unseal or refusal
//! ([`Outcome`], [`Refusal`]) that the store (store.rs) keeps for each object.
//!
//! At 10,000 objects the caches are most of the controller's memory, so they
//! hold only what reconciling reads: ciphertexts as bytes (a quarter smaller
//! than their base64), small maps as slices (a `BTreeMap` node is ~540 B even
//! for one entry), no labels, annotations or managed fields of the
//! SealedSecret, and no Secret values at all.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use coffer_core::api::{
    DeletionPolicy, KEPT_FOR_ANNOTATION, MANAGED_ANNOTATION, MERGE_ANNOTATION,
    MERGED_KEYS_ANNOTATION, OWNED_LABEL, SealedSecretSpec, SealedSecretStatus,
};
use coffer_core::transform::{SealedItem, SealedView};
use coffer_format::envelope;
use k8s_openapi::ByteString;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference, Time};
use kube::Resource;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::keys::attest::{Attested, Claim};
use crate::keys::users::KeySet;

/// A string map that is usually empty or tiny.
pub type SmallMap = Box<[(Box<str>, Box<str>)]>;

fn small_map(m: BTreeMap<String, String>) -> SmallMap {
    m.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

fn pairs(m: &SmallMap) -> Vec<(&str, &str)> {
    m.iter().map(|(k, v)| (&**k, &**v)).collect()
}

/// One sealed value: its decoded bytes, or, when it is not valid base64 or
/// is over the size cap, the text as found (opening it reports why).
#[derive(Clone, Debug)]
pub enum Ciphertext {
    Bytes(Box<[u8]>),
    Text(Box<str>),
}

impl Ciphertext {
    fn new(text: String) -> Self {
        match envelope::decode(&text) {
            Ok(bytes) => Ciphertext::Bytes(bytes.into()),
            Err(_) => Ciphertext::Text(text.into()),
        }
    }

    /// Bytes held: what opening it costs, roughly.
    pub fn size(&self) -> usize {
        match self {
            Ciphertext::Bytes(b) => b.len(),
            Ciphertext::Text(t) => t.len(),
        }
    }

    pub fn item(&self) -> SealedItem<'_> {
        match self {
            Ciphertext::Bytes(b) => SealedItem::Bytes(b),
            Ciphertext::Text(t) => SealedItem::Base64(t),
        }
    }
}

/// The parts of `spec.template` a Secret is built from.
#[derive(Clone, Debug, Default)]
pub struct Template {
    pub type_: Option<Box<str>>,
    pub immutable: Option<bool>,
    pub labels: SmallMap,
    pub annotations: SmallMap,
    /// `template.data`: Secret key -> template.
    pub data: SmallMap,
}

/// The metadata the caches keep. Parsing into it skips everything else
/// unread, without allocating: `managedFields` (a tree of JSON objects on
/// every write), and on a SealedSecret its labels and annotations, where a
/// client-side `kubectl apply` (and Argo CD) keeps a JSON copy of the object.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    generation: Option<i64>,
    resource_version: Option<String>,
    deletion_timestamp: Option<Time>,
}

impl From<WireMeta> for ObjectMeta {
    fn from(m: WireMeta) -> Self {
        ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            generation: m.generation,
            resource_version: m.resource_version,
            deletion_timestamp: m.deletion_timestamp,
            ..Default::default()
        }
    }
}

/// A SealedSecret as the API sends it, with [`WireMeta`] for its metadata
/// and the CRD's own types for the rest, so the cache accepts exactly the
/// spec and status the CRD type accepts.
#[derive(Deserialize)]
struct WireSealed {
    #[serde(default)]
    metadata: WireMeta,
    spec: SealedSecretSpec,
    #[serde(default)]
    status: Option<SealedSecretStatus>,
}

/// A SealedSecret as the controller caches it.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "WireSealed")]
pub struct CachedSealed {
    /// Name, namespace, uid, generation, resourceVersion and deletion
    /// timestamp only.
    pub metadata: ObjectMeta,
    /// Shared, because kube's reflector clones each object into its store:
    /// the clone then costs a reference count, not a copy of every
    /// ciphertext.
    pub items: Arc<[(Box<str>, Ciphertext)]>,
    pub template: Template,
    pub deletion_policy: DeletionPolicy,
    /// `spec.merge`: merge into a Secret of another owner.
    pub merge: bool,
    pub observed_generation: Option<i64>,
    pub ready: Option<Condition>,
    /// Whether its status holds a `Stalled` or a `Reconciling` condition
    /// that is `True` (the controller writes them beside `Ready`).
    pub stalled: bool,
    pub reconciling: bool,
}

impl From<WireSealed> for CachedSealed {
    fn from(s: WireSealed) -> Self {
        let items = s
            .spec
            .encrypted_data
            .into_iter()
            .map(|(k, v)| (k.into(), Ciphertext::new(v)))
            .collect();
        let t = s.spec.template.unwrap_or_default();
        let tm = t.metadata.unwrap_or_default();
        let template = Template {
            type_: t.type_.map(Into::into),
            immutable: t.immutable,
            labels: small_map(tm.labels),
            annotations: small_map(tm.annotations),
            data: small_map(t.data),
        };
        let deletion_policy = s.spec.deletion_policy.unwrap_or_default();
        let merge = s.spec.merge.unwrap_or(false);
        let SealedSecretStatus {
            observed_generation,
            conditions,
        } = s.status.unwrap_or_default();
        CachedSealed {
            metadata: s.metadata.into(),
            items,
            template,
            deletion_policy,
            merge,
            observed_generation,
            stalled: is_true(&conditions, "Stalled"),
            reconciling: is_true(&conditions, "Reconciling"),
            ready: conditions.into_iter().find(|c| c.type_ == "Ready"),
        }
    }
}

fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

impl CachedSealed {
    /// What unsealing reads of it: the same view the API object gives.
    pub fn view(&self) -> SealedView<'_> {
        SealedView {
            namespace: self.metadata.namespace.as_deref().unwrap_or_default(),
            name: self.metadata.name.as_deref().unwrap_or_default(),
            items: self.items.iter().map(|(k, c)| (&**k, c.item())).collect(),
            type_: self.template.type_.as_deref(),
            immutable: self.template.immutable,
            labels: pairs(&self.template.labels),
            annotations: pairs(&self.template.annotations),
            template_data: pairs(&self.template.data),
        }
    }

    /// Bytes of ciphertext held: what unsealing it costs, roughly.
    pub fn sealed_bytes(&self) -> usize {
        self.items.iter().map(|(_, c)| c.size()).sum()
    }
}

/// A compact cached type is the Kubernetes resource `$full` (same kind,
/// group, version and URL), keeping only part of it.
macro_rules! resource_as {
    ($compact:ty, $full:ty) => {
        impl Resource for $compact {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind(dt: &()) -> Cow<'_, str> {
                <$full>::kind(dt)
            }
            fn group(dt: &()) -> Cow<'_, str> {
                <$full>::group(dt)
            }
            fn version(dt: &()) -> Cow<'_, str> {
                <$full>::version(dt)
            }
            fn plural(dt: &()) -> Cow<'_, str> {
                <$full>::plural(dt)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

resource_as!(CachedSealed, coffer_core::SealedSecret);

/// Key of the salted digests: random per process, so a digest says nothing
/// outside it.
static SALT: LazyLock<[u8; 32]> = LazyLock::new(|| {
    let mut s = [0u8; 32];
    getrandom::getrandom(&mut s).expect("the operating system has no randomness");
    s
});

/// Salted digest of everything of a Secret that the controller writes: data,
/// type, immutability, labels, annotations and owner references. Two Secrets
/// with equal digests need no write.
pub fn secret_digest(s: &Secret) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(*SALT);
    crate::keys::attest::hash_secret(&mut h, s, None);
    h.finalize().into()
}

/// Salted digest of what merging writes into a Secret of another owner:
/// the owned label, the [`MERGED_KEYS_ANNOTATION`] list and the values of
/// the keys it names. The Secret's other keys and metadata do not count.
pub fn merge_digest(s: &Secret) -> [u8; 32] {
    let annotation = s
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MERGED_KEYS_ANNOTATION));
    let label = s.metadata.labels.as_ref().and_then(|l| l.get(OWNED_LABEL));
    let mut h = Sha256::new();
    h.update(*SALT);
    h.update(b"merge");
    for part in [label, annotation] {
        let part = part.map_or(&b""[..], |p| p.as_bytes());
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let data = s.data.as_ref();
    for key in merged_keys(annotation.map(String::as_str)) {
        let value = data
            .and_then(|d| d.get(&*key))
            .map_or(&[][..], |v| &v.0[..]);
        h.update((key.len() as u64).to_be_bytes());
        h.update(key.as_bytes());
        h.update((value.len() as u64).to_be_bytes());
        h.update(value);
    }
    h.finalize().into()
}

/// The keys a [`MERGED_KEYS_ANNOTATION`] lists.
pub fn merged_keys(annotation: Option<&str>) -> Box<[Box<str>]> {
    annotation
        .into_iter()
        .flat_map(|a| a.split(','))
        .filter(|k| !k.is_empty())
        .map(Into::into)
        .collect()
}

/// What merging needs to know of a Secret annotated
/// `coffer.dev/merge: "true"` by its owner; kept only for such Secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeTarget {
    /// Every key of the Secret (names, no values): a key the SealedSecret
    /// did not write before is never overwritten.
    pub keys: Box<[Box<str>]>,
    /// The keys Coffer wrote there ([`MERGED_KEYS_ANNOTATION`]).
    pub merged: Box<[Box<str>]>,
    /// [`merge_digest`] of the Secret.
    pub digest: [u8; 32],
}

/// The metadata of an owned Secret that the cache reads: what the digest
/// covers and what identifies it; `managedFields` is skipped unread.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSecretMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
}

/// A Secret as the API sends it, as far as [`OwnedSecret`] reads it.
#[derive(Deserialize)]
struct WireSecret {
    #[serde(default)]
    metadata: WireSecretMeta,
    #[serde(rename = "type")]
    type_: Option<String>,
    immutable: Option<bool>,
    data: Option<BTreeMap<String, ByteString>>,
}

impl From<WireSecret> for OwnedSecret {
    fn from(s: WireSecret) -> Self {
        let m = s.metadata;
        OwnedSecret::from(Secret {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                labels: m.labels,
                annotations: m.annotations,
                owner_references: m.owner_references,
                ..Default::default()
            },
            type_: s.type_,
            immutable: s.immutable,
            data: s.data,
            ..Default::default()
        })
    }
}

/// A Secret the controller owns, as it caches it: no values, only a digest.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "WireSecret")]
pub struct OwnedSecret {
    /// Name, namespace, uid and resourceVersion only.
    pub metadata: ObjectMeta,
    /// uid of the controller owner reference, if any.
    pub controller_uid: Option<Box<str>>,
    pub type_: Option<Box<str>>,
    pub immutable: bool,
    /// Annotated `coffer.dev/managed: "true"`, or made by bitnami's
    /// SealedSecret of its name: a SealedSecret of its name may take it over.
    pub adoptable: bool,
    /// [`KEPT_FOR_ANNOTATION`]: the uid of the SealedSecret that keeps it
    /// (`deletionPolicy: Keep`).
    pub kept_for: Option<Box<str>>,
    /// Set when its owner annotated it `coffer.dev/merge: "true"`.
    pub merge: Option<Box<MergeTarget>>,
    /// Annotated `sealedsecrets.bitnami.com/managed: "true"`: a bitnami
    /// SealedSecret of its name may take it over (`--bitnami`).
    pub bitnami_managed: bool,
    /// Controlled by the Coffer SealedSecret of its name (which may be
    /// gone, its Secret awaiting the garbage collector): the bitnami
    /// SealedSecret of that name leaves it alone (`--bitnami`).
    pub coffer_controlled: bool,
    pub digest: [u8; 32],
    /// Its [`UNSEALED_ANNOTATION`] as read, not yet verified (the watch
    /// verifies it into `attested`).
    pub claim: Option<Box<Claim>>,
    /// Its [`UNSEALED_ANNOTATION`], verified by this controller's keys.
    pub attested: Option<Attested>,
}

impl From<Secret> for OwnedSecret {
    fn from(mut s: Secret) -> Self {
        let digest = secret_digest(&s);
        let claim = crate::keys::attest::claim(&s).map(Box::new);
        let annotation = |name: &str| {
            s.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(name))
                .map(String::as_str)
        };
        let merge = (annotation(MERGE_ANNOTATION) == Some("true")).then(|| {
            Box::new(MergeTarget {
                keys: s
                    .data
                    .iter()
                    .flat_map(|d| d.keys())
                    .map(|k| k.as_str().into())
                    .collect(),
                merged: merged_keys(annotation(MERGED_KEYS_ANNOTATION)),
                digest: merge_digest(&s),
            })
        });
        let kept_for = annotation(KEPT_FOR_ANNOTATION).map(Into::into);
        coffer_core::wipe::secret(&mut s);
        let m = s.metadata;
        let annotated = |a: &str| {
            m.annotations
                .as_ref()
                .and_then(|m| m.get(a))
                .is_some_and(|v| v == "true")
        };
        let bitnami_managed = annotated(coffer_core::bitnami::MANAGED_ANNOTATION);
        let controller = m
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true));
        // The migration hand-over: a Secret made by bitnami's SealedSecret
        // of the same name is taken over by Coffer's SealedSecret of that
        // name (docs/migration.md). Whoever may create one in the namespace
        // may also edit bitnami's, so this grants nothing new.
        let from_bitnami = controller.as_ref().is_some_and(|o| {
            o.api_version.starts_with("bitnami.com/")
                && o.kind == "SealedSecret"
                && Some(&o.name) == m.name.as_ref()
        });
        let adoptable = annotated(MANAGED_ANNOTATION) || from_bitnami;
        let coffer_controlled = controller.as_ref().is_some_and(|o| {
            o.api_version.starts_with("coffer.dev/")
                && o.kind == "SealedSecret"
                && Some(&o.name) == m.name.as_ref()
        });
        let controller_uid = controller.map(|o| o.uid.into());
        OwnedSecret {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                ..Default::default()
            },
            controller_uid,
            type_: s.type_.map(Into::into),
            immutable: s.immutable.unwrap_or(false),
            adoptable,
            kept_for,
            merge,
            bitnami_managed,
            coffer_controlled,
            digest,
            claim,
            attested: None,
        }
    }
}

resource_as!(OwnedSecret, Secret);

/// The last successful unseal of one SealedSecret: while its generation,
/// the key epoch and its Secret's digest are unchanged, reconciling it again
/// (after its own status write or Secret write echoes back, a resync, a new
/// key) needs no decryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub generation: Option<i64>,
    pub key_epoch: u64,
    pub items: usize,
    pub digest: [u8; 32],
    /// The keys without which some value would not have opened
    /// (crate::keys::users).
    pub needs: KeySet,
}

/// The last refusal of one SealedSecret. While its generation, the key
/// epoch and the reason are unchanged, reconciling it again (its own status
/// write echoing back, a resync, a key added that does not help) reaches
/// the same refusal: that is not a new one, so it is neither counted nor
/// logged again. The decision itself is always made afresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub generation: Option<i64>,
    pub key_epoch: u64,
    pub reason: coffer_core::reason::Reason,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("app".into()),
                labels: Some([("a".to_string(), "1".to_string())].into()),
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
            type_: Some("Opaque".into()),
            data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_digest_covers_everything_the_controller_writes() {
        let base = secret_digest(&secret());
        assert_eq!(base, secret_digest(&secret()));
        type Change = Box<dyn Fn(&mut Secret)>;
        let mut changes: Vec<Change> = vec![
            Box::new(|s| {
                s.data
                    .as_mut()
                    .unwrap()
                    .get_mut("password")
                    .unwrap()
                    .0
                    .push(b'!')
            }),
            Box::new(|s| {
                s.data
                    .as_mut()
                    .unwrap()
                    .insert("user".into(), ByteString(vec![]));
            }),
            Box::new(|s| s.type_ = Some("kubernetes.io/tls".into())),
            Box::new(|s| s.immutable = Some(true)),
            Box::new(|s| {
                s.metadata
                    .labels
                    .as_mut()
                    .unwrap()
                    .insert("a".into(), "2".into());
            }),
            Box::new(|s| s.metadata.annotations = Some([("n".into(), "".into())].into())),
            Box::new(|s| s.metadata.owner_references.as_mut().unwrap()[0].uid = "u2".into()),
            Box::new(|s| s.metadata.owner_references.as_mut().unwrap()[0].controller = None),
            // The boundary between key and value is part of the digest.
            Box::new(|s| {
                s.data = Some([("passwordh".to_string(), ByteString(b"unter2".to_vec()))].into())
            }),
        ];
        for (i, change) in changes.drain(..).enumerate() {
            let mut s = secret();
            change(&mut s);
            assert_ne!(secret_digest(&s), base, "change {i} not seen");
        }
        // What the API server fills in does not count.
        let mut s = secret();
        s.metadata.resource_version = Some("7".into());
        s.metadata.uid = Some("x".into());
        assert_eq!(secret_digest(&s), base);
    }

    /// What merging reads of a Secret of another owner: its key names, the
    /// keys Coffer wrote, and a digest of only those; the owner's own keys
    /// and metadata do not count, so their changes need no write.
    #[test]
    fn a_secret_opened_to_merging_is_read_for_merging_only() {
        let merged = || {
            let mut s = secret();
            s.metadata.owner_references = None;
            s.metadata.annotations = Some(
                [
                    (MERGE_ANNOTATION.to_string(), "true".to_string()),
                    (MERGED_KEYS_ANNOTATION.to_string(), "password".to_string()),
                ]
                .into(),
            );
            s.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert(OWNED_LABEL.into(), "db".into());
            s.data
                .as_mut()
                .unwrap()
                .insert("theirs".into(), ByteString(b"x".to_vec()));
            s
        };
        let o = OwnedSecret::from(merged());
        let m = o.merge.as_deref().unwrap();
        assert_eq!(&*m.keys, [Box::from("password"), Box::from("theirs")]);
        assert_eq!(&*m.merged, [Box::from("password")]);
        assert_eq!(m.digest, merge_digest(&merged()));
        assert!(o.controller_uid.is_none() && o.kept_for.is_none());
        assert!(!format!("{o:?}").contains("hunter2"));

        let mut theirs_changed = merged();
        let data = theirs_changed.data.as_mut().unwrap();
        data.insert("theirs".into(), ByteString(b"y".to_vec()));
        data.insert("more".into(), ByteString(b"z".to_vec()));
        theirs_changed
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("a".into(), "9".into());
        assert_eq!(merge_digest(&theirs_changed), merge_digest(&merged()));
        let mut ours_changed = merged();
        ours_changed
            .data
            .as_mut()
            .unwrap()
            .insert("password".into(), ByteString(b"other".to_vec()));
        assert_ne!(merge_digest(&ours_changed), merge_digest(&merged()));

        // Without the owner's annotation nothing is read for merging; a
        // kept Secret names its SealedSecret.
        let mut kept = secret();
        kept.metadata.owner_references = None;
        kept.metadata.annotations =
            Some([(KEPT_FOR_ANNOTATION.to_string(), "u1".to_string())].into());
        let o = OwnedSecret::from(kept);
        assert!(o.merge.is_none());
        assert_eq!(o.kept_for.as_deref(), Some("u1"));
    }

    #[test]
    fn an_owned_secret_keeps_no_values() {
        let o = OwnedSecret::from(secret());
        assert_eq!(o.controller_uid.as_deref(), Some("u1"));
        assert_eq!(o.digest, secret_digest(&secret()));
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn an_owned_secret_parsed_from_the_api_has_the_digest_of_the_secret() {
        let mut json = serde_json::to_value(secret()).unwrap();
        json["metadata"]["uid"] = "s1".into();
        json["metadata"]["resourceVersion"] = "42".into();
        json["metadata"]["managedFields"] = serde_json::json!([{"manager": "coffer-controller",
            "operation": "Update", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:password": {}}}}]);
        let o: OwnedSecret = serde_json::from_value(json).unwrap();
        assert_eq!(o.digest, secret_digest(&secret()));
        assert_eq!(o.controller_uid.as_deref(), Some("u1"));
        assert_eq!(o.metadata.uid.as_deref(), Some("s1"));
        assert_eq!(o.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(o.type_.as_deref(), Some("Opaque"));
        // A label the controller did not write changes the digest.
        let mut other = serde_json::to_value(secret()).unwrap();
        other["metadata"]["labels"]["b"] = "2".into();
        let o: OwnedSecret = serde_json::from_value(other).unwrap();
        assert_ne!(o.digest, secret_digest(&secret()));
    }

    #[test]
    fn a_cached_sealed_secret_reencodes_to_the_same_text() {
        let json = serde_json::json!({
            "apiVersion": "coffer.dev/v1alpha1",
            "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": "app", "uid": "u1", "generation": 2,
                         "labels": {"x": "y"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                         "managedFields": [{"manager": "kubectl", "operation": "Update",
                           "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {".": {}}}}]},
            "spec": {"encryptedData": {"a": "aGVsbG8=", "b": "not base64!"},
                     "template": {"type": "Opaque", "metadata": {"labels": {"l": "1"}}}},
            "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True",
              "reason": "Unsealed", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        });
        let c: CachedSealed = serde_json::from_value(json).unwrap();
        assert_eq!(c.metadata.generation, Some(2));
        assert!(c.metadata.labels.is_none());
        assert!(c.metadata.annotations.is_none());
        assert!(c.metadata.managed_fields.is_none());
        assert!(matches!(&c.items[0].1, Ciphertext::Bytes(b) if &b[..] == b"hello"));
        assert!(matches!(&c.items[1].1, Ciphertext::Text(t) if &**t == "not base64!"));
        assert_eq!(c.view().labels, [("l", "1")]);
        assert_eq!(
            c.ready.as_ref().map(|r| r.reason.as_str()),
            Some("Unsealed")
        );
        assert_eq!(c.observed_generation, Some(2));
    }
}
