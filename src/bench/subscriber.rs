//! One subscriber: connect and authenticate, then read frames, timestamp each as it arrives, and account
//! for the bench messages among them. Chat subscribers also send the messages the publisher hands them.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_tungstenite::tungstenite::{self, Message, protocol::WebSocketConfig};
use tokio_util::sync::CancellationToken;

use super::clock::now_ns;
use super::limits;
use super::scenario::{BENCH_ORG, Marker, Plan, Scenario};
use super::stats::{Completion, Seen, Sends, SeqTracker, Shards};
use super::target::Target;
use super::token::Mint;

/// How long a subscriber waits for its close handshake when the run ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A message's state as seen by the publisher.
pub const PENDING: u8 = 0;
pub const ACCEPTED: u8 = 1;
pub const FAILED: u8 = 2;

/// Everything the subscriber and publisher tasks of one run share.
pub struct Shared {
    pub plan: Plan,
    pub target: Target,
    pub mint: Mint,
    pub shards: Shards,
    pub completion: Completion,
    /// Per message: [`PENDING`], [`ACCEPTED`] or [`FAILED`].
    pub status: Vec<AtomicU8>,
    /// Per message: when it was sent and acknowledged, which decides the order the hub owes.
    pub sends: Sends,
    /// Messages handed to the hub so far (for progress).
    pub sent: AtomicU64,
    pub stop: CancellationToken,
    pub source_ips: Vec<IpAddr>,
    pub ws_config: WebSocketConfig,
    pub connect_timeout: Duration,
}

/// The smallest buffers that still read a frame in one go: thousands of sockets must stay cheap.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
}

/// What one subscriber saw, returned when its task ends.
pub struct Outcome {
    pub key: u64,
    pub established: bool,
    /// The hub closed the connection (or it broke) before the run ended.
    pub closed_early: bool,
    pub tracker: SeqTracker,
    pub duplicates: u64,
    pub out_of_order: u64,
}

/// The result of a connect attempt, sent to the run as soon as it is known: handshake time or failure.
pub type Connected = (u64, Option<u64>);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs subscriber `key` until the run stops or the hub closes it.
pub async fn run(
    shared: Arc<Shared>,
    key: u64,
    outbound: Option<mpsc::Receiver<String>>,
    connected: mpsc::UnboundedSender<Connected>,
    permit: OwnedSemaphorePermit,
) -> Outcome {
    let group = shared.plan.group_of_subscriber(key);
    let mut outcome = Outcome {
        key,
        established: false,
        closed_early: false,
        tracker: SeqTracker::new(shared.plan.group_len(group)),
        duplicates: 0,
        out_of_order: 0,
    };
    let started = now_ns();
    let socket = match tokio::time::timeout(shared.connect_timeout, connect(&shared, key)).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(kind)) => {
            shared.shards.error(key, &kind);
            let _ = connected.send((key, None));
            return outcome;
        }
        Err(_) => {
            shared.shards.error(key, "timeout");
            let _ = connected.send((key, None));
            return outcome;
        }
    };
    drop(permit);
    outcome.established = true;
    let _ = connected.send((key, Some(now_ns() - started)));
    read_loop(&shared, key, group, socket, outbound, &mut outcome).await;
    outcome
}

/// Connects, upgrades and waits for `connection_established`; a failure comes back as an error kind.
async fn connect(shared: &Shared, key: u64) -> Result<Socket, String> {
    let plan = &shared.plan;
    let token = shared.mint.token(&plan.user_id(key), &[BENCH_ORG], false).map_err(|_| "token".to_owned())?;
    let url = format!("{}{}?token={token}", shared.target.ws, plan.ws_path(key));
    let source = (!shared.source_ips.is_empty()).then(|| shared.source_ips[key as usize % shared.source_ips.len()]);
    let tcp = limits::connect_tcp(shared.target.addr, source).await.map_err(|e| limits::io_kind(&e).to_owned())?;
    let (mut socket, _) = tokio_tungstenite::client_async_tls_with_config(url, tcp, Some(shared.ws_config), None)
        .await
        .map_err(|e| ws_error_kind(&e))?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.contains("connection_established") => return Ok(socket),
            Some(Ok(Message::Text(_))) => return Err("unexpected_first_frame".into()),
            Some(Ok(Message::Close(frame))) => return Err(close_kind(frame.as_ref())),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ws_error_kind(&e)),
            None => return Err("eof".into()),
        }
    }
}

async fn read_loop(
    shared: &Shared,
    key: u64,
    group: u64,
    mut socket: Socket,
    mut outbound: Option<mpsc::Receiver<String>>,
    outcome: &mut Outcome,
) {
    // Registered once: a fresh wait on every frame would lock the token's waiter list each time.
    let stop = shared.stop.cancelled();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            frame = socket.next() => {
                // Timestamp first: everything after this line counts as the bench's cost, not the hub's.
                let recv_ns = now_ns();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        let Some(marker) = Marker::scan(&text) else { continue };
                        account(shared, key, group, marker, recv_ns, outcome);
                    }
                    Some(Ok(Message::Close(frame))) => {
                        shared.shards.error(key, &close_kind(frame.as_ref()));
                        outcome.closed_early = true;
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        shared.shards.error(key, &ws_error_kind(&e));
                        outcome.closed_early = true;
                        return;
                    }
                    None => {
                        shared.shards.error(key, "eof");
                        outcome.closed_early = true;
                        return;
                    }
                }
            }
            Some(text) = recv(&mut outbound) => {
                if let Err(e) = socket.send(Message::text(text)).await {
                    shared.shards.error(key, &format!("send_{}", ws_error_kind(&e)));
                }
            }
            () = &mut stop => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
                return;
            }
        }
    }
}

/// The next chat frame to send, or never for subscribers that only listen.
async fn recv(outbound: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match outbound {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Books one received bench message: order and duplicates by sequence number, latency when measured.
fn account(shared: &Shared, key: u64, group: u64, marker: Marker, recv_ns: u64, outcome: &mut Outcome) {
    let plan = &shared.plan;
    let (msg_group, index) = plan.place(marker.seq);
    if msg_group != group || marker.seq >= plan.total {
        shared.shards.error(key, "unexpected_seq");
        return;
    }
    let measured = marker.seq >= plan.warmup;
    if plan.scenario == Scenario::Chat && plan.sender_of(marker.seq) == key {
        // A chat message has no HTTP answer: the sender's own copy is the hub's acknowledgement.
        shared.sends.acknowledged(marker.seq, recv_ns);
    }
    match outcome.tracker.observe(index) {
        Seen::Duplicate => outcome.duplicates += u64::from(measured),
        Seen::Unexpected => shared.shards.error(key, "unexpected_seq"),
        seen @ (Seen::New | Seen::Late(_)) => {
            if let Seen::Late(after) = seen {
                let reordered = shared.sends.ordered(marker.seq, plan.seq(group, after));
                outcome.out_of_order += u64::from(measured && reordered);
            }
            if measured {
                shared.shards.delivery(key, recv_ns, recv_ns.saturating_sub(marker.t_ns));
                shared.completion.delivered(key, marker.seq, recv_ns);
            }
        }
    }
}

/// `close_<code>`, the error kind of a close frame from the hub.
fn close_kind(frame: Option<&tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(frame) => format!("close_{}", u16::from(frame.code)),
        None => "close_1005".into(),
    }
}

/// A short stable label for a WebSocket error.
fn ws_error_kind(err: &tungstenite::Error) -> String {
    use tungstenite::Error;
    match err {
        Error::Io(e) => limits::io_kind(e).into(),
        Error::Http(response) => format!("http_{}", response.status().as_u16()),
        Error::ConnectionClosed | Error::AlreadyClosed => "closed".into(),
        Error::Tls(_) => "tls".into(),
        Error::Capacity(_) => "frame_too_large".into(),
        Error::Protocol(_) => "ws_protocol".into(),
        _ => "ws_error".into(),
    }
}
