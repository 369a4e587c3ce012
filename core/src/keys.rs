//! Sealing keys: X25519 age identities, their public recipients and key ids.

use std::fmt;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of a key id in bytes (printed as twice as many hex digits).
pub const KEY_ID_LEN: usize = 8;

/// Short public id of a sealing key: the first 8 bytes of SHA-256 over the
/// raw 32-byte X25519 public key, printed as 16 lowercase hex digits.
///
/// Anyone holding a recipients file (or a sealed value) can compute or read
/// it; it reveals nothing the public key does not already reveal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// Key id of a raw X25519 public key.
    pub fn from_public_bytes(public: &[u8; 32]) -> Self {
        let digest = Sha256::digest(public);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// Key id of an age X25519 recipient.
    pub fn of(recipient: &PublicKey) -> Self {
        Self::from_public_bytes(&recipient.raw)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Error for a string that is not a key id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a key id (expected 16 lowercase hex digits)")]
pub struct BadKeyId(pub String);

impl FromStr for KeyId {
    type Err = BadKeyId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadKeyId(s.chars().take(40).collect());
        if s.len() != KEY_ID_LEN * 2
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        let mut id = [0u8; KEY_ID_LEN];
        for (i, out) in id.iter_mut().enumerate() {
            *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(KeyId(id))
    }
}

/// Errors reading keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A line is not an `age1…` X25519 recipient.
    #[error("not an age X25519 recipient: {0}")]
    BadRecipient(String),
    /// A line is not an `AGE-SECRET-KEY-1…` identity. The line itself is
    /// never echoed: it may be a private key with a typo.
    #[error("line {line}: not an age X25519 identity (AGE-SECRET-KEY-1…)")]
    BadIdentity { line: usize },
    /// The file held no identity at all.
    #[error("no identity found (expected lines starting with AGE-SECRET-KEY-1)")]
    NoIdentity,
}

/// The public half of a sealing key: an age X25519 recipient plus its id.
#[derive(Clone)]
pub struct PublicKey {
    recipient: age::x25519::Recipient,
    raw: [u8; 32],
    id: KeyId,
}

impl PublicKey {
    /// The age recipient, for encryption.
    pub fn recipient(&self) -> &age::x25519::Recipient {
        &self.recipient
    }

    /// The key id.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}
impl Eq for PublicKey {}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.recipient.fmt(f)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.id, self.recipient)
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || KeyError::BadRecipient(s.chars().take(80).collect());
        let recipient = age::x25519::Recipient::from_str(s).map_err(|_| bad())?;
        // The age crate keeps the raw point private; decode the Bech32 string
        // it has just validated to derive the key id from the raw bytes.
        let (hrp, bytes) = bech32::decode(s).map_err(|_| bad())?;
        if hrp.as_str() != "age" {
            return Err(bad());
        }
        let raw: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(PublicKey {
            recipient,
            raw,
            id: KeyId::from_public_bytes(&raw),
        })
    }
}

/// A private sealing key. `Debug` never shows the secret.
#[derive(Clone)]
pub struct SecretKey {
    identity: age::x25519::Identity,
    public: PublicKey,
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self::from_identity(age::x25519::Identity::generate())
    }

    fn from_identity(identity: age::x25519::Identity) -> Self {
        let public = identity
            .to_public()
            .to_string()
            .parse()
            .expect("the age crate prints valid recipients");
        SecretKey { identity, public }
    }

    /// Parses one `AGE-SECRET-KEY-1…` line.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        age::x25519::Identity::from_str(s.trim())
            .map(Self::from_identity)
            .map_err(|_| KeyError::BadIdentity { line: 1 })
    }

    /// The identity, for decryption.
    pub fn identity(&self) -> &age::x25519::Identity {
        &self.identity
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The key id.
    pub fn id(&self) -> KeyId {
        self.public.id
    }

    /// The `AGE-SECRET-KEY-1…` string, in a buffer wiped on drop.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        Zeroizing::new(self.identity.to_string().expose_secret().to_string())
    }

    /// An age identity file for this key, with the usual comment lines.
    pub fn to_identity_file(&self, created: &jiff::Timestamp) -> Zeroizing<String> {
        let secret = self.to_secret_string();
        Zeroizing::new(format!(
            "# created: {}\n# public key: {}\n# coffer key id: {}\n{}\n",
            created,
            self.public,
            self.id(),
            secret.as_str()
        ))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}, [redacted])", self.id())
    }
}

/// Reads an age identity file: `#` comments, blank lines and one
/// `AGE-SECRET-KEY-1…` per line.
pub fn parse_identity_file(text: &str) -> Result<Vec<SecretKey>, KeyError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let identity = age::x25519::Identity::from_str(line)
            .map_err(|_| KeyError::BadIdentity { line: i + 1 })?;
        keys.push(SecretKey::from_identity(identity));
    }
    if keys.is_empty() {
        return Err(KeyError::NoIdentity);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_stable_hex_of_public_key_hash() {
        let key = SecretKey::generate();
        let id = key.id().to_string();
        assert_eq!(id.len(), 16);
        assert_eq!(id.parse::<KeyId>().unwrap(), key.id());
        let again: PublicKey = key.public().to_string().parse().unwrap();
        assert_eq!(again.id(), key.id());
    }

    #[test]
    fn identity_file_round_trips_and_debug_hides_secret() {
        let key = SecretKey::generate();
        let file = key.to_identity_file(&jiff::Timestamp::UNIX_EPOCH);
        let keys = parse_identity_file(&file).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].id(), key.id());
        assert!(!format!("{key:?}").contains("AGE-SECRET-KEY"));
    }

    #[test]
    fn bad_identity_line_is_reported_without_echoing_it() {
        let err = parse_identity_file("# c\nAGE-SECRET-KEY-1NOTAKEY\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: not an age X25519 identity (AGE-SECRET-KEY-1…)"
        );
    }

    #[test]
    fn uppercase_or_short_key_ids_are_refused() {
        assert!("ABCDEF0123456789".parse::<KeyId>().is_err());
        assert!("abc".parse::<KeyId>().is_err());
    }
}
