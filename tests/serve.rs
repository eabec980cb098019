//! `rtctl serve` as a process: the first start creates the config file, `--help` hides secrets, bad
//! settings are refused by name.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `rtctl` with a clean `RTCTL_*` environment, run in `dir`. A `serve` without `--bind` listens on a
/// port the kernel picks, never on the default 8000: a hub a developer keeps running there (the README's
/// quick start) would turn a test's expected error into "Address already in use".
fn rtctl(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rtctl"));
    command.current_dir(dir).env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RTCTL_") {
            command.env_remove(name);
        }
    }
    command.env("RTCTL_BIND", "127.0.0.1:0");
    command
}

/// Kills and reaps a child the test still holds when it ends: a failed assertion must not leave an
/// `rtctl serve` running.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `rtctl serve` on a free port in `dir`, its stderr piped.
fn spawn_serve(dir: &std::path::Path) -> KillOnDrop {
    KillOnDrop(Some(
        rtctl(dir)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rtctl serve"),
    ))
}

/// The child's stderr, line by line, from a thread that ends with it.
fn stderr_lines(child: &mut KillOnDrop) -> (mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
    let stderr = child.0.as_mut().and_then(|c| c.stderr.take()).expect("piped stderr");
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (lines, reader)
}

/// The first `rtctl serve` in a directory creates `rtctl.toml` with mode 0600 holding a fresh
/// `jwt_secret` and `api_key`, and its database private too, logs "hub listening", and exits 0 on
/// SIGTERM.
#[test]
fn first_serve_creates_a_private_config_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut child = spawn_serve(dir.path());
    let (lines, reader) = stderr_lines(&mut child);
    let mut log = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                let listening = line.contains("hub listening");
                log.push(line);
                if listening {
                    break;
                }
            }
            Err(_) => panic!("no \"hub listening\" line within 20 s; log:\n{}", log.join("\n")),
        }
    }

    // Piped, so not a terminal: plain text, as a log file or journald wants it.
    assert!(log.iter().all(|line| !line.contains('\x1b')), "color codes in a piped log:\n{}", log.join("\n"));
    assert!(log.iter().any(|line| line.contains(" INFO rtctl::hub: hub listening")), "{}", log.join("\n"));

    let path = dir.path().join("rtctl.toml");
    let mode = std::fs::metadata(&path).expect("rtctl.toml exists").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "rtctl.toml mode {mode:o}");
    let text = std::fs::read_to_string(&path).expect("read rtctl.toml");
    let file: toml::Table = toml::from_str(&text).expect("rtctl.toml is TOML");
    for key in ["jwt_secret", "api_key"] {
        let value = file.get(key).and_then(toml::Value::as_str).unwrap_or_else(|| panic!("no {key} in:\n{text}"));
        assert!(value.len() >= 32, "{key} is too short: {value}");
        assert!(log.iter().all(|line| !line.contains(value)), "the log shows the {key}");
    }
    assert_ne!(file["jwt_secret"], file["api_key"]);

    let mut child = child.0.take().expect("the child, not yet waited for");
    let pid = i32::try_from(child.id()).expect("a pid that fits");
    // SAFETY: kill has no memory preconditions; the pid is our own child, not yet waited for.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "send SIGTERM");
    let (status_tx, status) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = status_tx.send(child.wait());
    });
    let exit = status.recv_timeout(Duration::from_secs(15)).expect("rtctl serve did not exit within 15 s of SIGTERM");
    let exit = exit.expect("wait for rtctl serve");
    reader.join().expect("the stderr reader");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(exit.success(), "exit {exit:?}; log:\n{}\n{}", log.join("\n"), rest.join("\n"));
    // The data is as private as the secrets: the directory 0700, the database and its WAL 0600.
    let mode = |path: &str| std::fs::metadata(dir.path().join(path)).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode("rtctl-data").expect("rtctl-data exists"), 0o700);
    assert_eq!(mode("rtctl-data/rtctl.db").expect("the default database was created"), 0o600);
}

/// Nodes started together in a fresh directory all come up: one creates `rtctl.toml` (written whole,
/// then linked into place), the others read it, and the SQLite migrations run one at a time.
#[test]
fn nodes_started_together_share_one_new_config_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut nodes: Vec<KillOnDrop> = (0..4).map(|_| spawn_serve(dir.path())).collect();
    for node in &mut nodes {
        let (lines, _reader) = stderr_lines(node);
        let mut log = Vec::new();
        while !log.last().is_some_and(|line: &String| line.contains("hub listening")) {
            match lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => log.push(line),
                Err(_) => panic!("a node did not start; its log:\n{}", log.join("\n")),
            }
        }
    }
    let text = std::fs::read_to_string(dir.path().join("rtctl.toml")).expect("rtctl.toml");
    let file: toml::Table = toml::from_str(&text).expect("rtctl.toml is whole TOML");
    assert!(file.contains_key("jwt_secret") && file.contains_key("api_key"), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list the dir")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// `rtctl serve --help` never shows the JWT secret, API key or database URL taken from the environment.
#[test]
fn help_does_not_show_secrets_from_the_environment() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let secrets = [
        ("RTCTL_JWT_SECRET", "jwt-secret-value-0123456789"),
        ("RTCTL_API_KEY", "api-key-value-0123456789"),
        ("RTCTL_DATABASE_URL", "sqlite://secret-db-path/x.db"),
    ];
    let mut command = rtctl(dir.path());
    command.args(["serve", "--help"]);
    for (name, value) in secrets {
        command.env(name, value);
    }
    let output = command.output().expect("run rtctl serve --help");
    assert!(output.status.success(), "{output:?}");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("--jwt-secret") && text.contains("--api-key"), "{text}");
    for (name, value) in secrets {
        assert!(!text.contains(value), "--help shows {name}:\n{text}");
    }
    assert!(!dir.path().join("rtctl.toml").exists(), "--help must not create the config file");
}

/// A bad setting makes `rtctl serve` exit non-zero with a one-line message naming the setting.
#[test]
fn bad_settings_are_refused_naming_the_setting() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--database-url", "sqlite:///proc/nope/x.db"],
            "rtctl: cannot open database sqlite:///proc/nope/x.db: cannot create the database directory /proc/nope: \
             No such file or directory (os error 2)",
        ),
        (
            &["--heartbeat-timeout", "soon"],
            "rtctl: invalid heartbeat_timeout `soon`: expected a duration like 20s, 5m or 1h: expected number at 0",
        ),
        (
            &["--allowed-origins", "nope"],
            "rtctl: invalid allowed_origins: `nope` is not an origin like https://app.example.com",
        ),
        (&["--max-frame", "lots"], "rtctl: invalid max_frame `lots`: expected a size like 65536, 64KiB or 1MiB"),
        (
            &["--bind", "here"],
            "rtctl: invalid bind `here`: expected an address like 127.0.0.1:8000 or a port like 8000: invalid socket \
             address syntax",
        ),
    ];
    for (args, message) in cases {
        let dir = tempfile::tempdir().expect("a temp dir");
        let output = rtctl(dir.path()).arg("serve").args(args).output().expect("run rtctl serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().last(), Some(message), "{args:?}: {stderr}");
        assert!(!dir.path().join("rtctl.toml").exists(), "{args:?}: a failed start wrote rtctl.toml");
    }
}

/// A config file that is not valid TOML is refused in one line with where and what, and without quoting
/// the offending line (toml's own message does, and here that line may be the secret).
#[test]
fn a_broken_config_file_is_one_line_without_its_secret() {
    let cases = [
        ("jwt_secret = \"unterminated-secret-value\n", "line 1, column 40: invalid basic string, expected `\"`"),
        ("api_key = 123456789012\n", "line 1, column 11: invalid type: integer, expected a string"),
        ("jwt_secret = true\n", "line 1, column 14: invalid type: boolean, expected a string"),
    ];
    for (text, why) in cases {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("rtctl.toml"), text).expect("write rtctl.toml");
        let output = rtctl(dir.path()).arg("serve").output().expect("run rtctl serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr, format!("rtctl: invalid config file rtctl.toml: {why}\n"));
    }
}

/// A port that another process listens on is refused with one line naming the address, the cause and
/// `--bind`; the failed start leaves no config file behind.
#[test]
fn a_taken_port_is_refused_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = rtctl(dir.path()).args(["serve", "--bind", &addr.to_string()]).output().expect("run rtctl serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("rtctl: cannot listen on {addr}: ")), "{stderr}");
    assert!(last.contains("in use") && last.contains("--bind"), "{stderr}");
    assert!(!dir.path().join("rtctl.toml").exists(), "a failed start wrote rtctl.toml");
}
