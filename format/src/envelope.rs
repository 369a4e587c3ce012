//! The sealed value, format v1: an age ciphertext whose plaintext is a
//! readable binding header followed by the value. See `docs/format.md`.

use std::collections::HashSet;
use std::fmt;
use std::io::{Read, Write};

use age_core::format::{FileKey, Stanza};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::key::{KeyId, KeyKind, PublicKey, SecretKey};
use crate::keyring::Keyring;

/// First line of every v1 plaintext.
pub const MAGIC_V1: &str = "coffer.dev/v1";
/// Prefix every Coffer plaintext starts with, whatever its version.
const MAGIC_PREFIX: &str = "coffer.dev/";
/// Tag of the age stanza that carries a key id.
pub const KEY_ID_STANZA: &str = "coffer-kid";
/// Largest value that can be sealed: a Secret is at most 1 MiB.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;
/// Largest base64 sealed value accepted on opening.
pub const MAX_SEALED_LEN: usize = 1536 * 1024;
/// Longest plaintext opened: the largest value, its binding header and
/// padding. Anything longer was not sealed by Coffer and is refused whole.
pub const MAX_PLAINTEXT_LEN: usize = MAX_VALUE_LEN + 64 * 1024;
/// Most age stanzas accepted on opening (two per recipient plus grease).
pub const MAX_STANZAS: usize = 64;
/// Most recipients a value can be sealed to.
pub const MAX_RECIPIENTS: usize = 30;

/// Where a sealed value may be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Only in one namespace, under one SealedSecret name.
    #[default]
    Strict,
    /// Under any name in one namespace.
    Namespace,
    /// Anywhere in the cluster.
    Cluster,
}

impl Scope {
    /// The word used in the header and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::Namespace => "namespace",
            Scope::Cluster => "cluster",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Scope::Strict),
            "namespace" => Ok(Scope::Namespace),
            "cluster" => Ok(Scope::Cluster),
            other => Err(format!(
                "unknown scope {other:?} (expected strict, namespace or cluster)"
            )),
        }
    }
}

/// Where a value was found: the SealedSecret's namespace and name and the
/// item key inside `spec.encryptedData`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location<'a> {
    /// The SealedSecret's namespace.
    pub namespace: &'a str,
    /// The SealedSecret's name.
    pub name: &'a str,
    /// The item key.
    pub key: &'a str,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} item {:?}", self.namespace, self.name, self.key)
    }
}

/// What a value is bound to, as written inside its authenticated plaintext.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    /// How far the value may travel: which of namespace and name bind it.
    pub scope: Scope,
    /// Set for `strict` and `namespace`.
    pub namespace: Option<String>,
    /// Set for `strict` only.
    pub name: Option<String>,
    /// The item key.
    pub key: String,
}

impl Binding {
    /// The binding of a value sealed with `scope` for `at`.
    pub fn new(scope: Scope, at: Location<'_>) -> Self {
        Binding {
            scope,
            namespace: (scope != Scope::Cluster).then(|| at.namespace.to_string()),
            name: (scope == Scope::Strict).then(|| at.name.to_string()),
            key: at.key.to_string(),
        }
    }

    /// Whether a value with this binding may be opened at `at`.
    pub fn allows(&self, at: Location<'_>) -> bool {
        self.key == at.key
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == at.namespace)
            && self.name.as_deref().is_none_or(|n| n == at.name)
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.namespace, &self.name) {
            (Some(ns), Some(n)) => write!(f, "{ns}/{n} item {:?}", self.key),
            (Some(ns), None) => write!(f, "any name in namespace {ns} item {:?}", self.key),
            _ => write!(f, "any namespace item {:?}", self.key),
        }
    }
}

/// Why a value could not be sealed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The value is larger than a Secret may hold.
    #[error("value is {len} bytes; a Secret holds at most {MAX_VALUE_LEN}")]
    TooLarge {
        /// The value's length in bytes.
        len: usize,
    },
    /// No recipient was given.
    #[error("no recipients: give at least one recipients file")]
    NoRecipients,
    /// More recipients than a value may be sealed to.
    #[error("{count} recipients; at most {MAX_RECIPIENTS} are allowed")]
    TooManyRecipients {
        /// How many were given.
        count: usize,
    },
    /// A namespace, name or item key Kubernetes would not accept.
    #[error("{what} {value:?} is not valid: {why}")]
    InvalidName {
        /// Which of them (`namespace`, `name`, `item key`).
        what: &'static str,
        /// The name given.
        value: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// age refused to encrypt (its reason).
    #[error("age encryption failed: {0}")]
    Age(String),
}

/// Why a sealed value was refused. Messages never contain plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// The base64 text is longer than any value Coffer seals.
    #[error("sealed value is {len} bytes of base64; at most {MAX_SEALED_LEN} are accepted")]
    TooLarge {
        /// The text's length in bytes.
        len: usize,
    },
    /// Not canonical standard base64.
    #[error("sealed value is not canonical standard base64")]
    Base64,
    /// Not an age v1 file as Coffer writes it; says what is wrong.
    #[error("sealed value is malformed: {0}")]
    Malformed(&'static str),
    /// More age stanzas than a value may hold.
    #[error("sealed value has {count} age stanzas; at most {MAX_STANZAS} are accepted")]
    TooManyStanzas {
        /// How many the header holds.
        count: usize,
    },
    /// Its plaintext names a format version this build does not know.
    #[error("sealed value uses format {0:?}, which this version of Coffer does not know")]
    UnsupportedVersion(String),
    /// No `coffer-kid` stanza: sealed with plain age or another tool.
    #[error("sealed value carries no {KEY_ID_STANZA} stanza, so no key can be chosen")]
    NoKeyId,
    /// None of the keys it was sealed to is in the ring.
    #[error("sealed for key {}, which this cluster does not hold (it holds {})", list(.sealed_to), list(.held))]
    NoMatchingKey {
        /// The key ids the value names.
        sealed_to: Vec<KeyId>,
        /// The key ids the ring holds.
        held: Vec<KeyId>,
    },
    /// Sealed only to a key that is retired.
    #[error("sealed for key {0}, which has been retired; re-seal it or restore the key")]
    KeyRetired(KeyId),
    /// age authentication failed: the ciphertext was altered or truncated.
    #[error("sealed value was altered or truncated (age authentication failed)")]
    Tampered,
    /// Opened somewhere its binding does not allow.
    #[error("sealed for {sealed_for}, found at {found_at}")]
    ScopeMismatch {
        /// Where it may be opened, as its binding says.
        sealed_for: String,
        /// Where it was found.
        found_at: String,
    },
}

fn list(ids: &[KeyId]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl OpenError {
    /// The reason used in the SealedSecret status and in metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::NoMatchingKey { .. } => "NoMatchingKey",
            OpenError::KeyRetired(_) => "KeyRetired",
            OpenError::ScopeMismatch { .. } => "ScopeMismatch",
            OpenError::UnsupportedVersion(_) => "UnsupportedVersion",
            OpenError::Tampered => "Tampered",
            _ => "Malformed",
        }
    }
}

/// An age recipient that adds a `coffer-kid` stanza naming its key id beside
/// the recipient's stanza (X25519 or mlkem768x25519). age implementations
/// skip stanzas they do not know, and the header MAC covers it, so it
/// cannot be changed without detection.
///
/// It returns no age labels: age would refuse to seal a file to an
/// mlkem768x25519 recipient (label "postquantum") beside an X25519 one.
/// A value for several clusters may mix kinds on purpose (a cluster not yet
/// moved to post-quantum keys); such a value is only as strong as X25519,
/// and [`Envelope::post_quantum`] and the CLI say so.
struct KeyIdRecipient<'a>(&'a PublicKey, Scope);

impl age::Recipient for KeyIdRecipient<'_> {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        let stanzas = vec![
            self.0.wrap(file_key)?,
            Stanza {
                tag: KEY_ID_STANZA.to_string(),
                args: vec![self.0.id().to_string(), self.1.to_string()],
                body: Vec::new(),
            },
        ];
        Ok((stanzas, HashSet::new()))
    }
}

/// Plaintext length after padding: at least 256 bytes, then the next power
/// of two up to 16 KiB, then whole 16 KiB steps. The ciphertext length
/// shows only this bucket.
pub fn padded_len(len: usize) -> usize {
    const STEP: usize = 16 * 1024;
    if len <= 256 {
        256
    } else if len <= STEP {
        len.next_power_of_two()
    } else {
        len.div_ceil(STEP) * STEP
    }
}

fn check_name(what: &'static str, value: &str, item_key: bool) -> Result<(), SealError> {
    let bad = |why| {
        Err(SealError::InvalidName {
            what,
            value: value.chars().take(64).collect(),
            why,
        })
    };
    if value.is_empty() {
        return bad("it is empty");
    }
    if value.len() > 253 {
        return bad("it is longer than 253 characters");
    }
    let ok = if item_key {
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    } else {
        value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !ok {
        return bad(if item_key {
            "a Secret key may only hold letters, digits, '-', '_' and '.'"
        } else {
            "Kubernetes names hold only lowercase letters, digits, '-' and '.'"
        });
    }
    Ok(())
}

/// Builds the v1 plaintext: header lines, a padding line, a blank line, the
/// value. Returned in a buffer wiped on drop.
fn plaintext(binding: &Binding, value: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut head = format!("{MAGIC_V1}\nscope: {}\n", binding.scope);
    if let Some(ns) = &binding.namespace {
        head.push_str(&format!("namespace: {ns}\n"));
    }
    if let Some(name) = &binding.name {
        head.push_str(&format!("name: {name}\n"));
    }
    head.push_str(&format!("key: {}\n", binding.key));
    // "pad: " + dots + "\n" + "\n"
    let bare = head.len() + "pad: \n\n".len() + value.len();
    let dots = padded_len(bare) - bare;
    let mut out = Zeroizing::new(Vec::with_capacity(bare + dots));
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(b"pad: ");
    let len = out.len();
    out.resize(len + dots, b'.');
    out.extend_from_slice(b"\n\n");
    out.extend_from_slice(value);
    out
}

/// Seals `value` for `at` with `scope` to every recipient. Returns the
/// standard base64 of the binary age ciphertext.
pub fn seal(
    value: &[u8],
    scope: Scope,
    at: Location<'_>,
    recipients: &[PublicKey],
) -> Result<String, SealError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(SealError::TooLarge { len: value.len() });
    }
    if scope != Scope::Cluster {
        check_name("namespace", at.namespace, false)?;
    }
    if scope == Scope::Strict {
        check_name("name", at.name, false)?;
    }
    check_name("item key", at.key, true)?;
    seal_plaintext(
        &plaintext(&Binding::new(scope, at), value),
        scope,
        recipients,
    )
}

/// Seals an opened value again, to other recipients, with exactly the
/// binding it was sealed with: re-encryption can never widen where a value
/// opens.
pub fn reseal(opened: &Opened, recipients: &[PublicKey]) -> Result<String, SealError> {
    seal_plaintext(
        &plaintext(&opened.binding, &opened.value),
        opened.binding.scope,
        recipients,
    )
}

/// Seals an already built plaintext. Public only for tests and
/// re-encryption, which keeps a value's authenticated header as it is.
#[doc(hidden)]
pub fn seal_plaintext(
    plaintext: &[u8],
    scope: Scope,
    recipients: &[PublicKey],
) -> Result<String, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(SealError::TooManyRecipients {
            count: recipients.len(),
        });
    }
    // One stanza pair per distinct key: a value names each key once.
    let mut wrapped: Vec<KeyIdRecipient<'_>> = Vec::with_capacity(recipients.len());
    for r in recipients {
        if !wrapped.iter().any(|w| w.0 == r) {
            wrapped.push(KeyIdRecipient(r, scope));
        }
    }
    let encryptor =
        age::Encryptor::with_recipients(wrapped.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| SealError::Age(e.to_string()))?;
    let mut out = Vec::with_capacity(plaintext.len() + 400);
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| SealError::Age(e.to_string()))?;
    writer
        .write_all(plaintext)
        .and_then(|_| writer.finish().map(|_| ()))
        .map_err(|e| SealError::Age(e.to_string()))?;
    Ok(STANDARD.encode(out))
}

/// The parts of an age header Coffer reads without a private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Key ids named by `coffer-kid` stanzas, in header order.
    pub key_ids: Vec<KeyId>,
    /// For each key id, the index among recipient stanzas (X25519 and
    /// mlkem768x25519, in header order) of the stanza just before it
    /// (Coffer writes each recipient's pair together, and a header in any
    /// other order is refused).
    pub key_stanza: Vec<usize>,
    /// For each key id, the kind of the stanza just before it.
    pub key_kinds: Vec<KeyKind>,
    /// Number of recipient stanzas, X25519 and mlkem768x25519 (one per
    /// recipient).
    pub recipient_stanzas: usize,
    /// Number of mlkem768x25519 stanzas among them.
    pub pq_stanzas: usize,
    /// The scope the `coffer-kid` stanzas announce. Readable without a key
    /// for inspection; the controller checks it equals the authenticated
    /// binding header.
    pub scope: Scope,
    /// Length of the binary ciphertext.
    pub ciphertext_len: usize,
    /// Length of the age payload (after the header).
    pub payload_len: usize,
}

impl Envelope {
    /// Whether every recipient stanza is post-quantum (mlkem768x25519): the
    /// value stays secret against a quantum computer only then, since the
    /// file key is in every stanza.
    pub fn post_quantum(&self) -> bool {
        self.recipient_stanzas > 0 && self.pq_stanzas == self.recipient_stanzas
    }

    /// The padded plaintext length: all the ciphertext length reveals about
    /// the value (age adds a 16-byte nonce, and a 16-byte tag per 64 KiB).
    pub fn size_bucket(&self) -> usize {
        let body = self.payload_len.saturating_sub(16);
        let chunks = body.div_ceil(64 * 1024 + 16).max(1);
        body.saturating_sub(16 * chunks)
    }
}

/// Decodes a sealed value's base64 and reads its age header: key ids and
/// stanza count. Needs no key. Enforces the size and stanza caps.
pub fn inspect(sealed: &str) -> Result<(Envelope, Vec<u8>), OpenError> {
    let bytes = decode(sealed)?;
    let envelope = inspect_bytes(&bytes)?;
    Ok((envelope, bytes))
}

/// Decodes a sealed value's base64, enforcing the size cap. The bytes are
/// what [`inspect_bytes`] and [`open_bytes`] take; a value that decodes is
/// canonical base64, so encoding the bytes again gives the same text.
pub fn decode(sealed: &str) -> Result<Vec<u8>, OpenError> {
    if sealed.len() > MAX_SEALED_LEN {
        return Err(OpenError::TooLarge { len: sealed.len() });
    }
    STANDARD.decode(sealed).map_err(|_| OpenError::Base64)
}

/// [`inspect`] of a value already decoded by [`decode`].
pub fn inspect_bytes(bytes: &[u8]) -> Result<Envelope, OpenError> {
    let header_end = find_header_end(bytes)?;
    let header = std::str::from_utf8(&bytes[..header_end])
        .map_err(|_| OpenError::Malformed("age header is not text"))?;
    let mut lines = header.split('\n');
    if lines.next() != Some("age-encryption.org/v1") {
        return Err(OpenError::Malformed("not an age v1 ciphertext"));
    }
    let mut read = HeaderStanzas::default();
    let mut stanzas = 0usize;
    let mut last_kind: Option<KeyKind> = None;
    for line in lines {
        let Some(rest) = line.strip_prefix("-> ") else {
            continue;
        };
        stanzas += 1;
        if stanzas > MAX_STANZAS {
            return Err(OpenError::TooManyStanzas {
                count: header.matches("\n-> ").count(),
            });
        }
        let mut words = rest.split(' ');
        let tag = words.next();
        let kind = tag.and_then(KeyKind::of_stanza_tag);
        let follows = std::mem::replace(&mut last_kind, kind);
        match tag {
            Some(KEY_ID_STANZA) => read.key_id(words, follows)?,
            _ if kind.is_some() => {
                read.recipients += 1;
                if kind == Some(KeyKind::MlKem768X25519) {
                    read.pq_stanzas += 1;
                }
            }
            _ => {}
        }
    }
    let Some(scope) = read.scope else {
        return Err(OpenError::NoKeyId);
    };
    let mac_line_end = bytes[header_end..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| header_end + p + 1)
        .ok_or(OpenError::Malformed(
            "age header MAC line is not terminated",
        ))?;
    Ok(Envelope {
        key_ids: read.key_ids,
        key_stanza: read.key_stanza,
        key_kinds: read.key_kinds,
        recipient_stanzas: read.recipients,
        pq_stanzas: read.pq_stanzas,
        scope,
        ciphertext_len: bytes.len(),
        payload_len: bytes.len() - mac_line_end,
    })
}

/// What [`inspect_bytes`] reads from the header's stanzas, in their order.
#[derive(Default)]
struct HeaderStanzas {
    /// The key ids of the `coffer-kid` stanzas.
    key_ids: Vec<KeyId>,
    /// For each key id, the index of the recipient stanza it follows.
    key_stanza: Vec<usize>,
    /// For each key id, the kind of the recipient stanza it follows.
    key_kinds: Vec<KeyKind>,
    /// Recipient stanzas (X25519 or mlkem768x25519) so far.
    recipients: usize,
    /// Of which post-quantum.
    pq_stanzas: usize,
    /// The scope the `coffer-kid` stanzas announce.
    scope: Option<Scope>,
}

impl HeaderStanzas {
    /// One `coffer-kid` stanza: `words` are its arguments, `follows` the
    /// kind of the stanza right before it (`None`: not a recipient's).
    fn key_id<'a>(
        &mut self,
        mut words: impl Iterator<Item = &'a str>,
        follows: Option<KeyKind>,
    ) -> Result<(), OpenError> {
        let id = words
            .next()
            .and_then(|w| w.parse::<KeyId>().ok())
            .ok_or(OpenError::Malformed(
                "coffer-kid stanza without a valid key id",
            ))?;
        let announced: Scope =
            words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or(OpenError::Malformed(
                    "coffer-kid stanza without a valid scope",
                ))?;
        if words.next().is_some() {
            return Err(OpenError::Malformed(
                "coffer-kid stanza with extra arguments",
            ));
        }
        if self.scope.is_some_and(|s| s != announced) {
            return Err(OpenError::Malformed(
                "coffer-kid stanzas announce different scopes",
            ));
        }
        self.scope = Some(announced);
        // Coffer writes each recipient as its stanza (X25519 or
        // mlkem768x25519) and its key id right after it. Any other order is
        // refused: a key id that points at no stanza would make an identity
        // try every stanza, one key agreement each.
        let Some(follows) = follows else {
            return Err(OpenError::Malformed(
                "coffer-kid stanza does not follow its recipient stanza",
            ));
        };
        if self.key_ids.contains(&id) {
            return Err(OpenError::Malformed("key id named twice"));
        }
        // No sealer writes more: re-encryption, which seals to every key a
        // value names, could not seal such a value again.
        if self.key_ids.len() == MAX_RECIPIENTS {
            return Err(OpenError::Malformed(
                "more key ids than a value may be sealed to",
            ));
        }
        self.key_ids.push(id);
        self.key_stanza.push(self.recipients - 1);
        self.key_kinds.push(follows);
        Ok(())
    }
}

/// Index just past the `\n` before the header's `---` line.
fn find_header_end(bytes: &[u8]) -> Result<usize, OpenError> {
    // The header is small; a value whose first 64 KiB hold no MAC line is
    // not a ciphertext Coffer wrote.
    let window = &bytes[..bytes.len().min(64 * 1024)];
    window
        .windows(5)
        .position(|w| w == b"\n--- ")
        .map(|p| p + 1)
        .ok_or(OpenError::Malformed("no age header MAC line"))
}

/// A value opened by [`open`]: the binding it was sealed with and the value.
pub struct Opened {
    /// The binding it was sealed with, read from its authenticated
    /// plaintext.
    pub binding: Binding,
    /// The key that opened it.
    pub key_id: KeyId,
    /// Whether `key_id` is the only key of the ring, among those the header
    /// names, that is usable: without it the value would not open here.
    /// (The other stanzas are not tried; see docs/decisions.md, "Which
    /// SealedSecrets need a key".)
    pub sole_key: bool,
    /// The value, wiped on drop.
    pub value: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("binding", &self.binding)
            .field("key_id", &self.key_id)
            .field("value", &"[redacted]")
            .finish()
    }
}

/// Opens a sealed value found at `at` with the ring. Refuses it unless its
/// authenticated binding allows `at`.
pub fn open(
    sealed: &str,
    at: Location<'_>,
    ring: &Keyring,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    open_bytes(&decode(sealed)?, at, ring)
}

/// [`open`] of a value already decoded by [`decode`].
pub fn open_bytes(
    sealed: &[u8],
    at: Location<'_>,
    ring: &Keyring,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    open_bytes_by(sealed, at, ring).map(|(value, _)| value)
}

/// [`open_bytes`], also saying which key of the ring opened the value.
pub fn open_bytes_by(
    sealed: &[u8],
    at: Location<'_>,
    ring: &Keyring,
) -> Result<(Zeroizing<Vec<u8>>, KeyId), OpenError> {
    open_bytes_at(sealed, at, ring).map(|opened| (opened.value, opened.key_id))
}

/// [`open_bytes`], with all that [`Opened`] says: which key of the ring
/// opened the value and whether it was the only one that could.
pub fn open_bytes_at(sealed: &[u8], at: Location<'_>, ring: &Keyring) -> Result<Opened, OpenError> {
    let opened = open_unchecked_bytes(sealed, ring)?;
    if !opened.binding.allows(at) {
        return Err(OpenError::ScopeMismatch {
            sealed_for: opened.binding.to_string(),
            found_at: at.to_string(),
        });
    }
    Ok(opened)
}

/// Decrypts and parses a value without checking where it was found. Callers
/// must check [`Binding::allows`]; re-encryption uses this to keep the
/// binding exactly as sealed.
pub fn open_unchecked(sealed: &str, ring: &Keyring) -> Result<Opened, OpenError> {
    open_unchecked_bytes(&decode(sealed)?, ring)
}

/// [`open_unchecked`] of a value already decoded by [`decode`].
pub fn open_unchecked_bytes(bytes: &[u8], ring: &Keyring) -> Result<Opened, OpenError> {
    let envelope = inspect_bytes(bytes)?;
    if envelope.key_ids.is_empty() {
        return Err(OpenError::NoKeyId);
    }
    // A key id names a key of one kind; the stanza before it must be of
    // that kind (else the header was forged and the value is refused as
    // tampered, without trying another stanza).
    let found = envelope
        .key_ids
        .iter()
        .zip(&envelope.key_stanza)
        .find_map(|(id, at)| ring.usable(*id).map(|k| (k, *at)));
    let (key, stanza_index) = match found {
        Some(found) => found,
        None => {
            if let Some(id) = envelope.key_ids.iter().find(|id| ring.is_retired(**id)) {
                return Err(OpenError::KeyRetired(*id));
            }
            return Err(OpenError::NoMatchingKey {
                sealed_to: envelope.key_ids,
                held: ring.usable_ids(),
            });
        }
    };
    // `new_buffered` reads the header a line at a time; `new` re-parses it
    // from the start after every few bytes it reads, quadratic in its length.
    let decryptor = age::Decryptor::new_buffered(bytes).map_err(map_age_error)?;
    let mut reader = decryptor
        .decrypt(std::iter::once(&OneStanza {
            key,
            index: stanza_index,
        } as &dyn age::Identity))
        .map_err(map_age_error)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(bytes.len().min(MAX_PLAINTEXT_LEN + 1)));
    // Read one byte past the cap: a longer plaintext is refused rather than
    // cut short, and a plaintext within it has been read to its end, where
    // age checks the STREAM's last-chunk flag (so a ciphertext with its last
    // chunks removed is refused too).
    reader
        .by_ref()
        .take(MAX_PLAINTEXT_LEN as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|_| OpenError::Tampered)?;
    if plain.len() > MAX_PLAINTEXT_LEN {
        return Err(OpenError::Malformed(
            "plaintext is longer than any value Coffer seals",
        ));
    }
    let (binding, value) = parse_plaintext(&plain)?;
    if binding.scope != envelope.scope {
        return Err(OpenError::Malformed(
            "the scope in the age header disagrees with the binding header",
        ));
    }
    let sole_key = !envelope
        .key_ids
        .iter()
        .any(|id| *id != key.id() && ring.usable(*id).is_some());
    Ok(Opened {
        binding,
        key_id: key.id(),
        sole_key,
        value: Zeroizing::new(value.to_vec()),
    })
}

/// An identity that tries only the recipient stanza the key id points at,
/// so opening a value costs one key agreement (X25519, or ML-KEM-768 and
/// X25519) however many recipients or keys there are. It never tries another stanza: a key id that does not
/// match its stanza means the header was forged.
struct OneStanza<'a> {
    key: &'a SecretKey,
    index: usize,
}

impl age::Identity for OneStanza<'_> {
    fn unwrap_stanza(&self, _: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        // age calls `unwrap_stanzas`; one stanza alone says nothing about
        // its position, so it is never unwrapped.
        None
    }

    fn unwrap_stanzas(&self, stanzas: &[Stanza]) -> Option<Result<FileKey, age::DecryptError>> {
        let stanza = stanzas
            .iter()
            .filter(|s| KeyKind::of_stanza_tag(&s.tag).is_some())
            .nth(self.index)?;
        self.key.unwrap(stanza)
    }
}

fn map_age_error(e: age::DecryptError) -> OpenError {
    match e {
        age::DecryptError::InvalidHeader => OpenError::Malformed("invalid age header"),
        age::DecryptError::UnknownFormat => OpenError::Malformed("unknown age format"),
        // The key id said this key; if it cannot unwrap the file key, the
        // key id stanza or the X25519 stanza was forged.
        age::DecryptError::NoMatchingKeys => OpenError::Tampered,
        _ => OpenError::Tampered,
    }
}

/// Parses a v1 plaintext strictly into its binding and value.
pub fn parse_plaintext(plain: &[u8]) -> Result<(Binding, &[u8]), OpenError> {
    let bad = OpenError::Malformed;
    let first_nl = plain
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(bad("binding header has no version line"))?;
    let version =
        std::str::from_utf8(&plain[..first_nl]).map_err(|_| bad("binding header is not text"))?;
    if version != MAGIC_V1 {
        if version.starts_with(MAGIC_PREFIX) && version.len() <= 40 {
            return Err(OpenError::UnsupportedVersion(version.to_string()));
        }
        return Err(bad("not a Coffer value (no coffer.dev version line)"));
    }
    let end = plain
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or(bad("binding header is not terminated by a blank line"))?;
    let head = std::str::from_utf8(&plain[first_nl + 1..end + 1])
        .map_err(|_| bad("binding header is not text"))?;
    let value = &plain[end + 2..];
    let mut lines = head.split_terminator('\n').peekable();
    let mut field = |name: &str| -> Option<String> {
        let line = lines.peek()?;
        let v = line.strip_prefix(name)?.strip_prefix(": ")?.to_string();
        lines.next();
        Some(v)
    };
    let scope: Scope = field("scope")
        .ok_or(bad("binding header has no scope"))?
        .parse()
        .map_err(|_| bad("binding header has an unknown scope"))?;
    let namespace = field("namespace");
    let name = field("name");
    let key = field("key").ok_or(bad("binding header has no item key"))?;
    let pad = field("pad").ok_or(bad("binding header has no pad line"))?;
    if lines.next().is_some() {
        return Err(bad("binding header has unexpected lines"));
    }
    if !pad.bytes().all(|b| b == b'.') {
        return Err(bad("binding header pad line holds more than dots"));
    }
    let shape_ok = match scope {
        Scope::Strict => namespace.is_some() && name.is_some(),
        Scope::Namespace => namespace.is_some() && name.is_none(),
        Scope::Cluster => namespace.is_none() && name.is_none(),
    };
    if !shape_ok {
        return Err(bad("binding header fields do not match its scope"));
    }
    let checks = [
        namespace
            .as_deref()
            .map(|n| check_name("namespace", n, false)),
        name.as_deref().map(|n| check_name("name", n, false)),
        Some(check_name("item key", &key, true)),
    ];
    if checks.into_iter().flatten().any(|r| r.is_err()) {
        return Err(bad("binding header holds an invalid name"));
    }
    if plain.len() != padded_len(plain.len()) {
        return Err(bad("plaintext is not padded to a size bucket"));
    }
    // The plaintext cap leaves room for the header and padding; the value
    // itself is held to what `seal` accepts, as a Secret holds no more.
    if value.len() > MAX_VALUE_LEN {
        return Err(bad("value is longer than a Secret holds"));
    }
    Ok((
        Binding {
            scope,
            namespace,
            name,
            key,
        },
        value,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_buckets_are_coarse() {
        assert_eq!(padded_len(1), 256);
        assert_eq!(padded_len(256), 256);
        assert_eq!(padded_len(257), 512);
        assert_eq!(padded_len(16 * 1024), 16 * 1024);
        assert_eq!(padded_len(16 * 1024 + 1), 32 * 1024);
        assert_eq!(padded_len(40 * 1024), 48 * 1024);
    }

    #[test]
    fn plaintext_is_readable_and_parses_back() {
        let at = Location {
            namespace: "shop",
            name: "db",
            key: "password",
        };
        let b = Binding::new(Scope::Strict, at);
        let p = plaintext(&b, b"hunter2");
        assert_eq!(p.len(), 256);
        let text = String::from_utf8(p.to_vec()).unwrap();
        assert!(text.starts_with(
            "coffer.dev/v1\nscope: strict\nnamespace: shop\nname: db\nkey: password\npad: ..."
        ));
        assert!(text.ends_with("\n\nhunter2"));
        let (back, value) = parse_plaintext(&p).unwrap();
        assert_eq!(back, b);
        assert_eq!(value, b"hunter2");
    }

    #[test]
    fn values_may_contain_blank_lines() {
        let at = Location {
            namespace: "a",
            name: "b",
            key: "c",
        };
        let p = plaintext(&Binding::new(Scope::Cluster, at), b"\n\nx\n\n");
        let (_, value) = parse_plaintext(&p).unwrap();
        assert_eq!(value, b"\n\nx\n\n");
    }

    #[test]
    fn binding_scopes_allow_what_they_say() {
        let at = Location {
            namespace: "shop",
            name: "db",
            key: "password",
        };
        let other_name = Location { name: "db2", ..at };
        let other_ns = Location {
            namespace: "dev",
            ..at
        };
        let other_key = Location { key: "user", ..at };
        let strict = Binding::new(Scope::Strict, at);
        let ns = Binding::new(Scope::Namespace, at);
        let cluster = Binding::new(Scope::Cluster, at);
        assert!(strict.allows(at) && !strict.allows(other_name) && !strict.allows(other_ns));
        assert!(ns.allows(other_name) && !ns.allows(other_ns));
        assert!(cluster.allows(other_ns) && cluster.allows(other_name));
        for b in [&strict, &ns, &cluster] {
            assert!(!b.allows(other_key));
        }
    }

    use crate::key::unwraps_on_this_thread;

    fn key_and_at() -> (SecretKey, Location<'static>) {
        (
            SecretKey::generate(),
            Location {
                namespace: "shop",
                name: "db",
                key: "password",
            },
        )
    }

    /// An age recipient that writes whatever stanzas an attacker chooses:
    /// whoever seals knows the file key, so the header MAC is valid.
    struct Forged(Vec<Stanza>, Vec<PublicKey>);

    impl age::Recipient for Forged {
        fn wrap_file_key(
            &self,
            file_key: &FileKey,
        ) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
            let mut out: Vec<Stanza> = self
                .0
                .iter()
                .map(|s| Stanza {
                    tag: s.tag.clone(),
                    args: s.args.clone(),
                    body: s.body.clone(),
                })
                .collect();
            for r in &self.1 {
                out.extend(r.recipient().wrap_file_key(file_key)?.0);
            }
            Ok((out, HashSet::new()))
        }
    }

    fn seal_forged(plain: &[u8], forged: &Forged) -> String {
        let enc = age::Encryptor::with_recipients(std::iter::once(forged as &dyn age::Recipient))
            .unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap();
        STANDARD.encode(out)
    }

    /// Finding: a `coffer-kid` stanza placed before the X25519 stanzas made
    /// the reader try every one of them (3.6 ms instead of 59 µs per
    /// value). Now such a header is refused before any unwrap.
    #[test]
    fn a_key_id_before_its_x25519_stanza_is_refused_without_any_unwrap() {
        let (key, at) = key_and_at();
        let mut to: Vec<PublicKey> = (0..61)
            .map(|_| SecretKey::generate().public().clone())
            .collect();
        to.push(key.public().clone());
        let kid = Stanza {
            tag: KEY_ID_STANZA.into(),
            args: vec![key.id().to_string(), "strict".into()],
            body: Vec::new(),
        };
        let sealed = seal_forged(
            &plaintext(&Binding::new(Scope::Strict, at), b"v"),
            &Forged(vec![kid], to),
        );
        let ring = Keyring::from_keys([key]);
        let before = unwraps_on_this_thread();
        let err = open(&sealed, at, &ring).unwrap_err();
        assert_eq!(
            err,
            OpenError::Malformed("coffer-kid stanza does not follow its recipient stanza")
        );
        assert_eq!(unwraps_on_this_thread() - before, 0);
    }

    /// A key id named twice is refused too (it could point a reader at a
    /// second stanza).
    #[test]
    fn a_key_id_named_twice_is_refused() {
        let (key, at) = key_and_at();
        let pair = |k: &PublicKey| Stanza {
            tag: KEY_ID_STANZA.into(),
            args: vec![k.id().to_string(), "strict".into()],
            body: Vec::new(),
        };
        // X25519(key) kid(key) kid(key): the second kid follows a kid.
        let forged = Forged(Vec::new(), vec![key.public().clone()]);
        let mut stanzas = Vec::new();
        let file_key = FileKey::new(Box::new([1u8; 16]));
        stanzas.extend(age::Recipient::wrap_file_key(&forged, &file_key).unwrap().0);
        stanzas.push(pair(key.public()));
        stanzas.push(pair(key.public()));
        let header = Forged(stanzas, Vec::new());
        let sealed = seal_forged(&plaintext(&Binding::new(Scope::Strict, at), b"v"), &header);
        let ring = Keyring::from_keys([key]);
        assert!(matches!(
            open(&sealed, at, &ring),
            Err(OpenError::Malformed(_))
        ));
    }

    /// Whatever the number of recipients and of held keys, one value costs
    /// one X25519 unwrap.
    #[test]
    fn a_value_sealed_to_thirty_recipients_opens_with_one_unwrap() {
        let (key, at) = key_and_at();
        let others: Vec<SecretKey> = (0..29).map(|_| SecretKey::generate()).collect();
        let mut to: Vec<PublicKey> = others.iter().map(|k| k.public().clone()).collect();
        to.push(key.public().clone());
        let sealed = seal(b"v", Scope::Strict, at, &to).unwrap();
        let mut held = others[5..].to_vec();
        held.push(key);
        let ring = Keyring::from_keys(held);
        let before = unwraps_on_this_thread();
        assert_eq!(open(&sealed, at, &ring).unwrap().as_slice(), b"v");
        assert_eq!(unwraps_on_this_thread() - before, 1);
    }

    /// Post-quantum keys: one unwrap per value too, whatever the mix of
    /// kinds among recipients and held keys; the envelope says whether
    /// every recipient is post-quantum.
    #[test]
    fn post_quantum_and_mixed_values_open_with_one_unwrap() {
        let at = key_and_at().1;
        let pq: Vec<SecretKey> = (0..3)
            .map(|_| SecretKey::generate_kind(KeyKind::MlKem768X25519))
            .collect();
        let x = SecretKey::generate();
        let all_pq: Vec<PublicKey> = pq.iter().map(|k| k.public().clone()).collect();
        let mut mixed = all_pq.clone();
        mixed.insert(1, x.public().clone());
        for (to, post_quantum) in [(&all_pq, true), (&mixed, false)] {
            let sealed = seal(b"v", Scope::Strict, at, to).unwrap();
            let (env, _) = inspect(&sealed).unwrap();
            assert_eq!(env.post_quantum(), post_quantum);
            assert_eq!(env.recipient_stanzas, to.len());
            assert_eq!(
                env.key_kinds,
                to.iter().map(|k| k.kind()).collect::<Vec<_>>()
            );
            for held in [&pq[2], &x, &pq[0]] {
                if !to.contains(held.public()) {
                    continue;
                }
                let ring = Keyring::from_keys([held.clone()]);
                let before = unwraps_on_this_thread();
                assert_eq!(open(&sealed, at, &ring).unwrap().as_slice(), b"v");
                assert_eq!(unwraps_on_this_thread() - before, 1);
            }
        }
    }

    /// A key id of a post-quantum key placed after an X25519 stanza (or the
    /// reverse) points at a stanza its key cannot open: refused as
    /// tampered, after one unwrap, never by trying the other stanzas.
    #[test]
    fn a_key_id_after_a_stanza_of_the_other_kind_is_refused() {
        let at = key_and_at().1;
        let pq = SecretKey::generate_kind(KeyKind::MlKem768X25519);
        let x = SecretKey::generate();
        let file_key = FileKey::new(Box::new([4u8; 16]));
        let kid = |k: &SecretKey| Stanza {
            tag: KEY_ID_STANZA.into(),
            args: vec![k.id().to_string(), "strict".into()],
            body: Vec::new(),
        };
        // X25519(x) kid(pq) mlkem(pq) kid(x): ids swapped.
        let stanzas = vec![
            x.public().wrap(&file_key).unwrap(),
            kid(&pq),
            pq.public().wrap(&file_key).unwrap(),
            kid(&x),
        ];
        let sealed = seal_forged(
            &plaintext(&Binding::new(Scope::Strict, at), b"v"),
            &Forged(stanzas, Vec::new()),
        );
        for held in [pq, x] {
            let ring = Keyring::from_keys([held]);
            let before = unwraps_on_this_thread();
            assert_eq!(open(&sealed, at, &ring).unwrap_err(), OpenError::Tampered);
            assert!(unwraps_on_this_thread() - before <= 1);
        }
    }

    /// Finding (while writing the `http_body` fuzz target's "never 500"
    /// property): 64 stanzas leave room for 32 recipients, but a value may be
    /// sealed to at most 30. A forged value naming 31 keys opened, and
    /// `/v1/reencrypt`, given their recipients, failed to seal it again with
    /// a 500. Now a header naming more than 30 key ids is refused.
    #[test]
    fn more_key_ids_than_recipients_a_value_may_have_are_refused() {
        let (key, at) = key_and_at();
        let ring = Keyring::from_keys([key.clone()]);
        let mut to: Vec<PublicKey> = (1..MAX_RECIPIENTS)
            .map(|_| SecretKey::generate().public().clone())
            .collect();
        to.push(key.public().clone());
        let sealed = seal(b"v", Scope::Strict, at, &to).unwrap();
        assert_eq!(open(&sealed, at, &ring).unwrap().as_slice(), b"v");
        // One more pair, in Coffer's order; refused before any unwrap, so
        // the file key these stanzas wrap does not matter.
        to.insert(0, SecretKey::generate().public().clone());
        let file_key = FileKey::new(Box::new([3u8; 16]));
        let mut stanzas = Vec::new();
        for k in &to {
            stanzas.extend(
                age::Recipient::wrap_file_key(k.recipient(), &file_key)
                    .unwrap()
                    .0,
            );
            stanzas.push(Stanza {
                tag: KEY_ID_STANZA.into(),
                args: vec![k.id().to_string(), "strict".into()],
                body: Vec::new(),
            });
        }
        let plain = plaintext(&Binding::new(Scope::Strict, at), b"v");
        let sealed = seal_forged(&plain, &Forged(stanzas, Vec::new()));
        let before = unwraps_on_this_thread();
        assert_eq!(
            open(&sealed, at, &ring).unwrap_err(),
            OpenError::Malformed("more key ids than a value may be sealed to")
        );
        assert_eq!(unwraps_on_this_thread() - before, 0);
    }

    /// Finding: the reader stopped at 1,114,112 bytes without checking for
    /// more, so a longer plaintext opened cut short. Now it is refused.
    #[test]
    fn a_plaintext_longer_than_the_cap_is_refused_not_truncated() {
        let (key, at) = key_and_at();
        let long = vec![b'x'; MAX_PLAINTEXT_LEN + 1000];
        let plain = plaintext(&Binding::new(Scope::Strict, at), &long);
        assert!(plain.len() > MAX_PLAINTEXT_LEN);
        let sealed =
            seal_plaintext(&plain, Scope::Strict, std::slice::from_ref(key.public())).unwrap();
        let ring = Keyring::from_keys([key]);
        assert_eq!(
            open(&sealed, at, &ring).unwrap_err(),
            OpenError::Malformed("plaintext is longer than any value Coffer seals")
        );
    }

    /// Fuzzing finding (`open_structured`): the plaintext cap is 1 MiB plus
    /// 64 KiB for the header and padding, and nothing held the value itself
    /// to 1 MiB, so a value of up to 1,114,112 bytes less its header, longer
    /// than `seal` accepts and than a Secret holds, opened (and
    /// `/v1/reencrypt` sealed it again). Now it is refused.
    #[test]
    fn a_value_longer_than_a_secret_holds_is_refused() {
        let (key, at) = key_and_at();
        let ring = Keyring::from_keys([key.clone()]);
        let binding = Binding::new(Scope::Strict, at);
        for (len, opens) in [(MAX_VALUE_LEN, true), (MAX_VALUE_LEN + 1, false)] {
            let plain = plaintext(&binding, &vec![b'v'; len]);
            assert!(plain.len() <= MAX_PLAINTEXT_LEN);
            let sealed =
                seal_plaintext(&plain, Scope::Strict, std::slice::from_ref(key.public())).unwrap();
            match open(&sealed, at, &ring) {
                Ok(v) => assert!(opens && v.len() == len, "{len}"),
                Err(e) => {
                    assert!(!opens, "{len}: {e}");
                    assert_eq!(
                        e,
                        OpenError::Malformed("value is longer than a Secret holds")
                    );
                }
            }
        }
        // The value the fuzzer found: 1,109,014 bytes, namespace scope.
        let binding = Binding::new(Scope::Namespace, at);
        let plain = plaintext(&binding, &vec![b'v'; 1_109_014]);
        assert_eq!(
            parse_plaintext(&plain).unwrap_err(),
            OpenError::Malformed("value is longer than a Secret holds")
        );
    }

    /// Finding: with its last STREAM chunk removed, a ciphertext whose first
    /// chunks filled the read cap exactly opened. Now the reader reads to
    /// the end, where age refuses a stream without its last chunk.
    #[test]
    fn a_ciphertext_missing_its_last_chunk_is_refused() {
        const CHUNK: usize = 64 * 1024;
        let (key, at) = key_and_at();
        let ring = Keyring::from_keys([key.clone()]);
        for value_len in [200 * 1024, MAX_PLAINTEXT_LEN + 1000] {
            let plain = plaintext(&Binding::new(Scope::Strict, at), &vec![b'y'; value_len]);
            let sealed =
                seal_plaintext(&plain, Scope::Strict, std::slice::from_ref(key.public())).unwrap();
            let bytes = STANDARD.decode(&sealed).unwrap();
            let env = inspect_bytes(&bytes).unwrap();
            let header_len = bytes.len() - env.payload_len;
            let full_chunks = plain.len() / CHUNK;
            assert!(
                !plain.len().is_multiple_of(CHUNK),
                "the last chunk is partial"
            );
            // nonce, then every full chunk with its tag; the last one dropped.
            let cut = header_len + 16 + full_chunks * (CHUNK + 16);
            let truncated = STANDARD.encode(&bytes[..cut]);
            assert_eq!(
                open(&truncated, at, &ring).unwrap_err(),
                OpenError::Tampered,
                "{value_len}"
            );
        }
    }

    /// Finding 3: key ids were 64 bits, so ~2^64 work bought a key whose
    /// id equals another's. A key id is now all 256 bits of SHA-256, and a
    /// header naming a shorter one (the old 16-digit form) is refused.
    #[test]
    fn a_key_id_shorter_than_256_bits_is_refused() {
        let (key, at) = key_and_at();
        let sealed = seal(b"v", Scope::Strict, at, std::slice::from_ref(key.public())).unwrap();
        let bytes = STANDARD.decode(&sealed).unwrap();
        let full = key.id().to_string();
        assert_eq!(full.len(), 64);
        let header = String::from_utf8_lossy(&bytes[..find_header_end(&bytes).unwrap()]);
        assert!(header.contains(&format!("-> coffer-kid {full} strict")));
        let short = Stanza {
            tag: KEY_ID_STANZA.into(),
            args: vec![key.id().short(), "strict".into()],
            body: Vec::new(),
        };
        let file_key = FileKey::new(Box::new([2u8; 16]));
        let mut stanzas = age::Recipient::wrap_file_key(key.public().recipient(), &file_key)
            .unwrap()
            .0;
        stanzas.push(short);
        let forged = seal_forged(
            &plaintext(&Binding::new(Scope::Strict, at), b"v"),
            &Forged(stanzas, Vec::new()),
        );
        let ring = Keyring::from_keys([key]);
        assert_eq!(
            open(&forged, at, &ring).unwrap_err(),
            OpenError::Malformed("coffer-kid stanza without a valid key id")
        );
    }
}
