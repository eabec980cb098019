//! CORS on the HTTP API (PROTOCOL §7): every `/api/` route answers browsers of the origins that
//! `--allowed-origins` allows, through tower-http's `CorsLayer`; a request from any other origin is
//! refused with 403 before its handler runs, as a WebSocket upgrade is.
//!
//! Requests without `Origin` (backends, curl, the CLI) pass untouched: CORS is a browser's concern.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{Hub, idempotency};
use crate::config::AllowedOrigins;

/// How long a browser may cache a preflight answer. Chromium caps it at 2 h; 10 minutes lets a changed
/// `--allowed-origins` reach open pages soon while sparing an app a preflight before every call.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// The methods the API has.
const METHODS: [Method; 2] = [Method::GET, Method::POST];

/// The request headers a page may send: its token, a JSON body, and an `Idempotency-Key` that makes a
/// retried POST safe. Not `X-API-Key`: the key is for backends, and a page that held it would hand it
/// to everyone who opens the page.
const REQUEST_HEADERS: [HeaderName; 3] = [header::AUTHORIZATION, header::CONTENT_TYPE, idempotency::KEY_HEADER];

/// Response headers a page may read besides the safelisted ones: how long a 429 asks it to wait, and
/// whether an answer is the replay of an earlier request with the same `Idempotency-Key`.
const EXPOSED_HEADERS: [HeaderName; 2] = [header::RETRY_AFTER, idempotency::REPLAYED_HEADER];

/// The CORS answers of one hub, built once from its allowed origins.
#[derive(Clone)]
pub struct Cors {
    hub: Arc<Hub>,
    /// `None` for the default (same host only): a page of the hub's own origin needs no CORS.
    layer: Option<CorsLayer>,
}

impl Cors {
    pub fn new(hub: Arc<Hub>) -> Self {
        let base = CorsLayer::new()
            .allow_methods(METHODS)
            .allow_headers(REQUEST_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(PREFLIGHT_MAX_AGE);
        let layer = match &hub.config.allowed_origins {
            AllowedOrigins::SameHost => None,
            // The CORS rules forbid credentials with `*`: a page of any origin gets no cookies through.
            AllowedOrigins::Any => Some(base.allow_origin(AllowOrigin::any())),
            // The same rule as the WebSocket check, so the two can never disagree; the answer names the
            // one origin asked about (and `Vary: Origin` keeps caches from mixing them up).
            list @ AllowedOrigins::List(_) => {
                let list = list.clone();
                let allow = AllowOrigin::predicate(move |origin, _| {
                    origin.to_str().is_ok_and(|origin| list.allows(origin, None))
                });
                Some(base.allow_origin(allow).allow_credentials(true))
            }
        };
        Self { hub, layer }
    }
}

/// The middleware: `/api/` requests with an `Origin` are checked, then answered with CORS headers (a
/// preflight `OPTIONS` is answered here and reaches no handler); everything else passes through.
pub async fn guard(State(cors): State<Cors>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") || !request.headers().contains_key(header::ORIGIN) {
        return next.run(request).await;
    }
    if let Err(refused) = super::check_origin(&cors.hub, request.headers()) {
        return refused.into_response();
    }
    match cors.layer {
        Some(layer) => match layer.layer(next).oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => next.run(request).await,
    }
}
