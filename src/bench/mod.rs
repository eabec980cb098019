//! `rtctl bench`: a fan-out latency load tester for the hub (and for the Django peer it replaces).
//!
//! A run connects N subscribers, then publishes on a fixed open-loop schedule; every message carries its
//! sequence number and intended send time (bench clock), so each delivery yields a latency without
//! coordinated omission and each subscriber's sequence numbers yield loss, duplicates and reordering.
//!
//! # Layout
//!
//! - `clock`: the one monotonic clock of a run
//! - `cpu`: CPU use of the bench, the hub and the machine over the measured window
//! - `scenario`: fanout / notify / chat / idle, the deterministic schedule, message bodies, marker scan
//! - `target`: the hub's URLs and credentials, `/api/v1/stats` memory, chat room creation
//! - `limits`: open-file limit, ephemeral ports, source addresses, machine limits versus hub failures
//! - `workers`: one single-threaded runtime per core for the subscriber tasks
//! - `subscriber`: one socket task: connect, timestamp frames, account for sequence numbers
//! - `reader`: one epoll per worker that reads every plain socket which only listens, once connected
//! - `ws`: the subscribers' WebSocket client: tungstenite's handshake, then frames parsed in place
//! - `publisher`: the open-loop sender (HTTP POST, or chat frames over the members' sockets)
//! - `stats`: sharded HDR histograms and timelines, sequence tracking, broadcast completion
//! - `run`: one run from connect to summary, and `--find-max` stepping
//! - `summary`: the result (what `--json` prints), documented field by field
//! - `threshold`: `p99<50ms`-style rules for CI
//! - `report`: the terminal table; `html`: the self-contained HTML report

mod clock;
mod cpu;
mod html;
pub mod limits;
mod publisher;
mod reader;
mod report;
mod run;
mod scenario;
mod stats;
mod subscriber;
pub mod summary;
mod target;
pub mod threshold;
mod workers;
mod ws;

pub use html::write_html;
pub use limits::parse_source_ips;
pub use report::{print_table, table};
pub use run::{find_max, run};
pub use scenario::Scenario;
pub use summary::Summary;
pub use target::Target;
pub use threshold::Threshold;

use std::net::IpAddr;
use std::time::Duration;

use indicatif::MultiProgress;

/// A validated bench run, built once from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub scenario: Scenario,
    pub subscribers: u64,
    /// Members per chat room.
    pub room_size: u64,
    /// Messages per second across all groups.
    pub rate: f64,
    /// The measured window; ignored when `messages` is set.
    pub duration: Duration,
    /// Measured messages to send instead of a duration.
    pub messages: Option<u64>,
    /// Sent before the measured window and left out of every result.
    pub warmup: Duration,
    pub payload_bytes: usize,
    /// New connections per second.
    pub connect_rate: f64,
    /// Handshakes in flight at once.
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Publish requests in flight at once.
    pub max_inflight: usize,
    /// How long to wait for outstanding deliveries after the last send.
    pub drain: Duration,
    pub source_ips: Vec<IpAddr>,
    pub thresholds: Vec<Threshold>,
    /// Where progress bars are drawn (on stderr), or `None` for none. Anything else printed to stderr
    /// while a run is under way goes through [`MultiProgress::suspend`], so it does not draw over them.
    pub progress: Option<MultiProgress>,
}
