//! rtctl: a realtime WebSocket hub (user notifications, organization events, admin dashboard, chat
//! rooms) that replaces a Django Channels + Redis stack, and the tools to run and test it.
//!
//! The wire contract is PROTOCOL.md; `rtctl serve` is [`hub::run`], and every other subcommand is a
//! client of a running hub.
//!
//! # Layout
//!
//! - [`cli`]: clap types only, turned once into the validated structs of [`config`].
//! - [`config`]: `rtctl.toml`, `RTCTL_*` and flags merged into `HubConfig` / `ClientConfig`.
//! - [`cmd`]: one file per subcommand, each with a `run`.
//! - [`client`]: the WebSocket client of `rtctl connect`.
//! - [`protocol`]: the wire messages (serde enums), close codes, error codes, ids, timestamps.
//! - [`auth`]: JWT verification and minting, ws tokens.
//! - [`bench`](mod@bench): the fan-out load tester behind `rtctl bench`: scenarios, measurement, reports.
//! - [`hub`]: the server: routes, sessions, endpoints, HTTP API, metrics, presence.
//! - [`layer`]: the channel layer trait (publish to a group): in memory, or Redis pub/sub across nodes.
//! - [`store`]: the store trait and its SQLite and PostgreSQL implementations, with migrations.
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
