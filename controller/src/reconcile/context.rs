//! What a reconcile needs ([`Context`]) and what it comes to ([`Next`],
//! [`Error`]).

use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use crate::client::events::Events;
use crate::keys::ring::Keys;
use crate::metrics::Metrics;
use crate::pool::UnsealPool;
use crate::reconcile::secret_types::SecretTypePolicy;
use crate::state::store::Store;

/// What follows a reconcile, when no watch event comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    AwaitChange,
    RequeueAfter(Duration),
}

/// Errors that make a reconcile retry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the key ring is not loaded yet")]
    KeysNotReady,
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "api_error",
            Error::KeysNotReady => "keys_not_ready",
        }
    }
}

/// What reconcile needs.
pub struct Context {
    pub client: Client,
    pub keys: Arc<Keys>,
    /// SealedSecrets, owned Secrets as digests, and the last outcomes.
    pub store: Arc<Store>,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    /// Where large objects are opened, off the async thread.
    pub pool: UnsealPool,
    /// `--secret-types-allow` and `--secret-types-deny`.
    pub secret_types: Arc<SecretTypePolicy>,
}
