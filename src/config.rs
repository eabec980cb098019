//! Configuration: the `rtctl.toml` file, `RTCTL_*` variables and flags, merged once into validated
//! structs that the library takes. Precedence: flags > env > file > defaults (clap reads flags and env;
//! this module adds the file and the defaults).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::auth::{ClaimMap, KeySource, StaffRule};
use crate::tls::TlsFiles;

pub mod listening;

/// Where the hub listens when nothing says otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";
/// The hub's URL for the CLI when nothing says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8000";
/// The embedded database, relative to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://rtctl-data/rtctl.db";
/// The largest `database_pool` accepted: far beyond what one node can use, well below a server's limit.
pub const MAX_DATABASE_POOL: u32 = 1000;
/// How long a hub node's liveness key in Redis outlives its last refresh.
pub const DEFAULT_NODE_TTL: Duration = Duration::from_secs(30);
/// How long a client may take to send an HTTP request's headers (hyper's own default, which
/// `axum::serve` never armed), also the longest an idle keep-alive connection is kept.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the hub waits for a client to answer its close frame before it drops the connection: long
/// enough for a client that is reading to take the rest of a partly written frame and the close.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an HTTP request's body may take to arrive (1 MiB at most: 35 KB/s will do).
pub const DEFAULT_HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest `node_ttl`: it is refreshed every third of it, and a refresh that a busy Redis or a
/// pause delays past it makes the node's share vanish until its next refresh.
pub const MIN_NODE_TTL: Duration = Duration::from_secs(3);
/// Starts every Redis key and channel name unless `redis_prefix` says otherwise.
pub const DEFAULT_REDIS_PREFIX: &str = "rtctl";
/// The config file every subcommand reads, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "rtctl.toml";
/// Largest inbound WebSocket frame (PROTOCOL §2, close 1009 above it).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;
/// Outbound queue per connection, in messages. A client this far behind is closed with 4008; 1024
/// absorbs a burst of a thousand pushes (a mass notification) without punishing a healthy reader.
pub const DEFAULT_QUEUE: usize = 1024;
/// How often the hub sends a WebSocket Ping (PROTOCOL §3).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(20);
/// How long a connection may stay silent before it is closed with 4000 (PROTOCOL §3).
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client's socket may take nothing of what is queued for it before it is a slow consumer
/// (4008). Long enough for a phone on a bad network; a reader that takes anything restarts it.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Pushes each stream (an org's events, the dashboard) keeps for `resume` (PROTOCOL §7): a minute of
/// a busy org's events, and within the default queue, through which a replay goes.
pub const DEFAULT_EVENT_HISTORY: u32 = 1000;
/// How long a stream's pushes stay resumable: a laptop closed overnight reloads instead.
pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How long a ws token stays valid (PROTOCOL §1).
pub const DEFAULT_WS_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);
/// How long shutdown waits for sockets and in-flight requests.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames a user may send per second over all their connections, sustained (PROTOCOL §2, 4029). A person typing, reading and
/// paging stays far below; a client stuck in a loop sends thousands.
pub const DEFAULT_MESSAGE_RATE: u32 = 50;
/// Frames a user may send at once above the sustained rate: a client that reconnects and replays
/// its state, or a script posting a batch, fits.
pub const DEFAULT_MESSAGE_BURST: u32 = 200;

/// WebSocket connections one user may hold on a node (PROTOCOL §7: 4029 above it). Dozens of tabs and
/// devices fit; one token opening thousands of sockets does not.
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: usize = 100;
/// Connections from one client address that may wait for their first request at once. A browser opens
/// six per host; 240 idle sockets from one address once starved `/healthz`.
pub const DEFAULT_MAX_UNAUTHENTICATED_PER_IP: usize = 64;
/// How long a new connection may take to send its first request's headers before it is dropped: a
/// client connects and asks at once, and an idle socket holds a file descriptor for nothing.
pub const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes all HTTP request bodies in flight on a node may hold together: 64 bodies of the 1 MiB maximum.
pub const DEFAULT_MAX_BODY_MEMORY: usize = 64 * 1024 * 1024;

/// A secret value (JWT secret, API key) that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for signing and comparing; never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which browser origins may open WebSockets (PROTOCOL §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Only an origin whose host equals the request's `Host` (the default).
    SameHost,
    /// Any origin (`*`).
    Any,
    /// These origins exactly (`scheme://host[:port]`, lowercased, no trailing slash).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Parses `*` or a comma-separated list of origins.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        if text == "*" {
            return Ok(Self::Any);
        }
        let mut origins = Vec::new();
        for origin in text.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (scheme, host) = origin
                .split_once("://")
                .with_context(|| format!("`{origin}` is not an origin like https://app.example.com"))?;
            if !matches!(scheme, "http" | "https") || host.is_empty() || host.contains('/') {
                bail!("`{origin}` is not an origin like https://app.example.com");
            }
            origins.push(origin.to_ascii_lowercase());
        }
        if origins.is_empty() {
            bail!("expected `*` or a comma-separated list of origins");
        }
        Ok(Self::List(origins))
    }

    /// May a request with this `Origin` header and this `Host` header upgrade?
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        match self {
            Self::Any => true,
            Self::List(list) => list.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin)),
            Self::SameHost => {
                let origin_host = origin.split_once("://").map(|(_, rest)| rest);
                matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
            }
        }
    }
}

/// Failed authentications one client address may collect at once: far more than a person mistyping or
/// a backend with a rotated key sends before noticing, far fewer than a key-guessing or 401 flood.
pub const DEFAULT_AUTH_FAILURE_BURST: u32 = 100;
/// Failed authentications forgiven per second per address, once the burst is spent.
pub const DEFAULT_AUTH_FAILURE_RATE: u32 = 10;

/// Per-connection limits and timers.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_frame: usize,
    pub queue: usize,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub send_timeout: Duration,
    pub ws_token_ttl: Duration,
    pub shutdown_timeout: Duration,
    /// Inbound text frames per second per user (all their connections), sustained; 0 turns the limit off.
    pub message_rate: u32,
    /// Inbound text frames a user may send at once before the sustained rate applies.
    pub message_burst: u32,
    /// How long a client may take to send an HTTP request's headers, or to start the next request on
    /// an idle keep-alive connection, before the hub closes the connection.
    pub http_header_timeout: Duration,
    /// How long an HTTP request's body may take to arrive before the hub answers 408.
    pub http_request_timeout: Duration,
    /// How long the hub waits for the client's answer to its close frame (not a flag; tests lengthen it).
    pub close_timeout: Duration,
    /// WebSocket connections this node serves at once (1013 above it); `None`: as many as its
    /// open-file limit allows, less the descriptors kept for HTTP (`hub::admission`).
    pub max_connections: Option<usize>,
    /// WebSocket connections one user may hold on this node (4029 above it).
    pub max_connections_per_user: usize,
    /// Connections from one client address still waiting for their first request (429 above it).
    pub max_unauthenticated_per_ip: usize,
    /// How long a new connection may take to send its first request's headers.
    pub first_request_timeout: Duration,
    /// Bytes all request bodies in flight may hold together (503 above it).
    pub max_body_memory: usize,
    /// Pushes each stream keeps for `resume`; a replay sends at most this many.
    pub event_history: u32,
    /// How long a stream's pushes stay resumable.
    pub event_retention: Duration,
    /// Failed authentications (HTTP 401) one client address may have at once before its `/api/`
    /// requests get 429; 0 turns the limit off. Not a flag: [`DEFAULT_AUTH_FAILURE_BURST`].
    pub auth_failure_burst: u32,
    /// Failed authentications forgiven per second per client address.
    pub auth_failure_rate: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            queue: DEFAULT_QUEUE,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            ws_token_ttl: DEFAULT_WS_TOKEN_TTL,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            message_rate: DEFAULT_MESSAGE_RATE,
            message_burst: DEFAULT_MESSAGE_BURST,
            http_header_timeout: DEFAULT_HTTP_HEADER_TIMEOUT,
            http_request_timeout: DEFAULT_HTTP_REQUEST_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            max_connections: None,
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
            max_unauthenticated_per_ip: DEFAULT_MAX_UNAUTHENTICATED_PER_IP,
            first_request_timeout: DEFAULT_FIRST_REQUEST_TIMEOUT,
            max_body_memory: DEFAULT_MAX_BODY_MEMORY,
            event_history: DEFAULT_EVENT_HISTORY,
            event_retention: DEFAULT_EVENT_RETENTION,
            auth_failure_burst: DEFAULT_AUTH_FAILURE_BURST,
            auth_failure_rate: DEFAULT_AUTH_FAILURE_RATE,
        }
    }
}

/// Everything `hub::run` needs, validated. Its `Debug` hides every secret, the database password too.
#[derive(Clone)]
pub struct HubConfig {
    /// Where `rtctl serve` binds (tests bind their own listener and ignore it).
    pub bind: SocketAddr,
    pub keys: KeySource,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// Where the identity is in a token's claims.
    pub claims: ClaimMap,
    pub api_key: Secret,
    pub allowed_origins: AllowedOrigins,
    pub database_url: String,
    /// Most connections this node opens to the database; `None`: the store's default (SQLite 8,
    /// PostgreSQL 16).
    pub database_pool: Option<u32>,
    /// How SQLite syncs commits: FULL (the default, durable against power loss) or NORMAL.
    pub sqlite_synchronous: crate::store::SqliteSync,
    /// Notifications older than this are deleted in the background; `None` keeps them forever.
    pub notification_retention: Option<Duration>,
    /// Where the hub nodes meet; `None`: this node alone, in memory.
    pub redis: Option<RedisConfig>,
    pub limits: Limits,
    /// Serve the web console at `/console/` (on unless turned off).
    pub console: bool,
    /// Peers whose `X-Forwarded-For` names the client (proxies in front of the hub); empty: none.
    pub trusted_proxies: TrustedProxies,
    /// Serve HTTPS and WSS with this certificate and key; `None`: plain HTTP (behind a proxy, say).
    pub tls: Option<TlsFiles>,
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("bind", &self.bind)
            .field("keys", &self.keys)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("claims", &self.claims)
            .field("api_key", &self.api_key)
            .field("allowed_origins", &self.allowed_origins)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_pool", &self.database_pool)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field("notification_retention", &self.notification_retention)
            .field("redis", &self.redis)
            .field("limits", &self.limits)
            .field("console", &self.console)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Words that make a query parameter's value a credential, wherever they appear in its name (`token`,
/// `access_token`, `api_key`, `password`, sqlx's `sslpassword`, `X-Amz-Signature`, ...).
const SECRET_PARAM_WORDS: &[&str] = &["token", "jwt", "auth", "key", "pass", "secret", "ticket", "signature"];

/// Any URL as it may be printed or logged (a database, Redis, HTTP or WebSocket URL): the user info
/// becomes `***@`, and so does the value of every query parameter that holds a credential (its name
/// says so, or the value is a ws token or a JWT); the rest stays, to say where we went.
pub fn redact_url(url: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let mut shown = mask_userinfo(base);
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
    let name = name.to_ascii_lowercase();
    let looks_like_jwt = value.starts_with("eyJ") && value.matches('.').count() == 2;
    !value.is_empty()
        && (SECRET_PARAM_WORDS.iter().any(|word| name.contains(word))
            || value.starts_with(crate::auth::WS_TOKEN_PREFIX)
            || looks_like_jwt)
}

/// `url` with its user info (`user:pass@`) shown as `***@`. Only the authority is looked at: an `@` in
/// the path (a user id such as `a@b`) is not a password.
fn mask_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// The proxies in front of the hub, as addresses and CIDR ranges (`10.0.0.0/8`, `::1`): a connection
/// from one of them is many clients', and its `X-Forwarded-For` says whose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(std::net::IpAddr, u8)>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and `address/prefix` ranges.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut nets = Vec::new();
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let wrong = || format!("`{item}` is not an address or a range like 10.0.0.0/8");
            let (addr, prefix) = item.split_once('/').map_or((item, None), |(addr, prefix)| (addr, Some(prefix)));
            let addr: std::net::IpAddr = addr.parse().with_context(wrong)?;
            let bits = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(prefix) => prefix.parse::<u8>().ok().filter(|p| *p <= bits).with_context(wrong)?,
                None => bits,
            };
            nets.push((addr, prefix));
        }
        Ok(Self(nets))
    }

    /// Whether `ip` is one of the proxies (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|(net, prefix)| match (net, ip) {
            (std::net::IpAddr::V4(net), std::net::IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                u32::from(*net) & mask == u32::from(ip) & mask
            }
            (std::net::IpAddr::V6(net), std::net::IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                u128::from(*net) & mask == u128::from(ip) & mask
            }
            _ => false,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A Redis shared by the hub nodes: the channel layer, ws tokens and presence.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// May hold a password: never logged.
    pub url: Secret,
    /// Starts every key and channel name.
    pub prefix: String,
    /// How long a node's liveness key outlives its last refresh (every third of this): a node that died
    /// without closing its sockets stops counting in presence that long after.
    pub node_ttl: Duration,
    /// Keys the HMAC-SHA256 tag on every frame the nodes exchange through Redis: a node drops what it
    /// cannot verify, so a client of the same Redis cannot write into users' sockets. Every node of a
    /// deployment must have the same one.
    pub frame_key: Secret,
}

impl HubConfig {
    /// A hub with fresh random secrets and its database under `data_dir`: for tests and `bench --spawn`.
    pub fn ephemeral(data_dir: &Path) -> Self {
        Self {
            bind: DEFAULT_BIND.parse().expect("the default bind address parses"),
            keys: KeySource::Secret(crate::auth::random_secret()),
            jwt_issuer: None,
            jwt_audience: None,
            claims: ClaimMap::default(),
            api_key: Secret::new(crate::auth::random_secret()),
            allowed_origins: AllowedOrigins::SameHost,
            database_url: format!("sqlite://{}", data_dir.join("rtctl.db").display()),
            database_pool: None,
            sqlite_synchronous: crate::store::SqliteSync::default(),
            notification_retention: None,
            redis: None,
            limits: Limits::default(),
            console: true,
            trusted_proxies: TrustedProxies::default(),
            tls: None,
        }
    }

    /// The HS256 secret, when the hub verifies with one.
    pub fn jwt_secret(&self) -> Option<&str> {
        match &self.keys {
            KeySource::Secret(secret) => Some(secret),
            _ => None,
        }
    }
}

/// The `rtctl.toml` file, or the flags laid over it: every setting is optional; names match the long
/// flags with `_`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub bind: Option<String>,
    pub url: Option<String>,
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<PathBuf>,
    /// A JWKS file path, or an `http(s)://` URL fetched and kept fresh.
    pub jwks: Option<String>,
    pub jwks_refresh: Option<String>,
    pub claim_user_id: Option<String>,
    pub claim_staff: Option<String>,
    pub claim_orgs: Option<String>,
    pub claim_name: Option<String>,
    pub claim_email: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub api_key: Option<String>,
    pub allowed_origins: Option<String>,
    pub database_url: Option<String>,
    pub database_pool: Option<u32>,
    pub sqlite_synchronous: Option<String>,
    pub notification_retention: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: Option<String>,
    pub redis_frame_key: Option<String>,
    pub node_ttl: Option<String>,
    pub max_frame: Option<String>,
    pub queue: Option<usize>,
    pub heartbeat_interval: Option<String>,
    pub heartbeat_timeout: Option<String>,
    pub send_timeout: Option<String>,
    pub ws_token_ttl: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub message_rate: Option<u32>,
    pub message_burst: Option<u32>,
    pub console: Option<bool>,
    pub max_connections: Option<usize>,
    pub max_connections_per_user: Option<usize>,
    pub max_unauthenticated_per_ip: Option<usize>,
    pub first_request_timeout: Option<String>,
    pub trusted_proxies: Option<String>,
    pub max_body_memory: Option<String>,
    pub event_history: Option<u32>,
    pub event_retention: Option<String>,
    /// The hub's certificate chain (PEM); with `tls_key`, it serves HTTPS and WSS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// For the client commands: the CA certificates (PEM) to trust instead of the platform's.
    pub ca_cert: Option<PathBuf>,
}

/// A TOML error as one line, `line L, column C: what`, that shows no value of the file: toml's own
/// text quotes the offending line, and serde's names the value of the wrong type, and in this file
/// either may be the JWT secret or the API key.
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    // "invalid type: integer `5`, expected a string" → "invalid type: integer, expected a string". The
    // expected part is the key's type, never the file's text, so the last ", expected " is serde's.
    let message = ["invalid type: ", "invalid value: "]
        .iter()
        .find_map(|prefix| {
            let (found, expected) = message.strip_prefix(prefix)?.rsplit_once(", expected ")?;
            let kind = found.split_whitespace().next().unwrap_or("value");
            Some(format!("{prefix}{kind}, expected {expected}"))
        })
        .unwrap_or_else(|| message.to_owned());
    let Some(span) = error.span() else { return message };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    format!("line {line}, column {column}: {message}")
}

impl FileConfig {
    /// Reads the file; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        };
        let config = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!(toml_error(&text, &e)))
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(Some(config))
    }

    /// Creates the file, or reads it when another node starting in the same directory created it
    /// between our look and our write (it is written whole, see `write_private`): every node of a
    /// deployment must use the same secrets. True when this call created it.
    pub fn create_or_adopt(path: &Path) -> anyhow::Result<(Self, bool)> {
        Self::write_or_adopt(path, Self::generate())
    }

    /// [`FileConfig::create_or_adopt`] with settings made beforehand by [`FileConfig::generate`]: `serve`
    /// checks them (and binds) first, so that a start that fails leaves no file with unused secrets.
    pub fn write_or_adopt(path: &Path, fresh: Self) -> anyhow::Result<(Self, bool)> {
        match fresh.create(path) {
            Ok(config) => Ok((config, true)),
            Err(error) => Ok((Self::load(path)?.ok_or(error)?, false)),
        }
    }

    /// A new file's settings: a fresh JWT secret, API key and Redis frame key, nothing else.
    pub fn generate() -> Self {
        Self {
            jwt_secret: Some(crate::auth::random_secret()),
            api_key: Some(crate::auth::random_secret()),
            redis_frame_key: Some(crate::auth::random_secret()),
            ..Self::default()
        }
    }

    /// Writes these settings as a new file, readable by its owner only.
    fn create(self, path: &Path) -> anyhow::Result<Self> {
        let config = self;
        let text = format!(
            "# rtctl configuration, created by the first `rtctl serve`. Every subcommand reads it.\n\
             # Settings are named like the long flags (bind, database_url, allowed_origins, ...);\n\
             # flags and RTCTL_* variables override them.\n{}",
            toml::to_string(&config).context("cannot encode the config file")?
        );
        write_private(path, &text).with_context(|| format!("cannot create config file {}", path.display()))?;
        Ok(config)
    }
}

/// Writes a new file readable by its owner only (tempfile creates 0600), whole or not at all: it is
/// written under a temporary name and linked into place only if `path` does not exist, so a second
/// `rtctl serve` starting beside the first never reads it half-written, and never overwrites it.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // tempfile names its temporary file in its errors; the reader knows only `path`, which the caller names.
    let plain = |error: std::io::Error| match error.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(error.kind(), error.kind().to_string()),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(plain)?;
    file.write_all(text.as_bytes()).map_err(plain)?;
    file.as_file().sync_all().map_err(plain)?;
    file.persist_noclobber(path).map_err(|e| plain(e.error))?;
    Ok(())
}

/// The Redis frame key of a deployment whose settings name none: derived from the API key (which every
/// node shares, and which Redis never sees), so that a config file written before `redis_frame_key`
/// existed still authenticates its frames.
fn derived_frame_key(api_key: &Secret) -> Secret {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(api_key.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(b"rtctl redis frame key v1");
    let digest = mac.finalize().into_bytes();
    Secret::new(digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Parses a duration such as `20s`, `1m30s`, `1h`, naming the setting when it is wrong.
pub fn parse_duration(setting: &str, text: &str) -> anyhow::Result<Duration> {
    let duration = humantime::parse_duration(text.trim())
        .with_context(|| format!("invalid {setting} `{text}`: expected a duration like 20s, 5m or 1h"))?;
    if duration.is_zero() {
        bail!("invalid {setting} `{text}`: must be more than zero");
    }
    Ok(duration)
}

/// Parses a size such as `65536`, `64KiB`, `1MiB` (also `k`, `KB`, `M`, `MB`, read as binary units).
pub fn parse_size(setting: &str, text: &str) -> anyhow::Result<usize> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => bail!("invalid {setting} `{text}`: expected a size like 65536, 64KiB or 1MiB"),
    };
    let number: usize = number
        .parse()
        .with_context(|| format!("invalid {setting} `{text}`: expected a size like 65536, 64KiB or 1MiB"))?;
    number.checked_mul(multiplier).with_context(|| format!("invalid {setting} `{text}`: too large"))
}

/// The settings of `rtctl serve` from flags and env (clap merged those two) are a [`FileConfig`] too:
/// `flags.resolve(&file)` lays them over the file, then the defaults.
impl FileConfig {
    /// Merges with the file and the defaults and validates; every error names its setting.
    pub fn resolve(self, file: &FileConfig) -> anyhow::Result<HubConfig> {
        let claims = self.claim_map(file)?;
        let bind_text = self.bind.or(file.bind.clone()).unwrap_or_else(|| DEFAULT_BIND.to_owned());
        // A port alone (`--bind 8012`) is one on the loopback address, as the default is.
        let bind = match bind_text.trim().parse::<u16>() {
            Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
            Err(_) => bind_text.parse().with_context(|| {
                format!("invalid bind `{bind_text}`: expected an address like 127.0.0.1:8000 or a port like 8000")
            })?,
        };

        let jwks_refresh = match self.jwks_refresh.or(file.jwks_refresh.clone()) {
            Some(text) => parse_duration("jwks_refresh", &text)?,
            None => crate::auth::DEFAULT_JWKS_REFRESH,
        };
        let keys = if let Some(jwks) = self.jwks.or(file.jwks.clone()) {
            if jwks.starts_with("http://") || jwks.starts_with("https://") {
                KeySource::JwksUrl(crate::auth::JwksUrl { refresh: jwks_refresh, ..crate::auth::JwksUrl::new(jwks) })
            } else {
                let text =
                    std::fs::read_to_string(&jwks).with_context(|| format!("invalid jwks: cannot read {jwks}"))?;
                KeySource::Jwks(text)
            }
        } else if let Some(path) = self.jwt_public_key.or(file.jwt_public_key.clone()) {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("invalid jwt_public_key: cannot read {}", path.display()))?;
            KeySource::PublicKeyPem(text)
        } else {
            match self.jwt_secret.or(file.jwt_secret.clone()) {
                Some(secret) if secret.len() >= 16 => KeySource::Secret(secret),
                Some(_) => bail!("invalid jwt_secret: must be at least 16 characters"),
                None => {
                    bail!("no JWT key configured: set jwt_secret in the config file, --jwt-secret or RTCTL_JWT_SECRET")
                }
            }
        };
        let jwt_issuer = self.jwt_issuer.or(file.jwt_issuer.clone());
        let jwt_audience = self.jwt_audience.or(file.jwt_audience.clone());
        // Building a verifier here turns a bad key file into a start-up error, not a 401 per request.
        let setting = match &keys {
            KeySource::Secret(_) => "jwt_secret",
            KeySource::PublicKeyPem(_) => "jwt_public_key",
            KeySource::Jwks(_) | KeySource::JwksUrl(_) => "jwks",
        };
        crate::auth::Verifier::new(&keys, jwt_issuer.clone(), jwt_audience.clone())
            .with_context(|| format!("invalid {setting}"))?;

        let api_key = match self.api_key.or(file.api_key.clone()) {
            Some(key) if key.len() >= 16 => Secret::new(key),
            Some(_) => bail!("invalid api_key: must be at least 16 characters"),
            None => bail!("no API key configured: set api_key in the config file, --api-key or RTCTL_API_KEY"),
        };
        let allowed_origins = match self.allowed_origins.or(file.allowed_origins.clone()) {
            Some(text) => AllowedOrigins::parse(&text).context("invalid allowed_origins")?,
            None => AllowedOrigins::SameHost,
        };
        let database_url =
            self.database_url.or(file.database_url.clone()).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !crate::store::is_sqlite(&database_url) && !crate::store::is_postgres(&database_url) {
            bail!("invalid database_url: expected sqlite://PATH or postgres://USER@HOST/DB");
        }
        let database_pool = self.database_pool.or(file.database_pool);
        if database_pool.is_some_and(|pool| !(1..=MAX_DATABASE_POOL).contains(&pool)) {
            bail!("invalid database_pool: must be between 1 and {MAX_DATABASE_POOL}");
        }
        let sqlite_synchronous = match self.sqlite_synchronous.or(file.sqlite_synchronous.clone()) {
            Some(text) => text.parse().map_err(|e: String| anyhow::anyhow!(e))?,
            None => crate::store::SqliteSync::default(),
        };
        let defaults = Limits::default();
        let duration = |setting: &str, flag: Option<String>, file: &Option<String>, default: Duration| {
            flag.or(file.clone()).map_or(Ok(default), |text| parse_duration(setting, &text))
        };
        let notification_retention = match self.notification_retention.or(file.notification_retention.clone()) {
            Some(text) if text.trim() == "off" => None,
            Some(text) => Some(parse_duration("notification_retention", &text)?),
            None => None,
        };
        let redis = match self.redis_url.or(file.redis_url.clone()) {
            Some(url) => {
                // The crate's own parser, so that what passes here connects the same way; its message
                // never holds the URL (which may hold a password).
                redis::IntoConnectionInfo::into_connection_info(url.as_str())
                    .map_err(|e| anyhow::anyhow!("invalid redis_url: {e}"))?;
                let prefix =
                    self.redis_prefix.or(file.redis_prefix.clone()).unwrap_or_else(|| DEFAULT_REDIS_PREFIX.into());
                if prefix.is_empty() || prefix.contains(char::is_whitespace) {
                    bail!("invalid redis_prefix `{prefix}`: must be non-empty, without spaces");
                }
                let node_ttl = duration("node_ttl", self.node_ttl, &file.node_ttl, DEFAULT_NODE_TTL)?;
                if node_ttl < MIN_NODE_TTL {
                    bail!("invalid node_ttl: must be at least {}", humantime::format_duration(MIN_NODE_TTL));
                }
                let frame_key = match self.redis_frame_key.or(file.redis_frame_key.clone()) {
                    Some(key) if key.len() >= 16 => Secret::new(key),
                    Some(_) => bail!("invalid redis_frame_key: must be at least 16 characters"),
                    // A config file from before the setting: every node already shares the API key.
                    None => derived_frame_key(&api_key),
                };
                Some(RedisConfig { url: Secret::new(url), prefix, node_ttl, frame_key })
            }
            None => None,
        };

        let max_frame = match self.max_frame.or(file.max_frame.clone()) {
            Some(text) => parse_size("max_frame", &text)?,
            None => defaults.max_frame,
        };
        if !(1024..=16 * 1024 * 1024).contains(&max_frame) {
            bail!("invalid max_frame {max_frame}: must be between 1KiB and 16MiB");
        }
        let queue = self.queue.or(file.queue).unwrap_or(defaults.queue);
        if queue == 0 {
            bail!("invalid queue: must be at least 1");
        }
        let message_rate = self.message_rate.or(file.message_rate).unwrap_or(defaults.message_rate);
        let message_burst = self.message_burst.or(file.message_burst).unwrap_or(defaults.message_burst);
        if message_rate > 0 && message_burst == 0 {
            bail!("invalid message_burst: must be at least 1 while message_rate is on");
        }
        let limits = Limits {
            max_frame,
            queue,
            heartbeat_interval: duration(
                "heartbeat_interval",
                self.heartbeat_interval,
                &file.heartbeat_interval,
                defaults.heartbeat_interval,
            )?,
            heartbeat_timeout: duration(
                "heartbeat_timeout",
                self.heartbeat_timeout,
                &file.heartbeat_timeout,
                defaults.heartbeat_timeout,
            )?,
            send_timeout: duration("send_timeout", self.send_timeout, &file.send_timeout, defaults.send_timeout)?,
            ws_token_ttl: duration("ws_token_ttl", self.ws_token_ttl, &file.ws_token_ttl, defaults.ws_token_ttl)?,
            shutdown_timeout: duration(
                "shutdown_timeout",
                self.shutdown_timeout,
                &file.shutdown_timeout,
                defaults.shutdown_timeout,
            )?,
            message_rate,
            message_burst,
            max_connections: match self.max_connections.or(file.max_connections) {
                Some(0) => bail!("invalid max_connections: must be at least 1"),
                other => other,
            },
            max_connections_per_user: match self.max_connections_per_user.or(file.max_connections_per_user) {
                Some(0) => bail!("invalid max_connections_per_user: must be at least 1"),
                other => other.unwrap_or(defaults.max_connections_per_user),
            },
            max_unauthenticated_per_ip: match self.max_unauthenticated_per_ip.or(file.max_unauthenticated_per_ip) {
                Some(0) => bail!("invalid max_unauthenticated_per_ip: must be at least 1"),
                other => other.unwrap_or(defaults.max_unauthenticated_per_ip),
            },
            first_request_timeout: duration(
                "first_request_timeout",
                self.first_request_timeout,
                &file.first_request_timeout,
                defaults.first_request_timeout,
            )?,
            max_body_memory: match self.max_body_memory.or(file.max_body_memory.clone()) {
                Some(text) => match parse_size("max_body_memory", &text)? {
                    size if size < crate::protocol::limits::MAX_BODY => {
                        bail!("invalid max_body_memory {size}: must be at least 1MiB, the largest body")
                    }
                    size => size,
                },
                None => defaults.max_body_memory,
            },
            event_history: self.event_history.or(file.event_history).unwrap_or(defaults.event_history),
            event_retention: duration(
                "event_retention",
                self.event_retention,
                &file.event_retention,
                defaults.event_retention,
            )?,
            ..defaults
        };
        // A replay goes through the connection's queue: a longer one would close the client as slow.
        if limits.event_history == 0 || limits.event_history as usize > limits.queue {
            bail!(
                "invalid event_history {}: must be between 1 and queue ({}), as a resume replays through the queue",
                limits.event_history,
                limits.queue
            );
        }
        if limits.event_retention.is_zero() {
            bail!("invalid event_retention: must be longer than 0s");
        }
        if limits.heartbeat_timeout <= limits.heartbeat_interval {
            bail!("invalid heartbeat_timeout: must be longer than heartbeat_interval");
        }
        let tls = match (self.tls_cert.or(file.tls_cert.clone()), self.tls_key.or(file.tls_key.clone())) {
            (Some(cert), Some(key)) => {
                let files = TlsFiles { cert, key };
                // Loaded here so that a wrong file stops the start (and `config check`), naming the setting.
                crate::tls::load(&files)?;
                Some(files)
            }
            (None, None) => None,
            (Some(_), None) => bail!("invalid tls_cert: tls_key is not set; TLS needs both (--tls-key, RTCTL_TLS_KEY)"),
            (None, Some(_)) => {
                bail!("invalid tls_key: tls_cert is not set; TLS needs both (--tls-cert, RTCTL_TLS_CERT)")
            }
        };
        Ok(HubConfig {
            bind,
            keys,
            jwt_issuer,
            jwt_audience,
            claims,
            api_key,
            allowed_origins,
            database_url,
            database_pool,
            sqlite_synchronous,
            notification_retention,
            redis,
            limits,
            console: self.console.or(file.console).unwrap_or(true),
            trusted_proxies: match self.trusted_proxies.or(file.trusted_proxies.clone()) {
                Some(text) => TrustedProxies::parse(&text).context("invalid trusted_proxies")?,
                None => TrustedProxies::default(),
            },
            tls,
        })
    }
}

impl FileConfig {
    /// The claim mapping these settings (over `file`'s, over the defaults) give; errors name the setting.
    pub fn claim_map(&self, file: &FileConfig) -> anyhow::Result<ClaimMap> {
        let defaults = ClaimMap::default();
        let pick = |flag: &Option<String>, file: &Option<String>| flag.clone().or(file.clone());
        let paths = |setting: &str, text: Option<String>, default: Vec<String>| match text {
            Some(text) => crate::auth::parse_claim_paths(&text).with_context(|| format!("invalid {setting}")),
            None => Ok(default),
        };
        let path = |setting: &str, text: Option<String>, default: String| match text {
            Some(text) => crate::auth::claim_path(&text).with_context(|| format!("invalid {setting}")),
            None => Ok(default),
        };
        Ok(ClaimMap {
            user_id: paths("claim_user_id", pick(&self.claim_user_id, &file.claim_user_id), defaults.user_id)?,
            staff: match pick(&self.claim_staff, &file.claim_staff) {
                Some(text) => StaffRule::parse(&text).context("invalid claim_staff")?,
                None => defaults.staff,
            },
            orgs: paths("claim_orgs", pick(&self.claim_orgs, &file.claim_orgs), defaults.orgs)?,
            name: path("claim_name", pick(&self.claim_name, &file.claim_name), defaults.name)?,
            email: path("claim_email", pick(&self.claim_email, &file.claim_email), defaults.email)?,
        })
    }
}

/// What the client subcommands need to reach a hub: its URL and, where they mint or publish, its
/// secrets.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://` or `https://` base URL of the hub, without a trailing slash.
    pub url: String,
    pub jwt_secret: Option<Secret>,
    pub api_key: Option<Secret>,
    /// The config file that was looked at (`--config`), named when a secret is missing.
    pub config_file: PathBuf,
    /// Whether `config_file` exists.
    pub config_file_found: bool,
    /// Where the secrets came from, for the hint when the hub refuses a secret.
    pub sources: Sources,
    /// With `ca_cert`: the TLS settings that trust its CAs only; `None`: the platform's roots.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Where a [`ClientConfig`]'s secrets came from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The JWT secret came from the config file, not from a flag or `RTCTL_JWT_SECRET`.
    pub jwt_secret_from_file: bool,
    /// The API key came from the config file, not from a flag or `RTCTL_API_KEY`.
    pub api_key_from_file: bool,
}

/// A secret a hub may refuse.
#[derive(Debug, Clone, Copy)]
pub enum Credential {
    JwtSecret,
    ApiKey,
}

impl ClientConfig {
    /// Merges flags/env (already merged by clap) with the file at `path` and the defaults.
    pub fn resolve(
        url: Option<String>,
        jwt_secret: Option<String>,
        api_key: Option<String>,
        ca_cert: Option<PathBuf>,
        path: &Path,
    ) -> anyhow::Result<Self> {
        let loaded = FileConfig::load(path)?;
        let config_file_found = loaded.is_some();
        let file = loaded.unwrap_or_default();
        // After a URL given or configured: the hub that `rtctl serve` with this config file recorded
        // (see `listening`), which may listen elsewhere than the default.
        let url = url.or(file.url).or_else(|| listening::find(path)).unwrap_or_else(|| DEFAULT_URL.to_owned());
        let url = url.trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("invalid url `{url}`: expected http://HOST:PORT or https://HOST");
        }
        let sources = Sources {
            jwt_secret_from_file: jwt_secret.is_none() && file.jwt_secret.is_some(),
            api_key_from_file: api_key.is_none() && file.api_key.is_some(),
        };
        let tls = ca_cert.or(file.ca_cert).map(|path| crate::tls::client_config(&path)).transpose()?;
        Ok(Self {
            url,
            tls,
            jwt_secret: jwt_secret.or(file.jwt_secret).map(Secret::new),
            api_key: api_key.or(file.api_key).map(Secret::new),
            config_file: path.to_owned(),
            config_file_found,
            sources,
        })
    }

    /// What to add when the hub refused `credential` (HTTP 401, close 4001) and it came from the config
    /// file: that file belongs to another hub than the one at `url`.
    pub fn mismatch_hint(&self, credential: Credential) -> Option<String> {
        let (setting, flags) = match credential {
            Credential::JwtSecret if self.sources.jwt_secret_from_file => ("jwt_secret", "--jwt-secret"),
            Credential::ApiKey if self.sources.api_key_from_file => ("api_key", "--api-key"),
            _ => return None,
        };
        let path = self.config_file.display();
        let url = redact_url(&self.url);
        Some(format!(
            "the {setting} in {path} is not the one of the hub at {url}: run rtctl in the directory of that hub's \
             config file, point --config (or RTCTL_CONFIG) at it, or pass {flags}"
        ))
    }

    /// The WebSocket base URL: `ws://` for `http://`, `wss://` for `https://`.
    pub fn ws_url(&self) -> String {
        match self.url.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => format!("ws://{}", self.url.trim_start_matches("http://")),
        }
    }

    /// The API key, or an error saying how to configure one.
    pub fn require_api_key(&self) -> anyhow::Result<&Secret> {
        self.api_key.as_ref().ok_or_else(|| self.missing("API key", "api_key", "--api-key / RTCTL_API_KEY"))
    }

    /// The JWT secret, or an error saying how to configure one.
    pub fn require_jwt_secret(&self) -> anyhow::Result<&Secret> {
        self.jwt_secret
            .as_ref()
            .ok_or_else(|| self.missing("JWT secret", "jwt_secret", "--jwt-secret / RTCTL_JWT_SECRET"))
    }

    /// Why `what` (`setting` in the file) is missing, naming the config file that was looked at: the
    /// default one `rtctl serve` creates here, another one that does not exist, or one without it.
    fn missing(&self, what: &str, setting: &str, flags: &str) -> anyhow::Error {
        let path = self.config_file.display();
        if self.config_file_found {
            anyhow::anyhow!("no {what}: config file {path} has no {setting}; pass {flags}")
        } else if self.config_file == Path::new(DEFAULT_CONFIG_PATH) {
            // Not "run `rtctl serve` here": a second hub would make secrets that the running one does
            // not know.
            anyhow::anyhow!(
                "no {what}: no {path} here; run rtctl in the directory where the hub runs, point --config \
                 (or RTCTL_CONFIG) at its {path}, or pass {flags}"
            )
        } else {
            anyhow::anyhow!(
                "no {what}: config file {path} does not exist; point --config at the one `rtctl serve` created, \
                 or pass {flags}"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file another node created first is adopted whole, never overwritten; a new one is
    /// created private.
    #[test]
    fn a_config_file_created_meanwhile_is_adopted_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rtctl.toml");
        let (first, created) = FileConfig::create_or_adopt(&path).unwrap();
        assert!(created);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let before = std::fs::read_to_string(&path).unwrap();
        // As a second node that looked before the first had written: its create fails, it adopts.
        let (second, created) = FileConfig::create_or_adopt(&path).unwrap();
        assert!(!created);
        assert_eq!((second.jwt_secret, second.api_key), (first.jwt_secret, first.api_key));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before, "the first node's file is untouched");
        let entries = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1, "no temporary file left");
    }

    /// `bind` takes a port alone as one on the loopback address, and a full address as it is.
    #[test]
    fn a_port_alone_binds_the_loopback_address() {
        let bind = |text: &str| {
            let flags = FileConfig { bind: Some(text.into()), ..FileConfig::generate() };
            flags.resolve(&FileConfig::default()).map(|config| config.bind.to_string())
        };
        assert_eq!(bind("8012").unwrap(), "127.0.0.1:8012");
        assert_eq!(bind("0.0.0.0:8012").unwrap(), "0.0.0.0:8012");
        assert!(bind("80120").is_err());
    }

    /// A hub config's Debug output names no secret: not the JWT secret, the API key, the database
    /// password (in the user part or the query) or the Redis password.
    #[test]
    fn debug_output_hides_every_secret() {
        let mut config = HubConfig::ephemeral(std::path::Path::new("/tmp"));
        config.keys = KeySource::Secret("jwt-secret-value-123".into());
        config.api_key = Secret::new("api-key-value-456");
        config.database_url = "postgres://hub:db-pass-789@db.example/rtctl?password=query-pass-0".into();
        config.redis = Some(RedisConfig {
            url: Secret::new("redis://:redis-pass-1@cache.example"),
            prefix: "rtctl".into(),
            node_ttl: DEFAULT_NODE_TTL,
            frame_key: Secret::new("frame-key-value-2"),
        });
        let text = format!("{config:?}");
        for secret in [
            "jwt-secret-value-123",
            "api-key-value-456",
            "db-pass-789",
            "query-pass-0",
            "redis-pass-1",
            "frame-key-value-2",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("postgres://***@db.example/rtctl"), "{text}");
    }

    /// Credentials in a URL are masked wherever they sit, in the user info or the query (by the
    /// parameter's name or the value's shape); everything else is kept as it was.
    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://h/db?sslmode=require&password=p1&sslpassword=p2"),
            "postgres://h/db?sslmode=require&password=***&sslpassword=***"
        );
        let jwt = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiI3In0.c2ln";
        assert_eq!(redact_url(&format!("ws://h:1/ws/x/?token={jwt}")), "ws://h:1/ws/x/?token=***");
        assert_eq!(redact_url("ws://h/ws/x/?v=1&Token=wst_abc&room=r1"), "ws://h/ws/x/?v=1&Token=***&room=r1");
        assert_eq!(redact_url("ws://h/?t=wst_abc&bearer=eyJa.eyJb.c"), "ws://h/?t=***&bearer=***");
        assert_eq!(redact_url("wss://user:pass@h/ws/x/?access_token=s3cret"), "wss://***@h/ws/x/?access_token=***");
        assert_eq!(redact_url("ws://h/ws/x/?token=&v=a@b"), "ws://h/ws/x/?token=&v=a@b");
        assert_eq!(redact_url("ws://h/ws/notifications/"), "ws://h/ws/notifications/");
    }

    /// Only the authority's user info is masked: an `@` in the path (a user id) keeps the URL readable.
    #[test]
    fn user_info_is_masked_in_the_authority_only() {
        assert_eq!(redact_url("http://u:pw@h:1/api/?k=v"), "http://***@h:1/api/?k=v");
        assert_eq!(
            redact_url("http://h/api/v1/admin-dashboard/users/a@b/approve/"),
            "http://h/api/v1/admin-dashboard/users/a@b/approve/"
        );
        assert_eq!(mask_userinfo("ws://h/ws/?v=a@b"), "ws://h/ws/?v=a@b");
        assert_eq!(mask_userinfo("redis://:pw@cache"), "redis://***@cache");
        assert_eq!(mask_userinfo("no scheme @ all"), "no scheme @ all");
    }

    #[test]
    fn origins_same_host_by_default_and_lists_exactly() {
        let same = AllowedOrigins::SameHost;
        assert!(same.allows("http://localhost:8000", Some("localhost:8000")));
        assert!(!same.allows("http://evil.example", Some("localhost:8000")));
        let list = AllowedOrigins::parse("https://app.example.com, http://localhost:3000").unwrap();
        assert!(list.allows("https://app.example.com", None));
        assert!(!list.allows("https://app.example.com.evil", None));
        assert_eq!(AllowedOrigins::parse("*").unwrap(), AllowedOrigins::Any);
        assert!(AllowedOrigins::parse("app.example.com").is_err());
    }

    #[test]
    fn sizes_and_durations_name_the_setting() {
        assert_eq!(parse_size("max_frame", "64KiB").unwrap(), 65536);
        assert_eq!(parse_size("max_frame", "1024").unwrap(), 1024);
        let err = parse_size("max_frame", &format!("{}KiB", usize::MAX)).unwrap_err().to_string();
        assert!(err.contains("too large"), "{err}");
        let err = parse_size("max_frame", "lots").unwrap_err().to_string();
        assert!(err.contains("max_frame"), "{err}");
        assert_eq!(parse_duration("ws_token_ttl", "30m").unwrap(), Duration::from_secs(1800));
        assert!(parse_duration("heartbeat_timeout", "soon").unwrap_err().to_string().contains("heartbeat_timeout"));
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = FileConfig {
            jwt_secret: Some("file-secret-0123456789".into()),
            api_key: Some("file-key-0123456789".into()),
            bind: Some("127.0.0.1:9000".into()),
            ..FileConfig::default()
        };
        let settings = FileConfig { bind: Some("127.0.0.1:9100".into()), ..FileConfig::default() };
        let config = settings.resolve(&file).unwrap();
        assert_eq!(config.bind.port(), 9100);
        assert_eq!(config.api_key.expose(), "file-key-0123456789");
        assert_eq!(format!("{:?}", config.api_key), "Secret(***)");
    }

    #[test]
    fn node_ttl_defaults_merges_and_has_a_floor() {
        let file = FileConfig {
            jwt_secret: Some("file-secret-0123456789".into()),
            api_key: Some("file-key-0123456789".into()),
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ..FileConfig::default()
        };
        let ttl = |flags: FileConfig, file: &FileConfig| flags.resolve(file).map(|c| c.redis.expect("redis").node_ttl);
        assert_eq!(ttl(FileConfig::default(), &file).unwrap(), DEFAULT_NODE_TTL);
        let file = FileConfig { node_ttl: Some("15s".into()), ..file };
        assert_eq!(ttl(FileConfig::default(), &file).unwrap(), Duration::from_secs(15));
        let flags = FileConfig { node_ttl: Some("3s".into()), ..FileConfig::default() };
        assert_eq!(ttl(flags, &file).unwrap(), Duration::from_secs(3), "the flag wins over the file");
        let flags = FileConfig { node_ttl: Some("2s".into()), ..FileConfig::default() };
        assert_eq!(ttl(flags, &file).unwrap_err().to_string(), "invalid node_ttl: must be at least 3s");
        let flags = FileConfig { node_ttl: Some("soon".into()), ..FileConfig::default() };
        assert!(ttl(flags, &file).unwrap_err().to_string().starts_with("invalid node_ttl `soon`"));
    }

    #[test]
    fn message_rate_defaults_merges_and_refuses_a_zero_burst() {
        let file = FileConfig {
            jwt_secret: Some("file-secret-0123456789".into()),
            api_key: Some("file-key-0123456789".into()),
            message_rate: Some(5),
            ..FileConfig::default()
        };
        let limits = FileConfig::default().resolve(&file).unwrap().limits;
        assert_eq!((limits.message_rate, limits.message_burst), (5, DEFAULT_MESSAGE_BURST));
        let flags = FileConfig { message_rate: Some(0), message_burst: Some(0), ..FileConfig::default() };
        let limits = flags.resolve(&file).unwrap().limits;
        assert_eq!((limits.message_rate, limits.message_burst), (0, 0), "0 turns the limit off");
        let flags = FileConfig { message_burst: Some(0), ..FileConfig::default() };
        let err = flags.resolve(&file).unwrap_err().to_string();
        assert_eq!(err, "invalid message_burst: must be at least 1 while message_rate is on");
    }

    /// A new config file holds a Redis frame key; a setting wins over the file, a short one is refused by
    /// name, and a file without one gets a key derived from the API key (the same on every node that
    /// shares the key, and never the API key itself).
    #[test]
    fn redis_frame_key_comes_from_the_settings_or_the_api_key() {
        let dir = tempfile::tempdir().unwrap();
        let created = FileConfig::generate().create(&dir.path().join("rtctl.toml")).unwrap();
        assert!(created.redis_frame_key.as_ref().is_some_and(|key| key.len() >= 32));
        let file = FileConfig {
            jwt_secret: Some("file-secret-0123456789".into()),
            api_key: Some("file-key-0123456789".into()),
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ..FileConfig::default()
        };
        let key = |flags: FileConfig, file: &FileConfig| {
            flags.resolve(file).map(|c| c.redis.expect("redis").frame_key.expose().to_owned())
        };
        let derived = key(FileConfig::default(), &file).unwrap();
        assert_eq!(derived.len(), 64);
        assert_ne!(derived, "file-key-0123456789");
        assert_eq!(key(FileConfig::default(), &file).unwrap(), derived, "every node derives the same key");
        let file = FileConfig { redis_frame_key: Some("file-frame-key-0123".into()), ..file };
        assert_eq!(key(FileConfig::default(), &file).unwrap(), "file-frame-key-0123");
        let flags = FileConfig { redis_frame_key: Some("flag-frame-key-0123".into()), ..FileConfig::default() };
        assert_eq!(key(flags, &file).unwrap(), "flag-frame-key-0123", "the flag wins over the file");
        let flags = FileConfig { redis_frame_key: Some("short".into()), ..FileConfig::default() };
        assert_eq!(
            key(flags, &file).unwrap_err().to_string(),
            "invalid redis_frame_key: must be at least 16 characters"
        );
    }

    /// `jwks` is a URL when it starts with http(s)://, kept fresh every `jwks_refresh`; otherwise a file.
    #[test]
    fn jwks_takes_a_url_or_a_file() {
        let file = FileConfig {
            api_key: Some("file-key-0123456789".into()),
            jwks: Some("https://idp.example/realms/app/protocol/openid-connect/certs".into()),
            ..FileConfig::default()
        };
        let flags = FileConfig { jwks_refresh: Some("1m".into()), ..FileConfig::default() };
        match flags.resolve(&file).unwrap().keys {
            KeySource::JwksUrl(source) => {
                assert_eq!(source.url, "https://idp.example/realms/app/protocol/openid-connect/certs");
                assert_eq!(source.refresh, Duration::from_secs(60));
                assert_eq!(source.min_refetch, crate::auth::DEFAULT_JWKS_MIN_REFETCH);
            }
            other => panic!("expected a JWKS URL, got {other:?}"),
        }
        let file = FileConfig { jwks: Some("/nonexistent/jwks.json".into()), ..file };
        let err = FileConfig::default().resolve(&file).unwrap_err().to_string();
        assert_eq!(err, "invalid jwks: cannot read /nonexistent/jwks.json");
    }

    /// Claim mapping defaults to PROTOCOL's claims; a flag wins over the file; a bad path names its setting.
    #[test]
    fn claim_mapping_merges_and_names_the_setting() {
        let file = FileConfig {
            api_key: Some("file-key-0123456789".into()),
            jwt_secret: Some("file-secret-0123456789".into()),
            claim_staff: Some("realm_access.roles=admin".into()),
            claim_orgs: Some("organization,groups".into()),
            ..FileConfig::default()
        };
        let flags = FileConfig { claim_user_id: Some("user_id".into()), ..FileConfig::default() };
        let claims = flags.resolve(&file).unwrap().claims;
        assert_eq!(claims.user_id, ["user_id"]);
        assert_eq!(claims.staff, StaffRule::Holds("realm_access.roles".into(), "admin".into()));
        assert_eq!(claims.orgs, ["organization", "groups"]);
        assert_eq!((claims.name.as_str(), claims.email.as_str()), ("name", "email"));
        let flags = FileConfig { claim_orgs: Some("groups,".into()), ..FileConfig::default() };
        assert!(flags.resolve(&file).unwrap_err().to_string().starts_with("invalid claim_orgs"));
    }

    /// SQLite commits are durable (FULL) unless `sqlite_synchronous` says `normal`; anything else is
    /// refused by name.
    #[test]
    fn sqlite_synchronous_defaults_to_full() {
        use crate::store::SqliteSync;
        let file = FileConfig {
            jwt_secret: Some("file-secret-0123456789".into()),
            api_key: Some("file-key-0123456789".into()),
            ..FileConfig::default()
        };
        assert_eq!(FileConfig::default().resolve(&file).unwrap().sqlite_synchronous, SqliteSync::Full);
        let flags = FileConfig { sqlite_synchronous: Some("NORMAL".into()), ..FileConfig::default() };
        assert_eq!(flags.resolve(&file).unwrap().sqlite_synchronous, SqliteSync::Normal);
        let flags = FileConfig { sqlite_synchronous: Some("off".into()), ..FileConfig::default() };
        let err = flags.resolve(&file).unwrap_err().to_string();
        assert_eq!(err, "invalid sqlite_synchronous `off`: expected full or normal");
    }

    /// `database_pool` is unset by default (each store picks its own), taken from the file or a flag,
    /// and refused outside 1..=1000 by name.
    #[test]
    fn database_pool_defaults_merges_and_refuses_out_of_range() {
        let file = FileConfig {
            jwt_secret: Some("file-secret-0123456789".into()),
            api_key: Some("file-key-0123456789".into()),
            ..FileConfig::default()
        };
        assert_eq!(FileConfig::default().resolve(&file).unwrap().database_pool, None);
        let with_pool = FileConfig { database_pool: Some(4), ..file.clone() };
        assert_eq!(FileConfig::default().resolve(&with_pool).unwrap().database_pool, Some(4));
        let flags = FileConfig { database_pool: Some(32), ..FileConfig::default() };
        assert_eq!(flags.resolve(&with_pool).unwrap().database_pool, Some(32), "the flag wins");
        for bad in [0, 1001] {
            let flags = FileConfig { database_pool: Some(bad), ..FileConfig::default() };
            let err = flags.resolve(&file).unwrap_err().to_string();
            assert_eq!(err, "invalid database_pool: must be between 1 and 1000");
        }
    }
}
