//! `rtctl connect`: a WebSocket session with a hub endpoint (token minted from the config) or any
//! `ws://` URL: interactive with line editing, completion and history, or scripted with `-x`, `--wait`,
//! `--until` and piped stdin. Reconnects with backoff after the close codes PROTOCOL §2 says to.

mod editor;
pub(crate) mod input;
mod output;
mod session;

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use tokio::sync::mpsc;

use self::output::{Output, Sink};
use self::session::{Ended, Session};
use crate::cli::connect::ConnectArgs;
use crate::cli::token::MintArgs;
use crate::client::{self, ConnectError, ConnectRequest};
use crate::config::{ClientConfig, redact_url};
use crate::protocol::{self, Endpoint};

/// Exit codes of `rtctl connect`.
pub mod exit {
    /// Closed normally (1000, `/quit`, `--wait` elapsed, `--until` seen, end of input).
    pub const OK: u8 = 0;
    /// An error: no key to mint with, the hub unreachable at the first attempt, 1003/1007/1009, or a piped
    /// input line that was not valid (and so not sent) in a session that otherwise ended with 0.
    pub const ERROR: u8 = 1;
    /// Wrong arguments (clap's own code).
    pub const USAGE: u8 = 2;
    /// Refused: the handshake failed (HTTP status), or closed with 4001, 4003 or 4004.
    pub const REFUSED: u8 = 3;
    /// The connection was lost (1001, 1006, 1011, 1013, 4000, 4008, 4029) and reconnecting is off, or the
    /// session ended (end of input, `--wait`) while it was reconnecting.
    pub const LOST: u8 = 4;
    /// Ctrl-C ended a session that waited for `--until` or `--wait` (128 + SIGINT, as a shell reports).
    pub const INTERRUPTED: u8 = 130;
}

/// First reconnect delay; doubles each attempt up to [`BACKOFF_MAX`], with jitter.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest wait between reconnect attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long was healthy: the next loss starts the backoff over.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
/// After 4029 (rate limited) the hub wants a pause before a retry (PROTOCOL §2).
pub const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(5);

/// A hub endpoint, or a URL given as is.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Notifications,
    Events(String),
    Dashboard,
    Chat(String),
    Url(String),
}

impl Target {
    fn parse(target: &str, scope: Option<&str>) -> anyhow::Result<Self> {
        // Echoed with any token in it masked: a mistyped target may be a URL that carries one.
        let needs_none = |t: Target| match scope {
            Some(extra) => bail!("unexpected `{}` after `{}`", redact_url(extra), redact_url(target)),
            None => Ok(t),
        };
        match (target, scope) {
            ("notifications", _) => needs_none(Target::Notifications),
            ("dashboard", _) => needs_none(Target::Dashboard),
            (url, _) if url.starts_with("ws://") || url.starts_with("wss://") => needs_none(Target::Url(url.into())),
            ("events", Some(org)) => Ok(Target::Events(org.into())),
            ("chat", Some(room)) => Ok(Target::Chat(room.into())),
            ("events", None) => bail!("`events` needs the org: rtctl connect events ORG"),
            ("chat", None) => bail!("`chat` needs the room: rtctl connect chat ROOM"),
            (other, _) => {
                let hint = suggest(other, &["notifications", "events", "dashboard", "chat"])
                    .map(|t| format!("did you mean `{t}`? "))
                    .unwrap_or_default();
                bail!(
                    "unknown target `{}`: {hint}expected notifications, events ORG, dashboard, chat ROOM or a ws:// URL",
                    redact_url(other)
                )
            }
        }
    }

    fn url(&self, config: &ClientConfig) -> String {
        let base = config.ws_url();
        match self {
            Target::Notifications => format!("{base}/ws/notifications/"),
            Target::Events(org) => format!("{base}/ws/events/{org}/"),
            Target::Dashboard => format!("{base}/ws/admin/dashboard/"),
            Target::Chat(room) => format!("{base}/ws/chat/{room}/"),
            Target::Url(url) => url.clone(),
        }
    }

    /// The endpoint, for the message types a client may send (PROTOCOL §4); a URL's is guessed by
    /// its path, `None` when it is no endpoint of the hub's.
    fn endpoint(&self) -> Option<Endpoint> {
        match self {
            Target::Notifications => Some(Endpoint::Notifications),
            Target::Events(_) => Some(Endpoint::Events),
            Target::Dashboard => Some(Endpoint::Dashboard),
            Target::Chat(_) => Some(Endpoint::Chat),
            Target::Url(url) => {
                let path = url.split_once("://").map_or("", |(_, rest)| rest.split('?').next().unwrap_or(""));
                // Each endpoint's path up to its parameter, if it has one.
                Endpoint::ALL.into_iter().find(|endpoint| {
                    let fixed = endpoint.path().split('{').next().unwrap_or_default();
                    path.contains(fixed)
                })
            }
        }
    }

    /// The message types a client may send here, for completion (just `ping` for an unknown URL).
    fn types(&self) -> Vec<&'static str> {
        self.endpoint().map_or_else(|| vec![protocol::PING], Endpoint::request_types)
    }

    /// Names the history file: the endpoint, or the URL's host and path (never its query: it may hold a token).
    fn history_key(&self) -> String {
        let key = match self {
            Target::Notifications => "notifications".to_owned(),
            Target::Events(org) => format!("events-{org}"),
            Target::Dashboard => "dashboard".to_owned(),
            Target::Chat(room) => format!("chat-{room}"),
            Target::Url(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                rest.split('?').next().unwrap_or_default().to_owned()
            }
        };
        key.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
    }

    /// The orgs and staff flag a minted token needs to be let in.
    fn needs(&self) -> (Vec<String>, bool) {
        match self {
            Target::Events(org) => (vec![org.clone()], false),
            Target::Dashboard => (Vec::new(), true),
            _ => (Vec::new(), false),
        }
    }
}

/// Where tokens come from: given once, or minted (fresh for every attempt).
enum TokenSource {
    None,
    Given(String),
    Minted(Box<Minter>),
}

/// What minting a fresh token for each attempt takes.
struct Minter {
    config: ClientConfig,
    mint: MintArgs,
    target: Target,
    ws_token: bool,
}

impl TokenSource {
    /// After a close with `code`: why a token minted with the config file's secret was refused, when
    /// that is the likely cause (4001: the file is another hub's).
    fn mismatch_hint(&self, code: Option<u16>) -> Option<String> {
        match self {
            TokenSource::Minted(minter) if code == Some(crate::protocol::close::UNAUTHORIZED) => {
                minter.config.mismatch_hint(crate::config::Credential::JwtSecret)
            }
            // A raw URL connects without a token unless told to: the hub's 4001 means exactly that.
            TokenSource::None if code == Some(crate::protocol::close::UNAUTHORIZED) => {
                Some("no token was sent: add --user-id ID to mint one from the config, or --token TOKEN".to_owned())
            }
            _ => None,
        }
    }

    /// After the hub closed with 4001 `token expired`: why rtctl did not refresh the token, and what to
    /// do. (A minted token is refreshed; if that failed, the session said why when it did.)
    fn expiry_hint(&self) -> Option<String> {
        match self {
            TokenSource::Given(_) => Some(
                "the --token token expired, and rtctl cannot refresh a token it did not mint: pass a longer-lived token, or --user-id to let rtctl mint and refresh its own".to_owned(),
            ),
            _ => None,
        }
    }

    /// The token for the next connection and, when rtctl minted it, the `exp` that bounds the
    /// connection (that of the JWT a ws token was exchanged for).
    async fn next(&self) -> anyhow::Result<(Option<String>, Option<u64>)> {
        match self {
            TokenSource::None => Ok((None, None)),
            TokenSource::Given(token) => Ok((Some(token.clone()), None)),
            TokenSource::Minted(minter) => {
                let (jwt, exp) = minter.jwt()?;
                if !minter.ws_token {
                    return Ok((Some(jwt), Some(exp)));
                }
                let reply = super::token::exchange(&minter.config, &jwt).await?;
                let token =
                    reply["ws_token"].as_str().ok_or_else(|| anyhow::anyhow!("the hub's reply has no ws_token"))?;
                Ok((Some(token.to_owned()), Some(exp)))
            }
        }
    }
}

impl Minter {
    /// A fresh JWT that gets into the target, and its `exp`.
    fn jwt(&self) -> anyhow::Result<(String, u64)> {
        let (orgs, staff) = self.target.needs();
        let (jwt, claims) = self.mint.mint(&self.mint.identity(&orgs, staff)?, &self.config)?;
        Ok((jwt, claims.exp))
    }
}

pub async fn run(config_path: &Path, args: ConnectArgs) -> anyhow::Result<u8> {
    if args.no_color {
        colored::control::set_override(false);
    }
    let target = match Target::parse(&args.target, args.scope.as_deref()) {
        Ok(target) => target,
        Err(error) => {
            eprintln!("rtctl: {error:#}");
            return Ok(exit::USAGE);
        }
    };
    let config = args.client.resolve(config_path)?;
    let tokens = match (&args.token, &target) {
        (Some(token), _) => TokenSource::Given(token.clone()),
        // A URL without --token may be any WebSocket server; mint only when asked to with --user-id.
        (None, Target::Url(_)) if args.mint.user_id.is_none() => TokenSource::None,
        (None, _) => TokenSource::Minted(Box::new(Minter {
            config: config.clone(),
            mint: args.mint.clone(),
            target: target.clone(),
            ws_token: args.ws_token,
        })),
    };
    let mut headers = Vec::new();
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            eprintln!("rtctl: header `{header}` is not NAME:VALUE");
            return Ok(exit::USAGE);
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let request = ConnectRequest {
        url: target.url(&config),
        token: None,
        headers,
        origin: args.origin.clone(),
        subprotocol: args.subprotocol.clone(),
        tls: config.tls.clone(),
    };

    let stdin_tty = std::io::stdin().is_terminal();
    let stdout_tty = std::io::stdout().is_terminal();
    let interactive = stdin_tty && stdout_tty && !args.json && args.wait.is_none() && args.until.is_none();
    let json_lines = args.json || !stdin_tty || !stdout_tty;
    let mut _terminal = None;
    let (input, sink) = if interactive {
        _terminal = Some(editor::TerminalGuard::save());
        let (rx, printer) = editor::spawn(target.types(), &target.history_key())?;
        (Some(rx), Sink::Prompt(printer))
    } else {
        // Stdin may still be a terminal here (stdout piped, or `--wait`/`--until`): lines typed there
        // are sent as from a pipe, and Ctrl-D ends the input. Not in a background job, though: reading
        // its terminal would stop the whole process (SIGTTIN).
        let input = (!stdin_tty || in_foreground()).then(read_stdin);
        (input, if json_lines { Sink::JsonLines } else { Sink::Terminal })
    };
    let mut output = Output::new(sink, !args.raw, args.timestamps);
    if interactive {
        let url = redact_url(&request.url);
        output.system(&format!("{url} — /help for commands, Tab completes, Ctrl-D quits"));
    }

    let mut pending = VecDeque::new();
    for message in &args.execute {
        match input::parse(message, target.endpoint()) {
            Ok(input::Action::Send(text)) => pending.push_back(text),
            Ok(input::Action::Nothing) => {
                eprintln!("rtctl: -x needs a message (JSON or TYPE key=value), not an empty string");
                return Ok(exit::USAGE);
            }
            Ok(_) => {
                eprintln!("rtctl: -x takes messages, not commands: `{message}`");
                return Ok(exit::USAGE);
            }
            Err(why) => {
                eprintln!("rtctl: -x `{message}`: {why}");
                return Ok(exit::USAGE);
            }
        }
    }
    // A raw URL may be any server; the hub's endpoints send only the protocol's types.
    if let (Some(until), false) = (&args.until, matches!(target, Target::Url(_)))
        && !protocol::SERVER_TYPES.contains(&until.as_str())
    {
        let hint = match suggest(until, protocol::SERVER_TYPES) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("it sends {}", protocol::SERVER_TYPES.join(", ")),
        };
        eprintln!("rtctl: --until `{until}`: the hub never sends that type; {hint}");
        return Ok(exit::USAGE);
    }
    let deadline = args.wait.map(|wait| tokio::time::Instant::now() + wait);
    let piped = input.is_some() && !interactive;
    let mut session = Session::new(output, input, pending, deadline, args.until.clone(), target.endpoint(), piped);
    let reconnect = !args.no_reconnect;
    let mut code = run_loop(&mut session, &tokens, request, reconnect).await;
    // What the script waited for did not happen: it must not read the Ctrl-C as success.
    if session.interrupted && (args.until.is_some() || args.wait.is_some()) && code == exit::OK {
        session.output.error("interrupted before the session's end (--until, --wait)");
        code = exit::INTERRUPTED;
    }
    // Each refused line had its error already; the exit code tells the script that ran it. A refusal or a
    // lost connection (3, 4) says more and is kept.
    let refused = session.refused_lines();
    if refused > 0 {
        let lines = if refused == 1 { "1 input line was".to_owned() } else { format!("{refused} input lines were") };
        session.output.error(&format!("{lines} not sent"));
        if code == exit::OK {
            code = exit::ERROR;
        }
    }
    Ok(code)
}

/// Connects, runs the session, and reconnects with backoff while the close code allows it.
async fn run_loop(session: &mut Session, tokens: &TokenSource, mut request: ConnectRequest, reconnect: bool) -> u8 {
    let mut attempt: u32 = 0;
    let mut ever_connected = false;
    let base_url = request.url.clone();
    loop {
        // Resume where the last connection left off (org events, dashboard: PROTOCOL §7).
        request.url = match &session.position {
            Some((seq, epoch)) => {
                let separator = if base_url.contains('?') { '&' } else { '?' };
                format!("{base_url}{separator}since={seq}&epoch={epoch}")
            }
            None => base_url.clone(),
        };
        session.resuming_from = session.position.as_ref().map(|(seq, _)| *seq);
        let exp;
        (request.token, exp) = match tokens.next().await {
            Ok(next) => next,
            Err(error) => {
                session.output.error(&format!("{error:#}"));
                // No --user-id, a bad --ttl: the call is wrong, not the run.
                let usage = error.downcast_ref::<super::UsageError>().is_some();
                return if usage { exit::USAGE } else { exit::ERROR };
            }
        };
        let started = tokio::time::Instant::now();
        let ended = match client::connect(&request).await {
            Ok((stream, protocol)) => {
                ever_connected = true;
                let chosen = protocol.map(|p| format!(" (subprotocol {p})")).unwrap_or_default();
                session.output.system(&format!("connected to {}{chosen}", redact_url(&request.url)));
                // A minted token is refreshed before it expires (PROTOCOL §7), with another minted alike.
                let refresher = match (tokens, exp) {
                    (TokenSource::Minted(minter), Some(exp)) => {
                        Some(session::Refresher { exp, mint: &|| minter.jwt() as anyhow::Result<_> })
                    }
                    _ => None,
                };
                session.run(stream, refresher).await
            }
            Err(ConnectError::Refused { status, body }) => {
                let why = if body.is_empty() { String::new() } else { format!(": {body}") };
                session.output.error(&format!("handshake refused: HTTP {status}{why}"));
                return exit::REFUSED;
            }
            Err(ConnectError::Invalid(why)) => {
                session.output.error(&why);
                return exit::USAGE;
            }
            Err(error) if !ever_connected => {
                session.output.error(&format!("cannot connect to {}: {error}", redact_url(&request.url)));
                return exit::ERROR;
            }
            Err(error) => {
                session.output.error(&format!("reconnect failed: {error}"));
                Ended::Lost { code: None }
            }
        };
        let rate_limited = match ended {
            Ended::Done => return exit::OK,
            Ended::Reconnect => {
                attempt = 0;
                continue;
            }
            Ended::Lost { code } => match session::advice(code) {
                session::CloseAdvice::Normal => return exit::OK,
                session::CloseAdvice::Refused => {
                    let expired = session.last_close.as_ref().is_some_and(|(code, reason)| {
                        *code == crate::protocol::close::UNAUTHORIZED && reason == session::TOKEN_EXPIRED
                    });
                    let hint = if expired { tokens.expiry_hint() } else { tokens.mismatch_hint(code) };
                    if let Some(hint) = hint {
                        session.output.error(&hint);
                    }
                    return exit::REFUSED;
                }
                session::CloseAdvice::Error => return exit::ERROR,
                session::CloseAdvice::Retry if !reconnect => return exit::LOST,
                session::CloseAdvice::Retry => code == Some(crate::protocol::close::RATE_LIMITED),
            },
        };
        if started.elapsed() >= STABLE_AFTER {
            attempt = 0;
        }
        let mut delay = backoff(attempt);
        if rate_limited {
            delay = delay.max(RATE_LIMIT_PAUSE);
        }
        attempt = attempt.saturating_add(1);
        session.output.system(&format!("reconnecting in {:.1}s (attempt {attempt})", delay.as_secs_f64()));
        match session.pause(delay).await {
            session::Paused::Reconnect => {}
            session::Paused::Quit => return exit::OK,
            session::Paused::GaveUp => return exit::LOST,
        }
    }
}

/// The closest of `known` to a mistyped `word` (at most a third of its letters off), for "did you mean".
pub(crate) fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let substitution = previous + usize::from(ca != *cb);
                previous = row[j + 1];
                row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
            }
        }
        row[b.len()]
    };
    let (best, far) = known.iter().map(|k| (*k, distance(word, k))).min_by_key(|(_, d)| *d)?;
    (far <= word.chars().count().div_ceil(3).max(1)).then_some(best)
}

/// Exponential backoff with jitter: a random point in the upper half of base × 2^attempt (capped), so
/// that clients dropped together by a restart do not all come back in the same instant.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16)).min(BACKOFF_MAX);
    ceiling.mul_f64(rand::random_range(0.5..=1.0))
}

/// Reads stdin lines on a thread, each one an entry of its own: a script's lines are independent, and one
/// with unbalanced braces must not swallow the lines after it (multi-line JSON is for the terminal).
fn read_stdin() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    // A thread of its own, not tokio's stdin: that one reads on the runtime's blocking pool, whose
    // shutdown waits for the read, so a session that `--wait` ended hung until the terminal or the
    // pipe gave one more line. Nothing waits for this thread when the process exits.
    let reader = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match stdin.read_until(b'\n', &mut raw) {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) => {
                    eprintln!("rtctl: cannot read stdin: {error}");
                    return;
                }
            }
            // Bytes, then text: a line that is not UTF-8 arrives with U+FFFD in it, which the input
            // parser refuses as that line's error, and the lines after it still go out.
            let line = String::from_utf8_lossy(&raw);
            let line = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
            if tx.send(line.to_owned()).is_err() {
                return;
            }
        }
    });
    if let Err(error) = reader {
        // Without a reader the input simply ends, as an empty stdin would.
        tracing::warn!(%error, "cannot start the stdin reader");
    }
    rx
}

/// Whether this process is the foreground job of the terminal on stdin, and so may read it.
fn in_foreground() -> bool {
    // SAFETY: both calls only read the process's and the terminal's process groups.
    unsafe { libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Targets build the PROTOCOL §4 paths and refuse what is missing.
    #[test]
    fn targets() {
        let config = ClientConfig {
            url: "https://hub.example".into(),
            jwt_secret: None,
            api_key: None,
            config_file: crate::config::DEFAULT_CONFIG_PATH.into(),
            config_file_found: false,
            sources: Default::default(),
            tls: None,
        };
        let events = Target::parse("events", Some("acme")).unwrap();
        assert_eq!(events.url(&config), "wss://hub.example/ws/events/acme/");
        assert_eq!(events.needs(), (vec!["acme".to_owned()], false));
        assert!(Target::parse("chat", None).is_err());
        assert!(Target::parse("dashboard", Some("x")).is_err());
        let url = Target::parse("ws://h:1/ws/chat/r1/?token=secret", None).unwrap();
        assert_eq!(url.history_key(), "h_1_ws_chat_r1_");
        assert!(url.types().contains(&"chat_message"));
    }

    /// A near miss gets the closest name; a word far from all of them gets none.
    #[test]
    fn suggestions_for_near_misses() {
        let known = crate::protocol::SERVER_TYPES;
        assert_eq!(suggest("notification_list", known), Some("notifications_list"));
        assert_eq!(suggest("notification", &["notifications", "events", "dashboard", "chat"]), Some("notifications"));
        assert_eq!(suggest("never", known), None);
    }

    /// Delays grow, stay under the cap, and vary.
    #[test]
    fn backoff_grows_with_jitter() {
        assert!(backoff(0) <= BACKOFF_BASE && backoff(0) >= BACKOFF_BASE / 2);
        assert!(backoff(3) >= BACKOFF_BASE * 4);
        assert!(backoff(30) <= BACKOFF_MAX);
    }
}
