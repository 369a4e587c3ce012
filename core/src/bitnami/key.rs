//! bitnami's RSA keys: read from PEM (PKCS#1 as bitnami writes them, or
//! PKCS#8), from a key backup or a key Secret, and kept in Coffer's key
//! namespace as Secrets of their own type. A key opens values; Coffer never
//! seals to one.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{KEY_ID_LABEL, KEY_SECRET_TYPE, TLS_KEY};

/// Why a bitnami key was not taken. Never quotes key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BitnamiKeyError {
    /// No `RSA PRIVATE KEY` or `PRIVATE KEY` PEM block.
    #[error("no PEM private key (RSA PRIVATE KEY or PRIVATE KEY) found")]
    NoPem,
    /// The PEM block's body is not base64 (or its file not text).
    #[error("the PEM block is not valid base64")]
    BadPem,
    /// Not an RSA private key AWS-LC takes (2048 to 8192 bits).
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
    pub fn from_pem(text: &str) -> Result<Self, BitnamiKeyError> {
        let (label, der) = pem_block(text)?;
        match label.as_str() {
            "RSA PRIVATE KEY" => Self::from_pkcs8(&pkcs1_to_pkcs8(&der)),
            "PRIVATE KEY" => Self::from_pkcs8(&der),
            _ => Err(BitnamiKeyError::NoPem),
        }
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, BitnamiKeyError> {
        let private = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| BitnamiKeyError::NotRsa)?;
        let public = private.public_key();
        let spki = public.as_der().map_err(|_| BitnamiKeyError::NotRsa)?;
        let fingerprint: [u8; 32] = Sha256::digest(spki.as_ref()).into();
        let pkcs8 = Zeroizing::new(
            private
                .as_der()
                .map_err(|_| BitnamiKeyError::NotRsa)?
                .as_ref()
                .to_vec(),
        );
        let key = OaepPrivateDecryptingKey::new(private).map_err(|_| BitnamiKeyError::NotRsa)?;
        Ok(BitnamiKey {
            key,
            fingerprint,
            pkcs8,
        })
    }

    /// A new key, for tests (feature `test-util`): Coffer never makes
    /// bitnami keys, it imports them.
    #[cfg(any(test, feature = "test-util"))]
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

    /// Size in bytes: the length of the RSA part of the values it opens.
    pub(super) fn size_bytes(&self) -> usize {
        self.key.key_size_bytes()
    }

    /// The session key in `rsa`, when this key's RSA-OAEP opens it under
    /// `label`.
    pub(super) fn unwrap_session(&self, rsa: &[u8], label: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let pt = self
            .key
            .decrypt(&OAEP_SHA256_MGF1SHA256, rsa, &mut out, Some(label))
            .ok()?;
        Some(Zeroizing::new(pt.to_vec()))
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

    /// The public key as SubjectPublicKeyInfo DER, which tests seal to
    /// (feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
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
fn pem_block(text: &str) -> Result<(String, Zeroizing<Vec<u8>>), BitnamiKeyError> {
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
                        .map_err(|_| BitnamiKeyError::BadPem)?;
                    return Ok((l.clone(), Zeroizing::new(der)));
                }
                body.push_str(line);
            }
        }
    }
    Err(BitnamiKeyError::NoPem)
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
) -> Result<Option<BitnamiKey>, BitnamiKeyError> {
    let Some(pem) = secret.data.as_ref().and_then(|d| d.get(TLS_KEY)) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&pem.0).map_err(|_| BitnamiKeyError::BadPem)?;
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::key;
    use super::*;

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
            BitnamiKeyError::NoPem
        );
        assert_eq!(
            BitnamiKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .unwrap_err(),
            BitnamiKeyError::NotRsa
        );
        assert!(!format!("{k:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_key_backup_list_is_read() {
        let s = key_secret(
            key(),
            &format!(
                "{}/sealed-secrets-keyabc",
                super::super::DEFAULT_KEY_NAMESPACE
            ),
        );
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            serde_json::to_value(&s).unwrap(),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        ]});
        let keys = read_key_backup(&serde_json::to_string(&list).unwrap()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].1.id(), key().id());
        assert!(read_key_backup("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").is_err());
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
