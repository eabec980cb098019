//! Copies a SQLite store into an empty PostgreSQL one (`rtctl copy-store`): moving from one machine to
//! several keeps every notification, decision, activity entry and chat message, with its id.

use std::path::PathBuf;
use std::str::FromStr;

use futures_util::TryStreamExt;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};

use super::{PostgresStore, SqliteStore, StoreError, is_postgres, is_sqlite};

/// Rows per INSERT: 1,000 rows of at most 9 columns stay far below PostgreSQL's 65,535 parameters.
const BATCH: usize = 1_000;

/// How a column is read from SQLite and bound for PostgreSQL.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    /// SQLite's 0/1, PostgreSQL's BOOLEAN.
    Bool,
}

/// One table, in an order that keeps foreign keys satisfied.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// The source order. Tables whose PostgreSQL twin numbers rows itself (`seq`: pending users in
    /// registration order, room members in the order they were added) are read in SQLite's rowid
    /// order, which is the order SQLite's queries use for them.
    order: &'static str,
    /// An id column copied as it is (`OVERRIDING SYSTEM VALUE`), whose sequence then starts past it.
    identity: Option<&'static str>,
}

use Kind::{Bool, Int, Text};

const TABLES: &[Table] = &[
    Table {
        name: "notifications",
        columns: &[
            ("id", Int),
            ("user_id", Text),
            ("title", Text),
            ("message", Text),
            ("type", Text),
            ("read", Bool),
            ("created_at", Int),
            ("data", Text),
            ("link", Text),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "pending_users",
        columns: &[("user_id", Text), ("email", Text), ("name", Text), ("registered_at", Int), ("status", Text)],
        order: "rowid",
        identity: None,
    },
    Table {
        name: "approvals",
        columns: &[
            ("id", Int),
            ("user_id", Text),
            ("status", Text),
            ("reason", Text),
            ("decided_by", Text),
            ("decided_at", Int),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "admin_activity",
        columns: &[("id", Int), ("kind", Text), ("data", Text), ("created_at", Int)],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "chat_rooms",
        columns: &[("room_id", Text), ("name", Text), ("created_at", Int)],
        order: "rowid",
        identity: None,
    },
    Table { name: "chat_members", columns: &[("room_id", Text), ("user_id", Text)], order: "rowid", identity: None },
    Table {
        name: "chat_messages",
        columns: &[
            ("id", Int),
            ("room_id", Text),
            ("sender_id", Text),
            ("content", Text),
            ("attachment_url", Text),
            ("created_at", Int),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "chat_read_positions",
        columns: &[("room_id", Text), ("user_id", Text), ("message_id", Int), ("read_at", Int)],
        // WITHOUT ROWID: its primary key is the only order it has.
        order: "room_id, user_id",
        identity: None,
    },
    Table {
        name: "streams",
        columns: &[("stream", Text), ("epoch", Text), ("last_seq", Int)],
        // WITHOUT ROWID, as the next one. Copied with its epoch: the log comes along, so resuming works.
        order: "stream",
        identity: None,
    },
    Table {
        name: "stream_events",
        columns: &[("stream", Text), ("seq", Int), ("frame", Text), ("created_at", Int)],
        order: "stream, seq",
        identity: None,
    },
];

/// Why a copy did not happen. Nothing is written to the target unless every table was copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the source must be a SQLite database (sqlite://PATH)")]
    SourceNotSqlite,
    #[error("the target must be a PostgreSQL database (postgres://USER@HOST/DB)")]
    TargetNotPostgres,
    #[error("no SQLite database at {0}")]
    SourceMissing(PathBuf),
    #[error("the target already holds data (table {0}): copy into an empty database or schema")]
    TargetNotEmpty(&'static str),
}

impl From<sqlx::Error> for CopyError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}

/// Copies every row of the SQLite store at `from` into the PostgreSQL store at `to`, which must hold no
/// rows yet (its migrations are run first, as `rtctl serve` would). Returns the rows copied per table.
///
/// The source is read in one transaction, a snapshot: a hub still writing to it loses what it writes
/// after that to the copy. The target's rows are written in one transaction, so a failed copy leaves
/// no row (only the tables its migrations made).
pub async fn sqlite_to_postgres(from: &str, to: &str) -> Result<Vec<(&'static str, u64)>, CopyError> {
    if !is_sqlite(from) || from.contains(":memory:") {
        return Err(CopyError::SourceNotSqlite);
    }
    if !is_postgres(to) {
        return Err(CopyError::TargetNotPostgres);
    }
    // Opening a SQLite store creates a missing file, and an empty copy would look like success.
    let path = SqliteConnectOptions::from_str(from)?.get_filename().to_owned();
    if !path.is_file() {
        return Err(CopyError::SourceMissing(path));
    }
    let source = SqliteStore::open(from).await?;
    let target = PostgresStore::open(to).await?;

    let mut read = source.pool.begin().await?;
    let mut write = target.pool.begin().await?;
    // A hub started on the target meanwhile waits for the copy instead of slipping rows in beside it.
    let names = TABLES.iter().map(|table| table.name).collect::<Vec<_>>().join(", ");
    let lock = format!("LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE");
    sqlx::query(AssertSqlSafe(lock)).execute(&mut *write).await?;
    for table in TABLES {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", table.name);
        let holds_rows: bool = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut *write).await?;
        if holds_rows {
            return Err(CopyError::TargetNotEmpty(table.name));
        }
    }
    let mut copied = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let columns = table.columns.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ");
        let select = format!("SELECT {columns} FROM {} ORDER BY {}", table.name, table.order);
        let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut *read);
        let mut batch = Vec::with_capacity(BATCH);
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            batch.push(row);
            if batch.len() == BATCH {
                count += insert(&mut write, table, &columns, &batch).await?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            count += insert(&mut write, table, &columns, &batch).await?;
        }
        drop(rows);
        if let Some(id) = table.identity {
            // AUTOINCREMENT never hands out an id again, even one whose row was deleted since (the
            // newest notification, say): it keeps its high-water mark in sqlite_sequence. The target
            // goes on from there, or from the highest copied id if that is higher.
            let issued: Option<i64> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?")
                .bind(table.name)
                .fetch_optional(&mut *read)
                .await?;
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{0}', '{id}'), GREATEST($1, MAX({id}))) FROM {0}
                 HAVING GREATEST($1, MAX({id})) IS NOT NULL",
                table.name
            );
            sqlx::query(AssertSqlSafe(sql)).bind(issued.filter(|&seq| seq > 0)).execute(&mut *write).await?;
        }
        copied.push((table.name, count));
    }
    write.commit().await?;
    read.rollback().await?;
    Ok(copied)
}

/// Inserts `rows` of `table` in one multi-row INSERT; the rows affected.
async fn insert(
    write: &mut sqlx::PgConnection,
    table: &Table,
    columns: &str,
    rows: &[sqlx::sqlite::SqliteRow],
) -> Result<u64, sqlx::Error> {
    let overriding = if table.identity.is_some() { " OVERRIDING SYSTEM VALUE" } else { "" };
    let mut query = QueryBuilder::<Postgres>::new(format!("INSERT INTO {} ({columns}){overriding} ", table.name));
    let mut failed = None;
    query.push_values(rows, |mut values, row| {
        for (index, (_, kind)) in table.columns.iter().enumerate() {
            let bound = match kind {
                Int => row.try_get::<Option<i64>, _>(index).map(|v| values.push_bind(v)),
                Text => row.try_get::<Option<String>, _>(index).map(|v| values.push_bind(v)),
                Bool => row.try_get::<bool, _>(index).map(|v| values.push_bind(v)),
            };
            if let Err(error) = bound {
                failed.get_or_insert(error);
            }
        }
    });
    if let Some(error) = failed {
        return Err(error);
    }
    Ok(query.build().execute(write).await?.rows_affected())
}
