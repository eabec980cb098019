//! `/ws/events/{org_id}/` (PROTOCOL §4.2): organization-wide events, for members of the org only.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::Hub;
use super::error::HubError;
use super::registry::Membership;
use super::session::{Accepted, Conn, Refusal, Reply, Session};
use crate::layer::group;
use crate::protocol::Endpoint;
use crate::protocol::{self, EventRequest, ServerMessage, close};

/// A member's connection to one org's events; it only listens (and pings).
pub struct EventsSession {
    _membership: Membership,
}

/// Accepts members of `org_id` (the token's `orgs` claim), else 4003.
pub async fn open(hub: Arc<Hub>, conn: Conn, org_id: String) -> Result<Accepted<EventsSession>, Refusal> {
    if !protocol::is_valid_scope_id(&org_id) {
        return Err(Refusal::new(close::FORBIDDEN, "invalid org id"));
    }
    if !conn.identity.orgs.contains(&org_id) {
        return Err(Refusal::new(close::FORBIDDEN, "not a member of this organization"));
    }
    let membership =
        Membership::join(&hub.registry, &hub.layer, group::org(&org_id), conn.id, Arc::clone(&conn.outbox)).await?;
    let mut extra = Map::new();
    extra.insert("org_id".to_owned(), Value::String(org_id));
    let greeting = protocol::encode(&ServerMessage::ConnectionEstablished {
        message: "Connected to organization events",
        user_id: &conn.identity.user_id,
        extra,
    });
    Ok(Accepted { session: EventsSession { _membership: membership }, conn, greetings: vec![greeting] })
}

impl Session for EventsSession {
    const ENDPOINT: Endpoint = Endpoint::Events;
    type Request = EventRequest;

    async fn handle(&mut self, request: EventRequest) -> Result<Option<Reply>, HubError> {
        match request {}
    }

    async fn on_close(self) {}
}

/// Publishes an org event to its members (live only, PROTOCOL §6); returns the event's timestamp.
pub async fn publish(hub: &Hub, org_id: &str, event_type: &str, data: &Value) -> Result<String, HubError> {
    let timestamp = protocol::format_timestamp(protocol::now_millis());
    let frame = protocol::encode(&ServerMessage::Event { event_type, data, org_id, timestamp: &timestamp });
    hub.publish("event", &group::org(org_id), crate::layer::Push::new(frame)).await?;
    Ok(timestamp)
}
