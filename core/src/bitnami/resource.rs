//! bitnami's SealedSecret (`bitnami.com/v1alpha1`) as Coffer reads it, its
//! CRD for clusters that never ran bitnami, and reading it from a document.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{API_VERSION, BitnamiScope};

/// bitnami's SealedSecret, as far as Coffer reads it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "bitnami.com",
    version = "v1alpha1",
    kind = "SealedSecret",
    root = "BitnamiSealedSecret",
    plural = "sealedsecrets",
    namespaced,
    status = "BitnamiStatus",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[0].message"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[0].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiSpec {
    /// Item key -> sealed value (base64 of the RSA and AES-GCM parts).
    #[serde(default)]
    pub encrypted_data: BTreeMap<String, String>,
    /// What is copied onto the Secret besides its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<BitnamiTemplate>,
    /// The pre-0.9 whole-Secret blob; not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// `spec.template` of bitnami's SealedSecret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct BitnamiTemplate {
    /// Labels and annotations of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BitnamiTemplateMetadata>,
    /// Secret type, `Opaque` when unset.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Whether the Secret is immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Go templates over the values; not supported here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, Option<String>>>,
}

/// The labels and annotations of `spec.template.metadata`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct BitnamiTemplateMetadata {
    /// Labels of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `status` as bitnami's controller writes it: one `Synced` condition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The `Synced` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<BitnamiCondition>,
}

/// bitnami's condition (not the Kubernetes `Condition`: it has
/// `lastUpdateTime` and no `observedGeneration`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiCondition {
    /// `Synced`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When the condition was last written (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// Why not synced, in one word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For people; never a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A CRD for bitnami's SealedSecret, for a cluster that has bitnami's
/// SealedSecrets in git but never ran bitnami (disaster recovery onto a new
/// cluster). Where bitnami ran, keep bitnami's own CRD. `spec` and the
/// template keep every field they are given (nothing is pruned), as
/// bitnami's CRD does, so objects written under either CRD read the same.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = BitnamiSealedSecret::crd();
    for version in &mut crd.spec.versions {
        let schema = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .expect("the derived CRD has a schema");
        // The title is the Rust type's name; the kind is SealedSecret.
        schema.title = Some("SealedSecret".into());
        let spec = schema
            .properties
            .as_mut()
            .and_then(|p| p.get_mut("spec"))
            .expect("the derived schema has a spec property");
        spec.x_kubernetes_preserve_unknown_fields = Some(true);
        if let Some(template) = spec.properties.as_mut().and_then(|p| p.get_mut("template")) {
            template.x_kubernetes_preserve_unknown_fields = Some(true);
            if let Some(meta) = template
                .properties
                .as_mut()
                .and_then(|p| p.get_mut("metadata"))
            {
                meta.x_kubernetes_preserve_unknown_fields = Some(true);
            }
        }
    }
    crd
}

/// [`crd`] as YAML, exactly as `deploy/bitnami/crd.yaml` holds it.
pub fn crd_yaml() -> String {
    format!(
        "# Generated by `coffer-controller crd --bitnami`; do not edit.\n# Only for clusters without bitnami's own CRD (docs/migration.md).\n{}",
        serde_saphyr::to_string(&crd()).expect("the CRD serializes")
    )
}

/// Whether a document is bitnami's SealedSecret.
pub fn is_bitnami_sealed_secret(doc: &serde_json::Value) -> bool {
    let field = |f: &str| doc.get(f).and_then(|v| v.as_str()).unwrap_or("");
    field("kind") == "SealedSecret" && field("apiVersion") == API_VERSION
}

/// Reads a bitnami SealedSecret document; `Ok(None)` for other documents.
pub fn read_sealed_secret(doc: serde_json::Value) -> Result<Option<BitnamiSealedSecret>, String> {
    if !is_bitnami_sealed_secret(&doc) {
        return Ok(None);
    }
    // serde names the field and may quote what it found: a name or a
    // ciphertext, never a plaintext.
    let s: BitnamiSealedSecret = serde_json::from_value(doc)
        .map_err(|e| format!("not a valid bitnami SealedSecret: {e}"))?;
    if s.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err("the bitnami SealedSecret has no metadata.name".into());
    }
    Ok(Some(s))
}

impl BitnamiSealedSecret {
    /// Namespace (empty when the object has none), name and scope.
    pub fn place(&self) -> (&str, &str, BitnamiScope) {
        (
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default(),
            BitnamiScope::of(&self.metadata),
        )
    }

    /// The controller owner reference bitnami's controller puts on its
    /// Secret.
    pub fn owner_ref(
        &self,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
        Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: API_VERSION.into(),
                kind: "SealedSecret".into(),
                name: self.metadata.name.clone()?,
                uid: self.metadata.uid.clone()?,
                controller: Some(true),
                block_owner_deletion: None,
            },
        )
    }
}
