//! `/ws/notifications/` (PROTOCOL §4.1): a user's own notifications, kept in sync across every
//! connection of the user by `unread_count` pushes.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value};
use tracing::error;

use super::Hub;
use super::api::ApiError;
use super::outbox::Outbox;
use super::registry::Membership;
use super::session::{Accepted, Conn, Refusal, Session};
use crate::layer::{Push, group};
use crate::protocol::Endpoint;
use crate::protocol::limits::{
    DEFAULT_NOTIFICATION_TYPE, MAX_LINK, MAX_NOTIFICATION_MESSAGE, MAX_NOTIFICATION_TYPE, MAX_TITLE,
};
use crate::protocol::{
    self, NewNotificationFields, Notification, NotificationRequest, Request, RequestError, ServerMessage, close,
};
use crate::store::{Deleted, MarkRead, NewNotification, NotificationQuery, StoreError};

/// One connection of a user to their notifications.
pub struct NotificationsSession {
    hub: Arc<Hub>,
    user_id: String,
    is_staff: bool,
    /// Where the `subscribe` filter lives: pushes are written from the publisher's side.
    outbox: Arc<Outbox>,
    _membership: Membership,
}

/// Accepts any authenticated user and greets with their unread count.
pub async fn open(hub: Arc<Hub>, conn: Conn) -> Result<Accepted<NotificationsSession>, Refusal> {
    let user_id = conn.identity.user_id.clone();
    // Join before reading the count, so a notification stored in between is pushed, not missed.
    let membership =
        Membership::join(&hub.registry, &hub.layer, group::user(&user_id), conn.id, Arc::clone(&conn.outbox)).await?;
    let unread = hub.store.unread_count(&user_id).await.map_err(|e| {
        error!(error = %e, "cannot read unread count");
        Refusal::new(close::INTERNAL, "store unavailable")
    })?;
    let mut extra = Map::new();
    extra.insert("unread_count".to_owned(), Value::from(unread));
    let greeting = protocol::encode(&ServerMessage::ConnectionEstablished {
        message: "Connected to notifications",
        user_id: &user_id,
        extra,
    });
    let session = NotificationsSession {
        hub,
        is_staff: conn.identity.is_staff,
        user_id,
        outbox: Arc::clone(&conn.outbox),
        _membership: membership,
    };
    Ok(Accepted { session, conn, greetings: vec![greeting] })
}

impl Session for NotificationsSession {
    const ENDPOINT: Endpoint = Endpoint::Notifications;

    async fn on_text(&mut self, text: &str, replies: &mut Vec<String>) {
        let reply = match protocol::parse_request::<NotificationRequest>(text) {
            Ok(inbound) => {
                let id = inbound.request_id;
                let reply = match inbound.request {
                    Request::Ping { timestamp } => Ok(Reply::Pong(timestamp.unwrap_or(Value::Null))),
                    Request::Endpoint(request) => self.handle(request).await,
                };
                match reply {
                    Ok(reply) => protocol::encode_reply(&reply.as_message(), id.as_ref()),
                    Err(error) => protocol::error_frame(&error, id.as_ref()),
                }
            }
            Err((error, id)) => protocol::error_frame(&error, id.as_ref()),
        };
        replies.push(reply);
    }

    async fn on_close(self) {}
}

/// A reply, owned until it is serialized.
enum Reply {
    Pong(Value),
    Subscribed(Vec<String>),
    List(protocol::NotificationPage),
    MarkedRead(i64),
    AllMarkedRead(u64),
    Deleted(i64),
    Sent(i64),
}

impl Reply {
    fn as_message(&self) -> ServerMessage<'_> {
        match self {
            Self::Pong(timestamp) => ServerMessage::Pong { timestamp },
            Self::Subscribed(types) => ServerMessage::Subscribed { notification_types: types },
            Self::List(page) => ServerMessage::NotificationsList(page),
            Self::MarkedRead(id) => ServerMessage::NotificationMarkedRead { notification_id: *id, success: true },
            Self::AllMarkedRead(count) => ServerMessage::AllNotificationsMarkedRead { count: *count },
            Self::Deleted(id) => ServerMessage::NotificationDeleted { notification_id: *id, success: true },
            Self::Sent(id) => ServerMessage::NotificationSent { success: true, notification_id: *id },
        }
    }
}

impl NotificationsSession {
    async fn handle(&mut self, request: NotificationRequest) -> Result<Reply, RequestError> {
        let hub = &self.hub;
        let user = self.user_id.as_str();
        match request {
            NotificationRequest::Subscribe { notification_types } => {
                if notification_types.iter().any(|t| t.is_empty() || t.len() > MAX_NOTIFICATION_TYPE) {
                    return Err(RequestError::invalid(format!(
                        "notification types must be 1..{MAX_NOTIFICATION_TYPE} characters"
                    )));
                }
                self.outbox.set_types(&notification_types);
                Ok(Reply::Subscribed(notification_types))
            }
            NotificationRequest::GetNotifications { limit, before_id, unread_only } => {
                let query = page_query(limit, before_id, unread_only).map_err(RequestError::invalid)?;
                let page = hub.store.list_notifications(user, query).await.map_err(internal)?;
                Ok(Reply::List(page))
            }
            NotificationRequest::MarkRead { notification_id } => {
                match hub.store.mark_read(user, notification_id).await.map_err(internal)? {
                    MarkRead::NotFound => return Err(not_found(notification_id)),
                    MarkRead::Marked => push_unread_count(hub, user).await.map_err(|e| e.into_request_error())?,
                    MarkRead::AlreadyRead => {}
                }
                Ok(Reply::MarkedRead(notification_id))
            }
            NotificationRequest::MarkAllRead => {
                let count = hub.store.mark_all_read(user).await.map_err(internal)?;
                if count > 0 {
                    push_unread_count(hub, user).await.map_err(|e| e.into_request_error())?;
                }
                Ok(Reply::AllMarkedRead(count))
            }
            NotificationRequest::DeleteNotification { notification_id } => {
                match hub.store.delete_notification(user, notification_id).await.map_err(internal)? {
                    Deleted::NotFound => return Err(not_found(notification_id)),
                    Deleted::Deleted { was_unread: true } => {
                        push_unread_count(hub, user).await.map_err(|e| e.into_request_error())?;
                    }
                    Deleted::Deleted { was_unread: false } => {}
                }
                Ok(Reply::Deleted(notification_id))
            }
            NotificationRequest::SendNotification(fields) => {
                if !self.is_staff {
                    return Err(RequestError::forbidden("send_notification is for staff only"));
                }
                let new = validate(fields.user_id.clone(), &fields).map_err(RequestError::invalid)?;
                let stored = publish(hub, vec![new]).await.map_err(|e| e.into_request_error())?;
                Ok(Reply::Sent(stored[0].1.id))
            }
        }
    }
}

fn not_found(id: i64) -> RequestError {
    RequestError::not_found(format!("notification {id} not found"))
}

fn internal(error: StoreError) -> RequestError {
    error!(error = %error, "store failed");
    RequestError::internal()
}

/// Validates a page request: `limit` 1..=200 (default 50).
pub fn page_query(limit: Option<u32>, before_id: Option<i64>, unread_only: bool) -> Result<NotificationQuery, String> {
    Ok(NotificationQuery { limit: protocol::page_limit(limit)?, before_id, unread_only })
}

/// Checks a notification's fields for one recipient; the message names the field at fault.
pub fn validate(user_id: String, fields: &NewNotificationFields) -> Result<NewNotification, String> {
    let title = fields.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE {
        return Err(format!("title must be 1..{MAX_TITLE} characters"));
    }
    if fields.message.chars().count() > MAX_NOTIFICATION_MESSAGE {
        return Err(format!("message must be at most {MAX_NOTIFICATION_MESSAGE} characters"));
    }
    let kind = fields.notification_type.clone().unwrap_or_else(|| DEFAULT_NOTIFICATION_TYPE.to_owned());
    if kind.is_empty() || kind.len() > MAX_NOTIFICATION_TYPE {
        return Err(format!("type must be 1..{MAX_NOTIFICATION_TYPE} characters"));
    }
    let data = match &fields.data {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(data @ Value::Object(_)) => data.clone(),
        Some(_) => return Err("data must be a JSON object".to_owned()),
    };
    if fields.link.as_ref().is_some_and(|link| link.len() > MAX_LINK) {
        return Err(format!("link must be at most {MAX_LINK} characters"));
    }
    protocol::no_nul("title", title)?;
    protocol::no_nul("message", &fields.message)?;
    protocol::no_nul("type", &kind)?;
    protocol::no_nul("link", fields.link.as_deref().unwrap_or_default())?;
    Ok(NewNotification {
        user_id,
        title: title.to_owned(),
        message: fields.message.clone(),
        kind,
        data,
        link: fields.link.clone(),
    })
}

/// Stores notifications, then pushes each to its user and the new unread count to every user touched
/// (PROTOCOL §6: stored before pushed).
pub async fn publish(hub: &Hub, new: Vec<NewNotification>) -> Result<Vec<(String, Notification)>, ApiError> {
    let stored = hub.store.insert_notifications(&new).await.map_err(ApiError::from)?;
    let mut users = BTreeSet::new();
    for (notification, new) in stored.iter().zip(&new) {
        let frame = protocol::encode(&ServerMessage::Notification { notification });
        hub.publish("notification", &group::user(&new.user_id), Push::tagged(frame, &notification.kind)).await?;
        users.insert(new.user_id.as_str());
    }
    for user in users {
        push_unread_count(hub, user).await?;
    }
    Ok(new.iter().map(|n| n.user_id.clone()).zip(stored).collect())
}

/// Pushes the user's current unread count to all of their connections.
async fn push_unread_count(hub: &Hub, user_id: &str) -> Result<(), ApiError> {
    let count = hub.store.unread_count(user_id).await.map_err(ApiError::from)?;
    let frame = protocol::encode(&ServerMessage::UnreadCount { count });
    hub.publish("unread_count", &group::user(user_id), Push::new(frame)).await
}
