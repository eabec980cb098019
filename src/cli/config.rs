//! `rtctl config`'s flags: `check` takes every flag of `rtctl serve`.

use clap::{Args, Subcommand};

/// `rtctl config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the hub's settings (config file, RTCTL_* env, these flags) as `rtctl serve` would, and
    /// print the effective settings with secrets masked; exits 1 naming the setting that is wrong
    #[command(after_help = super::examples::CONFIG)]
    Check(Box<super::serve::ServeArgs>),
}
