//! coffer-controller: the half of Coffer that holds the private keys. It
//! turns each SealedSecret into a Secret (refusing values copied to a place
//! they were not sealed for), keeps the key ring, and publishes the public
//! side.

pub mod api_count;
pub mod args;
pub mod attest;
pub mod bitnami;
pub mod cache;
pub mod events;
pub mod gateway;
pub mod http;
pub mod key_secrets;
pub mod key_users;
pub mod metrics;
pub mod plan;
pub mod pool;
pub mod prefetch;
pub mod queue;
pub mod ratelimit;
pub mod reconcile;
pub mod run;
pub mod secret_types;
pub mod store;
pub mod watch;
