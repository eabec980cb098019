//! Pruning in the background, off the hot path: expired `Idempotency-Key` records, and notifications
//! older than `--notification-retention` when it is set. Deletes go in small batches, so that a
//! request's write never waits long behind one.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::idempotency;
use crate::protocol::now_millis;
use crate::store::Store;

/// Rows deleted per statement.
const BATCH: u32 = 1000;
/// The longest wait between two prunings: expired keys and old notifications go within this.
const MAX_EVERY: Duration = Duration::from_secs(10 * 60);
/// The shortest wait, for a very short retention (tests).
const MIN_EVERY: Duration = Duration::from_millis(100);

/// Starts the pruning task until `shutdown`.
pub fn spawn(store: Arc<dyn Store>, retention: Option<Duration>, shutdown: CancellationToken) {
    // A tenth of the retention: a notification outlives it by 10 % at most.
    let every = retention.map_or(MAX_EVERY, |age| (age / 10).clamp(MIN_EVERY, MAX_EVERY));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let now = now_millis();
            prune("idempotency keys", || store.prune_idempotency_keys(now - millis(idempotency::KEEP), BATCH)).await;
            if let Some(age) = retention {
                prune("notifications", || store.prune_notifications(now - millis(age), BATCH)).await;
            }
        }
    });
}

/// Runs one batch after another until a batch deletes less than a full one.
async fn prune<F, Fut>(what: &str, batch: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<u64, crate::store::StoreError>>,
{
    let mut total = 0;
    loop {
        match batch().await {
            Ok(deleted) => {
                total += deleted;
                if deleted < u64::from(BATCH) {
                    break;
                }
            }
            Err(error) => {
                warn!(%error, what, "pruning failed; retried at the next round");
                break;
            }
        }
    }
    if total > 0 {
        info!(what, deleted = total, "pruned");
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
