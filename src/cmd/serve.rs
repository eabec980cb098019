//! `rtctl serve`: load (or create) the config file, bind, run the hub until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::cli::serve::ServeArgs;
use crate::config::{FileConfig, listening};

pub async fn run(config_path: &Path, args: ServeArgs) -> anyhow::Result<u8> {
    // A new config file is written only once the hub has started: a start that fails (a taken port, a
    // bad setting, a database it cannot open) must not leave secrets behind that no hub uses, which
    // every later command in this directory would then sign with.
    let (file, fresh) = match FileConfig::load(config_path)? {
        Some(file) => (file, false),
        None => (FileConfig::generate(), true),
    };
    let flags = settings(args);
    let mut config = flags.clone().resolve(&file)?;
    // Every connection is a file descriptor: the usual soft limit (1024) would cap the hub there.
    match crate::bench::limits::raise_nofile() {
        Ok(limit) => info!(open_files = limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
    // Installed before the hub says it is listening: a SIGTERM from then on is a graceful shutdown.
    let shutdown = shutdown_signal()?;
    let listener = listen(config.bind).map_err(|error| bind_error(config.bind, error))?;
    let mut created = false;
    if fresh {
        let (file, wrote) = FileConfig::write_or_adopt(config_path, file)?;
        if wrote {
            info!(path = %config_path.display(), "created config file with a new JWT secret and API key (mode 0600)");
        } else {
            // Another node starting in this directory wrote it first: its secrets are the deployment's.
            config = flags.resolve(&file)?;
        }
        created = wrote;
    }
    info!(path = %config_path.display(), "using config file");
    let hub = match crate::hub::Hub::start(config).await {
        Ok(hub) => hub,
        Err(error) => {
            if created {
                let _ = std::fs::remove_file(config_path);
            }
            return Err(error);
        }
    };
    reload_on_hangup(&hub)?;
    let local = listener.local_addr().context("the listener has no local address")?;
    // Where the other commands run with this config file find the hub; removed when it stops.
    let _recorded = match listening::record(config_path, local, hub.tls.is_some()) {
        Ok(recorded) => Some(recorded),
        Err(error) => {
            let path = listening::path_for(config_path);
            tracing::warn!(path = %path.display(), %error, "cannot record the address; clients here need --url");
            None
        }
    };
    crate::hub::run_started(listener, hub, shutdown).await?;
    Ok(0)
}

/// Why the hub cannot listen, with the fix when the address is taken (often by a hub started earlier).
fn bind_error(addr: SocketAddr, error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::AddrInUse {
        anyhow::anyhow!(
            "cannot listen on {addr}: {error}; another process (another hub?) listens there: stop it, or choose \
             a free address with --bind (RTCTL_BIND, bind in rtctl.toml), e.g. --bind 127.0.0.1:8001"
        )
    } else {
        anyhow::Error::from(error).context(format!("cannot listen on {addr}"))
    }
}

/// Connections the kernel holds for the hub before it accepts them (the kernel caps it at
/// `net.core.somaxconn`). With tokio's 1,024, 10,000 clients connecting at 5,000/s overflowed it: the
/// kernel dropped SYNs, and each drop cost its client a 1 s retransmit (handshake p99.9 1.03 s). A hub
/// that restarts meets such a reconnect storm from every client it had.
const ACCEPT_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As tokio's own bind does: a restarted hub must not wait for the old connections' TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// The flags (and their `RTCTL_*` variables) as settings to lay over the file.
pub(crate) fn settings(args: ServeArgs) -> FileConfig {
    FileConfig {
        url: None,
        bind: args.bind,
        jwt_secret: args.jwt_secret,
        jwt_public_key: args.jwt_public_key,
        jwks: args.jwks,
        jwks_refresh: args.jwks_refresh,
        claim_user_id: args.claims.claim_user_id,
        claim_staff: args.claims.claim_staff,
        claim_orgs: args.claims.claim_orgs,
        claim_name: args.claims.claim_name,
        claim_email: args.claims.claim_email,
        jwt_issuer: args.jwt_issuer,
        jwt_audience: args.jwt_audience,
        api_key: args.api_key,
        allowed_origins: args.allowed_origins,
        database_url: args.database_url,
        database_pool: args.database_pool,
        sqlite_synchronous: args.sqlite_synchronous,
        notification_retention: args.notification_retention,
        redis_url: args.redis_url,
        redis_prefix: args.redis_prefix,
        redis_frame_key: args.redis_frame_key,
        node_ttl: args.node_ttl,
        max_frame: args.max_frame,
        queue: args.queue,
        heartbeat_interval: args.heartbeat_interval,
        heartbeat_timeout: args.heartbeat_timeout,
        send_timeout: args.send_timeout,
        ws_token_ttl: args.ws_token_ttl,
        shutdown_timeout: args.shutdown_timeout,
        message_rate: args.message_rate,
        message_burst: args.message_burst,
        console: args.console,
        max_connections: args.max_connections,
        max_connections_per_user: args.max_connections_per_user,
        max_unauthenticated_per_ip: args.max_unauthenticated_per_ip,
        first_request_timeout: args.first_request_timeout,
        trusted_proxies: args.trusted_proxies,
        max_body_memory: args.max_body_memory,
        event_history: args.event_history,
        event_retention: args.event_retention,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        ca_cert: None,
    }
}

/// Reloads the TLS certificate and key on every SIGHUP (certbot's deploy hook, `systemctl reload`),
/// for as long as the hub runs. Installed before the hub listens, so a SIGHUP never kills it.
fn reload_on_hangup(hub: &std::sync::Arc<crate::hub::Hub>) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let hub = std::sync::Arc::downgrade(hub);
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let Some(hub) = hub.upgrade() else { return };
            hub.reload_tls();
        }
    });
    Ok(())
}

/// Installs the SIGINT (Ctrl-C) and SIGTERM handlers now, and resolves on the first of them. Installing
/// them when the future is first polled instead would leave a window in which SIGTERM kills the process.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
