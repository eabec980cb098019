//! The hub's one error type and its two renderings: the HTTP body `{"error":{"code","message"}}` with its
//! status (PROTOCOL §5), and the WebSocket `error` message with its code (PROTOCOL §3).
//!
//! Each constructor names both codes, so the same failure (a bad field, a room that does not exist, a
//! store that failed) reads the same on both transports, and no WebSocket handler derives a protocol
//! code from an HTTP status.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

use crate::protocol::{self, ErrorCode, HttpErrorCode, RequestError, RequestId};
use crate::store::StoreError;

/// A failure the hub answers: an HTTP error response, or an `error` frame on a WebSocket.
#[derive(Debug)]
pub struct HubError {
    status: StatusCode,
    http: HttpErrorCode,
    ws: ErrorCode,
    message: String,
    /// Sent as `Retry-After` (whole seconds, rounded up) with a 429 or a busy 503.
    retry_after: Option<Duration>,
}

impl HubError {
    fn new(status: StatusCode, http: HttpErrorCode, ws: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, http, ws, message: message.into(), retry_after: None }
    }

    /// A field is missing or has the wrong type or value: 400 `invalid_request`, `invalid_message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, HttpErrorCode::InvalidRequest, ErrorCode::InvalidMessage, message)
    }

    /// The body is not a JSON object: 400 `invalid_json` on both.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, HttpErrorCode::InvalidJson, ErrorCode::InvalidJson, message)
    }

    /// Missing or wrong credentials: 401 `unauthorized`; on a WebSocket (authenticated already) `forbidden`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, HttpErrorCode::Unauthorized, ErrorCode::Forbidden, message)
    }

    /// The caller may not do this: 403 `forbidden` on both.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, HttpErrorCode::Forbidden, ErrorCode::Forbidden, message)
    }

    /// It does not exist (or belongs to someone else): 404 `not_found` on both.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, HttpErrorCode::NotFound, ErrorCode::NotFound, message)
    }

    /// It exists, or was decided, already: 409 `conflict`; on a WebSocket, whose codes have no conflict,
    /// `invalid_message` (the request cannot succeed as sent).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, HttpErrorCode::Conflict, ErrorCode::InvalidMessage, message)
    }

    /// 409 `idempotency_in_progress`: the first request with this `Idempotency-Key` has not finished.
    pub fn idempotency_in_progress() -> Self {
        let message = "a request with this Idempotency-Key is still in progress: retry it later";
        Self::new(StatusCode::CONFLICT, HttpErrorCode::IdempotencyInProgress, ErrorCode::InvalidMessage, message)
    }

    /// 422 `idempotency_key_reused`: this `Idempotency-Key` was used for another request.
    pub fn idempotency_key_reused() -> Self {
        let message = "this Idempotency-Key was used for a different request: use a new key for a new request";
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            HttpErrorCode::IdempotencyKeyReused,
            ErrorCode::InvalidMessage,
            message,
        )
    }

    /// The channel layer or the token store does not answer: 503 `unavailable`; `internal` on a WebSocket.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, HttpErrorCode::Unavailable, ErrorCode::Internal, message)
    }

    /// The node holds as many request bodies as `--max-body-memory` allows: 503 `unavailable` with
    /// `Retry-After: 1`.
    pub fn busy(message: impl Into<String>) -> Self {
        Self { retry_after: Some(Duration::from_secs(1)), ..Self::unavailable(message) }
    }

    /// 429: the caller is over their request budget and may retry after `wait`.
    pub fn rate_limited(wait: Duration) -> Self {
        let message = format!("too many requests: retry in {:.1} s", wait.as_secs_f64());
        let error =
            Self::new(StatusCode::TOO_MANY_REQUESTS, HttpErrorCode::RateLimited, ErrorCode::RateLimited, message);
        Self { retry_after: Some(wait), ..error }
    }

    /// The hub failed: 500 `internal` on both.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, HttpErrorCode::Internal, ErrorCode::Internal, "internal error")
    }

    // HTTP only: these refuse how a request came, which a WebSocket message cannot get wrong; their
    // WebSocket code is the nearest one, should one ever be sent.

    /// 405: the route takes another method.
    pub fn method_not_allowed() -> Self {
        let message = "method not allowed on this route";
        Self::new(StatusCode::METHOD_NOT_ALLOWED, HttpErrorCode::MethodNotAllowed, ErrorCode::InvalidMessage, message)
    }

    /// 408: the body did not arrive in time.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, HttpErrorCode::RequestTimeout, ErrorCode::InvalidMessage, message)
    }

    /// 413: the body is too large.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, HttpErrorCode::PayloadTooLarge, ErrorCode::InvalidMessage, message)
    }

    /// 415: the body is not declared as JSON.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        let (status, http) = (StatusCode::UNSUPPORTED_MEDIA_TYPE, HttpErrorCode::UnsupportedMediaType);
        Self::new(status, http, ErrorCode::InvalidMessage, message)
    }

    /// A request to a WebSocket route that is not a WebSocket upgrade: `upgrade_required`, with the
    /// status that says what is wrong with it (400, 405 for a method other than GET, 426).
    pub fn upgrade_required(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, HttpErrorCode::UpgradeRequired, ErrorCode::InvalidMessage, message)
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `error` message it is on a WebSocket, echoing the request's `request_id`.
    pub fn frame(&self, request_id: Option<&RequestId>) -> String {
        protocol::error_frame(&RequestError::new(self.ws, self.message.clone()), request_id)
    }
}

/// A store failure is logged here, once, and answered as an internal error: nothing was written, and
/// nothing of the database's message reaches the client.
impl From<StoreError> for HubError {
    fn from(error: StoreError) -> Self {
        error!(error = %error, "store failed");
        Self::internal()
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.http.as_str(), "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, seconds.max(1).into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// The HTTP body of an error and its WebSocket frame.
    async fn both(error: HubError) -> (u16, Value, Value) {
        let frame: Value = serde_json::from_str(&error.frame(Some(&Value::from(3)))).unwrap();
        let response = error.into_response();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap(), frame)
    }

    /// Each failure states its HTTP status and code and its WebSocket code; a 409 is `invalid_message`
    /// on a WebSocket because it says so, not because of its status.
    #[tokio::test]
    async fn each_error_has_both_renderings() {
        let (status, body, frame) = both(HubError::conflict("user u1 was decided already")).await;
        assert_eq!(status, 409);
        assert_eq!(body, json!({"error": {"code": "conflict", "message": "user u1 was decided already"}}));
        assert_eq!(
            frame,
            json!({"type": "error", "code": "invalid_message", "message": "user u1 was decided already", "request_id": 3})
        );
        let (status, body, frame) = both(HubError::unavailable("channel layer unavailable")).await;
        assert_eq!((status, &body["error"]["code"], &frame["code"]), (503, &json!("unavailable"), &json!("internal")));
        let (status, body, frame) = both(HubError::not_found("room r1 not found")).await;
        assert_eq!((status, &body["error"]["code"], &frame["code"]), (404, &json!("not_found"), &json!("not_found")));
    }

    /// A 429 says when to retry, in whole seconds rounded up.
    #[test]
    fn rate_limited_carries_retry_after() {
        let response = HubError::rate_limited(Duration::from_millis(1_200)).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
