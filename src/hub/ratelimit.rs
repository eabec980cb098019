//! Inbound rate limits (PROTOCOL §2, §3 and §5). On a WebSocket, a frame above `message_rate` (with
//! `message_burst` of slack, shared by all of a user's connections) is not handled and gets a `rate_limited` error; a client that keeps going
//! after being told is closed with 4029. Over HTTP, a user's requests share one budget of the same size
//! across connections, and a request over it gets 429 with `Retry-After`.
//!
//! Two GCRA limiters from `governor`: one for frames, one for refusals ("strikes"). A client that overshoots
//! once, or a few times a minute, only sees errors; one that ignores them spends its strikes within
//! seconds. Pushes, pings answered by tungstenite and the hub's own frames are never counted: this guards
//! the hub's work per client message (parsing, the store, the fan-out a chat message causes).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::Limits;

/// Refusals a connection may collect at once before it is closed with 4029.
pub const STRIKES: u32 = 10;
/// One strike is forgiven per this many seconds.
pub const STRIKE_PERIOD_SECS: u64 = 1;

type Middleware = NoOpMiddleware<<MonotonicClock as Clock>::Instant>;
type Limiter = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, Middleware>;
type KeyedLimiter = RateLimiter<String, HashMapStateStore<String>, MonotonicClock, Middleware>;

/// Users tracked before the first sweep of idle ones.
const FIRST_SWEEP: usize = 1024;

/// The quota `limits` asks for, or `None` when `message_rate` is 0 (off).
fn quota(limits: &Limits) -> Option<Quota> {
    let rate = NonZeroU32::new(limits.message_rate)?;
    // Config validation refuses a zero burst while the rate is on; 1 keeps this total anyway.
    let burst = NonZeroU32::new(limits.message_burst).unwrap_or(NonZeroU32::MIN);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// What to do with one inbound frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Handle it.
    Allow,
    /// Drop it and answer with a `rate_limited` error.
    Refuse,
    /// Drop it and close the connection with 4029: the client ignored its errors.
    Close,
}

/// One connection's strikes (in the session's task); its frames count against its user's budget in
/// [`PerUser`], shared by all the user's connections: five sockets of one user once had five budgets.
pub struct RateLimit {
    strikes: Limiter,
}

impl RateLimit {
    /// The limit `limits` asks for, or `None` when `message_rate` is 0 (off).
    pub fn new(limits: &Limits) -> Option<Self> {
        quota(limits)?;
        let strikes = Quota::with_period(std::time::Duration::from_secs(STRIKE_PERIOD_SECS))
            .expect("the strike period is not zero")
            .allow_burst(NonZeroU32::new(STRIKES).expect("STRIKES is not zero"));
        Some(Self { strikes: RateLimiter::direct_with_clock(strikes, MonotonicClock) })
    }

    /// Counts one inbound frame of `user` against the user's budget in `frames`.
    pub fn check(&self, frames: &PerUser, user: &str) -> Admission {
        if frames.check(user).is_ok() {
            Admission::Allow
        } else if self.strikes.check().is_ok() {
            Admission::Refuse
        } else {
            Admission::Close
        }
    }
}

/// Every user's budget, across their connections: one for HTTP requests made with their JWT (backends,
/// with the API key, are not limited: they publish on behalf of everyone), one for WebSocket frames.
pub struct PerUser {
    limiter: Option<KeyedLimiter>,
    /// When the map holds this many users, those whose budget is full again are forgotten, and the
    /// next sweep waits until twice as many remain: memory follows the users active recently.
    sweep_at: AtomicUsize,
}

impl PerUser {
    pub fn new(limits: &Limits) -> Self {
        Self {
            limiter: quota(limits).map(|quota| RateLimiter::hashmap_with_clock(quota, MonotonicClock)),
            sweep_at: AtomicUsize::new(FIRST_SWEEP),
        }
    }

    /// Counts one request of `user`; `Err` holds how long until the next one would be allowed.
    pub fn check(&self, user: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        let result =
            limiter.check_key(&user.to_owned()).map_err(|not_until| not_until.wait_time_from(MonotonicClock.now()));
        if limiter.len() >= self.sweep_at.load(Ordering::Relaxed) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            self.sweep_at.store((limiter.len() * 2).max(FIRST_SWEEP), Ordering::Relaxed);
        }
        result
    }

    /// Users currently tracked (for tests of the sweep).
    pub fn tracked(&self) -> usize {
        self.limiter.as_ref().map_or(0, KeyedLimiter::len)
    }
}

/// Client addresses tracked before the first sweep of those whose budget is full again.
const FIRST_IP_SWEEP: usize = 4096;

/// Failed authentications per client address, before anyone is authenticated: every HTTP 401 spends one
/// of the address's `auth_failure_burst`, refilled at `auth_failure_rate` a second, and an address
/// with none left gets 429 on the `/api/` routes before its credentials are looked at. Budgets per user
/// cannot stop a flood of requests that name no valid user.
pub struct AuthFailures {
    burst: f64,
    rate: f64,
    /// A std Mutex: held for one lookup, never across an await.
    budgets: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Budget>>,
    sweep_at: AtomicUsize,
}

/// What an address has left, as of `at`.
struct Budget {
    left: f64,
    at: std::time::Instant,
}

impl AuthFailures {
    pub fn new(limits: &Limits) -> Self {
        Self {
            burst: f64::from(limits.auth_failure_burst),
            rate: f64::from(limits.auth_failure_rate),
            budgets: std::sync::Mutex::default(),
            sweep_at: AtomicUsize::new(FIRST_IP_SWEEP),
        }
    }

    fn refill(&self, budget: &mut Budget, now: std::time::Instant) {
        budget.left = (budget.left + now.duration_since(budget.at).as_secs_f64() * self.rate).min(self.burst);
        budget.at = now;
    }

    /// `Err` with how long until `ip` may fail again, while it has no failure left.
    pub fn check(&self, ip: std::net::IpAddr) -> Result<(), Duration> {
        if self.burst == 0.0 {
            return Ok(());
        }
        let mut budgets = self.budgets.lock().expect("auth failure budgets poisoned");
        let Some(budget) = budgets.get_mut(&ip) else { return Ok(()) };
        self.refill(budget, std::time::Instant::now());
        if budget.left >= 1.0 {
            return Ok(());
        }
        let wait = if self.rate > 0.0 { (1.0 - budget.left) / self.rate } else { 3600.0 };
        Err(Duration::from_secs_f64(wait))
    }

    /// `ip` failed to authenticate once more.
    pub fn failed(&self, ip: std::net::IpAddr) {
        if self.burst == 0.0 {
            return;
        }
        let now = std::time::Instant::now();
        let mut budgets = self.budgets.lock().expect("auth failure budgets poisoned");
        if budgets.len() >= self.sweep_at.load(Ordering::Relaxed) {
            // Addresses whose budget is full again are the same as untracked ones.
            budgets.retain(|_, budget| {
                self.refill(budget, now);
                budget.left < self.burst
            });
            self.sweep_at.store((budgets.len() * 2).max(FIRST_IP_SWEEP), Ordering::Relaxed);
        }
        let budget = budgets.entry(ip).or_insert(Budget { left: self.burst, at: now });
        self.refill(budget, now);
        budget.left = (budget.left - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, burst: u32) -> Limits {
        Limits { message_rate: rate, message_burst: burst, ..Limits::default() }
    }

    #[test]
    fn an_address_out_of_failures_waits_for_the_rate_to_give_one_back() {
        let failures = AuthFailures::new(&Limits { auth_failure_burst: 3, auth_failure_rate: 1, ..Limits::default() });
        let (ip, other) = ("192.0.2.1".parse().expect("an IP"), "192.0.2.2".parse().expect("an IP"));
        for _ in 0..3 {
            assert_eq!(failures.check(ip), Ok(()));
            failures.failed(ip);
        }
        let wait = failures.check(ip).expect_err("no failure left");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(failures.check(other), Ok(()));
    }

    #[test]
    fn a_burst_passes_then_frames_are_refused_then_the_connection_closes() {
        let limit = RateLimit::new(&limits(1, 5)).expect("a limit");
        let frames = PerUser::new(&limits(1, 5));
        let admissions: Vec<Admission> = (0..5 + STRIKES + 1).map(|_| limit.check(&frames, "u1")).collect();
        assert_eq!(admissions[..5], [Admission::Allow; 5]);
        assert_eq!(admissions[5..5 + STRIKES as usize], [Admission::Refuse; STRIKES as usize]);
        assert_eq!(admissions[5 + STRIKES as usize], Admission::Close);
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        assert!(RateLimit::new(&limits(0, 0)).is_none());
        let per_user = PerUser::new(&limits(0, 0));
        assert!((0..1000).all(|_| per_user.check("u1").is_ok()));
    }

    #[test]
    fn each_user_has_a_budget_and_is_told_how_long_to_wait() {
        let per_user = PerUser::new(&limits(1, 2));
        assert_eq!(per_user.check("u1"), Ok(()));
        assert_eq!(per_user.check("u1"), Ok(()));
        let wait = per_user.check("u1").expect_err("over the burst");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(per_user.check("u2"), Ok(()), "another user's budget is untouched");
    }

    #[test]
    fn users_whose_budget_refilled_are_forgotten() {
        let per_user = PerUser::new(&limits(1_000_000, 1));
        for n in 0..FIRST_SWEEP {
            per_user.check(&format!("u{n}")).expect("one request each");
        }
        // At a million a second, every budget is full again within a microsecond: the sweep that the
        // 1024th user triggered found nobody worth keeping.
        assert!(per_user.tracked() < FIRST_SWEEP, "{} users tracked", per_user.tracked());
    }
}
