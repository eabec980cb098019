//! The Redis layer: every push goes through Redis pub/sub, so the members of one group may be spread
//! over several hub nodes (PROTOCOL §4.1: "several hub nodes"). A node subscribes to a group's channel
//! while it has local members, as Django Channels' Redis layer does.
//!
//! Delivery is at most once, like Redis pub/sub itself: pushes published while a node's subscriber
//! connection is down do not reach that node's members (the node reconnects and resubscribes; the loss
//! is logged).
//!
//! Every payload opens with an HMAC-SHA256 tag over its channel and the rest of it, keyed by the
//! deployment's `redis_frame_key`: whatever else is on a channel (a forged frame from another client of
//! the same Redis, garbage, a frame of another deployment) is counted, logged now and then, and dropped
//! before it can reach a socket.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use prometheus_client::metrics::counter::Counter;

use super::{Layer, LayerError, LocalGroups, Push};
use crate::config::RedisConfig;

/// How long a command (publish, subscribe) may wait for Redis before the caller gets an error: a
/// publish answers 503, a connection closes with 1011.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Connection attempts, each bounded, before a command fails; the manager then retries on the next one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_RETRIES: usize = 2;

/// Envelope flags: what follows the flag byte before the frame itself.
const HAS_SKIP: u8 = 1;
const HAS_TAG: u8 = 2;
/// The HMAC-SHA256 tag that opens every envelope.
const MAC_LEN: usize = 32;
/// At most one log line per this long about payloads that failed verification (each is counted): a
/// flood of forgeries must not flood the log too.
const REJECT_LOG_EVERY: Duration = Duration::from_secs(10);

/// What the Redis layer counts for `/metrics`.
#[derive(Clone, Default)]
pub struct RedisCounters {
    /// Outages of the subscriber connection (pushes published meanwhile missed this node).
    pub losses: Counter,
    /// Payloads dropped because their tag did not verify (forged, corrupted, another key).
    pub rejected: Counter,
}
/// The envelope carries the push's stream position.
const HAS_SEQ: u8 = 4;

/// Fan-out through Redis to every node, delivering what this node receives to its local groups `G`.
pub struct RedisLayer<G> {
    /// Publishes; also the connection ws tokens and presence use (see [`RedisLayer::commands`]).
    commands: ConnectionManager,
    signer: Signer,
    shared: Arc<Shared<G>>,
    changes: mpsc::UnboundedSender<Change>,
}

/// What the subscription task and the joins share.
struct Shared<G> {
    prefix: String,
    local: Arc<G>,
    /// Groups this node's subscriber connection is subscribed to. A join that finds its group here
    /// needs no round trip; the task decides to unsubscribe under this lock after checking the
    /// local groups, so a join never finds a group here that is about to go. Emptied when the
    /// connection drops, so that joins wait for it to be back instead of being greeted deaf.
    subscribed: Mutex<HashSet<String>>,
    /// Whether the subscriber connection is up, for `/readyz`.
    up: AtomicBool,
    /// Outages of the subscriber connection (pushes published meanwhile missed this node), and
    /// payloads dropped unverified; the hub shows them as metrics.
    counters: RedisCounters,
}

/// Work for the task that owns the subscriber connection.
enum Change {
    /// Make the group's subscription match the local groups; `done` answers a join.
    Group { group: String, done: Option<oneshot::Sender<Result<(), LayerError>>> },
    /// The subscriber connection dropped: get it back and subscribe again.
    Reconnect,
    /// Nothing else to do for [`KEEPALIVE`]: check that the connection still answers.
    Ping,
}

impl<G: LocalGroups> RedisLayer<G> {
    /// Connects twice (commands, and a RESP3 subscriber connection that resubscribes by itself after a
    /// reconnect) and starts the tasks that keep subscriptions and deliver pushes to `local`, until
    /// `shutdown`. Each outage of the subscriber connection counts one in `counters.losses`, each payload
    /// that fails verification one in `counters.rejected`.
    pub async fn connect(
        config: &RedisConfig,
        local: Arc<G>,
        counters: RedisCounters,
        shutdown: CancellationToken,
    ) -> Result<Self, LayerError> {
        let info = config.url.expose().into_connection_info().map_err(|e| LayerError::Unavailable(e.to_string()))?;
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings)).map_err(redis_error)?;
        let base = || {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(COMMAND_TIMEOUT))
                .set_number_of_retries(CONNECT_RETRIES)
        };
        let commands = client.get_connection_manager_with_config(base()).await.map_err(redis_error)?;
        check_version(&mut commands.clone()).await?;
        let (pushes_tx, pushes) = mpsc::unbounded_channel();
        let subscriber = client
            .get_connection_manager_with_config(base().set_push_sender(pushes_tx).set_automatic_resubscription())
            .await
            .map_err(redis_error)?;
        let shared = Arc::new(Shared {
            prefix: config.prefix.clone(),
            local,
            subscribed: Mutex::default(),
            up: AtomicBool::new(true),
            counters,
        });
        let signer = Signer::new(&config.frame_key);
        let (changes, changes_rx) = mpsc::unbounded_channel();
        tokio::spawn(keep_subscriptions(Arc::clone(&shared), subscriber, changes_rx, shutdown.clone()));
        tokio::spawn(deliver_pushes(Arc::clone(&shared), signer.clone(), pushes, changes.clone(), shutdown));
        Ok(Self { commands, signer, shared, changes })
    }

    /// The command connection, shared with the other multi-node parts (it reconnects by itself).
    pub fn commands(&self) -> ConnectionManager {
        self.commands.clone()
    }
}

impl<G> Shared<G> {
    /// The subscriber connection is gone: no group counts as subscribed until it is back.
    fn lost(&self) {
        // Counted once per outage, however many ways it was noticed.
        if self.up.swap(false, Ordering::Relaxed) {
            self.counters.losses.inc();
        }
        self.subscribed.lock().expect("subscription lock poisoned").clear();
    }

    fn channel(&self, group: &str) -> String {
        format!("{}:g:{group}", self.prefix)
    }

    fn group<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(self.prefix.as_str())?.strip_prefix(":g:")
    }
}

#[async_trait]
impl<G: LocalGroups> Layer for RedisLayer<G> {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn publish(&self, group: &str, push: Push) -> Result<(), LayerError> {
        let mut conn = self.commands.clone();
        let channel = self.shared.channel(group);
        redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(encode(&self.signer, &channel, &push).as_ref())
            .query_async::<i64>(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn subscribe(&self, group: &str) -> Result<(), LayerError> {
        if self.shared.subscribed.lock().expect("subscription lock poisoned").contains(group) {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        let change = Change::Group { group: group.to_owned(), done: Some(done) };
        self.changes.send(change).map_err(|_| LayerError::ShuttingDown)?;
        match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LayerError::ShuttingDown),
            Err(_) => Err(LayerError::Unavailable(format!("no SUBSCRIBE answer within {COMMAND_TIMEOUT:?}"))),
        }
    }

    fn unsubscribe(&self, group: &str) {
        // Fails only when the task is gone (shutdown): nothing is left to unsubscribe then.
        let _ = self.changes.send(Change::Group { group: group.to_owned(), done: None });
    }

    async fn ping(&self) -> Result<(), LayerError> {
        if !self.shared.up.load(Ordering::Relaxed) {
            return Err(LayerError::Unavailable("redis subscriber connection down".into()));
        }
        let mut conn = self.commands.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(redis_error)?;
        Ok(())
    }
}

/// Makes the changed groups' subscriptions match the local groups, a batch at a time (a reconnect storm
/// of notification users, one group each, is one SUBSCRIBE per batch, not one round trip per user),
/// and keeps the subscriber connection alive: it sends nothing of its own between changes, so without
/// a ping a connection dropped silently (a NAT, a proxy) would leave the node deaf.
async fn keep_subscriptions<G: LocalGroups>(
    shared: Arc<Shared<G>>,
    mut subscriber: ConnectionManager,
    mut changes: mpsc::UnboundedReceiver<Change>,
    shutdown: CancellationToken,
) {
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            change = changes.recv() => match change {
                Some(change) => change,
                None => return,
            },
            _ = keepalive.tick() => Change::Ping,
            () = shutdown.cancelled() => return,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH
            && let Ok(change) = changes.try_recv()
        {
            batch.push(change);
        }
        let (mut groups, mut answers, mut reconnecting, mut ping) = (Vec::new(), Vec::new(), false, false);
        for change in batch {
            match change {
                Change::Group { group, done } => {
                    groups.push(group);
                    answers.extend(done);
                }
                Change::Reconnect => reconnecting = true,
                Change::Ping => ping = true,
            }
        }
        if ping
            && !reconnecting
            && let Err(error) = redis::cmd("PING").query_async::<String>(&mut subscriber).await
        {
            warn!(%error, "redis subscriber connection does not answer");
            shared.lost();
            reconnecting = true;
        }
        if reconnecting && !reconnect(&shared, &mut subscriber, &shutdown).await {
            return;
        }
        let result = apply(&shared, &mut subscriber, groups).await;
        if let Err(error) = &result {
            warn!(%error, "cannot change subscriptions");
        }
        for answer in answers {
            let _ = answer.send(result.clone());
        }
    }
}

/// Subscribes to the groups that have members here and are not subscribed, unsubscribes from those
/// that have none; the decision for each group is taken under the lock joins read.
async fn apply<G: LocalGroups>(
    shared: &Shared<G>,
    subscriber: &mut ConnectionManager,
    mut groups: Vec<String>,
) -> Result<(), LayerError> {
    groups.sort_unstable();
    groups.dedup();
    let (subscribe, unsubscribe) = {
        let mut set = shared.subscribed.lock().expect("subscription lock poisoned");
        let (mut subscribe, mut unsubscribe) = (Vec::new(), Vec::new());
        for group in groups {
            let wanted = shared.local.has_members(&group);
            if wanted && !set.contains(&group) {
                subscribe.push(group);
            } else if !wanted {
                // Forgotten under the lock: a join from now on waits for this task, which subscribes
                // again after this unsubscribe. Unsubscribed even when not in the set: a SUBSCRIBE that
                // timed out may have been applied, and after an outage the connection manager restores
                // subscriptions the set no longer lists (UNSUBSCRIBE of a channel not subscribed is a
                // no-op for Redis).
                set.remove(&group);
                unsubscribe.push(group);
            }
        }
        (subscribe, unsubscribe)
    };
    if !unsubscribe.is_empty() {
        let channels: Vec<String> = unsubscribe.iter().map(|g| shared.channel(g)).collect();
        // A failed UNSUBSCRIBE costs pushes this node drops (no members), never a lost one.
        if let Err(error) = subscriber.unsubscribe(&channels).await {
            warn!(%error, groups = unsubscribe.len(), "cannot unsubscribe");
        }
    }
    if !subscribe.is_empty() {
        let channels: Vec<String> = subscribe.iter().map(|g| shared.channel(g)).collect();
        subscriber.subscribe(&channels).await.map_err(redis_error)?;
        debug!(groups = subscribe.len(), "subscribed");
        shared.subscribed.lock().expect("subscription lock poisoned").extend(subscribe);
    }
    Ok(())
}

/// First wait after the subscriber connection dropped; doubles up to [`RECONNECT_MAX`]. The cap is
/// short on purpose: a probe is one PING to a local-network Redis, and a node that waited seconds
/// between probes stayed deaf (and `/readyz` red) that long after Redis was back (issue 17: 7.9 s with
/// a 5 s cap); with 250 ms, groups are resubscribed within a few hundred ms of Redis answering.
const RECONNECT_BASE: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_millis(250);
/// Subscription changes sent to Redis in one command at most.
const BATCH: usize = 1024;
/// How often the subscriber connection is pinged while nothing else goes over it.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Gets the subscriber connection back (the connection manager reconnects only when a command finds
/// it gone) and subscribes again to every group with members here: the manager resubscribes what it
/// tracked, but ignores errors doing so. False when the hub shut down meanwhile.
async fn reconnect<G: LocalGroups>(
    shared: &Shared<G>,
    subscriber: &mut ConnectionManager,
    shutdown: &CancellationToken,
) -> bool {
    shared.lost();
    let mut delay = RECONNECT_BASE;
    loop {
        let restored = match redis::cmd("PING").query_async::<String>(subscriber).await {
            Ok(_) => apply(shared, subscriber, shared.local.groups()).await,
            Err(error) => Err(redis_error(error)),
        };
        match restored {
            Ok(()) => {
                shared.up.store(true, Ordering::Relaxed);
                info!("redis subscriber connection back, subscriptions restored");
                return true;
            }
            Err(error) => debug!(%error, ?delay, "redis subscriber connection still down"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => delay = (delay * 2).min(RECONNECT_MAX),
            () = shutdown.cancelled() => return false,
        }
    }
}

/// Delivery lanes per core. A group always takes the same lane, so its pushes keep Redis's order,
/// while a broadcast to ten thousand members (tens of milliseconds of writes) holds up only the groups
/// that share its lane, as publishes to different groups run side by side with the memory layer.
const LANES_PER_CORE: usize = 2;

/// Hands each pushed message to a delivery lane by its group, in the order Redis sent them.
async fn deliver_pushes<G: LocalGroups>(
    shared: Arc<Shared<G>>,
    signer: Signer,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    changes: mpsc::UnboundedSender<Change>,
    shutdown: CancellationToken,
) {
    let cores = tokio::runtime::Handle::current().metrics().num_workers().max(1);
    let lanes: Vec<_> = (0..LANES_PER_CORE * cores)
        .map(|_| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(String, Push)>();
            let local = Arc::clone(&shared.local);
            tokio::spawn(async move {
                while let Some((group, push)) = rx.recv().await {
                    local.deliver(&group, push).await;
                }
            });
            tx
        })
        .collect();
    let mut rejections = Rejections::default();
    // The lanes end when their senders drop, when this task returns.
    loop {
        let info = tokio::select! {
            info = pushes.recv() => match info {
                Some(info) => info,
                None => return,
            },
            () = shutdown.cancelled() => return,
        };
        match info.kind {
            PushKind::Message => {
                let Ok([Value::BulkString(channel), Value::BulkString(payload)]) = <[Value; 2]>::try_from(info.data)
                else {
                    warn!("unexpected pub/sub message shape");
                    continue;
                };
                let channel = String::from_utf8_lossy(&channel);
                let Some(group) = shared.group(&channel) else {
                    warn!(%channel, "pub/sub message on a channel of no group");
                    continue;
                };
                let Some(push) = open(&signer, &channel, payload) else {
                    shared.counters.rejected.inc();
                    rejections.note(&channel);
                    continue;
                };
                let mut hasher = std::hash::DefaultHasher::new();
                std::hash::Hash::hash(group, &mut hasher);
                let lane = &lanes[std::hash::Hasher::finish(&hasher) as usize % lanes.len()];
                let _ = lane.send((group.to_owned(), push));
            }
            PushKind::Disconnection => {
                warn!("redis subscriber connection lost: pushes published until it is back do not reach this node");
                shared.lost();
                let _ = changes.send(Change::Reconnect);
            }
            _ => {}
        }
    }
}

/// The deployment's frame key, ready to tag and verify (keyed once; each use clones the keyed state).
#[derive(Clone)]
struct Signer(Hmac<Sha256>);

impl Signer {
    fn new(key: &crate::config::Secret) -> Self {
        Self(Hmac::new_from_slice(key.expose().as_bytes()).expect("HMAC takes keys of any length"))
    }

    /// The MAC of `body` as published on `channel`: the channel is covered so that a genuine payload
    /// copied onto another group's channel (another user's) does not verify there.
    fn mac(&self, channel: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(&(channel.len() as u64).to_be_bytes());
        mac.update(channel.as_bytes());
        mac.update(body);
        mac
    }
}

/// Counts the payloads that failed verification between two log lines, so that the log says how many
/// without a line for each.
#[derive(Default)]
struct Rejections {
    last_logged: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl Rejections {
    fn note(&mut self, channel: &str) {
        self.unlogged += 1;
        let now = tokio::time::Instant::now();
        if self.last_logged.is_none_or(|last| now.duration_since(last) >= REJECT_LOG_EVERY) {
            // The channel names a group (a user id at most), never a secret; the payload is not shown.
            warn!(
                %channel,
                dropped = self.unlogged,
                "dropped pub/sub payloads that fail verification (forged, corrupted, or another redis_frame_key)"
            );
            self.last_logged = Some(now);
            self.unlogged = 0;
        }
    }
}

/// The push as one pub/sub payload for `channel`: its MAC, then flags, then the connection to skip and
/// the tag when present, then the WebSocket frame exactly as it goes on the sockets (so receiving nodes
/// serialize nothing).
fn encode(signer: &Signer, channel: &str, push: &Push) -> Bytes {
    let tag = push.tag.as_deref().unwrap_or_default();
    let mut out = BytesMut::with_capacity(MAC_LEN + 1 + 8 + 8 + 2 + tag.len() + push.wire.len());
    out.put_bytes(0, MAC_LEN);
    let flags = if push.skip.is_some() { HAS_SKIP } else { 0 }
        | if push.tag.is_some() { HAS_TAG } else { 0 }
        | if push.seq > 0 { HAS_SEQ } else { 0 };
    out.put_u8(flags);
    if let Some(skip) = push.skip {
        out.put_u64(skip);
    }
    if push.seq > 0 {
        out.put_u64(push.seq);
    }
    if push.tag.is_some() {
        // Tags are notification types, far below 64 KiB; a longer one is cut, never mis-framed.
        let len = tag.len().min(usize::from(u16::MAX));
        out.put_u16(len as u16);
        out.put_slice(&tag.as_bytes()[..len]);
    }
    out.put_slice(&push.wire);
    let mac = signer.mac(channel, &out[MAC_LEN..]).finalize().into_bytes();
    out[..MAC_LEN].copy_from_slice(&mac);
    out.freeze()
}

/// Verifies a payload received on `channel` (in constant time) and reads its push; `None` when the MAC
/// does not verify or the envelope is cut.
fn open(signer: &Signer, channel: &str, payload: Vec<u8>) -> Option<Push> {
    let (mac, body) = payload.split_at_checked(MAC_LEN)?;
    signer.mac(channel, body).verify_slice(mac).ok()?;
    let mut payload = Bytes::from(payload);
    decode(payload.split_off(MAC_LEN))
}

/// Reads an envelope (after its MAC) back; the frame keeps the payload's buffer (no copy).
fn decode(payload: Bytes) -> Option<Push> {
    let mut rest = &payload[..];
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let flags = take(1)?[0];
    let skip = if flags & HAS_SKIP != 0 { Some(u64::from_be_bytes(take(8)?.try_into().ok()?)) } else { None };
    let seq = if flags & HAS_SEQ != 0 { u64::from_be_bytes(take(8)?.try_into().ok()?) } else { 0 };
    let tag = if flags & HAS_TAG != 0 {
        let len = u16::from_be_bytes(take(2)?.try_into().ok()?);
        Some(std::str::from_utf8(take(usize::from(len))?).ok()?.into())
    } else {
        None
    };
    let header = payload.len() - rest.len();
    Some(Push { wire: payload.slice(header..), tag, skip, seq })
}

/// The oldest Redis with what the hub uses: RESP3 pushes (6.0) and `GETDEL` for ws tokens (6.2).
const MIN_VERSION: (u32, u32) = (6, 2);

async fn check_version(conn: &mut ConnectionManager) -> Result<(), LayerError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await.map_err(redis_error)?;
    let version = info.lines().find_map(|line| line.strip_prefix("redis_version:")).unwrap_or("unknown").trim();
    let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_VERSION {
        return Err(LayerError::Unavailable(format!(
            "Redis {version} is too old: {}.{} or later is needed",
            MIN_VERSION.0, MIN_VERSION.1
        )));
    }
    Ok(())
}

fn redis_error(error: redis::RedisError) -> LayerError {
    LayerError::Unavailable(format!("redis: {error}"))
}

#[cfg(test)]
mod tests {
    use super::super::memory::tests::Recorder;
    use super::*;

    /// Against a real Redis: a group is received while it has local members (its pushes arrive with
    /// their frame, tag and skip intact) and the channel is dropped once it has none.
    #[tokio::test]
    #[ignore = "needs Redis: set RTCTL_TEST_REDIS_URL"]
    async fn a_group_is_received_while_it_has_local_members() {
        let url = std::env::var("RTCTL_TEST_REDIS_URL").expect("RTCTL_TEST_REDIS_URL names a Redis");
        let prefix = format!("rtctl-test-{:016x}", rand::random::<u64>());
        let config = RedisConfig {
            url: crate::config::Secret::new(url),
            prefix: prefix.clone(),
            node_ttl: crate::config::DEFAULT_NODE_TTL,
            frame_key: crate::config::Secret::new("test-frame-key-0123456789"),
        };
        let local = Arc::new(Recorder::default());
        local.members.lock().unwrap().push("room:r1".to_owned());
        let shutdown = CancellationToken::new();
        let _stop = shutdown.clone().drop_guard();
        let counters = RedisCounters::default();
        let layer =
            RedisLayer::connect(&config, Arc::clone(&local), counters.clone(), shutdown).await.expect("connects");
        layer.subscribe("room:r1").await.expect("subscribes");

        let push = Push::tagged("{\"n\":1}".into(), "order_update");
        let wire = push.wire.to_vec();
        layer.publish("room:r1", push).await.expect("publishes");
        layer.publish("room:r2", Push::new("{}".into())).await.expect("publishes to a group nobody here has");
        layer.publish("room:r1", Push::skipping("{\"n\":2}".into(), 9)).await.expect("publishes");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while local.delivered.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let delivered = local.delivered.lock().unwrap().clone();
        assert_eq!(delivered.len(), 2, "{delivered:?}");
        assert_eq!(delivered[0], ("room:r1".to_owned(), wire, None));
        assert_eq!((delivered[1].0.as_str(), delivered[1].2), ("room:r1", Some(9)));

        local.members.lock().unwrap().clear();
        layer.unsubscribe("room:r1");
        let channel = format!("{prefix}:g:room:r1");
        let subscribers = || async {
            let reply: (String, i64) =
                redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut layer.commands()).await.unwrap();
            reply.1
        };
        while subscribers().await > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(subscribers().await, 0, "the node left the channel of a group it has no member of");
        assert_eq!((counters.losses.get(), counters.rejected.get()), (0, 0));
    }

    fn signer(key: &str) -> Signer {
        Signer::new(&crate::config::Secret::new(key))
    }

    /// A push crosses Redis unchanged: frame bytes, tag and the connection to skip, in every combination.
    #[test]
    fn envelopes_round_trip() {
        let signer = signer("key-0123456789abcdef");
        for push in [
            Push::new("{\"a\":1}".into()),
            Push::tagged("{\"b\":2}".into(), "order_update"),
            Push::skipping("{\"typing\":true}".into(), 0xdead_beef_0000_0007),
            Push::sequenced("{\"seq\":7}".into(), 7),
        ] {
            let back = open(&signer, "p:g:room:r1", encode(&signer, "p:g:room:r1", &push).to_vec()).expect("opens");
            assert_eq!((back.wire, back.tag, back.skip, back.seq), (push.wire, push.tag, push.skip, push.seq));
        }
        assert!(decode(Bytes::from_static(&[HAS_SKIP, 1, 2])).is_none(), "a cut envelope is refused");
        assert!(decode(Bytes::new()).is_none());
    }

    /// Only a payload tagged with the deployment's key for this very channel opens: not one under
    /// another key, not a genuine one copied to another channel, not one with a byte changed, not a
    /// pre-HMAC raw frame, not a cut one.
    #[test]
    fn only_payloads_tagged_for_their_channel_with_the_key_open() {
        let (ours, theirs) = (signer("key-0123456789abcdef"), signer("other-key-0123456789"));
        let push = || Push::new("{\"type\":\"notification\"}".into());
        let genuine = encode(&ours, "p:g:user:alice", &push()).to_vec();
        assert!(open(&ours, "p:g:user:alice", genuine.clone()).is_some());
        assert!(open(&ours, "p:g:user:bob", genuine.clone()).is_none(), "copied to another user's channel");
        assert!(open(&ours, "p:g:user:alice", encode(&theirs, "p:g:user:alice", &push()).to_vec()).is_none());
        let mut changed = genuine.clone();
        *changed.last_mut().expect("a payload") ^= 1;
        assert!(open(&ours, "p:g:user:alice", changed).is_none(), "one byte changed");
        let mut raw = vec![0];
        raw.extend_from_slice(&push().wire);
        assert!(open(&ours, "p:g:user:alice", raw).is_none(), "the pre-HMAC envelope");
        assert!(open(&ours, "p:g:user:alice", genuine[..MAC_LEN - 1].to_vec()).is_none(), "cut in the MAC");
        assert!(open(&ours, "p:g:user:alice", Vec::new()).is_none());
    }
}
