//! What one reconcile decides, without a client: from what was observed
//! (the cached SealedSecret, the summary of the Secret of its name, the key
//! state and the last successful unseal) to a [`Plan`]. Decrypting is part
//! of deciding (it is pure, and its result decides the write), so the
//! decision runs on the unseal pool; [`before_opening`] takes every
//! decision that needs no key first. Nothing here touches the API server:
//! the table of tests below covers every reason and every write.

use coffer_core::api::{DeletionPolicy, MERGE_ANNOTATION, MERGED_KEYS_ANNOTATION, OWNED_LABEL};
use coffer_core::template::TemplateError;
use coffer_core::transform::{DesiredSecret, UnsealError, render_templates, unseal};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use std::time::Duration;

use coffer_core::reason::Reason;

use crate::keys::attest;
use crate::keys::ring::KeyState;
use crate::keys::users::KeySet;
use crate::reconcile::secret_types::{SecretTypePolicy, TypeRefused};
use crate::state::objects::{CachedSealed, Outcome, OwnedSecret, merge_digest, secret_digest};

/// What the controller knows when it reconciles one SealedSecret.
pub struct Observed<'a> {
    pub sealed: &'a CachedSealed,
    /// The Secret of the same name, when the controller knows one: from the
    /// owned cache, or read from the API.
    pub secret: Option<&'a OwnedSecret>,
    pub keys: &'a KeyState,
    /// The last successful unseal of this SealedSecret.
    pub last: Option<Outcome>,
    pub types: &'a SecretTypePolicy,
}

/// The decision.
#[derive(Debug)]
pub enum Plan {
    /// The key ring is not loaded yet: retry soon.
    WaitForKeys,
    /// The SealedSecret is being deleted; the garbage collector removes the
    /// Secret.
    Nothing,
    /// The Secret is exactly what this generation unsealed to with these
    /// keys: nothing to decrypt or write; at most the status lags behind.
    Current { items: usize },
    /// Write the Secret (or only record it, when it is already right).
    Write(Box<Write>),
    /// The Secret is not written, for a reason that retrying cannot fix.
    Refuse { reason: Reason, message: String },
    /// A Secret of that name exists, is not this SealedSecret's and may
    /// not be adopted.
    NotOwned { message: String },
    /// `spec.merge`, and the Secret of that name is missing, not opened to
    /// merging by its owner, immutable, or holds a key Coffer did not
    /// write: nothing is written until its owner changes that.
    MergeRefused { message: String },
}

/// How soon a refusal that someone else must resolve on a Secret the
/// controller does not watch ([`Plan::NotOwned`], [`Plan::MergeRefused`])
/// is looked at again.
pub const RECHECK_OTHERS_SECRET: Duration = Duration::from_secs(300);

/// A refusal as the plan decided it: the status reason, the message, and
/// when to look again (`None`: when something changes).
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
    pub requeue: Option<Duration>,
}

impl Refusal {
    /// [`Plan::Refuse`]: final until something changes.
    pub fn final_(reason: Reason, message: String) -> Self {
        Refusal {
            reason,
            message,
            requeue: None,
        }
    }

    /// [`Plan::NotOwned`]. Its owner must act on the Secret, which the
    /// controller does not watch: look again now and then.
    pub fn not_owned(message: String) -> Self {
        Refusal {
            reason: Reason::SecretNotOwned,
            message,
            requeue: Some(RECHECK_OTHERS_SECRET),
        }
    }

    /// [`Plan::MergeRefused`]. Its owner must act on the Secret, which the
    /// controller does not watch until the first merge: look again now and
    /// then.
    pub fn merge_refused(message: String) -> Self {
        Refusal {
            reason: Reason::MergeRefused,
            message,
            requeue: Some(RECHECK_OTHERS_SECRET),
        }
    }
}

/// A Secret to write and how.
pub struct Write {
    pub kind: WriteKind,
    /// The desired Secret; its values are wiped when the `Write` drops.
    pub secret: Secret,
    /// [`secret_digest`] of `secret`.
    pub digest: [u8; 32],
    pub items: usize,
    /// The keys without which some value would not have opened.
    pub needs: KeySet,
}

impl Drop for Write {
    fn drop(&mut self) {
        coffer_core::wipe::secret(&mut self.secret);
    }
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Write")
            .field("kind", &self.kind)
            .field("items", &self.items)
            .finish_non_exhaustive()
    }
}

/// How the Secret is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// None is known to exist: create it. A conflict means one does, and
    /// [`after_conflict`] decides on the live one.
    Create,
    /// Replace the one at this resourceVersion.
    Replace { resource_version: Option<String> },
    /// Immutable, or of another type: delete exactly that object (uid and
    /// resourceVersion as preconditions), then create.
    Recreate {
        uid: Option<String>,
        resource_version: Option<String>,
    },
    /// Merge-patch the data keys of a Secret of another owner at this
    /// resourceVersion: set those of the desired Secret (with the owned
    /// label and the merged-keys annotation), delete `remove`, touch
    /// nothing else.
    Merge {
        resource_version: Option<String>,
        remove: Vec<String>,
    },
    /// It is already right: record the outcome and the status only.
    Unchanged,
}

/// Every decision that needs no key: `None` when the values must be opened.
pub fn before_opening(o: &Observed<'_>) -> Option<Plan> {
    if !o.keys.synced || o.keys.ring.is_empty() {
        return Some(Plan::WaitForKeys);
    }
    if o.sealed.metadata.deletion_timestamp.is_some() {
        return Some(Plan::Nothing);
    }
    // Before anything is decrypted: a refused type is refused whatever the
    // values are.
    if let Err(refused) = o.types.check(o.sealed.template.type_.as_deref()) {
        return Some(Plan::Refuse {
            reason: TypeRefused::REASON,
            message: format!("Secret {} not written: {refused}", place(o.sealed)),
        });
    }
    still_current(
        o.last,
        o.sealed.metadata.generation,
        o.sealed.metadata.uid.as_deref(),
        o.secret,
        o.keys,
    )
    .map(|items| Plan::Current { items })
}

/// The whole decision: [`before_opening`], else unseal and decide the write.
pub fn plan(o: &Observed<'_>) -> Plan {
    before_opening(o).unwrap_or_else(|| after_opening(o, unseal(&o.sealed.view(), &o.keys.ring)))
}

/// The decision once the values were opened (or refused).
pub fn after_opening(o: &Observed<'_>, opened: Result<DesiredSecret, UnsealError>) -> Plan {
    let mut desired = match opened {
        Ok(d) => d,
        Err(e) => {
            return Plan::Refuse {
                reason: e.reason(),
                message: format!("Secret {} not written: {e}", place(o.sealed)),
            };
        }
    };
    if let Err(e) = render_templates(&o.sealed.view(), &mut desired) {
        return Plan::Refuse {
            reason: TemplateError::REASON,
            message: format!("Secret {} not written: {e}", place(o.sealed)),
        };
    }
    let items = desired.data.len();
    if o.sealed.merge {
        return plan_merge(o, &desired, items);
    }
    let mut secret = match (o.sealed.deletion_policy, o.sealed.metadata.uid.as_deref()) {
        (DeletionPolicy::Keep, Some(uid)) => desired.to_kept_secret(uid),
        _ => desired.to_secret(o.sealed.controller_owner_ref(&())),
    };
    if let (Some(uid), Some(generation)) = (
        o.sealed.metadata.uid.as_deref(),
        o.sealed.metadata.generation,
    ) {
        attest::stamp(
            &mut secret,
            uid,
            generation,
            items,
            &desired.opened_by,
            &o.keys.attest,
        );
    }
    let needs = KeySet::of(&desired.needs);
    drop(desired);
    let digest = secret_digest(&secret);
    let write = Box::new(Write {
        kind: WriteKind::Create,
        secret,
        digest,
        items,
        needs,
    });
    match o.secret {
        Some(existing) if mine(existing, o.sealed) || existing.adoptable => {
            write_over(write, existing)
        }
        // None known, or one that is not this SealedSecret's: the cache may
        // be behind, so the API decides (a conflict, then `after_conflict`).
        _ => Plan::Write(write),
    }
}

/// `spec.merge`: the items go into the existing Secret of another owner,
/// if that owner allowed it, without overwriting a key Coffer did not
/// write there; the keys Coffer wrote before and no longer has are
/// removed.
fn plan_merge(o: &Observed<'_>, desired: &DesiredSecret, items: usize) -> Plan {
    let at = place(o.sealed);
    let refused = |why: String| Plan::MergeRefused {
        message: format!("Secret {at} not merged into: {why}"),
    };
    let Some(existing) = o.secret else {
        return refused(format!(
            "it does not exist; create it and annotate it {MERGE_ANNOTATION}=\"true\""
        ));
    };
    // The type policy applies to the Secret merged into, whatever the
    // template says: no items into a ServiceAccount token or a key.
    if let Err(refused) = o.types.check(existing.type_.as_deref()) {
        return Plan::Refuse {
            reason: TypeRefused::REASON,
            message: format!("Secret {at} not merged into: {refused}"),
        };
    }
    let Some(target) = existing.merge.as_deref() else {
        return refused(format!(
            "its owner has not annotated it {MERGE_ANNOTATION}=\"true\""
        ));
    };
    if existing.immutable {
        return refused("it is immutable".into());
    }
    let was_merged = |k: &str| target.merged.iter().any(|m| &**m == k);
    let mut foreign: Vec<&str> = desired
        .data
        .keys()
        .map(String::as_str)
        .filter(|k| target.keys.iter().any(|t| &**t == *k) && !was_merged(k))
        .collect();
    if !foreign.is_empty() {
        foreign.sort_unstable();
        return refused(format!(
            "it already holds key(s) {} that Coffer did not write; remove them there or from the SealedSecret",
            foreign.join(", ")
        ));
    }
    let remove: Vec<String> = target
        .merged
        .iter()
        .filter(|k| !desired.data.contains_key(&***k) && target.keys.iter().any(|t| t == *k))
        .map(ToString::to_string)
        .collect();
    let keys: Vec<&str> = desired.data.keys().map(String::as_str).collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(desired.name.clone()),
            namespace: Some(desired.namespace.clone()),
            labels: Some([(OWNED_LABEL.to_string(), desired.name.clone())].into()),
            annotations: Some([(MERGED_KEYS_ANNOTATION.to_string(), keys.join(","))].into()),
            ..Default::default()
        },
        data: Some(
            desired
                .data
                .iter()
                .map(|(k, v)| (k.clone(), k8s_openapi::ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    let digest = merge_digest(&secret);
    let kind = if digest == target.digest && remove.is_empty() {
        WriteKind::Unchanged
    } else {
        WriteKind::Merge {
            resource_version: existing.metadata.resource_version.clone(),
            remove,
        }
    };
    Plan::Write(Box::new(Write {
        kind,
        secret,
        digest,
        items,
        needs: KeySet::of(&desired.needs),
    }))
}

/// The decision after creating the Secret conflicted with `live`, the
/// Secret now in the API.
pub fn after_conflict(sealed: &CachedSealed, write: Box<Write>, live: &OwnedSecret) -> Plan {
    if mine(live, sealed) || live.adoptable {
        write_over(write, live)
    } else {
        Plan::NotOwned {
            message: format!(
                "Secret {} exists and is not managed by this SealedSecret; annotate it {}=\"true\" to let Coffer adopt it",
                place(sealed),
                coffer_core::api::MANAGED_ANNOTATION
            ),
        }
    }
}

/// The decision after the API server refused the Secret as invalid (422):
/// retrying cannot help. The message names the fields and why, never the
/// API's free text, which may quote values.
pub fn after_invalid(sealed: &CachedSealed, status: &kube::core::Status) -> Plan {
    let fields: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .map(|c| format!("{} ({})", c.field, c.reason))
        .collect();
    Plan::Refuse {
        reason: Reason::SecretInvalid,
        message: format!(
            "the API server refused Secret {}: invalid {}",
            place(sealed),
            if fields.is_empty() {
                "content".to_string()
            } else {
                fields.join(", ")
            }
        ),
    }
}

/// Writing `write` where `existing` is.
fn write_over(mut write: Box<Write>, existing: &OwnedSecret) -> Plan {
    write.kind = kind_over(existing, &write.digest, write.secret.type_.as_deref());
    Plan::Write(write)
}

/// How a Secret of `digest` and `type_` is written where `existing` is:
/// not at all when it is already right; replaced; or deleted and created
/// when the existing one is immutable or of another type. Coffer's and
/// bitnami's reconcilers decide alike.
pub fn kind_over(existing: &OwnedSecret, digest: &[u8; 32], type_: Option<&str>) -> WriteKind {
    let meta = &existing.metadata;
    if existing.digest == *digest {
        WriteKind::Unchanged
    } else if existing.immutable || existing.type_.as_deref() != type_ {
        WriteKind::Recreate {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }
    } else {
        WriteKind::Replace {
            resource_version: meta.resource_version.clone(),
        }
    }
}

/// Whether `secret` is controlled by `sealed`.
pub fn mine(secret: &OwnedSecret, sealed: &CachedSealed) -> bool {
    controlled_by(secret, sealed.metadata.uid.as_deref())
}

/// Whether the SealedSecret `uid` manages `secret` as a whole: it is the
/// controller owner, or (`deletionPolicy: Keep`) the Secret has no
/// controller owner and names `uid` as the SealedSecret that keeps it.
fn controlled_by(secret: &OwnedSecret, uid: Option<&str>) -> bool {
    let Some(uid) = uid else { return false };
    match secret.controller_uid.as_deref() {
        Some(owner) => owner == uid,
        None => secret.kept_for.as_deref() == Some(uid),
    }
}

/// The number of items, when the last successful unseal (`last`) of the
/// SealedSecret `uid` still holds: same generation, no key lost since, and
/// its Secret unchanged since it was written. Needs no ciphertext.
pub fn still_current(
    last: Option<Outcome>,
    generation: Option<i64>,
    uid: Option<&str>,
    secret: Option<&OwnedSecret>,
    keys: &KeyState,
) -> Option<usize> {
    let last = last?;
    let secret = secret?;
    let unchanged = (controlled_by(secret, uid) && secret.digest == last.digest)
        || secret
            .merge
            .as_ref()
            .is_some_and(|m| m.digest == last.digest);
    (last_may_hold(generation, keys, Some(last)) && unchanged).then_some(last.items)
}

/// The last successful unseal as `secret`'s verified annotation tells it
/// (crate::keys::attest), for a SealedSecret at `generation` that this
/// controller has not unsealed since it started. The type policy is
/// checked again: it may have changed across the restart.
/// [`still_current`] checks the rest, as for a remembered outcome.
pub fn attested(
    secret: &OwnedSecret,
    generation: Option<i64>,
    keys: &KeyState,
    types: &SecretTypePolicy,
) -> Option<Outcome> {
    let a = secret.attested?;
    (Some(a.generation) == generation
        && a.key_epoch == keys.epoch
        && types.check(secret.type_.as_deref()).is_ok())
    .then_some(Outcome {
        generation: Some(a.generation),
        key_epoch: a.key_epoch,
        items: a.items as usize,
        digest: secret.digest,
        needs: a.keys,
    })
}

/// Whether the last successful unseal may still hold, as far as the
/// SealedSecret's generation and the keys tell: then the Secret is worth a
/// read when the cache does not have it (one GET instead of decrypting
/// every value).
pub fn last_may_hold(generation: Option<i64>, keys: &KeyState, last: Option<Outcome>) -> bool {
    last.is_some_and(|l| l.generation == generation && l.key_epoch == keys.epoch)
}

fn place(sealed: &CachedSealed) -> String {
    format!(
        "{}/{}",
        sealed.metadata.namespace.as_deref().unwrap_or_default(),
        sealed.metadata.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    //! Every reason and every write, from small builders, with no API
    //! server.

    use std::sync::OnceLock;

    use coffer_format::{Location, Scope, SecretKey, seal};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;
    use crate::state::objects::{Ciphertext, MergeTarget, Template};

    const UID: &str = "uid-of-db";

    fn key() -> &'static SecretKey {
        static K: OnceLock<SecretKey> = OnceLock::new();
        K.get_or_init(SecretKey::generate)
    }

    fn other_key() -> &'static SecretKey {
        static K: OnceLock<SecretKey> = OnceLock::new();
        K.get_or_init(SecretKey::generate)
    }

    /// The ring: `key()` (usable or retired) and a newer usable key.
    fn keys(retired: bool) -> KeyState {
        static NEWER: OnceLock<SecretKey> = OnceLock::new();
        let mut ring = coffer_format::Keyring::new();
        ring.insert(key().clone(), retired);
        ring.insert(NEWER.get_or_init(SecretKey::generate).clone(), false);
        KeyState {
            attest: crate::keys::attest::AttestKeys::of(&ring),
            ring,
            synced: true,
            epoch: 7,
            ..Default::default()
        }
    }

    fn sealed_to(to: &SecretKey, ns: &str, name: &str, item: &str, value: &[u8]) -> Ciphertext {
        let at = Location {
            namespace: ns,
            name,
            key: item,
        };
        let text = seal(value, Scope::Strict, at, std::slice::from_ref(to.public())).unwrap();
        serde_json::from_value::<CachedSealed>(serde_json::json!({
            "spec": {"encryptedData": {"x": text}}
        }))
        .unwrap()
        .items[0]
            .1
            .clone()
    }

    /// `app/db`, generation 3, with a `password` sealed for it.
    fn mk_sealed(items: Vec<(&str, Ciphertext)>, type_: Option<&str>) -> CachedSealed {
        CachedSealed {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("app".into()),
                uid: Some(UID.into()),
                generation: Some(3),
                ..Default::default()
            },
            items: items.into_iter().map(|(k, c)| (k.into(), c)).collect(),
            template: Template {
                type_: type_.map(Into::into),
                ..Default::default()
            },
            deletion_policy: Default::default(),
            merge: false,
            observed_generation: None,
            ready: None,
            stalled: false,
            reconciling: false,
        }
    }

    fn good() -> CachedSealed {
        mk_sealed(
            vec![(
                "password",
                sealed_to(key(), "app", "db", "password", b"hunter2"),
            )],
            None,
        )
    }

    fn mk_secret(controller_uid: Option<&str>, digest: [u8; 32]) -> OwnedSecret {
        OwnedSecret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("app".into()),
                uid: Some("uid-of-secret".into()),
                resource_version: Some("41".into()),
                ..Default::default()
            },
            controller_uid: controller_uid.map(Into::into),
            type_: Some("Opaque".into()),
            immutable: false,
            adoptable: false,
            kept_for: None,
            merge: None,
            bitnami_managed: false,
            coffer_controlled: false,
            digest,
            claim: None,
            attested: None,
        }
    }

    fn policy() -> SecretTypePolicy {
        SecretTypePolicy::new(&[], &["kubernetes.io/service-account-token".to_string()])
    }

    fn decide(
        sealed: &CachedSealed,
        secret: Option<&OwnedSecret>,
        keys: &KeyState,
        last: Option<Outcome>,
    ) -> Plan {
        plan(&Observed {
            sealed,
            secret,
            keys,
            last,
            types: &policy(),
        })
    }

    /// The digest the plan computes for `sealed`'s Secret.
    fn desired_digest(sealed: &CachedSealed) -> [u8; 32] {
        match decide(sealed, None, &keys(false), None) {
            Plan::Write(w) => w.digest,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn refusal(p: Plan) -> (&'static str, String) {
        match p {
            Plan::Refuse { reason, message } => (reason.as_str(), message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn write_kind(p: Plan) -> WriteKind {
        match p {
            Plan::Write(w) => w.kind.clone(),
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn nothing_is_decided_before_the_key_ring_is_loaded() {
        let unsynced = KeyState::default();
        assert!(matches!(
            decide(&good(), None, &unsynced, None),
            Plan::WaitForKeys
        ));
        let empty = KeyState {
            synced: true,
            ..Default::default()
        };
        assert!(matches!(
            decide(&good(), None, &empty, None),
            Plan::WaitForKeys
        ));
    }

    #[test]
    fn a_sealed_secret_being_deleted_is_left_to_the_garbage_collector() {
        let mut s = good();
        s.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        assert!(matches!(
            decide(&s, None, &keys(false), None),
            Plan::Nothing
        ));
    }

    #[test]
    fn every_refusal_has_its_reason_and_names_the_place() {
        let tampered = {
            let Ciphertext::Bytes(b) = sealed_to(key(), "app", "db", "password", b"hunter2") else {
                unreachable!()
            };
            let mut b = b.to_vec();
            let last = b.len() - 1;
            b[last] ^= 1;
            Ciphertext::Bytes(b.into())
        };
        let many: Vec<_> = (0..=coffer_core::transform::MAX_ITEMS)
            .map(|_| ("k", Ciphertext::Text("x".into())))
            .collect();
        let cases: Vec<(&str, CachedSealed, KeyState, &str)> = vec![
            (
                "copied from another namespace",
                mk_sealed(
                    vec![(
                        "password",
                        sealed_to(key(), "other", "db", "password", b"v"),
                    )],
                    None,
                ),
                keys(false),
                "ScopeMismatch",
            ),
            (
                "sealed to a key this cluster lacks",
                mk_sealed(
                    vec![(
                        "password",
                        sealed_to(other_key(), "app", "db", "password", b"v"),
                    )],
                    None,
                ),
                keys(false),
                "NoMatchingKey",
            ),
            ("sealed to a retired key", good(), keys(true), "KeyRetired"),
            (
                "a flipped bit",
                mk_sealed(vec![("password", tampered)], None),
                keys(false),
                "Tampered",
            ),
            (
                "not base64",
                mk_sealed(vec![("password", Ciphertext::Text("%%".into()))], None),
                keys(false),
                "Malformed",
            ),
            (
                "too many items",
                mk_sealed(many, None),
                keys(false),
                "Malformed",
            ),
            (
                "a refused Secret type",
                mk_sealed(
                    vec![("password", sealed_to(key(), "app", "db", "password", b"v"))],
                    Some("kubernetes.io/service-account-token"),
                ),
                keys(false),
                "SecretTypeRefused",
            ),
        ];
        for (what, sealed, keys, want) in cases {
            let (reason, message) = refusal(decide(&sealed, None, &keys, None));
            assert_eq!(reason, want, "{what}");
            assert!(message.contains("app/db"), "{what}: {message}");
            assert!(!message.contains("hunter2"), "{what}: {message}");
        }
    }

    #[test]
    fn a_refused_type_is_refused_before_any_value_is_opened() {
        let s = mk_sealed(
            vec![("password", Ciphertext::Text("%%".into()))],
            Some("kubernetes.io/service-account-token"),
        );
        let p = before_opening(&Observed {
            sealed: &s,
            secret: None,
            keys: &keys(false),
            last: None,
            types: &policy(),
        });
        assert!(matches!(
            p,
            Some(Plan::Refuse {
                reason: Reason::SecretTypeRefused,
                ..
            })
        ));
    }

    #[test]
    fn each_write_kind_follows_from_the_existing_secret() {
        let s = good();
        let digest = desired_digest(&s);
        let mine = |f: &dyn Fn(&mut OwnedSecret)| {
            let mut o = mk_secret(Some(UID), [0; 32]);
            f(&mut o);
            o
        };
        let cases: Vec<(&str, Option<OwnedSecret>, WriteKind)> = vec![
            ("none known", None, WriteKind::Create),
            (
                "someone else's in the cache: the API decides",
                Some(mk_secret(Some("another-uid"), digest)),
                WriteKind::Create,
            ),
            (
                "ours, other values",
                Some(mine(&|_| {})),
                WriteKind::Replace {
                    resource_version: Some("41".into()),
                },
            ),
            (
                "ours, already right",
                Some(mine(&|o| o.digest = digest)),
                WriteKind::Unchanged,
            ),
            (
                "ours, immutable",
                Some(mine(&|o| o.immutable = true)),
                WriteKind::Recreate {
                    uid: Some("uid-of-secret".into()),
                    resource_version: Some("41".into()),
                },
            ),
            (
                "ours, of another type",
                Some(mine(&|o| o.type_ = Some("kubernetes.io/tls".into()))),
                WriteKind::Recreate {
                    uid: Some("uid-of-secret".into()),
                    resource_version: Some("41".into()),
                },
            ),
            (
                "not ours but annotated for adoption",
                Some({
                    let mut o = mk_secret(None, [0; 32]);
                    o.adoptable = true;
                    o
                }),
                WriteKind::Replace {
                    resource_version: Some("41".into()),
                },
            ),
        ];
        for (what, existing, want) in cases {
            let p = decide(&s, existing.as_ref(), &keys(false), None);
            assert_eq!(write_kind(p), want, "{what}");
        }
    }

    #[test]
    fn the_written_secret_is_owned_labelled_and_holds_the_values() {
        let Plan::Write(w) = decide(&good(), None, &keys(false), None) else {
            panic!("expected a write")
        };
        let s = &w.secret;
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), (UID, Some(true)));
        assert_eq!(
            s.metadata.labels.as_ref().unwrap()[coffer_core::api::OWNED_LABEL],
            "db"
        );
        assert_eq!(s.data.as_ref().unwrap()["password"].0, b"hunter2");
        assert_eq!(w.items, 1);
        assert_eq!(w.digest, secret_digest(s));
    }

    #[test]
    fn a_conflict_with_a_secret_of_someone_else_is_not_owned() {
        let s = good();
        let Plan::Write(w) = decide(&s, None, &keys(false), None) else {
            panic!("expected a write")
        };
        let theirs = mk_secret(Some("another-uid"), [0; 32]);
        match after_conflict(&s, w, &theirs) {
            Plan::NotOwned { message } => {
                assert!(message.contains("app/db") && message.contains("coffer.dev/managed"))
            }
            other => panic!("expected not owned, got {other:?}"),
        }
        let Plan::Write(w) = decide(&s, None, &keys(false), None) else {
            panic!("expected a write")
        };
        let ours = mk_secret(Some(UID), [0; 32]);
        assert!(matches!(
            after_conflict(&s, w, &ours),
            Plan::Write(w) if matches!(w.kind, WriteKind::Replace { .. })
        ));
    }

    #[test]
    fn the_last_unseal_spares_decryption_only_while_everything_it_rests_on_holds() {
        let s = good();
        let digest = desired_digest(&s);
        let last = Outcome {
            generation: Some(3),
            key_epoch: 7,
            items: 1,
            digest,
            needs: KeySet::EMPTY,
        };
        let ours = mk_secret(Some(UID), digest);
        assert!(matches!(
            decide(&s, Some(&ours), &keys(false), Some(last)),
            Plan::Current { items: 1 }
        ));
        // A value that no longer opens must not be reported as current, so
        // each change below leads back to opening (here: a write).
        let changed: Vec<(&str, Outcome, OwnedSecret)> = vec![
            (
                "a new generation",
                Outcome {
                    generation: Some(4),
                    ..last
                },
                ours.clone(),
            ),
            (
                "a key lost since",
                Outcome {
                    key_epoch: 8,
                    ..last
                },
                ours.clone(),
            ),
            (
                "the Secret changed since",
                last,
                mk_secret(Some(UID), [9; 32]),
            ),
            (
                "the Secret belongs to another",
                last,
                mk_secret(Some("another-uid"), digest),
            ),
        ];
        for (what, last, secret) in changed {
            let p = decide(&s, Some(&secret), &keys(false), Some(last));
            assert!(matches!(p, Plan::Write(_)), "{what}: {p:?}");
        }
        assert!(last_may_hold(
            s.metadata.generation,
            &keys(false),
            Some(last)
        ));
        assert!(!last_may_hold(s.metadata.generation, &keys(false), None));
    }

    fn written(p: Plan) -> Box<Write> {
        match p {
            Plan::Write(w) => w,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    /// A restarted controller (no outcome remembered) finds the written
    /// Secret's annotation and trusts it while the generation, the keys and
    /// the type policy allow, as a remembered outcome.
    #[test]
    fn a_restart_trusts_the_written_secrets_annotation_only_while_it_holds() {
        let s = good();
        let keys = keys(false);
        let w = written(decide(&s, None, &keys, None));
        assert!(
            w.secret.metadata.annotations.as_ref().unwrap()[coffer_core::api::UNSEALED_ANNOTATION]
                .starts_with("v1;g=3;n=1;k=")
        );
        let mut owned = OwnedSecret::from(w.secret.clone());
        keys.settle(&mut owned);
        let generation = s.metadata.generation;
        let last = attested(&owned, generation, &keys, &policy()).unwrap();
        assert_eq!(last.digest, w.digest);
        assert_eq!(
            still_current(Some(last), generation, Some(UID), Some(&owned), &keys),
            Some(1)
        );
        // The SealedSecret changed since.
        assert!(attested(&owned, Some(4), &keys, &policy()).is_none());
        // A key lost since it was verified.
        let later = KeyState {
            epoch: keys.epoch + 1,
            ..keys.clone()
        };
        assert!(attested(&owned, generation, &later, &policy()).is_none());
        // Its type refused by the restarted controller.
        let no_opaque = SecretTypePolicy::new(&[], &["Opaque".to_string()]);
        assert!(attested(&owned, generation, &keys, &no_opaque).is_none());
        // The annotation is part of what is compared: the same values
        // unsealed from another generation are a write (of the annotation).
        let mut next = good();
        next.metadata.generation = Some(4);
        let w4 = written(decide(&next, None, &keys, None));
        assert_ne!(w4.digest, w.digest);
        assert_eq!(w4.secret.data, w.secret.data);
    }

    /// `deletionPolicy: Keep`: no owner reference (the garbage collector
    /// leaves the Secret), the owned label and the SealedSecret's uid
    /// instead; that uid, and no other, makes the Secret this
    /// SealedSecret's to update.
    #[test]
    fn a_kept_secret_has_no_owner_and_stays_managed_by_its_sealed_secret_only() {
        let mut s = good();
        s.deletion_policy = DeletionPolicy::Keep;
        let w = written(decide(&s, None, &keys(false), None));
        let meta = &w.secret.metadata;
        assert!(meta.owner_references.is_none());
        assert_eq!(meta.labels.as_ref().unwrap()[OWNED_LABEL], "db");
        assert_eq!(
            meta.annotations.as_ref().unwrap()[coffer_core::api::KEPT_FOR_ANNOTATION],
            UID
        );
        let kept = |uid: &str, digest| {
            let mut o = mk_secret(None, digest);
            o.kept_for = Some(uid.into());
            o
        };
        assert_eq!(
            write_kind(decide(&s, Some(&kept(UID, w.digest)), &keys(false), None)),
            WriteKind::Unchanged
        );
        assert!(matches!(
            write_kind(decide(&s, Some(&kept(UID, [0; 32])), &keys(false), None)),
            WriteKind::Replace { .. }
        ));
        // Kept for another SealedSecret (deleted, then one of the same
        // name created): not this one's, the API decides (SecretNotOwned).
        assert_eq!(
            write_kind(decide(
                &s,
                Some(&kept("another-uid", w.digest)),
                &keys(false),
                None
            )),
            WriteKind::Create
        );
        // A kept-for annotation does not beat a controller owner.
        let mut owned_elsewhere = kept(UID, w.digest);
        owned_elsewhere.controller_uid = Some("another-uid".into());
        assert_eq!(
            write_kind(decide(&s, Some(&owned_elsewhere), &keys(false), None)),
            WriteKind::Create
        );
        // Back to Delete: the kept Secret is taken back with an owner.
        let d = good();
        let w = written(decide(&d, Some(&kept(UID, [0; 32])), &keys(false), None));
        assert!(matches!(w.kind, WriteKind::Replace { .. }));
        assert_eq!(
            w.secret.metadata.owner_references.as_ref().unwrap()[0].uid,
            UID
        );
    }

    fn merging() -> CachedSealed {
        let mut s = good();
        s.merge = true;
        s
    }

    /// A Secret of another owner, opened to merging, holding `keys`, of
    /// which Coffer wrote `merged`.
    fn target(keys: &[&str], merged: &[&str]) -> OwnedSecret {
        let mut o = mk_secret(Some("owner-uid"), [0; 32]);
        o.merge = Some(Box::new(MergeTarget {
            keys: keys.iter().map(|k| (*k).into()).collect(),
            merged: merged.iter().map(|k| (*k).into()).collect(),
            digest: [0; 32],
        }));
        o
    }

    #[test]
    fn merging_is_refused_unless_the_owner_allows_it_and_never_overwrites_a_foreign_key() {
        let s = merging();
        let refused = |secret: Option<&OwnedSecret>| match decide(&s, secret, &keys(false), None) {
            Plan::MergeRefused { message } => message,
            other => panic!("expected MergeRefused, got {other:?}"),
        };
        assert!(refused(None).contains("does not exist"));
        let not_opened = mk_secret(Some("owner-uid"), [0; 32]);
        assert!(refused(Some(&not_opened)).contains("coffer.dev/merge"));
        let m = refused(Some(&target(&["password", "user"], &[])));
        assert!(m.contains("password") && !m.contains("user"), "{m}");
        assert!(!m.contains("hunter2"), "{m}");
        let mut immutable = target(&[], &[]);
        immutable.immutable = true;
        assert!(refused(Some(&immutable)).contains("immutable"));
        // A denied type is refused whatever the owner says.
        let mut token = target(&[], &[]);
        token.type_ = Some("kubernetes.io/service-account-token".into());
        let (reason, message) = refusal(decide(&s, Some(&token), &keys(false), None));
        assert_eq!(reason, "SecretTypeRefused", "{message}");
    }

    #[test]
    fn merging_sets_its_keys_and_removes_only_keys_it_wrote_before() {
        let s = merging();
        let existing = target(&["password", "old", "theirs"], &["password", "old", "gone"]);
        let w = written(decide(&s, Some(&existing), &keys(false), None));
        assert_eq!(
            w.kind,
            WriteKind::Merge {
                resource_version: Some("41".into()),
                remove: vec!["old".into()],
            }
        );
        let meta = &w.secret.metadata;
        assert!(meta.owner_references.is_none(), "no owner is taken over");
        assert_eq!(
            meta.annotations.as_ref().unwrap()[MERGED_KEYS_ANNOTATION],
            "password"
        );
        assert_eq!(w.secret.data.as_ref().unwrap()["password"].0, b"hunter2");
        assert!(w.secret.type_.is_none(), "the owner's type is kept");
        // Already merged: nothing to send, and the next reconcile needs no
        // decryption.
        let mut done = target(&["password", "theirs"], &["password"]);
        done.merge.as_mut().unwrap().digest = w.digest;
        assert_eq!(
            write_kind(decide(&s, Some(&done), &keys(false), None)),
            WriteKind::Unchanged
        );
        let last = Outcome {
            generation: Some(3),
            key_epoch: 7,
            items: 1,
            digest: w.digest,
            needs: KeySet::EMPTY,
        };
        assert!(matches!(
            decide(&s, Some(&done), &keys(false), Some(last)),
            Plan::Current { items: 1 }
        ));
    }

    #[test]
    fn template_data_is_rendered_into_the_secret_and_failures_quote_no_value() {
        let mut s = good();
        s.template.data =
            Box::new([("url".into(), "postgres://app:{{ password }}@db/shop".into())]);
        let w = written(decide(&s, None, &keys(false), None));
        let data = w.secret.data.as_ref().unwrap();
        assert_eq!(data["url"].0, b"postgres://app:hunter2@db/shop");
        assert_eq!(data["password"].0, b"hunter2");
        assert_eq!(w.items, 2);
        for bad in ["{{ pasword }}", "{{ password | int }}", "{% for %}"] {
            s.template.data = Box::new([("url".into(), bad.into())]);
            let (reason, message) = refusal(decide(&s, None, &keys(false), None));
            assert_eq!(reason, "TemplateFailed", "{bad}");
            assert!(
                message.contains("app/db") && message.contains("url"),
                "{message}"
            );
            assert!(!message.contains("hunter2"), "{message}");
        }
    }
}
