//! The web console in Chromium, view by view: sign-in from the fragment, each view doing its main job
//! against a real hub (with native WebSocket clients as the other people and tabs), and reconnection.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rtctl::auth::{self, Identity, SigningKey};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::chrome::{Browser, WAIT};
use crate::util::{TestHub, Ws, http, json_response, send, send_json, user_identity};

fn staff(user: &str) -> Identity {
    Identity { is_staff: true, ..user_identity(user) }
}

/// Opens the console signed in as `identity` (the token in the fragment), then goes to `route`.
async fn open_console(browser: &Browser, hub: &TestHub, identity: &Identity, route: &str) {
    browser.goto(&hub.http_url(&format!("/console/#token={}", hub.jwt_for(identity)))).await;
    browser.wait_for("the console's navigation", "return document.querySelectorAll('.nav a').length", vec![]).await;
    browser.eval("location.hash = arguments[0]", vec![json!(route)]).await;
}

/// Waits until the view's connection pill says live.
async fn live(browser: &Browser) {
    browser
        .wait_for("the view to be live", "return document.querySelector('.pill-slot .pill[data-state=live]')", vec![])
        .await;
}

/// The next frame on a native socket that `matches`, skipping others.
async fn frame(ws: &mut Ws, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, ws.next()).await.unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"));
        if let Some(Ok(Message::Text(text))) = next {
            let value: Value = serde_json::from_str(&text).expect("JSON");
            if matches(&value) {
                return value;
            }
        } else if !matches!(next, Some(Ok(_))) {
            panic!("the socket ended while waiting for {what}: {next:?}");
        }
    }
}

/// The console reads its token from the fragment, keeps it in sessionStorage and takes it out of the
/// address bar, stays signed in across a reload, signs out on request, and sends a token the hub refuses
/// back to the sign-in page, which says why and how to get in.
#[tokio::test]
async fn the_console_signs_in_from_the_fragment_and_keeps_the_token_out_of_the_address_bar() {
    let Some(browser) = Browser::start("the_console_signs_in_from_the_fragment").await else { return };
    let hub = TestHub::start().await;
    browser.goto(&hub.http_url("/console/")).await;
    let how = browser
        .wait_for("the sign-in page", "return document.querySelector('.signin .command')?.textContent", vec![])
        .await;
    assert_eq!(how, "rtctl console --staff --open");

    let token = hub.jwt_for(&staff("admin"));
    browser.goto(&hub.http_url(&format!("/console/#token={token}"))).await;
    browser.wait_for("the navigation", "return document.querySelector('[data-field=user]')?.textContent", vec![]).await;
    let url = browser.eval("return location.href", vec![]).await;
    assert_eq!(url, hub.http_url("/console/#/overview"), "the token left the address bar");
    let stored = browser.eval("return sessionStorage.getItem('rtctl.console.token')", vec![]).await;
    assert_eq!(stored, token.as_str());

    browser.eval("window.beforeReload = true; location.reload()", vec![]).await;
    let user = browser
        .wait_for(
            "still signed in after a reload",
            "return !window.beforeReload && document.querySelector('[data-field=user]')?.textContent",
            vec![],
        )
        .await;
    assert_eq!(user, "admin");
    browser.click("[data-action=sign-out]").await;
    let notice = browser
        .wait_for("the sign-out notice", "return document.querySelector('[data-field=notice]')?.textContent", vec![])
        .await;
    assert_eq!(notice, "You signed out.");
    assert_eq!(browser.eval("return sessionStorage.getItem('rtctl.console.token')", vec![]).await, Value::Null);

    let claims = auth::claims_for(&staff("admin"), Duration::from_secs(600));
    let forged = auth::mint(&claims, &SigningKey::Hs256("not-the-hubs-secret-0123456789".into())).expect("mint");
    browser.goto(&hub.http_url(&format!("/console/#token={forged}"))).await;
    let notice = browser
        .wait_for("the refusal", "return document.querySelector('[data-field=notice]')?.textContent", vec![])
        .await;
    assert_eq!(notice, "The hub refused your token: invalid token: bad signature.");
    browser.close().await;
}

/// The dashboard lists pending users live, approves one and rejects another with a reason (as the
/// store then says), shows a user registered meanwhile, an order update and a second admin.
#[tokio::test]
async fn the_dashboard_view_approves_and_rejects_pending_users() {
    let Some(browser) = Browser::start("the_dashboard_view_approves_and_rejects").await else { return };
    let hub = TestHub::start().await;
    for (user, name) in [("u1", "Ada Lovelace"), ("u2", "Grace Hopper")] {
        let body = json!({"user_id": user, "name": name, "email": format!("{user}@example.com")});
        assert_eq!(hub.post_api("/api/v1/admin-dashboard/users/", &body).await.status(), 201);
    }
    open_console(&browser, &hub, &staff("admin"), "#/dashboard").await;
    live(&browser).await;
    browser
        .wait_for(
            "two pending rows",
            "return document.querySelectorAll('[data-list=pending] [data-user-id]').length === 2",
            vec![],
        )
        .await;
    assert_eq!(browser.text("[data-stat=pending_approvals]").await, "2");

    browser.click("[data-user-id=u1] [data-action=approve]").await;
    browser.wait_for("u1 to leave the list", "return !document.querySelector('[data-user-id=u1]')", vec![]).await;
    browser.click("[data-user-id=u2] [data-action=reject]").await;
    browser.type_into("[data-user-id=u2] [data-field=reason]", "duplicate account").await;
    browser.click("[data-user-id=u2] [data-action=confirm-reject]").await;
    browser.wait_for("u2 to leave the list", "return !document.querySelector('[data-user-id=u2]')", vec![]).await;
    browser.wait_for("the counts", "return document.querySelector('[data-stat=approved_today]').textContent === '1' && document.querySelector('[data-stat=rejected_today]').textContent === '1' && document.querySelector('[data-stat=pending_approvals]').textContent === '0'", vec![]).await;

    let bearer = format!("Bearer {}", hub.staff_jwt("someone"));
    let (status, recent) =
        hub.get_json("/api/v1/admin-dashboard/approvals/recent/", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200);
    let decided: Vec<(Value, Value, Value, Value)> = recent["approvals"]
        .as_array()
        .expect("approvals")
        .iter()
        .map(|a| (a["user_id"].clone(), a["status"].clone(), a["reason"].clone(), a["decided_by"].clone()))
        .collect();
    assert_eq!(
        decided,
        [
            (json!("u2"), json!("rejected"), json!("duplicate account"), json!("admin")),
            (json!("u1"), json!("approved"), Value::Null, json!("admin")),
        ]
    );

    assert_eq!(
        hub.post_api("/api/v1/admin-dashboard/users/", &json!({"user_id": "u3", "name": "Linus"})).await.status(),
        201
    );
    browser
        .wait_for(
            "u3 to arrive live",
            "return document.querySelector('[data-user-id=u3] .name')?.textContent === 'Linus'",
            vec![],
        )
        .await;
    let order = hub.post_api("/api/v1/admin-dashboard/orders/A-1/", &json!({"status": "shipped"})).await;
    assert_eq!(order.status(), 202);
    browser
        .wait_for(
            "the order update",
            "return document.querySelector('[data-order-id=A-1] .tag')?.textContent === 'shipped'",
            vec![],
        )
        .await;
    browser
        .wait_for(
            "the activity feed",
            "return document.querySelectorAll('[data-list=activity] li').length === 6",
            vec![],
        )
        .await;
    let (_other_admin, _) = hub.connect("/ws/admin/dashboard/", &hub.staff_jwt("bob")).await;
    browser
        .wait_for(
            "a second admin",
            "return document.querySelector('[data-stat=admins_online]').textContent === '2'",
            vec![],
        )
        .await;
    browser.close().await;
}

/// The notifications listed, newest first, as `title:read` pairs.
const ITEMS: &str = "[...document.querySelectorAll('[data-notification-id]')]\
    .map(li => li.querySelector('b').textContent + ':' + li.dataset.read).join(',')";

async fn items_are(browser: &Browser, what: &str, expected: &str) {
    browser.wait_for(what, &format!("return {ITEMS} === arguments[0]"), vec![json!(expected)]).await;
}

/// The notification center: the list and the unread badge, mark read (stored), another tab's mark all
/// read followed, a live push, delete, and the type filter (only `billing` shown and pushed).
#[tokio::test]
async fn the_notifications_view_marks_read_and_follows_other_tabs() {
    let Some(browser) = Browser::start("the_notifications_view_marks_read").await else { return };
    let hub = TestHub::start().await;
    hub.notify("u1", "Welcome", "general").await;
    let invoice = hub.notify("u1", "Invoice 1", "billing").await;
    open_console(&browser, &hub, &user_identity("u1"), "#/notifications").await;
    live(&browser).await;
    items_are(&browser, "two unread", "Invoice 1:false,Welcome:false").await;
    browser
        .wait_for("the badge", "return document.querySelector('[data-stat=nav-unread]').textContent === '2'", vec![])
        .await;

    browser.click(&format!("[data-notification-id='{invoice}'] [data-action=mark-read]")).await;
    items_are(&browser, "one read", "Invoice 1:true,Welcome:false").await;
    browser
        .wait_for(
            "the badge at 1",
            "return document.querySelector('[data-stat=nav-unread]').textContent === '1'",
            vec![],
        )
        .await;
    let bearer = format!("Bearer {}", hub.jwt("u1"));
    let (_, unread) = hub.get_json("/api/v1/notifications?unread_only=true", &[("authorization", &bearer)]).await;
    assert_eq!(unread["unread_count"], 1, "stored: {unread}");

    let (mut other_tab, _) = hub.connect("/ws/notifications/", &hub.jwt("u1")).await;
    send_json(&mut other_tab, &json!({"type": "mark_all_read"})).await;
    items_are(&browser, "all read, as the other tab did", "Invoice 1:true,Welcome:true").await;
    browser.wait_for("no badge", "return document.querySelector('[data-stat=nav-unread]').hidden", vec![]).await;

    let live_one = hub.notify("u1", "Live one", "general").await;
    items_are(&browser, "the live push", "Live one:false,Invoice 1:true,Welcome:true").await;
    browser.click(&format!("[data-notification-id='{live_one}'] [data-action=delete]")).await;
    items_are(&browser, "the deletion", "Invoice 1:true,Welcome:true").await;
    let (_, all) = hub.get_json("/api/v1/notifications", &[("authorization", &bearer)]).await;
    assert_eq!(all["total"], 2, "deleted in the store: {all}");

    browser.type_into("[data-field=types]", "billing").await;
    browser.click("[data-action=subscribe]").await;
    items_are(&browser, "only billing shown", "Invoice 1:true").await;
    hub.notify("u1", "Filtered out", "general").await;
    hub.notify("u1", "Invoice 2", "billing").await;
    items_are(&browser, "the billing push", "Invoice 2:false,Invoice 1:true").await;
    browser
        .wait_for("both counted", "return document.querySelector('[data-stat=nav-unread]').textContent === '2'", vec![])
        .await;
    items_are(&browser, "still no general one", "Invoice 2:false,Invoice 1:true").await;
    browser.close().await;
}

/// Chat: the last 50 messages, the older 10 on scrolling up, a read receipt for the newest, then typing
/// and sending seen by another member's native client; that member's receipt, typing and reply shown.
#[tokio::test]
async fn the_chat_view_pages_sends_types_and_shows_receipts() {
    let Some(browser) = Browser::start("the_chat_view_pages_sends_types").await else { return };
    let hub = TestHub::start().await;
    let room = json!({"room_id": "support", "name": "Support", "members": ["ada", "bob"]});
    assert_eq!(hub.post_api("/api/v1/chat/rooms", &room).await.status(), 201);
    let bob = hub.jwt("bob");
    let mut last = 0;
    for i in 1..=60 {
        let post = http().post(hub.http_url("/api/v1/chat/rooms/support/messages")).bearer_auth(&bob);
        let (status, body) = json_response(send(post.json(&json!({"message": format!("message {i}")}))).await).await;
        assert_eq!(status, 201);
        last = body["id"].as_i64().expect("an id");
    }
    let (mut bob_ws, _) = hub.connect("/ws/chat/support/", &bob).await;
    frame(&mut bob_ws, "history", |m| m["type"] == "history").await;

    open_console(&browser, &hub, &user_identity("ada"), "#/chat/support").await;
    live(&browser).await;
    let count = "return document.querySelectorAll('[data-list=messages] [data-message-id]').length === arguments[0]";
    browser.wait_for("the last 50", count, vec![json!(50)]).await;
    frame(&mut bob_ws, "ada online", |m| {
        m["type"] == "user_status" && m["user_id"] == "ada" && m["status"] == "online"
    })
    .await;
    let receipt = frame(&mut bob_ws, "ada's read receipt", |m| m["type"] == "read_receipt").await;
    assert_eq!((&receipt["user_id"], &receipt["message_id"]), (&json!("ada"), &json!(last)));

    browser.eval("document.querySelector('[data-list=messages]').scrollTop = 0", vec![]).await;
    browser.wait_for("all 60 after scrolling up", count, vec![json!(60)]).await;
    assert_eq!(browser.text("[data-list=messages] [data-message-id] .bubble").await, "message 1");

    browser.type_into("[data-field=message]", "Hello Bob").await;
    let typing = frame(&mut bob_ws, "typing", |m| m["type"] == "typing").await;
    assert_eq!((&typing["user_id"], &typing["is_typing"]), (&json!("ada"), &json!(true)));
    browser.click("[data-action=send]").await;
    let sent = frame(&mut bob_ws, "the message", |m| m["type"] == "chat_message").await;
    assert_eq!((&sent["message"]["content"], &sent["message"]["sender_id"]), (&json!("Hello Bob"), &json!("ada")));
    let id = sent["message"]["id"].as_i64().expect("an id");
    let mine = format!("[data-message-id='{id}'].mine");
    browser.wait_for("the stored message", "return !!document.querySelector(arguments[0])", vec![json!(mine)]).await;

    send_json(&mut bob_ws, &json!({"type": "read_receipt", "message_id": id})).await;
    browser
        .wait_for(
            "seen by bob",
            "return document.querySelector(arguments[0] + ' [data-seen-by]')?.textContent === 'Seen by bob'",
            vec![json!(mine)],
        )
        .await;
    send_json(&mut bob_ws, &json!({"type": "typing", "is_typing": true})).await;
    browser
        .wait_for(
            "bob typing",
            "return document.querySelector('[data-field=typing]').textContent === 'bob is typing…'",
            vec![],
        )
        .await;
    send_json(&mut bob_ws, &json!({"type": "chat_message", "message": "Thanks!"})).await;
    browser
        .wait_for(
            "bob's reply",
            "return [...document.querySelectorAll('[data-sender=bob] .bubble')].some(b => b.textContent === 'Thanks!')",
            vec![],
        )
        .await;
    browser
        .wait_for(
            "typing cleared by the message",
            "return document.querySelector('[data-field=typing]').textContent === ''",
            vec![],
        )
        .await;
    browser
        .wait_for("bob online", "return !!document.querySelector('[data-list=online] [data-user=bob]')", vec![])
        .await;
    browser.close().await;
}

/// The overview's figures are the hub's: connections per endpoint, users online, node, layer and store
/// match `/api/v1/stats`, and the rate tiles and charts fill once two polls are in.
#[tokio::test]
async fn the_overview_matches_the_hubs_stats() {
    let Some(browser) = Browser::start("the_overview_matches_the_hubs_stats").await else { return };
    let hub = TestHub::start().await;
    let _tabs = [hub.notifications("u1").await, hub.notifications("u2").await];
    let (_events, _) = hub.connect("/ws/events/acme/", &hub.member_jwt("u3", &["acme"])).await;
    open_console(&browser, &hub, &staff("admin"), "#/overview").await;
    live(&browser).await;

    let read_page = "const v = (k) => document.querySelector(`[data-stat='${k}']`)?.textContent; return {\
        total: v('connections_total'), users: v('users_online'), notifications: v('connections.notifications'),\
        events: v('connections.events'), dashboard: v('connections.dashboard'), chat: v('connections.chat'),\
        node: v('node_id'), layer: v('layer'), store: v('store')}";
    let bearer = format!("Bearer {}", hub.staff_jwt("checker"));
    let deadline = Instant::now() + WAIT;
    loop {
        let page = browser.eval(read_page, vec![]).await;
        let (_, stats) = hub.get_json("/api/v1/stats", &[("authorization", &bearer)]).await;
        let expected = json!({
            "total": stats["connections_total"].to_string(), "users": stats["users_online"].to_string(),
            "notifications": stats["connections"]["notifications"].to_string(),
            "events": stats["connections"]["events"].to_string(),
            "dashboard": stats["connections"]["dashboard"].to_string(), "chat": stats["connections"]["chat"].to_string(),
            "node": stats["node_id"], "layer": stats["layer"], "store": stats["store"],
        });
        if page == expected {
            // Two native tabs, one events member and the console's own notification center.
            assert_eq!((&expected["notifications"], &expected["users"]), (&json!("3"), &json!("4")));
            break;
        }
        assert!(Instant::now() < deadline, "the overview shows {page}, /api/v1/stats says {expected}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser
        .wait_for(
            "a rate",
            "return /^[0-9.,]+$/.test(document.querySelector('[data-stat=messages_out_rate]').textContent)",
            vec![],
        )
        .await;
    browser.wait_for("charts with lines", "return [...document.querySelectorAll('.plot path.line')].filter(p => p.getAttribute('d').includes('L')).length >= 6", vec![]).await;
    browser.close().await;
}

/// Org events: the view connects to the org chosen from the token's orgs and shows its events live, and
/// none of another org's.
#[tokio::test]
async fn the_events_view_shows_an_orgs_events_live() {
    let Some(browser) = Browser::start("the_events_view_shows_an_orgs_events_live").await else { return };
    let hub = TestHub::start().await;
    let member = Identity { orgs: vec!["acme".into(), "globex".into()], ..user_identity("u1") };
    open_console(&browser, &hub, &member, "#/events/globex").await;
    live(&browser).await;
    assert_eq!(browser.eval("return document.querySelector('[data-field=org]').value", vec![]).await, "globex");
    for (org, kind) in [("acme", "not.this.one"), ("globex", "user.joined"), ("globex", "resource.created")] {
        let body = json!({"event_type": kind, "data": {"user_id": 7}});
        assert_eq!(hub.post_api(&format!("/api/v1/orgs/{org}/events"), &body).await.status(), 202);
    }
    let shown = browser
        .wait_for("two events", "const e = [...document.querySelectorAll('[data-list=events] [data-event-type]')]; return e.length === 2 && e.map(li => li.dataset.eventType + ' ' + li.querySelector('pre').textContent)", vec![])
        .await;
    assert_eq!(shown, json!(["resource.created {\"user_id\":7}", "user.joined {\"user_id\":7}"]));
    browser.close().await;
}

/// A hub restart (close 1001) is shown and followed by a reconnection with a fresh ws token; a 4001
/// close sends the person to the sign-in page with the hub's reason.
#[tokio::test]
async fn the_console_reconnects_after_a_restart_and_signs_out_on_4001() {
    let Some(browser) = Browser::start("the_console_reconnects_after_a_restart").await else { return };
    let hub = TestHub::start().await;
    open_console(&browser, &hub, &staff("admin"), "#/dashboard").await;
    live(&browser).await;
    browser
        .eval("window.states = []; new MutationObserver(() => window.states.push(document.querySelector('.pill-slot .pill')?.textContent)).observe(document.querySelector('.pill-slot'), {subtree: true, characterData: true, childList: true})", vec![])
        .await;
    let hub = hub.restart().await;
    live(&browser).await;
    let states = browser.eval("return window.states", vec![]).await;
    let texts: Vec<&str> = states.as_array().expect("states").iter().filter_map(Value::as_str).collect();
    assert!(
        texts.iter().any(|t| t.starts_with("the hub is restarting: hub shutting down (close 1001); reconnecting in")),
        "{texts:?}"
    );
    assert_eq!(texts.last(), Some(&"live"), "{texts:?}");

    // From now on the hub refuses what the page connects with (as it would a revoked token): 4001.
    browser
        .eval("const Native = window.WebSocket; window.WebSocket = class extends Native { constructor(url) { super(url.replace(/token=[^&]*/, 'token=revoked')); } };", vec![])
        .await;
    let _hub = hub.restart().await;
    let notice = browser
        .wait_for("the sign-in page", "return document.querySelector('[data-field=notice]')?.textContent", vec![])
        .await;
    assert_eq!(notice, "The hub closed the connection with 4001 (unknown or used ws token): sign in again.");
    browser.close().await;
}

/// The console's JWT travels in the fragment and its ws tokens in upgrade URLs: neither reaches the log
/// of an `rtctl serve -v` (debug), which does record the console's requests.
#[tokio::test]
async fn the_consoles_tokens_never_reach_the_hubs_log() {
    let Some(browser) = Browser::start("the_consoles_tokens_never_reach_the_hubs_log").await else { return };
    let dir = tempfile::tempdir().expect("a temp dir");
    let (hub, addr) = crate::console::serve(dir.path(), &["-v"], &[]);
    let file = std::fs::read_to_string(dir.path().join("rtctl.toml")).expect("the config file serve created");
    let file: toml::Table = toml::from_str(&file).expect("TOML");
    let secret = file["jwt_secret"].as_str().expect("a secret").to_owned();
    let claims = auth::claims_for(&staff("admin"), Duration::from_secs(600));
    let token = auth::mint(&claims, &SigningKey::Hs256(secret)).expect("mint");

    browser.goto(&format!("http://{addr}/console/#token={token}")).await;
    browser.wait_for("the console", "return document.querySelectorAll('.nav a').length", vec![]).await;
    for route in ["#/dashboard", "#/notifications", "#/chat"] {
        browser.eval("location.hash = arguments[0]", vec![json!(route)]).await;
        if route != "#/chat" {
            live(&browser).await;
        }
    }
    let logged = "path=\"/api/v1/chat/rooms\" status=200";
    let deadline = Instant::now() + WAIT;
    while !hub.log().contains(logged) {
        assert!(Instant::now() < deadline, "the requests are not logged:\n{}", hub.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = hub.log();
    assert!(log.contains("path=\"/api/user/ws-token/\" status=200"), "{log}");
    assert!(!log.contains(&token[token.len() - 24..]), "the JWT is in the log:\n{log}");
    assert!(!log.contains("wst_"), "a ws token is in the log:\n{log}");
    assert!(!log.contains("token="), "a token parameter is in the log:\n{log}");
    browser.close().await;
}

/// Takes the hub away while `node` (another node on the same store) publishes, then brings it back on
/// its port: the page's sockets drop (close 1001) and reconnect to the same address.
async fn away_while(hub: TestHub, publish: impl AsyncFnOnce(&TestHub)) -> TestHub {
    let hub = hub.down().await;
    let node = hub.node().await;
    publish(&node).await;
    node.stop().await;
    hub.up().await
}

/// Org events resume: the view remembers the last event's position, and after the hub dropped it, it
/// reconnects with `?since=` and shows every event published meanwhile exactly once, saying how many
/// were replayed; later events still arrive live.
#[tokio::test]
async fn the_events_view_resumes_and_shows_what_was_missed_exactly_once() {
    let Some(browser) = Browser::start("the_events_view_resumes").await else { return };
    let hub = TestHub::start().await;
    let publish = async |hub: &TestHub, n: u64| {
        let body = json!({"event_type": "tick", "data": {"n": n}});
        assert_eq!(hub.post_api("/api/v1/orgs/acme/events", &body).await.status(), 202);
    };
    let member = Identity { orgs: vec!["acme".into()], ..user_identity("u1") };
    open_console(&browser, &hub, &member, "#/events/acme").await;
    live(&browser).await;
    let shown = "return [...document.querySelectorAll('[data-list=events] [data-event-type] pre')].map(p => p.textContent).join(',')";
    for n in 1..=2 {
        publish(&hub, n).await;
    }
    browser.wait_for("two live events", &format!("{shown} === arguments[0]"), vec![json!("{\"n\":2},{\"n\":1}")]).await;

    let hub = away_while(hub, async |node| {
        for n in 3..=5 {
            publish(node, n).await;
        }
    })
    .await;
    let note = browser
        .wait_for(
            "the resume note",
            "return document.querySelector('[data-field=resume]:not([hidden])')?.textContent",
            vec![],
        )
        .await;
    assert_eq!(note, "Reconnected: 3 missed events replayed.");
    let all = "{\"n\":5},{\"n\":4},{\"n\":3},{\"n\":2},{\"n\":1}";
    browser.wait_for("all five, once each", &format!("{shown} === arguments[0]"), vec![json!(all)]).await;
    publish(&hub, 6).await;
    let all = format!("{{\"n\":6}},{all}");
    browser.wait_for("the next one live", &format!("{shown} === arguments[0]"), vec![json!(all)]).await;
    assert_eq!(browser.text("[data-stat=events]").await, "6 received since the page connected");
    browser.close().await;
}

/// The dashboard resumes too: order updates pushed while it was disconnected are replayed and shown,
/// with the count; the notification center catches up on what arrived
/// meanwhile with `after_id`, and the notifications view says how many.
#[tokio::test]
async fn the_dashboard_and_notifications_catch_up_after_a_reconnect() {
    let Some(browser) = Browser::start("the_dashboard_and_notifications_catch_up").await else { return };
    let hub = TestHub::start().await;
    hub.notify("admin", "Before", "general").await;
    open_console(&browser, &hub, &staff("admin"), "#/dashboard").await;
    live(&browser).await;
    let order =
        |id: &str| format!("return document.querySelector('[data-order-id={id}] .tag')?.textContent === 'shipped'");
    assert_eq!(hub.post_api("/api/v1/admin-dashboard/orders/A-1/", &json!({"status": "shipped"})).await.status(), 202);
    browser.wait_for("the live order update", &order("A-1"), vec![]).await;

    let hub = away_while(hub, async |node| {
        for id in ["A-2", "A-3"] {
            let response =
                node.post_api(&format!("/api/v1/admin-dashboard/orders/{id}/"), &json!({"status": "shipped"})).await;
            assert_eq!(response.status(), 202);
        }
    })
    .await;
    let note = browser
        .wait_for(
            "the resume note",
            "return document.querySelector('[data-field=resume]:not([hidden])')?.textContent",
            vec![],
        )
        .await;
    // The two order updates, and before them the page's own `admin_left`, pushed as the hub closed it.
    assert_eq!(note, "Reconnected: 3 missed updates replayed.");
    for id in ["A-2", "A-3"] {
        browser.wait_for("a replayed order update", &order(id), vec![]).await;
    }

    browser.eval("location.hash = '#/notifications'", vec![]).await;
    // The notification center is a connection of its own: it too must be back before the next outage.
    live(&browser).await;
    items_are(&browser, "the one before", "Before:false").await;
    let hub = away_while(hub, async |node| {
        node.notify("admin", "While away", "general").await;
    })
    .await;
    let note = browser
        .wait_for(
            "the catch-up note",
            "return document.querySelector('[data-field=caught-up]:not([hidden])')?.textContent",
            vec![],
        )
        .await;
    assert_eq!(note, "Reconnected: 1 notification arrived while disconnected.");
    items_are(&browser, "the missed one, once", "While away:false,Before:false").await;
    drop(hub);
    browser.close().await;
}
