//! Tests of the stores: what every store must do, against a temporary SQLite file, or with
//! `RTCTL_TEST_DATABASE_URL` against a PostgreSQL schema of its own (`scripts/ci.sh` runs both); then
//! what only the SQLite store does (pragmas, reopening a file, in-memory databases).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use tempfile::TempDir;

use super::sqlite::MIGRATOR;
use super::test_schema::TestSchema;
use super::*;
use crate::protocol::{ApprovalStatus, now_millis};

fn url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("nested/dir/rtctl.db").display())
}

/// What a test's store lives in, removed when the test ends.
#[allow(dead_code)] // Held for their Drop.
enum TempStore {
    Dir(TempDir),
    Schema(TestSchema),
}

/// The store every behaviour test runs against: PostgreSQL in a fresh schema when
/// `RTCTL_TEST_DATABASE_URL` names a server, else SQLite in a temp dir.
async fn any_store() -> (TempStore, Arc<dyn Store>) {
    let Some(base) = std::env::var("RTCTL_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty()) else {
        let (dir, store) = temp_store().await;
        return (TempStore::Dir(dir), Arc::new(store));
    };
    // Guarded before opening: a failed open still drops the schema.
    let schema = TestSchema::create(&base, "rtctl_unit").await;
    let url = schema.url();
    let guard = TempStore::Schema(schema);
    let store = PostgresStore::open(&url).await.expect("open store");
    (guard, Arc::new(store))
}

async fn temp_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&url(&dir)).await.expect("open store");
    (dir, store)
}

fn note(user_id: &str, title: &str) -> NewNotification {
    NewNotification {
        user_id: user_id.to_owned(),
        title: title.to_owned(),
        message: format!("{title} body"),
        kind: "general".to_owned(),
        data: json!({"k": title}),
        link: None,
    }
}

fn query(limit: u32, before_id: Option<i64>, unread_only: bool) -> NotificationQuery {
    NotificationQuery { limit, before_id, after_id: None, unread_only }
}

async fn room(store: &Arc<dyn Store>, room_id: &str, members: &[&str]) -> Room {
    let new = NewRoom {
        room_id: room_id.to_owned(),
        name: format!("Room {room_id}"),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
    };
    match store.create_room(&new).await.unwrap() {
        Created::Created(room) => room,
        Created::Conflict => panic!("room {room_id} exists"),
    }
}

async fn say(store: &Arc<dyn Store>, room_id: &str, sender_id: &str, content: &str) -> ChatMessage {
    let new = NewChatMessage {
        room_id: room_id.to_owned(),
        sender_id: sender_id.to_owned(),
        content: content.to_owned(),
        attachment_url: None,
    };
    store.insert_message(&new).await.unwrap().expect("room exists")
}

async fn register(store: &Arc<dyn Store>, user_id: &str) -> Created<PendingUser> {
    let new = NewPendingUser { user_id: user_id.to_owned(), email: Some(format!("{user_id}@x.test")), name: None };
    store.register_pending_user(&new).await.unwrap()
}

async fn migration_count(store: &SqliteStore) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&store.pool).await.unwrap()
}

/// A fresh file (in a directory that does not exist yet) gets every migration and the pragmas; reopening
/// it or running the migrator again changes nothing.
#[tokio::test]
async fn migrations_run_once_on_a_fresh_file() {
    let (dir, store) = temp_store().await;
    assert_eq!(migration_count(&store).await, MIGRATOR.iter().count() as i64);
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&store.pool).await.unwrap();
    assert_eq!(journal, "wal");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&store.pool).await.unwrap();
    assert_eq!(foreign_keys, 1);
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&store.pool).await.unwrap();
    assert_eq!(synchronous, 2, "FULL, the durable default");
    store.ping().await.unwrap();
    assert_eq!(store.name(), "sqlite");

    MIGRATOR.run(&store.pool).await.unwrap();
    assert_eq!(migration_count(&store).await, MIGRATOR.iter().count() as i64);
    store.close().await;

    let reopened = SqliteStore::open(&url(&dir)).await.unwrap();
    assert_eq!(migration_count(&reopened).await, MIGRATOR.iter().count() as i64);
}

/// Everything acknowledged is still there after the store is closed and the file reopened (PROTOCOL §6).
#[tokio::test]
async fn data_survives_a_restart() {
    let (dir, sqlite) = temp_store().await;
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let stored = store.insert_notifications(&[note("u1", "a")]).await.unwrap();
    room(&store, "general", &["u1", "u2"]).await;
    let message = say(&store, "general", "u1", "hello").await;
    store.set_read_position("general", "u2", message.id).await.unwrap();
    register(&store, "p1").await;
    register(&store, "p2").await;
    store.decide("p1", DecisionStatus::Approved, None, "admin").await.unwrap();
    store.append_activity(ActivityKind::OrderUpdate, &json!({"order_id": "o1"})).await.unwrap();
    sqlite.close().await;

    let store = SqliteStore::open(&url(&dir)).await.unwrap();
    let page = store.list_notifications("u1", query(50, None, false)).await.unwrap();
    assert_eq!(page.notifications, stored);
    let history =
        store.list_messages("general", MessageQuery { before_id: None, after_id: None, limit: 50 }).await.unwrap();
    assert_eq!(history.messages, vec![message.clone()]);
    assert_eq!(store.get_room("general").await.unwrap().unwrap().members, ["u1", "u2"]);
    let rooms = store.rooms_for_user("u2", false).await.unwrap();
    assert_eq!(rooms[0].unread_count, 0, "the read position survived");
    assert_eq!(store.pending_count().await.unwrap(), 1);
    assert_eq!(store.recent_approvals(10).await.unwrap().len(), 1);
    assert_eq!(store.list_activity(10).await.unwrap().len(), 1);
}

/// Inserted notifications come back with increasing ids, unread, `data` an object and `link` kept.
#[tokio::test]
async fn notifications_are_stored_and_listed_newest_first() {
    let (_temp, store) = any_store().await;
    let mut with_link = note("u1", "b");
    with_link.link = Some("/orders/7".to_owned());
    with_link.data = json!(null);
    let stored = store.insert_notifications(&[note("u1", "a"), with_link, note("u2", "c")]).await.unwrap();
    assert_eq!(stored.len(), 3);
    assert!(stored[0].id < stored[1].id && stored[1].id < stored[2].id);
    assert!(!stored[0].read);
    assert_eq!(stored[0].data, json!({"k": "a"}));
    assert_eq!(stored[1].data, json!({}), "non-objects are stored as {{}}");
    assert!(stored[0].created_at.ends_with('Z') && stored[0].created_at.len() == 24);

    let page = store.list_notifications("u1", query(50, None, false)).await.unwrap();
    assert_eq!(page.notifications, vec![stored[1].clone(), stored[0].clone()]);
    assert_eq!((page.total, page.unread_count), (2, 2));
    assert_eq!(page.notifications[0].link.as_deref(), Some("/orders/7"));
    assert_eq!(store.unread_count("u2").await.unwrap(), 1);
    assert!(store.insert_notifications(&[]).await.unwrap().is_empty());
}

/// Paging backwards with the last id of each page returns every notification exactly once, and the
/// totals always count all of the user's notifications.
#[tokio::test]
async fn notification_pages_return_each_exactly_once() {
    let (_temp, store) = any_store().await;
    let new: Vec<_> = (0..25).map(|i| note("u1", &format!("n{i}"))).collect();
    let stored = store.insert_notifications(&new).await.unwrap();
    for n in stored.iter().step_by(2) {
        store.mark_read("u1", n.id).await.unwrap();
    }

    let mut seen = Vec::new();
    let mut before_id = None;
    loop {
        let page = store.list_notifications("u1", query(10, before_id, false)).await.unwrap();
        assert_eq!((page.total, page.unread_count), (25, 12));
        let Some(last) = page.notifications.last() else {
            break;
        };
        before_id = Some(last.id);
        seen.extend(page.notifications.iter().map(|n| n.id));
    }
    let mut expected: Vec<i64> = stored.iter().map(|n| n.id).collect();
    expected.reverse();
    assert_eq!(seen, expected);

    let unread = store.list_notifications("u1", query(50, None, true)).await.unwrap();
    assert_eq!(unread.notifications.len(), 12);
    assert!(unread.notifications.iter().all(|n| !n.read));
    assert_eq!(unread.total, 25, "total counts all, not only unread");
}

/// mark_read, mark_all_read and delete report exactly what changed, and another user's id is not found.
#[tokio::test]
async fn marking_and_deleting_are_per_user() {
    let (_temp, store) = any_store().await;
    let stored = store
        .insert_notifications(&[note("u1", "a"), note("u1", "b"), note("u1", "c"), note("u2", "d")])
        .await
        .unwrap();
    let (a, b, c, d) = (stored[0].id, stored[1].id, stored[2].id, stored[3].id);

    assert_eq!(store.mark_read("u1", a).await.unwrap(), MarkRead::Marked);
    assert_eq!(store.mark_read("u1", a).await.unwrap(), MarkRead::AlreadyRead);
    assert_eq!(store.mark_read("u1", d).await.unwrap(), MarkRead::NotFound, "u2's notification");
    assert_eq!(store.mark_read("u1", 9999).await.unwrap(), MarkRead::NotFound);
    assert_eq!(store.unread_count("u1").await.unwrap(), 2);
    assert_eq!(store.unread_count("u2").await.unwrap(), 1);

    assert_eq!(store.delete_notification("u2", b).await.unwrap(), Deleted::NotFound);
    assert_eq!(store.delete_notification("u1", b).await.unwrap(), Deleted::Deleted { was_unread: true });
    assert_eq!(store.delete_notification("u1", a).await.unwrap(), Deleted::Deleted { was_unread: false });
    assert_eq!(store.delete_notification("u1", a).await.unwrap(), Deleted::NotFound);

    assert_eq!(store.mark_all_read("u1").await.unwrap(), 1);
    assert_eq!(store.mark_all_read("u1").await.unwrap(), 0);
    assert_eq!(store.unread_count("u1").await.unwrap(), 0);
    assert_eq!(store.unread_count("u2").await.unwrap(), 1, "u2 untouched");
    let page = store.list_notifications("u1", query(50, None, false)).await.unwrap();
    assert_eq!(page.notifications.iter().map(|n| n.id).collect::<Vec<_>>(), [c]);
}

/// Ids are never reused, even after the newest notification is deleted.
#[tokio::test]
async fn deleted_ids_are_not_reused() {
    let (_temp, store) = any_store().await;
    let first = store.insert_notifications(&[note("u1", "a")]).await.unwrap()[0].id;
    store.delete_notification("u1", first).await.unwrap();
    let second = store.insert_notifications(&[note("u1", "b")]).await.unwrap()[0].id;
    assert!(second > first);
}

/// A pending user cannot register twice; a decided one can, and is pending again. The pending list is
/// oldest first.
#[tokio::test]
async fn pending_users_register_once_until_decided() {
    let (_temp, store) = any_store().await;
    let Created::Created(p1) = register(&store, "p1").await else { panic!("p1 registers") };
    assert_eq!((p1.user_id.as_str(), p1.email.as_deref(), p1.name.as_deref()), ("p1", Some("p1@x.test"), None));
    assert_eq!(p1.status, ApprovalStatus::Pending);
    assert_eq!(register(&store, "p1").await, Created::Conflict);
    register(&store, "p2").await;
    assert_eq!(store.pending_count().await.unwrap(), 2);
    let pending = store.pending_users(10).await.unwrap();
    assert_eq!(pending.iter().map(|p| p.user_id.as_str()).collect::<Vec<_>>(), ["p1", "p2"]);
    assert_eq!(pending[0], p1);
    assert_eq!(store.pending_users(1).await.unwrap().len(), 1);

    store.decide("p1", DecisionStatus::Rejected, Some("spam"), "admin").await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 1);
    let Created::Created(again) = register(&store, "p1").await else { panic!("p1 registers again") };
    assert_eq!(again.status, ApprovalStatus::Pending);
    assert_eq!(store.pending_count().await.unwrap(), 2);
    assert_eq!(store.recent_approvals(10).await.unwrap().len(), 1, "the earlier decision is kept");
}

/// A decision is taken once: a second gives AlreadyDecided, an unknown user NotFound; decisions are listed
/// newest first and counted since an instant.
#[tokio::test]
async fn decisions_are_taken_once_and_recorded() {
    let (_temp, store) = any_store().await;
    let start = crate::protocol::now_millis();
    register(&store, "p1").await;
    register(&store, "p2").await;

    let Decision::Decided(first) = store.decide("p1", DecisionStatus::Approved, None, "admin1").await.unwrap() else {
        panic!("p1 is pending")
    };
    assert_eq!((first.user_id.as_str(), first.status, first.reason.as_deref()), ("p1", DecisionStatus::Approved, None));
    assert_eq!(first.decided_by, "admin1");
    assert_eq!(store.decide("p1", DecisionStatus::Rejected, None, "admin2").await.unwrap(), Decision::AlreadyDecided);
    assert_eq!(store.decide("nobody", DecisionStatus::Approved, None, "admin1").await.unwrap(), Decision::NotFound);
    let Decision::Decided(second) = store.decide("p2", DecisionStatus::Rejected, Some("no"), "admin2").await.unwrap()
    else {
        panic!("p2 is pending")
    };

    assert_eq!(store.recent_approvals(10).await.unwrap(), vec![second, first.clone()]);
    assert_eq!(store.recent_approvals(1).await.unwrap().len(), 1);
    assert_eq!(store.decision_counts_since(start).await.unwrap(), DecisionCounts { approved: 1, rejected: 1 });
    let later = crate::protocol::now_millis() + 60_000;
    assert_eq!(store.decision_counts_since(later).await.unwrap(), DecisionCounts::default());
    assert_eq!(serde_json::to_value(&first).unwrap()["status"], "approved");
}

/// Two admins deciding the same user at the same time: exactly one wins, the other sees AlreadyDecided,
/// and one decision is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decisions_have_one_winner() {
    let (_temp, store) = any_store().await;
    for i in 0..20 {
        let user = format!("c{i}");
        register(&store, &user).await;
        let (a, b) = tokio::join!(
            store.decide(&user, DecisionStatus::Approved, None, "admin1"),
            store.decide(&user, DecisionStatus::Rejected, None, "admin2"),
        );
        let outcomes = [a.unwrap(), b.unwrap()];
        let won = outcomes.iter().filter(|o| matches!(o, Decision::Decided(_))).count();
        let lost = outcomes.iter().filter(|o| **o == Decision::AlreadyDecided).count();
        assert_eq!((won, lost), (1, 1), "user {user}: {outcomes:?}");
    }
    assert_eq!(store.recent_approvals(100).await.unwrap().len(), 20);
    assert_eq!(store.pending_count().await.unwrap(), 0);
}

/// The activity feed keeps its entries' kinds and payloads, newest first.
#[tokio::test]
async fn activity_feed_is_newest_first() {
    let (_temp, store) = any_store().await;
    let a = store.append_activity(ActivityKind::NewUser, &json!({"user_id": "p1"})).await.unwrap();
    let b = store.append_activity(ActivityKind::Approval, &json!({"user_id": "p1", "status": "approved"})).await;
    let c = store.append_activity(ActivityKind::OrderUpdate, &json!([1])).await.unwrap();
    assert_eq!(c.data, json!({}));
    assert_eq!(store.list_activity(10).await.unwrap(), vec![c.clone(), b.unwrap(), a]);
    assert_eq!(store.list_activity(1).await.unwrap(), vec![c.clone()]);
    assert_eq!(serde_json::to_value(&c).unwrap()["type"], "order_update");
}

/// Rooms are created once with de-duplicated members in order; unknown rooms are None; membership is
/// exact; an id outside the protocol's alphabet is refused by the schema.
#[tokio::test]
async fn rooms_are_created_once() {
    let (_temp, store) = any_store().await;
    let created = room(&store, "team.eu-1_x", &["u2", "u1", "u2"]).await;
    assert_eq!(created.members, ["u2", "u1"]);
    let again = NewRoom { room_id: "team.eu-1_x".to_owned(), name: "other".to_owned(), members: vec![] };
    assert_eq!(store.create_room(&again).await.unwrap(), Created::Conflict);
    assert_eq!(store.get_room("team.eu-1_x").await.unwrap(), Some(created));
    assert_eq!(store.get_room("nope").await.unwrap(), None);
    assert!(store.is_member("team.eu-1_x", "u1").await.unwrap());
    assert!(!store.is_member("team.eu-1_x", "u3").await.unwrap());
    assert!(!store.is_member("nope", "u1").await.unwrap());

    let bad = NewRoom { room_id: "a/b".to_owned(), name: "bad".to_owned(), members: vec![] };
    assert!(matches!(store.create_room(&bad).await, Err(StoreError::Database(_))));
    assert_eq!(store.get_room("a/b").await.unwrap(), None);
}

/// Paging backwards through a room's history with the first id of each page returns every message exactly
/// once, each page oldest first, with has_more false only on the last.
#[tokio::test]
async fn message_pages_return_each_exactly_once() {
    let (_temp, store) = any_store().await;
    room(&store, "r1", &["u1"]).await;
    room(&store, "r2", &["u1"]).await;
    let mut sent = Vec::new();
    for i in 0..23 {
        sent.push(say(&store, "r1", "u1", &format!("m{i}")).await.id);
        say(&store, "r2", "u1", "elsewhere").await;
    }

    let mut seen = Vec::new();
    let mut before_id = None;
    loop {
        let page = store.list_messages("r1", MessageQuery { before_id, after_id: None, limit: 5 }).await.unwrap();
        let ids: Vec<i64> = page.messages.iter().map(|m| m.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first");
        assert!(page.messages.iter().all(|m| m.room_id == "r1"));
        seen.splice(0..0, ids);
        before_id = page.messages.first().map(|m| m.id);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen, sent);

    let exact = store.list_messages("r1", MessageQuery { before_id: None, after_id: None, limit: 23 }).await.unwrap();
    assert_eq!((exact.messages.len(), exact.has_more), (23, false));
    let empty = store.list_messages("nope", MessageQuery { before_id: None, after_id: None, limit: 50 }).await.unwrap();
    assert_eq!(empty, MessagePage { messages: vec![], has_more: false });
}

/// A message is stored with its attachment; a message to a room that does not exist is not.
#[tokio::test]
async fn messages_need_an_existing_room() {
    let (_temp, store) = any_store().await;
    room(&store, "r1", &["u1"]).await;
    let new = NewChatMessage {
        room_id: "r1".to_owned(),
        sender_id: "u1".to_owned(),
        content: "see file".to_owned(),
        attachment_url: Some("https://files.test/a.png".to_owned()),
    };
    let stored = store.insert_message(&new).await.unwrap().unwrap();
    let page = store.list_messages("r1", MessageQuery { before_id: None, after_id: None, limit: 50 }).await.unwrap();
    assert_eq!(page.messages, vec![stored]);
    let lost = NewChatMessage { room_id: "nope".to_owned(), ..new };
    assert_eq!(store.insert_message(&lost).await.unwrap(), None);
}

/// The read position only moves forward; a message of another room or an unknown id is NotFound.
#[tokio::test]
async fn read_position_never_moves_backwards() {
    let (_temp, store) = any_store().await;
    room(&store, "r1", &["u1", "u2"]).await;
    room(&store, "r2", &["u1"]).await;
    let m1 = say(&store, "r1", "u1", "one").await.id;
    let m2 = say(&store, "r1", "u1", "two").await.id;
    let other = say(&store, "r2", "u1", "elsewhere").await.id;

    let ReadUpdate::Moved(at_m2) = store.set_read_position("r1", "u2", m2).await.unwrap() else {
        panic!("first receipt moves")
    };
    assert_eq!(at_m2.message_id, m2);
    assert_eq!(store.set_read_position("r1", "u2", m1).await.unwrap(), ReadUpdate::Unchanged(at_m2.clone()));
    assert_eq!(store.set_read_position("r1", "u2", m2).await.unwrap(), ReadUpdate::Unchanged(at_m2));
    assert_eq!(store.set_read_position("r1", "u2", other).await.unwrap(), ReadUpdate::NotFound);
    assert_eq!(store.set_read_position("r1", "u2", 9999).await.unwrap(), ReadUpdate::NotFound);
    assert!(
        matches!(store.set_read_position("r1", "u1", m1).await.unwrap(), ReadUpdate::Moved(p) if p.message_id == m1)
    );
    let m3 = say(&store, "r1", "u1", "three").await.id;
    assert!(
        matches!(store.set_read_position("r1", "u1", m3).await.unwrap(), ReadUpdate::Moved(p) if p.message_id == m3)
    );
}

/// Pages of a user's rooms, cut by the store after a cursor, follow one another: at most `limit` rooms
/// each, together the full list in its order, none repeated or skipped, none of another user's.
#[tokio::test]
async fn room_pages_cut_by_the_store_make_the_full_list() {
    let (_temp, store) = any_store().await;
    for id in ["r5", "r3", "r1", "r4", "r2"] {
        room(&store, id, &["u1", "u2"]).await;
    }
    room(&store, "other", &["u2"]).await;
    say(&store, "r1", "u2", "hi").await;
    let all: Vec<String> =
        store.rooms_for_user("u1", false).await.unwrap().into_iter().map(|r| r.room.room_id).collect();
    assert_eq!((all.len(), all[0].as_str()), (5, "r1"), "{all:?}");
    let (mut paged, mut after) = (Vec::new(), None);
    loop {
        let page = store.room_page("u1", false, &RoomQuery { after: after.clone(), limit: Some(2) }).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        let activity = last.last_message.as_ref().map_or(&last.room.created_at, |m| &m.created_at);
        let activity = chrono::DateTime::parse_from_rfc3339(activity).unwrap().timestamp_millis();
        after = Some((activity, last.room.room_id.clone()));
        assert!(page.iter().all(|r| r.room.members == ["u1", "u2"]), "members of the page's rooms");
        paged.extend(page.into_iter().map(|r| r.room.room_id));
    }
    assert_eq!(paged, all);
}

/// A user's room list holds the rooms they belong to (staff: all), each with its last message and the
/// number of messages others sent after the user's read position.
#[tokio::test]
async fn room_list_has_last_message_and_unread_count() {
    let (_temp, store) = any_store().await;
    room(&store, "quiet", &["u1"]).await;
    room(&store, "busy", &["u1", "u2"]).await;
    room(&store, "private", &["u3"]).await;
    let b1 = say(&store, "busy", "u2", "hi").await;
    say(&store, "busy", "u1", "hey").await;
    let b3 = say(&store, "busy", "u2", "news").await;

    let rooms = store.rooms_for_user("u1", false).await.unwrap();
    let ids: Vec<&str> = rooms.iter().map(|r| r.room.room_id.as_str()).collect();
    assert_eq!(ids, ["busy", "quiet"], "most recently active first, no foreign rooms");
    assert_eq!(rooms[0].last_message.as_ref(), Some(&b3));
    assert_eq!(rooms[0].unread_count, 2, "u1's own message is not unread");
    assert_eq!(rooms[0].room.members, ["u1", "u2"]);
    assert_eq!((rooms[1].last_message.as_ref(), rooms[1].unread_count), (None, 0));

    store.set_read_position("busy", "u1", b1.id).await.unwrap();
    assert_eq!(store.rooms_for_user("u1", false).await.unwrap()[0].unread_count, 1);
    store.set_read_position("busy", "u1", b3.id).await.unwrap();
    assert_eq!(store.rooms_for_user("u1", false).await.unwrap()[0].unread_count, 0);
    assert_eq!(store.rooms_for_user("u2", false).await.unwrap()[0].unread_count, 1, "only u1's message");

    let staff = store.rooms_for_user("admin", true).await.unwrap();
    let ids: HashSet<&str> = staff.iter().map(|r| r.room.room_id.as_str()).collect();
    assert_eq!(ids, HashSet::from(["quiet", "busy", "private"]));
    assert_eq!(staff.iter().find(|r| r.room.room_id == "private").unwrap().room.members, ["u3"]);
    assert!(store.rooms_for_user("stranger", false).await.unwrap().is_empty());

    let wire = serde_json::to_value(&rooms[1]).unwrap();
    assert_eq!(wire["room_id"], "quiet");
    assert_eq!(wire["last_message"], json!(null));
    assert_eq!(wire["unread_count"], 0);
}

/// `database_pool` reaches the pool: a store opened with 3 connections has 3 at most.
#[tokio::test]
async fn the_pool_size_is_the_one_asked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_with(&url(&dir), 3, super::SqliteSync::Normal).await.expect("open store");
    assert_eq!(store.pool.options().get_max_connections(), 3);
    let default = SqliteStore::open(&url(&dir)).await.expect("reopen");
    assert_eq!(default.pool.options().get_max_connections(), super::sqlite::POOL_SIZE);
}

/// `sqlite_synchronous` reaches every connection: FULL (2) by default, NORMAL (1) when asked.
#[tokio::test]
async fn sqlite_commits_are_synced_fully_unless_asked_otherwise() {
    let dir = tempfile::tempdir().expect("temp dir");
    let synchronous = |store: SqliteStore| async move {
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&store.pool).await.expect("pragma");
        level
    };
    assert_eq!(synchronous(SqliteStore::open(&url(&dir)).await.expect("open")).await, 2);
    let normal = SqliteStore::open_with(&url(&dir), 2, super::SqliteSync::Normal).await.expect("open");
    assert_eq!(synchronous(normal).await, 1);
}

/// The stream log's appends go through a connection of their own at NORMAL (they are on every event's
/// publish path), whatever the store's setting; what they append is read back through the pool.
#[tokio::test]
async fn stream_log_appends_are_not_synced_one_by_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&url(&dir)).await.expect("open");
    let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&store.log).await.expect("pragma");
    assert_eq!(level, 1);
    assert_eq!(store.log.options().get_max_connections(), 1);
    let render: super::RenderEvent<'_> = &|seq, epoch| format!("{seq}@{epoch}");
    let first = store.append_event("org:a", render).await.expect("append");
    let second = store.append_event("org:a", render).await.expect("append");
    assert_eq!((first.seq, second.seq), (1, 2));
    let events = store.events_after("org:a", 0, 0, 10).await.expect("read");
    assert_eq!(events.iter().map(|event| event.frame.clone()).collect::<Vec<_>>(), [first.frame, second.frame]);
}

/// An in-memory URL works too: its single connection keeps the one database alive.
#[tokio::test]
async fn in_memory_database_keeps_its_data() {
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    store.insert_notifications(&[note("u1", "a")]).await.unwrap();
    assert_eq!(store.unread_count("u1").await.unwrap(), 1);
}

/// Positions: a stream starts at seq 0 with an epoch of its own, each append takes the next seq and
/// logs the frame its render made for it; `events_after` reads the log from a position and by age,
/// and pruning keeps the last `keep` of each stream (and the positions).
#[tokio::test]
async fn stream_logs_give_positions_and_prune() {
    let (_guard, store) = any_store().await;
    let head = store.stream_head("org:a").await.unwrap();
    assert_eq!(head.last_seq, 0);
    assert_eq!(store.stream_head("org:a").await.unwrap(), head, "reading a stream again changes nothing");
    let render = |seq: i64, epoch: &str| format!("{{\"seq\":{seq},\"epoch\":\"{epoch}\"}}");
    for seq in 1..=5 {
        let appended = store.append_event("org:a", &render).await.unwrap();
        assert_eq!((appended.seq, &appended.epoch), (seq, &head.epoch));
        assert_eq!(appended.frame, render(seq, &head.epoch));
    }
    let other = store.append_event("org:b", &render).await.unwrap();
    assert_eq!(other.seq, 1);
    assert_ne!(other.epoch, head.epoch, "every stream has its own epoch");
    let after = store.events_after("org:a", 2, 0, 100).await.unwrap();
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(after[0].frame, render(3, &head.epoch));
    assert_eq!(store.events_after("org:a", 0, 0, 2).await.unwrap().len(), 2);
    assert!(store.events_after("org:a", 0, now_millis() + 60_000, 100).await.unwrap().is_empty());

    assert_eq!(store.prune_events(2, 0).await.unwrap(), 3, "org:a keeps 4 and 5; org:b keeps its one");
    let kept = store.events_after("org:a", 0, 0, 100).await.unwrap();
    assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(store.stream_head("org:a").await.unwrap().last_seq, 5, "positions survive pruning");
    assert_eq!(store.prune_events(2, now_millis() + 60_000).await.unwrap(), 3, "by age: everything older");
    assert_eq!(store.append_event("org:a", &render).await.unwrap().seq, 6);
}

/// A batch takes consecutive positions in one append, oldest first, each frame rendered for its own
/// position; an empty batch takes none, and the largest one (`MAX_APPEND`) goes in whole.
#[tokio::test]
async fn a_batch_of_appends_takes_consecutive_positions() {
    let (_guard, store) = any_store().await;
    let render = |i: usize, seq: i64, epoch: &str| format!("{i}:{seq}@{epoch}");
    let first = store.append_events("org:a", 3, &render).await.unwrap();
    let epoch = first[0].epoch.clone();
    let got: Vec<_> = first.iter().map(|e| (e.seq, e.epoch.as_str(), e.frame.as_str())).collect();
    let (a, b, c) = (format!("0:1@{epoch}"), format!("1:2@{epoch}"), format!("2:3@{epoch}"));
    assert_eq!(got, [(1, epoch.as_str(), a.as_str()), (2, &epoch, &b), (3, &epoch, &c)]);
    assert!(store.append_events("org:a", 0, &render).await.unwrap().is_empty());
    assert_eq!(store.append_event("org:a", &|seq, _| seq.to_string()).await.unwrap().seq, 4);
    let big = store.append_events("org:a", super::MAX_APPEND, &render).await.unwrap();
    let last = 4 + super::MAX_APPEND as i64;
    assert_eq!(big.iter().map(|e| e.seq).collect::<Vec<_>>(), (5..=last).collect::<Vec<_>>());
    assert_eq!(store.stream_head("org:a").await.unwrap().last_seq, last);
    let logged = store.events_after("org:a", 0, 0, 1_000).await.unwrap();
    assert_eq!(logged.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=last).collect::<Vec<_>>());
    assert_eq!(logged[4].frame, format!("0:5@{epoch}"));
    assert_eq!(logged.last().unwrap().frame, format!("{}:{last}@{epoch}", super::MAX_APPEND - 1));
}
