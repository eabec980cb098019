//! Every JSON message on a WebSocket: what clients send to each endpoint, and what the hub sends.
//!
//! Each enum derives its list of `type`s (strum's `VariantNames`, with serde's snake_case rule), so that
//! the lists cannot drift from the messages; the tests below check that both rules agree.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::records::{Approval, ChatMessage, Notification, NotificationPage, PendingUser, Stats};
use super::{ErrorCode, de_user_id};

/// Requests on `/ws/notifications/` (PROTOCOL §4.1), besides `ping`.
#[derive(Debug, Deserialize, strum::VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum NotificationRequest {
    /// Restrict live pushes on this connection to these types (`[]`: all).
    Subscribe { notification_types: Vec<String> },
    /// A page of the user's notifications, newest first; with `after_id`, those with a greater id,
    /// oldest first (catching up after a reconnect).
    GetNotifications {
        limit: Option<u32>,
        before_id: Option<i64>,
        after_id: Option<i64>,
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

/// Requests on `/ws/events/{org_id}/` (PROTOCOL §4.2), besides `ping`.
#[derive(Debug, Deserialize, strum::VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EventRequest {
    /// Send every event after `since` of this epoch, then continue live (PROTOCOL §7).
    Resume(ResumeFrom),
}

/// Where a client resumes a stream from: the last `seq` it has, of the stream's `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResumeFrom {
    pub since: u64,
    pub epoch: String,
}

/// Why a resume could not replay what was missed; the client reloads its state instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeFailure {
    /// The log no longer reaches back to `since` (history or retention).
    Expired,
    /// The stream's history was lost since the client's position (another epoch).
    EpochMismatch,
}

/// A push serialized before its position in its stream is known (PROTOCOL §7). Its frame is the
/// message's own fields, then `seq` and `epoch`: the position is spliced in when the store gives it out,
/// so a stream's publishes can wait for their positions together, each already encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpositioned(String);

impl Unpositioned {
    /// Serializes `message`, which must serialize as a JSON object (every `ServerMessage` does).
    pub fn new<T: Serialize>(message: &T) -> Self {
        let json = serde_json::to_string(message).expect("wire types always serialize");
        assert!(json.starts_with('{') && json.ends_with('}'), "a positioned push must be a JSON object");
        Self(json)
    }

    /// The frame at position `seq` of a stream in `epoch`.
    pub fn at(&self, seq: i64, epoch: &str) -> String {
        let object = &self.0[..self.0.len() - 1];
        let epoch = serde_json::to_string(epoch).expect("a string always serializes");
        let separator = if object.len() > 1 { "," } else { "" };
        format!("{object}{separator}\"seq\":{seq},\"epoch\":{epoch}}}")
    }
}

/// Requests on `/ws/admin/dashboard/` (PROTOCOL §4.3), besides `ping`.
#[derive(Debug, Deserialize, strum::VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DashboardRequest {
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
    /// Send every push after `since` of this epoch, then continue live (PROTOCOL §7).
    Resume(ResumeFrom),
}

/// Requests on `/ws/chat/{room_id}/` (PROTOCOL §4.4), besides `ping`.
#[derive(Debug, Deserialize, strum::VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ChatRequest {
    /// Store a message and push it to the whole room.
    ChatMessage { message: String, client_id: Option<String> },
    /// Tell the others this user is (not) typing; never stored.
    Typing { is_typing: bool },
    /// Move this user's read position forward to `message_id`.
    ReadReceipt { message_id: i64 },
    /// A page of older messages; with `after_id`, the messages after it, oldest first (catching up).
    GetHistory { before_id: Option<i64>, after_id: Option<i64>, limit: Option<u32> },
}

/// Messages the hub sends (PROTOCOL §3, §4). Borrowed fields keep direct replies cheap.
#[derive(Debug, Serialize, strum::VariantNames)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    NewUser { user: &'a PendingUser },
    /// Push to admins: a pending user was approved or rejected.
    ApprovalUpdate(&'a Approval),
    /// Push to admins: an order changed.
    OrderUpdate { order_id: &'a str, status: &'a str, data: &'a Value },
    /// A page of a room's messages, oldest first.
    History { room_id: &'a str, messages: &'a [ChatMessage], has_more: bool },
    /// Push to a room: a member's first connection opened or last one closed.
    UserStatus { user_id: &'a str, status: &'a str },
    /// Push to a room: a stored message, with the sender's `client_id`.
    ChatMessage { message: &'a ChatMessage, client_id: Option<&'a str> },
    /// Push to the room's other connections.
    Typing { user_id: &'a str, is_typing: bool },
    /// Push to a room: a member's read position moved.
    ReadReceipt { user_id: &'a str, message_id: i64, read_at: &'a str },
    /// Answer to a resume (on connect or `resume`) that cannot replay: continuing live from here.
    ResumeFailed { reason: ResumeFailure, oldest_seq: i64, epoch: &'a str },
    /// Answer to `refresh`: the connection now lives until the new token's `exp` (PROTOCOL §7).
    Refreshed { expires_at: &'a str },
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use strum::VariantNames;

    use super::super::records::*;
    use super::super::{Request, parse_request};
    use super::*;

    /// A positioned push is the message's fields, then `seq` and `epoch`, exactly as serde would
    /// write them with the message flattened (what clients parsed before positions were spliced in).
    #[test]
    fn unpositioned_pushes_take_their_position_last() {
        #[derive(Serialize)]
        struct Flattened<'a, T> {
            #[serde(flatten)]
            message: &'a T,
            seq: i64,
            epoch: &'a str,
        }
        let data = serde_json::json!({"quote": "a \"b\" {c}"});
        let event = ServerMessage::Event { event_type: "deploy", data: &data, org_id: "acme", timestamp: "t" };
        let push = Unpositioned::new(&event);
        let expected = serde_json::to_string(&Flattened { message: &event, seq: 42, epoch: "e\"1" }).unwrap();
        assert_eq!(push.at(42, "e\"1"), expected);
        assert_eq!(Unpositioned::new(&serde_json::json!({})).at(1, "e"), r#"{"seq":1,"epoch":"e"}"#);
    }

    /// Every `type` an endpoint lists is one its serde enum takes: a request naming it alone fails, if
    /// at all, for a missing field, never as an unknown type or variant.
    #[test]
    fn request_type_lists_match_the_enums() {
        fn check<T: DeserializeOwned + VariantNames + std::fmt::Debug>() {
            for kind in T::VARIANTS {
                let text = serde_json::json!({"type": kind}).to_string();
                match parse_request::<T>(&text) {
                    Ok(inbound) => assert!(matches!(inbound.request, Request::Endpoint(_)), "{kind}"),
                    Err((error, _)) => {
                        assert_eq!(error.code, ErrorCode::InvalidMessage, "{kind}");
                        assert!(error.message.starts_with("missing field"), "{kind}: {}", error.message);
                    }
                }
            }
        }
        check::<NotificationRequest>();
        check::<EventRequest>();
        check::<DashboardRequest>();
        check::<ChatRequest>();
        assert_eq!(
            DashboardRequest::VARIANTS,
            ["get_stats", "get_pending_count", "approve_user", "reject_user", "resume"]
        );
    }

    /// The list of server types is exactly the `type`s serde writes, variant by variant: one message of
    /// each kind, in declaration order (a new variant fails here until it is added).
    #[test]
    fn server_type_list_matches_serde() {
        let value = Value::Null;
        let page = NotificationPage { notifications: Vec::new(), total: 0, unread_count: 0 };
        let notification = Notification {
            id: 1,
            title: String::new(),
            message: String::new(),
            kind: String::new(),
            read: false,
            created_at: String::new(),
            data: Value::Null,
            link: None,
        };
        let stats = Stats {
            pending_approvals: 0,
            approved_today: 0,
            rejected_today: 0,
            admins_online: 0,
            users_online: 0,
            connections: 0,
        };
        let user = PendingUser {
            user_id: String::new(),
            email: None,
            name: None,
            registered_at: String::new(),
            status: ApprovalStatus::Pending,
        };
        let approval = Approval {
            user_id: String::new(),
            status: DecisionStatus::Approved,
            reason: None,
            decided_by: String::new(),
            decided_at: String::new(),
        };
        let chat = ChatMessage {
            id: 1,
            room_id: String::new(),
            sender_id: String::new(),
            content: String::new(),
            attachment_url: None,
            created_at: String::new(),
        };
        let all = [
            ServerMessage::ConnectionEstablished { message: "", user_id: "", extra: Map::new() },
            ServerMessage::Pong { timestamp: &value },
            ServerMessage::Error { code: ErrorCode::Internal, message: "" },
            ServerMessage::Subscribed { notification_types: &[] },
            ServerMessage::NotificationsList(&page),
            ServerMessage::NotificationMarkedRead { notification_id: 1, success: true },
            ServerMessage::AllNotificationsMarkedRead { count: 0 },
            ServerMessage::NotificationDeleted { notification_id: 1, success: true },
            ServerMessage::NotificationSent { success: true, notification_id: 1 },
            ServerMessage::Notification { notification: &notification },
            ServerMessage::UnreadCount { count: 0 },
            ServerMessage::Event { event_type: "", data: &value, org_id: "", timestamp: "" },
            ServerMessage::AdminJoined { user_id: "", admins_online: 1 },
            ServerMessage::AdminLeft { user_id: "", admins_online: 0 },
            ServerMessage::Stats { stats: &stats },
            ServerMessage::PendingCountUpdate { count: 0 },
            ServerMessage::NewUser { user: &user },
            ServerMessage::ApprovalUpdate(&approval),
            ServerMessage::OrderUpdate { order_id: "", status: "", data: &value },
            ServerMessage::History { room_id: "", messages: &[], has_more: false },
            ServerMessage::UserStatus { user_id: "", status: "" },
            ServerMessage::ChatMessage { message: &chat, client_id: None },
            ServerMessage::Typing { user_id: "", is_typing: true },
            ServerMessage::ReadReceipt { user_id: "", message_id: 1, read_at: "" },
            ServerMessage::ResumeFailed { reason: ResumeFailure::Expired, oldest_seq: 1, epoch: "" },
            ServerMessage::Refreshed { expires_at: "" },
        ];
        let written: Vec<String> = all
            .iter()
            .map(|message| serde_json::to_value(message).unwrap()["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(written, ServerMessage::VARIANTS);
    }
}
