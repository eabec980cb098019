//! `rtctl bench` against a fake hub that misbehaves on purpose: the bench must see every lost, duplicated
//! and reordered delivery, turn failed thresholds into exit code 3 and print its documented JSON summary.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use rtctl::bench::{Summary, Target};
use rtctl::cli::bench::BenchArgs;
use tokio::sync::broadcast;

/// How the fake hub misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Delivers everything once, in order.
    None,
    /// Publishes nothing for every `n`th event (the 10th, 20th, ...).
    DropEvery(u64),
    /// Publishes event number `n` (1-based) twice.
    Duplicate(u64),
    /// Holds event `n` back and publishes it after event `n + 1`, answering each request at once.
    Swap(u64),
    /// Leaves the request for event `n` unanswered until event `n + 1` arrives, then publishes `n + 1`
    /// first: two requests in flight at once, which a hub may take in either order.
    SwapInFlight(u64),
    /// Closes every subscription with 4003 after its `n`th event.
    CloseAfter(u64),
    /// Drops every subscription's connection, without a close frame, right after its `n`th event.
    DropAfter(u64),
}

struct Fake {
    fault: Fault,
    events: AtomicU64,
    held: std::sync::Mutex<Option<String>>,
    released: tokio::sync::Notify,
    groups: broadcast::Sender<String>,
    /// Chat frames as (room, frame); each chat socket keeps those of its room.
    rooms: broadcast::Sender<(String, String)>,
    chat_ids: AtomicU64,
    /// The close code of each close frame a subscriber sent (its own close, or the echo of ours).
    closes: std::sync::Mutex<Vec<u16>>,
}

/// Starts the fake hub on a free port; returns its base URL.
async fn fake_hub(fault: Fault) -> String {
    fake_hub_and_state(fault).await.0
}

/// Starts the fake hub on a free port; returns its base URL and its state, to look at afterwards.
async fn fake_hub_and_state(fault: Fault) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        fault,
        events: AtomicU64::new(0),
        held: std::sync::Mutex::new(None),
        released: tokio::sync::Notify::new(),
        groups: broadcast::channel(4096).0,
        rooms: broadcast::channel(4096).0,
        chat_ids: AtomicU64::new(0),
        closes: std::sync::Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/ws/events/{org}/", get(subscribe))
        .route("/api/v1/orgs/{org}/events", post(publish))
        .route("/ws/chat/{room}/", get(chat))
        .route("/api/v1/chat/rooms", post(|| async { StatusCode::CREATED }))
        .route("/api/v1/stats", get(|| async { Json(serde_json::json!({ "memory_rss_bytes": 50_000_000 })) }))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

async fn subscribe(
    ws: WebSocketUpgrade,
    Path(org): Path<String>,
    State(fake): State<Arc<Fake>>,
) -> axum::response::Response {
    let events = fake.groups.subscribe();
    ws.on_upgrade(move |socket| forward(socket, org, events, fake))
}

/// Sends the group's events until the subscriber closes (its close code is kept), or, with
/// `Fault::CloseAfter`, closes it and keeps the code of its echo.
async fn forward(mut socket: WebSocket, org: String, mut events: broadcast::Receiver<String>, fake: Arc<Fake>) {
    let hello = serde_json::json!({"type": "connection_established", "message": "hi", "user_id": "u", "org_id": org});
    if socket.send(Message::Text(hello.to_string().into())).await.is_err() {
        return;
    }
    let mut sent = 0;
    loop {
        tokio::select! {
            event = events.recv() => {
                let Ok(frame) = event else { return };
                if socket.send(Message::Text(frame.into())).await.is_err() {
                    return;
                }
                sent += 1;
                match fake.fault {
                    Fault::CloseAfter(n) if sent == n => {
                        let close = axum::extract::ws::CloseFrame { code: 4003, reason: "forbidden".into() };
                        let _ = socket.send(Message::Close(Some(close))).await;
                    }
                    // The last event and the end of the stream reach the client together.
                    Fault::DropAfter(n) if sent == n => return,
                    _ => {}
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(frame))) => {
                    fake.closes.lock().unwrap().push(frame.map_or(1005, |frame| frame.code));
                    return;
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

async fn chat(
    ws: WebSocketUpgrade,
    Path(room): Path<String>,
    State(fake): State<Arc<Fake>>,
) -> axum::response::Response {
    ws.on_upgrade(move |socket| chat_session(socket, room, fake))
}

/// A chat member: PROTOCOL §4.4's connect messages, then every `chat_message` is echoed to the whole room.
async fn chat_session(mut socket: WebSocket, room: String, fake: Arc<Fake>) {
    let mut frames = fake.rooms.subscribe();
    for hello in [
        serde_json::json!({"type": "connection_established", "message": "hi", "user_id": "u", "room_id": room}),
        serde_json::json!({"type": "history", "room_id": room, "messages": [], "has_more": false}),
    ] {
        let _ = socket.send(Message::Text(hello.to_string().into())).await;
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(Message::Text(text))) = incoming else { return };
                let request: serde_json::Value = serde_json::from_str(&text).unwrap();
                let id = fake.chat_ids.fetch_add(1, Ordering::SeqCst) + 1;
                let frame = serde_json::json!({
                    "type": "chat_message", "client_id": request["client_id"],
                    "message": {"id": id, "room_id": room, "sender_id": "u", "content": request["message"],
                                "attachment_url": null, "created_at": "2026-01-15T10:30:00.123Z"},
                });
                let _ = fake.rooms.send((room.clone(), frame.to_string()));
            }
            Ok((to, frame)) = frames.recv() => {
                if to == room && socket.send(Message::Text(frame.into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn publish(
    Path(org): Path<String>,
    State(fake): State<Arc<Fake>>,
    Json(body): Json<serde_json::Value>,
) -> StatusCode {
    let n = fake.events.fetch_add(1, Ordering::SeqCst) + 1;
    let frame = serde_json::json!({
        "type": "event", "event_type": body["event_type"], "data": body["data"], "org_id": org,
        "timestamp": "2026-01-15T10:30:00.123Z",
    })
    .to_string();
    let send = |frame: String| {
        let _ = fake.groups.send(frame);
    };
    match fake.fault {
        Fault::DropEvery(every) if n % every == 0 => {}
        Fault::Duplicate(which) if n == which => {
            send(frame.clone());
            send(frame);
        }
        Fault::Swap(which) if n == which => *fake.held.lock().unwrap() = Some(frame),
        Fault::Swap(which) if n == which + 1 => {
            send(frame);
            if let Some(held) = fake.held.lock().unwrap().take() {
                send(held);
            }
        }
        Fault::SwapInFlight(which) if n == which => {
            *fake.held.lock().unwrap() = Some(frame);
            fake.released.notified().await;
        }
        Fault::SwapInFlight(which) if n == which + 1 => {
            send(frame);
            if let Some(held) = fake.held.lock().unwrap().take() {
                send(held);
            }
            fake.released.notify_one();
        }
        _ => send(frame),
    }
    StatusCode::ACCEPTED
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

/// Common flags for a short deterministic run: 20 messages, no warm-up (the rate is each test's own).
const SHORT_RUN: &[&str] = &[
    "--jwt-secret",
    "test-secret",
    "--api-key",
    "test-key",
    "--messages",
    "20",
    "--warmup",
    "0s",
    "--drain",
    "2s",
    "-q",
];

/// Runs the bench in-process against `url` at `rate` messages/s and returns its summary.
async fn bench_in_process(url: &str, rate: &str) -> Summary {
    let mut argv = vec!["bench", "fanout", "--url", url, "-n", "5"];
    argv.extend_from_slice(SHORT_RUN);
    argv.extend_from_slice(&["-r", rate]);
    let args = Cli::parse_from(argv).args;
    let target = Target::new(url, "test-secret".into(), "test-key".into()).await.unwrap();
    rtctl::bench::run(&args.config().unwrap(), &target).await.unwrap()
}

/// Runs the real binary against `url` with extra flags.
async fn bench_binary(url: &str, extra: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["bench", "fanout", "--url", url, "-n", "5", "-r", "100"])
        .args(SHORT_RUN)
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap()
}

/// A hub that drops every 10th event loses 2 of 20 messages for each of 5 subscribers: 10 deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_dropped_messages_as_loss() {
    let s = bench_in_process(&fake_hub(Fault::DropEvery(10)).await, "100").await;
    assert_eq!(s.connections.established, 5);
    assert_eq!((s.deliveries.expected, s.deliveries.received, s.deliveries.lost), (100, 90, 10));
    assert_eq!((s.deliveries.duplicates, s.deliveries.out_of_order), (0, 0));
    assert_eq!(s.latency_ms.count, 90);
}

/// At the end of a run every subscriber closes with 1000, as a client should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_close_normally_at_the_end() {
    let (url, fake) = fake_hub_and_state(Fault::None).await;
    let s = bench_in_process(&url, "100").await;
    assert_eq!((s.deliveries.received, s.deliveries.lost), (100, 0));
    assert_eq!(s.connections.closed_early, 0);
    assert_eq!(*fake.closes.lock().unwrap(), [1000; 5]);
}

/// A hub that closes its subscribers mid-run: each close is an error by its code, the subscriber echoes
/// it, and what the hub sent no more is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_closed_by_the_hub_report_the_code_and_echo_it() {
    let (url, fake) = fake_hub_and_state(Fault::CloseAfter(5)).await;
    let s = bench_in_process(&url, "100").await;
    assert_eq!((s.deliveries.expected, s.deliveries.received, s.deliveries.lost), (100, 25, 75));
    assert_eq!(s.connections.closed_early, 5);
    assert_eq!(s.errors.get("close_4003"), Some(&5), "{:?}", s.errors);
    assert_eq!(*fake.closes.lock().unwrap(), [4003; 5]);
}

/// A hub that drops its subscribers' connections without a close: each is an `eof` error, seen when it
/// happens (not at the end of the run), and what the hub sent no more is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_dropped_by_the_hub_report_eof() {
    let (url, fake) = fake_hub_and_state(Fault::DropAfter(5)).await;
    let s = bench_in_process(&url, "100").await;
    assert_eq!((s.deliveries.expected, s.deliveries.received, s.deliveries.lost), (100, 25, 75));
    assert_eq!(s.connections.closed_early, 5);
    assert_eq!(s.errors.get("eof"), Some(&5), "{:?}", s.errors);
    assert!(fake.closes.lock().unwrap().is_empty());
}

/// A message delivered twice counts once as received and once per subscriber as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_duplicated_messages() {
    let s = bench_in_process(&fake_hub(Fault::Duplicate(5)).await, "100").await;
    assert_eq!((s.deliveries.received, s.deliveries.lost, s.deliveries.duplicates), (100, 0, 5));
}

/// Chat: 6 members in rooms of 3 send 20 messages in turn; every member of the sender's room gets each one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_rooms_deliver_to_every_member() {
    let url = fake_hub(Fault::None).await;
    let mut argv = vec!["bench", "chat", "--url", &url, "--room-size", "3"];
    argv.extend_from_slice(SHORT_RUN);
    argv.extend_from_slice(&["-n", "6", "-r", "100"]);
    let args = Cli::parse_from(argv).args;
    let target = Target::new(&url, "test-secret".into(), "test-key".into()).await.unwrap();
    let s = rtctl::bench::run(&args.config().unwrap(), &target).await.unwrap();
    assert_eq!(s.connections.established, 6);
    assert_eq!(s.messages.accepted, 20);
    // Two rooms of 3 get 10 messages each: 20 × 3 deliveries.
    assert_eq!((s.deliveries.expected, s.deliveries.received, s.deliveries.lost), (60, 60, 0));
    assert_eq!(s.errors.len(), 0, "{:?}", s.errors);
}

/// A message the hub acknowledged and then delivered after the next one is one out-of-order delivery per
/// subscriber, and no loss. (20 msg/s: the next message leaves 50 ms after the acknowledgement.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_reordered_messages() {
    let s = bench_in_process(&fake_hub(Fault::Swap(3)).await, "20").await;
    assert_eq!((s.deliveries.received, s.deliveries.lost, s.deliveries.out_of_order), (100, 0, 5));
}

/// Two publishes in flight at the same time have no order the hub owes: taking the later one first is not
/// a reordering (the open-loop publisher's concurrent requests may reach any hub this way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_publishes_may_arrive_in_either_order() {
    let s = bench_in_process(&fake_hub(Fault::SwapInFlight(3)).await, "100").await;
    assert_eq!((s.deliveries.received, s.deliveries.lost), (100, 0));
    assert_eq!((s.deliveries.duplicates, s.deliveries.out_of_order), (0, 0));
}

/// A well-behaved hub passes `loss=0` (exit 0); a lossy one fails it with exit 3 and says which threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_breach_exits_3() {
    let good = bench_binary(&fake_hub(Fault::None).await, &["-t", "loss=0", "-t", "p99<5s"]).await;
    assert_eq!(good.status.code(), Some(0), "{}", String::from_utf8_lossy(&good.stderr));
    let bad = bench_binary(&fake_hub(Fault::DropEvery(10)).await, &["-t", "loss=0"]).await;
    assert_eq!(bad.status.code(), Some(3), "{}", String::from_utf8_lossy(&bad.stderr));
    let table = String::from_utf8_lossy(&bad.stdout);
    assert!(table.contains("✘ loss=0"), "{table}");
}

/// A run that cannot start (no secret) is an error: exit 1 with the reason on stderr, and no secret echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_1() {
    // An empty directory: an rtctl.toml where the tests run (left by `rtctl serve`) would supply a secret.
    let empty = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["bench", "--url", "http://127.0.0.1:9", "--api-key", "sekrit-key"])
        .current_dir(empty.path())
        .env_remove("RTCTL_JWT_SECRET")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--jwt-secret") && !stderr.contains("sekrit-key"), "{stderr}");
}

/// Flags that parse but ask for the impossible are usage errors, exit 2 as for those clap refuses: one
/// line naming the flag, before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2() {
    let cases: [(&[&str], &str); 8] = [
        (&["-r", "0"], "rtctl: --rate must be a positive number of messages per second\n"),
        (&["--restart-hub-at", "1s"], "rtctl: --restart-hub-at restarts the hub --spawn starts: add --spawn\n"),
        (
            &["--churn", "5%/s", "--find-max"],
            "rtctl: --churn and --restart-hub-at measure one run: leave out --find-max\n",
        ),
        (&["--churn", "5"], "error: invalid value '5' for '--churn <PCT%/s>': `5` is not a churn rate"),
        (&["-n", "0"], "rtctl: --subscribers must be at least 1\n"),
        (
            &["--source-ips", "nonsense"],
            "rtctl: --source-ips: invalid address \"nonsense\": invalid IP address syntax\n",
        ),
        (&["-t", "p99<<3"], "error: invalid value 'p99<<3' for '--threshold <RULE>'"),
        (&["-d", "5x"], "error: invalid value '5x' for '--duration <DURATION>': `5x` is not a duration like 2s"),
    ];
    for (args, expected) in cases {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
            .args(["bench", "fanout", "--url", "http://127.0.0.1:9"])
            .args(args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
    }
}

/// A run whose every publish the hub refused (a wrong API key) cannot pass, even `loss=0` (refused
/// messages are not expected): exit 1 naming the refusals, after the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_refused_is_an_error() {
    let hub = crate::util::TestHub::start().await;
    let secret = hub.config.jwt_secret().expect("ephemeral hubs use HS256").to_owned();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["bench", "fanout", "--url", hub.http_url("").trim_end_matches('/'), "-n", "5", "-r", "100"])
        .args([&format!("--jwt-secret={secret}"), "--api-key", "wrong-key-0123456789", "--messages", "5"])
        .args(["--warmup", "0s", "--drain", "1s", "-q", "--json", "-t", "loss=0"])
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    hub.stop().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr, "rtctl: the hub refused every message (publish_http_401 5)\n");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the summary is printed");
    assert_eq!((summary["messages"]["accepted"].as_u64(), summary["messages"]["failed"].as_u64()), (Some(0), Some(5)));
}

/// `--report` writes a self-contained page after the summary; a path it cannot write to stops the bench
/// before it runs (not after, with the run's figures lost), and leaves no file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_path_is_checked_before_the_run() {
    let (url, fake) = fake_hub_and_state(Fault::None).await;
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("run.html");
    let out = bench_binary(&url, &["--json", "--report", page.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["deliveries"]["received"], 100);
    assert!(std::fs::read_to_string(&page).unwrap().starts_with("<!doctype html>"));

    let missing = dir.path().join("no-such-dir").join("run.html");
    let published = fake.events.load(Ordering::SeqCst);
    let out = bench_binary(&url, &["--json", "--report", missing.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("rtctl: cannot write the report to {}: No such file or directory (os error 2)\n", missing.display())
    );
    assert!(out.stdout.is_empty() && !missing.exists());
    assert_eq!(fake.events.load(Ordering::SeqCst), published, "nothing was published");
}

/// `--help` documents the secret flags without ever showing their env values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_hides_secrets() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["bench", "--help"])
        .env("RTCTL_JWT_SECRET", "sekrit-jwt")
        .env("RTCTL_API_KEY", "sekrit-key")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--jwt-secret") && !help.contains("sekrit"), "{help}");
}

/// Every field the summary documents is present in `--json` output (as a value or null).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_summary_has_every_documented_field() {
    let out =
        bench_binary(&fake_hub(Fault::None).await, &["--json", "-t", "p99<5s", "-t", "machine_busy_pct<=100"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let percentiles = ["count", "mean", "p50", "p90", "p99", "p99.9", "max"];
    let fields: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "schema",
                "scenario",
                "url",
                "started_at",
                "errors",
                "machine_limit",
                "timeline",
                "distribution",
                "thresholds",
                "passed",
                "find_max",
                "interrupted",
                "command",
                "version",
            ],
        ),
        (
            "settings",
            &[
                "subscribers",
                "room_size",
                "rate",
                "duration_s",
                "warmup_s",
                "payload_bytes",
                "connect_rate",
                "source_ips",
            ],
        ),
        (
            "connections",
            &["attempted", "established", "failed", "closed_early", "connect_s", "connect_per_s", "handshake_ms"],
        ),
        ("connections/handshake_ms", &percentiles),
        ("messages", &["scheduled", "warmup", "accepted", "failed"]),
        (
            "deliveries",
            &["expected", "received", "lost", "duplicates", "out_of_order", "loss_pct", "per_s", "window_s"],
        ),
        ("latency_ms", &percentiles),
        ("completion_ms", &percentiles),
        ("first_delivery_ms", &percentiles),
        ("publisher_lag_ms", &percentiles),
        ("bench", &["cpu_s", "wall_s", "cpu_cores", "includes_hub", "open_file_limit"]),
        (
            "hub",
            &[
                "memory_rss_before_bytes",
                "memory_rss_connected_bytes",
                "memory_rss_after_bytes",
                "memory_per_connection_bytes",
                "cpu_s",
                "cpu_cores",
                "layer",
                "store",
            ],
        ),
        (
            "cpu",
            &[
                "window_s",
                "bench_cores",
                "bench_system_cores",
                "hub_cores",
                "hub_system_cores",
                "machine_cores",
                "machine_busy_pct",
                "machine_softirq_pct",
                "machine_steal_pct",
                "saturated",
            ],
        ),
        ("cost", &["hub_ns", "hub_system_ns", "bench_ns", "bench_system_ns", "softirq_ns", "machine_ns"]),
        ("timeline/0", &["t_s", "deliveries", "per_s", "p50_ms", "p99_ms", "max_ms"]),
        ("distribution/0", &["percentile", "latency_ms"]),
        ("thresholds/0", &["expr", "value", "passed"]),
    ];
    for (path, keys) in fields {
        let object = if path.is_empty() { Some(&json) } else { json.pointer(&format!("/{path}")) };
        let object = object.unwrap_or_else(|| panic!("missing {path} in {json:#}"));
        for key in *keys {
            assert!(object.get(key).is_some(), "missing {path}/{key} in {json:#}");
        }
    }
    assert_eq!(json["schema"], 1);
    assert_eq!(json["deliveries"]["lost"], 0);
    assert_eq!(json["hub"]["memory_rss_before_bytes"], 50_000_000);
    // The CPU window is the publishing of 20 messages at 100/s: about 0.2 s.
    let cpu = &json["cpu"];
    let window = cpu["window_s"].as_f64().unwrap();
    assert!((0.15..2.0).contains(&window), "{cpu}");
    assert_eq!(cpu["hub_cores"], serde_json::Value::Null, "a hub without a pid is not observed");
    assert!(cpu["machine_cores"].as_u64().unwrap() >= 1, "{cpu}");
    let busy = cpu["machine_busy_pct"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&busy), "{cpu}");
    assert!(cpu["machine_softirq_pct"].as_f64().unwrap() <= busy, "{cpu}");
    // The cost per delivery is the window's cores over the deliveries per second.
    let cost = &json["cost"];
    assert_eq!(cost["hub_ns"], serde_json::Value::Null, "{cost}");
    let per_s = json["deliveries"]["per_s"].as_f64().unwrap();
    let bench_ns = cost["bench_ns"].as_f64().unwrap();
    assert!((bench_ns - cpu["bench_cores"].as_f64().unwrap() * 1e9 / per_s).abs() < 1e-3, "{cost} {cpu}");
    assert!(cost["bench_system_ns"].as_f64().unwrap() <= bench_ns, "{cost}");
    assert!(cost["softirq_ns"].as_f64().unwrap() <= cost["machine_ns"].as_f64().unwrap(), "{cost}");
    assert_eq!(json["thresholds"][1]["expr"], "machine_busy_pct<=100");
    assert_eq!(json["thresholds"][1]["value"].as_f64(), Some(busy));
    assert_eq!(json["thresholds"][1]["passed"], true);
}

/// `--spawn` starts its own hub in a child process, which it observes: CPU (per delivery too, with
/// thresholds on it) and memory come from that
/// process, so a run needs nothing else. The hub's store is temporary whatever the environment says: the
/// `RTCTL_*` variables of the user's own hub (here unreachable ones, which would stop the hub from
/// starting) do not reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_runs_and_observes_its_own_hub() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["bench", "fanout", "--spawn", "-n", "20", "-r", "50", "--messages", "50", "--warmup", "0s"])
        .args(["--json", "-q", "-t", "loss=0", "-t", "hub_ns_per_delivery>0", "-t", "bench_ns_per_delivery<1"])
        .current_dir(dir.path())
        .env("RTCTL_DATABASE_URL", "postgres://nobody@127.0.0.1:9/production")
        .env("RTCTL_REDIS_URL", "redis://127.0.0.1:9")
        .env("RTCTL_QUEUE", "1")
        .output()
        .await
        .unwrap();
    // Exit 3: no bench receives a delivery in under a nanosecond of CPU.
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cost = &json["cost"];
    let hub_ns = cost["hub_ns"].as_f64().expect("the spawned hub's CPU is observed");
    assert!(cost["hub_system_ns"].as_f64().unwrap() <= hub_ns, "{cost}");
    let verdicts: Vec<(&str, bool)> = json["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["expr"].as_str().unwrap(), t["passed"] == true))
        .collect();
    assert_eq!(verdicts, [("loss=0", true), ("hub_ns_per_delivery>0", true), ("bench_ns_per_delivery<1", false)]);
    assert_eq!(json["thresholds"][1]["value"].as_f64(), Some(hub_ns));
    assert_eq!(json["thresholds"][2]["value"], cost["bench_ns"]);
    assert_eq!(json["deliveries"]["expected"], 1000);
    assert_eq!(json["deliveries"]["received"], 1000);
    assert_eq!(json["bench"]["includes_hub"], false);
    assert!(json["hub"]["cpu_s"].is_f64(), "{}", json["hub"]);
    assert!(json["hub"]["memory_per_connection_bytes"].as_f64().unwrap() > 0.0, "{}", json["hub"]);
    assert!(json["cpu"]["hub_cores"].as_f64().unwrap() >= 0.0, "{}", json["cpu"]);
    assert_eq!(json["hub"]["layer"], "memory");
    assert_eq!(json["hub"]["store"], "sqlite");
    // Nothing is left behind in the directory the bench ran in: the hub's config and store are temporary.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `--spawn-redis-url` gives the spawned hub a Redis channel layer, and the summary says which it benched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
async fn spawn_with_redis_benches_a_hub_on_redis() {
    let redis = std::env::var("RTCTL_TEST_REDIS_URL").expect("RTCTL_TEST_REDIS_URL names the Redis to use");
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["bench", "fanout", "--spawn", "--spawn-redis-url", &redis, "-n", "20", "-r", "50"])
        .args(["--messages", "50", "--warmup", "0s", "--json", "-q", "-t", "loss=0"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["deliveries"]["received"], 1000);
    assert_eq!(json["hub"]["layer"], "redis");
    assert_eq!(json["hub"]["store"], "sqlite");
}

/// A backend the spawned hub cannot reach stops the run with exit 1 and the hub's reason; the backend
/// flags make no sense without `--spawn` (a usage error, exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_backends_reach_the_spawned_hub() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, url) in
        [("--spawn-redis-url", "redis://127.0.0.1:9"), ("--spawn-database-url", "postgres://x@127.0.0.1:9/x")]
    {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
            .args(["bench", "fanout", "--spawn", flag, url, "-n", "2", "--messages", "2", "-q"])
            .current_dir(dir.path())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}: {stderr}");
        // One line: the bench's error, with the hub's reason in it.
        let reason = if flag == "--spawn-redis-url" { "redis" } else { "database" };
        assert_eq!(stderr.lines().count(), 1, "{flag}: {stderr}");
        assert!(stderr.contains("the spawned hub exited at start") && stderr.contains(reason), "{flag}: {stderr}");
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
            .args(["bench", "fanout", flag, url])
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} without --spawn: {stderr}");
        assert!(stderr.contains(&format!("{flag} is for the hub --spawn starts")), "{stderr}");
    }
}

/// The spawned hub's backends may come from the environment, which keeps a password out of `ps`;
/// there they do not stop a run that spawns no hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_backends_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["bench", "fanout", "--spawn", "-n", "2", "--messages", "2", "-q"])
        .env("RTCTL_BENCH_SPAWN_REDIS_URL", "redis://:sekrit@127.0.0.1:9")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("redis") && !stderr.contains("sekrit"), "{stderr}");
    let help = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["bench", "--help"])
        .env("RTCTL_BENCH_SPAWN_DATABASE_URL", "postgres://u:sekrit@db/x")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("RTCTL_BENCH_SPAWN_DATABASE_URL") && !help.contains("sekrit"), "{help}");
    let hub = fake_hub(Fault::None).await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"));
    command.args(["bench", "fanout", "--url", &hub, "-n", "5", "-r", "100"]).args(SHORT_RUN);
    let out = command.env("RTCTL_BENCH_SPAWN_REDIS_URL", "redis://127.0.0.1:9").output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs one scenario in-process against a real hub started on port 0, with `extra` flags.
async fn bench_real_hub(scenario: &str, extra: &[&str]) -> Summary {
    bench_tweaked_hub(|_| {}, scenario, "100", extra).await
}

/// [`bench_real_hub`] at `rate` messages/s against a hub whose configuration `tweak` changed.
async fn bench_tweaked_hub(
    tweak: impl FnOnce(&mut rtctl::config::HubConfig),
    scenario: &str,
    rate: &str,
    extra: &[&str],
) -> Summary {
    let hub = crate::util::TestHub::start_with(tweak).await;
    let url = hub.http_url("");
    let url = url.trim_end_matches('/');
    let secret = hub.config.jwt_secret().expect("ephemeral hubs use HS256").to_owned();
    let key = hub.api_key().to_owned();
    let mut argv = vec!["bench", scenario, "--url", url, "-r", rate, "--messages", "40", "--warmup", "0s"];
    argv.extend_from_slice(&["--drain", "3s", "-q"]);
    argv.extend_from_slice(extra);
    let args = Cli::parse_from(argv).args;
    let target = Target::new(url, secret, key).await.unwrap();
    let summary = rtctl::bench::run(&args.config().unwrap(), &target).await.unwrap();
    hub.stop().await;
    summary
}

/// Asserts a run against the real hub lost, duplicated and reordered nothing, and that its latencies
/// are plausible for loopback: positive, ordered, and under a second.
fn assert_clean(summary: &Summary, expected: u64) {
    let json = serde_json::to_value(summary).unwrap();
    assert_eq!(json["connections"]["failed"], 0, "{json:#}");
    assert_eq!(json["deliveries"]["expected"], expected, "{json:#}");
    assert_eq!(json["deliveries"]["received"], expected, "{json:#}");
    assert_eq!(json["deliveries"]["lost"], 0, "{json:#}");
    assert_eq!(json["deliveries"]["duplicates"], 0, "{json:#}");
    assert_eq!(json["deliveries"]["out_of_order"], 0, "{json:#}");
    let latency = &json["latency_ms"];
    let (p50, p99, max) =
        (latency["p50"].as_f64().unwrap(), latency["p99"].as_f64().unwrap(), latency["max"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max && max < 1000.0, "implausible latencies {latency}");
    assert!(json["hub"]["memory_rss_before_bytes"].as_u64().unwrap() > 0, "hub memory from /api/v1/stats");
    // Every message has a first and a last arrival, the first never after the last.
    let (first, last) = (&summary.first_delivery_ms, &summary.completion_ms);
    assert_eq!((first.count, last.count), (40, 40), "{json:#}");
    assert!(0.0 < first.p50 && first.p50 <= last.p50 && first.max <= last.max, "first {first:?}, last {last:?}");
}

/// Fan-out against the real hub: 40 events to 20 subscribers, every one delivered once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_against_the_real_hub_loses_nothing() {
    let summary = bench_real_hub("fanout", &["-n", "20"]).await;
    assert_clean(&summary, 40 * 20);
    // The table says what was benched, as `/api/v1/stats` reported it.
    let store = summary.hub.store.clone().expect("the hub reports its store");
    assert!(store == "sqlite" || store == "postgres", "{store}");
    let table = rtctl::bench::table(&summary);
    assert!(table.contains(&format!("memory layer, {store} store")), "{table}");
    // Every latency row's p50 ends under the header's, the longest label ("first delivery") included.
    // Compared on the text as seen, without colour codes (a terminal running the tests gets them).
    let mut plain = String::new();
    let mut rest = table.as_str();
    while let Some(at) = rest.find('\x1b') {
        plain.push_str(&rest[..at]);
        rest = rest[at..].split_once('m').map_or("", |(_, after)| after);
    }
    plain.push_str(rest);
    let table = plain;
    let column_end = |line: &str, at: &str| line.find(at).map(|start| start + at.len());
    let header = table.lines().find(|line| line.contains("latency (ms)")).expect("a latency header");
    let p50_end = column_end(header, "p50").expect("a p50 column");
    let rows: Vec<&str> = table
        .lines()
        .filter(|line| {
            ["  delivery ", "  first delivery ", "  completion ", "  handshake "].iter().any(|l| line.starts_with(l))
        })
        .collect();
    assert_eq!(rows.len(), 4, "{table}");
    for line in rows {
        let p50 = line.split_whitespace().find(|word| word.parse::<f64>().is_ok()).expect("a figure");
        assert_eq!(column_end(line, p50), Some(p50_end), "{table}");
    }
}

/// The notify scenario against the real hub: 40 stored notifications, each reaching its one user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_against_the_real_hub_loses_nothing() {
    let summary = bench_real_hub("notify", &["-n", "10"]).await;
    assert_clean(&summary, 40);
    // One recipient per message: its first delivery is its last.
    assert_eq!(
        serde_json::to_value(&summary.first_delivery_ms).unwrap(),
        serde_json::to_value(&summary.completion_ms).unwrap()
    );
}

/// The chat scenario against the real hub: rooms of 4, every message to every member, sender included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_against_the_real_hub_loses_nothing() {
    assert_clean(&bench_real_hub("chat", &["-n", "8", "--room-size", "4"]).await, 40 * 4);
}

/// A chat member that sends faster than the hub's message rate: the refusals are reported by their
/// code, the messages they cost count as lost, and the hub's 4029 close shows as its own error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_refused_by_the_rate_limit_reports_why() {
    let summary = bench_tweaked_hub(
        |config| {
            config.limits.message_rate = 2;
            config.limits.message_burst = 2;
        },
        "chat",
        "100",
        &["-n", "2", "--room-size", "2"],
    )
    .await;
    let json = serde_json::to_value(&summary).unwrap();
    // 20 frames from each member within 0.4 s: two or three pass, ten are refused, the eleventh closes.
    assert_eq!(json["errors"]["hub_error_rate_limited"], 20, "{json:#}");
    assert_eq!(json["errors"]["close_4029"], 2, "{json:#}");
    assert!(json["deliveries"]["lost"].as_u64().unwrap() > 0, "{json:#}");
}

/// Subscribers answer the hub's pings: with a 100 ms heartbeat and a 500 ms timeout, a bench that ignored
/// them would be closed with 4000 long before its 40 messages (2 s at 20/s) were through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_answer_the_hubs_pings() {
    let summary = bench_tweaked_hub(
        |config| {
            config.limits.heartbeat_interval = std::time::Duration::from_millis(100);
            config.limits.heartbeat_timeout = std::time::Duration::from_millis(500);
        },
        "fanout",
        "20",
        &["-n", "10"],
    )
    .await;
    assert_clean(&summary, 40 * 10);
    assert_eq!(summary.connections.closed_early, 0);
}

/// Runs `rtctl bench fanout --spawn` with `extra` and returns its JSON summary, after checking that it
/// passed `loss=0` (exit 0).
async fn spawned_run(extra: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["bench", "fanout", "--spawn", "--warmup", "0s", "--json", "-q", "-t", "loss=0"])
        .args(extra)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{:#}", json["deliveries"]);
    json
}

/// `--churn`: subscribers drop (no close frame) and reconnect with `?since=&epoch=` while the publisher
/// runs; what was published while one was away arrives through the replay, once, so every accepted
/// message reaches every subscriber. The summary counts the reconnects, their times and the replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_resumes_without_loss() {
    let json = spawned_run(&["-n", "50", "-r", "100", "-d", "2s", "--churn", "20%/s"]).await;
    let (deliveries, resume) = (&json["deliveries"], &json["resume"]);
    assert_eq!(deliveries["lost"], 0, "{deliveries}");
    assert_eq!(deliveries["duplicates"], 0, "{deliveries}");
    assert_eq!(deliveries["received"], deliveries["expected"], "{deliveries}");
    assert_eq!(deliveries["expected"], json["messages"]["accepted"].as_u64().unwrap() * 50, "{deliveries}");
    assert_eq!(resume["churn_pct_per_s"], 20.0, "{resume}");
    let reconnects = resume["reconnects"].as_u64().unwrap();
    assert!(reconnects > 0, "{resume}");
    assert_eq!(resume["reconnect_ms"]["count"], reconnects, "{resume}");
    assert!(resume["replayed"].as_u64().unwrap() > 0, "{resume}");
    assert_eq!(resume["resume_failed"], 0, "{resume}");
    assert!(resume["restart"].is_null(), "{resume}");
    assert_eq!(json["errors"], serde_json::json!({}));
}

/// `--restart-hub-at` kills the spawned hub (SIGKILL) mid-run and starts it again on the same store and
/// port: every subscriber reconnects and resumes, and every message the hub accepted, before or after,
/// reaches every subscriber (those refused while it was down are not expected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_restart_mid_run_loses_nothing_accepted() {
    let json = spawned_run(&["-n", "20", "-r", "50", "-d", "3s", "--restart-hub-at", "1s"]).await;
    let (deliveries, resume) = (&json["deliveries"], &json["resume"]);
    assert_eq!(deliveries["lost"], 0, "{deliveries}");
    assert_eq!(deliveries["duplicates"], 0, "{deliveries}");
    assert_eq!(deliveries["expected"], json["messages"]["accepted"].as_u64().unwrap() * 20, "{deliveries}");
    assert!(json["messages"]["accepted"].as_u64().unwrap() > 50, "{}", json["messages"]);
    let restart = &resume["restart"];
    assert!((1.0..1.5).contains(&restart["at_s"].as_f64().unwrap()), "{restart}");
    assert!(restart["outage_ms"].as_f64().unwrap() > 0.0, "{restart}");
    assert_eq!(resume["reconnects"], 20, "every subscriber once: {resume}");
    assert!(resume["reconnect_ms"]["max"].as_f64().unwrap() >= 1.0, "{resume}");
    assert_eq!(resume["resume_failed"], 0, "{resume}");
    assert_eq!(resume["churn_pct_per_s"], 0.0, "{resume}");
}

/// Ctrl-C during a run (here 60 s long, interrupted after about 2 s): the bench says what it benches
/// before it starts, stops, prints the summary of the part that ran (marked interrupted, with its
/// length), writes the report it was asked for and says where, and exits 130. The report records the
/// command line, secrets masked, and the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_summarizes_the_partial_run_and_writes_the_report() {
    use tokio::io::AsyncBufReadExt;
    let hub = crate::util::TestHub::start().await;
    let url = hub.http_url("");
    let url = url.trim_end_matches('/').to_owned();
    let secret = hub.config.jwt_secret().expect("ephemeral hubs use HS256").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("run.html");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"))
        .args(["bench", "fanout", "--url", &url, "--jwt-secret", &secret, "--api-key", hub.api_key()])
        .args(["-n", "5", "-r", "20", "-d", "60s", "--warmup", "0s", "--json", "--report", page.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let start = stderr.next_line().await.unwrap().expect("a line before the run starts");
    assert_eq!(
        start,
        format!(
            "bench fanout → {url}: 5 subscribers, 20 msg/s for 60.0 s, payload 100 B, report to {} \
             (Ctrl-C stops it and prints what ran)",
            page.display()
        )
    );
    // Long enough to connect and publish a few dozen messages.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGINT) }, 0);
    let mut rest = Vec::new();
    while let Some(line) = stderr.next_line().await.unwrap() {
        rest.push(line);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("the bench ends soon after Ctrl-C")
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{rest:?}");
    assert_eq!(
        rest,
        [
            "interrupted: stopping the run and summarizing what ran (Ctrl-C again to quit at once)".to_owned(),
            format!("report written to {}", page.display())
        ]
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the partial summary");
    assert_eq!(summary["interrupted"], true);
    let wall = summary["bench"]["wall_s"].as_f64().unwrap();
    assert!((1.5..15.0).contains(&wall), "{wall}");
    let sent = summary["messages"]["scheduled"].as_u64().unwrap();
    assert!((1..=100).contains(&sent), "{sent} of 1200 sent in about 2 s");
    assert_eq!(summary["deliveries"]["expected"], sent * 5, "{summary:#}");
    assert_eq!(summary["deliveries"]["lost"], 0, "{summary:#}");
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"));
    let command = summary["command"].as_str().unwrap();
    assert!(
        command.contains(" bench fanout --url ") && command.contains(" --jwt-secret *** --api-key *** "),
        "{command}"
    );
    assert!(!command.contains(&secret) && !command.contains(hub.api_key()), "{command}");
    let report = std::fs::read_to_string(&page).unwrap();
    assert!(report.contains("Interrupted after"), "no interrupted mark in the report");
    assert!(report.contains(&format!("rtctl {}: <code>", env!("CARGO_PKG_VERSION"))), "no version in the report");
    assert!(report.contains("bench fanout --url") && !report.contains(&secret), "no command line in the report");
    hub.stop().await;
}

/// Warm-up messages are left out of the publisher lag, as out of every other figure: 20 measured
/// messages after 20 of warm-up give 20 lag samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_is_left_out_of_the_publisher_lag() {
    let url = fake_hub(Fault::None).await;
    let argv = ["bench", "fanout", "--url", &url, "-n", "2", "-r", "40", "--messages", "20", "--warmup", "500ms"];
    let args = Cli::parse_from(argv.iter().chain(&["--jwt-secret", "test-secret", "--api-key", "test-key", "-q"])).args;
    let target = Target::new(&url, "test-secret".into(), "test-key".into()).await.unwrap();
    let s = rtctl::bench::run(&args.config().unwrap(), &target).await.unwrap();
    assert_eq!((s.messages.warmup, s.messages.scheduled), (20, 20));
    assert_eq!(s.publisher_lag_ms.count, 20);
    assert_eq!(s.latency_ms.count, 40);
}
