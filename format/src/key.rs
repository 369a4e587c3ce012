//! Sealing keys: X25519 age identities, their public recipients and key ids.

use std::fmt;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use age_core::primitives::{aead_decrypt, hkdf};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// HKDF label of age's X25519 recipient stanza.
const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";

/// Length of a key id in bytes: the whole SHA-256 digest.
pub const KEY_ID_LEN: usize = 32;

/// Hex digits shown for a key id where people read it (tables, messages,
/// labels). Never used to decide anything: every comparison is of the
/// whole id.
pub const SHORT_ID_HEX: usize = 16;

/// Public id of a sealing key: SHA-256 over the raw 32-byte X25519 public
/// key, printed as 64 lowercase hex digits. Decisions (which key opens a
/// value, which recipient re-encryption keeps) compare all 256 bits, so no
/// key can be ground to collide with another's id.
///
/// Anyone holding a recipients file (or a sealed value) can compute or read
/// it; it reveals nothing the public key does not already reveal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// Key id of a raw X25519 public key.
    pub fn from_public_bytes(public: &[u8; 32]) -> Self {
        KeyId(Sha256::digest(public).into())
    }

    /// Key id of an age X25519 recipient.
    pub fn of(recipient: &PublicKey) -> Self {
        Self::from_public_bytes(&recipient.raw)
    }

    /// The first [`SHORT_ID_HEX`] hex digits, for people to read.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(SHORT_ID_HEX);
        s
    }

    /// Whether `prefix` (lowercase hex) starts this id's hex form. For
    /// commands where a person names a key; callers refuse a prefix that
    /// names more than one key.
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.to_string().starts_with(prefix)
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
        write!(f, "KeyId({})", self.short())
    }
}

/// How an error message shows text it could not read: quoted and cut to
/// 80 characters, or not at all when it holds what looks like a private key
/// (`SECRET-KEY`, in either case). Such text is what people pass by mistake
/// (an identity file for a recipients file, `--to AGE-SECRET-KEY-1…`, a
/// backup whose line breaks were lost), and error messages end up in
/// terminals and CI logs.
pub(crate) fn shown(s: &str) -> String {
    if s.to_ascii_uppercase().contains("SECRET-KEY") {
        "[text holding a private key, not shown]".to_string()
    } else {
        format!("{:?}", s.chars().take(80).collect::<String>())
    }
}

/// Error for a string that is not a key id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0} is not a key id (expected 64 lowercase hex digits)")]
pub struct BadKeyId(pub String);

impl FromStr for KeyId {
    type Err = BadKeyId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadKeyId(shown(s));
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
    /// A recipient whose point has small order: every X25519 exchange with
    /// it gives the all-zero secret, so nothing sealed to it is secret.
    #[error("{0} is a low-order X25519 point: nothing sealed to it would be secret")]
    LowOrder(String),
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
        let bad = || KeyError::BadRecipient(shown(s));
        let recipient = age::x25519::Recipient::from_str(s).map_err(|_| bad())?;
        // The age crate keeps the raw point private; decode the Bech32 string
        // it has just validated to derive the key id from the raw bytes.
        let (hrp, bytes) = bech32::decode(s).map_err(|_| bad())?;
        if hrp.as_str() != "age" {
            return Err(bad());
        }
        let raw: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        if is_low_order(&raw) {
            return Err(KeyError::LowOrder(s.chars().take(80).collect()));
        }
        Ok(PublicKey {
            recipient,
            raw,
            id: KeyId::from_public_bytes(&raw),
        })
    }
}

/// Whether an X25519 point lies in the small subgroup (order 1, 2, 4 or 8).
/// Every X25519 scalar is clamped to a multiple of 8, so the exchange with
/// such a point is all zeros whatever the scalar; one exchange with any
/// scalar tells. age refuses the resulting non-contributory secret by
/// panicking while sealing, so Coffer refuses the point when it is read.
fn is_low_order(point: &[u8; 32]) -> bool {
    x25519_dalek::x25519([9u8; 32], *point) == [0u8; 32]
}

/// A private sealing key. `Debug` never shows the secret.
#[derive(Clone)]
pub struct SecretKey {
    identity: age::x25519::Identity,
    /// The same scalar, for [`SecretKey::unwrap_x25519`]; wiped on drop.
    secret: x25519_dalek::StaticSecret,
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
        let text = identity.to_string();
        let (_, bytes) =
            bech32::decode(text.expose_secret()).expect("the age crate prints valid identities");
        let mut bytes = Zeroizing::new(bytes);
        let mut scalar = Zeroizing::new([0u8; 32]);
        scalar.copy_from_slice(&bytes[..]);
        bytes.zeroize();
        let secret = x25519_dalek::StaticSecret::from(*scalar);
        SecretKey {
            identity,
            secret,
            public,
        }
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

    /// Unwraps the file key of an age `X25519` stanza addressed to this key,
    /// exactly as age's own identity does (c2sp.org/age, X25519 recipient
    /// stanza: canonical arguments, a contributory shared secret,
    /// HKDF-SHA-256 over `ephemeral share || recipient`, ChaCha20-Poly1305),
    /// except that the recipient is the public key computed once when the
    /// key was loaded. age computes it again for every stanza: a fixed-base
    /// scalar multiplication and a field inversion, about a third of the
    /// cost of opening a value.
    ///
    /// `None` for a stanza of another type; `Some(Err)` for a malformed
    /// X25519 stanza. A well-formed stanza for another key gives `None` too,
    /// as in age, so the next identity can try it.
    pub fn unwrap_x25519(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        use base64::Engine as _;
        if stanza.tag != "X25519" {
            return None;
        }
        #[cfg(any(test, fuzzing))]
        UNWRAPS.with(|n| n.set(n.get() + 1));
        let invalid = || Some(Err(age::DecryptError::InvalidHeader));
        let [arg] = &stanza.args[..] else {
            return invalid();
        };
        // Canonical unpadded base64 of exactly 32 bytes (43 characters,
        // zero trailing bits, which the engine enforces).
        let mut share = [0u8; 33];
        match base64::engine::general_purpose::STANDARD_NO_PAD.decode_slice(arg, &mut share) {
            Ok(32) => {}
            _ => return invalid(),
        }
        if stanza.body.len() != FILE_KEY_BYTES + 16 {
            return invalid();
        }
        let mut epk = [0u8; 32];
        epk.copy_from_slice(&share[..32]);
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(epk));
        if !shared.was_contributory() {
            return invalid();
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(&epk);
        salt[32..].copy_from_slice(&self.public.raw);
        let mut wrap_key = Zeroizing::new(hkdf(&salt, X25519_LABEL, shared.as_bytes()));
        let opened = aead_decrypt(&wrap_key, FILE_KEY_BYTES, &stanza.body);
        wrap_key.zeroize();
        opened.ok().map(|pt| {
            let mut pt = Zeroizing::new(pt);
            Ok(FileKey::init_with_mut(|file_key| {
                file_key.copy_from_slice(&pt);
                pt.zeroize();
            }))
        })
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

#[cfg(any(test, fuzzing))]
thread_local! {
    static UNWRAPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// X25519 stanzas this thread has tried to unwrap (a test hook: the cost
/// of opening a value is counted in these). Compiled only into unit tests
/// and fuzzing builds (cargo-fuzz sets `--cfg fuzzing`), where the
/// `open_structured` target checks that no value costs more than one.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub fn unwraps_on_this_thread() -> u64 {
    UNWRAPS.with(|n| n.get())
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
    use age::{Identity as _, Recipient as _};

    /// Our X25519 unwrap and age's answer alike for every kind of stanza.
    #[test]
    fn x25519_unwrap_agrees_with_age() {
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        let file_key = || FileKey::new(Box::new([7u8; FILE_KEY_BYTES]));
        let (mine, _) = key.public().recipient().wrap_file_key(&file_key()).unwrap();
        let (theirs, _) = other
            .public()
            .recipient()
            .wrap_file_key(&file_key())
            .unwrap();
        let copy = |s: &Stanza| Stanza {
            tag: s.tag.clone(),
            args: s.args.clone(),
            body: s.body.clone(),
        };
        let stanza = copy(&mine[0]);
        let with = |f: &dyn Fn(&mut Stanza)| {
            let mut s = copy(&stanza);
            f(&mut s);
            s
        };
        let cases: Vec<(&str, Stanza)> = vec![
            ("for this key", copy(&stanza)),
            ("for another key", copy(&theirs[0])),
            ("body flipped", with(&|s| s.body[3] ^= 1)),
            (
                "body short",
                with(&|s| {
                    s.body.pop();
                }),
            ),
            (
                "share flipped",
                with(&|s| {
                    let mut a = s.args[0].clone().into_bytes();
                    a[5] = if a[5] == b'A' { b'B' } else { b'A' };
                    s.args[0] = String::from_utf8(a).unwrap();
                }),
            ),
            // Last character with non-zero trailing bits: not canonical.
            (
                "share not canonical",
                with(&|s| {
                    let mut a = s.args[0].clone().into_bytes();
                    let last = a.len() - 1;
                    a[last] = if a[last] == b'A' { b'B' } else { b'A' };
                    s.args[0] = String::from_utf8(a).unwrap();
                }),
            ),
            ("share padded", with(&|s| s.args[0].push('='))),
            ("two arguments", with(&|s| s.args.push("x".into()))),
            ("no argument", with(&|s| s.args.clear())),
            // The all-zero point: a shared secret that is not contributory.
            ("zero share", with(&|s| s.args[0] = "A".repeat(43))),
            ("other tag", with(&|s| s.tag = "scrypt".into())),
        ];
        for (what, s) in &cases {
            let ours = key.unwrap_x25519(s);
            let ages = key.identity().unwrap_stanza(s);
            let show = |r: &Option<Result<FileKey, age::DecryptError>>| match r {
                None => "none".to_string(),
                Some(Ok(k)) => format!("key {:?}", k.expose_secret()),
                Some(Err(e)) => format!("error {e:?}"),
            };
            assert_eq!(show(&ours), show(&ages), "{what}");
        }
        assert!(
            matches!(key.unwrap_x25519(&stanza), Some(Ok(k)) if k.expose_secret() == &[7u8; 16])
        );
        // A key parsed from its text unwraps the same.
        let again = SecretKey::parse(&key.to_secret_string()).unwrap();
        assert!(matches!(again.unwrap_x25519(&stanza), Some(Ok(_))));
    }

    #[test]
    fn key_id_is_stable_hex_of_public_key_hash() {
        let key = SecretKey::generate();
        let id = key.id().to_string();
        assert_eq!(id.len(), 64);
        assert_eq!(key.id().short(), id[..16]);
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
        // The short form people read is not an id: decisions need all 256 bits.
        let key = SecretKey::generate();
        assert!(key.id().short().parse::<KeyId>().is_err());
    }

    /// The eight low-order points of Curve25519 (and their non-canonical
    /// encodings) as age recipients: each is refused when read, so no
    /// recipients file, flag or request body can make age panic.
    #[test]
    fn low_order_recipients_are_refused() {
        let hex = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ];
        for h in hex {
            let raw: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let text =
                bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("age").unwrap(), &raw).unwrap();
            let err = text.parse::<PublicKey>().unwrap_err();
            assert!(matches!(err, KeyError::LowOrder(_)), "{h}: {err}");
        }
        // An ordinary key still parses.
        let key = SecretKey::generate();
        assert!(key.public().to_string().parse::<PublicKey>().is_ok());
    }
}
