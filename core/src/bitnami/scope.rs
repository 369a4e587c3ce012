//! bitnami's three scopes: which annotation picks each, the RSA-OAEP label
//! that binds a value to it, and the Coffer scope that allows the same
//! places.

use std::fmt;

use coffer_format::envelope::Scope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{CLUSTER_WIDE_ANNOTATION, NAMESPACE_WIDE_ANNOTATION};

/// bitnami's three scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BitnamiScope {
    /// The default: the value opens only at the namespace and name it was
    /// sealed for.
    Strict,
    /// `sealedsecrets.bitnami.com/namespace-wide`: under any name in the
    /// namespace it was sealed for.
    NamespaceWide,
    /// `sealedsecrets.bitnami.com/cluster-wide`: anywhere.
    ClusterWide,
}

impl BitnamiScope {
    /// The scope bitnami's controller uses: the annotations on the
    /// SealedSecret's own metadata (never the template's), cluster-wide
    /// first.
    pub fn of(meta: &ObjectMeta) -> Self {
        let on = |a: &str| {
            meta.annotations
                .as_ref()
                .and_then(|m| m.get(a))
                .is_some_and(|v| v == "true")
        };
        if on(CLUSTER_WIDE_ANNOTATION) {
            BitnamiScope::ClusterWide
        } else if on(NAMESPACE_WIDE_ANNOTATION) {
            BitnamiScope::NamespaceWide
        } else {
            BitnamiScope::Strict
        }
    }

    /// The RSA-OAEP label that binds a value to this scope at a place.
    pub fn label(self, namespace: &str, name: &str) -> Vec<u8> {
        match self {
            BitnamiScope::Strict => format!("{namespace}/{name}").into_bytes(),
            BitnamiScope::NamespaceWide => namespace.as_bytes().to_vec(),
            BitnamiScope::ClusterWide => Vec::new(),
        }
    }

    /// The Coffer scope that allows exactly the same places.
    pub fn coffer(self) -> Scope {
        match self {
            BitnamiScope::Strict => Scope::Strict,
            BitnamiScope::NamespaceWide => Scope::Namespace,
            BitnamiScope::ClusterWide => Scope::Cluster,
        }
    }

    /// bitnami's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            BitnamiScope::Strict => "strict",
            BitnamiScope::NamespaceWide => "namespace-wide",
            BitnamiScope::ClusterWide => "cluster-wide",
        }
    }

    /// Every scope, strict first.
    pub(super) const ALL: [BitnamiScope; 3] = [
        BitnamiScope::Strict,
        BitnamiScope::NamespaceWide,
        BitnamiScope::ClusterWide,
    ];
}

impl fmt::Display for BitnamiScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
