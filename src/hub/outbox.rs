//! A connection's write side: every byte for the client goes through here, in order. The slow-consumer
//! policy lives here too.
//!
//! A push to a connection with nothing waiting is written to the socket at once, from the publisher's
//! thread: no task wake-up, no second copy, no re-poll of the session's other futures. Only what the
//! socket does not take at once is queued, and the session task writes it when the socket drains.
//! When the hub is behind (the registry says when), pushes are queued instead, so that those piling up
//! on one connection leave in one `writev`: per-frame syscalls would cap throughput exactly then.
//! The queue of pushes is bounded: when it is full the connection is marked overflowed, its queue is
//! dropped, later pushes are ignored, and the session closes it with 4008.
//!
//! The session's own frames (greetings, replies, pings, pongs, close) come through [`Wire`], the stream
//! under its tungstenite socket, so they take their place in the same order and never split a push.
//!
//! A TLS connection cannot take frames on its descriptor: they must be encrypted first, by its rustls
//! session, which only the session task drives. Its pushes are always queued, and the session writes
//! them through [`TlsSocket`]; a plain connection pays one branch for it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::layer::Push;
use crate::protocol::Endpoint;

/// Frames the session may queue beyond the push capacity: its close frame after an overflow, a pong.
/// Its own writes wait for the queue to drain, so it never has more than a few outstanding.
const SESSION_SLACK: usize = 16;
/// Frames handed to one `writev`; Linux takes up to 1024 buffers, and 64 small frames already fill a
/// loopback segment.
const WRITEV_MAX: usize = 64;

/// The session's own frame that found the queue over capacity (a client that floods pings and reads
/// none of the pongs, say): the session closes such a client as a slow consumer.
#[derive(Debug)]
pub struct QueueFull;

impl std::fmt::Display for QueueFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outbound queue full")
    }
}

impl std::error::Error for QueueFull {}

/// A TLS connection's stream over the socket that its outbox shares.
pub type TlsSocket = tokio_rustls::server::TlsStream<SharedTcp>;

/// The write side of one connection, shared by its session and every group it is a member of.
#[derive(Debug)]
pub struct Outbox {
    // A std Mutex: held to queue or to make one non-blocking write, never across an await. Holding it
    // across the write is what keeps frames whole and in order when several publishers meet.
    state: Mutex<State>,
    tcp: Arc<TcpStream>,
    /// `tcp`'s descriptor, for the direct write of a push (see [`Outbox::write_now`]).
    fd: RawFd,
    /// A TLS connection's stream: every byte in or out passes its rustls session. Boxed, so that a
    /// plain connection carries a pointer, not a session. Locked by the session task only (reads,
    /// drains), and in a drain always after `state`.
    tls: Option<Box<Mutex<TlsSocket>>>,
    /// The session task, woken when the queue gets its first frame, overflows or the socket fails.
    session: AtomicWaker,
    capacity: usize,
    endpoint: Endpoint,
}

#[derive(Debug, Default)]
struct State {
    /// Encoded frames not yet fully on the socket, oldest first.
    queue: VecDeque<Bytes>,
    /// Part of the head frame is on the socket already: it must be finished, whatever happens.
    head_started: bool,
    /// The queue is non-empty because the socket was full, since this instant.
    stalled_since: Option<Instant>,
    overflowed: bool,
    /// The session is sending its close frame: no push may follow it.
    closing: bool,
    /// A write failed or the session ended: nothing more goes out.
    closed: bool,
    /// While the session handles a client frame, where its reply goes: before the pushes the handling
    /// caused, as the client expects the answer to its request first.
    reply_at: Option<usize>,
    /// Push tags this connection wants (`subscribe` on notifications); empty means all.
    types: Vec<Box<str>>,
    /// The stream position this connection has been sent up to by a resume: a later push at or below
    /// it (one that was still on its way when the log was read) was in the replay already.
    floor: u64,
    /// TLS only: the queue is written, but rustls still holds records the socket did not take.
    tls_unflushed: bool,
}

impl State {
    /// Takes `written` bytes off the front of the queue: whole frames leave it, a partly written one
    /// stays as its unwritten rest.
    fn consume(&mut self, mut written: usize) {
        // Progress: the client is reading, so a stall starts over from the next refusal.
        if written > 0 {
            self.stalled_since = None;
        }
        while written > 0 {
            let head = self.queue.front_mut().expect("the socket took no more than was queued");
            if written < head.len() {
                head.advance(written);
                self.head_started = true;
                return;
            }
            written -= head.len();
            self.queue.pop_front();
            self.head_started = false;
            if let Some(at) = self.reply_at.as_mut() {
                *at = at.saturating_sub(1);
            }
        }
    }
}

/// What became of one push.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// On the socket already, or queued behind frames that are.
    Sent,
    /// Not for this connection (its subscribe filter), or the connection is closing or gone.
    Skipped,
    /// The queue was full: the connection is marked for a 4008 close. `first` is true for the push that
    /// overflowed it, false for pushes after: count the first only.
    Overflowed { first: bool },
}

/// What the session's wait on its outbox returns.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Queued frames were written to the socket.
    Drained,
    /// The queue overflowed: close with 4008.
    Overflowed,
    /// The socket refused queued frames and the caller has no timer for it yet.
    Stalled,
    /// The socket failed: the client is gone.
    Failed,
}

impl Outbox {
    /// A new connection's outbox holds pushes back until [`release`]: the greeting goes first.
    ///
    /// [`release`]: Self::release
    pub fn new(tcp: Arc<TcpStream>, capacity: usize, endpoint: Endpoint) -> Self {
        let state = State { reply_at: Some(0), ..State::default() };
        let fd = tcp.as_raw_fd();
        Self { state: Mutex::new(state), tcp, fd, tls: None, session: AtomicWaker::new(), capacity, endpoint }
    }

    /// The outbox of a TLS connection: everything goes through `tls`, whose socket it shares.
    pub fn with_tls(tls: TlsSocket, capacity: usize, endpoint: Endpoint) -> Self {
        let tcp = Arc::clone(&tls.get_ref().0.0);
        Self { tls: Some(Box::new(Mutex::new(tls))), ..Self::new(tcp, capacity, endpoint) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("outbox lock poisoned")
    }

    /// The endpoint this connection is on (for per-endpoint frame counts).
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// Sends a push: written now when nothing waits before it, queued otherwise.
    ///
    /// With `direct` false the push is only queued and the session woken to write it: under load, the
    /// pushes that pile up meanwhile leave together in one `writev`.
    pub fn push(&self, push: &Push, direct: bool) -> Pushed {
        let mut state = self.lock();
        if state.closed || state.closing {
            return Pushed::Skipped;
        }
        if state.overflowed {
            return Pushed::Overflowed { first: false };
        }
        if push.seq != 0 && push.seq <= state.floor {
            return Pushed::Skipped;
        }
        // Untagged pushes (unread_count) keep every tab in sync whatever it subscribed to.
        if let Some(tag) = &push.tag
            && !state.types.is_empty()
            && !state.types.iter().any(|t| t == tag)
        {
            return Pushed::Skipped;
        }
        let idle = state.queue.is_empty() && state.reply_at.is_none();
        if idle && direct && self.tls.is_none() {
            self.write_now(&mut state, &push.wire);
            return if state.closed { Pushed::Skipped } else { Pushed::Sent };
        }
        // A head the socket has taken part of is no longer waiting: it does not count.
        if state.queue.len() - usize::from(state.head_started) >= self.capacity {
            state.overflowed = true;
            self.drop_queue(&mut state);
            drop(state);
            self.session.wake();
            return Pushed::Overflowed { first: true };
        }
        state.queue.push_back(push.wire.clone());
        if idle {
            drop(state);
            self.session.wake();
        }
        Pushed::Sent
    }

    /// Writes `frame` to a socket with nothing queued; what it does not take is queued for the session.
    ///
    /// The write is a plain `send` on the descriptor, not tokio's `try_write`: that one first reads the
    /// socket's readiness from its `ScheduledIo`, a separate allocation, and with thousands of members
    /// that read missed the cache on every delivery (a tenth of the hub's CPU at 100,000 deliveries/s).
    /// Skipping it is safe: a refused send leaves tokio's readiness set, so the session's first write
    /// finds out for itself, gets `WouldBlock` and only then waits for the socket.
    fn write_now(&self, state: &mut State, frame: &Bytes) {
        // SAFETY: `fd` belongs to `self.tcp`, which this outbox keeps open; `frame` is valid for its length.
        let sent =
            unsafe { libc::send(self.fd, frame.as_ptr().cast(), frame.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        match usize::try_from(sent) {
            Ok(n) if n == frame.len() => return,
            Ok(n) => {
                state.queue.push_back(frame.slice(n..));
                state.head_started = n > 0;
            }
            Err(_) => match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => state.queue.push_back(frame.clone()),
                _ => state.closed = true,
            },
        }
        state.stalled_since.get_or_insert_with(Instant::now);
        self.session.wake();
    }

    /// Drops every queued frame but a partly written head: the client must get whole frames.
    fn drop_queue(&self, state: &mut State) {
        let head = state.queue.pop_front().filter(|_| state.head_started);
        state.queue.clear();
        state.queue.extend(head);
        // A reply being prepared goes after what is left.
        state.reply_at = state.reply_at.map(|at| at.min(state.queue.len()));
    }

    /// Sets the `subscribe` filter: pushes tagged otherwise are skipped from now on.
    pub fn set_types(&self, types: &[String]) {
        self.lock().types = types.iter().map(|t| t.as_str().into()).collect();
    }

    /// A resume sent (or is about to send) the stream up to `seq`: drops the pushes held behind the
    /// session's reply that are at or below it, and skips such pushes from now on. Called while the
    /// session holds its replies ([`hold`], or a new connection before its greeting), so the held
    /// pushes are exactly those that came since the connection joined its group or asked to resume.
    ///
    /// [`hold`]: Self::hold
    pub fn skip_through(&self, seq: u64) {
        let mut state = self.lock();
        state.floor = state.floor.max(seq);
        let from = state.reply_at.unwrap_or(state.queue.len()).max(usize::from(state.head_started));
        let floor = state.floor;
        let mut index = 0;
        // Only at a resume, and only over the few pushes held meanwhile: the fan-out path stays untouched.
        state.queue.retain(|frame| {
            let keep = index < from || frame_seq(frame).is_none_or(|seq| seq > floor);
            index += 1;
            keep
        });
    }

    /// The stream position of the first push held behind the session's reply, if one is held.
    pub fn first_held_seq(&self) -> Option<u64> {
        let state = self.lock();
        let from = state.reply_at.unwrap_or(state.queue.len()).max(usize::from(state.head_started));
        state.queue.iter().skip(from).find_map(|frame| frame_seq(frame))
    }

    /// Marks the connection a slow consumer from outside a push (a write that stalled too long); true
    /// when it was not marked already, so the caller counts it once.
    pub fn mark_overflowed(&self) -> bool {
        let mut state = self.lock();
        let first = !state.overflowed;
        state.overflowed = true;
        self.drop_queue(&mut state);
        first
    }

    /// Since when the socket has refused the queued frames, if it has.
    pub fn stalled_since(&self) -> Option<Instant> {
        self.lock().stalled_since
    }

    /// Writes queued frames until none are left; pending while the socket is full.
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = self.lock();
            let state = &mut *guard;
            if state.closed {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if state.queue.is_empty() {
                if let Some(tls) = &self.tls {
                    return self.poll_flush_tls(state, tls, cx);
                }
                state.stalled_since = None;
                return Poll::Ready(Ok(()));
            }
            // Everything queued in one syscall (up to a bound): under load this is where frames
            // coalesce, as pushes that found the socket busy pile up behind each other.
            let mut slices = [IoSlice::new(&[]); WRITEV_MAX];
            let count = state.queue.len().min(WRITEV_MAX);
            for (slice, frame) in slices.iter_mut().zip(&state.queue) {
                *slice = IoSlice::new(frame);
            }
            let written = match &self.tls {
                None => self.tcp.try_write_vectored(&slices[..count]),
                // rustls takes what its buffer holds and writes what the socket takes; pending means it
                // is full and the socket's write readiness is registered.
                Some(tls) => match Pin::new(&mut *lock_tls(tls)).poll_write_vectored(cx, &slices[..count]) {
                    Poll::Ready(result) => result,
                    Poll::Pending => {
                        state.stalled_since.get_or_insert_with(Instant::now);
                        return Poll::Pending;
                    }
                },
            };
            match written {
                Ok(written) => state.consume(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    state.stalled_since.get_or_insert_with(Instant::now);
                    drop(guard);
                    // Readiness was cleared by the failed write, so this registers for the next change.
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                Err(e) => {
                    state.closed = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
    }

    /// The queue is written into rustls: sends what rustls still holds.
    fn poll_flush_tls(&self, state: &mut State, tls: &Mutex<TlsSocket>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut *lock_tls(tls)).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                state.tls_unflushed = false;
                state.stalled_since = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                state.closed = true;
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                state.tls_unflushed = true;
                state.stalled_since.get_or_insert_with(Instant::now);
                Poll::Pending
            }
        }
    }

    /// The session's wait: ready when queued frames were written, or the connection must close.
    ///
    /// `timed` says the caller already runs a [`stalled_since`] timer; without one, a new stall is
    /// returned as [`Event::Stalled`] so that the caller can start it.
    ///
    /// [`stalled_since`]: Self::stalled_since
    pub async fn next_event(&self, timed: bool) -> Event {
        std::future::poll_fn(|cx| {
            // Registered before looking, so a push between the look and the return still wakes us.
            self.session.register(cx.waker());
            {
                let state = self.lock();
                if state.overflowed {
                    return Poll::Ready(Event::Overflowed);
                }
                if state.closed {
                    return Poll::Ready(Event::Failed);
                }
                if state.queue.is_empty() && !state.tls_unflushed {
                    return Poll::Pending;
                }
            }
            match self.poll_drain(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Event::Drained),
                Poll::Ready(Err(_)) => Poll::Ready(Event::Failed),
                Poll::Pending if !timed && self.stalled_since().is_some() => Poll::Ready(Event::Stalled),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Queues bytes the session's tungstenite wrote (whole frames), after everything queued before.
    fn queue_session_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        if state.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if state.queue.len() > self.capacity + SESSION_SLACK {
            return Err(io::Error::other(QueueFull));
        }
        // Not written here: the flush that follows every tungstenite write does that, in the session.
        let bytes = Bytes::copy_from_slice(bytes);
        match state.reply_at {
            Some(at) => {
                state.queue.insert(at, bytes);
                state.reply_at = Some(at + 1);
            }
            None => state.queue.push_back(bytes),
        }
        Ok(())
    }

    /// The session starts handling a client frame: pushes queue up behind its reply until [`release`].
    ///
    /// [`release`]: Self::release
    pub fn hold(&self) {
        let mut state = self.lock();
        state.reply_at = Some(state.queue.len());
    }

    /// The session is about to send a close frame: later pushes are skipped, and pushes held behind a
    /// reply that will not come are dropped (what was queued before them still goes out first).
    pub fn begin_close(&self) {
        let mut state = self.lock();
        state.closing = true;
        if let Some(at) = state.reply_at.take() {
            // Never below a started head: the client must get whole frames before the close.
            let keep = at.max(usize::from(state.head_started));
            state.queue.truncate(keep);
        }
    }

    /// The reply is queued: pushes may go straight to the socket again.
    pub fn release(&self) {
        self.lock().reply_at = None;
    }

    /// The session is over: nothing more goes out, and the client sees the connection end even while a
    /// group still holds this outbox for a moment.
    pub fn close(&self) {
        self.lock().closed = true;
        let _ = socket2::SockRef::from(&*self.tcp).shutdown(Shutdown::Both);
    }

    /// Before [`close`]: when the client sent more than was read (it floods and never reads), reads and
    /// drops it until the client stops or `deadline`. Closing a socket with unread input makes the
    /// kernel reset the connection, and a reset discards what the client has not read yet, the close
    /// frame included. A client with nothing unread costs one `recv`.
    ///
    /// [`close`]: Self::close
    pub async fn discard_input(&self, deadline: Instant) {
        let mut scratch = [0u8; 16 * 1024];
        let mut had_input = false;
        loop {
            match self.tcp.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {
                    had_input = true;
                    // A client that sends as fast as this reads must not hold the thread or the deadline.
                    if Instant::now() >= deadline {
                        return;
                    }
                    tokio::task::consume_budget().await;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if !had_input || Instant::now() >= deadline {
                        return;
                    }
                    if !matches!(tokio::time::timeout_at(deadline, self.tcp.readable()).await, Ok(Ok(()))) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

/// The `seq` of a queued server frame (unmasked, as the hub writes them), if its JSON has one.
fn frame_seq(frame: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Position {
        seq: Option<u64>,
    }
    let header = match frame.get(1)? & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    serde_json::from_slice::<Position>(frame.get(header..)?).ok()?.seq
}

/// The stream under a session's tungstenite socket: reads come from the outbox's TCP socket, writes go
/// through the outbox so they keep their order with the pushes.
pub struct Wire(pub Arc<Outbox>);

impl Wire {
    /// The connection's outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.0
    }
}

impl AsyncRead for Wire {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(tls) = &self.0.tls {
            return Pin::new(&mut *lock_tls(tls)).poll_read(cx, buf);
        }
        poll_read_tcp(&self.0.tcp, cx, buf)
    }
}

/// A read from a socket through tokio's readiness, as `TcpStream`'s own `poll_read`.
fn poll_read_tcp(tcp: &TcpStream, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    loop {
        ready!(tcp.poll_read_ready(cx))?;
        match tcp.try_read(buf.initialize_unfilled()) {
            Ok(n) => {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            // Readiness was cleared: the next poll_read_ready registers for more.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

fn lock_tls(tls: &Mutex<TlsSocket>) -> MutexGuard<'_, TlsSocket> {
    tls.lock().expect("tls lock poisoned")
}

/// A socket shared by an outbox and the TLS stream over it: reads and writes go through tokio's
/// readiness, as `TcpStream`'s own do.
#[derive(Debug, Clone)]
pub struct SharedTcp(pub Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_read_tcp(&self.0, cx, buf)
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(Shutdown::Write))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(self.0.queue_session_bytes(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_drain(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair: the hub's side in an outbox, and the client's side to read from.
    async fn pair(capacity: usize) -> (Arc<Outbox>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Arc::new(Outbox::new(Arc::new(server), capacity, Endpoint::Events)), client)
    }

    /// A connected TLS pair over loopback: the hub's side in an outbox, and the client's TLS stream.
    async fn tls_pair(capacity: usize) -> (Arc<Outbox>, tokio_rustls::client::TlsStream<TcpStream>) {
        use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], PrivatePkcs8KeyDer::from(key.serialize_der()).into())
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let (server, client) = tokio::join!(
            tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(SharedTcp(Arc::new(accepted))),
            tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp),
        );
        (Arc::new(Outbox::with_tls(server.unwrap(), capacity, Endpoint::Events)), client.unwrap())
    }

    /// Over TLS every push is queued (its descriptor cannot take plaintext) and the session's drain
    /// writes it through rustls: a frame larger than any buffer arrives whole, then the ones behind
    /// it, in order, and the drain ends only once rustls has sent everything.
    #[tokio::test]
    async fn tls_pushes_are_queued_and_drained_through_rustls_whole_and_in_order() {
        let (outbox, mut client) = tls_pair(4).await;
        outbox.release();
        let big = Push::new("x".repeat(8 * 1024 * 1024));
        let small = Push::new("{}".into());
        assert_eq!(outbox.push(&big, true), Pushed::Sent);
        assert_eq!(outbox.push(&small, true), Pushed::Sent);
        assert_eq!(outbox.stalled_since(), None, "nothing was written from the publisher's thread");
        let expected = [&big.wire[..], &small.wire[..]].concat();
        let len = expected.len();
        let reader = tokio::spawn(async move {
            let mut bytes = vec![0; len];
            client.read_exact(&mut bytes).await.unwrap();
            (bytes, client)
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), drain(&outbox)).await.expect("the drain ends");
        assert_eq!(outbox.stalled_since(), None, "rustls holds nothing back");
        let (bytes, mut client) = reader.await.unwrap();
        assert!(bytes == expected, "the big frame whole, then the small one");

        // An idle connection: the push is queued, the session's wait drains it.
        assert_eq!(outbox.push(&small, true), Pushed::Sent);
        assert_eq!(outbox.next_event(false).await, Event::Drained);
        let mut bytes = vec![0; small.wire.len()];
        client.read_exact(&mut bytes).await.unwrap();
        assert_eq!(bytes, small.wire);
    }

    /// The next `len` bytes; fails rather than hangs when they are not on the socket.
    async fn read_exactly(client: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        let read = tokio::time::timeout(std::time::Duration::from_secs(2), client.read_exact(&mut bytes));
        read.await.expect("the bytes arrive without a drain").unwrap();
        bytes
    }

    /// Everything the client receives until the connection ends, read alongside the test.
    fn read_to_end(mut client: TcpStream) -> tokio::task::JoinHandle<Vec<u8>> {
        tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        })
    }

    async fn drain(outbox: &Outbox) {
        std::future::poll_fn(|cx| outbox.poll_drain(cx)).await.unwrap();
    }

    /// The greeting goes before any push; then an idle socket gets a push at once, and a push made
    /// while a request is handled follows the reply.
    #[tokio::test]
    async fn pushes_wait_for_the_greeting_and_for_replies() {
        let (outbox, mut client) = pair(4).await;
        let early = Push::new("early".into());
        assert_eq!(outbox.push(&early, true), Pushed::Sent);
        outbox.queue_session_bytes(b"hello").unwrap();
        drain(&outbox).await;
        outbox.release();
        assert_eq!(read_exactly(&mut client, 5).await, b"hello");
        assert_eq!(read_exactly(&mut client, early.wire.len()).await, early.wire);

        let push = Push::new("{}".into());
        assert_eq!(outbox.push(&push, true), Pushed::Sent);
        assert_eq!(outbox.stalled_since(), None, "written at once, nothing queued");
        assert_eq!(read_exactly(&mut client, push.wire.len()).await, push.wire);

        // Queued (the hub is busy): two pushes leave together when the session drains.
        assert_eq!(outbox.push(&push, false), Pushed::Sent);
        assert_eq!(outbox.push(&push, true), Pushed::Sent, "behind a queued push, even when direct");
        drain(&outbox).await;
        assert_eq!(read_exactly(&mut client, 2 * push.wire.len()).await, [&push.wire[..], &push.wire[..]].concat());

        outbox.hold();
        assert_eq!(outbox.push(&push, true), Pushed::Sent);
        outbox.queue_session_bytes(b"reply").unwrap();
        drain(&outbox).await;
        outbox.release();
        assert_eq!(read_exactly(&mut client, 5).await, b"reply");
        assert_eq!(read_exactly(&mut client, push.wire.len()).await, push.wire);
    }

    /// Pushes beyond the capacity mark the connection once; the queue is dropped, but a frame the
    /// socket already took part of is finished, so the client never sees half a frame.
    #[tokio::test]
    async fn overflow_drops_the_queue_but_finishes_a_started_frame() {
        let (outbox, client) = pair(2).await;
        outbox.release();
        // Larger than any socket buffer: the first write takes only part of it.
        let big = Push::new("x".repeat(32 * 1024 * 1024));
        let small = Push::new("{}".into());
        assert_eq!(outbox.push(&big, true), Pushed::Sent);
        assert!(outbox.stalled_since().is_some(), "the socket took only part of the big frame");
        // The head in progress does not count against the capacity.
        for _ in 0..2 {
            assert_eq!(outbox.push(&small, true), Pushed::Sent);
        }
        assert_eq!(outbox.push(&small, true), Pushed::Overflowed { first: true });
        assert_eq!(outbox.push(&small, true), Pushed::Overflowed { first: false });
        assert!(!outbox.mark_overflowed(), "already marked");

        let reader = read_to_end(client);
        drain(&outbox).await;
        outbox.close();
        assert_eq!(reader.await.unwrap(), big.wire, "exactly the started frame, whole");
    }

    /// A reply being prepared while the queue overflows goes after the frame in progress, and a close
    /// that drops held pushes still finishes that frame: the client only ever sees whole frames.
    #[tokio::test]
    async fn replies_and_closes_keep_a_started_frame_whole() {
        let (outbox, client) = pair(2).await;
        outbox.release();
        let big = Push::new("x".repeat(32 * 1024 * 1024));
        let small = Push::new("{}".into());
        assert_eq!(outbox.push(&big, true), Pushed::Sent);
        assert_eq!(outbox.push(&small, true), Pushed::Sent);
        assert_eq!(outbox.push(&small, true), Pushed::Sent);
        outbox.hold();
        assert_eq!(outbox.push(&small, true), Pushed::Overflowed { first: true });
        outbox.queue_session_bytes(b"reply").unwrap();
        outbox.begin_close();
        outbox.queue_session_bytes(b"close").unwrap();

        let reader = read_to_end(client);
        drain(&outbox).await;
        outbox.close();
        let mut expected = big.wire.to_vec();
        expected.extend_from_slice(b"replyclose");
        assert!(reader.await.unwrap() == expected, "the big frame whole, then the reply, then the close");
    }
}
