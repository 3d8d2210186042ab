use super::*;
use crate::codec::{encode, Format};
use crate::sink::SinkError;
use crate::synth::SyntheticMachine;
use crate::transport::{CommitMark, TransportError};
use async_trait::async_trait;
use std::sync::atomic::AtomicBool;

/// A receiver that hands out pre-made messages, then closes.
struct Scripted {
    batches: Vec<Vec<Message>>,
    commits: Arc<AtomicU64>,
    dead: Arc<Mutex<Vec<(String, String)>>>,
    handed_out: u64,
}
#[async_trait]
impl TransportReceiver for Scripted {
    async fn receive(&mut self, _max: usize, _wait: Duration) -> Result<Received, TransportError> {
        if self.batches.is_empty() {
            Ok(Received::Closed)
        } else {
            self.handed_out += 1;
            Ok(Received::Messages(self.batches.remove(0)))
        }
    }
    fn mark(&self) -> CommitMark {
        CommitMark::new(self.handed_out)
    }
    async fn commit(&mut self, _mark: CommitMark) -> Result<(), TransportError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn dead_letter(&mut self, m: &Message, e: &DecodeError) -> Result<(), TransportError> {
        // Messages from partition `refused` stand for dead letters the broker
        // will never take (too large even cut).
        if m.origin.starts_with("refused/") {
            return Err(TransportError::rejected("message size too large"));
        }
        self.dead
            .lock()
            .unwrap()
            .push((m.origin.clone(), e.kind().to_string()));
        Ok(())
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
}

#[derive(Default)]
struct Memory {
    fail_first: AtomicU64,
    rows: Mutex<Vec<Snapshot>>,
    writes: AtomicU64,
}
#[async_trait]
impl Sink for Memory {
    fn name(&self) -> &str {
        "memory"
    }
    async fn write(&self, batch: Batch) -> Result<(), SinkError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self.fail_first.load(Ordering::SeqCst) > 0 {
            self.fail_first.fetch_sub(1, Ordering::SeqCst);
            return Err(SinkError::Unavailable {
                sink: "memory".into(),
                message: "disk on fire".into(),
                source: None,
            });
        }
        self.rows.lock().unwrap().extend(batch.iter().cloned());
        Ok(())
    }
}

struct AlwaysDown(AtomicBool);
#[async_trait]
impl Sink for AlwaysDown {
    fn name(&self) -> &str {
        "down"
    }
    async fn write(&self, _: Batch) -> Result<(), SinkError> {
        self.0.store(true, Ordering::SeqCst);
        Err(SinkError::Unavailable {
            sink: "down".into(),
            message: "nope".into(),
            source: None,
        })
    }
}

fn encoded(bytes: Vec<u8>, origin: &str) -> Message {
    Message {
        payload: Payload::Encoded {
            bytes,
            format: None,
        },
        key: None,
        origin: origin.into(),
    }
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_valid_ones_stored() {
    let mut m = SyntheticMachine::new("m1", 1);
    let good: Vec<Snapshot> = (0..6)
        .map(|i| m.next_snapshot(1_764_086_400.0 + f64::from(i), 3))
        .collect();
    let legacy = include_bytes!("../../../../testdata/legacy_producer_message.json").to_vec();
    let mut bad_cpu = good[0].clone();
    bad_cpu.cpu_usage = 1e9;
    let batch1 = vec![
        encoded(encode(&good[0], Format::Json), "t/0@0"),
        encoded(b"{not json".to_vec(), "t/0@1"),
        encoded(encode(&good[1], Format::Binary), "t/0@2"),
        encoded(crate::codec::encode_json(&bad_cpu), "t/0@3"),
        encoded(legacy, "t/0@4"),
        encoded(vec![b' '; 2 << 20], "t/0@5"),
    ];
    let batch2 = vec![
        Message {
            payload: Payload::Snapshot(Box::new(good[2].clone())),
            key: None,
            origin: "c#1".into(),
        },
        encoded(b"".to_vec(), "t/1@0"),
        encoded(encode(&good[3], Format::Json), "t/1@1"),
    ];
    let commits = Arc::new(AtomicU64::new(0));
    let dead = Arc::new(Mutex::new(Vec::new()));
    let recv = Scripted {
        batches: vec![batch1, batch2],
        commits: commits.clone(),
        dead: dead.clone(),
        handed_out: 0,
    };
    let sink = Arc::new(Memory::default());
    sink.fail_first.store(2, Ordering::SeqCst);
    let mut ingest = Ingest::new(Box::new(recv), IngestConfig::default());
    ingest.add_sink(sink.clone(), SinkRole::Required);
    let mut events = ingest.subscribe();
    let stats = ingest.stats();
    ingest.run(CancellationToken::new()).await.unwrap();

    let stored = sink.rows.lock().unwrap().clone();
    let ids: Vec<(String, f64)> = stored
        .iter()
        .map(|s| (s.machine_id.clone(), s.timestamp))
        .collect();
    assert_eq!(stored.len(), 5, "{ids:?}");
    assert_eq!(stored[0], good[0]);
    assert_eq!(stored[1], good[1]);
    assert_eq!(stored[2].machine_id, "machine_46");
    assert_eq!(stored[3], good[2]);
    assert_eq!(stored[4], good[3]);
    let dead = dead.lock().unwrap().clone();
    assert_eq!(
        dead,
        vec![
            ("t/0@1".to_string(), "syntax".to_string()),
            ("t/0@3".to_string(), "invalid_value".to_string()),
            ("t/0@5".to_string(), "too_large".to_string()),
            ("t/1@0".to_string(), "empty".to_string()),
        ]
    );
    assert_eq!(commits.load(Ordering::SeqCst), 2);
    assert_eq!(stats.stored.load(Ordering::SeqCst), 5);
    assert_eq!(stats.rejected.load(Ordering::SeqCst), 4);
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 4);
    assert_eq!(
        stats.sink_errors.load(Ordering::SeqCst),
        2,
        "retried after failures"
    );
    assert_eq!(stats.rejected_by_kind()["syntax"], 1);
    assert_eq!(events.recv().await.unwrap().len(), 3);
    assert_eq!(events.recv().await.unwrap().len(), 2);
}

#[tokio::test]
async fn best_effort_sink_failure_does_not_block_and_required_failure_blocks_commit() {
    let mut m = SyntheticMachine::new("m1", 1);
    let msgs = vec![Message {
        payload: Payload::Snapshot(Box::new(m.next_snapshot(1_764_086_400.0, 1))),
        key: None,
        origin: "c#1".into(),
    }];
    let commits = Arc::new(AtomicU64::new(0));
    let recv = Scripted {
        batches: vec![msgs.clone()],
        commits: commits.clone(),
        dead: Default::default(),
        handed_out: 0,
    };
    let sink = Arc::new(Memory::default());
    let down = Arc::new(AlwaysDown(AtomicBool::new(false)));
    let mut ingest = Ingest::new(Box::new(recv), IngestConfig::default());
    ingest.add_sink(sink.clone(), SinkRole::Required);
    ingest.add_sink(down.clone(), SinkRole::BestEffort);
    ingest.run(CancellationToken::new()).await.unwrap();
    assert!(down.0.load(Ordering::SeqCst));
    assert_eq!(sink.rows.lock().unwrap().len(), 1);
    assert_eq!(commits.load(Ordering::SeqCst), 1);

    // Required sink that never recovers: shutdown ends the retry, nothing committed.
    let commits = Arc::new(AtomicU64::new(0));
    let recv = Scripted {
        batches: vec![msgs],
        commits: commits.clone(),
        dead: Default::default(),
        handed_out: 0,
    };
    let mut ingest = Ingest::new(Box::new(recv), IngestConfig::default());
    ingest.add_sink(
        Arc::new(AlwaysDown(AtomicBool::new(false))),
        SinkRole::Required,
    );
    let stop = CancellationToken::new();
    let stop2 = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop2.cancel();
    });
    let result = ingest.run(stop).await;
    assert!(result.is_err());
    assert_eq!(
        commits.load(Ordering::SeqCst),
        0,
        "never commit what was not stored"
    );
}

/// What happened, in order, in the pipeline test.
type Events = Arc<Mutex<Vec<String>>>;

/// Hands out batch k (1, 2, 3) with one snapshot at timestamp `BASE + k`;
/// logs receives and commits, and checks each commit against what is stored.
struct Logged {
    batches: Vec<Vec<Message>>,
    handed_out: u64,
    events: Events,
    sink: Arc<FailsBatchTwo>,
    /// Commits whose mark covered a batch the sink had not stored.
    violations: Arc<Mutex<Vec<String>>>,
}
#[async_trait]
impl TransportReceiver for Logged {
    async fn receive(&mut self, _max: usize, _wait: Duration) -> Result<Received, TransportError> {
        if self.batches.is_empty() {
            // Stay open (as Kafka does) until the test has seen everything.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Ok(Received::Messages(Vec::new()));
        }
        self.handed_out += 1;
        self.events
            .lock()
            .unwrap()
            .push(format!("received {}", self.handed_out));
        Ok(Received::Messages(self.batches.remove(0)))
    }
    fn mark(&self) -> CommitMark {
        CommitMark::new(self.handed_out)
    }
    async fn commit(&mut self, mark: CommitMark) -> Result<(), TransportError> {
        let stored = self.sink.stored.lock().unwrap().clone();
        for k in 1..=mark.seq() {
            if !stored.contains(&k) {
                self.violations
                    .lock()
                    .unwrap()
                    .push(format!("commit {} covers unstored batch {k}", mark.seq()));
            }
        }
        self.events
            .lock()
            .unwrap()
            .push(format!("commit {}", mark.seq()));
        Ok(())
    }
    async fn dead_letter(&mut self, _: &Message, _: &DecodeError) -> Result<(), TransportError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "logged".into()
    }
}

const BASE: f64 = 1_764_086_400.0;

/// Fails batch 2 until batch 3 has been received (so batch 3 is decoded and
/// waiting while batch 2 is not stored), and at least 3 times.
struct FailsBatchTwo {
    events: Events,
    stored: Mutex<Vec<u64>>,
    failures: AtomicU64,
}
#[async_trait]
impl Sink for FailsBatchTwo {
    fn name(&self) -> &str {
        "fails-batch-2"
    }
    async fn write(&self, batch: Batch) -> Result<(), SinkError> {
        let k = (batch[0].timestamp - BASE).round() as u64;
        let third_received = self
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e == "received 3");
        if k == 2 && (!third_received || self.failures.load(Ordering::SeqCst) < 3) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            self.events.lock().unwrap().push("failed 2".into());
            return Err(SinkError::Unavailable {
                sink: "fails-batch-2".into(),
                message: "disk busy".into(),
                source: None,
            });
        }
        self.stored.lock().unwrap().push(k);
        self.events.lock().unwrap().push(format!("stored {k}"));
        Ok(())
    }
}

#[tokio::test]
async fn pipelined_commit_never_covers_an_unstored_batch() {
    let mut m = SyntheticMachine::new("m1", 1);
    let batches: Vec<Vec<Message>> = (1..=3)
        .map(|k| {
            vec![encoded(
                encode(&m.next_snapshot(BASE + k as f64, 2), Format::Json),
                &format!("t/0@{k}"),
            )]
        })
        .collect();
    let events: Events = Default::default();
    let sink = Arc::new(FailsBatchTwo {
        events: events.clone(),
        stored: Mutex::new(Vec::new()),
        failures: AtomicU64::new(0),
    });
    let violations = Arc::new(Mutex::new(Vec::new()));
    let recv = Logged {
        batches,
        handed_out: 0,
        events: events.clone(),
        sink: sink.clone(),
        violations: violations.clone(),
    };
    let mut ingest = Ingest::new(Box::new(recv), IngestConfig::default());
    ingest.add_sink(sink.clone(), SinkRole::Required);
    let mut stored_batches = ingest.subscribe();
    let stop = CancellationToken::new();
    let run = tokio::spawn(ingest.run(stop.clone()));
    let mut broadcast = Vec::new();
    for _ in 0..3 {
        let b = tokio::time::timeout(Duration::from_secs(30), stored_batches.recv())
            .await
            .expect("three batches stored")
            .unwrap();
        broadcast.push((b[0].timestamp - BASE).round() as u64);
    }
    // Let the last commit happen, then stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events.lock().unwrap().iter().any(|e| e == "commit 3") {
        assert!(Instant::now() < deadline, "{:?}", events.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    run.await.unwrap().unwrap();

    let log = events.lock().unwrap().clone();
    let at = |e: &str| {
        log.iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("no {e:?} in {log:?}"))
    };
    assert!(
        violations.lock().unwrap().is_empty(),
        "{violations:?} in {log:?}"
    );
    assert_eq!(
        broadcast,
        vec![1, 2, 3],
        "stored batches broadcast in order"
    );
    assert_eq!(*sink.stored.lock().unwrap(), vec![1, 2, 3]);
    // Pipelined: batch 3 was received (and decoded) while batch 2 kept failing...
    assert!(at("received 3") < at("stored 2"), "{log:?}");
    assert!(sink.failures.load(Ordering::SeqCst) >= 3);
    // ...and the commit stayed at batch 1 until batch 2 was stored.
    assert!(at("commit 1") < at("stored 2"), "{log:?}");
    assert!(at("stored 2") < at("commit 2"), "{log:?}");
    assert!(at("stored 3") < at("commit 3"), "{log:?}");
    let commits: Vec<&String> = log.iter().filter(|e| e.starts_with("commit")).collect();
    assert_eq!(commits, ["commit 1", "commit 2", "commit 3"], "{log:?}");
}

/// Refuses for good (`SinkError::Failed`) any batch holding a snapshot of
/// machine `poison`; stores everything else.
#[derive(Default)]
struct RefusesPoison {
    rows: Mutex<Vec<Snapshot>>,
    writes: AtomicU64,
}
#[async_trait]
impl Sink for RefusesPoison {
    fn name(&self) -> &str {
        "picky"
    }
    async fn write(&self, batch: Batch) -> Result<(), SinkError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if batch.iter().any(|s| s.machine_id == "poison") {
            return Err(SinkError::Failed {
                sink: "picky".into(),
                message: format!("cannot store {}", "x".repeat(100_000)),
                source: None,
            });
        }
        self.rows.lock().unwrap().extend(batch.iter().cloned());
        Ok(())
    }
}

/// `(origin, kind)` of every dead letter.
type DeadLetters = Arc<Mutex<Vec<(String, String)>>>;

fn scripted(batches: Vec<Vec<Message>>) -> (Scripted, Arc<AtomicU64>, DeadLetters) {
    let commits = Arc::new(AtomicU64::new(0));
    let dead = Arc::new(Mutex::new(Vec::new()));
    (
        Scripted {
            batches,
            commits: commits.clone(),
            dead: dead.clone(),
            handed_out: 0,
        },
        commits,
        dead,
    )
}

#[tokio::test]
async fn snapshots_a_required_sink_refuses_for_good_are_isolated_and_the_rest_stored() {
    let now = crate::agent::now_epoch_secs();
    let msgs: Vec<Message> = (0..100)
        .map(|i| {
            let id = if i == 30 || i == 71 { "poison" } else { "ok" };
            let s = Snapshot::new(id, now - 100.0 + f64::from(i));
            encoded(encode(&s, Format::Json), &format!("t/0@{i}"))
        })
        .collect();
    let (recv, commits, dead) = scripted(vec![msgs]);
    let sink = Arc::new(RefusesPoison::default());
    let after = Arc::new(Memory::default());
    let mut ingest = Ingest::new(Box::new(recv), IngestConfig::default());
    ingest.add_sink(sink.clone(), SinkRole::Required);
    ingest.add_sink(after.clone(), SinkRole::BestEffort);
    let mut events = ingest.subscribe();
    let stats = ingest.stats();
    ingest.run(CancellationToken::new()).await.unwrap();

    let stored: Vec<f64> = sink
        .rows
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.timestamp)
        .collect();
    assert_eq!(stored.len(), 98, "everything but the two refused");
    assert!(sink
        .rows
        .lock()
        .unwrap()
        .iter()
        .all(|s| s.machine_id == "ok"));
    assert_eq!(
        after.rows.lock().unwrap().len(),
        98,
        "later sinks get the rest"
    );
    assert_eq!(
        *dead.lock().unwrap(),
        vec![
            ("t/0@30".to_string(), "sink_rejected".to_string()),
            ("t/0@71".to_string(), "sink_rejected".to_string()),
        ]
    );
    assert_eq!(commits.load(Ordering::SeqCst), 1);
    assert_eq!(stats.stored.load(Ordering::SeqCst), 98);
    assert_eq!(stats.rejected_by_kind()["sink_rejected"], 2);
    assert_eq!(events.recv().await.unwrap().len(), 98);
    // Halving: far fewer writes than one per snapshot.
    let writes = sink.writes.load(Ordering::SeqCst);
    assert!(writes < 30, "{writes} writes");
}

#[tokio::test]
async fn forged_keys_and_samples_outside_the_time_window_are_dead_lettered() {
    let now = crate::agent::now_epoch_secs();
    let with_key = |s: &Snapshot, key: Option<&str>, origin: &str| Message {
        payload: Payload::Encoded {
            bytes: encode(s, Format::Json),
            format: Some(Format::Json),
        },
        key: key.map(|k| k.as_bytes().to_vec()),
        origin: origin.into(),
    };
    let b = |ts: f64| Snapshot::new("machine-b", ts);
    let msgs = vec![
        with_key(&b(now - 10.0), Some("machine-b"), "t/0@0"),
        with_key(&b(now - 9.0), None, "t/0@1"),
        with_key(&b(now - 8.0), Some("attacker"), "t/0@2"),
        with_key(&b(4_070_908_800.0), Some("machine-b"), "t/0@3"),
        with_key(&b(now + 60.0), Some("machine-b"), "t/0@4"),
        with_key(&b(now + 3600.0), Some("machine-b"), "t/0@5"),
        with_key(&b(now - 40.0 * 86_400.0), Some("machine-b"), "t/0@6"),
        with_key(&b(now - 20.0 * 86_400.0), Some("machine-b"), "t/0@7"),
    ];
    let (recv, _, dead) = scripted(vec![msgs]);
    let sink = Arc::new(Memory::default());
    let options = IngestConfig {
        max_sample_age: Some(Duration::from_secs(30 * 86_400)),
        ..IngestConfig::default()
    };
    let mut ingest = Ingest::new(Box::new(recv), options);
    ingest.add_sink(sink.clone(), SinkRole::Required);
    ingest.run(CancellationToken::new()).await.unwrap();
    let origins_stored = sink.rows.lock().unwrap().len();
    assert_eq!(
        origins_stored, 4,
        "keyed, keyless, within the skew, within retention"
    );
    assert_eq!(
        *dead.lock().unwrap(),
        vec![
            ("t/0@2".to_string(), "key_mismatch".to_string()),
            ("t/0@3".to_string(), "future_timestamp".to_string()),
            ("t/0@5".to_string(), "future_timestamp".to_string()),
            ("t/0@6".to_string(), "too_old".to_string()),
        ]
    );
}

#[tokio::test]
async fn a_dead_letter_refused_for_good_is_counted_skipped_and_committed() {
    let now = crate::agent::now_epoch_secs();
    let good = Snapshot::new("m", now - 5.0);
    let msgs = vec![
        encoded(b"{not json".to_vec(), "refused/0@0"),
        encoded(b"".to_vec(), "refused/0@1"),
        encoded(encode(&good, Format::Json), "refused/0@2"),
    ];
    let (recv, commits, dead) = scripted(vec![msgs]);
    let sink = Arc::new(Memory::default());
    let mut ingest = Ingest::new(Box::new(recv), IngestConfig::default());
    ingest.add_sink(sink.clone(), SinkRole::Required);
    let stats = ingest.stats();
    tokio::time::timeout(
        Duration::from_secs(10),
        ingest.run(CancellationToken::new()),
    )
    .await
    .expect("a refused dead letter never loops")
    .unwrap();
    assert_eq!(sink.rows.lock().unwrap().len(), 1);
    assert!(dead.lock().unwrap().is_empty());
    assert_eq!(stats.dead_letter_failures.load(Ordering::SeqCst), 2);
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 0);
    assert_eq!(stats.rejected.load(Ordering::SeqCst), 2);
    assert_eq!(commits.load(Ordering::SeqCst), 1, "the batch is committed");
}
