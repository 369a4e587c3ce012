//! bitnami sealed-secrets, for moving a cluster to Coffer: their
//! `bitnami.com/v1alpha1` SealedSecret, their RSA sealing keys, and opening
//! their values (open only: Coffer never seals to an RSA key).
//!
//! A bitnami value is `base64(u16be(len(rsa)) || rsa || aes)`: `rsa` is a
//! 32-byte AES-256 session key wrapped with RSA-OAEP (SHA-256, MGF1-SHA-256)
//! whose label binds the scope (strict: `"<namespace>/<name>"`,
//! namespace-wide: `"<namespace>"`, cluster-wide: empty); `aes` is the value
//! sealed with AES-256-GCM under that key and an all-zero nonce (each
//! session key seals one value). RSA comes from AWS-LC (aws-lc-rs), whose
//! private-key operations are constant time, not from the `rsa` crate
//! (RUSTSEC-2023-0071); docs/decisions.md says why.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::api::{DEFAULT_SECRET_TYPE, SecretTemplate, TemplateMetadata};
use crate::transform::DesiredSecret;
use coffer_format::envelope::{self, Location, Scope};
use coffer_format::key::PublicKey;

/// API group of bitnami's SealedSecret.
pub const GROUP: &str = "bitnami.com";
/// The `apiVersion` of bitnami's SealedSecret.
pub const API_VERSION: &str = "bitnami.com/v1alpha1";
/// Label of bitnami's key Secrets (value `active` for keys in use).
pub const KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";
/// Where bitnami's controller keeps its keys by default.
pub const DEFAULT_KEY_NAMESPACE: &str = "kube-system";
/// Annotation (on the SealedSecret) for the namespace-wide scope.
pub const NAMESPACE_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/namespace-wide";
/// Annotation (on the SealedSecret) for the cluster-wide scope.
pub const CLUSTER_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/cluster-wide";
/// Annotation on an existing Secret that lets bitnami's SealedSecret
/// overwrite and adopt it.
pub const MANAGED_ANNOTATION: &str = "sealedsecrets.bitnami.com/managed";
/// Type of the Secrets in Coffer's key namespace that hold imported bitnami
/// keys. They only open: Coffer never seals to them.
pub const KEY_SECRET_TYPE: &str = "coffer.dev/bitnami-key";
/// Data key of the PEM private key, in bitnami's Secrets and in Coffer's.
pub const TLS_KEY: &str = "tls.key";
/// Label on an imported key Secret with the key's fingerprint (short).
pub const KEY_ID_LABEL: &str = "coffer.dev/bitnami-key-id";

/// Largest value accepted: a Secret holds at most 1 MiB.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;
const SESSION_KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// Most keys tried per value: bitnami values carry no key id, so each key
/// costs one RSA private-key operation (~3.5 ms at 4096 bits).
pub const MAX_KEYS: usize = 64;

// --- the resource ---------------------------------------------------------

/// bitnami's SealedSecret, as far as Coffer reads it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "bitnami.com",
    version = "v1alpha1",
    kind = "SealedSecret",
    plural = "sealedsecrets",
    namespaced,
    status = "BitnamiStatus",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[0].message"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[0].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiSpec {
    #[serde(default)]
    pub encrypted_data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<BitnamiTemplate>,
    /// The pre-0.9 whole-Secret blob; not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// `spec.template` of bitnami's SealedSecret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct BitnamiTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BitnamiTemplateMetadata>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Go templates over the values; not supported here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, Option<String>>>,
}

/// The labels and annotations of `spec.template.metadata`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
pub struct BitnamiTemplateMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `status` as bitnami's controller writes it: one `Synced` condition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<BitnamiCondition>,
}

/// bitnami's condition (not the Kubernetes `Condition`: it has
/// `lastUpdateTime` and no `observedGeneration`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitnamiCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    let mut crd = SealedSecret::crd();
    for version in &mut crd.spec.versions {
        let spec = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
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
pub fn read_sealed_secret(doc: serde_json::Value) -> Result<Option<SealedSecret>, String> {
    if !is_bitnami_sealed_secret(&doc) {
        return Ok(None);
    }
    // serde names the field and may quote what it found: a name or a
    // ciphertext, never a plaintext.
    let s: SealedSecret = serde_json::from_value(doc)
        .map_err(|e| format!("not a valid bitnami SealedSecret: {e}"))?;
    if s.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err("the bitnami SealedSecret has no metadata.name".into());
    }
    Ok(Some(s))
}

// --- scopes ---------------------------------------------------------------

/// bitnami's three scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BitnamiScope {
    Strict,
    NamespaceWide,
    ClusterWide,
}

impl BitnamiScope {
    /// The scope bitnami's controller uses: the annotations on the
    /// SealedSecret's own metadata (never the template's), cluster-wide
    /// first.
    pub fn of(meta: &ObjectMeta) -> Self {
        let on = |a: &str| {
            meta.annotations
                .as_ref()
                .and_then(|m| m.get(a))
                .is_some_and(|v| v == "true")
        };
        if on(CLUSTER_WIDE_ANNOTATION) {
            BitnamiScope::ClusterWide
        } else if on(NAMESPACE_WIDE_ANNOTATION) {
            BitnamiScope::NamespaceWide
        } else {
            BitnamiScope::Strict
        }
    }

    /// The RSA-OAEP label that binds a value to this scope at a place.
    pub fn label(self, namespace: &str, name: &str) -> Vec<u8> {
        match self {
            BitnamiScope::Strict => format!("{namespace}/{name}").into_bytes(),
            BitnamiScope::NamespaceWide => namespace.as_bytes().to_vec(),
            BitnamiScope::ClusterWide => Vec::new(),
        }
    }

    /// The Coffer scope that allows exactly the same places.
    pub fn coffer(self) -> Scope {
        match self {
            BitnamiScope::Strict => Scope::Strict,
            BitnamiScope::NamespaceWide => Scope::Namespace,
            BitnamiScope::ClusterWide => Scope::Cluster,
        }
    }

    /// bitnami's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            BitnamiScope::Strict => "strict",
            BitnamiScope::NamespaceWide => "namespace-wide",
            BitnamiScope::ClusterWide => "cluster-wide",
        }
    }

    const ALL: [BitnamiScope; 3] = [
        BitnamiScope::Strict,
        BitnamiScope::NamespaceWide,
        BitnamiScope::ClusterWide,
    ];
}

impl fmt::Display for BitnamiScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// --- keys -----------------------------------------------------------------

/// Why a bitnami key was not taken. Never quotes key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no PEM private key (RSA PRIVATE KEY or PRIVATE KEY) found")]
    NoPem,
    #[error("the PEM block is not valid base64")]
    BadPem,
    #[error("not an RSA private key of 2048 to 8192 bits")]
    NotRsa,
}

/// One imported bitnami key: it opens bitnami values, it never seals.
pub struct BitnamiKey {
    key: OaepPrivateDecryptingKey,
    fingerprint: [u8; 32],
    /// The key as PKCS#8 DER, to store it again.
    pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for BitnamiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitnamiKey")
            .field("fingerprint", &self.short_id())
            .field("bits", &self.key.key_size_bits())
            .finish_non_exhaustive()
    }
}

impl Clone for BitnamiKey {
    fn clone(&self) -> Self {
        BitnamiKey::from_pkcs8(&self.pkcs8).expect("a key that parsed once parses again")
    }
}

impl BitnamiKey {
    /// From the PEM of `tls.key`: PKCS#1 (`RSA PRIVATE KEY`, what bitnami
    /// writes) or PKCS#8 (`PRIVATE KEY`).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_block(text)?;
        match label.as_str() {
            "RSA PRIVATE KEY" => Self::from_pkcs8(&pkcs1_to_pkcs8(&der)),
            "PRIVATE KEY" => Self::from_pkcs8(&der),
            _ => Err(KeyError::NoPem),
        }
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let private = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| KeyError::NotRsa)?;
        let public = private.public_key();
        let spki = public.as_der().map_err(|_| KeyError::NotRsa)?;
        let fingerprint: [u8; 32] = Sha256::digest(spki.as_ref()).into();
        let pkcs8 = Zeroizing::new(
            private
                .as_der()
                .map_err(|_| KeyError::NotRsa)?
                .as_ref()
                .to_vec(),
        );
        let key = OaepPrivateDecryptingKey::new(private).map_err(|_| KeyError::NotRsa)?;
        Ok(BitnamiKey {
            key,
            fingerprint,
            pkcs8,
        })
    }

    /// A new key (tests, and bring-your-own-key experiments).
    pub fn generate(bits: usize) -> Self {
        use aws_lc_rs::rsa::KeySize;
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            8192 => KeySize::Rsa8192,
            _ => KeySize::Rsa4096,
        };
        let private = PrivateDecryptingKey::generate(size).expect("RSA key generation");
        let der = private.as_der().expect("PKCS#8");
        Self::from_pkcs8(der.as_ref()).expect("a generated key parses")
    }

    /// SHA-256 of the public key's SubjectPublicKeyInfo DER, in hex.
    pub fn id(&self) -> String {
        hex(&self.fingerprint)
    }

    /// The first 16 hex digits of [`BitnamiKey::id`], for people and labels.
    pub fn short_id(&self) -> String {
        hex(&self.fingerprint[..8])
    }

    /// Size in bits.
    pub fn bits(&self) -> usize {
        self.key.key_size_bits()
    }

    /// The private key as a PKCS#8 PEM (`PRIVATE KEY`), wiped on drop.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*self.pkcs8));
        let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 64));
        out.push_str("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END PRIVATE KEY-----\n");
        out
    }

    /// The public key as SubjectPublicKeyInfo DER (tests seal with it).
    pub fn public_der(&self) -> Vec<u8> {
        let private = PrivateDecryptingKey::from_pkcs8(&self.pkcs8).expect("parsed before");
        private
            .public_key()
            .as_der()
            .expect("SPKI")
            .as_ref()
            .to_vec()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first PEM block of `text`: its label and its bytes (wiped on drop).
fn pem_block(text: &str) -> Result<(String, Zeroizing<Vec<u8>>), KeyError> {
    let mut label = None;
    let mut body = Zeroizing::new(String::new());
    for line in text.lines() {
        let line = line.trim();
        match &label {
            None => {
                if let Some(l) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    label = Some(l.to_string());
                }
            }
            Some(l) => {
                if line == format!("-----END {l}-----") {
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(body.as_bytes())
                        .map_err(|_| KeyError::BadPem)?;
                    return Ok((l.clone(), Zeroizing::new(der)));
                }
                body.push_str(line);
            }
        }
    }
    Err(KeyError::NoPem)
}

/// DER length octets.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Wraps a PKCS#1 RSAPrivateKey into a PKCS#8 PrivateKeyInfo (RFC 5208):
/// `SEQUENCE { INTEGER 0, SEQUENCE { rsaEncryption, NULL }, OCTET STRING }`.
/// AWS-LC parses the inner key; this only adds the envelope.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Zeroizing<Vec<u8>> {
    const VERSION_AND_ALGORITHM: [u8; 18] = [
        0x02, 0x01, 0x00, // INTEGER 0
        0x30, 0x0d, // SEQUENCE
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, // rsaEncryption
        0x05, 0x00, // NULL
    ];
    let mut octets = Vec::with_capacity(pkcs1.len() + 8);
    octets.push(0x04);
    der_len(pkcs1.len(), &mut octets);
    let inner_len = VERSION_AND_ALGORITHM.len() + octets.len() + pkcs1.len();
    let mut out = Zeroizing::new(Vec::with_capacity(inner_len + 8));
    out.push(0x30);
    der_len(inner_len, &mut out);
    out.extend_from_slice(&VERSION_AND_ALGORITHM);
    out.extend_from_slice(&octets);
    out.extend_from_slice(pkcs1);
    out
}

/// The keys of a bitnami key backup (`kubectl get secret -l
/// sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`: a List, or one
/// Secret per document, YAML or JSON), or of a bare PEM file. Returns each
/// key with the name of the Secret it came from.
pub fn read_key_backup(text: &str) -> Result<Vec<(String, BitnamiKey)>, String> {
    if text.contains("-----BEGIN") && !text.contains("tls.key") {
        let key = BitnamiKey::from_pem(text).map_err(|e| e.to_string())?;
        return Ok(vec![("pem".into(), key)]);
    }
    // Parser messages may quote the input near the error, which holds
    // private keys here: say only which syntax failed.
    let docs: Vec<serde_json::Value> = if text.trim_start().starts_with('{') {
        vec![
            serde_json::from_str(text)
                .map_err(|_| "the key backup is not valid JSON".to_string())?,
        ]
    } else {
        serde_saphyr::from_multiple(text)
            .map_err(|_| "the key backup is not valid YAML".to_string())?
    };
    let mut out = Vec::new();
    for doc in docs {
        let items = match doc.get("kind").and_then(|k| k.as_str()) {
            Some("List") | Some("SecretList") => doc
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default(),
            _ => vec![doc],
        };
        for item in items {
            if item.get("kind").and_then(|k| k.as_str()) != Some("Secret") {
                continue;
            }
            let shown = shown_name(
                item.get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str()),
            );
            // serde's message quotes the value it found where another type
            // belongs, and a backup broken by an edit may have the key
            // there (a `data` or `labels` block turned into a string):
            // name the Secret only.
            let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(item)
                .map_err(|_| {
                    format!(
                        "Secret {shown} of the backup does not parse: a field holds a value of the wrong type"
                    )
                })?;
            if let Some(key) =
                key_from_secret(&secret).map_err(|e| format!("Secret {shown}: {e}"))?
            {
                out.push((secret.metadata.name.clone().unwrap_or_default(), key));
            }
        }
    }
    if out.is_empty() {
        return Err("no bitnami key (a Secret with data.tls.key) found".into());
    }
    Ok(out)
}

/// A Secret's name as a key backup's refusals show it: only a name the API
/// server would accept (lowercase letters, digits, `-` and `.`, at most 253
/// characters), never other text of the file, which may hold a key.
fn shown_name(name: Option<&str>) -> String {
    match name {
        Some(n)
            if !n.is_empty()
                && n.len() <= 253
                && n.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                }) =>
        {
            n.to_string()
        }
        _ => "(with no valid name)".into(),
    }
}

/// The key of a Secret holding `tls.key` (bitnami's, or Coffer's imported
/// copy); `Ok(None)` when it holds none.
pub fn key_from_secret(
    secret: &k8s_openapi::api::core::v1::Secret,
) -> Result<Option<BitnamiKey>, KeyError> {
    let Some(pem) = secret.data.as_ref().and_then(|d| d.get(TLS_KEY)) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&pem.0).map_err(|_| KeyError::BadPem)?;
    BitnamiKey::from_pem(text).map(Some)
}

/// The Secret that holds an imported key in Coffer's key namespace.
pub fn key_secret(key: &BitnamiKey, from: &str) -> k8s_openapi::api::core::v1::Secret {
    use k8s_openapi::ByteString;
    let pem = key.to_pem();
    k8s_openapi::api::core::v1::Secret {
        metadata: ObjectMeta {
            name: Some(format!("coffer-bitnami-key-{}", key.short_id())),
            labels: Some(BTreeMap::from([(KEY_ID_LABEL.to_string(), key.short_id())])),
            annotations: Some(BTreeMap::from([
                ("coffer.dev/bitnami-key-fingerprint".to_string(), key.id()),
                ("coffer.dev/imported-from".to_string(), from.to_string()),
            ])),
            ..Default::default()
        },
        type_: Some(KEY_SECRET_TYPE.into()),
        data: Some(BTreeMap::from([(
            TLS_KEY.to_string(),
            ByteString(pem.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

// --- opening values -------------------------------------------------------

/// Why a bitnami value did not open. No variant carries value bytes.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("not canonical base64")]
    NotBase64,
    #[error("{len} bytes; at most {MAX_VALUE_LEN} are accepted")]
    TooLarge { len: usize },
    #[error("truncated: {len} bytes, too short for an RSA-wrapped key and an AES-GCM tag")]
    Truncated { len: usize },
    #[error("its RSA part says {declared} bytes, which no imported key has (they have {sizes})")]
    KeySizeMismatch { declared: usize, sizes: String },
    #[error("no imported bitnami key is given")]
    NoKeys,
    #[error(
        "sealed {sealed_for} for this place, but the SealedSecret asks for {found} (its annotations {NAMESPACE_WIDE_ANNOTATION} / {CLUSTER_WIDE_ANNOTATION})"
    )]
    ScopeMismatch {
        sealed_for: BitnamiScope,
        found: BitnamiScope,
    },
    #[error(
        "none of the {keys} imported bitnami key(s) opens it as {scope} at {place}: it was sealed for another place (namespace or name), or to a key that was not imported"
    )]
    NoMatchingKey {
        keys: usize,
        scope: BitnamiScope,
        place: String,
    },
    #[error("the session key is {len} bytes, not 32")]
    BadSessionKey { len: usize },
    #[error("the AES-GCM part does not authenticate: the value was altered")]
    Tampered,
}

impl OpenError {
    /// The status reason, as Coffer's own refusals name them.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::NotBase64
            | OpenError::TooLarge { .. }
            | OpenError::Truncated { .. }
            | OpenError::KeySizeMismatch { .. }
            | OpenError::BadSessionKey { .. } => "Malformed",
            OpenError::NoKeys | OpenError::NoMatchingKey { .. } => "NoMatchingKey",
            OpenError::ScopeMismatch { .. } => "ScopeMismatch",
            OpenError::Tampered => "Tampered",
        }
    }
}

/// Where a value is found: the SealedSecret's place and scope.
#[derive(Clone, Copy, Debug)]
pub struct At<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub scope: BitnamiScope,
}

/// Opens one bitnami value found `at`, with the imported keys. When no key
/// opens it for the scope its SealedSecret asks for, the other two scopes
/// at the same place are tried, to say `ScopeMismatch` instead of a bare
/// refusal (only on failure; each try is one RSA operation per key).
pub fn open(value: &str, at: At<'_>, keys: &[BitnamiKey]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if value.len() > MAX_VALUE_LEN * 4 / 3 + 4 {
        return Err(OpenError::TooLarge { len: value.len() });
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| OpenError::NotBase64)?;
    open_bytes(&raw, at, keys)
}

/// [`open`] of the decoded bytes.
pub fn open_bytes(
    raw: &[u8],
    at: At<'_>,
    keys: &[BitnamiKey],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if raw.len() > MAX_VALUE_LEN + 2 + 1024 + TAG_LEN {
        return Err(OpenError::TooLarge { len: raw.len() });
    }
    if keys.is_empty() {
        return Err(OpenError::NoKeys);
    }
    if raw.len() < 2 {
        return Err(OpenError::Truncated { len: raw.len() });
    }
    let declared = usize::from(u16::from_be_bytes([raw[0], raw[1]]));
    if raw.len() < 2 + declared + TAG_LEN {
        return Err(OpenError::Truncated { len: raw.len() });
    }
    let (rsa, aes) = raw[2..].split_at(declared);
    let sized: Vec<&BitnamiKey> = keys
        .iter()
        .take(MAX_KEYS)
        .filter(|k| k.key.key_size_bytes() == declared)
        .collect();
    if sized.is_empty() {
        let mut sizes: Vec<usize> = keys.iter().map(|k| k.key.key_size_bytes()).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let sizes = sizes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(OpenError::KeySizeMismatch { declared, sizes });
    }
    let label = at.scope.label(at.namespace, at.name);
    let session = match unwrap_session(rsa, &label, &sized) {
        Some(s) => s,
        None => {
            for other in BitnamiScope::ALL {
                if other == at.scope {
                    continue;
                }
                let label = other.label(at.namespace, at.name);
                if unwrap_session(rsa, &label, &sized).is_some() {
                    return Err(OpenError::ScopeMismatch {
                        sealed_for: other,
                        found: at.scope,
                    });
                }
            }
            return Err(OpenError::NoMatchingKey {
                keys: sized.len(),
                scope: at.scope,
                place: match at.scope {
                    BitnamiScope::Strict => format!("{}/{}", at.namespace, at.name),
                    BitnamiScope::NamespaceWide => format!("namespace {}", at.namespace),
                    BitnamiScope::ClusterWide => "any place".into(),
                },
            });
        }
    };
    if session.len() != SESSION_KEY_LEN {
        return Err(OpenError::BadSessionKey { len: session.len() });
    }
    let key = UnboundKey::new(&AES_256_GCM, &session).map_err(|_| OpenError::Tampered)?;
    let key = LessSafeKey::new(key);
    let mut buf = Zeroizing::new(aes.to_vec());
    let nonce = Nonce::assume_unique_for_key([0u8; NONCE_LEN]);
    let len = key
        .open_in_place(nonce, Aad::empty(), &mut buf)
        .map_err(|_| OpenError::Tampered)?
        .len();
    let mut value = Zeroizing::new(vec![0u8; len]);
    value.copy_from_slice(&buf[..len]);
    Ok(value)
}

/// The session key, from the first key whose RSA-OAEP opens `rsa` under
/// `label`.
fn unwrap_session(rsa: &[u8], label: &[u8], keys: &[&BitnamiKey]) -> Option<Zeroizing<Vec<u8>>> {
    for k in keys {
        let mut out = Zeroizing::new(vec![0u8; k.key.min_output_size()]);
        if let Ok(pt) = k
            .key
            .decrypt(&OAEP_SHA256_MGF1SHA256, rsa, &mut out, Some(label))
        {
            return Some(Zeroizing::new(pt.to_vec()));
        }
    }
    None
}

/// Seals a value the way kubeseal does: for tests, and to prove interop.
/// Coffer itself never seals to an RSA key.
pub fn seal_like_kubeseal(
    public_der: &[u8],
    value: &[u8],
    scope: BitnamiScope,
    namespace: &str,
    name: &str,
) -> String {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey};
    let public = OaepPublicEncryptingKey::new(
        PublicEncryptingKey::from_der(public_der).expect("an RSA public key"),
    )
    .expect("OAEP");
    let mut session = Zeroizing::new([0u8; SESSION_KEY_LEN]);
    SystemRandom::new().fill(&mut *session).expect("randomness");
    let mut rsa = vec![0u8; public.ciphertext_size()];
    let label = scope.label(namespace, name);
    let rsa = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, &*session, &mut rsa, Some(&label))
        .expect("OAEP encrypt")
        .to_vec();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &*session).expect("AES key"));
    let mut aes = value.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0u8; NONCE_LEN]),
        Aad::empty(),
        &mut aes,
    )
    .expect("AES-GCM");
    let mut out = Vec::with_capacity(2 + rsa.len() + aes.len());
    out.extend_from_slice(&(rsa.len() as u16).to_be_bytes());
    out.extend_from_slice(&rsa);
    out.extend_from_slice(&aes);
    base64::engine::general_purpose::STANDARD.encode(out)
}

// --- unsealing and converting ---------------------------------------------

/// Why a bitnami SealedSecret as a whole was not unsealed or converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnsealError {
    #[error(
        "spec.data (the pre-0.9 whole-Secret format) is not supported; re-seal it with kubeseal first"
    )]
    LegacyData,
    #[error("spec.template.data (Go templates over the values) is not supported by this Coffer")]
    TemplateData,
    #[error("{count} items; at most {} are accepted", crate::transform::MAX_ITEMS)]
    TooManyItems { count: usize },
    #[error("{}", .0.iter().map(|(k, e)| format!("item {k:?}: {e}")).collect::<Vec<_>>().join("; "))]
    Items(Vec<(String, OpenError)>),
}

impl UnsealError {
    /// The status reason: that of the first failing item.
    pub fn reason(&self) -> &'static str {
        match self {
            UnsealError::LegacyData | UnsealError::TemplateData => "Unsupported",
            UnsealError::TooManyItems { .. } => "Malformed",
            UnsealError::Items(items) => items.first().map_or("Malformed", |(_, e)| e.reason()),
        }
    }
}

impl SealedSecret {
    /// Namespace (empty when the object has none), name and scope.
    pub fn place(&self) -> (&str, &str, BitnamiScope) {
        (
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default(),
            BitnamiScope::of(&self.metadata),
        )
    }

    fn check_supported(&self) -> Result<(), UnsealError> {
        if self.spec.data.as_deref().is_some_and(|d| !d.is_empty()) {
            return Err(UnsealError::LegacyData);
        }
        if self
            .spec
            .template
            .as_ref()
            .and_then(|t| t.data.as_ref())
            .is_some_and(|d| !d.is_empty())
        {
            return Err(UnsealError::TemplateData);
        }
        if self.spec.encrypted_data.len() > crate::transform::MAX_ITEMS {
            return Err(UnsealError::TooManyItems {
                count: self.spec.encrypted_data.len(),
            });
        }
        Ok(())
    }

    /// Opens every item (all or nothing; the error lists every item that
    /// did not open).
    pub fn open_all(
        &self,
        keys: &[BitnamiKey],
    ) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, UnsealError> {
        self.check_supported()?;
        let (namespace, name, scope) = self.place();
        let at = At {
            namespace,
            name,
            scope,
        };
        let mut data = BTreeMap::new();
        let mut failed = Vec::new();
        for (k, v) in &self.spec.encrypted_data {
            match open(v, at, keys) {
                Ok(v) => {
                    data.insert(k.clone(), v);
                }
                Err(e) => failed.push((k.clone(), e)),
            }
        }
        if failed.is_empty() {
            Ok(data)
        } else {
            Err(UnsealError::Items(failed))
        }
    }

    /// The Secret bitnami's controller makes of this SealedSecret: the
    /// template's labels, annotations, type and immutability, name and
    /// namespace forced to the SealedSecret's.
    pub fn unseal(&self, keys: &[BitnamiKey]) -> Result<DesiredSecret, UnsealError> {
        let data = self.open_all(keys)?;
        let template = self.spec.template.clone().unwrap_or_default();
        let meta = template.metadata.unwrap_or_default();
        Ok(DesiredSecret {
            namespace: self.metadata.namespace.clone().unwrap_or_default(),
            name: self.metadata.name.clone().unwrap_or_default(),
            type_: template
                .type_
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| DEFAULT_SECRET_TYPE.into()),
            immutable: template.immutable,
            labels: meta.labels.unwrap_or_default(),
            annotations: meta.annotations.unwrap_or_default(),
            data,
            opened_by: Vec::new(),
            needs: Vec::new(),
        })
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

/// Converts a bitnami SealedSecret into a Coffer SealedSecret holding the
/// same values, sealed to `recipients` with the same scope and template.
/// No value changes its scope or place: each is sealed for exactly where
/// it opened. The object's own labels and annotations are kept.
pub fn convert(
    bitnami: &SealedSecret,
    keys: &[BitnamiKey],
    recipients: &[PublicKey],
) -> Result<crate::SealedSecret, ConvertError> {
    let values = bitnami.open_all(keys).map_err(ConvertError::Unseal)?;
    let (namespace, name, scope) = bitnami.place();
    let mut encrypted = BTreeMap::new();
    for (k, v) in &values {
        let sealed = envelope::seal(
            v,
            scope.coffer(),
            Location {
                namespace,
                name,
                key: k,
            },
            recipients,
        )
        .map_err(|e| ConvertError::Seal {
            key: k.clone(),
            error: e.to_string(),
        })?;
        encrypted.insert(k.clone(), sealed);
    }
    drop(values);
    let t = bitnami.spec.template.clone().unwrap_or_default();
    let meta = t.metadata.unwrap_or_default();
    let labels = meta.labels.unwrap_or_default();
    let annotations = meta.annotations.unwrap_or_default();
    let template = SecretTemplate {
        type_: t.type_.filter(|t| !t.is_empty()),
        immutable: t.immutable,
        metadata: (!labels.is_empty() || !annotations.is_empty()).then_some(TemplateMetadata {
            labels,
            annotations,
        }),
        // bitnami's Go templates are refused before this point.
        data: Default::default(),
    };
    let mut out = crate::SealedSecret::new(
        name,
        crate::SealedSecretSpec {
            encrypted_data: encrypted,
            template: (template != SecretTemplate::default()).then_some(template),
            // bitnami's controller gives the Secret an owner reference and
            // writes the whole Secret: the defaults.
            deletion_policy: None,
            merge: None,
        },
    );
    out.metadata.namespace = bitnami.metadata.namespace.clone();
    out.metadata.labels = bitnami.metadata.labels.clone().filter(|l| !l.is_empty());
    out.metadata.annotations = bitnami
        .metadata
        .annotations
        .clone()
        .filter(|a| !a.is_empty());
    Ok(out)
}

/// Why a bitnami SealedSecret was not converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("{0}")]
    Unseal(UnsealError),
    #[error("item {key:?}: sealing for Coffer failed: {error}")]
    Seal { key: String, error: String },
}

impl ConvertError {
    pub fn reason(&self) -> &'static str {
        match self {
            ConvertError::Unseal(e) => e.reason(),
            ConvertError::Seal { .. } => "Malformed",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use coffer_format::key::SecretKey;
    use coffer_format::keyring::Keyring;

    const PLAINTEXT: &[u8] = b"correct horse battery staple";

    /// One 2048-bit key for the whole table (generation is the slow part);
    /// the format is the same at 4096 bits, which the end-to-end test uses.
    fn key() -> &'static BitnamiKey {
        static K: OnceLock<BitnamiKey> = OnceLock::new();
        K.get_or_init(|| BitnamiKey::generate(2048))
    }
    fn other_key() -> &'static BitnamiKey {
        static K: OnceLock<BitnamiKey> = OnceLock::new();
        K.get_or_init(|| BitnamiKey::generate(2048))
    }

    fn sealed(scope: BitnamiScope) -> String {
        seal_like_kubeseal(&key().public_der(), PLAINTEXT, scope, "shop", "db")
    }

    fn at(scope: BitnamiScope) -> At<'static> {
        At {
            namespace: "shop",
            name: "db",
            scope,
        }
    }

    fn keys() -> Vec<BitnamiKey> {
        vec![other_key().clone(), key().clone()]
    }

    fn refusal(value: &str, at: At<'_>) -> OpenError {
        let e = open(value, at, &keys()).unwrap_err();
        assert!(
            !e.to_string().contains("horse"),
            "a refusal never quotes the value: {e}"
        );
        e
    }

    #[test]
    fn every_scope_opens_where_it_was_sealed_for() {
        for scope in BitnamiScope::ALL {
            let v = open(&sealed(scope), at(scope), &keys()).unwrap();
            assert_eq!(v.as_slice(), PLAINTEXT, "{scope}");
        }
        // Namespace-wide opens under another name; cluster-wide anywhere.
        let ns = sealed(BitnamiScope::NamespaceWide);
        let moved = At {
            name: "other",
            ..at(BitnamiScope::NamespaceWide)
        };
        assert_eq!(open(&ns, moved, &keys()).unwrap().as_slice(), PLAINTEXT);
        let cw = sealed(BitnamiScope::ClusterWide);
        let far = At {
            namespace: "elsewhere",
            name: "x",
            scope: BitnamiScope::ClusterWide,
        };
        assert_eq!(open(&cw, far, &keys()).unwrap().as_slice(), PLAINTEXT);
    }

    #[test]
    fn a_value_moved_to_another_namespace_or_name_is_refused() {
        let strict = sealed(BitnamiScope::Strict);
        for (namespace, name) in [("other", "db"), ("shop", "db2")] {
            let e = refusal(
                &strict,
                At {
                    namespace,
                    name,
                    scope: BitnamiScope::Strict,
                },
            );
            assert!(matches!(e, OpenError::NoMatchingKey { keys: 2, .. }), "{e}");
            assert_eq!(e.reason(), "NoMatchingKey");
        }
        let ns = sealed(BitnamiScope::NamespaceWide);
        let e = refusal(
            &ns,
            At {
                namespace: "other",
                name: "db",
                scope: BitnamiScope::NamespaceWide,
            },
        );
        assert!(matches!(e, OpenError::NoMatchingKey { .. }), "{e}");
    }

    #[test]
    fn a_value_whose_scope_annotation_changed_is_refused_as_scope_mismatch() {
        let strict = sealed(BitnamiScope::Strict);
        let e = refusal(&strict, at(BitnamiScope::ClusterWide));
        assert_eq!(
            e,
            OpenError::ScopeMismatch {
                sealed_for: BitnamiScope::Strict,
                found: BitnamiScope::ClusterWide
            }
        );
        assert_eq!(e.reason(), "ScopeMismatch");
        let cw = sealed(BitnamiScope::ClusterWide);
        assert!(matches!(
            refusal(&cw, at(BitnamiScope::Strict)),
            OpenError::ScopeMismatch {
                sealed_for: BitnamiScope::ClusterWide,
                found: BitnamiScope::Strict
            }
        ));
        let ns = sealed(BitnamiScope::NamespaceWide);
        assert!(matches!(
            refusal(&ns, at(BitnamiScope::Strict)),
            OpenError::ScopeMismatch {
                sealed_for: BitnamiScope::NamespaceWide,
                ..
            }
        ));
    }

    #[test]
    fn a_value_sealed_to_a_key_that_was_not_imported_is_refused() {
        let v = sealed(BitnamiScope::Strict);
        let e = open(&v, at(BitnamiScope::Strict), &[other_key().clone()]).unwrap_err();
        assert!(matches!(e, OpenError::NoMatchingKey { keys: 1, .. }), "{e}");
        assert_eq!(
            open(&v, at(BitnamiScope::Strict), &[]).unwrap_err(),
            OpenError::NoKeys
        );
    }

    /// Every bit of the value flipped, one at a time: each is refused with
    /// a typed reason, none opens to anything.
    #[test]
    fn every_bit_flip_is_refused() {
        let v = sealed(BitnamiScope::Strict);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&v)
            .unwrap();
        let k = keys();
        // The RSA part is 256 bytes; flipping each of its bits costs two
        // keys × three scopes of RSA; take every bit of the length, the
        // AES part and the tag, and every 7th bit of the RSA block.
        let mut reasons = std::collections::BTreeSet::new();
        for bit in 0..raw.len() * 8 {
            let byte = bit / 8;
            if (2..2 + 256).contains(&byte) && bit % 7 != 0 {
                continue;
            }
            let mut t = raw.clone();
            t[byte] ^= 1 << (bit % 8);
            let e = open_bytes(&t, at(BitnamiScope::Strict), &k).unwrap_err();
            reasons.insert(e.reason());
            match byte {
                0 | 1 => assert!(
                    matches!(
                        e,
                        OpenError::KeySizeMismatch { .. } | OpenError::Truncated { .. }
                    ),
                    "length bit {bit}: {e}"
                ),
                2..258 => assert!(
                    matches!(e, OpenError::NoMatchingKey { .. }),
                    "RSA bit {bit}: {e}"
                ),
                _ => assert_eq!(e, OpenError::Tampered, "AES bit {bit}"),
            }
        }
        assert_eq!(
            reasons,
            ["Malformed", "NoMatchingKey", "Tampered"]
                .into_iter()
                .collect()
        );
    }

    #[test]
    fn truncations_are_refused() {
        let v = sealed(BitnamiScope::Strict);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&v)
            .unwrap();
        for len in [0, 1, 2, 100, 2 + 256, 2 + 256 + 15] {
            let e = open_bytes(&raw[..len], at(BitnamiScope::Strict), &keys()).unwrap_err();
            assert!(matches!(e, OpenError::Truncated { .. }), "{len}: {e}");
            assert_eq!(e.reason(), "Malformed");
        }
        // Cut inside the AES part: the tag no longer authenticates.
        let e = open_bytes(&raw[..raw.len() - 1], at(BitnamiScope::Strict), &keys()).unwrap_err();
        assert_eq!(e, OpenError::Tampered);
        // Trailing bytes are part of what the tag covers.
        let mut long = raw.clone();
        long.push(0);
        assert_eq!(
            open_bytes(&long, at(BitnamiScope::Strict), &keys()).unwrap_err(),
            OpenError::Tampered
        );
    }

    #[test]
    fn bad_base64_and_oversize_values_are_refused() {
        let v = sealed(BitnamiScope::Strict);
        assert_eq!(
            refusal(&format!("{v}!"), at(BitnamiScope::Strict)),
            OpenError::NotBase64
        );
        assert_eq!(
            refusal(&v.replace('=', ""), at(BitnamiScope::Strict)).reason(),
            "Malformed"
        );
        let huge = "A".repeat(2 * MAX_VALUE_LEN);
        assert!(matches!(
            refusal(&huge, at(BitnamiScope::Strict)),
            OpenError::TooLarge { .. }
        ));
    }

    #[test]
    fn keys_read_from_pkcs1_and_pkcs8_pem_are_the_same_key() {
        let k = key();
        let pem8 = k.to_pem();
        let again = BitnamiKey::from_pem(&pem8).unwrap();
        assert_eq!(again.id(), k.id());
        // PKCS#1 is what bitnami writes: the PKCS#8 envelope without its
        // 26-byte head for a 2048-bit key (SEQUENCE, version, algorithm,
        // OCTET STRING header).
        let der8 = &*k.pkcs8;
        let pkcs1 = &der8[26..];
        assert_eq!(&pkcs1_to_pkcs8(pkcs1)[..], der8);
        let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs1);
        let pem1 =
            format!("-----BEGIN RSA PRIVATE KEY-----\n{b64}\n-----END RSA PRIVATE KEY-----\n");
        assert_eq!(BitnamiKey::from_pem(&pem1).unwrap().id(), k.id());
        assert_eq!(
            BitnamiKey::from_pem("nothing").unwrap_err(),
            KeyError::NoPem
        );
        assert_eq!(
            BitnamiKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .unwrap_err(),
            KeyError::NotRsa
        );
        assert!(!format!("{k:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_key_backup_list_is_read() {
        let s = key_secret(key(), "kube-system/sealed-secrets-keyabc");
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            serde_json::to_value(&s).unwrap(),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        ]});
        let keys = read_key_backup(&serde_json::to_string(&list).unwrap()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].1.id(), key().id());
        assert!(read_key_backup("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").is_err());
    }

    fn bitnami_doc(scope: BitnamiScope) -> SealedSecret {
        let mut annotations = BTreeMap::new();
        match scope {
            BitnamiScope::Strict => {}
            BitnamiScope::NamespaceWide => {
                annotations.insert(NAMESPACE_WIDE_ANNOTATION.to_string(), "true".to_string());
            }
            BitnamiScope::ClusterWide => {
                annotations.insert(CLUSTER_WIDE_ANNOTATION.to_string(), "true".to_string());
            }
        }
        let doc = serde_json::json!({
            "apiVersion": API_VERSION, "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": "shop", "annotations": annotations},
            "spec": {
                "encryptedData": {"password": sealed(scope)},
                "template": {
                    "type": "kubernetes.io/basic-auth",
                    "metadata": {"labels": {"app": "shop"}, "annotations": annotations},
                },
            },
        });
        read_sealed_secret(doc).unwrap().unwrap()
    }

    #[test]
    fn converting_keeps_scope_template_and_values() {
        let coffer = SecretKey::generate();
        for scope in BitnamiScope::ALL {
            let b = bitnami_doc(scope);
            let c = convert(&b, &keys(), &[coffer.public().clone()]).unwrap();
            assert_eq!(c.metadata.namespace.as_deref(), Some("shop"));
            let t = c.spec.template.as_ref().unwrap();
            assert_eq!(t.type_.as_deref(), Some("kubernetes.io/basic-auth"));
            assert_eq!(t.metadata.as_ref().unwrap().labels["app"], "shop");
            let ring = Keyring::from_keys([coffer.clone()]);
            let desired = crate::transform::unseal(&c.view(), &ring).unwrap();
            assert_eq!(desired.data["password"].as_slice(), PLAINTEXT);
            let from_bitnami = b.unseal(&keys()).unwrap();
            assert_eq!(
                desired.to_secret(None),
                from_bitnami.to_secret(None),
                "{scope}"
            );
            // Same scope: a converted value moved where its bitnami scope
            // did not allow is refused.
            let text = &c.spec.encrypted_data["password"];
            let moved = envelope::open(
                text,
                Location {
                    namespace: "other",
                    name: "db",
                    key: "password",
                },
                &ring,
            );
            assert_eq!(moved.is_ok(), scope == BitnamiScope::ClusterWide, "{scope}");
        }
    }

    #[test]
    fn templates_and_legacy_data_are_refused_not_guessed() {
        let mut b = bitnami_doc(BitnamiScope::Strict);
        b.spec.template.as_mut().unwrap().data = Some(BTreeMap::from([(
            "url".to_string(),
            Some("{{ .password }}".to_string()),
        )]));
        assert_eq!(b.unseal(&keys()).unwrap_err(), UnsealError::TemplateData);
        let mut b = bitnami_doc(BitnamiScope::Strict);
        b.spec.data = Some("AAAA".into());
        assert_eq!(b.unseal(&keys()).unwrap_err().reason(), "Unsupported");
    }

    /// Found by the `bitnami` fuzz target: a key backup whose `labels` (or
    /// `data`) block an edit turned into a string was refused with serde's
    /// message, which quoted that string: the private key, on a terminal
    /// or in a CI log. A refusal now names the Secret only, and only by a
    /// name the API server would accept.
    #[test]
    fn a_broken_key_backup_is_refused_without_quoting_the_key() {
        let pem = key().to_pem();
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let secret = |rest: &str| {
            format!("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n{rest}")
        };
        for (text, says) in [
            (
                secret(&format!(
                    "  metadata:\n    name: sealed-secrets-key1\n    labels: {b64}\n  data:\n    tls.key: {b64}\n"
                )),
                "Secret sealed-secrets-key1 of the backup does not parse",
            ),
            (
                secret(&format!(
                    "  metadata:\n    name: sealed-secrets-key1\n  data: {body}\n"
                )),
                "Secret sealed-secrets-key1 of the backup does not parse",
            ),
            (
                secret(&format!(
                    "  metadata:\n    name: \"{body}\"\n  data:\n    tls.key: {}\n",
                    base64::engine::general_purpose::STANDARD.encode("not a key")
                )),
                "Secret (with no valid name): no PEM private key",
            ),
        ] {
            let e = read_key_backup(&text).unwrap_err();
            assert!(e.starts_with(says), "{e}");
            for key_text in [&b64, &body] {
                for run in key_text.as_bytes().chunks(16).filter(|r| r.len() == 16) {
                    let run = std::str::from_utf8(run).unwrap();
                    assert!(!e.contains(run), "the refusal shows the key: {e}");
                }
            }
        }
    }
}
