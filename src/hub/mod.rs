//! The hub: `run(listener, config, shutdown)` serves every WebSocket endpoint and HTTP route of
//! docs/protocol.md on one port until `shutdown` resolves, then closes sockets with 1001 and drains.
//!
//! A push reads as one straight line: API handler or client message → store (when stored) →
//! `layer.publish(group, push)` → this node's [`registry::Registry`] → each connection's
//! [`outbox::Outbox`] → the socket (or, when the socket is full, its queue and then the session task).
//! What a client sends passes [`ratelimit::RateLimit`] in its session before the endpoint sees it.

pub mod admission;
pub mod api;
mod chat;
mod console;
mod cors;
mod dashboard;
pub mod error;
mod events;
mod housekeeping;
mod idempotency;
mod jwks;
pub mod lifetime;
mod listener;
pub mod metrics;
mod notifications;
pub mod outbox;
pub mod presence;
pub mod ratelimit;
pub mod registry;
pub mod session;
pub mod streams;
mod upgrade;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use self::error::HubError;
use self::metrics::Metrics;
use self::presence::{LocalPresence, Presence, RedisPresence};
use self::registry::Registry;
use self::session::{Accepted, Conn, Refusal, Session};
use self::upgrade::Upgrade;
use crate::auth::{AuthError, Verified, Verifier, WsTokens};
use crate::config::HubConfig;
use crate::layer::{ConnId, MemoryLayer, Push, RedisLayer, SharedLayer};
use crate::protocol::close;
use crate::store::Store;

/// The hub's shared state, one per process.
pub struct Hub {
    pub config: HubConfig,
    pub verifier: Verifier,
    pub ws_tokens: WsTokens,
    /// Each user's budget of HTTP requests (PROTOCOL §5, 429).
    pub http_limit: ratelimit::PerUser,
    /// Failed authentications per client address (429 on `/api/` once spent).
    pub auth_failures: ratelimit::AuthFailures,
    /// Each user's budget of WebSocket frames, shared by all their connections on this node.
    pub ws_limit: ratelimit::PerUser,
    pub store: Arc<dyn Store>,
    pub layer: SharedLayer,
    pub registry: Arc<Registry>,
    pub presence: Arc<dyn Presence>,
    pub metrics: Arc<Metrics>,
    /// The connection caps and counts.
    pub admission: Arc<admission::Admission>,
    /// Random per process, shown in `/api/v1/stats`; also the high bits of every [`ConnId`].
    pub node_id: String,
    pub started: std::time::Instant,
    /// Cancelled when the hub shuts down; every session watches it.
    pub shutdown: CancellationToken,
    /// Every session task, so that shutdown can wait for their 1001 closes (axum does not).
    pub sessions: TaskTracker,
    /// The order of this node's publishes per stream (org events, dashboard pushes).
    pub streams: streams::Streams,
    /// With `tls_cert` and `tls_key`: the certificate served, which SIGHUP reloads.
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    conn_base: u64,
    next_conn: AtomicU64,
}

impl Hub {
    /// Opens the store and builds the shared state.
    pub async fn start(config: HubConfig) -> anyhow::Result<Arc<Self>> {
        let verifier = Verifier::new(&config.keys, config.jwt_issuer.clone(), config.jwt_audience.clone())
            .context("invalid JWT key configuration")?
            .with_claims(config.claims.clone());
        let tls = config.tls.clone().map(crate::tls::ServerTls::new).transpose()?.map(Arc::new);
        let store = crate::store::open(&config.database_url, config.database_pool, config.sqlite_synchronous)
            .await
            .with_context(|| format!("cannot open database {}", crate::config::redact_url(&config.database_url)))?;
        let metrics = Arc::new(Metrics::new());
        let registry = Arc::new(Registry::new(Arc::clone(&metrics)));
        let node = rand::random::<u32>();
        let node_id = format!("{node:08x}");
        let shutdown = CancellationToken::new();
        housekeeping::spawn(Arc::clone(&store), config.notification_retention, shutdown.clone());
        verifier.start_fetching(shutdown.clone()).await;
        let ttl = config.limits.ws_token_ttl;
        let (departures, departed) = tokio::sync::mpsc::unbounded_channel();
        let (layer, presence, ws_tokens): (SharedLayer, Arc<dyn Presence>, _) = match &config.redis {
            None => (
                Arc::new(MemoryLayer::new(Arc::clone(&registry))),
                Arc::new(LocalPresence::default()),
                WsTokens::new(ttl),
            ),
            Some(redis) => {
                // Cancelled on failure too: the layer's tasks and connections must not outlive a failed start.
                let stop_on_error = shutdown.clone().drop_guard();
                let counters = metrics.redis_counters();
                let layer = RedisLayer::connect(redis, Arc::clone(&registry), counters, shutdown.clone())
                    .await
                    .context("cannot connect to redis_url")?;
                let presence = RedisPresence::start(layer.commands(), redis, &node_id, departures, shutdown.clone())
                    .await
                    .context("cannot register this node's presence in Redis")?;
                stop_on_error.disarm();
                let tokens = WsTokens::in_redis(ttl, layer.commands(), &redis.prefix);
                (Arc::new(layer), presence, tokens)
            }
        };
        // After the store and Redis connected: their descriptors count as taken.
        let admission = Arc::new(admission::Admission::new(&config, Arc::clone(&metrics)));
        let streams = streams::Streams::new(Arc::clone(&store), Arc::clone(&layer), Arc::clone(&metrics));
        let hub = Arc::new(Self {
            admission,
            ws_tokens,
            http_limit: ratelimit::PerUser::new(&config.limits),
            auth_failures: ratelimit::AuthFailures::new(&config.limits),
            ws_limit: ratelimit::PerUser::new(&config.limits),
            config,
            verifier,
            store,
            layer,
            registry,
            presence,
            metrics,
            node_id,
            started: std::time::Instant::now(),
            shutdown,
            sessions: TaskTracker::new(),
            streams,
            tls,
            conn_base: u64::from(node) << 32,
            next_conn: AtomicU64::new(1),
        });
        tokio::spawn(announce_departures(Arc::clone(&hub), departed));
        Ok(hub)
    }

    /// Reads the TLS certificate and key again (SIGHUP): new handshakes present them, open connections
    /// keep theirs. A pair that does not load is logged and the one in use kept. False without TLS, or
    /// when the reload failed.
    pub fn reload_tls(&self) -> bool {
        let Some(tls) = &self.tls else {
            info!("no TLS certificate to reload (tls_cert is not set)");
            return false;
        };
        let cert = tls.files().cert.display();
        match tls.reload() {
            Ok(()) => {
                info!(%cert, "TLS certificate reloaded; new connections get it");
                true
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), %cert, "TLS certificate not reloaded; keeping the one in use");
                false
            }
        }
    }

    fn next_conn_id(&self) -> ConnId {
        self.conn_base | (self.next_conn.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
    }

    /// Publishes a push for something already stored: a failure is logged and answered `false` (the
    /// caller says `pushed: false`), never an error, since the row exists (DECISIONS.md, 17b).
    pub async fn push_stored(&self, kind: &'static str, group: &str, push: Push) -> bool {
        self.publish(kind, group, push).await.is_ok()
    }

    /// Publishes a push to a group through the layer, counting it by kind.
    pub async fn publish(&self, kind: &'static str, group: &str, push: Push) -> Result<(), HubError> {
        publish_through(&*self.layer, &self.metrics, kind, group, push).await
    }

    /// Verifies a JWT or redeems a ws token (PROTOCOL §1), counting failures by reason.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Verified, AuthError> {
        let result = match token {
            None | Some("") => Err(AuthError::Missing),
            Some(token) if crate::auth::looks_like_jwt(token) => self.verifier.verify_until(token),
            Some(token) => self.ws_tokens.redeem(token).await,
        };
        self.counted(result)
    }

    /// Verifies a JWT (the HTTP API takes no ws tokens), counting a failure by reason.
    pub fn verify_jwt(&self, token: &str) -> Result<Verified, AuthError> {
        self.counted(self.verifier.verify_until(token))
    }

    fn counted<T>(&self, result: Result<T, AuthError>) -> Result<T, AuthError> {
        if let Err(error) = &result {
            self.metrics.auth_failure(error.reason());
        }
        result
    }
}

/// Tells the admins and chat rooms of the users a presence sweep found gone with a crashed node
/// (`admin_left`, `user_status` offline), as the dead node's sessions would have on closing, until
/// the hub stops. The sweep hands each departure to one node only, so each is announced once.
async fn announce_departures(hub: Arc<Hub>, mut departed: tokio::sync::mpsc::UnboundedReceiver<presence::Departure>) {
    loop {
        let departure = tokio::select! {
            departure = departed.recv() => match departure {
                Some(departure) => departure,
                None => return,
            },
            () = hub.shutdown.cancelled() => return,
        };
        if departure.scope == presence::scope::ADMINS {
            dashboard::announce_left(&hub, &departure.user_id, None).await;
        } else if let Some(room_id) = departure.room() {
            chat::announce_offline(&hub, room_id, &departure.user_id, None).await;
        }
    }
}

/// Serves the hub on `listener` until `shutdown` resolves; then closes every socket with 1001, lets
/// in-flight requests finish, and returns within the configured shutdown timeout.
pub async fn run(
    listener: TcpListener,
    config: HubConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_started(listener, Hub::start(config).await?, shutdown).await
}

/// [`run`] with a hub already started (store open, layer connected): `rtctl serve` keeps a new config
/// file only once the hub could start.
pub async fn run_started(
    listener: TcpListener,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr().context("listener has no local address")?;
    info!(
        address = %local,
        tls = hub.tls.is_some(),
        layer = hub.layer.name(),
        store = hub.store.name(),
        node = %hub.node_id,
        "hub listening"
    );
    info!(max_connections = hub.admission.ws_capacity(), "websocket capacity");
    let token = hub.shutdown.clone();
    let limits = &hub.config.limits;
    tokio::spawn(streams::prune(Arc::clone(&hub.store), limits.event_history, limits.event_retention, token.clone()));
    let timeouts = listener::Timeouts {
        header: hub.config.limits.http_header_timeout,
        first_request: hub.config.limits.first_request_timeout,
    };
    let admission = Arc::clone(&hub.admission);
    let tls = hub.tls.as_ref().map(|tls| tls.acceptor());
    let app = app(Arc::clone(&hub));
    let mut server = tokio::spawn(listener::serve(listener, app, tls, admission, timeouts, token.clone()));
    tokio::select! {
        () = shutdown => info!("shutting down"),
        result = &mut server => {
            // The accept loop ends only when told to, so this is a panic: stop the sessions too.
            token.cancel();
            result.context("server task failed")?;
            anyhow::bail!("the server stopped accepting");
        }
    }
    token.cancel();
    hub.sessions.close();
    let drain = async {
        hub.sessions.wait().await;
        let _ = server.await;
    };
    if tokio::time::timeout(hub.config.limits.shutdown_timeout, drain).await.is_err() {
        warn!(timeout = ?hub.config.limits.shutdown_timeout, "shutdown timed out; dropping remaining connections");
    }
    hub.presence.close().await;
    info!("hub stopped");
    Ok(())
}

/// The hub's routes, for `run` and for `oneshot` tests of the HTTP API.
pub fn app(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/ws/notifications/", get(ws_notifications))
        .route("/ws/events/{org_id}/", get(ws_events))
        .route("/ws/admin/dashboard/", get(ws_dashboard))
        .route("/ws/chat/{room_id}/", get(ws_chat))
        .merge(dashboard::routes())
        .merge(chat::routes())
        .merge(api::routes())
        .merge(console::routes(hub.config.console))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&hub), idempotency::guard))
        .layer(axum::middleware::from_fn_with_state(api::BodyGate::new(Arc::clone(&hub)), api::receive_body))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&hub), api::limit_auth_failures))
        .layer(axum::middleware::from_fn_with_state(cors::Cors::new(Arc::clone(&hub)), cors::guard))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&hub), jwks::fetch_unknown_kid))
        .layer(axum::middleware::from_fn(api::log_request))
        .with_state(hub)
}

/// The `token` query parameter (PROTOCOL §1); other parameters are ignored.
#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The token of a request: `?token=` first, then `Authorization: Bearer`.
fn request_token<'a>(query: &'a TokenQuery, headers: &'a HeaderMap) -> Option<&'a str> {
    query.token.as_deref().or_else(|| api::bearer(headers))
}

/// Refuses an `Origin` the hub does not allow (HTTP 403, before the upgrade).
fn check_origin(hub: &Hub, headers: &HeaderMap) -> Result<(), HubError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let allowed = origin.to_str().is_ok_and(|origin| hub.config.allowed_origins.allows(origin, host));
        if !allowed {
            hub.metrics.auth_failure("origin");
            return Err(HubError::forbidden("origin not allowed"));
        }
    }
    Ok(())
}

/// tungstenite's settings for a hub connection.
fn ws_config(hub: &Hub) -> WebSocketConfig {
    let limits = &hub.config.limits;
    // Sized on purpose: tungstenite's default 128 KiB read buffer would cost over 128 KiB per idle
    // connection. Writes need no buffer of tungstenite's: they go to the outbox as they are made.
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(limits.max_frame))
        .max_frame_size(Some(limits.max_frame))
}

/// Read buffer per connection. tungstenite allocates and zero-fills all of it up front, so it is most of
/// an idle connection's memory; client frames are small (a larger one grows the buffer as it arrives).
/// 1 KiB measured 5.6 KiB per idle connection in all, against 8.6 KiB with 4 KiB.
const READ_BUFFER: usize = 1024;

/// Authenticates, answers the upgrade and hands the socket to an endpoint's `open`, which may refuse it.
fn accept<S, F, Fut>(
    hub: Arc<Hub>,
    upgrade: Upgrade,
    client: Option<std::net::IpAddr>,
    token: Option<&str>,
    open: F,
) -> Response
where
    S: Session,
    F: FnOnce(Arc<Hub>, Conn) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Accepted<S>, Refusal>> + Send,
{
    // The same per-address budget of failed authentications as the API's: an address that spent it
    // guessing tokens is refused before its handshake is answered or its token looked at.
    if let Some(ip) = client
        && let Err(wait) = hub.auth_failures.check(ip)
    {
        hub.metrics.connection_refused(admission::refused::AUTH_FAILURES);
        return HubError::rate_limited(wait).into_response();
    }
    let token = token.map(str::to_owned);
    let (response, pending) = upgrade.respond();
    let address = client;
    let client = client.map(tracing::field::display);
    let span = info_span!("ws", endpoint = S::ENDPOINT.label(), client, user = tracing::field::Empty);
    hub.sessions.clone().spawn(
        async move {
            let (socket, read_already) = match pending.socket().await {
                Ok(socket) => socket,
                Err(error) => return debug!(error = %format!("{error:#}"), "upgrade failed"),
            };
            let (queue, endpoint) = (hub.config.limits.queue, S::ENDPOINT);
            let outbox = Arc::new(match socket {
                upgrade::Socket::Plain(tcp) => outbox::Outbox::new(tcp, queue, endpoint),
                upgrade::Socket::Tls(tls) => outbox::Outbox::with_tls(*tls, queue, endpoint),
            });
            let wire = outbox::Wire(Arc::clone(&outbox));
            let socket =
                WebSocketStream::from_partially_read(wire, read_already, Role::Server, Some(ws_config(&hub))).await;
            // Held until the session ends: the node's and the user's caps count open sockets.
            let Some(_node_slot) = hub.admission.node_slot() else {
                return session::refuse(&hub, socket, Refusal::new(close::TRY_AGAIN_LATER, "try again later")).await;
            };
            let Verified { identity, exp: token_exp } = match hub.authenticate(token.as_deref()).await {
                Ok(verified) => verified,
                Err(error @ (AuthError::Unavailable | AuthError::KeysUnavailable)) => {
                    return session::refuse(&hub, socket, Refusal::new(close::INTERNAL, error.to_string())).await;
                }
                Err(error) => {
                    if let Some(ip) = address {
                        hub.auth_failures.failed(ip);
                    }
                    return session::refuse(&hub, socket, Refusal::new(close::UNAUTHORIZED, error.to_string())).await;
                }
            };
            tracing::Span::current().record("user", identity.user_id.as_str());
            let Some(_user_slot) = hub.admission.user_slot(&identity.user_id) else {
                return session::refuse(&hub, socket, Refusal::new(close::RATE_LIMITED, "too many connections")).await;
            };
            // Counted (user and connection) before the endpoint opens, so that the stats in its
            // greeting include it; uncounted when the session ends or was refused.
            let user_id = identity.user_id.clone();
            hub.presence.join(presence::scope::HUB, &user_id).await;
            hub.metrics.connected(S::ENDPOINT);
            let conn = Conn { id: hub.next_conn_id(), identity, outbox, token_exp };
            match open(Arc::clone(&hub), conn).await {
                Ok(accepted) => session::serve(Arc::clone(&hub), socket, accepted).await,
                Err(refusal) => session::refuse(&hub, socket, refusal).await,
            }
            hub.metrics.disconnected(S::ENDPOINT);
            hub.presence.leave(presence::scope::HUB, &user_id).await;
        }
        .instrument(span),
    );
    response
}

/// What every WebSocket route extracts: the upgrade (or why it is not one), the `token` query
/// parameter and the headers (`Origin`, `Host`, `Authorization`).
struct WsRequest {
    upgrade: Result<Upgrade, HubError>,
    query: TokenQuery,
    headers: HeaderMap,
    /// The connection's peer (`None` in `oneshot` tests, which have no connection).
    peer: Option<std::net::IpAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for WsRequest {
    type Rejection = HubError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let upgrade = Upgrade::from_parts(parts, state).await;
        let Query(query) = Query::<TokenQuery>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| HubError::bad_request(rejection.body_text()))?;
        let peer = parts.extensions.get::<listener::Peer>().map(|peer| peer.0.ip());
        Ok(Self { upgrade, query, headers: parts.headers.clone(), peer })
    }
}

impl WsRequest {
    /// Checks the origin, then authenticates, upgrades and hands the socket to `open`.
    fn accept<S, F, Fut>(self, hub: Arc<Hub>, open: F) -> Response
    where
        S: Session,
        F: FnOnce(Arc<Hub>, Conn) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Accepted<S>, Refusal>> + Send,
    {
        let checked = self.upgrade.and_then(|upgrade| check_origin(&hub, &self.headers).map(|()| upgrade));
        let client = self.peer.map(|peer| hub.admission.client_ip(peer, &self.headers));
        match checked {
            Ok(upgrade) => accept(hub, upgrade, client, request_token(&self.query, &self.headers), open),
            Err(error) => error.into_response(),
        }
    }
}

async fn ws_notifications(State(hub): State<Arc<Hub>>, request: WsRequest) -> Response {
    request.accept(hub, notifications::open)
}

async fn ws_events(
    State(hub): State<Arc<Hub>>,
    Path(org_id): Path<String>,
    resume: Query<streams::ResumeQuery>,
    request: WsRequest,
) -> Response {
    match resume.0.resume_from() {
        Ok(from) => request.accept(hub, move |hub, conn| events::open(hub, conn, org_id, from)),
        Err(error) => error.into_response(),
    }
}

async fn ws_dashboard(
    State(hub): State<Arc<Hub>>,
    resume: Query<streams::ResumeQuery>,
    request: WsRequest,
) -> Response {
    match resume.0.resume_from() {
        Ok(from) => request.accept(hub, move |hub, conn| dashboard::open(hub, conn, from)),
        Err(error) => error.into_response(),
    }
}

async fn ws_chat(State(hub): State<Arc<Hub>>, Path(room_id): Path<String>, request: WsRequest) -> Response {
    request.accept(hub, move |hub, conn| chat::open(hub, conn, room_id))
}

/// Publishes a push to a group through `layer`, counting it by kind.
async fn publish_through(
    layer: &dyn crate::layer::Layer,
    metrics: &Metrics,
    kind: &'static str,
    group: &str,
    push: Push,
) -> Result<(), HubError> {
    metrics.published(kind);
    layer.publish(group, push).await.map_err(|e| {
        warn!(error = %e, group, "publish failed");
        HubError::unavailable("channel layer unavailable")
    })
}
