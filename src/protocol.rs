//! The wire protocol (../shared/PROTOCOL.md, version 1): close codes, error codes, ids, timestamps and
//! every JSON message the hub reads or writes, as serde types.
//!
//! Inbound frames are parsed in two steps so that each failure gets its own error code: first as any
//! JSON object (`invalid_json`), then the `type` is looked up in the endpoint's list (`unknown_type`),
//! then the whole object is decoded into the endpoint's enum (`invalid_message`).

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// WebSocket close codes (PROTOCOL §2).
pub mod close {
    /// Normal close.
    pub const NORMAL: u16 = 1000;
    /// The hub is shutting down or restarting; reconnect with backoff.
    pub const GOING_AWAY: u16 = 1001;
    /// A binary frame was received.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame held invalid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A frame was larger than the configured limit.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error; reconnect with backoff.
    pub const INTERNAL: u16 = 1011;
    /// Nothing arrived from the client within the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    /// Missing, invalid or expired token.
    pub const UNAUTHORIZED: u16 = 4001;
    /// Authenticated but not allowed on this endpoint.
    pub const FORBIDDEN: u16 = 4003;
    /// The chat room does not exist.
    pub const NOT_FOUND: u16 = 4004;
    /// The outbound queue overflowed: the client reads too slowly.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// Rate limit exceeded repeatedly.
    pub const RATE_LIMITED: u16 = 4029;
}

/// The `code` of an `error` message (PROTOCOL §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// A request failure that is answered with an `error` message and keeps the connection open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub code: ErrorCode,
    pub message: String,
}

impl RequestError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidMessage, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }
}

/// A client's `request_id`: a string or an integer, echoed as given.
pub type RequestId = Value;

/// An inbound frame decoded into an endpoint's request enum, with its `request_id`.
#[derive(Debug)]
pub struct Inbound<T> {
    pub request: T,
    pub request_id: Option<RequestId>,
}

/// The request types every endpoint knows, besides its own.
pub const COMMON_TYPES: &[&str] = &["ping"];

/// Whether a client's `request_id` is one the protocol allows: a string or an integer.
pub fn is_request_id(id: &Value) -> bool {
    id.is_string() || id.is_i64() || id.is_u64()
}

/// Decodes one text frame for an endpoint whose request enum is `T` and whose types are `known`.
///
/// On failure the `request_id` is still returned when it could be read, so the error can echo it.
pub fn parse_request<T: DeserializeOwned>(
    text: &str,
    known: &[&str],
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
    if !known.contains(&kind) && !COMMON_TYPES.contains(&kind) {
        let expected: Vec<&str> = known.iter().chain(COMMON_TYPES).copied().collect();
        let message = format!("unknown message type `{kind}`; expected one of: {}", expected.join(", "));
        return Err((RequestError::new(ErrorCode::UnknownType, message), request_id));
    }
    match T::deserialize(Value::Object(object)) {
        Ok(request) => Ok(Inbound { request, request_id }),
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

/// Deserializes a user id given as a string or a JSON number (PROTOCOL conventions).
pub fn de_user_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    use serde::de::Error;
    match Value::deserialize(deserializer)? {
        Value::String(s) if !s.is_empty() && s.len() <= 128 => Ok(s),
        Value::String(_) => Err(D::Error::custom("user id must be 1..128 characters")),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        _ => Err(D::Error::custom("user id must be a string or an integer")),
    }
}

/// As [`de_user_id`], for an optional field.
pub fn de_opt_user_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    de_user_id(deserializer).map(Some)
}

/// Is `id` a valid room or org id (`[A-Za-z0-9_.-]{1,64}`)?
/// Refuses a text field holding a NUL character: PostgreSQL's TEXT cannot store one, so both stores
/// refuse it up front (400 or an error reply) instead of one of them failing with a 500.
pub fn no_nul(field: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') { Err(format!("{field} must not contain NUL characters")) } else { Ok(()) }
}

pub fn is_valid_scope_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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

/// A stored notification as it appears on the wire (PROTOCOL §4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub title: String,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub read: bool,
    pub created_at: String,
    pub data: Value,
    pub link: Option<String>,
}

/// A page of a user's notifications, as `notifications_list` and `GET /api/v1/notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    /// All of the user's notifications, not only this page.
    pub total: i64,
    pub unread_count: i64,
}

/// The default and largest page of every list (`get_notifications`, `get_history`, the REST lists).
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

/// A list's `limit`: absent means [`DEFAULT_PAGE`]; otherwise 1..=[`MAX_PAGE`].
pub fn page_limit(limit: Option<u32>) -> Result<u32, String> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(format!("limit must be between 1 and {MAX_PAGE}"));
    }
    Ok(limit)
}

/// The default `notification_type` of a notification.
pub const DEFAULT_NOTIFICATION_TYPE: &str = "general";

/// Requests on `/ws/notifications/` (PROTOCOL §4.1).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NotificationRequest {
    /// Liveness check; answered with `pong`.
    Ping { timestamp: Option<Value> },
    /// Restrict live pushes on this connection to these types (`[]`: all).
    Subscribe { notification_types: Vec<String> },
    /// A page of the user's notifications, newest first.
    GetNotifications {
        limit: Option<u32>,
        before_id: Option<i64>,
        #[serde(default)]
        unread_only: bool,
    },
    /// Mark one of the user's notifications read.
    MarkRead { notification_id: i64 },
    /// Mark all of the user's notifications read.
    MarkAllRead,
    /// Delete one of the user's notifications.
    DeleteNotification { notification_id: i64 },
    /// Staff only: store and push a notification to a user.
    SendNotification(NewNotificationFields),
}

impl NotificationRequest {
    pub const TYPES: &'static [&'static str] =
        &["subscribe", "get_notifications", "mark_read", "mark_all_read", "delete_notification", "send_notification"];
}

/// The fields of a new notification, shared by `send_notification` and the HTTP API.
#[derive(Debug, Clone, Deserialize)]
pub struct NewNotificationFields {
    #[serde(deserialize_with = "de_user_id")]
    pub user_id: String,
    pub title: String,
    #[serde(alias = "body")]
    pub message: String,
    #[serde(alias = "type")]
    pub notification_type: Option<String>,
    pub data: Option<Value>,
    pub link: Option<String>,
}

/// Requests on `/ws/events/{org_id}/` (PROTOCOL §4.2): only `ping`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventRequest {
    /// Liveness check; answered with `pong`.
    Ping { timestamp: Option<Value> },
}

impl EventRequest {
    pub const TYPES: &'static [&'static str] = &[];
}

/// Requests on `/ws/admin/dashboard/` (PROTOCOL §4.3).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DashboardRequest {
    /// Liveness check; answered with `pong`.
    Ping { timestamp: Option<Value> },
    /// Live figures; answered with `stats`.
    GetStats,
    /// Answered with `pending_count_update`.
    GetPendingCount,
    /// Approve a pending user, as the REST route does.
    ApproveUser {
        #[serde(deserialize_with = "de_user_id")]
        user_id: String,
    },
    /// Reject a pending user, as the REST route does.
    RejectUser {
        #[serde(deserialize_with = "de_user_id")]
        user_id: String,
        reason: Option<String>,
    },
}

impl DashboardRequest {
    pub const TYPES: &'static [&'static str] = &["get_stats", "get_pending_count", "approve_user", "reject_user"];
}

/// Requests on `/ws/chat/{room_id}/` (PROTOCOL §4.4).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatRequest {
    /// Liveness check; answered with `pong`.
    Ping { timestamp: Option<Value> },
    /// Store a message and push it to the whole room.
    ChatMessage { message: String, client_id: Option<String> },
    /// Tell the others this user is (not) typing; never stored.
    Typing { is_typing: bool },
    /// Move this user's read position forward to `message_id`.
    ReadReceipt { message_id: i64 },
    /// A page of older messages.
    GetHistory { before_id: Option<i64>, limit: Option<u32> },
}

impl ChatRequest {
    pub const TYPES: &'static [&'static str] = &["chat_message", "typing", "read_receipt", "get_history"];
}

/// Live dashboard figures (PROTOCOL §4.3); "online" counts distinct users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub pending_approvals: i64,
    pub approved_today: i64,
    pub rejected_today: i64,
    pub admins_online: u64,
    pub users_online: u64,
    pub connections: i64,
}

/// Messages the hub sends (PROTOCOL §3, §4). Borrowed fields keep direct replies cheap.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// The first message after a successful connect.
    ConnectionEstablished {
        message: &'a str,
        user_id: &'a str,
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    /// Answer to `ping`, echoing its timestamp.
    Pong { timestamp: &'a Value },
    /// A request failed; the connection stays open.
    Error { code: ErrorCode, message: &'a str },
    /// Answer to `subscribe`.
    Subscribed { notification_types: &'a [String] },
    /// Answer to `get_notifications`.
    NotificationsList(&'a NotificationPage),
    /// Answer to `mark_read`.
    NotificationMarkedRead { notification_id: i64, success: bool },
    /// Answer to `mark_all_read`: how many changed.
    AllNotificationsMarkedRead { count: u64 },
    /// Answer to `delete_notification`.
    NotificationDeleted { notification_id: i64, success: bool },
    /// Answer to `send_notification`.
    NotificationSent { success: bool, notification_id: i64 },
    /// Push: a new notification for this user.
    Notification { notification: &'a Notification },
    /// Push: the user's unread count changed.
    UnreadCount { count: i64 },
    /// Push: an organization event.
    Event { event_type: &'a str, data: &'a Value, org_id: &'a str, timestamp: &'a str },
    /// Push to the other admins: an admin's first dashboard connection opened.
    AdminJoined { user_id: &'a str, admins_online: u64 },
    /// Push to the other admins: an admin's last dashboard connection closed.
    AdminLeft { user_id: &'a str, admins_online: u64 },
    /// Answer to `get_stats`.
    Stats { stats: &'a Stats },
    /// Push to admins, and answer to `get_pending_count`.
    PendingCountUpdate { count: i64 },
    /// Push to admins: a user registered and awaits approval.
    NewUser { user: &'a crate::store::PendingUser },
    /// Push to admins: a pending user was approved or rejected.
    ApprovalUpdate(&'a crate::store::Approval),
    /// Push to admins: an order changed.
    OrderUpdate { order_id: &'a str, status: &'a str, data: &'a Value },
    /// A page of a room's messages, oldest first.
    History { room_id: &'a str, messages: &'a [crate::store::ChatMessage], has_more: bool },
    /// Push to a room: a member's first connection opened or last one closed.
    UserStatus { user_id: &'a str, status: &'a str },
    /// Push to a room: a stored message, with the sender's `client_id`.
    ChatMessage { message: &'a crate::store::ChatMessage, client_id: Option<&'a str> },
    /// Push to the room's other connections.
    Typing { user_id: &'a str, is_typing: bool },
    /// Push to a room: a member's read position moved.
    ReadReceipt { user_id: &'a str, message_id: i64, read_at: &'a str },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parse_failure_has_its_own_code() {
        let known = NotificationRequest::TYPES;
        let err = |text| parse_request::<NotificationRequest>(text, known).unwrap_err().0.code;
        assert_eq!(err("{nope"), ErrorCode::InvalidJson);
        assert_eq!(err("[1]"), ErrorCode::InvalidJson);
        assert_eq!(err(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(err(r#"{"type":"mark_read"}"#), ErrorCode::InvalidMessage);
        assert_eq!(err(r#"{"type":"mark_read","notification_id":"x"}"#), ErrorCode::InvalidMessage);
        assert_eq!(err(r#"{"no_type":1}"#), ErrorCode::InvalidMessage);
    }

    #[test]
    fn request_id_survives_a_bad_request_and_is_echoed() {
        let (_, id) = parse_request::<NotificationRequest>(r#"{"type":"x","request_id":7}"#, &[]).unwrap_err();
        assert_eq!(id, Some(Value::from(7)));
        let frame = error_frame(&RequestError::not_found("gone"), id.as_ref());
        let value: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value, serde_json::json!({"type":"error","code":"not_found","message":"gone","request_id":7}));
    }

    #[test]
    fn numeric_user_ids_become_strings() {
        let text = r#"{"type":"send_notification","user_id":42,"title":"t","body":"b"}"#;
        let parsed = parse_request::<NotificationRequest>(text, NotificationRequest::TYPES).unwrap();
        match parsed.request {
            NotificationRequest::SendNotification(fields) => {
                assert_eq!(fields.user_id, "42");
                assert_eq!(fields.message, "b");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn scope_ids_follow_the_convention() {
        assert!(is_valid_scope_id("acme.eu-1_x"));
        assert!(!is_valid_scope_id(""));
        assert!(!is_valid_scope_id("a/b"));
        assert!(!is_valid_scope_id(&"a".repeat(65)));
    }

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        assert_eq!(format_timestamp(1_768_473_000_123), "2026-01-15T10:30:00.123Z");
    }
}
