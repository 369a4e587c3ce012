//! Every reason the controller reports a SealedSecret with: the `reason` of
//! its status condition, of its Events and of the `reason` label of its
//! metrics. One typed list, so a refusal cannot be spelt two ways, and
//! the series that exist at zero from the start come from the same list
//! as the refusals.
//!
//! The wire strings are an interface: alerts, dashboards, `kubectl wait`
//! and `kubectl get events --field-selector reason=…` match them, and
//! docs/operations.md (Troubleshooting) and docs/migration.md list them.
//! A test keeps those tables and [`Reason::ALL`] the same.

use std::fmt;

use coffer_format::envelope::OpenError;

/// What a reason asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Not a failure: the Secret is what the SealedSecret says, or another
    /// object manages it.
    Done,
    /// Needs a person: nothing changes until the SealedSecret, the key
    /// ring, the Secret in the way or the controller's flags do. The
    /// controller writes `Stalled=True` beside `Ready=False`.
    Stalled,
    /// Will pass by itself: the controller retries on its own. It writes
    /// `Reconciling=True` beside `Ready=Unknown`.
    Retrying,
}

/// Why a SealedSecret (Coffer's, or bitnami's with `--bitnami`) is, or is
/// not, unsealed into its Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The Secret is written and up to date.
    Unsealed,
    /// Sealed to key ids this cluster does not hold (or, for bitnami, no
    /// imported key opens the value at its place and scope).
    NoMatchingKey,
    /// Sealed only to a retired key.
    KeyRetired,
    /// A value was found where its binding does not allow.
    ScopeMismatch,
    /// Sealed by a newer Coffer format.
    UnsupportedVersion,
    /// Authentication failed: the ciphertext was altered or truncated.
    Tampered,
    /// Not a sealed value this version reads: bad base64, header, size.
    Malformed,
    /// The Secret's type is refused by `--secret-types-deny` or not in a
    /// non-empty `--secret-types-allow`.
    SecretTypeRefused,
    /// The API server refused the Secret built (422).
    SecretInvalid,
    /// A Secret of that name exists and belongs to someone else.
    SecretNotOwned,
    /// `spec.merge: true`, and the Secret to merge into does not allow it.
    MergeRefused,
    /// A `spec.template.data` template failed.
    TemplateFailed,
    /// The API server refused a write with an error that may pass (403
    /// from an admission policy, 5xx); the write is retried.
    Retrying,
    /// bitnami only: `spec.template.data`, `spec.data`, or a write bitnami
    /// does not make.
    Unsupported,
    /// bitnami only, no refusal: the Coffer SealedSecret of the same name
    /// manages the Secret; the bitnami object is left to delete.
    TakenOver,
}

impl Reason {
    /// Every reason, in the order above.
    pub const ALL: [Reason; 15] = [
        Reason::Unsealed,
        Reason::NoMatchingKey,
        Reason::KeyRetired,
        Reason::ScopeMismatch,
        Reason::UnsupportedVersion,
        Reason::Tampered,
        Reason::Malformed,
        Reason::SecretTypeRefused,
        Reason::SecretInvalid,
        Reason::SecretNotOwned,
        Reason::MergeRefused,
        Reason::TemplateFailed,
        Reason::Retrying,
        Reason::Unsupported,
        Reason::TakenOver,
    ];

    /// The wire string: the condition's and the Event's `reason`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Unsealed => "Unsealed",
            Reason::NoMatchingKey => "NoMatchingKey",
            Reason::KeyRetired => "KeyRetired",
            Reason::ScopeMismatch => "ScopeMismatch",
            Reason::UnsupportedVersion => "UnsupportedVersion",
            Reason::Tampered => "Tampered",
            Reason::Malformed => "Malformed",
            Reason::SecretTypeRefused => "SecretTypeRefused",
            Reason::SecretInvalid => "SecretInvalid",
            Reason::SecretNotOwned => "SecretNotOwned",
            Reason::MergeRefused => "MergeRefused",
            Reason::TemplateFailed => "TemplateFailed",
            Reason::Retrying => "Retrying",
            Reason::Unsupported => "Unsupported",
            Reason::TakenOver => "TakenOver",
        }
    }

    /// The value of the `reason` label in `coffer_unseal_total`,
    /// `coffer_bitnami_unseal_total` and `coffer_sealed_secrets`: the wire
    /// string, so a query and a status read the same word.
    pub const fn metric_label(self) -> &'static str {
        self.as_str()
    }

    /// What the reason asks for, as the controller treats it: every
    /// refusal is `Stalled` (`MergeRefused` and `SecretNotOwned` are also
    /// looked at again every 5 minutes, but only their Secret's owner can
    /// end them), only `Retrying` retries by itself.
    pub const fn class(self) -> Class {
        match self {
            Reason::Unsealed | Reason::TakenOver => Class::Done,
            Reason::Retrying => Class::Retrying,
            Reason::NoMatchingKey
            | Reason::KeyRetired
            | Reason::ScopeMismatch
            | Reason::UnsupportedVersion
            | Reason::Tampered
            | Reason::Malformed
            | Reason::SecretTypeRefused
            | Reason::SecretInvalid
            | Reason::SecretNotOwned
            | Reason::MergeRefused
            | Reason::TemplateFailed
            | Reason::Unsupported => Class::Stalled,
        }
    }

    /// Whether a `coffer.dev` SealedSecret's `Ready` condition can carry
    /// it. `coffer_unseal_total` has a series, at zero from the start, for
    /// each of these but `Retrying` (a retry is not an outcome).
    pub const fn on_coffer(self) -> bool {
        !matches!(self, Reason::Unsupported | Reason::TakenOver)
    }

    /// Whether a `bitnami.com` SealedSecret's outcome can be it (its
    /// `Synced=False` reason, or `Unsealed` when Coffer wrote or took over
    /// its Secret). `coffer_bitnami_unseal_total` has a series, at zero
    /// from the start, for each of these.
    pub const fn on_bitnami(self) -> bool {
        matches!(
            self,
            Reason::Unsealed
                | Reason::NoMatchingKey
                | Reason::ScopeMismatch
                | Reason::Tampered
                | Reason::Malformed
                | Reason::Unsupported
                | Reason::SecretTypeRefused
                | Reason::SecretNotOwned
                | Reason::TakenOver
        )
    }

    /// The reason a wire string names, if any.
    pub fn from_wire(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl From<&OpenError> for Reason {
    /// The reason of a value that did not open (the same word as
    /// [`OpenError::reason`]).
    fn from(e: &OpenError) -> Self {
        match e {
            OpenError::NoMatchingKey { .. } => Reason::NoMatchingKey,
            OpenError::KeyRetired(_) => Reason::KeyRetired,
            OpenError::ScopeMismatch { .. } => Reason::ScopeMismatch,
            OpenError::UnsupportedVersion(_) => Reason::UnsupportedVersion,
            OpenError::Tampered => Reason::Tampered,
            OpenError::TooLarge { .. }
            | OpenError::Base64
            | OpenError::Malformed(_)
            | OpenError::TooManyStanzas { .. }
            | OpenError::NoKeyId => Reason::Malformed,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn wire_strings_are_unique_and_read_back() {
        let wire: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(wire.len(), Reason::ALL.len(), "{wire:?}");
        let variants: BTreeSet<Reason> = Reason::ALL.into_iter().collect();
        assert_eq!(variants.len(), Reason::ALL.len());
        for r in Reason::ALL {
            assert_eq!(Reason::from_wire(r.as_str()), Some(r));
            assert_eq!(r.to_string(), r.as_str());
            assert_eq!(r.metric_label(), r.as_str());
            // A condition's reason: CamelCase letters, as Kubernetes asks.
            assert!(
                r.as_str().chars().all(|c| c.is_ascii_alphabetic())
                    && r.as_str().starts_with(|c: char| c.is_ascii_uppercase()),
                "{r}"
            );
        }
        assert_eq!(Reason::from_wire("Pending"), None);
    }

    /// The zero series the controller creates today, from its own lists:
    /// the reasons of each kind of SealedSecret give the same sets.
    #[test]
    fn the_reasons_of_each_kind_are_the_controllers_series() {
        let coffer: BTreeSet<&str> = Reason::ALL
            .into_iter()
            .filter(|r| r.on_coffer() && r.class() != Class::Retrying)
            .map(Reason::metric_label)
            .collect();
        let unseal_total = [
            "Unsealed",
            "NoMatchingKey",
            "KeyRetired",
            "ScopeMismatch",
            "UnsupportedVersion",
            "Tampered",
            "Malformed",
            "SecretTypeRefused",
            "SecretInvalid",
            "SecretNotOwned",
            "MergeRefused",
            "TemplateFailed",
        ];
        assert_eq!(coffer, unseal_total.into_iter().collect());
        let bitnami: BTreeSet<&str> = Reason::ALL
            .into_iter()
            .filter(|r| r.on_bitnami())
            .map(Reason::metric_label)
            .collect();
        let bitnami_unseal_total = [
            "Unsealed",
            "NoMatchingKey",
            "ScopeMismatch",
            "Tampered",
            "Malformed",
            "Unsupported",
            "SecretTypeRefused",
            "SecretNotOwned",
            "TakenOver",
        ];
        assert_eq!(bitnami, bitnami_unseal_total.into_iter().collect());
    }

    #[test]
    fn only_refusals_are_stalled() {
        for r in Reason::ALL {
            let expected = match r {
                Reason::Unsealed | Reason::TakenOver => Class::Done,
                Reason::Retrying => Class::Retrying,
                _ => Class::Stalled,
            };
            assert_eq!(r.class(), expected, "{r}");
        }
    }

    /// Every refusal of a value the format makes has the same word here as
    /// in the format.
    #[test]
    fn a_format_refusal_has_the_formats_word() {
        let id = coffer_format::SecretKey::generate().id();
        for e in [
            OpenError::TooLarge { len: 1 },
            OpenError::Base64,
            OpenError::Malformed("x"),
            OpenError::TooManyStanzas { count: 1 },
            OpenError::UnsupportedVersion("coffer.dev/v9".into()),
            OpenError::NoKeyId,
            OpenError::NoMatchingKey {
                sealed_to: vec![id],
                held: vec![],
            },
            OpenError::KeyRetired(id),
            OpenError::Tampered,
            OpenError::ScopeMismatch {
                sealed_for: "a".into(),
                found_at: "b".into(),
            },
        ] {
            assert_eq!(Reason::from(&e), e.reason(), "{e}");
        }
    }
}
