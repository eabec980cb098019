//! The accept loop: one HTTP connection per socket, with the timeouts that `axum::serve` does not set.
//!
//! `axum::serve` gives hyper no timer, so a connection that never finished its request headers (a
//! slowloris, a port scanner, an idle keep-alive connection) was held open forever: enough of them
//! exhaust the file descriptors, and one of them held a graceful shutdown to its full timeout.

use std::io;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

/// How long the loop waits after an accept error that is not one connection's (no file descriptor
/// left, say) before accepting again, instead of spinning on it.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves `app` over HTTP/1.1 on `listener` until `shutdown` is cancelled; then stops accepting, lets
/// every HTTP connection finish the request it is serving, and returns. Upgraded WebSocket connections
/// are not waited for here: their sessions have shutdown signals of their own.
///
/// `header_timeout` bounds the wait for a request's headers, from the connection's first byte on and
/// for the next request on an idle keep-alive connection: a connection that sends none within it is
/// closed. HTTP/1.1 only, which WebSockets need: hyper's HTTP/2 detection would read the first bytes
/// before any timer runs.
pub async fn serve(listener: TcpListener, app: Router, header_timeout: Duration, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    error!(%error, "accept error");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // No Nagle: a push must leave now, not wait for the ACK of the previous one (which a client's
        // delayed ACK can hold for 40 ms).
        if let Err(error) = tcp.set_nodelay(true) {
            warn!(%error, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
            // Upgrades hand over the socket as the `TokioIo<TcpStream>` that `upgrade::Pending` unwraps.
            let mut connection = pin!(builder.serve_connection(TokioIo::new(tcp), service).with_upgrades());
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                debug!(%error, "connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// Errors of one connection that was reset before we took it: the next accept is unaffected.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}
