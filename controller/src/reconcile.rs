//! Reconcile: SealedSecret -> Secret, as observe (the caches, one GET at
//! most) -> plan ([`crate::plan`], pure) -> apply (the gateway) -> report
//! (status, Event, metrics, once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_core::api::OWNED_LABEL;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::cache::{CachedSealed, Outcome, Outcomes, OwnedSecret, Refusal};
use crate::events::{EventType, Events};
use crate::gateway;
use crate::key_secrets::{KeyState, Keys};
use crate::metrics::Metrics;
use crate::plan::{self, Observed, Plan, WriteKind};
use crate::pool::UnsealPool;
use crate::secret_types::SecretTypePolicy;

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
    /// Owned Secrets, as digests.
    pub secrets: Store<OwnedSecret>,
    /// The last successful unseal of each SealedSecret.
    pub outcomes: Arc<Outcomes>,
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
    old_ready: Option<&Condition>,
    now: Time,
) -> Vec<Condition> {
    let condition = |type_: &str, status: &str, since: Option<&Condition>| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: match since {
            Some(o) if o.status == status => o.last_transition_time.clone(),
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

/// Writes the status when it differs; returns whether it changed.
async fn set_status(
    ctx: &Context,
    sealed: &CachedSealed,
    readiness: Readiness,
    reason: &str,
    message: String,
) -> Result<bool, kube::Error> {
    let generation = sealed.metadata.generation;
    let old = sealed.ready.as_ref();
    if let Some(o) = old
        && o.status == readiness.ready_status()
        && o.reason == reason
        && o.message == message
        && sealed.observed_generation == generation
        && sealed.stalled == (readiness == Readiness::Refused)
        && sealed.reconciling == (readiness == Readiness::Retrying)
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
    gateway::patch_status::<CachedSealed>(
        &ctx.client,
        &sealed.namespace().unwrap_or_default(),
        &sealed.name_any(),
        &patch,
    )
    .await?;
    Ok(true)
}

/// Reconciles one SealedSecret: observe -> plan -> apply -> report.
pub async fn reconcile(sealed: Arc<CachedSealed>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let result = reconcile_inner(&sealed, &ctx).await;
    if let Err(Error::Kube(e)) = &result {
        // Say that work is pending, once per generation and cause; if the
        // API server cannot take this either, the retry will say it.
        let _ = set_status(&ctx, &sealed, Readiness::Retrying, "Retrying", retrying(e)).await;
    }
    ctx.metrics.observe_reconcile(start.elapsed());
    result
}

/// The `Reconciling` message after an API error: its code and reason only,
/// never the API's free text, which may quote what was sent.
fn retrying(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!(
            "retrying: the Kubernetes API answered {} ({})",
            s.code, s.reason
        ),
        _ => "retrying: no answer from the Kubernetes API".into(),
    }
}

async fn reconcile_inner(sealed: &Arc<CachedSealed>, ctx: &Context) -> Result<Action, Error> {
    let keys = ctx.keys.current();
    let last = sealed
        .metadata
        .uid
        .as_deref()
        .and_then(|u| ctx.outcomes.get(u));
    let secret = observe_secret(ctx, sealed, &keys, last).await;
    let observed = Observed {
        sealed,
        secret: secret.as_deref(),
        keys: &keys,
        last,
        types: &ctx.secret_types,
    };
    let plan = match plan::before_opening(&observed) {
        Some(p) => p,
        None => {
            let (sealed, keys, types) = (sealed.clone(), keys.clone(), ctx.secret_types.clone());
            ctx.pool
                .run_sized(sealed.sealed_bytes(), move || {
                    plan::plan(&Observed {
                        sealed: &sealed,
                        secret: secret.as_deref(),
                        keys: &keys,
                        last,
                        types: &types,
                    })
                })
                .await
        }
    };
    let done = apply(ctx, sealed, plan).await?;
    report(ctx, sealed, &keys, done).await
}

/// The Secret of the SealedSecret's name from the owned cache; when the
/// cache does not have it but the last unseal may still hold (its watch
/// can lag behind the controller's own write), from the API.
async fn observe_secret(
    ctx: &Context,
    sealed: &CachedSealed,
    keys: &KeyState,
    last: Option<Outcome>,
) -> Option<Arc<OwnedSecret>> {
    if sealed.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ns = sealed.metadata.namespace.as_deref()?;
    let name = sealed.metadata.name.as_deref()?;
    if let Some(cached) = ctx.secrets.get(&ObjectRef::new(name).within(ns)) {
        return Some(cached);
    }
    if !plan::last_may_hold(sealed, keys, last) {
        return None;
    }
    gateway::get_secret(&ctx.client, ns, name)
        .await
        .ok()
        .flatten()
        .map(Arc::new)
}

/// What applying a plan came to, for [`report`].
enum Done {
    /// Nothing to report.
    Nothing,
    /// The Secret is right: `written` says what was sent, if anything.
    Ready {
        items: usize,
        written: Option<(WriteKind, [u8; 32])>,
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
            written: Some((write.kind.clone(), write.digest)),
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
            gateway::delete_secret(c, ns, name, uid.clone(), resource_version.clone()).await?;
            gateway::create_secret(c, ns, &write.secret).await.map(drop)
        }
        WriteKind::Replace { resource_version } => {
            write.secret.metadata.resource_version = resource_version.clone();
            gateway::replace_secret(c, ns, name, &write.secret)
                .await
                .map(drop)
        }
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
    sealed: &CachedSealed,
    keys: &KeyState,
    done: Done,
) -> Result<Action, Error> {
    let ns = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    match done {
        Done::Nothing => Ok(Action::await_change()),
        Done::Ready { items, written } => {
            let message = unsealed(items, &ns, &name);
            if let Some((kind, digest)) = &written {
                ctx.metrics.unseal("Unsealed");
                if let Some(uid) = sealed.metadata.uid.as_deref() {
                    ctx.outcomes.set(
                        uid,
                        Outcome {
                            generation: sealed.metadata.generation,
                            key_epoch: keys.epoch,
                            items,
                            digest: *digest,
                        },
                    );
                }
                set_status(
                    ctx,
                    sealed,
                    Readiness::Unsealed,
                    "Unsealed",
                    message.clone(),
                )
                .await?;
                let (event, log) = match kind {
                    WriteKind::Unchanged => return Ok(Action::await_change()),
                    WriteKind::Create => ("Unsealed", "created Secret"),
                    _ => ("Updated", "updated Secret"),
                };
                tracing::info!(namespace = %ns, name = %name, items, "{log}");
                ctx.events
                    .publish(sealed, EventType::Normal, event, message)
                    .await;
            } else {
                set_status(ctx, sealed, Readiness::Unsealed, "Unsealed", message).await?;
            }
            Ok(Action::await_change())
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
                Some(uid) => ctx.outcomes.refused(uid, refusal),
                None => false,
            };
            refuse(ctx, sealed, reason, message, again).await?;
            // A refusal is final until something changes: a key-ring change
            // re-queues every object; only a new template, new values or a
            // restart with other flags can change the others.
            Ok(requeue.map_or_else(Action::await_change, Action::requeue))
        }
    }
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
    if set_status(ctx, sealed, Readiness::Refused, reason, message.clone()).await? {
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
pub fn error_policy(sealed: Arc<CachedSealed>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_error(error.metric_label());
    tracing::warn!(namespace = %sealed.namespace().unwrap_or_default(), name = %sealed.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(match error {
        Error::KeysNotReady => 2,
        Error::Kube(_) => 5,
    }))
}

/// Label selector of the Secrets the controller owns.
pub fn owned_selector() -> &'static str {
    OWNED_LABEL
}
