//! The store: everything the hub keeps (notifications, approvals, the admin activity feed, chat), behind
//! one trait so that SQLite (embedded default) and PostgreSQL (multi-node) are interchangeable.
//!
//! Every write that the protocol promises to keep (PROTOCOL §6) goes through here before it is pushed.
//! [`copy`] moves a SQLite store's rows into an empty PostgreSQL one (`rtctl copy-store`).

pub mod copy;
mod postgres;
mod sqlite;
#[doc(hidden)]
pub mod test_schema;

use async_trait::async_trait;
use serde_json::Value;

use crate::protocol::{
    Activity, ActivityKind, Approval, ChatMessage, DecisionStatus, MessagePage, Notification, NotificationPage,
    PendingUser, Room, RoomSummary,
};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A store failure. Callers answer it with an internal error; nothing is pushed for a failed write.
///
/// Each message carries its cause in its own text and no variant reports it again as `source()`: the
/// hub logs these with `Display`, and a `{:#}` chain would otherwise print the cause twice.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("unsupported database url scheme `{0}`: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("cannot create the database directory {path}: {cause}")]
    CreateDir { path: std::path::PathBuf, cause: std::io::Error },
    #[error("cannot create the database file {path}: {cause}")]
    CreateFile { path: std::path::PathBuf, cause: std::io::Error },
    #[error("cannot lock {path} for the migrations: {cause}")]
    Lock { path: std::path::PathBuf, cause: std::io::Error },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(error)
    }
}

/// A notification to store for one user.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub user_id: String,
    pub title: String,
    pub message: String,
    pub kind: String,
    /// Always a JSON object (`{}` when none was given).
    pub data: Value,
    pub link: Option<String>,
}

/// Which of a user's notifications to list.
#[derive(Debug, Clone, Copy)]
pub struct NotificationQuery {
    /// 1..=200.
    pub limit: u32,
    /// Only ids strictly below this one (paging backwards).
    pub before_id: Option<i64>,
    /// Only ids strictly above this one, oldest first (catching up); the caller never sets both.
    pub after_id: Option<i64>,
    pub unread_only: bool,
}

/// What `mark_read` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkRead {
    /// It was unread and is now read.
    Marked,
    /// It was read already; nothing changed.
    AlreadyRead,
    /// No such notification for this user.
    NotFound,
}

/// What `delete_notification` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted; `was_unread` says whether the unread count changed.
    Deleted { was_unread: bool },
    /// No such notification for this user.
    NotFound,
}

/// The outcome of an insert whose key may exist already (HTTP 409).
#[derive(Debug, Clone, PartialEq)]
pub enum Created<T> {
    Created(T),
    /// The key exists (a room) or is pending already (a user); nothing was written.
    Conflict,
}

/// A user to register for approval (`POST /api/v1/admin-dashboard/users/`).
#[derive(Debug, Clone)]
pub struct NewPendingUser {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// What `decide` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// This call took the decision.
    Decided(Approval),
    /// Nobody by that id ever registered (HTTP 404).
    NotFound,
    /// The user was decided already, possibly by a concurrent call (HTTP 409).
    AlreadyDecided,
}

/// How many decisions of each kind were taken since some instant (`approved_today`, `rejected_today`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecisionCounts {
    pub approved: i64,
    pub rejected: i64,
}

/// A chat room to create (`POST /api/v1/chat/rooms`); the caller has validated the id and picked a name.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub room_id: String,
    pub name: String,
    /// Duplicates are dropped; the first occurrence keeps its place.
    pub members: Vec<String>,
}

/// A chat message to store.
#[derive(Debug, Clone)]
pub struct NewChatMessage {
    pub room_id: String,
    pub sender_id: String,
    pub content: String,
    pub attachment_url: Option<String>,
}

/// Which of a user's rooms to list.
#[derive(Debug, Clone, Default)]
pub struct RoomQuery {
    /// Only the rooms after this one in the list's order: its activity (ms since the epoch) and id.
    pub after: Option<(i64, String)>,
    /// At most this many rooms; `None`: all.
    pub limit: Option<u32>,
}

/// Which of a room's messages to list.
#[derive(Debug, Clone, Copy)]
pub struct MessageQuery {
    /// Only ids strictly below this one (paging backwards).
    pub before_id: Option<i64>,
    /// Only ids strictly above this one, oldest first, `has_more` saying newer ones are left (catching
    /// up); the caller never sets both.
    pub after_id: Option<i64>,
    /// 1..=200.
    pub limit: u32,
}

/// How far a user has read in a room.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPosition {
    pub message_id: i64,
    pub read_at: String,
}

/// What `set_read_position` found. The position only moves forward, so a late receipt cannot undo a
/// newer one.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadUpdate {
    /// The position moved to the given message.
    Moved(ReadPosition),
    /// The position was at or past that message already; this is the stored one.
    Unchanged(ReadPosition),
    /// The message does not exist in that room.
    NotFound,
}

/// Where a stream (org events, dashboard pushes) stands (PROTOCOL §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    /// Random when the stream's row was made; a store that lost it makes a new one.
    pub epoch: String,
    /// The last position given out; 0 before the first push.
    pub last_seq: i64,
}

/// A push appended to its stream's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub epoch: String,
    /// The frame as [`Store::append_event`]'s `render` made it, to push as it is.
    pub frame: String,
}

/// One push of a stream's log, as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub seq: i64,
    pub frame: String,
}

/// Renders a push for its position (seq, epoch), once: the same text is logged and pushed.
pub type RenderEvent<'a> = &'a (dyn Fn(i64, &str) -> String + Send + Sync);

/// Renders the i-th of a batch of pushes for its position (i, seq, epoch), once each.
pub type RenderBatch<'a> = &'a (dyn Fn(usize, i64, &str) -> String + Send + Sync);

/// The most pushes [`Store::append_events`] takes at once: four parameters a row stay far below
/// SQLite's 32,766, and a batch this long already makes the commit a small part of each push's cost.
pub const MAX_APPEND: usize = 256;

/// What an `Idempotency-Key` holds when a request claims it.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyClaim {
    /// The key was free (or its record had expired): the caller holds it now, and finishes or releases it.
    Claimed,
    /// A request with the key is still running; `fingerprint` is that request's.
    InFlight { fingerprint: String },
    /// A request with the key succeeded: its fingerprint and its answer.
    Done { fingerprint: String, status: u16, body: String },
}

/// The hub's persistent state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for `/readyz` and `/api/v1/stats` (`sqlite`, `postgres`).
    fn name(&self) -> &'static str;

    /// Does the database answer?
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores notifications in one transaction and returns them with their ids, in input order.
    async fn insert_notifications(&self, new: &[NewNotification]) -> Result<Vec<Notification>, StoreError>;

    /// A page of a user's notifications, newest first (oldest first after `after_id`), with the user's
    /// totals.
    async fn list_notifications(&self, user_id: &str, query: NotificationQuery)
    -> Result<NotificationPage, StoreError>;

    /// How many of the user's notifications are unread.
    async fn unread_count(&self, user_id: &str) -> Result<i64, StoreError>;

    /// Marks one of the user's notifications read.
    async fn mark_read(&self, user_id: &str, id: i64) -> Result<MarkRead, StoreError>;

    /// Marks all of the user's notifications read; returns how many changed.
    async fn mark_all_read(&self, user_id: &str) -> Result<u64, StoreError>;

    /// Deletes one of the user's notifications.
    async fn delete_notification(&self, user_id: &str, id: i64) -> Result<Deleted, StoreError>;

    /// Registers a user awaiting approval. A user decided earlier may register again and is pending
    /// again; one who is pending already gives `Conflict`.
    async fn register_pending_user(&self, new: &NewPendingUser) -> Result<Created<PendingUser>, StoreError>;

    /// Approves or rejects a pending user. Atomic: of two concurrent calls exactly one gets `Decided`.
    async fn decide(
        &self,
        user_id: &str,
        status: DecisionStatus,
        reason: Option<&str>,
        decided_by: &str,
    ) -> Result<Decision, StoreError>;

    /// The users awaiting approval, oldest registration first.
    async fn pending_users(&self, limit: u32) -> Result<Vec<PendingUser>, StoreError>;

    /// How many users await approval.
    async fn pending_count(&self) -> Result<i64, StoreError>;

    /// The latest decisions, newest first.
    async fn recent_approvals(&self, limit: u32) -> Result<Vec<Approval>, StoreError>;

    /// How many users were approved and rejected at or after `since_millis` (Unix milliseconds).
    async fn decision_counts_since(&self, since_millis: i64) -> Result<DecisionCounts, StoreError>;

    /// Appends an entry to the admin activity feed; `data` should be a JSON object.
    async fn append_activity(&self, kind: ActivityKind, data: &Value) -> Result<Activity, StoreError>;

    /// The latest entries of the admin activity feed, newest first.
    async fn list_activity(&self, limit: u32) -> Result<Vec<Activity>, StoreError>;

    /// Creates a chat room with its members; `Conflict` if the id is taken.
    async fn create_room(&self, new: &NewRoom) -> Result<Created<Room>, StoreError>;

    /// A room with its members, if it exists.
    async fn get_room(&self, room_id: &str) -> Result<Option<Room>, StoreError>;

    /// Is the user a member of the room? (Staff may enter any room; that is the caller's check.)
    async fn is_member(&self, room_id: &str, user_id: &str) -> Result<bool, StoreError>;

    /// A page of the rooms a user may enter (every room for staff), most recently active first (the
    /// time of the last message, else of the creation; then by id), with the last message and the
    /// user's unread count: the rooms after `query.after`, at most `query.limit`. The database does the
    /// paging, so a page costs the same however many rooms the user has.
    async fn room_page(&self, user_id: &str, is_staff: bool, query: &RoomQuery)
    -> Result<Vec<RoomSummary>, StoreError>;

    /// Every room a user may enter, in [`Store::room_page`]'s order.
    async fn rooms_for_user(&self, user_id: &str, is_staff: bool) -> Result<Vec<RoomSummary>, StoreError> {
        self.room_page(user_id, is_staff, &RoomQuery { after: None, limit: None }).await
    }

    /// Stores a chat message; `None` if the room does not exist.
    async fn insert_message(&self, new: &NewChatMessage) -> Result<Option<ChatMessage>, StoreError>;

    /// A page of a room's messages: the newest `limit` below `before_id`, oldest first, so that paging
    /// backwards with the first id of each page returns every message exactly once.
    async fn list_messages(&self, room_id: &str, query: MessageQuery) -> Result<MessagePage, StoreError>;

    /// Moves the user's read position in the room forward to `message_id` (never backwards).
    async fn set_read_position(&self, room_id: &str, user_id: &str, message_id: i64) -> Result<ReadUpdate, StoreError>;

    /// Gives `stream` its next `count` positions (making the stream, with a new epoch, on its first
    /// push) and logs the frame `render(i, seq, epoch)` makes for the i-th, in one transaction: of two
    /// concurrent appends, on any node, the later one waits for the earlier, so the committed positions
    /// are always 1..=last_seq. Returns the appended pushes in order. At most [`MAX_APPEND`] at once.
    async fn append_events(
        &self,
        stream: &str,
        count: usize,
        render: RenderBatch<'_>,
    ) -> Result<Vec<Appended>, StoreError>;

    /// [`Store::append_events`] for one push.
    async fn append_event(&self, stream: &str, render: RenderEvent<'_>) -> Result<Appended, StoreError> {
        let mut appended = self.append_events(stream, 1, &|_, seq, epoch| render(seq, epoch)).await?;
        Ok(appended.pop().expect("one position was asked for"))
    }

    /// Where `stream` stands; makes it (seq 0, a new epoch) if it has never been used.
    async fn stream_head(&self, stream: &str) -> Result<StreamHead, StoreError>;

    /// Up to `limit` logged pushes of `stream` with a seq above `after_seq`, logged at or after
    /// `since_millis`, oldest first.
    async fn events_after(
        &self,
        stream: &str,
        after_seq: i64,
        since_millis: i64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>, StoreError>;

    /// Deletes logged pushes beyond the last `keep` of each stream or logged before `before_millis`;
    /// returns how many. Positions and epochs stay.
    async fn prune_events(&self, keep: u32, before_millis: i64) -> Result<u64, StoreError>;

    /// Claims `key` in `scope` (a caller) for a request with `fingerprint`. A record created before
    /// `expired_before` (Unix ms) is forgotten first, and so is one still in flight since before
    /// `abandoned_before` (its node died mid-request).
    async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        expired_before: i64,
        abandoned_before: i64,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Records the answer of the request that claimed `key`, for its retries.
    async fn finish_idempotency_key(&self, scope: &str, key: &str, status: u16, body: &str) -> Result<(), StoreError>;

    /// Forgets a claim whose request failed without storing anything, so that a retry runs again.
    async fn release_idempotency_key(&self, scope: &str, key: &str) -> Result<(), StoreError>;

    /// Deletes up to `batch` idempotency records created before `before` (Unix ms); returns how many.
    async fn prune_idempotency_keys(&self, before: i64, batch: u32) -> Result<u64, StoreError>;

    /// Deletes up to `batch` notifications created before `before` (Unix ms), oldest first; returns how many.
    async fn prune_notifications(&self, before: i64, batch: u32) -> Result<u64, StoreError>;
}

/// The row decoders of a backend (`notification(&Row)`, `pending_user`, `approval`, `activity`,
/// `chat_message`): the columns are the same in both schemas, only the row type differs, and sqlx's
/// generic `Row` bounds would be longer than the decoders themselves.
macro_rules! row_mappers {
    ($row:ty) => {
        fn notification(row: &$row) -> Result<Notification, sqlx::Error> {
            Ok(Notification {
                id: row.try_get("id")?,
                title: row.try_get("title")?,
                message: row.try_get("message")?,
                kind: row.try_get("type")?,
                read: row.try_get("read")?,
                created_at: format_timestamp(row.try_get("created_at")?),
                data: json_object(row.try_get("data")?),
                link: row.try_get("link")?,
            })
        }

        fn pending_user(row: &$row) -> Result<PendingUser, sqlx::Error> {
            Ok(PendingUser {
                user_id: row.try_get("user_id")?,
                email: row.try_get("email")?,
                name: row.try_get("name")?,
                registered_at: format_timestamp(row.try_get("registered_at")?),
                status: column(row.try_get("status")?, "approval status")?,
            })
        }

        fn approval(row: &$row) -> Result<Approval, sqlx::Error> {
            Ok(Approval {
                user_id: row.try_get("user_id")?,
                status: column(row.try_get("status")?, "decision status")?,
                reason: row.try_get("reason")?,
                decided_by: row.try_get("decided_by")?,
                decided_at: format_timestamp(row.try_get("decided_at")?),
            })
        }

        fn activity(row: &$row) -> Result<Activity, sqlx::Error> {
            Ok(Activity {
                id: row.try_get("id")?,
                kind: column(row.try_get("kind")?, "activity kind")?,
                data: json_object(row.try_get("data")?),
                created_at: format_timestamp(row.try_get("created_at")?),
            })
        }

        fn chat_message(row: &$row) -> Result<ChatMessage, sqlx::Error> {
            Ok(ChatMessage {
                id: row.try_get("id")?,
                room_id: row.try_get("room_id")?,
                sender_id: row.try_get("sender_id")?,
                content: row.try_get("content")?,
                attachment_url: row.try_get("attachment_url")?,
                created_at: format_timestamp(row.try_get("created_at")?),
            })
        }
    };
}
pub(crate) use row_mappers;

// Column encodings both backends share.

/// Decodes a stored JSON object; anything else (which the store never writes) comes out as `{}`.
pub(crate) fn json_object(text: &str) -> Value {
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => Value::Object(serde_json::Map::new()),
    }
}

/// The text stored for a `data` field: the object itself, or `{}` for anything that is not one.
pub(crate) fn object_text(data: &Value) -> String {
    match data {
        Value::Object(_) => data.to_string(),
        _ => "{}".to_owned(),
    }
}

/// An idempotency record that was not free, as a claim finds it: done once it has an answer.
pub(crate) fn idempotency_claim(fingerprint: String, status: Option<i64>, body: Option<String>) -> IdempotencyClaim {
    match (status.and_then(|s| u16::try_from(s).ok()), body) {
        (Some(status), Some(body)) => IdempotencyClaim::Done { fingerprint, status, body },
        _ => IdempotencyClaim::InFlight { fingerprint },
    }
}

/// Reads a column that holds an enum's wire name (`ApprovalStatus`, `DecisionStatus`, `ActivityKind`:
/// each maps to its text one way, through strum, with serde's names).
pub(crate) fn column<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, sqlx::Error> {
    text.parse().map_err(|_| sqlx::Error::Decode(format!("unknown {what} `{text}`").into()))
}

/// The positions a batch of `count` pushes takes (none for an empty batch).
fn batch_rows(count: usize) -> Option<i64> {
    assert!(count <= MAX_APPEND, "append_events takes at most MAX_APPEND pushes, not {count}");
    (count > 0).then(|| i64::try_from(count).expect("MAX_APPEND fits an i64"))
}

/// Renders a batch whose last position is `last_seq`, oldest first.
fn render_batch(last_seq: i64, count: usize, epoch: &str, render: RenderBatch<'_>) -> Vec<Appended> {
    let first = last_seq + 1 - i64::try_from(count).expect("MAX_APPEND fits an i64");
    (0..count)
        .zip(first..)
        .map(|(i, seq)| Appended { seq, epoch: epoch.to_owned(), frame: render(i, seq, epoch) })
        .collect()
}

/// A new stream's epoch: 64 random bits in hex, so that a stream made again (a store that lost its
/// rows) cannot meet a position a client kept from before.
pub(crate) fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// How SQLite makes a commit durable (`PRAGMA synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// Every commit is on disk before it is acknowledged: nothing acknowledged is lost, even to a power
    /// loss (one fsync per commit).
    #[default]
    Full,
    /// Commits are synced at checkpoints: safe against a crash of the process (kill -9), but a power
    /// loss or an OS crash may lose the last acknowledged commits (never consistency).
    Normal,
}

impl std::str::FromStr for SqliteSync {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            _ => Err(format!("invalid sqlite_synchronous `{text}`: expected full or normal")),
        }
    }
}

/// Opens the store a database URL names, with `pool` connections at most (`None`: the backend's
/// default), running its migrations; `sync` applies to SQLite only.
pub async fn open(url: &str, pool: Option<u32>, sync: SqliteSync) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if is_sqlite(url) {
        Ok(std::sync::Arc::new(SqliteStore::open_with(url, pool.unwrap_or(sqlite::POOL_SIZE), sync).await?))
    } else if is_postgres(url) {
        Ok(std::sync::Arc::new(PostgresStore::open_with(url, pool.unwrap_or(postgres::POOL_SIZE)).await?))
    } else {
        // Only the scheme: the rest may hold a password.
        Err(StoreError::UnsupportedUrl(url.split("://").next().unwrap_or_default().to_owned()))
    }
}

/// Whether a database URL names SQLite.
pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// Whether a database URL names PostgreSQL.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[cfg(test)]
mod tests;
