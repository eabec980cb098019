//! One WebSocket connection after the upgrade: authentication outcome, the endpoint's greeting, then one
//! task that reads client frames, writes what the socket did not take at once, and keeps the heartbeat.
//!
//! Pushes do not pass through this task: the outbox writes them to an idle socket directly. A single task
//! per connection (rather than a reader and a writer) keeps an idle connection small; a socket that
//! refuses queued frames for `send_timeout` (a limit) marks a slow consumer, so a stuck client cannot stall its
//! own reads forever either.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use strum::VariantNames;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message, protocol::CloseFrame};
use tracing::debug;

use super::Hub;
use super::error::HubError;
use super::lifetime::{self, Lifetime};
use super::outbox::{Event, Outbox, QueueFull, Wire};
use super::ratelimit::{Admission, RateLimit};
use crate::auth::Identity;
use crate::layer::ConnId;
use crate::protocol::Endpoint;
use crate::protocol::{self, ErrorCode, Request, RequestError, RequestId, close};

/// An upgraded connection: tungstenite reads from the TCP socket and writes through the outbox.
pub type WebSocket = WebSocketStream<Wire>;

/// The 4008 reasons: the socket took nothing for `send_timeout`, or more was queued than it may hold.
const WRITE_TIMED_OUT: &str = "slow consumer: write timed out";
const QUEUE_OVERFLOWED: &str = "slow consumer: outbound queue overflowed";

/// What an endpoint knows about its connection.
pub struct Conn {
    pub id: ConnId,
    pub identity: Identity,
    pub outbox: Arc<Outbox>,
    /// The `exp` of the token it was opened with: the connection closes with 4001 when it passes,
    /// unless a `refresh` moves it (PROTOCOL §7).
    pub token_exp: Option<u64>,
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

/// A group the layer could not subscribe to: 1011, reconnect with backoff (PROTOCOL §2); 1001 when the
/// hub is shutting down, as every other connection gets.
impl From<crate::layer::LayerError> for Refusal {
    fn from(error: crate::layer::LayerError) -> Self {
        if let crate::layer::LayerError::ShuttingDown = error {
            return Self::new(crate::protocol::close::GOING_AWAY, "hub shutting down");
        }
        tracing::warn!(%error, "cannot subscribe a connection");
        Self::new(crate::protocol::close::INTERNAL, "channel layer unavailable")
    }
}

/// One endpoint's side of a connection. The session loop parses each frame into the endpoint's
/// [`Session::Request`], answers `ping` itself, and sends what [`Session::handle`] returns (or its error)
/// with the request's `request_id`.
pub trait Session: Send + Sync + Sized + 'static {
    /// The endpoint, for its metrics label.
    const ENDPOINT: Endpoint;

    /// The endpoint's requests besides `ping`: a serde enum tagged by `type`, with the list of its types.
    type Request: DeserializeOwned + VariantNames + Send;

    /// Handles one request: `Some` is the direct reply (the pushes it causes go through the layer).
    fn handle(&mut self, request: Self::Request) -> impl Future<Output = Result<Option<Reply>, HubError>> + Send;

    /// A `refresh` brought a valid token for this connection's user (PROTOCOL §7): take the rights its
    /// claims give, or refuse it (`forbidden`) when they no longer let the user in here. The identity
    /// the connection was opened with is not changed.
    fn refresh_rights(&mut self, identity: &Identity) -> Result<(), HubError>;

    /// The connection ended, whatever the reason: leave presence, tell the others.
    fn on_close(self) -> impl Future<Output = ()> + Send;
}

/// A direct reply to a request, before the request's `request_id` is added to it.
pub struct Reply(ReplyBody);

enum ReplyBody {
    Message(Value),
    /// Frames sent as they are, in order: a resume's replay, the pushes exactly as they were pushed.
    Frames(Vec<String>),
}

impl Reply {
    pub fn new<T: Serialize>(message: &T) -> Self {
        Self(ReplyBody::Message(serde_json::to_value(message).expect("wire types always serialize")))
    }

    /// Frames to send as they are (no `request_id` is added to them).
    pub fn frames(frames: Vec<String>) -> Self {
        Self(ReplyBody::Frames(frames))
    }

    /// The frames, the message's with `request_id` when the request carried one.
    fn encode_into(self, request_id: Option<&RequestId>, out: &mut Vec<String>) {
        match self.0 {
            ReplyBody::Message(message) => out.push(protocol::encode_reply(&message, request_id)),
            ReplyBody::Frames(frames) => out.extend(frames),
        }
    }
}

/// Answers one text frame: an `error` when it does not parse, `pong` to a `ping`, `refreshed` to a
/// `refresh` (which moves `lifetime`), else what the endpoint replies, each echoing the frame's
/// `request_id`.
async fn answer<S: Session>(
    hub: &Hub,
    conn: &Conn,
    lifetime: &mut Lifetime,
    session: &mut S,
    text: &str,
    replies: &mut Vec<String>,
) {
    let inbound = match protocol::parse_request::<S::Request>(text) {
        Ok(inbound) => inbound,
        Err((error, request_id)) => return replies.push(protocol::error_frame(&error, request_id.as_ref())),
    };
    let request_id = inbound.request_id.as_ref();
    let handled = match inbound.request {
        Request::Ping { timestamp } => return replies.push(protocol::pong(timestamp, request_id)),
        Request::Refresh { token } => {
            lifetime.refresh(hub, &conn.identity, &token, |identity| session.refresh_rights(identity)).await.map(Some)
        }
        Request::Endpoint(request) => session.handle(request).await,
    };
    match handled {
        Ok(Some(reply)) => reply.encode_into(request_id, replies),
        Ok(None) => {}
        Err(error) => replies.push(error.frame(request_id)),
    }
}

/// How a session ended.
enum End {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The client closed or vanished; nothing more to send.
    Gone,
}

/// Closes a freshly upgraded socket with a refusal (4001, 4003, 4004).
pub async fn refuse(hub: &Hub, mut socket: WebSocket, refusal: Refusal) {
    // At the default level: an operator asked why a client cannot connect finds the reason here.
    tracing::info!(code = refusal.code, reason = %refusal.reason, "connection refused");
    close_socket(&mut socket, refusal.code, refusal.reason, hub.config.limits.close_timeout).await;
    socket.get_ref().outbox().close();
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
        close_socket(&mut socket, code, reason.to_owned(), hub.config.limits.close_timeout).await;
    }
    conn.outbox.close();
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
    let mut replies: Vec<String> = Vec::new();
    let mut heartbeat = tokio::time::interval_at(Instant::now() + limits.heartbeat_interval, limits.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let rate_limit = RateLimit::new(limits);

    let count = greetings.len() as u64;
    if let Some(end) = write(hub, &conn.outbox, socket, greetings.into_iter().map(|g| Message::Text(g.into()))).await {
        return end;
    }
    conn.outbox.release();
    hub.metrics.frames_out(S::ENDPOINT, count);
    // Registered once: every session waits on the same token, and re-registering on each wake-up would
    // take its lock from both cores for every wake-up.
    let shutdown = hub.shutdown.cancelled();
    tokio::pin!(shutdown);
    // One timer for the token's life, registered at its first poll and only moved by a refresh. An
    // unbounded lifetime never polls it (a bounded one stays bounded).
    let mut lifetime = Lifetime::new(conn.token_exp);
    let expiry = tokio::time::sleep_until(lifetime.deadline().unwrap_or_else(Instant::now));
    tokio::pin!(expiry);
    loop {
        // Armed only while the socket refuses queued frames: an idle or keeping-up connection has no
        // timer entry.
        let stalled_until = conn.outbox.stalled_since().map(|since| since + limits.send_timeout);
        tokio::select! {
            _ = &mut shutdown => return End::Close(close::GOING_AWAY, "hub shutting down"),
            () = &mut expiry, if lifetime.bounded() => {
                debug!(user = %conn.identity.user_id, "closing a connection whose token expired");
                hub.metrics.token_expired_close();
                return End::Close(close::UNAUTHORIZED, lifetime::EXPIRED);
            }
            event = conn.outbox.next_event(stalled_until.is_some()) => match event {
                Event::Drained | Event::Stalled => {}
                Event::Overflowed => {
                    return End::Close(close::SLOW_CONSUMER, QUEUE_OVERFLOWED);
                }
                Event::Failed => return End::Gone,
            },
            () = sleep_until(stalled_until), if stalled_until.is_some() => {
                // The clock restarts whenever the client takes some bytes: only a socket that refused
                // everything for send_timeout makes a slow consumer.
                if conn.outbox.stalled_since().is_some_and(|since| since.elapsed() >= limits.send_timeout) {
                    return slow_consumer(hub, &conn.outbox, WRITE_TIMED_OUT);
                }
            }
            frame = socket.next() => {
                last_seen = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        hub.metrics.frame_in(S::ENDPOINT);
                        let admission = rate_limit
                            .as_ref()
                            .map_or(Admission::Allow, |limit| limit.check(&hub.ws_limit, &conn.identity.user_id));
                        if admission != Admission::Allow {
                            hub.metrics.rate_limited(S::ENDPOINT);
                        }
                        if admission == Admission::Close {
                            hub.metrics.rate_limit_close();
                            debug!(user = %conn.identity.user_id, "closing a client that ignored rate_limited errors");
                            return End::Close(close::RATE_LIMITED, "rate limit exceeded repeatedly");
                        }
                        conn.outbox.hold();
                        if admission == Admission::Allow {
                            answer(hub, conn, &mut lifetime, session, &text, &mut replies).await;
                            // Moved only by a refresh: other frames leave the timer alone.
                            if let Some(deadline) = lifetime.deadline().filter(|d| *d != expiry.deadline()) {
                                expiry.as_mut().reset(deadline);
                            }
                        } else {
                            replies.push(refusal(&text, limits.message_rate));
                        }
                        let count = replies.len() as u64;
                        let written = write(hub, &conn.outbox, socket, replies.drain(..).map(|r| Message::Text(r.into()))).await;
                        conn.outbox.release();
                        if let Some(end) = written {
                            return end;
                        }
                        hub.metrics.frames_out(S::ENDPOINT, count);
                    }
                    Some(Ok(Message::Binary(_))) => {
                        return End::Close(close::UNSUPPORTED_DATA, "binary frames are not supported");
                    }
                    // tungstenite answers pings itself; any frame proves the client alive.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite queues the echo of the client's close frame in the outbox on this
                        // flush, then reports ConnectionClosed without flushing it: write it out here,
                        // so the client sees a clean close handshake.
                        conn.outbox.begin_close();
                        let _ = socket.flush().await;
                        let drain = std::future::poll_fn(|cx| conn.outbox.poll_drain(cx));
                        let _ = tokio::time::timeout(limits.close_timeout, drain).await;
                        return End::Gone;
                    }
                    None => return End::Gone,
                    // Reading answers pings: a client that never reads their pongs fills its queue.
                    Some(Err(error)) if is_queue_full(&error) => return slow_consumer(hub, &conn.outbox, QUEUE_OVERFLOWED),
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

/// The `rate_limited` error for a refused frame, echoing its `request_id` when it has a usable one.
fn refusal(text: &str, rate: u32) -> String {
    #[derive(serde::Deserialize)]
    struct Id {
        request_id: Option<protocol::RequestId>,
    }
    let id = serde_json::from_str::<Id>(text).ok().and_then(|id| id.request_id).filter(protocol::is_request_id);
    let error = RequestError::new(
        ErrorCode::RateLimited,
        format!("too many messages: at most {rate} a second; this one was dropped"),
    );
    protocol::error_frame(&error, id.as_ref())
}

/// Sleeps until `deadline`; forever when there is none (the branch is disabled then anyway).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Marks and counts a slow consumer (once per connection, whether its queue overflowed first or its
/// socket stalled) and ends the session with 4008.
fn slow_consumer(hub: &Hub, outbox: &Outbox, reason: &'static str) -> End {
    if outbox.mark_overflowed() {
        hub.metrics.slow_consumer();
    }
    End::Close(close::SLOW_CONSUMER, reason)
}

/// The session's own write found the outbound queue over capacity: the client reads too little of
/// what it is sent ([`QueueFull`]).
fn is_queue_full(error: &tungstenite::Error) -> bool {
    matches!(error, tungstenite::Error::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<QueueFull>()))
}

/// Writes the session's own frames behind any queued pushes, then waits until the socket took them all;
/// `Some` ends the session: the socket failed, or the client took longer than `send_timeout` to take
/// them (a slow consumer).
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
    // would cost a timer-wheel entry per reply.
    let mut write = std::pin::pin!(write);
    let result = match futures_util::poll!(write.as_mut()) {
        std::task::Poll::Ready(result) => Ok(result),
        std::task::Poll::Pending => tokio::time::timeout(hub.config.limits.send_timeout, write).await,
    };
    match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) if is_queue_full(&error) => Some(slow_consumer(hub, outbox, QUEUE_OVERFLOWED)),
        Ok(Err(_)) => Some(End::Gone),
        Err(_) => Some(slow_consumer(hub, outbox, WRITE_TIMED_OUT)),
    }
}

/// Maps a read error to the close code PROTOCOL §2 gives it.
fn read_error(error: tungstenite::Error) -> End {
    match error {
        tungstenite::Error::Capacity(_) => End::Close(close::TOO_BIG, "frame too large"),
        tungstenite::Error::Utf8(_) => End::Close(close::INVALID_PAYLOAD, "invalid UTF-8"),
        tungstenite::Error::Protocol(_) => End::Close(close::PROTOCOL_ERROR, "protocol error"),
        _ => End::Gone,
    }
}

/// Sends a close frame and waits up to `wait` for the client's answer, so it sees a clean close.
async fn close_socket(socket: &mut WebSocket, code: u16, reason: String, wait: Duration) {
    let deadline = Instant::now() + wait;
    socket.get_ref().outbox().begin_close();
    let reason = close::truncate_reason(&reason).to_owned();
    let frame = CloseFrame { code: code.into(), reason: reason.into() };
    let answer = async {
        socket.send(Message::Close(Some(frame))).await?;
        while let Some(frame) = socket.next().await {
            frame?;
        }
        Ok::<(), tungstenite::Error>(())
    };
    let _ = tokio::time::timeout_at(deadline, answer).await;
    socket.get_ref().outbox().discard_input(deadline).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::LayerError;

    /// A join the layer refused closes with 1011 (retry with backoff), one cut short by the shutdown with
    /// 1001, as every other connection then gets.
    #[test]
    fn layer_refusals_close_with_the_right_code() {
        let refused = Refusal::from(LayerError::Unavailable("redis: connection refused".into()));
        assert_eq!((refused.code, refused.reason.as_str()), (1011, "channel layer unavailable"));
        let stopping = Refusal::from(LayerError::ShuttingDown);
        assert_eq!((stopping.code, stopping.reason.as_str()), (1001, "hub shutting down"));
    }
}
