//! A headless Chromium driven over WebDriver (fantoccini): chromedriver started by the test on a free
//! port, a fresh profile per session, and helpers that wait for a condition by polling, never by sleeping
//! a fixed time.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, WindowHandle};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long a browser test waits for a condition. Generous: Chromium on a loaded 2-core machine is slow
/// to start and to render, and a poll that succeeds returns at once.
pub const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// Set by `scripts/ci.sh`: a missing chromedriver fails the browser tests instead of skipping them.
const REQUIRE: &str = "RTCTL_TEST_BROWSER";

/// The window every test and screenshot uses.
pub const WIDTH: u32 = 1360;
pub const HEIGHT: u32 = 900;

/// A Chromium session and the chromedriver that runs it.
pub struct Browser {
    client: Client,
    _driver: Driver,
    _profile: TempDir,
}

/// chromedriver in a process group of its own: dropping it kills the group, Chromium included, so a
/// test that fails midway leaves no browser running.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: killpg has no memory preconditions; the group is the one this test created.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

fn find_chromedriver() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("chromedriver")).find(|candidate| candidate.is_file())
}

impl Browser {
    /// A fresh Chromium, or `None` after printing why the test is skipped (no chromedriver on PATH).
    /// With [`REQUIRE`]`=1`, or when chromedriver is there but Chromium does not start, the test fails.
    pub async fn start(test: &str) -> Option<Self> {
        let Some(chromedriver) = find_chromedriver() else {
            if std::env::var(REQUIRE).is_ok_and(|v| v == "1") {
                panic!("{REQUIRE}=1 but there is no chromedriver on PATH: apt-get install chromium chromium-driver");
            }
            eprintln!(
                "skipped {test}: no chromedriver on PATH (install chromium and chromium-driver to run the browser tests)"
            );
            return None;
        };
        let (driver, port) = spawn_driver(&chromedriver);
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities(profile.path()));
        let client = builder
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|error| panic!("Chromium did not start through {}: {error}", chromedriver.display()));
        Some(Self { client, _driver: driver, _profile: profile })
    }

    /// Ends the session (Chromium exits); dropping without it kills the process group instead.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// Runs `script` (a function body: `return ...`; a returned promise is awaited) with `args`.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        match self.client.execute(script, args).await {
            Ok(value) => value,
            Err(error) => panic!("script failed: {error}\nscript: {script}\npage:\n{}", self.page_text().await),
        }
    }

    /// Polls `script` until it returns something truthy (not null, false, 0 or ""), and returns it;
    /// fails after [`WAIT`] naming `what`, with the last value and the page's text.
    pub async fn wait_for(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.client.execute(script, args.clone()).await.unwrap_or(Value::Null);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                panic!("waited {WAIT:?} for {what}; last value {value}\npage:\n{}", self.page_text().await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the element is there, then clicks it as a person would (WebDriver's click, which
    /// refuses a hidden or covered element: retried until it is clickable).
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let clicked = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.click().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match clicked {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => {
                    panic!("cannot click {css} within {WAIT:?}: {why}\npage:\n{}", self.page_text().await)
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Types into the element (real key events, so `input` listeners run).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.wait_for(&format!("{css} to appear"), "return !!document.querySelector(arguments[0])", vec![json!(css)])
            .await;
        let element = self.client.find(Locator::Css(css)).await.expect("the element is there");
        element.send_keys(text).await.unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    /// The text of the first element matching `css`, or null.
    pub async fn text(&self, css: &str) -> Value {
        self.eval("const el = document.querySelector(arguments[0]); return el && el.textContent", vec![json!(css)])
            .await
    }

    /// Opens another window (not a background tab, whose timers Chromium slows down) and switches to it.
    pub async fn new_window(&self) -> WindowHandle {
        let window = self.client.new_window(false).await.expect("open a window");
        self.client.switch_to_window(window.handle.clone()).await.expect("switch to the new window");
        window.handle
    }

    pub async fn window(&self) -> WindowHandle {
        self.client.window().await.expect("the current window")
    }

    pub async fn switch_to(&self, window: &WindowHandle) {
        self.client.switch_to_window(window.clone()).await.expect("switch windows");
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("a screenshot")
    }

    /// The page's visible text, for failure messages.
    pub async fn page_text(&self) -> String {
        let text = self.client.execute("return document.body ? document.body.innerText : ''", vec![]).await;
        let text = text.ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        text.chars().take(3000).collect()
    }
}

/// Starts chromedriver on a port it picks (`--port=0`) and reads the port from its first lines.
fn spawn_driver(chromedriver: &Path) -> (Driver, u16) {
    let mut child = Command::new(chromedriver)
        .arg("--port=0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let driver = Driver(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line.split("started successfully on port ").nth(1) {
                let _ = tx.send(port.trim_end_matches('.').trim().parse::<u16>().ok());
            }
        }
    });
    match rx.recv_timeout(WAIT) {
        Ok(Some(port)) => (driver, port),
        _ => panic!("{} did not say which port it listens on within {WAIT:?}", chromedriver.display()),
    }
}

/// Headless Chromium as root in a container: no sandbox, no GPU, no QUIC, no calls home (the closed
/// network refuses them), a profile of its own, a fixed window for screenshots.
fn capabilities(profile: &Path) -> Capabilities {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--force-prefers-reduced-motion",
        "--lang=en-US",
        &format!("--window-size={WIDTH},{HEIGHT}"),
        &format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"args": args},
        "timeouts": {"script": WAIT.as_millis() as u64, "pageLoad": WAIT.as_millis() as u64},
    });
    match capabilities {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}
