//! What a run does: the scenarios, the deterministic message schedule, what each message looks like on the
//! wire, and how a received frame is recognised as one of ours.
//!
//! Message `seq` goes to group `seq % groups` as that group's message number `seq / groups`; a group is the
//! org (fanout, one group), a user (notify) or a room (chat). Every subscriber of a group expects all of its
//! messages, which is what loss, duplicate and order accounting count against.

use std::fmt::Write;
use std::sync::LazyLock;

use memchr::memmem::Finder;

/// The load patterns the bench knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// N subscribers on `/ws/events/{org}/`; one publisher posts to `/api/v1/orgs/{org}/events`.
    Fanout,
    /// N users on `/ws/notifications/`; notifications are posted to each user in turn.
    Notify,
    /// Rooms of K members on `/ws/chat/{room}/`; every member sends, the whole room receives.
    Chat,
    /// N connections that only sit there; measures the hub's memory per connection.
    Idle,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Notify => "notify",
            Scenario::Chat => "chat",
            Scenario::Idle => "idle",
        }
    }
}

/// The org every fanout and idle subscriber joins.
pub const BENCH_ORG: &str = "bench";
/// The `event_type` of bench events.
pub const EVENT_TYPE: &str = "bench.tick";
/// The keys carrying the sequence number and intended send time; unique enough to scan for without parsing.
const SEQ_KEY: &str = "bench_seq";
const TIME_KEY: &str = "bench_t";

/// The schedule of one run, fixed before it starts: who connects where and which message goes to whom.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub subscribers: u64,
    /// Members per chat room (1 for the other scenarios).
    pub room_size: u64,
    /// Messages in the whole run, warm-up included.
    pub total: u64,
    /// The first `warmup` messages are sent but left out of every result.
    pub warmup: u64,
    /// Messages per second across all groups.
    pub rate: f64,
    /// Makes user and room ids unique per run, so stored notifications and rooms never collide.
    pub run_id: String,
    /// Filler that brings a message's `data` to the requested payload size.
    pub padding: String,
}

impl Plan {
    /// How many groups messages are spread over.
    pub fn groups(&self) -> u64 {
        match self.scenario {
            Scenario::Fanout | Scenario::Idle => 1,
            Scenario::Notify => self.subscribers.max(1),
            Scenario::Chat => self.subscribers.div_ceil(self.room_size).max(1),
        }
    }

    /// The group subscriber `k` belongs to.
    pub fn group_of_subscriber(&self, k: u64) -> u64 {
        match self.scenario {
            Scenario::Fanout | Scenario::Idle => 0,
            Scenario::Notify => k,
            Scenario::Chat => k / self.room_size,
        }
    }

    /// Message `seq`'s group and its number within that group.
    pub fn place(&self, seq: u64) -> (u64, u64) {
        let groups = self.groups();
        (seq % groups, seq / groups)
    }

    /// The sequence number of group `g`'s message `index` (the inverse of [`Plan::place`]).
    pub fn seq(&self, g: u64, index: u64) -> u64 {
        index * self.groups() + g
    }

    /// How many messages group `g` gets over the whole run.
    pub fn group_len(&self, g: u64) -> u64 {
        let groups = self.groups();
        if g >= self.total { 0 } else { (self.total - g).div_ceil(groups) }
    }

    /// Nanoseconds after the schedule start at which message `seq` is meant to leave.
    pub fn offset_ns(&self, seq: u64) -> u64 {
        (seq as f64 * 1e9 / self.rate) as u64
    }

    /// The user id of subscriber `k`.
    pub fn user_id(&self, k: u64) -> String {
        format!("bench-{}-{k}", self.run_id)
    }

    /// The id of chat room `g`.
    pub fn room_id(&self, g: u64) -> String {
        format!("bench-{}-room{g}", self.run_id)
    }

    /// The WebSocket path (without the token) subscriber `k` connects to.
    pub fn ws_path(&self, k: u64) -> String {
        match self.scenario {
            Scenario::Fanout | Scenario::Idle => format!("/ws/events/{BENCH_ORG}/"),
            Scenario::Notify => "/ws/notifications/".into(),
            Scenario::Chat => format!("/ws/chat/{}/", self.room_id(self.group_of_subscriber(k))),
        }
    }

    /// The chat member who sends message `seq`: members of a room take turns.
    pub fn sender_of(&self, seq: u64) -> u64 {
        let (room, index) = self.place(seq);
        (room * self.room_size + index % self.room_size).min(self.subscribers - 1)
    }

    /// The HTTP path a message is posted to (fanout and notify).
    pub fn publish_path(&self) -> String {
        match self.scenario {
            Scenario::Notify => "/api/v1/notifications".into(),
            _ => format!("/api/v1/orgs/{BENCH_ORG}/events"),
        }
    }

    /// The body of message `seq` meant to leave at `t_ns` (bench clock): an HTTP body for fanout and notify,
    /// a WebSocket frame for chat. Built with `write!` into one string: no intermediate JSON values.
    pub fn message(&self, seq: u64, t_ns: u64) -> String {
        let mut out = String::with_capacity(self.padding.len() + 160);
        let marker = |out: &mut String| {
            let _ = write!(out, r#"{{"{SEQ_KEY}":{seq},"{TIME_KEY}":{t_ns},"pad":"{}"}}"#, self.padding);
        };
        match self.scenario {
            Scenario::Fanout | Scenario::Idle => {
                let _ = write!(out, r#"{{"event_type":"{EVENT_TYPE}","data":"#);
                marker(&mut out);
            }
            Scenario::Notify => {
                let (user, _) = self.place(seq);
                let _ = write!(
                    out,
                    r#"{{"user_id":"{}","title":"bench","message":"bench {seq}","data":"#,
                    self.user_id(user)
                );
                marker(&mut out);
            }
            Scenario::Chat => {
                // The marker travels in client_id, which the hub echoes to the whole room but never stores,
                // so history replays on connect are not mistaken for deliveries.
                let _ = write!(
                    out,
                    r#"{{"type":"chat_message","client_id":"{SEQ_KEY}={seq};{TIME_KEY}={t_ns}","message":"b{}""#,
                    self.padding
                );
            }
        }
        out.push('}');
        out
    }
}

/// The sequence number and intended send time found in a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub seq: u64,
    pub t_ns: u64,
}

impl Marker {
    /// Finds the marker in a frame with a substring scan: no JSON parse. Accepts `"bench_seq": 12` (any
    /// JSON spacing, as Python's json emits) and `bench_seq=12` (inside a chat `client_id`).
    pub fn scan(frame: &[u8]) -> Option<Marker> {
        // Built once: every received frame is scanned, and str::find sets up its searcher per call.
        static SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(SEQ_KEY));
        static TIME: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(TIME_KEY));
        Some(Marker { seq: number_after(frame, &SEQ)?, t_ns: number_after(frame, &TIME)? })
    }
}

fn number_after(frame: &[u8], key: &Finder) -> Option<u64> {
    let at = key.find(frame)? + key.needle().len();
    let rest = &frame[at..];
    let rest = &rest[rest.iter().take_while(|b| matches!(b, b'"' | b'\\' | b':' | b'=' | b' ')).count()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Padding of roughly `payload_bytes` minus the marker's own size.
pub fn padding(payload_bytes: usize) -> String {
    "x".repeat(payload_bytes.saturating_sub(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(scenario: Scenario, subscribers: u64, room_size: u64) -> Plan {
        Plan {
            scenario,
            subscribers,
            room_size,
            total: 10,
            warmup: 0,
            rate: 10.0,
            run_id: "r".into(),
            padding: String::new(),
        }
    }

    /// Markers are found in serde_json output, Python json output and chat client ids.
    #[test]
    fn scans_markers_in_every_spelling() {
        let want = Some(Marker { seq: 7, t_ns: 123 });
        assert_eq!(Marker::scan(br#"{"type":"event","data":{"bench_seq":7,"bench_t":123}}"#), want);
        assert_eq!(Marker::scan(br#"{"type": "event", "data": {"bench_seq": 7, "bench_t": 123}}"#), want);
        assert_eq!(Marker::scan(br#"{"client_id":"bench_seq=7;bench_t=123"}"#), want);
        assert_eq!(Marker::scan(br#"{"type":"unread_count","count":3}"#), None);
    }

    /// A message we build carries the marker that the scan reads back.
    #[test]
    fn built_messages_round_trip() {
        for scenario in [Scenario::Fanout, Scenario::Notify, Scenario::Chat] {
            let body = plan(scenario, 4, 2).message(5, 99);
            assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok(), "{body}");
            assert_eq!(Marker::scan(body.as_bytes()), Some(Marker { seq: 5, t_ns: 99 }));
        }
    }

    /// Messages spread round-robin over groups; chat members take turns sending in their room.
    #[test]
    fn schedule_spreads_over_groups() {
        let p = plan(Scenario::Chat, 6, 3);
        assert_eq!(p.groups(), 2);
        assert_eq!(p.place(5), (1, 2));
        assert_eq!((p.group_len(0), p.group_len(1)), (5, 5));
        assert_eq!(p.group_of_subscriber(4), 1);
        assert_eq!([p.sender_of(0), p.sender_of(1), p.sender_of(2), p.sender_of(3)], [0, 3, 1, 4]);
        let p = plan(Scenario::Notify, 3, 1);
        assert_eq!((p.group_len(0), p.group_len(1), p.group_len(2)), (4, 3, 3));
    }
}
