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
//!
//! In parts: `resource` (their SealedSecret and its CRD), `scope` (their
//! three scopes and the RSA-OAEP label of each), `key` (their RSA keys, key
//! backups and the Secrets Coffer keeps imported keys in), `value` (opening
//! one value) and `convert` (a whole SealedSecret: unsealed into its Secret
//! or converted into a Coffer SealedSecret). Their names are re-exported
//! here, so users name `bitnami::open`, never a part. This module is the
//! `bitnami` feature of coffer-core; its sealer (kubeseal's way, for tests)
//! is the `test-util` feature.

mod convert;
mod key;
mod resource;
mod scope;
mod value;

pub use convert::{BitnamiConvertError, BitnamiUnsealError, convert};
pub use key::{BitnamiKey, BitnamiKeyError, key_from_secret, key_secret, read_key_backup};
pub use resource::{
    BitnamiCondition, BitnamiSealedSecret, BitnamiSpec, BitnamiStatus, BitnamiTemplate,
    BitnamiTemplateMetadata, crd, crd_yaml, is_bitnami_sealed_secret, read_sealed_secret,
};
pub use scope::BitnamiScope;
pub use value::{At, BitnamiOpenError, open};
#[cfg(any(test, feature = "test-util"))]
pub use value::{open_bytes, seal_like_kubeseal};

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
/// Bytes of the AES-256 session key one RSA block wraps.
const SESSION_KEY_LEN: usize = 32;
/// Bytes of the AES-GCM tag after each value.
const TAG_LEN: usize = 16;

/// Most keys tried per value: bitnami values carry no key id, so each key
/// costs one RSA private-key operation (~3.5 ms at 4096 bits).
pub const MAX_KEYS: usize = 64;

/// What the tests of every part share: two RSA keys, values sealed with
/// the first, and a bitnami SealedSecret holding one.
#[cfg(test)]
mod fixtures {
    use std::collections::BTreeMap;
    use std::sync::OnceLock;

    use super::*;

    pub const PLAINTEXT: &[u8] = b"correct horse battery staple";

    /// One 2048-bit key for the whole table (generation is the slow part);
    /// the format is the same at 4096 bits, which the end-to-end test uses.
    pub fn key() -> &'static BitnamiKey {
        static K: OnceLock<BitnamiKey> = OnceLock::new();
        K.get_or_init(|| BitnamiKey::generate(2048))
    }
    pub fn other_key() -> &'static BitnamiKey {
        static K: OnceLock<BitnamiKey> = OnceLock::new();
        K.get_or_init(|| BitnamiKey::generate(2048))
    }

    pub fn sealed(scope: BitnamiScope) -> String {
        seal_like_kubeseal(&key().public_der(), PLAINTEXT, scope, "shop", "db")
    }

    pub fn at(scope: BitnamiScope) -> At<'static> {
        At {
            namespace: "shop",
            name: "db",
            scope,
        }
    }

    pub fn keys() -> Vec<BitnamiKey> {
        vec![other_key().clone(), key().clone()]
    }

    pub fn bitnami_doc(scope: BitnamiScope) -> BitnamiSealedSecret {
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
}
