//! The open-loop publisher: message `seq` goes out at its scheduled time whether or not earlier ones were
//! answered, so a slow hub shows up as latency rather than as a slower schedule (no coordinated omission).
//!
//! The schedule runs on its own blocking thread: `std::thread::sleep` wakes within ~60 µs of the deadline,
//! while tokio's timer rounds every deadline up to the next millisecond, which alone would add 0.5–1 ms to
//! every latency. Requests are spawned onto the runtime from there.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;
use std::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};

use super::clock::{instant_at, now_ns};
use super::scenario::Scenario;
use super::stats::latency_histogram;
use super::subscriber::{ACCEPTED, FAILED, Shared};

/// How the publisher reaches the hub.
pub enum Channel {
    /// `POST` through a pooled HTTP client (fanout, notify).
    Http(reqwest::Client),
    /// Frames handed to each chat member's socket task, by subscriber key.
    Chat(Vec<Option<mpsc::Sender<String>>>),
}

/// Sends every message of the plan on schedule, starting at bench-clock `start_ns`; returns how late the
/// sends went out. At most `max_inflight` HTTP requests are outstanding; beyond that sends wait, and the
/// wait shows up as publisher lag (and in the latency, which is measured from the intended time).
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
    for seq in 0..plan.total {
        let intended = start_ns + plan.offset_ns(seq);
        let wait = instant_at(intended).saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
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
                lag.saturating_record(now.saturating_sub(intended));
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
                lag.saturating_record(now.saturating_sub(intended));
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
