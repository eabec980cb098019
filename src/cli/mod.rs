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

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

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
    #[command(after_help = examples::CONFIG)]
    Config(config::ConfigArgs),
}

/// Parses the command line, as `Cli::parse` does, except that `rtctl bench SCENARIO --help` prints that
/// scenario's own help (its flags and examples) and exits: the scenario is a value, not a subcommand, so
/// that flags may come before it (`rtctl bench --spawn fanout`), and clap alone would print `bench`'s.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(help) = bench_scenario_help(&args) {
        print!("{help}");
        std::process::exit(0);
    }
    Cli::parse_from(args)
}

/// The help of `rtctl bench SCENARIO -h|--help`, when `args` ask for it.
pub fn bench_scenario_help(args: &[OsString]) -> Option<String> {
    let words: Vec<&str> = args.iter().skip(1).map(|arg| arg.to_str().unwrap_or_default()).collect();
    let (bench, rest) = words.split_first()?;
    let long = rest.contains(&"--help");
    if *bench != "bench" || !(long || rest.contains(&"-h")) {
        return None;
    }
    let scenario = rest.iter().find(|word| examples::bench_scenario(word).is_some())?;
    let (about, examples) = examples::bench_scenario(scenario)?;
    let cli = Cli::command();
    let mut command = cli.find_subcommand("bench")?.clone();
    // `--config` and `-v`, which every command takes from the top level.
    for global in cli.get_arguments().filter(|arg| arg.is_global_set()) {
        command = command.arg(global.clone());
    }
    command = command.mut_arg("scenario", |arg| arg.hide(true));
    for unused in examples::bench_scenario_unused(scenario) {
        command = command.mut_arg(*unused, |arg| arg.hide(true));
    }
    let mut command = command
        .bin_name(format!("rtctl bench {scenario}"))
        .about(about)
        .long_about(None)
        .after_help(examples)
        .max_term_width(100);
    let help = if long { command.render_long_help() } else { command.render_help() };
    Some(help.to_string())
}

/// A duration flag of a client (`connect --wait`, `bench -d`, `--warmup`, ...): `500ms`, `2s`, `1m`, or
/// a plain number of seconds.
pub fn parse_duration_flag(text: &str) -> Result<std::time::Duration, String> {
    if let Ok(seconds) = text.trim().parse::<f64>() {
        return std::time::Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("`{text}` is not a duration like 2s, 500ms or 1m"));
    }
    humantime::parse_duration(text.trim()).map_err(|e| format!("`{text}` is not a duration like 2s, 500ms or 1m: {e}"))
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

    /// Trust only the CA certificates in this PEM file for https:// and wss:// (a hub whose
    /// certificate a private CA signed) [default: ca_cert in the config file, else the system's roots]
    #[arg(long, global = true, env = "RTCTL_CA_CERT", value_name = "PEM_FILE", help_heading = "Hub")]
    pub ca_cert: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// Units as everywhere, and a plain number is seconds.
    #[test]
    fn duration_flags() {
        assert_eq!(super::parse_duration_flag("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(super::parse_duration_flag("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(super::parse_duration_flag("2.5"), Ok(Duration::from_millis(2500)));
        assert!(super::parse_duration_flag("5x").unwrap_err().starts_with("`5x` is not a duration like 2s"));
        assert!(super::parse_duration_flag("-1").is_err());
    }
}
