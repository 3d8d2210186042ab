//! [`SampleBuffer`]: the agent's bounded queue between collection and publishing.
//!
//! When the transport is down the agent keeps sampling into this buffer; past
//! its capacity the *oldest* samples are dropped and counted, so the newest
//! state always gets through and memory stays bounded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::snapshot::Snapshot;

/// A bounded FIFO of snapshots that drops the oldest when full.
#[derive(Debug)]
pub struct SampleBuffer {
    queue: Mutex<VecDeque<Snapshot>>,
    capacity: usize,
    dropped: AtomicU64,
    notify: Notify,
}

impl SampleBuffer {
    /// A buffer holding at most `capacity` snapshots (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        SampleBuffer {
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity,
            dropped: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Snapshot>> {
        // A panic while holding this lock cannot leave the queue inconsistent
        // (every operation is a single VecDeque call), so recover from poisoning.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a snapshot, dropping the oldest one if the buffer is full.
    /// Returns true when something was dropped.
    pub fn push(&self, snapshot: Snapshot) -> bool {
        let dropped = {
            let mut q = self.lock();
            let dropped = if q.len() >= self.capacity {
                q.pop_front();
                true
            } else {
                false
            };
            q.push_back(snapshot);
            dropped
        };
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.notify.notify_one();
        dropped
    }

    /// Removes and returns up to `max` of the oldest snapshots.
    pub fn take(&self, max: usize) -> Vec<Snapshot> {
        let mut q = self.lock();
        let n = max.min(q.len());
        q.drain(..n).collect()
    }

    /// Puts a batch that could not be delivered back at the front, in order.
    /// If that overflows the buffer the oldest are dropped and counted.
    pub fn requeue_front(&self, batch: Vec<Snapshot>) {
        let mut q = self.lock();
        for s in batch.into_iter().rev() {
            q.push_front(s);
        }
        let mut over = 0;
        while q.len() > self.capacity {
            q.pop_front();
            over += 1;
        }
        drop(q);
        if over > 0 {
            self.dropped.fetch_add(over, Ordering::Relaxed);
        }
    }

    /// A copy of what waits, oldest first (for the on-disk spool).
    pub fn contents(&self) -> Vec<Snapshot> {
        self.lock().iter().cloned().collect()
    }

    /// Waits until the buffer holds something (returns at once if it does).
    pub async fn wait_nonempty(&self) {
        loop {
            let notified = self.notify.notified();
            if !self.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Snapshots waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Snapshots dropped because the buffer was full, since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(i: u32) -> Snapshot {
        Snapshot::new(format!("m{i}"), 1_764_086_400.0 + f64::from(i))
    }

    #[test]
    fn drops_oldest_when_full_and_counts() {
        let b = SampleBuffer::new(3);
        for i in 0..5 {
            b.push(snap(i));
        }
        assert_eq!(b.dropped(), 2);
        let ids: Vec<_> = b.take(10).into_iter().map(|s| s.machine_id).collect();
        assert_eq!(ids, ["m2", "m3", "m4"]);
    }

    #[test]
    fn requeue_keeps_order_and_bound() {
        let b = SampleBuffer::new(4);
        for i in 0..4 {
            b.push(snap(i));
        }
        let first = b.take(2);
        b.push(snap(4));
        b.requeue_front(first);
        assert_eq!(b.dropped(), 1);
        let ids: Vec<_> = b.take(10).into_iter().map(|s| s.machine_id).collect();
        assert_eq!(ids, ["m1", "m2", "m3", "m4"]);
    }

    #[tokio::test]
    async fn wait_nonempty_wakes_on_push() {
        let b = std::sync::Arc::new(SampleBuffer::new(2));
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.wait_nonempty().await });
        tokio::task::yield_now().await;
        b.push(snap(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
