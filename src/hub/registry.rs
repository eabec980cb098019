//! This node's group memberships: which local connections belong to which group.
//!
//! Sharded by group name so that joins and deliveries to different groups do not contend. A delivery
//! holds its shard's lock only to take a reference to the member list; each member's outbox then takes
//! the push with at most one non-blocking write.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::outbox::{Outbox, Pushed};
use crate::layer::{ConnId, LayerError, LocalGroups, Push, SharedLayer};
use crate::protocol::Endpoint;

/// Enough shards that two cores rarely meet on one lock; a power of two for a cheap modulo.
const SHARDS: usize = 64;
/// A broadcast to more members than this is split between tasks, so between cores: 2–4 ms of syscalls,
/// long enough that the hand-over costs nothing in comparison. A 1,000-member broadcast written by one
/// task completed in 12–16 ms (p50), by four tasks on two cores in 10–11 ms (1,000 × 2/s, alternating
/// runs; two tasks gave 11.5–12 ms).
const PARALLEL_MIN: usize = 256;
/// Members one task writes to at most. Larger broadcasts get more tasks than cores, so that a second
/// publish can start between two of them instead of waiting for the whole broadcast.
const PARALLEL_CHUNK: usize = 1024;
/// A delivery that starts sooner than this after the last one ended finds the hub busy: the request
/// handling between two back-to-back publishes takes tens of microseconds, while a hub that keeps up
/// has idle gaps of milliseconds.
const BUSY_GAP: Duration = Duration::from_micros(200);
/// How long a hub found busy keeps coalescing. Without it, a queued delivery (fast: no syscalls)
/// leaves a gap before the next publish and the one after it writes directly again, so under
/// saturation deliveries alternated between the two modes and the direct ones cost a syscall per
/// member: 1,000 subscribers at 1,024 msg/s made 1.6 times the write syscalls (measured).
const BUSY_HOLD: Duration = Duration::from_millis(20);

#[derive(Clone)]
struct Member {
    conn: ConnId,
    outbox: Arc<Outbox>,
}

/// One shard: group name → its local members. Shared so that a delivery takes the list with one
/// reference count; a join or leave copies it only while a delivery still holds it.
type Groups = HashMap<String, Arc<Vec<Member>>>;

/// Group name → local members, for one node.
pub struct Registry {
    // std Mutex: never held across an await (deliveries and joins are synchronous).
    shards: Box<[Mutex<Groups>]>,
    metrics: Arc<Metrics>,
    /// When the last delivery finished (ns since `epoch`). A delivery that starts right after another
    /// means publishes are waiting: the hub is behind, and coalescing writes beats writing each push
    /// at once.
    last_end_ns: AtomicU64,
    /// Until when deliveries coalesce (ns since `epoch`): [`BUSY_HOLD`] after the hub was last found busy.
    busy_until_ns: AtomicU64,
    epoch: Instant,
}

impl Registry {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            metrics,
            last_end_ns: AtomicU64::new(0),
            busy_until_ns: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn shard(&self, group: &str) -> &Mutex<Groups> {
        let mut hasher = DefaultHasher::new();
        group.hash(&mut hasher);
        &self.shards[hasher.finish() as usize % SHARDS]
    }

    /// Adds a connection to a group.
    fn join(&self, group: &str, conn: ConnId, outbox: Arc<Outbox>) {
        let mut shard = self.shard(group).lock().expect("registry lock poisoned");
        Arc::make_mut(shard.entry(group.to_owned()).or_default()).push(Member { conn, outbox });
    }

    /// Removes a connection from a group; true when it was the node's last member of it.
    fn leave(&self, group: &str, conn: ConnId) -> bool {
        let mut shard = self.shard(group).lock().expect("registry lock poisoned");
        let Some(members) = shard.get_mut(group) else { return false };
        if let Some(at) = members.iter().position(|m| m.conn == conn) {
            Arc::make_mut(members).swap_remove(at);
        }
        if members.is_empty() {
            shard.remove(group);
            return true;
        }
        false
    }

    /// Hands the push to each member's outbox and counts what went out.
    fn deliver_to(&self, members: &[Member], push: &Push, direct: bool) -> usize {
        let mut sent = [0u64; Endpoint::ALL.len()];
        for member in members {
            if push.skip == Some(member.conn) {
                continue;
            }
            match member.outbox.push(push, direct) {
                Pushed::Sent => sent[member.outbox.endpoint() as usize] += 1,
                Pushed::Overflowed { first: true } => self.metrics.slow_consumer(),
                Pushed::Overflowed { first: false } | Pushed::Skipped => {}
            }
        }
        for endpoint in Endpoint::ALL {
            if sent[endpoint as usize] > 0 {
                self.metrics.frames_out(endpoint, sent[endpoint as usize]);
            }
        }
        sent.iter().sum::<u64>() as usize
    }
}

/// What the layer sees of the registry: the pushes it receives for this node go through here.
impl LocalGroups for Registry {
    /// Sends a push to every local member of a group; returns how many got it.
    ///
    /// Idle members get it on their socket before this returns; the others queue it. A member whose
    /// queue overflows is marked for a 4008 close by its outbox and counted here; the others are
    /// unaffected. A large group is written by several tasks at once, so every core shares the
    /// syscalls; this returns when all are done, which keeps one publisher's pushes in order.
    async fn deliver(self: &Arc<Self>, group: &str, push: Push) -> usize {
        // A snapshot, so the writes (a syscall each) happen without the shard lock: a join or leave
        // must not wait for a broadcast to ten thousand sockets.
        let members = {
            let shard = self.shard(group).lock().expect("registry lock poisoned");
            let Some(members) = shard.get(group) else { return 0 };
            Arc::clone(members)
        };
        let _finished = Finished(self);
        let now = self.now_ns();
        if now.saturating_sub(self.last_end_ns.load(Ordering::Relaxed)) <= BUSY_GAP.as_nanos() as u64 {
            self.busy_until_ns.store(now + BUSY_HOLD.as_nanos() as u64, Ordering::Relaxed);
        }
        let direct = now >= self.busy_until_ns.load(Ordering::Relaxed);
        // Queueing (a busy hub) makes no syscall, so a queued delivery is split only beyond
        // PARALLEL_CHUNK members: splitting it earlier would buy little for the hand-overs it costs.
        let split_from = if direct { PARALLEL_MIN } else { PARALLEL_CHUNK };
        if members.len() <= split_from {
            return self.deliver_to(&members, &push, direct);
        }
        // Two tasks per core: when one core is also busy with something else, the other takes more.
        let parts = 2 * tokio::runtime::Handle::current().metrics().num_workers().max(1);
        let chunk = members.len().div_ceil(parts).clamp(PARALLEL_MIN, PARALLEL_CHUNK);
        let push = Arc::new(push);
        let tasks: Vec<_> = (0..members.len())
            .step_by(chunk)
            .map(|start| {
                let (registry, members, push) = (Arc::clone(self), Arc::clone(&members), Arc::clone(&push));
                tokio::spawn(async move {
                    let end = (start + chunk).min(members.len());
                    registry.deliver_to(&members[start..end], &push, direct)
                })
            })
            .collect();
        let mut sent = 0;
        for task in tasks {
            sent += task.await.unwrap_or_default();
        }
        sent
    }

    fn groups(&self) -> Vec<String> {
        let mut groups = Vec::new();
        for shard in &self.shards {
            groups.extend(shard.lock().expect("registry lock poisoned").keys().cloned());
        }
        groups
    }

    fn has_members(&self, group: &str) -> bool {
        self.shard(group).lock().expect("registry lock poisoned").contains_key(group)
    }
}

/// Stamps the end of a delivery, however it returns.
struct Finished<'a>(&'a Registry);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.last_end_ns.store(self.0.now_ns(), Ordering::Relaxed);
    }
}

/// A connection's membership of one group; leaving happens on drop, so no exit path forgets it.
pub struct Membership {
    registry: Arc<Registry>,
    layer: SharedLayer,
    group: String,
    conn: ConnId,
}

impl Membership {
    /// Joins, and returns once the layer delivers the group here; on an error the membership is
    /// dropped again, so the connection is in no group.
    pub async fn join(
        registry: &Arc<Registry>,
        layer: &SharedLayer,
        group: String,
        conn: ConnId,
        outbox: Arc<Outbox>,
    ) -> Result<Self, LayerError> {
        registry.join(&group, conn, outbox);
        let membership = Self { registry: Arc::clone(registry), layer: Arc::clone(layer), group, conn };
        layer.subscribe(&membership.group).await?;
        Ok(membership)
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if self.registry.leave(&self.group, self.conn) {
            self.layer.unsubscribe(&self.group);
        }
    }
}
