//! Consumer lag of a [`KafkaReceiver`](super::KafkaReceiver): how many
//! messages of its assigned partitions are not yet stored and committed.
//!
//! Computed from librdkafka's statistics (`statistics.interval.ms`, 1 s by
//! default here) each time they arrive: for every partition assigned to this
//! member, the high watermark of the last fetch response minus the group's
//! committed offset as librdkafka knows it (fetched when the partition was
//! assigned, updated by every commit), or minus the log start offset when the
//! group never committed on it (the consumer starts at the oldest record).
//! The sum goes into a [`ConsumerLag`] handle that `/metrics` reads without
//! any I/O.
//!
//! What was tried and why not:
//! * librdkafka's own per-partition `consumer_lag` is -1 until this member
//!   commits on the partition, so a backlog left by an ingester that never
//!   committed would read "unknown" exactly when it matters.
//! * `fetch_watermarks` (`ListOffsets`): tansu 0.6.0 answers it for the latest
//!   offset with the base offset of the last record *batch* plus one (1 for a
//!   topic holding one batch of 30 records).
//! * Any broker request from a side thread (`committed_offsets`,
//!   `fetch_watermarks`) once a second slowed the consumer's recovery after a
//!   broker outage from 0.1-0.2 s to 14-30 s (`tests/kafka_outage.rs`).
//!
//! Statistics are served while the consumer is polled, i.e. while the
//! ingester receives; while it is stalled (a required sink failing and one
//! batch decoded and waiting) the figure stays at its last value.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::statistics::Statistics;
use tracing::debug;

/// A cheap, cloneable view of a receiver's consumer lag.
#[derive(Debug, Clone)]
pub struct ConsumerLag(Arc<AtomicI64>);

impl Default for ConsumerLag {
    fn default() -> Self {
        ConsumerLag(Arc::new(AtomicI64::new(-1)))
    }
}

impl ConsumerLag {
    /// Messages of this member's partitions not yet committed (summed over the
    /// partitions), as of the last statistics report; `None` while unknown
    /// (not in the group yet, statistics off, or a partition not fetched yet).
    pub fn get(&self) -> Option<i64> {
        let v = self.0.load(Ordering::Relaxed);
        (v >= 0).then_some(v)
    }

    pub(crate) fn set(&self, lag: Option<i64>) {
        self.0.store(lag.unwrap_or(-1), Ordering::Relaxed);
    }
}

/// Per partition, keyed by `(topic, partition)`: the figures of the last
/// librdkafka statistics report.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionStats(Arc<Mutex<HashMap<(String, i32), PartitionFigures>>>);

/// What librdkafka's statistics say about one partition.
#[derive(Debug, Clone, Copy)]
struct PartitionFigures {
    /// High watermark of the last fetch response (-1001 when unknown).
    hi: i64,
    /// Log start offset (-1001 when unknown).
    lo: i64,
    /// The group's committed offset as librdkafka knows it (-1001 when none).
    committed: i64,
}

impl PartitionStats {
    /// Records the partitions of a statistics report.
    pub(crate) fn record(&self, stats: &Statistics) {
        let Ok(mut map) = self.0.lock() else {
            return;
        };
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if *partition >= 0 {
                    map.insert(
                        (topic.clone(), *partition),
                        PartitionFigures {
                            hi: p.hi_offset,
                            lo: p.lo_offset,
                            committed: p.committed_offset,
                        },
                    );
                }
            }
        }
    }

    fn get(&self, topic: &str, partition: i32) -> Option<PartitionFigures> {
        self.0
            .lock()
            .ok()?
            .get(&(topic.to_string(), partition))
            .copied()
    }
}

/// Sum over `parts` of high watermark minus committed offset (or low watermark
/// when nothing was committed); `None` while a figure is unknown.
pub(crate) fn measure(parts: &[(String, i32)], stats: &PartitionStats) -> Option<i64> {
    let mut lag = 0i64;
    for (topic, partition) in parts {
        let Some(f) = stats.get(topic, *partition) else {
            debug!(
                topic,
                partition, "consumer lag: no statistics for the partition yet"
            );
            return None;
        };
        if f.hi < 0 {
            return None;
        }
        let from = if f.committed >= 0 {
            f.committed
        } else if f.lo >= 0 {
            f.lo
        } else {
            return None;
        };
        lag += (f.hi - from).max(0);
    }
    Some(lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(figures: &[(i32, i64, i64, i64)]) -> PartitionStats {
        let s = PartitionStats::default();
        for &(p, hi, lo, committed) in figures {
            s.0.lock()
                .unwrap()
                .insert(("t".into(), p), PartitionFigures { hi, lo, committed });
        }
        s
    }

    #[test]
    fn lag_is_high_watermark_minus_committed_or_log_start() {
        // p0: committed 40 of 100; p1: never committed, log starts at 10; p2 not assigned.
        let s = stats(&[(0, 100, 0, 40), (1, 30, 10, -1001), (2, 500, 0, -1001)]);
        let parts = vec![("t".to_string(), 0), ("t".to_string(), 1)];
        assert_eq!(measure(&parts, &s), Some(60 + 20));
        assert_eq!(measure(&[], &s), Some(0), "no partitions: nothing behind");
        // A partition without a high watermark yet, or not in the report: unknown.
        let s = stats(&[(0, -1001, 0, 5)]);
        assert_eq!(measure(&parts[..1], &s), None);
        assert_eq!(measure(&[("t".to_string(), 9)], &s), None);
    }
}
