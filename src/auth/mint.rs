//! JWT minting, for the CLI (`rtctl token`, `rtctl connect`) and the bench: claims, signing keys, and a
//! [`Minter`] that reads its key once for many tokens.

use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::Identity;

/// The claims the hub reads, under their wire names; what `mint` signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default)]
    pub is_staff: bool,
    #[serde(default)]
    pub orgs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Set it when the hub is configured with an issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Set it when the hub is configured with an audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Claims for `identity`, issued now and expiring after `ttl`.
pub fn claims_for(identity: &Identity, ttl: Duration) -> Claims {
    let now = jsonwebtoken::get_current_timestamp();
    Claims {
        sub: identity.user_id.clone(),
        exp: now.saturating_add(ttl.as_secs()),
        iat: Some(now),
        is_staff: identity.is_staff,
        orgs: identity.orgs.clone(),
        name: identity.name.clone(),
        email: identity.email.clone(),
        iss: None,
        aud: None,
    }
}

/// A key to sign JWTs with, one variant per supported algorithm.
#[derive(Debug, Clone)]
pub enum SigningKey {
    /// HS256 shared secret.
    Hs256(String),
    /// RS256 private key, PEM (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY").
    Rs256(String),
    /// ES256 private key, PEM (PKCS#8 "PRIVATE KEY" on curve P-256).
    Es256(String),
}

/// Signs `claims` with `key`, without a `kid` header.
pub fn mint(claims: &Claims, key: &SigningKey) -> anyhow::Result<String> {
    mint_with_kid(claims, key, None)
}

/// Signs `claims` with `key`, naming the key in the header's `kid` (needed when the hub uses a JWKS).
pub fn mint_with_kid(claims: &Claims, key: &SigningKey, kid: Option<&str>) -> anyhow::Result<String> {
    Minter::new(key, kid)?.mint(claims)
}

/// A signing key read once, for many tokens: reading a PEM key costs far more than signing with it, and
/// the bench mints one token per subscriber.
pub struct Minter {
    header: Header,
    key: EncodingKey,
}

impl Minter {
    /// Reads `key`; fails with a message saying what the key is when it is not the kind it claims.
    pub fn new(key: &SigningKey, kid: Option<&str>) -> anyhow::Result<Self> {
        let (alg, key) = match key {
            SigningKey::Hs256(secret) => (Algorithm::HS256, EncodingKey::from_secret(secret.as_bytes())),
            SigningKey::Rs256(pem) => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| not_a_private_key(pem, "RSA"))?,
            ),
            SigningKey::Es256(pem) => {
                (Algorithm::ES256, es256_key(pem).ok_or_else(|| not_a_private_key(pem, "EC P-256"))?)
            }
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        Ok(Self { header, key })
    }

    /// Signs `claims`.
    pub fn mint(&self, claims: &Claims) -> anyhow::Result<String> {
        jsonwebtoken::encode(&self.header, claims, &self.key).context("signing the JWT")
    }
}

/// Reads an ES256 signing key: an EC private key on P-256. jsonwebtoken reads a key on any curve and fails
/// only when it signs, so a trial signature tells P-256 from the others.
fn es256_key(pem: &str) -> Option<EncodingKey> {
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).ok()?;
    jsonwebtoken::crypto::sign(b"probe", &key, Algorithm::ES256).ok()?;
    Some(key)
}

/// Says that `pem`, refused as a `wanted` private key, is not one, and what it holds instead when that is
/// cheap to tell: the other kind of key and the algorithm it signs, a key in a form jsonwebtoken does not
/// read, or a public key. jsonwebtoken's own error is a bare `InvalidKeyFormat`.
fn not_a_private_key(pem: &str, wanted: &str) -> anyhow::Error {
    let holds = if EncodingKey::from_rsa_pem(pem.as_bytes()).is_ok() {
        ": it is an RSA private key, which signs RS256"
    } else if es256_key(pem).is_some() {
        ": it is an EC P-256 private key, which signs ES256"
    } else if EncodingKey::from_ec_pem(pem.as_bytes()).is_ok() {
        ": it is an EC private key on another curve (ES256 needs P-256)"
    } else if pem.contains("BEGIN EC PRIVATE KEY") {
        ": it is an EC private key in SEC1 form, and ES256 takes PKCS#8 (`openssl pkcs8 -topk8 -nocrypt`)"
    } else if pem.contains("PUBLIC KEY") {
        ": it is a public key"
    } else {
        ""
    };
    anyhow::anyhow!("not an {wanted} private key in PEM{holds}")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{EC_PRIVATE, SECRET, alice};
    use super::*;

    /// A minter reads its key once and signs any number of claims exactly as `mint` does (HS256 is
    /// deterministic); a key of the wrong kind is refused when the minter is made, saying what it is.
    #[test]
    fn a_minter_signs_as_mint_does() {
        let key = SigningKey::Hs256(SECRET.into());
        let minter = Minter::new(&key, None).unwrap();
        for ttl in [60, 3600] {
            let claims = claims_for(&alice(), Duration::from_secs(ttl));
            assert_eq!(minter.mint(&claims).unwrap(), mint(&claims, &key).unwrap());
        }
        let error = Minter::new(&SigningKey::Rs256(EC_PRIVATE.into()), None).err().unwrap();
        assert_eq!(
            error.to_string(),
            "not an RSA private key in PEM: it is an EC P-256 private key, which signs ES256"
        );
    }
}
