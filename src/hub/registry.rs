//! This node's group memberships: which local connections belong to which group.
//!
//! Sharded by group name so that joins and deliveries to different groups do not contend. A delivery
//! holds its shard's lock only while it copies pointers into bounded queues, which never blocks.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use super::metrics::Metrics;
use super::outbox::Outbox;
use crate::layer::{ConnId, Push, SharedLayer};

/// Enough shards that two cores rarely meet on one lock; a power of two for a cheap modulo.
const SHARDS: usize = 64;

struct Member {
    conn: ConnId,
    outbox: Arc<Outbox>,
}

/// Group name → local members, for one node.
pub struct Registry {
    // std Mutex: never held across an await (deliveries and joins are synchronous).
    shards: Box<[Mutex<HashMap<String, Vec<Member>>>]>,
    metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), metrics }
    }

    fn shard(&self, group: &str) -> &Mutex<HashMap<String, Vec<Member>>> {
        let mut hasher = DefaultHasher::new();
        group.hash(&mut hasher);
        &self.shards[hasher.finish() as usize % SHARDS]
    }

    /// Adds a connection to a group; true when it is the node's first member of it.
    fn join(&self, group: &str, conn: ConnId, outbox: Arc<Outbox>) -> bool {
        let mut shard = self.shard(group).lock().expect("registry lock poisoned");
        let members = shard.entry(group.to_owned()).or_default();
        members.push(Member { conn, outbox });
        members.len() == 1
    }

    /// Removes a connection from a group; true when it was the node's last member of it.
    fn leave(&self, group: &str, conn: ConnId) -> bool {
        let mut shard = self.shard(group).lock().expect("registry lock poisoned");
        let Some(members) = shard.get_mut(group) else { return false };
        if let Some(at) = members.iter().position(|m| m.conn == conn) {
            members.swap_remove(at);
        }
        if members.is_empty() {
            shard.remove(group);
            return true;
        }
        false
    }

    /// Queues a push for every local member of a group; returns how many got it.
    ///
    /// A member whose queue overflows is marked for a 4008 close by its outbox and counted here; the
    /// others are unaffected.
    pub fn deliver(&self, group: &str, push: &Arc<Push>) -> usize {
        let shard = self.shard(group).lock().expect("registry lock poisoned");
        let Some(members) = shard.get(group) else { return 0 };
        let mut delivered = 0;
        for member in members {
            if push.skip == Some(member.conn) {
                continue;
            }
            match member.outbox.push(push) {
                Ok(()) => delivered += 1,
                Err(overflow) if overflow.first => self.metrics.slow_consumer(),
                Err(_) => {}
            }
        }
        delivered
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
    pub fn join(
        registry: &Arc<Registry>,
        layer: &SharedLayer,
        group: String,
        conn: ConnId,
        outbox: Arc<Outbox>,
    ) -> Self {
        if registry.join(&group, conn, outbox) {
            layer.subscribe(&group);
        }
        Self { registry: Arc::clone(registry), layer: Arc::clone(layer), group, conn }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if self.registry.leave(&self.group, self.conn) {
            self.layer.unsubscribe(&self.group);
        }
    }
}
