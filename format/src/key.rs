//! Sealing keys of both kinds Coffer seals to: age X25519 identities
//! (`AGE-SECRET-KEY-1…`, recipients `age1…`) and age 1.3's hybrid
//! post-quantum `mlkem768x25519` identities (`AGE-SECRET-KEY-PQ-1…`,
//! recipients `age1pq1…`, see [`crate::pq`]); their public recipients and
//! key ids.

use std::fmt;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use age_core::primitives::{aead_decrypt, hkdf};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::pq;
use crate::x25519::is_low_order;

/// The two kinds of sealing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum KeyKind {
    /// age's X25519 recipient type.
    #[default]
    X25519,
    /// age 1.3's hybrid post-quantum recipient type: ML-KEM-768 and X25519
    /// (X-Wing) over HPKE. A value sealed only to such keys stays secret
    /// as long as either ML-KEM-768 or X25519 holds.
    MlKem768X25519,
}

impl KeyKind {
    /// Both kinds.
    pub const ALL: [KeyKind; 2] = [KeyKind::X25519, KeyKind::MlKem768X25519];

    /// The word used on command lines, labels and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::X25519 => "x25519",
            KeyKind::MlKem768X25519 => "mlkem768x25519",
        }
    }

    /// The tag of the age stanza a recipient of this kind writes.
    pub fn stanza_tag(self) -> &'static str {
        match self {
            KeyKind::X25519 => "X25519",
            KeyKind::MlKem768X25519 => pq::STANZA_TAG,
        }
    }

    /// The kind whose recipient writes stanzas with this tag.
    pub fn of_stanza_tag(tag: &str) -> Option<KeyKind> {
        KeyKind::ALL.into_iter().find(|k| k.stanza_tag() == tag)
    }

    /// Whether sealing to this kind resists a quantum computer.
    pub fn is_post_quantum(self) -> bool {
        self == KeyKind::MlKem768X25519
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown key kind {:?} (expected x25519 or mlkem768x25519)",
                    s.chars().take(40).collect::<String>()
                )
            })
    }
}

/// HKDF label of age's X25519 recipient stanza.
const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";

/// Length of a key id in bytes: the whole SHA-256 digest.
pub const KEY_ID_LEN: usize = 32;

/// Hex digits shown for a key id where people read it (tables, messages,
/// labels). Never used to decide anything: every comparison is of the
/// whole id.
pub const SHORT_ID_HEX: usize = 16;

/// Public id of a sealing key: SHA-256 over the raw public key (the Bech32
/// payload of its recipient: 32 bytes for X25519, 1,216 for
/// mlkem768x25519), printed as 64 lowercase hex digits. Decisions (which key opens a
/// value, which recipient re-encryption keeps) compare all 256 bits, so no
/// key can be ground to collide with another's id.
///
/// Anyone holding a recipients file (or a sealed value) can compute or read
/// it; it reveals nothing the public key does not already reveal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// Key id of a raw public key (a recipient's Bech32 payload).
    pub fn from_public_bytes(public: &[u8]) -> Self {
        KeyId(Sha256::digest(public).into())
    }

    /// Key id of a recipient.
    pub fn of(recipient: &PublicKey) -> Self {
        recipient.id
    }

    /// The first [`SHORT_ID_HEX`] hex digits, for people to read.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(SHORT_ID_HEX);
        s
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
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
    /// A line is not an `age1…` or `age1pq1…` recipient.
    #[error("not an age recipient (age1… or age1pq1…): {0}")]
    BadRecipient(String),
    /// An `age1pq1…` recipient that is not a valid public key.
    #[error("{text} is not a valid mlkem768x25519 recipient: {why}")]
    BadPqRecipient {
        /// The recipient as written (public).
        text: String,
        /// What is wrong with it.
        why: pq::PqKeyError,
    },
    /// A recipient whose point has small order: every X25519 exchange with
    /// it gives the all-zero secret, so nothing sealed to it is secret.
    #[error("{0} is a low-order X25519 point: nothing sealed to it would be secret")]
    LowOrder(String),
    /// A line is not an `AGE-SECRET-KEY-1…` or `AGE-SECRET-KEY-PQ-1…`
    /// identity. The line itself is never echoed: it may be a private key
    /// with a typo.
    #[error("line {line}: not an age identity (AGE-SECRET-KEY-1… or AGE-SECRET-KEY-PQ-1…)")]
    BadIdentity {
        /// The line's number, from 1.
        line: usize,
    },
    /// The file held no identity at all.
    #[error(
        "no identity found (expected lines starting with AGE-SECRET-KEY-1 or AGE-SECRET-KEY-PQ-1)"
    )]
    NoIdentity,
}

/// The public half of a sealing key: an age recipient of either kind plus
/// its id.
#[derive(Clone)]
pub struct PublicKey {
    recipient: Recipient,
    id: KeyId,
}

#[derive(Clone)]
enum Recipient {
    X25519 {
        recipient: age::x25519::Recipient,
        raw: [u8; 32],
    },
    Pq(Box<pq::Recipient>),
}

impl PublicKey {
    /// The age recipient, for encryption. An mlkem768x25519 recipient
    /// returns age's "postquantum" label, so age refuses to seal a file to
    /// it beside an X25519 recipient.
    pub fn recipient(&self) -> &dyn age::Recipient {
        match &self.recipient {
            Recipient::X25519 { recipient, .. } => recipient,
            Recipient::Pq(r) => r.as_ref(),
        }
    }

    /// Wraps a file key into this recipient's one stanza.
    pub(crate) fn wrap(&self, file_key: &FileKey) -> Result<Stanza, age::EncryptError> {
        match &self.recipient {
            Recipient::X25519 { recipient, .. } => {
                let (mut stanzas, _) = age::Recipient::wrap_file_key(recipient, file_key)?;
                Ok(stanzas.remove(0))
            }
            Recipient::Pq(r) => r.wrap(file_key),
        }
    }

    /// The key id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        match self.recipient {
            Recipient::X25519 { .. } => KeyKind::X25519,
            Recipient::Pq(_) => KeyKind::MlKem768X25519,
        }
    }

    /// The raw public key: the recipient string's Bech32 payload.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.recipient {
            Recipient::X25519 { raw, .. } => raw,
            Recipient::Pq(r) => r.as_bytes(),
        }
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.as_bytes() == other.as_bytes()
    }
}
impl Eq for PublicKey {}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.recipient {
            Recipient::X25519 { recipient, .. } => recipient.fmt(f),
            Recipient::Pq(r) => r.fmt(f),
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.recipient {
            Recipient::X25519 { recipient, .. } => {
                write!(f, "PublicKey({}, {})", self.id, recipient)
            }
            // 1,959 characters: the id names it.
            Recipient::Pq(_) => write!(f, "PublicKey({}, mlkem768x25519)", self.id),
        }
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || KeyError::BadRecipient(shown(s));
        if s.starts_with("age1pq1") {
            let r: pq::Recipient = s.parse().map_err(|why| match why {
                pq::PqKeyError::LowOrder => KeyError::LowOrder(s.chars().take(80).collect()),
                pq::PqKeyError::Encoding => bad(),
                why => KeyError::BadPqRecipient {
                    text: shown(s),
                    why,
                },
            })?;
            return Ok(PublicKey {
                id: KeyId::from_public_bytes(r.as_bytes()),
                recipient: Recipient::Pq(Box::new(r)),
            });
        }
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
            recipient: Recipient::X25519 { recipient, raw },
            id: KeyId::from_public_bytes(&raw),
        })
    }
}

/// A private sealing key of either kind. `Debug` never shows the secret.
#[derive(Clone)]
pub struct SecretKey {
    secret: Secret,
    public: PublicKey,
}

#[derive(Clone)]
enum Secret {
    X25519 {
        identity: age::x25519::Identity,
        /// The same scalar, for [`SecretKey::unwrap_x25519`]; wiped on drop.
        secret: x25519_dalek::StaticSecret,
    },
    Pq(Box<pq::Identity>),
}

impl SecretKey {
    /// A fresh random X25519 key.
    pub fn generate() -> Self {
        Self::from_identity(age::x25519::Identity::generate())
    }

    /// A fresh random key of the given kind.
    pub fn generate_kind(kind: KeyKind) -> Self {
        match kind {
            KeyKind::X25519 => Self::generate(),
            KeyKind::MlKem768X25519 => Self::from_pq(pq::Identity::generate()),
        }
    }

    fn from_pq(identity: pq::Identity) -> Self {
        let r = identity.to_public().clone();
        let public = PublicKey {
            id: KeyId::from_public_bytes(r.as_bytes()),
            recipient: Recipient::Pq(Box::new(r)),
        };
        SecretKey {
            secret: Secret::Pq(Box::new(identity)),
            public,
        }
    }

    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        self.public.kind()
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
            secret: Secret::X25519 { identity, secret },
            public,
        }
    }

    /// Parses one `AGE-SECRET-KEY-1…` or `AGE-SECRET-KEY-PQ-1…` line.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        parse_line(s.trim()).ok_or(KeyError::BadIdentity { line: 1 })
    }

    /// The identity, for decryption: the key itself, which unwraps its own
    /// kind's stanzas (see [`SecretKey::unwrap`]).
    pub fn identity(&self) -> &dyn age::Identity {
        self
    }

    /// Unwraps the file key of a stanza of this key's kind, or `None` for
    /// a stanza of another kind or sealed to another key; `Some(Err)` for a
    /// malformed stanza of this kind.
    pub fn unwrap(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        match &self.secret {
            Secret::X25519 { .. } => self.unwrap_x25519(stanza),
            Secret::Pq(identity) => {
                if stanza.tag != pq::STANZA_TAG {
                    return None;
                }
                #[cfg(any(test, fuzzing))]
                UNWRAPS.with(|n| n.set(n.get() + 1));
                identity.unwrap(stanza)
            }
        }
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
        let Secret::X25519 { secret, .. } = &self.secret else {
            return None;
        };
        let Recipient::X25519 { raw: public, .. } = &self.public.recipient else {
            return None;
        };
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
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(epk));
        if !shared.was_contributory() {
            return invalid();
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(&epk);
        salt[32..].copy_from_slice(public);
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

    /// A 32-byte key for another purpose than age, derived from this
    /// private key with HKDF-SHA-256 under `label`, which names the purpose
    /// (distinct labels give independent keys). Only the holder of the
    /// private key can compute it; knowing it reveals nothing of the private
    /// key. The controller keys its MACs with it (`coffer.dev/unsealed`).
    pub fn derive_key(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        let secret = self.to_secret_string();
        Zeroizing::new(hkdf(&[], label, secret.as_bytes()))
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The key id.
    pub fn id(&self) -> KeyId {
        self.public.id
    }

    /// The `AGE-SECRET-KEY-1…` or `AGE-SECRET-KEY-PQ-1…` string, in a
    /// buffer wiped on drop.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        match &self.secret {
            Secret::X25519 { identity, .. } => {
                Zeroizing::new(identity.to_string().expose_secret().to_string())
            }
            Secret::Pq(identity) => identity.to_secret_string(),
        }
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

/// Recipient stanzas (X25519 or mlkem768x25519) this thread has tried to
/// unwrap (a test hook: the cost of opening a value is counted in these). Compiled only into unit tests
/// and fuzzing builds (cargo-fuzz sets `--cfg fuzzing`), where the
/// `open_structured` target checks that no value costs more than one.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub fn unwraps_on_this_thread() -> u64 {
    UNWRAPS.with(|n| n.get())
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}, {}, [redacted])", self.kind(), self.id())
    }
}

impl age::Identity for SecretKey {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        self.unwrap(stanza)
    }
}

/// One identity line of either kind, or `None`.
fn parse_line(line: &str) -> Option<SecretKey> {
    if line
        .get(..19)
        .is_some_and(|p| p.eq_ignore_ascii_case("AGE-SECRET-KEY-PQ-1"))
    {
        return line.parse::<pq::Identity>().ok().map(SecretKey::from_pq);
    }
    age::x25519::Identity::from_str(line)
        .ok()
        .map(SecretKey::from_identity)
}

/// Reads an age identity file: `#` comments, blank lines and one
/// `AGE-SECRET-KEY-1…` or `AGE-SECRET-KEY-PQ-1…` per line.
pub fn parse_identity_file(text: &str) -> Result<Vec<SecretKey>, KeyError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(parse_line(line).ok_or(KeyError::BadIdentity { line: i + 1 })?);
    }
    if keys.is_empty() {
        return Err(KeyError::NoIdentity);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::Identity as _;

    #[test]
    fn derived_keys_depend_on_the_key_and_the_label_only() {
        for kind in [KeyKind::X25519, KeyKind::MlKem768X25519] {
            let key = SecretKey::generate_kind(kind);
            let again = SecretKey::parse(&key.to_secret_string()).unwrap();
            let other = SecretKey::generate_kind(kind);
            assert_eq!(*key.derive_key(b"a"), *again.derive_key(b"a"));
            assert_ne!(*key.derive_key(b"a"), *key.derive_key(b"b"));
            assert_ne!(*key.derive_key(b"a"), *other.derive_key(b"a"));
        }
    }

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
        // age's own X25519 identity for the same key.
        let age_identity =
            age::x25519::Identity::from_str(key.to_secret_string().as_str()).unwrap();
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
            let ages = age_identity.unwrap_stanza(s);
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
            "line 2: not an age identity (AGE-SECRET-KEY-1… or AGE-SECRET-KEY-PQ-1…)"
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
