//! `rtctl copy-store`: copies the embedded SQLite store into an empty PostgreSQL database, for the move
//! from one hub node to several (`store::copy`).

use clap::Args;

use super::UsageError;
use crate::config::{DEFAULT_DATABASE_URL, redact_url};
use crate::store::copy::{self, CopyError};

#[derive(Debug, Args)]
pub struct CopyStoreArgs {
    /// The SQLite database to copy (stop the hubs that write to it first)
    #[arg(long, value_name = "URL", default_value = DEFAULT_DATABASE_URL)]
    pub from: String,

    /// The PostgreSQL database to copy into; it must hold no rows yet (its tables are made if missing)
    #[arg(long, value_name = "URL", env = "RTCTL_DATABASE_URL", hide_env_values = true)]
    pub to: String,
}

pub async fn run(args: CopyStoreArgs) -> anyhow::Result<u8> {
    let copied = copy::sqlite_to_postgres(&args.from, &args.to).await.map_err(|error| match error {
        CopyError::SourceNotSqlite | CopyError::TargetNotPostgres => UsageError(error.into()).into(),
        error => anyhow::Error::new(error).context("nothing was copied"),
    })?;
    println!("copied {} into {}:", args.from, redact_url(&args.to));
    for (table, rows) in &copied {
        println!("  {table:<20} {rows:>9}");
    }
    println!("start the hubs with --database-url on it; {} keeps its data", args.from);
    Ok(0)
}
