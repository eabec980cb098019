//! `rtctl copy-store`: copies the embedded SQLite store into an empty PostgreSQL database, for the move
//! from one hub node to several (`store::copy`).

use std::path::Path;

use super::UsageError;
use crate::cli::copy_store::CopyStoreArgs;
use crate::config::{DEFAULT_DATABASE_URL, FileConfig, redact_url};
use crate::store::{
    self,
    copy::{self, CopyError},
};

pub async fn run(config_path: &Path, args: CopyStoreArgs) -> anyhow::Result<u8> {
    // The store `rtctl serve` would open in this directory, as long as it is still SQLite.
    let from = match args.from {
        Some(from) => from,
        None => FileConfig::load(config_path)?
            .and_then(|file| file.database_url)
            .filter(|url| store::is_sqlite(url))
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
    };
    let copied = copy::sqlite_to_postgres(&from, &args.to).await.map_err(|error| match error {
        CopyError::SourceNotSqlite | CopyError::TargetNotPostgres => UsageError(error.into()).into(),
        error => anyhow::Error::new(error).context("nothing was copied"),
    })?;
    println!("copied {from} into {}:", redact_url(&args.to));
    for (table, rows) in &copied {
        println!("  {table:<20} {rows:>9}");
    }
    println!("start the hubs with --database-url on it; {from} keeps its data");
    Ok(0)
}
