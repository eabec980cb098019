//! PROTOCOL §7, token lifetime: a live connection is closed with 4001 "token expired" when its JWT
//! expires, on every endpoint, unless the client sends `refresh` with a fresh JWT for the same user; a
//! ws token never outlives the JWT it was minted from, nor does the connection it opens.

use std::time::Duration;

use rtctl::auth::{self, Identity, SigningKey};
use serde_json::json;

use std::process::Stdio;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::cli::{output, rtctl};
use crate::util::{TestHub, assert_quiet_for, recv, recv_close, request, user_identity};

/// A JWT for `identity` that expires `secs` seconds from now (1-second resolution), and its `exp`.
pub(crate) fn short_jwt(hub: &TestHub, identity: &Identity, secs: u64) -> (String, u64) {
    let claims = auth::claims_for(identity, Duration::from_secs(secs));
    let secret = SigningKey::Hs256(hub.config.jwt_secret().expect("an HS256 hub").to_owned());
    (auth::mint(&claims, &secret).expect("mint a JWT"), claims.exp)
}

pub(crate) fn now_millis() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    now.as_millis() as u64
}

/// Waits (by the wall clock, which JWTs use) until `millis` since the Unix epoch, asserting that
/// nothing but control frames arrives on `ws` meanwhile (so, no close).
async fn stays_open_until(ws: &mut crate::util::Ws, millis: u64) {
    let left = Duration::from_millis(millis.saturating_sub(now_millis()));
    assert_quiet_for(ws, left).await;
}

/// How a token's end is measured: the end of its `exp` second (no leeway), in Unix milliseconds.
pub(crate) fn end_of(exp: u64) -> u64 {
    (exp + 1) * 1000
}

/// On each endpoint (notifications, org events, admin dashboard, chat), a connection whose JWT expires
/// is closed with 4001 "token expired" at the end of the `exp` second: not before, and promptly after.
#[tokio::test]
async fn an_expiring_jwt_closes_every_endpoint_with_4001() {
    let hub = TestHub::start().await;
    let (status, room) = hub
        .post_json("/api/v1/chat/rooms", &[("x-api-key", hub.api_key())], &json!({"room_id": "r1", "members": ["u1"]}))
        .await;
    assert_eq!(status, 201, "{room}");
    let member = Identity { orgs: vec!["acme".into()], ..user_identity("u1") };
    let staff = Identity { is_staff: true, ..user_identity("u1") };
    let mut sockets = Vec::new();
    let mut exp = 0;
    for (path, identity) in [
        ("/ws/notifications/", &member),
        ("/ws/events/acme/", &member),
        ("/ws/admin/dashboard/", &staff),
        ("/ws/chat/r1/", &member),
    ] {
        let (token, token_exp) = short_jwt(&hub, identity, 2);
        let (ws, greeting) = hub.connect(path, &token).await;
        assert_eq!(greeting["user_id"], "u1", "{path}");
        exp = exp.max(token_exp);
        sockets.push((path, ws, token_exp));
    }
    for (path, mut ws, token_exp) in sockets {
        assert_eq!(recv_close(&mut ws).await, (4001, "token expired".to_owned()), "{path}");
        let closed = now_millis();
        // The hub's deadline is on its monotonic clock: allow it a few milliseconds of rounding.
        assert!(closed + 20 >= end_of(token_exp), "{path} closed {} ms early", end_of(token_exp) - closed);
        assert!(closed < end_of(exp) + 1000, "{path} closed {} ms late", closed - end_of(exp));
    }
    let metrics = hub.metrics().await;
    assert!(metrics.contains("\nrtctl_token_expired_closes_total 4\n"), "{metrics}");
}

/// A `refresh` with a fresh JWT for the same user before the old one expires is answered `refreshed`
/// with the new `exp` (and the request's `request_id`); the connection then stays open past the old
/// `exp` and still gets its pushes.
#[tokio::test]
async fn a_refresh_keeps_the_connection_past_the_old_exp() {
    let hub = TestHub::start().await;
    let (short, old_exp) = short_jwt(&hub, &user_identity("u1"), 2);
    let (fresh, new_exp) = short_jwt(&hub, &user_identity("u1"), 3600);
    let mut ws = hub.notifications_with(&short).await;

    let reply = request(&mut ws, json!({"type": "refresh", "token": fresh, "request_id": "r-1"})).await;
    let expires_at = rtctl::protocol::format_timestamp(new_exp as i64 * 1000);
    assert_eq!(reply, json!({"type": "refreshed", "expires_at": expires_at, "request_id": "r-1"}));

    stays_open_until(&mut ws, end_of(old_exp) + 500).await;
    let id = hub.notify("u1", "after the old exp", "general").await;
    let push = recv(&mut ws).await;
    assert_eq!((push["type"].as_str(), push["notification"]["id"].as_i64()), (Some("notification"), Some(id)));
    let metrics = hub.metrics().await;
    assert!(metrics.contains("\nrtctl_token_refreshes_total 1\n"), "{metrics}");
    assert!(metrics.contains("\nrtctl_token_expired_closes_total 0\n"), "{metrics}");
}

/// A refresh that cannot be taken is answered with an error and changes nothing: another user's token
/// and an expired or forged one are `forbidden`, a ws token and a missing token `invalid_message`; the
/// connection keeps its user (its pushes, not the other's) and still closes at its own token's end.
#[tokio::test]
async fn a_refused_refresh_keeps_the_identity_and_the_deadline() {
    let hub = TestHub::start().await;
    let (short, exp) = short_jwt(&hub, &user_identity("u1"), 2);
    let mut ws = hub.notifications_with(&short).await;
    let refresh = |token: &str| json!({"type": "refresh", "token": token, "request_id": 9});
    let error = |code: &str, message: &str| json!({"type": "error", "code": code, "message": message, "request_id": 9});

    let other = hub.jwt("u2");
    assert_eq!(
        request(&mut ws, refresh(&other)).await,
        error("forbidden", "refresh refused: the token is another user's")
    );
    let mut claims = auth::claims_for(&user_identity("u1"), Duration::from_secs(3600));
    claims.exp = now_millis() / 1000 - 60;
    let secret = SigningKey::Hs256(hub.config.jwt_secret().expect("an HS256 hub").to_owned());
    let expired = auth::mint(&claims, &secret).expect("mint");
    assert_eq!(request(&mut ws, refresh(&expired)).await, error("forbidden", "refresh refused: token expired"));
    let forged = auth::mint(&claims, &SigningKey::Hs256("not-the-hub-secret-0123456789".into())).expect("mint");
    assert_eq!(
        request(&mut ws, refresh(&forged)).await,
        error("forbidden", "refresh refused: invalid token: bad signature")
    );
    let (wst, _) = ws_token(&hub, &hub.jwt("u1")).await;
    assert_eq!(
        request(&mut ws, refresh(&wst)).await,
        error("invalid_message", "refresh takes a JWT; a ws token opens a connection but cannot extend one")
    );
    assert_eq!(
        request(&mut ws, json!({"type": "refresh", "request_id": 9})).await,
        error("invalid_message", "refresh needs `token`: a fresh JWT for this user")
    );

    hub.notify("u2", "for the other user", "general").await;
    let id = hub.notify("u1", "for this one", "general").await;
    let push = recv(&mut ws).await;
    assert_eq!(push["notification"]["id"].as_i64(), Some(id), "{push}");

    assert_eq!(recv_close(&mut ws).await, (4001, "token expired".to_owned()));
    assert!(now_millis() + 20 >= end_of(exp));
}

/// A refresh takes the new token's rights: one that no longer lets the user in where the connection is
/// (an org dropped from `orgs`, `is_staff` gone on the dashboard, a non-member who was let into a room as
/// staff) is refused with `forbidden`, and the connection still ends with its old token.
#[tokio::test]
async fn a_refresh_must_still_allow_the_endpoint() {
    let hub = TestHub::start().await;
    let (status, room) = hub
        .post_json("/api/v1/chat/rooms", &[("x-api-key", hub.api_key())], &json!({"room_id": "r1", "members": ["u2"]}))
        .await;
    assert_eq!(status, 201, "{room}");
    let refused = |why: &str| {
        let message = format!("refresh refused: the token no longer allows this connection: {why}");
        json!({"type": "error", "code": "forbidden", "message": message})
    };
    let staff = Identity { is_staff: true, orgs: vec!["acme".into()], ..user_identity("u1") };
    let mut sockets = Vec::new();
    for (path, why) in [
        ("/ws/events/acme/", "not a member of this organization"),
        ("/ws/admin/dashboard/", "staff only"),
        ("/ws/chat/r1/", "not a member of this room"),
    ] {
        let (token, exp) = short_jwt(&hub, &staff, 2);
        let (mut ws, _) = hub.connect(path, &token).await;
        let reply = request(&mut ws, json!({"type": "refresh", "token": hub.jwt("u1")})).await;
        let reply = if reply["type"] == "history" { recv(&mut ws).await } else { reply };
        assert_eq!(reply, refused(why), "{path}");
        sockets.push((path, ws, exp));
    }
    // The same user, still allowed everywhere: taken.
    let (mut again, _) = hub.connect("/ws/events/acme/", &short_jwt(&hub, &staff, 2).0).await;
    let reply = request(&mut again, json!({"type": "refresh", "token": hub.jwt_for(&staff)})).await;
    assert_eq!(reply["type"], "refreshed", "{reply}");

    for (path, mut ws, exp) in sockets {
        assert_eq!(recv_close(&mut ws).await, (4001, "token expired".to_owned()), "{path}");
        assert!(now_millis() + 20 >= end_of(exp), "{path}");
    }
}

/// `GET /api/user/ws-token/` with `jwt`: the ws token and its `expires_in`.
pub(crate) async fn ws_token(hub: &TestHub, jwt: &str) -> (String, u64) {
    let (status, body) = hub.get_json("/api/user/ws-token/", &[("authorization", &format!("Bearer {jwt}"))]).await;
    assert_eq!(status, 200, "{body}");
    let expires_in = body["expires_in"].as_u64().expect("expires_in");
    (body["ws_token"].as_str().expect("a ws token").to_owned(), expires_in)
}

/// A ws token never outlives its JWT: minted from a JWT with seconds left, its `expires_in` ends by
/// the JWT's `exp` (a long JWT gets the full 30 minutes); the connection it opens closes when the JWT
/// expires, and a second ws token from that JWT is refused once the JWT has expired.
#[tokio::test]
async fn a_ws_token_is_bounded_by_its_jwt() {
    let hub = TestHub::start().await;
    assert_eq!(ws_token(&hub, &hub.jwt("u1")).await.1, 1800);

    let (jwt, exp) = short_jwt(&hub, &user_identity("u1"), 3);
    let asked = now_millis() / 1000;
    let (first, expires_in) = ws_token(&hub, &jwt).await;
    assert!(asked + expires_in <= exp, "expires_in {expires_in} outlives exp {exp} (asked at {asked})");
    assert!(expires_in >= 1, "{expires_in}");
    let (second, _) = ws_token(&hub, &jwt).await;

    let mut ws = hub.notifications_with(&first).await;
    assert_eq!(recv_close(&mut ws).await, (4001, "token expired".to_owned()));
    assert!(now_millis() + 20 >= end_of(exp));
    let mut late = hub.connect_raw("/ws/notifications/", &second).await;
    assert_eq!(recv_close(&mut late).await, (4001, "token expired".to_owned()));
}

/// A connection opened with a ws token can be refreshed with a JWT like any other: the JWT the ws
/// token came from no longer bounds it.
#[tokio::test]
async fn a_ws_token_connection_is_refreshed_with_a_jwt() {
    let hub = TestHub::start().await;
    let (jwt, exp) = short_jwt(&hub, &user_identity("u1"), 2);
    let (wst, _) = ws_token(&hub, &jwt).await;
    let mut ws = hub.notifications_with(&wst).await;
    let reply = request(&mut ws, json!({"type": "refresh", "token": hub.jwt("u1")})).await;
    assert_eq!(reply["type"], "refreshed", "{reply}");
    stays_open_until(&mut ws, end_of(exp) + 500).await;
    let pong = request(&mut ws, json!({"type": "ping", "timestamp": 1})).await;
    assert_eq!(pong, json!({"type": "pong", "timestamp": 1}));
}

/// `rtctl connect --user-id` refreshes the token it minted before it expires: with a 2 s `--ttl` it stays
/// on its first connection well past the ttl, says `token refreshed` each time, and still gets pushes.
#[tokio::test]
async fn connect_refreshes_a_token_it_minted() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().expect("a temp dir");
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "notifications", "--user-id", "7", "--ttl", "2s", "--until", "notification"]);
    connect.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = connect.spawn().expect("rtctl starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
    let greeting = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
        .await
        .expect("a greeting in time")
        .expect("stdout reads")
        .expect("a line");
    assert!(greeting.contains("connection_established"), "{greeting}");
    // The token was minted before the greeting, so it expires by the end of this second + 2.
    let minted_by = now_millis() / 1000;
    tokio::time::sleep(Duration::from_millis(end_of(minted_by + 2) + 1500 - now_millis())).await;
    let id = hub.notify("7", "after the ttl", "general").await;

    let mut rest = Vec::new();
    while let Some(line) = stdout.next_line().await.expect("stdout reads") {
        rest.push(line);
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("rtctl ends").expect("waits");
    let mut stderr = String::new();
    child.stderr.take().expect("piped").read_to_string(&mut stderr).await.expect("stderr reads");
    assert_eq!(status.code(), Some(0), "{stderr}");
    // `--until notification` ends the session; frames already on the way (`unread_count`) still print.
    let frames: Vec<serde_json::Value> = rest.iter().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    let push = frames.iter().find(|frame| frame["type"] == "notification").expect("the push");
    assert_eq!(push["notification"]["id"].as_i64(), Some(id), "{rest:?}");
    assert_eq!(stderr.matches("connected to").count(), 1, "{stderr}");
    assert!(stderr.matches("rtctl: token refreshed: valid until 20").count() >= 2, "{stderr}");
    assert!(rest.iter().any(|line| line.contains(r#""type":"refreshed""#)), "{rest:?}");
    assert!(!stderr.contains("eyJ") && !rest.iter().any(|line| line.contains("eyJ")), "a token was shown");
}

/// With a token given by `--token`, `rtctl connect` cannot refresh: when the hub closes with 4001
/// `token expired` it exits 3 and says to pass a longer-lived token or mint with `--user-id`.
#[tokio::test]
async fn connect_with_a_given_token_explains_its_expiry() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().expect("a temp dir");
    let (token, _) = short_jwt(&hub, &user_identity("7"), 1);
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "notifications", "--token", &token, "--wait", "8"]);
    let (code, _, err) = output(connect).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(r#"closed by the hub: 4001 "token expired""#), "{err}");
    assert!(
        err.ends_with("rtctl: the --token token expired, and rtctl cannot refresh a token it did not mint: pass a longer-lived token, or --user-id to let rtctl mint and refresh its own\n"),
        "{err}"
    );
}
