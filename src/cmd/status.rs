//! `rtctl status`: a hub's `/healthz`, `/readyz` and `/api/v1/stats` as one compact table, once or
//! refreshed every second with `--watch`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use colored::{ColoredString, Colorize};
use reqwest::Method;
use serde_json::{Value, json};

use super::http::{self, Auth};
use crate::cli::status::StatusArgs;
use crate::config::{ClientConfig, Credential, redact_url};

/// How often `--watch` redraws.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The three answers of one poll.
struct Snapshot {
    url: String,
    health: Value,
    ready_status: u16,
    ready: Value,
    /// The stats, or why there are none (no API key, refused).
    stats: Result<Value, String>,
}

impl Snapshot {
    fn is_ready(&self) -> bool {
        self.ready_status == 200
    }

    /// Why the hub could not be read whole: the stats were asked for (there is an API key) and refused
    /// or lost. Without a key they are simply not asked for.
    fn unread(&self, config: &ClientConfig) -> Option<&str> {
        self.stats.as_ref().err().filter(|_| config.api_key.is_some()).map(String::as_str)
    }

    fn to_json(&self) -> Value {
        json!({
            "url": self.url,
            "healthz": self.health,
            "readyz": self.ready,
            "stats": self.stats.as_ref().ok(),
            "stats_error": self.stats.as_ref().err(),
        })
    }
}

pub async fn run(config_path: &Path, args: StatusArgs) -> anyhow::Result<u8> {
    let config = args.client.resolve(config_path)?;
    // A config file named (--config, RTCTL_CONFIG) but absent would silently mean no API key.
    if !config.config_file_found && config_path != Path::new(crate::config::DEFAULT_CONFIG_PATH) {
        anyhow::bail!(
            "config file {} does not exist; point --config (or RTCTL_CONFIG) at the hub's",
            config_path.display()
        );
    }
    let client = http::client(&config)?;
    if !args.watch {
        let snapshot = poll(&client, &config).await?;
        if args.json {
            println!("{}", snapshot.to_json());
        } else {
            print!("{}", render(&snapshot));
        }
        // A script (or a person) must not take a refused stats request for a healthy hub.
        if let Some(why) = snapshot.unread(&config) {
            eprintln!("rtctl: cannot read the hub's stats: {why}");
            return Ok(1);
        }
        return Ok(if snapshot.is_ready() { 0 } else { 1 });
    }
    let redraw = std::io::stdout().is_terminal();
    let watch = async {
        loop {
            // While the hub restarts the error takes the table's place and the watch goes on.
            let frame = match poll(&client, &config).await {
                Ok(snapshot) if args.json => format!("{}\n", snapshot.to_json()),
                Ok(snapshot) => render(&snapshot),
                Err(error) if args.json => {
                    format!("{}\n", json!({"url": redact_url(&config.url), "error": format!("{error:#}")}))
                }
                Err(error) => format!("{}\n", format!("{error:#}").red()),
            };
            let mut out = std::io::stdout().lock();
            let written = if args.json {
                write!(out, "{frame}")
            } else if redraw {
                // Clear the screen and home the cursor, then draw: one redraw per tick, no scrolling.
                writeln!(out, "\x1b[2J\x1b[H{frame}{}", "every 1s, Ctrl-C to stop".dimmed())
            } else {
                // A pipe or a file gets each table after the last, without terminal control codes.
                writeln!(out, "{frame}")
            };
            // A reader that closed the pipe (`| head`) has seen enough: the watch ends, with 0.
            if let Err(error) = written.and_then(|()| out.flush()) {
                return error;
            }
            drop(out);
            tokio::time::sleep(WATCH_INTERVAL).await;
        }
    };
    tokio::select! {
        error = watch => Err(anyhow::Error::from(error).context("write the status")),
        _ = tokio::signal::ctrl_c() => Ok(0),
    }
}

async fn poll(client: &reqwest::Client, config: &ClientConfig) -> anyhow::Result<Snapshot> {
    let get = |path: &str, auth| http::send_raw(http::request(client, Method::GET, &config.url, path, auth));
    let health = get("/healthz", Auth::None);
    let ready = get("/readyz", Auth::None);
    let stats = async {
        match &config.api_key {
            None => Err("no API key: stats need --api-key, RTCTL_API_KEY or rtctl.toml".to_owned()),
            Some(key) => match get("/api/v1/stats", Auth::ApiKey(key.expose())).await {
                Ok((200, body)) => Ok(body),
                Ok((status, body)) => Err(http::refused(status, &body, config, Credential::ApiKey)),
                Err(error) => Err(format!("{error:#}")),
            },
        }
    };
    let (health, ready, stats) = tokio::join!(health, ready, stats);
    let (health_status, health) = health?;
    if health_status != 200 {
        anyhow::bail!("{} at {}/healthz", http::status_error(health_status, &health), redact_url(&config.url));
    }
    let (ready_status, ready) = ready.context("cannot read /readyz")?;
    // Shown and printed as JSON: a URL with `user:pass@` in it keeps them to itself.
    Ok(Snapshot { url: redact_url(&config.url), health, ready_status, ready, stats })
}

fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut row = |label: &str, value: String| out.push_str(&format!("{:<12}{value}\n", label.bold()));
    let state = |value: &Value| -> ColoredString {
        match value.as_str().unwrap_or("?") {
            "ok" => "ok".green(),
            other => other.red(),
        }
    };
    let stats = s.stats.as_ref().ok();
    let node = stats.map(|st| format!("  node {}  up {}", text(&st["node_id"]), uptime(&st["uptime_seconds"])));
    row("hub", format!("{}{}", s.url, node.unwrap_or_default()));
    row("health", state(&s.health["status"]).to_string());
    row(
        "ready",
        format!(
            "{}  layer {} {}  store {} {}",
            state(&s.ready["status"]),
            text(&s.ready["layer"]["name"]),
            state(&s.ready["layer"]["status"]),
            text(&s.ready["store"]["name"]),
            state(&s.ready["store"]["status"]),
        ),
    );
    match &s.stats {
        Ok(st) => {
            let per_endpoint = st["connections"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(" · "))
                .unwrap_or_default();
            row("connections", format!("{}  {}", st["connections_total"].to_string().cyan(), per_endpoint.dimmed()));
            row("users", format!("{} online", st["users_online"].to_string().cyan()));
            row(
                "messages",
                format!(
                    "{} in · {} out · {} slow consumers dropped · {} rate-limit closes",
                    st["messages_in"],
                    st["messages_out"],
                    warn_if_any(&st["slow_consumers_dropped"]),
                    warn_if_any(&st["rate_limit_closes"]),
                ),
            );
            if let Some(bytes) = st["memory_rss_bytes"].as_u64() {
                row("memory", format!("{:.1} MiB rss", bytes as f64 / (1024.0 * 1024.0)));
            }
        }
        Err(why) => row("stats", why.yellow().to_string()),
    }
    out
}

/// A count that is worth a look when it is not zero (absent, from an older hub, reads as 0).
fn warn_if_any(count: &serde_json::Value) -> colored::ColoredString {
    match count.as_u64() {
        Some(0) | None => "0".normal(),
        Some(n) => n.to_string().yellow(),
    }
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

fn uptime(value: &Value) -> String {
    value.as_i64().map_or_else(|| "?".to_owned(), super::token::span)
}
