//! The hub under test: its addresses and credentials, and the few HTTP calls around a run (stats, rooms).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::pki_types::ServerName;
use serde_json::Value;

/// How long the side calls (stats, room creation) may take.
const SIDE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the hub is and how to authenticate to it. `Debug` never shows the secrets.
#[derive(Clone)]
pub struct Target {
    /// Base HTTP URL without a trailing slash, e.g. `http://127.0.0.1:8000`.
    pub http: String,
    /// Base WebSocket URL derived from `http`, e.g. `ws://127.0.0.1:8000`.
    pub ws: String,
    /// The resolved socket address subscribers connect to.
    pub addr: SocketAddr,
    /// The name the hub's certificate must carry, for `https://` hubs.
    pub tls_name: Option<ServerName<'static>>,
    /// TLS settings trusting `--ca-cert` alone; `None`: the system's roots.
    pub ca: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub jwt_secret: String,
    pub api_key: String,
    /// The hub's process id, when known, to measure its CPU time.
    pub pid: Option<u32>,
    /// True when the hub runs inside this process (its CPU shows up as the bench's).
    pub in_process: bool,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("http", &self.http)
            .field("ws", &self.ws)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Resolves `url` (`http://` or `https://`) and derives the WebSocket URL.
    pub async fn new(url: &str, jwt_secret: String, api_key: String) -> anyhow::Result<Self> {
        let http = url.trim_end_matches('/').to_owned();
        let (ws, rest) = if let Some(rest) = http.strip_prefix("http://") {
            (format!("ws://{rest}"), rest)
        } else if let Some(rest) = http.strip_prefix("https://") {
            (format!("wss://{rest}"), rest)
        } else {
            bail!("the hub URL must start with http:// or https://, got {url:?}");
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        let tls = ws.starts_with("wss://");
        let (host, port) = match authority.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>())) {
            Some((host, Ok(port))) => (host, port),
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host_port = format!("{host}:{port}");
        let tls_name = match tls {
            true => Some(
                ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                    .with_context(|| format!("{host:?} is not a name a TLS certificate can carry"))?,
            ),
            false => None,
        };
        let addr = tokio::net::lookup_host(&host_port)
            .await
            .with_context(|| format!("resolve {host_port}"))?
            .next()
            .with_context(|| format!("{host_port} has no address"))?;
        Ok(Self { http, ws, addr, tls_name, ca: None, jwt_secret, api_key, pid: None, in_process: false })
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// What `GET /api/v1/stats` says about the hub, or `None` when it does not answer it (the Django peer).
    pub async fn stats(&self, client: &reqwest::Client) -> Option<HubStats> {
        let response = client
            .get(self.http_url("/api/v1/stats"))
            .header("X-API-Key", &self.api_key)
            .timeout(SIDE_CALL_TIMEOUT)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        Some(HubStats::from_json(&response.json::<Value>().await.ok()?))
    }

    /// Creates a chat room with the given members (`POST /api/v1/chat/rooms`).
    pub async fn create_room(&self, client: &reqwest::Client, room_id: &str, members: &[String]) -> anyhow::Result<()> {
        let response = client
            .post(self.http_url("/api/v1/chat/rooms"))
            .header("X-API-Key", &self.api_key)
            .json(&serde_json::json!({ "room_id": room_id, "name": room_id, "members": members }))
            .timeout(SIDE_CALL_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("create chat room {room_id}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("create chat room {room_id}: HTTP {status}: {}", body.trim());
        }
        Ok(())
    }
}

/// The parts of a hub's `GET /api/v1/stats` the bench reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HubStats {
    /// `memory_rss_bytes`, wherever it sits in the document.
    pub memory_rss: Option<u64>,
    /// The channel layer (`memory`, `redis`), for rtctl.
    pub layer: Option<String>,
    /// The store (`sqlite`, `postgres`), for rtctl.
    pub store: Option<String>,
}

impl HubStats {
    fn from_json(doc: &Value) -> Self {
        let text = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_owned);
        Self { memory_rss: find_u64(doc, "memory_rss_bytes"), layer: text("layer"), store: text("store") }
    }
}

/// The first number under `key` anywhere in a JSON document.
fn find_u64(value: &Value, key: &str) -> Option<u64> {
    match value {
        Value::Object(map) => {
            map.get(key).and_then(Value::as_u64).or_else(|| map.values().find_map(|v| find_u64(v, key)))
        }
        Value::Array(items) => items.iter().find_map(|v| find_u64(v, key)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hub URL gives the ws URL and a connectable address; secrets stay out of `Debug`.
    #[tokio::test]
    async fn derives_ws_url_and_hides_secrets() {
        let t = Target::new("http://127.0.0.1:8101/", "s3cret".into(), "k3y".into()).await.unwrap();
        assert_eq!((t.http.as_str(), t.ws.as_str()), ("http://127.0.0.1:8101", "ws://127.0.0.1:8101"));
        assert_eq!(t.addr.port(), 8101);
        let debug = format!("{t:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("k3y"), "{debug}");
        assert!(Target::new("ws://127.0.0.1:1", String::new(), String::new()).await.is_err());
        assert_eq!(t.tls_name, None);
        // https: the default port, and the host (without port or brackets) is what TLS checks.
        let t = Target::new("https://localhost/", String::new(), String::new()).await.unwrap();
        assert_eq!((t.ws.as_str(), t.addr.port()), ("wss://localhost", 443));
        assert_eq!(t.tls_name, Some(ServerName::try_from("localhost").unwrap()));
        let t = Target::new("https://[::1]:8443", String::new(), String::new()).await.unwrap();
        assert_eq!(t.addr.port(), 8443);
        assert_eq!(t.tls_name, Some(ServerName::try_from("::1").unwrap()));
    }

    /// `memory_rss_bytes` is found at the top level or nested.
    #[test]
    fn finds_memory_anywhere() {
        let doc = serde_json::json!({"node": {"process": {"memory_rss_bytes": 1234}}});
        assert_eq!(find_u64(&doc, "memory_rss_bytes"), Some(1234));
        assert_eq!(find_u64(&serde_json::json!({"uptime": 3}), "memory_rss_bytes"), None);
        let stats =
            HubStats::from_json(&serde_json::json!({"layer": "redis", "store": "postgres", "memory_rss_bytes": 7}));
        assert_eq!(
            stats,
            HubStats { memory_rss: Some(7), layer: Some("redis".into()), store: Some("postgres".into()) }
        );
        assert_eq!(HubStats::from_json(&serde_json::json!({"layer": 3})), HubStats::default());
    }
}
