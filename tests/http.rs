//! The HTTP API (PROTOCOL §5): health, readiness, metrics, notifications, stats, and the error shapes.

use serde_json::{Value, json};

use crate::util::{TestHub, api_error, assert_timestamp, http, json_response, recv, request, send, store_name};

/// `GET /healthz` is 200 `{"status":"ok"}` for anyone.
#[tokio::test]
async fn healthz_is_ok() {
    let hub = TestHub::start().await;
    assert_eq!(hub.get_json("/healthz", &[]).await, (200, json!({"status": "ok"})));
}

/// `GET /readyz` is 200 with the names and states of the channel layer and the store.
#[tokio::test]
async fn readyz_names_the_layer_and_the_store() {
    let hub = TestHub::start().await;
    assert_eq!(
        hub.get_json("/readyz", &[]).await,
        (
            200,
            json!({"status": "ok", "layer": {"name": "memory", "status": "ok"}, "store": {"name": store_name(), "status": "ok"}})
        )
    );
}

/// Finds the value of the sample named exactly `sample` (name and labels) in a Prometheus text page.
fn sample(metrics: &str, sample: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// `GET /metrics` is the Prometheus text format 0.0.4 (every sample's name declared by a `# TYPE` line
/// before it, counters named with `_total`), or OpenMetrics when `Accept` asks for it, with the same
/// samples: connections per endpoint, frames in and out, publishes by kind, slow-consumer closes.
#[tokio::test]
async fn metrics_count_connections_frames_and_publishes() {
    let hub = TestHub::start().await;
    let mut tab = hub.notifications("u1").await;
    let (_events, _) = hub.connect("/ws/events/acme/", &hub.member_jwt("u1", &["acme"])).await;
    hub.notify("u1", "hello", "general").await;
    recv(&mut tab).await;
    recv(&mut tab).await;
    request(&mut tab, json!({"type": "ping"})).await;
    let scrape = |accept: &'static str| {
        let request = http().get(hub.http_url("/metrics")).header("accept", accept);
        async move {
            let response = send(request).await;
            assert_eq!(response.status(), 200);
            let content_type = response.headers()["content-type"].to_str().expect("an ASCII content type").to_owned();
            (content_type, response.text().await.expect("a text body"))
        }
    };
    let expect = [
        ("rtctl_connections{endpoint=\"notifications\"}", 1.0),
        ("rtctl_connections{endpoint=\"events\"}", 1.0),
        ("rtctl_connections{endpoint=\"dashboard\"}", 0.0),
        ("rtctl_connections{endpoint=\"chat\"}", 0.0),
        ("rtctl_frames_in_total{endpoint=\"notifications\"}", 1.0),
        // connection_established, notification, unread_count, pong; and the events greeting.
        ("rtctl_frames_out_total{endpoint=\"notifications\"}", 4.0),
        ("rtctl_frames_out_total{endpoint=\"events\"}", 1.0),
        ("rtctl_publishes_total{kind=\"notification\"}", 1.0),
        ("rtctl_publishes_total{kind=\"unread_count\"}", 1.0),
        ("rtctl_slow_consumer_closes_total", 0.0),
    ];
    let families = ["connections", "frames_in", "frames_out", "publishes", "slow_consumer_closes"];

    // curl, a browser or any scraper without OpenMetrics: 0.0.4.
    for accept in ["*/*", "text/plain"] {
        let (content_type, metrics) = scrape(accept).await;
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        for (name, value) in expect {
            assert_eq!(sample(&metrics, name), Some(value), "{name} in:\n{metrics}");
        }
        for family in families {
            let kind = if family == "connections" { "gauge" } else { "counter" };
            let name = if kind == "counter" { format!("rtctl_{family}_total") } else { format!("rtctl_{family}") };
            assert!(metrics.contains(&format!("\n# TYPE {name} {kind}\n")), "no TYPE for {name} in:\n{metrics}");
            assert!(metrics.contains(&format!("# HELP {name} ")), "no HELP for {name} in:\n{metrics}");
        }
        let mut declared = Vec::new();
        for line in metrics.lines() {
            match line.strip_prefix("# TYPE ") {
                Some(descriptor) => declared.push(descriptor.split(' ').next().expect("a name").to_owned()),
                None if line.starts_with("# HELP ") => {}
                None => {
                    let name = line.split(['{', ' ']).next().expect("a sample name");
                    assert_eq!(declared.last().map(String::as_str), Some(name), "`{line}` in:\n{metrics}");
                }
            }
        }
        assert!(!metrics.contains("# EOF") && !metrics.contains("# UNIT"), "{metrics}");
    }

    // Prometheus asks for OpenMetrics first.
    let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (content_type, metrics) = scrape(prometheus).await;
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    for (name, value) in expect {
        assert_eq!(sample(&metrics, name), Some(value), "{name} in:\n{metrics}");
    }
    for family in families {
        let kind = if family == "connections" { "gauge" } else { "counter" };
        assert!(metrics.contains(&format!("\n# TYPE rtctl_{family} {kind}\n")), "no TYPE for {family} in:\n{metrics}");
    }
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
}

/// `POST /api/v1/notifications` with `user_id` is 201 `{"notifications":[{"id","user_id"}]}` (a staff
/// JWT works as well as the API key), and `GET /api/v1/notifications` lists them for the user as
/// `notifications_list` does, honouring `limit`, `before_id` and `unread_only`.
#[tokio::test]
async fn notifications_are_created_and_listed_over_http() {
    let hub = TestHub::start().await;
    let first = hub.notify("u1", "first", "general").await;
    let body = json!({"user_id": "u1", "title": "second", "body": "via alias", "data": {"k": [1]}, "link": "/x"});
    let response =
        send(http().post(hub.http_url("/api/v1/notifications")).bearer_auth(hub.staff_jwt("admin")).json(&body)).await;
    let (status, created) = json_response(response).await;
    assert_eq!(status, 201, "{created}");
    let second = created["notifications"][0]["id"].as_i64().expect("an id");
    assert_eq!(created, json!({"notifications": [{"id": second, "user_id": "u1"}], "pushed": true}));
    assert!(second > first);

    let bearer = format!("Bearer {}", hub.jwt("u1"));
    let (status, list) = hub.get_json("/api/v1/notifications", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{list}");
    let at = |i: usize| list["notifications"][i]["created_at"].clone();
    assert_timestamp(&at(0));
    assert_timestamp(&at(1));
    assert_eq!(
        list,
        json!({
            "notifications": [
                {"id": second, "title": "second", "message": "via alias", "type": "general", "read": false,
                 "created_at": at(0), "data": {"k": [1]}, "link": "/x"},
                {"id": first, "title": "first", "message": "first body", "type": "general", "read": false,
                 "created_at": at(1), "data": {}, "link": null},
            ],
            "total": 2,
            "unread_count": 2,
        })
    );
    let page = format!("/api/v1/notifications?limit=1&before_id={second}&unread_only=true");
    let (status, list) = hub.get_json(&page, &[("authorization", &bearer)]).await;
    assert_eq!((status, list["notifications"].as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!((&list["notifications"][0]["id"], &list["total"]), (&json!(first), &json!(2)));

    let other = format!("Bearer {}", hub.jwt("u2"));
    assert_eq!(
        hub.get_json("/api/v1/notifications", &[("authorization", &other)]).await,
        (200, json!({"notifications": [], "total": 0, "unread_count": 0}))
    );
    assert_eq!(
        hub.get_json("/api/v1/notifications?limit=500", &[("authorization", &bearer)]).await,
        (400, api_error("invalid_request", "limit must be between 1 and 200"))
    );
    assert_eq!(
        hub.get_json("/api/v1/notifications", &[("x-api-key", hub.api_key())]).await,
        (403, api_error("forbidden", "requires a user's token, not the API key"))
    );
}

/// `GET /api/v1/stats` (API key or staff JWT) reports this node: connections per endpoint, users online
/// as distinct users, messages in and out, layer, store, node id, uptime and resident memory.
#[tokio::test]
async fn stats_report_connections_and_distinct_users_online() {
    let hub = TestHub::start().await;
    let mut tab1 = hub.notifications("u1").await;
    let _tab2 = hub.notifications("u1").await;
    let _other = hub.notifications("u2").await;
    let (_events, _) = hub.connect("/ws/events/acme/", &hub.member_jwt("u1", &["acme"])).await;
    request(&mut tab1, json!({"type": "ping"})).await;

    let (status, stats) = hub.get_json("/api/v1/stats", &[("x-api-key", hub.api_key())]).await;
    assert_eq!(status, 200, "{stats}");
    let node = stats["node_id"].as_str().expect("a node id");
    assert!(node.len() == 8 && node.bytes().all(|b| b.is_ascii_hexdigit()), "{node}");
    assert!(stats["uptime_seconds"].is_u64(), "{stats}");
    let rss = stats["memory_rss_bytes"].as_u64().expect("memory_rss_bytes is an integer");
    assert!(rss > 0, "{stats}");
    assert_eq!(
        stats,
        json!({
            "node_id": node,
            "uptime_seconds": stats["uptime_seconds"],
            "connections": {"notifications": 3, "events": 1, "dashboard": 0, "chat": 0},
            "connections_total": 4,
            "users_online": 2,
            "messages_in": 1,
            // Four greetings and one pong.
            "messages_out": 5,
            "slow_consumers_dropped": 0,
            "rate_limit_closes": 0,
            "layer": "memory",
            "store": store_name(),
            "memory_rss_bytes": rss,
        })
    );
    let staff = format!("Bearer {}", hub.staff_jwt("admin"));
    assert_eq!(hub.get_json("/api/v1/stats", &[("authorization", &staff)]).await.0, 200);
}

/// Staff routes refuse a non-staff JWT with 403, and any route refuses a missing or wrong API key with
/// 401, all with the `{"error":{"code","message"}}` body.
#[tokio::test]
async fn staff_routes_refuse_users_and_bad_keys() {
    let hub = TestHub::start().await;
    let user = format!("Bearer {}", hub.jwt("u1"));
    let forbidden = api_error("forbidden", "requires the API key or a staff token");
    assert_eq!(hub.get_json("/api/v1/stats", &[("authorization", &user)]).await, (403, forbidden.clone()));
    let body = json!({"user_id": "u2", "title": "t", "message": "m"});
    let response =
        send(http().post(hub.http_url("/api/v1/notifications")).header("authorization", &user).json(&body)).await;
    assert_eq!(json_response(response).await, (403, forbidden));

    assert_eq!(
        hub.get_json("/api/v1/stats", &[]).await,
        (401, api_error("unauthorized", "missing X-API-Key or Authorization: Bearer"))
    );
    assert_eq!(
        hub.get_json("/api/v1/stats", &[("x-api-key", "wrong")]).await,
        (401, api_error("unauthorized", "invalid API key"))
    );
}

/// POSTs `body` (raw text) as JSON with the API key.
async fn post_raw(hub: &TestHub, body: impl Into<reqwest::Body>, content_type: Option<&str>) -> (u16, Value) {
    let mut request = http().post(hub.http_url("/api/v1/notifications")).header("x-api-key", hub.api_key());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    json_response(send(request.body(body)).await).await
}

/// Bad request bodies get their own status and code: 400 for bad JSON, a non-object, a missing or
/// mistyped field, or conflicting recipients; 413 above 1 MiB; 415 without a JSON content type.
#[tokio::test]
async fn bad_request_bodies_get_the_right_status_and_code() {
    let hub = TestHub::start().await;
    let json = Some("application/json");
    let (status, body) = post_raw(&hub, "{nope", json).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("invalid_json")), "{body}");
    assert_eq!(post_raw(&hub, "[1]", json).await, (400, api_error("invalid_json", "expected a JSON object")));
    assert_eq!(
        post_raw(&hub, r#"{"user_id":"u1","message":"m"}"#, json).await,
        (400, api_error("invalid_request", "missing field `title`"))
    );
    assert_eq!(
        post_raw(&hub, r#"{"user_id":"u1","title":["t"],"message":"m"}"#, json).await,
        (400, api_error("invalid_request", "invalid type: sequence, expected a string"))
    );
    assert_eq!(
        post_raw(&hub, r#"{"title":"t","message":"m"}"#, json).await,
        (400, api_error("invalid_request", "missing field `user_id` (or `user_ids`)"))
    );
    assert_eq!(
        post_raw(&hub, r#"{"user_id":"u1","user_ids":["u2"],"title":"t","message":"m"}"#, json).await,
        (400, api_error("invalid_request", "give user_id or user_ids, not both"))
    );
    assert_eq!(
        post_raw(&hub, r#"{"user_id":"u1","title":"t","message":"m","data":[1]}"#, json).await,
        (400, api_error("invalid_request", "data must be a JSON object"))
    );
    // PostgreSQL cannot store a NUL character: refused up front, on either store, not a 500.
    assert_eq!(
        post_raw(&hub, r#"{"user_id":"u1","title":"a\u0000b","message":"m"}"#, json).await,
        (400, api_error("invalid_request", "title must not contain NUL characters"))
    );

    let huge = json!({"user_id": "u1", "title": "t", "message": "x".repeat(1024 * 1024 + 1)}).to_string();
    assert_eq!(
        post_raw(&hub, huge, json).await,
        (413, api_error("payload_too_large", "request body is larger than 1048576 bytes"))
    );
    let body = r#"{"user_id":"u1","title":"t","message":"m"}"#;
    let unsupported = api_error("unsupported_media_type", "expected Content-Type: application/json");
    assert_eq!(post_raw(&hub, body, None).await, (415, unsupported.clone()));
    assert_eq!(post_raw(&hub, body, Some("text/plain")).await, (415, unsupported));
    // Nothing was stored by any of these.
    let bearer = format!("Bearer {}", hub.jwt("u1"));
    assert_eq!(hub.get_json("/api/v1/notifications", &[("authorization", &bearer)]).await.1["total"], 0);
}

/// An unknown route is 404 and a known route with the wrong method is 405, with the error body.
#[tokio::test]
async fn unknown_routes_are_404_with_the_error_body() {
    let hub = TestHub::start().await;
    assert_eq!(hub.get_json("/api/v1/nothing-here", &[]).await, (404, api_error("not_found", "no such route")));
    assert_eq!(hub.get_json("/nowhere", &[]).await, (404, api_error("not_found", "no such route")));
    let response = send(http().delete(hub.http_url("/healthz"))).await;
    assert_eq!(
        json_response(response).await,
        (405, api_error("method_not_allowed", "method not allowed on this route"))
    );
}

/// A plain GET of a WebSocket endpoint (no upgrade) is 400 with the error body, not a bare status.
#[tokio::test]
async fn a_websocket_endpoint_without_upgrade_gets_an_error_body() {
    let hub = TestHub::start().await;
    let message = "expected a WebSocket upgrade: Connection header did not include 'upgrade'";
    assert_eq!(hub.get_json("/ws/notifications/", &[]).await, (400, api_error("upgrade_required", message)));
}

/// A user's JWT requests share one budget (`message_rate`, `message_burst`) across connections: over it,
/// 429 `rate_limited` with `Retry-After`, counted in `/metrics`. Other users and the API key are not
/// touched by it.
#[tokio::test]
async fn a_users_requests_over_the_rate_limit_get_429_with_retry_after() {
    let hub = TestHub::with_message_rate(1, 2).await;
    let url = hub.http_url("/api/v1/notifications");
    let get = |user: &str| http().get(&url).bearer_auth(hub.jwt(user));
    for _ in 0..2 {
        assert_eq!(send(get("u1")).await.status(), 200);
    }
    // Each request comes from a new client on a new connection: the budget is the user's.
    let refused = send(get("u1")).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let (_, body) = json_response(refused).await;
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("too many requests: retry in "), "{body}");
    assert_eq!(send(get("u2")).await.status(), 200);
    for n in 0..5 {
        let title = format!("n{n}");
        let (status, body) = hub
            .post_json(
                "/api/v1/notifications",
                &[("x-api-key", hub.api_key())],
                &json!({"user_id": "u1", "title": title, "message": "m"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let metrics = hub.metrics().await;
    assert!(metrics.contains("\nrtctl_rate_limited_requests_total 1\n"), "{metrics}");
}
