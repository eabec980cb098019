//! The store: everything the hub keeps (notifications; approvals and chat come with the dashboard),
//! behind one trait so that SQLite (embedded default) and PostgreSQL (multi-node) are interchangeable.
//!
//! Every write that the protocol promises to keep (PROTOCOL §6) goes through here before it is pushed.

mod sqlite;

use async_trait::async_trait;
use serde_json::Value;

use crate::protocol::{Notification, NotificationPage};

pub use sqlite::SqliteStore;

/// A store failure. Callers answer it with an internal error; nothing is pushed for a failed write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url `{0}`: expected sqlite://PATH")]
    UnsupportedUrl(String),
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

/// The hub's persistent state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for `/readyz` and `/api/v1/stats` (`sqlite`, `postgres`).
    fn name(&self) -> &'static str;

    /// Does the database answer?
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores notifications in one transaction and returns them with their ids, in input order.
    async fn insert_notifications(&self, new: &[NewNotification]) -> Result<Vec<Notification>, StoreError>;

    /// A page of a user's notifications, newest first, with the user's totals.
    async fn list_notifications(&self, user_id: &str, query: NotificationQuery) -> Result<NotificationPage, StoreError>;

    /// How many of the user's notifications are unread.
    async fn unread_count(&self, user_id: &str) -> Result<i64, StoreError>;

    /// Marks one of the user's notifications read.
    async fn mark_read(&self, user_id: &str, id: i64) -> Result<MarkRead, StoreError>;

    /// Marks all of the user's notifications read; returns how many changed.
    async fn mark_all_read(&self, user_id: &str) -> Result<u64, StoreError>;

    /// Deletes one of the user's notifications.
    async fn delete_notification(&self, user_id: &str, id: i64) -> Result<Deleted, StoreError>;
}

/// Opens the store a database URL names, running its migrations.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
