//! The key ring's Secrets: the names (type, labels, annotations, data
//! keys) the controller and the CLI share for the sealing keys, which live
//! as Secrets in the controller's namespace, and building and reading one
//! key Secret.

/// Secret type of a sealing key.
pub const KEY_SECRET_TYPE: &str = "coffer.dev/sealing-key";
/// Label holding the key id's short form (a label value holds at most
/// 63 characters). For selecting and for people only: the controller
/// and the CLI read the key itself and compare whole ids.
pub const KEY_ID_LABEL: &str = "coffer.dev/key-id";
/// Label with the key's state, one of [`KeyStatus`]'s words;
/// a key without it is usable.
pub const KEY_STATE_LABEL: &str = "coffer.dev/key-state";
/// Annotation with the key's creation time (RFC 3339), for people. No
/// decision reads it: a writable clock value cannot choose the active
/// key or stop renewal. A time in the future makes the controller
/// ignore the key Secret.
pub const CREATED_ANNOTATION: &str = "coffer.dev/created";
/// Annotation holding the key's place in the ring, a counter the
/// controller owns: each key it creates gets one more than the highest
/// in the ring, and `coffer keys activate` does the same. The usable
/// key with the highest sequence is active.
pub const SEQUENCE_ANNOTATION: &str = "coffer.dev/sequence";
/// Annotation `coffer keys activate` writes: when and by whom an
/// open-only key was made to seal. Renewal counts from this time when
/// it is later than the Secret's creation (and not in the future).
pub const ACTIVATED_ANNOTATION: &str = "coffer.dev/activated-at";
/// Annotation with the user who activated the key (for audit).
pub const ACTIVATED_BY_ANNOTATION: &str = "coffer.dev/activated-by";
/// Annotation a key admin puts on the *active* key's Secret to ask for
/// a new key now (its value, the time of the request, is for people).
/// The request is fulfilled once a key with a higher sequence exists:
/// no clocks are compared, so a CLI with a skewed clock works too.
pub const ROTATION_ANNOTATION: &str = "coffer.dev/rotation-requested";
/// Data key of the private identity inside a key Secret.
pub const IDENTITY_KEY: &str = "identity";
/// Data key of the private identity wrapped by a key-encryption key
/// (docs/kms.md): the KEK's ciphertext of the identity's text. A key
/// Secret holds either this or [`IDENTITY_KEY`], never both.
pub const WRAPPED_IDENTITY_KEY: &str = "wrapped-identity";
/// Annotation naming the KEK that wrapped [`WRAPPED_IDENTITY_KEY`]
/// (`transit:NAME`, `pkcs11:LABEL`, `awskms:KEY`).
pub const KEK_ANNOTATION: &str = "coffer.dev/kek";
/// Annotation holding the key's public key (its recipient), so that a
/// wrapped key is known, listed and published without unwrapping it.
pub const PUBLIC_KEY_ANNOTATION: &str = "coffer.dev/public-key";
/// ConfigMap that publishes the active key's recipients file.
pub const RECIPIENTS_CONFIGMAP: &str = "coffer-recipients";
/// Key of the recipients file inside that ConfigMap.
pub const RECIPIENTS_KEY: &str = "recipients.txt";

/// What a key in the ring may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// Opens values; the usable key with the highest sequence also seals.
    Usable,
    /// Opens values, never seals: what `coffer keys restore` brings back,
    /// until an admin runs `coffer keys activate`.
    OpenOnly,
    /// Opens nothing; values sealed only to it are refused as `KeyRetired`.
    Retired,
}

impl KeyStatus {
    /// The word of the state label (`None`: no label, usable).
    pub fn label(self) -> Option<&'static str> {
        match self {
            KeyStatus::Usable => None,
            KeyStatus::OpenOnly => Some("open-only"),
            KeyStatus::Retired => Some("retired"),
        }
    }

    /// The state a label says. An unknown word is treated as retired: the
    /// safe reading of a state this version does not know.
    pub fn from_label(label: Option<&str>) -> Self {
        match label {
            None | Some("usable") => KeyStatus::Usable,
            Some("open-only") => KeyStatus::OpenOnly,
            Some(_) => KeyStatus::Retired,
        }
    }

    /// The word people read.
    pub fn as_str(self) -> &'static str {
        self.label().unwrap_or("usable")
    }
}

/// The name of the Secret that holds a key: the whole id, so two keys
/// never share a name.
pub fn key_secret_name(id: &coffer_format::KeyId) -> String {
    format!("coffer-key-{id}")
}

/// The Secret that holds one sealing key, as the controller creates it and
/// `coffer keys restore` brings it back. It holds the private key: send it
/// with [`crate::wipe::WireSecret`] and wipe it with
/// [`crate::wipe::secret`] once sent.
pub fn key_secret(
    key: &coffer_format::SecretKey,
    created: Option<jiff::Timestamp>,
    status: KeyStatus,
    sequence: Option<u64>,
) -> k8s_openapi::api::core::v1::Secret {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    let id = key.id();
    let mut labels = BTreeMap::from([(KEY_ID_LABEL.to_string(), id.short())]);
    if let Some(state) = status.label() {
        labels.insert(KEY_STATE_LABEL.into(), state.into());
    }
    let mut annotations =
        BTreeMap::from([(PUBLIC_KEY_ANNOTATION.to_string(), key.public().to_string())]);
    if let Some(c) = created {
        annotations.insert(CREATED_ANNOTATION.into(), c.to_string());
    }
    if let Some(n) = sequence {
        annotations.insert(SEQUENCE_ANNOTATION.into(), n.to_string());
    }
    let identity = key.to_secret_string();
    k8s_openapi::api::core::v1::Secret {
        metadata: ObjectMeta {
            name: Some(key_secret_name(&id)),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some(KEY_SECRET_TYPE.into()),
        data: Some(BTreeMap::from([(
            IDENTITY_KEY.to_string(),
            ByteString(identity.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

/// One key Secret as the controller and the CLI read it. Every decision
/// comes from the key itself, the state label, the controller's sequence
/// counter and the API server's `creationTimestamp`; the `created`
/// annotation is only shown.
#[derive(Clone, Debug)]
pub struct RingKey {
    /// The key's public key (its recipient).
    pub public: coffer_format::PublicKey,
    /// The private key: `None` while it is wrapped by a KEK and not
    /// unwrapped yet ([`RingKey::unwrapped`]).
    pub key: Option<coffer_format::SecretKey>,
    /// The wrapped key, when the Secret holds it wrapped by a KEK.
    pub wrapped: Option<WrappedKey>,
    /// The name of the Secret it was read from.
    pub secret_name: String,
    /// What it may do: its state label, demoted to open-only when the
    /// Secret claims a time in the future.
    pub status: KeyStatus,
    /// Place in the ring ([`SEQUENCE_ANNOTATION`]); 0 when unset.
    pub sequence: u64,
    /// When the API server created the Secret.
    pub created: Option<jiff::Timestamp>,
    /// When the key says it was made (the annotation), for people.
    pub created_claimed: Option<jiff::Timestamp>,
    /// When an admin activated it, if one did.
    pub activated: Option<jiff::Timestamp>,
    /// Whether a key admin asked for a new key to replace this one.
    pub rotation_requested: bool,
    /// Why the Secret was not taken at its word (a time in the future),
    /// for a warning; such a key is open-only.
    pub suspect: Option<String>,
}

impl RingKey {
    /// The key id.
    pub fn id(&self) -> coffer_format::KeyId {
        self.public.id()
    }

    /// The same key with its private key, from what its KEK returned for
    /// [`RingKey::wrapped`] (checked to be this key, [`WrappedKey::open`]).
    pub fn unwrapped(mut self, plaintext: &[u8]) -> Result<RingKey, String> {
        let wrapped = self
            .wrapped
            .as_ref()
            .ok_or_else(|| format!("key Secret {} holds no wrapped key", self.secret_name))?;
        self.key = Some(wrapped.open(plaintext)?);
        Ok(self)
    }

    /// Since when this key has sealed: renewal is due a period after it.
    pub fn sealing_since(&self) -> jiff::Timestamp {
        let created = self.created.unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        self.activated.map_or(created, |a| a.max(created))
    }

    /// The order of the ring: newest (highest sequence, then latest
    /// server-side creation, then id) first.
    pub fn newest_first(a: &RingKey, b: &RingKey) -> std::cmp::Ordering {
        (b.sequence, b.created, b.id()).cmp(&(a.sequence, a.created, a.id()))
    }
}

/// The active key of a ring: the usable key that comes first in
/// [`RingKey::newest_first`] order. Open-only and retired keys never seal.
pub fn active_key(keys: &[RingKey]) -> Option<&RingKey> {
    keys.iter()
        .filter(|k| k.status == KeyStatus::Usable)
        .min_by(|a, b| RingKey::newest_first(a, b))
}

/// The private key a key Secret holds: in plain, or wrapped by a KEK.
pub enum KeyMaterial {
    /// `data.identity`: the key itself.
    Plain(coffer_format::SecretKey),
    /// `data.wrapped-identity`: the key as a KEK's ciphertext.
    Wrapped(WrappedKey),
}

/// A private key wrapped by a key-encryption key, as a key Secret holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// The key's id, from its public key ([`PUBLIC_KEY_ANNOTATION`]). The
    /// key unwrapped must have this id ([`WrappedKey::open`]).
    pub id: coffer_format::KeyId,
    /// The KEK's reference ([`KEK_ANNOTATION`]).
    pub kek: String,
    /// The KEK's ciphertext.
    pub ciphertext: Vec<u8>,
}

impl WrappedKey {
    /// Reads the identity a KEK returned and checks it is the key the
    /// Secret names: a ciphertext moved from another key Secret, or
    /// anything else, is refused. The error names the key, never the text.
    pub fn open(&self, plaintext: &[u8]) -> Result<coffer_format::SecretKey, String> {
        let text = std::str::from_utf8(plaintext)
            .map_err(|_| format!("key {}: the KEK {} returned no identity", self.id, self.kek))?;
        let key = coffer_format::SecretKey::parse(text.trim()).map_err(|_| {
            format!(
                "key {}: the KEK {} returned no age identity",
                self.id, self.kek
            )
        })?;
        if key.id() != self.id {
            return Err(format!(
                "key {}: the KEK {} returned another key ({}); the wrapped key was moved from another Secret",
                self.id,
                self.kek,
                key.id()
            ));
        }
        Ok(key)
    }
}

/// The private key of a key Secret, strictly: of the key type, with
/// exactly one of `data.identity` or `data.wrapped-identity` (and then its
/// KEK and public key). Errors name the Secret and the problem, never the
/// identity.
pub fn key_material(secret: &k8s_openapi::api::core::v1::Secret) -> Result<KeyMaterial, String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    if secret.type_.as_deref() != Some(KEY_SECRET_TYPE) {
        return Err(format!(
            "key Secret {name} is not of type {}",
            KEY_SECRET_TYPE
        ));
    }
    let data = secret.data.as_ref();
    let plain = data.and_then(|d| d.get(IDENTITY_KEY));
    let wrapped = data.and_then(|d| d.get(WRAPPED_IDENTITY_KEY));
    let annotation = |a: &str| secret.metadata.annotations.as_ref().and_then(|m| m.get(a));
    match (plain, wrapped) {
        (Some(_), Some(_)) => Err(format!(
            "key Secret {name} holds both data.{IDENTITY_KEY} and data.{WRAPPED_IDENTITY_KEY}"
        )),
        (None, None) => Err(format!("key Secret {name} has no data.{}", IDENTITY_KEY)),
        (Some(data), None) => {
            let text = std::str::from_utf8(&data.0)
                .map_err(|_| format!("key Secret {name}: data.{} is not text", IDENTITY_KEY))?;
            coffer_format::SecretKey::parse(text)
                .map(KeyMaterial::Plain)
                .map_err(|_| {
                    format!(
                        "key Secret {name}: data.{} is not an age identity (X25519 or mlkem768x25519)",
                        IDENTITY_KEY
                    )
                })
        }
        (None, Some(data)) => {
            let kek = annotation(KEK_ANNOTATION).ok_or_else(|| {
                format!("key Secret {name} holds a wrapped key but no {KEK_ANNOTATION} annotation")
            })?;
            let public = annotation(PUBLIC_KEY_ANNOTATION)
                .and_then(|p| p.parse::<coffer_format::PublicKey>().ok())
                .ok_or_else(|| {
                    format!("key Secret {name} holds a wrapped key but no valid {PUBLIC_KEY_ANNOTATION} annotation")
                })?;
            Ok(KeyMaterial::Wrapped(WrappedKey {
                id: public.id(),
                kek: kek.clone(),
                ciphertext: data.0.clone(),
            }))
        }
    }
}

/// Turns a key Secret holding its key in plain into one holding it wrapped
/// by `kek` (`ciphertext`, the KEK's encryption of the identity's text):
/// the plain identity is wiped from the object. The public key annotation
/// stays, so the key is known without unwrapping.
pub fn wrap_key_secret(
    secret: &mut k8s_openapi::api::core::v1::Secret,
    kek: &str,
    ciphertext: Vec<u8>,
) {
    let data = secret.data.get_or_insert_default();
    if let Some(mut plain) = data.remove(IDENTITY_KEY) {
        zeroize::Zeroize::zeroize(&mut plain.0);
    }
    data.insert(
        WRAPPED_IDENTITY_KEY.to_string(),
        k8s_openapi::ByteString(ciphertext),
    );
    secret
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(KEK_ANNOTATION.to_string(), kek.to_string());
}

/// The reverse of [`wrap_key_secret`]: the Secret holds `key` in plain
/// again and names no KEK. Send it with [`crate::wipe::WireSecret`] and
/// wipe it once sent.
pub fn unwrap_key_secret(
    secret: &mut k8s_openapi::api::core::v1::Secret,
    key: &coffer_format::SecretKey,
) {
    let data = secret.data.get_or_insert_default();
    data.remove(WRAPPED_IDENTITY_KEY);
    data.insert(
        IDENTITY_KEY.to_string(),
        k8s_openapi::ByteString(key.to_secret_string().as_bytes().to_vec()),
    );
    if let Some(a) = secret.metadata.annotations.as_mut() {
        a.remove(KEK_ANNOTATION);
    }
}

/// Reads one key Secret strictly, its key in plain or wrapped by a KEK
/// (then [`RingKey::key`] is `None` until [`RingKey::unwrapped`]). The
/// error names the Secret and the problem, never the identity.
pub fn read_key_secret(
    secret: &k8s_openapi::api::core::v1::Secret,
    now: jiff::Timestamp,
) -> Result<RingKey, String> {
    match key_material(secret)? {
        KeyMaterial::Plain(key) => {
            read_key_secret_as(secret, key.public().clone(), Some(key), None, now)
        }
        KeyMaterial::Wrapped(w) => {
            let public = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PUBLIC_KEY_ANNOTATION))
                .and_then(|p| p.parse::<coffer_format::PublicKey>().ok())
                .ok_or_else(|| "unreachable: checked by key_material".to_string())?;
            read_key_secret_as(secret, public, None, Some(w), now)
        }
    }
}

/// Reads the metadata of one key Secret whose key is `public`, strictly:
/// its labels and public key annotation must name that key.
fn read_key_secret_as(
    secret: &k8s_openapi::api::core::v1::Secret,
    public: coffer_format::PublicKey,
    key: Option<coffer_format::SecretKey>,
    wrapped: Option<WrappedKey>,
    now: jiff::Timestamp,
) -> Result<RingKey, String> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    if let Some(label) = labels.get(KEY_ID_LABEL)
        && label != &public.id().short()
    {
        return Err(format!(
            "key Secret {name} is labelled {}={label} but holds key {}",
            KEY_ID_LABEL,
            public.id().short()
        ));
    }
    let empty = std::collections::BTreeMap::new();
    let annotations = secret.metadata.annotations.as_ref().unwrap_or(&empty);
    if let Some(annotated) = annotations.get(PUBLIC_KEY_ANNOTATION)
        && annotated != &public.to_string()
    {
        return Err(format!(
            "key Secret {name}: {PUBLIC_KEY_ANNOTATION} names another key than key {} it holds",
            public.id().short()
        ));
    }
    // Times written into the Secret are claims. One in the future is
    // refused: it is not used, and the key is demoted to open-only (it
    // keeps opening values; it never seals), with a warning.
    let mut suspect = None;
    let mut time = |what: &str| -> Result<Option<jiff::Timestamp>, String> {
        let Some(text) = annotations.get(what) else {
            return Ok(None);
        };
        let t: jiff::Timestamp = text
            .parse()
            .map_err(|_| format!("key Secret {name}: {what} is not a time"))?;
        if coffer_format::backup::is_future(t, now) {
            suspect = Some(format!(
                "key Secret {name}: {what}={t} is in the future; the key is treated as open-only (it opens values and never seals) until the annotation is corrected"
            ));
            return Ok(None);
        }
        Ok(Some(t))
    };
    let created_claimed = time(CREATED_ANNOTATION)?;
    let activated = time(ACTIVATED_ANNOTATION)?;
    let sequence = match annotations.get(SEQUENCE_ANNOTATION) {
        None => 0,
        Some(n) => n.parse::<u64>().map_err(|_| {
            format!(
                "key Secret {name}: {} is not a whole number",
                SEQUENCE_ANNOTATION
            )
        })?,
    };
    let mut status = KeyStatus::from_label(labels.get(KEY_STATE_LABEL).map(String::as_str));
    if suspect.is_some() && status == KeyStatus::Usable {
        status = KeyStatus::OpenOnly;
    }
    Ok(RingKey {
        public,
        key,
        wrapped,
        secret_name: name,
        status,
        suspect,
        sequence,
        created: secret.metadata.creation_timestamp.as_ref().map(|t| t.0),
        created_claimed,
        activated,
        rotation_requested: annotations.contains_key(ROTATION_ANNOTATION),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_format::SecretKey;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ring_key(status: KeyStatus, sequence: Option<u64>, created: &str) -> RingKey {
        let mut s = key_secret(&SecretKey::generate(), None, status, sequence);
        s.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        read_key_secret(&s, jiff::Timestamp::now()).unwrap()
    }

    /// The active key is chosen by the controller's counter, then by the
    /// API server's clock; open-only and retired keys never seal.
    #[test]
    fn active_key_is_the_usable_key_with_the_highest_sequence() {
        let old = ring_key(KeyStatus::Usable, Some(1), "2026-01-01T00:00:00Z");
        let new = ring_key(KeyStatus::Usable, Some(2), "2025-01-01T00:00:00Z");
        let restored = ring_key(KeyStatus::OpenOnly, Some(9), "2026-06-01T00:00:00Z");
        let retired = ring_key(KeyStatus::Retired, Some(10), "2026-06-01T00:00:00Z");
        let keys = vec![old.clone(), restored, retired, new.clone()];
        assert_eq!(active_key(&keys).unwrap().id(), new.id());
        // Without sequences, the server's creation time decides.
        let a = ring_key(KeyStatus::Usable, None, "2026-01-01T00:00:00Z");
        let b = ring_key(KeyStatus::Usable, None, "2026-02-01T00:00:00Z");
        assert_eq!(active_key(&[a, b.clone()]).unwrap().id(), b.id());
        assert!(
            active_key(&[ring_key(
                KeyStatus::OpenOnly,
                Some(5),
                "2026-01-01T00:00:00Z"
            )])
            .is_none()
        );
    }

    /// A time in the future is refused: never used, and the key is demoted
    /// to open-only, so a forged or mistaken date can neither keep a key
    /// active nor postpone renewal; the key still opens values.
    #[test]
    fn future_times_demote_the_key_to_open_only() {
        let key = SecretKey::generate();
        let future: jiff::Timestamp = "2099-01-01T00:00:00Z".parse().unwrap();
        let mut s = key_secret(&key, Some(future), KeyStatus::Usable, Some(1));
        s.metadata.creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        let k = read_key_secret(&s, jiff::Timestamp::now()).unwrap();
        assert_eq!(k.status, KeyStatus::OpenOnly);
        assert_eq!(k.created_claimed, None);
        let why = k.suspect.unwrap();
        assert!(why.contains("in the future"), "{why}");
        assert!(!why.contains("AGE-SECRET-KEY"));
        assert!(active_key(&[read_key_secret(&s, jiff::Timestamp::now()).unwrap()]).is_none());

        let mut s = key_secret(&key, None, KeyStatus::Usable, Some(1));
        s.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ACTIVATED_ANNOTATION.into(), future.to_string());
        s.metadata.creation_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        let k = read_key_secret(&s, jiff::Timestamp::now()).unwrap();
        assert_eq!(k.activated, None);
        assert_eq!(k.status, KeyStatus::OpenOnly);
        assert_eq!(k.sealing_since(), "2026-01-01T00:00:00Z".parse().unwrap());
    }

    /// Renewal counts from when the API server created the key Secret; the
    /// `created` a key claims (past or not) moves nothing.
    #[test]
    fn renewal_counts_from_the_server_creation_time() {
        let key = SecretKey::generate();
        let claimed: jiff::Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
        let mut s = key_secret(&key, Some(claimed), KeyStatus::Usable, Some(1));
        s.metadata.creation_timestamp = Some(Time("2026-06-01T00:00:00Z".parse().unwrap()));
        let k = read_key_secret(&s, "2026-07-01T00:00:00Z".parse().unwrap()).unwrap();
        assert_eq!(k.sealing_since(), "2026-06-01T00:00:00Z".parse().unwrap());
        assert_eq!(k.created_claimed, Some(claimed));
    }

    #[test]
    fn key_secret_round_trips_and_names_the_whole_id() {
        let key = SecretKey::generate();
        let s = key_secret(&key, None, KeyStatus::OpenOnly, Some(7));
        assert_eq!(
            s.metadata.name.as_deref(),
            Some(format!("coffer-key-{}", key.id()).as_str())
        );
        let back = read_key_secret(&s, jiff::Timestamp::now()).unwrap();
        assert_eq!(back.id(), key.id());
        assert_eq!(back.status, KeyStatus::OpenOnly);
        assert_eq!(back.sequence, 7);
        // A label that names another key is refused.
        let mut s = s;
        s.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(KEY_ID_LABEL.into(), SecretKey::generate().id().short());
        assert!(read_key_secret(&s, jiff::Timestamp::now()).is_err());
    }

    /// A wrapped key Secret holds no identity, names its KEK and its
    /// public key, is read only once unwrapped, and only as the key it
    /// names: a ciphertext moved from another key Secret is refused.
    #[test]
    fn wrapped_key_secrets_hold_no_identity_and_open_only_as_their_own_key() {
        let key = SecretKey::generate();
        let mut s = key_secret(&key, None, KeyStatus::Usable, Some(3));
        // Stand-in for a KEK's ciphertext: the core only stores the bytes.
        wrap_key_secret(&mut s, "transit:coffer", b"vault:v1:opaque".to_vec());
        let data = s.data.as_ref().unwrap();
        assert!(!data.contains_key(IDENTITY_KEY));
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("AGE-SECRET-KEY"), "{text}");
        // Read without its private key: known, listed, not usable yet.
        let k = read_key_secret(&s, jiff::Timestamp::now()).unwrap();
        assert_eq!((k.id(), k.sequence, k.key.is_none()), (key.id(), 3, true));
        let w = k.wrapped.clone().unwrap();
        assert_eq!((w.id, w.kek.as_str()), (key.id(), "transit:coffer"));
        assert_eq!(w.ciphertext, b"vault:v1:opaque");
        let KeyMaterial::Wrapped(again) = key_material(&s).unwrap() else {
            panic!("not wrapped")
        };
        assert_eq!(again, w);
        // What the KEK returns must be this key.
        let k2 = k
            .clone()
            .unwrapped(key.to_secret_string().as_bytes())
            .unwrap();
        assert_eq!(k2.key.unwrap().id(), key.id());
        let other = SecretKey::generate();
        let err = k
            .clone()
            .unwrapped(other.to_secret_string().as_bytes())
            .unwrap_err();
        assert!(err.contains("moved from another Secret"), "{err}");
        assert!(!err.contains("AGE-SECRET-KEY"), "{err}");
        assert!(w.open(b"\xff\xfe").is_err());
        assert!(w.open(b"not a key").is_err());

        // Back to plain: the KEK annotation goes, the identity returns.
        unwrap_key_secret(&mut s, &key);
        assert!(
            !s.metadata
                .annotations
                .as_ref()
                .unwrap()
                .contains_key(KEK_ANNOTATION)
        );
        assert_eq!(
            read_key_secret(&s, jiff::Timestamp::now()).unwrap().id(),
            key.id()
        );
    }

    /// Half-written or forged key Secrets are refused with what is wrong.
    #[test]
    fn ambiguous_wrapped_key_secrets_are_refused() {
        let key = SecretKey::generate();
        let plain = key_secret(&key, None, KeyStatus::Usable, Some(1));
        // Both a plain and a wrapped identity.
        let mut both = plain.clone();
        both.data.as_mut().unwrap().insert(
            WRAPPED_IDENTITY_KEY.into(),
            k8s_openapi::ByteString(b"x".to_vec()),
        );
        let err = read_key_secret(&both, jiff::Timestamp::now()).unwrap_err();
        assert!(err.contains("both"), "{err}");
        // A wrapped key without its KEK, or without its public key.
        let mut wrapped = plain.clone();
        wrap_key_secret(&mut wrapped, "pkcs11:kek", b"x".to_vec());
        let mut no_kek = wrapped.clone();
        no_kek
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(KEK_ANNOTATION);
        assert!(
            key_material(&no_kek)
                .err()
                .unwrap()
                .contains(KEK_ANNOTATION)
        );
        let mut no_public = wrapped.clone();
        no_public
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(PUBLIC_KEY_ANNOTATION.into(), "age1nonsense".into());
        assert!(
            key_material(&no_public)
                .err()
                .unwrap()
                .contains(PUBLIC_KEY_ANNOTATION)
        );
        // A plain key whose public key annotation names another key.
        let mut swapped = plain;
        swapped.metadata.annotations.as_mut().unwrap().insert(
            PUBLIC_KEY_ANNOTATION.into(),
            SecretKey::generate().public().to_string(),
        );
        assert!(read_key_secret(&swapped, jiff::Timestamp::now()).is_err());
    }
}
