//! Alerts, anomalies and forecasts end to end: snapshots go through the real
//! ingest path (channel transport, `Ingest`, `SqliteSink`), the analytics
//! service scores them from the ingester's broadcast and stores the results in
//! the same database, and the dashboard's API serves them through
//! `StoredAnalytics`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use sysmon_analytics::tracegen::{generate, TraceConfig};
use sysmon_analytics::Config;
use sysmon_analytics::{AnalyticsEngine, AnalyticsService, AnomalyDetector};
use sysmon_core::config::{IngestConfig, SqliteConfig};
use sysmon_core::ingest::SinkRole;
use sysmon_core::{channel_transport, Filesystem, Ingest, Snapshot, Transport};
use sysmon_dashboard::{now_epoch_secs, Dashboard, HistoryReader, StoredAnalytics};
use sysmon_sinks::sqlite::SqliteSink;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    sink: SqliteSink,
    trace: Vec<Snapshot>,
    now: f64,
}

/// A machine at `cpu` %, whose `/data` filesystem fills at 1 MB/s.
fn hot(id: &str, t: f64, cpu: f64, now: f64) -> Snapshot {
    let mut s = Snapshot::new(id, t);
    s.cpu_usage = cpu;
    s.memory_usage = 30.0;
    let total: u64 = 100_000_000_000;
    let used = 40_000_000_000 + ((t - now + 100.0) * 1e6) as u64;
    s.filesystems.push(Filesystem {
        mount_point: "/data".into(),
        fs_type: "ext4".into(),
        total_bytes: total,
        used_bytes: used,
        available_bytes: total - used,
    });
    s
}

/// 3 labelled machines over the last 20 minutes, `hot-01` at 95 % CPU for the
/// last 60 s, `hot-02` hot for 60 s and then back to 10 %: all through ingest
/// and analytics into one SQLite file.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sink = SqliteSink::open(&SqliteConfig {
        path: dir.path().join("t.db"),
        ..SqliteConfig::default()
    })
    .unwrap();
    let now = now_epoch_secs().floor();
    let trace = generate(&TraceConfig {
        machines: 3,
        samples: 1200,
        start: now - 1200.0,
        seed: 2001,
        ..TraceConfig::default()
    })
    .snapshots;
    let mut all = trace.clone();
    for k in 0..60 {
        all.push(hot("hot-01", now - 60.0 + k as f64, 95.0, now));
    }
    for k in 0..80 {
        let cpu = if k < 60 { 95.0 } else { 10.0 };
        all.push(hot("hot-02", now - 90.0 + k as f64, cpu, now));
    }
    all.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));

    let (tx, rx) = channel_transport(16);
    let mut ingest = Ingest::new(Box::new(rx), IngestConfig::default());
    ingest.add_sink(Arc::new(sink.clone()), SinkRole::Required);
    let mut service =
        AnalyticsService::new(AnalyticsEngine::from_config(&Config::default()).unwrap());
    service.add_sink(Arc::new(sink.clone()));
    let stop = CancellationToken::new();
    let analytics = tokio::spawn(service.run(ingest.subscribe(), stop.clone()));
    let ingest_task = tokio::spawn(ingest.run(CancellationToken::new()));
    for chunk in all.chunks(500) {
        tx.publish(chunk).await.unwrap();
    }
    drop(tx);
    ingest_task.await.unwrap().unwrap();
    stop.cancel();
    analytics.await.unwrap().unwrap();
    Fixture {
        _dir: dir,
        sink,
        trace,
        now,
    }
}

fn app(f: &Fixture) -> Router {
    let source: Arc<dyn HistoryReader> = Arc::new(f.sink.clone());
    Dashboard::new(source)
        .with_analytics(Arc::new(StoredAnalytics::new(Arc::new(f.sink.clone()))))
        .into_router(CancellationToken::new())
        .0
}

async fn get(app: &Router, uri: &str) -> Value {
    let r = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{uri}");
    let body = r.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn anomalies_are_the_online_detectors_verdicts_with_their_samples() {
    let f = fixture().await;
    // The same detector run directly on the trace: what the API must list.
    let mut detector = AnomalyDetector::new(Config::default().anomaly).unwrap();
    let mut want: Vec<(String, f64)> = f
        .trace
        .iter()
        .filter_map(|s| detector.observe(s))
        .filter(|s| s.anomaly)
        .map(|s| (s.machine_id, s.timestamp))
        .collect();
    assert!(
        want.len() >= 10,
        "the trace has injected events: {}",
        want.len()
    );

    let v = get(&app(&f), "/api/anomalies?range=1h").await;
    assert_eq!(v["available"], true);
    let list = v["anomalies"].as_array().unwrap();
    let mut got: Vec<(String, f64)> = list
        .iter()
        .filter(|a| a["machine_id"].as_str().unwrap().starts_with("trace-"))
        .map(|a| {
            (
                a["machine_id"].as_str().unwrap().to_string(),
                a["timestamp"].as_f64().unwrap(),
            )
        })
        .collect();
    want.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    got.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    assert_eq!(got, want);
    for a in list {
        assert!(a["score"].as_f64().unwrap() >= 0.5, "{a}");
        assert!(
            a["cpu"].as_f64().is_some(),
            "the sample's CPU is joined: {a}"
        );
        assert!(a["memory"].as_f64().is_some(), "{a}");
        assert!(!a["message"].as_str().unwrap().is_empty(), "{a}");
    }

    // Flags that persist are episodes: every flagged sample lies in exactly
    // one episode of its machine, and there are no more episodes than flags.
    let v = get(&app(&f), "/api/episodes?range=1h").await;
    assert_eq!(v["available"], true);
    let episodes: Vec<&serde_json::Value> = v["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["machine_id"].as_str().unwrap().starts_with("trace-"))
        .collect();
    assert!(!episodes.is_empty() && episodes.len() <= want.len(), "{v}");
    for (m, t) in &want {
        let holding = episodes
            .iter()
            .filter(|e| {
                e["machine_id"] == m.as_str()
                    && e["start"].as_f64().unwrap() <= *t
                    && *t <= e["end"].as_f64().unwrap()
            })
            .count();
        assert_eq!(holding, 1, "{m} at {t}: {v}");
    }
    for e in &episodes {
        assert!(e["peak_score"].as_f64().unwrap() >= 0.5, "{e}");
        assert!(e["samples"].as_u64().unwrap() >= 1, "{e}");
        assert!(!e["metrics"].as_array().unwrap().is_empty(), "{e}");
        assert!(!e["reasons"].as_array().unwrap().is_empty(), "{e}");
    }

    // One machine's anomalies only.
    let id = &want[0].0;
    let v = get(&app(&f), &format!("/api/anomalies?range=1h&machine={id}")).await;
    let mine = v["anomalies"].as_array().unwrap();
    assert_eq!(mine.len(), want.iter().filter(|(m, _)| m == id).count());

    // The scatter marks them.
    let v = get(&app(&f), "/api/scatter?range=1h").await;
    let marked = v["points"]
        .as_array()
        .map(|p| p.iter().filter(|p| p["anomaly"] == true).count())
        .unwrap_or(0);
    assert!(marked > 0, "{v}");

    // Every sample was scored and stored.
    let scores = f
        .sink
        .anomaly_scores(id, f.now - 3600.0, f.now + 1.0)
        .await
        .unwrap();
    let samples = f.trace.iter().filter(|s| &s.machine_id == id).count();
    assert_eq!(scores.len(), samples);
}

#[tokio::test]
async fn alerts_fire_after_their_duration_and_resolved_ones_are_listed() {
    let f = fixture().await;
    let v = get(&app(&f), "/api/alerts").await;
    assert_eq!(v["available"], true);
    let alerts = v["alerts"].as_array().unwrap();
    let find = |machine: &str, state: &str| {
        alerts
            .iter()
            .find(|a| a["machine_id"] == machine && a["rule"] == "cpu_high" && a["state"] == state)
    };
    let firing = find("hot-01", "firing").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(firing["severity"], "warning");
    assert!(
        firing["message"].as_str().unwrap().contains("hot-01"),
        "{firing}"
    );
    assert!(firing["value"].as_f64().unwrap() > 80.0);
    assert!(find("hot-02", "resolved").is_some(), "{v}");
    assert!(find("hot-02", "firing").is_none(), "{v}");

    // The history in SQLite: hot-02 fired once and resolved once.
    let history = f.sink.alert_history(f.now - 3600.0, 1000).await.unwrap();
    let hot2: Vec<_> = history
        .iter()
        .filter(|e| e.machine_id.as_deref() == Some("hot-02") && e.rule == "cpu_high")
        .map(|e| e.state.name())
        .collect();
    assert_eq!(hot2, vec!["resolved", "firing"], "newest first");
}

#[tokio::test]
async fn forecasts_continue_the_series_with_a_band() {
    let f = fixture().await;
    let id = f.trace[0].machine_id.clone();
    let v = get(&app(&f), &format!("/api/machines/{id}/forecast")).await;
    assert_eq!(v["available"], true);
    let list = v["forecasts"].as_array().unwrap();
    let cpu = list
        .iter()
        .find(|x| x["metric"] == "cpu")
        .unwrap_or_else(|| panic!("{v}"));
    let ts: Vec<f64> = cpu["ts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    assert_eq!(ts.len(), 10);
    assert!(ts.windows(2).all(|w| w[1] > w[0]));
    let last = f
        .trace
        .iter()
        .filter(|s| s.machine_id == id)
        .map(|s| s.timestamp)
        .fold(f64::MIN, f64::max);
    assert!(
        (ts[9] - (last + 300.0)).abs() < 1e-6,
        "ends 5 minutes after the last sample"
    );
    for i in 0..10 {
        let (lo, val, hi) = (
            cpu["lower"][i].as_f64().unwrap(),
            cpu["value"][i].as_f64().unwrap(),
            cpu["upper"][i].as_f64().unwrap(),
        );
        assert!(
            (0.0..=100.0).contains(&val) && lo <= val && val <= hi,
            "{cpu}"
        );
    }
    assert!(
        list.iter().any(|x| x["metric"] == "net_sent"),
        "rates too: {v}"
    );
    // An unknown machine is a 404, as on every per-machine route.
    let r = app(&f)
        .oneshot(
            Request::get("/api/machines/nope/forecast")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn alerts_grouped_by_rule_on_the_server_count_every_alert_and_list_a_few() {
    let f = fixture().await;
    let app = app(&f);
    let flat = get(&app, "/api/alerts").await;
    let all = flat["alerts"].as_array().unwrap();
    assert!(all.len() >= 2, "{flat}");
    let v = get(&app, "/api/alerts?group=rule").await;
    assert_eq!(v["total"], all.len());
    let groups = v["groups"].as_array().unwrap();
    let counted: u64 = groups.iter().map(|g| g["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, all.len() as u64, "{v}");
    for g in groups {
        let rule = g["rule"].as_str().unwrap();
        let want = all.iter().filter(|a| a["rule"] == rule).count();
        assert_eq!(g["count"], want, "{g}");
        let firing = all
            .iter()
            .filter(|a| a["rule"] == rule && a["state"] == "firing")
            .count();
        assert_eq!(g["firing"], firing, "{g}");
        let listed = g["alerts"].as_array().unwrap();
        assert!(listed.iter().all(|a| a["rule"] == rule), "{g}");
        assert_eq!(listed.len() + g["more"].as_u64().unwrap() as usize, want);
    }
    // A group with a firing alert comes first; hot-01's cpu_high is listed.
    assert!(groups[0]["firing"].as_u64().unwrap() > 0, "{v}");
    let cpu = groups.iter().find(|g| g["rule"] == "cpu_high").unwrap();
    assert_eq!(cpu["alerts"][0]["state"], "firing", "firing first: {cpu}");
    assert!(
        cpu["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["machine_id"] == "hot-01" && a["state"] == "firing"),
        "{cpu}"
    );

    // One listed per group, the rest counted; one rule only.
    let one = get(&app, "/api/alerts?group=rule&per_group=1").await;
    for g in one["groups"].as_array().unwrap() {
        let n = g["count"].as_u64().unwrap();
        assert_eq!(g["alerts"].as_array().unwrap().len() as u64, n.min(1));
        assert_eq!(g["more"].as_u64().unwrap(), n - n.min(1));
    }
    let only = get(&app, "/api/alerts?group=rule&rule=cpu_high").await;
    assert_eq!(only["groups"].as_array().unwrap().len(), 1, "{only}");
    assert_eq!(only["total"], cpu["count"]);

    for bad in [
        "/api/alerts?group=machine",
        "/api/alerts?group=rule&per_group=0",
        "/api/alerts?group=rule&per_group=5000",
    ] {
        let r = app
            .clone()
            .oneshot(Request::get(bad).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}
