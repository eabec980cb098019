//! The WebSocket client of `rtctl connect`: opens a `ws://` or `wss://` URL with a token, extra headers,
//! an origin and a subprotocol, and says why when it cannot. (`rtctl bench` has a client of its own,
//! `bench::ws`, that parses frames in place to time them.)

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

use crate::config::redact_url;

/// An open WebSocket to a hub.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the TCP connect, TLS and HTTP upgrade may take together. A hub on the same network answers
/// in milliseconds; 10 s leaves room for a slow TLS path without hanging a script.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to connect to and how to present ourselves.
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest {
    /// `ws://` or `wss://` URL, with or without a query string.
    pub url: String,
    /// Sent as the `token` query parameter (PROTOCOL §1), which browsers can send too.
    pub token: Option<String>,
    /// Extra request headers, in order.
    pub headers: Vec<(String, String)>,
    /// The `Origin` header, as a browser would send it.
    pub origin: Option<String>,
    /// Requested in `Sec-WebSocket-Protocol`.
    pub subprotocol: Option<String>,
    /// For `wss://`: the TLS settings of `--ca-cert`; `None`: the system's roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Why a connection could not be opened. Callers branch on it: a refusal is final, an I/O error may
/// pass when the hub is back.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The request cannot be built (bad URL, header name or value).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The server answered the upgrade with an HTTP status instead of 101.
    #[error("handshake refused: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Refused { status: u16, body: String },
    /// The server could not be reached, or the connection broke during the handshake.
    #[error("{0}")]
    Io(String),
    /// Nothing answered within [`CONNECT_TIMEOUT`].
    #[error("timed out after {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
}

impl ConnectRequest {
    /// The URL actually requested: `url` with `token=` added to its query.
    pub fn full_url(&self) -> String {
        match &self.token {
            None => self.url.clone(),
            Some(token) => {
                let separator = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{separator}token={}", self.url, encode_query_value(token))
            }
        }
    }
}

/// Opens the WebSocket; returns the stream and the subprotocol the server chose.
pub async fn connect(request: &ConnectRequest) -> Result<(WsStream, Option<String>), ConnectError> {
    if !(request.url.starts_with("ws://") || request.url.starts_with("wss://")) {
        return Err(ConnectError::Invalid(format!("`{}` is not a ws:// or wss:// URL", redact_url(&request.url))));
    }
    let mut http = request.full_url().into_client_request().map_err(|e| ConnectError::Invalid(e.to_string()))?;
    let headers = http.headers_mut();
    let mut insert = |name: &str, value: &str| -> Result<(), ConnectError> {
        let name =
            HeaderName::try_from(name).map_err(|_| ConnectError::Invalid(format!("bad header name `{name}`")))?;
        let value = HeaderValue::try_from(value)
            .map_err(|_| ConnectError::Invalid(format!("bad value for header `{name}`")))?;
        headers.append(name, value);
        Ok(())
    };
    for (name, value) in &request.headers {
        insert(name, value)?;
    }
    if let Some(origin) = &request.origin {
        insert("origin", origin)?;
    }
    if let Some(protocol) = &request.subprotocol {
        insert("sec-websocket-protocol", protocol)?;
    }
    let connector = request.tls.clone().map(tokio_tungstenite::Connector::Rustls);
    let connecting = tokio_tungstenite::connect_async_tls_with_config(http, None, false, connector);
    let (stream, response) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(classify)?;
    let protocol = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok((stream, protocol))
}

fn classify(error: tungstenite::Error) -> ConnectError {
    match error {
        tungstenite::Error::Http(response) => {
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            ConnectError::Refused { status: response.status().as_u16(), body: hub_message(&body) }
        }
        tungstenite::Error::Io(error) => ConnectError::Io(error.to_string()),
        tungstenite::Error::Url(error) => ConnectError::Invalid(error.to_string()),
        other => ConnectError::Io(other.to_string()),
    }
}

/// The `message` of a hub error body (PROTOCOL §5), else the body itself, shortened.
pub fn hub_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    match parsed.as_ref().and_then(|v| v.pointer("/error/message")).and_then(|m| m.as_str()) {
        Some(message) => message.to_owned(),
        None => body.trim().chars().take(200).collect(),
    }
}

/// Percent-encodes everything but the unreserved characters (RFC 3986 §2.3).
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token joins an existing query with `&`, and is percent-encoded.
    #[test]
    fn token_goes_into_the_query() {
        let mut request =
            ConnectRequest { url: "ws://h/ws/x/".into(), token: Some("a.b+c".into()), ..Default::default() };
        assert_eq!(request.full_url(), "ws://h/ws/x/?token=a.b%2Bc");
        request.url = "ws://h/ws/x/?v=1".into();
        assert_eq!(request.full_url(), "ws://h/ws/x/?v=1&token=a.b%2Bc");
    }

    /// A hub error body yields its message; anything else is shown as is.
    #[test]
    fn hub_messages_are_extracted() {
        assert_eq!(
            hub_message(r#"{"error":{"code":"forbidden","message":"origin not allowed"}}"#),
            "origin not allowed"
        );
        assert_eq!(hub_message("Bad Gateway\n"), "Bad Gateway");
    }
}
