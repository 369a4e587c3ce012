//! How the controller watches the API server: where lists are served from
//! and how quickly a broken watch is retried. Shared by every watch (the
//! SealedSecrets, the owned Secrets, the key Secrets, the config).

use std::time::Duration;

use kube::runtime::watcher;

/// Watches list from the API server's watch cache ("any" resourceVersion).
/// Cheaper at scale, and after an API server restart a consistent list was
/// seen to return a resourceVersion older than the restarted cache can watch
/// from, looping on 410 Gone for a minute (kube-apiserver 1.36); the e2e
/// test `the_controller_recovers_when_the_api_server_restarts` covers it.
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().list_semantic(watcher::ListSemantic::Any)
}

/// Retry delay for watches: 0.25 s doubling to at most 5 s, so the
/// controller is back within seconds after an API outage (kube's default
/// grows to minutes).
#[derive(Debug, Default)]
pub struct ShortBackoff {
    attempt: u32,
}

impl Iterator for ShortBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Self::Item> {
        let ms = 250u64.saturating_mul(1 << self.attempt.min(5)).min(5000);
        self.attempt = self.attempt.saturating_add(1);
        Some(Duration::from_millis(ms))
    }
}

impl kube::runtime::utils::Backoff for ShortBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// What a key-Secret watch hands on ([`follow_key_secrets`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeysSeen {
    /// The first full list (or a re-list) is in.
    Listed,
    /// One Secret changed; `synced`: a full list was seen before.
    Changed { synced: bool },
}

/// Follows the key Secrets labelled `label` (the ring's own keys, or
/// bitnami's imported ones): each Secret is read by `read` into a `K` (or
/// `Err(why)`: left out, and logged with `what`), then wiped. After each
/// full list and each change, `publish` gets every key read, by Secret
/// name. Runs until the watch stream ends; API errors are retried with
/// [`ShortBackoff`].
pub(crate) async fn follow_key_secrets<K>(
    api: kube::Api<k8s_openapi::api::core::v1::Secret>,
    label: &str,
    what: &str,
    read: impl Fn(&k8s_openapi::api::core::v1::Secret) -> Result<K, String>,
    mut publish: impl FnMut(&std::collections::BTreeMap<String, K>, KeysSeen),
) -> anyhow::Result<()> {
    use futures::{StreamExt as _, TryStreamExt as _};
    use kube::runtime::WatchStreamExt as _;
    let mut stream = watcher(api, watch_config().labels(label))
        .backoff(ShortBackoff::default())
        .boxed();
    let mut current = std::collections::BTreeMap::new();
    let mut init = std::collections::BTreeMap::new();
    let mut synced = false;
    let apply = |map: &mut std::collections::BTreeMap<String, K>,
                 mut s: k8s_openapi::api::core::v1::Secret| {
        let name = s.metadata.name.clone().unwrap_or_default();
        match read(&s) {
            Ok(k) => {
                map.insert(name, k);
            }
            Err(why) => {
                map.remove(&name);
                tracing::warn!(secret = %name, "ignoring {what}: {why}");
            }
        }
        coffer_core::wipe::secret(&mut s);
    };
    while let Some(event) = stream.try_next().await? {
        match event {
            watcher::Event::Init => init.clear(),
            watcher::Event::InitApply(s) => apply(&mut init, s),
            watcher::Event::InitDone => {
                current = std::mem::take(&mut init);
                synced = true;
                publish(&current, KeysSeen::Listed);
            }
            watcher::Event::Apply(s) => {
                apply(&mut current, s);
                publish(&current, KeysSeen::Changed { synced });
            }
            watcher::Event::Delete(mut s) => {
                current.remove(&s.metadata.name.clone().unwrap_or_default());
                coffer_core::wipe::secret(&mut s);
                publish(&current, KeysSeen::Changed { synced });
            }
        }
    }
    Ok(())
}
