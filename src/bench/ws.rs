//! The bench's WebSocket client: tungstenite does the handshake (and rustls the TLS), then frames are
//! parsed in place from the buffer the socket reads into.
//!
//! Every delivery of a run passes through here, and the bench shares the machine with the hub it
//! measures: through tokio-tungstenite a delivery cost the bench about 1.3 µs of user CPU in buffering,
//! waker proxies, a payload allocation and a UTF-8 check, none of which a marker scan needs. Server frames
//! are unmasked and, from the hubs we know, never fragmented, so reading them is a header and a slice;
//! fragments, pings and closes are still handled as RFC 6455 says.
//!
//! [`Handover`] keeps tungstenite from reading past the HTTP response, so no frame is left behind in its
//! buffer when the stream is taken over.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};

use memchr::memmem;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite;

/// The socket after the handshake.
pub type Stream = MaybeTlsStream<TcpStream>;

/// Room kept for a read: one typical burst of frames fits without growing the buffer.
const MIN_READ: usize = 4096;
/// A frame larger than this is refused (`frame_too_large`) rather than buffered.
const MAX_FRAME: usize = 64 << 20;

pub const TEXT: u8 = 0x1;
pub const CLOSE: u8 = 0x8;
pub const PONG: u8 = 0xA;
const CONTINUATION: u8 = 0x0;
const BINARY: u8 = 0x2;
const PING: u8 = 0x9;

/// Opens the WebSocket at `url` over `tcp`, through TLS checked against `tls_name` when there is one;
/// returns the stream and the frames that arrived with the handshake's response. Failures come back as
/// error kinds.
pub async fn connect(
    url: &str,
    tcp: TcpStream,
    tls_name: Option<&ServerName<'static>>,
    ca: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(Stream, Frames), String> {
    let stream = match tls_name {
        Some(name) => tls(name.clone(), ca, tcp).await.map_err(|e| super::limits::io_kind(&e).to_owned())?,
        None => MaybeTlsStream::Plain(tcp),
    };
    let (socket, _) =
        tokio_tungstenite::client_async(url, Handover::new(stream)).await.map_err(|e| handshake_kind(&e))?;
    let (stream, early) = socket.into_inner().into_parts();
    Ok((stream, Frames::new(early)))
}

/// A TLS connection to `name`, checked against `ca` (`--ca-cert`), else the system's roots.
async fn tls(name: ServerName<'static>, ca: Option<&Arc<rustls::ClientConfig>>, tcp: TcpStream) -> io::Result<Stream> {
    static CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
    });
    let config = ca.unwrap_or(&CONFIG).clone();
    let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
    Ok(MaybeTlsStream::Rustls(stream))
}

/// A short stable label for a handshake failure.
fn handshake_kind(err: &tungstenite::Error) -> String {
    use tungstenite::Error;
    match err {
        Error::Io(e) => super::limits::io_kind(e).into(),
        Error::Http(response) => format!("http_{}", response.status().as_u16()),
        Error::ConnectionClosed | Error::AlreadyClosed => "closed".into(),
        Error::Tls(_) => "tls".into(),
        _ => "ws_protocol".into(),
    }
}

/// The handshake's view of the stream: reads pass through up to the end of the HTTP response head and
/// no further; what the socket delivered beyond it (the hub's first frames) waits in `early`.
pub struct Handover<S> {
    inner: S,
    head: Vec<u8>,
    early: Vec<u8>,
    head_done: bool,
}

impl<S> Handover<S> {
    fn new(inner: S) -> Self {
        Self { inner, head: Vec::new(), early: Vec::new(), head_done: false }
    }

    /// The stream and the bytes read past the response head.
    fn into_parts(self) -> (S, Vec<u8>) {
        (self.inner, self.early)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Handover<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.head_done {
            // The handshake never reads past its response; if it did, it would see the end of input.
            return Poll::Ready(Ok(()));
        }
        if this.early.is_empty() {
            let mut chunk = [0u8; 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            this.early.extend_from_slice(read.filled());
        }
        let mut n = this.early.len().min(buf.remaining());
        let from = this.head.len().saturating_sub(3);
        this.head.extend_from_slice(&this.early[..n]);
        if let Some(at) = memmem::find(&this.head[from..], b"\r\n\r\n") {
            let end = from + at + 4;
            n -= this.head.len() - end;
            this.head.truncate(end);
            this.head_done = true;
        }
        buf.put_slice(&this.early[..n]);
        this.early.drain(..n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Handover<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A frame from the server. A message's payload is borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole text or binary message (fragments already joined).
    Message(&'a [u8]),
    Ping(&'a [u8]),
    Pong,
    /// The close code, if the frame had one.
    Close(Option<u16>),
}

/// A violation of RFC 6455 by the server, or a frame over [`MAX_FRAME`]: an error kind.
pub type Violation = &'static str;

/// Received bytes not yet parsed, and a fragmented message being joined.
///
/// A socket's own buffer is allocated only when it has to hold something between reads. The epoll
/// reader reads every socket with nothing pending into one buffer of its own, lent here with
/// [`Frames::lend`] while the frames are parsed and taken back with [`Frames::give_back`]: at 10,000
/// subscribers, 10,000 own buffers were 40 MiB, and each delivery read into one that no cache held.
pub struct Frames {
    buf: Vec<u8>,
    /// `buf` is a reader's buffer, lent for the bytes of one read; this socket's own is in `own`.
    lent: bool,
    own: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes the frame at `start` needs in all, once its header says so.
    need: usize,
    joined: Vec<u8>,
    joining: bool,
    /// `joined` was handed out whole and is emptied on the next call.
    joined_taken: bool,
}

impl Frames {
    /// Frames starting with `early`, bytes already read.
    pub fn new(early: Vec<u8>) -> Self {
        let end = early.len();
        Self {
            buf: early,
            lent: false,
            own: Vec::new(),
            start: 0,
            end,
            need: 0,
            joined: Vec::new(),
            joining: false,
            joined_taken: false,
        }
    }

    /// True when no received byte waits to be parsed: the next read may go into a lent buffer.
    pub fn is_idle(&self) -> bool {
        self.start == self.end && !self.lent
    }

    /// Takes `buf`, into which `n` bytes were just read, as this socket's buffer until
    /// [`Frames::give_back`]; `buf` is left empty meanwhile. Only while [`Frames::is_idle`].
    pub fn lend(&mut self, buf: &mut Vec<u8>, n: usize) {
        debug_assert!(self.is_idle(), "bytes are pending: they must be parsed first");
        self.own = std::mem::replace(&mut self.buf, std::mem::take(buf));
        (self.lent, self.start, self.end, self.need) = (true, 0, n, 0);
    }

    /// Returns a buffer taken with [`Frames::lend`] to `buf`, first copying any bytes not yet parsed (the
    /// start of a frame) into this socket's own buffer. Does nothing when nothing was lent.
    pub fn give_back(&mut self, buf: &mut Vec<u8>) {
        if !self.lent {
            return;
        }
        let mut own = std::mem::take(&mut self.own);
        own.clear();
        own.extend_from_slice(&self.buf[self.start..self.end]);
        *buf = std::mem::replace(&mut self.buf, own);
        (self.lent, self.start, self.end) = (false, 0, self.end - self.start);
    }

    /// Free space to read into: room for the frame being received, or at least [`MIN_READ`].
    pub fn spare(&mut self) -> &mut [u8] {
        debug_assert!(!self.lent, "a lent buffer is given back before the next read");
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        let pending = self.end - self.start;
        let want = if self.need > 0 { self.need } else { pending + MIN_READ };
        if self.buf.len() - self.start < want {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, pending);
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`Frames::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// The next whole frame, `None` until more bytes arrive.
    pub fn next(&mut self) -> Result<Option<Frame<'_>>, Violation> {
        if self.joined_taken {
            self.joined.clear();
            self.joined_taken = false;
        }
        loop {
            let bytes = &self.buf[self.start..self.end];
            let Some((header, len)) = parse_header(bytes)? else {
                return Ok(None);
            };
            if header + len > bytes.len() {
                self.need = header + len;
                return Ok(None);
            }
            self.need = 0;
            let (first, payload) = (bytes[0], self.start + header..self.start + header + len);
            self.start += header + len;
            let (fin, opcode) = (first & 0x80 != 0, first & 0x0F);
            match opcode {
                TEXT | BINARY if self.joining => return Err("ws_protocol"),
                TEXT | BINARY if fin => return Ok(Some(Frame::Message(&self.buf[payload]))),
                TEXT | BINARY => {
                    self.joining = true;
                    self.joined.extend_from_slice(&self.buf[payload]);
                }
                CONTINUATION if !self.joining => return Err("ws_protocol"),
                CONTINUATION => {
                    self.joined.extend_from_slice(&self.buf[payload]);
                    if self.joined.len() > MAX_FRAME {
                        return Err("frame_too_large");
                    }
                    if fin {
                        self.joining = false;
                        self.joined_taken = true;
                        return Ok(Some(Frame::Message(&self.joined)));
                    }
                }
                PING => return Ok(Some(Frame::Ping(&self.buf[payload]))),
                PONG => return Ok(Some(Frame::Pong)),
                CLOSE => {
                    return match &self.buf[payload] {
                        [] => Ok(Some(Frame::Close(None))),
                        [hi, lo, ..] => Ok(Some(Frame::Close(Some(u16::from_be_bytes([*hi, *lo]))))),
                        [_] => Err("ws_protocol"),
                    };
                }
                _ => return Err("ws_protocol"),
            }
        }
    }
}

/// A server frame's header length and payload length, `None` while the header is incomplete.
fn parse_header(bytes: &[u8]) -> Result<Option<(usize, usize)>, Violation> {
    let [first, second, ..] = *bytes else { return Ok(None) };
    if first & 0x70 != 0 || second & 0x80 != 0 {
        // Reserved bits without a negotiated extension, or a masked server frame.
        return Err("ws_protocol");
    }
    let control = first & 0x08 != 0;
    let (header, len) = match second & 0x7F {
        126 => match bytes.get(2..4) {
            Some(len) => (4, u64::from(u16::from_be_bytes([len[0], len[1]]))),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(len) => (10, u64::from_be_bytes(len.try_into().expect("eight bytes"))),
            None => return Ok(None),
        },
        len => (2, u64::from(len)),
    };
    if control && (len > 125 || first & 0x80 == 0) {
        return Err("ws_protocol");
    }
    if len > MAX_FRAME as u64 {
        return Err("frame_too_large");
    }
    Ok(Some((header, len as usize)))
}

/// Writes one client frame (masked, as RFC 6455 requires of clients) and flushes it.
pub async fn send<S: AsyncWrite + Unpin>(stream: &mut S, opcode: u8, payload: &[u8]) -> io::Result<()> {
    stream.write_all(&encode(opcode, payload)).await?;
    stream.flush().await
}

/// One client frame, masked as RFC 6455 requires of clients.
pub fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask: [u8; 4] = rand::random();
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(byte, key)| byte ^ key));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unmasked server frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xFFFF => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// Feeds `bytes` to `frames` at most `step` bytes at a time, collecting every frame as owned data.
    fn feed(frames: &mut Frames, bytes: &[u8], step: usize) -> Result<Vec<String>, Violation> {
        let mut seen = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            // Like a read: at most `step` bytes, and no more than the spare room.
            let spare = frames.spare();
            let n = step.min(spare.len()).min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            frames.filled(n);
            rest = &rest[n..];
            while let Some(frame) = frames.next()? {
                seen.push(match frame {
                    Frame::Message(m) => format!("msg:{}", String::from_utf8_lossy(m)),
                    Frame::Ping(p) => format!("ping:{}", String::from_utf8_lossy(p)),
                    Frame::Pong => "pong".into(),
                    Frame::Close(code) => format!("close:{code:?}"),
                });
            }
        }
        Ok(seen)
    }

    /// Frames come out whole however the bytes are split, including 16- and 64-bit lengths, fragments with
    /// a ping between them, and a close code.
    #[test]
    fn frames_are_whole_however_the_bytes_arrive() {
        let big = "b".repeat(70_000);
        let mut bytes = frame(true, TEXT, b"hello");
        bytes.extend(frame(true, TEXT, "m".repeat(300).as_bytes()));
        bytes.extend(frame(true, BINARY, big.as_bytes()));
        bytes.extend(frame(false, TEXT, b"fr"));
        bytes.extend(frame(true, PING, b"p"));
        bytes.extend(frame(true, CONTINUATION, b"ag"));
        bytes.extend(frame(true, PONG, b""));
        bytes.extend(frame(true, CLOSE, &1001u16.to_be_bytes()));
        let want = [
            "msg:hello".to_owned(),
            format!("msg:{}", "m".repeat(300)),
            format!("msg:{big}"),
            "ping:p".into(),
            "msg:frag".into(),
            "pong".into(),
            "close:Some(1001)".into(),
        ];
        for step in [1, 3, 100, 4096, bytes.len()] {
            let mut frames = Frames::new(Vec::new());
            assert_eq!(feed(&mut frames, &bytes, step).unwrap(), want, "step {step}");
        }
        // Bytes that came with the handshake response are the first frames.
        let mut frames = Frames::new(frame(true, TEXT, b"early"));
        assert_eq!(feed(&mut frames, &frame(true, TEXT, b"late"), 2).unwrap(), ["msg:early", "msg:late"]);
    }

    /// Read the way the epoll reader reads: into a lent buffer whenever the socket has nothing pending,
    /// into its own otherwise. Frames are the same, a frame split across reads survives the buffer's
    /// return, and the lent buffer always comes back whole.
    #[test]
    fn frames_read_into_a_lent_buffer_are_the_same() {
        let mut bytes = Vec::new();
        for i in 0..50 {
            bytes.extend(frame(true, TEXT, format!("message {i} {}", "p".repeat(i * 7)).as_bytes()));
        }
        bytes.extend(frame(true, BINARY, "b".repeat(70_000).as_bytes()));
        bytes.extend(frame(true, CLOSE, &1000u16.to_be_bytes()));
        let mut want = feed(&mut Frames::new(Vec::new()), &bytes, bytes.len()).unwrap();
        want.sort();
        for step in [1, 2, 60, 100, 4096, 65_536] {
            let (mut frames, mut scratch, mut seen, mut lent) =
                (Frames::new(Vec::new()), vec![0; 65_536], Vec::new(), 0);
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                // A read takes what fits, as `read(2)` would.
                if frames.is_idle() {
                    let n = step.min(rest.len()).min(scratch.len());
                    scratch[..n].copy_from_slice(&rest[..n]);
                    frames.lend(&mut scratch, n);
                    assert!(scratch.is_empty(), "the buffer is the socket's while lent");
                    lent += 1;
                    rest = &rest[n..];
                } else {
                    let spare = frames.spare();
                    let n = step.min(rest.len()).min(spare.len());
                    spare[..n].copy_from_slice(&rest[..n]);
                    frames.filled(n);
                    rest = &rest[n..];
                }
                while let Some(frame) = frames.next().unwrap() {
                    seen.push(match frame {
                        Frame::Message(m) => format!("msg:{}", String::from_utf8_lossy(m)),
                        Frame::Close(code) => format!("close:{code:?}"),
                        other => panic!("unexpected {other:?}"),
                    });
                }
                frames.give_back(&mut scratch);
                assert_eq!(scratch.len(), 65_536, "step {step}: the lent buffer comes back whole");
            }
            seen.sort();
            assert_eq!(seen, want, "step {step}");
            assert!(lent > 0, "step {step}: some reads were lent");
        }
    }

    /// Masked server frames, reserved bits, long or fragmented control frames, stray continuations and
    /// oversized frames are refused.
    #[test]
    fn protocol_violations_are_refused() {
        let masked = [0x81, 0x80 | 1, 0, 0, 0, 0, b'x'];
        let reserved = [0x81 | 0x40, 1, b'x'];
        let long_ping = frame(true, PING, &[0; 126]);
        let split_ping = frame(false, PING, b"p");
        let stray = frame(true, CONTINUATION, b"x");
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(MAX_FRAME as u64 + 1).to_be_bytes());
        for (bad, kind) in [
            (&masked[..], "ws_protocol"),
            (&reserved[..], "ws_protocol"),
            (&long_ping[..], "ws_protocol"),
            (&split_ping[..], "ws_protocol"),
            (&stray[..], "ws_protocol"),
            (&huge[..], "frame_too_large"),
        ] {
            assert_eq!(feed(&mut Frames::new(Vec::new()), bad, bad.len()), Err(kind), "{bad:?}");
        }
    }

    /// A client frame is masked, and unmasking it gives the payload back.
    #[tokio::test]
    async fn client_frames_are_masked() {
        for len in [5, 300, 70_000] {
            let payload = vec![b'z'; len];
            let mut out = Vec::new();
            send(&mut out, TEXT, &payload).await.unwrap();
            assert_eq!(out[0], 0x81);
            assert_ne!(out[1] & 0x80, 0, "mask bit");
            let header = match len {
                5 => 2,
                300 => 4,
                _ => 10,
            };
            let mask = &out[header..header + 4];
            let unmasked: Vec<u8> = out[header + 4..].iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k).collect();
            assert_eq!(unmasked, payload);
        }
    }

    /// The handshake sees the response head and nothing after it; what followed waits for the frames.
    #[tokio::test]
    async fn the_handshake_stops_at_the_response_head() {
        use tokio::io::AsyncReadExt;
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let mut wire = head.to_vec();
        wire.extend(frame(true, TEXT, b"first"));
        let mut handover = Handover::new(&wire[..]);
        let mut seen = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = handover.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        assert_eq!(seen, head);
        let (_, early) = handover.into_parts();
        assert_eq!(early, frame(true, TEXT, b"first"));
    }
}
