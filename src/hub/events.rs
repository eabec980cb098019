//! `/ws/events/{org_id}/` (PROTOCOL §4.2): organization-wide events, for members of the org only. Each
//! org's events are a stream (PROTOCOL §7): logged with a position, and resumable.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::error::HubError;
use super::outbox::Outbox;
use super::registry::Membership;
use super::session::{Accepted, Conn, Refusal, Reply, Session};
use super::{Hub, streams};
use crate::layer::group;
use crate::protocol::Endpoint;
use crate::protocol::{self, EventRequest, ResumeFrom, ServerMessage, Unpositioned, close};

/// A member's connection to one org's events; it listens, and may ask to resume.
pub struct EventsSession {
    hub: Arc<Hub>,
    org_id: String,
    stream: String,
    outbox: Arc<Outbox>,
    _membership: Membership,
}

/// Accepts members of `org_id` (the token's `orgs` claim), else 4003; catches up from `from` first.
pub async fn open(
    hub: Arc<Hub>,
    conn: Conn,
    org_id: String,
    from: Option<ResumeFrom>,
) -> Result<Accepted<EventsSession>, Refusal> {
    if !protocol::is_valid_scope_id(&org_id) {
        return Err(Refusal::new(close::FORBIDDEN, "invalid org id"));
    }
    if !conn.identity.orgs.contains(&org_id) {
        return Err(Refusal::new(close::FORBIDDEN, "not a member of this organization"));
    }
    let stream = group::org(&org_id);
    let membership =
        Membership::join(&hub.registry, &hub.layer, stream.clone(), conn.id, Arc::clone(&conn.outbox)).await?;
    let caught_up = streams::catch_up(&hub, &stream, &conn.outbox, from.as_ref())
        .await
        .map_err(|_| Refusal::new(close::INTERNAL, "store unavailable"))?;
    let mut extra = Map::new();
    extra.insert("org_id".to_owned(), Value::String(org_id.clone()));
    extra.insert("seq".to_owned(), Value::from(caught_up.seq));
    extra.insert("epoch".to_owned(), Value::String(caught_up.epoch));
    let greeting = protocol::encode(&ServerMessage::ConnectionEstablished {
        message: "Connected to organization events",
        user_id: &conn.identity.user_id,
        extra,
    });
    let mut greetings = vec![greeting];
    match caught_up.refused {
        Some(error) => greetings.push(error.frame(None)),
        None => greetings.extend(caught_up.frames),
    }
    let session = EventsSession { hub, org_id, stream, outbox: Arc::clone(&conn.outbox), _membership: membership };
    Ok(Accepted { session, conn, greetings })
}

impl Session for EventsSession {
    const ENDPOINT: Endpoint = Endpoint::Events;
    type Request = EventRequest;

    async fn handle(&mut self, request: EventRequest) -> Result<Option<Reply>, HubError> {
        match request {
            EventRequest::Resume(from) => {
                let caught_up = streams::catch_up(&self.hub, &self.stream, &self.outbox, Some(&from)).await?;
                match caught_up.refused {
                    Some(error) => Err(error),
                    None => Ok(Some(Reply::frames(caught_up.frames))),
                }
            }
        }
    }

    /// A refreshed token must still name the org.
    fn refresh_rights(&mut self, identity: &crate::auth::Identity) -> Result<(), HubError> {
        if !identity.orgs.contains(&self.org_id) {
            return Err(super::lifetime::no_longer_allowed("not a member of this organization"));
        }
        Ok(())
    }

    async fn on_close(self) {}
}

/// Logs an org event in the org's stream and publishes it to its members; returns its timestamp and
/// whether it reached the channel layer. Once logged, an event that did not is answered all the same
/// with `pushed: false` (DECISIONS.md, 17b): members that resume from their last seq get it.
pub async fn publish(hub: &Hub, org_id: &str, event_type: &str, data: &Value) -> Result<(String, bool), HubError> {
    let timestamp = protocol::format_timestamp(protocol::now_millis());
    let event = ServerMessage::Event { event_type, data, org_id, timestamp: &timestamp };
    let push = Unpositioned::new(&event);
    let (_, pushed) = streams::publish(hub, "event", &group::org(org_id), None, push).await?;
    Ok((timestamp, pushed))
}
