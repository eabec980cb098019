//! A JWKS URL seen from the hub: a request whose JWT names a `kid` the fetched set lacks waits for one
//! (rate-limited) fetch before it is authenticated, and `/readyz` shows how fetching goes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

use super::Hub;
use crate::auth::{JwksStatus, looks_like_jwt};

/// Middleware: before any handler verifies the request's JWT (`Authorization: Bearer` or `?token=`),
/// makes sure a key it names was looked for. A no-op for keys from the configuration, and for tokens
/// whose `kid` is known, so it costs one header decode per request with a JWKS URL.
pub async fn fetch_unknown_kid(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    if hub.verifier.jwks_status().is_some()
        && let Some(token) = request_jwt(&request)
    {
        hub.verifier.prepare_for(&token).await;
    }
    next.run(request).await
}

/// The JWT a request carries, if any: the bearer token, else the `token` query parameter.
fn request_jwt(request: &Request) -> Option<String> {
    if let Some(token) = super::api::bearer(request.headers()) {
        return looks_like_jwt(token).then(|| token.to_owned());
    }
    let query = request.uri().query()?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| value.to_owned())
        .filter(|token| looks_like_jwt(token))
}

/// `/readyz`'s `jwks` entry: `ok`; `stale` (the last fetch failed, the last good keys still verify);
/// `unavailable` (never fetched: every JWT is refused with 503 / 1011).
pub fn readiness(status: &JwksStatus) -> Value {
    let state = match (status.keys, &status.error) {
        (0, _) => "unavailable",
        (_, Some(_)) => "stale",
        (_, None) => "ok",
    };
    let fetched_at = status.fetched_at.map(|at| chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339());
    json!({"status": state, "keys": status.keys, "fetched_at": fetched_at, "error": status.error})
}
