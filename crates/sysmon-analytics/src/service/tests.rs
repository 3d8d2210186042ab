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
    engine.observe_batch(&[snap("db-01", 0.0, 10.0, 10.0)], T0);
    assert!(engine.tick(T0 + 30.0).events.is_empty());
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
