//! Connection limits (PROTOCOL §7): the node's cap (1013), each user's (4029), the cap on connections
//! from one address that sent no request yet (429), the first-request deadline, trusted proxies, and
//! the file descriptors kept for HTTP, the last two with a real `rtctl serve` under a small open-file
//! limit.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::util::{QUIET, TIMEOUT, TestHub, recv_close};

/// The `/metrics` line counting refusals for `reason`, with its value.
fn refused_line(reason: &str, count: u64) -> String {
    format!("rtctl_connections_refused_total{{reason=\"{reason}\"}} {count}")
}

/// A TCP connection to `addr` from the loopback address `from` (Linux routes all of 127/8 to lo), so
/// a test can be a second client address.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::new(from.parse().expect("an address"), 0)).expect("bind a loopback address");
    socket.connect(addr).await.expect("connect to the hub")
}

/// Sends `GET /healthz` on `tcp` and returns the answer's status line.
async fn healthz(tcp: &mut TcpStream) -> String {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n").await.expect("send a request");
    status_line(tcp).await
}

/// The first line the hub writes on `tcp`.
async fn status_line(tcp: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(TIMEOUT, tcp.read(&mut chunk)).await.expect("an answer within 5 s").expect("read");
        assert!(n > 0, "the hub closed the connection without an answer");
        answer.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

/// With `--max-connections 2`, a third WebSocket is accepted and closed with 1013 "try again later"
/// (counted), health checks still answer, and a place that frees up is taken again.
#[tokio::test]
async fn a_node_over_max_connections_closes_with_1013() {
    let hub = TestHub::start_with(|config| config.limits.max_connections = Some(2)).await;
    let first = hub.notifications("u1").await;
    let _second = hub.notifications("u2").await;
    let mut third = hub.connect_raw("/ws/notifications/", &hub.jwt("u3")).await;
    assert_eq!(recv_close(&mut third).await, (1013, "try again later".to_owned()));
    let (status, _) = hub.get_json("/healthz", &[]).await;
    assert_eq!(status, 200);
    assert!(hub.metrics().await.lines().any(|l| l == refused_line("node", 1)));
    drop(first);
    // The hub sees the drop when it reads the socket's end: retry until it did.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut ws = hub.connect_raw("/ws/notifications/", &hub.jwt("u3")).await;
        match tokio::time::timeout(TIMEOUT, futures_util::StreamExt::next(&mut ws)).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                assert!(text.contains("connection_established"), "{text}");
                break;
            }
            other => assert!(Instant::now() < deadline, "no place freed up: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With `--max-connections-per-user 2`, a user's third WebSocket is closed with 4029 "too many
/// connections" (counted); another user still connects.
#[tokio::test]
async fn a_user_over_max_connections_per_user_gets_4029() {
    let hub = TestHub::start_with(|config| config.limits.max_connections_per_user = 2).await;
    let _one = hub.notifications("u1").await;
    let _two = hub.notifications("u1").await;
    let mut three = hub.connect_raw("/ws/notifications/", &hub.jwt("u1")).await;
    assert_eq!(recv_close(&mut three).await, (4029, "too many connections".to_owned()));
    let _other = hub.notifications("u2").await;
    assert!(hub.metrics().await.lines().any(|l| l == refused_line("user", 1)));
}

/// With `--max-unauthenticated-per-ip 2`, two idle connections from one address are held, a third gets
/// 429 at once (counted), and another address is not affected; once an idle one sends its request, the
/// address may connect again.
#[tokio::test]
async fn idle_connections_from_one_address_are_capped() {
    let hub = TestHub::start_with(|config| config.limits.max_unauthenticated_per_ip = 2).await;
    let mut idle = [connect_from("127.0.0.1", hub.addr).await, connect_from("127.0.0.1", hub.addr).await];
    // The hub counts a connection when it accepts it: let it accept both before the third.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = connect_from("127.0.0.1", hub.addr).await;
    assert_eq!(status_line(&mut third).await, "HTTP/1.1 429 Too Many Requests");
    let mut elsewhere = connect_from("127.0.0.2", hub.addr).await;
    assert_eq!(healthz(&mut elsewhere).await, "HTTP/1.1 200 OK");
    assert_eq!(healthz(&mut idle[0]).await, "HTTP/1.1 200 OK");
    let mut again = connect_from("127.0.0.1", hub.addr).await;
    assert_eq!(healthz(&mut again).await, "HTTP/1.1 200 OK");
    let metrics = hub.metrics().await;
    assert!(metrics.lines().any(|l| l == refused_line("unauthenticated_per_ip", 1)), "{metrics}");
}

/// A connection that sends no request within `--first-request-timeout` is closed (counted), long before
/// the 30 s header timeout; one that sent a request stays open as keep-alive beyond it.
#[tokio::test]
async fn a_connection_must_send_its_first_request_in_time() {
    let hub = TestHub::start_with(|config| config.limits.first_request_timeout = Duration::from_millis(300)).await;
    let mut idle = TcpStream::connect(hub.addr).await.expect("connect");
    let mut kept = TcpStream::connect(hub.addr).await.expect("connect");
    assert_eq!(healthz(&mut kept).await, "HTTP/1.1 200 OK");
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(TIMEOUT, idle.read(&mut byte)).await.expect("closed within 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(healthz(&mut kept).await, "HTTP/1.1 200 OK", "a keep-alive connection outlives the deadline");
    assert!(hub.metrics().await.lines().any(|l| l == refused_line("first_request_timeout", 1)));
}

/// A trusted proxy's connections are many clients': with `--max-unauthenticated-per-ip 1` and the
/// loopback as a trusted proxy, three idle connections from it are all held, none answered 429.
#[tokio::test]
async fn a_trusted_proxy_is_not_capped_as_one_address() {
    let hub = TestHub::start_with(|config| {
        config.limits.max_unauthenticated_per_ip = 1;
        config.trusted_proxies = rtctl::config::TrustedProxies::parse("127.0.0.0/8").expect("valid proxies");
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(connect_from("127.0.0.1", hub.addr).await);
    }
    let mut byte = [0u8; 1];
    for tcp in &mut idle {
        assert!(tokio::time::timeout(QUIET, tcp.read(&mut byte)).await.is_err(), "the hub answered an idle connection");
    }
}

/// `rtctl serve` in a temp dir under an open-file limit of `nofile` (set in the child only), with
/// `args`; returns the child, its address, and the log lines as they come.
fn serve_with_nofile(dir: &std::path::Path, nofile: u64, args: &[&str]) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rtctl"));
    command.current_dir(dir).env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RTCTL_") {
            command.env_remove(name);
        }
    }
    command.args(["serve", "--bind", "127.0.0.1:0", "--jwt-secret", SECRET, "--api-key", API_KEY]).args(args);
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limit.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: nofile, rlim_max: nofile };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = Child(command.spawn().expect("start rtctl serve"));
    let stderr = child.0.stderr.take().expect("piped stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line =
            lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no start:\n{}", log.join("\n")));
        if line.contains("hub listening") {
            let at = line.find("address=").expect("the address in the log") + "address=".len();
            let text = line[at..].split_whitespace().next().expect("an address");
            break text.parse().expect("a socket address");
        }
        log.push(line);
    };
    (child, addr, lines)
}

const SECRET: &str = "limits-test-secret-0123456789";
const API_KEY: &str = "limits-test-api-key-0123456789";

/// Kills and reaps the child when the test ends, passed or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A JWT the child hub accepts for `user`.
fn child_jwt(user: &str) -> String {
    let claims = rtctl::auth::claims_for(&crate::util::user_identity(user), Duration::from_secs(3600));
    rtctl::auth::mint(&claims, &rtctl::auth::SigningKey::Hs256(SECRET.into())).expect("mint a JWT")
}

/// Under a 256-descriptor limit, 300 WebSockets (each a different user) do not take the descriptors
/// that HTTP needs: the hub serves what its limit allows less the reserve, closes the rest with 1013,
/// and `/healthz` and the API still answer while they are all held.
#[tokio::test]
async fn descriptors_are_kept_for_http_when_websockets_are_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (_child, addr, _log) = serve_with_nofile(dir.path(), 256, &[]);
    let (mut served, mut refused) = (Vec::new(), 0);
    for n in 0..300 {
        let url = format!("ws://{addr}/ws/notifications/?token={}", child_jwt(&format!("u{n}")));
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("the upgrade is answered");
        match tokio::time::timeout(TIMEOUT, futures_util::StreamExt::next(&mut ws)).await {
            Ok(Some(Ok(Message::Text(_)))) => served.push(ws),
            Ok(Some(Ok(Message::Close(Some(close))))) => {
                assert_eq!((u16::from(close.code), close.reason.as_str()), (1013, "try again later"));
                refused += 1;
            }
            other => panic!("connection {n}: {other:?}"),
        }
    }
    assert!(refused > 0 && served.len() < 256 - 64, "{} served, {refused} refused", served.len());
    let client = crate::util::http();
    let health = client.get(format!("http://{addr}/healthz")).send().await.expect("/healthz answers");
    assert_eq!(health.status(), 200);
    let body = json!({"user_id": "u0", "title": "still up", "message": "the API answers"});
    let posted = client
        .post(format!("http://{addr}/api/v1/notifications"))
        .header("x-api-key", API_KEY)
        .json(&body)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(posted.status(), 201);
}

/// Out of descriptors (a 128 limit, 200 idle connections and no per-address cap), the accept loop backs
/// off instead of spinning and logs one line for the run of errors, not one per error; once the idle
/// connections pass `--first-request-timeout`, `/healthz` answers again.
#[tokio::test]
async fn the_accept_loop_backs_off_when_out_of_descriptors() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let args = ["--max-unauthenticated-per-ip", "1000", "--first-request-timeout", "2s"];
    let (_child, addr, log) = serve_with_nofile(dir.path(), 128, &args);
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(addr).await.expect("the kernel accepts into the backlog"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let errors: Vec<String> = log.try_iter().filter(|line| line.contains("accept failed")).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("out of file descriptors"), "{}", errors[0]);
    let started = Instant::now();
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client")
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("/healthz answers once the idle connections are dropped");
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    drop(idle);
}

/// The head of a POST to `/api/v1/notifications` declaring a `length`-byte JSON body, with `auth` lines.
fn post_head(length: usize, auth: &str) -> String {
    format!(
        "POST /api/v1/notifications HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {length}\r\n\r\n"
    )
}

/// Stalled 1 MiB bodies from callers without credentials are answered 401 at once, before their bodies
/// arrive; a bad body without credentials is 401, not 400; the API key still works meanwhile.
#[tokio::test]
async fn stalled_bodies_of_unauthenticated_callers_are_refused_at_once() {
    let hub = TestHub::start().await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut tcp = TcpStream::connect(hub.addr).await.expect("connect");
        tcp.write_all(post_head(1 << 20, "").as_bytes()).await.expect("send the head");
        tcp.write_all(&[b' '; 1000]).await.expect("send part of the body");
        stalled.push(tcp);
    }
    for tcp in &mut stalled {
        assert_eq!(status_line(tcp).await, "HTTP/1.1 401 Unauthorized");
    }
    let bad_body = crate::util::http()
        .post(hub.http_url("/api/v1/notifications"))
        .header("content-type", "application/json")
        .body("{not json");
    assert_eq!(crate::util::send(bad_body).await.status(), 401);
    hub.notify("u1", "still served", "general").await;
}

/// A caller with valid credentials who may not use a route gets 403 as soon as the headers are in, for
/// every route with a body that the path alone decides (a non-member posting to a chat room among them):
/// the declared 1 MiB body is never sent, and no byte of it is waited for.
#[tokio::test]
async fn callers_who_may_not_post_get_403_before_their_body() {
    let hub = TestHub::start().await;
    let room = serde_json::json!({"room_id": "r1", "members": ["u1"]});
    let (status, _) = hub.post_json("/api/v1/chat/rooms", &[("x-api-key", hub.api_key())], &room).await;
    assert_eq!(status, 201);
    let user = format!("Authorization: Bearer {}\r\n", hub.jwt("u2"));
    let staff = format!("Authorization: Bearer {}\r\n", hub.staff_jwt("s1"));
    let key = format!("X-API-Key: {}\r\n", hub.api_key());
    let refused = [
        ("/api/v1/notifications", &user),
        ("/api/v1/chat/rooms", &user),
        ("/api/v1/chat/rooms/r1/messages", &user),
        ("/api/v1/chat/rooms/r1/messages", &key),
        ("/api/v1/orgs/acme/events", &staff),
        ("/api/v1/admin-dashboard/users/", &user),
        ("/api/v1/admin-dashboard/orders/o1/", &staff),
        ("/api/v1/admin-dashboard/users/u9/approve/", &user),
        ("/api/v1/admin-dashboard/users/u9/reject/", &key),
    ];
    for (path, auth) in refused {
        let mut tcp = TcpStream::connect(hub.addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
            1 << 20
        );
        tcp.write_all(head.as_bytes()).await.expect("send the head");
        assert_eq!(status_line(&mut tcp).await, "HTTP/1.1 403 Forbidden", "POST {path} with {auth}");
    }
}

/// With `max_body_memory` just over one 1 MiB body, an authorized caller stalling a 1 MiB body holds
/// it: another large body gets 503 with `Retry-After` at once (counted), a small one still fits.
#[tokio::test]
async fn request_bodies_in_flight_share_a_memory_budget() {
    let hub = TestHub::start_with(|config| config.limits.max_body_memory = (1 << 20) + 4096).await;
    let auth = format!("X-API-Key: {}\r\n", hub.api_key());
    let mut stalled = TcpStream::connect(hub.addr).await.expect("connect");
    stalled.write_all(post_head(1 << 20, &auth).as_bytes()).await.expect("send the head");
    stalled.write_all(&[b' '; 1000]).await.expect("send part of the body");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut large = TcpStream::connect(hub.addr).await.expect("connect");
    large.write_all(post_head(1_000_000, &auth).as_bytes()).await.expect("send the head");
    assert_eq!(status_line(&mut large).await, "HTTP/1.1 503 Service Unavailable");
    hub.notify("u1", "small enough", "general").await;
    assert!(hub.metrics().await.lines().any(|l| l == refused_line("body_memory", 1)));
}

/// A client address whose requests keep failing authentication (here 3 at once, one forgiven a second)
/// gets 429 with `Retry-After` and the JSON error on every `/api/` request, the right key included, before
/// its credentials are looked at (counted); another client behind the same trusted proxy still gets its
/// 401, and `/healthz` still answers.
#[tokio::test]
async fn an_address_that_keeps_failing_authentication_gets_429() {
    let hub = TestHub::start_with(|config| {
        config.limits.auth_failure_burst = 3;
        config.limits.auth_failure_rate = 1;
        config.trusted_proxies = rtctl::config::TrustedProxies::parse("127.0.0.0/8").expect("valid proxies");
    })
    .await;
    let get = |client: &str, key: &str| {
        let request = crate::util::http()
            .get(hub.http_url("/api/v1/stats"))
            .header("x-forwarded-for", client)
            .header("x-api-key", key);
        crate::util::send(request)
    };
    for _ in 0..3 {
        assert_eq!(get("203.0.113.7", "guessed-wrong-key-0000").await.status(), 401);
    }
    let refused = get("203.0.113.7", hub.api_key()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let (_, body) = crate::util::json_response(refused).await;
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(get("203.0.113.8", "guessed-wrong-key-0000").await.status(), 401);
    assert_eq!(crate::util::send(crate::util::http().get(hub.http_url("/healthz"))).await.status(), 200);
    assert!(hub.metrics().await.lines().any(|l| l == refused_line("auth_failures_per_ip", 1)));
}

/// WebSocket handshakes share the per-address budget of failed authentications: bad tokens (closed
/// 4001) spend it, and the address is then refused 429 before its handshake is answered, a valid token
/// included; another address behind the same trusted proxy still connects.
#[tokio::test]
async fn websocket_handshakes_with_bad_tokens_spend_the_address_budget() {
    let hub = TestHub::start_with(|config| {
        config.limits.auth_failure_burst = 3;
        config.limits.auth_failure_rate = 1;
        config.trusted_proxies = rtctl::config::TrustedProxies::parse("127.0.0.0/8").expect("valid proxies");
    })
    .await;
    let request = |client: &str, token: &str| {
        let url = hub.ws_url(&format!("/ws/notifications/?token={token}"));
        crate::util::request_with(&url, "x-forwarded-for", client)
    };
    for _ in 0..3 {
        let mut ws = crate::util::connect_request(request("203.0.113.7", "not-a-token")).await;
        assert_eq!(recv_close(&mut ws).await.0, 4001);
    }
    let refused =
        tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request("203.0.113.7", &hub.jwt("u1"))))
            .await
            .expect("the handshake is answered");
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert_eq!(response.headers()["retry-after"], "1");
        }
        other => panic!("expected a 429 before the upgrade, got {other:?}"),
    }
    let (mut other, greeting) = {
        let mut ws = crate::util::connect_request(request("203.0.113.8", &hub.jwt("u2"))).await;
        let greeting = crate::util::recv(&mut ws).await;
        (ws, greeting)
    };
    assert_eq!(greeting["type"], "connection_established", "{greeting}");
    other.close(None).await.expect("close");
    assert!(hub.metrics().await.lines().any(|l| l == refused_line("auth_failures_per_ip", 1)));
}
