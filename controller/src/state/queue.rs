//! The work queue of reconciles, as client-go's workqueue does it: a key
//! waits at most once; a key being reconciled is never handed out a second
//! time at once, and a change that arrives meanwhile reconciles it again
//! right after; a retry waits in a timer queue (one entry per key, the
//! earliest wins). Memory is a few words per waiting key.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::state::store::Key;

#[derive(Default)]
struct State {
    order: VecDeque<Key>,
    queued: HashSet<Key>,
    running: HashSet<Key>,
    /// Changed while running: queue again when done.
    again: HashSet<Key>,
    /// Retries by due time, and the due time of each key's retry.
    timers: BTreeSet<(Instant, Key)>,
    due: HashMap<Key, Instant>,
    closed: bool,
}

impl State {
    fn push(&mut self, key: Key) -> bool {
        if self.running.contains(&key) {
            self.again.insert(key);
            false
        } else if self.queued.insert(key.clone()) {
            self.order.push_back(key);
            true
        } else {
            false
        }
    }
}

/// See the module documentation.
#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    /// A key is ready, or the queue closed.
    ready: Notify,
    /// A retry was scheduled earlier than the timer sleeps.
    timer: Notify,
}

impl Queue {
    pub fn new() -> Arc<Self> {
        Arc::new(Queue::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("queue lock")
    }

    /// Queues `key` now.
    pub fn add(&self, key: Key) {
        let mut s = self.lock();
        if !s.closed && s.push(key) {
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Queues every key of `keys`.
    pub fn add_all(&self, keys: impl IntoIterator<Item = Key>) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        let mut n = 0;
        for k in keys {
            n += usize::from(s.push(k));
        }
        drop(s);
        for _ in 0..n {
            self.ready.notify_one();
        }
    }

    /// Queues `key` after `delay`, unless a retry of it is due sooner.
    pub fn add_after(&self, key: Key, delay: Duration) {
        let at = Instant::now() + delay;
        let mut s = self.lock();
        if s.closed {
            return;
        }
        if let Some(&old) = s.due.get(&key) {
            if old <= at {
                return;
            }
            s.timers.remove(&(old, key.clone()));
        }
        s.due.insert(key.clone(), at);
        let first = s.timers.first().is_none_or(|(t, _)| at < *t);
        s.timers.insert((at, key));
        drop(s);
        if first {
            self.timer.notify_one();
        }
    }

    /// The next key to reconcile; `None` once closed.
    pub async fn next(&self) -> Option<Key> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if s.closed {
                    return None;
                }
                if let Some(k) = s.order.pop_front() {
                    s.queued.remove(&k);
                    s.running.insert(k.clone());
                    let more = !s.order.is_empty();
                    drop(s);
                    if more {
                        // Pass the wake-up on: one notify may stand for
                        // several keys.
                        self.ready.notify_one();
                    }
                    return Some(k);
                }
            }
            notified.await;
        }
    }

    /// `key`'s reconcile ended; queues it again if it changed meanwhile.
    pub fn done(&self, key: &Key) {
        let mut s = self.lock();
        s.running.remove(key);
        if s.again.remove(key) && s.push(key.clone()) {
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Moves due retries to the queue, forever (until closed).
    pub async fn run_timers(&self) {
        loop {
            let notified = self.timer.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let mut s = self.lock();
                if s.closed {
                    return;
                }
                let now = Instant::now();
                let mut woke = 0;
                while let Some((at, _)) = s.timers.first()
                    && *at <= now
                {
                    let (_, k) = s.timers.pop_first().expect("first exists");
                    s.due.remove(&k);
                    woke += usize::from(s.push(k));
                }
                for _ in 0..woke {
                    self.ready.notify_one();
                }
                s.timers.first().map(|(t, _)| *t)
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Stops handing out keys; workers end after their current reconcile.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_waiters();
        self.timer.notify_waiters();
    }

    /// Keys waiting now (queued, not running, not timed).
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` waits to be handed out (not running, not timed).
    pub fn waiting(&self, key: &str) -> bool {
        self.lock().queued.contains(key)
    }

    /// Whether [`Queue::close`] was called.
    pub fn closed(&self) -> bool {
        self.lock().closed
    }

    /// Whether `key` waits or runs.
    pub fn pending(&self, key: &str) -> bool {
        let s = self.lock();
        s.queued.contains(key) || s.running.contains(key)
    }

    /// Nothing waits (now) and nothing runs.
    pub fn idle(&self) -> bool {
        let s = self.lock();
        s.order.is_empty() && s.running.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        s.into()
    }

    #[tokio::test]
    async fn a_key_waits_once_and_runs_once_at_a_time() {
        let q = Queue::new();
        q.add(k("a/x"));
        q.add(k("a/x"));
        q.add(k("a/y"));
        assert_eq!(q.len(), 2);
        let x = q.next().await.unwrap();
        assert_eq!(&*x, "a/x");
        // Changed while running: not handed out again until done.
        q.add(k("a/x"));
        assert_eq!(&*q.next().await.unwrap(), "a/y");
        assert!(q.is_empty());
        q.done(&x);
        assert_eq!(&*q.next().await.unwrap(), "a/x");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_wait_and_the_earliest_wins() {
        let q = Queue::new();
        let timers = tokio::spawn({
            let q = q.clone();
            async move { q.run_timers().await }
        });
        q.add_after(k("a/x"), Duration::from_secs(300));
        q.add_after(k("a/x"), Duration::from_secs(5));
        q.add_after(k("a/x"), Duration::from_secs(60));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.len(), 1);
        let x = q.next().await.unwrap();
        q.done(&x);
        // The later retries were dropped for the earliest.
        tokio::time::sleep(Duration::from_secs(400)).await;
        assert!(q.is_empty());
        q.close();
        timers.await.unwrap();
        assert!(q.next().await.is_none());
    }

    #[tokio::test]
    async fn workers_share_the_queue() {
        let q = Queue::new();
        q.add_all((0..1000).map(|i| k(&format!("ns/{i}"))));
        let mut tasks = Vec::new();
        let seen = Arc::new(Mutex::new(HashSet::new()));
        for _ in 0..4 {
            let (q, seen) = (q.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(key) = q.next().await {
                    assert!(seen.lock().unwrap().insert(key.clone()), "{key} twice");
                    q.done(&key);
                    if q.is_empty() {
                        q.close();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(seen.lock().unwrap().len(), 1000);
    }
}
