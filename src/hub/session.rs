//! One WebSocket connection after the upgrade: authentication outcome, the endpoint's greeting, then one
//! task that reads client frames, writes queued pushes in bursts, and keeps the heartbeat.
//!
//! A single task per connection (rather than a reader and a writer) keeps an idle connection small;
//! writes are bounded by [`SEND_TIMEOUT`] so a stuck client cannot stall its own reads forever either.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use tracing::debug;

use super::Hub;
use super::metrics::Endpoint;
use super::outbox::{Batch, Outbox};
use crate::auth::Identity;
use crate::layer::{ConnId, Push};
use crate::protocol::close;

/// Longest a burst of writes may take before the client is treated as a slow consumer (4008).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the hub waits for the client's answer to its close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What an endpoint knows about its connection.
pub struct Conn {
    pub id: ConnId,
    pub identity: Identity,
    pub outbox: Arc<Outbox>,
}

/// An endpoint's yes: its session state, the connection back, and the greeting to send first.
pub struct Accepted<S> {
    pub session: S,
    pub conn: Conn,
    /// Sent first, in order: `connection_established` (and, in chat, `history`).
    pub greetings: Vec<String>,
}

/// Why a connection is refused after the upgrade (PROTOCOL §1: accept, then close with a reason).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: u16,
    pub reason: String,
}

impl Refusal {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }
}

/// One endpoint's side of a connection.
pub trait Session: Send + Sync + Sized + 'static {
    /// The metrics label of this endpoint.
    const ENDPOINT: Endpoint;

    /// Handles one text frame, appending direct replies (serialized) to `replies`.
    fn on_text(&mut self, text: &str, replies: &mut Vec<String>) -> impl Future<Output = ()> + Send;

    /// Does this push go out on this connection? (The `subscribe` filter; the default is yes.)
    fn wants(&self, _push: &Push) -> bool {
        true
    }

    /// The connection ended, whatever the reason: leave presence, tell the others.
    fn on_close(self) -> impl Future<Output = ()> + Send;
}

/// How a session ended.
enum End {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The client closed or vanished; nothing more to send.
    Gone,
}

/// Closes a freshly upgraded socket with a refusal (4001, 4003, 4004).
pub async fn refuse(mut socket: WebSocket, refusal: Refusal) {
    debug!(code = refusal.code, reason = %refusal.reason, "refused after upgrade");
    close_socket(&mut socket, refusal.code, refusal.reason).await;
}

/// Runs a connection whose endpoint accepted it: sends the greetings, then serves until it ends. (The
/// caller counts the connection in and out, around `open` and this.)
pub async fn serve<S: Session>(hub: Arc<Hub>, mut socket: WebSocket, accepted: Accepted<S>) {
    let Accepted { mut session, conn, greetings } = accepted;
    let end = run_loop(&hub, &mut socket, &conn, greetings, &mut session).await;
    if let End::Close(code, reason) = end {
        if code == close::SLOW_CONSUMER {
            debug!(user = %conn.identity.user_id, "closing slow consumer");
        }
        close_socket(&mut socket, code, reason.to_owned()).await;
    }
    session.on_close().await;
}

async fn run_loop<S: Session>(
    hub: &Hub,
    socket: &mut WebSocket,
    conn: &Conn,
    greetings: Vec<String>,
    session: &mut S,
) -> End {
    let limits = &hub.config.limits;
    let mut batch: Vec<Arc<Push>> = Vec::new();
    let mut replies: Vec<String> = Vec::new();
    let mut heartbeat = tokio::time::interval_at(Instant::now() + limits.heartbeat_interval, limits.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();

    let count = greetings.len() as u64;
    if let Some(end) = write(hub, &conn.outbox, socket, greetings.into_iter().map(|g| Message::Text(g.into()))).await {
        return end;
    }
    hub.metrics.frames_out(S::ENDPOINT, count);
    // Registered once: every session waits on the same token, and re-registering on each wake-up would
    // take its lock from both cores for every delivery.
    let shutdown = hub.shutdown.cancelled();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return End::Close(close::GOING_AWAY, "hub shutting down"),
            status = conn.outbox.next_batch(&mut batch) => {
                if status == Batch::Overflowed {
                    return End::Close(close::SLOW_CONSUMER, "slow consumer: outbound queue overflowed");
                }
                let mut sent = 0;
                let frames = batch
                    .drain(..)
                    .filter(|push| session.wants(push))
                    .inspect(|_| sent += 1)
                    .map(|push| Message::Text(push.frame.clone()));
                if let Some(end) = write(hub, &conn.outbox, socket, frames).await {
                    return end;
                }
                hub.metrics.frames_out(S::ENDPOINT, sent);
            }
            frame = socket.recv() => {
                last_seen = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        hub.metrics.frame_in(S::ENDPOINT);
                        session.on_text(&text, &mut replies).await;
                        let count = replies.len() as u64;
                        if let Some(end) = write(hub, &conn.outbox, socket, replies.drain(..).map(|r| Message::Text(r.into()))).await {
                            return end;
                        }
                        hub.metrics.frames_out(S::ENDPOINT, count);
                    }
                    Some(Ok(Message::Binary(_))) => {
                        return End::Close(close::UNSUPPORTED_DATA, "binary frames are not supported");
                    }
                    // tungstenite answers pings itself; any frame proves the client alive.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite queued the echo of the client's close frame; send it, so the
                        // client sees a clean close handshake.
                        let _ = write(hub, &conn.outbox, socket, std::iter::empty()).await;
                        return End::Gone;
                    }
                    None => return End::Gone,
                    Some(Err(error)) => return read_error(error),
                }
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() >= limits.heartbeat_timeout {
                    return End::Close(close::HEARTBEAT_TIMEOUT, "heartbeat timeout");
                }
                if let Some(end) = write(hub, &conn.outbox, socket, std::iter::once(Message::Ping(Default::default()))).await {
                    return end;
                }
            }
        }
    }
}

/// Writes frames with one flush at the end (one syscall for a burst); `Some` ends the session: the
/// socket failed, or the client took longer than [`SEND_TIMEOUT`] to take them (a slow consumer).
async fn write(
    hub: &Hub,
    outbox: &Outbox,
    socket: &mut WebSocket,
    frames: impl Iterator<Item = Message>,
) -> Option<End> {
    let write = async {
        for frame in frames {
            socket.feed(frame).await?;
        }
        socket.flush().await
    };
    // Most writes complete at once (the socket buffer has room): try once before arming a timer, which
    // would cost a timer-wheel entry per write on the fan-out path.
    let mut write = std::pin::pin!(write);
    let result = match futures_util::poll!(write.as_mut()) {
        std::task::Poll::Ready(result) => Ok(result),
        std::task::Poll::Pending => tokio::time::timeout(SEND_TIMEOUT, write).await,
    };
    match result {
        Ok(Ok(())) => None,
        Ok(Err(_)) => Some(End::Gone),
        Err(_) => {
            // Counted once per connection, whether its queue overflowed first or the write timed out.
            if outbox.mark_overflowed() {
                hub.metrics.slow_consumer();
            }
            Some(End::Close(close::SLOW_CONSUMER, "slow consumer: write timed out"))
        }
    }
}

/// Maps a read error to the close code PROTOCOL §2 gives it.
fn read_error(error: axum::Error) -> End {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => End::Close(close::TOO_BIG, "frame too large"),
        Some(tungstenite::Error::Utf8(_)) => End::Close(close::INVALID_PAYLOAD, "invalid UTF-8"),
        Some(tungstenite::Error::Protocol(_)) => End::Close(1002, "protocol error"),
        _ => End::Gone,
    }
}

/// Sends a close frame and waits briefly for the client's answer, so it sees a clean close.
async fn close_socket(socket: &mut WebSocket, code: u16, reason: String) {
    let frame = CloseFrame { code, reason: reason.into() };
    let answer = async {
        socket.send(Message::Close(Some(frame))).await?;
        while let Some(frame) = socket.recv().await {
            frame?;
        }
        Ok::<(), axum::Error>(())
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, answer).await;
}
