//! One connection of a `connect` session: frames in, entries out, slash commands, the end condition
//! (`--wait`, `--until`, end of input), and what the close code means.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::input::{self, Action, SLASH_COMMANDS};
use super::output::Output;
use crate::client::WsStream;
use crate::protocol::{Endpoint, close};

/// How long we wait for the hub to answer our close frame before giving up on it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A minted token is refreshed this long before it expires at most; a shorter-lived one a third of its
/// remaining life before (a 3 s token after 2 s), so a slow network still gets the refresh there in time.
const REFRESH_LEAD: Duration = Duration::from_secs(60);

/// The close reason (with 4001) of a connection whose token expired (PROTOCOL §7).
pub const TOKEN_EXPIRED: &str = "token expired";

/// Keeps a minted token alive (PROTOCOL §7): `mint` makes a fresh JWT (and its `exp`) for the same user,
/// sent as `refresh` before `exp`, the current token's, runs out.
pub struct Refresher<'a> {
    pub exp: u64,
    pub mint: &'a (dyn Fn() -> anyhow::Result<(String, u64)> + Sync),
}

type Sink = SplitSink<WsStream, Message>;
type Frames = SplitStream<WsStream>;

/// How one connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The session is over: `/quit`, `/close`, end of input, `--wait`, `--until`, Ctrl-C.
    Done,
    /// `/reconnect`.
    Reconnect,
    /// The hub closed it (`code`), or it broke without a close frame (`None`, i.e. 1006).
    Lost { code: Option<u16> },
}

/// How a wait before reconnecting ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Paused {
    /// The delay is over, or `/reconnect` cut it short.
    Reconnect,
    /// `/quit`, `/close` or Ctrl-C: the user ended the session.
    Quit,
    /// The session's own end came (end of input with nothing queued, `--wait`) before a connection did.
    GaveUp,
}

/// What a close code asks of the client (PROTOCOL §2).
#[derive(Debug, PartialEq, Eq)]
pub enum CloseAdvice {
    Normal,
    Retry,
    Refused,
    Error,
}

pub fn advice(code: Option<u16>) -> CloseAdvice {
    match code {
        Some(close::NORMAL) => CloseAdvice::Normal,
        None
        | Some(
            close::GOING_AWAY
            | close::INTERNAL
            | close::TRY_AGAIN_LATER
            | close::HEARTBEAT_TIMEOUT
            | close::SLOW_CONSUMER
            | close::RATE_LIMITED,
        ) => CloseAdvice::Retry,
        Some(close::UNAUTHORIZED | close::FORBIDDEN | close::NOT_FOUND) => CloseAdvice::Refused,
        Some(_) => CloseAdvice::Error,
    }
}

/// PROTOCOL §2 in a few words.
pub fn meaning(code: u16) -> &'static str {
    close::meaning(code).unwrap_or("not a code of the rtctl protocol")
}

/// State that outlives one connection.
pub struct Session {
    pub output: Output,
    /// Typed or piped entries; `None` once the input has ended (or there is none).
    input: Option<UnboundedReceiver<String>>,
    /// Entries to send as soon as a connection is open (`-x`, or typed while reconnecting).
    pending: VecDeque<String>,
    deadline: Option<Instant>,
    until: Option<String>,
    /// What the entries are parsed for (`None`: a URL that is no endpoint of the hub's).
    endpoint: Option<Endpoint>,
    /// Pings in flight, by their timestamp, for the round trip of `/ping`.
    pings: HashMap<String, std::time::Instant>,
    /// The tally of piped input; `None` for typed input, where a person sees the error and types again.
    piped: Option<PipedLines>,
    /// Ctrl-C (SIGINT) ended the session before what `--wait` or `--until` waited for.
    pub interrupted: bool,
    /// SIGINT, listened to for the whole session: a fresh `ctrl_c()` in each `select!` misses a
    /// Ctrl-C that arrives between two of them, and the session then waited on.
    sigint: Option<tokio::signal::unix::Signal>,
    /// The last stream position (`seq`, `epoch`) the hub sent (org events, dashboard): a reconnect
    /// resumes from it (PROTOCOL §7).
    pub position: Option<(u64, String)>,
    /// The `since` of the connection being opened, to report what the resume brought.
    pub resuming_from: Option<u64>,
    /// The code and reason of the hub's last close, for advice on what to do about it.
    pub last_close: Option<(u16, String)>,
}

/// The next SIGINT; never, without a handler.
async fn interrupt(sigint: &mut Option<tokio::signal::unix::Signal>) {
    match sigint {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Lines read from a pipe, and how many of them were refused (not valid, so not sent): a script learns
/// from the exit code that not all of it went out.
#[derive(Debug, Default)]
struct PipedLines {
    read: u64,
    refused: u64,
}

/// What to do after an entry.
enum Step {
    Continue,
    End(Ended),
}

impl Session {
    pub fn new(
        output: Output,
        input: Option<UnboundedReceiver<String>>,
        pending: VecDeque<String>,
        deadline: Option<Instant>,
        until: Option<String>,
        endpoint: Option<Endpoint>,
        piped: bool,
    ) -> Self {
        let piped = piped.then(PipedLines::default);
        let sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
        Self {
            position: None,
            resuming_from: None,
            last_close: None,
            output,
            input,
            pending,
            deadline,
            until,
            endpoint,
            pings: HashMap::new(),
            piped,
            interrupted: false,
            sigint,
        }
    }

    /// How many piped lines were refused, and so not sent.
    pub fn refused_lines(&self) -> u64 {
        self.piped.as_ref().map_or(0, |piped| piped.refused)
    }

    /// Whether the end of input ends the session; with `--wait` or `--until` the frames decide.
    fn input_ends_session(&self) -> bool {
        self.deadline.is_none() && self.until.is_none()
    }

    /// Runs one connection until it closes or the session ends; with a `refresher`, refreshes its token
    /// before it expires.
    pub async fn run(&mut self, stream: WsStream, refresher: Option<Refresher<'_>>) -> Ended {
        let (mut sink, mut frames) = stream.split();
        while let Some(text) = self.pending.pop_front() {
            if let Err(error) = sink.send(Message::text(text.clone())).await {
                self.output.error(&format!("send failed: {error}"));
                self.pending.push_front(text);
                return Ended::Lost { code: None };
            }
            self.output.outgoing(&text);
        }
        let mut closed: Option<(u16, String)> = None;
        // The end of input closes the session only after the hub's first frame: a refusal (4001) comes
        // instead of `connection_established`, and must decide the exit code, not our own close.
        let mut greeted = false;
        let mut refresh_at = refresher.as_ref().map(|r| refresh_time(r.exp));
        loop {
            let deadline = self.deadline;
            tokio::select! {
                () = sleep_until(refresh_at), if closed.is_none() && refresh_at.is_some() => {
                    let mint = refresher.as_ref().map(|r| r.mint).expect("refresh_at is set only with a refresher");
                    refresh_at = self.refresh(&mut sink, mint).await;
                }
                frame = frames.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        greeted = true;
                        let input_over = self.input.is_none() && self.input_ends_session();
                        if self.incoming(&text) || input_over {
                            return self.close(&mut sink, &mut frames, close::NORMAL, "").await;
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => self.output.system(&format!("binary frame, {} bytes", bytes.len())),
                    Some(Ok(Message::Close(frame))) => {
                        closed = Some(frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string())));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        if closed.is_none() {
                            self.output.error(&format!("connection lost: {error}"));
                        }
                        break;
                    }
                    None => break,
                },
                // Once the hub's close frame is in, only the frames are read, to the end of the stream:
                // our own close (end of input, --wait, Ctrl-C) would report our code, not the hub's.
                entry = next_entry(&mut self.input), if closed.is_none() => match entry {
                    Some(entry) => {
                        if let Step::End(ended) = self.entry(&entry, Some((&mut sink, &mut frames))).await {
                            return ended;
                        }
                    }
                    None => {
                        self.input = None;
                        if self.input_ends_session() && greeted {
                            return self.close(&mut sink, &mut frames, close::NORMAL, "").await;
                        }
                    }
                },
                () = sleep_until(deadline), if closed.is_none() => {
                    return self.close(&mut sink, &mut frames, close::NORMAL, "").await;
                }
                () = interrupt(&mut self.sigint), if closed.is_none() => {
                    self.interrupted = true;
                    return self.close(&mut sink, &mut frames, close::NORMAL, "").await;
                }
            }
        }
        match closed {
            Some((code, reason)) => {
                self.report_close("closed by the hub", code, &reason);
                Ended::Lost { code: Some(code) }
            }
            None => {
                self.output.error("connection lost without a close frame (1006)");
                Ended::Lost { code: None }
            }
        }
    }

    /// Sends `refresh` with a freshly minted token; returns when to refresh next (`None`: the token could
    /// not be minted or sent, and the connection will end when the current one expires).
    async fn refresh(
        &mut self,
        sink: &mut Sink,
        mint: &(dyn Fn() -> anyhow::Result<(String, u64)> + Sync),
    ) -> Option<Instant> {
        let (token, exp) = match mint() {
            Ok(minted) => minted,
            Err(error) => {
                self.output.error(&format!("cannot mint a token to refresh with: {error:#}"));
                return None;
            }
        };
        // Not shown as an outgoing frame: the token is a secret, and `refreshed` will say what happened.
        let frame = json!({"type": "refresh", "token": token}).to_string();
        if let Err(error) = sink.send(Message::text(frame)).await {
            self.output.error(&format!("cannot send refresh: {error}"));
            return None;
        }
        Some(refresh_time(exp))
    }

    /// Waits `delay` before a reconnect while still taking entries (queued for the next connection).
    pub async fn pause(&mut self, delay: Duration) -> Paused {
        let until = Instant::now() + delay;
        loop {
            // Entries queued while disconnected were accepted: reconnect to send them (the end of input
            // then closes after the greeting). With none, the end of input ends the session here, and
            // the connection it last had was lost.
            if self.input.is_none() && self.input_ends_session() && self.pending.is_empty() {
                self.output.error("end of input while reconnecting: the connection stays lost");
                return Paused::GaveUp;
            }
            let deadline = self.deadline;
            tokio::select! {
                () = tokio::time::sleep_until(until) => return Paused::Reconnect,
                entry = next_entry(&mut self.input) => match entry {
                    Some(entry) => match self.entry(&entry, None).await {
                        Step::Continue => {}
                        Step::End(Ended::Reconnect) => return Paused::Reconnect,
                        Step::End(_) => return Paused::Quit,
                    },
                    None => self.input = None,
                },
                () = sleep_until(deadline) => {
                    self.output.error("--wait elapsed while reconnecting: the connection stays lost");
                    return Paused::GaveUp;
                }
                () = interrupt(&mut self.sigint) => {
                    self.interrupted = true;
                    return Paused::Quit;
                }
            }
        }
    }

    /// Shows a frame; true when it is the `--until` type.
    fn incoming(&mut self, text: &str) -> bool {
        self.output.incoming(text);
        let Ok(value) = serde_json::from_str::<Value>(text) else { return false };
        let kind = value["type"].as_str().unwrap_or_default();
        self.track_position(kind, &value);
        if kind == "refreshed" {
            let until = value["expires_at"].as_str().unwrap_or("?");
            self.output.system(&format!("token refreshed: valid until {until}"));
        }
        if kind == "pong"
            && let Some(sent) = self.pings.remove(&value["timestamp"].to_string())
        {
            let rtt = sent.elapsed().as_secs_f64() * 1000.0;
            self.output.system(&format!("pong: round trip {rtt:.1} ms"));
        }
        self.until.as_deref() == Some(kind)
    }

    /// Keeps the stream position of what arrived, and reports how a resume went.
    fn track_position(&mut self, kind: &str, value: &Value) {
        if kind == "resume_failed" {
            self.resuming_from = None;
            let (reason, oldest) = (value["reason"].as_str().unwrap_or("unknown"), &value["oldest_seq"]);
            self.output.error(&format!(
                "resume failed ({reason}): what was missed is not replayed (the hub keeps from seq {oldest}); reload your state"
            ));
        }
        if let (Some(seq), Some(epoch)) = (value["seq"].as_u64(), value["epoch"].as_str()) {
            if kind == "connection_established"
                && let Some(since) = self.resuming_from.take()
            {
                let missed = seq.saturating_sub(since);
                self.output.system(&format!("resumed from seq {since}: {missed} missed messages replayed"));
            }
            // The highest seq of this epoch; another epoch starts over.
            let kept = self.position.as_ref().filter(|(_, e)| e == epoch).map_or(0, |(s, _)| *s);
            self.position = Some((seq.max(kept), epoch.to_owned()));
        }
    }

    /// Acts on one typed or piped entry; `connection` is `None` while reconnecting.
    async fn entry(&mut self, entry: &str, connection: Option<(&mut Sink, &mut Frames)>) -> Step {
        if let Some(piped) = &mut self.piped {
            piped.read += 1;
        }
        let action = match input::parse(entry, self.endpoint) {
            Ok(action) => action,
            Err(why) => {
                match &mut self.piped {
                    // Piped entries are lines, one each: the number finds the line in the script.
                    Some(piped) => {
                        piped.refused += 1;
                        let line = piped.read;
                        self.output.error(&format!("stdin line {line}: {why}"));
                    }
                    None => self.output.error(&why),
                }
                return Step::Continue;
            }
        };
        let ping = || {
            let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            json!({"type": "ping", "timestamp": timestamp})
        };
        match (action, connection) {
            (Action::Nothing, _) => {}
            (Action::Send(text), Some((sink, _))) => self.send(sink, text).await,
            (Action::Send(text), None) => {
                self.output.system("not connected: queued until the connection is back");
                self.pending.push_back(text);
            }
            (Action::Ping, Some((sink, _))) => {
                let frame = ping();
                self.pings.insert(frame["timestamp"].to_string(), std::time::Instant::now());
                self.send(sink, frame.to_string()).await;
            }
            (Action::Ping, None) => self.output.error("not connected"),
            (Action::Close { code, reason }, Some((sink, frames))) => {
                return Step::End(self.close(sink, frames, code, &reason).await);
            }
            (Action::Reconnect, Some((sink, frames))) => {
                self.close(sink, frames, close::NORMAL, "reconnecting").await;
                return Step::End(Ended::Reconnect);
            }
            (Action::Reconnect, None) => return Step::End(Ended::Reconnect),
            (Action::Quit, Some((sink, frames))) => {
                self.close(sink, frames, close::NORMAL, "").await;
                return Step::End(Ended::Done);
            }
            (Action::Quit | Action::Close { .. }, None) => return Step::End(Ended::Done),
            (Action::Pretty(on), _) => {
                self.output.pretty = on;
                self.output.system(if on { "JSON pretty-printing on" } else { "JSON pretty-printing off" });
            }
            (Action::History, _) => self.output.system("history is kept by interactive sessions only"),
            (Action::Help, _) => self.output.plain(&help(self.endpoint)),
        }
        Step::Continue
    }

    /// Sends an entry; one the closing connection refuses is kept for the next connection, if any.
    async fn send(&mut self, sink: &mut Sink, text: String) {
        match sink.send(Message::text(text.clone())).await {
            Ok(()) => self.output.outgoing(&text),
            Err(error) => {
                self.output.error(&format!("send failed: {error}; queued for the next connection"));
                self.pending.push_back(text);
            }
        }
    }

    /// Sends a close frame, shows the frames still arriving and the hub's answer; the session is done.
    async fn close(&mut self, sink: &mut Sink, frames: &mut Frames, code: u16, reason: &str) -> Ended {
        let frame = CloseFrame { code: code.into(), reason: reason.to_owned().into() };
        // This fails when the hub closed first; its close frame is then still to be read below.
        let _ = sink.send(Message::Close(Some(frame))).await;
        let drain = async {
            while let Some(Ok(message)) = frames.next().await {
                match message {
                    Message::Text(text) => self.output.incoming(&text),
                    Message::Close(Some(frame)) => return Some((u16::from(frame.code), frame.reason.to_string())),
                    Message::Close(None) => return Some((1005, String::new())),
                    _ => {}
                }
            }
            None
        };
        match tokio::time::timeout(CLOSE_TIMEOUT, drain).await {
            // The hub closed first with its own code (a refused token, a flood's 4029): that code decides,
            // as if our close had never been sent.
            Ok(Some((echo, why))) if echo != code && advice(Some(echo)) != CloseAdvice::Normal => {
                self.report_close("closed by the hub", echo, &why);
                return Ended::Lost { code: Some(echo) };
            }
            Ok(Some((echo, why))) => self.report_close("closed", echo, &why),
            _ => self.report_close("closed without a close echo from the hub", code, reason),
        }
        Ended::Done
    }

    fn report_close(&mut self, what: &str, code: u16, reason: &str) {
        self.last_close = Some((code, reason.to_owned()));
        let reason = if reason.is_empty() { String::new() } else { format!(" \"{reason}\"") };
        let line = format!("{what}: {code}{reason} ({})", meaning(code));
        if advice(Some(code)) == CloseAdvice::Normal { self.output.system(&line) } else { self.output.error(&line) }
    }
}

/// The next entry; never resolves when there is no input.
async fn next_entry(input: &mut Option<UnboundedReceiver<String>>) -> Option<String> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// When to refresh a token that expires at `exp` (Unix seconds; valid through that second).
fn refresh_time(exp: u64) -> Instant {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let left = Duration::from_secs(exp.saturating_add(1)).saturating_sub(now);
    Instant::now() + left - (left / 3).min(REFRESH_LEAD)
}

/// Resolves at the deadline; never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn help(endpoint: Option<Endpoint>) -> String {
    let types = endpoint.map_or_else(|| vec![crate::protocol::PING], Endpoint::request_types);
    let mut text = String::from("Type JSON (multi-line until the braces balance), or TYPE key=value ...\n");
    text.push_str(&format!("  message types here: {}\n", types.join(" ")));
    text.push_str("  e.g. mark_read notification_id=5  →  {\"type\":\"mark_read\",\"notification_id\":5}\n");
    text.push_str("  quote a value with spaces: reason=\"spam account\" (or 'spam account')\n");
    if endpoint == Some(Endpoint::Chat) {
        text.push_str("  any other text is said in the room: hello there  →  {\"type\":\"chat_message\",\"message\":\"hello there\"}\n");
    }
    for (name, what) in SLASH_COMMANDS {
        text.push_str(&format!("  {name:<11} {what}\n"));
    }
    text.trim_end().to_owned()
}
