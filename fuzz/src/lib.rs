//! What the fuzz targets share: the published test identities (so valid
//! inputs get past age's header MAC), the fixed other recipients of
//! `keys.txt`, the published bitnami test key of `bitnami-key.pem`, and an
//! age v1 writer that takes its stanzas, header bytes and STREAM chunks as
//! given, so that `open_structured` can build ciphertexts that no honest
//! sealer writes and still carry a valid MAC: whoever seals knows the file
//! key.

use std::sync::OnceLock;

use age_core::primitives::{aead_encrypt, hkdf};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use coffer_format::key::parse_identity_file;
use coffer_format::{Keyring, Location, SecretKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Where every seed of `open_value` and `open_structured` was sealed.
pub const AT: Location<'static> = Location {
    namespace: "shop",
    name: "db",
    key: "password",
};

/// Size of an age STREAM chunk's plaintext.
pub const CHUNK: usize = 64 * 1024;

/// The test identity of `format/tests/vectors/identity.txt`.
pub fn test_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| {
        parse_identity_file(include_str!("../../format/tests/vectors/identity.txt"))
            .expect("the test identity parses")
            .remove(0)
    })
}

/// A ring holding the test identity only: the controller's view in the
/// targets that have no post-quantum seeds.
pub fn test_ring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| Keyring::from_keys([test_key().clone()]))
}

/// The post-quantum (`mlkem768x25519`) test identity, the second key of
/// `format/tests/vectors/identity.txt`.
pub fn pq_test_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = parse_identity_file(include_str!("../../format/tests/vectors/identity.txt"))
            .expect("the test identities parse")
            .remove(1);
        assert!(
            key.kind().is_post_quantum(),
            "the second test key is mlkem768x25519"
        );
        key
    })
}

/// A ring holding both test identities, X25519 and post-quantum: the
/// opening targets, whose seeds include values sealed to either.
pub fn test_ring_with_pq() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| Keyring::from_keys([test_key().clone(), pq_test_key().clone()]))
}

/// The `mlkem768x25519` stanza of `pq-stanza.txt`: [`FILE_KEY`] wrapped to
/// [`pq_test_key`]. HPKE encapsulation is randomised, so it is written once
/// by the seed generator (`core/tests/fuzz_seeds.rs`) and committed: an
/// input that crashes `open_structured` reproduces byte for byte.
pub fn pq_stanza() -> &'static StanzaModel {
    static S: OnceLock<StanzaModel> = OnceLock::new();
    S.get_or_init(|| {
        let mut lines = include_str!("../pq-stanza.txt")
            .lines()
            .filter(|l| !l.starts_with('#'));
        let arg = lines.next().expect("the stanza's argument").to_string();
        let body = STANDARD_NO_PAD
            .decode(lines.next().expect("the stanza's body"))
            .expect("the body is unpadded base64");
        StanzaModel {
            tag: "mlkem768x25519".into(),
            args: vec![arg],
            body,
        }
    })
}

/// The published bitnami test key of `bitnami-key.pem` (RSA 2048,
/// PKCS#1 as bitnami writes it).
pub fn bitnami_key() -> &'static coffer_core::bitnami::BitnamiKey {
    static KEY: OnceLock<coffer_core::bitnami::BitnamiKey> = OnceLock::new();
    KEY.get_or_init(|| {
        coffer_core::bitnami::BitnamiKey::from_pem(include_str!("../bitnami-key.pem"))
            .expect("the bitnami test key parses")
    })
}

/// The three other keys of `fuzz/keys.txt` (recipients this ring lacks).
pub fn other_keys() -> &'static [SecretKey] {
    static KEYS: OnceLock<Vec<SecretKey>> = OnceLock::new();
    KEYS.get_or_init(|| parse_identity_file(include_str!("../keys.txt")).expect("keys.txt parses"))
}

/// The raw X25519 point of a key's recipient (the Bech32 payload).
pub fn raw_public(key: &SecretKey) -> [u8; 32] {
    let (_, bytes) = bech32::decode(&key.public().to_string()).expect("a valid recipient");
    bytes.try_into().expect("32 bytes")
}

/// A stanza as written in the header: the tag, its arguments, its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaModel {
    pub tag: String,
    pub args: Vec<String>,
    pub body: Vec<u8>,
}

/// The file key every structured ciphertext uses.
pub const FILE_KEY: [u8; 16] = [0x5a; 16];

/// An `X25519` stanza wrapping `file_key` to `recipient` with a fixed
/// ephemeral scalar (c2sp.org/age, X25519 recipient stanza), deterministic so
/// that a crashing input reproduces byte for byte.
pub fn x25519_stanza(
    recipient: &[u8; 32],
    ephemeral: [u8; 32],
    file_key: &[u8; 16],
) -> StanzaModel {
    let share = x25519_dalek::x25519(ephemeral, x25519_dalek::X25519_BASEPOINT_BYTES);
    let shared = x25519_dalek::x25519(ephemeral, *recipient);
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(&share);
    salt[32..].copy_from_slice(recipient);
    let wrap_key = hkdf(&salt, b"age-encryption.org/v1/X25519", &shared);
    StanzaModel {
        tag: "X25519".into(),
        args: vec![STANDARD_NO_PAD.encode(share)],
        body: aead_encrypt(&wrap_key, file_key),
    }
}

/// How a stanza body is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BodyStyle {
    /// 64 columns, the last line shorter than 64 (empty if need be).
    #[default]
    Canonical,
    /// A body that fills its last line exactly has no empty line after it
    /// (the legacy form age still reads).
    NoFinalEmptyLine,
    /// Lines of another width.
    Width(usize),
    /// Padded base64.
    Padded,
}

/// How the header is written around the stanzas.
#[derive(Clone, Debug, Default)]
pub struct HeaderStyle {
    pub version_line: Option<Vec<u8>>,
    pub body: BodyStyle,
    pub crlf: bool,
    pub double_space: bool,
    /// Bytes inserted before the `---` line.
    pub before_mac: Vec<u8>,
    pub mac: MacStyle,
}

/// What follows `---`.
#[derive(Clone, Debug, Default)]
pub enum MacStyle {
    /// ` ` + the valid MAC + `\n`.
    #[default]
    Valid,
    /// The valid MAC with one byte changed before encoding.
    Flipped(usize, u8),
    /// The valid MAC, padded base64.
    Padded,
    /// These bytes instead of ` MAC\n`.
    Raw(Vec<u8>),
}

/// The header bytes, MAC line included, for `stanzas` under `file_key`.
pub fn write_header(stanzas: &[StanzaModel], style: &HeaderStyle, file_key: &[u8; 16]) -> Vec<u8> {
    let nl: &[u8] = if style.crlf { b"\r\n" } else { b"\n" };
    let mut out = Vec::new();
    match &style.version_line {
        Some(v) => out.extend_from_slice(v),
        None => out.extend_from_slice(b"age-encryption.org/v1"),
    }
    out.push(b'\n');
    for s in stanzas {
        out.extend_from_slice(b"-> ");
        out.extend_from_slice(s.tag.as_bytes());
        for a in &s.args {
            out.extend_from_slice(if style.double_space { b"  " } else { b" " });
            out.extend_from_slice(a.as_bytes());
        }
        out.extend_from_slice(nl);
        let (engine_padded, width) = match style.body {
            BodyStyle::Padded => (true, 64),
            BodyStyle::Width(w) => (false, w.clamp(1, 200)),
            _ => (false, 64),
        };
        let b64 = if engine_padded {
            STANDARD.encode(&s.body)
        } else {
            STANDARD_NO_PAD.encode(&s.body)
        };
        let bytes = b64.as_bytes();
        for line in bytes.chunks(width) {
            out.extend_from_slice(line);
            out.extend_from_slice(nl);
        }
        let full_last = bytes.is_empty() || bytes.len().is_multiple_of(width);
        if full_last && style.body != BodyStyle::NoFinalEmptyLine {
            out.extend_from_slice(nl);
        }
    }
    out.extend_from_slice(&style.before_mac);
    out.extend_from_slice(b"---");
    let mac_key = hkdf(&[], b"header", file_key);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&mac_key).expect("any key length");
    mac.update(&out);
    let mut tag: [u8; 32] = mac.finalize().into_bytes().into();
    match &style.mac {
        MacStyle::Valid => {
            out.push(b' ');
            out.extend_from_slice(STANDARD_NO_PAD.encode(tag).as_bytes());
            out.push(b'\n');
        }
        MacStyle::Flipped(at, x) => {
            tag[at % 32] ^= x | 1;
            out.push(b' ');
            out.extend_from_slice(STANDARD_NO_PAD.encode(tag).as_bytes());
            out.push(b'\n');
        }
        MacStyle::Padded => {
            out.push(b' ');
            out.extend_from_slice(STANDARD.encode(tag).as_bytes());
            out.push(b'\n');
        }
        MacStyle::Raw(bytes) => out.extend_from_slice(bytes),
    }
    out
}

/// One STREAM chunk as written: its plaintext, the counter and the
/// last-chunk flag its nonce carries.
#[derive(Clone, Debug)]
pub struct ChunkModel {
    pub plain: Vec<u8>,
    pub counter: u64,
    pub last: bool,
}

/// The chunks an honest writer makes of `plain`: 64 KiB each, the last one
/// flagged (an empty plaintext is one empty last chunk).
pub fn honest_chunks(plain: &[u8]) -> Vec<ChunkModel> {
    if plain.is_empty() {
        return vec![ChunkModel {
            plain: Vec::new(),
            counter: 0,
            last: true,
        }];
    }
    let n = plain.len().div_ceil(CHUNK);
    plain
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, c)| ChunkModel {
            plain: c.to_vec(),
            counter: i as u64,
            last: i + 1 == n,
        })
        .collect()
}

/// The payload: `nonce`, then each chunk encrypted under the payload key
/// derived from `file_key` and `payload_nonce` (which is the nonce as age
/// reads it: the first 16 bytes written, whatever `nonce` is).
pub fn write_payload(
    nonce: &[u8],
    payload_nonce: &[u8; 16],
    chunks: &[ChunkModel],
    file_key: &[u8; 16],
) -> Vec<u8> {
    let key = hkdf(payload_nonce, b"payload", file_key);
    let aead = ChaCha20Poly1305::new((&key).into());
    let mut out = nonce.to_vec();
    for c in chunks {
        let mut n = [0u8; 12];
        n[3..11].copy_from_slice(&c.counter.to_be_bytes());
        n[11] = u8::from(c.last);
        out.extend(
            aead.encrypt(Nonce::from_slice(&n), c.plain.as_slice())
                .expect("ChaCha20-Poly1305 encrypts any length here"),
        );
    }
    out
}

/// Standard base64, as in `encryptedData`.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A fixed "now" for the backup target: after every seed's creation time.
pub fn fixed_now() -> jiff::Timestamp {
    "2026-12-01T00:00:00Z".parse().expect("a valid time")
}
