//! Reconcile: SealedSecret -> Secret, as observe (the caches, one GET at
//! most) -> plan ([`crate::reconcile::plan`], pure) -> apply (the gateway) -> report
//! (status, Event, metrics, once).

pub(crate) mod apply;
pub(crate) mod context;
pub(crate) mod observe;
pub(crate) mod plan;
pub(crate) mod read_ahead;
pub(crate) mod report;
pub mod secret_types;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{Api, GetParams};

pub use context::{Context, Error, Next};

use coffer_core::reason::Reason;

use crate::client::gateway;
use crate::keys::ring::KeyState;
use crate::reconcile::apply::Sent;
use crate::reconcile::plan::{Observed, Plan};
use crate::reconcile::report::{Done, StatusOf, report, set_status};
use crate::state::objects::{CachedSealed, Outcome, OwnedSecret};
use crate::state::store::{Key, SealedEntry, split};

/// Reconciles the SealedSecret of `key`: observe -> plan -> apply ->
/// report.
pub async fn reconcile(key: &Key, ctx: &Context) -> Result<Next, Error> {
    let Some(entry) = ctx.store.sealed(key) else {
        // Deleted: the garbage collector removes its Secret.
        return Ok(Next::AwaitChange);
    };
    let start = Instant::now();
    let (result, failed) = gateway::noting_failures(reconcile_entry(key, &entry, ctx)).await;
    if let Err(Error::Kube(e)) = &result {
        // Say that work is pending, once per generation and cause; if the
        // API server cannot take this either, the retry will say it.
        let of = StatusOf::entry(key, &entry);
        let message = retrying(e, failed.as_ref());
        let _ = set_status(ctx, &of, Reason::Retrying, message).await;
    }
    ctx.metrics.observe_reconcile(start.elapsed());
    result
}

/// The `Reconciling` message after an API error: its code and reason, and
/// the request refused (verb and resource, from the request the controller
/// made), never the API's free text, which may quote what was sent.
fn retrying(e: &kube::Error, failed: Option<&gateway::FailedRequest>) -> String {
    match e {
        kube::Error::Api(s) => {
            let to = match failed {
                Some(f) if f.code == s.code => format!(" to {f}"),
                _ => String::new(),
            };
            format!(
                "retrying: the Kubernetes API answered {} ({}){to}",
                s.code, s.reason
            )
        }
        _ => "retrying: no answer from the Kubernetes API".into(),
    }
}

/// Observe: what the store holds decides alone when the last unseal still
/// holds; otherwise the SealedSecret itself is read (a copy a watch event
/// brought, else one GET) and the whole plan runs on it.
async fn reconcile_entry(key: &Key, entry: &SealedEntry, ctx: &Context) -> Result<Next, Error> {
    let keys = ctx.keys.current();
    if !keys.synced || keys.ring.is_empty() {
        return Err(Error::KeysNotReady);
    }
    if entry.deleting {
        return Ok(Next::AwaitChange);
    }
    let uid = entry.uid.as_ref().map(ToString::to_string);
    let mut last = uid.as_deref().and_then(|u| ctx.store.last_unsealed(key, u));
    let mut secret = observe_secret(ctx, key, entry.generation, &keys, last).await;
    // Nothing remembered since this controller started (not even a
    // refusal, which the annotation must not overrule): its Secret's
    // annotation may say it was unsealed before (crate::keys::attest).
    let mut restored = false;
    if last.is_none()
        && !uid.as_deref().is_some_and(|u| ctx.store.remembers(key, u))
        && let Some(s) = secret.as_mut()
    {
        keys.settle(s);
        last = plan::attested(s, entry.generation, &keys, &ctx.secret_types);
        restored = last.is_some();
    }
    if let Some(items) = plan::still_current(
        last,
        entry.generation,
        uid.as_deref(),
        secret.as_ref(),
        &keys,
    ) {
        // A copy kept for this object will not be opened: free its room.
        ctx.store.drop_fresh_upto(key, entry.generation);
        let restored = match (restored, uid.as_deref(), last) {
            (true, Some(uid), Some(outcome)) => Some((uid, outcome)),
            _ => None,
        };
        let done = Done::Current {
            of: StatusOf::entry(key, entry),
            items,
            restored,
        };
        return Ok(report(ctx, key, &keys, done).await?);
    }
    let Some(sealed) = read_sealed(ctx, key, entry).await? else {
        return Ok(Next::AwaitChange);
    };
    // The Secret merged into is not labelled until the first merge, so
    // the owned cache does not know it: ask the API.
    let secret = match secret {
        None if sealed.merge => {
            let (ns, name) = split(key);
            gateway::get_secret(&ctx.client, ns, name).await?
        }
        known => known,
    };
    // The object read may be newer than the entry, or another object of
    // the same name: decide on what was read.
    let last = sealed
        .metadata
        .uid
        .as_deref()
        .and_then(|u| ctx.store.last_unsealed(key, u));
    let observed = Observed {
        sealed: &sealed,
        secret: secret.as_ref(),
        keys: &keys,
        last,
        types: &ctx.secret_types,
    };
    let plan = match plan::before_opening(&observed) {
        Some(p) => p,
        None => {
            let (sealed, keys, types) = (sealed.clone(), keys.clone(), ctx.secret_types.clone());
            // A template runs the engine (up to its whole fuel): never on
            // the async thread, however small the object.
            let work = if sealed.template.data.is_empty() {
                sealed.sealed_bytes()
            } else {
                usize::MAX
            };
            ctx.pool
                .run_sized(work, move || {
                    plan::plan(&Observed {
                        sealed: &sealed,
                        secret: secret.as_ref(),
                        keys: &keys,
                        last,
                        types: &types,
                    })
                })
                .await
        }
    };
    let done = carry_out(ctx, &sealed, plan).await?;
    Ok(report(ctx, key, &keys, done).await?)
}

/// Apply: carries out the plan. The answers that need a decision (a Secret
/// of that name created meanwhile, a Secret the API server finds invalid)
/// go back to the plan, and its new decision is carried out.
async fn carry_out<'a>(
    ctx: &Context,
    sealed: &'a CachedSealed,
    mut plan: Plan,
) -> Result<Done<'a>, Error> {
    let ns = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    let mut conflicted = false;
    loop {
        let mut write = match plan {
            Plan::WaitForKeys => return Err(Error::KeysNotReady),
            Plan::Nothing => return Ok(Done::Nothing),
            Plan::Current { items } => {
                return Ok(Done::Current {
                    of: StatusOf::sealed(sealed),
                    items,
                    restored: None,
                });
            }
            Plan::Write(w) => w,
            Plan::Refuse { reason, message } => {
                let refusal = plan::Refusal::final_(reason, message);
                return Ok(Done::Refused { sealed, refusal });
            }
            Plan::NotOwned { message } => {
                let refusal = plan::Refusal::not_owned(message);
                return Ok(Done::Refused { sealed, refusal });
            }
            Plan::MergeRefused { message } => {
                let refusal = plan::Refusal::merge_refused(message);
                return Ok(Done::Refused { sealed, refusal });
            }
        };
        let sent = apply::send(&ctx.client, &ns, &name, &mut write.secret, &write.kind).await?;
        plan = match sent {
            Sent::Written(did) => {
                return Ok(Done::Written {
                    sealed,
                    items: write.items,
                    did,
                    digest: write.digest,
                    needs: write.needs,
                });
            }
            // After a conflict the plan writes over the live Secret, which
            // cannot conflict again; a second one is an API error to retry.
            Sent::Conflict(status) if !conflicted => {
                conflicted = true;
                let Some(live) = gateway::get_secret(&ctx.client, &ns, &name).await? else {
                    return Err(Error::Kube(kube::Error::Api(status)));
                };
                plan::after_conflict(sealed, write, &live)
            }
            Sent::Conflict(status) => return Err(Error::Kube(kube::Error::Api(status))),
            Sent::Invalid(status) => plan::after_invalid(sealed, &status),
        };
    }
}

/// The SealedSecret of `entry` with its values: the copy its watch event
/// brought when no reconcile used it yet, else a GET at least as new as the
/// entry (served from the API server's watch cache). `None` when it is
/// gone.
async fn read_sealed(
    ctx: &Context,
    key: &Key,
    entry: &SealedEntry,
) -> Result<Option<Arc<CachedSealed>>, Error> {
    if let Some((s, ahead)) = ctx.store.take_fresh(key, entry) {
        ctx.metrics
            .sealed_read(if ahead { "read_ahead" } else { "watch" });
        return Ok(Some(s));
    }
    ctx.metrics.sealed_read("get");
    let (ns, name) = split(key);
    let api: Api<CachedSealed> = Api::namespaced(ctx.client.clone(), ns);
    let params = GetParams {
        resource_version: entry.resource_version.as_ref().map(ToString::to_string),
    };
    match api.get_with(name, &params).await {
        Ok(s) => Ok(Some(Arc::new(s))),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => {
            if let kube::Error::Api(s) = &e {
                gateway::note_failure("get", &format!("{}/{name}", api.resource_url()), s.code);
            }
            Err(e.into())
        }
    }
}

/// The Secret of the SealedSecret's name from the store; when the store
/// does not have it but the last unseal may still hold (its watch can lag
/// behind the controller's own write), from the API.
async fn observe_secret(
    ctx: &Context,
    key: &Key,
    generation: Option<i64>,
    keys: &KeyState,
    last: Option<Outcome>,
) -> Option<OwnedSecret> {
    if let Some(cached) = ctx.store.owned(key) {
        return Some(cached);
    }
    if !plan::last_may_hold(generation, keys, last) {
        return None;
    }
    let (ns, name) = split(key);
    gateway::get_secret(&ctx.client, ns, name)
        .await
        .ok()
        .flatten()
}

/// Retry policy after an error.
pub fn error_policy(key: &Key, error: &Error, ctx: &Context) -> Next {
    ctx.metrics.reconcile_error(error.metric_label());
    let (ns, name) = split(key);
    tracing::warn!(namespace = %ns, name = %name, error = %error, "reconcile failed; retrying");
    Next::RequeueAfter(Duration::from_secs(match error {
        Error::KeysNotReady => 2,
        Error::Kube(_) => 5,
    }))
}
