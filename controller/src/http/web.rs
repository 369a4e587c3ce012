//! `--web`: the page that seals in the browser (coffer-web), at `/ui/`.
//! Its files are compiled in; each answer carries a strict
//! Content-Security-Policy (own files only, WebAssembly, no inline script,
//! no frames), `nosniff`, no referrer, and an ETag so that a browser
//! revalidates instead of keeping an old page after an upgrade. The routes
//! share the main port's limits (connections, per-client rate, timeout).

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coffer_web::assets::{self, Asset};
use sha2::{Digest as _, Sha256};

/// The headers every `/ui` answer carries.
fn guarded(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(assets::CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    );
    resp
}

/// Each file's ETag: the first 16 bytes of its SHA-256, in hex.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        assets::ASSETS
            .iter()
            .map(|a| {
                let sum = Sha256::digest(a.bytes);
                let hex: String = sum[..16].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    });
    let i = assets::ASSETS
        .iter()
        .position(|a| a.name == asset.name)
        .unwrap_or(0);
    &tags[i]
}

fn serve(asset: Option<&'static Asset>, headers: &HeaderMap) -> Response {
    let Some(asset) = asset else {
        return guarded((StatusCode::NOT_FOUND, "no such file\n").into_response());
    };
    let tag = etag(asset);
    let cache = [
        (header::ETAG, tag),
        // Revalidate every time: the names carry no hash, and an upgraded
        // controller must not be paired with an old module.
        (header::CACHE_CONTROL, "no-cache"),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag))
    {
        return guarded((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    guarded(
        (
            cache,
            [(header::CONTENT_TYPE, asset.content_type)],
            asset.bytes,
        )
            .into_response(),
    )
}

/// `GET /ui`: to `/ui/`, so that the page's relative links resolve.
pub(super) async fn redirect() -> Response {
    guarded((StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, "/ui/")]).into_response())
}

/// `GET /ui/`: the page.
pub(super) async fn page(headers: HeaderMap) -> Response {
    serve(assets::get(""), &headers)
}

/// `GET /ui/FILE`: one of its files.
pub(super) async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(assets::get(&name), &headers)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::{ClientLimiter, HttpState, Limits, Opening, router};
    use crate::keys::ring::Keys;
    use crate::metrics::Metrics;
    use crate::pool::UnsealPool;
    use crate::reconcile::secret_types::SecretTypePolicy;

    fn app(web: bool) -> axum::Router {
        let mut state = HttpState::new(
            Keys::new(),
            Arc::new(Metrics::default()),
            Arc::new(AtomicBool::new(true)),
            None,
            ClientLimiter::new(0.0, 1),
            Opening {
                secret_types: Arc::new(SecretTypePolicy::new(&[], &[])),
                pool: UnsealPool::new(1),
            },
            Limits::default(),
        );
        state.web = web;
        router(Arc::new(state))
    }

    async fn get(web: bool, path: &str, etag: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(tag) = etag {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        app(web)
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn header_of<'a>(resp: &'a Response, name: &str) -> &'a str {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    #[tokio::test]
    async fn the_page_is_off_by_default() {
        for path in ["/ui", "/ui/", "/ui/app.js"] {
            assert_eq!(get(false, path, None).await.status(), StatusCode::NOT_FOUND);
        }
    }

    #[tokio::test]
    async fn every_file_carries_the_strict_policy() {
        let to = get(true, "/ui", None).await;
        assert_eq!(to.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header_of(&to, "location"), "/ui/");
        for (path, ty) in [
            ("/ui/", "text/html; charset=utf-8"),
            ("/ui/index.html", "text/html; charset=utf-8"),
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/coffer_web.js", "text/javascript; charset=utf-8"),
            ("/ui/coffer_web_bg.wasm", "application/wasm"),
            ("/ui/style.css", "text/css; charset=utf-8"),
        ] {
            let resp = get(true, path, None).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&resp, "content-type"), ty, "{path}");
            let csp = header_of(&resp, "content-security-policy");
            assert!(csp.starts_with("default-src 'self';"), "{csp}");
            assert!(
                csp.contains("script-src 'self' 'wasm-unsafe-eval';"),
                "{csp}"
            );
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"),
                "{csp}"
            );
            assert_eq!(header_of(&resp, "x-content-type-options"), "nosniff");
            assert_eq!(header_of(&resp, "cache-control"), "no-cache");
            assert_eq!(header_of(&resp, "referrer-policy"), "no-referrer");
        }
    }

    #[tokio::test]
    async fn a_known_etag_is_not_sent_again_and_nothing_else_is_served() {
        let first = get(true, "/ui/app.js", None).await;
        let tag = header_of(&first, "etag").to_string();
        let again = get(true, "/ui/app.js", Some(&tag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let other = get(true, "/ui/app.js", Some("\"0000\"")).await;
        assert_eq!(other.status(), StatusCode::OK);
        for path in [
            "/ui/..%2FCargo.toml",
            "/ui/%2e%2e/v1/recipients",
            "/ui/../metrics",
            "/ui/nope.js",
            "/ui/app.js/x",
        ] {
            let resp = get(true, path, None).await;
            assert!(
                resp.status() == StatusCode::NOT_FOUND,
                "{path}: {}",
                resp.status()
            );
        }
    }
}
