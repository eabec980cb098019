//! Subscribers that lose their connection and resume (`--churn`, `--restart-hub-at`): each keeps the
//! stream position (`seq`, `epoch`) of the last event it received, and when its connection ends (dropped
//! on purpose by the churn, or the hub gone) it reconnects with `?since=&epoch=` until the hub takes it,
//! so what was published meanwhile arrives through the replay and loss stays 0.
//!
//! These subscribers keep a task each (like chat members), off the epoll reader: a resumable run
//! measures reconnects and replays, and the plain fan-out path stays as it is.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use memchr::memmem;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::clock::now_ns;
use super::scenario::Marker;
use super::stats::latency_histogram;
use super::subscriber::{self, CLOSE_TIMEOUT, Outcome, Shared, Socket};
use super::summary::{Percentiles, ResumeStats};
use super::ws::{self, Frame};

/// Pause between two failed reconnect attempts (with up to as much again at random, so a restarted
/// hub is not met by every subscriber in the same millisecond).
const RETRY_DELAY: Duration = Duration::from_millis(50);
/// A subscriber the churn dropped stays away up to this long (uniformly at random) before reconnecting,
/// as a client's backoff would: reconnecting at once (a few milliseconds) would rarely miss a message,
/// and the replay would go untested.
const CHURN_AWAY: Duration = Duration::from_millis(200);

/// A position in a stream, as the hub gives it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub seq: u64,
    pub epoch: String,
}

impl Position {
    /// The `seq` and `epoch` of a greeting or a pushed event; the last `"seq":` of the frame is the
    /// stream's (the bench's own marker is `"bench_seq"`, and user data comes before the position).
    pub fn scan(frame: &[u8]) -> Option<Position> {
        let at = memmem::rfind(frame, b"\"seq\":")? + 6;
        let rest = &frame[at..];
        let rest = &rest[rest.iter().take_while(|b| **b == b' ').count()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let seq = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        let at = memmem::rfind(frame, b"\"epoch\":")? + 8;
        let rest = &frame[at..];
        let rest = &rest[rest.iter().take_while(|b| **b == b' ').count()..];
        let rest = rest.strip_prefix(b"\"")?;
        let end = memchr::memchr(b'"', rest)?;
        let epoch = std::str::from_utf8(&rest[..end]).ok()?.to_owned();
        Some(Position { seq, epoch })
    }

    /// The query that resumes after this position.
    pub fn query(&self) -> String {
        format!("since={}&epoch={}", self.seq, self.epoch)
    }
}

/// What a resumable run shares: the churn, and the counters that become [`ResumeStats`].
pub struct Resuming {
    /// Share of the subscribers to drop per second (0.05 for `5%/s`); 0 for none.
    pub churn_per_s: f64,
    /// Cancelled when publishing is over: the churn stops, so the drain is not a moving target.
    pub calm: CancellationToken,
    reconnects: AtomicU64,
    failed_attempts: AtomicU64,
    replayed: AtomicU64,
    resume_failed: AtomicU64,
    /// Reconnect times in nanoseconds; one lock per reconnect, which is rare.
    reconnect_ns: Mutex<Histogram<u64>>,
}

impl Resuming {
    pub fn new(churn_per_s: f64) -> Self {
        Self {
            churn_per_s,
            calm: CancellationToken::new(),
            reconnects: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            resume_failed: AtomicU64::new(0),
            reconnect_ns: Mutex::new(latency_histogram()),
        }
    }

    /// The figures so far.
    pub fn stats(&self) -> ResumeStats {
        let hist = self.reconnect_ns.lock().expect("reconnect histogram lock poisoned");
        ResumeStats {
            churn_pct_per_s: self.churn_per_s * 100.0,
            reconnects: self.reconnects.load(Ordering::Relaxed),
            reconnect_ms: Percentiles::from_histogram(&hist, 1.0),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            resume_failed: self.resume_failed.load(Ordering::Relaxed),
            restart: None,
        }
    }
}

/// How a connection ended.
enum Ended {
    /// The run is over (closed as a client should).
    Stopped,
    /// The churn dropped it: reconnect after a while away.
    Dropped,
    /// The hub went away: reconnect at once. The time it ended, bench clock.
    Lost(u64),
}

/// Runs subscriber `key` from its first connection (greeted at `position`) to the end of the run,
/// reconnecting with resume whenever the connection ends.
pub async fn run(
    shared: &Shared,
    resuming: &Resuming,
    key: u64,
    group: u64,
    mut socket: Socket,
    mut position: Option<Position>,
    outcome: &mut Outcome,
) {
    // Everything up to this seq that arrives on the current connection is a replay.
    let mut replay_through = 0;
    loop {
        let ended = listen(shared, resuming, key, group, &mut socket, &mut position, replay_through, outcome).await;
        // Closed now: the hub sees the end of the stream while this subscriber is away.
        drop(socket);
        let lost_at = match ended {
            Ended::Stopped => return,
            Ended::Lost(at) => at,
            Ended::Dropped => {
                tokio::select! {
                    () = shared.stop.cancelled() => return,
                    () = tokio::time::sleep(CHURN_AWAY.mul_f64(rand::random::<f64>())) => {}
                }
                // Its time to reconnect counts from when it tries again, not from when it left.
                now_ns()
            }
        };
        socket = loop {
            if shared.stop.is_cancelled() {
                return;
            }
            let attempt = subscriber::connect(shared, key, position.as_ref());
            match tokio::time::timeout(shared.connect_timeout, attempt).await {
                Ok(Ok((socket, greeting))) => {
                    let greeted = now_ns();
                    resuming.reconnects.fetch_add(1, Ordering::Relaxed);
                    let mut hist = resuming.reconnect_ns.lock().expect("reconnect histogram lock poisoned");
                    hist.saturating_record(greeted.saturating_sub(lost_at));
                    drop(hist);
                    // After `?since=` the greeting's seq is the last one replayed (PROTOCOL §7).
                    replay_through = greeting.map_or(0, |g| g.seq);
                    break socket;
                }
                Ok(Err(_)) | Err(_) => {
                    resuming.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    let jitter = RETRY_DELAY.mul_f64(rand::random::<f64>());
                    tokio::select! {
                        () = shared.stop.cancelled() => return,
                        () = tokio::time::sleep(RETRY_DELAY + jitter) => {}
                    }
                }
            }
        };
    }
}

/// Reads one connection until the run stops, the churn drops it or the hub ends it.
#[allow(clippy::too_many_arguments)]
async fn listen(
    shared: &Shared,
    resuming: &Resuming,
    key: u64,
    group: u64,
    socket: &mut Socket,
    position: &mut Option<Position>,
    replay_through: u64,
    outcome: &mut Outcome,
) -> Ended {
    let stop = shared.stop.cancelled();
    tokio::pin!(stop);
    let churn = tokio::time::sleep(churn_delay(resuming.churn_per_s));
    tokio::pin!(churn);
    let churning = resuming.churn_per_s > 0.0;
    // Frames that came with the greeting (a replay often does) are handled before anything is read:
    // left in the buffer they would wait for the next live push, which may never come.
    let mut recv_ns = now_ns();
    loop {
        let mut pongs = Vec::new();
        if take_frames(shared, resuming, key, group, socket, position, replay_through, recv_ns, outcome, &mut pongs)
            .is_err()
        {
            return Ended::Lost(recv_ns);
        }
        for payload in pongs {
            if ws::send(&mut socket.stream, ws::PONG, &payload).await.is_err() {
                return Ended::Lost(now_ns());
            }
        }
        tokio::select! {
            biased;
            read = socket.stream.read(socket.frames.spare()) => {
                recv_ns = now_ns();
                match read {
                    Ok(0) | Err(_) => return Ended::Lost(recv_ns),
                    Ok(n) => socket.frames.filled(n),
                }
            }
            () = &mut stop => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, subscriber::close(socket)).await;
                return Ended::Stopped;
            }
            // Dropped without a close frame, as a lost network would: the hub sees the end of the stream.
            () = &mut churn, if churning && !resuming.calm.is_cancelled() => return Ended::Dropped,
        }
    }
}

/// Handles every whole frame in the socket's buffer, read at `recv_ns`: bench messages are booked and
/// move the position (counted as replayed up to `replay_through`), pings are collected in `pongs`; a
/// close or a broken frame ends the connection (`Err`).
#[allow(clippy::too_many_arguments)]
fn take_frames(
    shared: &Shared,
    resuming: &Resuming,
    key: u64,
    group: u64,
    socket: &mut Socket,
    position: &mut Option<Position>,
    replay_through: u64,
    recv_ns: u64,
    outcome: &mut Outcome,
    pongs: &mut Vec<Vec<u8>>,
) -> Result<(), ()> {
    loop {
        match socket.frames.next() {
            Ok(None) => return Ok(()),
            Ok(Some(Frame::Message(text))) => {
                if let Some(marker) = Marker::scan(text) {
                    if let Some(at) = Position::scan(text) {
                        if at.seq <= replay_through {
                            resuming.replayed.fetch_add(1, Ordering::Relaxed);
                        }
                        *position = Some(at);
                    }
                    subscriber::account(shared, key, group, marker, recv_ns, outcome);
                } else if memmem::find(text, b"\"resume_failed\"").is_some() {
                    resuming.resume_failed.fetch_add(1, Ordering::Relaxed);
                    shared.shards.error(key, "resume_failed");
                } else if memmem::find(text, b"\"type\":\"event\"").is_some() {
                    // Another client's event on the bench org: it moves the position all the same.
                    if let Some(at) = Position::scan(text) {
                        *position = Some(at);
                    }
                }
            }
            Ok(Some(Frame::Ping(payload))) => pongs.push(payload.to_vec()),
            Ok(Some(Frame::Pong)) => {}
            Ok(Some(Frame::Close(_))) | Err(_) => return Err(()),
        }
    }
}

/// How long a connection lives under `churn_per_s`: exponentially distributed, so that drops over all
/// subscribers come as a Poisson stream of `churn_per_s × N` a second.
fn churn_delay(churn_per_s: f64) -> Duration {
    if churn_per_s <= 0.0 {
        return Duration::from_secs(86_400);
    }
    let uniform: f64 = rand::random::<f64>().max(f64::MIN_POSITIVE);
    Duration::from_secs_f64((-uniform.ln() / churn_per_s).min(86_400.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream position is read from greetings and events, never from the bench's own marker.
    #[test]
    fn positions_are_scanned_from_greetings_and_events() {
        let event = br#"{"type":"event","event_type":"bench.tick","data":{"bench_seq":7,"bench_t":1},"org_id":"bench","timestamp":"t","seq":42,"epoch":"9f3c"}"#;
        assert_eq!(Position::scan(event), Some(Position { seq: 42, epoch: "9f3c".into() }));
        let greeting = br#"{"type":"connection_established","seq": 0, "epoch": "ab"}"#;
        assert_eq!(Position::scan(greeting), Some(Position { seq: 0, epoch: "ab".into() }));
        assert_eq!(Position::scan(br#"{"data":{"bench_seq":7}}"#), None);
        assert_eq!(Position { seq: 3, epoch: "ab".into() }.query(), "since=3&epoch=ab");
    }

    /// Churn delays average 1 / rate.
    #[test]
    fn churn_delays_average_the_inverse_rate() {
        let mean = (0..20_000).map(|_| churn_delay(0.5).as_secs_f64()).sum::<f64>() / 20_000.0;
        assert!((mean - 2.0).abs() < 0.1, "{mean}");
        assert_eq!(churn_delay(0.0), Duration::from_secs(86_400));
    }
}
