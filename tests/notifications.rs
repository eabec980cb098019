//! `/ws/notifications/` (PROTOCOL §4.1): every request row, the pushes, the subscribe filter, tabs kept
//! in sync, user isolation, and malformed input.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{
    TestHub, Ws, assert_quiet, assert_timestamp, recv, recv_n, request, send_json, send_text, user_identity,
};

/// The wire form of a notification posted by [`TestHub::notify`], with the hub's `created_at`.
fn expected(id: i64, title: &str, kind: &str, read: bool, created_at: &Value) -> Value {
    json!({
        "id": id,
        "title": title,
        "message": format!("{title} body"),
        "type": kind,
        "read": read,
        "created_at": created_at,
        "data": {},
        "link": null,
    })
}

/// Reads the `notification` push and the `unread_count` push that follow a new notification.
async fn recv_new(ws: &mut Ws, id: i64, title: &str, kind: &str, unread: i64) -> Value {
    let push = recv(ws).await;
    let created_at = push["notification"]["created_at"].clone();
    assert_timestamp(&created_at);
    assert_eq!(push, json!({"type": "notification", "notification": expected(id, title, kind, false, &created_at)}));
    assert_eq!(recv(ws).await, json!({"type": "unread_count", "count": unread}));
    push["notification"].clone()
}

/// Sorts frames by their JSON text, for replies and pushes whose relative order the protocol leaves open.
fn sorted(mut frames: Vec<Value>) -> Vec<Value> {
    frames.sort_by_key(Value::to_string);
    frames
}

/// A notification stored while its user was offline shows in the greeting's `unread_count` and in
/// `get_notifications` after connecting.
#[tokio::test]
async fn notifications_stored_while_offline_are_counted_and_listed_on_connect() {
    let hub = TestHub::start().await;
    let first = hub.notify("offline", "first", "general").await;
    let second = hub.notify("offline", "second", "alert").await;

    let (mut ws, greeting) = hub.connect("/ws/notifications/", &hub.jwt("offline")).await;
    assert_eq!(
        greeting,
        json!({"type": "connection_established", "message": "Connected to notifications", "user_id": "offline", "unread_count": 2})
    );
    let list = request(&mut ws, json!({"type": "get_notifications"})).await;
    let notifications = list["notifications"].as_array().expect("a notifications array");
    assert_eq!(notifications.len(), 2, "{list}");
    for n in notifications {
        assert_timestamp(&n["created_at"]);
    }
    assert_eq!(
        list,
        json!({
            "type": "notifications_list",
            "notifications": [
                expected(second, "second", "alert", false, &notifications[0]["created_at"]),
                expected(first, "first", "general", false, &notifications[1]["created_at"]),
            ],
            "total": 2,
            "unread_count": 2,
        })
    );
}

/// A notification posted through the API is pushed as `notification`, followed by the new
/// `unread_count`, and is then listed exactly as it was pushed.
#[tokio::test]
async fn an_api_notification_is_pushed_with_the_new_unread_count() {
    let hub = TestHub::start().await;
    let mut ws = hub.notifications("u1").await;
    let body = json!({
        "user_id": "u1",
        "title": "Invoice paid",
        "message": "Invoice 7 was paid",
        "type": "billing",
        "data": {"invoice": 7},
        "link": "/invoices/7",
    });
    let response = hub.post_api("/api/v1/notifications", &body).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.expect("a JSON body");
    let id = created["notifications"][0]["id"].as_i64().expect("an id");
    assert_eq!(created, json!({"notifications": [{"id": id, "user_id": "u1"}], "pushed": true}));

    let push = recv(&mut ws).await;
    assert_timestamp(&push["notification"]["created_at"]);
    let notification = json!({
        "id": id,
        "title": "Invoice paid",
        "message": "Invoice 7 was paid",
        "type": "billing",
        "read": false,
        "created_at": push["notification"]["created_at"],
        "data": {"invoice": 7},
        "link": "/invoices/7",
    });
    assert_eq!(push, json!({"type": "notification", "notification": notification}));
    assert_eq!(recv(&mut ws).await, json!({"type": "unread_count", "count": 1}));
    let list = request(&mut ws, json!({"type": "get_notifications"})).await;
    assert_eq!(
        list,
        json!({"type": "notifications_list", "notifications": [notification], "total": 1, "unread_count": 1})
    );
}

/// `subscribe` limits live `notification` pushes on that connection to the listed types, while
/// `unread_count` still arrives for every type; `[]` restores all types.
#[tokio::test]
async fn subscribe_filters_notification_pushes_but_not_unread_count() {
    let hub = TestHub::start().await;
    let mut ws = hub.notifications("u1").await;
    let reply = request(&mut ws, json!({"type": "subscribe", "notification_types": ["alert"]})).await;
    assert_eq!(reply, json!({"type": "subscribed", "notification_types": ["alert"]}));

    hub.notify("u1", "hello", "general").await;
    let alert = hub.notify("u1", "fire", "alert").await;
    // The general notification is filtered out: its unread_count comes first, then the alert.
    assert_eq!(recv(&mut ws).await, json!({"type": "unread_count", "count": 1}));
    recv_new(&mut ws, alert, "fire", "alert", 2).await;
    assert_quiet(&mut ws).await;

    let reply = request(&mut ws, json!({"type": "subscribe", "notification_types": []})).await;
    assert_eq!(reply, json!({"type": "subscribed", "notification_types": []}));
    let general = hub.notify("u1", "again", "general").await;
    recv_new(&mut ws, general, "again", "general", 3).await;
}

/// `get_notifications` pages newest first by `before_id` and `limit`, filters with `unread_only`, and
/// its `total` counts all of the user's notifications whatever the page; out-of-range limits are
/// `invalid_message`.
#[tokio::test]
async fn get_notifications_pages_with_before_id_limit_and_unread_only() {
    let hub = TestHub::start().await;
    let mut ids = Vec::new();
    for title in ["n1", "n2", "n3", "n4", "n5"] {
        ids.push(hub.notify("u1", title, "general").await);
    }
    let mut ws = hub.notifications("u1").await;
    let reply = request(&mut ws, json!({"type": "mark_read", "notification_id": ids[1]})).await;
    assert_eq!(reply, json!({"type": "notification_marked_read", "notification_id": ids[1], "success": true}));
    assert_eq!(recv(&mut ws).await, json!({"type": "unread_count", "count": 4}));

    let page = |reply: &Value| -> Vec<(i64, bool)> {
        assert_eq!(reply["type"], "notifications_list", "{reply}");
        assert_eq!((&reply["total"], &reply["unread_count"]), (&json!(5), &json!(4)), "{reply}");
        let list = reply["notifications"].as_array().expect("a notifications array");
        list.iter().map(|n| (n["id"].as_i64().expect("an id"), n["read"] == json!(true))).collect()
    };
    let all = request(&mut ws, json!({"type": "get_notifications"})).await;
    assert_eq!(page(&all), vec![(ids[4], false), (ids[3], false), (ids[2], false), (ids[1], true), (ids[0], false)]);
    let first = request(&mut ws, json!({"type": "get_notifications", "limit": 2})).await;
    assert_eq!(page(&first), vec![(ids[4], false), (ids[3], false)]);
    let next = request(&mut ws, json!({"type": "get_notifications", "limit": 2, "before_id": ids[3]})).await;
    assert_eq!(page(&next), vec![(ids[2], false), (ids[1], true)]);
    let unread = request(&mut ws, json!({"type": "get_notifications", "unread_only": true, "before_id": ids[3]})).await;
    assert_eq!(page(&unread), vec![(ids[2], false), (ids[0], false)]);

    for limit in [0, 201] {
        let reply = request(&mut ws, json!({"type": "get_notifications", "limit": limit})).await;
        assert_eq!(
            reply,
            json!({"type": "error", "code": "invalid_message", "message": "limit must be between 1 and 200"})
        );
    }
}

/// `mark_read` answers the tab that asked and pushes the new `unread_count` to every tab of the user,
/// so they stay in sync; marking an already read notification changes nothing and pushes nothing.
#[tokio::test]
async fn mark_read_keeps_every_tab_in_sync_through_unread_count() {
    let hub = TestHub::start().await;
    let mut tab1 = hub.notifications("u1").await;
    let mut tab2 = hub.notifications("u1").await;
    let first = hub.notify("u1", "one", "general").await;
    let second = hub.notify("u1", "two", "general").await;
    for tab in [&mut tab1, &mut tab2] {
        recv_new(tab, first, "one", "general", 1).await;
        recv_new(tab, second, "two", "general", 2).await;
    }

    send_json(&mut tab1, &json!({"type": "mark_read", "notification_id": first})).await;
    assert_eq!(
        sorted(recv_n(&mut tab1, 2).await),
        sorted(vec![
            json!({"type": "notification_marked_read", "notification_id": first, "success": true}),
            json!({"type": "unread_count", "count": 1}),
        ])
    );
    assert_eq!(recv(&mut tab2).await, json!({"type": "unread_count", "count": 1}));

    let again = request(&mut tab1, json!({"type": "mark_read", "notification_id": first})).await;
    assert_eq!(again, json!({"type": "notification_marked_read", "notification_id": first, "success": true}));
    assert_quiet(&mut tab1).await;
    assert_quiet(&mut tab2).await;
}

/// `mark_all_read` answers how many notifications changed and pushes `unread_count` 0 when any did.
#[tokio::test]
async fn mark_all_read_answers_the_count_it_changed() {
    let hub = TestHub::start().await;
    let ids = [
        hub.notify("u1", "a", "general").await,
        hub.notify("u1", "b", "general").await,
        hub.notify("u1", "c", "general").await,
    ];
    let mut ws = hub.notifications("u1").await;
    request(&mut ws, json!({"type": "mark_read", "notification_id": ids[0]})).await;
    assert_eq!(recv(&mut ws).await, json!({"type": "unread_count", "count": 2}));

    send_json(&mut ws, &json!({"type": "mark_all_read"})).await;
    assert_eq!(
        sorted(recv_n(&mut ws, 2).await),
        sorted(vec![
            json!({"type": "all_notifications_marked_read", "count": 2}),
            json!({"type": "unread_count", "count": 0}),
        ])
    );
    let again = request(&mut ws, json!({"type": "mark_all_read"})).await;
    assert_eq!(again, json!({"type": "all_notifications_marked_read", "count": 0}));
    assert_quiet(&mut ws).await;
}

/// `delete_notification` answers, pushes `unread_count` when an unread one goes, and an unknown or
/// already deleted id is `not_found`.
#[tokio::test]
async fn delete_notification_pushes_unread_count_and_refuses_unknown_ids() {
    let hub = TestHub::start().await;
    let unread = hub.notify("u1", "unread", "general").await;
    let read = hub.notify("u1", "read", "general").await;
    let mut ws = hub.notifications("u1").await;
    request(&mut ws, json!({"type": "mark_read", "notification_id": read})).await;
    assert_eq!(recv(&mut ws).await, json!({"type": "unread_count", "count": 1}));

    send_json(&mut ws, &json!({"type": "delete_notification", "notification_id": unread})).await;
    assert_eq!(
        sorted(recv_n(&mut ws, 2).await),
        sorted(vec![
            json!({"type": "notification_deleted", "notification_id": unread, "success": true}),
            json!({"type": "unread_count", "count": 0}),
        ])
    );
    let reply = request(&mut ws, json!({"type": "delete_notification", "notification_id": read})).await;
    assert_eq!(reply, json!({"type": "notification_deleted", "notification_id": read, "success": true}));
    assert_quiet(&mut ws).await;

    let gone = request(&mut ws, json!({"type": "delete_notification", "notification_id": unread})).await;
    let message = format!("notification {unread} not found");
    assert_eq!(gone, json!({"type": "error", "code": "not_found", "message": message}));
    let list = request(&mut ws, json!({"type": "get_notifications"})).await;
    assert_eq!(list, json!({"type": "notifications_list", "notifications": [], "total": 0, "unread_count": 0}));
}

/// `send_notification` is refused with `forbidden` for a non-staff user (nothing is stored or pushed);
/// for staff it answers `notification_sent` and the target user receives it (a numeric `user_id` names
/// the user with that decimal id; `body` is an alias of `message`).
#[tokio::test]
async fn send_notification_is_staff_only_and_reaches_the_target() {
    let hub = TestHub::start().await;
    let mut target = hub.notifications("42").await;
    let mut user = hub.notifications("u1").await;
    let mut staff = hub.notifications_with(&hub.staff_jwt("admin")).await;
    let send =
        json!({"type": "send_notification", "user_id": 42, "title": "Hi", "body": "from staff", "request_id": "r1"});

    let refused = request(&mut user, send.clone()).await;
    assert_eq!(
        refused,
        json!({"type": "error", "code": "forbidden", "message": "send_notification is for staff only", "request_id": "r1"})
    );
    assert_quiet(&mut target).await;

    let sent = request(&mut staff, send).await;
    let id = sent["notification_id"].as_i64().expect("a notification id");
    assert_eq!(sent, json!({"type": "notification_sent", "success": true, "notification_id": id, "request_id": "r1"}));
    let push = recv(&mut target).await;
    assert_timestamp(&push["notification"]["created_at"]);
    let notification = json!({
        "id": id, "title": "Hi", "message": "from staff", "type": "general", "read": false,
        "created_at": push["notification"]["created_at"], "data": {}, "link": null,
    });
    assert_eq!(push, json!({"type": "notification", "notification": notification}));
    assert_eq!(recv(&mut target).await, json!({"type": "unread_count", "count": 1}));
    assert_quiet(&mut staff).await;
}

/// User A can neither list, mark read, delete nor receive user B's notifications: foreign ids are
/// `not_found`, and B's notification stays unread.
#[tokio::test]
async fn users_are_isolated_from_each_others_notifications() {
    let hub = TestHub::start().await;
    let mut alice = hub.notifications("alice").await;
    let mut bob = hub.notifications("bob").await;
    let id = hub.notify("bob", "for bob", "general").await;
    recv_new(&mut bob, id, "for bob", "general", 1).await;
    assert_quiet(&mut alice).await;

    let list = request(&mut alice, json!({"type": "get_notifications"})).await;
    assert_eq!(list, json!({"type": "notifications_list", "notifications": [], "total": 0, "unread_count": 0}));
    let not_found = json!({"type": "error", "code": "not_found", "message": format!("notification {id} not found")});
    assert_eq!(request(&mut alice, json!({"type": "mark_read", "notification_id": id})).await, not_found);
    assert_eq!(request(&mut alice, json!({"type": "delete_notification", "notification_id": id})).await, not_found);
    assert_eq!(
        request(&mut alice, json!({"type": "mark_all_read"})).await,
        json!({"type": "all_notifications_marked_read", "count": 0})
    );
    assert_quiet(&mut bob).await;

    let list = request(&mut bob, json!({"type": "get_notifications"})).await;
    assert_eq!((&list["total"], &list["unread_count"]), (&json!(1), &json!(1)), "{list}");
    assert_eq!(list["notifications"][0]["read"], false);
}

/// Malformed frames (invalid JSON, non-object JSON, unknown type, missing type, missing field, mistyped
/// field) each get their own error code, and the connection stays open.
#[tokio::test]
async fn malformed_frames_get_an_error_and_the_connection_stays_open() {
    let hub = TestHub::start().await;
    let mut ws = hub.notifications("u1").await;
    let cases = [
        ("{nope", "invalid_json", "invalid JSON: key must be a string at line 1 column 2"),
        ("[1,2]", "invalid_json", "expected a JSON object"),
        ("\"ping\"", "invalid_json", "expected a JSON object"),
        (
            r#"{"type":"dance"}"#,
            "unknown_type",
            "unknown message type `dance`; expected one of: subscribe, get_notifications, mark_read, \
             mark_all_read, delete_notification, send_notification, ping, refresh",
        ),
        (r#"{"title":"no type"}"#, "invalid_message", "missing field `type`"),
        (r#"{"type":7}"#, "invalid_message", "type must be a string"),
        (r#"{"type":"mark_read"}"#, "invalid_message", "missing field `notification_id`"),
        (
            r#"{"type":"mark_read","notification_id":"x"}"#,
            "invalid_message",
            "invalid type: string \"x\", expected i64",
        ),
        (
            r#"{"type":"subscribe","notification_types":"alert"}"#,
            "invalid_message",
            "invalid type: string \"alert\", expected a sequence",
        ),
        (
            r#"{"type":"get_notifications","unread_only":"yes"}"#,
            "invalid_message",
            "invalid type: string \"yes\", expected a boolean",
        ),
    ];
    for (text, code, message) in cases {
        send_text(&mut ws, text).await;
        assert_eq!(recv(&mut ws).await, json!({"type": "error", "code": code, "message": message}), "for {text}");
    }
    let pong = request(&mut ws, json!({"type": "ping", "timestamp": "still here"})).await;
    assert_eq!(pong, json!({"type": "pong", "timestamp": "still here"}));
}

/// A `request_id` (string or integer) is echoed on direct replies and on errors, also when the request
/// itself could not be decoded; a `request_id` of another type is `invalid_message`.
#[tokio::test]
async fn request_id_is_echoed_on_replies_and_errors() {
    let hub = TestHub::start().await;
    let mut ws = hub.notifications("u1").await;
    let reply = request(&mut ws, json!({"type": "mark_all_read", "request_id": "abc"})).await;
    assert_eq!(reply, json!({"type": "all_notifications_marked_read", "count": 0, "request_id": "abc"}));
    let reply = request(&mut ws, json!({"type": "get_notifications", "request_id": 7})).await;
    assert_eq!(
        reply,
        json!({"type": "notifications_list", "notifications": [], "total": 0, "unread_count": 0, "request_id": 7})
    );
    let reply = request(&mut ws, json!({"type": "mark_read", "notification_id": 999, "request_id": 8})).await;
    assert_eq!(
        reply,
        json!({"type": "error", "code": "not_found", "message": "notification 999 not found", "request_id": 8})
    );
    let reply = request(&mut ws, json!({"type": "mark_read", "request_id": "m"})).await;
    assert_eq!(
        reply,
        json!({"type": "error", "code": "invalid_message", "message": "missing field `notification_id`", "request_id": "m"})
    );
    let reply = request(&mut ws, json!({"type": "nope", "request_id": 9})).await;
    assert_eq!((&reply["code"], &reply["request_id"]), (&json!("unknown_type"), &json!(9)), "{reply}");
    for not_an_id in [json!({"no": 1}), json!(1.5), json!([1]), json!(true)] {
        let reply = request(&mut ws, json!({"type": "ping", "request_id": not_an_id})).await;
        assert_eq!(
            reply,
            json!({"type": "error", "code": "invalid_message", "message": "request_id must be a string or an integer"}),
            "{not_an_id}"
        );
    }
    let reply = request(&mut ws, json!({"type": "ping", "request_id": -3})).await;
    assert_eq!(reply, json!({"type": "pong", "timestamp": null, "request_id": -3}));
}

/// `ping` is answered with `pong` echoing `timestamp` whatever JSON value it is (`null` when absent).
#[tokio::test]
async fn ping_echoes_any_timestamp() {
    let hub = TestHub::start().await;
    let mut ws = hub.notifications("u1").await;
    for timestamp in
        [json!(1_768_473_000_123_i64), json!("2026-01-15T10:30:00.123Z"), json!({"a": [1, 2.5]}), json!(null)]
    {
        let pong = request(&mut ws, json!({"type": "ping", "timestamp": timestamp})).await;
        assert_eq!(pong, json!({"type": "pong", "timestamp": timestamp}));
    }
    assert_eq!(request(&mut ws, json!({"type": "ping"})).await, json!({"type": "pong", "timestamp": null}));
    let pong = request(&mut ws, json!({"type": "ping", "timestamp": [true], "request_id": 3})).await;
    assert_eq!(pong, json!({"type": "pong", "timestamp": [true], "request_id": 3}));
}

/// Notifications for several users in one `user_ids` request reach each user once, and the `user_id`
/// of a JWT is the user whose notifications a connection sees.
#[tokio::test]
async fn one_request_for_many_users_reaches_each_of_them() {
    let hub = TestHub::start().await;
    let mut one = hub.notifications("1").await;
    let mut two = hub.notifications_with(&hub.jwt_for(&user_identity("two"))).await;
    let body = json!({"user_ids": [1, "two"], "title": "All hands", "body": "at 10", "type": "meeting"});
    let response = hub.post_api("/api/v1/notifications", &body).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.expect("a JSON body");
    let (a, b) = (created["notifications"][0]["id"].as_i64(), created["notifications"][1]["id"].as_i64());
    let (a, b) = (a.expect("an id"), b.expect("an id"));
    assert_eq!(
        created,
        json!({"notifications": [{"id": a, "user_id": "1"}, {"id": b, "user_id": "two"}], "pushed": true})
    );
    for (ws, id) in [(&mut one, a), (&mut two, b)] {
        let push = recv(ws).await;
        let created_at = &push["notification"]["created_at"];
        assert_timestamp(created_at);
        let notification = json!({
            "id": id, "title": "All hands", "message": "at 10", "type": "meeting", "read": false,
            "created_at": created_at, "data": {}, "link": null,
        });
        assert_eq!(push, json!({"type": "notification", "notification": notification}));
        assert_eq!(recv(ws).await, json!({"type": "unread_count", "count": 1}));
        assert_quiet(ws).await;
    }
}

/// 1,100 copies of one id in `user_ids` (more than the 1,024 frames a connection's queue holds) make one
/// notification: one row, one push, and the user's reading client stays open. `1` and `"1"` are one user.
#[tokio::test]
async fn repeated_recipients_get_one_notification() {
    let hub = TestHub::start().await;
    let mut ws = hub.notifications("1").await;
    let mut ids: Vec<Value> = vec![json!("1"); 1_100];
    ids.push(json!(1));
    let body = json!({"user_ids": ids, "title": "Once", "body": "only once"});
    let response = hub.post_api("/api/v1/notifications", &body).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.expect("a JSON body");
    let created = created["notifications"].as_array().expect("a list of notifications");
    assert_eq!(created.len(), 1, "one notification, not one per copy");
    assert_eq!(created[0]["user_id"], "1");
    let push = recv(&mut ws).await;
    assert_eq!((&push["type"], &push["notification"]["title"]), (&json!("notification"), &json!("Once")));
    assert_eq!(recv(&mut ws).await, json!({"type": "unread_count", "count": 1}));
    assert_quiet(&mut ws).await;
    let (status, page) =
        hub.get_json("/api/v1/notifications", &[("authorization", &format!("Bearer {}", hub.jwt("1")))]).await;
    assert_eq!(status, 200);
    assert_eq!(page["notifications"].as_array().map(Vec::len), Some(1), "{page}");
}

/// With `--notification-retention`, notifications older than it are deleted in the background, and
/// newer ones are kept.
#[tokio::test]
async fn notifications_older_than_the_retention_are_pruned() {
    let hub = TestHub::start_with(|config| config.notification_retention = Some(Duration::from_millis(1000))).await;
    hub.notify("u1", "old", "info").await;
    let auth = format!("Bearer {}", hub.jwt("u1"));
    let started = std::time::Instant::now();
    while hub.get_json("/api/v1/notifications", &[("authorization", &auth)]).await.1["total"] != 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the old notification was not pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "pruned before it was a second old");
    hub.notify("u1", "new", "info").await;
    let (_, page) = hub.get_json("/api/v1/notifications", &[("authorization", &auth)]).await;
    assert_eq!((&page["total"], &page["notifications"][0]["title"]), (&json!(1), &json!("new")), "{page}");
}
