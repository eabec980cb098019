//! Who may connect (PROTOCOL §7 limits): the node's and each user's WebSocket caps, the per-address cap
//! on connections that have not sent a request yet, the file descriptors kept for HTTP, and the client's
//! address behind a trusted proxy.
//!
//! Every connection is a file descriptor. Without caps one token opened 4,000 sockets, and under a
//! 256-descriptor limit 227 of them left none for `/healthz`, the API or anyone else. So the node
//! serves at most as many WebSockets as its open-file limit allows less [`RESERVED_FDS`], which stay for
//! HTTP requests, the database and Redis; WebSockets over that are accepted and closed with 1013.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::HeaderMap;

use super::metrics::Metrics;
use crate::config::{HubConfig, TrustedProxies};

/// Descriptors never given to WebSockets: HTTP requests (health checks, the API), the listener, logs,
/// and Redis; the database pool's come on top ([`FDS_PER_DB_CONNECTION`] each).
pub const RESERVED_FDS: usize = 64;
/// Descriptors one database connection may hold (SQLite: the database, its WAL and shared memory).
pub const FDS_PER_DB_CONNECTION: usize = 3;
/// The pool size assumed when the config leaves it to the store (PostgreSQL's default, the larger).
const DEFAULT_POOL: usize = 16;

/// Why a connection was refused, the `reason` label of `rtctl_connections_refused_total`.
pub mod refused {
    /// The node serves `--max-connections` WebSockets (or all its descriptors allow): close 1013.
    pub const NODE: &str = "node";
    /// The user holds `--max-connections-per-user` WebSockets: close 4029.
    pub const USER: &str = "user";
    /// The address has `--max-unauthenticated-per-ip` connections waiting for a first request: 429.
    pub const UNAUTHENTICATED: &str = "unauthenticated_per_ip";
    /// The connection sent no request within `--first-request-timeout`: dropped.
    pub const FIRST_REQUEST: &str = "first_request_timeout";
    /// The request bodies in flight hold `--max-body-memory`: 503.
    pub const BODY_MEMORY: &str = "body_memory";
    /// The client address failed authentication too often (`hub::ratelimit::AuthFailures`): 429.
    pub const AUTH_FAILURES: &str = "auth_failures_per_ip";
}

/// The hub's connection caps and counts, one per process.
pub struct Admission {
    /// WebSockets the node serves at once.
    ws_capacity: usize,
    ws_open: AtomicUsize,
    max_per_user: usize,
    per_user: Counts<String>,
    max_waiting: usize,
    waiting: Counts<IpAddr>,
    proxies: TrustedProxies,
    metrics: Arc<Metrics>,
}

impl Admission {
    /// Reads the open-file limit now, with the store and Redis connected, so that their descriptors
    /// count as taken.
    pub fn new(config: &HubConfig, metrics: Arc<Metrics>) -> Self {
        let pool = config.database_pool.map_or(DEFAULT_POOL, |pool| pool as usize);
        let budget = descriptor_budget(RESERVED_FDS + FDS_PER_DB_CONNECTION * pool);
        let limits = &config.limits;
        let ws_capacity = match (limits.max_connections, budget) {
            (Some(max), Some(budget)) => max.min(budget),
            (Some(max), None) => max,
            (None, Some(budget)) => budget,
            (None, None) => usize::MAX,
        };
        Self {
            ws_capacity,
            ws_open: AtomicUsize::new(0),
            max_per_user: limits.max_connections_per_user,
            per_user: Counts::default(),
            max_waiting: limits.max_unauthenticated_per_ip,
            waiting: Counts::default(),
            proxies: config.trusted_proxies.clone(),
            metrics,
        }
    }

    /// WebSockets this node serves at once.
    pub fn ws_capacity(&self) -> usize {
        self.ws_capacity
    }

    /// Counts a refusal in `/metrics`.
    pub fn refused(&self, reason: &'static str) {
        self.metrics.connection_refused(reason);
    }

    /// A place for one more WebSocket on this node, held until the slot drops; `None` when full.
    pub fn node_slot(self: &Arc<Self>) -> Option<NodeSlot> {
        let taken = self
            .ws_open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < self.ws_capacity).then_some(open + 1));
        match taken {
            Ok(_) => Some(NodeSlot(Arc::clone(self))),
            Err(_) => {
                self.refused(refused::NODE);
                None
            }
        }
    }

    /// A place for one more WebSocket of `user`; `None` when the user holds the most allowed.
    pub fn user_slot(self: &Arc<Self>, user: &str) -> Option<UserSlot> {
        if self.per_user.take(user.to_owned(), self.max_per_user) {
            Some(UserSlot(Arc::clone(self), user.to_owned()))
        } else {
            self.refused(refused::USER);
            None
        }
    }

    /// A place for a new connection from `peer` until its first request arrives.
    pub fn waiting_slot(self: &Arc<Self>, peer: IpAddr) -> Waiting {
        let peer = peer.to_canonical();
        if self.proxies.contains(peer) {
            return Waiting::Proxy;
        }
        if self.waiting.take(peer, self.max_waiting) {
            Waiting::Counted(WaitingSlot(Arc::clone(self), peer))
        } else {
            self.refused(refused::UNAUTHENTICATED);
            Waiting::Refused
        }
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the last address of
    /// `X-Forwarded-For` that is not a trusted proxy itself (each proxy appends the address it got the
    /// request from, so the entries before the first untrusted one from the right may be forged).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.proxies.contains(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for entry in forwarded.iter().rev() {
            match entry.parse::<IpAddr>() {
                Ok(ip) if self.proxies.contains(ip.to_canonical()) => continue,
                Ok(ip) => return ip.to_canonical(),
                // An entry that is no address: what came before it cannot be trusted either.
                Err(_) => return peer,
            }
        }
        peer
    }
}

/// What [`Admission::waiting_slot`] decided for a new connection.
pub enum Waiting {
    /// Counted against its address until the slot drops.
    Counted(WaitingSlot),
    /// From a trusted proxy: its connections are many clients', so no one address is counted.
    Proxy,
    /// The address has the most allowed waiting: refuse it.
    Refused,
}

/// A WebSocket counted against the node's cap.
pub struct NodeSlot(Arc<Admission>);

impl Drop for NodeSlot {
    fn drop(&mut self) {
        self.0.ws_open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A WebSocket counted against its user's cap.
pub struct UserSlot(Arc<Admission>, String);

impl Drop for UserSlot {
    fn drop(&mut self) {
        self.0.per_user.give_back(&self.1);
    }
}

/// A connection counted against its address until its first request arrives.
pub struct WaitingSlot(Arc<Admission>, IpAddr);

impl Drop for WaitingSlot {
    fn drop(&mut self) {
        self.0.waiting.give_back(&self.1);
    }
}

/// Counts by key, with keys at zero removed so that memory follows the connections open now.
struct Counts<K>(Mutex<HashMap<K, usize>>);

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq> Counts<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, usize>> {
        // Held for one map operation, never across an await; a panic cannot leave a count half-changed.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds one to `key`'s count unless it is at `max`.
    fn take(&self, key: K, max: usize) -> bool {
        let mut counts = self.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    fn give_back(&self, key: &K) {
        let mut counts = self.lock();
        if let Some(count) = counts.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(key);
            }
        }
    }
}

/// The descriptors left for WebSockets: the soft open-file limit less those open now and `reserve`;
/// `None` when there is no limit (or it cannot be read).
fn descriptor_budget(reserve: usize) -> Option<usize> {
    // SAFETY: getrlimit writes only the struct we pass.
    let soft = unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        usize::try_from(limit.rlim_cur).ok()?
    };
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    Some(soft.saturating_sub(open + reserve))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HubConfig;

    fn admission(tweak: impl FnOnce(&mut HubConfig)) -> Arc<Admission> {
        let mut config = HubConfig::ephemeral(std::path::Path::new("/nonexistent"));
        tweak(&mut config);
        Arc::new(Admission::new(&config, Arc::new(Metrics::new())))
    }

    /// Slots are given back when dropped, and a user's count is forgotten at zero.
    #[test]
    fn slots_count_until_dropped() {
        let admission = admission(|config| {
            config.limits.max_connections = Some(2);
            config.limits.max_connections_per_user = 1;
        });
        let (a, b) = (admission.node_slot(), admission.node_slot());
        assert!(a.is_some() && b.is_some() && admission.node_slot().is_none());
        drop(a);
        assert!(admission.node_slot().is_some());
        let one = admission.user_slot("u1");
        assert!(one.is_some() && admission.user_slot("u1").is_none() && admission.user_slot("u2").is_some());
        drop(one);
        assert!(admission.per_user.lock().is_empty());
    }

    /// `X-Forwarded-For` names the client only when the peer is a trusted proxy, and then its last
    /// entry that is not a proxy itself.
    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let admission = admission(|config| {
            config.trusted_proxies = TrustedProxies::parse("10.0.0.0/8, ::1").expect("valid proxies");
        });
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.2.3".parse().expect("a header value"));
        let ip = |text: &str| text.parse::<IpAddr>().expect("an address");
        assert_eq!(admission.client_ip(ip("10.9.9.9"), &headers), ip("203.0.113.7"));
        assert_eq!(admission.client_ip(ip("::1"), &headers), ip("203.0.113.7"));
        assert_eq!(admission.client_ip(ip("192.0.2.1"), &headers), ip("192.0.2.1"), "an untrusted peer");
        assert_eq!(admission.client_ip(ip("10.9.9.9"), &HeaderMap::new()), ip("10.9.9.9"));
        assert!(matches!(admission.waiting_slot(ip("10.0.0.1")), Waiting::Proxy));
    }
}
