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
