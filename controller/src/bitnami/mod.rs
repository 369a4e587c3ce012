//! bitnami's `bitnami.com/v1alpha1` SealedSecrets, behind `--bitnami`: the
//! imported RSA keys (Secrets of type `coffer.dev/bitnami-key` in the key
//! namespace, written by `coffer keys import-bitnami`) and a reconciler
//! that unseals bitnami's SealedSecrets into Secrets as bitnami's
//! controller does (same scopes and annotations, same owner reference, the
//! template's metadata and type, `Synced` condition), so a cluster can
//! replace bitnami's controller without changing git.
//!
//! It is deliberately separate from Coffer's reconciler: bitnami values
//! carry no key id (every imported key may cost one RSA operation) and
//! bitnami's Secrets carry no Coffer label, so they are not watched;
//! drift is undone on the resync (`--bitnami-resync`), as bitnami's own
//! controller does without `--watch-for-secrets`. What Coffer's own
//! watches see is passed on, though (by the wiring): when a Secret labelled
//! by Coffer is deleted or changes owner, or a Coffer SealedSecret is
//! deleted, the bitnami SealedSecret of that name is checked again at
//! once, so a migration rolled back gets its Secrets back without waiting
//! for the resync.
//!
//! Between the two kinds of SealedSecret of one name, the Secret passes
//! both ways without being deleted: Coffer's takes over a Secret
//! controlled by bitnami's (crate::state::objects); bitnami's reports `TakenOver`
//! while Coffer's manages it, and takes back a Secret that a
//! `deletionPolicy: Keep` Coffer SealedSecret released when it was
//! deleted (docs/migration.md, the rollback).

pub(crate) mod keys;
pub(crate) mod reconcile;

pub(crate) use keys::{BitnamiKeys, watch_keys};
pub(crate) use reconcile::{Context, probe, run};
