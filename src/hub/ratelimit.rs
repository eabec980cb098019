//! The inbound rate limit of one connection (PROTOCOL §2 and §3): a frame above `message_rate` (with
//! `message_burst` of slack) is not handled and gets a `rate_limited` error; a client that keeps going
//! after being told is closed with 4029.
//!
//! Two GCRA limiters from `governor`: one for frames, one for refusals ("strikes"). A client that overshoots
//! once, or a few times a minute, only sees errors; one that ignores them spends its strikes within
//! seconds. Pushes, pings answered by tungstenite and the hub's own frames are never counted: this guards
//! the hub's work per client message (parsing, the store, the fan-out a chat message causes).

use std::num::NonZeroU32;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::Limits;

/// Refusals a connection may collect at once before it is closed with 4029.
pub const STRIKES: u32 = 10;
/// One strike is forgiven per this many seconds.
pub const STRIKE_PERIOD_SECS: u64 = 1;

type Limiter = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<<MonotonicClock as Clock>::Instant>>;

/// What to do with one inbound frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Allow,
    /// Drop it and answer with a `rate_limited` error.
    Refuse,
    /// Drop it and close the connection with 4029: the client ignored its errors.
    Close,
}

/// One connection's limiters (about a hundred bytes, in the session's task).
pub struct RateLimit {
    frames: Limiter,
    strikes: Limiter,
}

impl RateLimit {
    /// The limit `limits` asks for, or `None` when `message_rate` is 0 (off).
    pub fn new(limits: &Limits) -> Option<Self> {
        let rate = NonZeroU32::new(limits.message_rate)?;
        // Config validation refuses a zero burst while the rate is on; 1 keeps this total anyway.
        let burst = NonZeroU32::new(limits.message_burst).unwrap_or(NonZeroU32::MIN);
        let strikes = Quota::with_period(std::time::Duration::from_secs(STRIKE_PERIOD_SECS))
            .expect("the strike period is not zero")
            .allow_burst(NonZeroU32::new(STRIKES).expect("STRIKES is not zero"));
        Some(Self {
            frames: RateLimiter::direct_with_clock(Quota::per_second(rate).allow_burst(burst), MonotonicClock),
            strikes: RateLimiter::direct_with_clock(strikes, MonotonicClock),
        })
    }

    /// Counts one inbound frame.
    pub fn check(&self) -> Verdict {
        if self.frames.check().is_ok() {
            Verdict::Allow
        } else if self.strikes.check().is_ok() {
            Verdict::Refuse
        } else {
            Verdict::Close
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, burst: u32) -> Limits {
        Limits { message_rate: rate, message_burst: burst, ..Limits::default() }
    }

    #[test]
    fn a_burst_passes_then_frames_are_refused_then_the_connection_closes() {
        let limit = RateLimit::new(&limits(1, 5)).expect("a limit");
        let verdicts: Vec<Verdict> = (0..5 + STRIKES + 1).map(|_| limit.check()).collect();
        assert_eq!(verdicts[..5], [Verdict::Allow; 5]);
        assert_eq!(verdicts[5..5 + STRIKES as usize], [Verdict::Refuse; STRIKES as usize]);
        assert_eq!(verdicts[5 + STRIKES as usize], Verdict::Close);
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        assert!(RateLimit::new(&limits(0, 0)).is_none());
    }
}
