//! The accept loop: one HTTP connection per socket, with the timeouts that `axum::serve` does not set.
//!
//! `axum::serve` gives hyper no timer, so a connection that never finished its request headers (a
//! slowloris, a port scanner, an idle keep-alive connection) was held open forever: enough of them
//! exhaust the file descriptors, and one of them held a graceful shutdown to its full timeout.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, error, warn};

use super::admission::{Admission, Waiting, WaitingSlot, refused};
use super::outbox::SharedTcp;

/// The first wait after an accept error that is not one connection's (no file descriptor left, say);
/// it doubles while the errors go on, up to [`ACCEPT_RETRY_MAX`], instead of spinning on them.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);
/// Accept errors are logged at most once per this long, with how many there were: out of descriptors,
/// the loop once logged 546 `os error 24` in a row.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// The body of the answer to a connection over `--max-unauthenticated-per-ip`.
const TOO_MANY_WAITING: &str = r#"{"error":{"code":"rate_limited","message":"too many connections from this address are waiting to send a request"}}"#;

/// The deadlines of a connection's requests.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For a request's headers, and for the next request on an idle keep-alive connection.
    pub header: Duration,
    /// For the first request's headers, from the accept.
    pub first_request: Duration,
}

/// The peer address of a request's connection, in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serves `app` over HTTP/1.1 on `listener` until `shutdown` is cancelled; then stops accepting, lets
/// every HTTP connection finish the request it is serving, and returns. Upgraded WebSocket connections
/// are not waited for here: their sessions have shutdown signals of their own.
///
/// A connection must send its first request's headers within `timeouts.first_request`, and every later
/// one within `timeouts.header` of the previous answer: a connection that sends none is closed. While it
/// has sent no request it counts against its address's `--max-unauthenticated-per-ip`. With `tls`, the
/// TLS handshake comes first, within the same deadline; plain HTTP gets a 400. HTTP/1.1 only,
/// which WebSockets need: hyper's HTTP/2 detection would read the first bytes before any timer runs.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    admission: Arc<Admission>,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    let mut errors = AcceptErrors::default();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    errors.recovered();
                    accepted
                }
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    let wait = errors.failed(&error);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
            },
            () = shutdown.cancelled() => break,
        };
        let waiting = match admission.waiting_slot(peer.ip()) {
            Waiting::Counted(slot) => Some(slot),
            Waiting::Proxy => None,
            Waiting::Refused => {
                refuse_waiting(tcp);
                continue;
            }
        };
        // No Nagle: a push must leave now, not wait for the ACK of the previous one (which a client's
        // delayed ACK can hold for 40 ms).
        if let Err(error) = tcp.set_nodelay(true) {
            warn!(%error, "cannot set TCP_NODELAY");
        }
        let first = Arc::new(FirstRequest { arrived: AtomicBool::new(false), waiting: Mutex::new(waiting) });
        let connection = Connection {
            app: app.clone(),
            peer,
            first,
            deadline: tokio::time::Instant::now() + timeouts.first_request,
            header_timeout: timeouts.header,
            admission: Arc::clone(&admission),
            shutdown: shutdown.clone(),
        };
        let Some(tls) = &tls else {
            // Upgrades hand over the socket as the `TokioIo<TcpStream>` that `upgrade::Pending` unwraps.
            connections.spawn(connection.serve(tcp));
            continue;
        };
        let acceptor = tls.clone();
        connections.spawn(async move {
            let tcp = Arc::new(tcp);
            let handshake = async {
                if !starts_with_tls(&tcp).await? {
                    refuse_plain_http(&tcp);
                    return Ok(None);
                }
                acceptor.accept(SharedTcp(Arc::clone(&tcp))).await.map(Some)
            };
            let stream = tokio::select! {
                result = tokio::time::timeout_at(connection.deadline, handshake) => match result {
                    Ok(Ok(Some(stream))) => stream,
                    Ok(Ok(None)) => return debug!(%peer, "plain HTTP on the TLS port"),
                    Ok(Err(error)) => return debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => {
                        connection.admission.refused(refused::FIRST_REQUEST);
                        return debug!(%peer, "no TLS handshake within the first-request timeout");
                    }
                },
                () = connection.shutdown.cancelled() => return,
            };
            // Upgrades hand over the `TokioIo<TlsSocket>` that `upgrade::Pending` unwraps.
            connection.serve(stream).await;
        });
    }
    connections.close();
    connections.wait().await;
}

/// One accepted connection, before its HTTP is served.
struct Connection {
    app: Router,
    peer: SocketAddr,
    first: Arc<FirstRequest>,
    /// When its first request's headers must have arrived (TLS handshake included).
    deadline: tokio::time::Instant,
    header_timeout: Duration,
    admission: Arc<Admission>,
    shutdown: CancellationToken,
}

impl Connection {
    /// Serves HTTP/1.1 on `io` (the TCP socket, or the TLS stream over it) until the client is done,
    /// the first request is late, or the hub shuts down.
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self { app, peer, first, deadline, header_timeout, admission, shutdown } = self;
        let seen = Arc::clone(&first);
        let service = TowerToHyperService::new(app.map_request(move |mut request: Request<Incoming>| {
            seen.arrived();
            request.extensions_mut().insert(Peer(peer));
            request
        }));
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
        let mut connection = pin!(builder.serve_connection(TokioIo::new(io), service).with_upgrades());
        let first_deadline = async {
            tokio::time::sleep_until(deadline).await;
            if first.arrived.load(Ordering::Acquire) {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = first_deadline => {
                admission.refused(refused::FIRST_REQUEST);
                return debug!(%peer, "no request within the first-request timeout");
            }
            () = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = result {
            debug!(%error, "connection ended with an error");
        }
    }
}

/// The first byte of every TLS connection: a handshake record (RFC 8446 §5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The body of the answer to plain HTTP on the TLS port.
const PLAIN_HTTP_ON_TLS: &str =
    r#"{"error":{"code":"bad_request","message":"this port serves HTTPS: use https:// (wss:// for WebSockets)"}}"#;

/// Whether the client's first byte starts a TLS handshake; waits for it without taking it.
async fn starts_with_tls(tcp: &TcpStream) -> io::Result<bool> {
    let mut first = [0u8; 1];
    let read = tcp.peek(&mut first).await?;
    Ok(read == 1 && first[0] == TLS_HANDSHAKE_RECORD)
}

/// Answers 400 to plain HTTP on the TLS port, as nginx does, instead of a TLS alert the client shows as
/// garbage, and closes the connection. One non-blocking write, as in [`refuse_waiting`].
fn refuse_plain_http(tcp: &TcpStream) {
    // The request is read first (it arrived: it was peeked): a close with unread input is a reset, which
    // can discard the answer before the client reads it.
    let _ = tcp.try_read(&mut [0u8; 8 * 1024]);
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{PLAIN_HTTP_ON_TLS}",
        PLAIN_HTTP_ON_TLS.len()
    );
    let _ = tcp.try_write(answer.as_bytes());
    let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
}

/// Whether a connection's first request arrived; until it does, it holds its address's waiting slot.
struct FirstRequest {
    arrived: AtomicBool,
    waiting: Mutex<Option<WaitingSlot>>,
}

impl FirstRequest {
    fn arrived(&self) {
        if !self.arrived.swap(true, Ordering::AcqRel) {
            // Locked once per connection, never across an await.
            drop(self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
        }
    }
}

/// Answers 429 to a connection over its address's cap without waiting for its request (the point is
/// not to hold its descriptor), and closes it. The answer fits any socket buffer: one non-blocking
/// write, no task.
fn refuse_waiting(tcp: TcpStream) {
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{TOO_MANY_WAITING}",
        TOO_MANY_WAITING.len()
    );
    let _ = tcp.try_write(answer.as_bytes());
    // Unread input would make the close a reset, which can discard the answer before the client reads it.
    let _ = socket2::SockRef::from(&tcp).shutdown(std::net::Shutdown::Write);
}

/// The accept loop's run of errors: its back-off, and its rate-limited log.
#[derive(Default)]
struct AcceptErrors {
    /// Errors in a row.
    in_a_row: u32,
    /// Errors since the last log line, and when that was.
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl AcceptErrors {
    /// Counts an error; returns how long to wait before accepting again.
    fn failed(&mut self, error: &io::Error) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unlogged += 1;
        if self.logged_at.is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_EVERY) {
            let hint = if error.raw_os_error() == Some(libc::EMFILE) {
                "; out of file descriptors: raise the open-file limit or lower --max-connections"
            } else {
                ""
            };
            error!(%error, errors = self.unlogged, "accept failed{hint}; backing off");
            self.unlogged = 0;
            self.logged_at = Some(Instant::now());
        }
        ACCEPT_RETRY.saturating_mul(1 << self.in_a_row.min(7).saturating_sub(1)).min(ACCEPT_RETRY_MAX)
    }

    fn recovered(&mut self) {
        self.in_a_row = 0;
    }
}

/// Errors of one connection that was reset before we took it: the next accept is unaffected.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}
