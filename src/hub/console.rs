//! The web console at `/console/`: the files under `console/` in the repository, embedded in the binary
//! and served with a strict Content-Security-Policy. It holds no secret: it signs in with a token from
//! its URL fragment (which no server sees) and then uses the same API and WebSockets as any client.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::Hub;
use super::error::HubError;

/// One embedded file of the console.
struct Asset {
    /// Relative to `/console/` (and to `console/` in the repository).
    path: &'static str,
    body: &'static [u8],
}

/// Every file of `console/`; a test fails when this list and the directory differ.
macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, body: include_bytes!(concat!("../../console/", $path)) }),*]
    };
}

static ASSETS: &[Asset] = assets![
    "index.html",
    "style.css",
    "favicon.svg",
    "js/api.js",
    "js/boot.js",
    "js/center.js",
    "js/chart.js",
    "js/dom.js",
    "js/live.js",
    "js/main.js",
    "js/session.js",
    "js/views/chat.js",
    "js/views/dashboard.js",
    "js/views/events.js",
    "js/views/notifications.js",
    "js/views/overview.js",
    "js/views/signin.js",
];

/// Each asset's ETag, a hash of its bytes: a browser revalidates every load (`no-cache`) and gets a 304
/// until an upgraded binary serves other bytes, so an upgrade never leaves an old script running.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let mut hasher = DefaultHasher::new();
            asset.body.hash(&mut hasher);
            HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish())).expect("hex is a valid header value")
        })
        .collect()
});

/// The console's routes, or none when `--console false` turned it off (then `/console/` is a 404).
pub fn routes(enabled: bool) -> Router<Arc<Hub>> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        // A person who opens the hub's address in a browser finds the console.
        .route("/", get(|| async { Redirect::temporary("/console/") }))
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move { serve(&path, &headers) }),
        )
}

/// The asset at `path` (or a 304 when the browser's copy is current), with the security headers.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.path == path) else {
        return HubError::not_found(format!("no file {path} in the console")).into_response();
    };
    let etag = ETAGS[index].clone();
    let mut response = if headers.get(header::IF_NONE_MATCH).is_some_and(|tags| matches_etag(tags, &etag)) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type(path))], ASSETS[index].body).into_response()
    };
    let host = headers.get(header::HOST).and_then(|host| host.to_str().ok());
    let csp = HeaderValue::from_str(&content_security_policy(host)).expect("the policy is checked ASCII");
    let out = response.headers_mut();
    out.insert(header::ETAG, etag);
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::CONTENT_SECURITY_POLICY, csp);
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    out.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    response
}

/// Does an `If-None-Match` list name `etag` (or `*`)?
fn matches_etag(tags: &HeaderValue, etag: &HeaderValue) -> bool {
    let etag = etag.to_str().expect("our ETags are ASCII");
    tags.to_str()
        .is_ok_and(|tags| tags.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// Scripts and styles from the console's own files only (no inline script, no eval), and connections to
/// the hub only: its HTTP origin and, named outright for browsers that do not count them as 'self', its
/// WebSocket origins. The page may not be framed (clickjacking on the approve buttons).
fn content_security_policy(host: Option<&str>) -> String {
    // The Host header is the client's own text: only a plain host[:port] goes into the policy.
    let plain = |host: &&str| host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    let ws = host.filter(plain).map(|host| format!(" ws://{host} wss://{host}")).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'{ws}; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded list is the `console/` directory, file for file: a file added to the directory but
    /// not to [`ASSETS`] would be a 404 in the browser.
    #[test]
    fn every_file_of_the_console_directory_is_embedded() {
        fn walk(dir: &std::path::Path, root: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("read console/") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    walk(&path, root, found);
                } else {
                    found.push(path.strip_prefix(root).expect("under console/").to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut found = Vec::new();
        walk(&root, &root, &mut found);
        found.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|asset| asset.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(found, embedded);
        for path in &embedded {
            assert_ne!(content_type(path), "application/octet-stream", "{path} needs a content type");
        }
    }

    /// A Host header that is not a plain host[:port] stays out of the policy.
    #[test]
    fn only_a_plain_host_enters_the_policy() {
        assert!(
            content_security_policy(Some("127.0.0.1:8000"))
                .contains("connect-src 'self' ws://127.0.0.1:8000 wss://127.0.0.1:8000;")
        );
        assert!(content_security_policy(Some("[::1]:8000")).contains("ws://[::1]:8000"));
        assert!(content_security_policy(Some("a; script-src *")).contains("connect-src 'self'; "));
        assert!(content_security_policy(None).contains("connect-src 'self'; "));
    }
}
