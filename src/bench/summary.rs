//! The result of a run: what `--json` prints (schema version 1; fields are only ever added) and what the
//! table, the HTML report and the thresholds read. Durations are milliseconds, sizes bytes; a figure the run
//! could not measure is `null`.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The summary's schema version.
pub const SCHEMA: u32 = 1;

/// One run (with `--find-max`: the highest rate that held, plus every step in `find_max`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Schema version ([`SCHEMA`]); bumped only when a field changes meaning or goes away.
    pub schema: u32,
    /// `fanout`, `notify`, `chat` or `idle`.
    pub scenario: String,
    /// The hub's base HTTP URL.
    pub url: String,
    /// When the run started, RFC 3339 UTC.
    pub started_at: String,
    /// What the run was asked to do.
    pub settings: Settings,
    /// Connecting the subscribers.
    pub connections: Connections,
    /// The messages the publisher sent.
    pub messages: Messages,
    /// The messages subscribers received.
    pub deliveries: Deliveries,
    /// Per delivery: receive time minus intended send time, on one monotonic clock (no coordinated omission).
    pub latency_ms: Percentiles,
    /// Per message: the slowest subscriber's receive time minus the intended send time.
    pub completion_ms: Percentiles,
    /// Per message: the fastest subscriber's receive time minus the intended send time (the way in
    /// through the hub, without the width of the fan-out). Absent from summaries before it was added.
    #[serde(default)]
    pub first_delivery_ms: Percentiles,
    /// Per message: actual minus intended send time; large values mean the bench (or the HTTP API) fell behind.
    pub publisher_lag_ms: Percentiles,
    /// Errors by kind: `refused`, `timeout`, `reset`, `http_<status>` (upgrade refused), `close_<code>` (the hub
    /// closed a subscriber, e.g. `close_4001`, `close_4008`), `publish_http_<status>`, `publish_timeout`,
    /// `publish_connect`, `emfile`, `eaddrnotavail`, `unexpected_seq`, ...
    pub errors: BTreeMap<String, u64>,
    /// Set when a limit of this machine, not the hub, failed connections: what ran out and what to do.
    pub machine_limit: Option<String>,
    /// The bench's own resource use during the run.
    pub bench: BenchUsage,
    /// The hub's resource use, when it could be observed.
    pub hub: HubUsage,
    /// CPU use during the measured window: the bench's, the hub's and the machine's.
    pub cpu: CpuWindow,
    /// CPU time per delivery in the measured window, for the hub, the bench and the kernel. Absent from
    /// summaries before it was added.
    #[serde(default)]
    pub cost: DeliveryCost,
    /// Deliveries and latency per time slice of the measured window.
    pub timeline: Vec<TimelinePoint>,
    /// The latency distribution: latency at percentiles from 0 to 100 (for plotting).
    pub distribution: Vec<DistributionPoint>,
    /// Every `--threshold` and whether it held.
    pub thresholds: Vec<ThresholdResult>,
    /// True when every threshold held.
    pub passed: bool,
    /// Present with `--find-max`: every step tried.
    pub find_max: Option<FindMax>,
    /// Present with `--churn` or `--restart-hub-at`: subscribers that lost their connection and resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumeStats>,
    /// True when Ctrl-C stopped the run early: every figure is of the part that ran (`bench.wall_s` is
    /// how long that was). Absent from summaries before it was added.
    #[serde(default)]
    pub interrupted: bool,
    /// The command line of the run, secrets masked (`--jwt-secret ***`). Absent from summaries before
    /// it was added.
    #[serde(default)]
    pub command: String,
    /// The rtctl version that ran it. Absent from summaries before it was added.
    #[serde(default)]
    pub version: String,
}

/// Subscribers that dropped (`--churn`) or lost the hub (`--restart-hub-at`) and reconnected with
/// `?since=&epoch=`: what they missed is replayed, so a resume that works leaves loss at 0.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResumeStats {
    /// Share of the subscribers dropped per second, in percent (`--churn 5%/s`: 5); 0 without churn.
    pub churn_pct_per_s: f64,
    /// Connections that ended while the run went on and were opened again.
    pub reconnects: u64,
    /// Per reconnect: from the first attempt (at once when the hub went away; after the time away when
    /// the churn dropped it) to the greeting of the resumed connection, failed attempts included.
    pub reconnect_ms: Percentiles,
    /// Connect attempts that failed while reconnecting (the hub was down) and were retried.
    pub failed_attempts: u64,
    /// Pushes that arrived through a replay (published while their subscriber was away); they count
    /// once, with their latency from their intended send time.
    pub replayed: u64,
    /// Resumes the hub could not serve (`resume_failed`): what they missed counts as lost.
    pub resume_failed: u64,
    /// The hub restart, with `--restart-hub-at`.
    pub restart: Option<HubRestart>,
}

/// A `--restart-hub-at` restart of the spawned hub.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HubRestart {
    /// When the hub was killed (SIGKILL), in seconds after the first message's intended send time.
    pub at_s: f64,
    /// From the kill to the new hub answering `/readyz`.
    pub outage_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Subscriber connections asked for.
    pub subscribers: u64,
    /// Members per chat room (1 for other scenarios).
    pub room_size: u64,
    /// Messages per second across all groups.
    pub rate: f64,
    /// Length of the measured window in seconds.
    pub duration_s: f64,
    /// Seconds of messages sent first and left out of all results.
    pub warmup_s: f64,
    /// Payload size asked for, in bytes (approximate size of the message `data`).
    pub payload_bytes: u64,
    /// New connections per second while connecting.
    pub connect_rate: f64,
    /// How many local source addresses client sockets were spread over (0: the kernel's choice).
    pub source_ips: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connections {
    pub attempted: u64,
    /// Connections that received `connection_established`.
    pub established: u64,
    pub failed: u64,
    /// Established connections the hub closed before the run ended.
    pub closed_early: u64,
    /// Seconds from the first connect to the last handshake result.
    pub connect_s: f64,
    /// Established connections per second over `connect_s`.
    pub connect_per_s: f64,
    /// From starting the TCP connect to receiving `connection_established`.
    pub handshake_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Messages {
    /// Messages in the measured window (warm-up excluded).
    pub scheduled: u64,
    /// Warm-up messages, sent but excluded from results.
    pub warmup: u64,
    /// Measured messages the hub accepted (HTTP 2xx; for chat: written to the socket).
    pub accepted: u64,
    /// Measured messages the hub refused or that failed; they are not expected by subscribers.
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deliveries {
    /// Accepted measured messages times the subscribers (still connected at the start) of their group.
    pub expected: u64,
    /// Distinct measured deliveries.
    pub received: u64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Deliveries of a message the subscriber had already received.
    pub duplicates: u64,
    /// First deliveries that arrived after a later message of the same group that was sent only after the
    /// hub had acknowledged this one (publishes in flight together have no order the hub owes).
    pub out_of_order: u64,
    /// `lost / expected`, in percent.
    pub loss_pct: f64,
    /// Distinct measured deliveries per second over `window_s`.
    pub per_s: f64,
    /// Seconds from the first measured message's intended send time to the last measured delivery.
    pub window_s: f64,
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    pub max: f64,
}

impl Percentiles {
    /// Reads a histogram kept in `unit_ns` nanoseconds per count.
    pub fn from_histogram<T: hdrhistogram::Counter>(hist: &Histogram<T>, unit_ns: f64) -> Self {
        if hist.is_empty() {
            return Self::default();
        }
        let ms = |v: u64| v as f64 * unit_ns / 1e6;
        Self {
            count: hist.len(),
            mean: hist.mean() * unit_ns / 1e6,
            p50: ms(hist.value_at_quantile(0.5)),
            p90: ms(hist.value_at_quantile(0.9)),
            p99: ms(hist.value_at_quantile(0.99)),
            p99_9: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchUsage {
    /// User plus system CPU seconds the bench process used from connecting to the end.
    pub cpu_s: f64,
    /// Wall-clock seconds over which `cpu_s` was measured.
    pub wall_s: f64,
    /// `cpu_s / wall_s`: how many cores the bench kept busy.
    pub cpu_cores: f64,
    /// True when the hub ran inside the bench process (`--spawn`), so `cpu_s` includes it.
    pub includes_hub: bool,
    /// The open-file soft limit in force (raised to the hard limit at start).
    pub open_file_limit: u64,
}

/// CPU use during the measured window (from the first measured message to the end of publishing), where
/// `bench` and `hub` average over the whole run, connecting included.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuWindow {
    /// Seconds the figures cover.
    pub window_s: f64,
    /// Cores the bench process kept busy (with an in-process hub, the hub included).
    pub bench_cores: f64,
    /// Of `bench_cores`, the share spent in the kernel on the bench's behalf (system calls). Absent from
    /// summaries before it was added.
    #[serde(default)]
    pub bench_system_cores: Option<f64>,
    /// Cores the hub process kept busy (`--spawn` or `--hub-pid`); null when it could not be observed.
    pub hub_cores: Option<f64>,
    /// Of `hub_cores`, the share spent in system calls.
    #[serde(default)]
    pub hub_system_cores: Option<f64>,
    /// CPUs online on this machine; this and the other `machine_` figures are null without `/proc/stat`.
    pub machine_cores: Option<u64>,
    /// Share of the machine's CPU time (all CPUs) that was not idle, in percent.
    pub machine_busy_pct: Option<f64>,
    /// Share spent in softirq, in percent: on loopback, most of TCP's work runs there.
    pub machine_softirq_pct: Option<f64>,
    /// Share the hypervisor gave to other guests, in percent: above a few percent the run's figures are
    /// unreliable.
    pub machine_steal_pct: Option<f64>,
    /// True when the machine was at least 90 % busy: latency then includes waiting for a CPU, and the
    /// hub and the bench competed for cores.
    pub saturated: bool,
}

/// CPU time per delivery, in nanoseconds: the cores a party kept busy in the measured window divided by
/// the measured deliveries per second. A regression of the hub's send path shows in `hub_ns`, of the
/// bench's receive path in `bench_ns`, of the kernel's TCP path in the `_system_ns` and `softirq_ns`
/// figures. Null where a party could not be observed (a hub without a pid, no `/proc/stat`) or nothing
/// was delivered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeliveryCost {
    /// The hub process, user plus system.
    pub hub_ns: Option<f64>,
    /// Of `hub_ns`, system calls (sending, epoll).
    pub hub_system_ns: Option<f64>,
    /// The bench process, user plus system (with an in-process hub, the hub included).
    pub bench_ns: Option<f64>,
    /// Of `bench_ns`, system calls (receiving, epoll).
    pub bench_system_ns: Option<f64>,
    /// The whole machine's softirq time: on loopback, most of TCP's delivery and acknowledgement work,
    /// charged to no process.
    pub softirq_ns: Option<f64>,
    /// Every busy CPU of the machine, whoever used it: above `hub_ns + bench_ns + softirq_ns` by what
    /// else ran (the publisher's HTTP calls are in `bench_ns`; other programs are not).
    pub machine_ns: Option<f64>,
}

impl DeliveryCost {
    /// The cost of `per_s` deliveries per second at the CPU use `cpu`.
    pub fn new(cpu: &CpuWindow, per_s: f64) -> Self {
        let ns = |cores: f64| (per_s > 0.0).then(|| cores * 1e9 / per_s);
        let machine_share = |pct: Option<f64>| pct.zip(cpu.machine_cores).map(|(pct, n)| pct / 100.0 * n as f64);
        Self {
            hub_ns: cpu.hub_cores.and_then(ns),
            hub_system_ns: cpu.hub_system_cores.and_then(ns),
            bench_ns: ns(cpu.bench_cores),
            bench_system_ns: cpu.bench_system_cores.and_then(ns),
            softirq_ns: machine_share(cpu.machine_softirq_pct).and_then(ns),
            machine_ns: machine_share(cpu.machine_busy_pct).and_then(ns),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HubUsage {
    /// `memory_rss_bytes` from `GET /api/v1/stats` before connecting.
    pub memory_rss_before_bytes: Option<u64>,
    /// The same once every subscriber connected (after a short settle).
    pub memory_rss_connected_bytes: Option<u64>,
    /// The same at the end of the run, before disconnecting.
    pub memory_rss_after_bytes: Option<u64>,
    /// `(connected - before) / established`.
    pub memory_per_connection_bytes: Option<f64>,
    /// CPU seconds of the hub process over the run (`--hub-pid`, or a spawned hub in its own process).
    pub cpu_s: Option<f64>,
    /// `cpu_s` over the bench's `wall_s`.
    pub cpu_cores: Option<f64>,
    /// The hub's channel layer from `GET /api/v1/stats` (`memory`, `redis`), when it reports one.
    pub layer: Option<String>,
    /// The hub's store from the same (`sqlite`, `postgres`).
    pub store: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Start of the slice, seconds into the measured window.
    pub t_s: f64,
    /// Deliveries received in the slice.
    pub deliveries: u64,
    /// `deliveries` per second.
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistributionPoint {
    /// 0 to 100.
    pub percentile: f64,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The threshold as given, e.g. `p99<50ms`.
    pub expr: String,
    /// The measured value in the summary's unit, `null` when not measured (which fails the threshold).
    pub value: Option<f64>,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindMax {
    /// The highest rate at which every threshold held, `null` when even the first step failed.
    pub max_rate: Option<f64>,
    pub steps: Vec<FindMaxStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FindMaxStep {
    pub rate: f64,
    pub passed: bool,
    pub deliveries_per_s: f64,
    pub p99_ms: f64,
    /// The thresholds that failed at this rate.
    pub failed: Vec<String>,
}

impl Summary {
    /// A metric by its threshold name (see `threshold.rs`), in the summary's unit.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let errors = |prefix: &str| {
            self.errors.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| *v).sum::<u64>() as f64
        };
        // A latency that was never sampled is not zero: it fails every threshold on it.
        let pick = |p: &Percentiles, value: f64| (p.count > 0).then_some(value);
        let (lat, done, shake, lag) =
            (&self.latency_ms, &self.completion_ms, &self.connections.handshake_ms, &self.publisher_lag_ms);
        Some(match name {
            "p50" => return pick(lat, lat.p50),
            "p90" => return pick(lat, lat.p90),
            "p99" => return pick(lat, lat.p99),
            "p99.9" | "p999" => return pick(lat, lat.p99_9),
            "max" => return pick(lat, lat.max),
            "mean" => return pick(lat, lat.mean),
            "completion_p50" => return pick(done, done.p50),
            "completion_p99" => return pick(done, done.p99),
            "completion_max" => return pick(done, done.max),
            "first_delivery_p50" => return pick(&self.first_delivery_ms, self.first_delivery_ms.p50),
            "first_delivery_p99" => return pick(&self.first_delivery_ms, self.first_delivery_ms.p99),
            "handshake_p99" => return pick(shake, shake.p99),
            "publisher_lag_p99" => return pick(lag, lag.p99),
            "publisher_lag_max" => return pick(lag, lag.max),
            "loss" => self.deliveries.lost as f64,
            "loss_pct" => self.deliveries.loss_pct,
            "duplicates" => self.deliveries.duplicates as f64,
            "out_of_order" => self.deliveries.out_of_order as f64,
            "errors" => self.errors.values().sum::<u64>() as f64,
            "connect_errors" => self.connections.failed as f64,
            "publish_errors" => errors("publish_"),
            "deliveries_per_s" => self.deliveries.per_s,
            "connect_per_s" => self.connections.connect_per_s,
            "bench_cpu_cores" => self.bench.cpu_cores,
            "hub_ns_per_delivery" => return self.cost.hub_ns,
            "bench_ns_per_delivery" => return self.cost.bench_ns,
            "machine_busy_pct" => return self.cpu.machine_busy_pct,
            "machine_steal_pct" => return self.cpu.machine_steal_pct,
            "memory_per_connection" => return self.hub.memory_per_connection_bytes,
            "reconnects" => return self.resume.as_ref().map(|r| r.reconnects as f64),
            "replayed" => return self.resume.as_ref().map(|r| r.replayed as f64),
            "resume_failed" => return self.resume.as_ref().map(|r| r.resume_failed as f64),
            "reconnect_p99" => {
                return self.resume.as_ref().filter(|r| r.reconnect_ms.count > 0).map(|r| r.reconnect_ms.p99);
            }
            _ => return None,
        })
    }
}
