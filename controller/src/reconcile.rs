//! Reconcile: SealedSecret -> Secret. read -> unseal (coffer-core) -> apply
//! the Secret -> status and events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_core::api::{MANAGED_ANNOTATION, OWNED_LABEL};
use coffer_core::transform::{self, DesiredSecret, UnsealError, open_items};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use crate::cache::{CachedSealed, Outcome, Outcomes, OwnedSecret, secret_digest, to_btree};
use crate::events::{EventType, Events};
use crate::keys::{KeyState, Keys};
use crate::metrics::Metrics;
use crate::pool::UnsealPool;
use crate::secret_types::{SecretTypePolicy, TypeRefused};
use crate::write;

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

enum Applied {
    Created,
    Updated,
    Unchanged,
    NotOwned,
}

fn owned_by(secret: &OwnedSecret, sealed: &CachedSealed) -> bool {
    secret.controller_uid.is_some()
        && secret.controller_uid.as_deref() == sealed.metadata.uid.as_deref()
}

fn live_owned_by(secret: &Secret, sealed: &CachedSealed) -> bool {
    let uid = sealed.uid();
    secret
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}

fn adoptable(secret: &Secret) -> bool {
    secret
        .annotations()
        .get(MANAGED_ANNOTATION)
        .map(String::as_str)
        == Some("true")
}

async fn apply_secret(
    ctx: &Context,
    sealed: &CachedSealed,
    desired: &Secret,
    desired_digest: &[u8; 32],
) -> Result<Applied, kube::Error> {
    let ns = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let cached = ctx.secrets.get(&ObjectRef::new(&name).within(&ns));
    let existing = match cached {
        Some(s) if owned_by(&s, sealed) => s,
        _ => {
            // Not in the owned cache: create it, or find out who has it.
            match write::create_secret(&ctx.client, &ns, desired).await {
                Ok(_) => return Ok(Applied::Created),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
            let mut live = api.get(&name).await?;
            if !live_owned_by(&live, sealed) && !adoptable(&live) {
                transform::wipe(&mut live);
                return Ok(Applied::NotOwned);
            }
            Arc::new(OwnedSecret::from(live))
        }
    };
    if existing.digest == *desired_digest {
        return Ok(Applied::Unchanged);
    }
    let must_recreate = existing.immutable || existing.type_.as_deref() != desired.type_.as_deref();
    if must_recreate {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: existing.metadata.resource_version.clone(),
                uid: existing.metadata.uid.clone(),
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        write::create_secret(&ctx.client, &ns, desired).await?;
        return Ok(Applied::Updated);
    }
    let mut replacement = desired.clone();
    replacement.metadata.resource_version = existing.metadata.resource_version.clone();
    let r = write::replace_secret(&ctx.client, &ns, &name, &replacement).await;
    transform::wipe(&mut replacement);
    r?;
    Ok(Applied::Updated)
}

fn condition(
    ready: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    old: Option<&Condition>,
) -> Condition {
    let status = if ready { "True" } else { "False" }.to_string();
    let last_transition_time = match old {
        Some(o) if o.status == status => o.last_transition_time.clone(),
        _ => Time(jiff::Timestamp::now()),
    };
    Condition {
        type_: "Ready".into(),
        status,
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Writes the status when it differs; returns whether it changed.
async fn set_status(
    ctx: &Context,
    sealed: &CachedSealed,
    ready: bool,
    reason: &str,
    message: String,
) -> Result<bool, kube::Error> {
    let generation = sealed.metadata.generation;
    let old = sealed.ready.as_ref();
    let observed = sealed.observed_generation;
    if let Some(o) = old
        && o.status == if ready { "True" } else { "False" }
        && o.reason == reason
        && o.message == message
        && observed == generation
    {
        return Ok(false);
    }
    let cond = condition(ready, reason, message, generation, old);
    let patch = serde_json::json!({
        "status": { "observedGeneration": generation, "conditions": [cond] }
    });
    write::patch_status::<CachedSealed>(
        &ctx.client,
        &sealed.namespace().unwrap_or_default(),
        &sealed.name_any(),
        &patch,
    )
    .await?;
    Ok(true)
}

/// Reconciles one SealedSecret.
pub async fn reconcile(sealed: Arc<CachedSealed>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let result = reconcile_inner(&sealed, &ctx).await;
    ctx.metrics.observe_reconcile(start.elapsed());
    result
}

async fn reconcile_inner(sealed: &Arc<CachedSealed>, ctx: &Context) -> Result<Action, Error> {
    let state = ctx.keys.current();
    if !state.synced || state.ring.is_empty() {
        return Err(Error::KeysNotReady);
    }
    if sealed.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    // Before anything is decrypted: a refused type is refused whatever the
    // values are.
    if let Err(refused) = ctx.secret_types.check(sealed.template.type_.as_deref()) {
        forget(ctx, sealed);
        let message = format!("Secret {ns}/{name} not written: {refused}");
        refuse(ctx, sealed, TypeRefused::REASON, message).await?;
        // Only a new template or a restart with other flags can change this.
        return Ok(Action::await_change());
    }
    if let Some(items) = still_unsealed(sealed, ctx, &state).await {
        // The Secret is exactly what this generation unsealed to with these
        // keys: nothing to decrypt; only the status may lag behind.
        set_status(ctx, sealed, true, "Unsealed", unsealed(items, &ns, &name)).await?;
        return Ok(Action::await_change());
    }
    let bytes = sealed.items.iter().map(|(_, c)| c.size()).sum();
    let opened = {
        let (sealed, ns, name, state) = (sealed.clone(), ns.clone(), name.clone(), state.clone());
        ctx.pool
            .run_sized(bytes, move || desired_secret(&sealed, &ns, &name, &state))
            .await
    };
    let desired = match opened {
        Ok(d) => d,
        Err(e) => {
            forget(ctx, sealed);
            let message = format!("Secret {ns}/{name} not written: {e}");
            refuse(ctx, sealed, e.reason(), message).await?;
            // A key-ring change re-queues every object; nothing else can
            // make this value open.
            return Ok(Action::await_change());
        }
    };
    let items = desired.data.len();
    let mut secret = desired.to_secret(sealed.controller_owner_ref(&()));
    drop(desired);
    let digest = secret_digest(&secret);
    let applied = apply_secret(ctx, sealed, &secret, &digest).await;
    transform::wipe(&mut secret);
    let applied = match applied {
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
            refuse(ctx, sealed, "SecretInvalid", message).await?;
            return Ok(Action::await_change());
        }
        other => other?,
    };
    match applied {
        Applied::NotOwned => {
            let message = format!(
                "Secret {ns}/{name} exists and is not managed by this SealedSecret; annotate it {MANAGED_ANNOTATION}=\"true\" to let Coffer adopt it"
            );
            refuse(ctx, sealed, "SecretNotOwned", message).await?;
            Ok(Action::requeue(Duration::from_secs(300)))
        }
        outcome => {
            ctx.metrics.unseal("Unsealed");
            if let Some(uid) = sealed.metadata.uid.as_deref() {
                ctx.outcomes.set(
                    uid,
                    Outcome {
                        generation: sealed.metadata.generation,
                        key_epoch: state.epoch,
                        items,
                        digest,
                    },
                );
            }
            let message = unsealed(items, &ns, &name);
            set_status(ctx, sealed, true, "Unsealed", message.clone()).await?;
            match outcome {
                Applied::Created => {
                    tracing::info!(namespace = %ns, name = %name, items, "created Secret");
                    ctx.events
                        .publish(sealed, EventType::Normal, "Unsealed", message)
                        .await;
                }
                Applied::Updated => {
                    tracing::info!(namespace = %ns, name = %name, items, "updated Secret");
                    ctx.events
                        .publish(sealed, EventType::Normal, "Updated", message)
                        .await;
                }
                _ => {}
            }
            Ok(Action::await_change())
        }
    }
}

/// Reports a SealedSecret that was not turned into its Secret: counts the
/// reason, logs it, sets `Ready=False` and, when that changed the status,
/// publishes a Warning Event. The message never holds a plaintext byte.
async fn refuse(
    ctx: &Context,
    sealed: &CachedSealed,
    reason: &'static str,
    message: String,
) -> Result<(), kube::Error> {
    ctx.metrics.unseal(reason);
    tracing::warn!(namespace = %sealed.namespace().unwrap_or_default(), name = %sealed.name_any(), reason, "{message}");
    if set_status(ctx, sealed, false, reason, message.clone()).await? {
        ctx.events
            .publish(sealed, EventType::Warning, reason, message)
            .await;
    }
    Ok(())
}

/// Forgets the last successful unseal: the Secret no longer follows it.
fn forget(ctx: &Context, sealed: &CachedSealed) {
    if let Some(uid) = sealed.metadata.uid.as_deref() {
        ctx.outcomes.forget(uid);
    }
}

fn unsealed(items: usize, ns: &str, name: &str) -> String {
    format!("unsealed {items} item(s) into Secret {ns}/{name}")
}

/// The number of items, when the last successful unseal of `sealed` still
/// holds: same generation, no key lost since, and its Secret unchanged since
/// it was written. The Secret is read from the cache; when the cache does
/// not have it (its watch can lag behind the controller's own write, or it
/// was deleted), from the API: one GET instead of decrypting every value.
async fn still_unsealed(sealed: &CachedSealed, ctx: &Context, state: &KeyState) -> Option<usize> {
    let outcome = ctx.outcomes.get(sealed.metadata.uid.as_deref()?)?;
    if outcome.generation != sealed.metadata.generation || outcome.key_epoch != state.epoch {
        return None;
    }
    let ns = sealed.metadata.namespace.as_deref()?;
    let name = sealed.metadata.name.as_deref()?;
    let secret = match ctx.secrets.get(&ObjectRef::new(name).within(ns)) {
        Some(cached) => cached,
        None => {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
            Arc::new(OwnedSecret::from(api.get_opt(name).await.ok()??))
        }
    };
    (owned_by(&secret, sealed) && secret.digest == outcome.digest).then_some(outcome.items)
}

/// Opens every item; the Secret they make.
fn desired_secret(
    sealed: &CachedSealed,
    ns: &str,
    name: &str,
    state: &KeyState,
) -> Result<DesiredSecret, UnsealError> {
    let data = open_items(
        ns,
        name,
        sealed.items.iter().map(|(k, c)| (&**k, c.item())),
        &state.ring,
    )?;
    let t = &sealed.template;
    Ok(DesiredSecret {
        namespace: ns.to_string(),
        name: name.to_string(),
        type_: t.type_.as_deref().unwrap_or("Opaque").to_string(),
        immutable: t.immutable,
        labels: to_btree(&t.labels),
        annotations: to_btree(&t.annotations),
        data,
    })
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
