//! Authentication (PROTOCOL §1): who a token says the caller is, and why a token is refused. The
//! hub verifies JWTs ([`Verifier`]: HS256 secret, RS256/ES256 PEM key, JWKS by `kid` from a file or a URL kept
//! fresh by [`jwks`](JwksUrl)) and redeems
//! single-use ws tokens ([`WsTokens`]); the CLI and the bench mint JWTs ([`mint`], [`Minter`]).

mod claims;
mod jwks;
mod mint;
mod verify;
mod ws_token;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

pub use claims::{ClaimMap, StaffRule, parse_paths as parse_claim_paths, path_setting as claim_path};
pub use jwks::{DEFAULT_JWKS_MIN_REFETCH, DEFAULT_JWKS_REFRESH, JwksStatus, JwksUrl};
pub use mint::{Claims, Minter, SigningKey, claims_for, mint, mint_with_kid};
pub use verify::{JWT_LEEWAY_SECS, KeySource, Verifier, inspect};
pub use ws_token::{DEFAULT_WS_TOKEN_TTL, WS_TOKEN_PREFIX, WsTokens, capped_lifetime};

/// Random bytes in a ws token or a generated secret: 256 bits, beyond guessing.
const RANDOM_BYTES: usize = 32;

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub user_id: String,
    pub is_staff: bool,
    pub orgs: Vec<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// A token that passed: who it says the caller is, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: Identity,
    /// The `exp` (Unix seconds) of the JWT, or of the JWT a ws token was minted from: the token is
    /// valid through that second. `None` only for a ws token stored by a hub that did not record it.
    pub exp: Option<u64>,
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
    /// The shared token store (Redis) did not answer: not the client's fault (close 1011, HTTP 503).
    #[error("token store unavailable")]
    Unavailable,
    /// A JWKS URL was never fetched, so no JWT can be checked: not the client's fault (1011, 503).
    #[error("JWT keys unavailable")]
    KeysUnavailable,
}

impl AuthError {
    /// A stable label for metrics: `missing`, `expired`, `invalid`, `algorithm`, `ws_token`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Expired => "expired",
            AuthError::Invalid(_) => "invalid",
            AuthError::Algorithm => "algorithm",
            AuthError::UnknownWsToken => "ws_token",
            AuthError::Unavailable => "unavailable",
            AuthError::KeysUnavailable => "keys_unavailable",
        }
    }
}

fn invalid(why: impl Into<String>) -> AuthError {
    AuthError::Invalid(why.into())
}

/// Whether `token` has a JWT's shape: three dot-separated base64url segments. The signature may be
/// empty so that an `alg: none` token is routed to the verifier and refused there with a clear reason.
pub fn looks_like_jwt(token: &str) -> bool {
    let b64url = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let parts: Vec<&str> = token.split('.').collect();
    matches!(parts.as_slice(), [h, p, s] if !h.is_empty() && !p.is_empty() && b64url(h) && b64url(p) && b64url(s))
}

/// 32 random bytes, base64url without padding: a fresh JWT secret or API key for the first-start config.
///
/// Never starts with `-`: a secret copied from `rtctl.toml` into `--jwt-secret -6f…` would read as a
/// flag (one secret in 64 did; a test of `rtctl bench` failed that way). Drawing again costs 0.02 bits.
pub fn random_secret() -> String {
    let mut bytes = [0u8; RANDOM_BYTES];
    loop {
        // ThreadRng is a CSPRNG seeded from the OS.
        rand::rng().fill_bytes(&mut bytes);
        let secret = URL_SAFE_NO_PAD.encode(bytes);
        if !secret.starts_with('-') {
            return secret;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    pub(super) const SECRET: &str = "test-secret-with-enough-bytes-for-hs256";

    /// Generated secrets are 43 base64url characters and never look like a flag.
    #[test]
    fn random_secrets_never_start_with_a_dash() {
        for _ in 0..2000 {
            let secret = random_secret();
            assert_eq!(secret.len(), 43);
            assert!(!secret.starts_with('-'), "{secret}");
        }
    }
    pub(super) const RS_PRIVATE: &str = include_str!("../../tests/fixtures/rs256-private.pem");
    pub(super) const RS_PUBLIC: &str = include_str!("../../tests/fixtures/rs256-public.pem");
    pub(super) const RS_PUBLIC_PKCS1: &str = include_str!("../../tests/fixtures/rs256-public-pkcs1.pem");
    pub(super) const EC_PRIVATE: &str = include_str!("../../tests/fixtures/es256-private.pem");
    pub(super) const EC_PUBLIC: &str = include_str!("../../tests/fixtures/es256-public.pem");
    pub(super) const JWKS: &str = include_str!("../../tests/fixtures/jwks.json");

    pub(super) fn alice() -> Identity {
        Identity {
            user_id: "42".into(),
            is_staff: true,
            orgs: vec!["acme".into(), "7".into()],
            name: Some("Alice".into()),
            email: Some("alice@example.com".into()),
        }
    }

    pub(super) fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    /// Only the JWT shape passes looks_like_jwt; ws tokens never do.
    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(!looks_like_jwt("eyJh.eyJz"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(".b.c"));
        assert!(!looks_like_jwt("a+/.b.c"));
        assert!(!looks_like_jwt(&WsTokens::new(DEFAULT_WS_TOKEN_TTL).mint_at(
            Verified { identity: alice(), exp: None },
            DEFAULT_WS_TOKEN_TTL,
            std::time::Instant::now()
        )));
    }

    /// Each label is stable.
    #[test]
    fn reasons() {
        assert_eq!(AuthError::Missing.reason(), "missing");
        assert_eq!(invalid("x").reason(), "invalid");
        assert_eq!(AuthError::Algorithm.reason(), "algorithm");
        assert_eq!(AuthError::UnknownWsToken.reason(), "ws_token");
    }

    /// Secrets are 32 random bytes in unpadded base64url, and differ each time.
    #[test]
    fn secrets_are_random() {
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
    }
}
