use super::*;
use crate::collector::CollectorError;
use crate::transport::channel::channel_transport;
use crate::transport::{Payload, Received, TransportError, TransportReceiver};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

struct Counter(u64);
impl Collector for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    fn collect(&mut self, s: &mut Snapshot) -> Result<(), CollectorError> {
        self.0 += 1;
        s.disk_io.read = self.0;
        Ok(())
    }
}

struct Broken;
impl Collector for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn collect(&mut self, _: &mut Snapshot) -> Result<(), CollectorError> {
        Err(CollectorError::Failed("sensor unplugged".into()))
    }
}

struct Panicky;
impl Collector for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn collect(&mut self, _: &mut Snapshot) -> Result<(), CollectorError> {
        panic!("boom")
    }
}

fn options(interval_ms: u64) -> AgentOptions {
    let mut o = AgentOptions::new("test-machine");
    o.interval = Duration::from_millis(interval_ms);
    o.shutdown_timeout = Duration::from_secs(5);
    o
}

async fn drain_all(rx: &mut crate::transport::channel::ChannelReceiver) -> Vec<Snapshot> {
    let mut out = Vec::new();
    loop {
        match rx.receive(100, Duration::from_secs(5)).await.unwrap() {
            Received::Messages(m) => out.extend(m.into_iter().map(|m| match m.payload {
                Payload::Snapshot(s) => *s,
                Payload::Encoded { .. } => unreachable!(),
            })),
            Received::Closed => return out,
        }
    }
}

#[tokio::test]
async fn failing_and_panicking_collectors_yield_partial_snapshots() {
    let (tx, mut rx) = channel_transport(64);
    let agent = Agent::new(options(100), Arc::new(tx))
        .with_collector(Box::new(Broken))
        .with_collector(Box::new(Panicky))
        .with_collector(Box::new(Counter(0)));
    let handle = agent.spawn();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let report = handle.shutdown().await;
    let got = drain_all(&mut rx).await;
    assert!(got.len() >= 2, "got {}", got.len());
    assert_eq!(report.collected as usize, got.len());
    assert_eq!(report.undelivered, 0);
    for (i, s) in got.iter().enumerate() {
        assert_eq!(s.disk_io.read, i as u64 + 1, "counter ran every time");
        let names: Vec<_> = s
            .collector_errors
            .iter()
            .map(|e| e.collector.as_str())
            .collect();
        assert_eq!(names, ["broken", "panicky"]);
        assert!(s.collector_errors[1].message.contains("boom"));
    }
}

#[tokio::test]
async fn schedule_is_fixed_rate() {
    let (tx, mut rx) = channel_transport(64);
    let handle = Agent::new(options(100), Arc::new(tx))
        .with_collector(Box::new(Counter(0)))
        .spawn();
    tokio::time::sleep(Duration::from_millis(1250)).await;
    handle.shutdown().await;
    let got = drain_all(&mut rx).await;
    assert!((9..=13).contains(&got.len()), "got {}", got.len());
    // Aligned to 100 ms wall-clock boundaries: no cumulative drift.
    for s in &got {
        let frac = (s.timestamp * 10.0).fract();
        let off = frac.min(1.0 - frac);
        assert!(off < 0.5, "timestamp {} far from a boundary", s.timestamp);
    }
    let last = got.last().unwrap().timestamp;
    let first = got.first().unwrap().timestamp;
    let expected = (got.len() - 1) as f64 * 0.1;
    assert!(
        (last - first - expected).abs() < 0.1,
        "drift: {}",
        last - first - expected
    );
}

/// A transport that fails while `down` is set and records what it accepted.
#[derive(Default)]
struct Flaky {
    down: AtomicBool,
    accepted: Mutex<Vec<Snapshot>>,
}
#[async_trait::async_trait]
impl Transport for Flaky {
    async fn publish(&self, batch: &[Snapshot]) -> Result<(), TransportError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(TransportError::unavailable("down for the test"));
        }
        self.accepted.lock().unwrap().extend_from_slice(batch);
        Ok(())
    }
    fn describe(&self) -> String {
        "flaky".into()
    }
}

#[tokio::test]
async fn outage_is_buffered_and_delivered_in_order() {
    let flaky = Arc::new(Flaky::default());
    flaky.down.store(true, Ordering::SeqCst);
    let handle = Agent::new(options(50), flaky.clone())
        .with_collector(Box::new(Counter(0)))
        .spawn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(handle.buffered() >= 5, "buffered {}", handle.buffered());
    assert!(flaky.accepted.lock().unwrap().is_empty());
    flaky.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let report = handle.shutdown().await;
    let got = flaky.accepted.lock().unwrap().clone();
    assert_eq!(got.len() as u64, report.collected);
    assert_eq!(report.dropped, 0);
    let seq: Vec<u64> = got.iter().map(|s| s.disk_io.read).collect();
    let expected: Vec<u64> = (1..=got.len() as u64).collect();
    assert_eq!(seq, expected, "in order, none lost, none doubled");
}

#[tokio::test]
async fn buffer_bound_drops_oldest_and_counts() {
    let flaky = Arc::new(Flaky::default());
    flaky.down.store(true, Ordering::SeqCst);
    let mut o = options(20);
    o.buffer_capacity = 5;
    let handle = Agent::new(o, flaky.clone())
        .with_collector(Box::new(Counter(0)))
        .spawn();
    tokio::time::sleep(Duration::from_millis(400)).await;
    flaky.down.store(false, Ordering::SeqCst);
    let report = handle.shutdown().await;
    let got = flaky.accepted.lock().unwrap().clone();
    assert!(report.dropped > 0);
    assert_eq!(report.undelivered, 0);
    assert_eq!(report.collected, report.dropped + got.len() as u64);
    // What survived is the newest, in order.
    let seq: Vec<u64> = got.iter().map(|s| s.disk_io.read).collect();
    assert_eq!(*seq.last().unwrap(), report.collected);
    assert!(seq.windows(2).all(|w| w[1] == w[0] + 1));
}

#[tokio::test]
async fn shutdown_gives_up_after_timeout_and_reports_undelivered() {
    let flaky = Arc::new(Flaky::default());
    flaky.down.store(true, Ordering::SeqCst);
    let mut o = options(20);
    o.shutdown_timeout = Duration::from_millis(200);
    let handle = Agent::new(o, flaky.clone())
        .with_collector(Box::new(Counter(0)))
        .spawn();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = tokio::time::timeout(Duration::from_secs(5), handle.shutdown())
        .await
        .expect("shutdown must not hang");
    assert!(report.undelivered > 0);
    assert_eq!(report.undelivered + report.dropped, report.collected);
}

#[test]
fn sample_now_fills_identity_and_labels() {
    let (tx, _rx) = channel_transport(1);
    let mut o = options(1000);
    o.labels.insert("role".into(), "db".into());
    o.hostname = Some("h1".into());
    let mut agent = Agent::new(o, Arc::new(tx)).with_collector(Box::new(Counter(0)));
    let s = agent.sample_now();
    assert_eq!(s.machine_id, "test-machine");
    assert_eq!(s.hostname.as_deref(), Some("h1"));
    assert_eq!(s.labels["role"], "db");
    assert_eq!(s.disk_io.read, 1);
    assert_eq!(agent.sample_now().disk_io.read, 2, "collectors are kept");
}

#[tokio::test]
async fn spool_carries_the_backlog_across_a_restart() {
    let dir = crate::spool::tests::tempdir().unwrap();
    let mut o = options(20);
    o.shutdown_timeout = Duration::from_millis(200);
    o.spool_dir = Some(dir.path().to_path_buf());

    // Agent 1: the transport is down the whole time; shutdown spools the backlog.
    let down = Arc::new(Flaky::default());
    down.down.store(true, Ordering::SeqCst);
    let handle = Agent::new(o.clone(), down.clone())
        .with_collector(Box::new(Counter(0)))
        .spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = handle.shutdown().await;
    assert!(
        report.undelivered >= 3,
        "undelivered {}",
        report.undelivered
    );
    assert_eq!(report.spooled, report.undelivered);
    assert!(down.accepted.lock().unwrap().is_empty());
    let spool = crate::spool::Spool::new(dir.path(), "test-machine");
    assert_eq!(spool.load(1000).unwrap().len() as u64, report.spooled);

    // Agent 2: the transport is up; the spooled samples go first, in order,
    // then its own (its counter starts at 1000 to tell them apart).
    let up = Arc::new(Flaky::default());
    let handle = Agent::new(o, up.clone())
        .with_collector(Box::new(Counter(999)))
        .spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report2 = handle.shutdown().await;
    assert_eq!(report2.undelivered, 0);
    let got: Vec<u64> = up
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.disk_io.read)
        .collect();
    let n = report.spooled as usize;
    let expected_old: Vec<u64> = (1..=report.spooled).collect();
    assert_eq!(got[..n], expected_old[..], "the backlog first, in order");
    let expected_new: Vec<u64> = (1000..1000 + report2.collected).collect();
    assert_eq!(got[n..], expected_new[..], "then the new samples, in order");
    assert!(report2.collected >= 1);
    assert!(!spool.path().exists(), "the delivered spool is removed");
}
