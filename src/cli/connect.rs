//! `rtctl connect`'s flags.

use clap::Args;

use super::ClientArgs;
use super::token::MintArgs;

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// notifications, events ORG, dashboard, chat ROOM, or a ws:// / wss:// URL
    #[arg(default_value = "notifications", value_name = "TARGET", value_parser = TargetParser, hide_possible_values = true)]
    pub target: String,

    /// The org of `events`, the room of `chat`
    #[arg(value_name = "ORG|ROOM")]
    pub scope: Option<String>,

    #[command(flatten)]
    pub client: ClientArgs,

    #[command(flatten)]
    pub mint: MintArgs,

    /// Use this token instead of minting one (a JWT or a ws token)
    #[arg(long, env = "RTCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Exchange the minted JWT for a single-use ws token first, as a browser would
    #[arg(long, conflicts_with = "token")]
    pub ws_token: bool,

    /// Extra request header; repeat for several
    #[arg(short = 'H', long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,

    /// Origin header to send, as a browser would
    #[arg(long)]
    pub origin: Option<String>,

    /// Subprotocol to request in Sec-WebSocket-Protocol
    #[arg(long)]
    pub subprotocol: Option<String>,

    /// Send this message after connecting (JSON or `type key=value`); repeat for several
    #[arg(short = 'x', long = "execute", value_name = "MSG")]
    pub execute: Vec<String>,

    /// End the session this long after connecting: 500ms, 2s, 1m (a plain number is seconds)
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration_flag)]
    pub wait: Option<std::time::Duration>,

    /// End the session when a message of this type arrives
    #[arg(long, value_name = "TYPE")]
    pub until: Option<String>,

    /// Show frames as they arrive, without pretty-printing JSON
    #[arg(long)]
    pub raw: bool,

    /// Prefix every line with the local time
    #[arg(long)]
    pub timestamps: bool,

    /// No colors (NO_COLOR does the same)
    #[arg(long)]
    pub no_color: bool,

    /// Write every frame to stdout as one JSON line (the default when stdin or stdout is not a terminal)
    #[arg(long)]
    pub json: bool,

    /// End instead of reconnecting when the connection is lost (exit code 4)
    #[arg(long)]
    pub no_reconnect: bool,
}

/// `--wait`: a duration (`2s`, `500ms`), or a number of seconds as before (`0.3`).
/// Takes any target (a URL too; `connect` checks it) but names the hub's endpoints, so that shell
/// completion offers them.
#[derive(Debug, Clone, Copy)]
pub struct TargetParser;

impl clap::builder::TypedValueParser for TargetParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        let targets = ["notifications", "events", "dashboard", "chat"];
        Some(Box::new(targets.into_iter().map(clap::builder::PossibleValue::new)))
    }
}
