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

    /// A KEK already connected to `provider` (the loader's unit tests).
    #[cfg(test)]
    fn connected(provider: Arc<dyn coffer_kms::Kek>, metrics: Arc<Metrics>) -> Arc<Kek> {
        let reference = provider.reference().clone();
        Arc::new(Kek {
            args: KekArgs::default(),
            reference,
            connected: OnceCell::new_with(Some(provider)),
            metrics,
        })
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

#[cfg(test)]
mod tests {
    //! The loader against a KEK that stands in for a KMS (the real ones are
    //! tested in the kms crate and end to end): what it calls, when the
    //! ring is synced, what is left out.

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use coffer_core::ring::{KeyStatus, key_secret, read_key_secret, wrap_key_secret};
    use futures::future::BoxFuture;

    use super::*;

    /// Reverses the bytes, prefixed with the context: enough to check that
    /// the loader passes the key id and uses what comes back.
    #[derive(Debug)]
    struct Reverse {
        reference: KekRef,
        unwraps: AtomicUsize,
        down: AtomicBool,
    }

    impl Reverse {
        fn new() -> Arc<Self> {
            Arc::new(Reverse {
                reference: "transit:test".parse().unwrap(),
                unwraps: AtomicUsize::new(0),
                down: AtomicBool::new(false),
            })
        }

        fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
            let mut out = format!("{context}:").into_bytes();
            out.extend(plaintext.iter().rev());
            out
        }
    }

    impl coffer_kms::Kek for Reverse {
        fn reference(&self) -> &KekRef {
            &self.reference
        }

        fn wrap<'a>(
            &'a self,
            plaintext: &'a [u8],
            context: &'a str,
        ) -> BoxFuture<'a, coffer_kms::Result<Vec<u8>>> {
            Box::pin(async move { Ok(self.seal(plaintext, context)) })
        }

        fn unwrap<'a>(
            &'a self,
            wrapped: &'a [u8],
            context: &'a str,
        ) -> BoxFuture<'a, coffer_kms::Result<zeroize::Zeroizing<Vec<u8>>>> {
            Box::pin(async move {
                self.unwraps.fetch_add(1, Ordering::SeqCst);
                if self.down.load(Ordering::SeqCst) {
                    return Err(KmsError::Unavailable {
                        kek: self.reference.clone(),
                        detail: "connection refused".into(),
                    });
                }
                let body = wrapped
                    .strip_prefix(format!("{context}:").as_bytes())
                    .ok_or_else(|| KmsError::Rejected {
                        kek: self.reference.clone(),
                        detail: "other context".into(),
                    })?;
                Ok(zeroize::Zeroizing::new(
                    body.iter().rev().copied().collect(),
                ))
            })
        }

        fn rewrap<'a>(
            &'a self,
            _: &'a [u8],
            _: &'a str,
        ) -> BoxFuture<'a, coffer_kms::Result<Option<Vec<u8>>>> {
            Box::pin(async { Ok(None) })
        }
    }

    /// A key Secret wrapped by `kek`, as the watch reads it.
    fn wrapped(kek: &Reverse, key: &SecretKey, sequence: u64) -> (String, Read) {
        let mut s = key_secret(key, None, KeyStatus::Usable, Some(sequence));
        let text = key.to_secret_string();
        let ciphertext = kek.seal(text.as_bytes(), &key.id().to_string());
        wrap_key_secret(&mut s, "transit:test", ciphertext);
        let name = s.metadata.name.clone().unwrap();
        let k = read_key_secret(&s, jiff::Timestamp::now()).unwrap();
        (name, Read::new(k, &s))
    }

    fn plain(key: &SecretKey, sequence: u64) -> (String, Read) {
        let s = key_secret(key, None, KeyStatus::Usable, Some(sequence));
        let name = s.metadata.name.clone().unwrap();
        let k = read_key_secret(&s, jiff::Timestamp::now()).unwrap();
        (name, Read::new(k, &s))
    }

    struct Loader {
        tx: watch::Sender<Seen>,
        keys: Arc<Keys>,
        metrics: Arc<Metrics>,
        task: tokio::task::JoinHandle<()>,
    }

    fn loader(kek: Option<&Arc<Reverse>>) -> Loader {
        let metrics = Arc::new(Metrics::new(10));
        let keys = Keys::new();
        let (tx, rx) = watch::channel(None);
        let kek = kek.map(|k| Kek::connected(k.clone(), metrics.clone()));
        let task = tokio::spawn(load_keys(rx, keys.clone(), kek, metrics.clone()));
        Loader {
            tx,
            keys,
            metrics,
            task,
        }
    }

    impl Loader {
        fn see(&self, reads: &[(String, Read)], synced: bool) {
            let map: BTreeMap<String, Read> = reads.iter().cloned().collect();
            self.tx.send_replace(Some((Arc::new(map), synced)));
        }

        /// Waits (in paused time) until the published state satisfies `f`.
        async fn until(&self, what: &str, f: impl Fn(&crate::keys::ring::KeyState) -> bool) {
            for _ in 0..1000 {
                if f(&self.keys.current()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("never: {what}");
        }
    }

    /// Each key is unwrapped once, however often the watch lists it again
    /// and whatever else changes in the ring.
    #[tokio::test(start_paused = true)]
    async fn a_wrapped_key_is_unwrapped_once_however_often_the_ring_is_seen() {
        let kek = Reverse::new();
        let l = loader(Some(&kek));
        let key = SecretKey::generate();
        let one = wrapped(&kek, &key, 1);
        for _ in 0..5 {
            l.see(std::slice::from_ref(&one), true);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        l.until("the key loaded", |s| {
            s.synced && s.ring.usable_ids().contains(&key.id())
        })
        .await;
        // Another key arrives (plain), a re-list: still one unwrap.
        let other = SecretKey::generate();
        l.see(&[one.clone(), plain(&other, 2)], true);
        l.until("both keys", |s| s.keys.len() == 2).await;
        assert_eq!(kek.unwraps.load(Ordering::SeqCst), 1);
        assert_eq!(l.metrics.kms.calls("unwrap"), 1);
        // A new ciphertext for the same Secret is unwrapped again (here a
        // damaged one: the key is left out, not kept from before).
        let mut rewrapped = one.clone();
        rewrapped
            .1
            .key
            .wrapped
            .as_mut()
            .unwrap()
            .ciphertext
            .push(b'!');
        l.see(&[rewrapped, plain(&other, 2)], true);
        l.until("the changed key left out", |s| s.unavailable.len() == 1)
            .await;
        assert_eq!(kek.unwraps.load(Ordering::SeqCst), 2);
        l.task.abort();
    }

    /// A KMS that is down at start: the ring is not synced (nothing
    /// reconciles, the controller is not ready) and says why; it is tried
    /// again with backoff and loads when the KMS returns.
    #[tokio::test(start_paused = true)]
    async fn an_outage_at_start_holds_the_ring_unsynced_until_the_kms_returns() {
        let kek = Reverse::new();
        kek.down.store(true, Ordering::SeqCst);
        let l = loader(Some(&kek));
        let key = SecretKey::generate();
        l.see(&[wrapped(&kek, &key, 1)], true);
        l.until("the key named unavailable", |s| s.unavailable.len() == 1)
            .await;
        let s = l.keys.current();
        assert!(!s.synced, "synced while a key could not be unwrapped");
        assert!(s.keys.is_empty());
        let why = &s.unavailable[0].why;
        assert!(
            why.contains(&key.id().to_string())
                && why.contains("transit:test")
                && why.contains("unavailable"),
            "{why}"
        );
        assert!(!why.contains("AGE-SECRET-KEY"));
        assert_eq!(l.metrics.kms.keys_unavailable.get(), 1);
        // Retried with backoff (1 s, 2 s, 4 s, ...): a few tries in 10 s.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let tries = kek.unwraps.load(Ordering::SeqCst);
        assert!((3..=6).contains(&tries), "{tries} tries in 10 s");
        kek.down.store(false, Ordering::SeqCst);
        l.until("the ring loaded", |s| {
            s.synced && s.unavailable.is_empty() && s.active().is_some()
        })
        .await;
        assert_eq!(l.metrics.kms.keys_unavailable.get(), 0);
        l.task.abort();
    }

    /// Once the ring has loaded, a key that cannot be unwrapped (added
    /// during an outage) is left out; the rest of the ring stays in use.
    #[tokio::test(start_paused = true)]
    async fn a_key_that_fails_after_the_ring_loaded_is_left_out_and_the_rest_serves() {
        let kek = Reverse::new();
        let l = loader(Some(&kek));
        let first = SecretKey::generate();
        let one = wrapped(&kek, &first, 1);
        l.see(std::slice::from_ref(&one), true);
        l.until("loaded", |s| s.synced && s.keys.len() == 1).await;
        kek.down.store(true, Ordering::SeqCst);
        let second = SecretKey::generate();
        l.see(&[one.clone(), wrapped(&kek, &second, 2)], true);
        l.until("the new key left out", |s| s.unavailable.len() == 1)
            .await;
        let s = l.keys.current();
        assert!(s.synced);
        assert_eq!(s.active().map(|k| k.id), Some(first.id()));
        assert_eq!(s.unavailable[0].id, second.id());
        kek.down.store(false, Ordering::SeqCst);
        l.until("the new key in", |s| {
            s.unavailable.is_empty() && s.active().map(|k| k.id) == Some(second.id())
        })
        .await;
        l.task.abort();
    }

    /// A wrapped key without `--kek`, or under another KEK, is named with
    /// its KEK; plain keys beside it load.
    #[tokio::test(start_paused = true)]
    async fn wrapped_keys_the_controller_cannot_open_are_named_with_their_kek() {
        let kek = Reverse::new();
        let l = loader(None);
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        l.see(&[wrapped(&kek, &key, 2), plain(&other, 1)], true);
        l.until("named", |s| s.unavailable.len() == 1 && s.keys.len() == 1)
            .await;
        let why = l.keys.current().unavailable[0].why.clone();
        assert!(
            why.contains("no --kek") && why.contains("transit:test"),
            "{why}"
        );
        assert!(
            !l.keys.current().synced,
            "a ring that never loaded in full is not synced"
        );
        l.task.abort();

        let mut under_other = wrapped(&kek, &key, 2);
        under_other.1.key.wrapped.as_mut().unwrap().kek = "awskms:alias/other".into();
        let l = loader(Some(&kek));
        l.see(&[under_other], true);
        l.until("named", |s| s.unavailable.len() == 1).await;
        let why = l.keys.current().unavailable[0].why.clone();
        assert!(
            why.contains("awskms:alias/other") && why.contains("--kek is transit:test"),
            "{why}"
        );
        assert_eq!(kek.unwraps.load(Ordering::SeqCst), 0, "asked the wrong KEK");
        l.task.abort();
    }
}
