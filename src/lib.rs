//! rtctl: a realtime WebSocket hub (user notifications, organization events, admin dashboard, chat
//! rooms) that replaces a Django Channels + Redis stack, and the tools to run and test it.
//!
//! The wire contract is `docs/protocol.md`; `rtctl serve` is [`hub::run`], and every other subcommand is a
//! client of a running hub.
//!
//! # Layout
//!
//! Dependencies run one way: `protocol` imports nothing of the crate; `store` and `layer` sit below
//! `hub`; the commands sit on top.
//!
//! - [`protocol`]: the wire protocol, a leaf: every message (serde enums with their lists of types), the
//!   records they carry, close codes, error codes, limits, the id and timestamp rules.
//! - [`auth`]: identities and why a token is refused; JWT verification (`verify`), a JWKS URL kept fresh
//!   (`jwks`), minting (`mint`) and single-use ws tokens (`ws_token`).
//! - [`store`]: the store trait and its SQLite and PostgreSQL implementations, with migrations, and the
//!   SQLite-to-PostgreSQL copy.
//! - [`layer`]: the channel layer (publish to a group on every node): in memory, or Redis pub/sub; it
//!   delivers through its own `LocalGroups` trait.
//! - [`hub`]: the server: routes, sessions (parse → handle → reply), one file per endpoint, the HTTP
//!   API and its CORS, its one error type (`hub::error`), the registry of local groups, outboxes, rate
//!   limits, presence and metrics, and the web console's files (`console/`, embedded).
//! - [`cli`]: clap types only, one file per subcommand.
//! - [`config`]: `rtctl.toml`, `RTCTL_*` and flags merged into `HubConfig` / `ClientConfig`; URL
//!   redaction; the listen file (`config::listening`) by which `serve` tells the clients its address.
//! - [`cmd`]: one file per subcommand, each with a `run` that validates its flags and runs it.
//! - [`tls`]: rustls for the hub (its certificate, loaded from PEM and reloaded on SIGHUP) and for the
//!   client commands (`--ca-cert`).
//! - [`client`]: the WebSocket client of `rtctl connect`.
//! - [`bench`](mod@bench): the fan-out load tester behind `rtctl bench`: scenarios, its own WebSocket
//!   client, measurement, reports.
//!
//! rtctl runs on Unix only (it is built and tested on Linux): see the `compile_error!` below.

// Said once, here, instead of in dead branches: the hub writes to sockets through their file
// descriptors (`send(2)` in `hub::outbox`), `serve` stops on SIGTERM, and the bench, `connect` and the
// config file use rlimits, termios and file modes.
#[cfg(not(unix))]
compile_error!("rtctl runs on Unix only: the hub writes to sockets through their file descriptors (send(2))");

pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod config;
pub mod hub;
pub mod layer;
pub mod protocol;
pub mod store;
pub mod tls;
