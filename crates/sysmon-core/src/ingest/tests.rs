use super::*;
use crate::codec::{encode, Format};
use crate::sink::SinkError;
use crate::synth::SyntheticMachine;
use crate::transport::TransportError;
use async_trait::async_trait;
use std::sync::atomic::AtomicBool;

/// A receiver that hands out pre-made messages, then closes.
struct Scripted {
    batches: Vec<Vec<Message>>,
    commits: Arc<AtomicU64>,
    dead: Arc<Mutex<Vec<(String, String)>>>,
}
#[async_trait]
impl TransportReceiver for Scripted {
    async fn receive(&mut self, _max: usize, _wait: Duration) -> Result<Received, TransportError> {
        if self.batches.is_empty() {
            Ok(Received::Closed)
        } else {
            Ok(Received::Messages(self.batches.remove(0)))
        }
    }
    async fn commit(&mut self) -> Result<(), TransportError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn dead_letter(&mut self, m: &Message, e: &DecodeError) -> Result<(), TransportError> {
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
        })
    }
}

fn encoded(bytes: Vec<u8>, origin: &str) -> Message {
    Message {
        payload: Payload::Encoded {
            bytes,
            format: None,
        },
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
        origin: "c#1".into(),
    }];
    let commits = Arc::new(AtomicU64::new(0));
    let recv = Scripted {
        batches: vec![msgs.clone()],
        commits: commits.clone(),
        dead: Default::default(),
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
