//! Stream positions and resume (PROTOCOL §7): org events and dashboard pushes are logged in the store
//! with a position (`seq`, +1 per push, and the stream's `epoch`), and a client that reconnects gets
//! what it missed from that log before it continues live.
//!
//! A stream is named by its layer group (`org:{id}`, `admins`). Positions are allocated in the store,
//! so every node agrees on them; the pushes still fan out through the layer. Catching up follows one
//! order: join the group (pushes are held behind the session's replies), read the log, drop held
//! pushes the replay covers, send the replay, then the held pushes go out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::Hub;
use super::error::HubError;
use super::metrics::Metrics;
use super::outbox::Outbox;
use crate::layer::{ConnId, Push, SharedLayer};
use crate::protocol::{self, ResumeFailure, ResumeFrom, ServerMessage, Unpositioned};
use crate::store::{MAX_APPEND, Store};

/// How often the background task prunes the logs. Pruning only reclaims space: what a resume may
/// replay is bounded by the settings at read time, so a late prune changes no answer.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// This node's side of the streams: the publishes waiting for their positions, per stream.
///
/// A stream's publishes are appended and pushed by one task at a time (its committer), in batches:
/// everything that queued while the previous batch was appended and pushed goes into the next one, in
/// one transaction. One at a time keeps this node's pushes of a stream in seq order (a client tracks
/// the last seq it saw and must not see 6 before 5); batches keep a busy stream from paying a commit
/// per push, which one at a time alone would (a 1,000-member stream carried 256 events/s that way,
/// 2,048 without the log).
pub struct Streams {
    committer: Arc<Committer>,
}

struct Committer {
    store: Arc<dyn Store>,
    layer: SharedLayer,
    metrics: Arc<Metrics>,
    /// A stream is here while its committer runs, with what waits for the next batch. std Mutex:
    /// held to queue a publish or take a batch, never across an await.
    waiting: Mutex<HashMap<String, Vec<Waiting>>>,
}

/// One publish waiting for its position.
struct Waiting {
    kind: &'static str,
    skip: Option<ConnId>,
    push: Unpositioned,
    /// Its seq and whether the push reached the channel layer.
    done: oneshot::Sender<Result<(i64, bool), HubError>>,
}

impl Streams {
    pub fn new(store: Arc<dyn Store>, layer: SharedLayer, metrics: Arc<Metrics>) -> Self {
        Self { committer: Arc::new(Committer { store, layer, metrics, waiting: Mutex::default() }) }
    }
}

/// Logs a push in `stream` and publishes it (counted as `kind`) to every member but `skip`; returns
/// its seq and whether the push reached the channel layer (once logged, a failed push is no error:
/// resuming clients get it from the log). The log keeps the frame the sockets get.
///
/// The push is appended and published by the stream's committer task, so a caller that goes away (an
/// HTTP client hanging up) neither loses a push already queued nor stalls the ones behind it.
pub async fn publish(
    hub: &Hub,
    kind: &'static str,
    stream: &str,
    skip: Option<ConnId>,
    push: Unpositioned,
) -> Result<(i64, bool), HubError> {
    let (done, answer) = oneshot::channel();
    let committer = &hub.streams.committer;
    let waiting = Waiting { kind, skip, push, done };
    let start = {
        let mut streams = committer.waiting.lock().expect("streams lock poisoned");
        match streams.get_mut(stream) {
            Some(queue) => {
                queue.push(waiting);
                false
            }
            None => {
                streams.insert(stream.to_owned(), vec![waiting]);
                true
            }
        }
    };
    if start {
        tokio::spawn(Arc::clone(committer).run(stream.to_owned()));
    }
    // Dropped unanswered only if the committer panicked (it logs that).
    answer.await.unwrap_or_else(|_| Err(HubError::internal()))
}

impl Committer {
    /// Appends and pushes `stream`'s waiting publishes, batch after batch, until none waits.
    async fn run(self: Arc<Self>, stream: String) {
        // A panic must not leave the stream marked busy with nobody to serve it.
        let _release = Release { committer: &self, stream: &stream };
        loop {
            let batch = {
                let mut streams = self.waiting.lock().expect("streams lock poisoned");
                let queue = streams.get_mut(&stream).expect("a running committer keeps its stream");
                if queue.is_empty() {
                    // Under the lock: a publish that comes after this starts a committer of its own.
                    streams.remove(&stream);
                    return;
                }
                let take = queue.len().min(MAX_APPEND);
                queue.drain(..take).collect::<Vec<_>>()
            };
            self.commit(&stream, batch).await;
        }
    }

    /// Logs a batch in one transaction, then pushes it in seq order and answers each publisher.
    async fn commit(&self, stream: &str, batch: Vec<Waiting>) {
        let render = |i: usize, seq: i64, epoch: &str| batch[i].push.at(seq, epoch);
        let appended = match self.store.append_events(stream, batch.len(), &render).await {
            Ok(appended) => appended,
            Err(e) => {
                error!(error = %e, stream, pushes = batch.len(), "cannot log pushes");
                for waiting in batch {
                    let _ = waiting.done.send(Err(HubError::internal()));
                }
                return;
            }
        };
        for (waiting, appended) in batch.into_iter().zip(appended) {
            let seq = u64::try_from(appended.seq).unwrap_or_default();
            let push = Push { skip: waiting.skip, ..Push::sequenced(appended.frame, seq) };
            let pushed = super::publish_through(&*self.layer, &self.metrics, waiting.kind, stream, push).await.is_ok();
            // The publisher may have gone away; its push is logged and out all the same.
            let _ = waiting.done.send(Ok((appended.seq, pushed)));
        }
    }
}

/// Ends a committer's claim on its stream if it panics; the publishes it held are answered with an error.
struct Release<'a> {
    committer: &'a Committer,
    stream: &'a str,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(mut streams) = self.committer.waiting.lock()
        {
            streams.remove(self.stream);
        }
    }
}

/// `?since=SEQ&epoch=E` on a WebSocket URL: both or neither.
#[derive(Debug, Default, Deserialize)]
pub struct ResumeQuery {
    since: Option<String>,
    epoch: Option<String>,
}

impl ResumeQuery {
    /// The resume point, or a 400 naming what is wrong with it.
    pub fn resume_from(self) -> Result<Option<ResumeFrom>, HubError> {
        match (self.since, self.epoch) {
            (None, None) => Ok(None),
            (Some(since), Some(epoch)) => {
                let since = since.parse::<u64>().map_err(|_| {
                    HubError::bad_request(format!(
                        "since must be the seq of the last push received (an integer of 0 or more), not `{since}`"
                    ))
                })?;
                Ok(Some(ResumeFrom { since, epoch }))
            }
            (Some(_), None) => Err(HubError::bad_request("since needs the epoch it came with: add &epoch=")),
            (None, Some(_)) => Err(HubError::bad_request("epoch needs a position: add &since=")),
        }
    }
}

/// What a connection gets to catch up, and where it then stands.
pub struct CaughtUp {
    /// The position the connection continues live after (its greeting says it).
    pub seq: i64,
    pub epoch: String,
    /// The replayed pushes, or a `resume_failed`; sent before anything live.
    pub frames: Vec<String>,
    /// The resume point was ahead of the stream: the client's error, sent instead of `frames`.
    pub refused: Option<HubError>,
}

/// Catches a connection up on `stream` from `from` (none: it starts at the current position). Call it
/// after the connection joined the stream's group and while its outbox holds pushes behind the
/// session's replies: the held pushes the replay covers are dropped here, and the replay (the frames
/// returned) goes out before the rest.
pub async fn catch_up(
    hub: &Hub,
    stream: &str,
    outbox: &Outbox,
    from: Option<&ResumeFrom>,
) -> Result<CaughtUp, HubError> {
    let head = hub.store.stream_head(stream).await?;
    let mut caught_up = CaughtUp { seq: head.last_seq, epoch: head.epoch, frames: Vec::new(), refused: None };
    let limits = &hub.config.limits;
    // What a resume may still replay: the last `event_history` positions, logged within the retention.
    let window_start = head.last_seq - i64::from(limits.event_history);
    let cutoff = protocol::now_millis() - i64::try_from(limits.event_retention.as_millis()).unwrap_or(i64::MAX);
    let failure = match from {
        None => {
            // No resume: nothing is dropped, as before positions existed; the connection continues from
            // just before the first push held since it joined (one may be held already).
            if let Some(held) = outbox.first_held_seq() {
                caught_up.seq = caught_up.seq.min(i64::try_from(held).unwrap_or(i64::MAX) - 1);
            }
            return Ok(caught_up);
        }
        Some(from) if from.epoch != caught_up.epoch => Some(ResumeFailure::EpochMismatch),
        Some(from) => {
            let since = i64::try_from(from.since).unwrap_or(i64::MAX);
            if since > head.last_seq {
                let message = format!(
                    "since {since} is ahead of this stream (its last seq is {}): resume from a seq you received",
                    head.last_seq
                );
                caught_up.refused = Some(HubError::bad_request(message));
                None
            } else if since == head.last_seq {
                None
            } else {
                let events =
                    hub.store.events_after(stream, since.max(window_start), cutoff, limits.event_history).await?;
                match events.first() {
                    Some(first) if first.seq == since + 1 => {
                        caught_up.seq = caught_up.seq.max(events.last().map_or(0, |last| last.seq));
                        caught_up.frames = events.into_iter().map(|event| event.frame).collect();
                        None
                    }
                    _ => Some(ResumeFailure::Expired),
                }
            }
        }
    };
    if let Some(reason) = failure {
        let oldest = hub.store.events_after(stream, window_start, cutoff, 1).await?;
        let oldest_seq = oldest.first().map_or(head.last_seq + 1, |event| event.seq);
        debug!(stream, ?reason, oldest_seq, "resume failed");
        let message = ServerMessage::ResumeFailed { reason, oldest_seq, epoch: &caught_up.epoch };
        caught_up.frames.push(protocol::encode(&message));
    }
    outbox.skip_through(u64::try_from(caught_up.seq).unwrap_or_default());
    Ok(caught_up)
}

/// Prunes every stream's log now and then, off the publish path, until `shutdown`.
pub async fn prune(store: std::sync::Arc<dyn Store>, history: u32, retention: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let before = protocol::now_millis() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        match store.prune_events(history, before).await {
            Ok(0) => {}
            Ok(pruned) => debug!(pruned, "pruned stream logs"),
            Err(error) => warn!(%error, "cannot prune stream logs; retrying later"),
        }
    }
}
