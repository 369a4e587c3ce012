//! The controller's one way to the API server for objects that carry
//! values: every Secret it reads or writes, every status and Event goes
//! through here, keeping no copy of what it sends and reading back only what
//! the controller uses.
//!
//! kube's typed `Api::create`, `replace` and `patch_status` serialize the
//! object into a buffer that is dropped as it is, and parse the whole object
//! the API server sends back. For a Secret both are its values: the request
//! body holds them in base64, and the response is decoded into byte buffers
//! that nobody wipes (and, should it fail to parse, kube logs the response
//! text). Here the request body is wiped when the HTTP stack lets go of it,
//! the response body is wiped after it is read, and only `metadata` is
//! parsed from it: no values are decoded, and the reconcile path spends no
//! CPU on fields it throws away.

use coffer_core::wipe::{self, WireSecret};
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PostParams, Preconditions};
use kube::client::Body;
use kube::core::{Request, Status};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state::objects::OwnedSecret;
use zeroize::Zeroizing;

/// What a write answers with, as far as the controller reads it: nothing.
/// The answer is parsed only to check it is JSON, into nothing kept.
pub type Written = serde::de::IgnoredAny;

/// Serializes `obj` as JSON into a buffer that is wiped on drop.
fn body(obj: &impl Serialize) -> Result<Zeroizing<Vec<u8>>, kube::Error> {
    coffer_core::wipe::to_json(obj).map_err(kube::Error::SerdeError)
}

/// Sends `obj` as the body of a request built with an empty one, so no
/// copy of the body is made and none is dropped unwiped if building fails.
async fn send_object(
    client: &Client,
    built: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    obj: &impl Serialize,
    verb: &'static str,
) -> Result<Written, kube::Error> {
    let mut data = body(obj)?;
    let mut req = built.map_err(kube::Error::BuildRequest)?;
    *req.body_mut() = std::mem::take(&mut *data);
    send(client, req, verb).await
}

tokio::task_local! {
    /// The last request the API server refused in this task, while a
    /// caller collects it ([`noting_failures`]).
    static FAILED: std::cell::RefCell<Option<FailedRequest>>;
}

/// A request the API server refused, for messages: its verb and what it
/// was about (`create secrets in namespace shop`), and the HTTP code. No
/// body, no free text from the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRequest {
    pub code: u16,
    pub what: String,
}

impl std::fmt::Display for FailedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

/// Runs `work`, and returns with its output the last request the API
/// server refused while it ran (through this module, or
/// [`note_failure`]), so a status can say which request failed without
/// every error carrying it.
pub async fn noting_failures<F: std::future::Future>(
    work: F,
) -> (F::Output, Option<FailedRequest>) {
    FAILED
        .scope(std::cell::RefCell::new(None), async {
            let out = work.await;
            (out, FAILED.with(|f| f.borrow_mut().take()))
        })
        .await
}

/// Records a refused request for [`noting_failures`]; nothing outside it.
pub fn note_failure(verb: &str, path: &str, code: u16) {
    let what = describe(verb, path);
    let _ = FAILED.try_with(|f| *f.borrow_mut() = Some(FailedRequest { code, what }));
}

/// `create secrets in namespace shop`, `get secrets shop/db`, `patch the
/// status of sealedsecrets.coffer.dev shop/db`, from a request's verb and
/// URL path; the path itself when it is not a namespaced object's.
fn describe(verb: &str, path: &str) -> String {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return format!("{verb} {path}"),
    };
    let with_group = |resource: &str| {
        if group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
        }
    };
    let verb = verb.strip_suffix("_status").unwrap_or(verb);
    match rest {
        ["namespaces", ns, resource] => {
            format!("{verb} {} in namespace {ns}", with_group(resource))
        }
        ["namespaces", ns, resource, name] => {
            format!("{verb} {} {ns}/{name}", with_group(resource))
        }
        ["namespaces", ns, resource, name, sub] => {
            format!("{verb} the {sub} of {} {ns}/{name}", with_group(resource))
        }
        _ => format!("{verb} {path}"),
    }
}

/// Sends a request; returns the answer parsed as `T` (for writes,
/// nothing: [`Written`]), or the API server's `Status` as
/// [`kube::Error::Api`].
async fn send<T: DeserializeOwned>(
    client: &Client,
    req: http::Request<Vec<u8>>,
    verb: &'static str,
) -> Result<T, kube::Error> {
    let (mut parts, data) = req.into_parts();
    let path = parts.uri.path().to_string();
    parts.extensions.insert(verb);
    let data = wipe::body(data);
    let res = client
        .send(http::Request::from_parts(parts, Body::from(data)))
        .await?;
    let code = res.status();
    let mut bytes = res.into_body().collect().await?.to_bytes();
    let result = if code.is_client_error() || code.is_server_error() {
        let status = serde_json::from_slice::<Status>(&bytes).unwrap_or_else(|_| {
            // Not a Status (a proxy's page, say): say only the code, never
            // the body, which may echo what was sent.
            Status::failure(
                &format!("the API server answered {code}"),
                "Failed to parse error data",
            )
            .with_code(code.as_u16())
        });
        note_failure(verb, &path, code.as_u16());
        Err(kube::Error::Api(status.boxed()))
    } else {
        serde_json::from_slice::<T>(&bytes).map_err(kube::Error::SerdeError)
    };
    wipe::bytes(&mut bytes);
    result
}

fn request<K: Resource<DynamicType = ()>>(ns: &str) -> Request {
    Request::new(K::url_path(&(), Some(ns)))
}

/// `POST`s `obj` as a new `K` in `ns`.
pub(crate) async fn create<K: Resource<DynamicType = ()>>(
    client: &Client,
    ns: &str,
    obj: &impl Serialize,
) -> Result<Written, kube::Error> {
    let built = request::<K>(ns).create(&PostParams::default(), Vec::new());
    send_object(client, built, obj, "create").await
}

/// `POST`s a Secret through [`WireSecret`], so its values leave no unwiped
/// base64 copy behind. Every Secret the controller writes goes this way.
pub async fn create_secret(
    client: &Client,
    ns: &str,
    secret: &Secret,
) -> Result<Written, kube::Error> {
    create::<Secret>(client, ns, &WireSecret(secret)).await
}

/// `PUT`s a Secret through [`WireSecret`] (it must carry the
/// resourceVersion it replaces).
pub async fn replace_secret(
    client: &Client,
    ns: &str,
    name: &str,
    secret: &Secret,
) -> Result<Written, kube::Error> {
    replace::<Secret>(client, ns, name, &WireSecret(secret)).await
}

/// Merge-patches keys into Secret `ns/name` of another owner through
/// [`coffer_core::wipe::WireMergePatch`] (its values leave no unwiped copy
/// behind): sets the data of `secret`, deletes `remove`, at
/// `resource_version`.
pub async fn merge_into_secret(
    client: &Client,
    ns: &str,
    name: &str,
    secret: &Secret,
    remove: &[String],
    resource_version: Option<&str>,
) -> Result<Written, kube::Error> {
    let patch = wipe::WireMergePatch {
        secret,
        remove,
        resource_version,
    };
    // Built with an empty patch; the body is put in by `send_object`.
    let built = request::<Secret>(ns).patch(
        name,
        &Default::default(),
        &Patch::Merge(serde_json::json!({})),
    );
    send_object(client, built, &patch, "patch").await
}

/// `PUT`s `obj` as `K` `ns/name` (it must carry the resourceVersion it
/// replaces).
pub(crate) async fn replace<K: Resource<DynamicType = ()>>(
    client: &Client,
    ns: &str,
    name: &str,
    obj: &impl Serialize,
) -> Result<Written, kube::Error> {
    let built = request::<K>(ns).replace(name, &PostParams::default(), Vec::new());
    send_object(client, built, obj, "replace").await
}

/// `GET`s Secret `ns/name` as the owned cache keeps it: a digest, no
/// values; the response body is wiped. `None` when there is none.
pub async fn get_secret(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<OwnedSecret>, kube::Error> {
    let req = request::<Secret>(ns)
        .get(name, &Default::default())
        .map_err(kube::Error::BuildRequest)?;
    match send::<OwnedSecret>(client, req, "get").await {
        Ok(s) => Ok(Some(s)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// `DELETE`s Secret `ns/name` if it is still the object `uid` at
/// `resource_version` (so a Secret someone changed meanwhile is kept).
/// A Secret already gone is not an error.
pub async fn delete_secret(
    client: &Client,
    ns: &str,
    name: &str,
    uid: Option<String>,
    resource_version: Option<String>,
) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version,
            uid,
        }),
        ..Default::default()
    };
    let req = request::<Secret>(ns)
        .delete(name, &dp)
        .map_err(kube::Error::BuildRequest)?;
    match send::<serde::de::IgnoredAny>(client, req, "delete").await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Merge-patches the status of `K` `ns/name`.
pub async fn patch_status<K: Resource<DynamicType = ()>>(
    client: &Client,
    ns: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<Written, kube::Error> {
    let req = request::<K>(ns)
        .patch_subresource("status", name, &Default::default(), &Patch::Merge(patch))
        .map_err(kube::Error::BuildRequest)?;
    send(client, req, "patch_status").await
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::client::mock::{Log, always};

    /// A client whose "API server" records each request and answers
    /// `code` with `answer`.
    fn client(code: u16, answer: &'static str) -> (Client, Log) {
        always(code, answer)
    }

    fn secret() -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                ..Default::default()
            },
            data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn create_posts_the_object_and_keeps_nothing_of_the_answer() {
        let (c, seen) = client(
            201,
            r#"{"metadata":{"name":"db","resourceVersion":"7"},"data":{"password":"aHVudGVyMg=="}}"#,
        );
        // The answer echoes the values; it is parsed into nothing kept
        // (the controller never read its metadata either).
        let _: Written = create_secret(&c, "shop", &secret()).await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].uri, "/api/v1/namespaces/shop/secrets?");
        let sent: Secret = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(sent, secret());
    }

    #[tokio::test]
    async fn replace_puts_and_status_is_a_merge_patch_of_the_subresource() {
        let (c, seen) = client(200, r#"{"metadata":{"resourceVersion":"8"}}"#);
        replace_secret(&c, "shop", "db", &secret()).await.unwrap();
        let patch = serde_json::json!({"status": {"observedGeneration": 2}});
        patch_status::<coffer_core::SealedSecret>(&c, "shop", "db", &patch)
            .await
            .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].method, "PUT");
        assert_eq!(seen[0].uri, "/api/v1/namespaces/shop/secrets/db?");
        assert_eq!(seen[1].method, "PATCH");
        assert_eq!(
            seen[1].uri,
            "/apis/coffer.dev/v1alpha1/namespaces/shop/sealedsecrets/db/status?"
        );
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&seen[1].body).unwrap(),
            patch
        );
    }

    #[tokio::test]
    async fn an_api_status_is_an_api_error_with_its_code_and_reason() {
        let (c, _) = client(
            409,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"secrets \"db\" already exists","reason":"AlreadyExists","code":409}"#,
        );
        match create::<Secret>(&c, "shop", &secret()).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 409);
                assert_eq!(s.reason, "AlreadyExists");
            }
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_error_body_that_is_not_a_status_is_never_quoted() {
        // A proxy answering with a page that echoes the request.
        let (c, _) = client(502, "bad gateway: password=hunter2");
        let err = create::<Secret>(&c, "shop", &secret()).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("502"), "{text}");
    }

    #[tokio::test]
    async fn an_answer_that_is_not_json_is_an_error_without_its_text() {
        let (c, _) = client(201, "password=hunter2");
        let err = create::<Secret>(&c, "shop", &secret()).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    /// Issue 27: the `Retrying` status named no verb or resource. A
    /// refused request is remembered for the status as its verb and
    /// object, from the request made, never the API's text.
    #[tokio::test]
    async fn a_refused_request_is_noted_with_its_verb_and_object() {
        let (c, _) = client(
            403,
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"denied: hunter2","reason":"Forbidden","code":403}"#,
        );
        let (r, failed) = noting_failures(create_secret(&c, "shop", &secret())).await;
        assert!(r.is_err());
        let failed = failed.unwrap();
        assert_eq!(failed.code, 403);
        assert_eq!(failed.to_string(), "create secrets in namespace shop");
        let patch = serde_json::json!({"status": {}});
        let (_, failed) = noting_failures(async {
            let _ = replace_secret(&c, "shop", "db", &secret()).await;
            patch_status::<coffer_core::SealedSecret>(&c, "shop", "db", &patch).await
        })
        .await;
        assert_eq!(
            failed.unwrap().to_string(),
            "patch the status of sealedsecrets.coffer.dev shop/db",
            "the last one refused"
        );
        let (_, failed) = noting_failures(replace_secret(&c, "shop", "db", &secret())).await;
        assert_eq!(failed.unwrap().to_string(), "replace secrets shop/db");
        // Outside `noting_failures` nothing is kept, and nothing fails.
        assert!(create_secret(&c, "shop", &secret()).await.is_err());
        // Succeeding requests note nothing.
        let (c, _) = client(200, r#"{"metadata":{}}"#);
        let (_, failed) = noting_failures(replace_secret(&c, "shop", "db", &secret())).await;
        assert_eq!(failed, None);
        assert_eq!(describe("get", "/weird"), "get /weird");
    }
}
