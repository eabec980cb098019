//! Calls to the hub's HTTP API (PROTOCOL §5) for `token`, `notify`, `event` and `status`: each failure
//! becomes one line naming the status and the hub's own error message.

use std::time::Duration;

use anyhow::{Context, anyhow};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use crate::config::{ClientConfig, Credential};

/// How long one API call may take. The hub answers in milliseconds; a mass notification to thousands of
/// users stores them first, which stays well under this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How a request authenticates.
pub enum Auth<'a> {
    None,
    ApiKey(&'a str),
    Bearer(&'a str),
}

/// One HTTP client per command run, trusting `--ca-cert` when it is given.
pub fn client(config: &ClientConfig) -> anyhow::Result<reqwest::Client> {
    builder(config).timeout(REQUEST_TIMEOUT).build().context("cannot build the HTTP client")
}

/// A client builder with rtctl's user agent and the TLS roots of `config`.
pub fn builder(config: &ClientConfig) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder().user_agent(concat!("rtctl/", env!("CARGO_PKG_VERSION")));
    match &config.tls {
        Some(tls) => builder.tls_backend_preconfigured(rustls::ClientConfig::clone(tls)),
        None => builder,
    }
}

/// Builds a request to `base` + `path`.
pub fn request(client: &reqwest::Client, method: Method, base: &str, path: &str, auth: Auth<'_>) -> RequestBuilder {
    let builder = client.request(method, format!("{base}{path}"));
    match auth {
        Auth::None => builder,
        Auth::ApiKey(key) => builder.header("x-api-key", key),
        Auth::Bearer(token) => builder.bearer_auth(token),
    }
}

/// The status and JSON body of a response, whatever the status; only transport failures are errors.
pub async fn send_raw(builder: RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let response = builder.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(transport_error)?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

/// The JSON body of a 2xx response; anything else is an error naming the status and the hub's message,
/// and after a 401 why, when `credential` came from the config file (another hub's file is the usual
/// cause).
pub async fn send_as(builder: RequestBuilder, config: &ClientConfig, credential: Credential) -> anyhow::Result<Value> {
    let (status, body) = send_raw(builder).await?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    Err(anyhow!("{}", refused(status, &body, config, credential)))
}

/// [`status_error`], with [`ClientConfig::mismatch_hint`] after a 401.
pub fn refused(status: u16, body: &Value, config: &ClientConfig, credential: Credential) -> String {
    let error = status_error(status, body);
    match config.mismatch_hint(credential) {
        Some(hint) if status == 401 => format!("{error}; {hint}"),
        _ => error,
    }
}

/// `HTTP 404 not_found: no such route`, from a PROTOCOL §5 error body (or whatever came back).
pub fn status_error(status: u16, body: &Value) -> String {
    match (body.pointer("/error/code").and_then(Value::as_str), body.pointer("/error/message").and_then(Value::as_str))
    {
        (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
        _ => match body {
            Value::String(text) if !text.trim().is_empty() => {
                format!("HTTP {status}: {}", text.trim().chars().take(200).collect::<String>())
            }
            Value::String(_) => format!("HTTP {status}"),
            other => format!("HTTP {status}: {other}"),
        },
    }
}

/// reqwest's message names the URL (shown without credentials); the root cause (e.g. `Connection
/// refused`) says what went wrong.
fn transport_error(error: reqwest::Error) -> anyhow::Error {
    let url = error.url().map(|u| crate::config::redact_url(u.as_str())).unwrap_or_default();
    let mut cause: &dyn std::error::Error = &error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let what = if error.is_timeout() { "timed out".to_owned() } else { cause.to_string() };
    anyhow!("cannot reach the hub at {url}: {what}")
}
