//! rtctl's integration tests, one binary: an in-process hub per test (see `util`), and the real `rtctl`
//! binary for the command line.

mod auth;
mod bench;
mod browser;
mod chat;
mod claims;
mod cli;
mod config_check;
mod console;
mod cors;
mod dashboard;
mod docs;
mod events;
mod faults;
mod first_steps;
mod http;
mod idempotency;
mod jwks;
mod lifecycle;
mod lifetime;
mod limits;
mod multinode;
mod notifications;
mod resume;
mod serve;
mod tls;
mod util;
