//! The key-encryption key as the controller uses it (docs/kms.md): every
//! call is counted and timed, the provider is connected on first use (an
//! unreachable KMS at start is an outage to wait out, not a crash), and the
//! key watch's Secrets are unwrapped here, each key once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_core::ring::{RingKey, WrappedKey};
use coffer_format::SecretKey;
use coffer_kms::{KekArgs, KekRef, KmsError};
use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest as _, Sha256};
use tokio::sync::{OnceCell, watch};

use crate::keys::ring::{KeyInfo, Keys, Unavailable, build_state};
use crate::metrics::Metrics;

/// The configured KEK: connected on first use, metered.
pub struct Kek {
    args: KekArgs,
    reference: KekRef,
    connected: OnceCell<Arc<dyn coffer_kms::Kek>>,
    metrics: Arc<Metrics>,
}

impl Kek {
    /// The KEK `args` name, or `None` without `--kek`.
    pub fn new(args: &KekArgs, metrics: Arc<Metrics>) -> Option<Arc<Kek>> {
        let reference = args.kek.clone()?;
        Some(Arc::new(Kek {
            args: args.clone(),
            reference,
            connected: OnceCell::new(),
            metrics,
        }))
    }

    /// The KEK's reference, as key Secrets name it.
    pub fn reference(&self) -> &KekRef {
        &self.reference
    }

    async fn provider(&self) -> Result<&Arc<dyn coffer_kms::Kek>, KmsError> {
        self.connected
            .get_or_try_init(|| async {
                match coffer_kms::connect(&self.args).await? {
                    Some(kek) => Ok(kek),
                    None => Err(KmsError::Config("no --kek".into())),
                }
            })
            .await
    }

    /// Counts and times one call that started at `start`.
    fn record<T>(&self, operation: &'static str, result: &Result<T, KmsError>, start: Instant) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics.kms.call(
            self.reference.provider.as_str(),
            operation,
            outcome,
            start.elapsed(),
        );
    }

    /// Wraps a new key before its Secret is written.
    pub async fn wrap(&self, key: &SecretKey) -> Result<Vec<u8>, KmsError> {
        let text = key.to_secret_string();
        let context = key.id().to_string();
        let start = Instant::now();
        let result = match self.provider().await {
            Ok(p) => p.wrap(text.as_bytes(), &context).await,
            Err(e) => Err(e),
        };
        self.record("wrap", &result, start);
        result
    }

    /// Unwraps the key of one key Secret; the KEK it names must be this
    /// one. The error names the key and both KEKs, never the key.
    pub async fn unwrap(
        &self,
        wrapped: &WrappedKey,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        if wrapped.kek != self.reference.to_string() {
            return Err(format!(
                "key {} is wrapped by the KEK {}, but the controller's --kek is {}: configure that KEK, or move the key with `coffer keys wrap` (docs/kms.md)",
                wrapped.id, wrapped.kek, self.reference
            ));
        }
        let context = wrapped.id.to_string();
        let start = Instant::now();
        let result = match self.provider().await {
            Ok(p) => p.unwrap(&wrapped.ciphertext, &context).await,
            Err(e) => Err(e),
        };
        self.record("unwrap", &result, start);
        result.map_err(|e| format!("key {}: {e}", wrapped.id))
    }
}

/// A key Secret as the key watch read it: the key in plain, or still
/// wrapped (no private key yet).
#[derive(Clone)]
pub(crate) struct Read {
    key: RingKey,
    info: KeyInfo,
}

impl Read {
    pub(crate) fn new(key: RingKey, secret: &Secret) -> Self {
        let info = KeyInfo::new(&key, secret);
        Read { key, info }
    }
}

/// What the key watch hands the loader: every key Secret read, and whether
/// a full list was seen.
pub(crate) type Seen = Option<(Arc<BTreeMap<String, Read>>, bool)>;

/// Longest wait between two tries of a key that did not unwrap.
const RETRY_AT_MOST: Duration = Duration::from_secs(30);

/// Builds the ring from what the key watch saw and publishes it: plain keys
/// as they are, wrapped keys once unwrapped. Each wrapped key is unwrapped
/// once (remembered by Secret and ciphertext), so re-lists, other keys'
/// changes and every SealedSecret cost no KMS call. A key that does not
/// unwrap is left out and tried again with backoff; until the first list
/// loads in full, the ring is not synced (the controller is not ready and
/// touches nothing). Runs until the watch side closes.
pub(crate) async fn load_keys(
    mut seen: watch::Receiver<Seen>,
    keys: Arc<Keys>,
    kek: Option<Arc<Kek>>,
    metrics: Arc<Metrics>,
) {
    let mut unwrapped: HashMap<(String, [u8; 32]), SecretKey> = HashMap::new();
    let mut complete_once = false;
    let mut retry = Duration::from_secs(1);
    let mut said: Vec<Unavailable> = Vec::new();
    loop {
        let current = seen.borrow_and_update().clone();
        let Some((current, synced)) = current else {
            if seen.changed().await.is_err() {
                return;
            }
            continue;
        };
        let mut loaded = BTreeMap::new();
        let mut missing = Vec::new();
        let mut wanted = Vec::new();
        for (name, read) in current.iter() {
            let Some(wrapped) = &read.key.wrapped else {
                if let Some(key) = &read.key.key {
                    loaded.insert(name.clone(), (key.clone(), read.info.clone()));
                }
                continue;
            };
            let slot = (name.clone(), Sha256::digest(&wrapped.ciphertext).into());
            wanted.push(slot.clone());
            let key = match unwrapped.get(&slot) {
                Some(key) => Ok(key.clone()),
                None => match &kek {
                    None => Err(format!(
                        "key {} is wrapped by the KEK {}, and the controller has no --kek (docs/kms.md)",
                        wrapped.id, wrapped.kek
                    )),
                    Some(kek) => match kek.unwrap(wrapped).await {
                        Ok(plain) => read
                            .key
                            .clone()
                            .unwrapped(&plain)
                            .map(|k| k.key.expect("unwrapped")),
                        Err(e) => Err(e),
                    },
                },
            };
            match key {
                Ok(key) => {
                    unwrapped.insert(slot, key.clone());
                    loaded.insert(name.clone(), (key, read.info.clone()));
                }
                Err(why) => missing.push(Unavailable {
                    secret: name.clone(),
                    id: wrapped.id,
                    why,
                }),
            }
        }
        unwrapped.retain(|slot, _| wanted.contains(slot));
        let complete = missing.is_empty();
        complete_once |= complete && synced;
        if missing != said {
            for m in &missing {
                tracing::error!(secret = %m.secret, key_id = %m.id, "the key is left out of the ring: {}", m.why);
            }
            if complete && !said.is_empty() {
                tracing::info!("every wrapped key is unwrapped");
            }
            said = missing.clone();
        }
        metrics
            .kms
            .keys_unavailable
            .set(i64::try_from(missing.len()).unwrap_or(i64::MAX));
        let mut state = build_state(&loaded, synced && (complete || complete_once));
        state.unavailable = missing;
        keys.publish(state);
        if complete {
            retry = Duration::from_secs(1);
            if seen.changed().await.is_err() {
                return;
            }
        } else {
            tokio::select! {
                r = seen.changed() => if r.is_err() { return },
                () = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(RETRY_AT_MOST);
        }
    }
}
