//! Faults between hub nodes: forged payloads on the Redis channels, Redis going away and coming back,
//! a node killed without cleanup.
//!
//! The tests that need the shared test Redis run when `RTCTL_TEST_REDIS_URL` is set and skip with a
//! message otherwise; the outage test starts and kills a `redis-server` of its own on a free port.

use rtctl::config::{DEFAULT_NODE_TTL, RedisConfig, Secret};

use crate::util::*;

/// The test Redis, or `None` (the caller skips) with a message saying why.
fn test_redis(test: &str) -> Option<String> {
    let url = std::env::var("RTCTL_TEST_REDIS_URL").ok().filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!("skipping {test}: set RTCTL_TEST_REDIS_URL to a Redis to run it");
    }
    url
}

/// A deployment's Redis settings on `url`: a prefix no other test uses, a fresh frame key.
fn redis_config(url: &str) -> RedisConfig {
    RedisConfig {
        url: Secret::new(url),
        prefix: format!("rtctl-test-{:016x}", rand::random::<u64>()),
        node_ttl: DEFAULT_NODE_TTL,
        frame_key: Secret::new(rtctl::auth::random_secret()),
    }
}

/// Deletes every key of a test's prefix when the test ends (the machine's Redis is shared).
struct Cleanup {
    url: String,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(self.url.as_str()).and_then(|client| client.get_connection()) else {
            return;
        };
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:*", self.prefix)).query(&mut conn).unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// A WebSocket text frame as the hub writes it (unmasked, one fragment).
fn text_frame(text: &str) -> Vec<u8> {
    let mut frame = vec![0x81, u8::try_from(text.len()).expect("a short test frame")];
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// Anything PUBLISHed on a user's group channel by a client of the same Redis that lacks the frame key
/// (a raw frame in the old unauthenticated envelope, a forged close, garbage, an envelope with a made-up
/// MAC) reaches no socket: the user's connection gets nothing and stays open, a genuine push still
/// arrives, and each forgery is counted in /metrics.
#[tokio::test]
async fn forged_payloads_on_a_users_channel_never_reach_the_socket() {
    let Some(url) = test_redis("forged_payloads_on_a_users_channel_never_reach_the_socket") else { return };
    let redis = redis_config(&url);
    let _cleanup = Cleanup { url: url.clone(), prefix: redis.prefix.clone() };
    let channel = format!("{}:g:user:victim", redis.prefix);
    let hub = TestHub::start_with(|config| config.redis = Some(redis)).await;
    let mut ws = hub.notifications("victim").await;

    let forged = r#"{"type":"notification","notification":{"id":1,"title":"forged"}}"#;
    let mut old_envelope = vec![0u8];
    old_envelope.extend_from_slice(&text_frame(forged));
    let mut close = vec![0u8, 0x88, 2];
    close.extend_from_slice(&4003u16.to_be_bytes());
    let mut made_up_mac = vec![0x5a; 32];
    made_up_mac.push(0);
    made_up_mac.extend_from_slice(&text_frame(forged));
    let payloads: [&[u8]; 5] = [&old_envelope, &close, b"garbage", &made_up_mac, b""];
    let mut conn = redis::Client::open(url.as_str())
        .and_then(|client| client.get_connection())
        .expect("connect to the test Redis");
    for payload in payloads {
        let receivers: i64 = redis::cmd("PUBLISH").arg(&channel).arg(payload).query(&mut conn).expect("PUBLISH");
        assert_eq!(receivers, 1, "the hub is subscribed to {channel}");
    }
    assert_quiet(&mut ws).await;

    let id = hub.notify("victim", "genuine", "info").await;
    let push = recv(&mut ws).await;
    assert_eq!((push["type"].as_str(), push["notification"]["id"].as_i64()), (Some("notification"), Some(id)));
    let metrics = hub.metrics().await;
    assert!(metrics.contains("\nrtctl_layer_rejected_payloads_total 5\n"), "{metrics}");
}

/// Two nodes with different frame keys do not take each other's pushes: a node drops what another
/// deployment (or a misconfigured node) publishes under the same prefix, and counts it.
#[tokio::test]
async fn a_node_with_another_frame_key_is_not_heard() {
    let Some(url) = test_redis("a_node_with_another_frame_key_is_not_heard") else { return };
    let redis = redis_config(&url);
    let _cleanup = Cleanup { url: url.clone(), prefix: redis.prefix.clone() };
    let a = TestHub::start_with(|config| config.redis = Some(redis.clone())).await;
    let other_key = RedisConfig { frame_key: Secret::new(rtctl::auth::random_secret()), ..redis };
    let b = TestHub::start_with(|config| config.redis = Some(other_key)).await;
    let mut on_a = a.notifications("u1").await;
    b.notify("u1", "from the wrong key", "info").await;
    assert_quiet(&mut on_a).await;
    let id = a.notify("u1", "from the right key", "info").await;
    assert_eq!(recv(&mut on_a).await["notification"]["id"].as_i64(), Some(id));
    // b's notification and its unread count.
    assert!(a.metrics().await.contains("\nrtctl_layer_rejected_payloads_total 2\n"));
}

/// A `redis-server` of the test's own on a free port, which the test may kill and start again.
struct OwnRedis {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl OwnRedis {
    /// Starts one, or `None` (the caller skips) with a message when `redis-server` is not on PATH.
    async fn start(test: &str) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let mut redis = Self { port, child: None };
        if !redis.up().await {
            eprintln!("skipping {test}: redis-server is not on PATH");
            return None;
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it on its port; false when there is no `redis-server`.
    async fn up(&mut self) -> bool {
        let Ok(child) = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
        else {
            return false;
        };
        self.child = Some(child);
        let started = std::time::Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(started.elapsed() < TIMEOUT, "redis-server did not listen");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }
}

/// With the channel layer down, whatever is stored is answered as success with `pushed: false`, never
/// an error: a notification (201, one row), a chat message over HTTP (201, one row) and over the
/// WebSocket (the sender's own `chat_message`, no `internal` error), and an event (202).
#[tokio::test]
async fn stored_writes_answer_pushed_false_while_redis_is_down() {
    let Some(mut redis) = OwnRedis::start("stored_writes_answer_pushed_false_while_redis_is_down").await else {
        return;
    };
    let config = redis_config(&redis.url());
    let hub = TestHub::start_with(|c| c.redis = Some(config)).await;
    let room = serde_json::json!({"room_id": "r1", "members": ["u1"]});
    assert_eq!(hub.post_json("/api/v1/chat/rooms", &[("x-api-key", hub.api_key())], &room).await.0, 201);
    let (mut chat, _) = hub.connect("/ws/chat/r1/", &hub.jwt("u1")).await;
    assert_eq!(recv(&mut chat).await["type"], "history");
    redis.kill().await;

    let body = serde_json::json!({"user_id": "u7", "title": "Deploy", "message": "v2 is live"});
    let response = hub.post_api("/api/v1/notifications", &body).await;
    let (status, created) = json_response(response).await;
    assert_eq!((status, &created["pushed"]), (201, &serde_json::json!(false)), "{created}");
    let auth7 = format!("Bearer {}", hub.jwt("u7"));
    assert_eq!(hub.get_json("/api/v1/notifications", &[("authorization", &auth7)]).await.1["total"], 1);

    let auth = format!("Bearer {}", hub.jwt("u1"));
    let message = serde_json::json!({"message": "over http"});
    let (status, stored) = hub.post_json("/api/v1/chat/rooms/r1/messages", &[("authorization", &auth)], &message).await;
    assert_eq!((status, &stored["pushed"]), (201, &serde_json::json!(false)), "{stored}");
    let reply =
        request(&mut chat, serde_json::json!({"type": "chat_message", "message": "over ws", "request_id": 1})).await;
    assert_eq!(
        (reply["type"].as_str(), &reply["request_id"]),
        (Some("chat_message"), &serde_json::json!(1)),
        "{reply}"
    );
    let (_, history) = hub.get_json("/api/v1/chat/rooms/r1/messages", &[("authorization", &auth)]).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(2), "{history}");

    let event = serde_json::json!({"event_type": "tick"});
    let (status, accepted) = json_response(hub.post_api("/api/v1/orgs/acme/events", &event).await).await;
    assert_eq!((status, &accepted["pushed"]), (202, &serde_json::json!(false)), "{accepted}");
}

/// Redis killed under a running node and started again on its port: while it is away a notification
/// is stored and answered `pushed: false`, a new WebSocket is closed with `1011` and a reason, and
/// `/readyz` is 503; once it answers again, `/readyz` is 200 and a push reaches the connection held
/// through the outage, each within 1 s (the figures are printed).
#[tokio::test]
async fn a_node_recovers_within_a_second_of_redis_coming_back() {
    let Some(mut redis) = OwnRedis::start("a_node_recovers_within_a_second_of_redis_coming_back").await else {
        return;
    };
    let config = redis_config(&redis.url());
    let hub = TestHub::start_with(|c| c.redis = Some(config)).await;
    let mut ws = hub.notifications("u1").await;
    redis.kill().await;
    let body = serde_json::json!({"user_id": "u1", "title": "during", "message": ""});
    let (status, created) = json_response(hub.post_api("/api/v1/notifications", &body).await).await;
    assert_eq!((status, &created["pushed"]), (201, &serde_json::json!(false)), "{created}");
    assert_eq!(hub.get_json("/readyz", &[]).await.0, 503);
    let mut during = hub.connect_raw("/ws/notifications/", &hub.jwt("u2")).await;
    assert_eq!(recv_close(&mut during).await, (1011, "channel layer unavailable".to_owned()));
    // Down for a few seconds, as a restart is: long enough for any backoff to grow.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    assert!(redis.up().await);
    let back = std::time::Instant::now();
    while hub.get_json("/readyz", &[]).await.0 != 200 {
        assert!(back.elapsed() < TIMEOUT, "/readyz still 503");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let ready = back.elapsed();
    let body = serde_json::json!({"user_id": "u1", "title": "after", "message": ""});
    let delivered = loop {
        assert!(back.elapsed() < TIMEOUT, "no push got through");
        let (status, created) = json_response(hub.post_api("/api/v1/notifications", &body).await).await;
        assert_eq!(status, 201);
        if created["pushed"] == true {
            let push = recv(&mut ws).await;
            assert_eq!(push["notification"]["title"], "after", "{push}");
            break back.elapsed();
        }
    };
    eprintln!("redis back: /readyz 200 after {ready:?}, first push delivered after {delivered:?}");
    assert!(ready < std::time::Duration::from_secs(1), "/readyz 200 only after {ready:?}");
    assert!(delivered < std::time::Duration::from_secs(1), "first push delivered only after {delivered:?}");
}
