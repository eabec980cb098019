//! Claim mapping (issue 20): a hub told where the user id, staff flag and organizations are reads
//! Keycloak's and djangorestframework-simplejwt's tokens as they come, and `rtctl token inspect` shows
//! the same mapping.

use std::process::Stdio;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use rtctl::auth::{ClaimMap, StaffRule};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::util::{TIMEOUT, TestHub, recv, recv_close};

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()
}

/// `payload` signed with the hub's HS256 secret, an hour from expiry.
fn sign(hub: &TestHub, mut payload: Value) -> String {
    payload["exp"] = json!(unix_now() + 3600);
    let secret = hub.config.jwt_secret().expect("an HS256 hub");
    jsonwebtoken::encode(&Header::default(), &payload, &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
}

/// A Keycloak access token's claims for `user`, with realm roles and groups.
fn keycloak(user: &str, roles: &[&str], groups: &[&str]) -> Value {
    json!({"sub": format!("{user}-uuid"), "preferred_username": user, "email": format!("{user}@example.com"),
           "realm_access": {"roles": roles}, "groups": groups, "aud": "account", "typ": "Bearer"})
}

fn keycloak_map() -> ClaimMap {
    ClaimMap {
        user_id: vec!["preferred_username".into(), "sub".into()],
        staff: StaffRule::Holds("realm_access.roles".into(), "admin".into()),
        orgs: vec!["organization".into(), "groups".into()],
        ..ClaimMap::default()
    }
}

/// With Keycloak's mapping, `realm_access.roles` holding `admin` opens the staff dashboard, `groups` the
/// org streams, and the user id is `preferred_username`; without the role the dashboard is refused.
#[tokio::test]
async fn keycloak_roles_and_groups_map_to_staff_and_orgs() {
    let hub = TestHub::start_with(|config| config.claims = keycloak_map()).await;
    let admin = sign(&hub, keycloak("alice", &["offline_access", "admin"], &["acme"]));
    let (_dashboard, _) = hub.connect("/ws/admin/dashboard/", &admin).await;
    let (_events, _) = hub.connect("/ws/events/acme/", &admin).await;

    let user = sign(&hub, keycloak("bob", &["user"], &["acme"]));
    let mut refused = hub.connect_raw("/ws/admin/dashboard/", &user).await;
    assert_eq!(recv_close(&mut refused).await, (4003, "staff only".to_owned()));
    let mut refused = hub.connect_raw("/ws/events/globex/", &user).await;
    assert_eq!(recv_close(&mut refused).await, (4003, "not a member of this organization".to_owned()));

    let mut bob = hub.notifications_with(&user).await;
    hub.notify("bob", "for bob by username", "info").await;
    let push = recv(&mut bob).await;
    assert_eq!(push["notification"]["title"], "for bob by username", "{push}");
}

/// With `claim_user_id = user_id`, a djangorestframework-simplejwt access token (integer `user_id`, no
/// `sub`) names its user; under the default mapping the same token lacks `sub`.
#[tokio::test]
async fn a_simplejwt_token_maps_by_user_id() {
    let simplejwt =
        |hub: &TestHub| sign(hub, json!({"token_type": "access", "jti": "b9f1", "user_id": 42, "iat": unix_now()}));
    let hub = TestHub::start_with(|config| config.claims.user_id = vec!["user_id".into()]).await;
    let mut ws = hub.notifications_with(&simplejwt(&hub)).await;
    hub.notify("42", "for user 42", "info").await;
    assert_eq!(recv(&mut ws).await["notification"]["title"], "for user 42");

    let plain = TestHub::start().await;
    let mut refused = plain.connect_raw("/ws/notifications/", &simplejwt(&plain)).await;
    assert_eq!(recv_close(&mut refused).await, (4001, "invalid token: missing claim sub".to_owned()));
}

/// `rtctl token inspect --json` reports the identity the hub would map, with the mapping from the
/// config file and from flags, and says why a token maps to none.
#[tokio::test]
async fn token_inspect_shows_the_mapped_identity() {
    let hub = TestHub::start().await;
    let dir = TempDir::new().expect("temp dir");
    std::fs::write(
        dir.path().join("rtctl.toml"),
        "claim_user_id = \"preferred_username,sub\"\nclaim_staff = \"realm_access.roles=admin\"\nclaim_orgs = \"groups\"\n",
    )
    .expect("write the config");
    let token = sign(&hub, keycloak("alice", &["admin"], &["acme", "globex"]));
    let report = inspect(&hub, &dir, &[&token]).await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(
        report["identity"],
        json!({"user_id": "alice", "is_staff": true, "orgs": ["acme", "globex"], "name": null,
               "email": "alice@example.com"})
    );

    let report = inspect(&hub, &dir, &["--claim-user-id", "nickname", &token]).await;
    assert_eq!(
        (&report["identity"], &report["identity_error"]),
        (&Value::Null, &json!("invalid token: missing claim nickname"))
    );
    assert_eq!(report["valid"], false);
}

/// Runs `rtctl token inspect --json ARGS` in `dir` against `hub`'s secret and parses its report.
async fn inspect(hub: &TestHub, dir: &TempDir, args: &[&str]) -> Value {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtctl"));
    command.current_dir(dir.path()).env("NO_COLOR", "1").env_remove("RUST_LOG").stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RTCTL_") {
            command.env_remove(name);
        }
    }
    command.env("RTCTL_JWT_SECRET", hub.config.jwt_secret().expect("a secret"));
    command.args(["token", "inspect", "--json"]).args(args);
    let out = tokio::time::timeout(TIMEOUT + Duration::from_secs(5), command.output())
        .await
        .expect("rtctl finished in time")
        .expect("rtctl ran");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
}
