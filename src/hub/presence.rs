//! Who is online: distinct users with at least one open connection, per scope (the whole hub, the admin
//! dashboard, a chat room).
//!
//! Behind a trait because "online" must count across all nodes: a multi-node implementation (Redis)
//! replaces [`LocalPresence`]; nothing else may count local sockets to answer this question.

use std::collections::HashMap;
use std::sync::Mutex;

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
}

/// Presence within one process.
#[derive(Default)]
pub struct LocalPresence {
    // scope → user → open connections. A std Mutex: never held across an await.
    scopes: Mutex<HashMap<String, HashMap<String, u32>>>,
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
