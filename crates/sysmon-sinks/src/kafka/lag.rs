//! Consumer lag of a [`KafkaReceiver`](super::KafkaReceiver): how many
//! messages of its assigned partitions are not yet stored and committed.
//!
//! A background thread measures it once per [`LAG_INTERVAL`]: for every
//! partition assigned to this member, the high watermark minus the group's
//! committed offset (an `OffsetFetch` round trip: the broker's truth, whoever
//! committed). A partition the group never committed counts from its low
//! watermark (the consumer starts at the oldest record). The sum goes into a
//! [`ConsumerLag`] handle that `/metrics` reads without any I/O.
//!
//! The high watermark is the larger of two figures: the broker's answer to a
//! `ListOffsets` request (`fetch_watermarks`; exact on Apache Kafka) and the
//! high watermark of the last fetch response, which librdkafka reports in its
//! statistics (`statistics.interval.ms`, 1 s by default here). The second is
//! there for tansu 0.6.0, which answers `ListOffsets` for the latest offset
//! with the base offset of the last record *batch* plus one (1 for a topic
//! holding one batch of 30 records), while its fetch responses carry the true
//! high watermark. Statistics arrive only while the consumer is polled, so on
//! tansu, while the ingester is stalled (a required sink failing), the lag
//! keeps growing but may read low by up to one producer batch per partition.
//! librdkafka's own per-partition
//! `consumer_lag` was not used either: it is -1 until this member commits on
//! the partition, so a backlog left by an ingester that never committed would
//! show as "unknown" exactly when it matters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tracing::debug;

/// How often the lag is measured.
pub const LAG_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait for one broker answer while measuring.
const LAG_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// partitions), as of the last measurement; `None` while unknown (not in
    /// the group yet, or the broker did not answer the last measurement).
    pub fn get(&self) -> Option<i64> {
        let v = self.0.load(Ordering::Relaxed);
        (v >= 0).then_some(v)
    }

    pub(crate) fn set(&self, lag: Option<i64>) {
        self.0.store(lag.unwrap_or(-1), Ordering::Relaxed);
    }
}

/// The high watermark of each partition, from the last fetch response
/// (librdkafka statistics), keyed by `(topic, partition)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct HighWatermarks(Arc<Mutex<HashMap<(String, i32), i64>>>);

impl HighWatermarks {
    /// Records the high watermarks of a statistics report.
    pub(crate) fn record(&self, stats: &Statistics) {
        let Ok(mut map) = self.0.lock() else {
            return;
        };
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if *partition >= 0 && p.hi_offset >= 0 {
                    map.insert((topic.clone(), *partition), p.hi_offset);
                }
            }
        }
    }

    fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0
            .lock()
            .ok()?
            .get(&(topic.to_string(), partition))
            .copied()
    }
}

/// Partitions assigned to the member, or `None` before its first assignment.
pub(crate) type AssignedFn = dyn Fn() -> Option<Vec<(String, i32)>> + Send + Sync;

/// Starts the measuring thread; it ends once `consumer` is dropped.
pub(crate) fn spawn_monitor<C, X>(
    consumer: Weak<C>,
    assigned: Arc<AssignedFn>,
    high: HighWatermarks,
    lag: ConsumerLag,
) -> std::io::Result<()>
where
    C: Consumer<X> + Send + Sync + 'static,
    X: ConsumerContext + 'static,
{
    std::thread::Builder::new()
        .name("sysmon-kafka-lag".into())
        .spawn(move || loop {
            std::thread::sleep(LAG_INTERVAL);
            let Some(consumer) = consumer.upgrade() else {
                return;
            };
            let measured = match assigned() {
                None => None,
                Some(parts) => measure::<C, X>(&consumer, &parts, &high),
            };
            lag.set(measured);
        })
        .map(|_| ())
}

/// Sum over `parts` of high watermark minus committed offset (or low watermark
/// when nothing was committed); `None` if the broker did not answer.
fn measure<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    parts: &[(String, i32)],
    high: &HighWatermarks,
) -> Option<i64> {
    if parts.is_empty() {
        return Some(0);
    }
    let mut tpl = TopicPartitionList::with_capacity(parts.len());
    for (t, p) in parts {
        tpl.add_partition(t, *p);
    }
    let committed = match consumer.committed_offsets(tpl, LAG_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            debug!(error = %e, "consumer lag: committed offsets unavailable");
            return None;
        }
    };
    let mut lag = 0i64;
    for e in committed.elements() {
        let listed = consumer.fetch_watermarks(e.topic(), e.partition(), LAG_TIMEOUT);
        if let Err(err) = &listed {
            debug!(error = %err, topic = e.topic(), partition = e.partition(),
                   "consumer lag: watermarks unavailable");
        }
        let fetched = high.get(e.topic(), e.partition());
        let hi = match (&listed, fetched) {
            (Ok((_, listed_hi)), Some(f)) => (*listed_hi).max(f),
            (Ok((_, listed_hi)), None) => *listed_hi,
            (Err(_), Some(f)) => f,
            (Err(_), None) => return None,
        };
        let from = match (e.offset(), &listed) {
            (Offset::Offset(o), _) if o >= 0 => o,
            (_, Ok((low, _))) => *low,
            (_, Err(_)) => return None,
        };
        lag += (hi - from).max(0);
    }
    Some(lag)
}
