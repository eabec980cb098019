//! One file per subcommand, each with a `run` that takes its flags from `cli` and turns them into a
//! validated config; [`dispatch`] is the one `match`.

pub mod bench;
pub mod completions;
pub mod config;
pub mod connect;
pub mod console;
pub mod copy_store;
mod http;
pub mod notify;
pub mod room;
pub mod serve;
pub mod status;
pub mod token;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::cli::{Cli, ClientArgs, Command};
use crate::config::ClientConfig;

/// A log target that would print a credential, and the most it may log. tungstenite traces a client's
/// whole handshake request, whose query string carries the JWT or ws token (`-vv`, `RUST_LOG=trace`).
const CREDENTIAL_TARGET_CAP: &str = "tungstenite::handshake::client=debug";

/// rustls-platform-verifier logs every certificate it refuses as an ERROR (reqwest's default roots):
/// three lines before the client command's own line that says the same.
const CERTIFICATE_ERRORS_QUIET: &str = "rustls_platform_verifier=off";

/// Logs to stderr: `info` for the hub, `warn` for the client commands, `-v`/`-vv` for more, RUST_LOG
/// to choose exactly (except that no setting lets a token into the log).
pub fn init_logging(cli: &Cli) {
    let base = match (&cli.command, cli.verbose) {
        (_, 2..) => "trace",
        (_, 1) => "debug",
        (Command::Serve(_), 0) => "info",
        (_, 0) => "warn",
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let filter = EnvFilter::new(base);
        match (&cli.command, cli.verbose) {
            // A client command's error already says why a certificate was refused, in one line.
            (Command::Serve(_), _) | (_, 1..) => filter,
            (_, 0) => filter.add_directive(CERTIFICATE_ERRORS_QUIET.parse().expect("the directive is valid")),
        }
    });
    // Only a filter that traces somewhere needs the cap: added to a quieter one, the directive would
    // raise that target to debug.
    if filter.max_level_hint().is_none_or(|level| level == LevelFilter::TRACE) {
        filter = filter.add_directive(CREDENTIAL_TARGET_CAP.parse().expect("the directive is valid"));
    }
    // Colors only for a person at a terminal: a log file or journald would keep the escape codes.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

/// A command line that parsed but asks for something impossible (`bench --rate 0`): exit code 2, as for
/// one clap refuses, so that a script can tell a mistake in its call from a failed run.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct UsageError(pub anyhow::Error);

impl UsageError {
    /// The exit code of a usage error, clap's.
    pub const EXIT_CODE: u8 = 2;
}

impl ClientArgs {
    /// Merges with the config file at `config_path`.
    pub fn resolve(&self, config_path: &std::path::Path) -> anyhow::Result<ClientConfig> {
        if let Some(url) = &self.url {
            check_url(url)?;
        }
        ClientConfig::resolve(
            self.url.clone(),
            self.jwt_secret.clone(),
            self.api_key.clone(),
            self.ca_cert.clone(),
            config_path,
        )
    }
}

/// A `--url` (or `RTCTL_URL`) that is not the hub's HTTP base URL is a usage error, with the URL it
/// likely meant: `localhost:8000` → `http://localhost:8000`, `ws://…` → `http://…`.
fn check_url(url: &str) -> anyhow::Result<()> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(());
    }
    let meant = if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if !url.contains("://") {
        format!("http://{url}")
    } else {
        String::new()
    };
    let shown = crate::config::redact_url(url);
    let hint =
        if meant.is_empty() { String::new() } else { format!("; did you mean {}?", crate::config::redact_url(&meant)) };
    Err(UsageError(anyhow::anyhow!("invalid --url `{shown}`: expected http://HOST:PORT or https://HOST{hint}")).into())
}

/// Runs the chosen subcommand; the result is the process's exit code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.config, *args).await,
        Command::Bench(args) => bench::run(&cli.config, args).await.map(|outcome| outcome.exit_code()),
        Command::Token(args) => token::run(&cli.config, args).await,
        Command::Connect(args) => connect::run(&cli.config, args).await,
        Command::Notify(args) => notify::run(&cli.config, args).await,
        Command::Event(args) => notify::run_event(&cli.config, args).await,
        Command::Room(args) => room::run(&cli.config, args).await,
        Command::Status(args) => status::run(&cli.config, args).await,
        Command::Console(args) => console::run(&cli.config, args).await,
        Command::CopyStore(args) => copy_store::run(&cli.config, args).await,
        Command::Completions(args) => completions::run(args),
        Command::Config(args) => config::run(&cli.config, args),
    }
}
