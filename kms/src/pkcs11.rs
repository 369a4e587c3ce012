//! An AES key in a PKCS#11 token (an HSM; SoftHSM2 in the tests).
//!
//! The KEK is a secret-key object (`CKO_SECRET_KEY`, `CKK_AES`) whose
//! `CKA_LABEL` is the reference's key, in the token labelled
//! `--kek-pkcs11-token`, reached through the module `--kek-pkcs11-module`
//! with the user PIN of `--kek-pkcs11-pin-file`. Wrapping is
//! `C_Encrypt` with `CKM_AES_GCM`; the key never leaves the token.
//!
//! PKCS#11 calls block, so every one runs in
//! [`tokio::task::spawn_blocking`]. The module is loaded and initialised
//! once per process (a second `C_Initialize` of the same library would
//! share its state anyway, and a `C_Finalize` would pull it from under any
//! other user); each [`Pkcs11Kek`] keeps one logged-in session behind a
//! mutex, opened again (and the PIN file read again) when the token drops
//! it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use futures::future::BoxFuture;
use zeroize::Zeroizing;

use crate::{Kek, KekArgs, KekRef, KmsError, Result, blocking};

/// The first bytes of every wrapped key: "c11" and the layout's version.
const MAGIC: &[u8; 4] = b"c11\x01";
/// AES-GCM's IV: 96 bits, the size GCM uses without hashing it.
const IV_LEN: usize = 12;
/// AES-GCM's tag: the full 128 bits.
const TAG_LEN: usize = 16;
/// The largest wrapped key accepted: private keys are a few kilobytes; a
/// larger input is refused before it reaches the token.
const MAX_WRAPPED: usize = 64 * 1024;
/// PKCS#11 3.0's failed tag check, which cryptoki 0.12 does not name.
const CKR_AEAD_DECRYPT_FAILED: std::ffi::c_ulong = 0x42;

/// A PKCS#11 AES key as a [`Kek`].
///
/// The wrapped form is `b"c11\x01" || iv (12 bytes) || ciphertext || tag
/// (16 bytes)`: AES-256-GCM (or whatever size the AES key has) under the
/// token's key, with a fresh random IV per wrap and the associated data
/// `b"c11\x01" || context`, so the header and the key id are both bound to
/// the ciphertext.
///
/// The IV comes from the token's `C_GenerateRandom`: the token's generator
/// is the one the operator chose to trust (in an HSM, the certified one),
/// it is asked in the same session as the encryption, and no second
/// random-number dependency is needed. GCM needs IVs that never repeat
/// under one key; 96 random bits keep that true far beyond the number of
/// keys a ring will ever wrap.
pub struct Pkcs11Kek {
    inner: Arc<Inner>,
}

struct Inner {
    kek: KekRef,
    ctx: Pkcs11,
    token: String,
    pin_file: PathBuf,
    /// The logged-in session; `None` until the first use and after the
    /// token dropped it.
    session: Mutex<Option<Session>>,
}

impl fmt::Debug for Pkcs11Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Kek")
            .field("kek", &self.inner.kek)
            .field("token", &self.inner.token)
            .finish_non_exhaustive()
    }
}

/// Connects to the PKCS#11 KEK: loads the module, finds the token, logs in
/// and checks that the key exists and may encrypt and decrypt, so that a
/// wrong setting fails at start rather than at the first key.
/// Whether this is a static musl build (the release binaries and image):
/// those cannot `dlopen` a module.
const STATIC_MUSL: bool = cfg!(all(target_env = "musl", target_feature = "crt-static"));

pub(crate) async fn connect(reference: KekRef, args: &KekArgs) -> Result<Arc<dyn Kek>> {
    if STATIC_MUSL {
        // musl's static libc has no dynamic loader: dlopen of any module
        // fails. Say so, rather than blame the module.
        return Err(KmsError::Config(format!(
            "{reference}: this coffer build is a static (musl) binary, which cannot load a PKCS#11 module; use a build for a glibc target with the module's libc (docs/kms.md, PKCS#11)"
        )));
    }
    let missing = |flag: &str, what: &str| {
        KmsError::Config(format!("{reference}: {flag} is required ({what})"))
    };
    let module = args.kek_pkcs11_module.clone().ok_or_else(|| {
        missing(
            "--kek-pkcs11-module",
            "the PKCS#11 module, a shared library",
        )
    })?;
    let token = args.kek_pkcs11_token.clone().ok_or_else(|| {
        missing(
            "--kek-pkcs11-token",
            "the label of the token holding the key",
        )
    })?;
    let pin_file = args
        .kek_pkcs11_pin_file
        .clone()
        .ok_or_else(|| missing("--kek-pkcs11-pin-file", "a file holding the user PIN"))?;
    if !module.is_file() {
        return Err(KmsError::Config(format!(
            "{reference}: the PKCS#11 module {} (--kek-pkcs11-module) is not a file",
            module.display()
        )));
    }
    // Read now so that an unreadable or empty file is a configuration error.
    read_pin(&reference, &pin_file)?;
    let kek = reference.clone();
    let inner = blocking(&reference, move || {
        let ctx = context(&kek, &module)?;
        let inner = Inner {
            kek,
            ctx,
            token,
            pin_file,
            session: Mutex::new(None),
        };
        inner.with_session(|session| inner.find_key(session).map(drop))?;
        Ok(inner)
    })
    .await?;
    Ok(Arc::new(Pkcs11Kek {
        inner: Arc::new(inner),
    }))
}

/// Reads the PIN file, without its trailing newline. Errors name the file,
/// never its content.
fn read_pin(kek: &KekRef, path: &Path) -> Result<AuthPin> {
    let raw = Zeroizing::new(std::fs::read(path).map_err(|e| {
        KmsError::Config(format!(
            "{kek}: the PIN file {} (--kek-pkcs11-pin-file) cannot be read: {e}",
            path.display()
        ))
    })?);
    let text = std::str::from_utf8(&raw).map_err(|_| {
        KmsError::Config(format!(
            "{kek}: the PIN file {} (--kek-pkcs11-pin-file) is not UTF-8",
            path.display()
        ))
    })?;
    let pin = text.strip_suffix('\n').unwrap_or(text);
    let pin = pin.strip_suffix('\r').unwrap_or(pin);
    if pin.is_empty() {
        return Err(KmsError::Config(format!(
            "{kek}: the PIN file {} (--kek-pkcs11-pin-file) is empty",
            path.display()
        )));
    }
    Ok(AuthPin::from(pin))
}

/// The process's one initialised context for `module`.
fn context(kek: &KekRef, module: &Path) -> Result<Pkcs11> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let key = module
        .canonicalize()
        .unwrap_or_else(|_| module.to_path_buf());
    let mut contexts = CONTEXTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(ctx) = contexts.get(&key) {
        return Ok(ctx.clone());
    }
    let unavailable = |e: CkError| KmsError::Unavailable {
        kek: kek.clone(),
        detail: format!("loading the PKCS#11 module {}: {e}", module.display()),
    };
    let ctx = Pkcs11::new(&key).map_err(unavailable)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Another part of the process initialised the same library.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(unavailable(e)),
    }
    contexts.insert(key, ctx.clone());
    Ok(ctx)
}

/// Whether `e` says the session is gone (the token was reset, the session
/// closed or logged out): worth one retry with a new session.
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// A PKCS#11 failure in a few words: the function and the return value.
fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("C_{function:?} failed: {rv:?}"),
        other => other.to_string(),
    }
}

/// Classifies a PKCS#11 failure. The message holds the function and the
/// return value's name, nothing of the PIN or the data.
fn classify(kek: &KekRef, e: &CkError) -> KmsError {
    let kek = kek.clone();
    let detail = describe(e);
    let CkError::Pkcs11(rv, function) = e else {
        return KmsError::Unavailable { kek, detail };
    };
    match rv {
        RvError::PinIncorrect
        | RvError::PinLocked
        | RvError::PinExpired
        | RvError::PinInvalid
        | RvError::PinLenRange
        | RvError::UserPinNotInitialized
        | RvError::UserAnotherAlreadyLoggedIn => KmsError::Denied {
            kek,
            detail: format!("the PIN in --kek-pkcs11-pin-file was refused: {detail}"),
        },
        RvError::EncryptedDataInvalid
        | RvError::EncryptedDataLenRange
        | RvError::SignatureInvalid
        | RvError::DataLenRange
        | RvError::DataInvalid
        | RvError::UnknownErrorCode(CKR_AEAD_DECRYPT_FAILED)
            if matches!(function, Function::Decrypt | Function::DecryptInit) =>
        {
            KmsError::Rejected { kek, detail }
        }
        RvError::KeyHandleInvalid
        | RvError::ObjectHandleInvalid
        | RvError::KeyFunctionNotPermitted
        | RvError::KeyTypeInconsistent
        | RvError::KeySizeRange
        | RvError::KeyChanged
        | RvError::MechanismInvalid
        | RvError::MechanismParamInvalid
        | RvError::FunctionNotSupported
        | RvError::RandomNoRng => KmsError::KeyUnusable { kek, detail },
        _ => KmsError::Unavailable { kek, detail },
    }
}

impl Inner {
    /// Runs `op` in the logged-in session, opening one (and logging in)
    /// when there is none, and once more with a new session when the token
    /// says the old one is gone.
    fn with_session<T>(&self, op: impl Fn(&Session) -> Result<T, OpError>) -> Result<T> {
        let mut slot = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for attempt in 0..2 {
            if slot.is_none() {
                *slot = Some(self.open()?);
            }
            let Some(session) = slot.as_ref() else {
                continue;
            };
            match op(session) {
                Ok(v) => return Ok(v),
                Err(OpError::Pkcs11(e)) if attempt == 0 && session_lost(&e) => {
                    tracing::debug!(kek = %self.kek, error = %e, "PKCS#11 session lost; opening another");
                    *slot = None;
                }
                Err(OpError::Pkcs11(e)) => {
                    if session_lost(&e) {
                        *slot = None;
                    }
                    return Err(classify(&self.kek, &e));
                }
                Err(OpError::Kms(e)) => return Err(e),
            }
        }
        Err(KmsError::Unavailable {
            kek: self.kek.clone(),
            detail: "the PKCS#11 session was lost twice in a row".into(),
        })
    }

    /// Opens a session on the token and logs the user in.
    ///
    /// Under a process-wide lock: SoftHSM2 rescans its token directory on
    /// every `C_GetSlotList`, and calls of other threads fail now and then
    /// while it does (seen in the tests as CKR_GENERAL_ERROR and
    /// CKR_SESSION_HANDLE_INVALID); two KEKs may live in one process
    /// (`coffer keys wrap` from one label to another). A session lost that
    /// way is opened again by [`Inner::with_session`].
    fn open(&self) -> Result<Session> {
        static DISCOVERY: Mutex<()> = Mutex::new(());
        let _discovery = DISCOVERY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let ck = |e: CkError| classify(&self.kek, &e);
        let slot = self
            .ctx
            .get_slots_with_token()
            .map_err(ck)?
            .into_iter()
            .find(|slot| {
                self.ctx
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == self.token)
            })
            .ok_or_else(|| KmsError::KeyUnusable {
                kek: self.kek.clone(),
                detail: format!("no token labelled {:?} (--kek-pkcs11-token)", self.token),
            })?;
        let session = self.ctx.open_ro_session(slot).map_err(ck)?;
        let pin = read_pin(&self.kek, &self.pin_file)?;
        match session.login(UserType::User, Some(&pin)) {
            // Login is per application and token: another session of this
            // process already logged in.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(ck(e)),
        }
    }

    /// Finds the AES key and checks it may encrypt and decrypt.
    fn find_key(&self, session: &Session) -> Result<ObjectHandle, OpError> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(self.kek.key.as_bytes().to_vec()),
        ];
        let unusable = |detail: String| KmsError::KeyUnusable {
            kek: self.kek.clone(),
            detail,
        };
        let keys = session.find_objects(&template)?;
        let key = match keys.as_slice() {
            [key] => *key,
            [] => {
                return Err(unusable(format!(
                    "no AES secret key labelled {:?} in the token {:?}",
                    self.kek.key, self.token
                ))
                .into());
            }
            more => {
                return Err(unusable(format!(
                    "{} AES secret keys are labelled {:?} in the token {:?}; the label must name one",
                    more.len(),
                    self.kek.key,
                    self.token
                ))
                .into());
            }
        };
        let attributes =
            session.get_attributes(key, &[AttributeType::Encrypt, AttributeType::Decrypt])?;
        let allowed = |wanted: AttributeType| {
            attributes.iter().any(|a| match a {
                Attribute::Encrypt(yes) => wanted == AttributeType::Encrypt && *yes,
                Attribute::Decrypt(yes) => wanted == AttributeType::Decrypt && *yes,
                _ => false,
            })
        };
        for (attribute, name) in [
            (AttributeType::Encrypt, "CKA_ENCRYPT"),
            (AttributeType::Decrypt, "CKA_DECRYPT"),
        ] {
            if !allowed(attribute) {
                return Err(unusable(format!("the key does not allow {name}")).into());
            }
        }
        Ok(key)
    }

    fn wrap(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>> {
        let aad = aad(context);
        self.with_session(|session| {
            let key = self.find_key(session)?;
            let mut iv = session.generate_random_vec(IV_LEN as u32)?;
            let ciphertext = {
                let params = GcmParams::new(&mut iv, &aad, (TAG_LEN as u64 * 8).into())?;
                session.encrypt(&Mechanism::AesGcm(params), key, plaintext)?
            };
            let mut out = Vec::with_capacity(MAGIC.len() + IV_LEN + ciphertext.len());
            out.extend_from_slice(MAGIC);
            out.extend_from_slice(&iv);
            out.extend_from_slice(&ciphertext);
            Ok(out)
        })
    }

    fn unwrap(&self, wrapped: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>> {
        let (iv, ciphertext) = parse(&self.kek, wrapped)?;
        let aad = aad(context);
        self.with_session(|session| {
            let key = self.find_key(session)?;
            match decrypt(session, key, iv, &aad, ciphertext) {
                Ok(plaintext) => Ok(plaintext),
                Err(e) if vague(&e) && self.probe(session, key).is_ok() => Err(KmsError::Rejected {
                    kek: self.kek.clone(),
                    detail: format!(
                        "{}; the key still opens what it seals, so the ciphertext, its context or its key \
                         is not this one",
                        describe(&e)
                    ),
                }
                .into()),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Seals and opens an empty message: whether the token and the key
    /// work, after a vague decryption failure.
    fn probe(&self, session: &Session, key: ObjectHandle) -> Result<(), CkError> {
        let mut iv = session.generate_random_vec(IV_LEN as u32)?;
        let sealed = {
            let params = GcmParams::new(&mut iv, MAGIC, (TAG_LEN as u64 * 8).into())?;
            session.encrypt(&Mechanism::AesGcm(params), key, &[])?
        };
        decrypt(session, key, &iv, MAGIC, &sealed).map(drop)
    }
}

/// AES-GCM decryption in the token.
fn decrypt(
    session: &Session,
    key: ObjectHandle,
    iv: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CkError> {
    let mut iv = iv.to_vec();
    let params = GcmParams::new(&mut iv, aad, (TAG_LEN as u64 * 8).into())?;
    Ok(Zeroizing::new(session.decrypt(
        &Mechanism::AesGcm(params),
        key,
        ciphertext,
    )?))
}

/// Whether a `C_Decrypt` failure may be a failed tag check that the module
/// reports as a generic error (SoftHSM2 says CKR_GENERAL_ERROR) rather than
/// CKR_ENCRYPTED_DATA_INVALID or CKR_AEAD_DECRYPT_FAILED: a probe then
/// tells a bad ciphertext from a failing token.
fn vague(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::GeneralError | RvError::FunctionFailed,
            Function::Decrypt
        )
    )
}

/// GCM's associated data: the header and the context.
fn aad(context: &str) -> Vec<u8> {
    [MAGIC.as_slice(), context.as_bytes()].concat()
}

/// Splits a wrapped key into IV and ciphertext+tag, or rejects it.
fn parse<'w>(kek: &KekRef, wrapped: &'w [u8]) -> Result<(&'w [u8], &'w [u8])> {
    let reject = |detail: String| KmsError::Rejected {
        kek: kek.clone(),
        detail,
    };
    let Some(rest) = wrapped.strip_prefix(MAGIC.as_slice()) else {
        return Err(reject(
            "not a PKCS#11 wrapped key (no c11 version 1 header)".into(),
        ));
    };
    if rest.len() < IV_LEN + TAG_LEN {
        return Err(reject(format!("truncated: {} bytes", wrapped.len())));
    }
    if wrapped.len() > MAX_WRAPPED {
        return Err(reject(format!(
            "too long: {} bytes, at most {MAX_WRAPPED}",
            wrapped.len()
        )));
    }
    Ok(rest.split_at(IV_LEN))
}

/// A failure inside a session: PKCS#11's (classified by
/// [`Inner::with_session`], which may retry) or already classified.
enum OpError {
    Pkcs11(CkError),
    Kms(KmsError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Pkcs11(e)
    }
}

impl From<KmsError> for OpError {
    fn from(e: KmsError) -> Self {
        OpError::Kms(e)
    }
}

impl Kek for Pkcs11Kek {
    fn reference(&self) -> &KekRef {
        &self.inner.kek
    }

    fn wrap<'a>(&'a self, plaintext: &'a [u8], context: &'a str) -> BoxFuture<'a, Result<Vec<u8>>> {
        let inner = Arc::clone(&self.inner);
        let plaintext = Zeroizing::new(plaintext.to_vec());
        let context = context.to_owned();
        Box::pin(async move {
            let kek = inner.kek.clone();
            blocking(&kek, move || inner.wrap(&plaintext, &context)).await
        })
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a [u8],
        context: &'a str,
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>>> {
        let inner = Arc::clone(&self.inner);
        let wrapped = wrapped.to_vec();
        let context = context.to_owned();
        Box::pin(async move {
            let kek = inner.kek.clone();
            blocking(&kek, move || inner.unwrap(&wrapped, &context)).await
        })
    }

    /// PKCS#11 keys have no versions: there is nothing newer to move to,
    /// so this is always `Ok(None)`. To move keys to another AES key,
    /// `coffer keys wrap` them with a reference to the new label.
    fn rewrap<'a>(
        &'a self,
        _wrapped: &'a [u8],
        _context: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async { Ok(None) })
    }
}
