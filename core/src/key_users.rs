//! Who may learn *which* SealedSecrets need a key. `GET /v1/keys/ID/users`
//! answers counts to anyone who reaches the controller's HTTP port (every
//! Pod may), but the namespaces and names only to a request that proves
//! it comes from a key admin: an HMAC-SHA-256 over the key id and the
//! time, keyed from that key's private half, which only key admins (and
//! the controller) can read. A tenant who can call the endpoint learns no
//! other tenant's object names.
//!
//! The proof is sent in the header [`HEADER`] as `at=UNIX_SECONDS,mac=HEX`
//! and is valid for [`WINDOW_SECS`] either side of the controller's clock,
//! for that key id only.

use coffer_format::{KeyId, SecretKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The request header holding the proof.
pub const HEADER: &str = "x-coffer-key-admin-proof";

/// How far, in seconds, the proof's time may be from the controller's.
pub const WINDOW_SECS: i64 = 300;

/// The label the MAC key is derived with: no other use of the key shares it.
const LABEL: &[u8] = b"coffer.dev/key-users-proof/v1";

fn mac(key: &SecretKey, id: KeyId, at: i64) -> Hmac<Sha256> {
    let k = key.derive_key(LABEL);
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(k.as_ref()).expect("HMAC takes any key length");
    m.update(id.to_string().as_bytes());
    m.update(b"\n");
    m.update(at.to_string().as_bytes());
    m
}

/// The header value proving, at `at` (Unix seconds), that the caller holds
/// `key`.
pub fn make(key: &SecretKey, at: i64) -> String {
    let tag = mac(key, key.id(), at).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("at={at},mac={hex}")
}

/// Whether `header` proves, at `now` (Unix seconds), that the caller holds
/// `key`. The tag is compared in constant time.
pub fn verify(key: &SecretKey, header: &str, now: i64) -> bool {
    let Some((at, hex)) = header
        .strip_prefix("at=")
        .and_then(|rest| rest.split_once(",mac="))
    else {
        return false;
    };
    let Ok(at) = at.parse::<i64>() else {
        return false;
    };
    if (now - at).abs() > WINDOW_SECS || hex.len() != 64 {
        return false;
    }
    let Some(tag) = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    mac(key, key.id(), at).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_holder_within_the_window_proves_it() {
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        let now = 1_800_000_000;
        let proof = make(&key, now);
        assert!(verify(&key, &proof, now));
        assert!(verify(&key, &proof, now + WINDOW_SECS));
        assert!(!verify(&key, &proof, now + WINDOW_SECS + 1), "too old");
        assert!(
            !verify(&key, &proof, now - WINDOW_SECS - 1),
            "from the future"
        );
        assert!(!verify(&other, &proof, now), "another key's proof");
        assert!(
            !verify(&key, &make(&other, now), now),
            "made with another key"
        );
        // Moving the time invalidates the tag.
        let moved = proof.replacen(&format!("at={now}"), &format!("at={}", now + 1), 1);
        assert!(!verify(&key, &moved, now));
        for bad in [
            "",
            "at=",
            "at=x,mac=00",
            "mac=00",
            &proof[..proof.len() - 2],
        ] {
            assert!(!verify(&key, bad, now), "{bad:?}");
        }
    }
}
