//! The HTTP API (PROTOCOL §5): health, metrics, ws tokens, publishing and reading notifications,
//! org events and stats. Every error is a [`HubError`], answered as `{"error":{"code","message"}}`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::info;

use super::error::HubError;
use super::metrics::resident_memory_bytes;
use super::presence::scope;
use super::{Hub, events, jwks, notifications};
use crate::auth::{AuthError, Identity};
use crate::protocol::Endpoint;
use crate::protocol::limits::{MAX_BODY, MAX_EVENT_TYPE, MAX_RECIPIENTS};
use crate::protocol::{self, NewNotificationFields};

/// A JSON body whose every rejection is an [`HubError`]: 400 bad JSON or fields, 413 too large,
/// 415 not JSON.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = HubError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) =
            axum::Json::<Value>::from_request(request, state).await.map_err(|rejection| match &rejection {
                JsonRejection::MissingJsonContentType(_) => {
                    HubError::unsupported_media_type("expected Content-Type: application/json")
                }
                _ => HubError::invalid_json(rejection.body_text()),
            })?;
        if !value.is_object() {
            return Err(HubError::invalid_json("expected a JSON object"));
        }
        T::deserialize(value).map(ApiJson).map_err(|e| HubError::bad_request(e.to_string()))
    }
}

/// Who is calling an HTTP route.
pub enum Caller {
    /// A backend with the API key.
    Backend,
    /// A person with a JWT.
    User(Identity),
}

impl Caller {
    fn is_privileged(&self) -> bool {
        match self {
            Self::Backend => true,
            Self::User(identity) => identity.is_staff,
        }
    }
}

/// The `Authorization: Bearer` token of a request.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares without an early exit, so the time taken does not tell how much of a key was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API key (`X-API-Key`) or a JWT (`Authorization: Bearer`); 401 for neither or a bad one; 429 for
/// a user over their request budget.
pub fn caller(hub: &Hub, headers: &HeaderMap) -> Result<Caller, HubError> {
    caller_until(hub, headers).map(|(caller, _)| caller)
}

/// As [`caller`], with the `exp` of a user's JWT.
fn caller_until(hub: &Hub, headers: &HeaderMap) -> Result<(Caller, Option<u64>), HubError> {
    let (caller, exp) = identify_until(hub, headers)?;
    if let Caller::User(identity) = &caller {
        hub.http_limit.check(&identity.user_id).map_err(|wait| {
            hub.metrics.rate_limited_request();
            HubError::rate_limited(wait)
        })?;
    }
    Ok((caller, exp))
}

/// Who the headers say is calling, without spending their request budget; 401 for nobody.
fn identify(hub: &Hub, headers: &HeaderMap) -> Result<Caller, HubError> {
    identify_until(hub, headers).map(|(caller, _)| caller)
}

/// As [`identify`], with the `exp` of a user's JWT.
fn identify_until(hub: &Hub, headers: &HeaderMap) -> Result<(Caller, Option<u64>), HubError> {
    if let Some(key) = headers.get("x-api-key") {
        if constant_time_eq(key.as_bytes(), hub.config.api_key.expose().as_bytes()) {
            return Ok((Caller::Backend, None));
        }
        hub.metrics.auth_failure("api_key");
        return Err(HubError::unauthorized("invalid API key"));
    }
    match bearer(headers) {
        Some(token) if crate::auth::looks_like_jwt(token) => {
            let verified = hub.verify_jwt(token).map_err(|e| match e {
                AuthError::KeysUnavailable => HubError::unavailable(e.to_string()),
                e => HubError::unauthorized(e.to_string()),
            })?;
            Ok((Caller::User(verified.identity), verified.exp))
        }
        Some(_) => {
            hub.metrics.auth_failure("invalid");
            Err(HubError::unauthorized("expected a JWT bearer token"))
        }
        None => {
            hub.metrics.auth_failure("missing");
            Err(HubError::unauthorized("missing X-API-Key or Authorization: Bearer"))
        }
    }
}

/// The API key or a staff JWT; 403 for a non-staff user.
pub fn privileged(hub: &Hub, headers: &HeaderMap) -> Result<Caller, HubError> {
    let caller = caller(hub, headers)?;
    if !caller.is_privileged() {
        return Err(HubError::forbidden("requires the API key or a staff token"));
    }
    Ok(caller)
}

/// A staff member's JWT, and not the API key: the dashboard's reads and the approval decisions are
/// for admins (PROTOCOL §5 "staff JWT"), unlike the routes a backend drives.
pub fn staff(hub: &Hub, headers: &HeaderMap) -> Result<Identity, HubError> {
    match caller(hub, headers)? {
        Caller::User(identity) if identity.is_staff => Ok(identity),
        Caller::User(_) => Err(HubError::forbidden("requires a staff token")),
        Caller::Backend => Err(HubError::forbidden("requires a staff token, not the API key")),
    }
}

/// A person's JWT; the API key does not name a user.
pub fn user(hub: &Hub, headers: &HeaderMap) -> Result<Identity, HubError> {
    match caller(hub, headers)? {
        Caller::User(identity) => Ok(identity),
        Caller::Backend => Err(HubError::forbidden("requires a user's token, not the API key")),
    }
}

/// The API key only.
pub fn backend(hub: &Hub, headers: &HeaderMap) -> Result<(), HubError> {
    match caller(hub, headers)? {
        Caller::Backend => Ok(()),
        Caller::User(_) => Err(HubError::forbidden("requires the API key")),
    }
}

/// The routes of this module, merged into the hub's app.
pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/user/ws-token/", get(ws_token))
        .route("/api/v1/notifications", post(create_notifications).get(list_notifications))
        .route("/api/v1/orgs/{org_id}/events", post(create_event))
        .route("/api/v1/stats", get(stats))
        .fallback(|| async { HubError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { HubError::method_not_allowed() })
}

/// What [`receive_body`] needs: the hub (to check the caller) and the bytes all bodies in flight may
/// still take.
#[derive(Clone)]
pub struct BodyGate {
    hub: Arc<Hub>,
    memory: Arc<tokio::sync::Semaphore>,
}

impl BodyGate {
    pub fn new(hub: Arc<Hub>) -> Self {
        let memory = Arc::new(tokio::sync::Semaphore::new(hub.config.limits.max_body_memory));
        Self { hub, memory }
    }
}

/// Receives a request's whole body (at most [`MAX_BODY`]) within the request timeout before its handler
/// runs, once the headers showed a caller: every route with a body needs one, so a caller without
/// valid credentials gets 401 before a byte of its body is read (150 stalled unauthenticated 1 MiB bodies
/// once held 140 MB for 30 s). The body's size (its `Content-Length`, else [`MAX_BODY`]) is reserved
/// from `--max-body-memory` until the handler is done; a request that finds too little left gets 503
/// with `Retry-After` at once instead of adding to it.
///
/// A client that sent part of a body and stalled gets 408 instead of holding the connection, and a
/// handler, once it has its body, runs to completion however long its store and fan-out take (cutting
/// it short could leave rows stored and half pushed). Requests without a body, WebSocket upgrades
/// among them, pass straight through.
pub async fn receive_body(State(gate): State<BodyGate>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let allowed = match identify(&gate.hub, &parts.headers) {
        Ok(caller) => may_post(&gate.hub, parts.uri.path(), &caller).await,
        Err(error) => Err(error),
    };
    if let Err(error) = allowed {
        return with_close(error.into_response());
    }
    let declared = body.size_hint().exact().and_then(|n| usize::try_from(n).ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        let error = HubError::payload_too_large(format!("request body is larger than {MAX_BODY} bytes"));
        return with_close(error.into_response());
    }
    let size = u32::try_from(declared.unwrap_or(MAX_BODY)).expect("MAX_BODY fits in u32");
    let Ok(_reserved) = Arc::clone(&gate.memory).try_acquire_many_owned(size.max(1)) else {
        gate.hub.metrics.connection_refused(super::admission::refused::BODY_MEMORY);
        let error = HubError::busy("too many request bodies in flight on this node; retry shortly");
        return with_close(error.into_response());
    };
    let timeout = gate.hub.config.limits.http_request_timeout;
    match tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(collected)) => next.run(Request::from_parts(parts, Body::from(collected.to_bytes()))).await,
        Ok(Err(error)) if error.is::<LengthLimitError>() => {
            HubError::payload_too_large(format!("request body is larger than {MAX_BODY} bytes")).into_response()
        }
        Ok(Err(error)) => HubError::bad_request(format!("cannot read the request body: {error}")).into_response(),
        Err(_) => {
            let message = format!("the request body was not received within {}", humantime::format_duration(timeout));
            with_close(HubError::request_timeout(message).into_response())
        }
    }
}

/// Whether `caller` may send a body to the route at `path`, as far as the path decides it: the same
/// 403s (and, for a chat room, 404) its handler gives, but before the body is read, so that a caller
/// who is not allowed holds no memory with a body and never learns that a bad body would be a 400.
/// The handlers check again; a route missing here is only checked after its body.
async fn may_post(hub: &Hub, path: &str, caller: &Caller) -> Result<(), HubError> {
    let segments: Vec<&str> = path.split('/').collect();
    let require = match segments.as_slice() {
        ["", "api", "v1", "notifications"] | ["", "api", "v1", "chat", "rooms"] => Require::Privileged,
        ["", "api", "v1", "orgs", _, "events"]
        | ["", "api", "v1", "admin-dashboard", "users", ""]
        | ["", "api", "v1", "admin-dashboard", "orders", _, ""] => Require::Backend,
        ["", "api", "v1", "admin-dashboard", "users", _, "approve" | "reject", ""] => Require::Staff,
        ["", "api", "v1", "chat", "rooms", room_id, "messages"] => Require::Member(room_id),
        _ => return Ok(()),
    };
    match (require, caller) {
        (Require::Privileged, caller) if !caller.is_privileged() => {
            Err(HubError::forbidden("requires the API key or a staff token"))
        }
        (Require::Backend, Caller::User(_)) => Err(HubError::forbidden("requires the API key")),
        (Require::Staff, Caller::Backend) => Err(HubError::forbidden("requires a staff token, not the API key")),
        (Require::Staff, Caller::User(identity)) if !identity.is_staff => {
            Err(HubError::forbidden("requires a staff token"))
        }
        (Require::Member(_), Caller::Backend) => Err(HubError::forbidden("requires a user's token, not the API key")),
        (Require::Member(room_id), Caller::User(identity)) => super::chat::may_post(hub, identity, room_id).await,
        _ => Ok(()),
    }
}

/// Who a route with a body is for (see [`may_post`]).
enum Require<'a> {
    /// The API key or a staff JWT.
    Privileged,
    /// The API key only.
    Backend,
    /// A staff JWT only.
    Staff,
    /// A user's JWT that may enter this chat room.
    Member(&'a str),
}

/// Counts every 401 on an `/api/` route against the client's address (its peer, or behind a trusted
/// proxy the `X-Forwarded-For` client, as `hub::admission` decides), and answers 429 with `Retry-After`
/// at once to an address that has failed too often, before its credentials or its body are looked at
/// ([`super::ratelimit::AuthFailures`]). Requests without a connection (`oneshot` tests) pass.
pub async fn limit_auth_failures(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<super::listener::Peer>().map(|peer| peer.0.ip());
    let Some(peer) = peer.filter(|_| request.uri().path().starts_with("/api/")) else {
        return next.run(request).await;
    };
    let client = hub.admission.client_ip(peer, request.headers());
    if let Err(wait) = hub.auth_failures.check(client) {
        hub.metrics.connection_refused(super::admission::refused::AUTH_FAILURES);
        return with_close(HubError::rate_limited(wait).into_response());
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        hub.auth_failures.failed(client);
    }
    response
}

/// A response after which the connection closes: the body it did not read may still come, so the
/// connection cannot carry another request.
fn with_close(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Logs each request by method, path and status; never the query string, which may hold a token.
pub async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    // Probes answered (load balancers, `rtctl status --watch`: three a second) would drown the log.
    if method == axum::http::Method::GET && is_probe(&path) && response.status().is_success() {
        tracing::debug!(%method, path, status, elapsed_ms, "request");
    } else {
        info!(%method, path, status, elapsed_ms, "request");
    }
    response
}

/// The read-only routes that monitors poll.
fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/api/v1/stats")
}

async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(hub): State<Arc<Hub>>) -> Response {
    let layer = hub.layer.ping().await;
    let store = hub.store.ping().await;
    let state = |ok: bool| if ok { "ok" } else { "unavailable" };
    let jwks = hub.verifier.jwks_status();
    // Keys that are stale (the last fetch failed) still verify: only a set never fetched is not ready.
    let ready = layer.is_ok() && store.is_ok() && jwks.as_ref().is_none_or(|jwks| jwks.keys > 0);
    let mut body = json!({
        "status": state(ready),
        "layer": {"name": hub.layer.name(), "status": state(layer.is_ok())},
        "store": {"name": hub.store.name(), "status": state(store.is_ok())},
    });
    if let Some(jwks) = jwks {
        body["jwks"] = jwks::readiness(&jwks);
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// Prometheus text 0.0.4 (PROTOCOL §5), or OpenMetrics to a scraper whose `Accept` names it (Prometheus
/// itself prefers it).
async fn metrics(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if accept.contains("application/openmetrics-text") {
        let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        ([(header::CONTENT_TYPE, content_type)], hub.metrics.render_openmetrics()).into_response()
    } else {
        let content_type = "text/plain; version=0.0.4; charset=utf-8";
        ([(header::CONTENT_TYPE, content_type)], hub.metrics.render_prometheus()).into_response()
    }
}

/// A ws token for the caller's JWT, which it never outlives (PROTOCOL §7): `expires_in` is the ttl, or
/// what is left of the JWT's life when that is shorter.
async fn ws_token(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Result<axum::Json<Value>, HubError> {
    let (identity, exp) = match caller_until(&hub, &headers)? {
        (Caller::User(identity), exp) => (identity, exp),
        (Caller::Backend, _) => return Err(HubError::forbidden("requires a user's token, not the API key")),
    };
    let verified = crate::auth::Verified { identity, exp };
    let (token, lifetime) =
        hub.ws_tokens.mint(verified).await.map_err(|_| HubError::unavailable("token store unavailable"))?;
    Ok(axum::Json(json!({"ws_token": token, "expires_in": lifetime.as_secs()})))
}

/// `POST /api/v1/notifications`: one notification, or the same one for many users.
#[derive(Debug, Deserialize)]
struct CreateNotifications {
    #[serde(default, deserialize_with = "protocol::de_opt_user_id")]
    user_id: Option<String>,
    user_ids: Option<Vec<Value>>,
    title: String,
    #[serde(alias = "body")]
    message: String,
    #[serde(rename = "type", alias = "notification_type")]
    kind: Option<String>,
    data: Option<Value>,
    link: Option<String>,
}

async fn create_notifications(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateNotifications>,
) -> Result<Response, HubError> {
    privileged(&hub, &headers)?;
    let recipients = recipients(body.user_id.clone(), body.user_ids.as_deref())?;
    let fields = NewNotificationFields {
        user_id: String::new(),
        title: body.title,
        message: body.message,
        notification_type: body.kind,
        data: body.data,
        link: body.link,
    };
    let new = recipients
        .into_iter()
        .map(|user| notifications::validate(user, &fields))
        .collect::<Result<Vec<_>, _>>()
        .map_err(HubError::bad_request)?;
    let published = notifications::publish(&hub, new).await?;
    let created: Vec<Value> = published.stored.iter().map(|(user, n)| json!({"id": n.id, "user_id": user})).collect();
    let body = json!({"notifications": created, "pushed": published.pushed});
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `user_id` or `user_ids` (exactly one of them), each a string or an integer; repeats are dropped.
fn recipients(user_id: Option<String>, user_ids: Option<&[Value]>) -> Result<Vec<String>, HubError> {
    match (user_id, user_ids) {
        (Some(user), None) => Ok(vec![user]),
        (None, Some(ids)) if !ids.is_empty() && ids.len() <= MAX_RECIPIENTS => {
            // Each user once, in the order given: a repeated id would store and push the notification
            // again for every copy, and more copies than a connection's queue holds would close the
            // user's reading client as a slow consumer (4008). `1` and `"1"` are the same user.
            let mut seen = std::collections::HashSet::with_capacity(ids.len());
            let mut users = Vec::with_capacity(ids.len());
            for id in ids {
                let user = protocol::user_id(id)
                    .map_err(|_| HubError::bad_request("user_ids must hold strings or integers"))?;
                if seen.insert(user.clone()) {
                    users.push(user);
                }
            }
            Ok(users)
        }
        (None, Some(_)) => Err(HubError::bad_request(format!("user_ids must hold 1..{MAX_RECIPIENTS} ids"))),
        (Some(_), Some(_)) => Err(HubError::bad_request("give user_id or user_ids, not both")),
        (None, None) => Err(HubError::bad_request("missing field `user_id` (or `user_ids`)")),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    before_id: Option<i64>,
    after_id: Option<i64>,
    #[serde(default)]
    unread_only: bool,
}

async fn list_notifications(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<protocol::NotificationPage>, HubError> {
    let identity = user(&hub, &headers)?;
    let Query(query) = query.map_err(|e| HubError::bad_request(e.body_text()))?;
    let query = notifications::page_query(query.limit, query.before_id, query.after_id, query.unread_only)
        .map_err(HubError::bad_request)?;
    Ok(axum::Json(hub.store.list_notifications(&identity.user_id, query).await?))
}

#[derive(Debug, Deserialize)]
struct CreateEvent {
    event_type: String,
    data: Option<Value>,
}

async fn create_event(
    State(hub): State<Arc<Hub>>,
    Path(org_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateEvent>,
) -> Result<Response, HubError> {
    backend(&hub, &headers)?;
    if !protocol::is_valid_scope_id(&org_id) {
        return Err(HubError::bad_request("org id must match [A-Za-z0-9_.-]{1,64}"));
    }
    if body.event_type.is_empty() || body.event_type.len() > MAX_EVENT_TYPE {
        return Err(HubError::bad_request(format!("event_type must be 1..{MAX_EVENT_TYPE} characters")));
    }
    let data = body.data.unwrap_or_else(|| json!({}));
    let (timestamp, pushed) = events::publish(&hub, &org_id, &body.event_type, &data).await?;
    let body = json!({"org_id": org_id, "event_type": body.event_type, "timestamp": timestamp, "pushed": pushed});
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

async fn stats(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Result<axum::Json<Value>, HubError> {
    privileged(&hub, &headers)?;
    let metrics = &hub.metrics;
    let connections: serde_json::Map<String, Value> =
        Endpoint::ALL.iter().map(|e| (e.label().to_owned(), Value::from(metrics.connections(*e)))).collect();
    let total: i64 = Endpoint::ALL.iter().map(|e| metrics.connections(*e)).sum();
    Ok(axum::Json(json!({
        "node_id": hub.node_id,
        "uptime_seconds": hub.started.elapsed().as_secs(),
        "connections": connections,
        "connections_total": total,
        "users_online": hub.presence.online(scope::HUB).await,
        "messages_in": metrics.total_frames_in(),
        "messages_out": metrics.total_frames_out(),
        "slow_consumers_dropped": metrics.slow_consumers(),
        "rate_limit_closes": metrics.rate_limit_closes(),
        "layer": hub.layer.name(),
        "store": hub.store.name(),
        "memory_rss_bytes": resident_memory_bytes(),
    })))
}
