//! Stream positions and resume (PROTOCOL §7): org events and dashboard pushes are logged in the store
//! with a position (`seq`, +1 per push, and the stream's `epoch`), and a client that reconnects gets
//! what it missed from that log before it continues live.
//!
//! A stream is named by its layer group (`org:{id}`, `admins`). Positions are allocated in the store,
//! so every node agrees on them; the pushes still fan out through the layer. Catching up follows one
//! order: join the group (pushes are held behind the session's replies), read the log, drop held
//! pushes the replay covers, send the replay, then the held pushes go out.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Hub;
use super::error::HubError;
use super::outbox::Outbox;
use crate::layer::{ConnId, Push};
use crate::protocol::{self, ResumeFailure, ResumeFrom, ServerMessage};
use crate::store::{RenderEvent, Store};

/// Locks that order one stream's publishes on this node; a power of two for a cheap modulo, and
/// enough that two busy streams rarely share one.
const ORDER_SHARDS: usize = 64;
/// How often the background task prunes the logs. Pruning only reclaims space: what a resume may
/// replay is bounded by the settings at read time, so a late prune changes no answer.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// This node's side of the streams: the order of its publishes per stream.
pub struct Streams {
    // tokio Mutex: held across the store's append and the layer's publish.
    order: Box<[tokio::sync::Mutex<()>]>,
}

impl Default for Streams {
    fn default() -> Self {
        Self { order: (0..ORDER_SHARDS).map(|_| tokio::sync::Mutex::new(())).collect() }
    }
}

impl Streams {
    fn order(&self, stream: &str) -> &tokio::sync::Mutex<()> {
        let mut hasher = DefaultHasher::new();
        stream.hash(&mut hasher);
        &self.order[hasher.finish() as usize % ORDER_SHARDS]
    }
}

/// Logs a push in `stream` and publishes it (counted as `kind`) to every member but `skip`; returns
/// its seq and whether the push reached the channel layer (once logged, a failed push is no error:
/// resuming clients get it from the log). `render` makes the frame once, for its position: the log
/// keeps the text the sockets get.
pub async fn publish(
    hub: &Hub,
    kind: &'static str,
    stream: &str,
    skip: Option<ConnId>,
    render: RenderEvent<'_>,
) -> Result<(i64, bool), HubError> {
    // Held from the allocation to the publish, so that this node's pushes of a stream reach the layer
    // in seq order; a client tracks the last seq it saw and must not see 6 before 5.
    let _order = hub.streams.order(stream).lock().await;
    let appended = hub.store.append_event(stream, render).await?;
    let seq = u64::try_from(appended.seq).unwrap_or_default();
    let push = Push { skip, ..Push::sequenced(appended.frame, seq) };
    let pushed = hub.push_stored(kind, stream, push).await;
    Ok((appended.seq, pushed))
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
