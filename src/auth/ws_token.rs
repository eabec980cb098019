//! Single-use ws tokens (PROTOCOL §1), which let a browser keep its long-lived JWT out of URLs.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{AuthError, Identity, Verified, random_secret};

/// Default lifetime of a ws token (PROTOCOL §1: 30 minutes, configurable).
pub const DEFAULT_WS_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);

/// Prefix of every ws token; a JWT never starts with it (its first segment is base64url JSON, `eyJ`).
pub const WS_TOKEN_PREFIX: &str = "wst_";

/// Single-use ws tokens (PROTOCOL §1): in this node's memory, or in Redis so that a token minted by one
/// node opens a connection on any other.
///
/// In memory, expiry uses `std::time::Instant` (monotonic, immune to wall-clock jumps); the `*_at`
/// variants take the current instant so tests can move time without sleeping. In Redis, the key
/// expires by itself and `GETDEL` makes redemption single-use across nodes.
pub struct WsTokens {
    ttl: Duration,
    /// A std Mutex: every critical section is a few map operations and is never held across `.await`.
    inner: Mutex<WsTokenMap>,
    /// The shared store and its key prefix, when the hub runs with Redis.
    redis: Option<(redis::aio::ConnectionManager, String)>,
}

impl std::fmt::Debug for WsTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = if self.redis.is_some() { "redis" } else { "memory" };
        f.debug_struct("WsTokens").field("ttl", &self.ttl).field("store", &store).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct WsTokenMap {
    /// Each token's identity and JWT `exp`, and when it stops being redeemable (capped by that `exp`).
    live: HashMap<String, (Verified, Instant)>,
    /// Tokens in minting order, each with its mint time + ttl. With one ttl for all these are in the
    /// same order, so purging pops from the front: amortised O(1) per mint, and the map never outgrows
    /// mint rate × ttl. (A token capped by its JWT's `exp` may wait here past its own expiry; redeeming
    /// checks that one.)
    order: VecDeque<(Instant, String)>,
}

/// A ws token as Redis keeps it: the identity's fields, and the JWT's `exp` beside them (a node that
/// does not know `jwt_exp` still reads the identity).
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    identity: Identity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwt_exp: Option<u64>,
}

/// How long a ws token minted at `now_ms` (Unix milliseconds) stays redeemable: `ttl`, but never past
/// the end of the second `exp` of the JWT it was minted from (PROTOCOL §7), after which that JWT is
/// refused too.
pub fn capped_lifetime(ttl: Duration, exp: Option<u64>, now_ms: i64) -> Duration {
    let Some(exp) = exp else { return ttl };
    let end_ms = i64::try_from(exp.saturating_add(1).saturating_mul(1000)).unwrap_or(i64::MAX);
    let left = Duration::from_millis(u64::try_from(end_ms.saturating_sub(now_ms)).unwrap_or(0));
    ttl.min(left)
}

fn unix_millis() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

impl WsTokenMap {
    fn purge(&mut self, now: Instant) {
        while let Some((expires, _)) = self.order.front()
            && *expires <= now
        {
            if let Some((_, token)) = self.order.pop_front() {
                // Already gone if it was redeemed; remove is then a no-op.
                self.live.remove(&token);
            }
        }
    }
}

impl WsTokens {
    pub fn new(ttl: Duration) -> Self {
        WsTokens { ttl, inner: Mutex::new(WsTokenMap::default()), redis: None }
    }

    /// Tokens kept in Redis under `{prefix}:wst:`, shared by every node on it.
    pub fn in_redis(ttl: Duration, conn: redis::aio::ConnectionManager, prefix: &str) -> Self {
        WsTokens { redis: Some((conn, format!("{prefix}:wst:"))), ..Self::new(ttl) }
    }

    /// How long a minted token stays redeemable at most (`--ws-token-ttl`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh token carrying what a JWT said (its identity and `exp`), and how long it stays
    /// redeemable (the API's `expires_in`): the ttl, cut short by the JWT's `exp`.
    pub async fn mint(&self, verified: Verified) -> Result<(String, Duration), AuthError> {
        let lifetime = capped_lifetime(self.ttl, verified.exp, unix_millis());
        let Some((conn, prefix)) = &self.redis else {
            return Ok((self.mint_at(verified, lifetime, Instant::now()), lifetime));
        };
        let token = format!("{WS_TOKEN_PREFIX}{}", random_secret());
        let stored = Stored { identity: verified.identity, jwt_exp: verified.exp };
        let value = serde_json::to_string(&stored).expect("an identity serializes");
        redis::cmd("SET")
            .arg(format!("{prefix}{token}"))
            .arg(value)
            .arg("PX")
            // PX 0 is an error: a JWT in its last millisecond still gets a (useless) token.
            .arg((lifetime.as_millis() as u64).max(1))
            .query_async::<()>(&mut conn.clone())
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot store a ws token");
                AuthError::Unavailable
            })?;
        Ok((token, lifetime))
    }

    /// Takes the token out (single use) and returns its identity and its JWT's `exp`.
    pub async fn redeem(&self, token: &str) -> Result<Verified, AuthError> {
        let Some((conn, prefix)) = &self.redis else { return self.redeem_at(token, Instant::now()) };
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let value: Option<String> =
            redis::cmd("GETDEL").arg(format!("{prefix}{token}")).query_async(&mut conn.clone()).await.map_err(
                |error| {
                    tracing::warn!(%error, "cannot redeem a ws token");
                    AuthError::Unavailable
                },
            )?;
        // Expired keys are gone from Redis: an expired token reads as unknown (both are 4001).
        let value = value.ok_or(AuthError::UnknownWsToken)?;
        let stored: Stored = serde_json::from_str(&value).map_err(|_| AuthError::UnknownWsToken)?;
        Ok(Verified { identity: stored.identity, exp: stored.jwt_exp })
    }

    /// Mints a token redeemable for `lifetime` (at most the ttl) from `now`.
    pub(super) fn mint_at(&self, verified: Verified, lifetime: Duration, now: Instant) -> String {
        let token = format!("{WS_TOKEN_PREFIX}{}", random_secret());
        let mut map = self.lock();
        map.purge(now);
        map.live.insert(token.clone(), (verified, now + lifetime.min(self.ttl)));
        map.order.push_back((now + self.ttl, token.clone()));
        token
    }

    fn redeem_at(&self, token: &str, now: Instant) -> Result<Verified, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let (verified, expires) = self.lock().live.remove(token).ok_or(AuthError::UnknownWsToken)?;
        // An expired token not yet purged says `Expired`; once purged it is `UnknownWsToken`. Both are 4001.
        if expires <= now {
            return Err(AuthError::Expired);
        }
        Ok(verified)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WsTokenMap> {
        // A panic while holding the lock cannot leave the map half-updated in a way that matters
        // (at worst a token is missing from `order` and lives until redeemed), so keep serving.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::alice;
    use super::*;

    fn verified(exp: Option<u64>) -> Verified {
        Verified { identity: alice(), exp }
    }

    /// A ws token redeems once to its identity and JWT `exp`, then is unknown.
    #[tokio::test]
    async fn ws_token_single_use() {
        let tokens = WsTokens::new(Duration::from_secs(60));
        assert_eq!(tokens.ttl(), Duration::from_secs(60));
        let far = Some(u64::MAX / 2000);
        let (t, lifetime) = tokens.mint(verified(far)).await.unwrap();
        assert_eq!(lifetime, Duration::from_secs(60));
        assert!(t.starts_with(WS_TOKEN_PREFIX));
        assert_eq!(tokens.redeem(&t).await, Ok(verified(far)));
        assert_eq!(tokens.redeem(&t).await, Err(AuthError::UnknownWsToken));
        assert_eq!(tokens.redeem("wst_never-minted").await, Err(AuthError::UnknownWsToken));
        assert_eq!(tokens.redeem("").await, Err(AuthError::Missing));
    }

    /// A ws token is refused after its ttl, and expired tokens are purged by later mints.
    #[test]
    fn ws_token_expiry_and_purge() {
        let ttl = Duration::from_secs(60);
        let tokens = WsTokens::new(ttl);
        let t0 = Instant::now();
        let early = tokens.mint_at(verified(None), ttl, t0);
        let stale: Vec<String> = (0..100).map(|_| tokens.mint_at(verified(None), ttl, t0)).collect();
        assert_eq!(tokens.redeem_at(&early, t0 + ttl - Duration::from_secs(1)), Ok(verified(None)));
        assert_eq!(tokens.redeem_at(&stale[0], t0 + ttl), Err(AuthError::Expired));
        assert_eq!(tokens.len(), 99);

        let fresh = tokens.mint_at(verified(None), ttl, t0 + ttl + Duration::from_secs(1));
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens.redeem_at(&stale[1], t0 + ttl), Err(AuthError::UnknownWsToken));
        assert_eq!(tokens.redeem_at(&fresh, t0 + ttl + Duration::from_secs(2)), Ok(verified(None)));
    }

    /// A ws token never outlives its JWT: its lifetime ends with the second `exp`, and a token minted
    /// with a shorter lifetime than the ttl is refused after it.
    #[test]
    fn ws_token_is_capped_by_the_jwt_exp() {
        let ttl = Duration::from_secs(1800);
        // exp = 1000 s: valid through 1000.999, so 10.5 s are left at 990.5.
        assert_eq!(capped_lifetime(ttl, Some(1000), 990_500), Duration::from_millis(10_500));
        assert_eq!(capped_lifetime(ttl, Some(1_000_000), 990_500), ttl);
        assert_eq!(capped_lifetime(ttl, None, 990_500), ttl);
        assert_eq!(capped_lifetime(ttl, Some(900), 990_500), Duration::ZERO);

        let tokens = WsTokens::new(ttl);
        let t0 = Instant::now();
        let capped = || tokens.mint_at(verified(Some(1000)), Duration::from_secs(5), t0);
        let (late, early) = (capped(), capped());
        assert_eq!(tokens.redeem_at(&late, t0 + Duration::from_secs(5)), Err(AuthError::Expired));
        assert_eq!(tokens.redeem_at(&early, t0 + Duration::from_secs(4)), Ok(verified(Some(1000))));
    }

    /// Redis keeps the identity's fields with `jwt_exp` beside them; a record without it (minted by an
    /// older hub) still redeems, unbounded.
    #[test]
    fn stored_records_read_both_ways() {
        let text = serde_json::to_string(&Stored { identity: alice(), jwt_exp: Some(7) }).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!((value["user_id"].as_str(), value["jwt_exp"].as_u64()), (Some("42"), Some(7)));
        let old = serde_json::to_string(&alice()).unwrap();
        let stored: Stored = serde_json::from_str(&old).unwrap();
        assert_eq!((stored.identity, stored.jwt_exp), (alice(), None));
    }
}
