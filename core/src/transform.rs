//! Secret manifest -> SealedSecret (the CLI), and SealedSecret + key ring ->
//! the desired Secret (the controller and `coffer recover`).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use zeroize::Zeroizing;

use crate::api::{
    DEFAULT_SECRET_TYPE, KEPT_FOR_ANNOTATION, OWNED_LABEL, SealedSecret, SealedSecretSpec,
    SecretTemplate, TemplateMetadata,
};
use crate::manifest::SecretManifest;
use crate::reason::Reason;
use crate::template::{self, TemplateError};
use coffer_format::envelope::{self, Location, OpenError, Scope, SealError};
use coffer_format::key::{KeyId, PublicKey};
use coffer_format::keyring::Keyring;

/// Annotations never copied from a manifest: they would carry the
/// plaintext (kubectl's last-applied copy) or state of another object.
pub const DROPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
];

/// Why a Secret manifest could not be sealed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealSecretError {
    /// Neither the manifest nor the command line names a namespace.
    #[error(
        "document {index}: the Secret has no namespace; give one with -n or in metadata.namespace"
    )]
    NoNamespace {
        /// The document's position in the input, from 1.
        index: usize,
    },
    /// The manifest names another namespace than the one asked for.
    #[error("document {index}: the Secret says namespace {manifest:?} but {given:?} was asked for")]
    NamespaceConflict {
        /// The document's position in the input, from 1.
        index: usize,
        /// The manifest's `metadata.namespace`.
        manifest: String,
        /// The namespace asked for.
        given: String,
    },
    /// One item could not be sealed.
    #[error("document {index} ({namespace}/{name}) item {key:?}: {source}")]
    Item {
        /// The document's position in the input, from 1.
        index: usize,
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The item's key.
        key: String,
        /// Why it could not be sealed.
        source: Box<SealError>,
    },
}

/// Seals every item of a Secret manifest. `namespace` is the namespace asked
/// for on the command line (or from the kubeconfig); the manifest's own
/// namespace wins when only one is set, and a conflict is an error.
pub fn seal_secret(
    manifest: &SecretManifest,
    namespace: Option<&str>,
    namespace_is_explicit: bool,
    scope: Scope,
    recipients: &[PublicKey],
) -> Result<SealedSecret, SealSecretError> {
    let index = manifest.index;
    let name = manifest.metadata.name.clone().unwrap_or_default();
    let ns = match (manifest.metadata.namespace.as_deref(), namespace) {
        (Some(m), Some(g)) if m != g && namespace_is_explicit => {
            return Err(SealSecretError::NamespaceConflict {
                index,
                manifest: m.into(),
                given: g.into(),
            });
        }
        (Some(m), _) => m.to_string(),
        (None, Some(g)) => g.to_string(),
        (None, None) => return Err(SealSecretError::NoNamespace { index }),
    };
    let mut encrypted = BTreeMap::new();
    for (key, value) in &manifest.data {
        let at = Location {
            namespace: &ns,
            name: &name,
            key,
        };
        let sealed = envelope::seal(&value.0, scope, at, recipients).map_err(|source| {
            SealSecretError::Item {
                index,
                namespace: ns.clone(),
                name: name.clone(),
                key: key.clone(),
                source: Box::new(source),
            }
        })?;
        encrypted.insert(key.clone(), sealed);
    }
    let mut annotations = manifest.metadata.annotations.clone().unwrap_or_default();
    for a in DROPPED_ANNOTATIONS {
        annotations.remove(*a);
    }
    let labels = manifest.metadata.labels.clone().unwrap_or_default();
    let template = SecretTemplate {
        type_: manifest.type_.clone(),
        immutable: manifest.immutable,
        metadata: (!labels.is_empty() || !annotations.is_empty()).then_some(TemplateMetadata {
            labels,
            annotations,
        }),
        data: BTreeMap::new(),
    };
    let mut sealed = SealedSecret::new(
        &name,
        SealedSecretSpec {
            encrypted_data: encrypted,
            template: (template != SecretTemplate::default()).then_some(template),
            ..Default::default()
        },
    );
    sealed.metadata.namespace = Some(ns);
    Ok(sealed)
}

/// The scopes of the values a merge keeps: each scope of `existing`'s
/// items that `replaced` does not name, with those items. A value that
/// cannot be read has no scope to keep (inspect reports it). Merging seals
/// the new items with the one scope kept, so that one SealedSecret never
/// mixes scopes; none kept leaves the choice free, several is refused.
pub fn kept_scopes(
    existing: &SealedSecret,
    replaced: impl Fn(&str) -> bool,
) -> Vec<(Scope, Vec<&str>)> {
    let mut kept: Vec<(Scope, Vec<&str>)> = Vec::new();
    for (item, value) in &existing.spec.encrypted_data {
        if replaced(item) {
            continue;
        }
        let Ok((envelope, _)) = envelope::inspect(value) else {
            continue;
        };
        match kept.iter_mut().find(|(s, _)| *s == envelope.scope) {
            Some((_, items)) => items.push(item.as_str()),
            None => kept.push((envelope.scope, vec![item.as_str()])),
        }
    }
    kept
}

/// `--merge-into`: the existing SealedSecret with the newly sealed items
/// replaced or added. Every other ciphertext stays byte for byte; the
/// template is taken from the new manifest only where it sets something.
pub fn merge_into(existing: &SealedSecret, update: &SealedSecret) -> SealedSecret {
    let mut merged = existing.clone();
    for (k, v) in &update.spec.encrypted_data {
        merged.spec.encrypted_data.insert(k.clone(), v.clone());
    }
    if let Some(t) = &update.spec.template {
        let m = merged.spec.template.get_or_insert_with(Default::default);
        if t.type_.is_some() {
            m.type_ = t.type_.clone();
        }
        if t.immutable.is_some() {
            m.immutable = t.immutable;
        }
        if let Some(meta) = &t.metadata {
            let mm = m.metadata.get_or_insert_with(Default::default);
            mm.labels.extend(meta.labels.clone());
            mm.annotations.extend(meta.annotations.clone());
        }
        m.data.extend(t.data.clone());
    }
    if update.spec.deletion_policy.is_some() {
        merged.spec.deletion_policy = update.spec.deletion_policy;
    }
    if update.spec.merge.is_some() {
        merged.spec.merge = update.spec.merge;
    }
    merged
}

/// The Secret a SealedSecret should produce, with plaintext in buffers that
/// are wiped on drop. `Debug` never shows values.
pub struct DesiredSecret {
    /// The Secret's namespace: the SealedSecret's.
    pub namespace: String,
    /// The Secret's name: the SealedSecret's.
    pub name: String,
    /// The Secret's type ([`DEFAULT_SECRET_TYPE`] when the template names
    /// none).
    pub type_: String,
    /// The Secret's `immutable`, from the template.
    pub immutable: Option<bool>,
    /// The template's labels.
    pub labels: BTreeMap<String, String>,
    /// The template's annotations.
    pub annotations: BTreeMap<String, String>,
    /// Item key -> value, wiped on drop.
    pub data: BTreeMap<String, Zeroizing<Vec<u8>>>,
    /// The keys of the ring that opened the values, sorted, each once
    /// (empty when the values did not come from Coffer's format).
    pub opened_by: Vec<KeyId>,
    /// The keys of the ring without which some value would not open here:
    /// each opened a value whose header names no other usable key of the
    /// ring. Sorted, each once; a subset of `opened_by`.
    pub needs: Vec<KeyId>,
}

impl fmt::Debug for DesiredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesiredSecret")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("type", &self.type_)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One item that did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("item {key:?}: {error}")]
pub struct ItemError {
    /// The item's key.
    pub key: String,
    /// Why its value did not open.
    pub error: OpenError,
}

/// Most items one SealedSecret may hold. A Secret of 1 MiB rarely holds
/// more than a few dozen; the cap bounds the work one object can ask for.
pub const MAX_ITEMS: usize = 1024;

/// Every item that did not open; the Secret is not written at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub struct UnsealError {
    /// Every item that did not open, in item-key order.
    pub items: Vec<ItemError>,
    /// Set when the object held more than [`MAX_ITEMS`] items: none was
    /// opened.
    pub too_many_items: Option<usize>,
}

impl UnsealError {
    /// The status reason: that of the first failing item.
    pub fn reason(&self) -> Reason {
        if self.too_many_items.is_some() {
            return Reason::Malformed;
        }
        self.items
            .first()
            .map_or(Reason::Malformed, |i| Reason::from(&i.error))
    }
}

impl fmt::Display for UnsealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(count) = self.too_many_items {
            return write!(f, "{count} items; at most {MAX_ITEMS} are accepted");
        }
        let parts: Vec<String> = self.items.iter().map(|i| i.to_string()).collect();
        f.write_str(&parts.join("; "))
    }
}

/// What unsealing reads of a SealedSecret: where it was found, its sealed
/// items and the template of its Secret. Built from the API object
/// ([`SealedSecret::view`]) or from the controller's compact cache, so both
/// unseal through the one [`unseal`].
pub struct SealedView<'a> {
    /// The SealedSecret's namespace.
    pub namespace: &'a str,
    /// The SealedSecret's name.
    pub name: &'a str,
    /// Item key -> sealed value, in item-key order.
    pub items: Vec<(&'a str, SealedItem<'a>)>,
    /// `spec.template.type`; [`DEFAULT_SECRET_TYPE`] when unset.
    pub type_: Option<&'a str>,
    /// `spec.template.immutable`.
    pub immutable: Option<bool>,
    /// `spec.template.metadata.labels`.
    pub labels: Vec<(&'a str, &'a str)>,
    /// `spec.template.metadata.annotations`.
    pub annotations: Vec<(&'a str, &'a str)>,
    /// `spec.template.data`: Secret key -> template, rendered by
    /// [`render_templates`] (never by [`unseal`], so that `/v1/verify`
    /// says only whether the values open, and no template can turn it
    /// into an oracle on them).
    pub template_data: Vec<(&'a str, &'a str)>,
}

fn pairs(m: Option<&BTreeMap<String, String>>) -> Vec<(&str, &str)> {
    m.into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

impl SealedSecret {
    /// What [`unseal`] reads of this SealedSecret.
    pub fn view(&self) -> SealedView<'_> {
        let template = self.spec.template.as_ref();
        let meta = template.and_then(|t| t.metadata.as_ref());
        SealedView {
            namespace: self.metadata.namespace.as_deref().unwrap_or_default(),
            name: self.metadata.name.as_deref().unwrap_or_default(),
            items: self
                .spec
                .encrypted_data
                .iter()
                .map(|(k, v)| (k.as_str(), SealedItem::Base64(v)))
                .collect(),
            type_: template.and_then(|t| t.type_.as_deref()),
            immutable: template.and_then(|t| t.immutable),
            labels: pairs(meta.map(|m| &m.labels)),
            annotations: pairs(meta.map(|m| &m.annotations)),
            template_data: pairs(template.map(|t| &t.data)),
        }
    }
}

/// Renders `spec.template.data` over the unsealed items of `desired` and
/// puts each rendered value under its key, replacing an item of the same
/// name. The controller and `coffer recover` call it after [`unseal`].
pub fn render_templates(
    sealed: &SealedView<'_>,
    desired: &mut DesiredSecret,
) -> Result<(), TemplateError> {
    let rendered = template::render(&sealed.template_data, &desired.data)?;
    desired.data.extend(rendered);
    Ok(())
}

/// Unseals a SealedSecret: opens every item with the ring, refusing any
/// whose binding does not allow where it was found, and builds the Secret
/// its template describes. All or nothing: the error lists every item that
/// did not open. The controller, `/v1/verify` and `coffer recover` all
/// unseal through this one function.
pub fn unseal(sealed: &SealedView<'_>, ring: &Keyring) -> Result<DesiredSecret, UnsealError> {
    let count = sealed.items.len();
    if count > MAX_ITEMS {
        return Err(UnsealError {
            items: Vec::new(),
            too_many_items: Some(count),
        });
    }
    let mut data = BTreeMap::new();
    let mut failed = Vec::new();
    let mut opened_by = Vec::new();
    let mut needs = Vec::new();
    for &(key, value) in &sealed.items {
        let at = Location {
            namespace: sealed.namespace,
            name: sealed.name,
            key,
        };
        let opened = match value {
            SealedItem::Base64(text) => {
                envelope::decode(text).and_then(|bytes| envelope::open_bytes_at(&bytes, at, ring))
            }
            SealedItem::Bytes(bytes) => envelope::open_bytes_at(bytes, at, ring),
        };
        match opened {
            Ok(o) => {
                opened_by.push(o.key_id);
                if o.sole_key {
                    needs.push(o.key_id);
                }
                data.insert(key.to_string(), o.value);
            }
            Err(error) => failed.push(ItemError {
                key: key.to_string(),
                error,
            }),
        }
    }
    if !failed.is_empty() {
        return Err(UnsealError {
            items: failed,
            too_many_items: None,
        });
    }
    let owned = |m: &[(&str, &str)]| -> BTreeMap<String, String> {
        m.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Ok(DesiredSecret {
        namespace: sealed.namespace.to_string(),
        name: sealed.name.to_string(),
        type_: sealed.type_.unwrap_or(DEFAULT_SECRET_TYPE).to_string(),
        immutable: sealed.immutable,
        labels: owned(&sealed.labels),
        annotations: owned(&sealed.annotations),
        data,
        opened_by: {
            opened_by.sort();
            opened_by.dedup();
            opened_by
        },
        needs: {
            needs.sort();
            needs.dedup();
            needs
        },
    })
}

/// One sealed value as stored: the base64 text of `encryptedData`, or its
/// bytes as [`envelope::decode`] returned them (the controller's cache).
#[derive(Clone, Copy)]
pub enum SealedItem<'a> {
    /// The base64 text, as `spec.encryptedData` holds it.
    Base64(&'a str),
    /// The decoded bytes.
    Bytes(&'a [u8]),
}

impl DesiredSecret {
    /// The Kubernetes Secret. With an owner (the controller) it carries the
    /// controller owner reference and the owned label; without one
    /// (`coffer recover`) it is a plain Secret. The returned object holds a
    /// copy of the plaintext: pass it to [`crate::wipe::secret`] once it has been sent.
    pub fn to_secret(&self, owner: Option<OwnerReference>) -> Secret {
        let mut labels = self.labels.clone();
        if owner.is_some() {
            labels.insert(OWNED_LABEL.into(), self.name.clone());
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: (!labels.is_empty()).then_some(labels),
                annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
                owner_references: owner.map(|o| vec![o]),
                ..Default::default()
            },
            type_: Some(self.type_.clone()),
            immutable: self.immutable,
            data: Some(
                self.data
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// The Secret of `deletionPolicy: Keep`: labelled as the controller's,
    /// with no owner reference (so it outlives its SealedSecret) and the
    /// SealedSecret's uid in [`KEPT_FOR_ANNOTATION`] instead. Wipe it like
    /// [`DesiredSecret::to_secret`]'s.
    pub fn to_kept_secret(&self, sealed_uid: &str) -> Secret {
        let mut s = self.to_secret(None);
        s.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(OWNED_LABEL.into(), self.name.clone());
        s.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(KEPT_FOR_ANNOTATION.into(), sealed_uid.into());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::read_secrets;
    use coffer_format::key::SecretKey;

    const SECRET: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
  uid: 1234
  resourceVersion: "99"
  labels: {app: shop}
  annotations:
    note: keep
    kubectl.kubernetes.io/last-applied-configuration: '{"stringData":{"password":"hunter2"}}'
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: x, uid: y}]
type: kubernetes.io/basic-auth
immutable: true
stringData:
  password: hunter2
data:
  username: YWRtaW4=
"#;

    fn sealed() -> (SealedSecret, Keyring) {
        let key = SecretKey::generate();
        let m = &read_secrets(SECRET).unwrap()[0];
        let s = seal_secret(m, None, false, Scope::Strict, &[key.public().clone()]).unwrap();
        (s, Keyring::from_keys([key]))
    }

    #[test]
    fn sealing_keeps_template_and_drops_server_fields() {
        let (s, _) = sealed();
        let y = serde_saphyr::to_string(&s).unwrap();
        assert!(!y.contains("last-applied"));
        assert!(!y.contains("resourceVersion") && !y.contains("ownerReferences"));
        assert!(!y.contains("hunter2"));
        let t = s.spec.template.unwrap();
        assert_eq!(t.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(t.immutable, Some(true));
        assert_eq!(t.metadata.unwrap().annotations["note"], "keep");
    }

    #[test]
    fn desired_secret_has_values_and_template() {
        let (s, ring) = sealed();
        let d = unseal(&s.view(), &ring).unwrap();
        assert_eq!(d.data["password"].as_slice(), b"hunter2");
        assert_eq!(d.data["username"].as_slice(), b"admin");
        let secret = d.to_secret(None);
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(secret.metadata.labels.unwrap()["app"], "shop");
        assert!(!format!("{d:?}").contains("hunter2"));
    }

    /// Finding 5: the work one object can ask for is bounded. An object
    /// with more than MAX_ITEMS items is refused before any is opened.
    #[test]
    fn more_than_max_items_are_refused_before_any_is_opened() {
        let (s, ring) = sealed();
        let value = s.spec.encrypted_data["password"].clone();
        let mut many = s.clone();
        many.spec.encrypted_data = (0..=MAX_ITEMS)
            .map(|i| (format!("k{i}"), value.clone()))
            .collect();
        let e = unseal(&many.view(), &ring).unwrap_err();
        assert_eq!(e.too_many_items, Some(MAX_ITEMS + 1));
        assert!(e.items.is_empty(), "nothing was opened");
        assert_eq!(e.reason(), "Malformed");
        assert_eq!(e.to_string(), "1025 items; at most 1024 are accepted");
    }

    #[test]
    fn namespace_conflict_is_an_error() {
        let m = &read_secrets(SECRET).unwrap()[0];
        let k = SecretKey::generate();
        let e =
            seal_secret(m, Some("dev"), true, Scope::Strict, &[k.public().clone()]).unwrap_err();
        assert!(matches!(e, SealSecretError::NamespaceConflict { .. }));
    }

    #[test]
    fn renamed_sealed_secret_is_refused_per_item() {
        let (mut s, ring) = sealed();
        s.metadata.name = Some("db2".into());
        let e = unseal(&s.view(), &ring).unwrap_err();
        assert_eq!(e.items.len(), 2);
        assert_eq!(e.reason(), "ScopeMismatch");
        assert!(
            e.to_string().contains(
                "sealed for shop/db item \"password\", found at shop/db2 item \"password\""
            )
        );
    }

    #[test]
    fn merge_keeps_untouched_ciphertexts() {
        let (s, _) = sealed();
        let mut update = s.clone();
        update.spec.encrypted_data.remove("username");
        update
            .spec
            .encrypted_data
            .insert("password".into(), "NEW".into());
        let merged = merge_into(&s, &update);
        assert_eq!(
            merged.spec.encrypted_data["username"],
            s.spec.encrypted_data["username"]
        );
        assert_eq!(merged.spec.encrypted_data["password"], "NEW");
        // What only the file says (no manifest can) is kept.
        let mut file = s.clone();
        file.spec.deletion_policy = Some(crate::api::DeletionPolicy::Keep);
        file.spec.merge = Some(true);
        file.spec.template.as_mut().unwrap().data =
            BTreeMap::from([("url".to_string(), "{{ password }}".to_string())]);
        let merged = merge_into(&file, &update);
        assert_eq!(merged.spec.deletion_policy, file.spec.deletion_policy);
        assert_eq!(merged.spec.merge, Some(true));
        assert_eq!(merged.spec.template.unwrap().data["url"], "{{ password }}");
    }
}
