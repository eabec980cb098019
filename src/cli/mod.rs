//! The command line, as clap types only: [`Cli`] and its [`Command`] here with the flags every client
//! command shares, one file per subcommand's flags; `cmd` turns them into validated configs once.

pub mod bench;
pub mod claims;
pub mod completions;
pub mod connect;
pub mod console;
pub mod copy_store;
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
    Serve(Box<serve::ServeArgs>),
    /// Load-test fan-out latency of a hub (any hub that speaks the protocol)
    Bench(bench::BenchArgs),
    /// Mint a JWT, exchange it for a ws token, or inspect and verify a token
    Token(token::TokenArgs),
    /// Open an interactive (or scripted) WebSocket session with a hub endpoint or any ws:// URL
    Connect(connect::ConnectArgs),
    /// Publish notifications (or, with a subcommand, pending users and order updates) through the API
    Notify(notify::NotifyArgs),
    /// Publish an organization event through the API
    Event(notify::EventArgs),
    /// Chat rooms through the API: create one with its members, list a user's, post a message
    Room(room::RoomArgs),
    /// Show a hub's health, readiness and figures
    Status(status::StatusArgs),
    /// Print (or --open) a link that signs in to the hub's web console with a short-lived token
    Console(console::ConsoleArgs),
    /// Copy the SQLite store into an empty PostgreSQL database (moving to several hub nodes)
    CopyStore(copy_store::CopyStoreArgs),
    /// Print a shell completion script
    Completions(completions::CompletionsArgs),
}

/// How a client command reaches a hub; each falls back to the config file, then the defaults.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Hub")]
pub struct ClientArgs {
    /// The hub's base URL [default: url in the config file, else http://127.0.0.1:8000]
    #[arg(long, global = true, env = "RTCTL_URL", value_name = "URL")]
    pub url: Option<String>,

    /// HS256 secret to mint JWTs with (default: from the config file)
    #[arg(long, global = true, env = "RTCTL_JWT_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub jwt_secret: Option<String>,

    /// API key for the publishing routes (default: from the config file)
    #[arg(long, global = true, env = "RTCTL_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
}
