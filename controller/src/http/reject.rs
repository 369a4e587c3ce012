//! A refusal sent to a client: a status code and a short reason, as
//! `{"error": …}`. Never the request's content.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::keys::reencrypt::ReencryptError;

/// A refusal: a status code and a short reason, sent as `{"error": …}`.
pub struct Reject(StatusCode, String);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": self.1 }).to_string(),
        )
            .into_response()
    }
}

impl Reject {
    /// The status code the refusal is sent with.
    pub fn status(&self) -> StatusCode {
        self.0
    }
}

impl From<ReencryptError> for Reject {
    fn from(e: ReencryptError) -> Self {
        let code = match e {
            ReencryptError::TooManyItems | ReencryptError::Malformed => StatusCode::BAD_REQUEST,
            ReencryptError::DoesNotOpenHere => StatusCode::CONFLICT,
            ReencryptError::ForeignKey(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ReencryptError::SealingFailed => StatusCode::INTERNAL_SERVER_ERROR,
        };
        reject(code, &e.to_string())
    }
}

pub(crate) fn reject(code: StatusCode, reason: &str) -> Reject {
    Reject(code, reason.to_string())
}
