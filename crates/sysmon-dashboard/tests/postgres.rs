//! The dashboard served from a real PostgreSQL history (the local server,
//! a database of its own per test via `sysmon_testkit::postgres`): the same
//! ingest and analytics write the same snapshots into SQLite and PostgreSQL,
//! and every API answer read from PostgreSQL equals the one read from SQLite,
//! for raw windows and, after a maintenance pass, for rollup windows.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use sysmon_analytics::{AnalyticsEngine, AnalyticsService, Config};
use sysmon_core::config::{IngestConfig, SqliteConfig};
use sysmon_core::ingest::SinkRole;
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::{channel_transport, Batch, Ingest, Sink, Snapshot, Transport};
use sysmon_dashboard::{now_epoch_secs, Dashboard, StoredAnalytics};
use sysmon_sinks::postgres::{PostgresConfig, PostgresSink};
use sysmon_sinks::sqlite::SqliteSink;
use sysmon_testkit::postgres::TestDatabase;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const MACHINES: [&str; 3] = ["db-01", "web-01", "web-02"];

/// Three machines over the last hour every 5 s, and `web-01` at 95 % CPU
/// every second of the last 90 s, through ingest + analytics into both stores.
async fn seed(sqlite: &SqliteSink, pg: &PostgresSink, now: f64) {
    let mut all: Vec<Snapshot> = Vec::new();
    for (i, id) in MACHINES.iter().enumerate() {
        let mut g = SyntheticMachine::new(*id, 7 + i as u64);
        for k in 0..720 {
            all.push(g.next_snapshot(now - 3600.0 + 5.0 * k as f64, 3));
        }
    }
    let mut g = SyntheticMachine::new("web-01", 99);
    for k in 0..90 {
        let mut s = g.next_snapshot(now - 90.0 + k as f64 + 0.5, 3);
        s.cpu_usage = 95.0;
        all.push(s);
    }
    all.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
    // Labels, for the table's label filter and the grouped map and spread.
    for s in &mut all {
        let role = if s.machine_id.starts_with("db") {
            "db"
        } else {
            "web"
        };
        s.labels.insert("role".into(), role.into());
    }

    let (tx, rx) = channel_transport(16);
    let mut ingest = Ingest::new(Box::new(rx), IngestConfig::default());
    ingest.add_sink(Arc::new(sqlite.clone()), SinkRole::Required);
    ingest.add_sink(Arc::new(pg.clone()), SinkRole::Required);
    let mut service =
        AnalyticsService::new(AnalyticsEngine::from_config(&Config::default()).unwrap());
    service.add_sink(Arc::new(sqlite.clone()));
    service.add_sink(Arc::new(pg.clone()));
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
}

fn app<S>(store: Arc<S>) -> Router
where
    S: sysmon_core::HistoryReader + sysmon_core::AnalyticsReader + 'static,
{
    Dashboard::new(store.clone())
        .with_analytics(Arc::new(StoredAnalytics::new(store)))
        .into_router(CancellationToken::new())
        .0
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let r = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// `a` and `b` are equal, numbers to 1e-9 relative (the stores sum in
/// different orders); keys in `skip` (times of the request) are not compared.
fn same(a: &Value, b: &Value, path: &str, skip: &[&str]) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0) {
                Ok(())
            } else {
                Err(format!("{path}: {x} != {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!("{path}: {} items != {} items", x.len(), y.len()));
            }
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                same(p, q, &format!("{path}[{i}]"), skip)?;
            }
            Ok(())
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys = |o: &serde_json::Map<String, Value>| {
                o.keys()
                    .filter(|k| !skip.contains(&k.as_str()))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            if keys(x) != keys(y) {
                return Err(format!("{path}: keys {:?} != {:?}", keys(x), keys(y)));
            }
            for k in keys(x) {
                same(&x[&k], &y[&k], &format!("{path}.{k}"), skip)?;
            }
            Ok(())
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{path}: {a} != {b}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_api_answers_from_postgresql_as_from_sqlite() {
    let db = TestDatabase::create();
    let pg = PostgresSink::open(&PostgresConfig {
        url: db.url(),
        ..PostgresConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteSink::open(&SqliteConfig {
        path: dir.path().join("t.db"),
        ..SqliteConfig::default()
    })
    .unwrap();
    let now = now_epoch_secs().floor();
    seed(&sqlite, &pg, now).await;
    let from_pg = app(Arc::new(pg.clone()));
    let from_sqlite = app(Arc::new(sqlite.clone()));

    // Windows given explicitly, so both answers describe the same instant.
    let w = |secs: f64| format!("since={}&until={}", now - secs, now + 1.0);
    let mut uris = vec![
        "/api/machines".to_string(),
        "/api/machines/web-01/latest".into(),
        "/api/machines/web-01/processes".into(),
        format!("/api/machines/web-01/cores?{}", w(300.0)),
        "/api/alerts".into(),
        format!("/api/anomalies?{}", w(3600.0)),
        format!("/api/episodes?{}", w(3600.0)),
        format!("/api/episodes?machine=web-01&{}", w(3600.0)),
        format!("/api/scatter?{}", w(900.0)),
        "/api/overview?range=15m".into(),
        "/api/overview?range=1h&spark=memory&points=30".into(),
        // Fleet-scale parameters (issue 16): paging, sort, search, filters.
        "/api/machines?sort=cpu&limit=2".into(),
        "/api/machines?sort=memory&order=asc&limit=2&offset=1".into(),
        "/api/machines?q=WEB&order=desc".into(),
        "/api/machines?label=role:web&status=online".into(),
        "/api/machines?sort=hostname&status=offline".into(),
        "/api/overview?range=15m&sort=load1&limit=2".into(),
        "/api/overview?range=15m&label=role:db".into(),
        "/api/top?metric=cpu&n=2".into(),
        "/api/top?metric=memory&n=3&order=asc".into(),
        "/api/map?metric=cpu".into(),
        "/api/map?metric=memory&group=role".into(),
        "/api/fleet/summary?metric=cpu&group=role".into(),
        format!("/api/scatter?machines=2&{}", w(900.0)),
    ];
    for metric in ["cpu", "memory", "disk_read", "net_sent", "load1", "swap"] {
        for secs in [300.0, 3600.0] {
            uris.push(format!(
                "/api/machines/web-01/series?metric={metric}&{}",
                w(secs)
            ));
        }
        for (agg, secs) in [("avg", 600.0), ("max", 3600.0)] {
            uris.push(format!("/api/fleet?metric={metric}&agg={agg}&{}", w(secs)));
        }
        // Grouped by a label (issue 16): every group, and one named group
        // plus "other".
        for secs in [600.0, 3600.0] {
            uris.push(format!("/api/fleet?metric={metric}&group=role&{}", w(secs)));
        }
    }
    uris.push(format!(
        "/api/fleet?metric=cpu&group=role&groups=1&{}",
        w(600.0)
    ));
    uris.push(format!(
        "/api/fleet?metric=memory&group=role&label=role:web&{}",
        w(900.0)
    ));
    let skip = ["now", "age_secs", "last_seen"];
    for uri in &uris {
        let (s1, v1) = get(&from_sqlite, uri).await;
        let (s2, v2) = get(&from_pg, uri).await;
        assert_eq!(s1, StatusCode::OK, "{uri}: {v1}");
        assert_eq!(s2, StatusCode::OK, "{uri}: {v2}");
        if let Err(e) = same(&v1, &v2, uri, &skip) {
            panic!("{e}\nsqlite: {v1}\npostgres: {v2}");
        }
    }

    // A cursor walk over one-machine pages gives every machine once, the
    // same from both stores (a cursor encodes the sort key and the id, so
    // one store's cursor continues the other's walk).
    for sort in ["machine_id", "cpu", "hostname"] {
        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let uri = format!("/api/machines?sort={sort}&limit=1{cursor}");
            let (_, v1) = get(&from_sqlite, &uri).await;
            let (_, v2) = get(&from_pg, &uri).await;
            if let Err(e) = same(&v1, &v2, &uri, &skip) {
                panic!("{e}\nsqlite: {v1}\npostgres: {v2}");
            }
            seen.extend(
                v1["machines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["machine_id"].as_str().unwrap().to_string()),
            );
            match v1["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        seen.sort();
        assert_eq!(seen, MACHINES, "sort={sort}");
    }

    // What the pages show is there: every machine with a sparkline, the
    // series with its buckets, the alert the hot machine raised.
    let (_, overview) = get(&from_pg, "/api/overview?range=15m").await;
    let rows = overview["machines"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert!(!r["spark"]["ts"].as_array().unwrap().is_empty(), "{r}");
    }
    let (_, series) = get(
        &from_pg,
        &format!("/api/machines/web-01/series?metric=cpu&{}", w(300.0)),
    )
    .await;
    assert!(
        series["max"]
            .as_array()
            .unwrap()
            .contains(&Value::from(95.0)),
        "{series}"
    );
    let (_, alerts) = get(&from_pg, "/api/alerts").await;
    assert_eq!(alerts["available"], true);
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["machine_id"] == "web-01"),
        "{alerts}"
    );
    let (s, _) = get(&from_pg, "/api/machines/nope/series?metric=cpu").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The health probe asks for a machine id PostgreSQL text cannot hold.
    let (s, health) = get(&from_pg, "/healthz").await;
    assert_eq!(
        (s, &health["status"]),
        (StatusCode::OK, &Value::from("ok")),
        "{health}"
    );

    // A maintenance pass as of 20 minutes ago, then a late sample into a
    // rolled-up minute (dirty until the next pass): long windows come from
    // the rollups, the newest 20 minutes and the dirty minute from raw
    // samples, in both stores.
    let long_windows = [
        format!("/api/machines/db-01/series?metric=cpu&{}", w(86_400.0)),
        format!(
            "/api/machines/web-02/series?metric=swap&{}",
            w(7.0 * 86_400.0)
        ),
        format!("/api/fleet?metric=memory&agg=max&{}", w(86_400.0)),
        format!("/api/fleet?metric=cpu&group=role&{}", w(86_400.0)),
        "/api/overview?range=24h".to_string(),
    ];
    sqlite.maintain_at(now - 1200.0).await.unwrap();
    assert!(pg.maintain_at(now - 1200.0).await.unwrap().is_some());
    let mut late = SyntheticMachine::new("db-01", 5).next_snapshot(now - 1800.0 + 2.5, 3);
    late.cpu_usage = 99.5;
    late.labels.insert("role".into(), "db".into());
    let late: Batch = vec![late].into();
    sqlite.write(late.clone()).await.unwrap();
    pg.write(late).await.unwrap();
    for uri in &long_windows {
        let (s1, v1) = get(&from_sqlite, uri).await;
        let (s2, v2) = get(&from_pg, uri).await;
        assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{uri}");
        if let Err(e) = same(&v1, &v2, uri, &skip) {
            panic!("partly rolled up: {e}\nsqlite: {v1}\npostgres: {v2}");
        }
    }
    let (_, series) = get(&from_pg, &long_windows[0]).await;
    assert!(
        series["max"]
            .as_array()
            .unwrap()
            .contains(&Value::from(99.5)),
        "the late sample's dirty minute is read from raw samples: {series}"
    );

    // After a maintenance pass long windows come from the rollups (plus the
    // minutes not rolled up yet) in both stores.
    sqlite.maintain_at(now + 120.0).await.unwrap();
    assert!(pg.maintain_at(now + 120.0).await.unwrap().is_some());
    for uri in &long_windows {
        let (s1, v1) = get(&from_sqlite, uri).await;
        let (s2, v2) = get(&from_pg, uri).await;
        assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{uri}");
        assert!(
            v2.get("ts")
                .is_none_or(|ts| !ts.as_array().unwrap().is_empty()),
            "{uri}: {v2}"
        );
        if let Err(e) = same(&v1, &v2, uri, &skip) {
            panic!("{e}\nsqlite: {v1}\npostgres: {v2}");
        }
    }
}
