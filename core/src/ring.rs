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
    let mut annotations = BTreeMap::from([(
        "coffer.dev/public-key".to_string(),
        key.public().to_string(),
    )]);
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
    /// The private key.
    pub key: coffer_format::SecretKey,
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
        self.key.id()
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

/// Reads one key Secret strictly. The error names the Secret and the
/// problem, never the identity.
pub fn read_key_secret(
    secret: &k8s_openapi::api::core::v1::Secret,
    now: jiff::Timestamp,
) -> Result<RingKey, String> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    if secret.type_.as_deref() != Some(KEY_SECRET_TYPE) {
        return Err(format!(
            "key Secret {name} is not of type {}",
            KEY_SECRET_TYPE
        ));
    }
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(IDENTITY_KEY))
        .ok_or_else(|| format!("key Secret {name} has no data.{}", IDENTITY_KEY))?;
    let text = std::str::from_utf8(&data.0)
        .map_err(|_| format!("key Secret {name}: data.{} is not text", IDENTITY_KEY))?;
    let key = coffer_format::SecretKey::parse(text).map_err(|_| {
        format!(
            "key Secret {name}: data.{} is not an age identity (X25519 or mlkem768x25519)",
            IDENTITY_KEY
        )
    })?;
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    if let Some(label) = labels.get(KEY_ID_LABEL)
        && label != &key.id().short()
    {
        return Err(format!(
            "key Secret {name} is labelled {}={label} but holds key {}",
            KEY_ID_LABEL,
            key.id().short()
        ));
    }
    let empty = std::collections::BTreeMap::new();
    let annotations = secret.metadata.annotations.as_ref().unwrap_or(&empty);
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
        key,
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
}
