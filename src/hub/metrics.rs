//! Counters for `/metrics` (Prometheus text, or OpenMetrics when asked) and `/api/v1/stats`.
//!
//! Hot counters are plain handles created once per endpoint, so the fan-out path pays one atomic add
//! per batch and never a label lookup.

use std::collections::HashSet;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::protocol::Endpoint;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// All of the hub's metrics.
pub struct Metrics {
    registry: Registry,
    connections: [Gauge; 4],
    frames_in: [Counter; 4],
    frames_out: [Counter; 4],
    publishes: Family<KindLabel, Counter>,
    slow_consumers: Counter,
    rate_limited: [Counter; 4],
    rate_limit_closes: Counter,
    token_expired_closes: Counter,
    token_refreshes: Counter,
    rate_limited_requests: Counter,
    auth_failures: Family<ReasonLabel, Counter>,
    layer_losses: Counter,
    layer_rejected: Counter,
    connections_refused: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rtctl");
        let connections = Family::<EndpointLabel, Gauge>::default();
        let frames_in = Family::<EndpointLabel, Counter>::default();
        let frames_out = Family::<EndpointLabel, Counter>::default();
        let publishes = Family::<KindLabel, Counter>::default();
        let slow_consumers = Counter::default();
        let rate_limited = Family::<EndpointLabel, Counter>::default();
        let rate_limit_closes = Counter::default();
        let token_expired_closes = Counter::default();
        let token_refreshes = Counter::default();
        let rate_limited_requests = Counter::default();
        let auth_failures = Family::<ReasonLabel, Counter>::default();
        let layer_losses = Counter::default();
        let layer_rejected = Counter::default();
        let connections_refused = Family::<ReasonLabel, Counter>::default();
        registry.register("connections", "Open WebSocket connections", connections.clone());
        registry.register("frames_in", "WebSocket text frames received from clients", frames_in.clone());
        registry.register("frames_out", "WebSocket text frames sent to clients", frames_out.clone());
        registry.register("publishes", "Messages published to the channel layer", publishes.clone());
        registry.register("slow_consumer_closes", "Connections closed with 4008", slow_consumers.clone());
        registry.register("rate_limited_frames", "Client frames refused with rate_limited", rate_limited.clone());
        registry.register("rate_limit_closes", "Connections closed with 4029", rate_limit_closes.clone());
        registry.register(
            "token_expired_closes",
            "Connections closed with 4001 because their token expired (PROTOCOL 1.1)",
            token_expired_closes.clone(),
        );
        registry.register("token_refreshes", "Tokens taken by refresh on open connections", token_refreshes.clone());
        registry.register("rate_limited_requests", "HTTP requests refused with 429", rate_limited_requests.clone());
        registry.register("auth_failures", "Refused tokens and origins", auth_failures.clone());
        registry.register(
            "layer_connection_losses",
            "Times the Redis layer's subscriber connection was lost (pushes published meanwhile missed this node)",
            layer_losses.clone(),
        );
        registry.register(
            "layer_rejected_payloads",
            "Redis pub/sub payloads dropped because their HMAC did not verify (forged, corrupted, another key)",
            layer_rejected.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused by a connection limit, by limit (hub::admission::refused)",
            connections_refused.clone(),
        );
        let per_endpoint = |family: &Family<EndpointLabel, Counter>| {
            Endpoint::ALL.map(|e| family.get_or_create(&EndpointLabel { endpoint: e.label() }).clone())
        };
        Self {
            connections: Endpoint::ALL
                .map(|e| connections.get_or_create(&EndpointLabel { endpoint: e.label() }).clone()),
            frames_in: per_endpoint(&frames_in),
            frames_out: per_endpoint(&frames_out),
            publishes,
            slow_consumers,
            rate_limited: per_endpoint(&rate_limited),
            rate_limit_closes,
            token_expired_closes,
            token_refreshes,
            rate_limited_requests,
            auth_failures,
            layer_losses,
            layer_rejected,
            connections_refused,
            registry,
        }
    }

    pub fn connected(&self, endpoint: Endpoint) {
        self.connections[endpoint as usize].inc();
    }

    pub fn disconnected(&self, endpoint: Endpoint) {
        self.connections[endpoint as usize].dec();
    }

    pub fn frame_in(&self, endpoint: Endpoint) {
        self.frames_in[endpoint as usize].inc();
    }

    pub fn frames_out(&self, endpoint: Endpoint, count: u64) {
        self.frames_out[endpoint as usize].inc_by(count);
    }

    /// A message published to the layer; `kind` is `notification`, `event`, `unread_count`, ...
    pub fn published(&self, kind: &'static str) {
        self.publishes.get_or_create(&KindLabel { kind }).inc();
    }

    /// The Redis layer's counters (subscriber connection outages, unverified payloads), for the layer
    /// to count in.
    pub fn redis_counters(&self) -> crate::layer::redis::RedisCounters {
        crate::layer::redis::RedisCounters { losses: self.layer_losses.clone(), rejected: self.layer_rejected.clone() }
    }

    pub fn slow_consumer(&self) {
        self.slow_consumers.inc();
    }

    /// A client frame refused by the connection's rate limit.
    pub fn rate_limited(&self, endpoint: Endpoint) {
        self.rate_limited[endpoint as usize].inc();
    }

    pub fn rate_limit_close(&self) {
        self.rate_limit_closes.inc();
    }

    /// A connection closed because its token expired without a refresh.
    pub fn token_expired_close(&self) {
        self.token_expired_closes.inc();
    }

    /// A `refresh` taken on an open connection.
    pub fn token_refresh(&self) {
        self.token_refreshes.inc();
    }

    /// An HTTP request refused with 429.
    pub fn rate_limited_request(&self) {
        self.rate_limited_requests.inc();
    }

    pub fn rate_limit_closes(&self) -> u64 {
        self.rate_limit_closes.get()
    }

    /// A refused token or origin; `reason` is one of `AuthError::reason` or `origin`.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// A connection refused by a limit; `reason` is one of `hub::admission::refused`.
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn connections(&self, endpoint: Endpoint) -> i64 {
        self.connections[endpoint as usize].get()
    }

    pub fn total_frames_in(&self) -> u64 {
        self.frames_in.iter().map(Counter::get).sum()
    }

    pub fn total_frames_out(&self) -> u64 {
        self.frames_out.iter().map(Counter::get).sum()
    }

    pub fn slow_consumers(&self) -> u64 {
        self.slow_consumers.get()
    }

    /// The OpenMetrics 1.0 exposition, for scrapers that ask for it (Prometheus does).
    pub fn render_openmetrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    /// The Prometheus text format 0.0.4 that PROTOCOL §5 names, for everyone else.
    pub fn render_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.render_openmetrics())
    }
}

/// Rewrites prometheus-client's OpenMetrics (the only format it writes) as Prometheus text 0.0.4. The
/// samples are the same; 0.0.4 names a counter's HELP and TYPE after its `_total` sample rather than
/// after the family, and has no `# UNIT` or `# EOF` lines. (None of our metrics has a `_created`
/// sample, which 0.0.4 would also lack.)
fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let counters: HashSet<&str> =
        openmetrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters.contains(name).then_some((prefix, name, tail))
        });
        match descriptor {
            Some((prefix, name, tail)) => text.push_str(&format!("{prefix}{name}_total {tail}")),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// The process's resident memory in bytes (Linux `/proc/self/statm`), for `/api/v1/stats` and the bench.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}
