//! `/ws/chat/{room_id}/` (PROTOCOL §4.4) and the `/api/v1/chat/` routes (§5): who may enter, the
//! greeting and history, messages pushed to the whole room, typing, read receipts, history paging,
//! per-room presence, validation, and the HTTP fallback.

use serde_json::{Value, json};

use crate::util::{TestHub, Ws, api_error, assert_quiet, assert_timestamp, recv, recv_close, request, send_json};

/// `Authorization: Bearer <token>`.
fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Creates a room with the API key; returns the 201 Room after checking its shape.
async fn create_room(hub: &TestHub, room_id: &str, members: &[&str]) -> Value {
    let (status, room) = hub
        .post_json(
            "/api/v1/chat/rooms",
            &[("x-api-key", hub.api_key())],
            &json!({"room_id": room_id, "members": members}),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    assert_timestamp(&room["created_at"]);
    assert_eq!(
        room,
        json!({"room_id": room_id, "name": room_id, "members": members, "created_at": room["created_at"]})
    );
    room
}

/// Connects `token` to `room`, checks the greeting exactly, and returns the socket and the `history`
/// frame that follows it.
async fn join(hub: &TestHub, room: &str, user: &str, token: &str) -> (Ws, Value) {
    let (mut ws, greeting) = hub.connect(&format!("/ws/chat/{room}/"), token).await;
    assert_eq!(
        greeting,
        json!({"type": "connection_established", "message": "Connected to chat room", "user_id": user, "room_id": room})
    );
    let history = recv(&mut ws).await;
    assert_eq!((&history["type"], &history["room_id"]), (&json!("history"), &json!(room)), "{history}");
    (ws, history)
}

/// Joins as an ordinary user whose history must be empty.
async fn join_empty(hub: &TestHub, room: &str, user: &str) -> Ws {
    let (ws, history) = join(hub, room, user, &hub.jwt(user)).await;
    assert_eq!(history, json!({"type": "history", "room_id": room, "messages": [], "has_more": false}));
    ws
}

/// The ChatMessage a push or a 201 carries, checked against what was sent (a 201 also says the push
/// reached the channel layer: `pushed: true`); returns the ChatMessage alone.
fn message(value: &Value, room: &str, sender: &str, content: &str, attachment: Value) -> Value {
    assert_timestamp(&value["created_at"]);
    assert!(value["id"].is_i64(), "{value}");
    let expected = json!({
        "id": value["id"], "room_id": room, "sender_id": sender, "content": content,
        "attachment_url": attachment, "created_at": value["created_at"],
    });
    let mut shown = value.clone();
    if let Some(pushed) = shown.as_object_mut().and_then(|fields| fields.remove("pushed")) {
        assert_eq!(pushed, json!(true), "{value}");
    }
    assert_eq!(shown, expected);
    expected
}

/// Reads a `chat_message` push and checks it; returns its ChatMessage.
async fn recv_message(ws: &mut Ws, room: &str, sender: &str, content: &str, client_id: Value) -> Value {
    let push = recv(ws).await;
    let stored = message(&push["message"], room, sender, content, Value::Null);
    assert_eq!(push, json!({"type": "chat_message", "message": stored, "client_id": client_id}));
    stored
}

/// POSTs a message over HTTP as `token`.
async fn post_message(hub: &TestHub, room: &str, token: &str, body: &Value) -> (u16, Value) {
    hub.post_json(&format!("/api/v1/chat/rooms/{room}/messages"), &[("authorization", &bearer(token))], body).await
}

/// POSTs `content` as `user` over HTTP; returns the stored message.
async fn say(hub: &TestHub, room: &str, user: &str, content: &str) -> Value {
    let (status, stored) = post_message(hub, room, &hub.jwt(user), &json!({"message": content})).await;
    assert_eq!(status, 201, "{stored}");
    message(&stored, room, user, content, Value::Null)
}

/// `user`'s room list, sorted by room id (the protocol leaves the order open).
async fn rooms_of(hub: &TestHub, token: &str) -> Vec<Value> {
    let (status, body) = hub.get_json("/api/v1/chat/rooms", &[("authorization", &bearer(token))]).await;
    assert_eq!(status, 200, "{body}");
    let mut rooms = body["rooms"].as_array().expect("a rooms array").clone();
    rooms.sort_by_key(|r| r["room_id"].as_str().map(str::to_owned));
    rooms
}

/// `user`'s unread count in `room`, from `GET /api/v1/chat/rooms`.
async fn unread(hub: &TestHub, user: &str, room: &str) -> Value {
    let rooms = rooms_of(hub, &hub.jwt(user)).await;
    let found = rooms.iter().find(|r| r["room_id"] == room).expect("the room is listed");
    found["unread_count"].clone()
}

/// The ids of a list of messages.
fn ids(messages: &Value) -> Vec<i64> {
    messages.as_array().expect("a messages array").iter().map(|m| m["id"].as_i64().expect("an id")).collect()
}

/// `POST /api/v1/chat/rooms` (API key or staff JWT) answers 201 Room with de-duplicated members (numeric
/// ids as strings), a default name and a generated id when none is given; an existing id is 409, a bad
/// id, name or member 400, a non-staff user 403, no credentials 401.
#[tokio::test]
async fn rooms_are_created_by_staff_or_the_api_key() {
    let hub = TestHub::start().await;
    let key = [("x-api-key", hub.api_key())];
    let body = json!({"room_id": "team.eu-1_x", "name": "Team", "members": ["u1", 2, "u1"]});
    let (status, room) = hub.post_json("/api/v1/chat/rooms", &key, &body).await;
    assert_timestamp(&room["created_at"]);
    assert_eq!(
        (status, &room),
        (
            201,
            &json!({"room_id": "team.eu-1_x", "name": "Team", "members": ["u1", "2"], "created_at": room["created_at"]})
        )
    );
    assert_eq!(
        hub.post_json("/api/v1/chat/rooms", &key, &json!({"room_id": "team.eu-1_x", "members": []})).await,
        (409, api_error("conflict", "room team.eu-1_x exists already"))
    );

    let staff = bearer(&hub.staff_jwt("admin"));
    let (status, generated) =
        hub.post_json("/api/v1/chat/rooms", &[("authorization", &staff)], &json!({"members": ["u3"]})).await;
    assert_eq!(status, 201, "{generated}");
    let id = generated["room_id"].as_str().expect("a generated room id");
    let suffix = id.strip_prefix("room-").expect("room-xxxxxxxx");
    assert!(suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(generated, json!({"room_id": id, "name": id, "members": ["u3"], "created_at": generated["created_at"]}));

    // A JSON integer is an id too, as its decimal string (PROTOCOL conventions).
    let (status, numbered) = hub.post_json("/api/v1/chat/rooms", &key, &json!({"room_id": 777, "members": [42]})).await;
    assert_eq!(
        (status, numbered.clone()),
        (201, json!({"room_id": "777", "name": "777", "members": ["42"], "created_at": numbered["created_at"]}))
    );

    let bad_id = api_error("invalid_request", "room_id must match [A-Za-z0-9_.-]{1,64}");
    for room_id in [json!("a/b"), json!(""), json!("sp ace"), json!("r".repeat(65)), json!(1.5), json!(true)] {
        let body = json!({"room_id": room_id, "members": []});
        assert_eq!(hub.post_json("/api/v1/chat/rooms", &key, &body).await, (400, bad_id.clone()), "{room_id}");
    }
    assert_eq!(
        hub.post_json("/api/v1/chat/rooms", &key, &json!({"room_id": "r2", "members": [true]})).await,
        (400, api_error("invalid_request", "members must hold user ids (strings or integers)"))
    );
    assert_eq!(
        hub.post_json("/api/v1/chat/rooms", &key, &json!({"room_id": "r2"})).await,
        (400, api_error("invalid_request", "missing field `members`"))
    );
    assert_eq!(
        hub.post_json("/api/v1/chat/rooms", &key, &json!({"room_id": "r2", "name": " ", "members": []})).await,
        (400, api_error("invalid_request", "name must be 1..200 characters"))
    );
    let user = bearer(&hub.jwt("u1"));
    assert_eq!(
        hub.post_json("/api/v1/chat/rooms", &[("authorization", &user)], &json!({"room_id": "r2", "members": []}))
            .await,
        (403, api_error("forbidden", "requires the API key or a staff token"))
    );
    assert_eq!(
        hub.post_json("/api/v1/chat/rooms", &[], &json!({"room_id": "r2", "members": []})).await,
        (401, api_error("unauthorized", "missing X-API-Key or Authorization: Bearer"))
    );
}

/// Members enter (a numeric member id is the user with that decimal id); staff enter any room; a
/// non-member is closed with 4003, an unknown or invalid room id with 4004, a missing token with 4001.
#[tokio::test]
async fn members_and_staff_enter_and_others_are_refused() {
    let hub = TestHub::start().await;
    let (status, _) = hub
        .post_json("/api/v1/chat/rooms", &[("x-api-key", hub.api_key())], &json!({"room_id": "r1", "members": [42]}))
        .await;
    assert_eq!(status, 201);
    join_empty(&hub, "r1", "42").await;
    let (_, history) = join(&hub, "r1", "admin", &hub.staff_jwt("admin")).await;
    assert_eq!(history, json!({"type": "history", "room_id": "r1", "messages": [], "has_more": false}));

    let mut outsider = hub.connect_raw("/ws/chat/r1/", &hub.jwt("u9")).await;
    assert_eq!(recv_close(&mut outsider).await, (4003, "not a member of this room".to_owned()));
    for path in ["/ws/chat/nope/", "/ws/chat/bad!id/"] {
        let mut unknown = hub.connect_raw(path, &hub.staff_jwt("admin")).await;
        assert_eq!(recv_close(&mut unknown).await, (4004, "room not found".to_owned()), "{path}");
    }
    let mut anonymous = hub.connect_raw("/ws/chat/r1/", "").await;
    assert_eq!(recv_close(&mut anonymous).await, (4001, "missing token".to_owned()));
}

/// On connect the history holds the last 50 messages, oldest first, with `has_more` when older ones
/// exist; messages sent while a member was offline are in it.
#[tokio::test]
async fn connect_sends_the_last_50_messages_oldest_first() {
    let hub = TestHub::start().await;
    create_room(&hub, "r1", &["u1", "u2"]).await;
    let mut sent = Vec::new();
    for i in 1..=55 {
        sent.push(say(&hub, "r1", "u1", &format!("m{i}")).await);
    }
    let (_ws, history) = join(&hub, "r1", "u2", &hub.jwt("u2")).await;
    assert_eq!(history, json!({"type": "history", "room_id": "r1", "messages": sent[5..], "has_more": true}));
}

/// A member who goes offline finds the messages sent meanwhile (over WebSocket or HTTP) in the history
/// when reconnecting.
#[tokio::test]
async fn messages_sent_while_a_member_was_offline_are_in_the_history() {
    let hub = TestHub::start().await;
    create_room(&hub, "r1", &["u1", "u2"]).await;
    let mut sender = join_empty(&hub, "r1", "u1").await;
    let mut away = join_empty(&hub, "r1", "u2").await;
    assert_eq!(recv(&mut sender).await, json!({"type": "user_status", "user_id": "u2", "status": "online"}));
    away.close(None).await.expect("close");
    assert_eq!(recv(&mut sender).await, json!({"type": "user_status", "user_id": "u2", "status": "offline"}));

    send_json(&mut sender, &json!({"type": "chat_message", "message": "while you were out"})).await;
    let first = recv_message(&mut sender, "r1", "u1", "while you were out", Value::Null).await;
    let second = say(&hub, "r1", "u1", "and over http").await;
    assert_eq!(recv(&mut sender).await, json!({"type": "chat_message", "message": second, "client_id": null}));
    let (_back, history) = join(&hub, "r1", "u2", &hub.jwt("u2")).await;
    assert_eq!(history, json!({"type": "history", "room_id": "r1", "messages": [first, second], "has_more": false}));
}

/// A `chat_message` is stored as sent (whitespace kept) and then pushed to every connection in the
/// room, the sender's included, with its `client_id` echoed (`null` when none); the sending connection's
/// copy is its direct reply and repeats its `request_id`, no other copy does; other rooms get nothing.
#[tokio::test]
async fn a_chat_message_is_stored_then_pushed_to_the_whole_room() {
    let hub = TestHub::start().await;
    create_room(&hub, "r1", &["u1", "u2"]).await;
    create_room(&hub, "r2", &["u1", "u3"]).await;
    let mut tab1 = join_empty(&hub, "r1", "u1").await;
    let mut tab2 = join_empty(&hub, "r1", "u1").await;
    let mut u2 = join_empty(&hub, "r1", "u2").await;
    let mut elsewhere = join_empty(&hub, "r2", "u3").await;
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(recv(tab).await, json!({"type": "user_status", "user_id": "u2", "status": "online"}));
    }

    let sent = json!({"type": "chat_message", "message": "  hello there \n", "client_id": "c-1", "request_id": 7});
    let reply = request(&mut tab1, sent).await;
    let stored = message(&reply["message"], "r1", "u1", "  hello there \n", Value::Null);
    let push = json!({"type": "chat_message", "message": stored, "client_id": "c-1"});
    let mut answer = push.clone();
    answer["request_id"] = json!(7);
    assert_eq!(reply, answer);
    assert_eq!(recv(&mut tab2).await, push);
    assert_eq!(recv(&mut u2).await, push);

    send_json(&mut u2, &json!({"type": "chat_message", "message": "hi"})).await;
    let reply = recv_message(&mut u2, "r1", "u2", "hi", Value::Null).await;
    let push = json!({"type": "chat_message", "message": reply, "client_id": null});
    assert_eq!(recv(&mut tab1).await, push);
    assert_eq!(recv(&mut tab2).await, push);
    assert_quiet(&mut elsewhere).await;

    let history = request(&mut u2, json!({"type": "get_history", "request_id": "h"})).await;
    assert_eq!(
        history,
        json!({"type": "history", "room_id": "r1", "messages": [stored, reply], "has_more": false, "request_id": "h"})
    );
    assert_quiet(&mut tab1).await;
}

/// `typing` reaches the room's other connections (the sender's other tab included) as `typing
/// {user_id, is_typing}`, never the sending connection, and is not stored.
#[tokio::test]
async fn typing_goes_to_the_other_connections_only_and_is_not_stored() {
    let hub = TestHub::start().await;
    create_room(&hub, "r1", &["u1", "u2"]).await;
    let mut u2 = join_empty(&hub, "r1", "u2").await;
    let mut tab1 = join_empty(&hub, "r1", "u1").await;
    let mut tab2 = join_empty(&hub, "r1", "u1").await;
    assert_eq!(recv(&mut u2).await, json!({"type": "user_status", "user_id": "u1", "status": "online"}));

    for is_typing in [true, false] {
        send_json(&mut tab1, &json!({"type": "typing", "is_typing": is_typing})).await;
        let push = json!({"type": "typing", "user_id": "u1", "is_typing": is_typing});
        assert_eq!(recv(&mut u2).await, push);
        assert_eq!(recv(&mut tab2).await, push);
        assert_quiet(&mut tab1).await;
    }
    let reply = request(&mut tab1, json!({"type": "typing", "is_typing": "yes"})).await;
    assert_eq!(
        reply,
        json!({"type": "error", "code": "invalid_message", "message": "invalid type: string \"yes\", expected a boolean"})
    );
    let history = request(&mut u2, json!({"type": "get_history"})).await;
    assert_eq!(history, json!({"type": "history", "room_id": "r1", "messages": [], "has_more": false}));
    assert_eq!(unread(&hub, "u2", "r1").await, 0);
}

/// A `read_receipt` stores the reader's position and pushes `read_receipt {user_id, message_id,
/// read_at}` to the room, the reading connection's copy being its reply with its `request_id`; one
/// behind the stored position leaves it in place and answers the sender alone with the stored position;
/// unread counts follow and reach 0 at the newest message; a message not in the room is `not_found`.
#[tokio::test]
async fn read_receipts_are_stored_pushed_and_never_move_backwards() {
    let hub = TestHub::start().await;
    create_room(&hub, "r1", &["u1", "u2"]).await;
    create_room(&hub, "r2", &["u1", "u2"]).await;
    let m1 = say(&hub, "r1", "u1", "one").await["id"].as_i64().expect("an id");
    let m2 = say(&hub, "r1", "u1", "two").await["id"].as_i64().expect("an id");
    let m3 = say(&hub, "r1", "u1", "three").await["id"].as_i64().expect("an id");
    let foreign = say(&hub, "r2", "u1", "elsewhere").await["id"].as_i64().expect("an id");
    assert_eq!(unread(&hub, "u2", "r1").await, 3);
    let (mut writer, _) = join(&hub, "r1", "u1", &hub.jwt("u1")).await;
    let (mut reader, _) = join(&hub, "r1", "u2", &hub.jwt("u2")).await;
    assert_eq!(recv(&mut writer).await, json!({"type": "user_status", "user_id": "u2", "status": "online"}));

    send_json(&mut reader, &json!({"type": "read_receipt", "message_id": m2})).await;
    let push = recv(&mut reader).await;
    assert_timestamp(&push["read_at"]);
    let at_m2 = json!({"type": "read_receipt", "user_id": "u2", "message_id": m2, "read_at": push["read_at"]});
    assert_eq!(push, at_m2);
    assert_eq!(recv(&mut writer).await, at_m2);
    assert_eq!(unread(&hub, "u2", "r1").await, 1);

    for older in [m1, m2] {
        let reply = request(&mut reader, json!({"type": "read_receipt", "message_id": older, "request_id": "r"})).await;
        let mut stored = at_m2.clone();
        stored["request_id"] = json!("r");
        assert_eq!(reply, stored, "a receipt at {older} must leave the position at {m2}");
    }
    assert_quiet(&mut writer).await;
    assert_eq!(unread(&hub, "u2", "r1").await, 1);

    for missing in [foreign, 9_999] {
        let reply = request(&mut reader, json!({"type": "read_receipt", "message_id": missing})).await;
        let message = format!("message {missing} not in this room");
        assert_eq!(reply, json!({"type": "error", "code": "not_found", "message": message}));
    }

    let reply = request(&mut reader, json!({"type": "read_receipt", "message_id": m3, "request_id": "r3"})).await;
    assert_timestamp(&reply["read_at"]);
    let at_m3 = json!({"type": "read_receipt", "user_id": "u2", "message_id": m3, "read_at": reply["read_at"]});
    let mut answer = at_m3.clone();
    answer["request_id"] = json!("r3");
    assert_eq!(reply, answer);
    assert_eq!(recv(&mut writer).await, at_m3);
    assert_quiet(&mut reader).await;
    assert_eq!(unread(&hub, "u2", "r1").await, 0);
    assert_eq!(unread(&hub, "u2", "r2").await, 1, "read positions are per room");
    assert_eq!(unread(&hub, "u1", "r1").await, 0, "a user's own messages are never unread");
}

/// Paging backwards with `get_history` (and `GET .../messages`) by the first id of each page returns
/// every message exactly once, in order, with `has_more` false only on the last page; limits outside
/// 1..200 are refused.
#[tokio::test]
async fn history_pages_backwards_returning_each_message_once() {
    let hub = TestHub::start().await;
    create_room(&hub, "r1", &["u1"]).await;
    let mut ws = join_empty(&hub, "r1", "u1").await;
    let mut sent = Vec::new();
    for i in 1..=120 {
        send_json(&mut ws, &json!({"type": "chat_message", "message": format!("m{i}"), "client_id": i.to_string()}))
            .await;
        let stored = recv_message(&mut ws, "r1", "u1", &format!("m{i}"), json!(i.to_string())).await;
        sent.push(stored["id"].as_i64().expect("an id"));
    }
    assert!(sent.windows(2).all(|w| w[0] < w[1]), "{sent:?}");

    let mut seen: Vec<i64> = Vec::new();
    let mut sizes = Vec::new();
    let mut before_id = Value::Null;
    loop {
        let page = request(&mut ws, json!({"type": "get_history", "limit": 50, "before_id": before_id})).await;
        let page_ids = ids(&page["messages"]);
        assert_eq!(
            page,
            json!({"type": "history", "room_id": "r1", "messages": page["messages"], "has_more": page["has_more"]})
        );
        sizes.push(page_ids.len());
        before_id = json!(page_ids[0]);
        seen.splice(0..0, page_ids);
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(sizes, [50, 50, 20]);
    assert_eq!(seen, sent);

    let auth = [("authorization", bearer(&hub.jwt("u1")))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut seen: Vec<i64> = Vec::new();
    let mut path = "/api/v1/chat/rooms/r1/messages?limit=50".to_owned();
    loop {
        let (status, page) = hub.get_json(&path, &auth).await;
        assert_eq!(status, 200, "{page}");
        let page_ids = ids(&page["messages"]);
        assert_eq!(page, json!({"messages": page["messages"], "has_more": page["has_more"]}));
        path = format!("/api/v1/chat/rooms/r1/messages?limit=50&before_id={}", page_ids[0]);
        seen.splice(0..0, page_ids);
        if page["has_more"] == false {
            break;
        }
    }
    assert_eq!(seen, sent);
    let (_, default) = hub.get_json("/api/v1/chat/rooms/r1/messages", &auth).await;
    assert_eq!((ids(&default["messages"]), &default["has_more"]), (sent[70..].to_vec(), &json!(true)));

    for limit in [0, 201] {
        let reply = request(&mut ws, json!({"type": "get_history", "limit": limit, "request_id": 1})).await;
        assert_eq!(
            reply,
            json!({"type": "error", "code": "invalid_message", "message": "limit must be between 1 and 200", "request_id": 1})
        );
        assert_eq!(
            hub.get_json(&format!("/api/v1/chat/rooms/r1/messages?limit={limit}"), &auth).await,
            (400, api_error("invalid_request", "limit must be between 1 and 200"))
        );
    }
}

/// `user_status online` goes to the room on a user's first connection to it and `offline` after the
/// last closes; a second tab opening or closing says nothing.
#[tokio::test]
async fn user_status_follows_the_first_and_last_connection() {
    let hub = TestHub::start().await;
    create_room(&hub, "r1", &["u1", "u2"]).await;
    let mut watcher = join_empty(&hub, "r1", "u1").await;
    let mut tab1 = join_empty(&hub, "r1", "u2").await;
    assert_eq!(recv(&mut watcher).await, json!({"type": "user_status", "user_id": "u2", "status": "online"}));
    let mut tab2 = join_empty(&hub, "r1", "u2").await;
    assert_quiet(&mut watcher).await;
    assert_quiet(&mut tab1).await;

    tab2.close(None).await.expect("close the second tab");
    assert_quiet(&mut watcher).await;
    assert_quiet(&mut tab1).await;
    tab1.close(None).await.expect("close the last tab");
    assert_eq!(recv(&mut watcher).await, json!({"type": "user_status", "user_id": "u2", "status": "offline"}));
    assert_quiet(&mut watcher).await;
}

/// A message must be 1..4000 characters (counted in characters, not bytes; whitespace counts) and a
/// `client_id` at most 128: anything else is `invalid_message` over WebSocket and 400 over HTTP, and
/// nothing is stored or pushed.
#[tokio::test]
async fn invalid_messages_are_refused_and_nothing_is_stored() {
    let hub = TestHub::start().await;
    create_room(&hub, "r1", &["u1", "u2"]).await;
    let mut other = join_empty(&hub, "r1", "u2").await;
    let mut ws = join_empty(&hub, "r1", "u1").await;
    assert_eq!(recv(&mut other).await, json!({"type": "user_status", "user_id": "u1", "status": "online"}));
    let length = "message must be 1..4000 characters";
    let too_long = "a".repeat(4001);
    let cases = [
        (json!({"message": ""}), length.to_owned()),
        (json!({"message": too_long}), length.to_owned()),
        (json!({"message": "ok", "client_id": "c".repeat(129)}), "client_id must be at most 128 characters".to_owned()),
        (json!({}), "missing field `message`".to_owned()),
        (json!({"message": 5}), "invalid type: integer `5`, expected a string".to_owned()),
        (json!({"message": "a\u{0}b"}), "message must not contain NUL characters".to_owned()),
    ];
    let token = hub.jwt("u1");
    for (fields, error) in &cases {
        let mut frame = fields.clone();
        frame["type"] = json!("chat_message");
        frame["request_id"] = json!("bad");
        let reply = request(&mut ws, frame).await;
        assert_eq!(
            reply,
            json!({"type": "error", "code": "invalid_message", "message": error, "request_id": "bad"}),
            "{fields}"
        );
        if fields.get("client_id").is_none() {
            let (status, body) = post_message(&hub, "r1", &token, fields).await;
            assert_eq!((status, body), (400, api_error("invalid_request", error)), "{fields}");
        }
    }
    let bad_url = api_error("invalid_request", "attachment_url must be an http(s) URL of at most 2048 characters");
    assert_eq!(
        post_message(&hub, "r1", &token, &json!({"message": "file", "attachment_url": "ftp://x.test/a"})).await,
        (400, bad_url)
    );
    assert_quiet(&mut other).await;
    assert_quiet(&mut ws).await;
    let history = request(&mut other, json!({"type": "get_history"})).await;
    assert_eq!(history, json!({"type": "history", "room_id": "r1", "messages": [], "has_more": false}));

    // The limits themselves are fine: 4000 two-byte characters, and whitespace alone, over WebSocket
    // and over HTTP.
    let longest = "é".repeat(4000);
    for content in [longest.as_str(), " \n\t "] {
        send_json(&mut ws, &json!({"type": "chat_message", "message": content})).await;
        let stored = recv_message(&mut ws, "r1", "u1", content, Value::Null).await;
        assert_eq!(recv(&mut other).await, json!({"type": "chat_message", "message": stored, "client_id": null}));
        let (status, body) = post_message(&hub, "r1", &token, &json!({"message": content})).await;
        assert_eq!(status, 201, "{body}");
        let stored = message(&body, "r1", "u1", content, Value::Null);
        let push = json!({"type": "chat_message", "message": stored, "client_id": null});
        assert_eq!((recv(&mut ws).await, recv(&mut other).await), (push.clone(), push));
    }
}

/// `POST .../messages` (member or staff JWT) answers 201 ChatMessage and pushes it to the room exactly
/// like a WebSocket message, with `client_id: null`; a non-member is 403, an unknown room 404, the API
/// key 403 and no credentials 401 (on `GET .../messages` too).
#[tokio::test]
async fn http_messages_are_pushed_like_websocket_ones() {
    let hub = TestHub::start().await;
    create_room(&hub, "r1", &["u1", "u2"]).await;
    let mut u2 = join_empty(&hub, "r1", "u2").await;

    let body = json!({"message": "see attached", "attachment_url": "https://files.test/a.png"});
    let (status, stored) = post_message(&hub, "r1", &hub.jwt("u1"), &body).await;
    let stored = message(&stored, "r1", "u1", "see attached", json!("https://files.test/a.png"));
    assert_eq!(status, 201);
    assert_eq!(recv(&mut u2).await, json!({"type": "chat_message", "message": stored, "client_id": null}));
    let (status, by_staff) = post_message(&hub, "r1", &hub.staff_jwt("admin"), &json!({"message": "staff here"})).await;
    assert_eq!(status, 201);
    let by_staff = message(&by_staff, "r1", "admin", "staff here", Value::Null);
    assert_eq!(recv(&mut u2).await, json!({"type": "chat_message", "message": by_staff, "client_id": null}));

    let outsider = hub.jwt("u9");
    let not_member = api_error("forbidden", "not a member of this room");
    assert_eq!(post_message(&hub, "r1", &outsider, &json!({"message": "let me in"})).await, (403, not_member.clone()));
    assert_eq!(
        post_message(&hub, "nope", &hub.jwt("u1"), &json!({"message": "hello?"})).await,
        (404, api_error("not_found", "room nope not found"))
    );
    let key_only = api_error("forbidden", "requires a user's token, not the API key");
    let missing = api_error("unauthorized", "missing X-API-Key or Authorization: Bearer");
    let path = "/api/v1/chat/rooms/r1/messages";
    assert_eq!(
        hub.post_json(path, &[("x-api-key", hub.api_key())], &json!({"message": "m"})).await,
        (403, key_only.clone())
    );
    assert_eq!(hub.post_json(path, &[], &json!({"message": "m"})).await, (401, missing.clone()));
    assert_eq!(hub.get_json(path, &[("authorization", &bearer(&outsider))]).await, (403, not_member));
    assert_eq!(
        hub.get_json("/api/v1/chat/rooms/nope/messages", &[("authorization", &bearer(&hub.jwt("u1")))]).await,
        (404, api_error("not_found", "room nope not found"))
    );
    assert_eq!(hub.get_json(path, &[("x-api-key", hub.api_key())]).await, (403, key_only));
    assert_eq!(hub.get_json(path, &[]).await, (401, missing));
    assert_quiet(&mut u2).await;

    let (status, page) = hub.get_json(path, &[("authorization", &bearer(&hub.staff_jwt("admin")))]).await;
    assert_eq!((status, page), (200, json!({"messages": [stored, by_staff], "has_more": false})));
}

/// `GET /api/v1/chat/rooms` lists the rooms a user may enter (staff: all) with `last_message` and the
/// user's `unread_count` (others' messages after the read position); the API key is 403, nothing 401.
#[tokio::test]
async fn the_room_list_has_last_message_and_unread_count() {
    let hub = TestHub::start().await;
    let quiet = create_room(&hub, "quiet", &["u1"]).await;
    let busy = create_room(&hub, "busy", &["u1", "u2"]).await;
    let private = create_room(&hub, "private", &["u3"]).await;
    say(&hub, "busy", "u2", "hi").await;
    say(&hub, "busy", "u1", "hey").await;
    let last = say(&hub, "busy", "u2", "news").await;

    let summary = |room: &Value, last_message: &Value, unread: i64| {
        let mut summary = room.clone();
        summary["last_message"] = last_message.clone();
        summary["unread_count"] = json!(unread);
        summary
    };
    assert_eq!(rooms_of(&hub, &hub.jwt("u1")).await, vec![summary(&busy, &last, 2), summary(&quiet, &Value::Null, 0)]);
    assert_eq!(rooms_of(&hub, &hub.jwt("u2")).await, vec![summary(&busy, &last, 1)]);
    assert_eq!(
        rooms_of(&hub, &hub.staff_jwt("admin")).await,
        vec![summary(&busy, &last, 3), summary(&private, &Value::Null, 0), summary(&quiet, &Value::Null, 0)]
    );
    assert_eq!(rooms_of(&hub, &hub.jwt("stranger")).await, Vec::<Value>::new());

    let (mut ws, _) = join(&hub, "busy", "u1", &hub.jwt("u1")).await;
    send_json(&mut ws, &json!({"type": "read_receipt", "message_id": last["id"]})).await;
    assert_eq!(recv(&mut ws).await["type"], "read_receipt");
    assert_eq!(rooms_of(&hub, &hub.jwt("u1")).await[0], summary(&busy, &last, 0));

    assert_eq!(
        hub.get_json("/api/v1/chat/rooms", &[("x-api-key", hub.api_key())]).await,
        (403, api_error("forbidden", "requires a user's token, not the API key"))
    );
    assert_eq!(
        hub.get_json("/api/v1/chat/rooms", &[]).await,
        (401, api_error("unauthorized", "missing X-API-Key or Authorization: Bearer"))
    );
}

/// A chat message refused by the rate limit is neither stored nor pushed: the room sees only the
/// accepted ones, and history holds exactly those.
#[tokio::test]
async fn a_rate_limited_chat_message_is_neither_stored_nor_pushed() {
    let hub = TestHub::with_message_rate(1, 2).await;
    create_room(&hub, "r1", &["u1", "u2"]).await;
    let mut sender = join_empty(&hub, "r1", "u1").await;
    let mut reader = join_empty(&hub, "r1", "u2").await;
    assert_eq!(recv(&mut sender).await, json!({"type": "user_status", "user_id": "u2", "status": "online"}));
    let mut stored = Vec::new();
    for i in 1..=2 {
        send_json(
            &mut sender,
            &json!({"type": "chat_message", "message": format!("m{i}"), "client_id": i.to_string()}),
        )
        .await;
        stored.push(recv_message(&mut sender, "r1", "u1", &format!("m{i}"), json!(i.to_string())).await);
        recv_message(&mut reader, "r1", "u1", &format!("m{i}"), json!(i.to_string())).await;
    }
    let error = request(&mut sender, json!({"type": "chat_message", "message": "m3", "request_id": 3})).await;
    assert_eq!(
        (&error["type"], &error["code"], &error["request_id"]),
        (&json!("error"), &json!("rate_limited"), &json!(3))
    );
    assert_quiet(&mut reader).await;

    let (status, page) =
        hub.get_json("/api/v1/chat/rooms/r1/messages", &[("authorization", &bearer(&hub.jwt("u2")))]).await;
    assert_eq!((status, page), (200, json!({"messages": stored, "has_more": false})));
}

/// `GET /api/v1/chat/rooms` is paginated: `limit` rooms a page with `has_more` and `next_cursor`;
/// following the cursors gives every room once, in the unpaginated order; the last page has no cursor;
/// a cursor or a limit that is not one is 400.
#[tokio::test]
async fn the_room_list_is_paginated_with_a_cursor() {
    let hub = TestHub::start().await;
    for n in 0..5 {
        create_room(&hub, &format!("room-{n}"), &["u1"]).await;
    }
    say(&hub, "room-2", "u1", "activity moves room-2 first").await;
    let auth = [("authorization", bearer(&hub.jwt("u1")))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ids = |body: &Value| -> Vec<String> {
        body["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .map(|r| r["room_id"].as_str().expect("an id").to_owned())
            .collect()
    };
    let (status, all) = hub.get_json("/api/v1/chat/rooms?limit=200", &auth).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!((&all["has_more"], &all["next_cursor"]), (&json!(false), &Value::Null));
    let all = ids(&all);
    assert_eq!((all.len(), all[0].as_str()), (5, "room-2"), "{all:?}");
    let mut paged = Vec::new();
    let mut path = "/api/v1/chat/rooms?limit=2".to_owned();
    loop {
        let (status, page) = hub.get_json(&path, &auth).await;
        assert_eq!(status, 200, "{page}");
        let rooms = ids(&page);
        assert!(rooms.len() <= 2, "{page}");
        paged.extend(rooms);
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                assert_eq!(page["has_more"], true);
                path = format!("/api/v1/chat/rooms?limit=2&cursor={}", cursor.replace('|', "%7C").replace(':', "%3A"));
            }
            None => break assert_eq!(page["has_more"], false),
        }
    }
    assert_eq!(paged, all);
    for bad in ["?cursor=nonsense", "?limit=0", "?limit=201"] {
        let (status, body) = hub.get_json(&format!("/api/v1/chat/rooms{bad}"), &auth).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}
