//! Reconcile: SealedSecret -> Secret, as observe (the caches, one GET at
//! most) -> plan ([`crate::plan`], pure) -> apply (the gateway) -> report
//! (status, Event, metrics, once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_core::api::OWNED_LABEL;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, GetParams};
use kube::{Client, ResourceExt};

use crate::cache::{CachedSealed, Outcome, OwnedSecret, Refusal};
use crate::events::{EventType, Events};
use crate::gateway;
use crate::key_secrets::{KeyState, Keys};
use crate::key_users::KeySet;
use crate::metrics::Metrics;
use crate::plan::{self, Observed, Plan, WriteKind};
use crate::pool::UnsealPool;
use crate::secret_types::SecretTypePolicy;
use crate::store::{Key, ReadyMemo, SealedEntry, StatusMemo, Store, split};

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

/// What the status says of the SealedSecret's current generation, in the
/// conditions kstatus (Flux), Argo CD and `kubectl wait` read: `Ready`,
/// plus `Stalled` beside a refusal (it will not fix itself: someone must
/// change the SealedSecret, the keys or the flags) and `Reconciling` while
/// the controller keeps retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// `Ready=True`.
    Unsealed,
    /// `Ready=False` and `Stalled=True`, with the same reason and message.
    Refused,
    /// `Ready=Unknown` and `Reconciling=True`, reason `Retrying`.
    Retrying,
}

impl Readiness {
    fn ready_status(self) -> &'static str {
        match self {
            Readiness::Unsealed => "True",
            Readiness::Refused => "False",
            Readiness::Retrying => "Unknown",
        }
    }
}

/// The conditions for `readiness`; each keeps its transition time while
/// its status stays the same.
pub fn conditions(
    readiness: Readiness,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    old_ready: Option<&ReadyMemo>,
    now: Time,
) -> Vec<Condition> {
    let condition = |type_: &str, status: &str, since: Option<&ReadyMemo>| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: match since {
            Some(o) if &*o.status == status => o.since.clone(),
            _ => now.clone(),
        },
    };
    let mut out = vec![condition("Ready", readiness.ready_status(), old_ready)];
    match readiness {
        Readiness::Unsealed => {}
        // Stalled and Reconciling are written only while True: when the
        // refusal or the retrying ends, the next status drops them.
        Readiness::Refused => out.push(condition("Stalled", "True", None)),
        Readiness::Retrying => out.push(condition("Reconciling", "True", None)),
    }
    out
}

/// The object whose status is written: where it is, its generation, and
/// its status as last read.
pub struct StatusOf<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub generation: Option<i64>,
    pub status: StatusMemo,
}

impl<'a> StatusOf<'a> {
    fn sealed(s: &'a CachedSealed) -> Self {
        StatusOf {
            namespace: s.metadata.namespace.as_deref().unwrap_or_default(),
            name: s.metadata.name.as_deref().unwrap_or_default(),
            generation: s.metadata.generation,
            status: StatusMemo::of(s),
        }
    }

    fn entry(key: &'a str, e: &SealedEntry) -> Self {
        let (namespace, name) = split(key);
        StatusOf {
            namespace,
            name,
            generation: e.generation,
            status: e.status.clone(),
        }
    }
}

/// Writes the status when it differs; returns whether it changed.
async fn set_status(
    ctx: &Context,
    of: &StatusOf<'_>,
    readiness: Readiness,
    reason: &str,
    message: String,
) -> Result<bool, kube::Error> {
    let message = crate::events::capped(message, crate::events::MAX_MESSAGE);
    let generation = of.generation;
    let old = of.status.ready.as_ref();
    if let Some(o) = old
        && o.says(readiness.ready_status(), reason, &message)
        && of.status.observed_generation == generation
        && of.status.stalled == (readiness == Readiness::Refused)
        && of.status.reconciling == (readiness == Readiness::Retrying)
    {
        return Ok(false);
    }
    let conditions = conditions(
        readiness,
        reason,
        &message,
        generation,
        old,
        Time(jiff::Timestamp::now()),
    );
    // A merge patch replaces the whole list: conditions no longer true go.
    let patch = serde_json::json!({
        "status": { "observedGeneration": generation, "conditions": conditions }
    });
    gateway::patch_status::<CachedSealed>(&ctx.client, of.namespace, of.name, &patch).await?;
    Ok(true)
}

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
        let _ = set_status(ctx, &of, Readiness::Retrying, "Retrying", message).await;
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
    // annotation may say it was unsealed before (crate::attest).
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
        if let (true, Some(uid), Some(outcome)) = (restored, uid.as_deref(), last) {
            ctx.store.set_unsealed(key, uid, outcome);
            ctx.metrics.outcome_restored();
        }
        // A copy kept for this object will not be opened: free its room.
        ctx.store.drop_fresh_upto(key, entry.generation);
        let (ns, name) = split(key);
        let of = StatusOf::entry(key, entry);
        set_status(
            ctx,
            &of,
            Readiness::Unsealed,
            "Unsealed",
            unsealed(items, ns, name),
        )
        .await?;
        return Ok(Next::AwaitChange);
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
    let done = apply(ctx, &sealed, plan).await?;
    report(ctx, key, &sealed, &keys, done).await
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

/// What applying a plan came to, for [`report`].
enum Done {
    /// Nothing to report.
    Nothing,
    /// The Secret is right: `written` says what was sent, if anything.
    Ready {
        items: usize,
        written: Option<(WriteKind, [u8; 32], KeySet)>,
    },
    Refused {
        reason: &'static str,
        message: String,
        requeue: Option<Duration>,
    },
}

/// Carries out a plan: every API call goes through the gateway.
async fn apply(ctx: &Context, sealed: &CachedSealed, plan: Plan) -> Result<Done, Error> {
    let ns = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    let mut write = match plan {
        Plan::WaitForKeys => return Err(Error::KeysNotReady),
        Plan::Nothing => return Ok(Done::Nothing),
        Plan::Current { items } => {
            return Ok(Done::Ready {
                items,
                written: None,
            });
        }
        Plan::Refuse { reason, message } => {
            return Ok(Done::Refused {
                reason,
                message,
                requeue: None,
            });
        }
        Plan::NotOwned { message } => return Ok(not_owned(message)),
        Plan::MergeRefused { message } => {
            // Its owner must act on the Secret, which the controller does
            // not watch until the first merge: look again now and then.
            return Ok(Done::Refused {
                reason: plan::MERGE_REFUSED,
                message,
                requeue: Some(Duration::from_secs(300)),
            });
        }
        Plan::Write(w) => w,
    };
    let c = &ctx.client;
    let sent = match &write.kind {
        WriteKind::Unchanged => Ok(()),
        WriteKind::Create => match gateway::create_secret(c, &ns, &write.secret).await {
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Someone has the name: decide on the live Secret.
                let Some(live) = gateway::get_secret(c, &ns, &name).await? else {
                    return Err(Error::Kube(kube::Error::Api(e)));
                };
                match plan::after_conflict(sealed, write, &live) {
                    Plan::Write(w) => {
                        write = w;
                        send_over(ctx, &ns, &name, &mut write).await
                    }
                    Plan::NotOwned { message } => return Ok(not_owned(message)),
                    other => unreachable!("after_conflict plans a write or a refusal: {other:?}"),
                }
            }
            other => other.map(drop),
        },
        _ => send_over(ctx, &ns, &name, &mut write).await,
    };
    match sent {
        Ok(()) => Ok(Done::Ready {
            items: write.items,
            written: Some((write.kind.clone(), write.digest, write.needs)),
        }),
        Err(kube::Error::Api(status)) if status.code == 422 => {
            // The API server refused the Secret we built (e.g. a type whose
            // required keys are missing). Retrying cannot help; say which
            // fields, never the API's free text, which may quote values.
            let fields: Vec<String> = status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .map(|c| format!("{} ({})", c.field, c.reason))
                .collect();
            let message = format!(
                "the API server refused Secret {ns}/{name}: invalid {}",
                if fields.is_empty() {
                    "content".to_string()
                } else {
                    fields.join(", ")
                }
            );
            Ok(Done::Refused {
                reason: "SecretInvalid",
                message,
                requeue: None,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends a replacing write ([`WriteKind::Replace`] or
/// [`WriteKind::Recreate`]) over an existing Secret.
async fn send_over(
    ctx: &Context,
    ns: &str,
    name: &str,
    write: &mut plan::Write,
) -> Result<(), kube::Error> {
    let c = &ctx.client;
    match &write.kind {
        WriteKind::Unchanged => Ok(()),
        WriteKind::Create => gateway::create_secret(c, ns, &write.secret).await.map(drop),
        WriteKind::Recreate {
            uid,
            resource_version,
        } => {
            // An immutable Secret's metadata may still be updated: when only
            // that changed (the `coffer.dev/unsealed` annotation after a new
            // generation with the same values), the Secret stays, and pods
            // never see it missing. The API server refuses the update (422)
            // when its data or type differ; then it is re-created.
            let (uid, resource_version) = (uid.clone(), resource_version.clone());
            write.secret.metadata.resource_version = resource_version.clone();
            let updated = gateway::replace_secret(c, ns, name, &write.secret).await;
            write.secret.metadata.resource_version = None;
            match updated {
                Ok(_) => {
                    write.kind = WriteKind::Replace { resource_version };
                    return Ok(());
                }
                Err(kube::Error::Api(e)) if e.code == 422 => {}
                Err(e) => return Err(e),
            }
            gateway::delete_secret(c, ns, name, uid, resource_version).await?;
            gateway::create_secret(c, ns, &write.secret).await.map(drop)
        }
        WriteKind::Replace { resource_version } => {
            write.secret.metadata.resource_version = resource_version.clone();
            gateway::replace_secret(c, ns, name, &write.secret)
                .await
                .map(drop)
        }
        WriteKind::Merge {
            resource_version,
            remove,
        } => gateway::merge_into_secret(
            c,
            ns,
            name,
            &write.secret,
            remove,
            resource_version.as_deref(),
        )
        .await
        .map(drop),
    }
}

fn not_owned(message: String) -> Done {
    Done::Refused {
        reason: "SecretNotOwned",
        message,
        requeue: Some(Duration::from_secs(300)),
    }
}

/// Reports what was done, once: status, Event, metrics, log, and the
/// remembered outcome.
async fn report(
    ctx: &Context,
    key: &Key,
    sealed: &CachedSealed,
    keys: &KeyState,
    done: Done,
) -> Result<Next, Error> {
    let ns = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    match done {
        Done::Nothing => Ok(Next::AwaitChange),
        Done::Ready { items, written } => {
            let message = unsealed(items, &ns, &name);
            if let Some((kind, digest, needs)) = &written {
                ctx.metrics.unseal("Unsealed");
                if let Some(uid) = sealed.metadata.uid.as_deref() {
                    ctx.store.set_unsealed(
                        key,
                        uid,
                        Outcome {
                            generation: sealed.metadata.generation,
                            key_epoch: keys.epoch,
                            items,
                            digest: *digest,
                            needs: *needs,
                        },
                    );
                }
                set_status(
                    ctx,
                    &StatusOf::sealed(sealed),
                    Readiness::Unsealed,
                    "Unsealed",
                    message.clone(),
                )
                .await?;
                let (event, log) = match kind {
                    WriteKind::Unchanged => return Ok(Next::AwaitChange),
                    WriteKind::Create => ("Unsealed", "created Secret"),
                    WriteKind::Merge { .. } => ("Merged", "merged items into Secret"),
                    _ => ("Updated", "updated Secret"),
                };
                tracing::info!(namespace = %ns, name = %name, items, "{log}");
                ctx.events
                    .publish(sealed, EventType::Normal, event, message)
                    .await;
            } else {
                let of = StatusOf::sealed(sealed);
                set_status(ctx, &of, Readiness::Unsealed, "Unsealed", message).await?;
            }
            Ok(Next::AwaitChange)
        }
        Done::Refused {
            reason,
            message,
            requeue,
        } => {
            let refusal = Refusal {
                generation: sealed.metadata.generation,
                key_epoch: keys.epoch,
                reason,
            };
            // Remembering the refusal also forgets the last successful
            // unseal: the Secret no longer follows this SealedSecret.
            let again = match sealed.metadata.uid.as_deref() {
                Some(uid) => ctx.store.refused(key, uid, refusal),
                None => false,
            };
            // The status already shows this refusal for this generation: a
            // restarted controller (or a new leader) found it again. It was
            // counted and logged when it happened, so the counter does not
            // count it once more after every restart (which fired
            // CofferUnsealFailuresRising on each rollout).
            // Capped as the status holds it.
            let message = crate::events::capped(message, crate::events::MAX_MESSAGE);
            let shown = shows_refusal(
                &StatusMemo::of(sealed),
                sealed.metadata.generation,
                reason,
                &message,
            );
            let again = again || shown;
            refuse(ctx, sealed, reason, message, again).await?;
            // A refusal is final until something changes: a key-ring change
            // re-queues every object; only a new template, new values or a
            // restart with other flags can change the others.
            Ok(requeue.map_or(Next::AwaitChange, Next::RequeueAfter))
        }
    }
}

/// Whether `status` already says `Ready=False` with this `reason` and
/// `message` (capped, as a status holds it) at `generation`.
fn shows_refusal(
    status: &StatusMemo,
    generation: Option<i64>,
    reason: &str,
    message: &str,
) -> bool {
    status.observed_generation == generation
        && status.stalled
        && status
            .ready
            .as_ref()
            .is_some_and(|r| r.says("False", reason, message))
}

/// Reports a SealedSecret that was not turned into its Secret: counts the
/// reason and logs it unless it is the same refusal `again`, sets
/// `Ready=False` and, when that changed the status, publishes a Warning
/// Event. The message never holds a plaintext byte.
async fn refuse(
    ctx: &Context,
    sealed: &CachedSealed,
    reason: &'static str,
    message: String,
    again: bool,
) -> Result<(), kube::Error> {
    if !again {
        ctx.metrics.unseal(reason);
        tracing::warn!(namespace = %sealed.namespace().unwrap_or_default(), name = %sealed.name_any(), reason, "{message}");
    }
    let of = StatusOf::sealed(sealed);
    if set_status(ctx, &of, Readiness::Refused, reason, message.clone()).await? {
        ctx.events
            .publish(sealed, EventType::Warning, reason, message)
            .await;
    }
    Ok(())
}

fn unsealed(items: usize, ns: &str, name: &str) -> String {
    format!("unsealed {items} item(s) into Secret {ns}/{name}")
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

/// Label selector of the Secrets the controller owns.
pub fn owned_selector() -> &'static str {
    OWNED_LABEL
}
