//! `rtctl token`: mint a JWT (`jwt`), exchange one for a ws token (`ws`), or decode and verify a token
//! (`inspect`) and say in human terms when it expires.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use colored::Colorize;
use reqwest::Method;
use serde_json::{Value, json};

use super::UsageError;
use super::http::{self, Auth};
use crate::auth::{self, AuthError, Claims, Identity, KeySource, SigningKey, Verifier};
use crate::cli::token::{InspectArgs, KeyAlg, MintArgs, TokenArgs, TokenCommand};
use crate::config::{ClientConfig, Credential};

impl MintArgs {
    /// The identity a minted token carries: these flags plus `extra_orgs` (from a connect target).
    pub fn identity(&self, extra_orgs: &[String], staff: bool) -> anyhow::Result<Identity> {
        let Some(user_id) = self.user_id.clone() else {
            return Err(UsageError(anyhow::anyhow!("minting a token needs --user-id (or RTCTL_USER_ID)")).into());
        };
        let mut orgs = self.orgs.clone();
        orgs.extend(extra_orgs.iter().filter(|org| !self.orgs.contains(org)).cloned());
        Ok(Identity {
            user_id,
            is_staff: self.staff || staff,
            orgs,
            name: self.name.clone(),
            email: self.email.clone(),
        })
    }

    /// Signs a token for `identity` with the private key, else the configured secret.
    pub fn mint(&self, identity: &Identity, config: &ClientConfig) -> anyhow::Result<(String, Claims)> {
        let ttl = crate::config::parse_duration("--ttl", &self.ttl).map_err(UsageError)?;
        let mut claims = auth::claims_for(identity, ttl);
        claims.iss = self.iss.clone();
        claims.aud = self.aud.clone();
        let key = match (&self.private_key, self.alg) {
            (Some(path), Some(alg)) => {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read private key {}", path.display()))?;
                match alg {
                    KeyAlg::Rs256 => SigningKey::Rs256(pem),
                    KeyAlg::Es256 => SigningKey::Es256(pem),
                }
            }
            (Some(_), None) => {
                return Err(UsageError(anyhow::anyhow!("--private-key needs --alg RS256 or ES256")).into());
            }
            (None, _) => SigningKey::Hs256(config.require_jwt_secret()?.expose().to_owned()),
        };
        let token = auth::mint_with_kid(&claims, &key, self.kid.as_deref());
        let token = match &self.private_key {
            Some(path) => token.with_context(|| format!("invalid --private-key {}", path.display()))?,
            None => token?,
        };
        Ok((token, claims))
    }
}

pub async fn run(config_path: &Path, args: TokenArgs) -> anyhow::Result<u8> {
    let (url, ca_cert) = match &args.command {
        TokenCommand::Ws(ws) => (ws.url.clone(), ws.ca_cert.clone()),
        _ => (None, None),
    };
    let client = crate::cli::ClientArgs { url, jwt_secret: args.jwt_secret, api_key: None, ca_cert };
    let config = client.resolve(config_path)?;
    match args.command {
        TokenCommand::Jwt(jwt) => {
            let (token, claims) = jwt.mint.mint(&jwt.mint.identity(&[], false)?, &config)?;
            if jwt.json {
                println!("{}", json!({"token": token, "claims": claims}));
            } else {
                println!("{token}");
            }
            Ok(0)
        }
        TokenCommand::Ws(ws) => {
            let jwt = ws.jwt;
            let (token, _) = jwt.mint.mint(&jwt.mint.identity(&[], false)?, &config)?;
            let reply = exchange(&config, &token).await?;
            if jwt.json {
                println!("{reply}");
            } else {
                println!("{}", reply["ws_token"].as_str().context("the hub's reply has no ws_token")?);
            }
            Ok(0)
        }
        TokenCommand::Inspect(inspect) => run_inspect(&config, inspect),
    }
}

/// Exchanges a JWT at `GET /api/user/ws-token/`; the reply is `{"ws_token","expires_in"}`.
pub async fn exchange(config: &ClientConfig, jwt: &str) -> anyhow::Result<Value> {
    let client = http::client(config)?;
    let request = http::request(&client, Method::GET, &config.url, "/api/user/ws-token/", Auth::Bearer(jwt));
    http::send_as(request, config, Credential::JwtSecret).await.context("cannot get a ws token")
}

fn run_inspect(config: &ClientConfig, args: InspectArgs) -> anyhow::Result<u8> {
    let token = if args.token == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the token from stdin")?.trim().to_owned()
    } else {
        args.token.trim().to_owned()
    };
    if token.starts_with(auth::WS_TOKEN_PREFIX) {
        bail!("this is a ws token: it is opaque and only the hub that minted it can redeem it (once)");
    }
    let (header, claims) = auth::inspect(&token).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (keys, key_name) = verification_key(config, &args)?;
    let claim_map = claim_map(config, &args)?;
    // How the hub's claim mapping reads these claims, whether or not the signature verifies.
    let mapped = claims.as_object().map_or_else(
        || Err("the claims are not a JSON object".to_owned()),
        |object| claim_map.identity(object).map_err(|e| e.to_string()),
    );
    // Read before the verifier (no leeway) reads the clock: a token it accepts has exp >= now; one it
    // refuses at the turn of a second may have exp == now, so the expiry line follows its verdict.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let checked = match &keys {
        Some(keys) => {
            let verifier = Verifier::new(keys, None, None).with_context(|| format!("invalid {key_name}"))?;
            Some(verifier.with_claims(claim_map.clone()).verify(&token))
        }
        None => None,
    };
    let expired = matches!(checked, Some(Err(AuthError::Expired)));
    let verdict = match checked {
        Some(result) => result.map(|_| ()).map_err(|e| e.to_string()),
        None => Err("not verified: no key (configure jwt_secret, or pass --public-key or --jwks)".to_owned()),
    };
    let exp = claims.get("exp").and_then(Value::as_i64);
    let iat = claims.get("iat").and_then(Value::as_i64);

    if args.json {
        let report = json!({
            "header": header,
            "claims": claims,
            "identity": mapped.as_ref().ok(),
            "identity_error": mapped.as_ref().err(),
            "valid": verdict.is_ok(),
            "error": verdict.as_ref().err(),
            "expires_in": exp.map(|exp| exp - now),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let label = |text: &str| format!("{text:<8}").bold();
        println!("{} {}", label("header"), header);
        let pretty = serde_json::to_string_pretty(&claims)?.replace('\n', "\n         ");
        println!("{} {pretty}", label("claims"));
        match &mapped {
            Ok(identity) => println!("{} {}", label("maps to"), describe(identity)),
            Err(why) => println!("{} {}", label("maps to"), format!("no identity: {why}").red()),
        }
        if let Some(iat) = iat {
            println!("{} {} ({})", label("issued"), rfc3339(iat), relative(iat - now));
        }
        match exp {
            Some(exp) if exp >= now && !expired => {
                println!("{} {} (expires in {})", label("expires"), rfc3339(exp), span(exp - now))
            }
            Some(exp) => {
                println!("{} {} ({})", label("expires"), rfc3339(exp), format!("expired {} ago", span(now - exp)).red())
            }
            None => println!("{} {}", label("expires"), "never: no exp claim, the hub refuses it".red()),
        }
        match &verdict {
            Ok(()) => println!("{} {}", label("valid"), format!("yes, signature verified with the {key_name}").green()),
            Err(why) => println!("{} {}", label("valid"), format!("no: {why}").red()),
        }
    }
    if let Err(why) = verdict {
        let why = match exp {
            Some(exp) if expired => format!("token expired {} ago", span(now - exp)),
            _ => why,
        };
        eprintln!("rtctl: {why}");
        return Ok(1);
    }
    Ok(0)
}

/// The key to verify with and how to name it: the flags first, then the configured secret.
fn verification_key(config: &ClientConfig, args: &InspectArgs) -> anyhow::Result<(Option<KeySource>, &'static str)> {
    if let Some(path) = &args.jwks {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok((Some(KeySource::Jwks(text)), "JWKS"));
    }
    if let Some(path) = &args.public_key {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok((Some(KeySource::PublicKeyPem(text)), "public key"));
    }
    Ok((config.jwt_secret.as_ref().map(|s| KeySource::Secret(s.expose().to_owned())), "configured secret"))
}

/// The claim mapping `rtctl serve` would use with the same config file, env and flags.
fn claim_map(config: &ClientConfig, args: &InspectArgs) -> anyhow::Result<auth::ClaimMap> {
    let file = crate::config::FileConfig::load(&config.config_file)?.unwrap_or_default();
    let flags = crate::config::FileConfig {
        claim_user_id: args.claims.claim_user_id.clone(),
        claim_staff: args.claims.claim_staff.clone(),
        claim_orgs: args.claims.claim_orgs.clone(),
        claim_name: args.claims.claim_name.clone(),
        claim_email: args.claims.claim_email.clone(),
        ..Default::default()
    };
    flags.claim_map(&file)
}

/// `user 42, staff, orgs [acme, 7], name "Alice", email "alice@example.com"`.
fn describe(identity: &Identity) -> String {
    let mut parts = vec![format!("user {}", identity.user_id)];
    parts.push(if identity.is_staff { "staff" } else { "not staff" }.to_owned());
    parts.push(format!("orgs [{}]", identity.orgs.join(", ")));
    if let Some(name) = &identity.name {
        parts.push(format!("name {name:?}"));
    }
    if let Some(email) = &identity.email {
        parts.push(format!("email {email:?}"));
    }
    parts.join(", ")
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// `3m ago`, `now` or `in 3m`.
fn relative(delta: i64) -> String {
    match delta {
        0 => "now".to_owned(),
        ..0 => format!("{} ago", span(-delta)),
        _ => format!("in {}", span(delta)),
    }
}

/// A coarse human span: `42s`, `59m`, `1h 5m`, `3d 2h`; precise enough to judge a token at a glance.
pub fn span(secs: i64) -> String {
    let d = Duration::from_secs(secs.max(0) as u64).as_secs();
    match d {
        0..60 => format!("{d}s"),
        60..3600 => format!("{}m", d / 60),
        3600..86400 if d % 3600 < 60 => format!("{}h", d / 3600),
        3600..86400 => format!("{}h {}m", d / 3600, d % 3600 / 60),
        _ if d % 86400 < 3600 => format!("{}d", d / 86400),
        _ => format!("{}d {}h", d / 86400, d % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans round down to the largest unit or two, as people say them.
    #[test]
    fn spans_read_like_speech() {
        assert_eq!(span(42), "42s");
        assert_eq!(span(3599), "59m");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(3900), "1h 5m");
        assert_eq!(span(7 * 86400), "7d");
        assert_eq!(span(86400 + 7200), "1d 2h");
    }
}
