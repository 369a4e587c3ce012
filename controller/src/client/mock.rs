//! A scripted API server for unit tests of request shapes: a kube
//! `Client` whose every request is recorded and answered from a list, in
//! order. The end-to-end tests use the real API server.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use kube::Client;
use kube::client::Body;

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub method: String,
    /// The path and query, as sent.
    pub uri: String,
    pub body: Vec<u8>,
}

/// The requests received so far.
pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

/// A client answering its requests with `answers` (status code and body)
/// in order; a request past the end gets a 500.
pub(crate) fn scripted(answers: Vec<(u16, String)>) -> (Client, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let svc = tower::service_fn(move |req: http::Request<Body>| {
        let (seen, answers) = (seen.clone(), answers.clone());
        async move {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let body = req.into_body().collect().await?.to_bytes().to_vec();
            seen.lock().unwrap().push(Seen { method, uri, body });
            let (code, answer) = answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or((500, r#"{"kind":"Status","code":500}"#.into()));
            Ok::<_, kube::Error>(
                http::Response::builder()
                    .status(code)
                    .body(Full::new(bytes::Bytes::from(answer)))
                    .unwrap(),
            )
        }
    });
    (Client::new(svc, "default"), log)
}

/// An API `Status` answer of `code` and `reason`, with `causes` as
/// `(field, reason)`.
pub(crate) fn status(code: u16, reason: &str, causes: &[(&str, &str)]) -> (u16, String) {
    let causes: Vec<_> = causes
        .iter()
        .map(|(field, reason)| serde_json::json!({"field": field, "reason": reason}))
        .collect();
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "the API's free text, which may quote a value",
        "reason": reason, "code": code,
        "details": {"causes": causes},
    });
    (code, body.to_string())
}

/// A successful answer carrying an object.
pub(crate) fn ok(code: u16) -> (u16, String) {
    (code, r#"{"metadata":{"resourceVersion":"9"}}"#.into())
}

/// A client answering every request with `code` and `answer`.
pub(crate) fn always(code: u16, answer: &str) -> (Client, Log) {
    scripted(vec![(code, answer.to_string()); 16])
}
