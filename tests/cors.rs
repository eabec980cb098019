//! CORS on the HTTP API (PROTOCOL §7), header by header: what a browser on an allowed origin is told,
//! what a disallowed origin gets (403, no CORS headers, nothing executed), and that requests without
//! `Origin` are unaffected. The same flows in a real browser are in `browser.rs`.

use std::collections::BTreeMap;

use reqwest::Method;
use rtctl::config::AllowedOrigins;
use serde_json::{Value, json};

use crate::util::{TestHub, api_error, http, json_response, send};

const APP: &str = "http://localhost:3000";
const EVIL: &str = "http://evil.example";

/// A hub that allows the React dev server of [`APP`] and one production origin.
async fn listed_hub() -> TestHub {
    TestHub::start_with(|config| {
        config.allowed_origins = AllowedOrigins::parse(&format!("https://app.example.com, {APP}")).expect("origins");
    })
    .await
}

/// The response's CORS headers (and `Vary`), lowercased names, for exact comparison.
fn cors_headers(response: &reqwest::Response) -> BTreeMap<String, String> {
    response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-") || name.as_str() == "vary")
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().expect("an ASCII header").to_owned()))
        .collect()
}

fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

/// What Chromium sends before `fetch(url, {headers: {Authorization: ...}})` from another origin.
async fn preflight(hub: &TestHub, path: &str, origin: &str, method: &str, request_headers: &str) -> reqwest::Response {
    let request = http()
        .request(Method::OPTIONS, hub.http_url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", request_headers);
    send(request).await
}

/// The preflight answer every allowed origin of a list gets.
fn listed_preflight(origin: &str) -> BTreeMap<String, String> {
    headers(&[
        ("access-control-allow-origin", origin),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "GET,POST"),
        ("access-control-allow-headers", "authorization,content-type,idempotency-key"),
        ("access-control-max-age", "600"),
        ("vary", "origin, access-control-request-method, access-control-request-headers"),
    ])
}

/// A listed origin's preflight is answered (200, its origin, credentials, GET and POST, `Authorization`,
/// `Content-Type` and `Idempotency-Key` but never `X-API-Key`, a max age, `Vary`) without reaching a handler; its real
/// requests get the CORS headers on success and on error alike, so a page can read the error body.
#[tokio::test]
async fn a_listed_origin_gets_preflight_answers_and_cors_headers() {
    let hub = listed_hub().await;
    let answer = preflight(&hub, "/api/user/ws-token/", APP, "GET", "authorization").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(cors_headers(&answer), listed_preflight(APP));
    assert_eq!(answer.text().await.expect("a body"), "");

    // A page may make its POSTs safe to retry.
    let answer =
        preflight(&hub, "/api/v1/chat/rooms/r1/messages", APP, "POST", "authorization,content-type,idempotency-key")
            .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(cors_headers(&answer), listed_preflight(APP));

    // A page that tries to send the API key is told which headers it may send: not that one.
    let answer = preflight(&hub, "/api/v1/notifications", APP, "POST", "content-type,x-api-key").await;
    assert_eq!(cors_headers(&answer), listed_preflight(APP));

    let answer =
        preflight(&hub, "/api/v1/admin-dashboard/users/u1/approve/", "https://app.example.com", "POST", "").await;
    assert_eq!(cors_headers(&answer), listed_preflight("https://app.example.com"));

    let simple = headers(&[
        ("access-control-allow-origin", APP),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "retry-after,idempotent-replayed"),
        ("vary", "origin, access-control-request-method, access-control-request-headers"),
    ]);
    let response =
        send(http().get(hub.http_url("/api/user/ws-token/")).header("origin", APP).bearer_auth(hub.jwt("u1"))).await;
    assert_eq!(cors_headers(&response), simple);
    let (status, body) = json_response(response).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["ws_token"].is_string(), "{body}");

    let response = send(http().get(hub.http_url("/api/v1/notifications")).header("origin", APP)).await;
    assert_eq!(cors_headers(&response), simple);
    assert_eq!(
        json_response(response).await,
        (401, api_error("unauthorized", "missing X-API-Key or Authorization: Bearer"))
    );
}

/// `--allowed-origins '*'` answers any origin with `*` and never with credentials.
#[tokio::test]
async fn any_origin_is_answered_with_a_star_and_no_credentials() {
    let hub = TestHub::start_with(|config| config.allowed_origins = AllowedOrigins::Any).await;
    let answer =
        preflight(&hub, "/api/v1/chat/rooms", EVIL, "POST", "authorization,content-type,idempotency-key").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        cors_headers(&answer),
        headers(&[
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "GET,POST"),
            ("access-control-allow-headers", "authorization,content-type,idempotency-key"),
            ("access-control-max-age", "600"),
            ("vary", "origin, access-control-request-method, access-control-request-headers"),
        ])
    );
    let response =
        send(http().get(hub.http_url("/api/v1/chat/rooms")).header("origin", EVIL).bearer_auth(hub.jwt("u1"))).await;
    assert_eq!(
        cors_headers(&response),
        headers(&[
            ("access-control-allow-origin", "*"),
            ("access-control-expose-headers", "retry-after,idempotent-replayed"),
            ("vary", "origin, access-control-request-method, access-control-request-headers"),
        ])
    );
    assert_eq!(json_response(response).await, (200, json!({"rooms": [], "has_more": false, "next_cursor": null})));
}

/// An origin that is not allowed gets 403 with the JSON error and no CORS header, for a preflight and
/// for a request a browser sends without one, and nothing runs: a notification posted with the valid
/// API key from that origin is not stored. The refusals are counted like refused WebSocket origins.
#[tokio::test]
async fn a_disallowed_origin_gets_403_without_cors_headers_and_nothing_runs() {
    let hub = listed_hub().await;
    let refused = api_error("forbidden", "origin not allowed");
    for origin in [EVIL, "http://localhost:3001", "https://app.example.com.evil"] {
        let answer = preflight(&hub, "/api/v1/notifications", origin, "POST", "content-type").await;
        assert_eq!(cors_headers(&answer), BTreeMap::new(), "{origin}");
        assert_eq!(json_response(answer).await, (403, refused.clone()), "{origin}");
    }
    let body = json!({"user_id": "u1", "title": "from a page", "message": "m"});
    let request =
        http().post(hub.http_url("/api/v1/notifications")).header("origin", EVIL).header("x-api-key", hub.api_key());
    let response = send(request.json(&body)).await;
    assert_eq!(cors_headers(&response), BTreeMap::new());
    assert_eq!(json_response(response).await, (403, refused));

    let (status, page) =
        hub.get_json("/api/v1/notifications", &[("authorization", &format!("Bearer {}", hub.jwt("u1")))]).await;
    assert_eq!((status, &page["total"]), (200, &json!(0)), "nothing was stored: {page}");
    let metrics = hub.metrics().await;
    assert!(metrics.lines().any(|l| l == "rtctl_auth_failures_total{reason=\"origin\"} 4"), "{metrics}");
}

/// By default (same host only) a page of the hub's own origin reaches the API without CORS headers (it
/// needs none), any other origin gets 403, and requests without `Origin` are unaffected.
#[tokio::test]
async fn by_default_only_the_hubs_own_origin_reaches_the_api() {
    let hub = TestHub::start().await;
    let own = format!("http://{}", hub.addr);
    let bearer = format!("Bearer {}", hub.jwt("u1"));
    let response =
        send(http().get(hub.http_url("/api/v1/chat/rooms")).header("origin", &own).header("authorization", &bearer))
            .await;
    assert_eq!(cors_headers(&response), BTreeMap::new());
    assert_eq!(json_response(response).await, (200, json!({"rooms": [], "has_more": false, "next_cursor": null})));

    let answer = preflight(&hub, "/api/v1/chat/rooms", APP, "GET", "authorization").await;
    assert_eq!(cors_headers(&answer), BTreeMap::new());
    assert_eq!(json_response(answer).await, (403, api_error("forbidden", "origin not allowed")));
    let response =
        send(http().get(hub.http_url("/api/v1/chat/rooms")).header("origin", APP).header("authorization", &bearer))
            .await;
    assert_eq!(json_response(response).await, (403, api_error("forbidden", "origin not allowed")));
}

/// CORS is for `/api/` and for browsers: a backend's request without `Origin` gets no CORS header on a
/// hub with a list, and the routes outside `/api/` (health, metrics) answer any origin as before.
#[tokio::test]
async fn requests_without_origin_and_routes_outside_the_api_are_unaffected() {
    let hub = listed_hub().await;
    let body = json!({"user_id": "u1", "title": "from a backend", "message": "m"});
    let response =
        send(http().post(hub.http_url("/api/v1/notifications")).header("x-api-key", hub.api_key()).json(&body)).await;
    assert_eq!(cors_headers(&response), BTreeMap::new());
    assert_eq!(response.status(), 201);

    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = send(http().get(hub.http_url(path)).header("origin", EVIL)).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(cors_headers(&response), BTreeMap::new(), "{path}");
    }
    // Not a route: the 404 stays a 404 (the origin check is for requests that could run something).
    let (status, body): (u16, Value) =
        json_response(send(http().get(hub.http_url("/nowhere")).header("origin", EVIL)).await).await;
    assert_eq!((status, body), (404, api_error("not_found", "no such route")));
}
