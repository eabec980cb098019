//! `/ws/events/{org_id}/` (PROTOCOL §4.2) and `POST /api/v1/orgs/{org_id}/events`: members only, org
//! isolation, the `event` push.

use serde_json::{Value, json};

use crate::util::{
    TestHub, api_error, assert_quiet, assert_timestamp, http, json_response, recv, recv_close, request, send, send_text,
};

/// Publishes an event with the API key; returns the 202 body.
async fn publish(hub: &TestHub, org: &str, body: Value) -> Value {
    let (status, reply) = json_response(hub.post_api(&format!("/api/v1/orgs/{org}/events"), &body).await).await;
    assert_eq!(status, 202, "{reply}");
    reply
}

/// A member connects with `connection_established {message, user_id, org_id, seq, epoch}` (seq 0 before
/// the first event), and every member of the org receives `event {event_type, data, org_id, timestamp,
/// seq, epoch}` for an event published through the API, the timestamp being the one the 202 answer gave.
#[tokio::test]
async fn members_receive_events_published_through_the_api() {
    let hub = TestHub::start().await;
    let (mut alice, greeting) = hub.connect("/ws/events/acme/", &hub.member_jwt("alice", &["acme"])).await;
    let epoch = greeting["epoch"].clone();
    assert_eq!(
        greeting,
        json!({"type": "connection_established", "message": "Connected to organization events", "user_id": "alice", "org_id": "acme", "seq": 0, "epoch": epoch})
    );
    let (mut bob, _) = hub.connect("/ws/events/acme/", &hub.member_jwt("bob", &["other", "acme"])).await;

    let data = json!({"user": {"id": "carol", "name": "Carol"}, "seats": 3});
    let reply = publish(&hub, "acme", json!({"event_type": "user.joined", "data": data})).await;
    assert_timestamp(&reply["timestamp"]);
    assert_eq!(
        reply,
        json!({"org_id": "acme", "event_type": "user.joined", "timestamp": reply["timestamp"], "pushed": true})
    );
    let event = json!({"type": "event", "event_type": "user.joined", "data": data, "org_id": "acme", "timestamp": reply["timestamp"], "seq": 1, "epoch": epoch});
    assert_eq!(recv(&mut alice).await, event);
    assert_eq!(recv(&mut bob).await, event);

    // `data` is optional and defaults to an empty object.
    let reply = publish(&hub, "acme", json!({"event_type": "resource.created"})).await;
    let event = json!({"type": "event", "event_type": "resource.created", "data": {}, "org_id": "acme", "timestamp": reply["timestamp"], "seq": 2, "epoch": epoch});
    assert_eq!(recv(&mut alice).await, event);
    assert_eq!(recv(&mut bob).await, event);
}

/// Events of one org never reach the members of another, and events from one publisher arrive in the
/// order they were published, at seq 1, 2, ... of the org's stream.
#[tokio::test]
async fn events_stay_within_their_org_and_in_order() {
    let hub = TestHub::start().await;
    let (mut a, _) = hub.connect("/ws/events/org-a/", &hub.member_jwt("u1", &["org-a"])).await;
    let (mut b, greeting) = hub.connect("/ws/events/org-b/", &hub.member_jwt("u2", &["org-b"])).await;
    let mut sent = Vec::new();
    for seq in 0..5 {
        sent.push(publish(&hub, "org-b", json!({"event_type": "tick", "data": {"seq": seq}})).await);
    }
    for (seq, reply) in sent.iter().enumerate() {
        let event = json!({"type": "event", "event_type": "tick", "data": {"seq": seq}, "org_id": "org-b", "timestamp": reply["timestamp"], "seq": seq + 1, "epoch": greeting["epoch"]});
        assert_eq!(recv(&mut b).await, event);
    }
    assert_quiet(&mut a).await;
}

/// A broadcast to a large org is written by several tasks at once (so by both cores): every member
/// still gets every event, once, in the order of publishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_org_gets_every_event_in_order() {
    let hub = TestHub::start().await;
    let mut members = Vec::new();
    for i in 0..600 {
        members.push(hub.connect("/ws/events/big/", &hub.member_jwt(&format!("m{i}"), &["big"])).await.0);
    }
    for seq in 0..5 {
        publish(&hub, "big", json!({"event_type": "tick", "data": {"seq": seq}})).await;
    }
    for member in &mut members {
        for seq in 0..5 {
            assert_eq!(recv(member).await["data"]["seq"], seq);
        }
    }
    for member in members.iter_mut().step_by(100) {
        assert_quiet(member).await;
    }
}

/// A user whose token does not list the org in `orgs` is accepted, then closed with 4003; so is an
/// org id that does not match `[A-Za-z0-9_.-]{1,64}`.
#[tokio::test]
async fn non_members_are_closed_with_4003() {
    let hub = TestHub::start().await;
    let mut outsider = hub.connect_raw("/ws/events/acme/", &hub.member_jwt("u1", &["other"])).await;
    assert_eq!(recv_close(&mut outsider).await, (4003, "not a member of this organization".to_owned()));
    let mut no_orgs = hub.connect_raw("/ws/events/acme/", &hub.jwt("u2")).await;
    assert_eq!(recv_close(&mut no_orgs).await, (4003, "not a member of this organization".to_owned()));
    let long = "a".repeat(65);
    let mut invalid = hub.connect_raw(&format!("/ws/events/{long}/"), &hub.member_jwt("u3", &[&long])).await;
    assert_eq!(recv_close(&mut invalid).await, (4003, "invalid org id".to_owned()));
}

/// The events endpoint answers `ping` (echoing `timestamp` and `request_id`) and refuses other types
/// with `unknown_type`, keeping the connection open.
#[tokio::test]
async fn the_events_endpoint_answers_ping_and_refuses_other_requests() {
    let hub = TestHub::start().await;
    let (mut ws, _) = hub.connect("/ws/events/acme/", &hub.member_jwt("u1", &["acme"])).await;
    let pong = request(&mut ws, json!({"type": "ping", "timestamp": {"t": 1}, "request_id": "p"})).await;
    assert_eq!(pong, json!({"type": "pong", "timestamp": {"t": 1}, "request_id": "p"}));
    let reply = request(&mut ws, json!({"type": "subscribe", "notification_types": [], "request_id": 4})).await;
    assert_eq!(
        reply,
        json!({"type": "error", "code": "unknown_type", "message": "unknown message type `subscribe`; expected one of: resume, ping, refresh", "request_id": 4})
    );
    send_text(&mut ws, "not json").await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "error", "code": "invalid_json", "message": "invalid JSON: expected ident at line 1 column 2"})
    );
    assert_eq!(request(&mut ws, json!({"type": "ping"})).await, json!({"type": "pong", "timestamp": null}));
}

/// Publishing an event takes the API key only (a staff JWT is 403), an `event_type` (400 when missing or
/// not a string), and a valid org id (400).
#[tokio::test]
async fn publishing_an_event_validates_the_caller_and_the_body() {
    let hub = TestHub::start().await;
    let url = hub.http_url("/api/v1/orgs/acme/events");
    let staff = format!("Bearer {}", hub.staff_jwt("admin"));
    let response = send(http().post(&url).header("authorization", staff).json(&json!({"event_type": "x"}))).await;
    assert_eq!(json_response(response).await, (403, api_error("forbidden", "requires the API key")));

    let missing = hub.post_api("/api/v1/orgs/acme/events", &json!({"data": {}})).await;
    assert_eq!(json_response(missing).await, (400, api_error("invalid_request", "missing field `event_type`")));
    let mistyped = hub.post_api("/api/v1/orgs/acme/events", &json!({"event_type": 5})).await;
    assert_eq!(
        json_response(mistyped).await,
        (400, api_error("invalid_request", "invalid type: integer `5`, expected a string"))
    );
    let empty = hub.post_api("/api/v1/orgs/acme/events", &json!({"event_type": ""})).await;
    assert_eq!(json_response(empty).await, (400, api_error("invalid_request", "event_type must be 1..128 characters")));
    let bad_org = hub.post_api("/api/v1/orgs/a%20b/events", &json!({"event_type": "x"})).await;
    assert_eq!(
        json_response(bad_org).await,
        (400, api_error("invalid_request", "org id must match [A-Za-z0-9_.-]{1,64}"))
    );
}
