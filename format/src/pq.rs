//! age 1.3's hybrid post-quantum recipient type, `mlkem768x25519`.
//!
//! A recipient is `age1pq1…`: the Bech32 (no length limit) of the 1,216-byte
//! public key of the MLKEM768-X25519 KEM (X-Wing: an ML-KEM-768
//! encapsulation key followed by an X25519 point). An identity is
//! `AGE-SECRET-KEY-PQ-1…`: the Bech32 of the 32-byte seed both halves are
//! expanded from. The stanza is
//!
//! ```text
//! -> mlkem768x25519 <base64 of the 1,120-byte encapsulated key>
//! <base64 of the file key sealed by HPKE>
//! ```
//!
//! where the body is `HPKE.SealBase(pk, info = "age-encryption.org/mlkem768x25519",
//! aad = "", file_key)` with the KEM above (id 0x647a), HKDF-SHA-256 and
//! ChaCha20-Poly1305 (C2SP age, and filippo.io/age 1.3).
//!
//! The KEM is built here on the crates the age crate already compiles:
//! `ml-kem` 0.2 for ML-KEM-768, `x25519-dalek` 2 for X25519, `sha3` 0.10
//! for SHAKE-256 and SHA3-256, and the `hpke` 0.12 crate for HPKE's key
//! schedule and AEAD (the same one age's own `age_core::primitives::hpke_*`
//! use). Secrets (the seed, both private halves, shared secrets) are wiped
//! on drop. The only check not done by those crates is the one FIPS 203
//! asks of an ML-KEM encapsulation key read from outside (every coefficient
//! below q), which is done when a recipient is parsed, as Go does.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use age_core::primitives::{bech32_decode, bech32_encode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hpke::generic_array::GenericArray;
use hpke::generic_array::typenum::{self, U32, U96, U192, U1024};
use hpke::rand_core::{CryptoRng, RngCore};
use hpke::{Deserializable, HpkeError, Serializable};
use ml_kem::kem::{Decapsulate, Encapsulate};
use ml_kem::{EncodedSizeUser, KemCore, MlKem768};
use sha3::digest::{ExtendableOutput, Update, XofReader};
use sha3::{Digest, Sha3_256, Shake256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Tag of the stanza.
pub const STANZA_TAG: &str = "mlkem768x25519";
/// HPKE `info`, and the label age gives this recipient type.
const INFO: &[u8] = b"age-encryption.org/mlkem768x25519";
/// Bech32 prefix of a recipient.
const RECIPIENT_HRP: bech32::Hrp = bech32::Hrp::parse_unchecked("age1pq");
/// Bech32 prefix of an identity (printed upper case).
const IDENTITY_HRP: bech32::Hrp = bech32::Hrp::parse_unchecked("age-secret-key-pq-");
/// The label X-Wing's combiner ends with (draft-connolly-cfrg-xwing-kem):
/// the six ASCII bytes `\./` `/^\`.
const XWING_LABEL: &[u8] = b"\\.//^\\";
/// HPKE KEM id of MLKEM768-X25519 (X-Wing).
const KEM_ID: u16 = 0x647a;

/// Length of an ML-KEM-768 encapsulation key.
const EK_PQ_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext.
const CT_PQ_LEN: usize = 1088;
/// Length of a recipient's public key: ML-KEM-768 key, then X25519 point.
pub const PUBLIC_KEY_LEN: usize = EK_PQ_LEN + 32;
/// Length of the encapsulated key in a stanza's argument.
pub const ENC_LEN: usize = CT_PQ_LEN + 32;
/// Length of an identity's seed.
const SEED_LEN: usize = 32;

type MlKemDk = <MlKem768 as KemCore>::DecapsulationKey;
type MlKemEk = <MlKem768 as KemCore>::EncapsulationKey;

/// Why a recipient or identity string was refused. Never holds the text of
/// an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PqKeyError {
    /// Not Bech32, or not the `age1pq` prefix.
    #[error("not an age1pq1… recipient (bad Bech32 or prefix)")]
    Encoding,
    /// Not the length of an mlkem768x25519 public key.
    #[error("not an mlkem768x25519 public key ({PUBLIC_KEY_LEN} bytes expected)")]
    Length,
    /// The ML-KEM-768 encapsulation key is not canonical.
    #[error(
        "the ML-KEM-768 half of the public key is not canonical (a coefficient is not below q)"
    )]
    MlKemKey,
    /// The X25519 half has small order: its shared secret is all zeros.
    #[error(
        "the X25519 half of the public key is a low-order point: nothing sealed to it would be secret"
    )]
    LowOrder,
    /// Not an `AGE-SECRET-KEY-PQ-1…` identity (its text is never shown).
    #[error("not an AGE-SECRET-KEY-PQ-1… identity")]
    Identity,
}

// ---------------------------------------------------------------------------
// The KEM: MLKEM768-X25519 (X-Wing), as an `hpke::Kem`.

/// The public key of the hybrid KEM.
#[derive(Clone)]
pub(crate) struct KemPublic {
    ek_pq: MlKemEk,
    ek_t: [u8; 32],
}

impl PartialEq for KemPublic {
    fn eq(&self, other: &Self) -> bool {
        self.ek_t == other.ek_t && self.ek_pq == other.ek_pq
    }
}
impl Eq for KemPublic {}

impl fmt::Debug for KemPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MlKem768X25519PublicKey")
    }
}

impl Serializable for KemPublic {
    type OutputSize = typenum::Sum<U1024, U192>;
    fn write_exact(&self, buf: &mut [u8]) {
        buf[..EK_PQ_LEN].copy_from_slice(&self.ek_pq.as_bytes());
        buf[EK_PQ_LEN..].copy_from_slice(&self.ek_t);
    }
}

impl Deserializable for KemPublic {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        parse_public(encoded).map_err(|_| HpkeError::ValidationError)
    }
}

/// Reads and checks a public key: the length, FIPS 203's modulus check on
/// the ML-KEM half (12-bit coefficients, each below q = 3329), and a
/// large-order X25519 half.
fn parse_public(encoded: &[u8]) -> Result<KemPublic, PqKeyError> {
    if encoded.len() != PUBLIC_KEY_LEN {
        return Err(PqKeyError::Length);
    }
    let (pq, t) = encoded.split_at(EK_PQ_LEN);
    // The first 1,152 bytes hold 768 coefficients, two per three bytes; the
    // last 32 are the matrix seed.
    for c in pq[..EK_PQ_LEN - 32].chunks_exact(3) {
        let (b0, b1, b2) = (u16::from(c[0]), u16::from(c[1]), u16::from(c[2]));
        let d1 = b0 | ((b1 & 0x0f) << 8);
        let d2 = (b1 >> 4) | (b2 << 4);
        if d1 >= 3329 || d2 >= 3329 {
            return Err(PqKeyError::MlKemKey);
        }
    }
    let mut ek_t = [0u8; 32];
    ek_t.copy_from_slice(t);
    if crate::x25519::is_low_order(&ek_t) {
        return Err(PqKeyError::LowOrder);
    }
    let ek_pq = MlKemEk::from_bytes(pq.try_into().map_err(|_| PqKeyError::Length)?);
    Ok(KemPublic { ek_pq, ek_t })
}

/// The private key of the hybrid KEM: the seed and what it expands to.
#[derive(Clone)]
pub(crate) struct KemPrivate {
    seed: Zeroizing<[u8; SEED_LEN]>,
    dk_pq: MlKemDk,
    dk_t: x25519_dalek::StaticSecret,
    public: KemPublic,
}

impl KemPrivate {
    /// Expands a seed as X-Wing does: SHAKE-256(seed) gives the ML-KEM-768
    /// seed `d || z` (64 bytes), then the X25519 scalar (32 bytes).
    fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        let mut xof = Shake256::default().chain(seed).finalize_xof();
        let mut d = ml_kem::B32::default();
        let mut z = ml_kem::B32::default();
        let mut sk_t = Zeroizing::new([0u8; 32]);
        xof.read(&mut d);
        xof.read(&mut z);
        xof.read(&mut sk_t[..]);
        let (dk_pq, ek_pq) = MlKem768::generate_deterministic(&d, &z);
        d.as_mut_slice().zeroize();
        z.as_mut_slice().zeroize();
        let dk_t = x25519_dalek::StaticSecret::from(*sk_t);
        let ek_t = x25519_dalek::PublicKey::from(&dk_t).to_bytes();
        KemPrivate {
            seed: Zeroizing::new(*seed),
            dk_pq,
            dk_t,
            public: KemPublic { ek_pq, ek_t },
        }
    }
}

impl PartialEq for KemPrivate {
    fn eq(&self, other: &Self) -> bool {
        self.seed.ct_eq(&*other.seed).into()
    }
}
impl Eq for KemPrivate {}

impl Serializable for KemPrivate {
    type OutputSize = U32;
    fn write_exact(&self, buf: &mut [u8]) {
        buf.copy_from_slice(&self.seed[..]);
    }
}

impl Deserializable for KemPrivate {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        let seed: &[u8; SEED_LEN] = encoded
            .try_into()
            .map_err(|_| HpkeError::IncorrectInputLength(SEED_LEN, encoded.len()))?;
        Ok(Self::from_seed(seed))
    }
}

/// The encapsulated key: ML-KEM-768 ciphertext, then the ephemeral X25519
/// point.
#[derive(Clone)]
pub(crate) struct KemEnc {
    ct_pq: ml_kem::Ciphertext<MlKem768>,
    ct_t: [u8; 32],
}

impl Serializable for KemEnc {
    type OutputSize = typenum::Sum<U1024, U96>;
    fn write_exact(&self, buf: &mut [u8]) {
        buf[..CT_PQ_LEN].copy_from_slice(&self.ct_pq);
        buf[CT_PQ_LEN..].copy_from_slice(&self.ct_t);
    }
}

impl Deserializable for KemEnc {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        if encoded.len() != ENC_LEN {
            return Err(HpkeError::IncorrectInputLength(ENC_LEN, encoded.len()));
        }
        let (pq, t) = encoded.split_at(CT_PQ_LEN);
        let ct_pq = ml_kem::Ciphertext::<MlKem768>::try_from(pq)
            .map_err(|_| HpkeError::IncorrectInputLength(ENC_LEN, encoded.len()))?;
        let mut ct_t = [0u8; 32];
        ct_t.copy_from_slice(t);
        Ok(KemEnc { ct_pq, ct_t })
    }
}

/// X-Wing's combiner: SHA3-256(ss_M || ss_X || ct_X || pk_X || label).
fn combine(ss_pq: &[u8], ss_t: &[u8], ct_t: &[u8; 32], pk_t: &[u8; 32]) -> GenericArray<u8, U32> {
    let mut h = Sha3_256::new();
    Digest::update(&mut h, ss_pq);
    Digest::update(&mut h, ss_t);
    Digest::update(&mut h, ct_t);
    Digest::update(&mut h, pk_t);
    Digest::update(&mut h, XWING_LABEL);
    let out = h.finalize();
    let mut ss = GenericArray::<u8, U32>::default();
    ss.copy_from_slice(&out);
    ss
}

/// MLKEM768-X25519, the KEM of age's `mlkem768x25519` stanza.
pub(crate) struct MlKem768X25519;

impl hpke::Kem for MlKem768X25519 {
    type PublicKey = KemPublic;
    type PrivateKey = KemPrivate;
    type EncappedKey = KemEnc;
    type NSecret = U32;
    const KEM_ID: u16 = KEM_ID;

    fn sk_to_pk(sk: &KemPrivate) -> KemPublic {
        sk.public.clone()
    }

    /// draft-ietf-hpke-pq's DeriveKeyPair: the seed is
    /// `LabeledDerive(ikm, "DeriveKeyPair", "", 32)` over SHAKE-256.
    /// Not used by age (it keeps the seed itself) but required by the
    /// trait; keys are made by [`Identity::generate`].
    fn derive_keypair(ikm: &[u8]) -> (KemPrivate, KemPublic) {
        let label = b"DeriveKeyPair";
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        let mut xof = Shake256::default()
            .chain(ikm)
            .chain(b"HPKE-v1")
            .chain(b"KEM")
            .chain(KEM_ID.to_be_bytes())
            .chain((label.len() as u16).to_be_bytes())
            .chain(label)
            .chain((SEED_LEN as u16).to_be_bytes())
            .finalize_xof();
        xof.read(&mut seed[..]);
        let sk = KemPrivate::from_seed(&seed);
        let pk = sk.public.clone();
        (sk, pk)
    }

    fn decap(
        sk: &KemPrivate,
        pk_sender_id: Option<&KemPublic>,
        enc: &KemEnc,
    ) -> Result<hpke::kem::SharedSecret<Self>, HpkeError> {
        if pk_sender_id.is_some() {
            // age uses base mode only.
            return Err(HpkeError::DecapError);
        }
        // ML-KEM rejects implicitly: a ciphertext for another key gives a
        // pseudo-random secret, detected by the AEAD afterwards.
        let mut ss_pq = sk
            .dk_pq
            .decapsulate(&enc.ct_pq)
            .map_err(|()| HpkeError::DecapError)?;
        let ss_t = sk
            .dk_t
            .diffie_hellman(&x25519_dalek::PublicKey::from(enc.ct_t));
        // An all-zero X25519 secret (a low-order share) is refused, as Go
        // age and every X25519 recipient of age do.
        let contributory = ss_t.was_contributory();
        let ss = combine(&ss_pq, ss_t.as_bytes(), &enc.ct_t, &sk.public.ek_t);
        ss_pq.as_mut_slice().zeroize();
        if !contributory {
            let mut ss = ss;
            ss.zeroize();
            return Err(HpkeError::DecapError);
        }
        Ok(hpke::kem::SharedSecret(ss))
    }

    fn encap<R: CryptoRng + RngCore>(
        pk: &KemPublic,
        sender_id_keypair: Option<(&KemPrivate, &KemPublic)>,
        csprng: &mut R,
    ) -> Result<(hpke::kem::SharedSecret<Self>, KemEnc), HpkeError> {
        if sender_id_keypair.is_some() {
            return Err(HpkeError::EncapError);
        }
        let (ct_pq, mut ss_pq) = pk
            .ek_pq
            .encapsulate(csprng)
            .map_err(|()| HpkeError::EncapError)?;
        let eph = x25519_dalek::EphemeralSecret::random_from_rng(&mut *csprng);
        let ct_t = x25519_dalek::PublicKey::from(&eph).to_bytes();
        let ss_t = eph.diffie_hellman(&x25519_dalek::PublicKey::from(pk.ek_t));
        let contributory = ss_t.was_contributory();
        let ss = combine(&ss_pq, ss_t.as_bytes(), &ct_t, &pk.ek_t);
        ss_pq.as_mut_slice().zeroize();
        if !contributory {
            let mut ss = ss;
            ss.zeroize();
            return Err(HpkeError::EncapError);
        }
        Ok((hpke::kem::SharedSecret(ss), KemEnc { ct_pq, ct_t }))
    }
}

// ---------------------------------------------------------------------------
// The age recipient and identity.

/// An `age1pq1…` recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Recipient {
    pk: KemPublic,
    /// The raw 1,216-byte public key (the Bech32 payload).
    raw: Vec<u8>,
}

impl Recipient {
    /// The raw public key: the Bech32 payload of the recipient string.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Wraps a file key into one `mlkem768x25519` stanza.
    pub fn wrap(&self, file_key: &FileKey) -> Result<Stanza, age::EncryptError> {
        use age::secrecy::ExposeSecret as _;
        let mut rng = rand::rngs::OsRng;
        let (enc, body) = hpke::single_shot_seal::<
            hpke::aead::ChaCha20Poly1305,
            hpke::kdf::HkdfSha256,
            MlKem768X25519,
            _,
        >(
            &hpke::OpModeS::Base,
            &self.pk,
            INFO,
            file_key.expose_secret(),
            &[],
            &mut rng,
        )
        .map_err(|e| {
            age::EncryptError::Io(std::io::Error::other(format!(
                "mlkem768x25519 encapsulation failed: {e}"
            )))
        })?;
        Ok(Stanza {
            tag: STANZA_TAG.to_string(),
            args: vec![STANDARD_NO_PAD.encode(enc.to_bytes())],
            body,
        })
    }
}

impl FromStr for Recipient {
    type Err = PqKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw: Vec<u8> = bech32_decode(
            s,
            |_| PqKeyError::Encoding,
            |hrp| {
                // Lower case only, as age's recipients are written.
                (hrp == RECIPIENT_HRP && hrp.as_str() == RECIPIENT_HRP.as_str())
                    .then_some(())
                    .ok_or(PqKeyError::Encoding)
            },
            |_, bytes| Ok(bytes.collect()),
        )?;
        let pk = parse_public(&raw)?;
        Ok(Recipient { pk, raw })
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bech32_encode(RECIPIENT_HRP, &self.raw))
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.to_string();
        write!(f, "pq::Recipient({}…)", &s[..s.len().min(24)])
    }
}

/// The "postquantum" label: age refuses to seal a file to a recipient that
/// returns it beside one that does not (an X25519 recipient would undo the
/// protection). Coffer's value sealing decides mixing itself.
pub(crate) fn labels() -> HashSet<String> {
    ["postquantum".to_string()].into_iter().collect()
}

impl age::Recipient for Recipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        Ok((vec![self.wrap(file_key)?], labels()))
    }
}

/// An `AGE-SECRET-KEY-PQ-1…` identity. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Identity {
    sk: KemPrivate,
    recipient: Recipient,
}

impl Identity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed[..]);
        Self::from_seed(&seed)
    }

    fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        let sk = KemPrivate::from_seed(seed);
        let raw = sk.public.to_bytes().to_vec();
        let recipient = Recipient {
            pk: sk.public.clone(),
            raw,
        };
        Identity { sk, recipient }
    }

    /// The public half.
    pub fn to_public(&self) -> &Recipient {
        &self.recipient
    }

    /// The `AGE-SECRET-KEY-PQ-1…` string, in a buffer wiped on drop.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        let mut lower = Zeroizing::new(bech32_encode(IDENTITY_HRP, &self.sk.seed[..]));
        let upper = Zeroizing::new(lower.to_ascii_uppercase());
        lower.zeroize();
        upper
    }

    /// Unwraps the file key of an `mlkem768x25519` stanza, as age 1.3 does:
    /// `None` for another stanza type or for a well-formed stanza sealed to
    /// another key (HPKE's AEAD refuses it: ML-KEM rejects implicitly), an
    /// error for a malformed one (argument count, non-canonical base64, the
    /// encapsulated key or body of the wrong length, a low-order X25519
    /// share).
    pub fn unwrap(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        if stanza.tag != STANZA_TAG {
            return None;
        }
        let invalid = || Some(Err(age::DecryptError::InvalidHeader));
        let [arg] = &stanza.args[..] else {
            return invalid();
        };
        // Canonical unpadded base64 of exactly ENC_LEN bytes (the engine
        // refuses non-zero trailing bits).
        let mut enc = vec![0u8; ENC_LEN + 1];
        match STANDARD_NO_PAD.decode_slice(arg, &mut enc) {
            Ok(ENC_LEN) => {}
            _ => return invalid(),
        }
        if stanza.body.len() != FILE_KEY_BYTES + 16 {
            return invalid();
        }
        let Ok(enc) = KemEnc::from_bytes(&enc[..ENC_LEN]) else {
            return invalid();
        };
        let mut plain = match hpke::single_shot_open::<
            hpke::aead::ChaCha20Poly1305,
            hpke::kdf::HkdfSha256,
            MlKem768X25519,
        >(
            &hpke::OpModeR::Base,
            &self.sk,
            &enc,
            INFO,
            &stanza.body,
            &[],
        ) {
            Ok(plain) => Zeroizing::new(plain),
            // The AEAD refused: sealed to another key (or altered).
            Err(HpkeError::OpenError) => return None,
            Err(_) => return invalid(),
        };
        if plain.len() != FILE_KEY_BYTES {
            plain.zeroize();
            return invalid();
        }
        Some(Ok(FileKey::init_with_mut(|file_key| {
            file_key.copy_from_slice(&plain);
            plain.zeroize();
        })))
    }
}

impl FromStr for Identity {
    type Err = PqKeyError;
    /// Parses one `AGE-SECRET-KEY-PQ-1…` string. The error never holds it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let seed: Zeroizing<Vec<u8>> = bech32_decode(
            s,
            |_| PqKeyError::Identity,
            |hrp| {
                (hrp == IDENTITY_HRP)
                    .then_some(())
                    .ok_or(PqKeyError::Identity)
            },
            |_, bytes| Ok(Zeroizing::new(bytes.collect())),
        )?;
        let seed: &[u8; SEED_LEN] = seed[..].try_into().map_err(|_| PqKeyError::Identity)?;
        Ok(Self::from_seed(seed))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pq::Identity([redacted])")
    }
}

impl age::Identity for Identity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        self.unwrap(stanza)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret as _;

    /// The identity of the CCTV vectors (c2sp.org/CCTV/age, `hybrid`): a
    /// published test key.
    const CCTV_IDENTITY: &str =
        "AGE-SECRET-KEY-PQ-1HZLGZUPT4ETPKDEV8HSGFDCYZ4E522W0A7PU2LHT8EH9W6YLNC3SW78XKG";

    #[test]
    fn wrap_then_unwrap_gives_the_file_key() {
        let id = Identity::generate();
        let file_key = FileKey::new(Box::new([7u8; FILE_KEY_BYTES]));
        let stanza = id.to_public().wrap(&file_key).unwrap();
        assert_eq!(stanza.tag, STANZA_TAG);
        assert_eq!(stanza.body.len(), 32);
        assert_eq!(stanza.args[0].len(), (ENC_LEN * 4).div_ceil(3));
        let got = id.unwrap(&stanza).unwrap().unwrap();
        assert_eq!(got.expose_secret(), &[7u8; FILE_KEY_BYTES]);
        // Another identity: a well-formed stanza for someone else is None.
        assert!(Identity::generate().unwrap(&stanza).is_none());
    }

    #[test]
    fn identity_and_recipient_strings_round_trip() {
        let id: Identity = CCTV_IDENTITY.parse().unwrap();
        assert_eq!(id.to_secret_string().as_str(), CCTV_IDENTITY);
        // Lower case reads too (Bech32 is case-insensitive as a whole).
        let lower: Identity = CCTV_IDENTITY.to_ascii_lowercase().parse().unwrap();
        assert_eq!(lower.to_public(), id.to_public());
        let r = id.to_public().to_string();
        // What Go age 1.3.2's `age-keygen -y` prints for this identity
        // (1,959 characters; its SHA-256 stands for it here).
        assert!(r.starts_with("age1pq1z4f9zeapqujpskesfxhujkg525ymk8mep9up4wa7kxsycgvtc3ef0"));
        assert_eq!(r.len(), 1959);
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(r.as_bytes()).into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "3391361ba4a3d211173b3161b1460630cee790d95b732cd447313243226cb082"
        );
        assert_eq!(r.parse::<Recipient>().unwrap(), *id.to_public());
        assert_eq!(id.to_public().as_bytes().len(), PUBLIC_KEY_LEN);
    }

    #[test]
    fn malformed_keys_are_refused() {
        // An X25519 identity or recipient is not a PQ one.
        assert_eq!(
            "AGE-SECRET-KEY-174XEFWTPDHLDK3S3KUS8M7G0V6M4G73YTC6PPX5T5AE9KH3DHATSYCTW42"
                .parse::<Identity>()
                .unwrap_err(),
            PqKeyError::Identity
        );
        assert_eq!(
            "age1f4jq4wtn0qt5rpalk72cperxnat7pyl5l60pcmwv5cxvq8cq3fjqu8rq75"
                .parse::<Recipient>()
                .unwrap_err(),
            PqKeyError::Encoding
        );
        let id = Identity::generate();
        let good = id.to_public().as_bytes().to_vec();
        let enc = |raw: &[u8]| bech32_encode(RECIPIENT_HRP, raw);
        // Truncated.
        assert_eq!(
            enc(&good[..PUBLIC_KEY_LEN - 1])
                .parse::<Recipient>()
                .unwrap_err(),
            PqKeyError::Length
        );
        // A coefficient of 0xfff >= q.
        let mut bad = good.clone();
        bad[0] = 0xff;
        bad[1] |= 0x0f;
        assert_eq!(
            enc(&bad).parse::<Recipient>().unwrap_err(),
            PqKeyError::MlKemKey
        );
        // A low-order X25519 half (the point 0).
        let mut bad = good.clone();
        bad[EK_PQ_LEN..].fill(0);
        assert_eq!(
            enc(&bad).parse::<Recipient>().unwrap_err(),
            PqKeyError::LowOrder
        );
        // Upper-case recipients are not how age writes them.
        assert_eq!(
            id.to_public()
                .to_string()
                .to_ascii_uppercase()
                .parse::<Recipient>()
                .unwrap_err(),
            PqKeyError::Encoding
        );
    }

    #[test]
    fn malformed_stanzas_are_one_error() {
        let id = Identity::generate();
        let file_key = FileKey::new(Box::new([9u8; FILE_KEY_BYTES]));
        let good = id.to_public().wrap(&file_key).unwrap();
        let with = |f: &dyn Fn(&mut Stanza)| {
            let mut s = Stanza {
                tag: good.tag.clone(),
                args: good.args.clone(),
                body: good.body.clone(),
            };
            f(&mut s);
            s
        };
        let invalid = [
            with(&|s| s.args.push("x".into())),
            with(&|s| s.args.clear()),
            with(&|s| s.args[0].push('=')),
            with(&|s| {
                s.args[0].pop();
            }),
            with(&|s| {
                s.body.pop();
            }),
            with(&|s| s.body.push(0)),
        ];
        for s in &invalid {
            assert!(
                matches!(id.unwrap(s), Some(Err(age::DecryptError::InvalidHeader))),
                "{:?}",
                s.args.len()
            );
        }
        // The body altered: sealed to someone else, as far as HPKE can tell.
        assert!(id.unwrap(&with(&|s| s.body[0] ^= 1)).is_none());
        // Another stanza type is not ours.
        assert!(id.unwrap(&with(&|s| s.tag = "X25519".into())).is_none());
    }

    #[test]
    fn debug_hides_the_seed() {
        let id: Identity = CCTV_IDENTITY.parse().unwrap();
        let shown = format!("{id:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
