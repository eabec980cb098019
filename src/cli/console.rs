//! `rtctl console`'s flags: who the link signs in as (a minted JWT's flags) and whether to open it.

use clap::Args;

use super::ClientArgs;
use super::token::MintArgs;

/// The user a console link signs in as when `--user-id` does not say.
pub const DEFAULT_USER: &str = "console";

#[derive(Debug, Args)]
#[command(mut_arg("user_id", |arg| arg.default_value(DEFAULT_USER).help(
    "Who the console signs in as (the token's `sub`): whose notifications, rooms and events it shows",
)))]
pub struct ConsoleArgs {
    /// Open the link in the browser ($BROWSER, else xdg-open, or open on macOS) as well as printing it
    #[arg(long)]
    pub open: bool,

    #[command(flatten)]
    pub client: ClientArgs,

    #[command(flatten, next_help_heading = "Token")]
    pub mint: MintArgs,
}
