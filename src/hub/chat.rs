//! Chat rooms (PROTOCOL §4.4 and its §5 routes): stored messages pushed to the room, typing indicators,
//! read receipts that only move forward, history paging and per-room presence.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Hub;
use super::api::{self, ApiJson};
use super::error::HubError;
use super::presence::scope;
use super::registry::Membership;
use super::session::{Accepted, Conn, Refusal, Reply, Session};
use crate::auth::Identity;
use crate::layer::{ConnId, Push, group};
use crate::protocol::Endpoint;
use crate::protocol::limits::{
    DEFAULT_PAGE, MAX_ATTACHMENT_URL, MAX_CHAT_MESSAGE, MAX_CLIENT_ID, MAX_MEMBERS, MAX_ROOM_NAME,
};
use crate::protocol::{self, ChatMessage, ChatRequest, MessagePage, Room, RoomSummary, ServerMessage, close};
use crate::store::{Created, MessageQuery, NewChatMessage, NewRoom, ReadUpdate, RoomQuery};

/// One connection of a member (or staff) to a room.
pub struct ChatSession {
    hub: Arc<Hub>,
    conn_id: ConnId,
    user_id: String,
    room_id: String,
    /// Whether the user is a member of the room (else staff let them in), as the room was at connect.
    member: bool,
    _membership: Membership,
}

/// Accepts members and staff of an existing room (4004 unknown, 4003 not a member); greets with the
/// last 50 messages and tells the room when this is the user's first connection to it.
pub async fn open(hub: Arc<Hub>, conn: Conn, room_id: String) -> Result<Accepted<ChatSession>, Refusal> {
    let room = find_room(&hub, &room_id).await.map_err(|e| match e.status() {
        StatusCode::NOT_FOUND => Refusal::new(close::NOT_FOUND, "room not found"),
        _ => Refusal::new(close::INTERNAL, "store unavailable"),
    })?;
    if !may_enter(&room, &conn.identity) {
        return Err(Refusal::new(close::FORBIDDEN, "not a member of this room"));
    }
    let user_id = conn.identity.user_id.clone();
    // Join before reading history: a message stored meanwhile may then arrive twice (history and
    // push, same id), but never not at all.
    let membership =
        Membership::join(&hub.registry, &hub.layer, group::room(&room_id), conn.id, Arc::clone(&conn.outbox)).await?;
    let history = hub
        .store
        .list_messages(&room_id, MessageQuery { before_id: None, after_id: None, limit: DEFAULT_PAGE })
        .await
        .map_err(|_| Refusal::new(close::INTERNAL, "store unavailable"))?;
    if hub.presence.join(&scope::room(&room_id), &user_id).await {
        let frame = protocol::encode(&ServerMessage::UserStatus { user_id: &user_id, status: "online" });
        let _ = hub.publish("user_status", &group::room(&room_id), Push::skipping(frame, conn.id)).await;
    }
    let mut extra = Map::new();
    extra.insert("room_id".to_owned(), Value::String(room_id.clone()));
    let greetings = vec![
        protocol::encode(&ServerMessage::ConnectionEstablished {
            message: "Connected to chat room",
            user_id: &user_id,
            extra,
        }),
        protocol::encode_reply(&self::history(&room_id, &history), None),
    ];
    let member = room.members.contains(&user_id);
    let session = ChatSession { hub, conn_id: conn.id, user_id, room_id, member, _membership: membership };
    Ok(Accepted { session, conn, greetings })
}

impl Session for ChatSession {
    const ENDPOINT: Endpoint = Endpoint::Chat;

    type Request = ChatRequest;

    async fn handle(&mut self, request: ChatRequest) -> Result<Option<Reply>, HubError> {
        let hub = &self.hub;
        let room = group::room(&self.room_id);
        match request {
            ChatRequest::ChatMessage { message, client_id } => {
                let client_id = client_id.as_deref();
                let sender = Some(self.conn_id);
                let (message, _pushed) =
                    post_to_room(hub, &self.room_id, &self.user_id, &message, None, client_id, sender).await?;
                // This connection's copy is the direct reply, so that it repeats the request_id.
                Ok(Some(Reply::new(&ServerMessage::ChatMessage { message: &message, client_id })))
            }
            ChatRequest::Typing { is_typing } => {
                let frame = protocol::encode(&ServerMessage::Typing { user_id: &self.user_id, is_typing });
                hub.publish("typing", &room, Push::skipping(frame, self.conn_id)).await?;
                Ok(None)
            }
            ChatRequest::ReadReceipt { message_id } => {
                match hub.store.set_read_position(&self.room_id, &self.user_id, message_id).await? {
                    ReadUpdate::Moved(position) => {
                        let message = ServerMessage::ReadReceipt {
                            user_id: &self.user_id,
                            message_id: position.message_id,
                            read_at: &position.read_at,
                        };
                        // The rest of the room gets the push; this connection the reply with its request_id.
                        let push = Push::skipping(protocol::encode(&message), self.conn_id);
                        hub.publish("read_receipt", &room, push).await?;
                        Ok(Some(Reply::new(&message)))
                    }
                    // Never backwards: tell only this client where the position stands.
                    ReadUpdate::Unchanged(position) => Ok(Some(Reply::new(&ServerMessage::ReadReceipt {
                        user_id: &self.user_id,
                        message_id: position.message_id,
                        read_at: &position.read_at,
                    }))),
                    ReadUpdate::NotFound => Err(HubError::not_found(format!("message {message_id} not in this room"))),
                }
            }
            ChatRequest::GetHistory { before_id, after_id, limit } => {
                let query = message_query(before_id, after_id, limit).map_err(HubError::bad_request)?;
                let page = hub.store.list_messages(&self.room_id, query).await?;
                Ok(Some(Reply::new(&history(&self.room_id, &page))))
            }
        }
    }

    /// A refreshed token must still let the user in: a member, or staff.
    fn refresh_rights(&mut self, identity: &Identity) -> Result<(), HubError> {
        if !(self.member || identity.is_staff) {
            return Err(super::lifetime::no_longer_allowed("not a member of this room"));
        }
        Ok(())
    }

    async fn on_close(self) {
        if self.hub.presence.leave(&scope::room(&self.room_id), &self.user_id).await {
            announce_offline(&self.hub, &self.room_id, &self.user_id, Some(self.conn_id)).await;
        }
    }
}

/// Tells a room's connections (but `skip`) that `user_id` closed their last connection to it.
pub async fn announce_offline(hub: &Hub, room_id: &str, user_id: &str, skip: Option<ConnId>) {
    let frame = protocol::encode(&ServerMessage::UserStatus { user_id, status: "offline" });
    let _ = hub.publish("user_status", &group::room(room_id), Push::all_but(frame, skip)).await;
}

fn history<'a>(room_id: &'a str, page: &'a MessagePage) -> ServerMessage<'a> {
    ServerMessage::History { room_id, messages: &page.messages, has_more: page.has_more }
}

fn message_query(before_id: Option<i64>, after_id: Option<i64>, limit: Option<u32>) -> Result<MessageQuery, String> {
    protocol::one_cursor(before_id, after_id)?;
    Ok(MessageQuery { before_id, after_id, limit: protocol::page_limit(limit)? })
}

fn may_enter(room: &Room, identity: &Identity) -> bool {
    identity.is_staff || room.members.contains(&identity.user_id)
}

/// The room, or 404.
async fn find_room(hub: &Hub, room_id: &str) -> Result<Room, HubError> {
    if !protocol::is_valid_scope_id(room_id) {
        return Err(HubError::not_found(format!("room {room_id} not found")));
    }
    hub.store.get_room(room_id).await?.ok_or_else(|| HubError::not_found(format!("room {room_id} not found")))
}

/// Validates, stores, then pushes a message to the room: every connection but `skip`, the sending
/// connection that answers with the message itself.
async fn post_to_room(
    hub: &Hub,
    room_id: &str,
    sender: &str,
    content: &str,
    attachment_url: Option<String>,
    client_id: Option<&str>,
    skip: Option<ConnId>,
) -> Result<(ChatMessage, bool), HubError> {
    // Counted in characters and stored as sent: the contract gives 1..4000 characters, and a client
    // that reconciles by content (or sends indented code) must get back what it wrote.
    let length = content.chars().count();
    if !(1..=MAX_CHAT_MESSAGE).contains(&length) {
        return Err(HubError::bad_request(format!("message must be 1..{MAX_CHAT_MESSAGE} characters")));
    }
    protocol::no_nul("message", content).map_err(HubError::bad_request)?;
    protocol::no_nul("attachment_url", attachment_url.as_deref().unwrap_or_default()).map_err(HubError::bad_request)?;
    if client_id.is_some_and(|c| c.len() > MAX_CLIENT_ID) {
        return Err(HubError::bad_request(format!("client_id must be at most {MAX_CLIENT_ID} characters")));
    }
    if let Some(url) = &attachment_url {
        let web = url.starts_with("https://") || url.starts_with("http://");
        if !web || url.len() > MAX_ATTACHMENT_URL {
            return Err(HubError::bad_request(format!(
                "attachment_url must be an http(s) URL of at most {MAX_ATTACHMENT_URL} characters"
            )));
        }
    }
    let new = NewChatMessage {
        room_id: room_id.to_owned(),
        sender_id: sender.to_owned(),
        content: content.to_owned(),
        attachment_url,
    };
    let message = hub.store.insert_message(&new).await?.ok_or_else(|| HubError::not_found("room not found"))?;
    let frame = protocol::encode(&ServerMessage::ChatMessage { message: &message, client_id });
    // Stored: from here on the sender gets its message whatever the push does (the room reads it
    // from the history).
    let pushed = hub.push_stored("chat_message", &group::room(room_id), Push::all_but(frame, skip)).await;
    Ok((message, pushed))
}

/// The chat HTTP routes.
pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/api/v1/chat/rooms", post(create_room).get(list_rooms))
        .route("/api/v1/chat/rooms/{room_id}/messages", get(list_messages).post(post_message))
}

#[derive(Debug, Deserialize)]
struct CreateRoom {
    /// A string, or a JSON integer taken as its decimal string (PROTOCOL conventions: ids).
    room_id: Option<Value>,
    name: Option<String>,
    members: Vec<Value>,
}

async fn create_room(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateRoom>,
) -> Result<Response, HubError> {
    api::privileged(&hub, &headers)?;
    let room_id = match body.room_id {
        Some(Value::String(id)) if protocol::is_valid_scope_id(&id) => id,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(Value::Null) | None => format!("room-{:08x}", rand::random::<u32>()),
        Some(_) => return Err(HubError::bad_request("room_id must match [A-Za-z0-9_.-]{1,64}")),
    };
    let name = body.name.unwrap_or_else(|| room_id.clone());
    if name.trim().is_empty() || name.chars().count() > MAX_ROOM_NAME {
        return Err(HubError::bad_request(format!("name must be 1..{MAX_ROOM_NAME} characters")));
    }
    protocol::no_nul("name", &name).map_err(HubError::bad_request)?;
    if body.members.len() > MAX_MEMBERS {
        return Err(HubError::bad_request(format!("a room may be created with at most {MAX_MEMBERS} members")));
    }
    let members = body
        .members
        .iter()
        .map(|id| {
            protocol::user_id(id).map_err(|_| HubError::bad_request("members must hold user ids (strings or integers)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match hub.store.create_room(&NewRoom { room_id: room_id.clone(), name, members }).await? {
        Created::Created(room) => Ok((StatusCode::CREATED, axum::Json(room)).into_response()),
        Created::Conflict => Err(HubError::conflict(format!("room {room_id} exists already"))),
    }
}

#[derive(Debug, Deserialize)]
struct RoomsQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/chat/rooms`: a page of the rooms the user may enter, latest activity first, and the
/// cursor of the next page (3,000 rooms in one answer were 494 KiB).
async fn list_rooms(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    query: Result<Query<RoomsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Value>, HubError> {
    let identity = api::user(&hub, &headers)?;
    let Query(query) = query.map_err(|e| HubError::bad_request(e.body_text()))?;
    let limit = protocol::page_limit(query.limit).map_err(HubError::bad_request)?;
    let after = query.cursor.as_deref().map(RoomCursor::parse).transpose()?;
    // One room more than asked for says whether there is a next page.
    let query = RoomQuery { after: after.map(|after| (after.activity_ms, after.room_id)), limit: Some(limit + 1) };
    let mut rooms = hub.store.room_page(&identity.user_id, identity.is_staff, &query).await?;
    let more = rooms.len() > limit as usize;
    rooms.truncate(limit as usize);
    let next = more.then(|| rooms.last().map(|room| RoomCursor::of(room).encode())).flatten();
    Ok(axum::Json(json!({"rooms": rooms, "has_more": next.is_some(), "next_cursor": next})))
}

/// Where a page of rooms ends: its last room's activity (the time of its last message, else of its
/// creation) and id, the order's two keys, as `ACTIVITY|ROOM_ID` with the activity as the room list
/// shows times. A room that gets a message between two pages moves to the front and is not repeated;
/// it is the next first page's.
#[derive(Debug, PartialEq)]
struct RoomCursor {
    activity: String,
    activity_ms: i64,
    room_id: String,
}

impl RoomCursor {
    fn of(room: &RoomSummary) -> Self {
        let activity = room.last_message.as_ref().map_or(&room.room.created_at, |m| &m.created_at);
        let activity_ms = parse_time(activity).expect("the store formats times as RFC 3339");
        Self { activity: activity.clone(), activity_ms, room_id: room.room.room_id.clone() }
    }

    /// `ACTIVITY|ROOM_ID`, as `next_cursor` gave it; room ids hold no `|`.
    fn parse(text: &str) -> Result<Self, HubError> {
        let invalid = || HubError::bad_request("invalid cursor: pass the next_cursor of the previous page");
        let (activity, room_id) = text.split_once('|').ok_or_else(invalid)?;
        let activity_ms = parse_time(activity).ok_or_else(invalid)?;
        if !protocol::is_valid_scope_id(room_id) {
            return Err(invalid());
        }
        Ok(Self { activity: activity.to_owned(), activity_ms, room_id: room_id.to_owned() })
    }

    fn encode(&self) -> String {
        format!("{}|{}", self.activity, self.room_id)
    }
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|time| time.timestamp_millis())
}

/// The room, if this user may enter it: 404 unknown, 403 not a member.
async fn entered_room(hub: &Hub, headers: &HeaderMap, room_id: &str) -> Result<Identity, HubError> {
    let identity = api::user(hub, headers)?;
    may_post(hub, &identity, room_id).await?;
    Ok(identity)
}

/// Whether `identity` may read and post in the room: 404 unknown, 403 not a member.
pub(super) async fn may_post(hub: &Hub, identity: &Identity, room_id: &str) -> Result<(), HubError> {
    let room = find_room(hub, room_id).await?;
    if !may_enter(&room, identity) {
        return Err(HubError::forbidden("not a member of this room"));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct MessagesQuery {
    before_id: Option<i64>,
    after_id: Option<i64>,
    limit: Option<u32>,
}

async fn list_messages(
    State(hub): State<Arc<Hub>>,
    Path(room_id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<MessagesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<MessagePage>, HubError> {
    entered_room(&hub, &headers, &room_id).await?;
    let Query(query) = query.map_err(|e| HubError::bad_request(e.body_text()))?;
    let query = message_query(query.before_id, query.after_id, query.limit).map_err(HubError::bad_request)?;
    Ok(axum::Json(hub.store.list_messages(&room_id, query).await?))
}

#[derive(Debug, Deserialize)]
struct PostMessage {
    message: String,
    attachment_url: Option<String>,
}

async fn post_message(
    State(hub): State<Arc<Hub>>,
    Path(room_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PostMessage>,
) -> Result<Response, HubError> {
    let identity = entered_room(&hub, &headers, &room_id).await?;
    let (message, pushed) =
        post_to_room(&hub, &room_id, &identity.user_id, &body.message, body.attachment_url, None, None).await?;
    let mut body = serde_json::to_value(&message).expect("chat messages serialize");
    body["pushed"] = Value::Bool(pushed);
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}
