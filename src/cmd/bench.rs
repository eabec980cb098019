//! `rtctl bench`: its flags (`cli::bench`) turned once into a validated `bench::Config`, the run, an
//! optional throwaway hub (`--spawn`), and the summary.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::MultiProgress;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::bench::{self, Config, Scenario, Summary, Target};
use crate::cli::bench::{BenchArgs, SPAWN_DATABASE_URL_VAR, SPAWN_REDIS_URL_VAR, ScenarioArg};

/// Thresholds `--find-max` uses when none are given.
const FIND_MAX_DEFAULT_THRESHOLDS: [&str; 2] = ["loss=0", "p99<1s"];

/// How a bench that ran to the end came out; errors are the caller's exit code 1 (2 for a usage error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchOutcome {
    /// Every threshold held: exit 0.
    Passed,
    /// A threshold failed: exit 3.
    ThresholdFailed,
    /// Ctrl-C stopped the run; its partial summary (and report) went out: exit 130.
    Interrupted,
}

impl BenchOutcome {
    /// 0 when every threshold held, 3 when one failed (errors exit 1, usage errors 2, through `main`).
    pub fn exit_code(self) -> u8 {
        match self {
            BenchOutcome::Passed => 0,
            BenchOutcome::ThresholdFailed => 3,
            // 128 + SIGINT, as a shell reports a process that Ctrl-C ended.
            BenchOutcome::Interrupted => 130,
        }
    }
}

impl BenchArgs {
    /// Validates the flags into the run's configuration.
    pub fn config(&self) -> anyhow::Result<Config> {
        if self.subscribers == 0 {
            bail!("--subscribers must be at least 1");
        }
        if !self.rate.is_finite() || self.rate <= 0.0 {
            bail!("--rate must be a positive number of messages per second");
        }
        if self.connect_rate.is_nan() || self.connect_rate <= 0.0 {
            bail!("--connect-rate must be positive");
        }
        if !self.spawn {
            let backends = [
                ("--spawn-redis-url", SPAWN_REDIS_URL_VAR, &self.spawn_redis_url),
                ("--spawn-database-url", SPAWN_DATABASE_URL_VAR, &self.spawn_database_url),
            ];
            for (flag, var, value) in backends {
                // From the environment it is a setting for spawned hubs, and this run spawns none; on
                // the command line it is a mistake.
                if value.is_some() && std::env::var(var).ok() != *value {
                    bail!("{flag} is for the hub --spawn starts: add --spawn, or bench your hub without it");
                }
            }
        }
        if self.find_max && (self.find_max_factor.is_nan() || self.find_max_factor <= 1.0) {
            bail!("--find-max-factor must be greater than 1");
        }
        let resumes = self.churn.is_some() || self.restart_hub_at.is_some();
        if resumes && self.scenario != ScenarioArg::Fanout {
            bail!("--churn and --restart-hub-at resume org events: use them with the fanout scenario");
        }
        if self.restart_hub_at.is_some() && !self.spawn {
            bail!("--restart-hub-at restarts the hub --spawn starts: add --spawn");
        }
        if resumes && self.find_max {
            bail!("--churn and --restart-hub-at measure one run: leave out --find-max");
        }
        let mut thresholds = self.thresholds.clone();
        if self.find_max && thresholds.is_empty() {
            thresholds = FIND_MAX_DEFAULT_THRESHOLDS.iter().map(|t| t.parse().expect("the defaults parse")).collect();
        }
        Ok(Config {
            scenario: match self.scenario {
                ScenarioArg::Fanout => Scenario::Fanout,
                ScenarioArg::Notify => Scenario::Notify,
                ScenarioArg::Chat => Scenario::Chat,
                ScenarioArg::Idle => Scenario::Idle,
            },
            subscribers: self.subscribers,
            room_size: self.room_size.max(1),
            rate: self.rate,
            duration: self.duration,
            messages: self.messages,
            warmup: self.warmup,
            payload_bytes: self.payload_size,
            connect_rate: self.connect_rate,
            connect_concurrency: self.connect_concurrency.max(1),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            max_inflight: self.max_inflight.max(1),
            drain: self.drain,
            source_ips: self
                .source_ips
                .as_deref()
                .map(bench::parse_source_ips)
                .transpose()
                .context("--source-ips")?
                .unwrap_or_default(),
            thresholds,
            churn: self.churn.unwrap_or(0.0),
            // The hub to restart exists only once --spawn started it: `run` fills this in.
            restart: None,
            progress: (!self.quiet).then(MultiProgress::new),
            interrupt: tokio_util::sync::CancellationToken::new(),
        })
    }
}

/// Runs the bench the flags describe and prints its summary.
pub async fn run(config_path: &std::path::Path, args: BenchArgs) -> anyhow::Result<BenchOutcome> {
    let config = args.config().map_err(super::UsageError)?;
    if let Some(path) = &args.report {
        check_writable(path)?;
    }
    let spawned = if args.spawn {
        let mut env = Vec::new();
        if let Some(url) = &args.spawn_redis_url {
            // A prefix of its own, so that a hub on a Redis that serves a deployment stays out of its
            // groups and presence (and they out of the bench).
            env.push(("RTCTL_REDIS_URL", url.clone()));
            env.push(("RTCTL_REDIS_PREFIX", format!("rtctl-bench-{:016x}", rand::random::<u64>())));
        }
        if let Some(url) = &args.spawn_database_url {
            env.push(("RTCTL_DATABASE_URL", url.clone()));
        }
        Some(Arc::new(spawn_hub(env, config.progress.clone()).await.context("spawn a hub")?))
    } else {
        None
    };
    let mut config = config;
    if let (Some(at), Some(hub)) = (args.restart_hub_at, &spawned) {
        config.restart = Some(bench::RestartHub { at, hub: hub.clone() });
    }
    let target = match &spawned {
        Some(hub) => {
            let mut target = Target::new(&hub.url, hub.jwt_secret.clone(), hub.api_key.clone()).await?;
            target.pid = hub.pid;
            target
        }
        None => {
            // Like every client command, fall back to the config file that `rtctl serve` created.
            let client = crate::config::ClientConfig::resolve(
                args.url.clone(),
                args.jwt_secret.clone(),
                args.api_key.clone(),
                args.ca_cert.clone(),
                config_path,
            )?;
            let secret = client.require_jwt_secret()?.expose().to_owned();
            let api_key = client.api_key.as_ref().map(|key| key.expose().to_owned());
            let key = match (&api_key, config.scenario) {
                (Some(key), _) => key.clone(),
                (None, Scenario::Idle) => String::new(),
                (None, _) => bail!("missing --api-key (or RTCTL_API_KEY)"),
            };
            let mut target = Target::new(&client.url, secret, key).await?;
            target.pid = args.hub_pid;
            target.ca = client.tls.clone();
            target
        }
    };
    if config.progress.is_some() {
        eprintln!("{}", start_line(&config, &target.http, args.report.as_deref()));
    }
    stop_on_ctrl_c(&config);
    let mut summary = if args.find_max {
        bench::find_max(&config, &target, args.find_max_factor, args.find_max_steps).await?
    } else {
        bench::run(&config, &target).await?
    };
    summary.command = command_line(std::env::args());
    summary.version = env!("CARGO_PKG_VERSION").to_owned();
    // The summary first: a report that cannot be written, or a spawned hub that does not stop cleanly,
    // must not take the run's figures with it.
    print(&summary, args.json)?;
    if let Some(path) = &args.report {
        bench::write_html(&summary, path)?;
        eprintln!("report written to {}", path.display());
    }
    if let Some(hub) = spawned {
        hub.stop().await?;
    }
    let kinds = || summary.errors.iter().map(|(kind, n)| format!("{kind} {n}")).collect::<Vec<_>>().join(", ");
    if summary.connections.established == 0 {
        bail!("no subscriber could connect ({})", kinds());
    }
    // Refused messages are not expected, so a run whose every publish was refused (a wrong API key)
    // would otherwise pass every loss threshold with nothing measured.
    if summary.messages.accepted == 0 && summary.messages.failed > 0 {
        bail!("the hub refused every message ({})", kinds());
    }
    Ok(if summary.interrupted {
        BenchOutcome::Interrupted
    } else if summary.passed {
        BenchOutcome::Passed
    } else {
        BenchOutcome::ThresholdFailed
    })
}

/// The line shown before a run starts: what is benched, how hard, and how to stop it.
fn start_line(config: &Config, url: &str, report: Option<&std::path::Path>) -> String {
    let load = match (config.scenario, config.messages) {
        (Scenario::Idle, _) => format!("held open for {:.1} s", config.duration.as_secs_f64()),
        (_, Some(messages)) => format!("{messages} messages at {} msg/s", config.rate),
        (_, None) => format!("{} msg/s for {:.1} s", config.rate, config.duration.as_secs_f64()),
    };
    let warmup = match config.warmup.is_zero() || config.scenario == Scenario::Idle {
        true => String::new(),
        false => format!(" after {:.1} s warm-up", config.warmup.as_secs_f64()),
    };
    let report = report.map(|path| format!(", report to {}", path.display())).unwrap_or_default();
    format!(
        "bench {} → {url}: {} subscribers, {load}{warmup}, payload {} B{report} (Ctrl-C stops it and prints what ran)",
        config.scenario.name(),
        config.subscribers,
        config.payload_bytes
    )
}

/// The first Ctrl-C stops the run (its summary and report still come); a second one exits at once.
fn stop_on_ctrl_c(config: &Config) {
    let interrupt = config.interrupt.clone();
    let progress = config.progress.clone();
    let Ok(mut sigint) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) else {
        // Without a handler Ctrl-C keeps its default: the process ends, without a summary.
        return;
    };
    tokio::spawn(async move {
        sigint.recv().await;
        let say = || eprintln!("interrupted: stopping the run and summarizing what ran (Ctrl-C again to quit at once)");
        match &progress {
            Some(console) => console.suspend(say),
            None => say(),
        }
        interrupt.cancel();
        sigint.recv().await;
        std::process::exit(130);
    });
}

/// The command line as the report records it: every secret flag's value masked.
fn command_line(args: impl Iterator<Item = String>) -> String {
    const SECRET_FLAGS: [&str; 2] = ["--jwt-secret", "--api-key"];
    let mut words = Vec::new();
    let mut mask_next = false;
    for arg in args {
        let word = match arg.split_once('=') {
            _ if mask_next => "***".to_owned(),
            Some((flag, _)) if SECRET_FLAGS.contains(&flag) => format!("{flag}=***"),
            _ => crate::config::redact_url(&arg),
        };
        mask_next = SECRET_FLAGS.contains(&arg.as_str());
        let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+*".contains(c));
        words.push(if plain { word } else { format!("'{}'", word.replace('\'', r"'\''")) });
    }
    words.join(" ")
}

/// Fails now, not after the run, when the report could not be written: opens the file without
/// truncating it, and removes it again if this created it.
fn check_writable(path: &std::path::Path) -> anyhow::Result<()> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot write the report to {}", path.display()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Prints the summary; a closed stdout (`| head`) is not an error.
fn print(summary: &Summary, json: bool) -> anyhow::Result<()> {
    let result = if json {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, summary).map_err(io::Error::from).and_then(|()| writeln!(out))
    } else {
        bench::print_table(summary)
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("write the summary"),
    }
}

/// A hub started by `--spawn` for the length of one bench; `url`, secret and key are all the bench needs.
pub struct SpawnedHub {
    /// Base HTTP URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    pub jwt_secret: String,
    pub api_key: String,
    /// The child's process id, so that its CPU is reported apart from the bench's (`None` only if it
    /// had already exited when it was read). A restarted hub is another process: its CPU is not followed.
    pub pid: Option<u32>,
    /// How the hub is started, again for `--restart-hub-at`.
    launch: Launch,
    /// The running `rtctl serve`; replaced by a restart.
    process: tokio::sync::Mutex<Process>,
    /// The hub's working directory (its config file and database), removed after it stopped.
    _data_dir: tempfile::TempDir,
}

/// Everything that starts the spawned hub, the same every time: a restart finds its store and port.
struct Launch {
    port: u16,
    dir: std::path::PathBuf,
    /// The backends asked for, as `RTCTL_*` variables.
    env: Vec<(&'static str, String)>,
    jwt_secret: String,
    api_key: String,
    console: Option<MultiProgress>,
}

/// One `rtctl serve` child and its stderr, passed through.
struct Process {
    child: tokio::process::Child,
    stderr: HubStderr,
}

impl SpawnedHub {
    /// Stops the hub with SIGTERM (its graceful shutdown) and waits until it exited.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let mut process = self.process.lock().await;
        if let Some(pid) = process.child.id() {
            // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        let status = tokio::time::timeout(Duration::from_secs(15), process.child.wait())
            .await
            .context("the spawned hub did not stop within 15 s")?
            .context("wait for the spawned hub")?;
        // Whatever it said while stopping is out before the bench's own last words.
        process.stderr.finish().await;
        if !status.success() {
            bail!("the spawned hub exited with {status}");
        }
        Ok(())
    }
}

impl bench::Restartable for SpawnedHub {
    fn restart(&self) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            let mut process = self.process.lock().await;
            // SIGKILL, not SIGTERM: the hub gets no chance to close sockets or flush anything, as when a
            // machine or a container dies.
            process.child.start_kill().context("kill the spawned hub")?;
            process.child.wait().await.context("wait for the killed hub")?;
            process.stderr.finish().await;
            *process = start(&self.launch).await.context("start the hub again")?;
            Ok(())
        })
    }
}

/// Starts a throwaway hub for `--spawn`: this binary's `rtctl serve` as a child process on a free
/// loopback port, with fresh secrets, a temporary database and `env` (the backends asked for) as its only
/// `RTCTL_*` settings. A separate process, so the bench's CPU and the hub's are measured apart, as they
/// would be in production.
async fn spawn_hub(env: Vec<(&'static str, String)>, console: Option<MultiProgress>) -> anyhow::Result<SpawnedHub> {
    let data_dir = tempfile::tempdir().context("create a data directory")?;
    // Bind then release a port: the child binds it again a moment later. A collision is possible in
    // principle and shows up as the child failing to start, with its message.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let launch = Launch {
        port,
        dir: data_dir.path().to_owned(),
        env,
        jwt_secret: crate::auth::random_secret(),
        api_key: crate::auth::random_secret(),
        console,
    };
    let process = start(&launch).await?;
    Ok(SpawnedHub {
        url: launch.url(),
        jwt_secret: launch.jwt_secret.clone(),
        api_key: launch.api_key.clone(),
        pid: process.child.id(),
        launch,
        process: tokio::sync::Mutex::new(process),
        _data_dir: data_dir,
    })
}

impl Launch {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Starts `rtctl serve` as `launch` says and waits until it is ready.
async fn start(launch: &Launch) -> anyhow::Result<Process> {
    let exe = std::env::current_exe().context("find the rtctl binary")?;
    let mut command = tokio::process::Command::new(exe);
    // The throwaway hub is configured here and nowhere else: an RTCTL_* variable meant for the user's own
    // hub (a production RTCTL_DATABASE_URL or RTCTL_REDIS_URL above all) must not reach it.
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"RTCTL_") {
            command.env_remove(name);
        }
    }
    // Through the environment, not the command line, where `ps` would show a password in the URL.
    command.envs(launch.env.iter().map(|(name, value)| (name, value)));
    let mut child = command
        // No inbound rate limit: a chat member of a bench sends as fast as the run asks, and the bench
        // measures what the hub can carry, not its protection against a flooding client.
        .args(["serve", "--bind", &format!("127.0.0.1:{}", launch.port), "--message-rate", "0"])
        .current_dir(&launch.dir)
        .env("RTCTL_JWT_SECRET", &launch.jwt_secret)
        .env("RTCTL_API_KEY", &launch.api_key)
        .env("RTCTL_CONFIG", launch.dir.join("rtctl.toml"))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        // A process group of its own: the Ctrl-C that stops the bench must not stop the hub it measures
        // (it is stopped after the summary, as at the end of every run).
        .process_group(0)
        .spawn()
        .context("start rtctl serve")?;
    let stderr = HubStderr::forward(child.stderr.take().expect("stderr is piped"));
    let client = reqwest::Client::new();
    let url = launch.url();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the spawned hub exited at start with {status}{}", stderr.why().await);
        }
        if client.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the spawned hub did not become ready within 15 s{}", stderr.why().await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stderr.pass_through(launch.console.clone());
    Ok(Process { child, stderr })
}

/// The spawned hub's stderr: held back while it starts, so that a hub that cannot start is reported in
/// the bench's one error line, then passed through (its warnings during the run).
struct HubStderr {
    sink: Arc<Mutex<Sink>>,
    forwarder: tokio::task::JoinHandle<()>,
}

/// Where the hub's stderr lines go.
enum Sink {
    /// Kept while the hub starts.
    Held(Vec<String>),
    /// Printed as they come; above the progress bars when there are some, not drawn over by them.
    Through(Option<MultiProgress>),
}

/// Prints one of the hub's lines on stderr, with the progress bars (if any) lifted out of its way.
fn print_hub_line(console: Option<&MultiProgress>, line: &str) {
    match console {
        Some(console) => console.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

impl HubStderr {
    fn forward(stderr: tokio::process::ChildStderr) -> Self {
        let sink = Arc::new(Mutex::new(Sink::Held(Vec::new())));
        let shared = Arc::clone(&sink);
        let forwarder = tokio::spawn(async move {
            let mut reader = BufReader::new(stderr);
            let mut raw = Vec::new();
            // Bytes, not `lines()`: one line that is not UTF-8 must not end the forwarding (the hub's
            // next write would then fail on a closed pipe).
            while reader.read_until(b'\n', &mut raw).await.is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
                raw.clear();
                match &mut *shared.lock().expect("stderr lock poisoned") {
                    Sink::Held(held) => held.push(line),
                    Sink::Through(console) => print_hub_line(console.as_ref(), &line),
                }
            }
        });
        Self { sink, forwarder }
    }

    /// The hub is up: what it said while starting goes out now, and the rest as it comes.
    fn pass_through(&self, console: Option<MultiProgress>) {
        let mut sink = self.sink.lock().expect("stderr lock poisoned");
        if let Sink::Held(held) = &*sink {
            for line in held {
                print_hub_line(console.as_ref(), line);
            }
        }
        *sink = Sink::Through(console);
    }

    /// Waits (briefly) until the hub's stderr ended: an exited hub's ends at once.
    async fn finish(&mut self) {
        if tokio::time::timeout(Duration::from_secs(1), &mut self.forwarder).await.is_err() {
            // A hung hub is not waited for, and what it says later is not printed apart from the
            // bench's error.
            self.forwarder.abort();
        }
    }

    /// What the hub said before it failed, as `: reason` (without its own `rtctl: ` prefix), or nothing.
    async fn why(mut self) -> String {
        self.finish().await;
        let held =
            match std::mem::replace(&mut *self.sink.lock().expect("stderr lock poisoned"), Sink::Held(Vec::new())) {
                Sink::Held(held) => held,
                Sink::Through(_) => Vec::new(),
            };
        let reasons: Vec<&str> = held.iter().map(|line| line.strip_prefix("rtctl: ").unwrap_or(line)).collect();
        if reasons.is_empty() { String::new() } else { format!(": {}", reasons.join("; ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Secrets are masked in every spelling; words a shell would split or redirect are quoted.
    #[test]
    fn the_recorded_command_line_masks_secrets() {
        let argv =
            ["rtctl", "bench", "--jwt-secret", "s1", "--api-key=k1", "-t", "p99<20ms", "--url", "http://u:pw@h:1"];
        assert_eq!(
            command_line(argv.into_iter().map(String::from)),
            "rtctl bench --jwt-secret *** --api-key=*** -t 'p99<20ms' --url http://***@h:1"
        );
    }
}
