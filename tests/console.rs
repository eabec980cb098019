//! The web console as HTTP sees it: every file of its module graph served with the right type and the
//! security headers, revalidation by ETag, `--console false` / `RTCTL_CONSOLE` / `console = false`
//! turning it off, and `rtctl console` printing (or opening) a link whose token the hub accepts. What the
//! console does in a browser is in `browser.rs`.

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtctl::auth::{KeySource, Verifier};
use serde_json::json;

use crate::util::{TestHub, api_error, http, json_response, send};

/// The policy the console is served with, for a hub at `host`.
fn policy(host: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self' ws://{host} \
         wss://{host}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// The files a console file refers to: `src`/`href` in HTML, `from '...'` / `import '...'` in modules.
fn references(path: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let markers: &[&str] = if path.ends_with(".html") { &["src=\"", "href=\""] } else { &["from '", "import '"] };
    for marker in markers {
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            let end = rest.find(['"', '\'']).expect("a closing quote");
            found.push(rest[..end].to_owned());
        }
    }
    found
}

/// `base` + a relative reference, `./` and `../` resolved.
fn resolve(base: &str, reference: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for part in reference.split('/') {
        match part {
            "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// `/console/` and every file it loads, followed through the module graph, answer 200 with their
/// content type, the strict Content-Security-Policy (no inline script, connections to this hub only),
/// `nosniff`, no framing, no referrer, `no-cache` and an ETag; the page itself holds no token.
#[tokio::test]
async fn the_console_and_its_module_graph_are_served_with_security_headers() {
    let hub = TestHub::start().await;
    let host = hub.addr.to_string();
    let mut queue = VecDeque::from(["index.html".to_owned()]);
    let mut seen = BTreeSet::new();
    while let Some(path) = queue.pop_front() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let url =
            if path == "index.html" { hub.http_url("/console/") } else { hub.http_url(&format!("/console/{path}")) };
        let response = send(http().get(&url)).await;
        assert_eq!(response.status(), 200, "{url}");
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().expect("ASCII").to_owned());
        let expected_type = match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected file type {other:?} for {path}"),
        };
        assert_eq!(header("content-type").as_deref(), Some(expected_type), "{path}");
        assert_eq!(header("content-security-policy"), Some(policy(&host)), "{path}");
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "{path}");
        assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"), "{path}");
        assert_eq!(header("cache-control").as_deref(), Some("no-cache"), "{path}");
        let etag = header("etag").unwrap_or_default();
        assert!(etag.len() == 18 && etag.starts_with('"') && etag.ends_with('"'), "{path}: etag {etag}");
        let text = response.text().await.expect("a body");
        if path.ends_with(".html") || path.ends_with(".js") {
            for reference in references(&path, &text) {
                queue.push_back(resolve(&path, &reference));
            }
        }
        if path.ends_with(".html") {
            assert!(!text.contains("<script>") && !text.contains("style="), "inline script or style in {path}");
            assert!(!text.contains(hub.config.jwt_secret().expect("a secret")), "the page holds the secret");
        }
    }
    for must in ["js/main.js", "js/boot.js", "style.css", "js/views/dashboard.js", "js/views/chat.js", "js/chart.js"] {
        assert!(seen.contains(must), "{must} not reached from index.html: {seen:?}");
    }
}

/// A browser's cached copy is revalidated: the same ETag gets 304 without a body, another gets the file.
#[tokio::test]
async fn an_unchanged_file_is_a_304_and_a_changed_one_is_sent() {
    let hub = TestHub::start().await;
    let first = send(http().get(hub.http_url("/console/js/main.js"))).await;
    let etag = first.headers()["etag"].to_str().expect("ASCII").to_owned();
    let again = send(http().get(hub.http_url("/console/js/main.js")).header("if-none-match", &etag)).await;
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().expect("ASCII"), etag);
    assert_eq!(again.text().await.expect("a body"), "");
    let stale =
        send(http().get(hub.http_url("/console/js/main.js")).header("if-none-match", "\"0000000000000000\"")).await;
    assert_eq!(stale.status(), 200);
    assert!(!stale.text().await.expect("a body").is_empty());
}

/// The hub's root and `/console` lead to `/console/`; an unknown file is a JSON 404.
#[tokio::test]
async fn the_root_leads_to_the_console_and_unknown_files_are_404() {
    let hub = TestHub::start().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
    for (path, status) in [("/", 307), ("/console", 308)] {
        let response = send(client.get(hub.http_url(path))).await;
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(response.headers()["location"], "/console/", "{path}");
    }
    let (status, body) = json_response(send(http().get(hub.http_url("/console/js/nope.js"))).await).await;
    assert_eq!((status, body), (404, api_error("not_found", "no file js/nope.js in the console")));
}

/// With the console off, `/console/`, its files and the root redirect are 404s and the API still works.
#[tokio::test]
async fn a_hub_without_the_console_answers_404() {
    let hub = TestHub::start_with(|config| config.console = false).await;
    for path in ["/", "/console/", "/console/js/main.js"] {
        let (status, body) = json_response(send(http().get(hub.http_url(path))).await).await;
        assert_eq!((status, body), (404, api_error("not_found", "no such route")), "{path}");
    }
    assert_eq!(hub.get_json("/healthz", &[]).await, (200, json!({"status": "ok"})));
}

/// `rtctl serve` as a process in `dir` with `args` and `env`; returns it and its address once listening.
pub fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (ServeChild, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rtctl"));
    command.current_dir(dir).env_remove("RUST_LOG").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RTCTL_") {
            command.env_remove(name);
        }
    }
    command.args(["serve", "--bind", "127.0.0.1:0"]).args(args).envs(env.iter().copied());
    let mut child = ServeChild { child: command.spawn().expect("start rtctl serve"), log: Arc::default() };
    let stderr = child.child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Arc::clone(&child.log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("address=").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
            log.lock().expect("the log lock").push(line);
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("rtctl serve logged its address");
    (child, addr)
}

/// An `rtctl serve` the test started (stopped when dropped, also when an assertion failed), with what
/// it logged so far.
pub struct ServeChild {
    child: std::process::Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServeChild {
    /// The hub's log up to now, one line each.
    pub fn log(&self) -> String {
        self.log.lock().expect("the log lock").join("\n")
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The console setting from each source: on by default, off with `RTCTL_CONSOLE=false` or `console =
/// false` in rtctl.toml, and a bare `--console` (or `--console true`) wins over the file.
#[tokio::test]
async fn the_console_setting_comes_from_flags_env_and_the_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let status =
        |addr: String| async move { send(http().get(format!("http://{addr}/console/"))).await.status().as_u16() };

    let (_on, addr) = serve(dir.path(), &[], &[]);
    assert_eq!(status(addr).await, 200, "on by default");
    let (_off, addr) = serve(dir.path(), &[], &[("RTCTL_CONSOLE", "false")]);
    assert_eq!(status(addr).await, 404, "RTCTL_CONSOLE=false");
    let (_off, addr) = serve(dir.path(), &["--console", "no"], &[]);
    assert_eq!(status(addr).await, 404, "--console no");

    let file = dir.path().join("rtctl.toml");
    let text = std::fs::read_to_string(&file).expect("the first serve created rtctl.toml");
    std::fs::write(&file, format!("{text}console = false\n")).expect("write rtctl.toml");
    let (_off, addr) = serve(dir.path(), &[], &[]);
    assert_eq!(status(addr).await, 404, "console = false in the file");
    let (_on, addr) = serve(dir.path(), &["--console"], &[]);
    assert_eq!(status(addr).await, 200, "a bare --console over the file");
}

/// `rtctl console` in an empty directory with no `RTCTL_*` from the test's environment, pointed at `url`
/// with `secret`.
fn console_command(dir: &Path, url: &str, secret: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"));
    command.current_dir(dir).env_remove("RUST_LOG").env_remove("BROWSER").kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RTCTL_") {
            command.env_remove(name);
        }
    }
    command.arg("console").env("RTCTL_URL", url).env("RTCTL_JWT_SECRET", secret).stdin(Stdio::null());
    command
}

async fn run(mut command: tokio::process::Command) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(20), command.output()).await.expect("in time").expect("ran");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8");
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// `rtctl console` prints one link, `URL/console/#token=JWT` (the token in the fragment), and nothing
/// else; the hub accepts the token: user `console` by default, or `--user-id`, `--staff`, `--org` as
/// asked, for `--ttl`.
#[tokio::test]
async fn rtctl_console_prints_a_link_with_a_token_the_hub_accepts() {
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let secret = hub.config.jwt_secret().expect("a secret").to_owned();
    let verifier = Verifier::new(&KeySource::Secret(secret.clone()), None, None).expect("a verifier");
    let prefix = format!("{}/console/#token=", hub.http_url(""));

    let (code, stdout, stderr) = run(console_command(dir.path(), &hub.http_url(""), &secret)).await;
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");
    let token = stdout.strip_suffix('\n').and_then(|line| line.strip_prefix(&prefix)).expect("one link line");
    let identity = verifier.verify(token).expect("the hub's secret signed it");
    assert_eq!((identity.user_id.as_str(), identity.is_staff, identity.orgs.len()), ("console", false, 0));

    let mut command = console_command(dir.path(), &hub.http_url(""), &secret);
    command.args(["--staff", "--user-id", "ada", "--org", "acme", "--org", "globex", "--ttl", "10m"]);
    let (code, stdout, _) = run(command).await;
    assert_eq!(code, 0);
    let token = stdout.trim_end().strip_prefix(&prefix).expect("a link");
    let identity = verifier.verify(token).expect("valid");
    assert_eq!((identity.user_id.as_str(), identity.is_staff), ("ada", true));
    assert_eq!(identity.orgs, ["acme", "globex"]);
    let (_, claims) = rtctl::auth::inspect(token).expect("a JWT");
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(lifetime, 600);
    let bearer = format!("Bearer {token}");
    let (status, _) = hub.get_json("/api/v1/admin-dashboard/dashboard/", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "the link's token is a staff token the hub accepts");
}

/// `--open` hands the link to `$BROWSER` and still prints it; a hub that is down or has no console gets
/// a warning on stderr naming the problem, and the link is printed all the same.
#[tokio::test]
async fn rtctl_console_opens_the_link_and_warns_about_a_hub_that_cannot_serve_it() {
    let hub = TestHub::start().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let secret = hub.config.jwt_secret().expect("a secret").to_owned();
    let opened = dir.path().join("opened");
    let browser = dir.path().join("browser.sh");
    std::fs::write(&browser, format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", opened.display())).expect("write");
    std::fs::set_permissions(&browser, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let mut command = console_command(dir.path(), &hub.http_url(""), &secret);
    command.arg("--open").env("BROWSER", &browser);
    let (code, stdout, stderr) = run(command).await;
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(std::fs::read_to_string(&opened).expect("the browser was started"), stdout.trim_end());

    let off = TestHub::start_with(|config| config.console = false).await;
    let (code, stdout, stderr) = run(console_command(dir.path(), &off.http_url(""), &secret)).await;
    assert_eq!(code, 0);
    assert!(stdout.starts_with(&format!("{}/console/#token=", off.http_url(""))), "{stdout}");
    let url = off.http_url("");
    assert_eq!(stderr, format!("rtctl: warning: the hub at {url} serves no console: it runs with --console false\n"));

    let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address");
    let url = format!("http://{gone}");
    let (code, stdout, stderr) = run(console_command(dir.path(), &url, &secret)).await;
    assert_eq!(code, 0);
    assert!(stdout.starts_with(&format!("{url}/console/#token=")), "{stdout}");
    assert_eq!(
        stderr,
        format!(
            "rtctl: warning: no hub answers at {url} (start one with `rtctl serve`); the link works once it runs\n"
        )
    );
}
