//! What a newcomer meets first (issue 21): the commands run beside `rtctl serve` find that hub, a
//! config file that belongs to another hub is named as the cause of a refusal, and the hub's log says
//! why it refused a connection without drowning in `status --watch`'s polling.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Longest a step waits for the binary.
const STEP: Duration = Duration::from_secs(20);

/// `rtctl` run in `dir` with no `RTCTL_*` or `RUST_LOG` from the test's environment.
fn rtctl(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rtctl"));
    command.current_dir(dir).env_remove("RUST_LOG").env("NO_COLOR", "1").env("XDG_STATE_HOME", dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RTCTL_") {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// Runs to completion; exit code, stdout, stderr.
fn run(command: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = command.output().expect("run rtctl");
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into(), String::from_utf8_lossy(&stderr).into())
}

/// An `rtctl serve` started in a directory, killed when dropped, with its log so far.
struct Hub {
    child: std::process::Child,
    log: Arc<Mutex<Vec<String>>>,
    addr: String,
}

impl Hub {
    /// `rtctl serve --bind 127.0.0.1:0 ARGS` in `dir`, once it logged its address.
    fn start(dir: &Path, args: &[&str]) -> Self {
        let mut command = rtctl(dir);
        command.args(["serve", "--bind", "127.0.0.1:0"]).args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start rtctl serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("address=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
                }
                lines.lock().expect("the log lock").push(line);
            }
        });
        let addr = rx.recv_timeout(STEP).expect("rtctl serve logged its address");
        Self { child, log, addr }
    }

    fn log(&self) -> String {
        self.log.lock().expect("the log lock").join("\n")
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid that fits");
        // SAFETY: kill has no memory preconditions; the pid is our own child, not yet waited for.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for rtctl serve") {
                return status;
            }
            assert!(started.elapsed() < STEP, "rtctl serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the hub's log has a line with every one of `parts`; returns that line.
fn logged(hub: &Hub, parts: &[&str]) -> String {
    let started = Instant::now();
    loop {
        let log = hub.log();
        if let Some(line) = log.lines().find(|line| parts.iter().all(|part| line.contains(part))) {
            return line.to_owned();
        }
        assert!(started.elapsed() < STEP, "no line with {parts:?} in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `rtctl status`, `notify` and `connect` in the directory of an `rtctl serve` that listens elsewhere
/// than the default address reach that hub through `rtctl.listen`, which is removed when the hub stops;
/// status's polling is logged at DEBUG only.
#[test]
fn commands_beside_serve_find_its_address() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut hub = Hub::start(dir.path(), &[]);
    let listen = dir.path().join("rtctl.listen");
    assert!(listen.exists(), "serve recorded where it listens");

    let (code, out, err) = run(rtctl(dir.path()).arg("status"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("hub         http://{}  node ", hub.addr)), "{out}");
    let (code, out, err) = run(rtctl(dir.path()).args(["notify", "--user-id", "7", "--title", "Hi", "--message", "M"]));
    assert_eq!((code, out.as_str(), err.as_str()), (0, "created notification 1 for user 7\n", ""));
    let (code, out, err) = run(rtctl(dir.path())
        .args(["connect", "notifications", "--user-id", "7", "--until"])
        .arg("connection_established"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"unread_count\":1"), "{out}");

    // Logged after the POST and the upgrade (INFO), so the probes before them are in the log too.
    logged(&hub, &[" INFO ", "path=\"/ws/notifications/\""]);
    let log = hub.log();
    for probe in ["/healthz", "/readyz", "/api/v1/stats"] {
        assert!(!log.contains(&format!("path=\"{probe}\"")), "{probe} polled by status is logged at INFO:\n{log}");
    }
    assert!(hub.terminate().success());
    assert!(!listen.exists(), "rtctl.listen is removed when the hub stops");
    let (code, _, err) = run(rtctl(dir.path()).args(["status", "--url", "http://127.0.0.1:1"]));
    assert_eq!(code, 1, "{err}");
}

/// A config file whose secrets are not the hub's: `status` exits 1 instead of 0, and `status`,
/// `notify`, `token ws` and `connect` each name the config file as the cause and the fix; the hub logs
/// the refused WebSocket at INFO with its reason.
#[test]
fn secrets_of_another_hub_are_named_as_the_cause() {
    let hub_dir = tempfile::tempdir().expect("a temp dir");
    let hub = Hub::start(hub_dir.path(), &[]);
    let other = tempfile::tempdir().expect("a temp dir");
    let config = format!(
        "url = \"http://{}\"\njwt_secret = \"another-hubs-secret-0123456789abcdef\"\napi_key = \"another-hubs-key\"\n",
        hub.addr
    );
    std::fs::write(other.path().join("rtctl.toml"), config).expect("write rtctl.toml");
    let hint = |setting: &str, flag: &str| {
        format!(
            "the {setting} in rtctl.toml is not the one of the hub at http://{}: run rtctl in the directory of that \
             hub's config file, point --config (or RTCTL_CONFIG) at it, or pass {flag}",
            hub.addr
        )
    };

    let (code, out, err) = run(rtctl(other.path()).arg("status"));
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        err,
        format!(
            "rtctl: cannot read the hub's stats: HTTP 401 unauthorized: invalid API key; {}\n",
            hint("api_key", "--api-key")
        )
    );
    let (code, _, err) = run(rtctl(other.path()).args(["notify", "--user-id", "7", "--title", "Hi", "--message", "M"]));
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "rtctl: cannot send the notification: HTTP 401 unauthorized: invalid API key; {}\n",
            hint("api_key", "--api-key")
        )
    );
    let (code, _, err) = run(rtctl(other.path()).args(["token", "ws", "--user-id", "7"]));
    assert_eq!(code, 1);
    assert!(err.ends_with(&format!("; {}\n", hint("jwt_secret", "--jwt-secret"))), "{err}");
    let (code, _, err) = run(rtctl(other.path()).args(["connect", "--user-id", "7", "--wait", "5"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("4001") && err.contains(&hint("jwt_secret", "--jwt-secret")), "{err}");
    let line = logged(&hub, &["connection refused"]);
    assert!(line.contains(" INFO ") && line.contains("code=4001") && line.contains("bad signature"), "{line}");

    // The same secrets given by flag are the caller's own choice: the hub's answer alone.
    let (code, _, err) =
        run(rtctl(other.path()).args(["notify", "--api-key", "x", "--user-id", "7", "--title", "a", "--message", "b"]));
    assert_eq!((code, err.contains("rtctl.toml")), (1, false), "{err}");
}

/// `--until` with a type the hub never sends, or an unknown target, is a usage error (2) with the
/// closest name, before anything connects; `--wait` takes durations; Ctrl-C before what `--until` waits
/// for exits 130, not 0.
#[test]
fn waits_are_checked_and_an_interrupted_wait_fails() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let hub = Hub::start(dir.path(), &[]);
    let (code, out, err) = run(rtctl(dir.path()).args(["connect", "--user-id", "7", "--until", "notification_list"]));
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(
        err,
        "rtctl: --until `notification_list`: the hub never sends that type; did you mean `notifications_list`?\n"
    );
    let (code, _, err) = run(rtctl(dir.path()).args(["connect", "notification", "--user-id", "7"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("rtctl: unknown target `notification`: did you mean `notifications`? "), "{err}");

    for wait in ["300ms", "0.3"] {
        let (code, out, err) = run(rtctl(dir.path()).args(["connect", "--user-id", "7", "--wait", wait]));
        assert_eq!(code, 0, "--wait {wait}: {err}");
        assert!(out.contains("connection_established"), "{out}");
    }
    let (code, _, err) = run(rtctl(dir.path()).args(["connect", "--user-id", "7", "--wait", "soon"]));
    assert_eq!(code, 2, "{err}");

    let mut connect = rtctl(dir.path());
    connect.args(["connect", "--user-id", "7", "--until", "chat_message"]);
    let mut child = connect.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start rtctl connect");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a first frame");
    assert!(first.contains("connection_established"), "{first}");
    let pid = libc::pid_t::try_from(child.id()).expect("a pid that fits");
    // SAFETY: kill has no memory preconditions; the pid is our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    // A connect that missed the Ctrl-C would wait forever: killed after STEP, it fails the test instead.
    let (done, finished) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(STEP) {
            // SAFETY: as above; at worst the pid was reaped already and the kill fails.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().expect("wait for rtctl connect");
    drop(done);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted before the session's end"), "{err}");
    drop(hub);
}

/// Usage mistakes exit 2 like clap's own, each with the fix: a mint without `--user-id` (`token ws`,
/// `connect`), a `--ttl` without a unit, a `--url` that is not the hub's HTTP URL.
#[test]
fn usage_mistakes_exit_2() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cases: [(&[&str], &str); 6] = [
        (
            &["token", "ws", "--jwt-secret", "a-secret-of-16-chars"],
            "rtctl: minting a token needs --user-id (or RTCTL_USER_ID)\n",
        ),
        (
            &["connect", "--url", "http://127.0.0.1:9", "--jwt-secret", "a-secret-of-16-chars"],
            "rtctl: minting a token needs --user-id (or RTCTL_USER_ID)\n",
        ),
        (
            &["token", "jwt", "--user-id", "7", "--ttl", "1", "--jwt-secret", "a-secret-of-16-chars"],
            "rtctl: invalid --ttl `1`: expected a duration like 20s, 5m or 1h: time unit needed, for example 1sec or 1ms\n",
        ),
        (
            &["status", "--url", "localhost:8000"],
            "rtctl: invalid --url `localhost:8000`: expected http://HOST:PORT or https://HOST; did you mean \
             http://localhost:8000?\n",
        ),
        (
            &["status", "--url", "ws://127.0.0.1:9"],
            "rtctl: invalid --url `ws://127.0.0.1:9`: expected http://HOST:PORT or https://HOST; did you mean \
             http://127.0.0.1:9?\n",
        ),
        (
            &["notify", "--url", "wss://hub.example", "--user-id", "7", "--title", "a", "--message", "b"],
            "rtctl: invalid --url `wss://hub.example`: expected http://HOST:PORT or https://HOST; did you mean \
             https://hub.example?\n",
        ),
    ];
    for (args, expected) in cases {
        let (code, out, err) = run(rtctl(dir.path()).args(args));
        assert_eq!((code, out.as_str(), err.as_str()), (2, "", expected), "{args:?}");
    }
}

/// `rtctl room` creates a room with its members (API key), posts as a member and lists a user's rooms
/// (minted JWTs), without curl; the hub's refusals come back as one line, exit 1.
#[test]
fn rooms_are_created_listed_and_posted_to() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let _hub = Hub::start(dir.path(), &[]);
    let room = |args: &[&str]| run(rtctl(dir.path()).arg("room").args(args));
    assert_eq!(
        room(&["create", "team", "--member", "7", "--member", "8", "--name", "Team chat"]),
        (0, "created room team with members 7, 8\n".into(), String::new())
    );
    assert_eq!(
        room(&["post", "team", "--user-id", "7", "hello there"]),
        (0, "posted message 1 to room team\n".into(), String::new())
    );
    assert_eq!(
        room(&["list", "--user-id", "8"]),
        (0, "team  Team chat  members 7, 8  unread 1  last: hello there\n".into(), String::new())
    );
    assert_eq!(room(&["list", "--user-id", "9"]), (0, "no rooms\n".into(), String::new()));
    let (code, _, err) = room(&["create", "team", "--member", "7"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "rtctl: cannot create the room: HTTP 409 conflict: room team exists already\n")
    );
    let (code, _, err) = room(&["post", "team", "--user-id", "9", "intruder"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("rtctl: cannot post the message: HTTP 403 "), "{err}");
    let (code, out, _) = room(&["list", "--user-id", "8", "--json"]);
    let reply: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!((code, &reply["rooms"][0]["members"]), (0, &serde_json::json!(["7", "8"])));
}

/// Every command's `--help` ends with examples; a command's own flags are not filed under "Hub";
/// `connect --help` lists the slash commands and exit codes; bash completion offers connect's targets.
#[test]
fn help_has_examples_and_the_flags_under_their_headings() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let help = |command: &str| {
        let (code, out, err) = run(rtctl(dir.path()).args([command, "--help"]));
        assert_eq!(code, 0, "{err}");
        out
    };
    for command in [
        "serve",
        "token",
        "connect",
        "notify",
        "event",
        "room",
        "status",
        "console",
        "bench",
        "copy-store",
        "completions",
        "config",
    ] {
        assert!(help(command).contains("\nExamples:\n  rtctl "), "{command} --help has no examples");
    }
    for (command, own) in [("notify", "--title"), ("status", "--watch"), ("event", "--type")] {
        let text = help(command);
        let hub = text.find("\nHub:\n").unwrap_or_else(|| panic!("{command}: no Hub heading:\n{text}"));
        let flag = text.find(&format!("  {own} ")).or_else(|| text.find(&format!(", {own}")));
        assert!(flag.is_some_and(|at| at < hub), "{command}: {own} is under Hub:\n{text}");
    }
    // A bench scenario has a help of its own: what it measures, its examples, only the flags it uses.
    let bench = help("bench");
    let (code, idle, _) = run(rtctl(dir.path()).args(["bench", "--spawn", "idle", "--help"]));
    assert_eq!(code, 0);
    assert!(idle.starts_with("Idle: N connections held open") && idle.contains("Usage: rtctl bench idle [OPTIONS]"));
    assert!(idle.contains("\nExamples:\n  rtctl bench idle ") && idle.contains("  --config <CONFIG>"), "{idle}");
    assert!(!idle.contains("--rate") && bench.contains("--rate"), "{idle}");
    let (_, fanout, _) = run(rtctl(dir.path()).args(["bench", "fanout", "-h"]));
    assert!(fanout.contains("\nExamples:\n  rtctl bench fanout ") && !fanout.contains("--room-size"), "{fanout}");
    let (_, config_check, _) = run(rtctl(dir.path()).args(["config", "check", "--help"]));
    assert!(config_check.contains("\nExamples:\n  rtctl config check"), "{config_check}");
    // `token jwt` never calls the hub: no --url or --api-key in its help; `token ws` calls it.
    let (_, jwt, _) = run(rtctl(dir.path()).args(["token", "jwt", "--help"]));
    assert!(jwt.contains("--jwt-secret <SECRET>") && !jwt.contains("--url") && !jwt.contains("--api-key"), "{jwt}");
    let (_, ws, _) = run(rtctl(dir.path()).args(["token", "ws", "--help"]));
    assert!(ws.contains("--url <URL>") && !ws.contains("--api-key"), "{ws}");
    let connect = help("connect");
    for expected in ["/reconnect", "/quit", "Exit codes:", "130  Ctrl-C"] {
        assert!(connect.contains(expected), "connect --help lacks {expected}:\n{connect}");
    }
    assert!(help("serve").contains("--jwt-secret <SECRET>") && help("token").contains("--jwt-secret <SECRET>"));
    let (_, bash, _) = run(rtctl(dir.path()).args(["completions", "bash"]));
    assert!(bash.contains(" notifications events dashboard chat\""), "no connect targets in bash completion");
}

/// Smaller stumbles: `status --config` naming a missing file says so instead of reading no key; a
/// config file that cannot be created is named without tempfile's temporary path; a raw ws:// URL
/// refused for want of a token says to add `--user-id` or `--token`.
#[test]
fn small_stumbles_are_named() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (code, _, err) = run(rtctl(dir.path()).args(["status", "--config", "/nope.toml"]));
    assert_eq!(code, 1);
    assert_eq!(err, "rtctl: config file /nope.toml does not exist; point --config (or RTCTL_CONFIG) at the hub's\n");

    let (code, _, err) =
        run(rtctl(dir.path()).args(["serve", "--bind", "127.0.0.1:0", "--config", "/proc/rtctl.toml"]));
    assert_eq!(code, 1);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("rtctl: cannot create config file /proc/rtctl.toml: "), "{err}");
    assert!(!last.contains(".tmp"), "{err}");

    let hub = Hub::start(dir.path(), &[]);
    let url = format!("ws://{}/ws/notifications/", hub.addr);
    let (code, _, err) = run(rtctl(dir.path()).args(["connect", &url, "--wait", "5s"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no token was sent: add --user-id ID to mint one from the config, or --token TOKEN"), "{err}");
}

/// `event` takes the org as `connect events ORG` does, positional, and still as `--org`.
#[test]
fn event_takes_the_org_like_connect() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let _hub = Hub::start(dir.path(), &[]);
    for args in [&["event", "acme", "--type", "a.b"][..], &["event", "--org", "acme", "--type", "a.b"]] {
        let (code, out, err) = run(rtctl(dir.path()).args(args));
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.starts_with("published a.b to org acme at "), "{out}");
    }
    let (code, _, _) = run(rtctl(dir.path()).args(["event", "--type", "a.b"]));
    assert_eq!(code, 2, "no org is a usage error");
}
