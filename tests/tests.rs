//! rtctl's integration tests, one binary: an in-process hub per test (see `util`), and the real `rtctl`
//! binary for the command line.

mod auth;
mod bench;
mod cli;
mod events;
mod http;
mod lifecycle;
mod notifications;
mod serve;
mod util;
