//! Counts the requests sent to the Kubernetes API by verb and response
//! code, as `coffer_kube_api_requests_total`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Uri};
use tower::{Layer, Service};

use crate::metrics::Metrics;

/// The layer that counts.
#[derive(Clone)]
pub struct CountLayer(pub Arc<Metrics>);

impl<S> Layer<S> for CountLayer {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The counting service.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<http::Request<B>> for Counted<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let verb = verb(req.method(), req.uri());
        let secrets = touches_secrets(req.uri());
        let metrics = self.metrics.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let answer = answer.await;
            metrics.api_request(verb, answer.as_ref().ok().map(|r| r.status().as_u16()));
            if secrets {
                metrics.secret_request(verb);
            }
            answer
        })
    }
}

/// Whether a request is about Secrets or SealedSecrets (not the Lease, key
/// ConfigMap or Events): what "writes nothing" after a restart is about.
pub fn touches_secrets(uri: &Uri) -> bool {
    let path = uri.path();
    path.contains("/secrets") || path.contains("/sealedsecrets")
}

/// The verb of a request as the API server's own metrics name it: GET on
/// a collection is LIST, with `watch=true` WATCH, and DELETE on a
/// collection DELETECOLLECTION.
pub fn verb(method: &Method, uri: &Uri) -> &'static str {
    let collection = || is_collection(uri.path());
    match *method {
        Method::GET => {
            let watch = uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
            if watch {
                "WATCH"
            } else if collection() {
                "LIST"
            } else {
                "GET"
            }
        }
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE if collection() => "DELETECOLLECTION",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// Whether a path names a collection (`/api/v1/namespaces/ns/secrets`)
/// rather than one object or its subresource.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return false,
    };
    let rest = match rest {
        ["namespaces", _namespace, resource @ ..] if !resource.is_empty() => resource,
        whole => whole,
    };
    rest.len() == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(method: Method, uri: &str) -> &'static str {
        verb(&method, &uri.parse().unwrap())
    }

    #[test]
    fn secret_requests_are_told_from_the_lease_and_events() {
        for (uri, secrets) in [
            ("/api/v1/namespaces/a/secrets/db", true),
            ("/api/v1/namespaces/a/secrets", true),
            (
                "/apis/coffer.dev/v1alpha1/namespaces/a/sealedsecrets/db/status",
                true,
            ),
            (
                "/apis/coordination.k8s.io/v1/namespaces/coffer-system/leases/coffer-controller",
                false,
            ),
            ("/apis/events.k8s.io/v1/namespaces/a/events", false),
            (
                "/api/v1/namespaces/coffer-system/configmaps/coffer-recipients",
                false,
            ),
        ] {
            assert_eq!(touches_secrets(&uri.parse().unwrap()), secrets, "{uri}");
        }
    }

    #[test]
    fn verbs_are_the_api_servers() {
        use Method as M;
        let cases = [
            (
                M::GET,
                "/apis/coffer.dev/v1alpha1/sealedsecrets?limit=500",
                "LIST",
            ),
            (
                M::GET,
                "/apis/coffer.dev/v1alpha1/namespaces/a/sealedsecrets",
                "LIST",
            ),
            (
                M::GET,
                "/apis/coffer.dev/v1alpha1/sealedsecrets?watch=true&resourceVersion=5",
                "WATCH",
            ),
            (
                M::GET,
                "/api/v1/namespaces/a/secrets?labelSelector=x&watch=1",
                "WATCH",
            ),
            (M::GET, "/api/v1/namespaces/a/secrets/db", "GET"),
            (M::GET, "/api/v1/namespaces", "LIST"),
            (M::GET, "/api/v1/namespaces/a", "GET"),
            (
                M::GET,
                "/apis/coordination.k8s.io/v1/namespaces/s/leases/coffer-controller",
                "GET",
            ),
            (M::GET, "/version", "GET"),
            (M::POST, "/api/v1/namespaces/a/secrets", "POST"),
            (M::PUT, "/api/v1/namespaces/a/secrets/db", "PUT"),
            (
                M::PATCH,
                "/apis/coffer.dev/v1alpha1/namespaces/a/sealedsecrets/db/status",
                "PATCH",
            ),
            (M::DELETE, "/api/v1/namespaces/a/secrets/db", "DELETE"),
            (
                M::DELETE,
                "/api/v1/namespaces/a/secrets",
                "DELETECOLLECTION",
            ),
            (M::OPTIONS, "/api/v1/namespaces/a/secrets", "OTHER"),
        ];
        for (method, uri, want) in cases {
            assert_eq!(v(method.clone(), uri), want, "{method} {uri}");
        }
    }
}
