//! `rtctl bench`'s flags; `cmd::bench` turns them into a validated `bench::Config`.

use std::path::PathBuf;
use std::time::Duration;

use crate::bench::Threshold;

/// Where `--spawn-redis-url` and `--spawn-database-url` may come from instead, so that a password in
/// them stays off the command line (and out of `ps`).
pub const SPAWN_REDIS_URL_VAR: &str = "RTCTL_BENCH_SPAWN_REDIS_URL";
pub const SPAWN_DATABASE_URL_VAR: &str = "RTCTL_BENCH_SPAWN_DATABASE_URL";

/// Measure delivery latency, loss and throughput of a hub under load.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure: fanout (org events), notify (user notifications), chat (rooms), idle (memory per connection)
    #[arg(value_enum, default_value_t = ScenarioArg::Fanout)]
    pub scenario: ScenarioArg,
    /// The hub's base HTTP URL; the WebSocket URL is derived from it [default: url in the config file, else
    /// http://127.0.0.1:8000]
    #[arg(long, env = "RTCTL_URL")]
    pub url: Option<String>,
    /// HS256 secret used to mint the subscribers' JWTs
    #[arg(long, env = "RTCTL_JWT_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub jwt_secret: Option<String>,
    /// API key for publishing and for GET /api/v1/stats
    #[arg(long, env = "RTCTL_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Trust only the CA certificates in this PEM file for an https:// hub [default: ca_cert in the
    /// config file, else the system's roots]
    #[arg(long, env = "RTCTL_CA_CERT", value_name = "PEM_FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Start a throwaway hub (a child `rtctl serve` on a free loopback port, fresh secrets, a temporary
    /// SQLite store) and bench it, ignoring --url, --jwt-secret and --api-key; none of your RTCTL_*
    /// variables reach that hub
    #[arg(long)]
    pub spawn: bool,
    /// With --spawn: the spawned hub fans out through this Redis, e.g. redis://127.0.0.1:6379
    #[arg(long, value_name = "URL", env = SPAWN_REDIS_URL_VAR, hide_env_values = true)]
    pub spawn_redis_url: Option<String>,
    /// With --spawn: the spawned hub stores in this PostgreSQL database instead of a temporary SQLite file
    #[arg(long, value_name = "URL", env = SPAWN_DATABASE_URL_VAR, hide_env_values = true)]
    pub spawn_database_url: Option<String>,
    /// The hub's process id, to report its CPU use (Linux /proc)
    #[arg(long, env = "RTCTL_HUB_PID")]
    pub hub_pid: Option<u32>,
    /// Subscriber connections (chat: members over all rooms)
    #[arg(short = 'n', long, default_value_t = 100)]
    pub subscribers: u64,
    /// Members per chat room
    #[arg(long, default_value_t = 10)]
    pub room_size: u64,
    /// Messages per second, over all groups (the open-loop schedule)
    #[arg(short, long, default_value_t = 10.0)]
    pub rate: f64,
    /// Length of the measured window, e.g. 10s, 1m
    #[arg(short, long, default_value = "10s", value_name = "DURATION", value_parser = super::parse_duration_flag)]
    pub duration: Duration,
    /// Send this many measured messages instead of running for --duration
    #[arg(short, long)]
    pub messages: Option<u64>,
    /// How long to send first, left out of every result: 0s, 500ms, 1s
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = super::parse_duration_flag)]
    pub warmup: Duration,
    /// Approximate size of each message's data, in bytes
    #[arg(long, default_value_t = 100)]
    pub payload_size: usize,
    /// New connections per second while connecting
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    /// Handshakes in flight at once
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Give up on a connection that is not established within this time
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = super::parse_duration_flag)]
    pub connect_timeout: Duration,
    /// Give up on a publish request after this time
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = super::parse_duration_flag)]
    pub request_timeout: Duration,
    /// Publish requests in flight at once; beyond this sends wait and publisher lag grows
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,
    /// After the last send, wait this long at most for outstanding deliveries
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = super::parse_duration_flag)]
    pub drain: Duration,
    /// Spread client sockets over local source addresses, e.g. 127.0.0.1-127.0.0.8
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Fail (exit 3) unless this holds, e.g. 'p99<50ms', 'loss=0', 'deliveries_per_s>100000'; repeatable
    #[arg(short, long = "threshold", value_name = "RULE")]
    pub thresholds: Vec<Threshold>,
    /// Raise the rate step by step until a threshold fails; report the highest rate that held
    #[arg(long)]
    pub find_max: bool,
    /// With --find-max: multiply the rate by this much per step
    #[arg(long, default_value_t = 1.5)]
    pub find_max_factor: f64,
    /// With --find-max: stop after this many steps
    #[arg(long, default_value_t = 10)]
    pub find_max_steps: u32,
    /// Fanout: this share of the subscribers drops per second and reconnects resuming from its last event
    /// (`?since=&epoch=`), while the publisher runs, e.g. 5%/s; loss must stay 0
    #[arg(long, value_name = "PCT%/s", value_parser = parse_churn)]
    pub churn: Option<f64>,
    /// With --spawn, fanout: kill the hub (SIGKILL) this long after publishing starts, e.g. 5s, and start
    /// it again on the same store and port; subscribers reconnect and resume
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration_flag)]
    pub restart_hub_at: Option<Duration>,
    /// Print the summary as JSON on stdout instead of the table
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained HTML report with charts to this file
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// No progress bars, and no line before the run
    #[arg(short, long)]
    pub quiet: bool,
}

/// The scenario names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioArg {
    Fanout,
    Notify,
    Chat,
    Idle,
}

/// `5%/s` as the share 0.05 per second.
fn parse_churn(text: &str) -> Result<f64, String> {
    let number = text
        .trim()
        .strip_suffix("%/s")
        .ok_or_else(|| format!("`{text}` is not a churn rate: give a percentage per second, e.g. 5%/s"))?;
    match number.trim().parse::<f64>() {
        Ok(pct) if pct.is_finite() && pct > 0.0 && pct <= 100.0 => Ok(pct / 100.0),
        _ => Err(format!("`{text}`: the churn must be above 0 and at most 100%/s, e.g. 5%/s")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_churn;

    /// A churn is a percentage per second; anything else says how to write one.
    #[test]
    fn churn_is_a_percentage_per_second() {
        assert_eq!(parse_churn("5%/s"), Ok(0.05));
        assert_eq!(parse_churn("0.5%/s"), Ok(0.005));
        assert!(parse_churn("5%").unwrap_err().contains("e.g. 5%/s"));
        assert!(parse_churn("0%/s").is_err());
        assert!(parse_churn("150%/s").is_err());
    }
}
