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
