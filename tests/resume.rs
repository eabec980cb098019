//! Stream positions and resume (PROTOCOL §7): org events and dashboard pushes carry `seq` and `epoch`,
//! and a client that reconnects (or sends `resume`) gets exactly what it missed, then continues live.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::util::{
    TestHub, Ws, api_error, assert_quiet, connect_request, http, json_response, recv, recv_text, request, send,
    send_json,
};

/// Publishes an org event through the API.
async fn publish(hub: &TestHub, org: &str, n: u64) {
    let body = json!({"event_type": "tick", "data": {"n": n}});
    let response = hub.post_api(&format!("/api/v1/orgs/{org}/events"), &body).await;
    assert_eq!(response.status(), 202);
}

/// Connects to `path` with a query (`since=...&epoch=...`) and the token; returns the socket and its
/// greeting.
async fn connect_with(hub: &TestHub, path: &str, query: &str, token: &str) -> (Ws, Value) {
    let url = format!("{}?{query}&token={token}", hub.ws_url(path));
    let mut ws = connect_request(url.into_client_request().expect("a valid ws URL")).await;
    let greeting = recv(&mut ws).await;
    assert_eq!(greeting["type"], "connection_established", "{greeting}");
    (ws, greeting)
}

/// The next frame, which must be the org event at `seq` carrying data `n`.
async fn expect_event(ws: &mut Ws, org: &str, seq: u64, epoch: &Value) {
    let event = recv(ws).await;
    assert_eq!((event["type"].as_str(), &event["org_id"]), (Some("event"), &json!(org)), "{event}");
    assert_eq!((&event["seq"], &event["epoch"], &event["data"]["n"]), (&json!(seq), epoch, &json!(seq)), "{event}");
}

/// An org member that reconnects with `?since=&epoch=` gets the events it missed, in order, from the
/// one after `since`, then continues live: nothing twice, nothing missing; its greeting says the
/// position it continues from.
#[tokio::test]
async fn a_reconnect_with_since_replays_what_was_missed_then_goes_live() {
    let hub = TestHub::start().await;
    let token = hub.member_jwt("alice", &["acme"]);
    let (mut ws, greeting) = hub.connect("/ws/events/acme/", &token).await;
    let epoch = greeting["epoch"].clone();
    assert_eq!(greeting["seq"], 0);
    for n in 1..=2 {
        publish(&hub, "acme", n).await;
        expect_event(&mut ws, "acme", n, &epoch).await;
    }
    drop(ws);
    for n in 3..=5 {
        publish(&hub, "acme", n).await;
    }
    let query = format!("since=2&epoch={}", epoch.as_str().unwrap());
    let (mut ws, greeting) = connect_with(&hub, "/ws/events/acme/", &query, &token).await;
    assert_eq!((&greeting["seq"], &greeting["epoch"]), (&json!(5), &epoch));
    for n in 3..=5 {
        expect_event(&mut ws, "acme", n, &epoch).await;
    }
    assert_quiet(&mut ws).await;
    publish(&hub, "acme", 6).await;
    expect_event(&mut ws, "acme", 6, &epoch).await;

    // Up to date already: nothing is replayed.
    let query = format!("since=6&epoch={}", epoch.as_str().unwrap());
    let (mut ws, greeting) = connect_with(&hub, "/ws/events/acme/", &query, &token).await;
    assert_eq!(greeting["seq"], 6);
    assert_quiet(&mut ws).await;
}

/// `resume {since, epoch}` on an open connection replays the same way, and the log (positions,
/// epoch) survives a hub restart on the same store.
#[tokio::test]
async fn the_resume_message_replays_and_the_log_survives_a_restart() {
    let hub = TestHub::start().await;
    let token = hub.member_jwt("alice", &["acme"]);
    let (ws, greeting) = hub.connect("/ws/events/acme/", &token).await;
    let epoch = greeting["epoch"].clone();
    drop(ws);
    for n in 1..=3 {
        publish(&hub, "acme", n).await;
    }
    let hub = hub.restart().await;
    let (mut ws, greeting) = hub.connect("/ws/events/acme/", &token).await;
    assert_eq!((&greeting["seq"], &greeting["epoch"]), (&json!(3), &epoch), "the same stream after a restart");
    send_json(&mut ws, &json!({"type": "resume", "since": 0, "epoch": epoch})).await;
    for n in 1..=3 {
        expect_event(&mut ws, "acme", n, &epoch).await;
    }
    publish(&hub, "acme", 4).await;
    expect_event(&mut ws, "acme", 4, &epoch).await;
    assert_quiet(&mut ws).await;
}

/// The boundary: clients that resume while events are being published get every event exactly once,
/// in order (what the replay sent is dropped from what arrives live meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_during_a_replay_arrive_exactly_once() {
    let hub = TestHub::start().await;
    let token = hub.member_jwt("alice", &["acme"]);
    let (ws, greeting) = hub.connect("/ws/events/acme/", &token).await;
    let epoch = greeting["epoch"].as_str().unwrap().to_owned();
    drop(ws);
    const TOTAL: u64 = 120;
    for n in 1..=20 {
        publish(&hub, "acme", n).await;
    }
    let publisher = {
        let (url, key) = (hub.http_url("/api/v1/orgs/acme/events"), hub.api_key().to_owned());
        tokio::spawn(async move {
            for n in 21..=TOTAL {
                let body = json!({"event_type": "tick", "data": {"n": n}});
                let response = send(http().post(&url).header("x-api-key", &key).json(&body)).await;
                assert_eq!(response.status(), 202);
            }
        })
    };
    let mut clients = Vec::new();
    for since in [0u64, 5, 10, 15, 20] {
        let (ws, _) = connect_with(&hub, "/ws/events/acme/", &format!("since={since}&epoch={epoch}"), &token).await;
        clients.push((since, ws));
        tokio::task::yield_now().await;
    }
    for (since, ws) in &mut clients {
        let mut seen = Vec::new();
        while seen.last() != Some(&TOTAL) {
            let event = recv(ws).await;
            assert_eq!(event["type"], "event", "{event}");
            seen.push(event["seq"].as_u64().unwrap());
        }
        let expected: Vec<u64> = (*since + 1..=TOTAL).collect();
        assert_eq!(seen, expected, "resumed from {since}");
    }
    publisher.await.unwrap();
    for (_, ws) in &mut clients {
        assert_quiet(ws).await;
    }
}

/// Publishes that arrive together on one stream are logged and pushed in batches: a member still
/// gets every one once, in seq order, and a replay of the log is the same frames byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_keep_seq_order_live_and_in_the_log() {
    // The API key's request budget off and room for a connection per request: the publishes are
    // meant to arrive together.
    let hub = TestHub::start_with(|config| {
        config.limits.message_rate = 0;
        config.limits.max_unauthenticated_per_ip = 1_000;
    })
    .await;
    let token = hub.member_jwt("alice", &["acme"]);
    let (mut ws, greeting) = hub.connect("/ws/events/acme/", &token).await;
    let epoch = greeting["epoch"].as_str().unwrap().to_owned();
    // More than one batch can hold (256), all in flight at once.
    const TOTAL: u64 = 300;
    let (url, key) = (hub.http_url("/api/v1/orgs/acme/events"), hub.api_key().to_owned());
    // One client (building one loads its TLS roots, which a debug build takes milliseconds for); it
    // still opens a connection per request in flight.
    let client = http();
    let posts: Vec<_> = (1..=TOTAL)
        .map(|n| {
            let (url, key, client) = (url.clone(), key.clone(), client.clone());
            tokio::spawn(async move {
                let body = json!({"event_type": "tick", "data": {"n": n}});
                send(client.post(&url).header("x-api-key", &key).json(&body)).await.status()
            })
        })
        .collect();
    for post in posts {
        assert_eq!(post.await.unwrap(), 202);
    }
    let mut live = Vec::new();
    let mut sent = std::collections::BTreeSet::new();
    for seq in 1..=TOTAL {
        let frame = recv_text(&mut ws).await;
        let event: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!((&event["seq"], event["epoch"].as_str()), (&json!(seq), Some(epoch.as_str())), "{event}");
        sent.insert(event["data"]["n"].as_u64().unwrap());
        live.push(frame);
    }
    assert_eq!(sent, (1..=TOTAL).collect(), "every publish arrived once");
    assert_quiet(&mut ws).await;
    let (mut replayed, _) = connect_with(&hub, "/ws/events/acme/", &format!("since=0&epoch={epoch}"), &token).await;
    for frame in &live {
        assert_eq!(&recv_text(&mut replayed).await, frame);
    }
    assert_quiet(&mut replayed).await;
}

/// When the log no longer reaches back to `since` (beyond `--event-history`, or older than
/// `--event-retention`), the client gets `resume_failed {reason: "expired", oldest_seq, epoch}` and
/// continues live.
#[tokio::test]
async fn a_resume_beyond_the_retained_history_fails_as_expired_then_goes_live() {
    let hub = TestHub::start_with(|config| config.limits.event_history = 2).await;
    let token = hub.member_jwt("alice", &["acme"]);
    let (ws, greeting) = hub.connect("/ws/events/acme/", &token).await;
    let epoch = greeting["epoch"].clone();
    drop(ws);
    for n in 1..=5 {
        publish(&hub, "acme", n).await;
    }
    let (mut ws, greeting) =
        connect_with(&hub, "/ws/events/acme/", &format!("since=1&epoch={}", epoch.as_str().unwrap()), &token).await;
    assert_eq!(greeting["seq"], 5);
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "resume_failed", "reason": "expired", "oldest_seq": 4, "epoch": epoch})
    );
    publish(&hub, "acme", 6).await;
    expect_event(&mut ws, "acme", 6, &epoch).await;
    // Within the history, it replays.
    let reply = request(&mut ws, json!({"type": "resume", "since": 4, "epoch": epoch})).await;
    assert_eq!((&reply["seq"], &reply["data"]["n"]), (&json!(5), &json!(5)));

    let hub = TestHub::start_with(|config| config.limits.event_retention = std::time::Duration::from_millis(200)).await;
    let token = hub.member_jwt("alice", &["acme"]);
    let (ws, greeting) = hub.connect("/ws/events/acme/", &token).await;
    let epoch = greeting["epoch"].clone();
    drop(ws);
    publish(&hub, "acme", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (mut ws, _) =
        connect_with(&hub, "/ws/events/acme/", &format!("since=0&epoch={}", epoch.as_str().unwrap()), &token).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "resume_failed", "reason": "expired", "oldest_seq": 2, "epoch": epoch})
    );
}

/// Another epoch (a stream whose history was lost, or another org's epoch) gets `resume_failed
/// {reason: "epoch_mismatch"}`, and nothing of another org's stream ever reaches this one.
#[tokio::test]
async fn a_foreign_epoch_fails_and_streams_never_mix() {
    let hub = TestHub::start().await;
    let token = hub.member_jwt("alice", &["acme", "globex"]);
    let (_acme, acme) = hub.connect("/ws/events/acme/", &token).await;
    let (_globex, globex) = hub.connect("/ws/events/globex/", &token).await;
    assert_ne!(acme["epoch"], globex["epoch"], "each stream has its own epoch");
    for n in 1..=3 {
        publish(&hub, "globex", n).await;
    }
    publish(&hub, "acme", 1).await;
    let query = format!("since=0&epoch={}", globex["epoch"].as_str().unwrap());
    let (mut ws, greeting) = connect_with(&hub, "/ws/events/acme/", &query, &token).await;
    assert_eq!(greeting["seq"], 1);
    let failed = json!({"type": "resume_failed", "reason": "epoch_mismatch", "oldest_seq": 1, "epoch": acme["epoch"]});
    assert_eq!(recv(&mut ws).await, failed);
    assert_quiet(&mut ws).await;
    let reply =
        request(&mut ws, json!({"type": "resume", "since": 0, "epoch": "0000000000000000", "request_id": 9})).await;
    assert_eq!(reply, failed);
}

/// A malformed position is refused with a clear error: on the URL a 400 before the upgrade, a seq
/// ahead of the stream an `invalid_message` error (the connection stays, live), and a bad `resume` an
/// `invalid_message` naming the field.
#[tokio::test]
async fn bad_positions_get_clear_errors() {
    let hub = TestHub::start().await;
    let token = hub.member_jwt("alice", &["acme"]);
    for (query, message) in [
        ("since=abc&epoch=e", "since must be the seq of the last push received (an integer of 0 or more), not `abc`"),
        ("since=-1&epoch=e", "since must be the seq of the last push received (an integer of 0 or more), not `-1`"),
        ("since=3", "since needs the epoch it came with: add &epoch="),
        ("epoch=e", "epoch needs a position: add &since="),
    ] {
        let url = format!("{}?{query}&token={token}", hub.http_url("/ws/events/acme/"));
        assert_eq!(json_response(send(http().get(&url)).await).await, (400, api_error("invalid_request", message)));
    }
    let (ws, greeting) = hub.connect("/ws/events/acme/", &token).await;
    drop(ws);
    let epoch = greeting["epoch"].as_str().unwrap();
    let (mut ws, _) = connect_with(&hub, "/ws/events/acme/", &format!("since=7&epoch={epoch}"), &token).await;
    let ahead = "since 7 is ahead of this stream (its last seq is 0): resume from a seq you received";
    assert_eq!(recv(&mut ws).await, json!({"type": "error", "code": "invalid_message", "message": ahead}));
    let reply = request(&mut ws, json!({"type": "resume", "since": 7, "epoch": epoch, "request_id": 1})).await;
    assert_eq!(reply, json!({"type": "error", "code": "invalid_message", "message": ahead, "request_id": 1}));
    let reply = request(&mut ws, json!({"type": "resume", "since": -1, "epoch": epoch})).await;
    assert_eq!(reply["code"], "invalid_message");
    publish(&hub, "acme", 1).await;
    expect_event(&mut ws, "acme", 1, &json!(epoch)).await;
}

/// Dashboard pushes are a stream too: an admin who reconnects with `since` gets the pushes it missed.
#[tokio::test]
async fn an_admin_resumes_the_dashboard_stream() {
    let hub = TestHub::start().await;
    let token = hub.staff_jwt("admin1");
    // A second tab stays open, so that no admin_left / admin_joined comes between.
    let (_tab, _) = hub.connect("/ws/admin/dashboard/", &token).await;
    let (ws, greeting) = hub.connect("/ws/admin/dashboard/", &token).await;
    let (seq, epoch) = (greeting["seq"].as_u64().unwrap(), greeting["epoch"].as_str().unwrap().to_owned());
    drop(ws);
    for order in ["o1", "o2"] {
        let body = json!({"status": "shipped"});
        let response = hub.post_api(&format!("/api/v1/admin-dashboard/orders/{order}/"), &body).await;
        assert_eq!(response.status(), 202);
    }
    let (mut ws, greeting) =
        connect_with(&hub, "/ws/admin/dashboard/", &format!("since={seq}&epoch={epoch}"), &token).await;
    assert_eq!(greeting["epoch"], epoch.as_str());
    let pushes = [recv(&mut ws).await, recv(&mut ws).await];
    for (k, (push, order)) in pushes.iter().zip(["o1", "o2"]).enumerate() {
        assert_eq!((&push["type"], &push["order_id"]), (&json!("order_update"), &json!(order)), "{push}");
        assert_eq!(push["seq"], seq + 1 + k as u64, "{push}");
    }
    assert_eq!(greeting["seq"], seq + 2);
    assert_quiet(&mut ws).await;
}

/// Notifications catch up by id: `get_notifications {after_id}` and `GET /api/v1/notifications?after_id=`
/// return those with a greater id, oldest first (within `limit`); `before_id` with `after_id` is refused.
#[tokio::test]
async fn notifications_catch_up_after_an_id_oldest_first() {
    let hub = TestHub::start().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(hub.notify("alice", &format!("n{n}"), "general").await);
    }
    let mut ws = hub.notifications("alice").await;
    let page = request(&mut ws, json!({"type": "get_notifications", "after_id": ids[1], "limit": 2})).await;
    let got: Vec<_> = page["notifications"].as_array().unwrap().iter().map(|n| n["id"].as_i64().unwrap()).collect();
    assert_eq!(got, [ids[2], ids[3]]);
    let auth = format!("Bearer {}", hub.jwt("alice"));
    let (status, page) =
        hub.get_json(&format!("/api/v1/notifications?after_id={}", ids[1]), &[("authorization", &auth)]).await;
    assert_eq!(status, 200);
    let got: Vec<_> = page["notifications"].as_array().unwrap().iter().map(|n| n["id"].as_i64().unwrap()).collect();
    assert_eq!(got, [ids[2], ids[3], ids[4]]);
    let both = "give before_id (older, newest first) or after_id (newer, oldest first), not both";
    let (status, body) =
        hub.get_json("/api/v1/notifications?after_id=1&before_id=9", &[("authorization", &auth)]).await;
    assert_eq!((status, body), (400, api_error("invalid_request", both)));
    let reply = request(&mut ws, json!({"type": "get_notifications", "after_id": 1, "before_id": 9})).await;
    assert_eq!(reply, json!({"type": "error", "code": "invalid_message", "message": both}));
    // Another user's notifications never show.
    let mut bob = hub.notifications("bob").await;
    let page = request(&mut bob, json!({"type": "get_notifications", "after_id": 0})).await;
    assert_eq!(page["notifications"], json!([]));
}

/// Chat catches up by id: `get_history {after_id}` returns the messages after it, oldest first, with
/// `has_more` when newer ones are left.
#[tokio::test]
async fn chat_history_catches_up_after_an_id() {
    let hub = TestHub::start().await;
    let key = [("x-api-key", hub.api_key())];
    let (status, _) = hub.post_json("/api/v1/chat/rooms", &key, &json!({"room_id": "r1", "members": ["alice"]})).await;
    assert_eq!(status, 201);
    let (mut ws, _) = hub.connect("/ws/chat/r1/", &hub.jwt("alice")).await;
    let _history = recv(&mut ws).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let reply = request(&mut ws, json!({"type": "chat_message", "message": format!("m{n}")})).await;
        ids.push(reply["message"]["id"].as_i64().unwrap());
    }
    let page = request(&mut ws, json!({"type": "get_history", "after_id": ids[0], "limit": 2})).await;
    let got: Vec<_> = page["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!((got, &page["has_more"]), (vec![ids[1], ids[2]], &json!(true)));
    let page = request(&mut ws, json!({"type": "get_history", "after_id": ids[2]})).await;
    let got: Vec<_> = page["messages"].as_array().unwrap().iter().map(|m| m["content"].clone()).collect();
    assert_eq!((got, &page["has_more"]), (vec![json!("m3")], &json!(false)));
}
