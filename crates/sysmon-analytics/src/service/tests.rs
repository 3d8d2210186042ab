use std::sync::Mutex;

use super::*;
use crate::alerts::{AlertRule, AlertState};
use crate::config::Config;
use crate::tracegen::{generate, TraceConfig};

const T0: f64 = 1_764_086_400.0;

fn snap(id: &str, t: f64, cpu: f64, mem: f64) -> Snapshot {
    let mut s = Snapshot::new(id, T0 + t);
    s.cpu_usage = cpu;
    s.memory_usage = mem;
    s
}

fn config() -> Config {
    let mut c = Config::default();
    c.alerts.rules = AlertRule::defaults();
    c
}

#[test]
fn a_sustained_breach_fires_once_and_the_active_set_is_reported_when_it_changes() {
    let mut engine = AnalyticsEngine::from_config(&config()).unwrap();
    let mut events = Vec::new();
    let mut active_reports = Vec::new();
    for t in 0..40 {
        let r = engine.observe_batch(&[snap("web-01", t as f64, 95.0, 40.0)], T0 + t as f64);
        assert_eq!(r.scores.len(), 1, "every snapshot is scored");
        events.extend(r.events);
        if let Some(a) = r.active {
            assert_eq!(a.scopes, vec!["web-01".to_string()]);
            active_reports.push(a.alerts);
        }
    }
    let firing: Vec<_> = events
        .iter()
        .filter(|e| e.state == AlertState::Firing)
        .collect();
    assert_eq!(firing.len(), 1, "{events:?}");
    assert_eq!(firing[0].rule, "cpu_high");
    assert_eq!(firing[0].machine_id.as_deref(), Some("web-01"));
    // Pending at t=0, firing at t=30: the set changed twice, plus the first report.
    assert!(
        (2..=4).contains(&active_reports.len()),
        "{active_reports:?}"
    );
    let last = active_reports.last().unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].state, AlertState::Firing);

    // Back to normal: resolved, and the active set reported empty.
    let r = engine.observe_batch(&[snap("web-01", 40.0, 10.0, 40.0)], T0 + 40.0);
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].state, AlertState::Resolved);
    let set = r.active.unwrap();
    assert!(set.alerts.is_empty());
    assert_eq!(
        set.scopes,
        vec!["web-01".to_string()],
        "web-01's alerts are now none"
    );
}

#[test]
fn a_silent_machine_goes_offline_on_tick() {
    let mut engine = AnalyticsEngine::from_config(&config()).unwrap();
    for t in -4..=0 {
        engine.observe_batch(&[snap("db-01", t as f64, 10.0, 10.0)], T0 + t as f64);
    }
    // Another machine goes on reporting: the pipeline works, db-01 is silent.
    let web = |engine: &mut AnalyticsEngine, from: i32, to: i32| {
        for t in from..=to {
            engine.observe_batch(&[snap("web-01", t as f64, 10.0, 10.0)], T0 + t as f64 + 0.5);
        }
    };
    web(&mut engine, -4, 30);
    assert!(engine.tick(T0 + 30.5).events.is_empty());
    web(&mut engine, 31, 61);
    let r = engine.tick(T0 + 61.5);
    assert_eq!(r.events.len(), 1, "{:?}", r.events);
    assert_eq!(r.events[0].rule, "machine_offline");
    assert_eq!(r.events[0].state, AlertState::Firing);
    assert!(r.active.is_some());
}

#[test]
fn disabled_parts_do_nothing() {
    let mut c = config();
    c.anomaly.enabled = false;
    c.alerts.enabled = false;
    let mut engine = AnalyticsEngine::from_config(&c).unwrap();
    assert!(engine.is_idle());
    let r = engine.observe_batch(&[snap("a", 0.0, 99.0, 99.0)], T0);
    assert!(r.scores.is_empty() && r.events.is_empty());
}

#[derive(Default)]
struct RecordingSink {
    records: Mutex<Vec<AnalyticsRecord>>,
}

#[async_trait]
impl AnalyticsSink for RecordingSink {
    fn name(&self) -> &str {
        "recording"
    }
    async fn record(&self, record: &AnalyticsRecord) -> Result<(), SinkError> {
        self.records.lock().unwrap().push(record.clone());
        Ok(())
    }
}

struct FailingSink;

#[async_trait]
impl AnalyticsSink for FailingSink {
    fn name(&self) -> &str {
        "failing"
    }
    async fn record(&self, _: &AnalyticsRecord) -> Result<(), SinkError> {
        Err(SinkError::Unavailable {
            sink: "failing".into(),
            message: "down".into(),
            source: None,
        })
    }
}

#[derive(Default)]
struct RecordingNotifier {
    events: Mutex<Vec<AlertEvent>>,
}

impl AlertNotifier for RecordingNotifier {
    fn notify(&self, event: &AlertEvent) {
        self.events.lock().unwrap().push(event.clone());
    }
}

#[tokio::test]
async fn the_service_scores_every_broadcast_snapshot_and_notifies_transitions() {
    let (tx, rx) = broadcast::channel::<Batch>(256);
    let sink = Arc::new(RecordingSink::default());
    let notifier = Arc::new(RecordingNotifier::default());
    let mut service = AnalyticsService::new(AnalyticsEngine::from_config(&config()).unwrap());
    service
        .add_sink(sink.clone())
        .add_sink(Arc::new(FailingSink))
        .add_notifier(notifier.clone());
    let stats = service.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(service.run(rx, stop.clone()));

    // A labelled trace of two machines with injected events, in batches of 20.
    let trace = generate(&TraceConfig {
        machines: 2,
        samples: 600,
        seed: 7,
        ..TraceConfig::default()
    });
    let snapshots: Vec<Snapshot> = trace.snapshots.clone();
    let total = snapshots.len();
    for chunk in snapshots.chunks(20) {
        tx.send(Batch::from(chunk.to_vec())).unwrap();
        tokio::task::yield_now().await;
    }
    // A machine at 95 % CPU for 40 s fires cpu_high.
    let hot: Vec<Snapshot> = (0..40)
        .map(|t| snap("hot-01", 1_000.0 + t as f64, 95.0, 30.0))
        .collect();
    for s in hot {
        tx.send(Batch::from(vec![s])).unwrap();
    }
    stop.cancel();
    task.await.unwrap().unwrap();

    assert_eq!(stats.skipped_batches.load(Ordering::Relaxed), 0);
    let records = sink.records.lock().unwrap();
    let scored: usize = records.iter().map(|r| r.scores.len()).sum();
    assert_eq!(scored, total + 40, "every snapshot scored once");
    assert_eq!(stats.scored.load(Ordering::Relaxed), (total + 40) as u64);
    let flagged = records
        .iter()
        .flat_map(|r| &r.scores)
        .filter(|s| s.anomaly)
        .count();
    assert!(flagged > 0, "the trace's injected events are flagged");
    assert_eq!(stats.anomalies.load(Ordering::Relaxed), flagged as u64);
    let events = notifier.events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.rule == "cpu_high" && e.machine_id.as_deref() == Some("hot-01")),
        "{events:?}"
    );
    let stored_events: usize = records.iter().map(|r| r.events.len()).sum();
    assert_eq!(stored_events, events.len(), "sinks get what notifiers get");
    assert!(
        stats.sink_errors.load(Ordering::Relaxed) > 0,
        "a failing sink is counted and does not stop the others"
    );
}

#[tokio::test]
async fn falling_behind_is_counted_not_fatal() {
    let (tx, rx) = broadcast::channel::<Batch>(2);
    let sink = Arc::new(RecordingSink::default());
    let mut service = AnalyticsService::new(AnalyticsEngine::from_config(&config()).unwrap());
    service.add_sink(sink.clone());
    let stats = service.stats();
    // Ten batches before the service runs: the channel keeps the newest two.
    for t in 0..10 {
        tx.send(Batch::from(vec![snap("m", t as f64, 5.0, 5.0)]))
            .unwrap();
    }
    drop(tx);
    service.run(rx, CancellationToken::new()).await.unwrap();
    assert_eq!(stats.skipped_batches.load(Ordering::Relaxed), 8);
    assert_eq!(stats.scored.load(Ordering::Relaxed), 2);
}

#[test]
fn a_cpu_jump_is_one_episode_reported_when_it_opens_and_when_it_closes() {
    let mut engine = AnalyticsEngine::from_config(&Config::default()).unwrap();
    let mut episodes = Vec::new();
    for t in 0..200 {
        let cpu = if (120..125).contains(&t) {
            95.0
        } else {
            20.0 + (t % 3) as f64
        };
        let r = engine.observe_batch(&[snap("web-01", t as f64, cpu, 40.0)], T0 + t as f64);
        episodes.extend(r.episodes);
    }
    assert_eq!(episodes.len(), 2, "{episodes:#?}");
    let (opened, closed) = (&episodes[0], &episodes[1]);
    assert!(opened.open && !closed.open);
    assert_eq!(opened.start, T0 + 120.0);
    assert_eq!(closed.start, opened.start);
    assert!(
        closed.end >= closed.start && closed.end < T0 + 130.0,
        "{closed:?}"
    );
    assert_eq!(closed.metrics, vec!["cpu_usage".to_string()]);
}

/// `n` samples of `id`, one a second from `t0` (received as sent).
fn feed(engine: &mut AnalyticsEngine, id: &str, t0: f64, n: usize, cpu: f64) -> AnalyticsRecord {
    let mut last = AnalyticsRecord::default();
    for i in 0..n {
        let t = t0 + i as f64;
        last = engine.observe_batch(&[snap(id, t, cpu, 40.0)], T0 + t);
    }
    last
}

#[test]
fn silent_machines_are_alerted_then_forgotten_and_their_stored_alerts_cleared() {
    let mut c = config();
    c.ingest.forget_silent_machines_after = Duration::from_secs(600);
    // The pipeline's own stall (everything silent after 170) is another test's.
    c.alerts.pipeline.enabled = false;
    let mut engine = AnalyticsEngine::from_config(&c).unwrap();
    feed(&mut engine, "real", 0.0, 100, 20.0);
    // A CPU jump opens an episode just before the machine goes silent.
    let r = feed(&mut engine, "real", 100.0, 1, 99.0);
    assert_eq!(r.scores.len(), 1);
    feed(&mut engine, "brief", 0.0, 2, 20.0);
    let t = engine.tracked();
    assert_eq!((t.detector, t.alerts, t.episodes), (2, 2, 1), "{t:?}");
    // A peer reports until 170: the pipeline delivers while `real` is silent.
    feed(&mut engine, "peer", 0.0, 171, 20.0);

    // Offline after 60 s: the established machine pages, the brief one not.
    let r = engine.tick(T0 + 170.0);
    assert_eq!(
        r.events
            .iter()
            .map(|e| (e.machine_id.clone().unwrap(), e.state))
            .collect::<Vec<_>>(),
        vec![("real".to_string(), AlertState::Firing)]
    );
    // Still within the bound: kept.
    assert!(engine.tick(T0 + 600.0).events.is_empty());
    assert_eq!(engine.tracked().alerts, 3);

    // Past it (brief's last sample at 1, real's at 100): brief goes first, silently.
    let r = engine.tick(T0 + 602.0);
    assert!(r.events.is_empty(), "{:?}", r.events);
    let set = r
        .active
        .expect("a forgotten machine changes the active set");
    assert!(set.scopes.contains(&"brief".to_string()), "{set:?}");
    assert_eq!(engine.tracked().alerts, 2);

    // real: its firing offline alert ends, saying why; its episode closes.
    let r = engine.tick(T0 + 701.0);
    assert_eq!(r.events.len(), 1, "{:?}", r.events);
    assert_eq!(r.events[0].state, AlertState::Resolved);
    assert_eq!(r.events[0].rule, "machine_offline");
    assert!(
        r.events[0].message.contains("no longer tracked"),
        "{}",
        r.events[0].message
    );
    assert_eq!(r.episodes.len(), 1);
    assert!(!r.episodes[0].open);
    let set = r.active.unwrap();
    assert_eq!(
        set.scopes,
        vec!["peer".to_string(), "real".to_string()],
        "real listed to be cleared"
    );
    assert!(set.alerts.is_empty());
    let t = engine.tracked();
    assert_eq!(
        (t.detector, t.alerts, t.episodes),
        (1, 1, 0),
        "only peer: {t:?}"
    );
    assert_eq!(engine.forgotten(), 2);
    assert!(engine.tick(T0 + 702.0).active.is_none(), "listed once");

    // Reporting again starts afresh.
    let r = feed(&mut engine, "real", 800.0, 1, 20.0);
    assert_eq!(r.scores.len(), 1);
    assert!(r.events.is_empty());
    assert_eq!(engine.tracked().alerts, 2);
}

#[test]
fn the_bound_must_outlast_the_offline_rule() {
    let mut c = config();
    c.ingest.forget_silent_machines_after = Duration::from_secs(60);
    let e = AnalyticsEngine::from_config(&c).unwrap_err().to_string();
    assert!(e.contains("forget_silent_machines_after"), "{e}");
    c.alerts.rules.clear();
    assert!(AnalyticsEngine::from_config(&c).is_ok());
}

#[test]
fn machines_beyond_the_cap_are_not_tracked_until_others_are_forgotten() {
    let mut c = config();
    c.ingest.max_tracked_machines = 100;
    c.ingest.forget_silent_machines_after = Duration::from_secs(300);
    let mut engine = AnalyticsEngine::from_config(&c).unwrap();
    let mut scored = 0;
    for i in 0..150 {
        let r = engine.observe_batch(
            &[
                snap(&format!("m{i}"), 0.0, 10.0, 10.0),
                snap(&format!("m{i}"), 1.0, 10.0, 10.0),
            ],
            T0 + 1.0,
        );
        scored += r.scores.len();
    }
    assert_eq!(scored, 200, "the first 100 machines are scored");
    assert_eq!(
        engine.cap_hits(),
        100,
        "50 machines x 2 samples not analysed"
    );
    let t = engine.tracked();
    assert_eq!((t.detector, t.alerts), (100, 100));
    // Known machines go on being analysed at the cap.
    let r = engine.observe_batch(&[snap("m5", 2.0, 10.0, 10.0)], T0 + 2.0);
    assert_eq!(r.scores.len(), 1);
    // After the silence the state is gone and new machines are tracked.
    engine.tick(T0 + 400.0);
    assert_eq!(engine.tracked().alerts, 0);
    let r = engine.observe_batch(&[snap("m149", 500.0, 10.0, 10.0)], T0 + 500.0);
    assert_eq!(r.scores.len(), 1);
    assert_eq!(engine.cap_hits(), 100);
}

#[tokio::test]
async fn the_service_exports_tracked_machines_and_cap_hits() {
    let (tx, rx) = broadcast::channel::<Batch>(64);
    let mut c = config();
    c.ingest.max_tracked_machines = 3;
    let service = AnalyticsService::new(AnalyticsEngine::from_config(&c).unwrap());
    let stats = service.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(service.run(rx, stop.clone()));
    let batch: Vec<Snapshot> = (0..5)
        .map(|i| Snapshot::new(format!("m{i}"), now_secs()))
        .collect();
    tx.send(Batch::from(batch)).unwrap();
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(stats.tracked_alerts.load(Ordering::Relaxed), 3);
    assert_eq!(stats.tracked_detector.load(Ordering::Relaxed), 3);
    assert_eq!(stats.machine_cap_hits.load(Ordering::Relaxed), 2);
}
