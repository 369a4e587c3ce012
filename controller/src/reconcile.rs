//! Reconcile: SealedSecret -> Secret. read -> unseal (coffer-core) -> apply
//! the Secret -> status and events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_core::SealedSecret;
use coffer_core::api::{MANAGED_ANNOTATION, OWNED_LABEL};
use coffer_core::transform::{self, owner_reference, unseal};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::keys::Keys;
use crate::metrics::Metrics;

/// In-memory annotation that replaces a cached Secret's data: the
/// controller keeps a salted digest of owned Secrets, never their values.
pub const DIGEST_ANNOTATION: &str = "coffer.dev/internal-digest";

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
    /// Owned Secrets, data replaced by a digest (see [`digest_in_place`]).
    pub secrets: Store<Secret>,
    /// `reportingInstance` of the Events it publishes (the pod name).
    pub instance: String,
    pub digest_salt: [u8; 32],
    pub metrics: Arc<Metrics>,
}

/// Replaces a Secret's data with a salted digest of it, wiping the values.
/// Used on every owned Secret before it enters the cache.
pub fn digest_in_place(secret: &mut Secret, salt: &[u8; 32]) {
    let d = data_digest(secret.data.as_ref(), salt);
    transform::wipe(secret);
    secret.data = None;
    secret.string_data = None;
    secret.metadata.managed_fields = None;
    secret
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(DIGEST_ANNOTATION.into(), d);
}

fn data_digest(
    data: Option<&BTreeMap<String, k8s_openapi::ByteString>>,
    salt: &[u8; 32],
) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    for (k, v) in data.into_iter().flatten() {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.0.len() as u64).to_be_bytes());
        h.update(&v.0);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

enum Applied {
    Created,
    Updated,
    Unchanged,
    NotOwned,
}

fn owned_by(secret: &Secret, sealed: &SealedSecret) -> bool {
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

/// Whether the cached (digested) Secret already equals the desired one.
fn same(existing: &Secret, desired: &Secret, salt: &[u8; 32]) -> bool {
    let mut ann = existing.metadata.annotations.clone().unwrap_or_default();
    let digest = ann.remove(DIGEST_ANNOTATION);
    digest.as_deref() == Some(&data_digest(desired.data.as_ref(), salt))
        && existing.type_ == desired.type_
        && existing.immutable.unwrap_or(false) == desired.immutable.unwrap_or(false)
        && existing.metadata.labels.clone().unwrap_or_default()
            == desired.metadata.labels.clone().unwrap_or_default()
        && ann == desired.metadata.annotations.clone().unwrap_or_default()
        && existing.metadata.owner_references == desired.metadata.owner_references
}

async fn apply_secret(
    ctx: &Context,
    sealed: &SealedSecret,
    desired: &Secret,
) -> Result<Applied, kube::Error> {
    let ns = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let cached = ctx.secrets.get(&ObjectRef::new(&name).within(&ns));
    let existing = match cached {
        Some(s) if owned_by(&s, sealed) => s,
        _ => {
            // Not in the owned cache: create it, or find out who has it.
            match api.create(&PostParams::default(), desired).await {
                Ok(_) => return Ok(Applied::Created),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
            let mut live = api.get(&name).await?;
            if !owned_by(&live, sealed) && !adoptable(&live) {
                transform::wipe(&mut live);
                return Ok(Applied::NotOwned);
            }
            digest_in_place(&mut live, &ctx.digest_salt);
            Arc::new(live)
        }
    };
    if same(&existing, desired, &ctx.digest_salt) {
        return Ok(Applied::Unchanged);
    }
    let must_recreate = existing.immutable == Some(true) || existing.type_ != desired.type_;
    if must_recreate {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: existing.resource_version(),
                uid: existing.uid(),
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        api.create(&PostParams::default(), desired).await?;
        return Ok(Applied::Updated);
    }
    let mut replacement = desired.clone();
    replacement.metadata.resource_version = existing.resource_version();
    let r = api
        .replace(&name, &PostParams::default(), &replacement)
        .await;
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
    sealed: &SealedSecret,
    ready: bool,
    reason: &str,
    message: String,
) -> Result<bool, kube::Error> {
    let generation = sealed.metadata.generation;
    let old = sealed.ready_condition();
    let observed = sealed.status.as_ref().and_then(|s| s.observed_generation);
    if let Some(o) = old
        && o.status == if ready { "True" } else { "False" }
        && o.reason == reason
        && o.message == message
        && observed == generation
    {
        return Ok(false);
    }
    let cond = condition(ready, reason, message, generation, old);
    let api: Api<SealedSecret> =
        Api::namespaced(ctx.client.clone(), &sealed.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "status": { "observedGeneration": generation, "conditions": [cond] }
    });
    api.patch_status(
        &sealed.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    Ok(true)
}

/// Event severity.
#[derive(Clone, Copy)]
enum EventType {
    Normal,
    Warning,
}

/// Publishes an `events.k8s.io/v1` Event about `sealed`. Events are only
/// published when the outcome changes (a write, or a new status), so
/// kube-runtime's `Recorder` and its six-minute de-duplication cache (about
/// 26 MiB at 10,000 objects) are not needed.
async fn event(ctx: &Context, sealed: &SealedSecret, type_: EventType, reason: &str, note: String) {
    use k8s_openapi::api::events::v1::Event;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    let ns = sealed.namespace().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let ev = Event {
        metadata: ObjectMeta {
            // As client-go names them: object name, then the time in hex.
            name: Some(format!("{}.{:x}", sealed.name_any(), now.as_nanosecond())),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(
            match type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        reason: Some(reason.into()),
        note: Some(note.chars().take(1000).collect()),
        action: Some("Unseal".into()),
        regarding: Some(sealed.object_ref(&())),
        reporting_controller: Some("coffer.dev/coffer-controller".into()),
        reporting_instance: Some(ctx.instance.clone()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(ctx.client.clone(), &ns);
    if let Err(e) = api.create(&PostParams::default(), &ev).await {
        tracing::warn!(error = %e, "could not publish an Event");
    }
}

/// Reconciles one SealedSecret.
pub async fn reconcile(sealed: Arc<SealedSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    let start = Instant::now();
    let result = reconcile_inner(&sealed, &ctx).await;
    ctx.metrics.observe_reconcile(start.elapsed());
    result
}

async fn reconcile_inner(sealed: &SealedSecret, ctx: &Context) -> Result<Action, Error> {
    let state = ctx.keys.current();
    if !state.synced || state.ring.is_empty() {
        return Err(Error::KeysNotReady);
    }
    if sealed.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = sealed.namespace().unwrap_or_default();
    let name = sealed.name_any();
    let desired = match unseal(sealed, &state.ring) {
        Ok(d) => d,
        Err(e) => {
            let reason = e.reason();
            ctx.metrics.unseal(reason);
            let message = format!("Secret {ns}/{name} not written: {e}");
            tracing::warn!(namespace = %ns, name = %name, reason, "{message}");
            if set_status(ctx, sealed, false, reason, message.clone()).await? {
                event(ctx, sealed, EventType::Warning, reason, message).await;
            }
            // A key-ring change re-queues every object; nothing else can
            // make this value open.
            return Ok(Action::await_change());
        }
    };
    let items = desired.data.len();
    let mut secret = desired.to_secret(owner_reference(sealed));
    drop(desired);
    let applied = apply_secret(ctx, sealed, &secret).await;
    transform::wipe(&mut secret);
    let applied = match applied {
        Err(kube::Error::Api(status)) if status.code == 422 => {
            // The API server refused the Secret we built (e.g. a type whose
            // required keys are missing). Retrying cannot help; say which
            // fields, never the API's free text, which may quote values.
            let reason = "SecretInvalid";
            ctx.metrics.unseal(reason);
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
            if set_status(ctx, sealed, false, reason, message.clone()).await? {
                event(ctx, sealed, EventType::Warning, reason, message).await;
            }
            return Ok(Action::await_change());
        }
        other => other?,
    };
    match applied {
        Applied::NotOwned => {
            let reason = "SecretNotOwned";
            ctx.metrics.unseal(reason);
            let message = format!(
                "Secret {ns}/{name} exists and is not managed by this SealedSecret; annotate it {MANAGED_ANNOTATION}=\"true\" to let Coffer adopt it"
            );
            if set_status(ctx, sealed, false, reason, message.clone()).await? {
                event(ctx, sealed, EventType::Warning, reason, message).await;
            }
            Ok(Action::requeue(Duration::from_secs(300)))
        }
        outcome => {
            ctx.metrics.unseal("Unsealed");
            let message = format!("unsealed {items} item(s) into Secret {ns}/{name}");
            set_status(ctx, sealed, true, "Unsealed", message.clone()).await?;
            match outcome {
                Applied::Created => {
                    tracing::info!(namespace = %ns, name = %name, items, "created Secret");
                    event(ctx, sealed, EventType::Normal, "Unsealed", message).await;
                }
                Applied::Updated => {
                    tracing::info!(namespace = %ns, name = %name, items, "updated Secret");
                    event(ctx, sealed, EventType::Normal, "Updated", message).await;
                }
                _ => {}
            }
            Ok(Action::await_change())
        }
    }
}

/// Retry policy after an error.
pub fn error_policy(sealed: Arc<SealedSecret>, error: &Error, ctx: Arc<Context>) -> Action {
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
