//! Writing a key Secret, which holds a private key in plain, so that the
//! plaintext lives no longer than the request: the body is wiped once sent
//! and the API server's answer, which echoes the key, is wiped unread but
//! for its status.

use coffer_core::wipe::{self, WireSecret};
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::client::Body;

use coffer_cli::error::{Failure, Result};

/// Creates a key Secret through [`WireSecret`]: the request body is wiped
/// once sent and the answer, which echoes the private key, is wiped unread
/// but for its status.
pub(crate) async fn create_key_secret(
    client: &kube::Client,
    ns: &str,
    secret: &Secret,
) -> Result<()> {
    send_key_secret(client, ns, secret, false).await
}

/// Creates a key Secret, or with `replace` replaces it at the
/// resourceVersion it carries, through [`WireSecret`] (see
/// [`create_key_secret`]).
pub(crate) async fn send_key_secret(
    client: &kube::Client,
    ns: &str,
    secret: &Secret,
    replace: bool,
) -> Result<()> {
    let mut json = wipe::to_json(&WireSecret(secret))
        .map_err(|e| Failure::new(1, format!("cannot encode the key Secret: {e}")))?;
    let request = kube::core::Request::new(format!("/api/v1/namespaces/{ns}/secrets"));
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let mut req = if replace {
        request.replace(name, &PostParams::default(), Vec::new())
    } else {
        request.create(&PostParams::default(), Vec::new())
    }
    .map_err(|e| Failure::new(1, format!("cannot build the request: {e}")))?;
    *req.body_mut() = std::mem::take(&mut *json);
    let (parts, body) = req.into_parts();
    let body = wipe::body(body);
    let res = client
        .send(http::Request::from_parts(parts, Body::from(body)))
        .await
        .map_err(|e| Failure::cluster(format!("cannot write a key Secret: {e}")))?;
    let code = res.status();
    let mut answer = res
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let status = (!code.is_success())
        .then(|| serde_json::from_slice::<kube::core::Status>(&answer).ok())
        .flatten();
    wipe::bytes(&mut answer);
    if code.is_success() {
        return Ok(());
    }
    Err(Failure::cluster(format!(
        "the API server refused the key Secret ({code}){}",
        status
            .map(|s| format!(": {}", s.message))
            .unwrap_or_default()
    )))
}
