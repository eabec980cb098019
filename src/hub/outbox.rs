//! A connection's bounded outbound queue: the slow-consumer policy lives here.
//!
//! Publishers never wait: `push` either queues or, when the queue is full, marks the connection
//! overflowed and drops it from further deliveries. The session sees the mark and closes with 4008.
//! The writer takes everything queued at once, so a burst goes out with one flush.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::layer::Push;

/// The queue between publishers and one connection's writer.
#[derive(Debug)]
pub struct Outbox {
    // A std Mutex: held only to move pointers in or out, never across an await.
    state: Mutex<State>,
    ready: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Arc<Push>>,
    overflowed: bool,
}

/// The queue was full; the connection is marked for a 4008 close.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow {
    /// True for the push that overflowed it, false for pushes after: count the first only.
    pub first: bool,
}

/// What the writer gets when it waits.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// Frames were moved into the caller's buffer.
    Ready,
    /// The queue overflowed: close with 4008.
    Overflowed,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self { state: Mutex::default(), ready: Notify::new(), capacity }
    }

    /// Queues a push. On overflow the connection is marked, its queue freed, and later pushes ignored.
    pub fn push(&self, push: &Arc<Push>) -> Result<(), Overflow> {
        let mut state = self.state.lock().expect("outbox lock poisoned");
        if state.overflowed {
            return Err(Overflow { first: false });
        }
        if state.queue.len() >= self.capacity {
            state.overflowed = true;
            state.queue = VecDeque::new();
            drop(state);
            self.ready.notify_one();
            return Err(Overflow { first: true });
        }
        let was_empty = state.queue.is_empty();
        state.queue.push_back(Arc::clone(push));
        drop(state);
        // One wake-up per burst: the writer drains everything when it runs.
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Marks the connection a slow consumer from outside a push (a write that timed out); true when it
    /// was not marked already, so the caller counts it once.
    pub fn mark_overflowed(&self) -> bool {
        let mut state = self.state.lock().expect("outbox lock poisoned");
        let first = !state.overflowed;
        state.overflowed = true;
        state.queue = VecDeque::new();
        first
    }

    /// Waits until something is queued, then moves all of it into `batch`.
    pub async fn next_batch(&self, batch: &mut Vec<Arc<Push>>) -> Batch {
        loop {
            {
                let mut state = self.state.lock().expect("outbox lock poisoned");
                if state.overflowed {
                    return Batch::Overflowed;
                }
                if !state.queue.is_empty() {
                    batch.extend(state.queue.drain(..));
                    return Batch::Ready;
                }
            }
            // notify_one stores a permit when nobody waits, so a push between the check above and
            // this await is not lost.
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_taken_at_once_and_overflow_marks_the_connection() {
        let outbox = Outbox::new(3);
        let push = Arc::new(Push::new("{}".into()));
        for _ in 0..3 {
            outbox.push(&push).unwrap();
        }
        let mut batch = Vec::new();
        assert_eq!(outbox.next_batch(&mut batch).await, Batch::Ready);
        assert_eq!(batch.len(), 3);
        for _ in 0..3 {
            outbox.push(&push).unwrap();
        }
        assert_eq!(outbox.push(&push), Err(Overflow { first: true }));
        assert_eq!(outbox.push(&push), Err(Overflow { first: false }));
        assert_eq!(outbox.next_batch(&mut batch).await, Batch::Overflowed);
    }
}
