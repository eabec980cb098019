//! The command line, as clap types only: [`Cli`] and its [`Command`] here with the flags every client
//! command shares, one file per subcommand's flags; `cmd` turns them into validated configs once.

pub mod bench;
pub mod claims;
pub mod completions;
pub mod config;
pub mod connect;
pub mod console;
pub mod copy_store;
pub mod examples;
pub mod notify;
pub mod room;
pub mod serve;
pub mod status;
pub mod token;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// rtctl: run and test a realtime WebSocket hub (notifications, org events, admin dashboard, chat).
#[derive(Debug, Parser)]
#[command(name = "rtctl", version, about, max_term_width = 100)]
pub struct Cli {
    /// Config file with the hub's secrets; the first `rtctl serve` creates it
    #[arg(long, global = true, env = "RTCTL_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    /// More log output: -v debug, -vv trace (RUST_LOG overrides)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: every WebSocket endpoint and HTTP route of the protocol on one port
    // Boxed: every hub setting is a field, which makes it far larger than the other commands.
    #[command(after_help = examples::SERVE)]
    Serve(Box<serve::ServeArgs>),
    /// Load-test fan-out latency of a hub (any hub that speaks the protocol)
    #[command(after_help = examples::BENCH)]
    Bench(bench::BenchArgs),
    /// Mint a JWT, exchange it for a ws token, or inspect and verify a token
    #[command(after_help = examples::TOKEN)]
    Token(token::TokenArgs),
    /// Open an interactive (or scripted) WebSocket session with a hub endpoint or any ws:// URL
    #[command(after_help = examples::CONNECT)]
    Connect(connect::ConnectArgs),
    /// Publish notifications (or, with a subcommand, pending users and order updates) through the API
    #[command(after_help = examples::NOTIFY)]
    Notify(notify::NotifyArgs),
    /// Publish an organization event through the API
    #[command(after_help = examples::EVENT)]
    Event(notify::EventArgs),
    /// Chat rooms through the API: create one with its members, list a user's, post a message
    #[command(after_help = examples::ROOM)]
    Room(room::RoomArgs),
    /// Show a hub's health, readiness and figures
    #[command(after_help = examples::STATUS)]
    Status(status::StatusArgs),
    /// Print (or --open) a link that signs in to the hub's web console with a short-lived token
    #[command(after_help = examples::CONSOLE)]
    Console(console::ConsoleArgs),
    /// Copy the SQLite store into an empty PostgreSQL database (moving to several hub nodes)
    #[command(after_help = examples::COPY_STORE)]
    CopyStore(copy_store::CopyStoreArgs),
    /// Print a shell completion script
    #[command(after_help = examples::COMPLETIONS)]
    Completions(completions::CompletionsArgs),
    /// Check the hub's configuration: `rtctl config check [SERVE FLAGS]`
    Config(config::ConfigArgs),
}

/// How a client command reaches a hub; each falls back to the config file, then the defaults. Each flag
/// names its heading itself: a `next_help_heading` here would put the command's own flags after it
/// under "Hub" too.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The hub's base URL [default: url in the config file, else the hub `rtctl serve` runs with it,
    /// else http://127.0.0.1:8000]
    #[arg(long, global = true, env = "RTCTL_URL", value_name = "URL", help_heading = "Hub")]
    pub url: Option<String>,

    /// The hub's HS256 JWT secret: signs minted tokens, verifies inspected ones (default: from the
    /// config file)
    #[arg(
        long,
        global = true,
        env = "RTCTL_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        help_heading = "Hub"
    )]
    pub jwt_secret: Option<String>,

    /// The hub's API key, for the publishing routes and the stats (default: from the config file)
    #[arg(
        long,
        global = true,
        env = "RTCTL_API_KEY",
        hide_env_values = true,
        value_name = "KEY",
        help_heading = "Hub"
    )]
    pub api_key: Option<String>,
}
