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
    /// It has no name, so it names no Secret.
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
    /// Labels of the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the Secret.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
