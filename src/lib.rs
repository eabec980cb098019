//! rtctl: a realtime WebSocket hub (notifications, org events, admin dashboard, chat) and the tools to run
//! and test it.
//!
//! # Layout
//!
//! - `bench`: the fan-out latency load tester (`rtctl bench`)
//! - `cmd`: one module per subcommand, each turning its flags into a config and running it

pub mod bench;
pub mod cmd;
