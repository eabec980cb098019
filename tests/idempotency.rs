//! `Idempotency-Key` on the POST routes that store or publish: a retry stores once and gets the first
//! answer; the same key on another request is refused.

use serde_json::{Value, json};

use crate::util::*;

/// POSTs `body` to `path` with the API key and `key`; returns status, replay header and JSON body.
async fn post_keyed(hub: &TestHub, path: &str, key: &str, body: &Value) -> (u16, Option<String>, Value) {
    let request =
        http().post(hub.http_url(path)).header("x-api-key", hub.api_key()).header("idempotency-key", key).json(body);
    let response = send(request).await;
    let replayed = response.headers().get("idempotent-replayed").map(|v| v.to_str().expect("ASCII").to_owned());
    let (status, body) = json_response(response).await;
    (status, replayed, body)
}

/// A notification retried with the same key is stored and pushed once: the retry gets the first answer
/// (status and body) marked `Idempotent-Replayed: true`, and the user has exactly one notification.
#[tokio::test]
async fn a_retry_with_the_same_key_stores_once_and_gets_the_first_answer() {
    let hub = TestHub::start().await;
    let mut ws = hub.notifications("u1").await;
    let body = json!({"user_id": "u1", "title": "Deploy", "message": "v2 is live"});
    let (status, replayed, first) = post_keyed(&hub, "/api/v1/notifications", "k-1", &body).await;
    assert_eq!((status, replayed, &first["pushed"]), (201, None, &json!(true)), "{first}");
    let retry = post_keyed(&hub, "/api/v1/notifications", "k-1", &body).await;
    assert_eq!(retry, (201, Some("true".to_owned()), first.clone()));
    assert_eq!(recv(&mut ws).await["type"], "notification");
    assert_eq!(recv(&mut ws).await["type"], "unread_count");
    assert_quiet(&mut ws).await;
    let (_, page) =
        hub.get_json("/api/v1/notifications", &[("authorization", &format!("Bearer {}", hub.jwt("u1")))]).await;
    assert_eq!(page["total"], 1, "{page}");

    // Another key is another request.
    let (status, replayed, other) = post_keyed(&hub, "/api/v1/notifications", "k-2", &body).await;
    assert_eq!((status, replayed), (201, None));
    assert_ne!(other["notifications"][0]["id"], first["notifications"][0]["id"]);
}

/// The same key with another body, or on another route, is 422 `idempotency_key_reused`, and stores
/// nothing; an events and a chat retry replay like notifications.
#[tokio::test]
async fn the_same_key_for_another_request_is_refused() {
    let hub = TestHub::start().await;
    let body = json!({"user_id": "u1", "title": "One", "message": ""});
    assert_eq!(post_keyed(&hub, "/api/v1/notifications", "k", &body).await.0, 201);
    let other = json!({"user_id": "u1", "title": "Two", "message": ""});
    let (status, _, error) = post_keyed(&hub, "/api/v1/notifications", "k", &other).await;
    assert_eq!((status, &error["error"]["code"]), (422, &json!("idempotency_key_reused")), "{error}");
    let event = json!({"event_type": "tick"});
    let (status, _, error) = post_keyed(&hub, "/api/v1/orgs/acme/events", "k", &event).await;
    assert_eq!((status, &error["error"]["code"]), (422, &json!("idempotency_key_reused")));
    let (_, page) =
        hub.get_json("/api/v1/notifications", &[("authorization", &format!("Bearer {}", hub.jwt("u1")))]).await;
    assert_eq!(page["total"], 1, "{page}");

    let (status, _, first) = post_keyed(&hub, "/api/v1/orgs/acme/events", "e", &event).await;
    assert_eq!((status, &first["pushed"]), (202, &json!(true)));
    assert_eq!(post_keyed(&hub, "/api/v1/orgs/acme/events", "e", &event).await, (202, Some("true".into()), first));

    let room = json!({"room_id": "r1", "members": ["u1"]});
    assert_eq!(hub.post_json("/api/v1/chat/rooms", &[("x-api-key", hub.api_key())], &room).await.0, 201);
    let auth = format!("Bearer {}", hub.jwt("u1"));
    let post = |key: &'static str| {
        let request = http()
            .post(hub.http_url("/api/v1/chat/rooms/r1/messages"))
            .header("authorization", &auth)
            .header("idempotency-key", key)
            .json(&json!({"message": "hello"}));
        async move { json_response(send(request).await).await }
    };
    let first = post("c").await;
    assert_eq!((first.0, &first.1["pushed"]), (201, &json!(true)), "{:?}", first);
    assert_eq!(post("c").await, first);
    let (_, history) = hub.get_json("/api/v1/chat/rooms/r1/messages", &[("authorization", &auth)]).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1), "{history}");
}

/// A key that is not 1..255 visible ASCII characters is a 400 naming the header.
#[tokio::test]
async fn a_malformed_key_is_refused() {
    let hub = TestHub::start().await;
    let body = json!({"user_id": "u1", "title": "One", "message": ""});
    let (status, _, error) = post_keyed(&hub, "/api/v1/notifications", &"k".repeat(256), &body).await;
    assert_eq!((status, &error["error"]["code"]), (400, &json!("invalid_request")));
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("Idempotency-Key")), "{error}");
}
