//! Helpers shared by the Kafka integration tests (each test file uses a subset).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use sysmon_core::config::{Compression, KafkaConfig};
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::{Batch, Collector, CollectorError, Format, Sink, SinkError, Snapshot};

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A `[kafka]` config for a test broker.
pub fn kafka_config(bootstrap: &str, topic: &str, group: &str, partitions: i32) -> KafkaConfig {
    KafkaConfig {
        brokers: bootstrap.to_string(),
        topic: topic.to_string(),
        dlq_topic: None,
        group: group.to_string(),
        instance_id: None,
        format: Format::Json,
        partitions,
        replication_factor: 1,
        options: BTreeMap::new(),
        compression: Compression::Gzip,
    }
}

/// `(machine_id, timestamp bits)`: the storage key.
pub type Key = (String, u64);

/// The storage key of a snapshot.
pub fn key(s: &Snapshot) -> Key {
    (s.machine_id.clone(), s.timestamp.to_bits())
}

/// A sink that records every write (duplicates included) and who wrote it.
/// `fail_after`: once this many snapshots were recorded, every later write is
/// recorded and then fails (a sink that stored the batch but whose ingester
/// crashed before committing).
#[derive(Default)]
pub struct RecordingSink {
    pub writes: Mutex<Vec<(usize, Snapshot)>>,
    pub fail_after: Option<usize>,
    pub writer_id: usize,
    shared: Option<Arc<RecordingSink>>,
    failures: AtomicUsize,
}

impl RecordingSink {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A sink that records into `shared`, tagging writes with `writer_id`.
    pub fn tagged(shared: &Arc<RecordingSink>, writer_id: usize) -> Arc<Self> {
        Arc::new(RecordingSink {
            writer_id,
            shared: Some(shared.clone()),
            ..Default::default()
        })
    }

    pub fn failing_after(n: usize) -> Arc<Self> {
        Arc::new(RecordingSink {
            fail_after: Some(n),
            ..Default::default()
        })
    }

    fn store(&self) -> &RecordingSink {
        self.shared.as_deref().unwrap_or(self)
    }

    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.store()
            .writes
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Writes (duplicates included).
    pub fn len(&self) -> usize {
        self.store().writes.lock().unwrap().len()
    }

    /// How many times each key was written.
    pub fn counts(&self) -> HashMap<Key, usize> {
        let mut m = HashMap::new();
        for (_, s) in self.store().writes.lock().unwrap().iter() {
            *m.entry(key(s)).or_insert(0) += 1;
        }
        m
    }

    /// Distinct keys written by each writer.
    pub fn by_writer(&self) -> HashMap<usize, usize> {
        let mut m: HashMap<usize, std::collections::HashSet<Key>> = HashMap::new();
        for (w, s) in self.store().writes.lock().unwrap().iter() {
            m.entry(*w).or_default().insert(key(s));
        }
        m.into_iter().map(|(w, set)| (w, set.len())).collect()
    }

    pub fn failures(&self) -> usize {
        self.failures.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Sink for RecordingSink {
    fn name(&self) -> &str {
        "recording"
    }

    async fn write(&self, batch: Batch) -> Result<(), SinkError> {
        let store = self.store();
        let mut w = store.writes.lock().unwrap();
        let before = w.len();
        w.extend(batch.iter().map(|s| (self.writer_id, s.clone())));
        if let Some(limit) = self.fail_after {
            if before >= limit {
                self.failures.fetch_add(1, Ordering::Relaxed);
                return Err(SinkError::Unavailable {
                    sink: "recording".into(),
                    message: "simulated crash after storing, before commit".into(),
                    source: None,
                });
            }
        }
        Ok(())
    }
}

/// A collector that fills each snapshot from a [`SyntheticMachine`], keeping
/// the agent's machine id and timestamp.
pub struct SyntheticCollector {
    machine: SyntheticMachine,
}

impl SyntheticCollector {
    pub fn boxed(seed: u64) -> Box<dyn Collector> {
        Box::new(SyntheticCollector {
            machine: SyntheticMachine::new("synthetic", seed),
        })
    }
}

impl Collector for SyntheticCollector {
    fn name(&self) -> &str {
        "synthetic"
    }

    fn collect(&mut self, s: &mut Snapshot) -> Result<(), CollectorError> {
        let mut synthetic = self.machine.next_snapshot(s.timestamp, 5);
        synthetic.machine_id = s.machine_id.clone();
        synthetic.timestamp = s.timestamp;
        synthetic.hostname = s.hostname.clone();
        synthetic.labels = s.labels.clone();
        *s = synthetic;
        Ok(())
    }
}

/// `n` snapshots per machine for `machines` machines, one second apart.
pub fn synthetic_batch(prefix: &str, machines: usize, n: usize, start: f64) -> Vec<Snapshot> {
    let mut out = Vec::new();
    for m in 0..machines {
        let mut machine = SyntheticMachine::new(format!("{prefix}-{m}"), m as u64 + 7);
        for i in 0..n {
            out.push(machine.next_snapshot(start + i as f64, 5));
        }
    }
    out
}

/// A plain producer, like a third-party client (kafka-python: no key, no headers).
pub fn raw_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("raw producer")
}

/// Reads every message of `topic` (all partitions, from the beginning) until
/// `expected` arrived or `timeout` passed.
pub async fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sysmon-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while out.len() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => break,
        }
    }
    out
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of header `name`, as text.
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A real SQLite history in `dir` (WAL file on disk), as `sysmon ingest --db` opens it.
pub fn sqlite_in(dir: &std::path::Path) -> Arc<sysmon_sinks::sqlite::SqliteSink> {
    let config = sysmon_core::config::SqliteConfig {
        path: dir.join("sysmon.db"),
        ..Default::default()
    };
    Arc::new(sysmon_sinks::sqlite::SqliteSink::open(&config).expect("open sqlite"))
}

/// Every `(machine_id, timestamp)` row in the SQLite history (the primary key
/// makes each appear at most once; the length tells whether any is missing).
pub async fn sqlite_keys(db: &sysmon_sinks::sqlite::SqliteSink) -> Vec<Key> {
    db.snapshots(None, 0.0, 1e12, usize::MAX)
        .await
        .expect("read sqlite")
        .iter()
        .map(key)
        .collect()
}

/// An hour ago: synthetic timestamps well inside SQLite's raw retention.
pub fn an_hour_ago() -> f64 {
    sysmon_core::agent::now_epoch_secs().floor() - 3600.0
}
