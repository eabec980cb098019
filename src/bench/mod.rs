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
//! - `resume`: subscribers that drop (`--churn`) or lose the hub (`--restart-hub-at`) and resume
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
mod resume;
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
use tokio_util::sync::CancellationToken;

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
    /// Share of the subscribers that drop and reconnect with resume per second (0.05 for `--churn 5%/s`);
    /// 0 for none.
    pub churn: f64,
    /// Kill the hub and start it again this far into the run (`--restart-hub-at`, with `--spawn`).
    pub restart: Option<RestartHub>,
    /// Where progress bars are drawn (on stderr), or `None` for none. Anything else printed to stderr
    /// while a run is under way goes through [`MultiProgress::suspend`], so it does not draw over them.
    pub progress: Option<MultiProgress>,
    /// Cancelled to stop the run early (Ctrl-C): what was measured so far is summarized, marked
    /// `interrupted`.
    pub interrupt: CancellationToken,
}

/// A hub the bench may kill and start again on the same store and port (the one `--spawn` started).
pub trait Restartable: Send + Sync {
    /// Kills the hub at once (SIGKILL: nothing is flushed or closed), starts it again and returns once
    /// it answers `/readyz`.
    fn restart(&self) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + '_>>;
}

/// `--restart-hub-at`: when, and the hub to restart.
#[derive(Clone)]
pub struct RestartHub {
    /// After the first message's intended send time (warm-up included).
    pub at: Duration,
    pub hub: std::sync::Arc<dyn Restartable>,
}

impl std::fmt::Debug for RestartHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestartHub").field("at", &self.at).finish_non_exhaustive()
    }
}
