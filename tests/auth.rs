//! PROTOCOL §1: tokens in the query or the `Authorization` header, every refusal as close 4001 after the
//! upgrade, single-use ws tokens, and origin checks before the upgrade.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rtctl::auth::{self, SigningKey};
use rtctl::config::AllowedOrigins;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::util::{
    TestHub, api_error, connect_request, http, json_response, recv, recv_close, request_with, send, unpositioned,
    user_identity,
};

/// Connects to `/ws/notifications/` with `token` in the query and returns the close the hub sends.
async fn refused(hub: &TestHub, token: &str) -> (u16, String) {
    let mut ws = hub.connect_raw("/ws/notifications/", token).await;
    recv_close(&mut ws).await
}

/// Claims for `u1` that expired a minute ago.
fn expired_claims() -> auth::Claims {
    let mut claims = auth::claims_for(&user_identity("u1"), Duration::from_secs(3600));
    claims.exp = unix_now() - 60;
    claims
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()
}

/// An unsigned `alg: none` token for `u1`.
fn alg_none_token() -> String {
    let claims = auth::claims_for(&user_identity("u1"), Duration::from_secs(3600));
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
    format!("{header}.{payload}.")
}

/// A missing token, a bad signature, an expired token, `alg: none` and an unknown ws token are each
/// accepted at the HTTP level and then closed with 4001 and a reason saying which; `/metrics` counts
/// each refusal by reason.
#[tokio::test]
async fn every_refused_token_closes_with_4001() {
    let hub = TestHub::start().await;
    let mut no_query = connect_request(hub.ws_url("/ws/notifications/").into_client_request().expect("a URL")).await;
    assert_eq!(recv_close(&mut no_query).await, (4001, "missing token".to_owned()));
    assert_eq!(refused(&hub, "").await, (4001, "missing token".to_owned()));

    let claims = auth::claims_for(&user_identity("u1"), Duration::from_secs(3600));
    let forged = auth::mint(&claims, &SigningKey::Hs256("not-the-hub-secret-0123456789".into())).expect("mint");
    assert_eq!(refused(&hub, &forged).await, (4001, "invalid token: bad signature".to_owned()));

    let secret = SigningKey::Hs256(hub.config.jwt_secret().expect("a secret").to_owned());
    let expired = auth::mint(&expired_claims(), &secret).expect("mint");
    assert_eq!(refused(&hub, &expired).await, (4001, "token expired".to_owned()));

    assert_eq!(refused(&hub, &alg_none_token()).await, (4001, "token algorithm not allowed".to_owned()));
    assert_eq!(refused(&hub, "wst_not-a-real-token").await, (4001, "unknown or used ws token".to_owned()));

    let metrics = hub.metrics().await;
    assert!(metrics.contains("\n# TYPE rtctl_auth_failures_total counter\n"), "{metrics}");
    for reason in ["missing\"} 2", "invalid\"} 1", "expired\"} 1", "algorithm\"} 1", "ws_token\"} 1"] {
        let line = format!("rtctl_auth_failures_total{{reason=\"{reason}");
        assert!(metrics.lines().any(|l| l == line), "no line `{line}` in:\n{metrics}");
    }
}

/// A `sub` longer than the protocol's 128-byte user id is refused like any invalid token: close 4001 on a
/// WebSocket, 401 on the HTTP API, each with a reason naming the rule; 128 bytes still pass.
#[tokio::test]
async fn an_overlong_sub_is_refused_with_the_user_id_rule() {
    let hub = TestHub::start().await;
    let reason = "invalid token: claim sub: user id must be 1..128 characters";
    let longest = hub.jwt(&"u".repeat(128));
    let (_ws, greeting) = hub.connect("/ws/notifications/", &longest).await;
    assert_eq!(greeting["user_id"].as_str().map(str::len), Some(128));

    let overlong = hub.jwt(&"u".repeat(129));
    assert_eq!(refused(&hub, &overlong).await, (4001, reason.to_owned()));
    let response = send(http().get(hub.http_url("/api/v1/notifications")).bearer_auth(&overlong)).await;
    assert_eq!(json_response(response).await, (401, api_error("unauthorized", reason)));
}

/// A JWT in the `Authorization: Bearer` header of the upgrade request authenticates like `?token=`.
#[tokio::test]
async fn a_bearer_header_authenticates_the_websocket() {
    let hub = TestHub::start().await;
    let bearer = format!("Bearer {}", hub.jwt("u7"));
    let mut ws = connect_request(request_with(&hub.ws_url("/ws/notifications/"), "authorization", &bearer)).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "connection_established", "message": "Connected to notifications", "user_id": "u7", "unread_count": 0})
    );
}

/// `GET /api/user/ws-token/` with a user's JWT gives a `wst_` token that carries the JWT's identity
/// (orgs included) and works exactly once; a second use is closed with 4001.
#[tokio::test]
async fn a_ws_token_works_once_and_carries_the_identity() {
    let hub = TestHub::start().await;
    let bearer = format!("Bearer {}", hub.member_jwt("u1", &["acme"]));
    let (status, body) = hub.get_json("/api/user/ws-token/", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
    let token = body["ws_token"].as_str().expect("a ws_token string").to_owned();
    assert!(token.starts_with("wst_") && token.len() > 40, "{token}");
    assert_eq!(body, json!({"ws_token": token, "expires_in": 1800}));

    let (_events, greeting) = hub.connect("/ws/events/acme/", &token).await;
    assert_eq!(
        unpositioned(greeting),
        json!({"type": "connection_established", "message": "Connected to organization events", "user_id": "u1", "org_id": "acme"})
    );
    assert_eq!(refused(&hub, &token).await, (4001, "unknown or used ws token".to_owned()));

    let (status, body) = hub.get_json("/api/user/ws-token/", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200);
    assert_ne!(body["ws_token"], json!(token), "every ws token is new");
}

/// The ws-token route needs a user's JWT: none is 401, the API key is 403, a ws token is 401.
#[tokio::test]
async fn the_ws_token_route_needs_a_user_jwt() {
    let hub = TestHub::start().await;
    assert_eq!(
        hub.get_json("/api/user/ws-token/", &[]).await,
        (401, api_error("unauthorized", "missing X-API-Key or Authorization: Bearer"))
    );
    assert_eq!(
        hub.get_json("/api/user/ws-token/", &[("x-api-key", hub.api_key())]).await,
        (403, api_error("forbidden", "requires a user's token, not the API key"))
    );
    assert_eq!(
        hub.get_json("/api/user/ws-token/", &[("authorization", "Bearer wst_abc")]).await,
        (401, api_error("unauthorized", "expected a JWT bearer token"))
    );
    let expired = auth::mint(&expired_claims(), &SigningKey::Hs256(hub.config.jwt_secret().expect("secret").into()));
    let bearer = format!("Bearer {}", expired.expect("mint"));
    assert_eq!(
        hub.get_json("/api/user/ws-token/", &[("authorization", &bearer)]).await,
        (401, api_error("unauthorized", "token expired"))
    );
}

/// There is no leeway on `exp`: a token two seconds past it is refused on a WebSocket (4001) and at the
/// ws-token route (401) as expired, like one a minute past.
#[tokio::test]
async fn a_token_seconds_past_its_exp_is_refused() {
    let hub = TestHub::start().await;
    let mut claims = auth::claims_for(&user_identity("u1"), Duration::from_secs(3600));
    claims.exp = unix_now() - 2;
    let token = auth::mint(&claims, &SigningKey::Hs256(hub.config.jwt_secret().expect("secret").into())).expect("mint");
    assert_eq!(refused(&hub, &token).await, (4001, "token expired".to_owned()));
    let bearer = format!("Bearer {token}");
    assert_eq!(
        hub.get_json("/api/user/ws-token/", &[("authorization", &bearer)]).await,
        (401, api_error("unauthorized", "token expired"))
    );
}

/// Upgrades `path` with an `Origin` header; `Ok` when the hub upgraded, else the HTTP status and body.
async fn with_origin(hub: &TestHub, origin: &str) -> Result<(), (u16, Value)> {
    let url = format!("{}?token={}", hub.ws_url("/ws/notifications/"), hub.jwt("u1"));
    let request = request_with(&url, "origin", origin);
    match tokio::time::timeout(crate::util::TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((mut ws, _))) => {
            assert_eq!(recv(&mut ws).await["type"], "connection_established");
            Ok(())
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let body = response.body().as_deref().map(serde_json::from_slice).transpose();
            Err((response.status().as_u16(), body.expect("a JSON body").unwrap_or(Value::Null)))
        }
        Ok(Err(other)) => panic!("the upgrade failed: {other}"),
        Err(_) => panic!("the upgrade timed out"),
    }
}

/// By default the origin whose host equals the request's `Host` may connect, any other origin gets HTTP
/// 403 before the upgrade (and is counted), and a request without `Origin` is allowed.
#[tokio::test]
async fn only_the_same_host_origin_is_allowed_by_default() {
    let hub = TestHub::start().await;
    let refused = Err((403, api_error("forbidden", "origin not allowed")));
    assert_eq!(with_origin(&hub, "http://evil.example").await, refused);
    assert_eq!(with_origin(&hub, &format!("http://{}.evil.example", hub.addr.ip())).await, refused);
    assert_eq!(with_origin(&hub, &format!("http://{}", hub.addr)).await, Ok(()));
    // Every other test connects without an Origin header, as native clients do.
    let metrics = hub.metrics().await;
    assert!(metrics.lines().any(|l| l == "rtctl_auth_failures_total{reason=\"origin\"} 2"), "{metrics}");
}

/// A configured list of origins is honoured exactly (the same host no longer counts), and `*` allows any.
#[tokio::test]
async fn configured_allowed_origins_are_honoured() {
    let hub = TestHub::start_with(|config| {
        config.allowed_origins =
            AllowedOrigins::parse("https://app.example.com, http://localhost:3000").expect("valid origins");
    })
    .await;
    let refused = Err((403, api_error("forbidden", "origin not allowed")));
    assert_eq!(with_origin(&hub, "https://app.example.com").await, Ok(()));
    assert_eq!(with_origin(&hub, "http://localhost:3000").await, Ok(()));
    assert_eq!(with_origin(&hub, "http://app.example.com").await, refused);
    assert_eq!(with_origin(&hub, "https://app.example.com.evil").await, refused);
    assert_eq!(with_origin(&hub, &format!("http://{}", hub.addr)).await, refused);

    let any = TestHub::start_with(|config| config.allowed_origins = AllowedOrigins::Any).await;
    assert_eq!(with_origin(&any, "http://evil.example").await, Ok(()));
}

/// HTTP routes refuse bad credentials with 401 and count them: a wrong API key, a forged JWT.
#[tokio::test]
async fn bad_http_credentials_are_401_and_counted() {
    let hub = TestHub::start().await;
    let body = json!({"user_id": "u1", "title": "t", "message": "m"});
    let url = hub.http_url("/api/v1/notifications");
    let wrong = send(http().post(&url).header("x-api-key", "wrong-key-0123456789").json(&body)).await;
    assert_eq!(json_response(wrong).await, (401, api_error("unauthorized", "invalid API key")));
    let forged = auth::mint(
        &auth::claims_for(&user_identity("admin"), Duration::from_secs(60)),
        &SigningKey::Hs256("not-the-hub-secret-0123456789".into()),
    )
    .expect("mint");
    let response = send(http().post(&url).bearer_auth(forged).json(&body)).await;
    assert_eq!(json_response(response).await, (401, api_error("unauthorized", "invalid token: bad signature")));
    let metrics = hub.metrics().await;
    assert!(metrics.lines().any(|l| l == "rtctl_auth_failures_total{reason=\"api_key\"} 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "rtctl_auth_failures_total{reason=\"invalid\"} 1"), "{metrics}");
}

/// A hub configured with a PEM public key accepts RS256 tokens signed by its private key and refuses
/// HS256 ones (even signed with a secret it once had): only the configured algorithm counts.
#[tokio::test]
async fn a_pem_public_key_hub_takes_rs256_only() {
    let hub = TestHub::start_with(|config| {
        config.keys = auth::KeySource::PublicKeyPem(include_str!("fixtures/rs256-public.pem").to_owned());
    })
    .await;
    let claims = auth::claims_for(&user_identity("u1"), Duration::from_secs(3600));
    let rs256 =
        auth::mint(&claims, &SigningKey::Rs256(include_str!("fixtures/rs256-private.pem").into())).expect("mint");
    let (_ws, greeting) = hub.connect("/ws/notifications/", &rs256).await;
    assert_eq!(greeting["user_id"], "u1");
    let hs256 = auth::mint(&claims, &SigningKey::Hs256("some-shared-secret-0123456789".into())).expect("mint");
    assert_eq!(refused(&hub, &hs256).await, (4001, "token algorithm not allowed".to_owned()));
}

/// A JWKS hub picks the key by `kid`: an ES256 token with kid `ec-1` gets in; an unknown kid is refused.
#[tokio::test]
async fn a_jwks_hub_chooses_the_key_by_kid() {
    let hub = TestHub::start_with(|config| {
        config.keys = auth::KeySource::Jwks(include_str!("fixtures/jwks.json").to_owned());
    })
    .await;
    let claims = auth::claims_for(&user_identity("u2"), Duration::from_secs(3600));
    let key = SigningKey::Es256(include_str!("fixtures/es256-private.pem").into());
    let es256 = auth::mint_with_kid(&claims, &key, Some("ec-1")).expect("mint");
    let (_ws, greeting) = hub.connect("/ws/notifications/", &es256).await;
    assert_eq!(greeting["user_id"], "u2");
    let unknown = auth::mint_with_kid(&claims, &key, Some("nope")).expect("mint");
    let (code, reason) = refused(&hub, &unknown).await;
    assert_eq!(code, 4001);
    assert!(reason.contains("kid"), "{reason}");
}

/// A `kid` of 200 characters, quoted in the refusal, still gives a clean close 4001: the reason is cut
/// to the 123 bytes a close frame can carry (an invalid frame would reach the client as 1006).
#[tokio::test]
async fn an_overlong_kid_still_closes_cleanly_with_4001() {
    let hub = TestHub::start_with(|config| {
        config.keys = auth::KeySource::Jwks(include_str!("fixtures/jwks.json").to_owned());
    })
    .await;
    let claims = auth::claims_for(&user_identity("u2"), Duration::from_secs(3600));
    let key = SigningKey::Es256(include_str!("fixtures/es256-private.pem").into());
    let kid = "é".repeat(200);
    let token = auth::mint_with_kid(&claims, &key, Some(&kid)).expect("mint");
    let (code, reason) = refused(&hub, &token).await;
    assert_eq!(code, 4001);
    assert!(reason.starts_with("invalid token: unknown kid \"éé"), "{reason}");
    assert!(reason.len() <= 123 && reason.len() > 120, "{} bytes: {reason}", reason.len());
}

/// With an issuer and an audience configured, a token must carry both, matching.
#[tokio::test]
async fn configured_issuer_and_audience_are_required() {
    let hub = TestHub::start_with(|config| {
        config.jwt_issuer = Some("https://sso.example.com".into());
        config.jwt_audience = Some("rtctl".into());
    })
    .await;
    let secret = SigningKey::Hs256(hub.config.jwt_secret().expect("a secret").to_owned());
    let mut claims = auth::claims_for(&user_identity("u3"), Duration::from_secs(3600));
    let bare = auth::mint(&claims, &secret).expect("mint");
    assert_eq!(refused(&hub, &bare).await.0, 4001);
    claims.iss = Some("https://sso.example.com".into());
    claims.aud = Some("someone-else".into());
    let wrong_audience = auth::mint(&claims, &secret).expect("mint");
    assert_eq!(refused(&hub, &wrong_audience).await.0, 4001);
    claims.aud = Some("rtctl".into());
    let good = auth::mint(&claims, &secret).expect("mint");
    let (_ws, greeting) = hub.connect("/ws/notifications/", &good).await;
    assert_eq!(greeting["user_id"], "u3");
}

/// A JWT whose `nbf` is a minute ahead is refused with 4001 until then (PROTOCOL 1.1 "Token lifetime").
#[tokio::test]
async fn a_token_before_its_nbf_is_refused() {
    let hub = TestHub::start().await;
    let secret = hub.config.jwt_secret().expect("a secret").to_owned();
    let sign = |nbf: u64| {
        let payload = json!({"sub": "u1", "exp": unix_now() + 3600, "nbf": nbf});
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &payload, &key).expect("sign")
    };
    assert_eq!(
        refused(&hub, &sign(unix_now() + 60)).await,
        (4001, "invalid token: token not yet valid (nbf)".to_owned())
    );
    hub.notifications_with(&sign(unix_now())).await;
}
