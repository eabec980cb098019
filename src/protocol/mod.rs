//! The wire protocol (version 1): every JSON message the hub reads or writes, the records they carry,
//! the close and error codes, the limits, and the id and timestamp rules. A leaf: it imports nothing of
//! the crate, and the store, the hub and the clients depend on it.
//!
//! Inbound frames are parsed in two steps so that each failure gets its own error code: first as any
//! JSON object (`invalid_json`), then the `type` is looked up in the endpoint's list (`unknown_type`),
//! then the whole object is decoded into the endpoint's enum (`invalid_message`).

pub mod close;
pub mod limits;
mod messages;
mod records;

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use strum::VariantNames;

pub use messages::*;
pub use records::*;

use limits::{DEFAULT_PAGE, MAX_PAGE, MAX_SCOPE_ID, MAX_USER_ID};

/// The WebSocket endpoints (PROTOCOL §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray)]
pub enum Endpoint {
    Notifications,
    Events,
    Dashboard,
    Chat,
}

impl Endpoint {
    /// Every endpoint, as an array (per-endpoint figures are indexed by `endpoint as usize`).
    pub const ALL: [Endpoint; 4] = [Self::Notifications, Self::Events, Self::Dashboard, Self::Chat];

    /// The endpoint's name in `/api/v1/stats` and in metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Notifications => "notifications",
            Self::Events => "events",
            Self::Dashboard => "dashboard",
            Self::Chat => "chat",
        }
    }

    /// The endpoint's path, with its parameter in braces.
    pub fn path(self) -> &'static str {
        match self {
            Self::Notifications => "/ws/notifications/",
            Self::Events => "/ws/events/{org_id}/",
            Self::Dashboard => "/ws/admin/dashboard/",
            Self::Chat => "/ws/chat/{room_id}/",
        }
    }

    /// Every `type` a client may send here: the endpoint's own, then `ping` and `refresh`.
    pub fn request_types(self) -> Vec<&'static str> {
        let own = match self {
            Self::Notifications => NotificationRequest::VARIANTS,
            Self::Events => EventRequest::VARIANTS,
            Self::Dashboard => DashboardRequest::VARIANTS,
            Self::Chat => ChatRequest::VARIANTS,
        };
        own.iter().copied().chain([PING, REFRESH]).collect()
    }
}

/// Every `type` the hub sends.
pub const SERVER_TYPES: &[&str] = <ServerMessage<'static> as VariantNames>::VARIANTS;

/// The `type` of the liveness check every endpoint answers.
pub const PING: &str = "ping";

/// The `type` by which a client hands any endpoint a fresh JWT before its token expires (PROTOCOL §7).
pub const REFRESH: &str = "refresh";

/// The `code` of an `error` message on a WebSocket (PROTOCOL §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    InvalidJson,
    /// The `type` is not one this endpoint knows.
    UnknownType,
    /// A field is missing or has the wrong type or value.
    InvalidMessage,
    /// The caller may not do this.
    Forbidden,
    /// The thing named does not exist (or belongs to someone else).
    NotFound,
    /// Too many messages.
    RateLimited,
    /// The hub failed; the request may be retried.
    Internal,
}

/// The `code` of an HTTP error body `{"error":{"code","message"}}` (PROTOCOL §5), with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::VariantNames, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum HttpErrorCode {
    /// 400: a field is missing or has the wrong type or value, or a query parameter is wrong.
    InvalidRequest,
    /// 400: the body is not a JSON object.
    InvalidJson,
    /// 401: no credentials, or wrong ones.
    Unauthorized,
    /// 403: the caller may not do this (or the `Origin` is not allowed).
    Forbidden,
    /// 404: no such route, or the thing named does not exist.
    NotFound,
    /// 405: the route takes another method.
    MethodNotAllowed,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// 409: it exists already, or was decided already.
    Conflict,
    /// 409: a request with the same `Idempotency-Key` is still running; retry it later.
    IdempotencyInProgress,
    /// 422: the `Idempotency-Key` was used for a different request (another route or body).
    IdempotencyKeyReused,
    /// 413: the body is larger than [`limits::MAX_BODY`].
    PayloadTooLarge,
    /// 415: the body is not declared as JSON.
    UnsupportedMediaType,
    /// 400 (or 405, 426): a request to a WebSocket route that is not a WebSocket upgrade.
    UpgradeRequired,
    /// 429: over the caller's request budget; `Retry-After` says when to retry.
    RateLimited,
    /// 500: the hub failed.
    Internal,
    /// 503: the channel layer or the token store does not answer.
    Unavailable,
}

impl HttpErrorCode {
    /// The code as it appears in the body.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A request failure as the `error` message says it: answered, and the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub code: ErrorCode,
    pub message: String,
}

impl RequestError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidMessage, message)
    }
}

/// A client's `request_id`: a string or an integer, echoed as given.
pub type RequestId = Value;

/// What a client sends to an endpoint whose own requests are `T`.
#[derive(Debug)]
pub enum Request<T> {
    /// Liveness check, on every endpoint; answered with `pong` echoing `timestamp`.
    Ping { timestamp: Option<Value> },
    /// A fresh JWT for the same user, on every endpoint; answered with `refreshed`, and the connection
    /// then lives until this token's `exp`.
    Refresh { token: String },
    /// One of the endpoint's own requests.
    Endpoint(T),
}

/// An inbound frame decoded into an endpoint's request, with its `request_id`.
#[derive(Debug)]
pub struct Inbound<T> {
    pub request: Request<T>,
    pub request_id: Option<RequestId>,
}

/// Whether a client's `request_id` is one the protocol allows: a string or an integer.
pub fn is_request_id(id: &Value) -> bool {
    id.is_string() || id.is_i64() || id.is_u64()
}

/// Decodes one text frame for an endpoint whose own requests are `T`.
///
/// On failure the `request_id` is still returned when it could be read, so the error can echo it.
pub fn parse_request<T: DeserializeOwned + VariantNames>(
    text: &str,
) -> Result<Inbound<T>, (RequestError, Option<RequestId>)> {
    let object: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err((RequestError::new(ErrorCode::InvalidJson, "expected a JSON object"), None)),
        Err(e) => return Err((RequestError::new(ErrorCode::InvalidJson, format!("invalid JSON: {e}")), None)),
    };
    let request_id = match object.get("request_id") {
        None | Some(Value::Null) => None,
        Some(id) if is_request_id(id) => Some(id.clone()),
        Some(_) => {
            return Err((RequestError::invalid("request_id must be a string or an integer"), None));
        }
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err((RequestError::invalid("type must be a string"), request_id)),
        None => return Err((RequestError::invalid("missing field `type`"), request_id)),
    };
    if kind == PING {
        let timestamp = object.get("timestamp").cloned();
        return Ok(Inbound { request: Request::Ping { timestamp }, request_id });
    }
    if kind == REFRESH {
        return match object.get("token") {
            Some(Value::String(token)) if !token.is_empty() => {
                Ok(Inbound { request: Request::Refresh { token: token.clone() }, request_id })
            }
            _ => Err((RequestError::invalid("refresh needs `token`: a fresh JWT for this user"), request_id)),
        };
    }
    if !T::VARIANTS.contains(&kind) {
        let expected: Vec<&str> = T::VARIANTS.iter().copied().chain([PING, REFRESH]).collect();
        let message = format!("unknown message type `{kind}`; expected one of: {}", expected.join(", "));
        return Err((RequestError::new(ErrorCode::UnknownType, message), request_id));
    }
    match T::deserialize(Value::Object(object)) {
        Ok(request) => Ok(Inbound { request: Request::Endpoint(request), request_id }),
        Err(e) => Err((RequestError::invalid(e.to_string()), request_id)),
    }
}

/// Serializes a reply, adding `request_id` when the request carried one.
pub fn encode_reply<T: Serialize>(message: &T, request_id: Option<&RequestId>) -> String {
    let mut value = serde_json::to_value(message).expect("wire types always serialize");
    if let (Some(id), Value::Object(object)) = (request_id, &mut value) {
        object.insert("request_id".to_owned(), id.clone());
    }
    value.to_string()
}

/// Serializes a push, once, for every receiver.
pub fn encode<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("wire types always serialize")
}

/// The `error` message for a failed request.
pub fn error_frame(error: &RequestError, request_id: Option<&RequestId>) -> String {
    let message = ServerMessage::Error { code: error.code, message: &error.message };
    encode_reply(&message, request_id)
}

/// The `pong` answer to a `ping`, echoing its timestamp (`null` when it had none).
pub fn pong(timestamp: Option<Value>, request_id: Option<&RequestId>) -> String {
    let timestamp = timestamp.unwrap_or(Value::Null);
    encode_reply(&ServerMessage::Pong { timestamp: &timestamp }, request_id)
}

/// Why a JSON value is not a user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    #[error("user id must be 1..{MAX_USER_ID} characters")]
    Length,
    #[error("user id must be a string or an integer")]
    Type,
}

/// The user id rule (PROTOCOL conventions): a string of 1..=[`MAX_USER_ID`] bytes, or a JSON integer
/// taken as its decimal string. Tokens (`sub`), requests and the HTTP API all read user ids through it.
pub fn user_id(value: &Value) -> Result<String, UserIdError> {
    match value {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_USER_ID => Ok(s.clone()),
        Value::String(_) => Err(UserIdError::Length),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        _ => Err(UserIdError::Type),
    }
}

/// Deserializes a user id by [`user_id`]'s rule.
pub fn de_user_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    user_id(&Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

/// As [`de_user_id`], for an optional field.
pub fn de_opt_user_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    de_user_id(deserializer).map(Some)
}

/// Refuses a text field holding a NUL character: PostgreSQL's TEXT cannot store one, so both stores
/// refuse it up front (400 or an error reply) instead of one of them failing with a 500.
pub fn no_nul(field: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') { Err(format!("{field} must not contain NUL characters")) } else { Ok(()) }
}

/// Is `id` a valid room, org or order id (`[A-Za-z0-9_.-]{1,64}`)?
pub fn is_valid_scope_id(id: &str) -> bool {
    (1..=MAX_SCOPE_ID).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn format_timestamp(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A list takes one cursor: `before_id` pages backwards, `after_id` catches up forwards.
pub fn one_cursor(before_id: Option<i64>, after_id: Option<i64>) -> Result<(), String> {
    if before_id.is_some() && after_id.is_some() {
        return Err("give before_id (older, newest first) or after_id (newer, oldest first), not both".to_owned());
    }
    Ok(())
}

/// A list's `limit`: absent means [`DEFAULT_PAGE`]; otherwise 1..=[`MAX_PAGE`].
pub fn page_limit(limit: Option<u32>) -> Result<u32, String> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(format!("limit must be between 1 and {MAX_PAGE}"));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not JSON, an unknown type and a bad field each get their own error code.
    #[test]
    fn each_parse_failure_has_its_own_code() {
        let err = |text| parse_request::<NotificationRequest>(text).unwrap_err().0.code;
        assert_eq!(err("{nope"), ErrorCode::InvalidJson);
        assert_eq!(err("[1]"), ErrorCode::InvalidJson);
        assert_eq!(err(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(err(r#"{"type":"mark_read"}"#), ErrorCode::InvalidMessage);
        assert_eq!(err(r#"{"type":"mark_read","notification_id":"x"}"#), ErrorCode::InvalidMessage);
        assert_eq!(err(r#"{"no_type":1}"#), ErrorCode::InvalidMessage);
    }

    /// A failed request's `request_id` is still read, and its error echoes it.
    #[test]
    fn request_id_survives_a_bad_request_and_is_echoed() {
        let (_, id) = parse_request::<EventRequest>(r#"{"type":"x","request_id":7}"#).unwrap_err();
        assert_eq!(id, Some(Value::from(7)));
        let frame = error_frame(&RequestError::new(ErrorCode::NotFound, "gone"), id.as_ref());
        let value: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value, serde_json::json!({"type":"error","code":"not_found","message":"gone","request_id":7}));
    }

    /// A JSON integer is taken as a user id's decimal string.
    #[test]
    fn numeric_user_ids_become_strings() {
        let text = r#"{"type":"send_notification","user_id":42,"title":"t","body":"b"}"#;
        let parsed = parse_request::<NotificationRequest>(text).unwrap();
        match parsed.request {
            Request::Endpoint(NotificationRequest::SendNotification(fields)) => {
                assert_eq!(fields.user_id, "42");
                assert_eq!(fields.message, "b");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// One rule for user ids: 1..=128 bytes of string, or an integer; nothing else.
    #[test]
    fn the_user_id_rule() {
        assert_eq!(user_id(&Value::from("u1")), Ok("u1".to_owned()));
        assert_eq!(user_id(&Value::from(7)), Ok("7".to_owned()));
        assert_eq!(user_id(&Value::from("x".repeat(MAX_USER_ID))).map(|id| id.len()), Ok(MAX_USER_ID));
        assert_eq!(user_id(&Value::from("x".repeat(MAX_USER_ID + 1))), Err(UserIdError::Length));
        assert_eq!(user_id(&Value::from("")), Err(UserIdError::Length));
        assert_eq!(user_id(&Value::from(4.5)), Err(UserIdError::Type));
        assert_eq!(user_id(&serde_json::json!(["u1"])), Err(UserIdError::Type));
        assert_eq!(UserIdError::Length.to_string(), "user id must be 1..128 characters");
    }

    /// `ping` is on every endpoint, after the endpoint's own types, and answered with the same timestamp.
    #[test]
    fn every_endpoint_takes_ping() {
        use strum::VariantArray;
        assert_eq!(Endpoint::ALL, Endpoint::VARIANTS);
        assert_eq!(Endpoint::Events.request_types(), ["resume", "ping", "refresh"]);
        assert_eq!(
            Endpoint::Chat.request_types(),
            ["chat_message", "typing", "read_receipt", "get_history", "ping", "refresh"]
        );
        let parsed = parse_request::<ChatRequest>(r#"{"type":"ping","timestamp":[1]}"#).unwrap();
        assert!(matches!(parsed.request, Request::Ping { timestamp: Some(Value::Array(_)) }));
        assert!(SERVER_TYPES.contains(&"pong") && SERVER_TYPES.contains(&"read_receipt"));
        assert_eq!(HttpErrorCode::PayloadTooLarge.as_str(), "payload_too_large");
    }

    /// `refresh` is on every endpoint; without a token string it is `invalid_message`.
    #[test]
    fn every_endpoint_takes_refresh() {
        let parsed = parse_request::<EventRequest>(r#"{"type":"refresh","token":"a.b.c","request_id":1}"#).unwrap();
        assert!(matches!(parsed.request, Request::Refresh { ref token } if token == "a.b.c"));
        assert_eq!(parsed.request_id, Some(Value::from(1)));
        for text in [r#"{"type":"refresh"}"#, r#"{"type":"refresh","token":""}"#, r#"{"type":"refresh","token":7}"#] {
            let (error, _) = parse_request::<ChatRequest>(text).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidMessage, "{text}");
        }
        assert!(SERVER_TYPES.contains(&"refreshed"));
    }

    /// Room, org and order ids are `[A-Za-z0-9_.-]{1,64}`.
    #[test]
    fn scope_ids_follow_the_convention() {
        assert!(is_valid_scope_id("acme.eu-1_x"));
        assert!(!is_valid_scope_id(""));
        assert!(!is_valid_scope_id("a/b"));
        assert!(!is_valid_scope_id(&"a".repeat(65)));
    }

    /// Timestamps are RFC 3339 UTC with milliseconds.
    #[test]
    fn timestamps_have_milliseconds_and_z() {
        assert_eq!(format_timestamp(1_768_473_000_123), "2026-01-15T10:30:00.123Z");
    }
}
