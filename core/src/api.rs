//! The `SealedSecret` custom resource (`coffer.dev/v1alpha1`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of Coffer's resources.
pub const GROUP: &str = "coffer.dev";
/// Annotation that lets the controller adopt a Secret it did not create.
pub const MANAGED_ANNOTATION: &str = "coffer.dev/managed";
/// Label the controller puts on every Secret it owns; its watch selects it.
pub const OWNED_LABEL: &str = "coffer.dev/sealed-secret";
/// Annotation with which the owner of an existing Secret lets a
/// SealedSecret of the same name (with `spec.merge: true`) merge its items
/// into it. Without it, merging is refused (`MergeRefused`).
pub const MERGE_ANNOTATION: &str = "coffer.dev/merge";
/// Annotation the controller keeps on a Secret it merges into: the item
/// keys it wrote there, comma-separated, so that an item removed from the
/// SealedSecret is removed from the Secret and every other key is left
/// alone.
pub const MERGED_KEYS_ANNOTATION: &str = "coffer.dev/merged-keys";
/// Annotation on a Secret kept by `deletionPolicy: Keep` (which has no
/// owner reference): the uid of the SealedSecret that wrote it, so that
/// SealedSecret, and no other, keeps managing it.
pub const KEPT_FOR_ANNOTATION: &str = "coffer.dev/sealed-secret-uid";
/// Annotation the controller puts on every Secret it writes: the
/// generation of the SealedSecret it was unsealed from, the number of
/// items, the keys that opened them, and a MAC over all that, the
/// SealedSecret's uid and the Secret's content, keyed by a key derived from
/// the private key that opened the values. A restarted controller trusts a
/// Secret whose MAC verifies instead of opening its SealedSecret again
/// (docs/decisions.md, "Persisted outcomes").
pub const UNSEALED_ANNOTATION: &str = "coffer.dev/unsealed";

/// The type of a Secret whose template names none, as in Kubernetes.
pub const DEFAULT_SECRET_TYPE: &str = "Opaque";

/// The `apiVersion` of a SealedSecret this build reads and writes.
pub const API_VERSION: &str = "coffer.dev/v1alpha1";

/// Why a document could not be read as a SealedSecret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadSealedError {
    /// A `coffer.dev` SealedSecret of a version this build does not know.
    #[error("apiVersion {0} is not one this version of Coffer reads (it reads {API_VERSION})")]
    UnknownVersion(String),
    /// Its fields do not fit the SealedSecret schema; says which, without
    /// quoting values.
    #[error("not a valid SealedSecret: {0}")]
    Invalid(String),
    #[error("the SealedSecret has no metadata.name")]
    NoName,
}

/// Whether a document is a `coffer.dev` SealedSecret, of any version (so
/// an unknown version is refused, not skipped). Other kinds, and other
/// groups' SealedSecrets (bitnami's), are not.
pub fn is_sealed_secret(doc: &serde_json::Value) -> bool {
    let field = |f: &str| doc.get(f).and_then(|v| v.as_str()).unwrap_or("");
    field("kind") == "SealedSecret" && field("apiVersion").starts_with("coffer.dev/")
}

/// The one SealedSecret reader: the CLI's files, the controller's HTTP
/// bodies and its replies all read through it. `Ok(None)` when the
/// document is not a `coffer.dev` SealedSecret at all.
pub fn read_sealed_secret(doc: serde_json::Value) -> Result<Option<SealedSecret>, ReadSealedError> {
    if !is_sealed_secret(&doc) {
        return Ok(None);
    }
    let api = doc.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("");
    if api != API_VERSION {
        return Err(ReadSealedError::UnknownVersion(api.to_string()));
    }
    // serde_json names the field and may quote what it found there: in a
    // SealedSecret that is a name or a ciphertext, never a plaintext.
    let s: SealedSecret =
        serde_json::from_value(doc).map_err(|e| ReadSealedError::Invalid(e.to_string()))?;
    if s.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(ReadSealedError::NoName);
    }
    Ok(Some(s))
}

/// A Secret sealed for one or more clusters, safe to commit to git.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "coffer.dev",
    version = "v1alpha1",
    kind = "SealedSecret",
    plural = "sealedsecrets",
    shortname = "sealed",
    namespaced,
    status = "SealedSecretStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretSpec {
    /// Item key -> sealed value (standard base64 of an age v1 ciphertext).
    #[serde(default)]
    pub encrypted_data: BTreeMap<String, String>,
    /// What is copied onto the Secret besides its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,
    /// What happens to the Secret when the SealedSecret is deleted:
    /// `Delete` (the default: the Secret is owned by the SealedSecret and
    /// garbage-collected with it) or `Keep` (no owner reference: the Secret
    /// stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Merge the items into an existing Secret of the same name that
    /// belongs to someone else and is annotated `coffer.dev/merge: "true"`
    /// by them, instead of owning the whole Secret. Only the keys this
    /// SealedSecret writes are managed; the Secret's other keys, type,
    /// labels, annotations and owner are left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<bool>,
}

/// What happens to the Secret when its SealedSecret is deleted: `Delete`
/// (the default: the Secret is owned by the SealedSecret and
/// garbage-collected with it) or `Keep` (no owner reference: the Secret
/// stays).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// The Secret is deleted with its SealedSecret (owner reference).
    #[default]
    Delete,
    /// The Secret stays when its SealedSecret is deleted.
    Keep,
}

impl SealedSecretSpec {
    /// `spec.deletionPolicy`, `Delete` when unset.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy.unwrap_or_default()
    }
}

/// The non-secret parts of the Secret to create.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Secret type, `Opaque` when unset.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Whether the Secret is immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Labels and annotations of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// Secret keys whose values are rendered from MiniJinja templates over
    /// the unsealed items (`{{ password }}`, `{{ items["tls.crt"] }}`); a
    /// key here replaces an item of the same name. Plain text: never put a
    /// secret here. See docs/parity.md.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

/// Labels and annotations copied onto the Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state, written by the controller.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` with reason `Unsealed`, or the reason it is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// The bytes a condition's message may hold, as `metav1.Condition`'s own
/// schema says; the controller writes at most 4 KiB.
pub const MAX_CONDITION_MESSAGE: u64 = 32_768;

/// `metav1.Condition`'s schema with the bounds its Go type declares
/// (k8s-openapi's schema has none): an API server refuses a status whose
/// message is longer, whoever writes it.
fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut item = <Condition as JsonSchema>::json_schema(generator);
    for (field, max) in [
        ("message", MAX_CONDITION_MESSAGE),
        ("reason", 1024),
        ("type", 316),
    ] {
        if let Some(p) = item
            .pointer_mut(&format!("/properties/{field}"))
            .and_then(|v| v.as_object_mut())
        {
            p.insert("maxLength".into(), max.into());
        }
    }
    schemars::json_schema!({ "type": "array", "items": item })
}

impl SealedSecret {
    /// The `Ready` condition, if the controller has written one.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
    }
}

/// `status.observedGeneration` of a SealedSecret the controller has not
/// acted on yet: the CRD's default for `status`, as Flux's own CRDs do.
/// kstatus (Flux's health checks) reads an `observedGeneration` that
/// differs from `metadata.generation` as InProgress, so a SealedSecret is
/// not reported healthy before it is unsealed.
pub const UNOBSERVED_GENERATION: i64 = -1;

/// The CRD: the derived schema, with `status` defaulting to
/// `{observedGeneration: -1}` ([`UNOBSERVED_GENERATION`]). The API server
/// applies the default when it reads an object without a status, so every
/// reader, `kubectl get -o yaml` included, sees it as not yet observed.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON;
    use kube::CustomResourceExt;
    let mut crd = SealedSecret::crd();
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("status"))
            .expect("the derived schema has a status property");
        status.default = Some(JSON(serde_json::json!({
            "observedGeneration": UNOBSERVED_GENERATION
        })));
    }
    crd
}

/// The CRD as YAML, exactly as `crds/sealedsecret.yaml` holds it.
pub fn crd_yaml() -> String {
    let crd = crd();
    format!(
        "# Generated by `coffer-controller crd`; do not edit.\n{}",
        serde_saphyr::to_string(&crd).expect("the CRD serializes")
    )
}

/// Names shared by the controller and the CLI for the key ring, which lives
/// as Secrets in the controller's namespace.
pub mod ring {
    /// Secret type of a sealing key.
    pub const KEY_SECRET_TYPE: &str = "coffer.dev/sealing-key";
    /// Label holding the key id's short form (a label value holds at most
    /// 63 characters). For selecting and for people only: the controller
    /// and the CLI read the key itself and compare whole ids.
    pub const KEY_ID_LABEL: &str = "coffer.dev/key-id";
    /// Label with the key's state, one of [`super::KeyStatus`]'s words;
    /// a key without it is usable.
    pub const KEY_STATE_LABEL: &str = "coffer.dev/key-state";
    /// Annotation with the key's creation time (RFC 3339), for people. No
    /// decision reads it: a writable clock value cannot choose the active
    /// key or stop renewal. A time in the future makes the controller
    /// ignore the key Secret.
    pub const CREATED_ANNOTATION: &str = "coffer.dev/created";
    /// Annotation holding the key's place in the ring, a counter the
    /// controller owns: each key it creates gets one more than the highest
    /// in the ring, and `coffer keys activate` does the same. The usable
    /// key with the highest sequence is active.
    pub const SEQUENCE_ANNOTATION: &str = "coffer.dev/sequence";
    /// Annotation `coffer keys activate` writes: when and by whom an
    /// open-only key was made to seal. Renewal counts from this time when
    /// it is later than the Secret's creation (and not in the future).
    pub const ACTIVATED_ANNOTATION: &str = "coffer.dev/activated-at";
    /// Annotation with the user who activated the key (for audit).
    pub const ACTIVATED_BY_ANNOTATION: &str = "coffer.dev/activated-by";
    /// Annotation a key admin puts on the *active* key's Secret to ask for
    /// a new key now (its value, the time of the request, is for people).
    /// The request is fulfilled once a key with a higher sequence exists:
    /// no clocks are compared, so a CLI with a skewed clock works too.
    pub const ROTATION_ANNOTATION: &str = "coffer.dev/rotation-requested";
    /// Data key of the private identity inside a key Secret.
    pub const IDENTITY_KEY: &str = "identity";
    /// ConfigMap that publishes the active key's recipients file.
    pub const RECIPIENTS_CONFIGMAP: &str = "coffer-recipients";
    /// Key of the recipients file inside that ConfigMap.
    pub const RECIPIENTS_KEY: &str = "recipients.txt";
}

/// What a key in the ring may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// Opens values; the usable key with the highest sequence also seals.
    Usable,
    /// Opens values, never seals: what `coffer keys restore` brings back,
    /// until an admin runs `coffer keys activate`.
    OpenOnly,
    /// Opens nothing; values sealed only to it are refused as `KeyRetired`.
    Retired,
}

impl KeyStatus {
    /// The word of the state label (`None`: no label, usable).
    pub fn label(self) -> Option<&'static str> {
        match self {
            KeyStatus::Usable => None,
            KeyStatus::OpenOnly => Some("open-only"),
            KeyStatus::Retired => Some("retired"),
        }
    }

    /// The state a label says. An unknown word is treated as retired: the
    /// safe reading of a state this version does not know.
    pub fn from_label(label: Option<&str>) -> Self {
        match label {
            None | Some("usable") => KeyStatus::Usable,
            Some("open-only") => KeyStatus::OpenOnly,
            Some(_) => KeyStatus::Retired,
        }
    }

    /// The word people read.
    pub fn as_str(self) -> &'static str {
        self.label().unwrap_or("usable")
    }
}

/// The name of the Secret that holds a key: the whole id, so two keys
/// never share a name.
pub fn key_secret_name(id: &coffer_format::KeyId) -> String {
    format!("coffer-key-{id}")
}

/// The Secret that holds one sealing key, as the controller creates it and
/// `coffer keys restore` brings it back. It holds the private key: send it
/// with [`crate::wipe::WireSecret`] and wipe it with
/// [`crate::wipe::secret`] once sent.
pub fn key_secret(
    key: &coffer_format::SecretKey,
    created: Option<jiff::Timestamp>,
    status: KeyStatus,
    sequence: Option<u64>,
) -> k8s_openapi::api::core::v1::Secret {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    let id = key.id();
    let mut labels = BTreeMap::from([(ring::KEY_ID_LABEL.to_string(), id.short())]);
    if let Some(state) = status.label() {
        labels.insert(ring::KEY_STATE_LABEL.into(), state.into());
    }
    let mut annotations = BTreeMap::from([(
        "coffer.dev/public-key".to_string(),
        key.public().to_string(),
    )]);
    if let Some(c) = created {
        annotations.insert(ring::CREATED_ANNOTATION.into(), c.to_string());
    }
    if let Some(n) = sequence {
        annotations.insert(ring::SEQUENCE_ANNOTATION.into(), n.to_string());
    }
    let identity = key.to_secret_string();
    k8s_openapi::api::core::v1::Secret {
        metadata: ObjectMeta {
            name: Some(key_secret_name(&id)),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some(ring::KEY_SECRET_TYPE.into()),
        data: Some(BTreeMap::from([(
            ring::IDENTITY_KEY.to_string(),
            ByteString(identity.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

/// One key Secret as the controller and the CLI read it. Every decision
/// comes from the key itself, the state label, the controller's sequence
/// counter and the API server's `creationTimestamp`; the `created`
/// annotation is only shown.
#[derive(Clone, Debug)]
pub struct RingKey {
    pub key: coffer_format::SecretKey,
    pub secret_name: String,
    pub status: KeyStatus,
    /// Place in the ring ([`ring::SEQUENCE_ANNOTATION`]); 0 when unset.
    pub sequence: u64,
    /// When the API server created the Secret.
    pub created: Option<jiff::Timestamp>,
    /// When the key says it was made (the annotation), for people.
    pub created_claimed: Option<jiff::Timestamp>,
    /// When an admin activated it, if one did.
    pub activated: Option<jiff::Timestamp>,
    /// Whether a key admin asked for a new key to replace this one.
    pub rotation_requested: bool,
    /// Why the Secret was not taken at its word (a time in the future),
    /// for a warning; such a key is open-only.
    pub suspect: Option<String>,
}

impl RingKey {
    /// The key id.
    pub fn id(&self) -> coffer_format::KeyId {
        self.key.id()
    }

    /// Since when this key has sealed: renewal is due a period after it.
    pub fn sealing_since(&self) -> jiff::Timestamp {
        let created = self.created.unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        self.activated.map_or(created, |a| a.max(created))
    }

    /// The order of the ring: newest (highest sequence, then latest
    /// server-side creation, then id) first.
    pub fn newest_first(a: &RingKey, b: &RingKey) -> std::cmp::Ordering {
        (b.sequence, b.created, b.id()).cmp(&(a.sequence, a.created, a.id()))
    }
}

/// The active key of a ring: the usable key that comes first in
/// [`RingKey::newest_first`] order. Open-only and retired keys never seal.
pub fn active_key(keys: &[RingKey]) -> Option<&RingKey> {
    keys.iter()
        .filter(|k| k.status == KeyStatus::Usable)
        .min_by(|a, b| RingKey::newest_first(a, b))
}

/// Reads one key Secret strictly. The error names the Secret and the
/// problem, never the identity.
pub fn read_key_secret(
    secret: &k8s_openapi::api::core::v1::Secret,
    now: jiff::Timestamp,
) -> Result<RingKey, String> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    if secret.type_.as_deref() != Some(ring::KEY_SECRET_TYPE) {
        return Err(format!(
            "key Secret {name} is not of type {}",
            ring::KEY_SECRET_TYPE
        ));
    }
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(ring::IDENTITY_KEY))
        .ok_or_else(|| format!("key Secret {name} has no data.{}", ring::IDENTITY_KEY))?;
    let text = std::str::from_utf8(&data.0)
        .map_err(|_| format!("key Secret {name}: data.{} is not text", ring::IDENTITY_KEY))?;
    let key = coffer_format::SecretKey::parse(text).map_err(|_| {
        format!(
            "key Secret {name}: data.{} is not an age identity (X25519 or mlkem768x25519)",
            ring::IDENTITY_KEY
        )
    })?;
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    if let Some(label) = labels.get(ring::KEY_ID_LABEL)
        && label != &key.id().short()
    {
        return Err(format!(
            "key Secret {name} is labelled {}={label} but holds key {}",
            ring::KEY_ID_LABEL,
            key.id().short()
        ));
    }
    let empty = std::collections::BTreeMap::new();
    let annotations = secret.metadata.annotations.as_ref().unwrap_or(&empty);
    // Times written into the Secret are claims. One in the future is
    // refused: it is not used, and the key is demoted to open-only (it
    // keeps opening values; it never seals), with a warning.
    let mut suspect = None;
    let mut time = |what: &str| -> Result<Option<jiff::Timestamp>, String> {
        let Some(text) = annotations.get(what) else {
            return Ok(None);
        };
        let t: jiff::Timestamp = text
            .parse()
            .map_err(|_| format!("key Secret {name}: {what} is not a time"))?;
        if coffer_format::backup::is_future(t, now) {
            suspect = Some(format!(
                "key Secret {name}: {what}={t} is in the future; the key is treated as open-only (it opens values and never seals) until the annotation is corrected"
            ));
            return Ok(None);
        }
        Ok(Some(t))
    };
    let created_claimed = time(ring::CREATED_ANNOTATION)?;
    let activated = time(ring::ACTIVATED_ANNOTATION)?;
    let sequence = match annotations.get(ring::SEQUENCE_ANNOTATION) {
        None => 0,
        Some(n) => n.parse::<u64>().map_err(|_| {
            format!(
                "key Secret {name}: {} is not a whole number",
                ring::SEQUENCE_ANNOTATION
            )
        })?,
    };
    let mut status = KeyStatus::from_label(labels.get(ring::KEY_STATE_LABEL).map(String::as_str));
    if suspect.is_some() && status == KeyStatus::Usable {
        status = KeyStatus::OpenOnly;
    }
    Ok(RingKey {
        key,
        secret_name: name,
        status,
        suspect,
        sequence,
        created: secret.metadata.creation_timestamp.as_ref().map(|t| t.0),
        created_claimed,
        activated,
        rotation_requested: annotations.contains_key(ring::ROTATION_ANNOTATION),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_format::SecretKey;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn one_reader_takes_coffer_sealed_secrets_skips_other_kinds_and_refuses_unknown_versions() {
        let doc = |api: &str, kind: &str, name: Option<&str>| {
            serde_json::json!({
                "apiVersion": api, "kind": kind,
                "metadata": {"name": name, "namespace": "app"},
                "spec": {"encryptedData": {"password": "AAAA"}}
            })
        };
        let s = read_sealed_secret(doc(API_VERSION, "SealedSecret", Some("db")))
            .unwrap()
            .unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("db"));
        for (api, kind) in [
            ("bitnami.com/v1alpha1", "SealedSecret"),
            ("v1", "Secret"),
            (API_VERSION, "ConfigMap"),
        ] {
            assert!(
                matches!(read_sealed_secret(doc(api, kind, Some("db"))), Ok(None)),
                "{api} {kind}"
            );
        }
        assert_eq!(
            read_sealed_secret(doc("coffer.dev/v9", "SealedSecret", Some("db"))).unwrap_err(),
            ReadSealedError::UnknownVersion("coffer.dev/v9".into())
        );
        assert_eq!(
            read_sealed_secret(doc(API_VERSION, "SealedSecret", None)).unwrap_err(),
            ReadSealedError::NoName
        );
        let mut bad = doc(API_VERSION, "SealedSecret", Some("db"));
        bad["spec"]["encryptedData"] = serde_json::json!(["not", "a", "map"]);
        assert!(matches!(
            read_sealed_secret(bad),
            Err(ReadSealedError::Invalid(_))
        ));
    }

    fn ring_key(status: KeyStatus, sequence: Option<u64>, created: &str) -> RingKey {
        let mut s = key_secret(&SecretKey::generate(), None, status, sequence);
        s.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        read_key_secret(&s, jiff::Timestamp::now()).unwrap()
    }

    /// The active key is chosen by the controller's counter, then by the
    /// API server's clock; open-only and retired keys never seal.
    #[test]
    fn active_key_is_the_usable_key_with_the_highest_sequence() {
        let old = ring_key(KeyStatus::Usable, Some(1), "2026-01-01T00:00:00Z");
        let new = ring_key(KeyStatus::Usable, Some(2), "2025-01-01T00:00:00Z");
        let restored = ring_key(KeyStatus::OpenOnly, Some(9), "2026-06-01T00:00:00Z");
        let retired = ring_key(KeyStatus::Retired, Some(10), "2026-06-01T00:00:00Z");
        let keys = vec![old.clone(), restored, retired, new.clone()];
        assert_eq!(active_key(&keys).unwrap().id(), new.id());
        // Without sequences, the server's creation time decides.
        let a = ring_key(KeyStatus::Usable, None, "2026-01-01T00:00:00Z");
        let b = ring_key(KeyStatus::Usable, None, "2026-02-01T00:00:00Z");
        assert_eq!(active_key(&[a, b.clone()]).unwrap().id(), b.id());
        assert!(
            active_key(&[ring_key(
                KeyStatus::OpenOnly,
                Some(5),
                "2026-01-01T00:00:00Z"
            )])
            .is_none()
        );
    }

    /// A time in the future is refused: never used, and the key is demoted
    /// to open-only, so a forged or mistaken date can neither keep a key
    /// active nor postpone renewal; the key still opens values.
    #[test]
    fn future_times_demote_the_key_to_open_only() {
        let key = SecretKey::generate();
        let future: jiff::Timestamp = "2099-01-01T00:00:00Z".parse().unwrap();
        let mut s = key_secret(&key, Some(future), KeyStatus::Usable, Some(1));
        s.metadata.creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        let k = read_key_secret(&s, jiff::Timestamp::now()).unwrap();
        assert_eq!(k.status, KeyStatus::OpenOnly);
        assert_eq!(k.created_claimed, None);
        let why = k.suspect.unwrap();
        assert!(why.contains("in the future"), "{why}");
        assert!(!why.contains("AGE-SECRET-KEY"));
        assert!(active_key(&[read_key_secret(&s, jiff::Timestamp::now()).unwrap()]).is_none());

        let mut s = key_secret(&key, None, KeyStatus::Usable, Some(1));
        s.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ring::ACTIVATED_ANNOTATION.into(), future.to_string());
        s.metadata.creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        let k = read_key_secret(&s, jiff::Timestamp::now()).unwrap();
        assert_eq!(k.activated, None);
        assert_eq!(k.status, KeyStatus::OpenOnly);
        assert_eq!(k.sealing_since(), "2026-01-01T00:00:00Z".parse().unwrap());
    }

    /// Renewal counts from when the API server created the key Secret; the
    /// `created` a key claims (past or not) moves nothing.
    #[test]
    fn renewal_counts_from_the_server_creation_time() {
        let key = SecretKey::generate();
        let claimed: jiff::Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
        let mut s = key_secret(&key, Some(claimed), KeyStatus::Usable, Some(1));
        s.metadata.creation_timestamp = Some(Time("2026-06-01T00:00:00Z".parse().unwrap()));
        let k = read_key_secret(&s, "2026-07-01T00:00:00Z".parse().unwrap()).unwrap();
        assert_eq!(k.sealing_since(), "2026-06-01T00:00:00Z".parse().unwrap());
        assert_eq!(k.created_claimed, Some(claimed));
    }

    #[test]
    fn key_secret_round_trips_and_names_the_whole_id() {
        let key = SecretKey::generate();
        let s = key_secret(&key, None, KeyStatus::OpenOnly, Some(7));
        assert_eq!(
            s.metadata.name.as_deref(),
            Some(format!("coffer-key-{}", key.id()).as_str())
        );
        let back = read_key_secret(&s, jiff::Timestamp::now()).unwrap();
        assert_eq!(back.id(), key.id());
        assert_eq!(back.status, KeyStatus::OpenOnly);
        assert_eq!(back.sequence, 7);
        // A label that names another key is refused.
        let mut s = s;
        s.metadata.labels.as_mut().unwrap().insert(
            ring::KEY_ID_LABEL.into(),
            SecretKey::generate().id().short(),
        );
        assert!(read_key_secret(&s, jiff::Timestamp::now()).is_err());
    }
}
