//! The reconciler of bitnami's SealedSecrets (the leader's): unseals each
//! into its Secret as bitnami's controller does, and writes its `Synced`
//! condition, Events and metrics.

use std::sync::Arc;
use std::time::Duration;

use coffer_core::bitnami::{self, BitnamiSealedSecret};
use coffer_core::wipe;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, Resource, ResourceExt};

use crate::client::events::{EventType, Events};
use crate::client::gateway;
use crate::pool::UnsealPool;
use crate::reconcile::apply::{Did, Sent};
use crate::reconcile::plan::{WriteKind, kind_over};
use crate::reconcile::secret_types::{SecretTypePolicy, TypeRefused};
use crate::state::objects::{OwnedSecret, secret_digest};
use coffer_core::reason::Reason;

use crate::bitnami::keys::BitnamiKeys;

/// What the bitnami reconciler needs.
pub struct Context {
    pub client: Client,
    pub keys: Arc<BitnamiKeys>,
    pub events: Events,
    pub secret_types: Arc<SecretTypePolicy>,
    pub pool: UnsealPool,
    pub resync: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// An API failure; retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(#[from] kube::Error);

/// The outcome of one reconcile, as the `Synced` condition says it.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Synced { wrote: bool },
    Failed { reason: Reason, message: String },
}

/// The message of a `Synced=True` condition written by Coffer (bitnami's
/// controller writes none): `kubectl get` and `kubectl wait` tell who
/// unsealed. The same for every object, so one `kubectl wait` matches all.
pub const SYNCED_MESSAGE: &str = "Secret unsealed by Coffer";

/// Runs the bitnami reconciler over `api` until `shutdown` resolves; each
/// reference `again` yields is reconciled again (when it names an object
/// of `api`).
pub async fn run(
    api: Api<BitnamiSealedSecret>,
    ctx: Arc<Context>,
    again: impl Stream<Item = ObjectRef<BitnamiSealedSecret>> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // Reconcile once the keys are in: an empty key ring would report every
    // object as not opening.
    ctx.keys.wait_synced().await;
    tracing::info!("reconciling bitnami.com SealedSecrets");
    Controller::new(api, crate::client::watch::watch_config())
        .reconcile_on(again)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_obj: Arc<BitnamiSealedSecret>, e: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %e, "bitnami SealedSecret: API error; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(obj: Arc<BitnamiSealedSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        // The Secret goes with it, by its owner reference.
        return Ok(Action::await_change());
    }
    let outcome = unseal_and_write(&obj, &ctx).await?;
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    // Before this reconcile, was the object Synced by Coffer? If not, this
    // is a takeover (from bitnami's controller, or back from a refusal):
    // said once, in the log and the counter, with or without a write.
    let was_ours = synced_by_coffer(&obj);
    match &outcome {
        Outcome::Synced { wrote } => {
            if *wrote || !was_ours {
                ctx.metrics.bitnami_unseal(Reason::Unsealed);
                tracing::info!(
                    namespace = %ns,
                    name = %name,
                    wrote,
                    "bitnami SealedSecret unsealed by Coffer{}",
                    if *wrote { "" } else { ": its Secret was already right" }
                );
            }
            if *wrote {
                ctx.events
                    .publish_about(
                        obj.object_ref(&()),
                        EventType::Normal,
                        "Unsealed",
                        "SealedSecret unsealed successfully".into(),
                    )
                    .await;
            }
        }
        Outcome::Failed {
            reason: Reason::TakenOver,
            message,
        } => {
            tracing::info!(namespace = %ns, name = %name, reason = Reason::TakenOver.as_str(), "bitnami SealedSecret left alone: {message}");
        }
        Outcome::Failed { reason, message } => {
            tracing::warn!(namespace = %ns, name = %name, reason = reason.as_str(), "bitnami SealedSecret not unsealed: {message}");
        }
    }
    write_status(&obj, &outcome, &ctx).await?;
    if ctx.resync.is_zero() {
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(ctx.resync))
}

/// Unseals `obj` and creates or updates its Secret. Refusals are outcomes,
/// API errors are errors.
async fn unseal_and_write(obj: &Arc<BitnamiSealedSecret>, ctx: &Context) -> Result<Outcome, Error> {
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let type_ = obj.spec.template.as_ref().and_then(|t| t.type_.as_deref());
    // The type first: a refused type costs no decryption.
    if let Err(refused) = ctx.secret_types.check(type_) {
        return Ok(Outcome::Failed {
            reason: TypeRefused::REASON,
            message: refused.to_string(),
        });
    }
    let keys = ctx.keys.current();
    let sealed = obj.clone();
    let opened = ctx.pool.run(move || sealed.unseal(&keys)).await;
    let desired = match opened {
        Ok(d) => d,
        Err(e) => {
            return Ok(Outcome::Failed {
                reason: e.reason(),
                message: format!("Secret {ns}/{name} not written: {e}"),
            });
        }
    };
    let mut secret = desired.to_secret(None);
    drop(desired);
    secret.metadata.owner_references = obj.owner_ref().map(|o| vec![o]);
    let outcome = write_secret(&ctx.client, obj, &ns, &name, &mut secret).await;
    wipe::secret(&mut secret);
    outcome
}

/// Whether the object's `Synced=True` condition is Coffer's.
fn synced_by_coffer(obj: &BitnamiSealedSecret) -> bool {
    obj.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Synced"))
        .is_some_and(|c| c.status == "True" && c.message.as_deref() == Some(SYNCED_MESSAGE))
}

/// Who the existing Secret is for, as far as the bitnami reconciler is
/// concerned.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Write(WriteKind),
    /// Not its to write: someone else's, or nobody's.
    NotOwned,
    /// The Coffer SealedSecret of the same name manages it.
    TakenOver,
}

/// Whether deciding needs the uid of the Coffer SealedSecret of the same
/// name: the Secret has no owner and names the Coffer SealedSecret that
/// keeps it (`deletionPolicy: Keep`).
fn needs_coffer_uid(existing: Option<&OwnedSecret>) -> bool {
    existing
        .is_some_and(|e| !e.bitnami_managed && e.controller_uid.is_none() && e.kept_for.is_some())
}

/// The decision, pure: how the Secret of bitnami's SealedSecret `uid`
/// (with `digest` and `type_`) is written where `existing` is. As bitnami
/// decides, its own Secret and one annotated
/// `sealedsecrets.bitnami.com/managed` are written over, anyone else's is
/// not, with two cases of Coffer's: a Secret that the Coffer SealedSecret
/// of the same name controls, or keeps (`coffer` is its uid, when one
/// exists), is [`Decision::TakenOver`]; one with no owner that a Coffer
/// SealedSecret kept and that no longer exists is taken back, the
/// rollback's hand-back.
fn decide(
    existing: Option<&OwnedSecret>,
    uid: Option<&str>,
    coffer: Option<&str>,
    digest: &[u8; 32],
    type_: Option<&str>,
) -> Decision {
    let Some(existing) = existing else {
        return Decision::Write(WriteKind::Create);
    };
    let ours = existing.controller_uid.is_some() && existing.controller_uid.as_deref() == uid;
    if ours || existing.bitnami_managed {
        return Decision::Write(kind_over(existing, digest, type_));
    }
    // Controlled by it: also while the garbage collector has yet to delete
    // the Secret of a Coffer SealedSecret just deleted (its deletion
    // reconciles this object again).
    if existing.coffer_controlled {
        return Decision::TakenOver;
    }
    match (
        existing.controller_uid.as_deref(),
        existing.kept_for.as_deref(),
    ) {
        (None, Some(kept)) if coffer == Some(kept) => Decision::TakenOver,
        (None, Some(_)) => Decision::Write(kind_over(existing, digest, type_)),
        _ => Decision::NotOwned,
    }
}

async fn write_secret(
    client: &Client,
    obj: &BitnamiSealedSecret,
    ns: &str,
    name: &str,
    secret: &mut Secret,
) -> Result<Outcome, Error> {
    let digest = secret_digest(secret);
    let existing = gateway::get_secret(client, ns, name).await?;
    let uid = obj.metadata.uid.as_deref();
    // The Coffer SealedSecret of that name, only when it may matter (its
    // metadata only: no ciphertext is read).
    let coffer = if needs_coffer_uid(existing.as_ref()) {
        Api::<coffer_core::SealedSecret>::namespaced(client.clone(), ns)
            .get_metadata_opt(name)
            .await?
            .filter(|m| m.metadata.deletion_timestamp.is_none())
            .and_then(|m| m.metadata.uid)
    } else {
        None
    };
    let kind = decide(
        existing.as_ref(),
        uid,
        coffer.as_deref(),
        &digest,
        secret.type_.as_deref(),
    );
    let kind = match kind {
        Decision::Write(kind) => kind,
        Decision::TakenOver => {
            return Ok(Outcome::Failed {
                reason: Reason::TakenOver,
                message: format!(
                    "Secret {ns}/{name} is managed by the coffer.dev SealedSecret of the same name; delete this bitnami.com SealedSecret (a GitOps prune does)"
                ),
            });
        }
        // bitnami's own words, so alerts written for it keep matching.
        Decision::NotOwned => {
            return Ok(Outcome::Failed {
                reason: Reason::SecretNotOwned,
                message: format!(
                    "Resource \"{name}\" already exists and is not managed by SealedSecret"
                ),
            });
        }
    };
    // Sent as Coffer's reconciler sends: an immutable Secret whose
    // metadata only changed is updated in place. A conflict or an invalid
    // Secret is an API error here, retried as bitnami's controller does.
    match crate::reconcile::apply::send(client, ns, name, secret, &kind).await? {
        Sent::Written(did) => Ok(Outcome::Synced {
            wrote: did != Did::Unchanged,
        }),
        Sent::Conflict(status) | Sent::Invalid(status) => Err(kube::Error::Api(status).into()),
    }
}

/// The `Synced` condition and `observedGeneration`, as bitnami's
/// controller writes them; not written again when nothing changed.
async fn write_status(
    obj: &BitnamiSealedSecret,
    outcome: &Outcome,
    ctx: &Context,
) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    let (status, reason, message) = match outcome {
        Outcome::Synced { .. } => ("True", None, Some(SYNCED_MESSAGE.to_string())),
        Outcome::Failed { reason, message } => {
            ("False", Some(reason.as_str()), Some(message.clone()))
        }
    };
    let generation = obj.metadata.generation;
    let old = obj
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Synced"));
    let same = old.is_some_and(|c| {
        c.status == status && c.reason.as_deref() == reason && c.message == message
    }) && obj.status.as_ref().and_then(|s| s.observed_generation) == generation;
    if same {
        return Ok(());
    }
    let now = jiff::Timestamp::now().to_string();
    let transition = match old {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    let condition = bitnami::BitnamiCondition {
        type_: "Synced".into(),
        status: status.into(),
        last_update_time: Some(now),
        last_transition_time: transition,
        reason: reason.map(str::to_string),
        message: message.clone(),
    };
    let patch = serde_json::json!({
        "status": {"observedGeneration": generation, "conditions": [condition]}
    });
    gateway::patch_status::<BitnamiSealedSecret>(&ctx.client, &ns, &obj.name_any(), &patch).await?;
    if let Outcome::Failed { reason, message } = outcome
        && old.is_none_or(|c| c.message.as_ref() != Some(message))
    {
        ctx.metrics.bitnami_unseal(*reason);
        let (kind, event) = match reason {
            Reason::TakenOver => (EventType::Normal, Reason::TakenOver.as_str()),
            Reason::SecretNotOwned => (EventType::Warning, "ErrUpdateFailed"),
            _ => (EventType::Warning, "ErrUnsealFailed"),
        };
        ctx.events
            .publish_about(obj.object_ref(&()), kind, event, message.clone())
            .await;
    }
    Ok(())
}

/// Lists one bitnami SealedSecret, to fail at start with a clear message
/// when their CRD is missing or RBAC does not allow reading them.
pub async fn probe(api: &Api<BitnamiSealedSecret>, place: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    api.list(&kube::api::ListParams::default().limit(1))
        .await
        .with_context(|| {
            format!(
                "--bitnami: cannot list bitnami.com SealedSecrets {place}: is their CRD installed (deploy/bitnami/) and does RBAC allow it?"
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn existing(
        controller: Option<&str>,
        managed: bool,
        digest: u8,
        immutable: bool,
    ) -> OwnedSecret {
        OwnedSecret {
            metadata: ObjectMeta {
                uid: Some("secret-uid".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            controller_uid: controller.map(Into::into),
            type_: Some("Opaque".into()),
            immutable,
            adoptable: false,
            bitnami_managed: managed,
            coffer_controlled: false,
            kept_for: None,
            merge: None,
            digest: [digest; 32],
            claim: None,
            attested: None,
        }
    }

    fn write(d: Decision) -> WriteKind {
        match d {
            Decision::Write(k) => k,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    /// As bitnami's controller: its own Secret is written over, one
    /// annotated `managed` is adopted, anyone else's is refused; the write
    /// itself is Coffer's (unchanged, replaced, or re-created).
    #[test]
    fn bitnami_secrets_are_written_as_bitnami_decides() {
        let uid = Some("ss-uid");
        let d = [1u8; 32];
        let opaque = Some("Opaque");
        let decide = |e: Option<&OwnedSecret>, uid, t| decide(e, uid, None, &d, t);
        assert_eq!(write(decide(None, uid, opaque)), WriteKind::Create);
        let mine = existing(uid, false, 1, false);
        assert_eq!(
            write(decide(Some(&mine), uid, opaque)),
            WriteKind::Unchanged
        );
        let stale = existing(uid, false, 2, false);
        assert_eq!(
            write(decide(Some(&stale), uid, opaque)),
            WriteKind::Replace {
                resource_version: Some("7".into())
            }
        );
        assert!(matches!(
            write(decide(Some(&stale), uid, Some("kubernetes.io/tls"))),
            WriteKind::Recreate { .. }
        ));
        assert!(matches!(
            write(decide(Some(&existing(uid, false, 2, true)), uid, opaque)),
            WriteKind::Recreate { .. }
        ));
        // Someone else's, or nobody's: refused, unless annotated managed.
        for controller in [Some("other-uid"), None] {
            assert_eq!(
                decide(Some(&existing(controller, false, 2, false)), uid, opaque),
                Decision::NotOwned
            );
            assert!(matches!(
                write(decide(
                    Some(&existing(controller, true, 2, false)),
                    uid,
                    opaque
                )),
                WriteKind::Replace { .. }
            ));
        }
        // An object without a uid owns nothing.
        assert_eq!(
            decide(Some(&existing(None, false, 1, false)), None, opaque),
            Decision::NotOwned
        );
    }

    /// Between the Coffer and the bitnami SealedSecret of one name: while
    /// Coffer's controls or keeps the Secret, bitnami's leaves it alone
    /// (`TakenOver`, not a refusal); once a Keep Coffer SealedSecret is
    /// gone, the Secret it released is taken back; a Secret of anyone
    /// else stays refused.
    #[test]
    fn a_secret_passes_between_coffer_and_bitnami_without_a_fight() {
        let uid = Some("ss-uid");
        let d = [1u8; 32];
        let opaque = Some("Opaque");
        let kept = |for_uid: &str| {
            let mut e = existing(None, false, 2, false);
            e.kept_for = Some(for_uid.into());
            e
        };
        // Controlled by the Coffer SealedSecret of its name, there or
        // just deleted (the garbage collector takes the Secret next).
        let mut coffers = existing(Some("coffer-uid"), false, 2, false);
        coffers.coffer_controlled = true;
        assert!(!needs_coffer_uid(Some(&coffers)));
        assert_eq!(
            decide(Some(&coffers), uid, None, &d, opaque),
            Decision::TakenOver
        );
        // Kept by it (deletionPolicy: Keep), while it exists.
        assert!(needs_coffer_uid(Some(&kept("coffer-uid"))));
        assert_eq!(
            decide(
                Some(&kept("coffer-uid")),
                uid,
                Some("coffer-uid"),
                &d,
                opaque
            ),
            Decision::TakenOver
        );
        // Released: that Coffer SealedSecret is gone (or replaced by
        // another of the same name): taken back, as bitnami writes it.
        for coffer in [None, Some("newer-coffer-uid")] {
            assert_eq!(
                write(decide(Some(&kept("coffer-uid")), uid, coffer, &d, opaque)),
                WriteKind::Replace {
                    resource_version: Some("7".into())
                }
            );
        }
        // Controlled by anything else: refused, kept-for or not.
        let others = existing(Some("other-uid"), false, 2, false);
        assert!(!needs_coffer_uid(Some(&others)));
        assert_eq!(
            decide(Some(&others), uid, None, &d, opaque),
            Decision::NotOwned
        );
        let mut both = kept("coffer-uid");
        both.controller_uid = Some("someone".into());
        assert!(!needs_coffer_uid(Some(&both)));
        assert_eq!(
            decide(Some(&both), uid, None, &d, opaque),
            Decision::NotOwned
        );
        // Its own Secret, or one nobody names, needs no lookup.
        assert!(!needs_coffer_uid(Some(&existing(uid, false, 2, false))));
        assert!(!needs_coffer_uid(Some(&existing(None, false, 2, false))));
        assert!(!needs_coffer_uid(None));
    }
}
