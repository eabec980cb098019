//! Measurements while a run goes: per-shard HDR histograms and timelines (merged at the end), per-subscriber
//! sequence tracking for loss, duplicates and order, and per-message broadcast completion.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use super::workers::lane;

/// Latencies are recorded in nanoseconds from 1 µs to one hour with 3 significant digits (0.1 % error).
const LATENCY_LOW_NS: u64 = 1_000;
const LATENCY_HIGH_NS: u64 = 3_600 * 1_000_000_000;
const LATENCY_SIGFIG: u8 = 3;
/// Timeline buckets keep coarser histograms (microseconds, 2 digits) since there is one per bucket and shard.
const BUCKET_HIGH_US: u64 = 3_600 * 1_000_000;
const BUCKET_SIGFIG: u8 = 2;

/// An empty latency histogram in nanoseconds.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LATENCY_LOW_NS, LATENCY_HIGH_NS, LATENCY_SIGFIG).expect("constant bounds are valid")
}

fn bucket_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, BUCKET_HIGH_US, BUCKET_SIGFIG).expect("constant bounds are valid")
}

/// One slice of the run's timeline.
#[derive(Debug, Default)]
pub struct Bucket {
    pub deliveries: u64,
    /// Latencies in µs; allocated on the first delivery in this bucket.
    pub latency_us: Option<Histogram<u32>>,
}

/// What one shard of subscribers measured.
#[derive(Debug)]
pub struct Recorder {
    pub latency: Histogram<u64>,
    pub timeline: Vec<Bucket>,
    pub errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self { latency: latency_histogram(), timeline: Vec::new(), errors: BTreeMap::new() }
    }
}

impl Recorder {
    /// Records one measured delivery that fell into timeline bucket `bucket`.
    pub fn delivery(&mut self, bucket: usize, latency_ns: u64) {
        self.latency.saturating_record(latency_ns);
        if self.timeline.len() <= bucket {
            self.timeline.resize_with(bucket + 1, Bucket::default);
        }
        let slot = &mut self.timeline[bucket];
        slot.deliveries += 1;
        slot.latency_us.get_or_insert_with(bucket_histogram).saturating_record(latency_ns / 1_000);
    }

    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// Adds another recorder's counts to this one.
    pub fn merge(&mut self, other: &Recorder) {
        self.latency.add(&other.latency).expect("histograms share bounds");
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize_with(other.timeline.len(), Bucket::default);
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            mine.deliveries += theirs.deliveries;
            if let Some(hist) = &theirs.latency_us {
                mine.latency_us.get_or_insert_with(bucket_histogram).add(hist).expect("histograms share bounds");
            }
        }
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
    }
}

/// Recorders, one per worker thread: a subscriber's deliveries are booked in its worker's shard, locked
/// for a few hundred nanoseconds each (never across an `.await`). Other threads take a lock only for an
/// error (the publisher) or to merge at the end, so the locks stay uncontended.
pub struct Shards {
    shards: Vec<Mutex<Recorder>>,
    /// Bench-clock start of the measured window, set once publishing is scheduled.
    start_ns: AtomicU64,
    bucket_ns: u64,
}

impl Shards {
    pub fn new(count: usize, bucket_ns: u64) -> Self {
        Self {
            shards: (0..count.max(1)).map(|_| Mutex::default()).collect(),
            start_ns: AtomicU64::new(u64::MAX),
            bucket_ns: bucket_ns.max(1),
        }
    }

    pub fn set_start(&self, start_ns: u64) {
        self.start_ns.store(start_ns, Ordering::Relaxed);
    }

    pub fn bucket_ns(&self) -> u64 {
        self.bucket_ns
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Recorder> {
        let shard = &self.shards[lane(key, self.shards.len())];
        // A panic while holding the lock only loses that shard's partial counts; keep measuring.
        shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a measured delivery received at `recv_ns` by a subscriber with key `key`.
    pub fn delivery(&self, key: u64, recv_ns: u64, latency_ns: u64) {
        let bucket = (recv_ns.saturating_sub(self.start_ns.load(Ordering::Relaxed)) / self.bucket_ns) as usize;
        self.shard(key).delivery(bucket, latency_ns);
    }

    pub fn error(&self, key: u64, kind: &str) {
        self.shard(key).error(kind);
    }

    /// All shards merged into one recorder.
    pub fn merged(&self) -> Recorder {
        let mut all = Recorder::default();
        for key in 0..self.shards.len() {
            all.merge(&self.shard(key as u64));
        }
        all
    }
}

/// What a delivery was, judged by its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First arrival, in order.
    New,
    /// First arrival, but after the group's later message with this index.
    Late(u64),
    /// Arrived before.
    Duplicate,
    /// Not a message this subscriber's group was sent.
    Unexpected,
}

/// Which of its group's messages one subscriber has received: a count of the messages received in
/// order from the first, and a bitset for those beyond it.
///
/// Messages almost always arrive in order, and then only `prefix` changes: the bitset, a heap block
/// per subscriber, is touched when one arrives out of order. With 10,000 subscribers that block was a
/// cache miss on every delivery, the largest part of the bench's user-space CPU (its kernel time is
/// larger still, but that is the socket's).
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// Every index below this one has arrived; their bits are not set.
    prefix: u64,
    /// Arrivals at or beyond `prefix`.
    bits: Vec<u64>,
    len: u64,
    highest: Option<u64>,
}

impl SeqTracker {
    /// A tracker for a group that is sent `len` messages.
    pub fn new(len: u64) -> Self {
        Self { prefix: 0, bits: vec![0; len.div_ceil(64) as usize], len, highest: None }
    }

    /// Notes the arrival of the group's message `index`.
    pub fn observe(&mut self, index: u64) -> Seen {
        if index >= self.len {
            return Seen::Unexpected;
        }
        if index < self.prefix {
            return Seen::Duplicate;
        }
        // The next one, with nothing beyond it yet.
        if index == self.prefix && self.highest.is_none_or(|high| high < index) {
            self.prefix += 1;
            self.highest = Some(index);
            return Seen::New;
        }
        if self.bit(index) {
            return Seen::Duplicate;
        }
        self.bits[(index / 64) as usize] |= 1 << (index % 64);
        while self.prefix < self.len && self.bit(self.prefix) {
            self.prefix += 1;
        }
        match self.highest {
            Some(high) if index < high => Seen::Late(high),
            _ => {
                self.highest = Some(index);
                Seen::New
            }
        }
    }

    pub fn seen(&self, index: u64) -> bool {
        index < self.len && (index < self.prefix || self.bit(index))
    }

    fn bit(&self, index: u64) -> bool {
        self.bits[(index / 64) as usize] & (1 << (index % 64)) != 0
    }
}

/// Per message, when the publisher sent it and when the hub acknowledged it (bench clock, 0: not yet).
///
/// A message the hub acknowledged before a later one was sent must reach every subscriber first; two
/// publishes in flight at once have no order (the hub may take either first), so their arrival in either
/// order is not the hub reordering anything.
pub struct Sends {
    sent: Vec<AtomicU64>,
    acknowledged: Vec<AtomicU64>,
}

impl Sends {
    pub fn new(messages: u64) -> Self {
        let zeros = || (0..messages).map(|_| AtomicU64::new(0)).collect();
        Self { sent: zeros(), acknowledged: zeros() }
    }

    /// Message `seq` left for the hub at `t_ns`.
    pub fn sent(&self, seq: u64, t_ns: u64) {
        self.sent[seq as usize].store(t_ns.max(1), Ordering::Release);
    }

    /// The hub acknowledged message `seq` at `t_ns` (the first acknowledgement counts).
    pub fn acknowledged(&self, seq: u64, t_ns: u64) {
        let _ = self.acknowledged[seq as usize].compare_exchange(0, t_ns.max(1), Ordering::Release, Ordering::Relaxed);
    }

    /// Whether the hub had acknowledged `earlier` before `later` was sent, so that it owes them in order.
    pub fn ordered(&self, earlier: u64, later: u64) -> bool {
        let acknowledged = self.acknowledged[earlier as usize].load(Ordering::Acquire);
        let sent = self.sent[later as usize].load(Ordering::Acquire);
        acknowledged != 0 && sent != 0 && acknowledged <= sent
    }
}

/// Per message, the bench-clock times its first and last deliveries arrived (`u64::MAX` and 0: none
/// yet).
///
/// Two arrays (first, last) per worker thread, 16 bytes per message and worker (a subscriber writes to
/// its worker's lane): during a broadcast every delivery moves the message's times, and a single shared
/// slot would bounce between the cores.
pub struct Completion {
    lasts: Vec<Vec<AtomicU64>>,
    firsts: Vec<Vec<AtomicU64>>,
    /// Measured deliveries so far, per lane (to end the drain early and for progress).
    counts: Vec<AtomicU64>,
}

impl Completion {
    pub fn new(messages: u64, lanes: usize) -> Self {
        let lanes = lanes.max(1);
        Self {
            lasts: (0..lanes).map(|_| (0..messages).map(|_| AtomicU64::new(0)).collect()).collect(),
            firsts: (0..lanes).map(|_| (0..messages).map(|_| AtomicU64::new(u64::MAX)).collect()).collect(),
            counts: (0..lanes).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Subscriber `key`'s delivery of message `seq` at `recv_ns`.
    pub fn delivered(&self, key: u64, seq: u64, recv_ns: u64) {
        let lane = lane(key, self.lasts.len());
        if let Some(slot) = self.lasts[lane].get(seq as usize) {
            slot.fetch_max(recv_ns, Ordering::Relaxed);
            self.firsts[lane][seq as usize].fetch_min(recv_ns, Ordering::Relaxed);
        }
        self.counts[lane].fetch_add(1, Ordering::Relaxed);
    }

    pub fn last_delivery(&self, seq: u64) -> Option<u64> {
        arrivals(&self.lasts, seq).max().filter(|&t| t != 0)
    }

    pub fn first_delivery(&self, seq: u64) -> Option<u64> {
        arrivals(&self.firsts, seq).min().filter(|&t| t != u64::MAX)
    }

    /// Measured deliveries so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|count| count.load(Ordering::Relaxed)).sum()
    }
}

/// Message `seq`'s slot in every lane.
fn arrivals(lanes: &[Vec<AtomicU64>], seq: u64) -> impl Iterator<Item = u64> + '_ {
    lanes.iter().filter_map(move |lane| lane.get(seq as usize)).map(|slot| slot.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merging shards sums counts and keeps the extremes of each.
    #[test]
    fn merged_histograms_keep_every_sample() {
        let shards = Shards::new(4, 1_000_000_000);
        shards.set_start(0);
        for (key, ms) in [(0, 1), (1, 2), (2, 3), (3, 400)] {
            shards.delivery(key, 1_500_000_000, ms * 1_000_000);
        }
        shards.error(1, "close_4008");
        shards.error(2, "close_4008");
        let all = shards.merged();
        assert_eq!(all.latency.len(), 4);
        assert_eq!(all.latency.value_at_quantile(0.5) / 1_000_000, 2);
        assert_eq!(all.latency.max() / 1_000_000, 400);
        assert_eq!(all.timeline.len(), 2);
        assert_eq!((all.timeline[0].deliveries, all.timeline[1].deliveries), (0, 4));
        assert_eq!(all.errors["close_4008"], 2);
    }

    /// Duplicates, late arrivals and strangers are told apart; gaps stay unseen (lost).
    #[test]
    fn tracker_counts_loss_duplicates_and_order() {
        let mut t = SeqTracker::new(70);
        assert_eq!(t.observe(0), Seen::New);
        assert_eq!(t.observe(2), Seen::New);
        assert_eq!(t.observe(1), Seen::Late(2));
        assert_eq!(t.observe(2), Seen::Duplicate);
        assert_eq!(t.observe(69), Seen::New);
        assert_eq!(t.observe(70), Seen::Unexpected);
        let lost = (0..70).filter(|&i| !t.seen(i)).count();
        assert_eq!(lost, 66);
        // In order from the first, then a repeat of one of those.
        let mut t = SeqTracker::new(70);
        for i in 0..5 {
            assert_eq!(t.observe(i), Seen::New);
        }
        assert_eq!(t.observe(3), Seen::Duplicate);
        assert_eq!(t.observe(6), Seen::New);
        assert_eq!(t.observe(5), Seen::Late(6));
        assert_eq!(t.observe(7), Seen::New);
        assert_eq!(t.observe(6), Seen::Duplicate);
        assert_eq!((0..70).filter(|&i| t.seen(i)).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    }

    /// The in-order shortcut answers as a plain set of arrivals and the highest index would, for
    /// arrivals in any order (in order, reordered nearby, repeated, beyond the group).
    #[test]
    fn tracker_answers_as_a_plain_set_would() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = |below: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % below
        };
        for _ in 0..200 {
            let len = 1 + random(150);
            let (mut tracker, mut seen, mut highest) = (SeqTracker::new(len), std::collections::HashSet::new(), None);
            let mut next = 0_u64;
            for _ in 0..2 * len {
                // Mostly the next one; sometimes a jump, a step back or a stranger.
                let index = match random(10) {
                    0 => random(len + 3),
                    1 => next.saturating_sub(1 + random(3)),
                    _ => next,
                };
                next = (index + 1).max(next);
                let expected = if index >= len {
                    Seen::Unexpected
                } else if !seen.insert(index) {
                    Seen::Duplicate
                } else if let Some(high) = highest.filter(|&high| index < high) {
                    Seen::Late(high)
                } else {
                    highest = Some(index);
                    Seen::New
                };
                assert_eq!(tracker.observe(index), expected, "index {index} of {len}");
            }
            for index in 0..len + 2 {
                assert_eq!(tracker.seen(index), seen.contains(&index), "seen({index}) of {len}");
            }
        }
    }

    /// Only a message acknowledged before the later one was sent owes its place in the order.
    #[test]
    fn sends_are_ordered_only_when_they_did_not_overlap() {
        let s = Sends::new(3);
        s.sent(0, 10);
        s.sent(1, 20);
        assert!(!s.ordered(0, 1), "nothing is acknowledged yet");
        s.acknowledged(0, 25);
        assert!(!s.ordered(0, 1), "0 was still in flight when 1 left");
        s.sent(2, 30);
        assert!(s.ordered(0, 2));
        s.acknowledged(0, 5);
        assert!(s.ordered(0, 2), "the first acknowledgement counts");
        assert!(!s.ordered(1, 2), "1 is not acknowledged");
    }

    /// Completion keeps the fastest and the slowest subscriber's arrival per message, over both lanes.
    #[test]
    fn completion_keeps_the_first_and_last_arrivals() {
        let c = Completion::new(2, 2);
        c.delivered(0, 0, 20);
        c.delivered(1, 0, 30);
        c.delivered(3, 0, 10);
        c.delivered(2, 0, 25);
        assert_eq!(c.count(), 4);
        assert_eq!((c.first_delivery(0), c.last_delivery(0)), (Some(10), Some(30)));
        assert_eq!((c.first_delivery(1), c.last_delivery(1)), (None, None));
    }
}
