//! `/ws/notifications/` (PROTOCOL §4.1): a user's own notifications, kept in sync across every
//! connection of the user by `unread_count` pushes.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value};
use tracing::{error, warn};

use super::Hub;
use super::error::HubError;
use super::outbox::Outbox;
use super::registry::Membership;
use super::session::{Accepted, Conn, Refusal, Reply, Session};
use crate::layer::{Push, group};
use crate::protocol::Endpoint;
use crate::protocol::limits::{
    DEFAULT_NOTIFICATION_TYPE, MAX_LINK, MAX_NOTIFICATION_MESSAGE, MAX_NOTIFICATION_TYPE, MAX_TITLE,
};
use crate::protocol::{self, NewNotificationFields, Notification, NotificationRequest, ServerMessage, close};
use crate::store::{Deleted, MarkRead, NewNotification, NotificationQuery};

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
    type Request = NotificationRequest;

    async fn handle(&mut self, request: NotificationRequest) -> Result<Option<Reply>, HubError> {
        let hub = &self.hub;
        let user = self.user_id.as_str();
        let reply = match request {
            NotificationRequest::Subscribe { notification_types } => {
                if notification_types.iter().any(|t| t.is_empty() || t.len() > MAX_NOTIFICATION_TYPE) {
                    let message = format!("notification types must be 1..{MAX_NOTIFICATION_TYPE} characters");
                    return Err(HubError::bad_request(message));
                }
                self.outbox.set_types(&notification_types);
                Reply::new(&ServerMessage::Subscribed { notification_types: &notification_types })
            }
            NotificationRequest::GetNotifications { limit, before_id, after_id, unread_only } => {
                let query = page_query(limit, before_id, after_id, unread_only).map_err(HubError::bad_request)?;
                let page = hub.store.list_notifications(user, query).await?;
                Reply::new(&ServerMessage::NotificationsList(&page))
            }
            NotificationRequest::MarkRead { notification_id } => {
                match hub.store.mark_read(user, notification_id).await? {
                    MarkRead::NotFound => return Err(not_found(notification_id)),
                    MarkRead::Marked => push_unread_count(hub, user).await?,
                    MarkRead::AlreadyRead => {}
                }
                Reply::new(&ServerMessage::NotificationMarkedRead { notification_id, success: true })
            }
            NotificationRequest::MarkAllRead => {
                let count = hub.store.mark_all_read(user).await?;
                if count > 0 {
                    push_unread_count(hub, user).await?;
                }
                Reply::new(&ServerMessage::AllNotificationsMarkedRead { count })
            }
            NotificationRequest::DeleteNotification { notification_id } => {
                match hub.store.delete_notification(user, notification_id).await? {
                    Deleted::NotFound => return Err(not_found(notification_id)),
                    Deleted::Deleted { was_unread: true } => push_unread_count(hub, user).await?,
                    Deleted::Deleted { was_unread: false } => {}
                }
                Reply::new(&ServerMessage::NotificationDeleted { notification_id, success: true })
            }
            NotificationRequest::SendNotification(fields) => {
                if !self.is_staff {
                    return Err(HubError::forbidden("send_notification is for staff only"));
                }
                let new = validate(fields.user_id.clone(), &fields).map_err(HubError::bad_request)?;
                let published = publish(hub, vec![new]).await?;
                let notification_id = published.stored[0].1.id;
                Reply::new(&ServerMessage::NotificationSent { success: true, notification_id })
            }
        };
        Ok(Some(reply))
    }

    /// Staff-only requests follow the refreshed token's staff flag.
    fn refresh_rights(&mut self, identity: &crate::auth::Identity) -> Result<(), HubError> {
        self.is_staff = identity.is_staff;
        Ok(())
    }

    async fn on_close(self) {}
}

fn not_found(id: i64) -> HubError {
    HubError::not_found(format!("notification {id} not found"))
}

/// Validates a page request: `limit` 1..=200 (default 50).
pub fn page_query(
    limit: Option<u32>,
    before_id: Option<i64>,
    after_id: Option<i64>,
    unread_only: bool,
) -> Result<NotificationQuery, String> {
    protocol::one_cursor(before_id, after_id)?;
    Ok(NotificationQuery { limit: protocol::page_limit(limit)?, before_id, after_id, unread_only })
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
/// (PROTOCOL §6: stored before pushed). Fails only when nothing was stored; once stored, a push that
/// fails is reported as `pushed: false` and the rest are not tried (the layer is down: each would wait
/// for it in turn), since the rows reach their users through the lists and `get_notifications`.
pub async fn publish(hub: &Hub, new: Vec<NewNotification>) -> Result<Published, HubError> {
    let stored = hub.store.insert_notifications(&new).await?;
    let mut users = BTreeSet::new();
    let mut pushed = true;
    for (notification, new) in stored.iter().zip(&new) {
        let frame = protocol::encode(&ServerMessage::Notification { notification });
        let push = Push::tagged(frame, &notification.kind);
        pushed = pushed && hub.push_stored("notification", &group::user(&new.user_id), push).await;
        users.insert(new.user_id.as_str());
    }
    for user in users {
        if !pushed {
            break;
        }
        pushed = match push_unread_count(hub, user).await {
            Ok(()) => true,
            Err(error) => {
                warn!(?error, "cannot push the unread count of stored notifications");
                false
            }
        };
    }
    Ok(Published { stored: new.iter().map(|n| n.user_id.clone()).zip(stored).collect(), pushed })
}

/// Notifications as stored, each with its user, and whether their pushes reached the channel layer.
pub struct Published {
    pub stored: Vec<(String, Notification)>,
    pub pushed: bool,
}

/// Pushes the user's current unread count to all of their connections.
async fn push_unread_count(hub: &Hub, user_id: &str) -> Result<(), HubError> {
    let count = hub.store.unread_count(user_id).await?;
    let frame = protocol::encode(&ServerMessage::UnreadCount { count });
    hub.publish("unread_count", &group::user(user_id), Push::new(frame)).await
}
