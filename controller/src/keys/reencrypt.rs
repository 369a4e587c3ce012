//! Re-encryption of a SealedSecret's values to the active key
//! (`POST /v1/reencrypt`, `coffer rotate`): the key ring's logic, apart from
//! HTTP; the listener maps each refusal to its status code.

use std::collections::BTreeSet;

use coffer_core::SealedSecret;
use coffer_core::transform::MAX_ITEMS;
use coffer_format::envelope::{self, OpenError};
use coffer_format::{KeyId, Location, PublicKey};

/// Why a SealedSecret was not re-encrypted. No message carries a value
/// byte.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReencryptError {
    /// As verify (and reconcile) refuse it: a body of 2 MiB holds about
    /// three times as many values, each costing an unwrap and a sealing.
    #[error("more than {MAX_ITEMS} items; a SealedSecret holds at most that many")]
    TooManyItems,
    #[error("a value is malformed")]
    Malformed,
    /// It does not open with this ring, or not where it is found.
    #[error("a value does not open here")]
    DoesNotOpenHere,
    /// A value is also sealed to a key of another cluster whose recipient
    /// was not given: re-encryption would drop that reader.
    #[error(
        "a value is also sealed to key {0}, which this cluster does not hold; pass that cluster's recipients file"
    )]
    ForeignKey(KeyId),
    #[error("sealing failed")]
    SealingFailed,
}

/// Re-encrypts every value of `sealed` to `active` (plus those of `extra`
/// whose key ids a value already names, for keys not `held`). Pure apart
/// from the sealing randomness; the handler runs it on a blocking thread,
/// the `http_body` fuzz target directly.
pub fn reencrypt_values(
    mut sealed: SealedSecret,
    ring: &coffer_format::Keyring,
    active: &PublicKey,
    held: &BTreeSet<KeyId>,
    extra: &[PublicKey],
) -> Result<SealedSecret, ReencryptError> {
    // As verify (and reconcile) refuse it: a body of 2 MiB holds about three
    // times as many values, each costing an unwrap and a sealing.
    if sealed.spec.encrypted_data.len() > MAX_ITEMS {
        return Err(ReencryptError::TooManyItems);
    }
    let ns = sealed.metadata.namespace.clone().unwrap_or_default();
    let name = sealed.metadata.name.clone().unwrap_or_default();
    let mut out = std::collections::BTreeMap::new();
    for (key, value) in &sealed.spec.encrypted_data {
        let (env, _) = envelope::inspect(value).map_err(|_| ReencryptError::Malformed)?;
        let opened = match envelope::open_unchecked(value, ring) {
            Ok(o) => o,
            Err(
                OpenError::TooLarge { .. }
                | OpenError::Base64
                | OpenError::Malformed(_)
                | OpenError::TooManyStanzas { .. },
            ) => {
                return Err(ReencryptError::Malformed);
            }
            Err(_) => return Err(ReencryptError::DoesNotOpenHere),
        };
        // Only values that open where they are found are re-encrypted, as
        // verify would say.
        if !opened.binding.allows(Location {
            namespace: &ns,
            name: &name,
            key,
        }) {
            return Err(ReencryptError::DoesNotOpenHere);
        }
        let foreign: Vec<KeyId> = env
            .key_ids
            .iter()
            .copied()
            .filter(|k| !held.contains(k))
            .collect();
        let mut to = vec![active.clone()];
        for k in &foreign {
            match extra.iter().find(|e| e.id() == *k) {
                Some(e) => to.push(e.clone()),
                None => return Err(ReencryptError::ForeignKey(*k)),
            }
        }
        let resealed = envelope::reseal(&opened, &to).map_err(|_| ReencryptError::SealingFailed)?;
        out.insert(key.clone(), resealed);
    }
    sealed.spec.encrypted_data = out;
    sealed.status = None;
    sealed.metadata.managed_fields = None;
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_core::transform::unseal;

    /// Found while writing the `http_body` fuzz target's property "anything
    /// re-encrypted would verify": verify refuses more than `MAX_ITEMS`
    /// items (409), but re-encryption sealed them all again. Now it refuses
    /// them too, before opening any.
    #[test]
    fn reencryption_refuses_more_items_than_verify_accepts() {
        use coffer_core::SealedSecretSpec;
        use coffer_format::{Keyring, Scope, SecretKey, seal};
        let key = SecretKey::generate();
        let ring = Keyring::from_keys([key.clone()]);
        let held: BTreeSet<KeyId> = [key.id()].into();
        let to = [key.public().clone()];
        let encrypted_data = (0..=MAX_ITEMS)
            .map(|i| {
                let item = format!("k{i}");
                let at = Location {
                    namespace: "shop",
                    name: "db",
                    key: &item,
                };
                (item.clone(), seal(b"v", Scope::Strict, at, &to).unwrap())
            })
            .collect();
        let mut sealed = SealedSecret::new(
            "db",
            SealedSecretSpec {
                encrypted_data,
                template: None,
                ..Default::default()
            },
        );
        sealed.metadata.namespace = Some("shop".into());
        assert!(unseal(&sealed.view(), &ring).is_err(), "verify says no");
        match reencrypt_values(sealed, &ring, key.public(), &held, &[]) {
            Err(e) => assert_eq!(e, ReencryptError::TooManyItems),
            Ok(_) => panic!("re-encryption said yes"),
        }
    }

    /// Moving to post-quantum keys through `/v1/reencrypt`: a value sealed
    /// to this cluster's X25519 key and another cluster's post-quantum key
    /// comes back sealed to this cluster's new post-quantum key and the
    /// other cluster's key (given as an `age1pq1…` additional recipient),
    /// with the same binding, and post-quantum as a whole.
    #[test]
    fn reencryption_moves_values_to_a_post_quantum_active_key() {
        use coffer_core::SealedSecretSpec;
        use coffer_format::key::KeyKind;
        use coffer_format::{Keyring, Scope, SecretKey, seal};
        let old = SecretKey::generate();
        let new = SecretKey::generate_kind(KeyKind::MlKem768X25519);
        let other_cluster = SecretKey::generate_kind(KeyKind::MlKem768X25519);
        let ring = Keyring::from_keys([old.clone(), new.clone()]);
        let held: BTreeSet<KeyId> = [old.id(), new.id()].into();
        let at = Location {
            namespace: "shop",
            name: "db",
            key: "password",
        };
        let value = seal(
            b"v",
            Scope::Strict,
            at,
            &[old.public().clone(), other_cluster.public().clone()],
        )
        .unwrap();
        let mut sealed = SealedSecret::new(
            "db",
            SealedSecretSpec {
                encrypted_data: [("password".to_string(), value)].into(),
                template: None,
                ..Default::default()
            },
        );
        sealed.metadata.namespace = Some("shop".into());
        let extra: Vec<PublicKey> = vec![other_cluster.public().to_string().parse().unwrap()];
        let out = reencrypt_values(sealed, &ring, new.public(), &held, &extra)
            .unwrap_or_else(|e| panic!("refused: {e}"));
        let resealed = &out.spec.encrypted_data["password"];
        let (env, _) = envelope::inspect(resealed).unwrap();
        assert_eq!(env.key_ids, [new.id(), other_cluster.id()]);
        assert!(env.post_quantum());
        for k in [&new, &other_cluster] {
            let ring = Keyring::from_keys([k.clone()]);
            assert_eq!(
                coffer_format::open(resealed, at, &ring).unwrap().as_slice(),
                b"v"
            );
        }
    }
}
