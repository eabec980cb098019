//! JWT verification: the keys the hub is configured with, pinned to their algorithm, and the identity a
//! valid token carries.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use std::sync::Arc;

use super::claims::ClaimMap;
use super::jwks::{JwksStatus, JwksUrl, RemoteJwks};
use super::{AuthError, Identity, Verified, invalid};

/// Clock skew tolerated on `exp`, in seconds: none. PROTOCOL §1-2 refuse an expired token (4001, HTTP 401)
/// and `rtctl token inspect` calls a token past its `exp` expired, so the hub does too. It checks `exp`
/// and `nbf` (with `NBF_LEEWAY_SECS`), not `iat`, so skew between the minting backend and the hub only moves the end of a
/// token's life by that much, which a client that renews before `exp` never sees. jsonwebtoken's
/// default would be 60 s.
pub const JWT_LEEWAY_SECS: u64 = 0;

/// Clock skew tolerated on `nbf`, in seconds: a backend whose clock runs a little ahead of the hub's
/// mints `nbf = now`, and its token must work at once; a token meant for later (beyond this) is refused.
pub const NBF_LEEWAY_SECS: u64 = 5;

/// Where the hub's JWT verification keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// HS256 shared secret.
    Secret(String),
    /// PEM public key (RSA → RS256, EC P-256 → ES256).
    PublicKeyPem(String),
    /// JWKS document (JSON text); the key is chosen by the token's `kid`.
    Jwks(String),
    /// JWKS fetched from a URL and kept fresh ([`super::JwksUrl`]); the key is chosen by `kid`.
    JwksUrl(JwksUrl),
}

/// Names the kind of key, never the secret (public keys are left out too: they are long, not secret).
impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeySource::Secret(_) => "Secret(***)",
            KeySource::PublicKeyPem(_) => "PublicKeyPem(..)",
            KeySource::Jwks(_) => "Jwks(..)",
            KeySource::JwksUrl(_) => "JwksUrl(..)",
        })
    }
}

/// One verification key, pinned to the single algorithm it may verify: a token never picks the
/// algorithm for a key, which is what rules out the classic RS256-public-key-as-HS256-secret confusion.
#[derive(Debug, Clone)]
pub(super) struct VerifyKey {
    pub(super) kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The keys a verifier checks signatures with.
#[derive(Debug, Clone)]
enum KeySet {
    /// Keys read once from the configuration. Only a JWKS selects keys by `kid`; a secret or a PEM key
    /// is used whatever the token's `kid` says.
    Fixed { keys: Arc<Vec<VerifyKey>>, by_kid: bool },
    /// A JWKS fetched from a URL, replaced as it is fetched again; always by `kid`.
    Remote(Arc<RemoteJwks>),
}

/// Verifies JWTs for one configuration.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: KeySet,
    issuer: Option<String>,
    audience: Option<String>,
    claims: ClaimMap,
}

impl Verifier {
    /// Builds a verifier; fails with a message naming what is wrong with the key material.
    pub fn new(keys: &KeySource, issuer: Option<String>, audience: Option<String>) -> anyhow::Result<Self> {
        let fixed = |keys, by_kid| KeySet::Fixed { keys: Arc::new(keys), by_kid };
        let keys = match keys {
            KeySource::Secret(secret) => {
                if secret.is_empty() {
                    bail!("the JWT secret is empty");
                }
                let key = DecodingKey::from_secret(secret.as_bytes());
                fixed(vec![VerifyKey { kid: None, alg: Algorithm::HS256, key }], false)
            }
            KeySource::PublicKeyPem(pem) => fixed(vec![pem_key(pem)?], false),
            KeySource::Jwks(json) => fixed(jwks_keys(json)?, true),
            KeySource::JwksUrl(source) => KeySet::Remote(Arc::new(RemoteJwks::new(source)?)),
        };
        Ok(Verifier { keys, issuer, audience, claims: ClaimMap::default() })
    }

    /// The same verifier, mapping claims to identities with `claims` instead of PROTOCOL §1's defaults.
    pub fn with_claims(self, claims: ClaimMap) -> Self {
        Self { claims, ..self }
    }

    /// With a JWKS URL: fetches the keys now (at start), and keeps them fresh until `shutdown`. A
    /// failed first fetch is logged, not fatal: the hub starts, `/readyz` says why JWTs fail, and the
    /// fetch is retried. Nothing to do for keys from the configuration.
    pub async fn start_fetching(&self, shutdown: tokio_util::sync::CancellationToken) {
        if let KeySet::Remote(remote) = &self.keys {
            if let Ok(count) = remote.refresh().await {
                tracing::info!(keys = count, "JWKS fetched");
            }
            tokio::spawn(Arc::clone(remote).keep_fresh(shutdown));
        }
    }

    /// With a JWKS URL, fetches the set at once (rate-limited) when `token` names a `kid` it lacks, so
    /// that a token signed with a newly rotated key verifies on its first use.
    pub async fn prepare_for(&self, token: &str) {
        let KeySet::Remote(remote) = &self.keys else { return };
        let Ok((header, _)) = split_decode(token) else { return };
        let kid = header.get("kid").and_then(Value::as_str);
        let keys = remote.keys();
        let known = match kid {
            Some(kid) => keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
            None => !keys.is_empty(),
        };
        if !known {
            remote.refetch_for(kid).await;
        }
    }

    /// The state of a JWKS URL's fetching, for `/readyz`; `None` for keys from the configuration.
    pub fn jwks_status(&self) -> Option<JwksStatus> {
        match &self.keys {
            KeySet::Remote(remote) => Some(remote.status()),
            KeySet::Fixed { .. } => None,
        }
    }

    /// Verifies a JWT and returns the identity it carries.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_until(token).map(|verified| verified.identity)
    }

    /// Verifies a JWT and returns the identity it carries and its `exp`, which bounds a connection
    /// opened with it (PROTOCOL §7).
    pub fn verify_until(&self, token: &str) -> Result<Verified, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let (header, _) = split_decode(token)?;
        let (keys, by_kid) = match &self.keys {
            KeySet::Fixed { keys, by_kid } => (Arc::clone(keys), *by_kid),
            KeySet::Remote(remote) => (remote.keys(), true),
        };
        if keys.is_empty() {
            // Only a JWKS URL that was never fetched has no keys: not the client's fault.
            return Err(AuthError::KeysUnavailable);
        }
        // Checked on the raw header, before jsonwebtoken parses it: its `Algorithm` has no `none`, so a
        // `none` token would otherwise come back as a confusing JSON error rather than `Algorithm`.
        let alg = header.get("alg").and_then(Value::as_str).ok_or_else(|| invalid("header has no alg"))?;
        if !keys.iter().any(|k| alg_name(k.alg) == alg) {
            return Err(AuthError::Algorithm);
        }
        let key = select_key(&keys, by_kid, header.get("kid").and_then(Value::as_str))?;
        if alg_name(key.alg) != alg {
            // The kid names a key of another type, e.g. an ES256 token carrying an RSA key's kid.
            return Err(AuthError::Algorithm);
        }

        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &self.validation(key.alg))
            .map_err(map_jwt_error)?;
        // Checked here rather than by jsonwebtoken, whose one leeway would apply to `exp` too.
        match data.claims.get("nbf") {
            None | Some(Value::Null) => {}
            Some(nbf) => {
                let nbf = nbf.as_f64().ok_or_else(|| invalid("claim nbf must be a number"))?;
                if nbf > (jsonwebtoken::get_current_timestamp() + NBF_LEEWAY_SECS) as f64 {
                    return Err(invalid("token not yet valid (nbf)"));
                }
            }
        }
        // jsonwebtoken checked that `exp` is there and a number; a fractional one counts to its second.
        let exp =
            data.claims.get("exp").and_then(Value::as_f64).ok_or_else(|| invalid("claim exp must be a number"))?;
        let identity = self.claims.identity(&data.claims)?;
        Ok(Verified { identity, exp: Some(exp as u64) })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = JWT_LEEWAY_SECS;
        v.set_required_spec_claims(&["exp"]);
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".to_owned());
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.required_spec_claims.insert("aud".to_owned());
            }
            // jsonwebtoken refuses any token with an `aud` unless one is configured; Keycloak always sets
            // one (`account`), and PROTOCOL §1 says aud is checked only when configured.
            None => v.validate_aud = false,
        }
        v
    }
}

fn select_key<'k>(keys: &'k [VerifyKey], by_kid: bool, kid: Option<&str>) -> Result<&'k VerifyKey, AuthError> {
    if !by_kid {
        return keys.first().ok_or_else(|| invalid("no verification key"));
    }
    match kid {
        Some(kid) => {
            keys.iter().find(|k| k.kid.as_deref() == Some(kid)).ok_or_else(|| invalid(format!("unknown kid {kid:?}")))
        }
        None if keys.len() == 1 => Ok(&keys[0]),
        None => Err(invalid(format!("token has no kid and the key set has {} keys", keys.len()))),
    }
}

/// Reads a PEM public key, telling RSA from EC P-256 by trying each parser.
fn pem_key(pem: &str) -> anyhow::Result<VerifyKey> {
    if pem.contains("PRIVATE KEY") {
        bail!("the PEM holds a private key; give the hub the public key (openssl pkey -pubout)");
    }
    // from_rsa_pem takes both SPKI "PUBLIC KEY" and PKCS#1 "RSA PUBLIC KEY", and refuses EC keys.
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok(VerifyKey { kid: None, alg: Algorithm::RS256, key });
    }
    let key = DecodingKey::from_ec_pem(pem.as_bytes()).context("the PEM is neither an RSA nor an EC public key")?;
    // An uncompressed P-256 point is 0x04 || x || y, 65 bytes; P-384 (ES384) is not configured.
    let point = key.try_get_as_bytes().context("reading the EC public key")?;
    if point.len() != 65 {
        bail!("the EC public key is not on curve P-256 (only ES256 is supported)");
    }
    Ok(VerifyKey { kid: None, alg: Algorithm::ES256, key })
}

/// Reads the RS256 and ES256 signing keys of a JWKS document. Other keys (encryption keys, other
/// algorithms, symmetric keys) are skipped rather than refused: Keycloak publishes its RSA-OAEP key
/// in the same set.
pub(super) fn jwks_keys(json: &str) -> anyhow::Result<Vec<VerifyKey>> {
    let doc: Value = serde_json::from_str(json).context("the JWKS is not JSON")?;
    let entries = doc.get("keys").and_then(Value::as_array).context("the JWKS has no \"keys\" array")?;
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
            _ => continue,
        };
        if let Some(declared) = jwk.common.key_algorithm
            && declared.to_string() != alg_name(alg)
        {
            continue;
        }
        let key = DecodingKey::from_jwk(&jwk).with_context(|| format!("JWKS key #{i} is malformed"))?;
        keys.push(VerifyKey { kid: jwk.common.key_id.clone(), alg, key });
    }
    if keys.is_empty() {
        bail!("the JWKS has no RS256 or ES256 signing key");
    }
    Ok(keys)
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        // A Verifier only ever holds the three algorithms above.
        _ => "unsupported",
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::Algorithm,
        ErrorKind::InvalidSignature => invalid("bad signature"),
        ErrorKind::MissingRequiredClaim(c) => invalid(format!("missing claim {c}")),
        ErrorKind::InvalidClaimFormat(c) => invalid(format!("claim {c} has the wrong type")),
        ErrorKind::InvalidIssuer => invalid("wrong issuer"),
        ErrorKind::InvalidAudience => invalid("wrong audience"),
        ErrorKind::InvalidToken => invalid("malformed token"),
        _ => invalid(format!("malformed token: {e}")),
    }
}

/// Splits a JWT and decodes its header and payload as JSON objects, verifying nothing.
fn split_decode(token: &str) -> Result<(Value, Value), AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed token: a JWT has three dot-separated parts"));
    };
    let decode = |part: &str, what: &str| -> Result<Value, AuthError> {
        let bytes =
            URL_SAFE_NO_PAD.decode(part).map_err(|_| invalid(format!("malformed token: {what} is not base64url")))?;
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|_| invalid(format!("malformed token: {what} is not JSON")))?;
        if !value.is_object() {
            return Err(invalid(format!("malformed token: {what} is not a JSON object")));
        }
        Ok(value)
    };
    Ok((decode(header, "header")?, decode(payload, "payload")?))
}

/// Decodes a JWT's header and claims WITHOUT verifying anything (for `rtctl token inspect`).
pub fn inspect(token: &str) -> Result<(Value, Value), AuthError> {
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    split_decode(token)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::super::tests::{
        EC_PRIVATE, EC_PUBLIC, JWKS, RS_PRIVATE, RS_PUBLIC, RS_PUBLIC_PKCS1, SECRET, alice, b64,
    };
    use super::super::{SigningKey, claims_for, looks_like_jwt, mint, mint_with_kid};
    use super::*;

    fn hs_verifier() -> Verifier {
        Verifier::new(&KeySource::Secret(SECRET.into()), None, None).unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    /// Signs an arbitrary JSON payload with HS256, for claims `Claims` cannot express.
    fn hs_raw(payload: Value) -> String {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &payload, &key).unwrap()
    }

    /// A token minted from an identity verifies back to the same identity.
    #[test]
    fn hs256_round_trip() {
        let token = mint(&claims_for(&alice(), Duration::from_secs(60)), &SigningKey::Hs256(SECRET.into())).unwrap();
        assert!(looks_like_jwt(&token));
        assert_eq!(hs_verifier().verify(&token), Ok(alice()));
    }

    /// Absent optional claims take PROTOCOL §1's defaults.
    #[test]
    fn defaults_for_optional_claims() {
        let token = hs_raw(json!({"sub": "u1", "exp": now() + 60}));
        let id = hs_verifier().verify(&token).unwrap();
        assert_eq!(id, Identity { user_id: "u1".into(), is_staff: false, orgs: vec![], name: None, email: None });
    }

    /// A token a second past its exp is `Expired`: there is no leeway.
    #[test]
    fn expired_refused() {
        let mut claims = claims_for(&alice(), Duration::ZERO);
        claims.exp = now() - 1;
        let token = mint(&claims, &SigningKey::Hs256(SECRET.into())).unwrap();
        assert_eq!(hs_verifier().verify(&token), Err(AuthError::Expired));
        assert_eq!(AuthError::Expired.reason(), "expired");
    }

    /// A token signed with another secret is `Invalid`.
    #[test]
    fn wrong_secret_refused() {
        let token = mint(&claims_for(&alice(), Duration::from_secs(60)), &SigningKey::Hs256("other".into())).unwrap();
        assert_eq!(hs_verifier().verify(&token), Err(AuthError::Invalid("bad signature".into())));
    }

    /// `exp` is required.
    #[test]
    fn missing_exp_refused() {
        let token = hs_raw(json!({"sub": "u1"}));
        assert_eq!(hs_verifier().verify(&token), Err(AuthError::Invalid("missing claim exp".into())));
    }

    /// `sub` is required.
    #[test]
    fn missing_sub_refused() {
        let token = hs_raw(json!({"exp": now() + 60, "is_staff": true}));
        assert_eq!(hs_verifier().verify(&token), Err(AuthError::Invalid("missing claim sub".into())));
    }

    /// Integer `sub` and `orgs` elements become decimal strings; floats and objects are refused.
    #[test]
    fn numeric_ids_become_strings() {
        let token = hs_raw(json!({"sub": 42, "exp": now() + 60, "orgs": [7, "acme"], "is_staff": false}));
        let id = hs_verifier().verify(&token).unwrap();
        assert_eq!(id.user_id, "42");
        assert_eq!(id.orgs, vec!["7".to_string(), "acme".to_string()]);

        let token = hs_raw(json!({"sub": 4.5, "exp": now() + 60}));
        assert_eq!(hs_verifier().verify(&token), Err(invalid("claim sub: user id must be a string or an integer")));
        let token = hs_raw(json!({"sub": "1", "exp": now() + 60, "orgs": [{"id": 1}]}));
        assert!(matches!(hs_verifier().verify(&token), Err(AuthError::Invalid(_))));
        let token = hs_raw(json!({"sub": "1", "exp": now() + 60, "is_staff": "yes"}));
        assert!(matches!(hs_verifier().verify(&token), Err(AuthError::Invalid(_))));
    }

    /// A `sub` longer than the protocol's user id rule allows is refused with the rule as the reason.
    #[test]
    fn overlong_sub_refused() {
        let token = hs_raw(json!({"sub": "x".repeat(128), "exp": now() + 60}));
        assert_eq!(hs_verifier().verify(&token).map(|id| id.user_id.len()), Ok(128));
        let token = hs_raw(json!({"sub": "x".repeat(129), "exp": now() + 60}));
        assert_eq!(hs_verifier().verify(&token), Err(invalid("claim sub: user id must be 1..128 characters")));
    }

    /// iss and aud are checked when configured: a match passes, a mismatch or absence is refused.
    #[test]
    fn issuer_and_audience() {
        let v =
            Verifier::new(&KeySource::Secret(SECRET.into()), Some("https://idp".into()), Some("rtctl".into())).unwrap();
        let with = |iss: Option<&str>, aud: Option<&str>| {
            let mut c = claims_for(&alice(), Duration::from_secs(60));
            c.iss = iss.map(Into::into);
            c.aud = aud.map(Into::into);
            mint(&c, &SigningKey::Hs256(SECRET.into())).unwrap()
        };
        assert_eq!(v.verify(&with(Some("https://idp"), Some("rtctl"))), Ok(alice()));
        assert_eq!(v.verify(&with(Some("https://evil"), Some("rtctl"))), Err(invalid("wrong issuer")));
        assert_eq!(v.verify(&with(Some("https://idp"), Some("other"))), Err(invalid("wrong audience")));
        assert_eq!(v.verify(&with(None, Some("rtctl"))), Err(invalid("missing claim iss")));
        assert_eq!(v.verify(&with(Some("https://idp"), None)), Err(invalid("missing claim aud")));
    }

    /// Without a configured audience, a token carrying one (as Keycloak's do) is accepted.
    #[test]
    fn audience_ignored_when_not_configured() {
        let mut c = claims_for(&alice(), Duration::from_secs(60));
        c.aud = Some("account".into());
        c.iss = Some("anyone".into());
        let token = mint(&c, &SigningKey::Hs256(SECRET.into())).unwrap();
        assert_eq!(hs_verifier().verify(&token), Ok(alice()));
    }

    /// An unsigned `alg: none` token is refused as `Algorithm`, by every kind of verifier.
    #[test]
    fn alg_none_refused() {
        let payload = json!({"sub": "42", "exp": now() + 60, "is_staff": true});
        let token = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&payload));
        assert!(looks_like_jwt(&token));
        assert_eq!(hs_verifier().verify(&token), Err(AuthError::Algorithm));
        let rs = Verifier::new(&KeySource::PublicKeyPem(RS_PUBLIC.into()), None, None).unwrap();
        assert_eq!(rs.verify(&token), Err(AuthError::Algorithm));
        let jwks = Verifier::new(&KeySource::Jwks(JWKS.into()), None, None).unwrap();
        assert_eq!(jwks.verify(&token), Err(AuthError::Algorithm));
    }

    /// An HS256 token, even one keyed with the RSA public key's PEM text, is refused by an RS256 verifier.
    #[test]
    fn hs256_refused_by_rs256_verifier() {
        let v = Verifier::new(&KeySource::PublicKeyPem(RS_PUBLIC.into()), None, None).unwrap();
        let claims = claims_for(&alice(), Duration::from_secs(60));
        let token = mint(&claims, &SigningKey::Hs256(RS_PUBLIC.into())).unwrap();
        assert_eq!(v.verify(&token), Err(AuthError::Algorithm));
        // And the other way round: an RS256 token against the HS256 verifier.
        let token = mint(&claims, &SigningKey::Rs256(RS_PRIVATE.into())).unwrap();
        assert_eq!(hs_verifier().verify(&token), Err(AuthError::Algorithm));
    }

    /// RS256 verifies with an SPKI or a PKCS#1 public key; ES256 with an EC P-256 one; each refuses the other.
    #[test]
    fn rs256_and_es256_via_pem() {
        let claims = claims_for(&alice(), Duration::from_secs(60));
        let rs_token = mint(&claims, &SigningKey::Rs256(RS_PRIVATE.into())).unwrap();
        let es_token = mint(&claims, &SigningKey::Es256(EC_PRIVATE.into())).unwrap();
        for pem in [RS_PUBLIC, RS_PUBLIC_PKCS1] {
            let v = Verifier::new(&KeySource::PublicKeyPem(pem.into()), None, None).unwrap();
            assert_eq!(v.verify(&rs_token), Ok(alice()));
            assert_eq!(v.verify(&es_token), Err(AuthError::Algorithm));
        }
        let v = Verifier::new(&KeySource::PublicKeyPem(EC_PUBLIC.into()), None, None).unwrap();
        assert_eq!(v.verify(&es_token), Ok(alice()));
        assert_eq!(v.verify(&rs_token), Err(AuthError::Algorithm));
    }

    /// Bad key material is refused when the verifier is built, with a message saying what is wrong.
    #[test]
    fn bad_key_material_refused() {
        let err = Verifier::new(&KeySource::PublicKeyPem(RS_PRIVATE.into()), None, None).unwrap_err();
        assert!(format!("{err:#}").contains("private key"), "{err:#}");
        assert!(Verifier::new(&KeySource::PublicKeyPem("junk".into()), None, None).is_err());
        assert!(Verifier::new(&KeySource::Secret(String::new()), None, None).is_err());
        assert!(Verifier::new(&KeySource::Jwks("{}".into()), None, None).is_err());
        assert!(
            Verifier::new(&KeySource::Jwks(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.into()), None, None).is_err()
        );
    }

    /// A JWKS picks the key by kid; an unknown kid, or a kid of the wrong key type, is refused.
    #[test]
    fn jwks_by_kid() {
        let v = Verifier::new(&KeySource::Jwks(JWKS.into()), None, None).unwrap();
        let claims = claims_for(&alice(), Duration::from_secs(60));
        let rs = SigningKey::Rs256(RS_PRIVATE.into());
        let es = SigningKey::Es256(EC_PRIVATE.into());
        assert_eq!(v.verify(&mint_with_kid(&claims, &rs, Some("rsa-1")).unwrap()), Ok(alice()));
        assert_eq!(v.verify(&mint_with_kid(&claims, &es, Some("ec-1")).unwrap()), Ok(alice()));
        assert_eq!(
            v.verify(&mint_with_kid(&claims, &rs, Some("rsa-2")).unwrap()),
            Err(invalid("unknown kid \"rsa-2\""))
        );
        assert_eq!(v.verify(&mint_with_kid(&claims, &rs, Some("ec-1")).unwrap()), Err(AuthError::Algorithm));
        // Two keys and no kid: ambiguous.
        assert!(matches!(v.verify(&mint(&claims, &rs).unwrap()), Err(AuthError::Invalid(_))));
    }

    /// A one-key JWKS accepts a token without a kid.
    #[test]
    fn jwks_single_key_without_kid() {
        let mut doc: Value = serde_json::from_str(JWKS).unwrap();
        doc["keys"].as_array_mut().unwrap().retain(|k| k["kid"] == "ec-1");
        let v = Verifier::new(&KeySource::Jwks(doc.to_string()), None, None).unwrap();
        let claims = claims_for(&alice(), Duration::from_secs(60));
        assert_eq!(v.verify(&mint(&claims, &SigningKey::Es256(EC_PRIVATE.into())).unwrap()), Ok(alice()));
    }

    /// A token whose `nbf` is beyond the leeway is refused; one at or just after now, or without `nbf`,
    /// is accepted.
    #[test]
    fn nbf_is_honoured() {
        let v = hs_verifier();
        let later = hs_raw(json!({"sub": "u1", "exp": now() + 600, "nbf": now() + 60}));
        assert_eq!(v.verify(&later), Err(invalid("token not yet valid (nbf)")));
        let skewed = hs_raw(json!({"sub": "u1", "exp": now() + 600, "nbf": now() + 2}));
        assert!(v.verify(&skewed).is_ok());
        let past = hs_raw(json!({"sub": "u1", "exp": now() + 600, "nbf": now() - 60}));
        assert!(v.verify(&past).is_ok());
        let bad = hs_raw(json!({"sub": "u1", "exp": now() + 600, "nbf": "soon"}));
        assert_eq!(v.verify(&bad), Err(invalid("claim nbf must be a number")));
    }

    /// Malformed tokens are `Invalid`, an empty one `Missing`.
    #[test]
    fn malformed_tokens() {
        let v = hs_verifier();
        assert_eq!(v.verify(""), Err(AuthError::Missing));
        for t in ["abc", "a.b", "a.b.c.d", "!!.??.x", "e30.e30.sig"] {
            assert!(matches!(v.verify(t), Err(AuthError::Invalid(_))), "{t}");
        }
    }

    /// inspect shows header and claims of any token, even unverifiable ones.
    #[test]
    fn inspect_decodes_without_verifying() {
        let token =
            mint_with_kid(&claims_for(&alice(), Duration::from_secs(60)), &SigningKey::Hs256("x".into()), Some("k"))
                .unwrap();
        let (header, claims) = inspect(&token).unwrap();
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["kid"], "k");
        assert_eq!(claims["sub"], "42");
        assert_eq!(claims["orgs"], json!(["acme", "7"]));
        assert!(matches!(inspect("nope"), Err(AuthError::Invalid(_))));
    }
}
