//! Several hub nodes on one Redis (`redis_url`): fan-out, ws tokens and presence across nodes.
//!
//! Each test starts two in-process hubs with the same secrets, database and Redis, under a Redis key
//! prefix of its own. They need a Redis: they run when `RTCTL_TEST_REDIS_URL` is set (`scripts/ci.sh`
//! sets it, and starts a `redis-server` when none answers) and are listed as ignored otherwise.

use std::time::{Duration, Instant};

use rtctl::config::{DEFAULT_NODE_TTL, HubConfig, RedisConfig, Secret};
use serde_json::json;

use crate::util::*;

fn redis_url() -> String {
    std::env::var("RTCTL_TEST_REDIS_URL")
        .expect("RTCTL_TEST_REDIS_URL names the Redis these tests use (see CONTRIBUTING.md)")
}

/// A deployment's Redis settings: the test Redis, a prefix no other test uses.
fn redis_config() -> RedisConfig {
    RedisConfig {
        url: Secret::new(redis_url()),
        prefix: format!("rtctl-test-{:016x}", rand::random::<u64>()),
        node_ttl: DEFAULT_NODE_TTL,
        frame_key: Secret::new(rtctl::auth::random_secret()),
    }
}

/// Two nodes of one deployment, and what deletes its keys from the test Redis afterwards.
async fn two_nodes() -> (TestHub, TestHub, Cleanup) {
    two_nodes_with(redis_config()).await
}

async fn two_nodes_with(redis: RedisConfig) -> (TestHub, TestHub, Cleanup) {
    let cleanup = Cleanup(redis.prefix.clone());
    let a = TestHub::start_with(|config| config.redis = Some(redis)).await;
    let b = a.node().await;
    (a, b, cleanup)
}

/// Deletes every key of a test's prefix when the test ends, however it ends: a hub dropped at the end
/// of a test never gets to take its presence out of Redis, and the machine's Redis is shared.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(redis_url()).and_then(|client| client.get_connection()) else { return };
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}:*", self.0)).query(&mut conn).unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// A synchronous connection to the test Redis, to look at what the nodes left there.
fn redis() -> redis::Connection {
    redis::Client::open(redis_url()).expect("a Redis URL").get_connection().expect("connect to the test Redis")
}

fn prefix(hub: &TestHub) -> &str {
    &hub.config.redis.as_ref().expect("a hub on Redis").prefix
}

async fn publish_event(hub: &TestHub, seq: u64) {
    let body = json!({"event_type": "tick", "data": {"seq": seq}});
    assert_eq!(hub.post_api("/api/v1/orgs/acme/events", &body).await.status(), 202);
}

/// Events published through either node reach the members on both, every one, in publish order; both
/// nodes report the Redis layer, under different node ids.
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn events_reach_the_members_on_every_node_in_order() {
    let (a, b, _cleanup) = two_nodes().await;
    let (mut on_a, _) = a.connect("/ws/events/acme/", &a.member_jwt("u1", &["acme"])).await;
    let (mut on_b, _) = b.connect("/ws/events/acme/", &b.member_jwt("u2", &["acme"])).await;
    for seq in 0..20 {
        publish_event(if seq % 2 == 0 { &a } else { &b }, seq).await;
    }
    for ws in [&mut on_a, &mut on_b] {
        let seqs: Vec<_> = recv_n(ws, 20).await.iter().map(|e| e["data"]["seq"].as_u64().expect("a seq")).collect();
        assert_eq!(seqs, (0..20).collect::<Vec<_>>());
        assert_quiet(ws).await;
    }
    let (_, stats_a) = a.get_json("/api/v1/stats", &[("x-api-key", a.api_key())]).await;
    let (_, stats_b) = b.get_json("/api/v1/stats", &[("x-api-key", b.api_key())]).await;
    assert_eq!((&stats_a["layer"], &stats_b["layer"]), (&json!("redis"), &json!("redis")));
    assert_ne!(stats_a["node_id"], stats_b["node_id"]);
    let (status, ready) = a.get_json("/readyz", &[]).await;
    assert_eq!((status, &ready["layer"]), (200, &json!({"name": "redis", "status": "ok"})), "{ready}");
}

/// A notification stored through one node reaches every connection of its user, on both nodes, and
/// the other node lists it from the shared store.
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn a_users_notification_reaches_their_connections_on_every_node() {
    let (a, b, _cleanup) = two_nodes().await;
    let mut on_a = a.notifications("u1").await;
    let mut on_b = b.notifications("u1").await;
    let id = b.notify("u1", "Hello", "info").await;
    for ws in [&mut on_a, &mut on_b] {
        let push = recv(ws).await;
        assert_eq!((&push["type"], &push["notification"]["id"]), (&json!("notification"), &json!(id)), "{push}");
        assert_eq!(recv(ws).await, json!({"type": "unread_count", "count": 1}));
    }
    let list = request(&mut on_a, json!({"type": "get_notifications"})).await;
    assert_eq!(list["notifications"][0]["id"], id, "{list}");
}

/// A typing indicator crosses nodes to the other members of the room, and skips its sender's own
/// connection even though the push went through Redis.
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn chat_pushes_cross_nodes_and_skip_their_sender() {
    let (a, b, _cleanup) = two_nodes().await;
    let (status, _) = a
        .post_json(
            "/api/v1/chat/rooms",
            &[("x-api-key", a.api_key())],
            &json!({"room_id": "r1", "members": ["u1", "u2"]}),
        )
        .await;
    assert_eq!(status, 201);
    let (mut u1, _) = a.connect("/ws/chat/r1/", &a.jwt("u1")).await;
    assert_eq!(recv(&mut u1).await["type"], "history");
    let (mut u2, _) = b.connect("/ws/chat/r1/", &b.jwt("u2")).await;
    assert_eq!(recv(&mut u2).await["type"], "history");
    let online = recv(&mut u1).await;
    assert_eq!(online, json!({"type": "user_status", "user_id": "u2", "status": "online"}));

    send_json(&mut u1, &json!({"type": "typing", "is_typing": true})).await;
    assert_eq!(recv(&mut u2).await, json!({"type": "typing", "user_id": "u1", "is_typing": true}));
    send_json(&mut u1, &json!({"type": "chat_message", "message": "hi", "client_id": "c1"})).await;
    for ws in [&mut u1, &mut u2] {
        let message = recv(ws).await;
        assert_eq!((&message["type"], &message["message"]["content"]), (&json!("chat_message"), &json!("hi")));
    }
    assert_quiet(&mut u1).await;
}

/// A ws token minted by one node opens a connection on the other, once: the second use is 4001
/// wherever it is tried.
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn a_ws_token_minted_on_one_node_opens_one_connection_on_any() {
    let (a, b, _cleanup) = two_nodes().await;
    let bearer = format!("Bearer {}", a.jwt("u7"));
    let (status, body) = a.get_json("/api/user/ws-token/", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["ws_token"].as_str().expect("a ws_token").to_owned();
    let (_, greeting) = b.connect("/ws/notifications/", &token).await;
    assert_eq!(greeting["user_id"], "u7");
    for hub in [&a, &b] {
        let mut again = hub.connect_raw("/ws/notifications/", &token).await;
        assert_eq!(recv_close(&mut again).await, (4001, "unknown or used ws token".to_owned()));
    }
}

/// With Redis too, a ws token never outlives its JWT: minted on one node from a JWT with seconds left,
/// it says so in `expires_in`, the connection it opens on another node closes with 4001 "token expired"
/// when the JWT does, and a second one from that JWT is gone from Redis by then.
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn a_ws_token_in_redis_is_bounded_by_its_jwt() {
    use crate::lifetime::{end_of, now_millis, short_jwt, ws_token};
    let (a, b, _cleanup) = two_nodes().await;
    let (jwt, exp) = short_jwt(&a, &user_identity("u7"), 2);
    let asked = now_millis() / 1000;
    let (first, expires_in) = ws_token(&a, &jwt).await;
    assert!(asked + expires_in <= exp, "expires_in {expires_in} outlives exp {exp} (asked at {asked})");
    let (second, _) = ws_token(&a, &jwt).await;
    let (mut ws, _) = b.connect("/ws/notifications/", &first).await;
    assert_eq!(recv_close(&mut ws).await, (4001, "token expired".to_owned()));
    assert!(now_millis() + 20 >= end_of(exp));
    let mut late = b.connect_raw("/ws/notifications/", &second).await;
    assert_eq!(recv_close(&mut late).await, (4001, "unknown or used ws token".to_owned()));
}

/// Presence counts users across nodes: an admin's second connection on another node is not a new
/// admin, users online counts distinct users on both nodes, and the other admins hear of an admin's
/// first connection and last close wherever they are.
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn presence_counts_distinct_users_across_nodes() {
    let (a, b, _cleanup) = two_nodes().await;
    let (mut s1, greeting) = a.connect("/ws/admin/dashboard/", &a.staff_jwt("s1")).await;
    assert_eq!(greeting["stats"]["admins_online"], 1);
    let (s2_on_b, greeting) = b.connect("/ws/admin/dashboard/", &b.staff_jwt("s2")).await;
    assert_eq!((&greeting["stats"]["admins_online"], &greeting["stats"]["users_online"]), (&json!(2), &json!(2)));
    assert_eq!(unpositioned(recv(&mut s1).await), json!({"type": "admin_joined", "user_id": "s2", "admins_online": 2}));
    let (s2_on_a, _) = a.connect("/ws/admin/dashboard/", &a.staff_jwt("s2")).await;
    let _u1_on_a = a.notifications("u1").await;
    let _u1_on_b = b.notifications("u1").await;

    let dashboard = |hub: &TestHub| {
        let bearer = format!("Bearer {}", hub.staff_jwt("s1"));
        let url = hub.http_url("/api/v1/admin-dashboard/dashboard/");
        async move { json_response(send(http().get(url).header("authorization", bearer)).await).await.1 }
    };
    for hub in [&a, &b] {
        let stats = dashboard(hub).await;
        assert_eq!((&stats["admins_online"], &stats["users_online"]), (&json!(2), &json!(3)), "{stats}");
    }
    drop(s2_on_b);
    assert_quiet(&mut s1).await;
    drop(s2_on_a);
    assert_eq!(unpositioned(recv(&mut s1).await), json!({"type": "admin_left", "user_id": "s2", "admins_online": 1}));
    assert_eq!(dashboard(&b).await["users_online"], 2);
}

/// Nodes that stop leave nothing of their presence in Redis: no counts, no shares, no node set.
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn stopped_nodes_leave_no_presence_behind() {
    let (a, b, _cleanup) = two_nodes().await;
    let p = prefix(&a).to_owned();
    let _s1 = a.connect("/ws/admin/dashboard/", &a.staff_jwt("s1")).await;
    let _u1 = b.notifications("u1").await;
    a.stop().await;
    b.stop().await;
    let mut keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{p}:*")).query(&mut redis()).expect("KEYS of the test prefix");
    keys.sort();
    assert_eq!(keys, Vec::<String>::new());
}

/// A node unsubscribes from a group's channel once its last member there has left, and only then.
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn a_node_unsubscribes_when_its_last_member_leaves() {
    let (a, b, _cleanup) = two_nodes().await;
    let channel = format!("{}:g:org:acme", prefix(&a));
    let subscribers = || -> i64 {
        let (_, count): (String, i64) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query(&mut redis()).expect("PUBSUB NUMSUB");
        count
    };
    let _on_a = a.connect("/ws/events/acme/", &a.member_jwt("u1", &["acme"])).await;
    let (on_b, _) = b.connect("/ws/events/acme/", &b.member_jwt("u2", &["acme"])).await;
    let (second_on_b, _) = b.connect("/ws/events/acme/", &b.member_jwt("u3", &["acme"])).await;
    assert_eq!(subscribers(), 2);
    drop(on_b);
    tokio::time::sleep(QUIET).await;
    assert_eq!(subscribers(), 2, "a member is left on b");
    drop(second_on_b);
    let started = Instant::now();
    while subscribers() != 1 {
        assert!(started.elapsed() < TIMEOUT, "b is still subscribed without members");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Presence a crashed node left behind (its liveness key expired, nobody closed its sockets) is taken
/// back by the next node that looks, and the dead node is forgotten; a live node's is left alone.
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn presence_of_a_crashed_node_is_taken_back() {
    let redis_config = redis_config();
    let _cleanup = Cleanup(redis_config.prefix.clone());
    let p = redis_config.prefix.clone();
    let _: () = redis::pipe()
        .hset(format!("{p}:presence:hub"), "ghost", 1)
        .hset(format!("{p}:node:dead"), "hub\0ghost", 1)
        .hset(format!("{p}:presence:hub"), "far", 1)
        .hset(format!("{p}:node:live"), "hub\0far", 1)
        .cmd("SET")
        .arg(format!("{p}:alive:live"))
        .arg(1)
        .arg("PX")
        .arg(60_000)
        .sadd(format!("{p}:nodes"), &["dead", "live"])
        .query(&mut redis())
        .expect("seed a dead node and a live one");
    let hub = TestHub::start_with(|config| config.redis = Some(redis_config)).await;
    let (_s1, greeting) = hub.connect("/ws/admin/dashboard/", &hub.staff_jwt("s1")).await;
    assert_eq!(greeting["stats"]["users_online"], 2, "s1 and the live node's user: the ghost is gone");
    let mut nodes: Vec<String> =
        redis::cmd("SMEMBERS").arg(format!("{p}:nodes")).query(&mut redis()).expect("SMEMBERS");
    nodes.retain(|node| node == "dead" || node == "live");
    assert_eq!(nodes, ["live"]);
}

/// A node killed without closing anything (kill -9) leaves, once its liveness expires, exactly the
/// departures its sessions never announced, each once although two nodes survive to sweep it: the
/// admins hear `admin_left` for an admin whose only connection it had (not for one still connected
/// elsewhere), a chat room hears `user_status` offline for such a member, and the counts follow.
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn a_crashed_nodes_users_leave_once() {
    let mut redis_config = redis_config();
    redis_config.node_ttl = Duration::from_millis(900);
    let (a, c, _cleanup) = two_nodes_with(redis_config).await;
    let (b, crash) = a.node_that_can_crash().await;
    let (status, _) = a
        .post_json(
            "/api/v1/chat/rooms",
            &[("x-api-key", a.api_key())],
            &json!({"room_id": "r1", "members": ["u1", "u2", "u3", "u4"]}),
        )
        .await;
    assert_eq!(status, 201);
    let (mut s1, _) = a.connect("/ws/admin/dashboard/", &a.staff_jwt("s1")).await;
    let (s4, _) = c.connect("/ws/admin/dashboard/", &c.staff_jwt("s4")).await;
    assert_eq!(recv(&mut s1).await["user_id"], "s4");
    let mut admins = [s1, s4];
    let _s2 = b.connect("/ws/admin/dashboard/", &b.staff_jwt("s2")).await;
    let _s3_on_b = b.connect("/ws/admin/dashboard/", &b.staff_jwt("s3")).await;
    let _s3_on_a = a.connect("/ws/admin/dashboard/", &a.staff_jwt("s3")).await;
    for ws in &mut admins {
        let joined: Vec<_> = recv_n(ws, 2).await.iter().map(|m| (m["type"].clone(), m["user_id"].clone())).collect();
        assert_eq!(joined, [(json!("admin_joined"), json!("s2")), (json!("admin_joined"), json!("s3"))]);
    }

    let mut u1 = chat_member(&a, "u1").await;
    let u4 = chat_member(&c, "u4").await;
    assert_eq!(recv(&mut u1).await["user_id"], "u4");
    let mut members = [u1, u4];
    let _u2 = chat_member(&b, "u2").await;
    let _u3_on_b = chat_member(&b, "u3").await;
    let _u3_on_a = chat_member(&a, "u3").await;
    for ws in &mut members {
        let online: Vec<_> = recv_n(ws, 2).await;
        assert_eq!(online, [user_status("u2", "online"), user_status("u3", "online")]);
    }

    crash.now();
    for ws in &mut admins {
        let left = recv(ws).await;
        assert_eq!(
            (&left["type"], &left["user_id"], &left["admins_online"]),
            (&json!("admin_left"), &json!("s2"), &json!(3)),
            "{left}"
        );
        assert_quiet_for(ws, Duration::from_secs(2)).await;
    }
    for ws in &mut members {
        assert_eq!(recv(ws).await, user_status("u2", "offline"));
        assert_quiet(ws).await;
    }
    let bearer = format!("Bearer {}", a.staff_jwt("s1"));
    let url = a.http_url("/api/v1/admin-dashboard/dashboard/");
    let dashboard = json_response(send(http().get(url).header("authorization", bearer)).await).await.1;
    assert_eq!((&dashboard["admins_online"], &dashboard["users_online"]), (&json!(3), &json!(6)), "{dashboard}");
}

/// `user`'s connection to room r1 on `hub`, past its greeting and history.
async fn chat_member(hub: &TestHub, user: &str) -> Ws {
    let (mut ws, _) = hub.connect("/ws/chat/r1/", &hub.jwt(user)).await;
    assert_eq!(recv(&mut ws).await["type"], "history");
    ws
}

fn user_status(user: &str, status: &str) -> serde_json::Value {
    json!({"type": "user_status", "user_id": user, "status": status})
}

/// When Redis loses the presence counts (a restart without persistence, or a sweep while a node was
/// cut off), each node rebuilds its share at its next heartbeat from what it counts itself.
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn presence_lost_by_redis_is_rebuilt_by_the_nodes() {
    let mut redis_config = redis_config();
    redis_config.node_ttl = Duration::from_millis(1500);
    let (a, b, _cleanup) = two_nodes_with(redis_config).await;
    let _u1 = a.notifications("u1").await;
    let _u1_again = b.notifications("u1").await;
    let (_s1, _) = b.connect("/ws/admin/dashboard/", &b.staff_jwt("s1")).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}:*", prefix(&a))).query(&mut redis()).expect("KEYS");
    let _: () = redis::cmd("DEL").arg(keys).query(&mut redis()).expect("DEL: Redis forgets");

    let bearer = format!("Bearer {}", a.staff_jwt("s1"));
    let online = || async {
        let url = a.http_url("/api/v1/admin-dashboard/dashboard/");
        let stats = json_response(send(http().get(url).header("authorization", &bearer)).await).await.1;
        (stats["users_online"].as_u64(), stats["admins_online"].as_u64())
    };
    let started = Instant::now();
    while online().await != (Some(2), Some(1)) {
        assert!(started.elapsed() < TIMEOUT, "presence not rebuilt: {:?}", online().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Rebuilt once, not once per heartbeat: u1's two connections still count one user.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(online().await, (Some(2), Some(1)));
    drop(_u1);
    tokio::time::sleep(QUIET).await;
    assert_eq!(online().await, (Some(2), Some(1)), "u1 is still connected to b");
}

/// Redis restarting under a running node: publishing answers `pushed: false` while it is away, the node keeps its
/// connections, and once Redis is back its subscriber connection resubscribes by itself, so pushes
/// reach the members it kept.
#[tokio::test]
#[ignore = "needs redis-server on PATH (and RTCTL_TEST_REDIS_URL set, as for every multi-node test)"]
async fn a_node_keeps_its_members_through_a_redis_restart() {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port();
    let start_redis = || {
        let port = port.to_string();
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        async move {
            let started = Instant::now();
            while tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("a port"))).await.is_err() {
                assert!(started.elapsed() < TIMEOUT, "redis-server did not listen");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            child
        }
    };
    let mut server = start_redis().await;
    let url = format!("redis://127.0.0.1:{port}");
    let hub = TestHub::start_with(|config| {
        config.redis = Some(RedisConfig {
            url: Secret::new(url),
            prefix: "restart".into(),
            node_ttl: DEFAULT_NODE_TTL,
            frame_key: Secret::new(rtctl::auth::random_secret()),
        })
    })
    .await;
    let (mut ws, _) = hub.connect("/ws/events/acme/", &hub.member_jwt("u1", &["acme"])).await;
    let (beta, _) = hub.connect("/ws/events/beta/", &hub.member_jwt("u3", &["beta"])).await;
    publish_event(&hub, 0).await;
    assert_eq!(recv(&mut ws).await["data"]["seq"], 0);

    server.kill().await.expect("stop redis-server");
    // Beta's only member leaves while Redis is away: once it is back, the node must not be left
    // subscribed to beta (the connection manager restores what it had).
    drop(beta);
    let body = json!({"event_type": "tick", "data": {"seq": 1}});
    let (status, accepted) = json_response(hub.post_api("/api/v1/orgs/acme/events", &body).await).await;
    assert_eq!((status, &accepted["pushed"]), (202, &json!(false)), "logged, not pushed: {accepted}");
    let (status, _) = hub.get_json("/readyz", &[]).await;
    assert_eq!(status, 503);
    // Not greeted deaf: a connection that cannot be subscribed is refused, even to a group the node
    // had before the outage.
    let mut during = hub.connect_raw("/ws/events/acme/", &hub.member_jwt("u2", &["acme"])).await;
    assert_eq!(recv_close(&mut during).await, (1011, "channel layer unavailable".to_owned()));

    let _server = start_redis().await;
    // The command connection comes back on the next publish, the subscriber connection on its own:
    // publish until a push gets through, then everything after it must too.
    let started = Instant::now();
    let mut seq = 2;
    loop {
        assert!(started.elapsed() < Duration::from_secs(20), "no push got through after Redis came back");
        let body = json!({"event_type": "tick", "data": {"seq": seq}});
        if hub.post_api("/api/v1/orgs/acme/events", &body).await.status() == 202 {
            let next = tokio::time::timeout(Duration::from_millis(200), futures_util::StreamExt::next(&mut ws)).await;
            if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) = next {
                let event: serde_json::Value = serde_json::from_str(&text).expect("a JSON event");
                assert!(event["data"]["seq"].as_u64().is_some_and(|s| (2..=seq).contains(&s)), "{event}");
                break;
            }
        }
        seq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(hub.metrics().await.contains("\nrtctl_layer_connection_losses_total 1\n"), "one outage, counted once");
    let beta_subscribers = || -> i64 {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|client| client.get_connection())
            .expect("connect to the restarted Redis");
        let (_, count): (String, i64) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg("restart:g:org:beta").query(&mut conn).expect("PUBSUB NUMSUB");
        count
    };
    let started = Instant::now();
    while beta_subscribers() != 0 {
        assert!(started.elapsed() < TIMEOUT, "still subscribed to a group whose members all left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A publish from just before may still be on its way: skip to a marker, then expect every push.
    publish_event(&hub, 1000).await;
    while recv(&mut ws).await["data"]["seq"] != 1000 {}
    for later in 1001..1006 {
        publish_event(&hub, later).await;
        assert_eq!(recv(&mut ws).await["data"]["seq"], later);
    }
}

/// A Redis that does not answer stops the hub at start with an error naming the setting, and the
/// password in the URL appears nowhere in it. Needs no Redis.
#[tokio::test]
async fn an_unreachable_redis_fails_the_start_without_showing_its_password() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut config = HubConfig::ephemeral(dir.path());
    config.redis = Some(RedisConfig {
        url: Secret::new("redis://:hunter2@127.0.0.1:1/"),
        prefix: "rtctl".into(),
        node_ttl: DEFAULT_NODE_TTL,
        frame_key: Secret::new(rtctl::auth::random_secret()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let run = rtctl::hub::run(listener, config, std::future::pending());
    let error = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the start gives up in time")
        .expect_err("no hub without its Redis");
    let text = format!("{error:#}");
    assert!(text.starts_with("cannot connect to redis_url: "), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

/// Positions are allocated once, in the shared store: both nodes push the same `seq` and `epoch` for
/// an event, and a client that was away while node 2 published resumes on node 1 with exactly what it
/// missed (issue 19).
#[tokio::test]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn a_client_resumes_on_one_node_what_another_published() {
    let (a, b, _cleanup) = two_nodes().await;
    let token = a.member_jwt("u1", &["acme"]);
    let (mut on_a, greeting) = a.connect("/ws/events/acme/", &token).await;
    let (mut on_b, _) = b.connect("/ws/events/acme/", &token).await;
    let epoch = greeting["epoch"].as_str().expect("an epoch").to_owned();
    publish_event(&b, 1).await;
    let (from_a, from_b) = (recv(&mut on_a).await, recv(&mut on_b).await);
    assert_eq!(from_a, from_b, "one position, whichever node delivers it");
    assert_eq!((&from_a["seq"], &from_a["epoch"]), (&json!(1), &json!(epoch)));
    drop(on_a);
    for seq in 2..=4 {
        publish_event(&b, seq).await;
    }
    let url = format!("{}?since=1&epoch={epoch}&token={token}", a.ws_url("/ws/events/acme/"));
    let mut back = connect_request(
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).expect("a ws URL"),
    )
    .await;
    assert_eq!(recv(&mut back).await["seq"], 4, "the greeting's position");
    let replayed: Vec<_> = recv_n(&mut back, 3).await.iter().map(|e| e["seq"].as_u64().expect("a seq")).collect();
    assert_eq!(replayed, [2, 3, 4]);
    publish_event(&b, 5).await;
    assert_eq!(recv(&mut back).await["seq"], 5);
    assert_quiet(&mut back).await;
}
