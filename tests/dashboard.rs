//! `/ws/admin/dashboard/` (PROTOCOL §4.3) and the `/api/v1/admin-dashboard/` routes (§5): staff only,
//! live stats, admins joining and leaving, registrations, decisions over REST and WebSocket, order
//! updates and the activity feed.

use serde_json::{Value, json};

use crate::util::{
    TestHub, Ws, api_error, assert_quiet, assert_timestamp, http, json_response, recv_close, request, send,
    unpositioned,
};

/// The next frame without its stream position: what these tests check is the rest (the positions are
/// `tests/resume.rs`'s).
async fn recv(ws: &mut Ws) -> Value {
    unpositioned(crate::util::recv(ws).await)
}

const DASHBOARD: &str = "/ws/admin/dashboard/";

/// `Authorization: Bearer <token>`.
fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A `Stats` object.
fn stats(pending: i64, approved: i64, rejected: i64, admins: u64, users: u64, connections: i64) -> Value {
    json!({
        "pending_approvals": pending,
        "approved_today": approved,
        "rejected_today": rejected,
        "admins_online": admins,
        "users_online": users,
        "connections": connections,
    })
}

/// Connects `admin` (a staff JWT) to the dashboard; returns the socket and the greeting's stats.
async fn admin(hub: &TestHub, admin: &str) -> (Ws, Value) {
    let (ws, greeting) = hub.connect(DASHBOARD, &hub.staff_jwt(admin)).await;
    let greeting = unpositioned(greeting);
    let stats = greeting["stats"].clone();
    assert_eq!(
        greeting,
        json!({"type": "connection_established", "message": "Connected to admin dashboard", "user_id": admin, "stats": stats})
    );
    (ws, stats)
}

/// Connects two different admins; the first has seen the second join.
async fn two_admins(hub: &TestHub, first: &str, second: &str) -> (Ws, Ws) {
    let (mut a1, _) = admin(hub, first).await;
    let (a2, _) = admin(hub, second).await;
    assert_eq!(recv(&mut a1).await, json!({"type": "admin_joined", "user_id": second, "admins_online": 2}));
    (a1, a2)
}

/// Registers a pending user with the API key; returns the 201 PendingUser after checking its shape.
async fn register(hub: &TestHub, body: Value) -> Value {
    let (status, user) = json_response(hub.post_api("/api/v1/admin-dashboard/users/", &body).await).await;
    assert_eq!(status, 201, "{user}");
    assert_timestamp(&user["registered_at"]);
    let user_id = match &body["user_id"] {
        Value::Number(n) => json!(n.to_string()),
        id => id.clone(),
    };
    assert_eq!(
        user,
        json!({
            "user_id": user_id,
            "email": body.get("email").cloned().unwrap_or(Value::Null),
            "name": body.get("name").cloned().unwrap_or(Value::Null),
            "registered_at": user["registered_at"],
            "status": "pending",
        })
    );
    user
}

/// Reads the `new_user` and `pending_count_update` pushes that follow a registration.
async fn recv_registered(ws: &mut Ws, user: &Value, pending: i64) {
    assert_eq!(recv(ws).await, json!({"type": "new_user", "user": user}));
    assert_eq!(recv(ws).await, json!({"type": "pending_count_update", "count": pending}));
}

/// POSTs a decision (`approve` or `reject`) on `user_id` with the given auth headers.
async fn decide(hub: &TestHub, user_id: &str, verdict: &str, auth: &[(&str, &str)], body: &Value) -> (u16, Value) {
    hub.post_json(&format!("/api/v1/admin-dashboard/users/{user_id}/{verdict}/"), auth, body).await
}

/// The `approval_update` body of a decision, checking its timestamp.
fn approval(user_id: &str, status: &str, reason: Value, decided_by: &str, decided_at: &Value) -> Value {
    assert_timestamp(decided_at);
    json!({"user_id": user_id, "status": status, "reason": reason, "decided_by": decided_by, "decided_at": decided_at})
}

/// Reads the `approval` notification (and its `unread_count`) a decided user gets on `/ws/notifications/`.
async fn recv_decision_notification(ws: &mut Ws, title: &str, message: &str, data: Value, unread: i64) -> Value {
    let push = recv(ws).await;
    let notification = &push["notification"];
    assert_timestamp(&notification["created_at"]);
    let expected = json!({
        "id": notification["id"],
        "title": title,
        "message": message,
        "type": "approval",
        "read": false,
        "created_at": notification["created_at"],
        "data": data,
        "link": null,
    });
    assert!(notification["id"].is_i64(), "{push}");
    assert_eq!(push, json!({"type": "notification", "notification": expected}));
    assert_eq!(recv(ws).await, json!({"type": "unread_count", "count": unread}));
    expected
}

/// A non-staff user is accepted, then closed with 4003; a missing token with 4001.
#[tokio::test]
async fn non_staff_users_are_refused_with_4003() {
    let hub = TestHub::start().await;
    let mut user = hub.connect_raw(DASHBOARD, &hub.jwt("u1")).await;
    assert_eq!(recv_close(&mut user).await, (4003, "staff only".to_owned()));
    let mut anonymous = hub.connect_raw(DASHBOARD, "").await;
    assert_eq!(recv_close(&mut anonymous).await, (4001, "missing token".to_owned()));
}

/// `connection_established` carries the live Stats (pending, decided today, distinct admins and users
/// online across endpoints, open connections including this one); `get_stats`, `get_pending_count` and
/// `GET dashboard/` answer the same figures.
#[tokio::test]
async fn connection_established_carries_live_stats() {
    let hub = TestHub::start().await;
    for user in ["p1", "p2", "p3"] {
        register(&hub, json!({"user_id": user})).await;
    }
    let staff = bearer(&hub.staff_jwt("admin0"));
    let key = [("authorization", staff.as_str())];
    assert_eq!(decide(&hub, "p1", "approve", &key, &json!({})).await.0, 200);
    assert_eq!(decide(&hub, "p2", "reject", &key, &json!({})).await.0, 200);
    let _u1 = hub.notifications("u1").await;
    let _u1_again = hub.notifications("u1").await;

    let (mut ws, greeting_stats) = admin(&hub, "admin1").await;
    let expected = stats(1, 1, 1, 1, 2, 3);
    assert_eq!(greeting_stats, expected);
    let reply = request(&mut ws, json!({"type": "get_stats", "request_id": "s"})).await;
    assert_eq!(reply, json!({"type": "stats", "stats": expected, "request_id": "s"}));
    let reply = request(&mut ws, json!({"type": "get_pending_count", "request_id": 5})).await;
    assert_eq!(reply, json!({"type": "pending_count_update", "count": 1, "request_id": 5}));

    let staff = bearer(&hub.staff_jwt("admin2"));
    assert_eq!(hub.get_json("/api/v1/admin-dashboard/dashboard/", &[("authorization", &staff)]).await, (200, expected));
    assert_eq!(hub.get_json("/api/v1/admin-dashboard/dashboard/", &key).await.0, 200);
}

/// Admins see each other join (`admin_joined`) and leave (`admin_left`) with `admins_online`; a second
/// tab of the same admin triggers neither, and nobody is told about their own arrival.
#[tokio::test]
async fn admins_see_each_other_join_and_leave_once_per_admin() {
    let hub = TestHub::start().await;
    let (mut first, _) = admin(&hub, "admin1").await;
    let (mut second, second_stats) = admin(&hub, "admin2").await;
    assert_eq!(second_stats["admins_online"], 2);
    assert_eq!(recv(&mut first).await, json!({"type": "admin_joined", "user_id": "admin2", "admins_online": 2}));
    assert_quiet(&mut second).await;

    let (mut tab2, tab2_stats) = admin(&hub, "admin2").await;
    assert_eq!(tab2_stats["admins_online"], 2);
    assert_quiet(&mut first).await;
    assert_quiet(&mut second).await;

    tab2.close(None).await.expect("close the second tab");
    assert_quiet(&mut first).await;
    assert_quiet(&mut second).await;
    second.close(None).await.expect("close the last tab");
    assert_eq!(recv(&mut first).await, json!({"type": "admin_left", "user_id": "admin2", "admins_online": 1}));
    let reply = request(&mut first, json!({"type": "get_stats"})).await;
    assert_eq!(reply["stats"]["admins_online"], 1, "{reply}");
}

/// Registering a user (API key) answers 201 PendingUser (a numeric id becomes its decimal string) and
/// pushes `new_user` then `pending_count_update` to every admin; registering a pending user again is 409
/// and pushes nothing; a staff JWT is 403 and no key 401.
#[tokio::test]
async fn registering_a_user_pushes_new_user_and_the_pending_count() {
    let hub = TestHub::start().await;
    let (mut a1, mut a2) = two_admins(&hub, "admin1", "admin2").await;

    let user = register(&hub, json!({"user_id": 42, "email": "ann@example.test", "name": "Ann"})).await;
    let minimal = register(&hub, json!({"user_id": "bob"})).await;
    for ws in [&mut a1, &mut a2] {
        recv_registered(ws, &user, 1).await;
        recv_registered(ws, &minimal, 2).await;
    }

    let again = hub.post_api("/api/v1/admin-dashboard/users/", &json!({"user_id": "42"})).await;
    assert_eq!(json_response(again).await, (409, api_error("conflict", "user 42 is pending already")));
    let staff = bearer(&hub.staff_jwt("admin1"));
    assert_eq!(
        hub.post_json("/api/v1/admin-dashboard/users/", &[("authorization", &staff)], &json!({"user_id": "x"})).await,
        (403, api_error("forbidden", "requires the API key"))
    );
    assert_eq!(
        hub.post_json("/api/v1/admin-dashboard/users/", &[], &json!({"user_id": "x"})).await,
        (401, api_error("unauthorized", "missing X-API-Key or Authorization: Bearer"))
    );
    let bad = hub.post_api("/api/v1/admin-dashboard/users/", &json!({"email": "e"})).await;
    assert_eq!(json_response(bad).await, (400, api_error("invalid_request", "missing field `user_id`")));
    assert_quiet(&mut a1).await;
    assert_quiet(&mut a2).await;
    let reply = request(&mut a1, json!({"type": "get_pending_count"})).await;
    assert_eq!(reply, json!({"type": "pending_count_update", "count": 2}));
}

/// `approvals/pending/` lists pending users oldest first with the count; `approvals/recent/` lists
/// decisions newest first (`decided_by` is the deciding staff user); `limit` is 1..200.
#[tokio::test]
async fn pending_and_recent_approvals_are_listed() {
    let hub = TestHub::start().await;
    let p1 = register(&hub, json!({"user_id": "p1", "email": "p1@example.test"})).await;
    let p2 = register(&hub, json!({"user_id": "p2"})).await;
    let p3 = register(&hub, json!({"user_id": "p3", "name": "Three"})).await;
    let staff = bearer(&hub.staff_jwt("admin1"));
    let auth = [("authorization", staff.as_str())];
    assert_eq!(
        hub.get_json("/api/v1/admin-dashboard/approvals/pending/", &auth).await,
        (200, json!({"users": [p1, p2, p3.clone()], "count": 3}))
    );
    assert_eq!(
        hub.get_json("/api/v1/admin-dashboard/approvals/pending/?limit=1", &auth).await,
        (200, json!({"users": [p1], "count": 3}))
    );
    assert_eq!(hub.get_json("/api/v1/admin-dashboard/approvals/recent/", &auth).await, (200, json!({"approvals": []})));

    let (status, approved) = decide(&hub, "p2", "approve", &auth, &json!({})).await;
    assert_eq!((status, &approved), (200, &approval("p2", "approved", json!(null), "admin1", &approved["decided_at"])));
    let other = bearer(&hub.staff_jwt("admin2"));
    let key = [("authorization", other.as_str())];
    let (status, rejected) = decide(&hub, "p1", "reject", &key, &json!({"reason": "spam"})).await;
    assert_eq!(
        (status, &rejected),
        (200, &approval("p1", "rejected", json!("spam"), "admin2", &rejected["decided_at"]))
    );

    assert_eq!(
        hub.get_json("/api/v1/admin-dashboard/approvals/pending/", &auth).await,
        (200, json!({"users": [p3], "count": 1}))
    );
    assert_eq!(
        hub.get_json("/api/v1/admin-dashboard/approvals/recent/", &auth).await,
        (200, json!({"approvals": [rejected.clone(), approved]}))
    );
    assert_eq!(
        hub.get_json("/api/v1/admin-dashboard/approvals/recent/?limit=1", &key).await,
        (200, json!({"approvals": [rejected]}))
    );
    for path in ["approvals/pending/?limit=0", "approvals/recent/?limit=201", "notifications/?limit=0"] {
        assert_eq!(
            hub.get_json(&format!("/api/v1/admin-dashboard/{path}"), &auth).await,
            (400, api_error("invalid_request", "limit must be between 1 and 200")),
            "{path}"
        );
    }
}

/// A REST approval answers 200 with the decision, reaches every admin (`approval_update` then
/// `pending_count_update`) and the user (a stored `approval` notification, pushed and listed); deciding
/// again is 409, an unknown user 404, and neither pushes anything; the decided user may register again.
#[tokio::test]
async fn a_rest_approval_reaches_every_admin_and_the_user() {
    let hub = TestHub::start().await;
    register(&hub, json!({"user_id": "p1"})).await;
    register(&hub, json!({"user_id": "p2"})).await;
    let (mut a1, mut a2) = two_admins(&hub, "admin1", "admin2").await;
    let mut user = hub.notifications("p1").await;

    let staff = bearer(&hub.staff_jwt("admin1"));
    let auth = [("authorization", staff.as_str())];
    let (status, decision) = decide(&hub, "p1", "approve", &auth, &json!({})).await;
    let expected = approval("p1", "approved", json!(null), "admin1", &decision["decided_at"]);
    assert_eq!((status, &decision), (200, &expected));
    let mut update = expected.clone();
    update["type"] = json!("approval_update");
    for ws in [&mut a1, &mut a2] {
        assert_eq!(recv(ws).await, update);
        assert_eq!(recv(ws).await, json!({"type": "pending_count_update", "count": 1}));
    }
    let data = json!({"status": "approved", "reason": null, "decided_by": "admin1"});
    let notification =
        recv_decision_notification(&mut user, "Account approved", "Your account has been approved.", data, 1).await;
    let list = request(&mut user, json!({"type": "get_notifications"})).await;
    assert_eq!(
        list,
        json!({"type": "notifications_list", "notifications": [notification], "total": 1, "unread_count": 1})
    );

    let decided = api_error("conflict", "user p1 was decided already");
    assert_eq!(decide(&hub, "p1", "approve", &auth, &json!({})).await, (409, decided.clone()));
    assert_eq!(decide(&hub, "p1", "reject", &auth, &json!({"reason": "late"})).await, (409, decided));
    assert_eq!(
        decide(&hub, "nobody", "approve", &auth, &json!({})).await,
        (404, api_error("not_found", "no registered user nobody"))
    );
    assert_eq!(
        decide(&hub, "nobody", "reject", &auth, &json!({})).await,
        (404, api_error("not_found", "no registered user nobody"))
    );
    assert_quiet(&mut a1).await;
    assert_quiet(&mut a2).await;
    assert_quiet(&mut user).await;
    let reply = request(&mut a2, json!({"type": "get_stats"})).await;
    assert_eq!((&reply["stats"]["pending_approvals"], &reply["stats"]["approved_today"]), (&json!(1), &json!(1)));

    // A decided user may register again and is pending again.
    let again = register(&hub, json!({"user_id": "p1"})).await;
    for ws in [&mut a1, &mut a2] {
        recv_registered(ws, &again, 2).await;
    }
}

/// A REST rejection records the deciding admin as `decided_by` and the reason, and the user's
/// notification quotes it; a body-less rejection has a null reason; a reason over 1000 characters is 400.
#[tokio::test]
async fn a_rest_rejection_carries_its_reason_to_admins_and_the_user() {
    let hub = TestHub::start().await;
    register(&hub, json!({"user_id": "p1"})).await;
    register(&hub, json!({"user_id": "p2"})).await;
    let (mut a1, _) = admin(&hub, "admin1").await;
    let mut p1 = hub.notifications("p1").await;
    let mut p2 = hub.notifications("p2").await;
    let staff = bearer(&hub.staff_jwt("admin2"));
    let key = [("authorization", staff.as_str())];

    let long = "x".repeat(1001);
    assert_eq!(
        decide(&hub, "p1", "reject", &key, &json!({"reason": long})).await,
        (400, api_error("invalid_request", "reason must be at most 1000 characters"))
    );
    assert_quiet(&mut a1).await;

    let (status, decision) = decide(&hub, "p1", "reject", &key, &json!({"reason": "duplicate account"})).await;
    let expected = approval("p1", "rejected", json!("duplicate account"), "admin2", &decision["decided_at"]);
    assert_eq!((status, &decision), (200, &expected));
    let mut update = expected;
    update["type"] = json!("approval_update");
    assert_eq!(recv(&mut a1).await, update);
    assert_eq!(recv(&mut a1).await, json!({"type": "pending_count_update", "count": 1}));
    let data = json!({"status": "rejected", "reason": "duplicate account", "decided_by": "admin2"});
    let message = "Your account has been rejected: duplicate account";
    recv_decision_notification(&mut p1, "Account rejected", message, data, 1).await;

    let url = hub.http_url("/api/v1/admin-dashboard/users/p2/reject/");
    let (status, decision) = json_response(send(http().post(url).header("authorization", &staff)).await).await;
    let expected = approval("p2", "rejected", json!(null), "admin2", &decision["decided_at"]);
    assert_eq!((status, &decision), (200, &expected));
    let mut update = expected;
    update["type"] = json!("approval_update");
    assert_eq!(recv(&mut a1).await, update);
    assert_eq!(recv(&mut a1).await, json!({"type": "pending_count_update", "count": 0}));
    let data = json!({"status": "rejected", "reason": null, "decided_by": "admin2"});
    recv_decision_notification(&mut p2, "Account rejected", "Your account has been rejected.", data, 1).await;
    let reply = request(&mut a1, json!({"type": "get_stats"})).await;
    assert_eq!(reply["stats"]["rejected_today"], 2, "{reply}");
}

/// `approve_user`/`reject_user` over WebSocket answer the requesting connection directly with
/// `approval_update` (echoing `request_id`) while every other admin connection (the same admin's other
/// tabs included) gets it as a push; all get `pending_count_update`; the user is notified; a numeric
/// `user_id` names the user with that decimal id; deciding twice or an unknown user is an `error`.
#[tokio::test]
async fn websocket_decisions_answer_the_requester_and_push_to_the_others() {
    let hub = TestHub::start().await;
    register(&hub, json!({"user_id": 42})).await;
    register(&hub, json!({"user_id": "p2"})).await;
    let (mut tab1, _) = admin(&hub, "admin1").await;
    let (mut tab2, _) = admin(&hub, "admin1").await;
    let (mut other, _) = admin(&hub, "admin2").await;
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(recv(tab).await, json!({"type": "admin_joined", "user_id": "admin2", "admins_online": 2}));
    }
    let mut user = hub.notifications("42").await;

    let reply = request(&mut tab1, json!({"type": "approve_user", "user_id": 42, "request_id": "a1"})).await;
    let mut update = approval("42", "approved", json!(null), "admin1", &reply["decided_at"]);
    update["type"] = json!("approval_update");
    let mut answer = update.clone();
    answer["request_id"] = json!("a1");
    assert_eq!(reply, answer);
    assert_eq!(recv(&mut tab1).await, json!({"type": "pending_count_update", "count": 1}));
    for ws in [&mut tab2, &mut other] {
        assert_eq!(recv(ws).await, update);
        assert_eq!(recv(ws).await, json!({"type": "pending_count_update", "count": 1}));
    }
    let data = json!({"status": "approved", "reason": null, "decided_by": "admin1"});
    recv_decision_notification(&mut user, "Account approved", "Your account has been approved.", data, 1).await;

    let reply =
        request(&mut other, json!({"type": "reject_user", "user_id": "p2", "reason": "bot", "request_id": 7})).await;
    let mut update = approval("p2", "rejected", json!("bot"), "admin2", &reply["decided_at"]);
    update["type"] = json!("approval_update");
    let mut answer = update.clone();
    answer["request_id"] = json!(7);
    assert_eq!(reply, answer);
    assert_eq!(recv(&mut other).await, json!({"type": "pending_count_update", "count": 0}));
    for ws in [&mut tab1, &mut tab2] {
        assert_eq!(recv(ws).await, update);
        assert_eq!(recv(ws).await, json!({"type": "pending_count_update", "count": 0}));
    }

    let twice = request(&mut tab2, json!({"type": "reject_user", "user_id": "42", "request_id": "again"})).await;
    assert_eq!(
        twice,
        json!({"type": "error", "code": "invalid_message", "message": "user 42 was decided already", "request_id": "again"})
    );
    let unknown = request(&mut tab2, json!({"type": "approve_user", "user_id": "ghost"})).await;
    assert_eq!(unknown, json!({"type": "error", "code": "not_found", "message": "no registered user ghost"}));
    let missing = request(&mut tab2, json!({"type": "approve_user"})).await;
    assert_eq!(missing, json!({"type": "error", "code": "invalid_message", "message": "missing field `user_id`"}));
    assert_quiet(&mut tab1).await;
    assert_quiet(&mut other).await;
    assert_quiet(&mut user).await;
    let staff = bearer(&hub.staff_jwt("admin9"));
    let (status, recent) =
        hub.get_json("/api/v1/admin-dashboard/approvals/recent/", &[("authorization", &staff)]).await;
    assert_eq!(status, 200);
    assert_eq!(recent["approvals"].as_array().map(Vec::len), Some(2), "{recent}");
}

/// `POST orders/{order_id}/` (API key) answers 202 with the update and pushes `order_update` to every
/// admin; a staff JWT is 403, a bad order id, an empty status or non-object data 400.
#[tokio::test]
async fn order_updates_are_pushed_to_admins() {
    let hub = TestHub::start().await;
    let (mut a1, mut a2) = two_admins(&hub, "admin1", "admin2").await;

    let body = json!({"status": "shipped", "data": {"carrier": "ups", "items": [1, 2]}});
    let reply = json_response(hub.post_api("/api/v1/admin-dashboard/orders/ord-17/", &body).await).await;
    let update = json!({"order_id": "ord-17", "status": "shipped", "data": {"carrier": "ups", "items": [1, 2]}});
    assert_eq!(reply, (202, update.clone()));
    let mut push = update;
    push["type"] = json!("order_update");
    assert_eq!(recv(&mut a1).await, push);
    assert_eq!(recv(&mut a2).await, push);

    let reply =
        json_response(hub.post_api("/api/v1/admin-dashboard/orders/o2/", &json!({"status": "paid"})).await).await;
    assert_eq!(reply, (202, json!({"order_id": "o2", "status": "paid", "data": {}})));
    let push = json!({"type": "order_update", "order_id": "o2", "status": "paid", "data": {}});
    assert_eq!(recv(&mut a1).await, push);
    assert_eq!(recv(&mut a2).await, push);

    let staff = bearer(&hub.staff_jwt("admin1"));
    assert_eq!(
        hub.post_json("/api/v1/admin-dashboard/orders/o3/", &[("authorization", &staff)], &json!({"status": "x"}))
            .await,
        (403, api_error("forbidden", "requires the API key"))
    );
    let cases = [
        ("o%20x", json!({"status": "x"}), "order id must match [A-Za-z0-9_.-]{1,64}"),
        ("o3", json!({"status": ""}), "status must be 1..64 characters"),
        ("o3", json!({"status": "x", "data": [1]}), "data must be a JSON object"),
    ];
    for (order, body, message) in cases {
        let reply = hub.post_api(&format!("/api/v1/admin-dashboard/orders/{order}/"), &body).await;
        assert_eq!(json_response(reply).await, (400, api_error("invalid_request", message)), "{body}");
    }
    assert_quiet(&mut a1).await;
    assert_quiet(&mut a2).await;
}

/// `GET notifications/` is the admin activity feed, newest first: `new_user`, `approval` and
/// `order_update` entries whose `data` is what was pushed, with increasing ids and timestamps.
#[tokio::test]
async fn the_activity_feed_lists_registrations_decisions_and_orders_newest_first() {
    let hub = TestHub::start().await;
    let user = register(&hub, json!({"user_id": "p1", "email": "p1@example.test"})).await;
    let staff = bearer(&hub.staff_jwt("admin1"));
    let key = [("authorization", staff.as_str())];
    let (_, decision) = decide(&hub, "p1", "approve", &key, &json!({})).await;
    let (status, order) = json_response(
        hub.post_api("/api/v1/admin-dashboard/orders/o1/", &json!({"status": "paid", "data": {"total": 12}})).await,
    )
    .await;
    assert_eq!(status, 202);

    let (status, feed) = hub.get_json("/api/v1/admin-dashboard/notifications/", &key).await;
    assert_eq!(status, 200, "{feed}");
    let entries = feed["notifications"].as_array().expect("a notifications array");
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().expect("an id")).collect();
    assert!(ids.len() == 3 && ids[0] > ids[1] && ids[1] > ids[2], "{feed}");
    for entry in entries {
        assert_timestamp(&entry["created_at"]);
    }
    let entry = |i: usize, kind: &str, data: &Value| json!({"id": ids[i], "type": kind, "data": data, "created_at": entries[i]["created_at"]});
    let expected = json!({"notifications": [
        entry(0, "order_update", &order),
        entry(1, "approval", &decision),
        entry(2, "new_user", &user),
    ]});
    assert_eq!(feed, expected);
    assert_eq!(
        hub.get_json("/api/v1/admin-dashboard/notifications/?limit=1", &key).await,
        (200, json!({"notifications": [expected["notifications"][0]]}))
    );
}

/// Every staff route takes a staff JWT only (PROTOCOL §5): no credentials or a bad key is 401, a
/// non-staff JWT or the API key 403, with the PROTOCOL §5 error body; nothing is decided.
#[tokio::test]
async fn staff_routes_refuse_missing_credentials_and_non_staff_users() {
    let hub = TestHub::start().await;
    register(&hub, json!({"user_id": "p1"})).await;
    let user = bearer(&hub.jwt("u1"));
    let forbidden = api_error("forbidden", "requires a staff token");
    let not_the_key = api_error("forbidden", "requires a staff token, not the API key");
    let key = [("x-api-key", hub.api_key())];
    let missing = api_error("unauthorized", "missing X-API-Key or Authorization: Bearer");
    let bad_key = api_error("unauthorized", "invalid API key");
    for path in ["dashboard/", "approvals/pending/", "approvals/recent/", "notifications/"] {
        let path = format!("/api/v1/admin-dashboard/{path}");
        assert_eq!(hub.get_json(&path, &[("authorization", &user)]).await, (403, forbidden.clone()), "{path}");
        assert_eq!(hub.get_json(&path, &[]).await, (401, missing.clone()), "{path}");
        assert_eq!(hub.get_json(&path, &[("x-api-key", "wrong")]).await, (401, bad_key.clone()), "{path}");
        assert_eq!(hub.get_json(&path, &key).await, (403, not_the_key.clone()), "{path}");
    }
    for verdict in ["approve", "reject"] {
        assert_eq!(
            decide(&hub, "p1", verdict, &[("authorization", &user)], &json!({})).await,
            (403, forbidden.clone())
        );
        assert_eq!(decide(&hub, "p1", verdict, &[], &json!({})).await, (401, missing.clone()));
        assert_eq!(decide(&hub, "p1", verdict, &[("x-api-key", "wrong")], &json!({})).await, (401, bad_key.clone()));
        assert_eq!(decide(&hub, "p1", verdict, &key, &json!({})).await, (403, not_the_key.clone()));
    }
    let staff = bearer(&hub.staff_jwt("admin1"));
    let (status, pending) =
        hub.get_json("/api/v1/admin-dashboard/approvals/pending/", &[("authorization", &staff)]).await;
    assert_eq!((status, &pending["count"]), (200, &json!(1)), "p1 is still pending: {pending}");
}
