//! `rtctl console`: mint a short-lived JWT with the hub's secret and print (or open) the web console's
//! sign-in link, `http://HUB/console/#token=...`. The token rides in the URL fragment, which browsers never
//! send to a server, so it reaches no log; the person who asked for it gets it on stdout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;

use super::http::{self, Auth};
use crate::cli::console::ConsoleArgs;
use crate::config::ClientConfig;

/// How long the check that a hub serves the console may take; it only warns.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `--open` waits to hear whether the opener failed (a browser that stays in the foreground is
/// fine: the link is open by then).
const OPENER_WAIT: Duration = Duration::from_secs(5);

pub async fn run(config_path: &Path, args: ConsoleArgs) -> anyhow::Result<u8> {
    let config = args.client.resolve(config_path)?;
    let (token, _) = args.mint.mint(&args.mint.identity(&[], false)?, &config)?;
    if let Some(problem) = check(&config).await {
        eprintln!("rtctl: warning: {problem}");
    }
    let link = format!("{}/console/#token={token}", config.url);
    println!("{link}");
    if args.open
        && let Err(why) = open(&link).await
    {
        eprintln!("rtctl: cannot open a browser ({why}): open the link above yourself");
    }
    Ok(0)
}

/// Why the link will not work yet, if the hub says so: nothing answers, or it serves no console.
async fn check(config: &ClientConfig) -> Option<String> {
    let client = http::builder(config).timeout(CHECK_TIMEOUT).build().ok()?;
    let request = http::request(&client, Method::HEAD, &config.url, "/console/", Auth::None);
    let url = crate::config::redact_url(&config.url);
    match request.send().await {
        Err(_) => Some(format!("no hub answers at {url} (start one with `rtctl serve`); the link works once it runs")),
        Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => {
            Some(format!("the hub at {url} serves no console: it runs with --console false"))
        }
        Ok(response) if !response.status().is_success() => {
            Some(format!("the hub at {url} answered /console/ with HTTP {}", response.status().as_u16()))
        }
        Ok(_) => None,
    }
}

/// Hands the link to the browser; an error says why it did not open.
async fn open(link: &str) -> anyhow::Result<()> {
    let opener = match std::env::var("BROWSER") {
        Ok(browser) if !browser.trim().is_empty() => browser,
        _ if cfg!(target_os = "macos") => "open".to_owned(),
        _ => "xdg-open".to_owned(),
    };
    let mut child = tokio::process::Command::new(&opener)
        .arg(link)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {opener}: {e}"))?;
    match tokio::time::timeout(OPENER_WAIT, child.wait()).await {
        Ok(Ok(status)) if !status.success() => anyhow::bail!("{opener} failed with {status}"),
        Ok(Err(e)) => anyhow::bail!("{opener}: {e}"),
        _ => Ok(()),
    }
}
