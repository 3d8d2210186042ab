//! The live counters of a [`RedisSink`](super::RedisSink).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;

/// Live counters of a [`RedisSink`] (for `/metrics` and logs).
#[derive(Debug, Default)]
pub struct RedisSinkStats {
    /// Batches written completely.
    pub batches_written: AtomicU64,
    /// Snapshots written by live batches.
    pub snapshots_written: AtomicU64,
    /// Write attempts that failed (error or timeout).
    pub write_failures: AtomicU64,
    /// Batches not attempted because Redis was known to be down.
    pub batches_skipped: AtomicU64,
    /// Outages seen (each starts with a failure and ends with a successful probe).
    pub outages: AtomicU64,
    /// Repairs finished after a (re)connection.
    pub repairs: AtomicU64,
    /// Newest snapshots re-written after an outage (one per machine).
    pub latest_restored: AtomicU64,
    /// Snapshots copied from the cold store into Redis by backfills.
    pub backfilled_snapshots: AtomicU64,
    /// Batch events published.
    pub events_published: AtomicU64,
    pub(super) connected: AtomicBool,
    pub(super) repairs_running: AtomicUsize,
}

/// A copy of [`RedisSinkStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RedisSinkCounters {
    /// Batches written completely.
    pub batches_written: u64,
    /// Snapshots written by live batches.
    pub snapshots_written: u64,
    /// Write attempts that failed.
    pub write_failures: u64,
    /// Batches skipped while Redis was down.
    pub batches_skipped: u64,
    /// Outages seen.
    pub outages: u64,
    /// Repairs finished.
    pub repairs: u64,
    /// Newest snapshots re-written after outages.
    pub latest_restored: u64,
    /// Snapshots backfilled from the cold store.
    pub backfilled_snapshots: u64,
    /// Batch events published.
    pub events_published: u64,
    /// Whether the sink currently believes Redis is reachable.
    pub connected: bool,
    /// Whether a repair (latest restore or backfill) is running.
    pub repairing: bool,
}

impl RedisSinkStats {
    /// The counters now.
    pub fn counters(&self) -> RedisSinkCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisSinkCounters {
            batches_written: get(&self.batches_written),
            snapshots_written: get(&self.snapshots_written),
            write_failures: get(&self.write_failures),
            batches_skipped: get(&self.batches_skipped),
            outages: get(&self.outages),
            repairs: get(&self.repairs),
            latest_restored: get(&self.latest_restored),
            backfilled_snapshots: get(&self.backfilled_snapshots),
            events_published: get(&self.events_published),
            connected: self.connected.load(Ordering::Relaxed),
            repairing: self.repairs_running.load(Ordering::Relaxed) > 0,
        }
    }
}
