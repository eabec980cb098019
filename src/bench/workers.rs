//! The threads subscribers run on: one single-threaded runtime per core, each owning its share of the
//! sockets.
//!
//! On the shared work-stealing runtime every delivery moved a woken task through cross-thread run queues
//! and atomics; with thousands of sockets that was a third of the bench's own CPU, which the hub on the
//! same machine then lacked. A socket's task now wakes and runs on the thread whose epoll saw it.

use std::future::Future;
use std::thread::JoinHandle as ThreadHandle;

use anyhow::Context;
use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Single-threaded runtimes, one per core, kept running until the pool is dropped.
pub struct Workers(Vec<Worker>);

struct Worker {
    handle: Handle,
    stop: oneshot::Sender<()>,
    thread: ThreadHandle<()>,
}

/// The worker (and per-worker slot, see `stats::Completion`) of subscriber `key` among `count`.
pub fn lane(key: u64, count: usize) -> usize {
    key as usize % count
}

impl Workers {
    /// Starts one runtime thread per available core.
    pub fn start() -> anyhow::Result<Self> {
        let count = std::thread::available_parallelism().map_or(1, usize::from);
        let workers = (0..count).map(|index| {
            let runtime =
                Builder::new_current_thread().enable_all().build().context("cannot start a bench worker runtime")?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("bench-worker-{index}"))
                // block_on drives every task spawned through the handle until the stop signal.
                .spawn(move || {
                    runtime.block_on(async move {
                        let _ = stopped.await;
                    })
                })
                .context("cannot start a bench worker thread")?;
            Ok(Worker { handle, stop, thread })
        });
        Ok(Self(workers.collect::<anyhow::Result<_>>()?))
    }

    /// How many runtimes (and threads) there are.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// Runs subscriber `key`'s task on its worker.
    pub fn spawn<F>(&self, key: u64, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0[lane(key, self.count())].handle.spawn(task)
    }
}

impl Drop for Workers {
    // Dropped after every subscriber task has finished, so the joins return at once.
    fn drop(&mut self) {
        for worker in self.0.drain(..) {
            let _ = worker.stop.send(());
            let _ = worker.thread.join();
        }
    }
}
