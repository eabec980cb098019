//! The open-loop publisher: message `seq` goes out at its scheduled time whether or not earlier ones were
//! answered, so a slow hub shows up as latency rather than as a slower schedule (no coordinated omission).
//!
//! The schedule runs on its own blocking thread: tokio's timer rounds every deadline up to the next
//! millisecond, which alone would add 0.5–1 ms to every latency. Even `std::thread::sleep` woke 120–150 µs
//! late on our 2-core VM (publisher lag p50 135–164 µs at 100 × 20/s), and all of it counted as the hub's
//! latency, so the thread sleeps until shortly before a send and spins the rest of the way (lag p50
//! 15 µs). Requests are spawned onto the runtime from there.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};

use super::clock::{instant_at, now_ns};
use super::scenario::Scenario;
use super::stats::latency_histogram;
use super::subscriber::{ACCEPTED, FAILED, Shared};

/// The longest the publisher sleeps before it looks whether the run was interrupted.
const INTERRUPT_CHECK: Duration = Duration::from_millis(50);

/// How long before a send the publisher stops sleeping and spins. At most an eighth of the interval
/// between sends, so that a high rate does not keep a core spinning.
const SPIN: Duration = Duration::from_micros(250);

/// How the publisher reaches the hub.
pub enum Channel {
    /// `POST` through a pooled HTTP client (fanout, notify).
    Http(reqwest::Client),
    /// Frames handed to each chat member's socket task, by subscriber key.
    Chat(Vec<Option<mpsc::Sender<String>>>),
}

/// Sends every message of the plan on schedule, starting at bench-clock `start_ns`; returns how late the
/// sends went out. At most `max_inflight` HTTP requests are outstanding; beyond that sends wait, and the
/// wait shows up as publisher lag (and in the latency, which is measured from the intended time). Warm-up
/// sends are left out of the lag, as out of every other result. An interrupted run stops sending.
pub fn run(
    shared: Arc<Shared>,
    channel: Channel,
    start_ns: u64,
    max_inflight: usize,
    runtime: Handle,
) -> Histogram<u64> {
    let plan = &shared.plan;
    let mut lag = latency_histogram();
    let inflight = Arc::new(Semaphore::new(max_inflight));
    let url: Arc<str> = shared.target.http_url(&plan.publish_path()).into();
    let spin = SPIN.min(Duration::from_nanos(plan.offset_ns(1) / 8));
    for seq in 0..plan.total {
        let intended = start_ns + plan.offset_ns(seq);
        if !wait_until(instant_at(intended), spin, &shared.interrupt) {
            break;
        }
        let measured = seq >= plan.warmup;
        let body = plan.message(seq, intended);
        match &channel {
            Channel::Http(client) => {
                let permit = match inflight.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        runtime.block_on(inflight.clone().acquire_owned()).expect("the semaphore is never closed")
                    }
                };
                let now = now_ns();
                if measured {
                    lag.saturating_record(now.saturating_sub(intended));
                }
                shared.sends.sent(seq, now);
                let request = client
                    .post(&*url)
                    .header("X-API-Key", &shared.target.api_key)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body);
                let shared = shared.clone();
                runtime.spawn(async move {
                    let state = match request.send().await {
                        // Reading the body lets the connection go back to the pool.
                        Ok(response) if response.status().is_success() => {
                            shared.sends.acknowledged(seq, now_ns());
                            let _ = response.bytes().await;
                            ACCEPTED
                        }
                        Ok(response) => {
                            shared.shards.error(seq, &format!("publish_http_{}", response.status().as_u16()));
                            FAILED
                        }
                        Err(e) => {
                            let kind = if e.is_timeout() {
                                "publish_timeout"
                            } else if e.is_connect() {
                                "publish_connect"
                            } else {
                                "publish_error"
                            };
                            shared.shards.error(seq, kind);
                            FAILED
                        }
                    };
                    shared.status[seq as usize].store(state, Ordering::Relaxed);
                    drop(permit);
                });
            }
            Channel::Chat(senders) => {
                debug_assert_eq!(plan.scenario, Scenario::Chat);
                let now = now_ns();
                if measured {
                    lag.saturating_record(now.saturating_sub(intended));
                }
                shared.sends.sent(seq, now);
                let sender = senders.get(plan.sender_of(seq) as usize).and_then(Option::as_ref);
                let state = match sender.map(|tx| tx.try_send(body)) {
                    Some(Ok(())) => ACCEPTED,
                    Some(Err(mpsc::error::TrySendError::Full(_))) => {
                        shared.shards.error(seq, "publish_queue_full");
                        FAILED
                    }
                    Some(Err(mpsc::error::TrySendError::Closed(_))) | None => {
                        shared.shards.error(seq, "publish_sender_gone");
                        FAILED
                    }
                };
                shared.status[seq as usize].store(state, Ordering::Relaxed);
            }
        }
        shared.sent.fetch_add(1, Ordering::Relaxed);
    }
    // Wait for the answers still outstanding.
    let _ = runtime.block_on(inflight.acquire_many(max_inflight as u32));
    lag
}

/// Returns true at `deadline` (at once if it passed): asleep until `spin` before it, then spinning;
/// false as soon as `interrupt` is seen (it is looked at every [`INTERRUPT_CHECK`] of sleep).
fn wait_until(deadline: Instant, spin: Duration, interrupt: &tokio_util::sync::CancellationToken) -> bool {
    let wake = deadline.checked_sub(spin).unwrap_or(deadline);
    loop {
        if interrupt.is_cancelled() {
            return false;
        }
        let sleep = wake.saturating_duration_since(Instant::now());
        if sleep.is_zero() {
            break;
        }
        std::thread::sleep(sleep.min(INTERRUPT_CHECK));
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_the_deadline_and_not_for_a_past_one() {
        let never = tokio_util::sync::CancellationToken::new();
        for spin in [Duration::ZERO, Duration::from_micros(250), Duration::from_secs(1)] {
            let deadline = Instant::now() + Duration::from_millis(3);
            assert!(wait_until(deadline, spin, &never));
            assert!(Instant::now() >= deadline, "returned before the deadline with spin {spin:?}");
        }
        let past = Instant::now();
        wait_until(past, SPIN, &never);
        assert!(past.elapsed() < Duration::from_millis(100), "a past deadline waits for nothing");
        let interrupted = tokio_util::sync::CancellationToken::new();
        interrupted.cancel();
        let start = Instant::now();
        assert!(!wait_until(start + Duration::from_secs(60), SPIN, &interrupted));
        assert!(start.elapsed() < Duration::from_secs(1), "an interrupt ends the wait");
    }
}
