//! A JWKS from a URL (issue 20): fetched at start, fetched again at once (rate-limited) for a token whose
//! `kid` it lacks, so that an identity provider's key rotation needs no restart; a failed fetch keeps the
//! last good keys and shows in `/readyz`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rtctl::auth::{self, JwksUrl, KeySource, SigningKey};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::util::{TIMEOUT, TestHub, recv_close, user_identity};

const RS_PRIVATE: &str = include_str!("fixtures/rs256-private.pem");
const EC_PRIVATE: &str = include_str!("fixtures/es256-private.pem");
const JWKS: &str = include_str!("fixtures/jwks.json");

/// The fixture JWKS reduced to the key with this `kid`: a provider's set before or after a rotation.
fn key_set(kid: &str) -> String {
    let mut doc: Value = serde_json::from_str(JWKS).expect("the fixture is JSON");
    doc["keys"].as_array_mut().expect("a keys array").retain(|k| k["kid"] == kid);
    doc.to_string()
}

/// A local identity provider's certs endpoint: serves whatever `body` holds (or `status` when it is not
/// 200), and counts the fetches.
#[derive(Clone)]
struct Provider {
    body: Arc<Mutex<String>>,
    status: Arc<Mutex<StatusCode>>,
    fetches: Arc<AtomicUsize>,
    url: String,
}

impl Provider {
    async fn start(body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the provider");
        let url = format!("http://{}/realms/test/protocol/openid-connect/certs", listener.local_addr().expect("addr"));
        let provider = Provider {
            body: Arc::new(Mutex::new(body)),
            status: Arc::new(Mutex::new(StatusCode::OK)),
            fetches: Arc::new(AtomicUsize::new(0)),
            url,
        };
        let app = axum::Router::new()
            .route("/realms/test/protocol/openid-connect/certs", axum::routing::get(certs))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        provider
    }

    fn serve(&self, body: String) {
        *self.body.lock().expect("lock") = body;
    }

    fn fail_with(&self, status: StatusCode) {
        *self.status.lock().expect("lock") = status;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// A hub verifying with this provider's JWKS URL.
    async fn hub(&self, refresh: Duration, min_refetch: Duration) -> TestHub {
        let source = JwksUrl { url: self.url.clone(), refresh, min_refetch };
        TestHub::start_with(move |config| config.keys = KeySource::JwksUrl(source)).await
    }
}

async fn certs(State(provider): State<Provider>) -> Response {
    provider.fetches.fetch_add(1, Ordering::SeqCst);
    let status = *provider.status.lock().expect("lock");
    if status != StatusCode::OK {
        return (status, "down").into_response();
    }
    let body = provider.body.lock().expect("lock").clone();
    ([("content-type", "application/json")], body).into_response()
}

/// A one-hour JWT for `user` signed with the fixture key `kid` names.
fn jwt(user: &str, kid: &str) -> String {
    let claims = auth::claims_for(&user_identity(user), Duration::from_secs(3600));
    let key = if kid.starts_with("rsa") {
        SigningKey::Rs256(RS_PRIVATE.into())
    } else {
        SigningKey::Es256(EC_PRIVATE.into())
    };
    auth::mint_with_kid(&claims, &key, Some(kid)).expect("mint")
}

/// Opens `/ws/notifications/` with `token`: the greeting's type, or the close code and reason.
async fn open(hub: &TestHub, token: &str) -> Result<(), (u16, String)> {
    let mut ws = hub.connect_raw("/ws/notifications/", token).await;
    let first = tokio::time::timeout(TIMEOUT, ws.next()).await.expect("a frame within 5 s");
    match first.expect("a frame").expect("a readable frame") {
        Message::Text(text) => {
            let frame: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(frame["type"], "connection_established", "{frame}");
            Ok(())
        }
        Message::Close(Some(close)) => Err((close.code.into(), close.reason.to_string())),
        other => panic!("expected a greeting or a close, got {other:?}"),
    }
}

/// The provider rotates from one key to another: a token signed with the new key verifies on its first
/// use (one fetch at once, on the WebSocket and the HTTP API alike) without a restart, and a token with
/// the retired key is refused once the set no longer has it.
#[tokio::test]
async fn a_rotated_key_verifies_without_a_restart() {
    let provider = Provider::start(key_set("rsa-1")).await;
    let hub = provider.hub(Duration::from_secs(3600), Duration::from_millis(50)).await;
    assert_eq!(open(&hub, &jwt("u1", "rsa-1")).await, Ok(()));
    assert_eq!(provider.fetches(), 1, "fetched once, at start");

    provider.serve(key_set("ec-1"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(open(&hub, &jwt("u2", "ec-1")).await, Ok(()));
    assert_eq!(provider.fetches(), 2, "the unknown kid fetched the set at once");
    let bearer = format!("Bearer {}", jwt("u3", "ec-1"));
    let (status, _) = hub.get_json("/api/v1/notifications", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200);
    assert_eq!(provider.fetches(), 2, "a known kid fetches nothing");

    tokio::time::sleep(Duration::from_millis(100)).await;
    // The set now holds only an ES256 key, so an RS256 token fails on its algorithm before its kid.
    assert_eq!(open(&hub, &jwt("u1", "rsa-1")).await, Err((4001, "token algorithm not allowed".to_owned())));
    assert_eq!(provider.fetches(), 3, "the retired kid looked once more, then was refused");
}

/// Tokens with made-up kids fetch the set at most once per minimum interval, however many arrive.
#[tokio::test]
async fn unknown_kids_fetch_at_most_once_per_interval() {
    let provider = Provider::start(key_set("rsa-1")).await;
    let hub = provider.hub(Duration::from_secs(3600), Duration::from_secs(3600)).await;
    for i in 0..5 {
        let refused = open(&hub, &jwt("u1", &format!("rsa-made-up-{i}"))).await;
        assert_eq!(refused, Err((4001, format!("invalid token: unknown kid \"rsa-made-up-{i}\""))));
    }
    assert_eq!(provider.fetches(), 1, "only the start's fetch: the rest were within the interval");
}

/// A failed refresh keeps the last good keys (tokens still verify) and `/readyz` shows the set as stale
/// with the reason, still ready; when the provider is back the set is `ok` again.
#[tokio::test]
async fn a_failed_fetch_keeps_the_last_good_keys_and_shows_in_readyz() {
    let provider = Provider::start(key_set("rsa-1")).await;
    let hub = provider.hub(Duration::from_millis(100), Duration::from_millis(50)).await;
    let (status, ready) = hub.get_json("/readyz", &[]).await;
    assert_eq!((status, &ready["jwks"]["status"], &ready["jwks"]["keys"]), (200, &json!("ok"), &json!(1)));

    provider.fail_with(StatusCode::INTERNAL_SERVER_ERROR);
    let before = provider.fetches();
    wait_for(|| provider.fetches() > before + 1).await;
    let (status, ready) = hub.get_json("/readyz", &[]).await;
    assert_eq!(status, 200, "stale keys still verify: {ready}");
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["jwks"]["status"], "stale");
    assert_eq!(ready["jwks"]["error"], "the JWKS URL answered HTTP 500");
    assert_eq!(open(&hub, &jwt("u1", "rsa-1")).await, Ok(()));

    provider.fail_with(StatusCode::OK);
    let before = provider.fetches();
    wait_for(|| provider.fetches() > before + 1).await;
    let (_, ready) = hub.get_json("/readyz", &[]).await;
    assert_eq!((&ready["jwks"]["status"], &ready["jwks"]["error"]), (&json!("ok"), &Value::Null));
}

/// A hub whose JWKS URL cannot be fetched at start still starts: `/readyz` is 503 with the reason, and a
/// JWT is refused as the hub's fault (HTTP 503, close 1011), not the client's.
#[tokio::test]
async fn a_jwks_never_fetched_makes_the_hub_unready() {
    let provider = Provider::start(key_set("rsa-1")).await;
    provider.fail_with(StatusCode::NOT_FOUND);
    let hub = provider.hub(Duration::from_secs(3600), Duration::from_secs(3600)).await;
    let (status, ready) = hub.get_json("/readyz", &[]).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(
        ready["jwks"],
        json!({"status": "unavailable", "keys": 0, "fetched_at": null,
                                     "error": "the JWKS URL answered HTTP 404"})
    );
    let bearer = format!("Bearer {}", jwt("u1", "rsa-1"));
    let (status, body) = hub.get_json("/api/v1/notifications", &[("authorization", &bearer)]).await;
    assert_eq!((status, &body["error"]["message"]), (503, &json!("JWT keys unavailable")), "{body}");
    let mut ws = hub.connect_raw("/ws/notifications/", &jwt("u1", "rsa-1")).await;
    assert_eq!(recv_close(&mut ws).await, (1011, "JWT keys unavailable".to_owned()));
}

/// Polls `done` every 20 ms for up to 5 s.
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..250 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within 5 s");
}
