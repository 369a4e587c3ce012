//! Decryption off the async threads. The controller runs its reconciles,
//! watches, leases and HTTP on one async worker thread; a large
//! SealedSecret (over a MiB of ciphertext, thousands of items) would hold
//! that thread for seconds. Work above a small size runs here instead: on
//! tokio's blocking threads, at most `threads` at once, so health checks,
//! lease renewals and watches never wait on it and a flood of large
//! requests queues instead of spawning threads.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Ciphertext bytes an object may hold and still be opened on the async
/// thread: a few values, well under a millisecond of work. Above this the
/// hand-off to another thread is cheap next to the work itself.
pub const INLINE_BYTES: usize = 16 * 1024;

/// A bounded pool for opening values.
#[derive(Clone, Debug)]
pub struct UnsealPool {
    permits: Arc<Semaphore>,
}

impl UnsealPool {
    /// A pool running at most `threads` jobs at once.
    pub fn new(threads: usize) -> Self {
        UnsealPool {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// Runs `f` on a blocking thread once one of the pool's slots is free.
    /// A panic in `f` is resumed here.
    pub async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let job = tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        });
        match job.await {
            Ok(out) => out,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Runs `f` here when `bytes` of ciphertext are cheap to open, else on
    /// the pool.
    pub async fn run_sized<R: Send + 'static>(
        &self,
        bytes: usize,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        if bytes <= INLINE_BYTES {
            f()
        } else {
            self.run(f).await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A job on the pool leaves the (single) async thread free: another
    /// task makes progress while the job runs.
    #[tokio::test(flavor = "current_thread")]
    async fn a_long_job_does_not_hold_the_async_thread() {
        let pool = UnsealPool::new(1);
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let job = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    started_tx.send(()).unwrap();
                    // Holds its thread until the async side says so.
                    go_rx.recv_timeout(Duration::from_secs(20)).unwrap();
                    42
                })
                .await
            }
        });
        // Wait (without blocking the runtime) until the job runs.
        loop {
            if started_rx.try_recv().is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The async thread is free while the job holds its own thread.
        let ticks = AtomicUsize::new(0);
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            ticks.fetch_add(1, Ordering::Relaxed);
        }
        assert_eq!(ticks.load(Ordering::Relaxed), 3);
        go_tx.send(()).unwrap();
        assert_eq!(job.await.unwrap(), 42);
    }

    /// No more than `threads` jobs run at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_bounds_concurrent_jobs() {
        let pool = UnsealPool::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for j in jobs {
            j.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
