//! The WebSocket client of `rtctl connect`: opens a `ws://` or `wss://` URL with a token, extra headers,
//! an origin and a subprotocol, and says why when it cannot. (`rtctl bench` has a client of its own,
//! `bench::ws`, that parses frames in place to time them.)

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

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

/// Query parameters whose value is a credential: `token` (PROTOCOL §1), and the names other WebSocket
/// servers commonly take one under.
const SECRET_PARAMS: &[&str] =
    &["token", "access_token", "ws_token", "jwt", "auth", "api_key", "apikey", "password", "secret", "ticket"];

/// The URL as it may be printed: the user info, and the value of every query parameter that holds a
/// credential (a name such as `token` or `password`, or a ws token or a JWT under any name), become `***`.
/// Tokens never reach logs or output (PROTOCOL §1); the rest of the URL stays, to say where we went.
pub fn redact_url(url: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let mut shown = crate::config::mask_userinfo(base);
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if is_credential(name, value) => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

/// Whether a query parameter holds a credential; an empty value holds none, and shows that it is empty.
fn is_credential(name: &str, value: &str) -> bool {
    let looks_like_jwt = value.starts_with("eyJ") && value.matches('.').count() == 2;
    !value.is_empty()
        && (SECRET_PARAMS.iter().any(|secret| secret.eq_ignore_ascii_case(name))
            || value.starts_with(crate::auth::WS_TOKEN_PREFIX)
            || looks_like_jwt)
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
    let (stream, response) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(http))
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

    /// Credentials in a URL are masked wherever they sit; everything else is kept as it was.
    #[test]
    fn urls_are_redacted() {
        let jwt = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiI3In0.c2ln";
        assert_eq!(redact_url(&format!("ws://h:1/ws/x/?token={jwt}")), "ws://h:1/ws/x/?token=***");
        assert_eq!(redact_url("ws://h/ws/x/?v=1&Token=wst_abc&room=r1"), "ws://h/ws/x/?v=1&Token=***&room=r1");
        assert_eq!(redact_url("ws://h/?t=wst_abc&bearer=eyJa.eyJb.c"), "ws://h/?t=***&bearer=***");
        assert_eq!(redact_url("wss://user:pass@h/ws/x/?access_token=s3cret"), "wss://***@h/ws/x/?access_token=***");
        assert_eq!(redact_url("ws://h/ws/x/?token=&v=a@b"), "ws://h/ws/x/?token=&v=a@b");
        assert_eq!(redact_url("ws://h/ws/notifications/"), "ws://h/ws/notifications/");
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
