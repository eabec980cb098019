//! A front end on another origin, as a React dev server serves one: the page fetches a ws token with
//! `Authorization: Bearer` and opens `new WebSocket(...)` exactly as the apps written for Django Channels
//! do, and calls the REST API with `fetch`. Every cross-origin call passes CORS in a real Chromium, and an
//! origin the hub does not allow is refused with nothing executed.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use rtctl::config::AllowedOrigins;
use serde_json::{Value, json};

use super::chrome::Browser;
use crate::util::TestHub;

/// The page: nothing but the script, as a bundled app's index.html.
const INDEX: &str = "<!doctype html><meta charset=utf-8><title>app</title><script type=module src=/app.js></script>";

/// The app's realtime client, written the way the Django Channels front ends are: `fetch` for a ws token,
/// then `new WebSocket` with it; every observation goes to `window.events` for the test to read.
const APP: &str = r#"
const HUB = new URLSearchParams(location.search).get('hub');
const WS = HUB.replace(/^http/, 'ws');
const sockets = {};
window.events = [];
const log = (entry) => window.events.push(entry);

async function getWsToken(jwt) {
  const res = await fetch(`${HUB}/api/user/ws-token/`, { headers: { Authorization: `Bearer ${jwt}` } });
  if (!res.ok) throw new Error(`ws-token: HTTP ${res.status}`);
  const { ws_token } = await res.json();
  return ws_token;
}

function open(name, url) {
  const ws = new WebSocket(url);
  sockets[name] = ws;
  ws.onopen = () => log({ socket: name, event: 'open' });
  ws.onmessage = (e) => log({ socket: name, event: 'message', data: JSON.parse(e.data) });
  ws.onclose = (e) => log({ socket: name, event: 'close', code: e.code, reason: e.reason });
  ws.onerror = () => log({ socket: name, event: 'error' });
}

window.app = {
  async connect(name, path, jwt) {
    try {
      const token = await getWsToken(jwt);
      window.lastWsToken = token;
      open(name, `${WS}${path}?token=${encodeURIComponent(token)}`);
      return 'connecting';
    } catch (error) {
      log({ socket: name, event: 'fetch-failed', error: String(error) });
      return String(error);
    }
  },
  connectWithToken(name, path, token) {
    open(name, `${WS}${path}?token=${encodeURIComponent(token)}`);
  },
  send(name, message) {
    sockets[name].send(JSON.stringify(message));
  },
  async call(method, path, jwt, body) {
    try {
      const headers = { Authorization: `Bearer ${jwt}` };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const res = await fetch(`${HUB}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: res.status, body: await res.json() };
    } catch (error) {
      return { error: String(error) };
    }
  },
  // A request a browser sends without a preflight (no custom header, a text body).
  async simplePost(path, text) {
    try {
      const res = await fetch(`${HUB}${path}`, { method: 'POST', body: text });
      return { status: res.status };
    } catch (error) {
      return { error: String(error) };
    }
  },
};
window.ready = true;
"#;

/// The static site, on a port of its own: another origin than the hub.
struct Site {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn site() -> Site {
    let app = Router::new()
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX) }))
        .route("/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], APP) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the site");
    let addr = listener.local_addr().expect("the site's address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Site { addr, task }
}

/// A site and a hub that allows the site's origin (`http://127.0.0.1:PORT`) and no other.
async fn site_and_hub() -> (Site, TestHub) {
    let site = site().await;
    let origin = format!("http://{}", site.addr);
    let hub = TestHub::start_with(|config| {
        config.allowed_origins = AllowedOrigins::parse(&origin).expect("the site's origin");
    })
    .await;
    (site, hub)
}

/// Opens the app from `host` (`127.0.0.1`, the allowed origin, or `localhost`, another one).
async fn open_app(browser: &Browser, site: &Site, host: &str, hub: &TestHub) {
    let url = format!("http://{host}:{}/?hub={}", site.addr.port(), hub.http_url(""));
    browser.goto(&url).await;
    browser.wait_for("the app to load", "return window.ready === true", vec![]).await;
}

/// Waits for a message of `kind` on socket `name` (the first one matching `filter`, a JS expression over
/// `m`), and returns it.
async fn message(browser: &Browser, name: &str, kind: &str, filter: &str) -> Value {
    let script = format!(
        "return window.events.find(e => e.socket === arguments[0] && e.event === 'message' && \
         e.data.type === arguments[1] && ((m) => {filter})(e.data))?.data ?? null"
    );
    browser.wait_for(&format!("{kind} on {name}"), &script, vec![json!(name), json!(kind)]).await
}

/// Every `kind` message socket `name` got so far.
async fn messages(browser: &Browser, name: &str, kind: &str) -> Vec<Value> {
    let script = "return window.events.filter(e => e.socket === arguments[0] && e.event === 'message' && \
                  e.data.type === arguments[1]).map(e => e.data)";
    let value = browser.eval(script, vec![json!(name), json!(kind)]).await;
    value.as_array().cloned().unwrap_or_default()
}

async fn call(browser: &Browser, method: &str, path: &str, jwt: &str, body: Option<Value>) -> Value {
    let mut args = vec![json!(method), json!(path), json!(jwt)];
    args.extend(body);
    browser.eval("return window.app.call(...arguments)", args).await
}

/// From another origin: the page fetches a ws token with a Bearer header (CORS preflight), connects to
/// its notifications, subscribes to `billing` only, and of a `general` and a `billing` notification
/// published after that, receives only the `billing` one.
#[tokio::test]
async fn a_page_on_another_origin_gets_a_ws_token_and_only_the_pushes_it_subscribed_to() {
    let Some(browser) = Browser::start("a_page_on_another_origin_gets_a_ws_token").await else { return };
    let (site, hub) = site_and_hub().await;
    open_app(&browser, &site, "127.0.0.1", &hub).await;
    let connecting = browser
        .eval("return window.app.connect('n', '/ws/notifications/', arguments[0])", vec![json!(hub.jwt("u1"))])
        .await;
    assert_eq!(connecting, "connecting");
    let greeting = message(&browser, "n", "connection_established", "true").await;
    assert_eq!((greeting["user_id"].as_str(), greeting["unread_count"].as_i64()), (Some("u1"), Some(0)));
    let ws_token = browser.eval("return window.lastWsToken", vec![]).await;
    assert!(ws_token.as_str().is_some_and(|t| !t.contains('.')), "a ws token, not the JWT: {ws_token}");

    browser.eval("window.app.send('n', {type: 'subscribe', notification_types: ['billing']})", vec![]).await;
    message(&browser, "n", "subscribed", "true").await;
    hub.notify("u1", "Weekly digest", "general").await;
    let billing = hub.notify("u1", "Invoice ready", "billing").await;
    let pushed = message(&browser, "n", "notification", "true").await;
    assert_eq!(pushed["notification"]["id"], billing);
    assert_eq!(pushed["notification"]["type"], "billing");
    // Unread counts still come for both; once the second has arrived, the general one was never pushed.
    message(&browser, "n", "unread_count", "m.count === 2").await;
    assert_eq!(messages(&browser, "n", "notification").await.len(), 1);
    browser.close().await;
}

/// A staff page approves a pending user through REST from another origin (a POST with a Bearer header,
/// preflighted) and rejects another with a JSON reason; the dashboard socket on the same page gets
/// `new_user`, then `approval_update` for each, and the page can read the REST answers.
#[tokio::test]
async fn a_staff_page_decides_pending_users_over_rest_and_sees_approval_updates() {
    let Some(browser) = Browser::start("a_staff_page_decides_pending_users").await else { return };
    let (site, hub) = site_and_hub().await;
    let staff = hub.staff_jwt("admin");
    open_app(&browser, &site, "127.0.0.1", &hub).await;
    browser.eval("return window.app.connect('d', '/ws/admin/dashboard/', arguments[0])", vec![json!(staff)]).await;
    message(&browser, "d", "connection_established", "true").await;
    for user in ["u7", "u8"] {
        let response = hub.post_api("/api/v1/admin-dashboard/users/", &json!({"user_id": user})).await;
        assert_eq!(response.status(), 201);
    }
    message(&browser, "d", "new_user", "m.user.user_id === 'u8'").await;

    let approved = call(&browser, "POST", "/api/v1/admin-dashboard/users/u7/approve/", &staff, None).await;
    assert_eq!(
        (approved["status"].as_u64(), &approved["body"]["status"]),
        (Some(200), &json!("approved")),
        "{approved}"
    );
    let update = message(&browser, "d", "approval_update", "m.user_id === 'u7'").await;
    assert_eq!((&update["status"], &update["decided_by"]), (&json!("approved"), &json!("admin")));

    let body = json!({"reason": "duplicate account"});
    let rejected = call(&browser, "POST", "/api/v1/admin-dashboard/users/u8/reject/", &staff, Some(body)).await;
    assert_eq!(rejected["body"]["reason"], "duplicate account", "{rejected}");
    let update = message(&browser, "d", "approval_update", "m.user_id === 'u8'").await;
    assert_eq!((&update["status"], &update["reason"]), (&json!("rejected"), &json!("duplicate account")));

    // An error answer is readable too: deciding again is a 409 with the JSON body.
    let again = call(&browser, "POST", "/api/v1/admin-dashboard/users/u7/approve/", &staff, None).await;
    assert_eq!(
        again,
        json!({"status": 409, "body": {"error": {"code": "conflict", "message": "user u7 was decided already"}}})
    );
    browser.close().await;
}

/// Two windows of the app, two users in one room: the second sees the first come online, then typing,
/// then the message; the first sees the second's read receipt.
#[tokio::test]
async fn two_windows_chat_with_typing_and_read_receipts() {
    let Some(browser) = Browser::start("two_windows_chat_with_typing_and_read_receipts").await else { return };
    let (site, hub) = site_and_hub().await;
    let room = json!({"room_id": "team", "name": "Team", "members": ["alice", "bob"]});
    assert_eq!(hub.post_api("/api/v1/chat/rooms", &room).await.status(), 201);

    let bob_window = browser.window().await;
    open_app(&browser, &site, "127.0.0.1", &hub).await;
    browser.eval("return window.app.connect('c', '/ws/chat/team/', arguments[0])", vec![json!(hub.jwt("bob"))]).await;
    message(&browser, "c", "history", "true").await;

    let alice_window = browser.new_window().await;
    open_app(&browser, &site, "127.0.0.1", &hub).await;
    browser.eval("return window.app.connect('c', '/ws/chat/team/', arguments[0])", vec![json!(hub.jwt("alice"))]).await;
    message(&browser, "c", "history", "true").await;
    browser.eval("window.app.send('c', {type: 'typing', is_typing: true})", vec![]).await;

    browser.switch_to(&bob_window).await;
    message(&browser, "c", "user_status", "m.user_id === 'alice' && m.status === 'online'").await;
    message(&browser, "c", "typing", "m.user_id === 'alice' && m.is_typing === true").await;

    browser.switch_to(&alice_window).await;
    browser.eval("window.app.send('c', {type: 'chat_message', message: 'Hi Bob', client_id: 'a-1'})", vec![]).await;
    let own = message(&browser, "c", "chat_message", "m.client_id === 'a-1'").await;
    let id = own["message"]["id"].as_i64().expect("a stored id");

    browser.switch_to(&bob_window).await;
    let got = message(&browser, "c", "chat_message", "true").await;
    assert_eq!((&got["message"]["content"], &got["message"]["sender_id"]), (&json!("Hi Bob"), &json!("alice")));
    browser.eval("window.app.send('c', {type: 'read_receipt', message_id: arguments[0]})", vec![json!(id)]).await;

    browser.switch_to(&alice_window).await;
    let receipt = message(&browser, "c", "read_receipt", "m.user_id === 'bob'").await;
    assert_eq!(receipt["message_id"], id);
    browser.close().await;
}

/// A refused token closes with 4001 after the upgrade, so the page sees the code and the reason: here a
/// ws token used a second time (they are single use).
#[tokio::test]
async fn a_4001_close_code_is_visible_to_the_page() {
    let Some(browser) = Browser::start("a_4001_close_code_is_visible_to_the_page").await else { return };
    let (site, hub) = site_and_hub().await;
    open_app(&browser, &site, "127.0.0.1", &hub).await;
    browser
        .eval("return window.app.connect('first', '/ws/notifications/', arguments[0])", vec![json!(hub.jwt("u1"))])
        .await;
    message(&browser, "first", "connection_established", "true").await;
    browser.eval("window.app.connectWithToken('again', '/ws/notifications/', window.lastWsToken)", vec![]).await;
    let script = "return window.events.find(e => e.socket === 'again' && e.event === 'close') ?? null";
    let close = browser.wait_for("the second connection's close", script, vec![]).await;
    assert_eq!((&close["code"], &close["reason"]), (&json!(4001), &json!("unknown or used ws token")));
    browser.close().await;
}

/// A page on an origin the hub does not allow (`localhost` instead of `127.0.0.1`): its fetches fail in
/// the browser (the preflight gets 403 and no CORS header), a request sent without a preflight is
/// refused before its handler (the pending user is still pending), and its WebSocket never opens.
#[tokio::test]
async fn a_disallowed_origin_is_refused_and_nothing_runs() {
    let Some(browser) = Browser::start("a_disallowed_origin_is_refused_and_nothing_runs").await else { return };
    let (site, hub) = site_and_hub().await;
    assert_eq!(hub.post_api("/api/v1/admin-dashboard/users/", &json!({"user_id": "u9"})).await.status(), 201);
    open_app(&browser, &site, "localhost", &hub).await;
    let staff = hub.staff_jwt("admin");

    let refused = json!({"error": "TypeError: Failed to fetch"});
    let token =
        browser.eval("return window.app.connect('n', '/ws/notifications/', arguments[0])", vec![json!(staff)]).await;
    assert_eq!(token, "TypeError: Failed to fetch");
    assert_eq!(call(&browser, "POST", "/api/v1/admin-dashboard/users/u9/approve/", &staff, None).await, refused);
    let simple = "return window.app.simplePost('/api/v1/admin-dashboard/users/u9/reject/', 'no')";
    assert_eq!(browser.eval(simple, vec![]).await, refused);
    browser.eval("window.app.connectWithToken('w', '/ws/notifications/', arguments[0])", vec![json!(staff)]).await;
    let script = "return window.events.find(e => e.socket === 'w' && e.event === 'close') ?? null";
    let close = browser.wait_for("the refused WebSocket's close", script, vec![]).await;
    assert_eq!(close["code"], 1006, "{close}");
    let opened = browser.eval("return window.events.some(e => e.event === 'open')", vec![]).await;
    assert_eq!(opened, false);

    let bearer = format!("Bearer {staff}");
    let (status, pending) =
        hub.get_json("/api/v1/admin-dashboard/approvals/pending/", &[("authorization", &bearer)]).await;
    assert_eq!((status, &pending["users"][0]["user_id"], &pending["count"]), (200, &json!("u9"), &json!(1)));
    // Two preflights, the simple POST and the upgrade, each refused for its origin.
    let metrics = hub.metrics().await;
    assert!(metrics.lines().any(|l| l == "rtctl_auth_failures_total{reason=\"origin\"} 4"), "{metrics}");
    browser.close().await;
}
