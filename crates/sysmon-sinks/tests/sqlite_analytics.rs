//! Anomaly scores, alert history and active alerts in a real SQLite file.

mod analytics_common;

use std::time::Duration;

use sysmon_analytics::alerts::{ActiveAlert, AlertEvent, AlertState, Severity};
use sysmon_analytics::{ActiveSet, AnalyticsRecord, AnalyticsSink, AnomalyScore, FLEET_SCOPE};
use sysmon_core::config::SqliteConfig;
use sysmon_core::{Batch, Sink, Snapshot};
use sysmon_sinks::sqlite::SqliteSink;

const T0: f64 = 1_764_086_400.0;

fn open(dir: &tempfile::TempDir) -> SqliteSink {
    SqliteSink::open(&SqliteConfig {
        path: dir.path().join("a.db"),
        raw_retention: Duration::from_secs(3600),
        rollup_retention: Duration::from_secs(2 * 86400),
    })
    .unwrap()
}

fn sample(id: &str, t: f64, cpu: f64) -> Snapshot {
    let mut s = Snapshot::new(id, t);
    s.cpu_usage = cpu;
    s.memory_usage = 40.0;
    s
}

fn score(id: &str, t: f64, score: f64) -> AnomalyScore {
    AnomalyScore {
        machine_id: id.into(),
        timestamp: t,
        score,
        anomaly: score >= 0.5,
        reasons: if score >= 0.5 {
            vec!["cpu_usage z=9.1".into()]
        } else {
            Vec::new()
        },
        forest_score: None,
    }
}

fn event(id: &str, at: f64, state: AlertState) -> AlertEvent {
    AlertEvent {
        rule: "cpu_high".into(),
        severity: Severity::Warning,
        machine_id: Some(id.into()),
        subject: None,
        state,
        value: 93.0,
        at,
        message: format!("cpu_usage on {id} is 93.0 > 80"),
    }
}

fn active(id: Option<&str>, state: AlertState) -> ActiveAlert {
    ActiveAlert {
        rule: "cpu_high".into(),
        severity: Severity::Warning,
        machine_id: id.map(str::to_string),
        subject: None,
        state,
        since: T0 + 5.0,
        value: 93.0,
        // What the engine lists: the firing message, or a description.
        message: match (state, id) {
            (AlertState::Firing, Some(id)) => format!("cpu_usage on {id} is 93.0 > 80"),
            _ => "cpu_high pending".into(),
        },
    }
}

/// An engine owning web-01 and the fleet scope.
fn set(alerts: Vec<ActiveAlert>) -> ActiveSet {
    ActiveSet {
        scopes: vec!["web-01".into(), FLEET_SCOPE.into()],
        alerts,
        full: false,
    }
}

#[tokio::test]
async fn scores_events_and_the_active_set_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let samples: Vec<Snapshot> = (0..10)
        .map(|i| sample("web-01", T0 + i as f64, if i == 7 { 99.0 } else { 10.0 }))
        .collect();
    db.write(Batch::from(samples)).await.unwrap();

    let record = AnalyticsRecord {
        scores: (0..10)
            .map(|i| score("web-01", T0 + i as f64, if i == 7 { 0.93 } else { 0.1 }))
            // A machine SQLite has no samples of: nothing to attach to, skipped.
            .chain([score("ghost", T0, 0.99)])
            .collect(),
        events: vec![event("web-01", T0 + 5.0, AlertState::Firing)],
        active: Some(set(vec![
            active(Some("web-01"), AlertState::Firing),
            active(None, AlertState::Pending),
        ])),
        ..AnalyticsRecord::default()
    };
    db.record(&record).await.unwrap();
    // A replay stores each score once.
    db.record(&AnalyticsRecord {
        scores: record.scores.clone(),
        ..AnalyticsRecord::default()
    })
    .await
    .unwrap();

    let scores = db.anomaly_scores("web-01", T0, T0 + 100.0).await.unwrap();
    assert_eq!(scores.len(), 10);
    assert!(scores.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    assert_eq!(scores.iter().filter(|s| s.anomaly).count(), 1);

    let anomalies = db.anomalies(None, T0 - 1.0, 100).await.unwrap();
    assert_eq!(anomalies.len(), 1);
    let a = &anomalies[0];
    assert_eq!(
        (a.machine_id.as_str(), a.timestamp, a.score),
        ("web-01", T0 + 7.0, 0.93)
    );
    assert_eq!(a.cpu, Some(99.0), "the sample's CPU is joined");
    assert_eq!(a.memory, Some(40.0));
    assert_eq!(a.message, "cpu_usage z=9.1");
    assert!(db
        .anomalies(Some("db-01"), 0.0, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(db.anomalies(None, T0 + 8.0, 100).await.unwrap().is_empty());

    let history = db.alert_history(0.0, 100).await.unwrap();
    assert_eq!(history, vec![event("web-01", T0 + 5.0, AlertState::Firing)]);

    let act = db.active_alerts().await.unwrap();
    assert_eq!(act.len(), 2);
    assert_eq!(act[0].state, AlertState::Firing, "firing first");
    assert_eq!(act[0].machine_id.as_deref(), Some("web-01"));
    assert_eq!(
        act[0].message, "cpu_usage on web-01 is 93.0 > 80",
        "a firing alert carries its firing message"
    );
    assert_eq!(act[1].machine_id, None, "fleet scope");
    assert_eq!(act[1].state, AlertState::Pending);

    // Resolution: a new history row; the active set replaced by an empty one.
    db.record(&AnalyticsRecord {
        events: vec![event("web-01", T0 + 9.0, AlertState::Resolved)],
        active: Some(set(Vec::new())),
        ..AnalyticsRecord::default()
    })
    .await
    .unwrap();
    assert!(db.active_alerts().await.unwrap().is_empty());
    let states: Vec<&str> = db
        .alert_history(0.0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.state.name())
        .collect();
    assert_eq!(states, vec!["resolved", "firing"], "newest first");
    // No active set in a record leaves the stored one alone.
    db.record(&AnalyticsRecord {
        active: Some(set(vec![active(Some("web-01"), AlertState::Pending)])),
        ..AnalyticsRecord::default()
    })
    .await
    .unwrap();
    db.record(&AnalyticsRecord::default()).await.unwrap();
    assert_eq!(db.active_alerts().await.unwrap().len(), 1);

    // Another ingester's engine owns db-01: its set leaves web-01's alone.
    db.record(&AnalyticsRecord {
        active: Some(ActiveSet {
            scopes: vec!["db-01".into()],
            alerts: vec![active(Some("db-01"), AlertState::Firing)],
            full: false,
        }),
        ..AnalyticsRecord::default()
    })
    .await
    .unwrap();
    let ids: Vec<Option<String>> = db
        .active_alerts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.machine_id)
        .collect();
    assert_eq!(
        ids,
        vec![Some("db-01".into()), Some("web-01".into())],
        "firing first"
    );
}

#[tokio::test]
async fn retention_removes_scores_with_their_samples_and_old_alert_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let old = T0;
    let new = T0 + 3.0 * 86400.0;
    db.write(Batch::from(vec![
        sample("web-01", old, 10.0),
        sample("web-01", new, 10.0),
    ]))
    .await
    .unwrap();
    db.record(&AnalyticsRecord {
        scores: vec![score("web-01", old, 0.9), score("web-01", new, 0.9)],
        events: vec![
            event("web-01", old, AlertState::Firing),
            event("web-01", new, AlertState::Firing),
        ],
        ..AnalyticsRecord::default()
    })
    .await
    .unwrap();
    db.maintain_at(new + 10.0).await.unwrap();
    let scores = db.anomaly_scores("web-01", 0.0, new + 1.0).await.unwrap();
    assert_eq!(scores.len(), 1, "the old sample's score went with it");
    assert_eq!(scores[0].timestamp, new);
    let history = db.alert_history(0.0, 100).await.unwrap();
    assert_eq!(
        history.len(),
        1,
        "history older than the rollup retention is gone"
    );
    assert_eq!(history[0].at, new);
}

/// Runs an analytics service on `live` (one batch) with `out` as its sink,
/// warmed from `store` when given; returns its counters.
async fn analyse_live(
    live: Vec<Snapshot>,
    out: std::sync::Arc<SqliteSink>,
    store: Option<std::sync::Arc<SqliteSink>>,
) -> std::sync::Arc<sysmon_analytics::AnalyticsStats> {
    use sysmon_analytics::{AnalyticsEngine, AnalyticsService, Config};
    let engine = AnalyticsEngine::from_config(&Config::default()).unwrap();
    let mut service = AnalyticsService::new(engine);
    service.add_sink(out);
    if let Some(store) = store {
        service.warm_from(store);
    }
    let stats = service.stats();
    let (tx, rx) = tokio::sync::broadcast::channel(4);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(service.run(rx, stop.clone()));
    tx.send(Batch::from(live)).unwrap();
    stop.cancel();
    task.await.unwrap().unwrap();
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_new_to_the_detector_is_warmed_from_its_stored_history() {
    // 600 s of a steady machine stored by another ingester (or before a
    // restart), then its next samples arrive here: 5 ordinary, then a spike.
    let noise = |i: usize| ((i * 7919) % 13) as f64 / 6.0 - 1.0;
    let history: Vec<Snapshot> = (0..600)
        .map(|i| sample("db-01", T0 + i as f64, 20.0 + noise(i)))
        .collect();
    let live: Vec<Snapshot> = (600..606)
        .map(|i| {
            sample(
                "db-01",
                T0 + i as f64,
                if i == 605 { 97.0 } else { 20.0 + noise(i) },
            )
        })
        .collect();
    let spike = T0 + 605.0;

    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(&dir));
    store.write(Batch::from(history)).await.unwrap();
    store.write(Batch::from(live.clone())).await.unwrap();

    // Warmed: the spike is flagged at once, with the stored baseline.
    let warm_dir = tempfile::tempdir().unwrap();
    let warm_out = std::sync::Arc::new(open(&warm_dir));
    warm_out.write(Batch::from(live.clone())).await.unwrap();
    let stats = analyse_live(live.clone(), warm_out.clone(), Some(store.clone())).await;
    assert_eq!(
        stats
            .warmed_machines
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let flagged = warm_out.anomalies(Some("db-01"), 0.0, 100).await.unwrap();
    assert_eq!(
        flagged.iter().map(|a| a.timestamp).collect::<Vec<_>>(),
        vec![spike],
        "{flagged:?}"
    );

    // Cold (no store to warm from): six samples are still the warm-up, in
    // which nothing is flagged.
    let cold_dir = tempfile::tempdir().unwrap();
    let cold_out = std::sync::Arc::new(open(&cold_dir));
    cold_out.write(Batch::from(live.clone())).await.unwrap();
    let stats = analyse_live(live, cold_out.clone(), None).await;
    assert_eq!(
        stats
            .warmed_machines
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(cold_out
        .anomalies(Some("db-01"), 0.0, 100)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn episodes_are_stored_updated_while_open_and_read_back_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    analytics_common::episodes_round_trip(&db, T0).await;
}
