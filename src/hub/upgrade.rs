//! The WebSocket handshake (RFC 6455 §4.2), answered here rather than by axum's `WebSocket`, so that a
//! session gets the raw TCP socket (or its TLS stream): pushes are written to it from the publisher's
//! thread (see [`super::outbox`]), which axum's wrapper does not allow.
//!
//! axum's `WebSocketUpgrade` still validates the request, so a request that is not an upgrade gets the
//! same answers as before.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::error::HubError;
use super::outbox::TlsSocket;

/// A validated upgrade request, not yet answered.
pub struct Upgrade {
    on_upgrade: OnUpgrade,
    accept_key: HeaderValue,
}

impl Upgrade {
    /// Validates the request as a WebSocket upgrade over HTTP/1.1; the error is the HTTP answer.
    pub async fn from_parts<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<Self, HubError> {
        // Taken before axum's extractor, which removes it from the request.
        let on_upgrade = parts.extensions.get::<OnUpgrade>().cloned();
        let _validated = WebSocketUpgrade::from_request_parts(parts, state).await.map_err(|rejection| {
            let message = format!("expected a WebSocket upgrade: {rejection}");
            HubError::upgrade_required(rejection.status(), message)
        })?;
        let key = parts.headers.get(header::SEC_WEBSOCKET_KEY);
        let (Some(on_upgrade), Some(key)) = (on_upgrade, key) else {
            // axum also accepts HTTP/2's extended CONNECT, which carries no key; sessions need HTTP/1.1.
            let message = "expected a WebSocket upgrade over HTTP/1.1";
            return Err(HubError::upgrade_required(StatusCode::BAD_REQUEST, message));
        };
        let accept_key =
            HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("a base64 digest is a valid header value");
        Ok(Self { on_upgrade, accept_key })
    }

    /// The `101 Switching Protocols` answer, and the future that yields the socket once it is sent.
    pub fn respond(self) -> (Response, Pending) {
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, self.accept_key)
            .body(Body::empty())
            .expect("constant headers are valid");
        (response, Pending(self.on_upgrade))
    }
}

/// The connection after the 101 answer went out.
pub struct Pending(OnUpgrade);

impl Pending {
    /// The socket, and any bytes the client sent after its request that HTTP already read (decrypted,
    /// on a TLS connection).
    pub async fn socket(self) -> anyhow::Result<(Socket, Vec<u8>)> {
        let upgraded = self.0.await.context("the upgrade did not complete")?;
        // `listener::serve` hands hyper the socket as one of these two types.
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => return Ok((Socket::Plain(Arc::new(parts.io.into_inner())), parts.read_buf.to_vec())),
            Err(upgraded) => upgraded,
        };
        let parts = upgraded
            .downcast::<TokioIo<TlsSocket>>()
            .map_err(|_| anyhow!("the upgraded connection is neither a TCP socket nor a TLS stream"))?;
        Ok((Socket::Tls(Box::new(parts.io.into_inner())), parts.read_buf.to_vec()))
    }
}

/// An upgraded connection's socket.
pub enum Socket {
    Plain(Arc<TcpStream>),
    Tls(Box<TlsSocket>),
}
