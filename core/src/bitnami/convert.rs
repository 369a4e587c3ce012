//! A whole bitnami SealedSecret: unsealed into the Secret bitnami's
//! controller would write, or converted into a Coffer SealedSecret holding
//! the same values for the same places.

use std::collections::BTreeMap;

use coffer_format::envelope::{self, Location};
use coffer_format::key::PublicKey;
use zeroize::Zeroizing;

use super::{At, BitnamiKey, BitnamiOpenError, BitnamiSealedSecret, open};
use crate::api::{DEFAULT_SECRET_TYPE, SecretTemplate, TemplateMetadata};
use crate::reason::Reason;
use crate::transform::DesiredSecret;

/// Why a bitnami SealedSecret as a whole was not unsealed or converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BitnamiUnsealError {
    /// `spec.data`: bitnami's pre-0.9 format.
    #[error(
        "spec.data (the pre-0.9 whole-Secret format) is not supported; re-seal it with kubeseal first"
    )]
    LegacyData,
    /// `spec.template.data`: Go templates, refused rather than guessed.
    #[error("spec.template.data (Go templates over the values) is not supported by this Coffer")]
    TemplateData,
    /// More items than a SealedSecret may hold; none was opened.
    #[error("{count} items; at most {} are accepted", crate::transform::MAX_ITEMS)]
    TooManyItems {
        /// How many it holds.
        count: usize,
    },
    /// The items that did not open (item key, why), in item-key order.
    #[error("{}", .0.iter().map(|(k, e)| format!("item {k:?}: {e}")).collect::<Vec<_>>().join("; "))]
    Items(Vec<(String, BitnamiOpenError)>),
}

impl BitnamiUnsealError {
    /// The status reason: that of the first failing item.
    pub fn reason(&self) -> Reason {
        match self {
            BitnamiUnsealError::LegacyData | BitnamiUnsealError::TemplateData => {
                Reason::Unsupported
            }
            BitnamiUnsealError::TooManyItems { .. } => Reason::Malformed,
            BitnamiUnsealError::Items(items) => {
                items.first().map_or(Reason::Malformed, |(_, e)| e.reason())
            }
        }
    }
}

impl BitnamiSealedSecret {
    fn check_supported(&self) -> Result<(), BitnamiUnsealError> {
        if self.spec.data.as_deref().is_some_and(|d| !d.is_empty()) {
            return Err(BitnamiUnsealError::LegacyData);
        }
        if self
            .spec
            .template
            .as_ref()
            .and_then(|t| t.data.as_ref())
            .is_some_and(|d| !d.is_empty())
        {
            return Err(BitnamiUnsealError::TemplateData);
        }
        if self.spec.encrypted_data.len() > crate::transform::MAX_ITEMS {
            return Err(BitnamiUnsealError::TooManyItems {
                count: self.spec.encrypted_data.len(),
            });
        }
        Ok(())
    }

    /// Opens every item (all or nothing; the error lists every item that
    /// did not open).
    pub fn open_all(
        &self,
        keys: &[BitnamiKey],
    ) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, BitnamiUnsealError> {
        self.check_supported()?;
        let (namespace, name, scope) = self.place();
        let at = At {
            namespace,
            name,
            scope,
        };
        let mut data = BTreeMap::new();
        let mut failed = Vec::new();
        for (k, v) in &self.spec.encrypted_data {
            match open(v, at, keys) {
                Ok(v) => {
                    data.insert(k.clone(), v);
                }
                Err(e) => failed.push((k.clone(), e)),
            }
        }
        if failed.is_empty() {
            Ok(data)
        } else {
            Err(BitnamiUnsealError::Items(failed))
        }
    }

    /// The Secret bitnami's controller makes of this SealedSecret: the
    /// template's labels, annotations, type and immutability, name and
    /// namespace forced to the SealedSecret's.
    pub fn unseal(&self, keys: &[BitnamiKey]) -> Result<DesiredSecret, BitnamiUnsealError> {
        let data = self.open_all(keys)?;
        let template = self.spec.template.clone().unwrap_or_default();
        let meta = template.metadata.unwrap_or_default();
        Ok(DesiredSecret {
            namespace: self.metadata.namespace.clone().unwrap_or_default(),
            name: self.metadata.name.clone().unwrap_or_default(),
            type_: template
                .type_
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| DEFAULT_SECRET_TYPE.into()),
            immutable: template.immutable,
            labels: meta.labels.unwrap_or_default(),
            annotations: meta.annotations.unwrap_or_default(),
            data,
            opened_by: Vec::new(),
            needs: Vec::new(),
        })
    }
}

/// Converts a bitnami SealedSecret into a Coffer SealedSecret holding the
/// same values, sealed to `recipients` with the same scope and template.
/// No value changes its scope or place: each is sealed for exactly where
/// it opened. The object's own labels and annotations are kept.
pub fn convert(
    bitnami: &BitnamiSealedSecret,
    keys: &[BitnamiKey],
    recipients: &[PublicKey],
) -> Result<crate::SealedSecret, BitnamiConvertError> {
    let values = bitnami
        .open_all(keys)
        .map_err(BitnamiConvertError::Unseal)?;
    let (namespace, name, scope) = bitnami.place();
    let mut encrypted = BTreeMap::new();
    for (k, v) in &values {
        let sealed = envelope::seal(
            v,
            scope.coffer(),
            Location {
                namespace,
                name,
                key: k,
            },
            recipients,
        )
        .map_err(|e| BitnamiConvertError::Seal {
            key: k.clone(),
            error: e.to_string(),
        })?;
        encrypted.insert(k.clone(), sealed);
    }
    drop(values);
    let t = bitnami.spec.template.clone().unwrap_or_default();
    let meta = t.metadata.unwrap_or_default();
    let labels = meta.labels.unwrap_or_default();
    let annotations = meta.annotations.unwrap_or_default();
    let template = SecretTemplate {
        type_: t.type_.filter(|t| !t.is_empty()),
        immutable: t.immutable,
        metadata: (!labels.is_empty() || !annotations.is_empty()).then_some(TemplateMetadata {
            labels,
            annotations,
        }),
        // bitnami's Go templates are refused before this point.
        data: Default::default(),
    };
    let mut out = crate::SealedSecret::new(
        name,
        crate::SealedSecretSpec {
            encrypted_data: encrypted,
            template: (template != SecretTemplate::default()).then_some(template),
            // bitnami's controller gives the Secret an owner reference and
            // writes the whole Secret: the defaults.
            deletion_policy: None,
            merge: None,
        },
    );
    out.metadata.namespace = bitnami.metadata.namespace.clone();
    out.metadata.labels = bitnami.metadata.labels.clone().filter(|l| !l.is_empty());
    out.metadata.annotations = bitnami
        .metadata
        .annotations
        .clone()
        .filter(|a| !a.is_empty());
    Ok(out)
}

/// Why a bitnami SealedSecret was not converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BitnamiConvertError {
    /// The bitnami values did not all open.
    #[error("{0}")]
    Unseal(BitnamiUnsealError),
    /// A value opened but could not be sealed for Coffer.
    #[error("item {key:?}: sealing for Coffer failed: {error}")]
    Seal {
        /// The item's key.
        key: String,
        /// Why sealing failed.
        error: String,
    },
}

impl BitnamiConvertError {
    /// The status reason: the unsealing's, or `Malformed` when sealing
    /// for Coffer failed.
    pub fn reason(&self) -> Reason {
        match self {
            BitnamiConvertError::Unseal(e) => e.reason(),
            BitnamiConvertError::Seal { .. } => Reason::Malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use coffer_format::key::SecretKey;
    use coffer_format::keyring::Keyring;

    use super::super::BitnamiScope;
    use super::super::fixtures::{PLAINTEXT, bitnami_doc, keys};
    use super::*;

    #[test]
    fn converting_keeps_scope_template_and_values() {
        let coffer = SecretKey::generate();
        for scope in BitnamiScope::ALL {
            let b = bitnami_doc(scope);
            let c = convert(&b, &keys(), &[coffer.public().clone()]).unwrap();
            assert_eq!(c.metadata.namespace.as_deref(), Some("shop"));
            let t = c.spec.template.as_ref().unwrap();
            assert_eq!(t.type_.as_deref(), Some("kubernetes.io/basic-auth"));
            assert_eq!(t.metadata.as_ref().unwrap().labels["app"], "shop");
            let ring = Keyring::from_keys([coffer.clone()]);
            let desired = crate::transform::unseal(&c.view(), &ring).unwrap();
            assert_eq!(desired.data["password"].as_slice(), PLAINTEXT);
            let from_bitnami = b.unseal(&keys()).unwrap();
            assert_eq!(
                desired.to_secret(None),
                from_bitnami.to_secret(None),
                "{scope}"
            );
            // Same scope: a converted value moved where its bitnami scope
            // did not allow is refused.
            let text = &c.spec.encrypted_data["password"];
            let moved = envelope::open(
                text,
                Location {
                    namespace: "other",
                    name: "db",
                    key: "password",
                },
                &ring,
            );
            assert_eq!(moved.is_ok(), scope == BitnamiScope::ClusterWide, "{scope}");
        }
    }

    #[test]
    fn templates_and_legacy_data_are_refused_not_guessed() {
        let mut b = bitnami_doc(BitnamiScope::Strict);
        b.spec.template.as_mut().unwrap().data = Some(BTreeMap::from([(
            "url".to_string(),
            Some("{{ .password }}".to_string()),
        )]));
        assert_eq!(
            b.unseal(&keys()).unwrap_err(),
            BitnamiUnsealError::TemplateData
        );
        let mut b = bitnami_doc(BitnamiScope::Strict);
        b.spec.data = Some("AAAA".into());
        assert_eq!(b.unseal(&keys()).unwrap_err().reason(), "Unsupported");
    }
}
