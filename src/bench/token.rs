//! A private HS256 JWT mint for bench users (to be replaced by `auth::mint` when merged).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

/// How long a bench token stays valid; long enough for any run, short enough not to be worth stealing.
const TOKEN_LIFETIME_S: u64 = 6 * 3600;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    orgs: &'a [&'a str],
    is_staff: bool,
}

/// An HS256 signing key built once per run.
pub struct Mint {
    key: EncodingKey,
    header: Header,
}

impl Mint {
    pub fn new(secret: &str) -> Self {
        Self { key: EncodingKey::from_secret(secret.as_bytes()), header: Header::default() }
    }

    /// A token for user `sub`, member of `orgs`.
    pub fn token(&self, sub: &str, orgs: &[&str], is_staff: bool) -> anyhow::Result<String> {
        let iat = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let claims = Claims { sub, exp: iat + TOKEN_LIFETIME_S, iat, orgs, is_staff };
        jsonwebtoken::encode(&self.header, &claims, &self.key).context("sign bench token")
    }
}
