//! `rtctl copy-store`'s flags.

use clap::Args;

#[derive(Debug, Args)]
pub struct CopyStoreArgs {
    /// The SQLite database to copy (stop the hubs that write to it first) [default: database_url in the
    /// config file when it is SQLite, else sqlite://rtctl-data/rtctl.db]
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,

    /// The PostgreSQL database to copy into; it must hold no rows yet (its tables are made if missing)
    #[arg(long, value_name = "URL", env = "RTCTL_DATABASE_URL", hide_env_values = true)]
    pub to: String,
}
