//! Single-use ws tokens (PROTOCOL §1), which let a browser keep its long-lived JWT out of URLs.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{AuthError, Identity, random_secret};

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
    live: HashMap<String, (Identity, Instant)>,
    /// Tokens in minting order. With one ttl for all, expiries are in the same order, so purging pops
    /// from the front: amortised O(1) per mint, and the map never outgrows mint rate × ttl.
    order: VecDeque<(Instant, String)>,
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

    /// How long a minted token stays redeemable (the API's `expires_in`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh token carrying `identity`.
    pub async fn mint(&self, identity: Identity) -> Result<String, AuthError> {
        let Some((conn, prefix)) = &self.redis else { return Ok(self.mint_at(identity, Instant::now())) };
        let token = format!("{WS_TOKEN_PREFIX}{}", random_secret());
        let value = serde_json::to_string(&identity).expect("an identity serializes");
        redis::cmd("SET")
            .arg(format!("{prefix}{token}"))
            .arg(value)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .query_async::<()>(&mut conn.clone())
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot store a ws token");
                AuthError::Unavailable
            })?;
        Ok(token)
    }

    /// Takes the token out (single use) and returns its identity.
    pub async fn redeem(&self, token: &str) -> Result<Identity, AuthError> {
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
        serde_json::from_str(&value).map_err(|_| AuthError::UnknownWsToken)
    }

    pub(super) fn mint_at(&self, identity: Identity, now: Instant) -> String {
        let token = format!("{WS_TOKEN_PREFIX}{}", random_secret());
        let expires = now + self.ttl;
        let mut map = self.lock();
        map.purge(now);
        map.live.insert(token.clone(), (identity, expires));
        map.order.push_back((expires, token.clone()));
        token
    }

    fn redeem_at(&self, token: &str, now: Instant) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let (identity, expires) = self.lock().live.remove(token).ok_or(AuthError::UnknownWsToken)?;
        // An expired token not yet purged says `Expired`; once purged it is `UnknownWsToken`. Both are 4001.
        if expires <= now {
            return Err(AuthError::Expired);
        }
        Ok(identity)
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

    /// A ws token redeems once to its identity, then is unknown.
    #[tokio::test]
    async fn ws_token_single_use() {
        let tokens = WsTokens::new(Duration::from_secs(60));
        assert_eq!(tokens.ttl(), Duration::from_secs(60));
        let t = tokens.mint(alice()).await.unwrap();
        assert!(t.starts_with(WS_TOKEN_PREFIX));
        assert_eq!(tokens.redeem(&t).await, Ok(alice()));
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
        let early = tokens.mint_at(alice(), t0);
        let stale: Vec<String> = (0..100).map(|_| tokens.mint_at(alice(), t0)).collect();
        assert_eq!(tokens.redeem_at(&early, t0 + ttl - Duration::from_secs(1)), Ok(alice()));
        assert_eq!(tokens.redeem_at(&stale[0], t0 + ttl), Err(AuthError::Expired));
        assert_eq!(tokens.len(), 99);

        let fresh = tokens.mint_at(alice(), t0 + ttl + Duration::from_secs(1));
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens.redeem_at(&stale[1], t0 + ttl), Err(AuthError::UnknownWsToken));
        assert_eq!(tokens.redeem_at(&fresh, t0 + ttl + Duration::from_secs(2)), Ok(alice()));
    }
}
