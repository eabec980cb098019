//! The console's pictures in `docs/images/`, taken of a hub in a realistic state (people connected,
//! notifications and events flowing, users waiting for approval), when `RTCTL_UPDATE_SCREENSHOTS=1`.

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtctl::auth::Identity;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::chrome::Browser;
use crate::util::{TestHub, Ws, http, send, user_identity};

const UPDATE: &str = "RTCTL_UPDATE_SCREENSHOTS";
/// How long traffic runs before the overview is taken, so its charts have a minute of data.
const TRAFFIC: Duration = Duration::from_secs(65);

/// Keeps reading a native client's socket (which answers the hub's pings) until the test ends, and
/// sends an application ping every `every` as many apps do.
fn keep(mut ws: Ws, every: Option<Duration>) {
    tokio::spawn(async move {
        let mut ticks = every.map(tokio::time::interval);
        loop {
            tokio::select! {
                frame = ws.next() => if frame.is_none() { return },
                _ = async { ticks.as_mut().expect("only armed with a period").tick().await }, if ticks.is_some() => {
                    if ws.send(Message::text(json!({"type": "ping"}).to_string())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// Regenerates `docs/images/console-overview.png` and `console-dashboard.png` (with
/// `RTCTL_UPDATE_SCREENSHOTS=1`; a minute and a half): the overview after a minute of traffic, the
/// dashboard with pending users, decisions, order updates and admins online.
#[tokio::test]
async fn console_screenshots_for_the_docs() {
    if std::env::var(UPDATE).is_err() {
        eprintln!("skipped console_screenshots_for_the_docs: set {UPDATE}=1 to regenerate docs/images/console-*.png");
        return;
    }
    let Some(browser) = Browser::start("console_screenshots_for_the_docs").await else { return };
    let hub = TestHub::start().await;
    let maria = Identity { is_staff: true, name: Some("Maria Chen".into()), ..user_identity("maria") };
    let maria_jwt = hub.jwt_for(&maria);

    let people = [
        ("u1042", "Ada Lovelace", "ada@analytical.example"),
        ("u1043", "Grace Hopper", "grace@cobol.example"),
        ("u1044", "Alan Turing", "alan@bletchley.example"),
        ("u1045", "Katherine Johnson", "katherine@nasa.example"),
        ("u1046", "Edsger Dijkstra", "edsger@tue.example"),
    ];
    for (user, name, email) in people {
        let body = json!({"user_id": user, "name": name, "email": email});
        assert_eq!(hub.post_api("/api/v1/admin-dashboard/users/", &body).await.status(), 201);
    }
    let decide = |path: &str, body: serde_json::Value| {
        let request = http().post(hub.http_url(path)).bearer_auth(&maria_jwt).json(&body);
        async move { assert_eq!(send(request).await.status(), 200) }
    };
    decide("/api/v1/admin-dashboard/users/u1042/approve/", json!({})).await;
    decide("/api/v1/admin-dashboard/users/u1046/reject/", json!({"reason": "duplicate of u0987"})).await;
    for (order, status) in [("A-7781", "paid"), ("A-7779", "shipped"), ("A-7770", "delivered")] {
        let body = json!({"status": status, "data": {"total": "129.00 EUR"}});
        assert_eq!(hub.post_api(&format!("/api/v1/admin-dashboard/orders/{order}/"), &body).await.status(), 202);
    }

    // People online: notification centers, org dashboards, a chat room, two more admins.
    for i in 0..36 {
        keep(hub.notifications(&format!("u{}", 2000 + i)).await, Some(Duration::from_millis(3000 + i * 97)));
    }
    for i in 0..9 {
        keep(hub.connect("/ws/events/acme/", &hub.member_jwt(&format!("u{}", 2000 + i), &["acme"])).await.0, None);
    }
    let room = json!({"room_id": "support", "name": "Support", "members": ["u2000", "u2001", "u2002"]});
    assert_eq!(hub.post_api("/api/v1/chat/rooms", &room).await.status(), 201);
    for user in ["u2000", "u2001", "u2002"] {
        keep(hub.connect("/ws/chat/support/", &hub.jwt(user)).await.0, Some(Duration::from_secs(2)));
    }
    for admin in ["jonas", "priya"] {
        keep(hub.connect("/ws/admin/dashboard/", &hub.staff_jwt(admin)).await.0, None);
    }
    let traffic = {
        let url = hub.http_url("");
        let key = hub.api_key().to_owned();
        tokio::spawn(async move {
            let client = http();
            for tick in 0u64.. {
                let user = format!("u{}", 2000 + tick * 7 % 36);
                let body =
                    json!({"user_id": user, "title": "Build finished", "message": "main is green", "type": "ci"});
                let _ = client
                    .post(format!("{url}/api/v1/notifications"))
                    .header("x-api-key", &key)
                    .json(&body)
                    .send()
                    .await;
                if tick % 2 == 0 {
                    let body = json!({"event_type": "resource.updated", "data": {"id": tick}});
                    let _ = client
                        .post(format!("{url}/api/v1/orgs/acme/events"))
                        .header("x-api-key", &key)
                        .json(&body)
                        .send()
                        .await;
                }
                // Busier and calmer by turns, so the chart has a shape.
                let pause = 110.0 + 70.0 * (tick as f64 / 30.0).sin();
                tokio::time::sleep(Duration::from_millis(pause as u64)).await;
            }
        })
    };

    browser.goto(&hub.http_url(&format!("/console/#token={maria_jwt}"))).await;
    browser
        .wait_for("the overview", "return document.querySelector('.pill-slot .pill[data-state=live]')", vec![])
        .await;
    tokio::time::sleep(TRAFFIC).await;
    save(&browser, "console-overview.png").await;

    browser.eval("location.hash = '#/dashboard'", vec![]).await;
    browser
        .wait_for(
            "the dashboard",
            "return document.querySelectorAll('[data-list=pending] [data-user-id]').length === 3",
            vec![],
        )
        .await;
    browser
        .wait_for(
            "the admins",
            "return document.querySelector('[data-stat=admins_online]').textContent === '3'",
            vec![],
        )
        .await;
    traffic.abort();
    save(&browser, "console-dashboard.png").await;
    browser.close().await;
}

async fn save(browser: &Browser, name: &str) {
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images").join(name);
    std::fs::create_dir_all(path.parent().expect("a directory")).expect("create docs/images");
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    eprintln!("wrote {}", path.display());
}
