//! Authentication (PROTOCOL §1): JWT verification (HS256 secret, RS256/ES256 PEM key, JWKS by `kid`),
//! JWT minting for the CLI, and single-use ws tokens.

use std::time::Duration;

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub is_staff: bool,
    pub orgs: Vec<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// Why a token was refused. Each maps to close 4001 / HTTP 401 and to a metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token algorithm not allowed")]
    Algorithm,
    #[error("unknown or used ws token")]
    UnknownWsToken,
}

impl AuthError {
    /// A stable label for metrics: `missing`, `expired`, `invalid`, `algorithm`, `ws_token`.
    pub fn reason(&self) -> &'static str {
        todo!()
    }
}

/// Where the hub's JWT verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// HS256 shared secret.
    Secret(String),
    /// PEM public key (RSA → RS256, EC P-256 → ES256).
    PublicKeyPem(String),
    /// JWKS document (JSON text); the key is chosen by the token's `kid`.
    Jwks(String),
}

/// Verifies JWTs for one configuration.
pub struct Verifier {}

impl Verifier {
    /// Builds a verifier; fails with a message naming what is wrong with the key material.
    pub fn new(keys: &KeySource, issuer: Option<String>, audience: Option<String>) -> anyhow::Result<Self> {
        todo!()
    }

    /// Verifies a JWT and returns the identity it carries.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        todo!()
    }
}
