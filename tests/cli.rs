//! The `rtctl` binary's client commands (`token`, `connect`, `notify`, `status`, `completions`) run
//! against a hub started in-process on port 0, in a temp directory so no stray rtctl.toml is read.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::util::TestHub;

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Longest any step of these tests waits for the binary.
const STEP: Duration = Duration::from_secs(15);

/// The binary in `cwd` (an empty temp dir) with no `RTCTL_*` setting from the test's environment.
fn rtctl_alone(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rtctl"));
    command.current_dir(cwd).env("NO_COLOR", "1").env("XDG_STATE_HOME", cwd).kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RTCTL_") {
            command.env_remove(name);
        }
    }
    // The tests assert exact stderr, which a developer's RUST_LOG would add to.
    command.env_remove("RUST_LOG");
    command
}

/// The binary, pointed at `hub` through RTCTL_URL (which `--url` overrides) and the env, in an empty temp dir.
pub(crate) fn rtctl(hub: &TestHub, cwd: &Path) -> Command {
    let mut command = rtctl_alone(cwd);
    command
        .env("RTCTL_JWT_SECRET", hub.config.jwt_secret().unwrap())
        .env("RTCTL_API_KEY", hub.config.api_key.expose())
        .env("RTCTL_URL", hub.http_url(""));
    command
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Runs to completion; returns exit code, stdout, stderr.
pub(crate) async fn output(mut command: Command) -> (i32, String, String) {
    command.stdin(Stdio::null());
    let out = tokio::time::timeout(STEP, command.output()).await.expect("rtctl finished in time").unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// Runs to completion with `input` piped to stdin; returns exit code, stdout, stderr.
async fn output_with_stdin(mut command: Command, input: impl AsRef<[u8]>) -> (i32, String, String) {
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_ref()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(STEP, child.wait_with_output()).await.expect("rtctl finished in time").unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// A running `rtctl connect` with piped stdin and stdout.
struct Client {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Client {
    fn spawn(mut command: Command) -> Self {
        // Its stderr (`connected to …`, `reconnecting in …`) would land in the test's output.
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// Reads JSON lines until one has this `type`; returns it.
    async fn until(&mut self, kind: &str) -> Value {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                if value["type"] == kind {
                    return value;
                }
            }
            panic!("stdout ended before a `{kind}` frame");
        };
        tokio::time::timeout(STEP, read).await.unwrap_or_else(|_| panic!("no `{kind}` frame in time"))
    }

    async fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Closes stdin (which ends the session) and returns the exit code.
    async fn finish(mut self) -> i32 {
        drop(self.child.stdin.take());
        self.exit_code().await
    }

    async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(STEP, self.child.wait()).await.expect("rtctl exited in time").unwrap();
        status.code().unwrap_or(-1)
    }
}

/// A minted token inspects as valid; an expired one, a wrong secret and a tampered one exit 1 saying why;
/// RS256 tokens verify with the fixture's public key.
#[tokio::test]
async fn token_mint_and_inspect_round_trip() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut mint = rtctl(&hub, dir.path());
    mint.args(["token", "jwt", "--user-id", "7", "--org", "acme", "--ttl", "1h"]);
    let (code, token, _) = output(mint).await;
    assert_eq!(code, 0);
    let token = token.trim().to_owned();

    let mut inspect = rtctl(&hub, dir.path());
    inspect.args(["token", "inspect", &token]);
    let (code, out, _) = output(inspect).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("expires in 59m") || out.contains("expires in 1h"), "{out}");
    assert!(out.contains("\"acme\""), "{out}");

    let identity =
        rtctl::auth::Identity { user_id: "7".into(), is_staff: false, orgs: vec![], name: None, email: None };
    let mut claims = rtctl::auth::claims_for(&identity, Duration::from_secs(60));
    claims.exp -= 240;
    let secret = rtctl::auth::SigningKey::Hs256(hub.config.jwt_secret().unwrap().to_owned());
    let expired = rtctl::auth::mint(&claims, &secret).unwrap();
    let mut inspect = rtctl(&hub, dir.path());
    inspect.args(["token", "inspect", &expired]);
    let (code, out, err) = output(inspect).await;
    assert_eq!(code, 1);
    assert!(out.contains("expired 3m ago"), "{out}");
    assert!(err.contains("token expired 3m ago"), "{err}");

    let mut inspect = rtctl(&hub, dir.path());
    inspect.args(["token", "inspect", "--jwt-secret", "another-secret-0123456789", &token]);
    let (code, _, err) = output(inspect).await;
    assert_eq!(code, 1);
    assert!(err.contains("bad signature") || err.contains("invalid"), "{err}");

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut mint = rtctl(&hub, dir.path());
    mint.args(["token", "jwt", "--user-id", "9", "--alg", "RS256", "--private-key"]);
    mint.arg(fixtures.join("rs256-private.pem"));
    let (code, rs256, err) = output(mint).await;
    assert_eq!(code, 0, "{err}");
    let mut inspect = rtctl(&hub, dir.path());
    inspect.args(["token", "inspect", "--json", "--public-key"]).arg(fixtures.join("rs256-public.pem"));
    inspect.arg(rs256.trim());
    let (code, out, _) = output(inspect).await;
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["header"]["alg"], "RS256");
    assert_eq!(report["valid"], true);
    assert_eq!(report["claims"]["sub"], "9");
}

/// A token two seconds past its exp inspects as expired, not valid, and exits 1 (the hub has no leeway
/// either, see `auth::a_token_seconds_past_its_exp_is_refused`).
#[tokio::test]
async fn inspect_finds_a_token_expired_from_the_second_after_its_exp() {
    let dir = TempDir::new().unwrap();
    let secret = "inspect-secret-0123456789";
    let identity =
        rtctl::auth::Identity { user_id: "7".into(), is_staff: false, orgs: vec![], name: None, email: None };
    let mut claims = rtctl::auth::claims_for(&identity, Duration::from_secs(60));
    claims.exp = unix_now() - 2;
    let token = rtctl::auth::mint(&claims, &rtctl::auth::SigningKey::Hs256(secret.into())).unwrap();
    let mut inspect = rtctl_alone(dir.path());
    inspect.args(["token", "inspect", "--jwt-secret", secret, &token]);
    let before = unix_now();
    let (code, out, err) = output(inspect).await;
    // The binary reads the clock between `before` and now: 2 s past exp, or more if a second turned.
    let agos: Vec<u64> = (before - claims.exp..=unix_now() - claims.exp).collect();
    assert_eq!(code, 1, "{out}");
    assert!(agos.iter().any(|ago| out.contains(&format!(" (expired {ago}s ago)\n"))), "{agos:?}: {out}");
    assert!(out.ends_with("\nvalid    no: token expired\n"), "{out}");
    assert!(agos.iter().any(|ago| err == format!("rtctl: token expired {ago}s ago\n")), "{agos:?}: {err}");
}

/// `--alg` without `--private-key` is a usage error (exit 2) naming the missing flag, as `--private-key`
/// without `--alg` is; no token is printed.
#[tokio::test]
async fn alg_without_a_private_key_is_a_usage_error() {
    let dir = TempDir::new().unwrap();
    let mut mint = rtctl_alone(dir.path());
    mint.args(["token", "jwt", "--user-id", "7", "--alg", "RS256", "--jwt-secret", "token-secret-0123456789"]);
    let (code, out, err) = output(mint).await;
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(
        err.starts_with("error: the following required arguments were not provided:\n  --private-key <PEM_FILE>\n"),
        "{err}"
    );
}

/// A private key that does not fit `--alg` is named with what it is instead: the other kind (and the
/// algorithm it signs), a public key, an EC key on another curve, or one in SEC1 form.
#[tokio::test]
async fn a_private_key_of_the_wrong_kind_is_named() {
    let dir = TempDir::new().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let cases = [
        (
            "rs256-private.pem",
            "ES256",
            "not an EC P-256 private key in PEM: it is an RSA private key, which signs RS256",
        ),
        (
            "es256-private.pem",
            "RS256",
            "not an RSA private key in PEM: it is an EC P-256 private key, which signs ES256",
        ),
        ("es256-public.pem", "ES256", "not an EC P-256 private key in PEM: it is a public key"),
        (
            "p384-private.pem",
            "ES256",
            "not an EC P-256 private key in PEM: it is an EC private key on another curve (ES256 needs P-256)",
        ),
        (
            "es256-private-sec1.pem",
            "ES256",
            "not an EC P-256 private key in PEM: it is an EC private key in SEC1 form, and ES256 takes PKCS#8 \
             (`openssl pkcs8 -topk8 -nocrypt`)",
        ),
    ];
    for (file, alg, why) in cases {
        let key = fixtures.join(file);
        let mut mint = rtctl_alone(dir.path());
        mint.args(["token", "jwt", "--user-id", "7", "--alg", alg, "--private-key"]).arg(&key);
        let (code, out, err) = output(mint).await;
        assert_eq!((code, out.as_str()), (1, ""), "{file}: {err}");
        assert_eq!(err, format!("rtctl: invalid --private-key {}: {why}\n", key.display()));
    }
}

/// With no JWT secret (or API key), the error names the config file that was looked at: one `--config`
/// named that does not exist, one without `jwt_secret`, or the default that the first `rtctl serve` creates.
#[tokio::test]
async fn a_missing_secret_names_the_config_file() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nowhere/x.toml");
    let mut mint = rtctl_alone(dir.path());
    mint.args(["token", "jwt", "--user-id", "7", "--config"]).arg(&missing);
    let (code, _, err) = output(mint).await;
    assert_eq!(code, 1);
    let expected = format!(
        "rtctl: no JWT secret: config file {} does not exist; point --config at the one `rtctl serve` created, \
         or pass --jwt-secret / RTCTL_JWT_SECRET\n",
        missing.display()
    );
    assert_eq!(err, expected);
    let mut notify = rtctl_alone(dir.path());
    notify.args(["notify", "--user-id", "7", "--title", "Hi", "--message", "Hello", "--config"]).arg(&missing);
    let (code, _, err) = output(notify).await;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        expected.replace("JWT secret", "API key").replace("jwt-secret / RTCTL_JWT_SECRET", "api-key / RTCTL_API_KEY")
    );

    std::fs::write(dir.path().join("hub.toml"), "url = \"http://127.0.0.1:1\"\n").unwrap();
    let mut mint = rtctl_alone(dir.path());
    mint.args(["token", "jwt", "--user-id", "7", "--config", "hub.toml"]);
    let (code, _, err) = output(mint).await;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "rtctl: no JWT secret: config file hub.toml has no jwt_secret; pass --jwt-secret / RTCTL_JWT_SECRET\n"
    );

    let mut mint = rtctl_alone(dir.path());
    mint.args(["token", "jwt", "--user-id", "7"]);
    let (code, _, err) = output(mint).await;
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "rtctl: no JWT secret: no rtctl.toml here; run rtctl in the directory where the hub runs, point --config (or \
         RTCTL_CONFIG) at its rtctl.toml, or pass --jwt-secret / RTCTL_JWT_SECRET\n"
    );
}

/// `rtctl notify` stores a notification that a connected client receives, and prints its id.
#[tokio::test]
async fn notify_reaches_a_connected_client() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "notifications", "--user-id", "7", "--until", "notification"]);
    let mut client = Client::spawn(connect);
    client.until("connection_established").await;

    let mut notify = rtctl(&hub, dir.path());
    notify.args(["notify", "--user-id", "7", "--title", "Test", "--message", "Hello World", "--data", r#"{"k":1}"#]);
    let (code, out, err) = output(notify).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("created notification ") && out.contains("for user 7"), "{out}");

    let pushed = client.until("notification").await;
    assert_eq!(pushed["notification"]["title"], "Test");
    assert_eq!(pushed["notification"]["message"], "Hello World");
    assert_eq!(pushed["notification"]["data"]["k"], 1);
    assert_eq!(client.exit_code().await, 0);
}

/// `--count` sends a numbered series and `--json` prints every created id; HTTP errors are one line
/// naming the status and the hub's message, with a non-zero exit.
#[tokio::test]
async fn notify_series_and_http_errors() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut notify = rtctl(&hub, dir.path());
    notify.args(["notify", "--user-id", "1", "--user-id", "2", "--title", "T", "--message", "m", "--count", "2"]);
    notify.arg("--json");
    let (code, out, _) = output(notify).await;
    assert_eq!(code, 0);
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["notifications"].as_array().unwrap().len(), 4);

    let mut notify = rtctl(&hub, dir.path());
    notify.args(["notify", "--user-id", "1", "--title", "T", "--message", "m", "--api-key", "wrong-key-0123456789"]);
    let (code, _, err) = output(notify).await;
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "rtctl: cannot send the notification: HTTP 401 unauthorized: invalid API key");

    let mut event = rtctl(&hub, dir.path());
    event.args(["event", "--org", "bad org!", "--type", "x"]);
    let (code, _, err) = output(event).await;
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 400"), "{err}");
}

/// `-x` sends messages after connecting (JSON and shorthand) and `--until` ends the session with 0.
#[tokio::test]
async fn scripted_session_with_execute_and_until() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "events", "acme", "--user-id", "3"]);
    connect.args(["-x", r#"{"type":"ping","timestamp":"a"}"#, "-x", "ping timestamp=2", "--until", "pong"]);
    let (code, out, err) = output(connect).await;
    assert_eq!(code, 0, "{err}");
    let frames: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(frames[0]["type"], "connection_established");
    assert_eq!(frames[0]["org_id"], "acme");
    assert_eq!(frames[1], serde_json::json!({"type":"pong","timestamp":"a"}));
}

/// With stdin piped every line is sent, every frame comes out as one JSON line, and the end of stdin
/// closes normally.
#[tokio::test]
async fn stdin_pipe_mode() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "--user-id", "7"]);
    let mut client = Client::spawn(connect);
    client.until("connection_established").await;
    client.send("{\"type\": \"ping\", \"timestamp\": {\"n\": 1}}").await;
    assert_eq!(client.until("pong").await["timestamp"]["n"], 1);
    client.send("mark_read notification_id=12345").await;
    let error = client.until("error").await;
    assert_eq!(error["code"], "not_found");
    assert_eq!(client.finish().await, 0);
}

/// In a pipe each line stands alone: one with unbalanced braces, or one that is not UTF-8, gets its
/// one-line error and the lines after it still go out; the session ends normally but exits 1, as lines
/// of the script were not sent.
#[tokio::test]
async fn a_bad_piped_line_does_not_swallow_the_lines_after_it() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "notifications", "--user-id", "7"]);
    let (code, out, err) =
        output_with_stdin(connect, b"{bad json\nping timestamp=9\n\xffping\n{\"type\":\"ping\",\"timestamp\":10}\n")
            .await;
    assert_eq!(
        out,
        concat!(
            r#"{"message":"Connected to notifications","type":"connection_established","unread_count":0,"user_id":"7"}"#,
            "\n",
            r#"{"timestamp":9,"type":"pong"}"#,
            "\n",
            r#"{"timestamp":10,"type":"pong"}"#,
            "\n",
        )
    );
    assert_eq!(
        err,
        format!(
            "rtctl: connected to ws://{}/ws/notifications/\n\
             rtctl: stdin line 1: not valid JSON (key must be a string at line 1 column 2); /raw sends it anyway\n\
             rtctl: stdin line 3: not UTF-8 text; not sent\n\
             rtctl: closed: 1000 (normal close)\n\
             rtctl: 2 input lines were not sent\n",
            hub.addr
        )
    );
    assert_eq!(code, 1);
}

/// `--raw` writes each frame's text exactly as the hub sent it (its key order, not re-sorted) when stdout
/// is not a terminal.
#[tokio::test]
async fn raw_frames_are_written_as_they_came() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "--user-id", "7", "--raw", "-x", "ping timestamp=1", "--until", "pong"]);
    let (code, out, err) = output(connect).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        concat!(
            r#"{"type":"connection_established","message":"Connected to notifications","user_id":"7","unread_count":0}"#,
            "\n",
            // The hub builds replies as JSON values, whose keys are sorted on the wire.
            r#"{"timestamp":1,"type":"pong"}"#,
            "\n",
        )
    );
}

/// A token in a URL never reaches the output: the status lines show `token=***` and keep the rest.
#[tokio::test]
async fn tokens_in_a_url_are_never_printed() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let jwt = hub.jwt("7");
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", &format!("ws://{}/ws/notifications/?token={jwt}", hub.addr), "--wait", "0.5"]);
    let (code, out, err) = output(connect).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(r#"{"message":"Connected to notifications","#), "{out}");
    assert_eq!(
        err,
        format!(
            "rtctl: connected to ws://{}/ws/notifications/?token=***\nrtctl: closed: 1000 (normal close)\n",
            hub.addr
        )
    );

    // Nothing listens on the discard port (a port just released could be taken by a parallel test's
    // hub): the first attempt fails, naming the URL.
    let closed = "127.0.0.1:9";
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", &format!("ws://{closed}/ws/notifications/?v=1&token=wst_not-for-output"), "--wait", "5"]);
    let (code, _, err) = output(connect).await;
    assert_eq!(code, 1, "{err}");
    let line = format!("rtctl: cannot connect to ws://{closed}/ws/notifications/?v=1&token=***: ");
    assert!(err.starts_with(&line) && err.lines().count() == 1 && !err.contains("not-for-output"), "{err}");

    // A mistyped target is echoed in its error with the token masked too.
    let cases = [
        (vec!["http://h/ws/?token=wst_secret"], "rtctl: unknown target `http://h/ws/?token=***`: expected"),
        (vec!["ws://h/ws/?token=wst_secret", "extra"], "rtctl: unexpected `extra` after `ws://h/ws/?token=***`\n"),
    ];
    for (args, expected) in cases {
        let mut connect = rtctl(&hub, dir.path());
        connect.arg("connect").args(&args);
        let (code, _, err) = output(connect).await;
        assert_eq!(code, 2, "{err}");
        assert!(err.starts_with(expected) && !err.contains("secret"), "{err}");
    }
}

/// An empty `-x` is a usage error that says so, before anything connects.
#[tokio::test]
async fn an_empty_execute_is_a_usage_error() {
    let dir = TempDir::new().unwrap();
    for empty in ["", "  "] {
        // No hub: nothing may connect (a closed port would be exit 1).
        let mut connect = rtctl_alone(dir.path());
        connect.args(["connect", "--url", "http://127.0.0.1:9", "--jwt-secret", "a-secret-of-16-chars"]);
        connect.args(["--user-id", "7", "-x", empty]);
        let (code, out, err) = output(connect).await;
        assert_eq!((code, out.as_str()), (2, ""));
        assert_eq!(err, "rtctl: -x needs a message (JSON or TYPE key=value), not an empty string\n");
    }
}

/// `--wait` ends the session on time while stdin is a pipe that stays open and says nothing.
#[tokio::test]
async fn wait_ends_the_session_while_stdin_stays_open() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "--user-id", "7", "--wait", "0.5"]);
    let mut client = Client::spawn(connect);
    client.until("connection_established").await;
    // The test holds stdin open until rtctl has exited: the reader must not keep it alive.
    assert_eq!(client.exit_code().await, 0);
}

/// After the hub restarts on the same port the client reconnects (1001 → backoff) and works again.
#[tokio::test]
async fn reconnects_after_a_hub_restart() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "--user-id", "7"]);
    let mut client = Client::spawn(connect);
    client.until("connection_established").await;

    let hub = hub.restart().await;
    client.until("connection_established").await;
    client.send(r#"{"type":"ping","timestamp":"after"}"#).await;
    assert_eq!(client.until("pong").await["timestamp"], "after");
    assert_eq!(client.finish().await, 0);
    drop(hub);
}

/// `connect events ORG` keeps the last stream position and resumes from it after the hub restarts:
/// the events published meanwhile arrive once each, in order.
#[tokio::test]
async fn connect_resumes_an_event_stream_after_a_restart() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "--user-id", "7", "events", "acme"]);
    let mut client = Client::spawn(connect);
    client.until("connection_established").await;
    let body = serde_json::json!({"event_type": "tick"});
    assert_eq!(hub.post_api("/api/v1/orgs/acme/events", &body).await.status(), 202);
    assert_eq!(client.until("event").await["seq"], 1);
    let hub = hub.down().await;
    let hub = hub.up().await;
    for _ in 0..2 {
        assert_eq!(hub.post_api("/api/v1/orgs/acme/events", &body).await.status(), 202);
    }
    // Back before or after the two events (the backoff decides): either way both arrive, once.
    client.until("connection_established").await;
    assert_eq!(client.until("event").await["seq"], 2);
    assert_eq!(client.until("event").await["seq"], 3);
    assert_eq!(client.finish().await, 0);
    drop(hub);
}

/// An entry typed while the hub is away is queued and sent once the session is back, even though stdin
/// ended meanwhile (exit 0); stdin ending while reconnecting with nothing queued exits 4, not 0.
#[tokio::test]
async fn the_end_of_input_while_reconnecting_keeps_what_was_queued() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "--user-id", "7"]);
    let mut client = Client::spawn(connect);
    client.until("connection_established").await;
    let hub = hub.down().await;
    // The client reads the hub's 1001 within milliseconds; an entry written before that would go out on
    // the dying connection, not into the queue this test is about.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.send(r#"{"type":"ping","timestamp":"queued"}"#).await;
    drop(client.child.stdin.take());
    // Past the first backoff (at most 0.5 s): the client has failed to reconnect at least once.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let hub = hub.up().await;
    client.until("connection_established").await;
    assert_eq!(client.until("pong").await["timestamp"], "queued");
    assert_eq!(client.exit_code().await, 0);

    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "--user-id", "7"]);
    let mut client = Client::spawn(connect);
    client.until("connection_established").await;
    let _hub = hub.down().await;
    drop(client.child.stdin.take());
    assert_eq!(client.exit_code().await, 4);
}

/// `notify pending-user` and `notify order` reach a connected admin dashboard as `new_user` and
/// `order_update`; `token ws` prints a single-use ws token that opens a session once.
#[tokio::test]
async fn dashboard_publishing_and_ws_tokens() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "dashboard", "--user-id", "1", "--staff", "--until", "order_update"]);
    let mut admin = Client::spawn(connect);
    admin.until("connection_established").await;

    let mut register = rtctl(&hub, dir.path());
    register.args(["notify", "pending-user", "--user-id", "42", "--email", "ada@example.com", "--name", "Ada"]);
    let (code, out, err) = output(register).await;
    assert_eq!((code, out.trim()), (0, "registered pending user 42"), "{err}");
    let new_user = admin.until("new_user").await;
    assert_eq!(new_user["user"]["user_id"], "42");
    assert_eq!(new_user["user"]["email"], "ada@example.com");
    assert_eq!(new_user["user"]["status"], "pending");

    let mut order = rtctl(&hub, dir.path());
    order.args(["notify", "order", "--order-id", "o-9", "--status", "shipped", "--data", r#"{"n":2}"#]);
    let (code, _, err) = output(order).await;
    assert_eq!(code, 0, "{err}");
    let update = admin.until("order_update").await;
    assert_eq!(
        crate::util::unpositioned(update),
        serde_json::json!({"type":"order_update","order_id":"o-9","status":"shipped","data":{"n":2}})
    );
    assert_eq!(admin.exit_code().await, 0);

    let mut mint = rtctl(&hub, dir.path());
    mint.args(["token", "ws", "--user-id", "7"]);
    let (code, out, err) = output(mint).await;
    assert_eq!(code, 0, "{err}");
    let ws_token = out.trim().to_owned();
    assert!(ws_token.starts_with("wst_"), "{out}");
    for expected in [0, 3] {
        let mut connect = rtctl(&hub, dir.path());
        connect.args(["connect", "--token", &ws_token, "--until", "connection_established"]);
        let (code, out, err) = output(connect).await;
        assert_eq!(code, expected, "use of the ws token: {out} {err}");
    }
}

/// A refused handshake or a 4001 close exits 3; a lost connection with --no-reconnect exits 4.
#[tokio::test]
async fn exit_codes_for_refused_and_lost() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "--token", "not-a-token", "--wait", "5"]);
    let (code, _, err) = output(connect).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("4001"), "{err}");

    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "events", "other", "--token"]);
    let jwt = rtctl::auth::mint(
        &rtctl::auth::claims_for(
            &rtctl::auth::Identity { user_id: "1".into(), is_staff: false, orgs: vec![], name: None, email: None },
            Duration::from_secs(60),
        ),
        &rtctl::auth::SigningKey::Hs256(hub.config.jwt_secret().unwrap().to_owned()),
    )
    .unwrap();
    connect.args([jwt.as_str(), "--wait", "5"]);
    let (code, _, err) = output(connect).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("4003") && err.contains("forbidden"), "{err}");

    let url = format!("ws://{}/ws/nowhere/", hub.addr);
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", &url, "--wait", "5"]);
    let (code, _, err) = output(connect).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("HTTP 404"), "{err}");

    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "--user-id", "7", "--no-reconnect", "--until", "chat_message"]);
    let mut client = Client::spawn(connect);
    client.until("connection_established").await;
    hub.stop().await;
    assert_eq!(client.exit_code().await, 4);
}

/// Piped frames beyond the hub's rate limit: each refusal comes out as an error line, and the hub's 4029
/// close decides the exit code (4 with --no-reconnect) even though the end of input closed too.
#[tokio::test]
async fn a_piped_flood_closed_with_4029_exits_4() {
    let hub = TestHub::with_message_rate(1, 1).await;
    let dir = TempDir::new().unwrap();
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "--user-id", "7", "--no-reconnect"]);
    connect.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = connect.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Far more than the 1 + 11 frames the limit needs, so that a loaded machine (a second passing
    // refills the budget and forgives a refusal) still ends in 4029.
    let pings: String = (1..=40).map(|n| format!("{{\"type\":\"ping\",\"timestamp\":{n}}}\n")).collect();
    stdin.write_all(pings.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(STEP, child.wait_with_output()).await.expect("rtctl finished in time").unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(stderr.contains("closed by the hub: 4029 \"rate limit exceeded repeatedly\""), "{stderr}");
    // Ten when the frames arrive within a second (lifecycle tests pin the exact sequence in-process).
    let refusals = stdout.lines().filter(|line| line.contains("\"rate_limited\"")).count();
    assert!(refusals >= 10, "{refusals} refusals: {stdout}");
}

/// The most verbose logging (`-vv`, or `RUST_LOG=trace`) of a connect shows tungstenite's traces but
/// never the JWT or ws token in the handshake request's query string.
#[tokio::test]
async fn verbose_logs_carry_no_token() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let runs: [(&[&str], Option<&str>); 3] = [
        (&["-vv", "connect", "--user-id", "7", "--wait", "0.3"], None),
        (&["-vv", "connect", "--user-id", "7", "--ws-token", "--wait", "0.3"], None),
        (&["connect", "--user-id", "7", "--wait", "0.3"], Some("trace")),
    ];
    for (args, rust_log) in runs {
        let mut connect = rtctl(&hub, dir.path());
        connect.args(args).env_remove("RUST_LOG");
        if let Some(level) = rust_log {
            connect.env("RUST_LOG", level);
        }
        let (code, out, err) = output(connect).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("connection_established"), "{args:?}: {out}");
        assert!(err.contains("TRACE tungstenite"), "{args:?}: tracing is on: {err}");
        for secret in ["?token=", "eyJ", "wst_"] {
            assert!(!err.contains(secret), "{args:?}: `{secret}` in the log: {err}");
        }
    }
    // The cap on tungstenite's handshake traces does not raise it at the default level.
    let mut connect = rtctl(&hub, dir.path());
    connect.args(["connect", "--user-id", "7", "--wait", "0.3"]).env_remove("RUST_LOG");
    let (code, _, err) = output(connect).await;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("DEBUG") && !err.contains("TRACE"), "{err}");
}

/// `status` shows health, readiness and stats; an unreachable hub is one line and exit 1.
#[tokio::test]
async fn status_table_json_and_unreachable() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut status = rtctl(&hub, dir.path());
    status.args(["status", "--json"]);
    let (code, out, _) = output(status).await;
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["healthz"]["status"], "ok");
    assert_eq!(report["readyz"]["status"], "ok");
    assert_eq!(report["stats"]["store"], crate::util::store_name());

    let mut status = rtctl(&hub, dir.path());
    status.arg("status");
    let (code, out, _) = output(status).await;
    assert_eq!(code, 0);
    assert!(out.contains("health      ok") && out.contains("connections"), "{out}");

    let mut status = rtctl(&hub, dir.path());
    status.args(["status", "--url", "http://127.0.0.1:1"]);
    let (code, _, err) = output(status).await;
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach the hub at http://127.0.0.1:1/healthz"), "{err}");

    // Credentials in the URL are never shown, in the table or in the error.
    let with_password = hub.http_url("").replace("http://", "http://user:pw-secret@");
    let mut status = rtctl(&hub, dir.path());
    status.args(["status", "--url", &with_password]);
    let (code, out, _) = output(status).await;
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("hub         http://***@{}", hub.addr)) && !out.contains("pw-secret"), "{out}");
    let mut status = rtctl(&hub, dir.path());
    status.args(["status", "--url", "http://user:pw-secret@127.0.0.1:1"]);
    let (code, _, err) = output(status).await;
    assert_eq!(code, 1);
    // (reqwest takes the credentials out of the URL it names; the redaction is for the others.)
    assert!(err.contains("127.0.0.1:1/healthz") && !err.contains("pw-secret"), "{err}");
}

/// `status --watch` into a pipe writes one table per second, one after the other, without the
/// terminal's clear-screen codes, and ends with exit 0 on Ctrl-C (SIGINT).
#[tokio::test]
async fn status_watch_into_a_pipe() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().unwrap();
    let mut status = rtctl(&hub, dir.path());
    status.args(["status", "--watch"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = status.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let two_tables = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line);
            if seen.iter().filter(|line| line.starts_with("health ")).count() == 2 {
                return;
            }
        }
        panic!("stdout ended: {seen:?}");
    };
    tokio::time::timeout(STEP, two_tables).await.expect("two tables in time");
    // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped.
    unsafe { libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGINT) };
    let status = tokio::time::timeout(STEP, child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(seen.iter().all(|line| !line.contains('\x1b')), "{seen:?}");
    assert!(seen[0].starts_with("hub         http://127.0.0.1:") && seen[1] == "health      ok", "{seen:?}");

    // A reader that has seen enough (`| head -2`) ends the watch: exit 0, nothing on stderr.
    let mut status = rtctl(&hub, dir.path());
    status.args(["status", "--watch"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = status.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(STEP, lines.next_line()).await.expect("a first line in time").unwrap();
    drop(lines);
    let out = tokio::time::timeout(STEP, child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// The committed completion scripts are what the binary prints (regenerate: scripts/gen-completions.sh).
#[tokio::test]
async fn completions_do_not_drift() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (shell, file) in [
        ("bash", "rtctl.bash"),
        ("zsh", "_rtctl"),
        ("fish", "rtctl.fish"),
        ("powershell", "_rtctl.ps1"),
        ("elvish", "rtctl.elv"),
    ] {
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_rtctl")).args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let committed = std::fs::read(root.join("completions").join(file)).unwrap_or_default();
        assert!(
            committed == out.stdout,
            "completions/{file} differs from `rtctl completions {shell}`: run scripts/gen-completions.sh"
        );
    }
}

mod terminal {
    //! The interactive session, driven through a real pseudo-terminal (portable-pty) whose output is
    //! rendered by a terminal emulator (vt100): nothing needs to be installed.

    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

    use super::*;

    /// A cursor position request (DSR 6). rustyline sends one at each prompt and reads the reply for
    /// 100 ms, eating any key that comes instead, so the terminal has to answer it as tmux or xterm does.
    const CURSOR_POSITION_REQUEST: &[u8] = b"\x1b[6n";

    /// `rtctl` on a 30x120 pseudo-terminal; all it writes is fed to a vt100 emulator.
    struct Terminal {
        child: Box<dyn portable_pty::Child + Send + Sync>,
        writer: Arc<Mutex<Box<dyn Write + Send>>>,
        parser: Arc<Mutex<vt100::Parser>>,
        _master: Box<dyn MasterPty + Send>,
    }

    impl Terminal {
        /// `rtctl connect ARGS` in a terminal, in `dir` (its history goes there too), pointed at `hub`
        /// with its secret when there is one.
        fn connect(dir: &Path, hub: Option<&TestHub>, args: &[&str]) -> Self {
            let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_rtctl"));
            command.arg("connect");
            command.args(args);
            command.cwd(dir);
            command.env("TERM", "xterm-256color");
            command.env("NO_COLOR", "1");
            command.env("XDG_STATE_HOME", dir);
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("RTCTL_") || name == "RUST_LOG" {
                    command.env_remove(name);
                }
            }
            if let Some(hub) = hub {
                command.args(["--url", &hub.http_url("")]);
                command.env("RTCTL_JWT_SECRET", hub.config.jwt_secret().unwrap());
            }
            Self::spawn(command)
        }

        fn spawn(command: CommandBuilder) -> Self {
            let pair = native_pty_system()
                .openpty(PtySize { rows: 30, cols: 120, pixel_width: 0, pixel_height: 0 })
                .expect("a pseudo-terminal");
            let child = pair.slave.spawn_command(command).expect("rtctl starts on the pseudo-terminal");
            // Only the child holds the slave now, so reads see the end when it exits.
            drop(pair.slave);
            let writer = Arc::new(Mutex::new(pair.master.take_writer().unwrap()));
            let parser = Arc::new(Mutex::new(vt100::Parser::new(30.try_into().unwrap(), 120.try_into().unwrap(), 0)));
            let mut reader = pair.master.try_clone_reader().unwrap();
            let (screen, answer) = (Arc::clone(&parser), Arc::clone(&writer));
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut matched = 0;
                // Ends on EOF or EIO: the child has exited and closed the slave.
                while let Ok(n @ 1..) = reader.read(&mut buf) {
                    let mut start = 0;
                    for (i, &byte) in buf[..n].iter().enumerate() {
                        matched = match byte {
                            b if b == CURSOR_POSITION_REQUEST[matched] => matched + 1,
                            b if b == CURSOR_POSITION_REQUEST[0] => 1,
                            _ => 0,
                        };
                        if matched == CURSOR_POSITION_REQUEST.len() {
                            matched = 0;
                            let mut parser = screen.lock().unwrap();
                            parser.process(&buf[start..=i]);
                            start = i + 1;
                            let (row, col) = parser.screen().cursor_position();
                            let mut answer = answer.lock().unwrap();
                            let _ = write!(answer, "\x1b[{};{}R", row + 1, col + 1).and_then(|()| answer.flush());
                        }
                    }
                    screen.lock().unwrap().process(&buf[start..n]);
                }
            });
            Self { child, writer, parser, _master: pair.master }
        }

        fn screen(&self) -> String {
            self.parser.lock().unwrap().screen().contents()
        }

        /// Sends one key's bytes, then pauses as a person would between keys.
        async fn key(&self, bytes: &str) {
            {
                let mut writer = self.writer.lock().unwrap();
                writer.write_all(bytes.as_bytes()).unwrap();
                writer.flush().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        /// Types `text` a key at a time, as a person does. rustyline 17 with an external printer leaves
        /// keys that arrive in one read in its buffer until the next key (its `select` does not look at
        /// the buffer), so a whole word sent at once would show only its first letter.
        async fn type_keys(&self, text: &str) {
            for c in text.chars() {
                self.key(c.encode_utf8(&mut [0; 4])).await;
            }
        }

        async fn tab(&self) {
            self.key("\t").await;
        }

        async fn enter(&self) {
            self.key("\r").await;
        }

        /// Waits until the screen shows `text`; returns the screen.
        async fn wait_for(&self, text: &str) -> String {
            self.wait_until(&format!("{text:?}"), |screen| screen.contains(text)).await
        }

        /// Waits until the screen is as `settled` wants it (`what` says how, when it never is): a frame
        /// and the prompt redrawn under it are two writes, and a screen read between them has only one.
        async fn wait_until(&self, what: &str, settled: impl Fn(&str) -> bool) -> String {
            let deadline = tokio::time::Instant::now() + STEP;
            while tokio::time::Instant::now() < deadline {
                let screen = self.screen();
                if settled(&screen) {
                    return screen;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the screen never showed {what}:\n{}", self.screen());
        }

        /// Waits until rtctl exits; returns its exit code.
        async fn wait_exit(&mut self) -> u32 {
            let deadline = tokio::time::Instant::now() + STEP;
            while tokio::time::Instant::now() < deadline {
                if let Some(status) = self.child.try_wait().unwrap() {
                    return status.exit_code();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("rtctl did not exit:\n{}", self.screen());
        }
    }

    impl Drop for Terminal {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    /// The interactive banner and status line show a token in the URL as `***`.
    #[tokio::test]
    async fn the_banner_hides_a_token_in_the_url() {
        let hub = TestHub::start().await;
        let dir = TempDir::new().unwrap();
        let url = format!("ws://{}/ws/notifications/?token={}", hub.addr, hub.jwt("7"));
        let mut term = Terminal::connect(dir.path(), None, &[&url]);
        let screen = term.wait_for("connection_established").await;
        let url = format!("ws://{}/ws/notifications/?token=***", hub.addr);
        let status: Vec<&str> = screen.lines().filter(|line| line.starts_with("* ")).collect();
        assert_eq!(
            status,
            [format!("* {url} — /help for commands, Tab completes, Ctrl-D quits"), format!("* connected to {url}")],
            "{screen}"
        );
        // Every JWT starts with the base64 of `{"`; none may be on the screen.
        assert!(!screen.contains("eyJ"), "{screen}");
        term.type_keys("/quit").await;
        term.enter().await;
        assert_eq!(term.wait_exit().await, 0, "{}", term.screen());
    }

    /// Not interactive (`--until`) but typed at a terminal: each line typed is sent, as from a pipe.
    #[tokio::test]
    async fn lines_typed_in_a_terminal_are_sent_when_not_interactive() {
        let hub = TestHub::start().await;
        let dir = TempDir::new().unwrap();
        let mut term = Terminal::connect(dir.path(), Some(&hub), &["--user-id", "7", "--until", "pong"]);
        term.wait_for("connection_established").await;
        term.type_keys("ping timestamp=6").await;
        term.enter().await;
        term.wait_for("\"timestamp\": 6,").await;
        assert_eq!(term.wait_exit().await, 0, "{}", term.screen());
    }

    /// As bash and psql have it: Ctrl-C discards a half-typed line (or a half-typed JSON entry) and the
    /// session goes on; Ctrl-C on an empty line ends it with 0. An unbalanced `{` continues under a
    /// prompt of its own; a quoted value keeps its spaces; plain text gets one line saying what a
    /// message is.
    #[tokio::test]
    async fn ctrl_c_quoting_and_multi_line_json_in_a_terminal() {
        let hub = TestHub::start().await;
        let dir = TempDir::new().unwrap();
        let mut term = Terminal::connect(dir.path(), Some(&hub), &["notifications", "--user-id", "7"]);
        term.wait_for("connection_established").await;

        term.type_keys("hello there").await;
        term.enter().await;
        term.wait_for("`hello there` is not a message: type JSON or TYPE key=value (subscribe,").await;

        term.type_keys("ping timestamp=5 note=\"two words\"").await;
        term.enter().await;
        term.wait_for("→ {\"note\":\"two words\",\"timestamp\":5,\"type\":\"ping\"}").await;

        term.type_keys("mark_re").await;
        term.wait_for("> mark_re").await;
        term.key("\x03").await;
        term.type_keys("ping timestamp=6").await;
        term.enter().await;
        let screen = term.wait_for("→ {\"timestamp\":6,\"type\":\"ping\"}").await;
        assert!(!screen.contains("mark_reping"), "Ctrl-C kept the typed text:\n{screen}");

        term.type_keys("{\"type\": \"ping\",").await;
        term.enter().await;
        term.wait_until("the continuation prompt", |screen| screen.trim_end().ends_with("…")).await;
        term.type_keys("\"timestamp\": 7}").await;
        term.enter().await;
        term.wait_for("→ {\"timestamp\":7,\"type\":\"ping\"}").await;

        // Ctrl-C in a continued entry drops all of it, its first line too.
        term.type_keys("{\"type\": \"ping\",").await;
        term.enter().await;
        term.wait_until("the continuation prompt", |screen| screen.trim_end().ends_with("…")).await;
        term.key("\x03").await;
        term.type_keys("ping timestamp=8").await;
        term.enter().await;
        term.wait_for("→ {\"timestamp\":8,\"type\":\"ping\"}").await;

        term.key("\x03").await;
        assert_eq!(term.wait_exit().await, 0, "Ctrl-C on an empty line did not end the session:\n{}", term.screen());
        let history = std::fs::read_to_string(dir.path().join("rtctl/history-notifications")).unwrap();
        assert!(history.contains("timestamp=6") && !history.contains("mark_re\n"), "{history}");
    }

    /// In a chat room, plain text is said as a `chat_message`; a known type with key=value is still
    /// that message; Ctrl-D ends the session with 0.
    #[tokio::test]
    async fn plain_text_in_a_chat_room_is_a_chat_message() {
        let hub = TestHub::start().await;
        let body = serde_json::json!({"room_id": "team", "members": ["7"]});
        let (status, room) = hub.post_json("/api/v1/chat/rooms", &[("X-API-Key", hub.api_key())], &body).await;
        assert_eq!(status, 201, "{room}");
        let dir = TempDir::new().unwrap();
        let mut term = Terminal::connect(dir.path(), Some(&hub), &["chat", "team", "--user-id", "7"]);
        term.wait_for("connection_established").await;

        term.type_keys("hello there").await;
        term.enter().await;
        term.wait_for("→ {\"message\":\"hello there\",\"type\":\"chat_message\"}").await;
        term.wait_for("\"content\": \"hello there\"").await;

        term.type_keys("chat_message message='it\\'s quoted'").await;
        term.enter().await;
        term.wait_for("\"content\": \"it's quoted\"").await;

        term.key("\x04").await;
        assert_eq!(term.wait_exit().await, 0, "Ctrl-D did not end the session:\n{}", term.screen());
    }

    /// Frames print above the prompt without eating the half-typed line, Tab completes message types,
    /// `/ping` shows a round trip, `/quit` exits 0, and the history file is written.
    #[tokio::test]
    async fn interactive_session_in_a_terminal() {
        let hub = TestHub::start().await;
        let dir = TempDir::new().unwrap();
        let mut term = Terminal::connect(dir.path(), Some(&hub), &["notifications", "--user-id", "7"]);
        term.wait_for("connection_established").await;

        term.type_keys("mark_re").await;
        term.wait_for("> mark_re").await;
        let mut notify = rtctl(&hub, dir.path());
        notify.args(["notify", "--user-id", "7", "--title", "Incoming", "--message", "while typing"]);
        assert_eq!(output(notify).await.0, 0);
        // The typed line stays whole, under the frame.
        term.wait_until("the frame above the typed line", |screen| {
            screen.contains("\"title\": \"Incoming\"") && screen.trim_end().ends_with("> mark_re")
        })
        .await;

        term.tab().await;
        term.wait_for("> mark_read").await;
        term.type_keys(" notification_id=424242").await;
        term.enter().await;
        term.wait_for("notification 424242 not found").await;

        term.type_keys("/ping").await;
        term.enter().await;
        term.wait_for("pong: round trip").await;

        term.type_keys("/quit").await;
        term.enter().await;
        assert_eq!(term.wait_exit().await, 0, "rtctl did not end cleanly on /quit:\n{}", term.screen());
        let history = std::fs::read_to_string(dir.path().join("rtctl/history-notifications")).unwrap();
        assert!(history.contains("mark_read notification_id=424242") && history.contains("/ping"), "{history}");
    }
}

/// `rtctl copy-store` moves a SQLite hub's data into an empty PostgreSQL database: a hub started on the
/// copy answers every list (notifications with their read state, pending users in registration order,
/// decisions, the activity feed, rooms with members in the order added and unread counts, history)
/// exactly as the SQLite hub did, and numbers new rows of every kind after every id SQLite gave out (a
/// deleted newest notification's included); copying again into the same database is refused and adds
/// nothing; a missing source file is named, and a source or target of the wrong kind is a usage error.
#[tokio::test]
#[ignore = "needs PostgreSQL: set RTCTL_TEST_DATABASE_URL"]
async fn copy_store_moves_a_sqlite_hub_to_postgresql() {
    use rtctl::store::test_schema::TestSchema;
    use serde_json::json;

    use crate::util::{postgres_url, request};

    let base = postgres_url().expect("RTCTL_TEST_DATABASE_URL names the PostgreSQL these tests use");
    let dir = TempDir::new().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("hub.db").display());
    let source = TestHub::start_with(|config| config.database_url = sqlite.clone()).await;
    // Registered within a millisecond or two: the pending list's order is then the order of arrival.
    for user in ["p1", "p4", "p3", "p2"] {
        let registered = source.post_api("/api/v1/admin-dashboard/users/", &json!({"user_id": user})).await;
        assert_eq!(registered.status(), 201);
    }
    let staff = format!("Bearer {}", source.staff_jwt("admin"));
    let approve = |user: &str| format!("/api/v1/admin-dashboard/users/{user}/approve/");
    assert_eq!(source.post_json(&approve("p1"), &[("authorization", &staff)], &json!({})).await.0, 200);
    // Notification 1 is p1's "Account approved"; u1 gets 2, 3 and 4, reads 3 and deletes 4, the newest.
    for title in ["one", "two", "three"] {
        source.notify("u1", title, "general").await;
    }
    let mut tab = source.notifications("u1").await;
    for (request, reply) in [
        (json!({"type": "mark_read", "notification_id": 3}), "notification_marked_read"),
        (json!({"type": "delete_notification", "notification_id": 4}), "notification_deleted"),
    ] {
        crate::util::send_json(&mut tab, &request).await;
        let frames = crate::util::recv_n(&mut tab, 2).await;
        let types = frames.iter().map(|frame| frame["type"].clone()).collect::<Vec<_>>();
        assert!(types.contains(&json!(reply)) && types.contains(&json!("unread_count")), "{frames:?}");
    }
    let room = json!({"room_id": "r1", "members": ["u2", "zed", "u1"]});
    assert_eq!(source.post_api("/api/v1/chat/rooms", &room).await.status(), 201);
    for text in ["first", "second"] {
        let auth = format!("Bearer {}", source.jwt("u1"));
        let path = "/api/v1/chat/rooms/r1/messages";
        assert_eq!(source.post_json(path, &[("authorization", &auth)], &json!({"message": text})).await.0, 201);
    }
    let (mut reader, _) = source.connect("/ws/chat/r1/", &source.jwt("u2")).await;
    let history = crate::util::recv(&mut reader).await;
    let first = history["messages"][0]["id"].clone();
    let receipt = request(&mut reader, json!({"type": "read_receipt", "message_id": first})).await;
    assert_eq!(receipt["type"], "read_receipt", "{receipt}");

    // What each hub answers, with its own tokens.
    async fn lists(hub: &TestHub) -> Vec<Value> {
        let user = |id: &str| format!("Bearer {}", hub.jwt(id));
        let staff = format!("Bearer {}", hub.staff_jwt("admin"));
        let mut answers = Vec::new();
        for (path, auth) in [
            ("/api/v1/notifications?limit=200", user("u1")),
            ("/api/v1/admin-dashboard/approvals/pending/", staff.clone()),
            ("/api/v1/admin-dashboard/approvals/recent/", staff.clone()),
            ("/api/v1/admin-dashboard/notifications/", staff.clone()),
            ("/api/v1/chat/rooms", user("u2")),
            ("/api/v1/chat/rooms/r1/messages", user("u2")),
        ] {
            let (status, body) = hub.get_json(path, &[("authorization", &auth)]).await;
            assert_eq!(status, 200, "{path}: {body}");
            answers.push(body);
        }
        answers
    }
    let before = lists(&source).await;
    drop((tab, reader));
    source.stop().await;

    let target = TestSchema::create(&base, "rtctl_test").await;
    let mut copy = rtctl_alone(dir.path());
    copy.args(["copy-store", "--from", &sqlite, "--to", &target.url()]);
    let (code, out, err) = output(copy).await;
    assert_eq!(code, 0, "{err}");
    let counts: Vec<(String, u64)> = out
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (table, rows) = line.trim().split_once(char::is_whitespace)?;
            Some((table.to_owned(), rows.trim().parse().ok()?))
        })
        .collect();
    let expected = [
        ("notifications", 3),
        ("pending_users", 4),
        ("approvals", 1),
        // Four registrations and a decision.
        ("admin_activity", 5),
        ("chat_rooms", 1),
        ("chat_members", 3),
        ("chat_messages", 2),
        ("chat_read_positions", 1),
        // The admin dashboard's stream and its log of the pushes the registrations and the decision made,
        // copied so that a dashboard resumes on the PostgreSQL hub.
        ("streams", 1),
        ("stream_events", 10),
    ];
    assert_eq!(counts, expected.map(|(table, rows)| (table.to_owned(), rows)), "{out}");
    assert!(!out.contains(&target.url()) && out.contains("***@"), "the target URL is printed redacted: {out}");

    let moved = TestHub::start_with(|config| config.database_url = target.url()).await;
    assert_eq!(lists(&moved).await, before);
    assert_eq!(
        before[1]["users"].as_array().map(|users| users.iter().map(|u| u["user_id"].clone()).collect()),
        Some(vec![json!("p4"), json!("p3"), json!("p2")])
    );
    assert_eq!(before[4]["rooms"][0]["members"], json!(["u2", "zed", "u1"]));
    // Every table with ids goes on after SQLite's: 4 was deleted but had been given out.
    assert_eq!(moved.notify("u1", "four", "general").await, 5, "new ids follow every id given out");
    let auth = format!("Bearer {}", moved.jwt("u1"));
    let (status, posted) =
        moved.post_json("/api/v1/chat/rooms/r1/messages", &[("authorization", &auth)], &json!({"message": "x"})).await;
    assert_eq!((status, &posted["id"]), (201, &json!(3)), "{posted}");
    let staff = format!("Bearer {}", moved.staff_jwt("admin"));
    assert_eq!(moved.post_json(&approve("p4"), &[("authorization", &staff)], &json!({})).await.0, 200);
    let (_, feed) = moved.get_json("/api/v1/admin-dashboard/notifications/", &[("authorization", &staff)]).await;
    assert_eq!(feed["notifications"][0]["id"], json!(6), "{feed}");

    let mut again = rtctl_alone(dir.path());
    again.args(["copy-store", "--from", &sqlite, "--to", &target.url()]);
    let (code, out, err) = output(again).await;
    let refused = "rtctl: nothing was copied: the target already holds data (table notifications): copy into an \
                   empty database or schema\n";
    assert_eq!((code, out.as_str(), err.as_str()), (1, "", refused));
    let (_, page) =
        moved.get_json("/api/v1/notifications", &[("authorization", &format!("Bearer {}", moved.jwt("u1")))]).await;
    assert_eq!(page["notifications"].as_array().map(Vec::len), Some(3), "{page}");

    // Without --from: the database_url of the rtctl.toml that `serve` would read.
    std::fs::write(dir.path().join("rtctl.toml"), format!("database_url = \"{sqlite}\"\n")).unwrap();
    let second = TestSchema::create(&base, "rtctl_test").await;
    let mut configured = rtctl_alone(dir.path());
    configured.args(["copy-store", "--to", &second.url()]);
    let (code, out, err) = output(configured).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("copied {sqlite} into postgres://")), "{out}");
    assert!(out.contains("\n  notifications                3\n"), "{out}");

    let missing = format!("sqlite://{}", dir.path().join("nowhere.db").display());
    let mut absent = rtctl_alone(dir.path());
    absent.args(["copy-store", "--from", &missing, "--to", &target.url()]);
    let (code, _, err) = output(absent).await;
    let path = dir.path().join("nowhere.db");
    assert_eq!((code, err), (1, format!("rtctl: nothing was copied: no SQLite database at {}\n", path.display())));
    assert!(!path.exists(), "the missing source was not created");

    for (from, to, error) in [
        (sqlite.as_str(), sqlite.as_str(), "the target must be a PostgreSQL database (postgres://USER@HOST/DB)"),
        (base.as_str(), base.as_str(), "the source must be a SQLite database (sqlite://PATH)"),
    ] {
        let mut wrong = rtctl_alone(dir.path());
        wrong.args(["copy-store", "--from", from, "--to", to]);
        assert_eq!(output(wrong).await, (2, String::new(), format!("rtctl: {error}\n")));
    }
}
