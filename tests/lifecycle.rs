//! Connection lifecycle: every close code the hub produces (1001, 1003, 1007, 1009, 4000, 4008, 4029),
//! heartbeats, the inbound rate limit, shutdown and persistence across a restart.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::util::{RawWs, TestHub, assert_quiet_for, opcode, recv, recv_close, request, send_json, send_text};

/// Shutting the hub down closes every connected client with 1001, and `run` returns promptly (well
/// within the shutdown timeout) once the clients answered.
#[tokio::test]
async fn shutdown_closes_clients_with_1001_and_returns_promptly() {
    let mut hub = TestHub::start().await;
    let mut tab = hub.notifications("u1").await;
    let (mut events, _) = hub.connect("/ws/events/acme/", &hub.member_jwt("u2", &["acme"])).await;
    let started = Instant::now();
    hub.begin_stop();
    assert_eq!(recv_close(&mut tab).await, (1001, "hub shutting down".to_owned()));
    assert_eq!(recv_close(&mut events).await, (1001, "hub shutting down".to_owned()));
    hub.stopped().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}

/// Notifications acknowledged by the API survive a restart of the hub on the same database file: the
/// new hub greets with the unread count and lists them, read state included.
#[tokio::test]
async fn notifications_survive_a_restart() {
    let hub = TestHub::start().await;
    let first = hub.notify("u1", "before", "general").await;
    let second = hub.notify("u1", "restart", "alert").await;
    let mut ws = hub.notifications("u1").await;
    request(&mut ws, json!({"type": "mark_read", "notification_id": first})).await;
    assert_eq!(recv(&mut ws).await, json!({"type": "unread_count", "count": 1}));
    let before = request(&mut ws, json!({"type": "get_notifications"})).await;
    drop(ws);

    let hub = hub.restart().await;
    // The same secrets: a token minted for the first hub still works.
    let (mut ws, greeting) = hub.connect("/ws/notifications/", &hub.jwt("u1")).await;
    assert_eq!(greeting["unread_count"], 1, "{greeting}");
    let after = request(&mut ws, json!({"type": "get_notifications"})).await;
    assert_eq!(after, before);
    let ids: Vec<_> = after["notifications"].as_array().expect("a list").iter().map(|n| n["id"].clone()).collect();
    assert_eq!(ids, vec![json!(second), json!(first)]);
    let next = hub.notify("u1", "after", "general").await;
    assert!(next > second, "ids keep growing after a restart");
    hub.stop().await;
}

/// A binary frame closes the connection with 1003.
#[tokio::test]
async fn a_binary_frame_closes_with_1003() {
    let hub = TestHub::start().await;
    let mut ws = hub.notifications("u1").await;
    ws.send(Message::binary(vec![1, 2, 3])).await.expect("send a binary frame");
    assert_eq!(recv_close(&mut ws).await, (1003, "binary frames are not supported".to_owned()));
}

/// A frame larger than `max_frame` closes the connection with 1009, while one within it is served.
#[tokio::test]
async fn a_frame_over_the_limit_closes_with_1009() {
    let hub = TestHub::start_with(|config| config.limits.max_frame = 1024).await;
    let mut ws = hub.notifications("u1").await;
    let fits = request(&mut ws, json!({"type": "ping", "timestamp": "x".repeat(900)})).await;
    assert_eq!(fits, json!({"type": "pong", "timestamp": "x".repeat(900)}));
    let big = json!({"type": "ping", "timestamp": "x".repeat(2000)}).to_string();
    ws.send(Message::text(big)).await.expect("send a large frame");
    assert_eq!(recv_close(&mut ws).await, (1009, "frame too large".to_owned()));
}

/// A text frame holding invalid UTF-8 closes the connection with 1007.
#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let hub = TestHub::start().await;
    let mut raw = RawWs::connect(hub.addr, &format!("/ws/notifications/?token={}", hub.jwt("u1"))).await;
    raw.send_frame(opcode::TEXT, b"{\"type\":\"ping\",\"timestamp\":\"\xff\xfe\"}").await;
    let (code, reason, texts, _) = raw.close().await;
    assert_eq!((code, reason.as_str()), (1007, "invalid UTF-8"));
    assert_eq!(texts.len(), 1, "only the greeting before the close: {texts:?}");
}

/// A client that answers nothing (not even the hub's pings) is closed with 4000 once the heartbeat
/// timeout has passed, after receiving WebSocket pings every heartbeat interval.
#[tokio::test]
async fn a_silent_client_is_closed_with_4000_after_the_heartbeat_timeout() {
    let hub = TestHub::start_with(|config| {
        config.limits.heartbeat_interval = Duration::from_millis(100);
        config.limits.heartbeat_timeout = Duration::from_millis(300);
    })
    .await;
    let started = Instant::now();
    let mut raw = RawWs::connect(hub.addr, &format!("/ws/notifications/?token={}", hub.jwt("u1"))).await;
    let (code, reason, texts, pings) = raw.close().await;
    let took = started.elapsed();
    assert_eq!((code, reason.as_str()), (4000, "heartbeat timeout"));
    assert_eq!(
        texts,
        vec![
            json!({"type": "connection_established", "message": "Connected to notifications", "user_id": "u1", "unread_count": 0})
        ]
    );
    assert!(pings >= 1, "the hub closed without pinging first");
    assert!(took >= Duration::from_millis(300), "closed after {took:?}, before the timeout");
}

/// A client that answers the hub's pings (tungstenite does while reading) but sends nothing else stays
/// connected for twice the heartbeat timeout.
#[tokio::test]
async fn a_client_answering_pings_stays_connected() {
    let hub = TestHub::start_with(|config| {
        config.limits.heartbeat_interval = Duration::from_millis(100);
        config.limits.heartbeat_timeout = Duration::from_millis(600);
    })
    .await;
    let mut ws = hub.notifications("u1").await;
    let pings = assert_quiet_for(&mut ws, Duration::from_millis(1200)).await;
    assert!(pings >= 2, "the hub pinged {pings} times in 1.2 s at a 100 ms interval");
    let pong = request(&mut ws, json!({"type": "ping", "timestamp": 1})).await;
    assert_eq!(pong, json!({"type": "pong", "timestamp": 1}));
}

/// Publishes one org event with `pad` bytes of data; returns its timestamp.
async fn publish_event(hub: &TestHub, seq: usize, pad: &str) -> serde_json::Value {
    let body = json!({"event_type": "load", "data": {"seq": seq, "pad": pad}});
    let response = hub.post_api("/api/v1/orgs/acme/events", &body).await;
    assert_eq!(response.status(), 202);
    let reply: serde_json::Value = response.json().await.expect("a JSON body");
    reply["timestamp"].clone()
}

/// A subscriber that stops reading overflows its small outbound queue and is closed with 4008 once it
/// reads again (after the events it had taken, in order); `/metrics` and `/api/v1/stats` count it
/// once; a healthy subscriber of the same org gets every event, in order, meanwhile.
#[tokio::test]
async fn a_slow_consumer_is_closed_with_4008_and_others_get_every_event() {
    let hub = TestHub::start_with(|config| config.limits.queue = 4).await;
    let token = hub.member_jwt("slow", &["acme"]);
    let mut slow = RawWs::connect_small(hub.addr, &format!("/ws/events/acme/?token={token}")).await;
    let (mut healthy, _) = hub.connect("/ws/events/acme/", &hub.member_jwt("healthy", &["acme"])).await;
    // The slow client's socket buffers fill up, its session blocks on the write, its queue fills.
    let pad = "p".repeat(256 * 1024);
    let mut published = 0;
    let mut overflowed_at = None;
    while published < 400 {
        let timestamp = publish_event(&hub, published, &pad).await;
        let event = crate::util::unpositioned(recv(&mut healthy).await);
        let expected = json!({"type": "event", "event_type": "load", "data": {"seq": published, "pad": pad}, "org_id": "acme", "timestamp": timestamp});
        assert!(event == expected, "healthy subscriber got the wrong event #{published}");
        published += 1;
        if overflowed_at.is_none() && hub.metrics().await.contains("\nrtctl_slow_consumer_closes_total 1\n") {
            overflowed_at = Some(published);
        }
        // A few more after the overflow: the healthy subscriber must still get them.
        if overflowed_at.is_some_and(|at| published == at + 3) {
            break;
        }
    }
    let overflowed_at = overflowed_at.unwrap_or_else(|| panic!("no overflow after {published} events of 256 KiB"));

    let (code, reason, texts, _) = slow.close().await;
    assert_eq!((code, reason.as_str()), (4008, "slow consumer: outbound queue overflowed"));
    assert_eq!(texts[0]["type"], "connection_established");
    let seqs: Vec<_> = texts[1..].iter().map(|e| e["data"]["seq"].as_u64().expect("an event seq")).collect();
    let prefix: Vec<_> = (0..seqs.len() as u64).collect();
    assert_eq!(seqs, prefix, "the slow subscriber gets a prefix of the events, in order");
    // The 4 queued events and the one that overflowed the queue are dropped, and nothing after them.
    assert!(seqs.len() + 5 <= overflowed_at, "the slow subscriber got {} of {overflowed_at} events", seqs.len());

    let metrics = hub.metrics().await;
    assert!(metrics.contains("\nrtctl_slow_consumer_closes_total 1\n"), "{metrics}");
    let (_, stats) = hub.get_json("/api/v1/stats", &[("x-api-key", hub.api_key())]).await;
    assert_eq!(stats["slow_consumers_dropped"], 1, "{stats}");
    let ping = request(&mut healthy, json!({"type": "ping", "timestamp": "ok"})).await;
    assert_eq!(ping, json!({"type": "pong", "timestamp": "ok"}));
}

/// A close the client starts is answered with the hub's own close frame, so the client sees a clean
/// close handshake (not a reset).
#[tokio::test]
async fn a_client_close_is_echoed() {
    let hub = TestHub::start().await;
    let mut ws = hub.notifications("u1").await;
    ws.send(Message::Close(None)).await.expect("the close frame goes out");
    let next = tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut ws)).await;
    assert!(matches!(next, Ok(Some(Ok(Message::Close(_))))), "{next:?}");
}

/// A subscriber whose socket takes nothing for `send_timeout` is closed with 4008 even though its queue
/// never filled, and counted once; what it had taken is a prefix of the events, in order.
#[tokio::test]
async fn a_stalled_socket_is_closed_with_4008_after_the_send_timeout() {
    let hub = TestHub::start_with(|config| {
        config.limits.send_timeout = Duration::from_millis(300);
        // The 4008 may come while the test is still publishing (40 requests of 256 KiB take seconds on
        // a loaded machine), and the test reads only afterwards: the hub must still be waiting then.
        config.limits.close_timeout = Duration::from_secs(60);
    })
    .await;
    let token = hub.member_jwt("stalled", &["acme"]);
    let mut stalled = RawWs::connect_small(hub.addr, &format!("/ws/events/acme/?token={token}")).await;
    let pad = "p".repeat(256 * 1024);
    // Far more than the socket buffers hold, far fewer than the queue (1024): only the timer can act.
    for seq in 0..40 {
        publish_event(&hub, seq, &pad).await;
    }
    let started = Instant::now();
    while !hub.metrics().await.contains("\nrtctl_slow_consumer_closes_total 1\n") {
        assert!(started.elapsed() < Duration::from_secs(5), "no 4008 within 5 s of a stall");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stalled.widen_receive_buffer();
    let (code, reason, texts, _) = stalled.close().await;
    assert_eq!((code, reason.as_str()), (4008, "slow consumer: write timed out"));
    assert_eq!(texts[0]["type"], "connection_established");
    let seqs: Vec<_> = texts[1..].iter().map(|e| e["data"]["seq"].as_u64().expect("an event seq")).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "a prefix of the events, in order");
    assert!(seqs.len() < 40, "the stalled subscriber cannot have taken everything");
    assert!(hub.metrics().await.contains("\nrtctl_slow_consumer_closes_total 1\n"), "counted once");
}

/// Frames beyond `message_burst` get a `rate_limited` error that echoes their `request_id` and are not
/// handled; the connection stays open until the client has ignored ten of them, and the eleventh refusal
/// closes it with 4029. Refusals and the close are counted.
#[tokio::test]
async fn frames_over_the_rate_limit_are_refused_then_the_connection_closes_with_4029() {
    let hub = TestHub::with_message_rate(1, 3).await;
    let (mut ws, _) = hub.connect("/ws/events/acme/", &hub.member_jwt("u1", &["acme"])).await;
    for id in 1..=3 {
        let pong = request(&mut ws, json!({"type": "ping", "timestamp": id, "request_id": id})).await;
        assert_eq!(pong, json!({"type": "pong", "timestamp": id, "request_id": id}));
    }
    let refused = json!({
        "type": "error", "code": "rate_limited",
        "message": "too many messages: at most 1 a second; this one was dropped",
    });
    for id in 4..=13 {
        let error = request(&mut ws, json!({"type": "ping", "timestamp": id, "request_id": format!("r{id}")})).await;
        let mut expected = refused.clone();
        expected["request_id"] = json!(format!("r{id}"));
        assert_eq!(error, expected, "refusal {id}");
    }
    // Not JSON at all: refused all the same, without a request_id to echo.
    send_text(&mut ws, "{not json").await;
    assert_eq!(recv_close(&mut ws).await, (4029, "rate limit exceeded repeatedly".to_owned()));

    let metrics = hub.metrics().await;
    assert!(metrics.contains("\nrtctl_rate_limited_frames_total{endpoint=\"events\"} 11\n"), "{metrics}");
    assert!(metrics.contains("\nrtctl_rate_limit_closes_total 1\n"), "{metrics}");
    let (status, stats) = hub.get_json("/api/v1/stats", &[("x-api-key", hub.api_key())]).await;
    assert_eq!((status, &stats["rate_limit_closes"]), (200, &json!(1)));
}

/// The limit refills at `message_rate`: a client that pauses after a refusal is served again, and
/// The frame budget is the user's, shared by all their connections: five sockets of one user get one
/// budget between them (a burst of 5 at 1/s: one frame each, then the sixth is refused on any of them),
/// another user's is untouched, and it refills.
#[tokio::test]
async fn the_rate_limit_is_per_user_across_connections_and_refills() {
    let hub = TestHub::with_message_rate(5, 5).await;
    let token = hub.member_jwt("u1", &["acme"]);
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(hub.connect("/ws/events/acme/", &token).await.0);
    }
    let ping = |id: i64| json!({"type": "ping", "timestamp": id});
    for (n, ws) in sockets.iter_mut().enumerate() {
        let id = n as i64;
        assert_eq!(request(ws, ping(id)).await, json!({"type": "pong", "timestamp": id}));
    }
    for ws in &mut sockets {
        assert_eq!(request(ws, ping(9)).await["code"], "rate_limited");
    }
    let (mut other, _) = hub.connect("/ws/events/acme/", &hub.member_jwt("u2", &["acme"])).await;
    assert_eq!(request(&mut other, ping(10)).await, json!({"type": "pong", "timestamp": 10}));
    // One frame's worth of time at 5/s, and then some.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(request(&mut sockets[4], ping(11)).await, json!({"type": "pong", "timestamp": 11}));
}

/// `message_rate = 0` turns the limit off: a thousand frames at once are all served.
#[tokio::test]
async fn a_zero_message_rate_turns_the_limit_off() {
    let hub = TestHub::with_message_rate(0, 0).await;
    let (mut ws, _) = hub.connect("/ws/events/acme/", &hub.member_jwt("u1", &["acme"])).await;
    for id in 0..1000 {
        send_json(&mut ws, &json!({"type": "ping", "timestamp": id})).await;
    }
    for id in 0..1000 {
        assert_eq!(recv(&mut ws).await, json!({"type": "pong", "timestamp": id}));
    }
}

/// Reads what the hub sends on a raw HTTP connection until it closes it; fails if it is still open
/// after `within`. Returns what was read and when the close came.
async fn read_until_closed(tcp: &mut tokio::net::TcpStream, within: Duration) -> (String, Instant) {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, tcp.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the hub kept the connection open for {within:?}; sent {received:?}");
    (String::from_utf8_lossy(&received).into_owned(), Instant::now())
}

/// An HTTP connection that never finishes its request headers (sends nothing, half a header block, or
/// nothing more after a finished request on a keep-alive connection) is closed once `http_header_timeout`
/// has passed, so that idle sockets cannot pile up; a request body that stalls is answered 408 with the
/// JSON error shape after `http_request_timeout`, and the connection closed, while one that arrives in
/// parts within it is served; the hub serves on.
#[tokio::test]
async fn http_connections_that_stall_are_closed() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    let hub = TestHub::start_with(|config| {
        config.limits.http_header_timeout = Duration::from_millis(300);
        config.limits.http_request_timeout = Duration::from_millis(300);
    })
    .await;
    let within = Duration::from_secs(3);
    let host = format!("Host: {}\r\n", hub.addr);

    let started = Instant::now();
    let mut silent = TcpStream::connect(hub.addr).await.unwrap();
    let mut partial = TcpStream::connect(hub.addr).await.unwrap();
    partial.write_all(format!("GET /healthz HTTP/1.1\r\n{host}").as_bytes()).await.unwrap();
    let mut idle = TcpStream::connect(hub.addr).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\n{host}\r\n").as_bytes()).await.unwrap();
    for (name, tcp, answered) in
        [("silent", &mut silent, false), ("partial", &mut partial, false), ("idle", &mut idle, true)]
    {
        let (received, closed) = read_until_closed(tcp, within).await;
        let after = closed - started;
        assert!(after >= Duration::from_millis(250), "{name} closed after {after:?}, before the timeout");
        assert_eq!(received.starts_with("HTTP/1.1 200 OK\r\n"), answered, "{name}: {received:?}");
        assert_eq!(received.ends_with("{\"status\":\"ok\"}"), answered, "{name}: {received:?}");
    }

    let mut stalled = TcpStream::connect(hub.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/notifications HTTP/1.1\r\n{host}X-API-Key: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"user_id\":",
        hub.api_key()
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let (received, _) = read_until_closed(&mut stalled, within).await;
    assert!(received.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{received:?}");
    assert!(received.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{received:?}");
    let body = received.split("\r\n\r\n").nth(1).expect("a body");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).expect("a JSON body"),
        json!({"error": {"code": "request_timeout", "message": "the request body was not received within 300ms"}})
    );

    // A body that arrives in parts within the timeout is served as usual.
    let mut steady = TcpStream::connect(hub.addr).await.unwrap();
    let body = r#"{"user_id":"u1","title":"t","message":"m"}"#;
    let head = format!(
        "POST /api/v1/notifications HTTP/1.1\r\n{host}X-API-Key: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        hub.api_key(),
        body.len()
    );
    steady.write_all(head.as_bytes()).await.unwrap();
    steady.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    steady.write_all(&body.as_bytes()[10..]).await.unwrap();
    let (received, _) = read_until_closed(&mut steady, within).await;
    assert!(received.starts_with("HTTP/1.1 201 Created\r\n"), "{received:?}");

    let (status, health) = hub.get_json("/healthz", &[]).await;
    assert_eq!((status, health), (200, json!({"status": "ok"})));
}

/// A client that floods WebSocket pings and never reads the pongs is a slow consumer like any other:
/// once its queue is over capacity it gets a 4008 close (after the pongs already on their way) and is
/// counted, rather than being dropped without a close frame.
#[tokio::test]
async fn a_client_that_never_reads_its_pongs_is_closed_with_4008() {
    let hub = TestHub::start_with(|config| config.limits.queue = 8).await;
    let path = format!("/ws/notifications/?token={}", hub.jwt("u1"));
    let mut raw = RawWs::connect_small(hub.addr, &path).await;
    let (op, _greeting) = raw.frame().await;
    assert_eq!(op, opcode::TEXT);
    let payload = [b'p'; 125];
    let mut sent = 0;
    // Until the hub stops reading (it is waiting to write its close frame): the test must then read
    // within the hub's 2 s close timeout, or the hub resets a socket it has unread pings on.
    while sent < 100_000 {
        match tokio::time::timeout(Duration::from_millis(200), raw.try_send_frame(opcode::PING, &payload)).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let mut pongs = 0;
    let close = loop {
        match raw.frame().await {
            (opcode::PONG, _) => pongs += 1,
            (opcode::CLOSE, payload) => break payload,
            (op, payload) => panic!("unexpected frame {op:#x}: {payload:?}"),
        }
    };
    assert!(pongs < sent, "{pongs} pongs for {sent} pings: the queue never overflowed");
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 4008);
    assert_eq!(String::from_utf8_lossy(&close[2..]), "slow consumer: outbound queue overflowed");
    let metrics = hub.metrics().await;
    assert!(metrics.lines().any(|line| line == "rtctl_slow_consumer_closes_total 1"), "{metrics}");
}
