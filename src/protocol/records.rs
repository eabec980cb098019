//! The records the hub stores and sends: as they appear in pushes, replies and HTTP bodies. The store
//! returns them as they are; its own inputs (a notification to insert, a page query) live there.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::{EnumString, IntoStaticStr, VariantArray};

/// A stored notification (PROTOCOL §4.1).
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

/// Where a registered user stands. The strum names are the serde ones (lowercase), which the stores
/// keep in their `status` columns too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoStaticStr, EnumString, VariantArray)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
}

/// An admin's decision on a pending user: the `status` of an [`Approval`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoStaticStr, EnumString, VariantArray)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum DecisionStatus {
    Approved,
    Rejected,
}

/// A user awaiting approval, as in `new_user` and the pending list (PROTOCOL §4.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUser {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub registered_at: String,
    pub status: ApprovalStatus,
}

/// A decision taken, as in `approval_update` and the recent approvals (PROTOCOL §4.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub user_id: String,
    pub status: DecisionStatus,
    pub reason: Option<String>,
    pub decided_by: String,
    pub decided_at: String,
}

/// The kinds of entries in the admin activity feed; the strum names are the serde ones (snake_case),
/// which the stores keep in their `kind` columns too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoStaticStr, EnumString, VariantArray)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ActivityKind {
    NewUser,
    Approval,
    OrderUpdate,
}

/// An entry of the admin activity feed (`GET /api/v1/admin-dashboard/notifications/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: ActivityKind,
    /// The pushed message's payload; always a JSON object.
    pub data: Value,
    pub created_at: String,
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

/// A chat room (PROTOCOL §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Room {
    pub room_id: String,
    pub name: String,
    /// In the order they were added.
    pub members: Vec<String>,
    pub created_at: String,
}

/// A room in a user's room list, with what the user has not read yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomSummary {
    #[serde(flatten)]
    pub room: Room,
    pub last_message: Option<ChatMessage>,
    /// Messages after the user's read position that others sent.
    pub unread_count: i64,
}

/// A stored chat message (PROTOCOL §4.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: i64,
    pub room_id: String,
    pub sender_id: String,
    pub content: String,
    pub attachment_url: Option<String>,
    pub created_at: String,
}

/// A page of a room's messages, as `history` and `GET /api/v1/chat/rooms/{room_id}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagePage {
    /// Oldest first: the newest `limit` below `before_id`.
    pub messages: Vec<ChatMessage>,
    /// Older messages exist below this page.
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each enum's one text (strum, for the stores' columns) is its wire name (serde), both ways.
    #[test]
    fn column_texts_are_the_wire_names() {
        fn check<T>()
        where
            T: VariantArray + Serialize + Copy + PartialEq + std::fmt::Debug + std::str::FromStr,
            &'static str: From<T>,
        {
            for &variant in T::VARIANTS {
                let text: &'static str = variant.into();
                assert_eq!(serde_json::to_value(variant).unwrap(), Value::from(text));
                assert_eq!(text.parse::<T>().ok(), Some(variant));
            }
        }
        check::<ApprovalStatus>();
        check::<DecisionStatus>();
        check::<ActivityKind>();
    }
}
