//! One subscriber: connect and authenticate, then read frames, timestamp each as it arrives, and account
//! for the bench messages among them. Chat subscribers also send the messages the publisher hands them.
//! Once connected, a plain socket that only listens is handed to its worker's reader (`reader`); the
//! others are read here, by their own task.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::time::Duration;

use memchr::memmem;
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use super::clock::now_ns;
use super::limits;
use super::reader;
use super::resume::{self, Position, Resuming};
use super::scenario::{BENCH_ORG, Marker, Plan, Scenario};
use super::stats::{Completion, Seen, Sends, SeqTracker, Shards};
use super::target::Target;
use super::ws::{self, Frame, Frames};
use crate::auth::{self, Claims, Identity, Minter};

/// How long a bench token stays valid; long enough for any run, short enough not to be worth stealing.
const TOKEN_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// The claims of a subscriber's token: a member of the bench org, not staff.
fn token_claims(user_id: String) -> Claims {
    let identity = Identity { user_id, is_staff: false, orgs: vec![BENCH_ORG.to_owned()], name: None, email: None };
    auth::claims_for(&identity, TOKEN_LIFETIME)
}

/// How long a subscriber waits for its close handshake when the run ends.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A message's state as seen by the publisher.
pub const PENDING: u8 = 0;
pub const ACCEPTED: u8 = 1;
pub const FAILED: u8 = 2;

/// Everything the subscriber and publisher tasks of one run share.
pub struct Shared {
    pub plan: Plan,
    pub target: Target,
    /// Signs the subscribers' JWTs with the hub's secret, its key read once for the whole run.
    pub mint: Minter,
    pub shards: Shards,
    pub completion: Completion,
    /// Per message: [`PENDING`], [`ACCEPTED`] or [`FAILED`].
    pub status: Vec<AtomicU8>,
    /// Per message: when it was sent and acknowledged, which decides the order the hub owes.
    pub sends: Sends,
    /// Messages handed to the hub so far (for progress).
    pub sent: AtomicU64,
    pub stop: CancellationToken,
    /// The run was stopped early (Ctrl-C): the publisher sends no more.
    pub interrupt: CancellationToken,
    pub source_ips: Vec<IpAddr>,
    pub connect_timeout: Duration,
    /// Set for a run with `--churn` or `--restart-hub-at`: subscribers reconnect and resume.
    pub resuming: Option<Resuming>,
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

/// An open subscription: the socket, and what was read from it but not handled yet.
pub struct Socket {
    pub stream: ws::Stream,
    pub frames: Frames,
}

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
    let (socket, position) = match tokio::time::timeout(shared.connect_timeout, connect(&shared, key, None)).await {
        Ok(Ok(connected)) => connected,
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
    if let Some(resuming) = &shared.resuming {
        resume::run(&shared, resuming, key, group, socket, position, &mut outcome).await;
        return outcome;
    }
    match (socket.stream, outbound) {
        // Sockets that only listen, and the bulk of every run, are read by their worker's reader.
        (ws::Stream::Plain(tcp), None) => match tcp.into_std() {
            Ok(tcp) => reader::listen(&shared, key, group, tcp, socket.frames, outcome).await,
            Err(e) => {
                shared.shards.error(key, limits::io_kind(&e));
                outcome.closed_early = true;
                outcome
            }
        },
        (stream, outbound) => {
            let socket = Socket { stream, frames: socket.frames };
            read_loop(&shared, key, group, socket, outbound, &mut outcome).await;
            outcome
        }
    }
}

/// Connects (resuming after `since`, if given), upgrades and waits for `connection_established`; returns
/// the socket and the stream position the greeting gave, if it gave one. A failure comes back as an
/// error kind.
pub async fn connect(
    shared: &Shared,
    key: u64,
    since: Option<&Position>,
) -> Result<(Socket, Option<Position>), String> {
    let plan = &shared.plan;
    let token = shared.mint.mint(&token_claims(plan.user_id(key))).map_err(|_| "token".to_owned())?;
    let resume = since.map(|at| format!("{}&", at.query())).unwrap_or_default();
    let url = format!("{}{}?{resume}token={token}", shared.target.ws, plan.ws_path(key));
    let source = (!shared.source_ips.is_empty()).then(|| shared.source_ips[key as usize % shared.source_ips.len()]);
    let tcp = limits::connect_tcp(shared.target.addr, source).await.map_err(|e| limits::io_kind(&e).to_owned())?;
    let (stream, frames) = ws::connect(&url, tcp, shared.target.tls_name.as_ref(), shared.target.ca.as_ref()).await?;
    let mut socket = Socket { stream, frames };
    loop {
        while let Some(frame) = socket.frames.next()? {
            match frame {
                Frame::Message(text) if memmem::find(text, b"connection_established").is_some() => {
                    let position = Position::scan(text);
                    return Ok((socket, position));
                }
                Frame::Message(_) => return Err("unexpected_first_frame".into()),
                Frame::Close(code) => return Err(close_kind(code)),
                Frame::Ping(payload) => {
                    ws::send(&mut socket.stream, ws::PONG, payload)
                        .await
                        .map_err(|e| limits::io_kind(&e).to_owned())?;
                }
                Frame::Pong => {}
            }
        }
        match socket.stream.read(socket.frames.spare()).await {
            Ok(0) => return Err("eof".into()),
            Ok(n) => socket.frames.filled(n),
            Err(e) => return Err(limits::io_kind(&e).into()),
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
    let failed = |kind: &str, outcome: &mut Outcome| {
        shared.shards.error(key, kind);
        outcome.closed_early = true;
    };
    loop {
        tokio::select! {
            biased;
            read = socket.stream.read(socket.frames.spare()) => {
                // Timestamp first: everything after this line counts as the bench's cost, not the hub's.
                let recv_ns = now_ns();
                match read {
                    Ok(0) => return failed("eof", outcome),
                    Ok(n) => socket.frames.filled(n),
                    Err(e) => return failed(limits::io_kind(&e), outcome),
                }
                let mut pongs = Vec::new();
                let ended = take_frames(shared, key, group, &mut socket.frames, recv_ns, outcome, &mut pongs);
                for payload in pongs {
                    if let Err(e) = ws::send(&mut socket.stream, ws::PONG, &payload).await {
                        return failed(limits::io_kind(&e), outcome);
                    }
                }
                match ended {
                    Ok(()) => {}
                    Err(End::Closed(code)) => {
                        failed(&close_kind(code), outcome);
                        // Echo the close, as a client should; the hub is going away either way.
                        let echo = close_payload(code);
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws::send(&mut socket.stream, ws::CLOSE, &echo)).await;
                        return;
                    }
                    Err(End::Broken(kind)) => return failed(kind, outcome),
                }
            }
            Some(text) = recv(&mut outbound) => {
                if let Err(e) = ws::send(&mut socket.stream, ws::TEXT, text.as_bytes()).await {
                    shared.shards.error(key, &format!("send_{}", limits::io_kind(&e)));
                }
            }
            () = &mut stop => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, close(&mut socket)).await;
                return;
            }
        }
    }
}

/// How the hub ended a subscription while its frames were read.
pub enum End {
    /// A close frame, with its code if it had one.
    Closed(Option<u16>),
    /// A protocol violation, the end of the stream or an I/O error, as an error kind.
    Broken(&'static str),
}

/// Handles every whole frame in `frames`, read at `recv_ns`: bench messages are booked, error frames
/// counted, and pings collected in `pongs` for the caller to answer; a close or a violation ends the
/// subscription.
pub fn take_frames(
    shared: &Shared,
    key: u64,
    group: u64,
    frames: &mut Frames,
    recv_ns: u64,
    outcome: &mut Outcome,
    pongs: &mut Vec<Vec<u8>>,
) -> Result<(), End> {
    loop {
        match frames.next().map_err(End::Broken)? {
            None => return Ok(()),
            Some(Frame::Message(text)) => {
                if let Some(marker) = Marker::scan(text) {
                    account(shared, key, group, marker, recv_ns, outcome);
                } else if let Some(code) = error_code(text) {
                    // A refused chat message never arrives: say why beside the loss.
                    shared.shards.error(key, &format!("hub_error_{code}"));
                }
            }
            Some(Frame::Ping(payload)) => pongs.push(payload.to_vec()),
            Some(Frame::Pong) => {}
            Some(Frame::Close(code)) => return Err(End::Closed(code)),
        }
    }
}

/// The payload of a close frame echoing `code`.
pub fn close_payload(code: Option<u16>) -> Vec<u8> {
    code.map(|code| code.to_be_bytes().to_vec()).unwrap_or_default()
}

/// The close handshake at the end of a run: a normal close, then frames until the hub's close or the end.
pub async fn close(socket: &mut Socket) -> std::io::Result<()> {
    ws::send(&mut socket.stream, ws::CLOSE, &1000u16.to_be_bytes()).await?;
    loop {
        while let Some(frame) = socket.frames.next().map_err(std::io::Error::other)? {
            if let Frame::Close(_) = frame {
                return Ok(());
            }
        }
        if socket.stream.read(socket.frames.spare()).await? == 0 {
            return Ok(());
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
pub fn account(shared: &Shared, key: u64, group: u64, marker: Marker, recv_ns: u64, outcome: &mut Outcome) {
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

/// The `code` of an `error` frame from the hub (PROTOCOL §3), when `frame` is one with a well-formed code.
/// Only frames without a bench marker get here, so the parse is off the measured path.
fn error_code(frame: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Error {
        #[serde(rename = "type")]
        kind: String,
        code: String,
    }
    memmem::find(frame, b"\"error\"")?;
    let error: Error = serde_json::from_slice(frame).ok()?;
    let well_formed = error.code.len() <= 32 && error.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    (error.kind == "error" && well_formed).then_some(error.code)
}

/// `close_<code>`, the error kind of a close frame from the hub (1005: it carried no code).
pub fn close_kind(code: Option<u16>) -> String {
    format!("close_{}", code.unwrap_or(1005))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_frames_give_their_code_and_other_frames_nothing() {
        let code = |frame: &str| error_code(frame.as_bytes());
        assert_eq!(
            code(r#"{"type":"error","code":"rate_limited","message":"slow down"}"#).as_deref(),
            Some("rate_limited")
        );
        assert_eq!(code(r#"{"type": "error", "code": "forbidden", "message": "no"}"#).as_deref(), Some("forbidden"));
        assert_eq!(code(r#"{"type":"typing","user_id":"error","is_typing":true}"#), None);
        assert_eq!(code(r#"{"type":"error","code":"Not A Code"}"#), None);
        assert_eq!(code("not json \"error\""), None);
    }
}
