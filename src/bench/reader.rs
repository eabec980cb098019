//! The steady state of subscribers that only listen over plain TCP: every such socket of a worker
//! sits on one epoll instance, drained by a thread of its own that blocks in `epoll_wait`, as the C
//! floor's receivers do, instead of each socket waking a task of its own.
//!
//! The bench shares the machine with the hub it measures, so what it spends per delivery is taken from
//! the hub. With a task per socket, a delivery woke the task (an atomic on its header), ran a future of
//! several kilobytes through `select!` and re-armed tokio's readiness for that socket: with 10,000
//! sockets each of those touched memory no cache held, and the bench's user CPU was a fifth of the
//! machine at 100,000 deliveries/s. Here a delivery is an epoll event, a `recv` and the frame scan.
//!
//! The epoll instance is not nested in the runtime's: registered there, every socket's wake-up ran
//! the epoll callback twice (ours, then the runtime's for our descriptor), inside the hub's `send` on
//! loopback, and each batch of events cost an extra `epoll_wait` through the runtime's driver.
//!
//! Subscribers that send (chat) or speak TLS keep their own task (`subscriber::read_loop`); both
//! paths book frames through `subscriber::take_frames`.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use tokio::sync::mpsc::error::{SendError, TryRecvError};
use tokio::sync::{mpsc, oneshot};

use super::clock::now_ns;
use super::limits;
use super::subscriber::{self, CLOSE_TIMEOUT, End, Outcome, Shared};
use super::ws::{self, Frame, Frames};

/// Readiness events taken from the epoll instance per wake-up.
const EVENTS: usize = 1024;
/// The buffer every socket with nothing pending is read into: a burst of a few dozen frames fits.
const SCRATCH: usize = 64 << 10;
/// The token of the waker: a new listener, the run's stop, or the worker going away.
const WAKE: Token = Token(usize::MAX);

thread_local! {
    /// This worker thread's reader. Per worker, so that a subscriber's socket is read on the lane its
    /// statistics are kept in (`stats::Shards`) and two readers never share one.
    static READER: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// How a worker reaches its reader thread.
struct Handle {
    arrivals: mpsc::UnboundedSender<Listener>,
    waker: Arc<Waker>,
}

impl Drop for Handle {
    // The worker is going away: its reader sees the channel closed once woken.
    fn drop(&mut self) {
        let _ = self.waker.wake();
    }
}

/// One subscription handed to the reader.
struct Listener {
    stream: TcpStream,
    frames: Frames,
    key: u64,
    group: u64,
    outcome: Outcome,
    /// The close handshake has begun: frames are read only for the hub's close.
    closing: bool,
    done: oneshot::Sender<Outcome>,
}

/// Reads subscriber `key`'s socket on this worker's reader until the run stops or the hub closes it;
/// `frames` holds what arrived with the greeting. Must run on a bench worker thread.
pub async fn listen(
    shared: &Arc<Shared>,
    key: u64,
    group: u64,
    stream: std::net::TcpStream,
    frames: Frames,
    outcome: Outcome,
) -> Outcome {
    let (done, finished) = oneshot::channel();
    let stream = TcpStream::from_std(stream);
    let mut listener = Listener { stream, frames, key, group, outcome, closing: false, done };
    // A reader ends once the run stopped and its last socket closed; one that ended (for an earlier
    // run, or between the check and the send) is replaced, at most once.
    for _ in 0..2 {
        let reader = READER.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.is_none() {
                *slot = Some(start(shared.clone())?);
            }
            let reader = slot.as_ref().expect("just started");
            Ok::<_, io::Error>((reader.arrivals.clone(), Arc::clone(&reader.waker)))
        });
        let (arrivals, waker) = match reader {
            Ok(reader) => reader,
            Err(e) => {
                shared.shards.error(key, limits::io_kind(&e));
                listener.outcome.closed_early = true;
                return listener.outcome;
            }
        };
        match arrivals.send(listener) {
            Ok(()) => {
                // A wake-up that fails (the eventfd cannot be written) is made up for by the next
                // socket event or the run's stop.
                let _ = waker.wake();
                return finished.await.expect("the reader answers every subscription it takes");
            }
            Err(SendError(back)) => {
                READER.with(|slot| slot.borrow_mut().take());
                listener = back;
            }
        }
    }
    // Two readers in a row ended before taking it, which they do only once the run has stopped.
    listener.outcome.closed_early = true;
    listener.outcome
}

/// Starts a reader thread; the run's stop reaches it through a task on the current (worker) runtime.
fn start(shared: Arc<Shared>) -> io::Result<Handle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let registry = poll.registry().try_clone()?;
    let (arrivals, arriving) = mpsc::unbounded_channel();
    let reader =
        Reader { shared, registry, listeners: Vec::new(), free: Vec::new(), open: 0, scratch: vec![0; SCRATCH] };
    let stop = reader.shared.stop.clone();
    std::thread::Builder::new().name("bench-reader".to_owned()).spawn(move || reader.run(poll, arriving))?;
    let on_stop = Arc::clone(&waker);
    tokio::spawn(async move {
        stop.cancelled().await;
        let _ = on_stop.wake();
    });
    Ok(Handle { arrivals, waker })
}

/// The sockets of one worker and the epoll instance they are registered with.
struct Reader {
    shared: Arc<Shared>,
    registry: Registry,
    /// Indexed by token; `None` for a slot listed in `free`.
    listeners: Vec<Option<Listener>>,
    free: Vec<usize>,
    open: usize,
    /// Lent to the socket being read when it has nothing pending (see [`Frames::lend`]).
    scratch: Vec<u8>,
}

impl Reader {
    fn run(mut self, mut poll: Poll, mut arriving: mpsc::UnboundedReceiver<Listener>) {
        let mut events = Events::with_capacity(EVENTS);
        // Set once the run stops: the close handshakes must be over by then.
        let mut closing_by: Option<Instant> = None;
        // Why the epoll instance failed, if it did: every subscription still open or queued ends with it.
        let mut failure: Option<&'static str> = None;
        loop {
            let timeout = closing_by.map(|by| by.saturating_duration_since(Instant::now()));
            match poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failure = Some(limits::io_kind(&e));
                    break;
                }
            }
            for event in &events {
                if event.token() != WAKE {
                    // Data and the end of the stream can come as one event: read until the socket
                    // says so, or the end would never be seen (edge-triggered: no second event).
                    self.read(event.token().0, event.is_read_closed() || event.is_error());
                }
            }
            loop {
                match arriving.try_recv() {
                    Ok(listener) => self.add(listener, closing_by.is_some()),
                    Err(TryRecvError::Empty) => break,
                    // The worker went away, and with it everything waiting for an answer.
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if closing_by.is_none() && self.shared.stop.is_cancelled() {
                closing_by = Some(Instant::now() + CLOSE_TIMEOUT);
                for token in 0..self.listeners.len() {
                    self.begin_close(token);
                }
            }
            if closing_by.is_some_and(|by| Instant::now() >= by) {
                // Hubs that never answered the close are left as they are.
                for token in 0..self.listeners.len() {
                    self.finish(token);
                }
            }
            if closing_by.is_some() && self.open == 0 {
                break;
            }
        }
        if let Some(kind) = failure {
            for token in 0..self.listeners.len() {
                if let Some(listener) = self.listeners[token].as_mut() {
                    self.shared.shards.error(listener.key, kind);
                    listener.outcome.closed_early = true;
                    self.finish(token);
                }
            }
        }
        // Closed, later sends fail, so their subscribers start a new reader; a listener sent before
        // that is handed back (with the failure, if there was one).
        arriving.close();
        while let Ok(mut listener) = arriving.try_recv() {
            if let Some(kind) = failure {
                self.shared.shards.error(listener.key, kind);
                listener.outcome.closed_early = true;
            }
            let _ = listener.done.send(listener.outcome);
        }
    }

    /// Registers a new listener and handles what it already holds.
    fn add(&mut self, listener: Listener, stopping: bool) {
        let token = self.free.pop().unwrap_or_else(|| {
            self.listeners.push(None);
            self.listeners.len() - 1
        });
        self.listeners[token] = Some(listener);
        self.open += 1;
        let listener = self.listeners[token].as_mut().expect("just placed");
        if let Err(e) = self.registry.register(&mut listener.stream, Token(token), Interest::READABLE) {
            self.shared.shards.error(listener.key, limits::io_kind(&e));
            listener.outcome.closed_early = true;
            return self.finish(token);
        }
        // Frames that came with the greeting, then anything that arrived before the registration.
        if self.take(token, now_ns()) {
            if stopping {
                self.begin_close(token);
            }
            self.read(token, true);
        }
    }

    /// Reads `token`'s socket until it has nothing more, handling each read's frames. A short read is
    /// taken to have emptied the socket unless `to_the_end` (the peer closed): then only `WouldBlock` or
    /// the end of the stream stops it.
    fn read(&mut self, token: usize, to_the_end: bool) {
        loop {
            let Some(listener) = self.listeners.get_mut(token).and_then(Option::as_mut) else {
                // An event for a socket finished earlier in the same batch.
                return;
            };
            let lend = listener.frames.is_idle();
            let spare = if lend { &mut self.scratch[..] } else { listener.frames.spare() };
            let room = spare.len();
            let read = (&listener.stream).read(spare);
            // Timestamp first: everything after this line counts as the bench's cost, not the hub's.
            let recv_ns = now_ns();
            match read {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // After our close, the end of the stream (or a reset) is the hub's answer too.
                Ok(0) | Err(_) if listener.closing => return self.finish(token),
                Ok(0) => return self.end(token, End::Broken("eof")),
                Err(e) => return self.end(token, End::Broken(limits::io_kind(&e))),
                Ok(n) => {
                    if lend {
                        listener.frames.lend(&mut self.scratch, n);
                    } else {
                        listener.frames.filled(n);
                    }
                    let open = self.take(token, recv_ns);
                    if open {
                        // A subscription that ended gave the buffer back in `finish`.
                        let listener = self.listeners[token].as_mut().expect("still open");
                        listener.frames.give_back(&mut self.scratch);
                    }
                    if !open || (n < room && !to_the_end) {
                        // A short read emptied the socket: epoll reports the next bytes afresh.
                        return;
                    }
                }
            }
        }
    }

    /// Handles the whole frames `token` holds; false when they ended its subscription.
    fn take(&mut self, token: usize, recv_ns: u64) -> bool {
        let listener = self.listeners[token].as_mut().expect("a live token");
        if listener.closing {
            // After our close only the hub's answer matters, as in `subscriber::close`.
            loop {
                match listener.frames.next() {
                    Ok(None) => return true,
                    Ok(Some(Frame::Close(_))) | Err(_) => {
                        self.finish(token);
                        return false;
                    }
                    Ok(Some(_)) => {}
                }
            }
        }
        let mut pongs = Vec::new();
        let (key, group) = (listener.key, listener.group);
        let ended = subscriber::take_frames(
            &self.shared,
            key,
            group,
            &mut listener.frames,
            recv_ns,
            &mut listener.outcome,
            &mut pongs,
        );
        for payload in pongs {
            if let Err(e) = write_frame(&listener.stream, ws::PONG, &payload) {
                self.end(token, End::Broken(limits::io_kind(&e)));
                return false;
            }
        }
        match ended {
            Ok(()) => true,
            Err(end) => {
                self.end(token, end);
                false
            }
        }
    }

    /// The hub closed `token`'s subscription (or broke it) before the run ended.
    fn end(&mut self, token: usize, end: End) {
        let listener = self.listeners[token].as_mut().expect("a live token");
        listener.outcome.closed_early = true;
        match end {
            End::Closed(code) => {
                self.shared.shards.error(listener.key, &subscriber::close_kind(code));
                // Echo the close, as a client should; the hub is going away either way.
                let _ = write_frame(&listener.stream, ws::CLOSE, &subscriber::close_payload(code));
            }
            End::Broken(kind) => self.shared.shards.error(listener.key, kind),
        }
        self.finish(token);
    }

    /// Starts the close handshake at the end of the run: a normal close, then frames until the hub's.
    fn begin_close(&mut self, token: usize) {
        let Some(listener) = self.listeners[token].as_mut().filter(|listener| !listener.closing) else {
            return;
        };
        listener.closing = true;
        if write_frame(&listener.stream, ws::CLOSE, &1000u16.to_be_bytes()).is_err() {
            self.finish(token);
        }
    }

    /// Takes `token`'s socket off the epoll instance, closes it and hands its outcome back.
    fn finish(&mut self, token: usize) {
        let Some(mut listener) = self.listeners[token].take() else {
            return;
        };
        let _ = self.registry.deregister(&mut listener.stream);
        listener.frames.give_back(&mut self.scratch);
        self.free.push(token);
        self.open -= 1;
        let _ = listener.done.send(listener.outcome);
    }
}

/// Writes one client frame without waiting. The frames written here (pongs, closes) are a few bytes on
/// a socket that sends nothing else, so a send buffer too full to take one means the hub stopped
/// reading: that is an error, not something to wait for.
fn write_frame(stream: &TcpStream, opcode: u8, payload: &[u8]) -> io::Result<()> {
    let frame = ws::encode(opcode, payload);
    let mut stream = stream;
    match stream.write(&frame) {
        Ok(n) if n == frame.len() => Ok(()),
        Ok(_) => Err(io::Error::new(io::ErrorKind::WriteZero, "the send buffer is full")),
        Err(e) => Err(e),
    }
}
