//! Who is online: distinct users with at least one open connection, per scope (the whole hub, the admin
//! dashboard, a chat room).
//!
//! Behind a trait because "online" must count across all nodes: with Redis, [`RedisPresence`] replaces
//! [`LocalPresence`]; nothing else may count local sockets to answer this question.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

/// Presence scopes, one function each so that every caller agrees.
pub mod scope {
    /// Every connection to the hub, any endpoint.
    pub const HUB: &str = "hub";
    /// Connections to the admin dashboard.
    pub const ADMINS: &str = "admins";

    /// Connections to one chat room.
    pub fn room(room_id: &str) -> String {
        format!("room:{room_id}")
    }
}

/// Counts of users with open connections.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// A user opened a connection in `scope`; true when it is the user's first there.
    async fn join(&self, scope: &str, user_id: &str) -> bool;

    /// A user closed a connection in `scope`; true when it was the user's last there.
    async fn leave(&self, scope: &str, user_id: &str) -> bool;

    /// How many distinct users have a connection in `scope`.
    async fn online(&self, scope: &str) -> u64;

    /// The node is stopping and its sessions have ended: take back whatever it still counts.
    async fn close(&self) {}
}

/// Presence within one process.
#[derive(Default)]
pub struct LocalPresence {
    // scope → user → open connections. A std Mutex: never held across an await.
    scopes: Mutex<HashMap<String, HashMap<String, u32>>>,
}

impl LocalPresence {
    /// Every (scope, user, open connections) counted.
    fn counts(&self) -> Vec<(String, String, u32)> {
        let scopes = self.scopes.lock().expect("presence lock poisoned");
        scopes
            .iter()
            .flat_map(|(scope, users)| users.iter().map(move |(user, n)| (scope.clone(), user.clone(), *n)))
            .collect()
    }
}

#[async_trait]
impl Presence for LocalPresence {
    async fn join(&self, scope: &str, user_id: &str) -> bool {
        let mut scopes = self.scopes.lock().expect("presence lock poisoned");
        let count = scopes.entry(scope.to_owned()).or_default().entry(user_id.to_owned()).or_default();
        *count += 1;
        *count == 1
    }

    async fn leave(&self, scope: &str, user_id: &str) -> bool {
        let mut scopes = self.scopes.lock().expect("presence lock poisoned");
        let Some(users) = scopes.get_mut(scope) else { return false };
        let Some(count) = users.get_mut(user_id) else { return false };
        *count -= 1;
        if *count > 0 {
            return false;
        }
        users.remove(user_id);
        if users.is_empty() {
            scopes.remove(scope);
        }
        true
    }

    async fn online(&self, scope: &str) -> u64 {
        let scopes = self.scopes.lock().expect("presence lock poisoned");
        scopes.get(scope).map_or(0, |users| users.len() as u64)
    }
}

/// Presence across every node on one Redis: per scope a hash of user → open connections, counted by
/// all nodes together, so that `online` and the first/last answers are global.
///
/// Each node also keeps its own share in a hash of its own, and a liveness key it refreshes; a node
/// that finds another's liveness key expired (it crashed, nobody closed its sockets) takes that share
/// back out of the counts. Redis errors are logged and answered as "not first, not last, 0 online":
/// presence is advisory, a push never waits for it.
pub struct RedisPresence {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    node: String,
    node_ttl: Duration,
    /// What this node counts: the truth its share in Redis is rebuilt from when Redis lost it (a
    /// restart, or a sweep while this node was cut off) or when a join or leave failed to reach Redis.
    tally: LocalPresence,
    /// A join or leave did not reach Redis: the next heartbeat rebuilds the share.
    dirty: std::sync::atomic::AtomicBool,
    /// Joins and leaves share it; a rebuild takes it alone, so that none lands between the tally it
    /// reads and the share it writes.
    gate: tokio::sync::RwLock<()>,
    /// Where a sweep sends the departures it found, for the hub to announce (unbounded: a sweep must not
    /// wait for the announcements, and a dead node leaves at most one departure per session it had).
    departures: tokio::sync::mpsc::UnboundedSender<Departure>,
    /// The scripts below, hashed once (they run by EVALSHA, loaded on first use).
    join: redis::Script,
    leave: redis::Script,
    sweep: redis::Script,
    restore: redis::Script,
}

/// KEYS: the scope's hash, the node's share; ARGV: user, "scope\0user" (the field of the node's share).
const JOIN: &str = r"
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
";

/// Same keys; returns 1 when it was the user's last connection in the scope on every node. A share
/// already taken back (this node was thought dead) is not taken twice.
const LEAVE: &str = r"
local own = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if own <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
if own < 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) return 1 end
return 0
";

/// KEYS: this node's share; ARGV: prefix, then "scope\0user", count pairs (what the node counts). Makes
/// the share say that, and moves every scope's counts by the difference.
const RESTORE: &str = r"
local have = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do have[fields[i]] = tonumber(fields[i + 1]) end
local want = {}
for i = 2, #ARGV, 2 do want[ARGV[i]] = tonumber(ARGV[i + 1]) end
local function adjust(field, delta)
  local sep = string.find(field, '\0', 1, true)
  local key = ARGV[1] .. ':presence:' .. string.sub(field, 1, sep - 1)
  local user = string.sub(field, sep + 1)
  if redis.call('HINCRBY', key, user, delta) <= 0 then redis.call('HDEL', key, user) end
end
local changed = 0
for field, n in pairs(want) do
  local h = have[field] or 0
  if n ~= h then
    adjust(field, n - h)
    redis.call('HSET', KEYS[1], field, n)
    changed = changed + 1
  end
end
for field, h in pairs(have) do
  if want[field] == nil then
    adjust(field, -h)
    redis.call('HDEL', KEYS[1], field)
    changed = changed + 1
  end
end
return changed
";

/// KEYS: the dead node's share, its liveness key, the node set; ARGV: prefix, node. Takes the share
/// out of every scope's counts, unless the node turned out to be alive (`{-1, {}}`). Returns how many
/// (scope, user) pairs the share held and the "scope\0user" of those whose count reached 0: the
/// departures. The script runs atomically and deletes the share, so of several nodes sweeping the same
/// dead node exactly one gets them.
const SWEEP: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return {-1, {}} end
local fields = redis.call('HGETALL', KEYS[1])
local departed = {}
for i = 1, #fields, 2 do
  local sep = string.find(fields[i], '\0', 1, true)
  local key = ARGV[1] .. ':presence:' .. string.sub(fields[i], 1, sep - 1)
  local user = string.sub(fields[i], sep + 1)
  if redis.call('HINCRBY', key, user, -tonumber(fields[i + 1])) <= 0 then
    redis.call('HDEL', key, user)
    table.insert(departed, fields[i])
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[2])
return {#fields / 2, departed}
";

/// A user whose last connection in a scope was on a node that stopped without closing it: the
/// surviving nodes owe the scope the "left" the dead node never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    pub scope: String,
    pub user_id: String,
}

impl Departure {
    /// The chat room this departure is from, if its scope is one.
    pub fn room(&self) -> Option<&str> {
        self.scope.strip_prefix("room:")
    }
}

impl RedisPresence {
    /// Registers this node as alive and keeps it so (and sweeps dead nodes) until `shutdown`; the
    /// departures a sweep implies go to `departures`.
    pub async fn start(
        conn: redis::aio::ConnectionManager,
        config: &crate::config::RedisConfig,
        node: &str,
        departures: tokio::sync::mpsc::UnboundedSender<Departure>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let presence = Arc::new(Self {
            conn,
            prefix: config.prefix.clone(),
            node: node.to_owned(),
            node_ttl: config.node_ttl,
            tally: LocalPresence::default(),
            dirty: std::sync::atomic::AtomicBool::new(false),
            gate: tokio::sync::RwLock::new(()),
            departures,
            join: redis::Script::new(JOIN),
            leave: redis::Script::new(LEAVE),
            sweep: redis::Script::new(SWEEP),
            restore: redis::Script::new(RESTORE),
        });
        presence.heartbeat().await?;
        let task = Arc::clone(&presence);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(task.node_ttl / 3);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(error) = task.heartbeat().await {
                            tracing::warn!(%error, "presence heartbeat failed");
                        }
                    }
                    () = shutdown.cancelled() => break,
                }
            }
        });
        Ok(presence)
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }

    /// Refreshes this node's liveness, rebuilds its share when Redis lost it (the liveness key was
    /// gone) or a change did not reach Redis, and takes back the shares of nodes whose liveness expired.
    async fn heartbeat(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        let nodes = self.key("nodes");
        let (was_alive,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(self.key(&format!("alive:{}", self.node)))
            .arg(1)
            .arg("PX")
            .arg(self.node_ttl.as_millis() as u64)
            .arg("GET")
            .cmd("SADD")
            .arg(&nodes)
            .arg(&self.node)
            .ignore()
            .query_async(&mut conn)
            .await?;
        if was_alive.is_none() || self.dirty.load(Ordering::Relaxed) {
            self.rebuild(&mut conn).await?;
        }
        let members: Vec<String> = redis::cmd("SMEMBERS").arg(&nodes).query_async(&mut conn).await?;
        for node in members.iter().filter(|n| **n != self.node) {
            let (swept, departed): (i64, Vec<String>) = self
                .sweep
                .key(self.key(&format!("node:{node}")))
                .key(self.key(&format!("alive:{node}")))
                .key(&nodes)
                .arg(&self.prefix)
                .arg(node)
                .invoke_async(&mut conn)
                .await?;
            if swept >= 0 {
                tracing::warn!(
                    node,
                    connections = swept,
                    departures = departed.len(),
                    "took back the presence of a node that stopped without closing"
                );
            }
            for field in departed {
                let Some((scope, user_id)) = field.split_once('\0') else { continue };
                let departure = Departure { scope: scope.to_owned(), user_id: user_id.to_owned() };
                // The receiver goes only when the hub stops; nobody is left to tell then.
                let _ = self.departures.send(departure);
            }
        }
        Ok(())
    }

    /// Makes this node's share (and with it every scope's counts) match what the node counts.
    async fn rebuild(&self, conn: &mut redis::aio::ConnectionManager) -> Result<(), redis::RedisError> {
        let _alone = self.gate.write().await;
        self.dirty.store(false, Ordering::Relaxed);
        let mut invocation = self.restore.key(self.key(&format!("node:{}", self.node)));
        invocation.arg(&self.prefix);
        for (scope, user, count) in self.tally.counts() {
            invocation.arg(share_field(&scope, &user)).arg(count);
        }
        let changed: i64 =
            invocation.invoke_async(conn).await.inspect_err(|_| self.dirty.store(true, Ordering::Relaxed))?;
        if changed > 0 {
            tracing::warn!(changed, "rebuilt this node's presence in Redis (Redis lost it, or a change failed)");
        }
        Ok(())
    }

    async fn change(&self, script: &redis::Script, scope: &str, user_id: &str) -> Result<i64, redis::RedisError> {
        let mut conn = self.conn.clone();
        script
            .key(self.key(&format!("presence:{scope}")))
            .key(self.key(&format!("node:{}", self.node)))
            .arg(user_id)
            .arg(share_field(scope, user_id))
            .invoke_async(&mut conn)
            .await
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn join(&self, scope: &str, user_id: &str) -> bool {
        let _shared = self.gate.read().await;
        self.tally.join(scope, user_id).await;
        match self.change(&self.join, scope, user_id).await {
            Ok(count) => count == 1,
            Err(error) => {
                tracing::warn!(%error, scope, "presence join failed; counted at the next heartbeat");
                self.dirty.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    async fn leave(&self, scope: &str, user_id: &str) -> bool {
        let _shared = self.gate.read().await;
        self.tally.leave(scope, user_id).await;
        match self.change(&self.leave, scope, user_id).await {
            Ok(last) => last == 1,
            Err(error) => {
                tracing::warn!(%error, scope, "presence leave failed; counted at the next heartbeat");
                self.dirty.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    async fn close(&self) {
        let mut conn = self.conn.clone();
        let alive = self.key(&format!("alive:{}", self.node));
        // With the liveness key gone, this node's leftover share (sessions cut off by the shutdown
        // timeout) is swept like a crashed node's, and the node leaves the node set.
        let swept = async {
            redis::cmd("DEL").arg(&alive).query_async::<()>(&mut conn).await?;
            self.sweep
                .key(self.key(&format!("node:{}", self.node)))
                .key(&alive)
                .key(self.key("nodes"))
                .arg(&self.prefix)
                .arg(&self.node)
                .invoke_async::<(i64, Vec<String>)>(&mut conn)
                .await
        };
        if let Err(error) = swept.await {
            tracing::warn!(%error, "cannot take this node's presence out of Redis");
        }
    }

    async fn online(&self, scope: &str) -> u64 {
        let mut conn = self.conn.clone();
        match redis::cmd("HLEN").arg(self.key(&format!("presence:{scope}"))).query_async::<u64>(&mut conn).await {
            Ok(count) => count,
            Err(error) => {
                tracing::warn!(%error, scope, "presence count failed");
                0
            }
        }
    }
}

/// A field of a node's share: scope and user, split at the first NUL by the scripts (scopes never hold
/// one).
fn share_field(scope: &str, user_id: &str) -> String {
    format!("{scope}\0{user_id}")
}
