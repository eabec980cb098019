//! The embedded SQLite store: one database file, WAL journal, migrations embedded in the binary.

use std::os::unix::fs::OpenOptionsExt;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};

use super::{Appended, LoggedEvent, RenderBatch, StreamHead, batch_rows};
use super::{
    Created, Decision, DecisionCounts, Deleted, IdempotencyClaim, MarkRead, MessageQuery, NewChatMessage,
    NewNotification, NewPendingUser, NewRoom, NotificationQuery, ReadPosition, ReadUpdate, RoomQuery, SqliteSync,
    Store, StoreError, column, idempotency_claim, json_object, object_text,
};
use crate::protocol::{
    Activity, ActivityKind, Approval, ChatMessage, DecisionStatus, MessagePage, Notification, NotificationPage,
    PendingUser, Room, RoomSummary, format_timestamp, now_millis,
};

/// The schema, compiled into the binary so that `rtctl serve` needs no files besides its database.
pub(super) static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLite lets one writer in at a time whatever the pool size, while WAL lets readers run beside it.
/// Eight connections keep the hub's reads (history, lists, counts) from queueing behind a write,
/// and stay far below the file-descriptor and memory budget of a small node.
pub const POOL_SIZE: u32 = 8;

/// How long a write waits for the write lock before failing with "database is locked". Writes are
/// single short statements or small transactions, so waiting this long means the disk is stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The hub's state in a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// One connection at `synchronous = NORMAL` for the stream log's appends (the pool itself, for an
    /// in-memory database): the log lets a reconnecting client catch up and is written on every
    /// event's publish path, where a sync per event added about half a millisecond to each delivery. NORMAL in WAL mode survives a crash or kill -9; only a power loss may take the last
    /// appends (the next FULL commit or checkpoint syncs them). docs/design.md has the trade-off.
    pub(super) log: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it and its directory if missing) the database at `url` (`sqlite://PATH`) and
    /// runs the migrations that it has not seen yet.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, POOL_SIZE, SqliteSync::default()).await
    }

    /// As [`SqliteStore::open`], with `pool` connections at most (an in-memory database keeps one).
    pub async fn open_with(url: &str, pool_size: u32, sync: SqliteSync) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL by default: an acknowledged write survives a power loss too. NORMAL (a setting)
            // fsyncs at checkpoints only and may lose the last commits to a power loss, never consistency.
            .synchronous(match sync {
                SqliteSync::Full => SqliteSynchronous::Full,
                SqliteSync::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory
            && let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            // Private, as rtctl.toml is: the store holds every user's notifications and messages.
            let mut builder = std::fs::DirBuilder::new();
            std::os::unix::fs::DirBuilderExt::mode(builder.recursive(true), 0o700);
            builder.create(dir).map_err(|cause| StoreError::CreateDir { path: dir.to_owned(), cause })?;
        }
        if !in_memory {
            // Created here, readable by its owner only, before SQLite would create it 0644 (its WAL
            // and shared-memory files take the database file's mode).
            let created =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(options.get_filename());
            if let Err(cause) = created
                && cause.kind() != std::io::ErrorKind::AlreadyExists
            {
                return Err(StoreError::CreateFile { path: options.get_filename().to_owned(), cause });
            }
        }
        // Nodes sharing the file (started together) must not run the migrations at the same time:
        // SQLite has no advisory lock for sqlx to take, so the second would find half-made tables.
        let _migrating = if in_memory { None } else { Some(lock_file(options.get_filename()).await?) };
        let mut pool = SqlitePoolOptions::new().max_connections(pool_size);
        if in_memory {
            // An in-memory database (tests, throwaway runs) lives only while a connection to it is
            // open: keep exactly one, forever.
            pool = pool.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        let pool = pool.connect_with(options.clone()).await?;
        MIGRATOR.run(&pool).await?;
        let log = if in_memory {
            pool.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.synchronous(SqliteSynchronous::Normal))
                .await?
        };
        Ok(Self { pool, log })
    }

    /// Closes every connection, checkpointing the WAL into the database file.
    pub async fn close(&self) {
        self.log.close().await;
        self.pool.close().await;
    }
}

/// Holds an exclusive lock on `{database}.lock` until dropped: one opener at a time on this machine.
async fn lock_file(database: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let mut path = database.as_os_str().to_owned();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
    let locked = tokio::task::spawn_blocking({
        let path = path.clone();
        move || -> std::io::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            file.lock()?;
            Ok(file)
        }
    })
    .await
    .map_err(|e| StoreError::Lock { path: path.clone(), cause: std::io::Error::other(e) })?;
    locked.map_err(|cause| StoreError::Lock { path, cause })
}

/// Writes start with `BEGIN IMMEDIATE`: a deferred transaction that reads first and then writes can
/// fail at once with SQLITE_BUSY when another writer got in between, without waiting for the lock.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// A page size as SQLite's integer.
fn limit(limit: u32) -> i64 {
    i64::from(limit)
}

super::row_mappers!(SqliteRow);

#[async_trait]
impl Store for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_notifications(&self, new: &[NewNotification]) -> Result<Vec<Notification>, StoreError> {
        let created_at = now_millis();
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let mut stored = Vec::with_capacity(new.len());
        for n in new {
            let data = object_text(&n.data);
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO notifications (user_id, title, message, type, created_at, data, link)
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(&n.user_id)
            .bind(&n.title)
            .bind(&n.message)
            .bind(&n.kind)
            .bind(created_at)
            .bind(&data)
            .bind(&n.link)
            .fetch_one(&mut *tx)
            .await?;
            stored.push(Notification {
                id,
                title: n.title.clone(),
                message: n.message.clone(),
                kind: n.kind.clone(),
                read: false,
                created_at: format_timestamp(created_at),
                data: json_object(&data),
                link: n.link.clone(),
            });
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn list_notifications(
        &self,
        user_id: &str,
        query: NotificationQuery,
    ) -> Result<NotificationPage, StoreError> {
        // Two fixed statements rather than `(? OR read = 0)`, so the planner can use the partial
        // unread index; `id < i64::MAX` instead of `? IS NULL OR` keeps the range scan on the index.
        // After an id (catching up): the oldest first; otherwise the newest first, below an id.
        let sql = match (query.after_id.is_some(), query.unread_only) {
            (false, true) => {
                "SELECT id, title, message, type, read, created_at, data, link FROM notifications
             WHERE user_id = ? AND id < ? AND read = 0 ORDER BY id DESC LIMIT ?"
            }
            (false, false) => {
                "SELECT id, title, message, type, read, created_at, data, link FROM notifications
             WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
            }
            (true, true) => {
                "SELECT id, title, message, type, read, created_at, data, link FROM notifications
             WHERE user_id = ? AND id > ? AND read = 0 ORDER BY id LIMIT ?"
            }
            (true, false) => {
                "SELECT id, title, message, type, read, created_at, data, link FROM notifications
             WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?"
            }
        };
        // One read transaction: in WAL mode it is a snapshot, so the totals match the page.
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(sql)
            .bind(user_id)
            .bind(query.after_id.or(query.before_id).unwrap_or(i64::MAX))
            .bind(limit(query.limit))
            .fetch_all(&mut *tx)
            .await?;
        let notifications = rows.iter().map(notification).collect::<Result<Vec<_>, _>>()?;
        let (total, unread_count): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(read = 0), 0) FROM notifications WHERE user_id = ?")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(NotificationPage { notifications, total, unread_count })
    }

    async fn unread_count(&self, user_id: &str) -> Result<i64, StoreError> {
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE user_id = ? AND read = 0")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }

    async fn mark_read(&self, user_id: &str, id: i64) -> Result<MarkRead, StoreError> {
        let changed = sqlx::query("UPDATE notifications SET read = 1 WHERE id = ? AND user_id = ? AND read = 0")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if changed > 0 {
            return Ok(MarkRead::Marked);
        }
        // Notifications are never marked unread again, so a row found now was read before.
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM notifications WHERE id = ? AND user_id = ?)")
                .bind(id)
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(if exists { MarkRead::AlreadyRead } else { MarkRead::NotFound })
    }

    async fn mark_all_read(&self, user_id: &str) -> Result<u64, StoreError> {
        let changed = sqlx::query("UPDATE notifications SET read = 1 WHERE user_id = ? AND read = 0")
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(changed)
    }

    async fn delete_notification(&self, user_id: &str, id: i64) -> Result<Deleted, StoreError> {
        let read: Option<bool> =
            sqlx::query_scalar("DELETE FROM notifications WHERE id = ? AND user_id = ? RETURNING read")
                .bind(id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match read {
            Some(read) => Deleted::Deleted { was_unread: !read },
            None => Deleted::NotFound,
        })
    }

    async fn register_pending_user(&self, new: &NewPendingUser) -> Result<Created<PendingUser>, StoreError> {
        // One statement: the upsert only overwrites a decided user, so two concurrent registrations
        // of the same id cannot both succeed.
        let row = sqlx::query(
            "INSERT INTO pending_users (user_id, email, name, registered_at, status)
             VALUES (?, ?, ?, ?, 'pending')
             ON CONFLICT (user_id) DO UPDATE SET
                 email = excluded.email, name = excluded.name,
                 registered_at = excluded.registered_at, status = 'pending'
             WHERE pending_users.status <> 'pending'
             RETURNING user_id, email, name, registered_at, status",
        )
        .bind(&new.user_id)
        .bind(&new.email)
        .bind(&new.name)
        .bind(now_millis())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => Created::Created(pending_user(&row)?),
            None => Created::Conflict,
        })
    }

    async fn decide(
        &self,
        user_id: &str,
        decision: DecisionStatus,
        reason: Option<&str>,
        decided_by: &str,
    ) -> Result<Decision, StoreError> {
        let status: &str = decision.into();
        let decided_at = now_millis();
        // The write lock is taken before the pending row is looked at, and the update only matches a
        // pending row: of two concurrent decisions the second sees the first one's status.
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let changed = sqlx::query("UPDATE pending_users SET status = ? WHERE user_id = ? AND status = 'pending'")
            .bind(status)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pending_users WHERE user_id = ?)")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
            tx.rollback().await?;
            return Ok(if exists { Decision::AlreadyDecided } else { Decision::NotFound });
        }
        sqlx::query("INSERT INTO approvals (user_id, status, reason, decided_by, decided_at) VALUES (?, ?, ?, ?, ?)")
            .bind(user_id)
            .bind(status)
            .bind(reason)
            .bind(decided_by)
            .bind(decided_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Decision::Decided(Approval {
            user_id: user_id.to_owned(),
            status: decision,
            reason: reason.map(str::to_owned),
            decided_by: decided_by.to_owned(),
            decided_at: format_timestamp(decided_at),
        }))
    }

    async fn pending_users(&self, limit: u32) -> Result<Vec<PendingUser>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id, email, name, registered_at, status FROM pending_users
             WHERE status = 'pending' ORDER BY registered_at, rowid LIMIT ?",
        )
        .bind(self::limit(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(pending_user).collect::<Result<_, _>>()?)
    }

    async fn pending_count(&self) -> Result<i64, StoreError> {
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM pending_users WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }

    async fn recent_approvals(&self, limit: u32) -> Result<Vec<Approval>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id, status, reason, decided_by, decided_at FROM approvals ORDER BY id DESC LIMIT ?",
        )
        .bind(self::limit(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(approval).collect::<Result<_, _>>()?)
    }

    async fn decision_counts_since(&self, since_millis: i64) -> Result<DecisionCounts, StoreError> {
        let (approved, rejected): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(status = 'approved'), 0), COALESCE(SUM(status = 'rejected'), 0)
             FROM approvals WHERE decided_at >= ?",
        )
        .bind(since_millis)
        .fetch_one(&self.pool)
        .await?;
        Ok(DecisionCounts { approved, rejected })
    }

    async fn append_activity(&self, kind: ActivityKind, data: &Value) -> Result<Activity, StoreError> {
        let created_at = now_millis();
        let data = object_text(data);
        let id: i64 =
            sqlx::query_scalar("INSERT INTO admin_activity (kind, data, created_at) VALUES (?, ?, ?) RETURNING id")
                .bind(<&str>::from(kind))
                .bind(&data)
                .bind(created_at)
                .fetch_one(&self.pool)
                .await?;
        Ok(Activity { id, kind, data: json_object(&data), created_at: format_timestamp(created_at) })
    }

    async fn list_activity(&self, limit: u32) -> Result<Vec<Activity>, StoreError> {
        let rows = sqlx::query("SELECT id, kind, data, created_at FROM admin_activity ORDER BY id DESC LIMIT ?")
            .bind(self::limit(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(activity).collect::<Result<_, _>>()?)
    }

    async fn create_room(&self, new: &NewRoom) -> Result<Created<Room>, StoreError> {
        let created_at = now_millis();
        let mut members: Vec<String> = Vec::with_capacity(new.members.len());
        for member in &new.members {
            if !members.contains(member) {
                members.push(member.clone());
            }
        }
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let inserted = sqlx::query(
            "INSERT INTO chat_rooms (room_id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (room_id) DO NOTHING",
        )
        .bind(&new.room_id)
        .bind(&new.name)
        .bind(created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(Created::Conflict);
        }
        for member in &members {
            sqlx::query("INSERT INTO chat_members (room_id, user_id) VALUES (?, ?)")
                .bind(&new.room_id)
                .bind(member)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Created::Created(Room {
            room_id: new.room_id.clone(),
            name: new.name.clone(),
            members,
            created_at: format_timestamp(created_at),
        }))
    }

    async fn get_room(&self, room_id: &str) -> Result<Option<Room>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(String, i64)> = sqlx::query_as("SELECT name, created_at FROM chat_rooms WHERE room_id = ?")
            .bind(room_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((name, created_at)) = row else {
            // Ended now, not when the connection is next used.
            tx.commit().await?;
            return Ok(None);
        };
        let members = sqlx::query_scalar("SELECT user_id FROM chat_members WHERE room_id = ? ORDER BY rowid")
            .bind(room_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(Room { room_id: room_id.to_owned(), name, members, created_at: format_timestamp(created_at) }))
    }

    async fn is_member(&self, room_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let member = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM chat_members WHERE room_id = ? AND user_id = ?)")
            .bind(room_id)
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(member)
    }

    async fn room_page(
        &self,
        user_id: &str,
        is_staff: bool,
        query: &RoomQuery,
    ) -> Result<Vec<RoomSummary>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The last message is the room's highest id, found through the (room_id, id) index; unread
        // messages are counted from the read position up, also along that index.
        // The unread count is computed for the page's rooms only: the cursor and the limit apply to
        // the rooms with their activity, before the outer select's subquery runs.
        let (after_activity, after_room) = query.after.clone().unzip();
        let rows = sqlx::query(
            "SELECT p.*,
                    (SELECT COUNT(*) FROM chat_messages u
                      WHERE u.room_id = p.r_room_id AND u.sender_id <> ?1
                        AND u.id > COALESCE((SELECT rp.message_id FROM chat_read_positions rp
                                              WHERE rp.room_id = p.r_room_id AND rp.user_id = ?1), 0)) AS unread
             FROM (SELECT r.room_id AS r_room_id, r.name AS r_name, r.created_at AS r_created_at,
                          COALESCE(m.created_at, r.created_at) AS activity,
                          m.id, m.room_id, m.sender_id, m.content, m.attachment_url, m.created_at
                   FROM chat_rooms r
                   LEFT JOIN chat_messages m
                          ON m.id = (SELECT MAX(l.id) FROM chat_messages l WHERE l.room_id = r.room_id)
                   WHERE ?2 OR EXISTS (SELECT 1 FROM chat_members c WHERE c.room_id = r.room_id AND c.user_id = ?1)
                  ) p
             WHERE ?3 IS NULL OR p.activity < ?3 OR (p.activity = ?3 AND p.r_room_id > ?4)
             ORDER BY p.activity DESC, p.r_room_id
             LIMIT ?5",
        )
        .bind(user_id)
        .bind(is_staff)
        .bind(after_activity)
        .bind(after_room)
        .bind(query.limit.map_or(-1, i64::from))
        .fetch_all(&mut *tx)
        .await?;
        let page: Vec<String> = rows.iter().map(|row| row.try_get("r_room_id")).collect::<Result<_, _>>()?;
        let members: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.room_id, c.user_id FROM chat_members c
             WHERE c.room_id IN (SELECT value FROM json_each(?1))
             ORDER BY c.rowid",
        )
        .bind(serde_json::to_string(&page).expect("strings serialize"))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;

        let mut rooms = Vec::with_capacity(rows.len());
        for row in &rows {
            let room_id: String = row.try_get("r_room_id")?;
            let last_message = match row.try_get::<Option<i64>, _>("id")? {
                Some(_) => Some(chat_message(row)?),
                None => None,
            };
            let members = members.iter().filter(|(room, _)| *room == room_id).map(|(_, user)| user.clone()).collect();
            rooms.push(RoomSummary {
                room: Room {
                    room_id,
                    name: row.try_get("r_name")?,
                    members,
                    created_at: format_timestamp(row.try_get("r_created_at")?),
                },
                last_message,
                unread_count: row.try_get("unread")?,
            });
        }
        Ok(rooms)
    }

    async fn insert_message(&self, new: &NewChatMessage) -> Result<Option<ChatMessage>, StoreError> {
        let created_at = now_millis();
        // INSERT ... SELECT ... WHERE EXISTS: a missing room inserts nothing instead of failing on the
        // foreign key, so the caller gets a `None` to answer rather than a database error.
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO chat_messages (room_id, sender_id, content, attachment_url, created_at)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM chat_rooms WHERE room_id = ?1)
             RETURNING id",
        )
        .bind(&new.room_id)
        .bind(&new.sender_id)
        .bind(&new.content)
        .bind(&new.attachment_url)
        .bind(created_at)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.map(|id| ChatMessage {
            id,
            room_id: new.room_id.clone(),
            sender_id: new.sender_id.clone(),
            content: new.content.clone(),
            attachment_url: new.attachment_url.clone(),
            created_at: format_timestamp(created_at),
        }))
    }

    async fn list_messages(&self, room_id: &str, query: MessageQuery) -> Result<MessagePage, StoreError> {
        // One row more than asked says whether an older page exists.
        // After an id (catching up): the oldest first, and `has_more` says newer ones are left.
        let sql = if query.after_id.is_some() {
            "SELECT id, room_id, sender_id, content, attachment_url, created_at FROM chat_messages
             WHERE room_id = ? AND id > ? ORDER BY id LIMIT ?"
        } else {
            "SELECT id, room_id, sender_id, content, attachment_url, created_at FROM chat_messages
             WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
        };
        let rows = sqlx::query(sql)
            .bind(room_id)
            .bind(query.after_id.or(query.before_id).unwrap_or(i64::MAX))
            .bind(limit(query.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let wanted = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let has_more = rows.len() > wanted;
        let mut messages = rows.iter().take(wanted).map(chat_message).collect::<Result<Vec<_>, _>>()?;
        if query.after_id.is_none() {
            messages.reverse();
        }
        Ok(MessagePage { messages, has_more })
    }

    async fn set_read_position(&self, room_id: &str, user_id: &str, message_id: i64) -> Result<ReadUpdate, StoreError> {
        let read_at = now_millis();
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        // Inserts or moves the position only when the message is in this room and past the stored
        // position; the WHERE in the SELECT also keeps SQLite from reading ON CONFLICT as a join.
        let moved = sqlx::query(
            "INSERT INTO chat_read_positions (room_id, user_id, message_id, read_at)
             SELECT room_id, ?2, id, ?4 FROM chat_messages WHERE id = ?3 AND room_id = ?1
             ON CONFLICT (room_id, user_id) DO UPDATE
                 SET message_id = excluded.message_id, read_at = excluded.read_at
                 WHERE excluded.message_id > chat_read_positions.message_id",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(message_id)
        .bind(read_at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !moved {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM chat_messages WHERE id = ? AND room_id = ?)")
                    .bind(message_id)
                    .bind(room_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if !exists {
                tx.rollback().await?;
                return Ok(ReadUpdate::NotFound);
            }
        }
        let (message_id, read_at): (i64, i64) =
            sqlx::query_as("SELECT message_id, read_at FROM chat_read_positions WHERE room_id = ? AND user_id = ?")
                .bind(room_id)
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        let position = ReadPosition { message_id, read_at: format_timestamp(read_at) };
        Ok(if moved { ReadUpdate::Moved(position) } else { ReadUpdate::Unchanged(position) })
    }

    async fn append_events(
        &self,
        stream: &str,
        count: usize,
        render: RenderBatch<'_>,
    ) -> Result<Vec<Appended>, StoreError> {
        let Some(rows) = batch_rows(count) else { return Ok(Vec::new()) };
        let created_at = now_millis();
        let mut tx = self.log.begin_with(BEGIN_WRITE).await?;
        // The upsert takes the stream row's lock until commit: the next append, on any node, waits.
        let (last_seq, epoch): (i64, String) = sqlx::query_as(
            "INSERT INTO streams (stream, epoch, last_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (stream) DO UPDATE SET last_seq = streams.last_seq + ?3
             RETURNING last_seq, epoch",
        )
        .bind(stream)
        .bind(super::new_epoch())
        .bind(rows)
        .fetch_one(&mut *tx)
        .await?;
        let appended = super::render_batch(last_seq, count, &epoch, render);
        // One statement for the batch: a round trip to SQLite's thread per row would cost more than the row.
        let mut insert = sqlx::QueryBuilder::new("INSERT INTO stream_events (stream, seq, frame, created_at) ");
        insert.push_values(&appended, |mut row, event| {
            row.push_bind(stream).push_bind(event.seq).push_bind(&event.frame).push_bind(created_at);
        });
        insert.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(appended)
    }

    async fn stream_head(&self, stream: &str) -> Result<StreamHead, StoreError> {
        // Read first: every connection asks, and only a stream's first one needs to write.
        let select = "SELECT epoch, last_seq FROM streams WHERE stream = ?1";
        if let Some((epoch, last_seq)) = sqlx::query_as(select).bind(stream).fetch_optional(&self.pool).await? {
            return Ok(StreamHead { epoch, last_seq });
        }
        sqlx::query("INSERT INTO streams (stream, epoch, last_seq) VALUES (?1, ?2, 0) ON CONFLICT (stream) DO NOTHING")
            .bind(stream)
            .bind(super::new_epoch())
            .execute(&self.pool)
            .await?;
        let (epoch, last_seq) = sqlx::query_as(select).bind(stream).fetch_one(&self.pool).await?;
        Ok(StreamHead { epoch, last_seq })
    }

    async fn events_after(
        &self,
        stream: &str,
        after_seq: i64,
        since_millis: i64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, frame FROM stream_events WHERE stream = ?1 AND seq > ?2 AND created_at >= ?3
             ORDER BY seq LIMIT ?4",
        )
        .bind(stream)
        .bind(after_seq)
        .bind(since_millis)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(seq, frame)| LoggedEvent { seq, frame }).collect())
    }

    async fn prune_events(&self, keep: u32, before_millis: i64) -> Result<u64, StoreError> {
        let pruned = sqlx::query(
            "DELETE FROM stream_events WHERE created_at < ?2
                OR seq <= (SELECT last_seq FROM streams WHERE streams.stream = stream_events.stream) - ?1",
        )
        .bind(i64::from(keep))
        .bind(before_millis)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(pruned)
    }

    async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        expired_before: i64,
        abandoned_before: i64,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2
             AND (created_at < ?3 OR (status IS NULL AND created_at < ?4))",
        )
        .bind(scope)
        .bind(key)
        .bind(expired_before)
        .bind(abandoned_before)
        .execute(&mut *tx)
        .await?;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(fingerprint)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let claim = if claimed {
            IdempotencyClaim::Claimed
        } else {
            let (fingerprint, status, body): (String, Option<i64>, Option<String>) =
                sqlx::query_as("SELECT fingerprint, status, body FROM idempotency_keys WHERE scope = ? AND key = ?")
                    .bind(scope)
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
            idempotency_claim(fingerprint, status, body)
        };
        tx.commit().await?;
        Ok(claim)
    }

    async fn finish_idempotency_key(&self, scope: &str, key: &str, status: u16, body: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE idempotency_keys SET status = ?, body = ? WHERE scope = ? AND key = ?")
            .bind(i64::from(status))
            .bind(body)
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND status IS NULL")
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn prune_idempotency_keys(&self, before: i64, batch: u32) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM idempotency_keys WHERE rowid IN
             (SELECT rowid FROM idempotency_keys WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        )
        .bind(before)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }

    async fn prune_notifications(&self, before: i64, batch: u32) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM notifications WHERE id IN
             (SELECT id FROM notifications WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        )
        .bind(before)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?;
        Ok(deleted.rows_affected())
    }
}
