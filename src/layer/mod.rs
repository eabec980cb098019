//! The channel layer: publish a frame to a named group on every node. A node holds a subscription to a
//! group while it has local members (the hub's registry tells the layer when that starts and stops).
//!
//! Nothing outside this module may assume one process: a publisher always goes through
//! [`Layer::publish`], never straight to the registry: [`MemoryLayer`] delivers in this process,
//! [`RedisLayer`] through Redis pub/sub to every node. The layer sits below the hub: it hands what it
//! receives to the node's [`LocalGroups`], a trait of its own that the hub's registry implements.

mod memory;
pub mod redis;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};

pub use memory::MemoryLayer;
pub use redis::RedisLayer;

/// Globally unique id of one WebSocket connection (random node prefix + counter), so a push can name a
/// connection to skip even when it crosses nodes.
pub type ConnId = u64;

/// One message for the members of a group: serialized once, shared by every receiver.
#[derive(Debug)]
pub struct Push {
    /// The whole WebSocket text frame (header and JSON payload), exactly as it goes on every socket.
    pub wire: Bytes,
    /// A tag a connection may filter on (the notification type for `subscribe`).
    pub tag: Option<Box<str>>,
    /// A connection that must not get it (the sender of a `typing` indicator).
    pub skip: Option<ConnId>,
    /// Its position in its stream (org events, dashboard pushes), 0 for none: a connection that has
    /// just been sent the stream up to some position by a resume skips pushes at or below it.
    pub seq: u64,
}

impl Push {
    pub fn new(frame: String) -> Self {
        Self { wire: text_frame(frame.as_bytes()), tag: None, skip: None, seq: 0 }
    }

    pub fn tagged(frame: String, tag: &str) -> Self {
        Self { wire: text_frame(frame.as_bytes()), tag: Some(tag.into()), skip: None, seq: 0 }
    }

    /// A push at position `seq` of its stream.
    pub fn sequenced(frame: String, seq: u64) -> Self {
        Self { seq, ..Self::new(frame) }
    }

    pub fn skipping(frame: String, skip: ConnId) -> Self {
        Self::all_but(frame, Some(skip))
    }

    /// To every member, or every member but `skip` (a requester answered directly) when there is one.
    pub fn all_but(frame: String, skip: Option<ConnId>) -> Self {
        Self { wire: text_frame(frame.as_bytes()), tag: None, skip, seq: 0 }
    }
}

/// Encodes a final, unmasked text frame (RFC 6455 §5.2), as a server sends it: built once per push so
/// that every socket gets the same bytes without a per-receiver copy.
fn text_frame(payload: &[u8]) -> Bytes {
    const FIN_TEXT: u8 = 0x81;
    let mut frame = BytesMut::with_capacity(payload.len() + 10);
    frame.put_u8(FIN_TEXT);
    match payload.len() {
        len @ 0..=125 => frame.put_u8(len as u8),
        len @ 126..=0xFFFF => {
            frame.put_u8(126);
            frame.put_u16(len as u16);
        }
        len => {
            frame.put_u8(127);
            frame.put_u64(len as u64);
        }
    }
    frame.put_slice(payload);
    frame.freeze()
}

/// A failure to publish (the API answers 503) or to subscribe a connection (it closes).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LayerError {
    /// The layer's backend did not answer, or answered with an error (the reason says which).
    #[error("channel layer unavailable: {0}")]
    Unavailable(String),
    /// The hub is shutting down: the layer takes no more subscriptions.
    #[error("the hub is shutting down")]
    ShuttingDown,
}

/// Where the local registry of a node gets its pushes from, and where publishers send them.
#[async_trait]
pub trait Layer: Send + Sync + 'static {
    /// A short name for `/readyz` and `/api/v1/stats` (`memory`, `redis`).
    fn name(&self) -> &'static str;

    /// Delivers `push` to every member of `group` on every node, in publish order per publisher.
    async fn publish(&self, group: &str, push: Push) -> Result<(), LayerError>;

    /// A local connection has joined `group` (it is in the registry): returns once this node receives
    /// the group's pushes, so that nothing published after the connection's greeting can miss it.
    async fn subscribe(&self, group: &str) -> Result<(), LayerError>;

    /// The last local member of `group` has left: stop receiving it (unless one has joined since).
    fn unsubscribe(&self, group: &str);

    /// Does the layer answer?
    async fn ping(&self) -> Result<(), LayerError>;
}

/// This node's members of each group, as the layer sees them: where it delivers what it receives, and
/// which groups it must receive. The hub's registry implements it; a layer is generic over it, so a
/// delivery costs no dynamic call and no allocation.
pub trait LocalGroups: Send + Sync + 'static {
    /// Hands `push` to every local member of `group` (but its `skip`); returns how many took it. Returns
    /// when all did, so that one publisher's pushes stay in order.
    fn deliver(self: &Arc<Self>, group: &str, push: Push) -> impl Future<Output = usize> + Send;

    /// Every group with a member on this node (what a layer subscribes to again after a reconnect).
    fn groups(&self) -> Vec<String>;

    /// Whether this node has a member in `group` (whether a layer should receive it).
    fn has_members(&self, group: &str) -> bool;
}

/// Group names, one function each so that every publisher and subscriber agree.
pub mod group {
    /// All connections of one user on `/ws/notifications/`.
    pub fn user(user_id: &str) -> String {
        format!("user:{user_id}")
    }

    /// All members of an organization on `/ws/events/{org_id}/`.
    pub fn org(org_id: &str) -> String {
        format!("org:{org_id}")
    }

    /// All admin dashboard connections.
    pub const ADMINS: &str = "admins";

    /// All connections to one chat room.
    pub fn room(room_id: &str) -> String {
        format!("room:{room_id}")
    }
}

/// The layer a hub uses, shared.
pub type SharedLayer = Arc<dyn Layer>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Each payload length class gets the header RFC 6455 §5.2 gives it, and the payload follows whole.
    #[test]
    fn text_frames_carry_the_length_in_the_right_form() {
        for (len, header) in [
            (5, vec![0x81, 5]),
            (200, vec![0x81, 126, 0, 200]),
            (70_000, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]),
        ] {
            let push = Push::new("a".repeat(len));
            assert_eq!(&push.wire[..header.len()], &header[..], "length {len}");
            assert_eq!(&push.wire[header.len()..], "a".repeat(len).as_bytes());
        }
    }
}
