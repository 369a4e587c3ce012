//! coffer-controller: the half of Coffer that holds the private keys. It
//! turns each SealedSecret into a Secret (refusing values copied to a place
//! they were not sealed for), keeps the key ring, and publishes the public
//! side.
//!
//! The tree follows the pipeline (docs/development.md has the map):
//!
//! - `reconcile`: observe (watch events, read-ahead) -> plan (pure) ->
//!   apply (API writes) -> report (status, Events, metrics);
//! - `state`: what is kept in memory between reconciles (the compact
//!   objects, the store, the work queue); pure data, no API client;
//! - `client`: everything that talks to the API server (the gateway for
//!   Secrets, watches, Events, rate limit, request counts);
//! - `keys`: the key ring (its state and the manager that keeps it in
//!   Secrets), persisted outcomes, which objects need which key;
//! - `http`: the listeners and the public side of the ring;
//! - `bitnami`: bitnami's SealedSecrets behind `--bitnami`;
//! - `run`: the wiring, imported by nothing.

pub mod args;
pub(crate) mod bitnami;
pub(crate) mod client;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod pool;
pub mod reconcile;
pub mod run;
pub(crate) mod state;
