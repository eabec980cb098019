//! `Idempotency-Key` on the POST routes that store or publish (notifications, org events, chat
//! messages): a retry with the same key and the same request gets the first answer again, and nothing is
//! stored or pushed twice (docs/protocol.md, "Idempotency").
//!
//! A middleware, so that the handlers stay one straight line: it claims the key in the store before the
//! handler runs, records a success answer for 24 h, and forgets the claim when the request failed
//! (nothing was stored then, so a retry must run again). Keys belong to a caller: the API key is one
//! caller, each JWT user another.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tracing::warn;

use super::Hub;
use super::error::HubError;
use crate::protocol::now_millis;
use crate::store::IdempotencyClaim;

/// The request header that names a request.
pub const KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header that marks an answer given again.
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");
/// How long a key's first answer is kept (DECISIONS.md: 24 h).
pub const KEEP: Duration = Duration::from_secs(24 * 60 * 60);
/// A claim still in flight after this long was left by a node that died mid-request: a retry takes it
/// over. Far above any request's time (a body within 30 s, the store and the layer within seconds).
const ABANDONED_AFTER: Duration = Duration::from_secs(120);
/// The longest key accepted (Stripe's limit; a UUID is 36).
pub const MAX_KEY: usize = 255;

/// Whether a POST to `path` takes an `Idempotency-Key`.
fn is_idempotent_route(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["", "api", "v1", "notifications"]
            | ["", "api", "v1", "orgs", _, "events"]
            | ["", "api", "v1", "chat", "rooms", _, "messages"]
    )
}

/// The middleware. Requests without the header, to other routes, or whose caller is not identified
/// (the handler answers 401 then) pass through untouched.
pub async fn guard(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(&KEY_HEADER) else { return next.run(request).await };
    if request.method() != Method::POST || !is_idempotent_route(request.uri().path()) {
        return next.run(request).await;
    }
    let key = match value.to_str() {
        Ok(key) if (1..=MAX_KEY).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => key.to_owned(),
        _ => {
            let message = format!("Idempotency-Key must be 1..{MAX_KEY} visible ASCII characters");
            return HubError::bad_request(message).into_response();
        }
    };
    let Some(scope) = caller_scope(&hub, request.headers()) else { return next.run(request).await };
    let (parts, body) = request.into_parts();
    // The body was received whole already (api::receive_body), so this only takes it.
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return HubError::bad_request(format!("cannot read the request body: {error}")).into_response(),
    };
    let fingerprint = fingerprint(&parts.method, parts.uri.path(), &body);
    let now = now_millis();
    let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let claim = hub
        .store
        .claim_idempotency_key(&scope, &key, &fingerprint, now - millis(KEEP), now - millis(ABANDONED_AFTER))
        .await;
    match claim {
        Err(error) => return HubError::from(error).into_response(),
        Ok(IdempotencyClaim::Claimed) => {}
        Ok(IdempotencyClaim::InFlight { fingerprint: first })
        | Ok(IdempotencyClaim::Done { fingerprint: first, .. })
            if first != fingerprint =>
        {
            return HubError::idempotency_key_reused().into_response();
        }
        Ok(IdempotencyClaim::InFlight { .. }) => return HubError::idempotency_in_progress().into_response(),
        Ok(IdempotencyClaim::Done { status, body, .. }) => return replay(status, body),
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if !response.status().is_success() {
        // Nothing was stored (a success is answered for anything stored): a retry must run again.
        if let Err(error) = hub.store.release_idempotency_key(&scope, &key).await {
            warn!(%error, "cannot release an idempotency key; its retries get 409 until it is abandoned");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_else(|_| Bytes::new());
    let text = String::from_utf8_lossy(&body);
    if let Err(error) = hub.store.finish_idempotency_key(&scope, &key, parts.status.as_u16(), &text).await {
        // The answer stands (it was stored); a retry finds the claim in flight (409) until it is abandoned.
        warn!(%error, "cannot record the answer of an idempotency key");
    }
    Response::from_parts(parts, Body::from(body))
}

/// Who owns a key: the API key, or a user by the id in a valid JWT. `None` for anyone else, whose
/// request the handler refuses. Not rate-limited or counted here: the handler does both.
fn caller_scope(hub: &Hub, headers: &HeaderMap) -> Option<String> {
    if let Some(key) = headers.get("x-api-key") {
        let given = key.as_bytes();
        let ours = hub.config.api_key.expose().as_bytes();
        let equal = given.len() == ours.len() && given.iter().zip(ours).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        return equal.then(|| "backend".to_owned());
    }
    let token = super::api::bearer(headers)?;
    let identity = hub.verifier.verify(token).ok()?;
    Some(format!("user:{}", identity.user_id))
}

/// What makes two requests the same: method, path and body. A JSON body counts by its value (keys
/// sorted), so a retry that serializes the same object differently is still the same request.
fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| serde_json::to_vec(&v).ok());
    let mut hash = Sha256::new();
    hash.update(method.as_str().as_bytes());
    hash.update(b" ");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    hash.update(canonical.as_deref().unwrap_or(body));
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The first answer again, marked as such.
fn replay(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the three POST routes that store or publish take a key.
    #[test]
    fn the_routes_that_take_a_key() {
        for path in ["/api/v1/notifications", "/api/v1/orgs/acme/events", "/api/v1/chat/rooms/r1/messages"] {
            assert!(is_idempotent_route(path), "{path}");
        }
        for path in ["/api/v1/chat/rooms", "/api/v1/orgs/acme", "/api/v1/stats", "/api/v1/notifications/x"] {
            assert!(!is_idempotent_route(path), "{path}");
        }
    }

    /// The same JSON value written differently is the same request; another body or path is not.
    #[test]
    fn fingerprints_compare_json_by_value() {
        let path = "/api/v1/notifications";
        let a = fingerprint(&Method::POST, path, br#"{"user_id":"u1","title":"t"}"#);
        assert_eq!(a, fingerprint(&Method::POST, path, br#"{ "title": "t", "user_id": "u1" }"#));
        assert_ne!(a, fingerprint(&Method::POST, path, br#"{"user_id":"u2","title":"t"}"#));
        assert_ne!(a, fingerprint(&Method::POST, "/api/v1/orgs/a/events", br#"{"user_id":"u1","title":"t"}"#));
    }
}
