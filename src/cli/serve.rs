//! `rtctl serve`'s flags: every setting of the hub, each also from `RTCTL_<NAME>` or the config file.

use std::path::PathBuf;

use clap::Args;

/// `rtctl serve`. Every option can also come from `RTCTL_<NAME>` or the config file.
// The help shows URL syntax with optional parts in brackets, which rustdoc reads as links; escaping them
// (`\[`) would print the backslashes in --help.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8000]
    #[arg(long, env = "RTCTL_BIND")]
    pub bind: Option<String>,

    /// HS256 secret that JWTs are signed with (default: from the config file)
    #[arg(long, env = "RTCTL_JWT_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub jwt_secret: Option<String>,

    /// PEM public key to verify RS256/ES256 JWTs with, instead of the secret
    #[arg(long, env = "RTCTL_JWT_PUBLIC_KEY", value_name = "PEM_FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// JWKS to verify RS256/ES256 JWTs with, the key chosen by `kid`: a file, or an http(s):// URL
    /// (an identity provider's certs endpoint) fetched at start and kept fresh
    #[arg(long, env = "RTCTL_JWKS", value_name = "FILE_OR_URL")]
    pub jwks: Option<String>,

    /// With a JWKS URL: how often it is fetched again (a token with an unknown `kid` fetches it at once,
    /// at most every 10s) [default: 5m]
    #[arg(long, env = "RTCTL_JWKS_REFRESH", value_name = "DURATION")]
    pub jwks_refresh: Option<String>,

    #[command(flatten)]
    pub claims: super::claims::ClaimArgs,

    /// Required `iss` claim
    #[arg(long, env = "RTCTL_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim
    #[arg(long, env = "RTCTL_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Key that backends send in X-API-Key (default: from the config file)
    #[arg(long, env = "RTCTL_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,

    /// Browser origins allowed to connect: a comma list or `*` [default: same host only]
    #[arg(long, env = "RTCTL_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,

    /// Database URL: sqlite://PATH, or postgres://USER[:PASSWORD]@HOST[:PORT]/DB for nodes on several
    /// machines [default: sqlite://rtctl-data/rtctl.db]
    #[arg(long, env = "RTCTL_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Most connections this node opens to the database (PostgreSQL's are shared by every node)
    /// [default: 8 for SQLite, 16 for PostgreSQL]
    #[arg(long, env = "RTCTL_DATABASE_POOL", value_name = "CONNECTIONS")]
    pub database_pool: Option<u32>,

    /// SQLite only: `full` syncs every commit to disk before it is acknowledged (nothing acknowledged is
    /// lost, even to a power loss); `normal` syncs at checkpoints (faster writes; a power loss may lose
    /// the last commits) [default: full]
    #[arg(long, env = "RTCTL_SQLITE_SYNCHRONOUS", value_name = "full|normal")]
    pub sqlite_synchronous: Option<String>,

    /// Delete notifications older than this, e.g. 90d, in the background; `off` keeps them forever
    /// [default: off]
    #[arg(long, env = "RTCTL_NOTIFICATION_RETENTION", value_name = "DURATION")]
    pub notification_retention: Option<String>,

    /// Redis URL (redis://[:PASSWORD@]HOST[:PORT][/DB]): fan-out, ws tokens and presence shared by every
    /// hub node on it [default: none, one node in memory]
    #[arg(long, env = "RTCTL_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel, so that deployments can share one Redis [default: rtctl]
    #[arg(long, env = "RTCTL_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,

    /// Key of the HMAC that authenticates every frame the nodes exchange through Redis; the same on every
    /// node, at least 16 characters [default: from the config file, else derived from the API key]
    #[arg(long, env = "RTCTL_REDIS_FRAME_KEY", hide_env_values = true)]
    pub redis_frame_key: Option<String>,

    /// With Redis: how long a node that died without closing its sockets still counts in presence
    /// (users and admins online, room members), e.g. 15s; it refreshes every third of this [default: 30s]
    #[arg(long, env = "RTCTL_NODE_TTL", value_name = "DURATION")]
    pub node_ttl: Option<String>,

    /// Largest inbound WebSocket frame, e.g. 64KiB; larger closes with 1009 [default: 64KiB]
    #[arg(long, env = "RTCTL_MAX_FRAME", value_name = "SIZE")]
    pub max_frame: Option<String>,

    /// Outbound queue per connection, in messages; overflow closes with 4008 [default: 1024]
    #[arg(long, env = "RTCTL_QUEUE", value_name = "MESSAGES")]
    pub queue: Option<usize>,

    /// Interval between server WebSocket pings [default: 20s]
    #[arg(long, env = "RTCTL_HEARTBEAT_INTERVAL", value_name = "DURATION")]
    pub heartbeat_interval: Option<String>,

    /// Silence after which a connection is closed with 4000 [default: 60s]
    #[arg(long, env = "RTCTL_HEARTBEAT_TIMEOUT", value_name = "DURATION")]
    pub heartbeat_timeout: Option<String>,

    /// Longest a client's socket may refuse queued frames before it is closed with 4008 [default: 10s]
    #[arg(long, env = "RTCTL_SEND_TIMEOUT", value_name = "DURATION")]
    pub send_timeout: Option<String>,

    /// Lifetime of a ws token from /api/user/ws-token/ [default: 30m]
    #[arg(long, env = "RTCTL_WS_TOKEN_TTL", value_name = "DURATION")]
    pub ws_token_ttl: Option<String>,

    /// Longest a shutdown waits for sockets and requests [default: 10s]
    #[arg(long, env = "RTCTL_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,

    /// WebSocket frames (and JWT requests) a user may send per second across their connections; above
    /// it a frame gets a `rate_limited` error and repeated excess closes with 4029, a request gets 429;
    /// 0 turns the limits off [default: 50]
    #[arg(long, env = "RTCTL_MESSAGE_RATE", value_name = "PER_SECOND")]
    pub message_rate: Option<u32>,

    /// Frames (requests) that may come at once before --message-rate applies [default: 200]
    #[arg(long, env = "RTCTL_MESSAGE_BURST", value_name = "FRAMES")]
    pub message_burst: Option<u32>,

    /// WebSocket connections this node serves at once; more are accepted and closed with 1013 [default:
    /// what the open-file limit allows, less 64 descriptors kept for HTTP]
    #[arg(long, env = "RTCTL_MAX_CONNECTIONS", value_name = "CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// WebSocket connections one user may hold on this node; more are closed with 4029 [default: 100]
    #[arg(long, env = "RTCTL_MAX_CONNECTIONS_PER_USER", value_name = "CONNECTIONS")]
    pub max_connections_per_user: Option<usize>,

    /// Connections from one client address that may wait for their first request at once; more get 429
    /// [default: 64]
    #[arg(long, env = "RTCTL_MAX_UNAUTHENTICATED_PER_IP", value_name = "CONNECTIONS")]
    pub max_unauthenticated_per_ip: Option<usize>,

    /// How long a new connection may take to send its first request before it is dropped [default: 5s]
    #[arg(long, env = "RTCTL_FIRST_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub first_request_timeout: Option<String>,

    /// Proxies in front of the hub (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For
    /// names the client; from anyone else it is ignored [default: none]
    #[arg(long, env = "RTCTL_TRUSTED_PROXIES", value_name = "ADDRESSES")]
    pub trusted_proxies: Option<String>,

    /// Serve HTTPS and WSS with this certificate chain (PEM, server certificate first, e.g. certbot's
    /// fullchain.pem); needs --tls-key. SIGHUP reloads both files
    #[arg(long, env = "RTCTL_TLS_CERT", value_name = "PEM_FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, RSA or EC, e.g. certbot's privkey.pem)
    #[arg(long, env = "RTCTL_TLS_KEY", value_name = "PEM_FILE")]
    pub tls_key: Option<PathBuf>,

    /// Pushes each org's event stream and the dashboard keep for clients that resume after a
    /// reconnect; at most --queue [default: 1000]
    #[arg(long, env = "RTCTL_EVENT_HISTORY", value_name = "EVENTS")]
    pub event_history: Option<u32>,

    /// How long pushes stay resumable, e.g. 1h; older ones are pruned in the background [default: 24h]
    #[arg(long, env = "RTCTL_EVENT_RETENTION", value_name = "DURATION")]
    pub event_retention: Option<String>,

    /// Bytes all HTTP request bodies in flight may hold together, e.g. 64MiB; a request that finds too
    /// little left gets 503 with Retry-After [default: 64MiB]
    #[arg(long, env = "RTCTL_MAX_BODY_MEMORY", value_name = "SIZE")]
    pub max_body_memory: Option<String>,

    /// Serve the web console at /console/; `--console false` turns it off (/console/ is then a 404)
    /// [default: true]
    #[arg(long, env = "RTCTL_CONSOLE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub console: Option<bool>,
}
