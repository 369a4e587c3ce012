//! Which Secret types a SealedSecret may ask for (`spec.template.type`).
//!
//! Whoever may create a SealedSecret in a namespace could otherwise have the
//! controller write any type of Secret there, for instance a
//! `kubernetes.io/service-account-token` Secret, which makes Kubernetes
//! issue a long-lived token for any ServiceAccount of that namespace, or a
//! `coffer.dev/sealing-key` Secret, which the controller would load as a
//! sealing key if it landed in its key namespace. The policy is checked
//! before any value is decrypted.

use coffer_core::reason::Reason;
use std::collections::BTreeSet;
use std::fmt;

/// The type a Secret gets when the template names none (or an empty one,
/// which the API server defaults the same way).
pub const DEFAULT_TYPE: &str = "Opaque";

/// Types refused unless `--secret-types-deny` says otherwise.
pub const DEFAULT_DENY: &str =
    "kubernetes.io/service-account-token,coffer.dev/sealing-key,coffer.dev/bitnami-key";

/// `--secret-types-allow` and `--secret-types-deny`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretTypePolicy {
    /// Empty: every type not denied.
    allow: BTreeSet<String>,
    deny: BTreeSet<String>,
}

/// Why a type is refused; its `Display` is the status message's tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeRefused {
    Denied { type_: String },
    NotAllowed { type_: String, allowed: Vec<String> },
}

impl fmt::Display for TypeRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeRefused::Denied { type_ } => write!(
                f,
                "Secret type {type_:?} is refused by the controller's --secret-types-deny \
                 (COFFER_SECRET_TYPES_DENY); remove it there to allow it"
            ),
            TypeRefused::NotAllowed { type_, allowed } => write!(
                f,
                "Secret type {type_:?} is not in the controller's --secret-types-allow \
                 (COFFER_SECRET_TYPES_ALLOW: {}); add it there to allow it",
                allowed.join(",")
            ),
        }
    }
}

impl std::error::Error for TypeRefused {}

impl TypeRefused {
    /// The status reason and metric label.
    pub const REASON: Reason = Reason::SecretTypeRefused;
}

fn set(types: &[String]) -> BTreeSet<String> {
    types
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

impl SecretTypePolicy {
    /// From the flags' lists; blank entries are ignored, so
    /// `--secret-types-deny=` denies nothing.
    pub fn new(allow: &[String], deny: &[String]) -> Self {
        SecretTypePolicy {
            allow: set(allow),
            deny: set(deny),
        }
    }

    /// Whether a SealedSecret whose template says `type_` may be unsealed.
    /// A denied type is refused even when it is also allowed.
    pub fn check(&self, type_: Option<&str>) -> Result<(), TypeRefused> {
        let t = match type_.map(str::trim) {
            None | Some("") => DEFAULT_TYPE,
            Some(t) => t,
        };
        if self.deny.contains(t) {
            return Err(TypeRefused::Denied { type_: t.into() });
        }
        if !self.allow.is_empty() && !self.allow.contains(t) {
            return Err(TypeRefused::NotAllowed {
                type_: t.into(),
                allowed: self.allow.iter().cloned().collect(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    fn defaults() -> SecretTypePolicy {
        SecretTypePolicy::new(&[], &list(DEFAULT_DENY))
    }

    #[test]
    fn by_default_service_account_tokens_and_sealing_keys_are_refused_and_other_types_pass() {
        let p = defaults();
        for t in [
            "kubernetes.io/service-account-token",
            "coffer.dev/sealing-key",
            "coffer.dev/bitnami-key",
        ] {
            assert_eq!(
                p.check(Some(t)),
                Err(TypeRefused::Denied { type_: t.into() })
            );
        }
        for t in [
            None,
            Some(""),
            Some("Opaque"),
            Some("kubernetes.io/tls"),
            Some("kubernetes.io/dockerconfigjson"),
            Some("example.com/anything"),
        ] {
            assert_eq!(p.check(t), Ok(()), "{t:?}");
        }
    }

    #[test]
    fn an_allow_list_refuses_every_type_not_on_it_and_an_unset_type_counts_as_opaque() {
        let p = SecretTypePolicy::new(&list("Opaque,kubernetes.io/tls"), &[]);
        assert_eq!(p.check(None), Ok(()));
        assert_eq!(p.check(Some("")), Ok(()));
        assert_eq!(p.check(Some("kubernetes.io/tls")), Ok(()));
        let e = p.check(Some("kubernetes.io/basic-auth")).unwrap_err();
        assert_eq!(
            e,
            TypeRefused::NotAllowed {
                type_: "kubernetes.io/basic-auth".into(),
                allowed: list("Opaque,kubernetes.io/tls"),
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("\"kubernetes.io/basic-auth\""), "{msg}");
        assert!(msg.contains("--secret-types-allow"), "{msg}");

        // No Opaque on the list: an untyped SealedSecret is refused as Opaque.
        let tls_only = SecretTypePolicy::new(&list("kubernetes.io/tls"), &[]);
        assert!(matches!(
            tls_only.check(None),
            Err(TypeRefused::NotAllowed { type_, .. }) if type_ == "Opaque"
        ));
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = SecretTypePolicy::new(
            &list("Opaque,kubernetes.io/service-account-token"),
            &list("kubernetes.io/service-account-token"),
        );
        let msg = p
            .check(Some("kubernetes.io/service-account-token"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--secret-types-deny"), "{msg}");
        assert!(msg.contains("COFFER_SECRET_TYPES_DENY"), "{msg}");
    }

    #[test]
    fn an_empty_deny_list_allows_every_type() {
        let p = SecretTypePolicy::new(&[], &[String::new()]);
        assert_eq!(p.check(Some("kubernetes.io/service-account-token")), Ok(()));
        assert_eq!(p, SecretTypePolicy::default());
    }
}
