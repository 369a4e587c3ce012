//! Opening one bitnami value at its place and scope, with the imported
//! keys; and, for tests, sealing one as kubeseal does.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use zeroize::Zeroizing;

use super::{
    BitnamiKey, BitnamiScope, CLUSTER_WIDE_ANNOTATION, MAX_KEYS, MAX_VALUE_LEN,
    NAMESPACE_WIDE_ANNOTATION, SESSION_KEY_LEN, TAG_LEN,
};
use crate::reason::Reason;

/// Why a bitnami value did not open. No variant carries value bytes.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BitnamiOpenError {
    /// Not canonical standard base64.
    #[error("not canonical base64")]
    NotBase64,
    /// Larger than a Secret may hold.
    #[error("{len} bytes; at most {MAX_VALUE_LEN} are accepted")]
    TooLarge {
        /// Its length in bytes (of the text, or of the decoded bytes).
        len: usize,
    },
    /// Too short to hold what its length prefix says.
    #[error("truncated: {len} bytes, too short for an RSA-wrapped key and an AES-GCM tag")]
    Truncated {
        /// Its length in bytes.
        len: usize,
    },
    /// Its RSA part has a size no imported key has.
    #[error("its RSA part says {declared} bytes, which no imported key has (they have {sizes})")]
    KeySizeMismatch {
        /// The size its length prefix says.
        declared: usize,
        /// The sizes of the imported keys, comma-separated.
        sizes: String,
    },
    /// No key was given to open it with.
    #[error("no imported bitnami key is given")]
    NoKeys,
    /// It opens, but for another scope than its SealedSecret asks for.
    #[error(
        "sealed {sealed_for} for this place, but the SealedSecret asks for {found} (its annotations {NAMESPACE_WIDE_ANNOTATION} / {CLUSTER_WIDE_ANNOTATION})"
    )]
    ScopeMismatch {
        /// The scope it was sealed for.
        sealed_for: BitnamiScope,
        /// The scope its SealedSecret's annotations ask for.
        found: BitnamiScope,
    },
    /// No key opens it here, in any scope.
    #[error(
        "none of the {keys} imported bitnami key(s) opens it as {scope} at {place}: it was sealed for another place (namespace or name), or to a key that was not imported"
    )]
    NoMatchingKey {
        /// How many keys of the right size were tried.
        keys: usize,
        /// The scope it was opened as.
        scope: BitnamiScope,
        /// Where, for people: `ns/name`, `namespace ns` or `any place`.
        place: String,
    },
    /// The RSA part opens to a session key of the wrong length.
    #[error("the session key is {len} bytes, not 32")]
    BadSessionKey {
        /// The session key's length in bytes.
        len: usize,
    },
    /// The AES-GCM tag does not authenticate.
    #[error("the AES-GCM part does not authenticate: the value was altered")]
    Tampered,
}

impl BitnamiOpenError {
    /// The status reason, as Coffer's own refusals name them.
    pub fn reason(&self) -> Reason {
        match self {
            BitnamiOpenError::NotBase64
            | BitnamiOpenError::TooLarge { .. }
            | BitnamiOpenError::Truncated { .. }
            | BitnamiOpenError::KeySizeMismatch { .. }
            | BitnamiOpenError::BadSessionKey { .. } => Reason::Malformed,
            BitnamiOpenError::NoKeys | BitnamiOpenError::NoMatchingKey { .. } => {
                Reason::NoMatchingKey
            }
            BitnamiOpenError::ScopeMismatch { .. } => Reason::ScopeMismatch,
            BitnamiOpenError::Tampered => Reason::Tampered,
        }
    }
}

/// Where a value is found: the SealedSecret's place and scope.
#[derive(Clone, Copy, Debug)]
pub struct At<'a> {
    /// The SealedSecret's namespace.
    pub namespace: &'a str,
    /// The SealedSecret's name.
    pub name: &'a str,
    /// The scope its annotations ask for.
    pub scope: BitnamiScope,
}

/// Opens one bitnami value found `at`, with the imported keys. When no key
/// opens it for the scope its SealedSecret asks for, the other two scopes
/// at the same place are tried, to say `ScopeMismatch` instead of a bare
/// refusal (only on failure; each try is one RSA operation per key).
pub fn open(
    value: &str,
    at: At<'_>,
    keys: &[BitnamiKey],
) -> Result<Zeroizing<Vec<u8>>, BitnamiOpenError> {
    if value.len() > MAX_VALUE_LEN * 4 / 3 + 4 {
        return Err(BitnamiOpenError::TooLarge { len: value.len() });
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| BitnamiOpenError::NotBase64)?;
    open_decoded(&raw, at, keys)
}

/// [`open`] of the decoded bytes, for the fuzz target and tests (feature
/// `test-util`), which reach the decoder with any bytes.
#[cfg(any(test, feature = "test-util"))]
pub fn open_bytes(
    raw: &[u8],
    at: At<'_>,
    keys: &[BitnamiKey],
) -> Result<Zeroizing<Vec<u8>>, BitnamiOpenError> {
    open_decoded(raw, at, keys)
}

/// [`open`] of the decoded bytes.
fn open_decoded(
    raw: &[u8],
    at: At<'_>,
    keys: &[BitnamiKey],
) -> Result<Zeroizing<Vec<u8>>, BitnamiOpenError> {
    if raw.len() > MAX_VALUE_LEN + 2 + 1024 + TAG_LEN {
        return Err(BitnamiOpenError::TooLarge { len: raw.len() });
    }
    if keys.is_empty() {
        return Err(BitnamiOpenError::NoKeys);
    }
    if raw.len() < 2 {
        return Err(BitnamiOpenError::Truncated { len: raw.len() });
    }
    let declared = usize::from(u16::from_be_bytes([raw[0], raw[1]]));
    if raw.len() < 2 + declared + TAG_LEN {
        return Err(BitnamiOpenError::Truncated { len: raw.len() });
    }
    let (rsa, aes) = raw[2..].split_at(declared);
    let sized: Vec<&BitnamiKey> = keys
        .iter()
        .take(MAX_KEYS)
        .filter(|k| k.size_bytes() == declared)
        .collect();
    if sized.is_empty() {
        let mut sizes: Vec<usize> = keys.iter().map(|k| k.size_bytes()).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let sizes = sizes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(BitnamiOpenError::KeySizeMismatch { declared, sizes });
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
                    return Err(BitnamiOpenError::ScopeMismatch {
                        sealed_for: other,
                        found: at.scope,
                    });
                }
            }
            return Err(BitnamiOpenError::NoMatchingKey {
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
        return Err(BitnamiOpenError::BadSessionKey { len: session.len() });
    }
    let key = UnboundKey::new(&AES_256_GCM, &session).map_err(|_| BitnamiOpenError::Tampered)?;
    let key = LessSafeKey::new(key);
    let mut buf = Zeroizing::new(aes.to_vec());
    let nonce = Nonce::assume_unique_for_key([0u8; NONCE_LEN]);
    let len = key
        .open_in_place(nonce, Aad::empty(), &mut buf)
        .map_err(|_| BitnamiOpenError::Tampered)?
        .len();
    let mut value = Zeroizing::new(vec![0u8; len]);
    value.copy_from_slice(&buf[..len]);
    Ok(value)
}

/// The session key, from the first key whose RSA-OAEP opens `rsa` under
/// `label`.
fn unwrap_session(rsa: &[u8], label: &[u8], keys: &[&BitnamiKey]) -> Option<Zeroizing<Vec<u8>>> {
    keys.iter().find_map(|k| k.unwrap_session(rsa, label))
}

/// Seals a value the way kubeseal does: for tests, and to prove interop
/// (feature `test-util`). Coffer itself never seals to an RSA key.
#[cfg(any(test, feature = "test-util"))]
pub fn seal_like_kubeseal(
    public_der: &[u8],
    value: &[u8],
    scope: BitnamiScope,
    namespace: &str,
    name: &str,
) -> String {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::{PLAINTEXT, at, keys, other_key, sealed};
    use super::*;

    fn refusal(value: &str, at: At<'_>) -> BitnamiOpenError {
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
            assert!(
                matches!(e, BitnamiOpenError::NoMatchingKey { keys: 2, .. }),
                "{e}"
            );
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
        assert!(matches!(e, BitnamiOpenError::NoMatchingKey { .. }), "{e}");
    }

    #[test]
    fn a_value_whose_scope_annotation_changed_is_refused_as_scope_mismatch() {
        let strict = sealed(BitnamiScope::Strict);
        let e = refusal(&strict, at(BitnamiScope::ClusterWide));
        assert_eq!(
            e,
            BitnamiOpenError::ScopeMismatch {
                sealed_for: BitnamiScope::Strict,
                found: BitnamiScope::ClusterWide
            }
        );
        assert_eq!(e.reason(), "ScopeMismatch");
        let cw = sealed(BitnamiScope::ClusterWide);
        assert!(matches!(
            refusal(&cw, at(BitnamiScope::Strict)),
            BitnamiOpenError::ScopeMismatch {
                sealed_for: BitnamiScope::ClusterWide,
                found: BitnamiScope::Strict
            }
        ));
        let ns = sealed(BitnamiScope::NamespaceWide);
        assert!(matches!(
            refusal(&ns, at(BitnamiScope::Strict)),
            BitnamiOpenError::ScopeMismatch {
                sealed_for: BitnamiScope::NamespaceWide,
                ..
            }
        ));
    }

    #[test]
    fn a_value_sealed_to_a_key_that_was_not_imported_is_refused() {
        let v = sealed(BitnamiScope::Strict);
        let e = open(&v, at(BitnamiScope::Strict), &[other_key().clone()]).unwrap_err();
        assert!(
            matches!(e, BitnamiOpenError::NoMatchingKey { keys: 1, .. }),
            "{e}"
        );
        assert_eq!(
            open(&v, at(BitnamiScope::Strict), &[]).unwrap_err(),
            BitnamiOpenError::NoKeys
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
            reasons.insert(e.reason().as_str());
            match byte {
                0 | 1 => assert!(
                    matches!(
                        e,
                        BitnamiOpenError::KeySizeMismatch { .. }
                            | BitnamiOpenError::Truncated { .. }
                    ),
                    "length bit {bit}: {e}"
                ),
                2..258 => assert!(
                    matches!(e, BitnamiOpenError::NoMatchingKey { .. }),
                    "RSA bit {bit}: {e}"
                ),
                _ => assert_eq!(e, BitnamiOpenError::Tampered, "AES bit {bit}"),
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
            assert!(
                matches!(e, BitnamiOpenError::Truncated { .. }),
                "{len}: {e}"
            );
            assert_eq!(e.reason(), "Malformed");
        }
        // Cut inside the AES part: the tag no longer authenticates.
        let e = open_bytes(&raw[..raw.len() - 1], at(BitnamiScope::Strict), &keys()).unwrap_err();
        assert_eq!(e, BitnamiOpenError::Tampered);
        // Trailing bytes are part of what the tag covers.
        let mut long = raw.clone();
        long.push(0);
        assert_eq!(
            open_bytes(&long, at(BitnamiScope::Strict), &keys()).unwrap_err(),
            BitnamiOpenError::Tampered
        );
    }

    #[test]
    fn bad_base64_and_oversize_values_are_refused() {
        let v = sealed(BitnamiScope::Strict);
        assert_eq!(
            refusal(&format!("{v}!"), at(BitnamiScope::Strict)),
            BitnamiOpenError::NotBase64
        );
        assert_eq!(
            refusal(&v.replace('=', ""), at(BitnamiScope::Strict)).reason(),
            "Malformed"
        );
        let huge = "A".repeat(2 * MAX_VALUE_LEN);
        assert!(matches!(
            refusal(&huge, at(BitnamiScope::Strict)),
            BitnamiOpenError::TooLarge { .. }
        ));
    }
}
