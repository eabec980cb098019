//! Test support: an in-process hub on port 0, JWTs, WebSocket and HTTP clients, and a raw WebSocket
//! client that never answers pings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtctl::auth::{self, Identity, SigningKey};
use rtctl::config::HubConfig;
use rtctl::store::test_schema::TestSchema;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame, a close or a response before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test watches a connection to show that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(300);

/// A WebSocket client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A hub running in this test's runtime on an ephemeral port, with its database in a temp dir (or, with
/// `RTCTL_TEST_DATABASE_URL`, in a PostgreSQL schema of its own).
pub struct TestHub {
    pub addr: SocketAddr,
    pub config: HubConfig,
    storage: Arc<Storage>,
    shutdown: Option<oneshot::Sender<()>>,
    run: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestHub {
    /// A hub with the ephemeral defaults.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A hub whose config `tweak` adjusts first (limits, origins).
    pub async fn start_with(tweak: impl FnOnce(&mut HubConfig)) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let mut config = HubConfig::ephemeral(dir.path());
        let schema = match postgres_url() {
            Some(base) => {
                let schema = TestSchema::create(&base, "rtctl_test").await;
                config.database_url = schema.url();
                Some(schema)
            }
            None => None,
        };
        tweak(&mut config);
        Self::launch(
            Arc::new(Storage { _dir: dir, _schema: schema }),
            config,
            "127.0.0.1:0".parse().expect("a socket address"),
        )
        .await
    }

    async fn launch(storage: Arc<Storage>, config: HubConfig, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind the hub's address");
        let addr = listener.local_addr().expect("listener address");
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let run = tokio::spawn(rtctl::hub::run(listener, config.clone(), shutdown));
        Self { addr, config, storage, shutdown: Some(tx), run: Some(run) }
    }

    /// A hub whose inbound rate limit is `rate` frames a second with `burst` of slack (0, 0: off).
    pub async fn with_message_rate(rate: u32, burst: u32) -> Self {
        Self::start_with(|config| {
            config.limits.message_rate = rate;
            config.limits.message_burst = burst;
        })
        .await
    }

    /// Tells the hub to shut down without waiting for it; [`TestHub::stopped`] waits.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `run` to return after [`TestHub::begin_stop`], failing after [`TIMEOUT`].
    pub async fn stopped(&mut self) {
        let run = self.run.take().expect("the hub is running");
        let result = tokio::time::timeout(TIMEOUT, run)
            .await
            .expect("hub::run did not return within 5 s of shutdown")
            .expect("the hub task panicked");
        result.expect("hub::run failed");
    }

    /// Shuts the hub down and waits for `run` to return.
    pub async fn stop(mut self) {
        self.begin_stop();
        self.stopped().await;
    }

    /// Stops this hub and starts a new one on the same port, database and secrets: a restart as
    /// clients see it.
    pub async fn restart(self) -> Self {
        self.down().await.up().await
    }

    /// Another node of the same deployment: a second hub on its own port with this one's secrets,
    /// database and Redis.
    pub async fn node(&self) -> Self {
        Self::launch(Arc::clone(&self.storage), self.config.clone(), "127.0.0.1:0".parse().expect("a socket address"))
            .await
    }

    /// Another node like [`TestHub::node`] on a runtime of its own, and what kills it: ending that
    /// runtime drops every task of the node at once, without its shutdown (no close frames, no
    /// presence taken back, no heartbeat): a node killed with `kill -9`, as the rest of the deployment
    /// sees it.
    pub async fn node_that_can_crash(&self) -> (Self, Crash) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the node");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the node's address");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let (tx, rx) = oneshot::channel::<()>();
        let config = self.config.clone();
        let run = runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            rtctl::hub::run(listener, config, async move {
                let _ = rx.await;
            })
            .await
        });
        let node = Self {
            addr,
            config: self.config.clone(),
            storage: Arc::clone(&self.storage),
            shutdown: Some(tx),
            run: Some(run),
        };
        (node, Crash(Some(runtime)))
    }

    /// Stops the hub, keeping what [`TestHub::up`] needs to start it again: a hub that is away.
    pub async fn down(mut self) -> Self {
        self.begin_stop();
        self.stopped().await;
        self
    }

    /// Starts a hub stopped by [`TestHub::down`] again on its port, database and secrets.
    pub async fn up(self) -> Self {
        Self::launch(Arc::clone(&self.storage), self.config.clone(), self.addr).await
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub fn api_key(&self) -> &str {
        self.config.api_key.expose()
    }

    fn secret(&self) -> String {
        self.config.jwt_secret().expect("test hubs use an HS256 secret").to_owned()
    }

    /// A valid one-hour JWT for `identity`.
    pub fn jwt_for(&self, identity: &Identity) -> String {
        let claims = auth::claims_for(identity, Duration::from_secs(3600));
        auth::mint(&claims, &SigningKey::Hs256(self.secret())).expect("mint a JWT")
    }

    /// A JWT for an ordinary user with no orgs.
    pub fn jwt(&self, user: &str) -> String {
        self.jwt_for(&user_identity(user))
    }

    /// A JWT for a staff user.
    pub fn staff_jwt(&self, user: &str) -> String {
        self.jwt_for(&Identity { is_staff: true, ..user_identity(user) })
    }

    /// A JWT for a member of `orgs`.
    pub fn member_jwt(&self, user: &str, orgs: &[&str]) -> String {
        self.jwt_for(&Identity { orgs: orgs.iter().map(|o| (*o).to_owned()).collect(), ..user_identity(user) })
    }

    /// Connects to `path` with `?token=`, and returns the socket after its `connection_established`.
    pub async fn connect(&self, path: &str, token: &str) -> (Ws, Value) {
        let mut ws = self.connect_raw(path, token).await;
        let greeting = recv(&mut ws).await;
        assert_eq!(greeting["type"], "connection_established", "first frame: {greeting}");
        (ws, greeting)
    }

    /// Connects to `/ws/notifications/` as `user` and checks the greeting's unread count.
    pub async fn notifications(&self, user: &str) -> Ws {
        self.notifications_with(&self.jwt(user)).await
    }

    /// Connects to `/ws/notifications/` with `token`; the greeting must be well formed.
    pub async fn notifications_with(&self, token: &str) -> Ws {
        let (ws, greeting) = self.connect("/ws/notifications/", token).await;
        assert_eq!(greeting["message"], "Connected to notifications");
        assert!(greeting["unread_count"].is_i64(), "greeting: {greeting}");
        ws
    }

    /// Upgrades to `path?token=...` without reading anything.
    pub async fn connect_raw(&self, path: &str, token: &str) -> Ws {
        let url = format!("{}?token={token}", self.ws_url(path));
        connect_request(url.into_client_request().expect("a valid ws URL")).await
    }

    /// POSTs JSON with the API key.
    pub async fn post_api(&self, path: &str, body: &Value) -> reqwest::Response {
        send(http().post(self.http_url(path)).header("x-api-key", self.api_key()).json(body)).await
    }

    /// POSTs a notification with the API key; returns its id.
    pub async fn notify(&self, user: &str, title: &str, kind: &str) -> i64 {
        let body =
            serde_json::json!({"user_id": user, "title": title, "message": format!("{title} body"), "type": kind});
        let response = self.post_api("/api/v1/notifications", &body).await;
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.expect("a JSON body");
        created["notifications"][0]["id"].as_i64().expect("a notification id")
    }

    /// GETs a path with optional extra headers; returns status and JSON body.
    pub async fn get_json(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = http().get(self.http_url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        json_response(send(request).await).await
    }

    /// POSTs JSON with optional extra headers (auth); returns status and JSON body.
    pub async fn post_json(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
        let mut request = http().post(self.http_url(path)).json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        json_response(send(request).await).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = send(http().get(self.http_url("/metrics"))).await;
        assert_eq!(response.status(), 200);
        response.text().await.expect("a text body")
    }
}

/// The runtime of a node from [`TestHub::node_that_can_crash`].
pub struct Crash(Option<tokio::runtime::Runtime>);

impl Crash {
    /// Kills the node: its tasks stop where they are, its sockets and Redis connections just close.
    pub fn now(mut self) {
        self.0.take().expect("a running node").shutdown_background();
    }
}

impl Drop for Crash {
    fn drop(&mut self) {
        // A runtime may not be dropped (blocking) inside the test's async context.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        // A test that failed midway must not leave its hub serving for the rest of the binary.
        self.begin_stop();
    }
}

/// The PostgreSQL database the hubs of this run store in, instead of SQLite files: the integration tests
/// run against either store (`scripts/ci.sh` runs them against both).
pub fn postgres_url() -> Option<String> {
    std::env::var("RTCTL_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty())
}

/// The store name `/readyz` and the stats report for this run's hubs.
pub fn store_name() -> &'static str {
    if postgres_url().is_some() { "postgres" } else { "sqlite" }
}

/// Where a test hub (and the other nodes started from it) keeps its data, removed with the last of them.
struct Storage {
    _dir: TempDir,
    _schema: Option<TestSchema>,
}

/// An ordinary user's identity.
pub fn user_identity(user: &str) -> Identity {
    Identity { user_id: user.to_owned(), is_staff: false, orgs: Vec::new(), name: None, email: None }
}

/// Upgrades with a prepared request (for extra headers such as `Origin` and `Authorization`).
pub async fn connect_request(request: tungstenite::handshake::client::Request) -> Ws {
    let (ws, response) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the WebSocket upgrade timed out")
        .expect("the WebSocket upgrade failed");
    assert_eq!(response.status(), 101);
    ws
}

/// A request for `url` with one extra header.
pub fn request_with(url: &str, name: &'static str, value: &str) -> tungstenite::handshake::client::Request {
    let mut request = url.into_client_request().expect("a valid ws URL");
    request.headers_mut().insert(name, HeaderValue::from_str(value).expect("a valid header value"));
    request
}

/// A stream push (PROTOCOL §7) without its position: checks that `seq` is an integer and `epoch` a
/// 16-digit hex string when the message has them, and removes both, for tests about the rest.
pub fn unpositioned(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut()
        && let Some(seq) = object.remove("seq")
    {
        assert!(seq.is_u64(), "seq is a non-negative integer: {seq}");
        let epoch = object.remove("epoch").expect("a push with a seq has an epoch");
        let epoch = epoch.as_str().expect("the epoch is a string");
        assert!(epoch.len() == 16 && epoch.bytes().all(|b| b.is_ascii_hexdigit()), "epoch {epoch}");
    }
    value
}

/// The next JSON text frame (control frames skipped); fails on a close or after [`TIMEOUT`].
pub async fn recv(ws: &mut Ws) -> Value {
    serde_json::from_str(&recv_text(ws).await).expect("a JSON text frame")
}

/// The next text frame as it was sent, skipping control frames; panics after 5 s.
pub async fn recv_text(ws: &mut Ws) -> String {
    loop {
        let frame = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("no frame arrived within 5 s")
            .expect("the connection ended while a frame was expected")
            .expect("reading a frame failed");
        match frame {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next `n` JSON frames.
pub async fn recv_n(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut frames = Vec::with_capacity(n);
    for _ in 0..n {
        frames.push(recv(ws).await);
    }
    frames
}

/// Asserts that nothing but control frames arrives within [`QUIET`].
pub async fn assert_quiet(ws: &mut Ws) {
    assert_quiet_for(ws, QUIET).await;
}

/// Asserts that nothing but control frames arrives within `window`; returns how many pings did.
pub async fn assert_quiet_for(ws: &mut Ws, window: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + window;
    let mut pings = 0;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return pings,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Pong(_)))) => {}
            Ok(other) => panic!("expected nothing, got {other:?}"),
        }
    }
}

/// Sends a JSON text frame.
pub async fn send_json(ws: &mut Ws, value: &Value) {
    send_text(ws, &value.to_string()).await;
}

/// Sends a text frame as given (possibly not JSON).
pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("sending a frame failed");
}

/// Sends a request and returns the reply.
pub async fn request(ws: &mut Ws, value: Value) -> Value {
    send_json(ws, &value).await;
    recv(ws).await
}

/// Reads until the hub's close frame (skipping other frames) and returns its code and reason.
pub async fn recv_close(ws: &mut Ws) -> (u16, String) {
    loop {
        let frame = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("no close frame arrived within 5 s")
            .expect("the connection ended without a close frame")
            .expect("reading the close frame failed");
        match frame {
            Message::Close(Some(close)) => {
                finish_close(ws).await;
                return (close.code.into(), close.reason.to_string());
            }
            Message::Close(None) => panic!("close frame without a code"),
            Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Drives the socket after the hub's close frame, so the client's answer goes out (as a browser's
/// would) and the hub sees a clean close handshake.
async fn finish_close(ws: &mut Ws) {
    loop {
        match tokio::time::timeout(TIMEOUT, ws.next()).await.expect("the hub did not end the connection") {
            None | Some(Err(_)) => return,
            Some(Ok(_)) => {}
        }
    }
}

/// Asserts an RFC 3339 UTC timestamp with milliseconds, like `2026-01-15T10:30:00.123Z`.
pub fn assert_timestamp(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("timestamp is not a string: {value}"));
    let parsed = chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(parsed.offset().local_minus_utc(), 0, "{text} is not UTC");
    let shape = text.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'.',
        23 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    assert!(text.len() == 24 && shape, "{text} is not YYYY-MM-DDTHH:MM:SS.mmmZ");
}

/// The HTTP client for the API.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(TIMEOUT).build().expect("build an HTTP client")
}

/// Sends an HTTP request, failing the test on a transport error.
pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.expect("the HTTP request failed")
}

/// A response's status and JSON body.
pub async fn json_response(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}

/// The PROTOCOL §5 error body.
pub fn api_error(code: &str, message: &str) -> Value {
    serde_json::json!({"error": {"code": code, "message": message}})
}

/// A WebSocket client over a plain socket that decodes frames itself: it never answers pings, and it
/// can send frames tungstenite would refuse (invalid UTF-8).
pub struct RawWs {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// Frame opcodes (RFC 6455 §5.2).
pub mod opcode {
    pub const TEXT: u8 = 0x1;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

impl RawWs {
    /// Upgrades `path_and_query` on a fresh socket.
    pub async fn connect(addr: SocketAddr, path_and_query: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect to the hub");
        Self::handshake(stream, addr, path_and_query).await
    }

    /// Upgrades on a socket with a small receive buffer, so the hub's writes soon block.
    pub async fn connect_small(addr: SocketAddr, path_and_query: &str) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(4096).expect("set SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("connect to the hub");
        Self::handshake(stream, addr, path_and_query).await
    }

    async fn handshake(mut stream: TcpStream, addr: SocketAddr, path_and_query: &str) -> Self {
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("send the upgrade request");
        let mut raw = Self { stream, buffer: Vec::new() };
        let end = loop {
            if let Some(at) = raw.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            raw.fill().await;
        };
        let head = String::from_utf8_lossy(&raw.buffer[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        raw.buffer.drain(..end);
        raw
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 64 * 1024];
        let n = tokio::time::timeout(TIMEOUT, self.stream.read(&mut chunk))
            .await
            .expect("nothing arrived within 5 s")
            .expect("reading the socket failed");
        assert!(n > 0, "the hub closed the socket");
        self.buffer.extend_from_slice(&chunk[..n]);
    }

    async fn need(&mut self, n: usize) {
        while self.buffer.len() < n {
            self.fill().await;
        }
    }

    /// The next frame's opcode and payload (the hub never fragments nor masks).
    pub async fn frame(&mut self) -> (u8, Vec<u8>) {
        self.need(2).await;
        let op = self.buffer[0] & 0x0f;
        let (len, header) = match self.buffer[1] & 0x7f {
            126 => {
                self.need(4).await;
                (usize::from(u16::from_be_bytes([self.buffer[2], self.buffer[3]])), 4)
            }
            127 => {
                self.need(10).await;
                let bytes: [u8; 8] = self.buffer[2..10].try_into().expect("8 bytes");
                (usize::try_from(u64::from_be_bytes(bytes)).expect("a frame length that fits"), 10)
            }
            short => (usize::from(short), 2),
        };
        self.need(header + len).await;
        let payload = self.buffer[header..header + len].to_vec();
        self.buffer.drain(..header + len);
        (op, payload)
    }

    /// Lets the socket take a large window again after [`RawWs::connect_small`] made the hub's writes
    /// block: what the hub still sends after a stall (the rest of a partly written frame, its close) then
    /// arrives in a few round trips instead of one per 4 KiB, each a pair of wake-ups that a loaded
    /// machine can delay past the hub's close wait.
    pub fn widen_receive_buffer(&self) {
        socket2::SockRef::from(&self.stream).set_recv_buffer_size(1 << 20).expect("set SO_RCVBUF");
    }

    /// Reads until the close frame: its code and reason, the text frames before it, and how many pings.
    pub async fn close(&mut self) -> (u16, String, Vec<Value>, usize) {
        let mut texts = Vec::new();
        let mut pings = 0;
        loop {
            let (op, payload) = self.frame().await;
            match op {
                opcode::TEXT => texts.push(serde_json::from_slice(&payload).expect("a JSON text frame")),
                opcode::PING => pings += 1,
                opcode::CLOSE => {
                    assert!(payload.len() >= 2, "close frame without a code");
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let reason = String::from_utf8(payload[2..].to_vec()).expect("a UTF-8 reason");
                    return (code, reason, texts, pings);
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    /// Sends one masked frame with `payload` as given.
    pub async fn send_frame(&mut self, op: u8, payload: &[u8]) {
        self.try_send_frame(op, payload).await.expect("send a frame");
    }

    /// As [`RawWs::send_frame`], for a test that expects the hub may have stopped reading.
    pub async fn try_send_frame(&mut self, op: u8, payload: &[u8]) -> std::io::Result<()> {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![0x80 | op];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await
    }
}
