//! PostgresSink against the machine's real PostgreSQL server, each test in a
//! database of its own (created and dropped by `sysmon_testkit::postgres`):
//! exact round trips, idempotent replays, partitions and retention by DROP,
//! rollups, migrations, analytics, the maintenance lock handover, and the
//! faults (connections cut, a read-only database).

mod analytics_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sysmon_analytics::alerts::{ActiveAlert, AlertEvent, AlertState, Severity};
use sysmon_analytics::{ActiveSet, AnalyticsRecord, AnalyticsSink, AnomalyScore, FLEET_SCOPE};
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::{Batch, CollectorFailure, Sink, SinkError, Snapshot, SnapshotStore};
use sysmon_sinks::postgres::schema::{LATEST_VERSION, MIGRATIONS};
use sysmon_sinks::postgres::{PostgresConfig, PostgresSink};
use sysmon_testkit::postgres::TestDatabase;

const HOUR: f64 = 3600.0;

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A whole minute, a few minutes ago.
fn recent_minute() -> f64 {
    ((now() - 600.0) / 60.0).floor() * 60.0
}

fn config(db: &TestDatabase) -> PostgresConfig {
    PostgresConfig {
        url: db.url(),
        pool_size: 4,
        ..PostgresConfig::default()
    }
}

async fn open(db: &TestDatabase) -> PostgresSink {
    PostgresSink::open(&config(db)).await.expect("open")
}

fn count(db: &TestDatabase, table: &str) -> i64 {
    db.sql(&format!("SELECT count(*) FROM {table}"))
        .parse()
        .unwrap()
}

fn batch(v: Vec<Snapshot>) -> Batch {
    Arc::from(v)
}

/// `machines` machines × `per_machine` snapshots a second apart from `t0`,
/// with every optional part set on some of them.
fn fleet(t0: f64, machines: usize, per_machine: usize) -> Vec<Snapshot> {
    let mut out = Vec::new();
    for m in 0..machines {
        let mut synth = SyntheticMachine::new(format!("pg-{m:02}"), m as u64 + 1);
        for i in 0..per_machine {
            let mut s = synth.next_snapshot(t0 + i as f64 + 0.25, 3);
            if i == 1 {
                s.labels = BTreeMap::from([("rack".into(), "r1".into())]);
                s.custom_metrics = BTreeMap::from([("queue_depth".into(), 17.5)]);
                s.collector_errors = vec![CollectorFailure {
                    collector: "disk".into(),
                    message: "permission denied".into(),
                }];
            }
            if i == 2 {
                s.top_cpu_processes.clear();
                s.top_mem_processes.clear();
            }
            if i % 3 == 0 {
                sysmon_core::synth::fill_host_details(&mut s);
            }
            out.push(s);
        }
    }
    out
}

fn sorted(mut v: Vec<Snapshot>) -> Vec<Snapshot> {
    v.sort_by(|a, b| {
        a.timestamp_millis()
            .cmp(&b.timestamp_millis())
            .then(a.machine_id.cmp(&b.machine_id))
    });
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_round_trip_exactly_and_replays_never_duplicate() {
    let db = TestDatabase::create();
    let sink = open(&db).await;
    let t0 = recent_minute();
    let input = fleet(t0, 3, 5);
    sink.write(batch(input.clone())).await.unwrap();

    let back = sink.range(None, t0 - 1.0, t0 + HOUR, 1000).await.unwrap();
    assert_eq!(back, sorted(input.clone()));
    assert_eq!(count(&db, "samples"), 15);
    assert_eq!(
        count(&db, "processes"),
        12,
        "no row for the 3 snapshots without processes"
    );

    // A replay of the same batch changes nothing.
    sink.write(batch(input.clone())).await.unwrap();
    assert_eq!(count(&db, "samples"), 15);
    assert_eq!(count(&db, "processes"), 12);
    assert_eq!(count(&db, "machines"), 3);

    // A replay with different content overwrites; one without processes drops them.
    let mut changed = input[0].clone();
    changed.cpu_usage = 77.0;
    changed.top_cpu_processes.clear();
    changed.top_mem_processes.clear();
    // The same key twice in one batch: the last one wins.
    let mut first = changed.clone();
    first.cpu_usage = 11.0;
    sink.write(batch(vec![first, changed.clone()]))
        .await
        .unwrap();
    assert_eq!(count(&db, "samples"), 15);
    assert_eq!(count(&db, "processes"), 11);
    let latest = sink.range(Some("pg-00"), t0, t0 + 0.5, 10).await.unwrap();
    assert_eq!(latest, vec![changed]);

    // The store API.
    let machines = sink.machines().await.unwrap();
    assert_eq!(
        machines
            .iter()
            .map(|m| m.machine_id.as_str())
            .collect::<Vec<_>>(),
        ["pg-00", "pg-01", "pg-02"]
    );
    assert_eq!(machines[1].hostname.as_deref(), Some("pg-01.example"));
    assert_eq!(machines[1].last_seen, t0 + 4.25);
    let newest = sink.latest("pg-02").await.unwrap().unwrap();
    assert_eq!(&newest, input.last().unwrap());
    assert_eq!(sink.latest("nobody").await.unwrap(), None);
    assert_eq!(sink.latest_all().await.unwrap().len(), 3);
    // Bounds are exact: since inclusive, until exclusive.
    let one = sink
        .range(Some("pg-01"), t0 + 1.25, t0 + 2.25, 10)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].timestamp, t0 + 1.25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_new_and_stored_samples_is_merged_once_and_both_write_ways_store_the_same() {
    let db = TestDatabase::create();
    let sink = open(&db).await;
    let t0 = recent_minute();
    let all = fleet(t0, 3, 6);
    let (old, new): (Vec<Snapshot>, Vec<Snapshot>) =
        all.iter().cloned().partition(|s| s.timestamp < t0 + 3.0);
    // New samples: the direct COPY.
    sink.write(batch(old.clone())).await.unwrap();
    assert_eq!(count(&db, "samples"), old.len() as i64);
    // Half stored, half new, the stored half changed: the COPY meets a stored
    // key, the batch is merged instead; nothing doubles, the change wins.
    let mut mixed: Vec<Snapshot> = old.clone();
    for s in &mut mixed {
        s.cpu_usage = 42.0;
    }
    mixed.extend(new.iter().cloned());
    sink.write(batch(mixed.clone())).await.unwrap();
    assert_eq!(count(&db, "samples"), all.len() as i64);
    let back = sink.range(None, t0 - 1.0, t0 + HOUR, 1000).await.unwrap();
    assert_eq!(back, sorted(mixed.clone()));
    // The merge way alone (what every batch did before) stores the same.
    let other = TestDatabase::create();
    let merged = open(&other).await;
    merged.set_merge_only(true);
    merged.write(batch(old.clone())).await.unwrap();
    merged.write(batch(mixed.clone())).await.unwrap();
    let back2 = merged.range(None, t0 - 1.0, t0 + HOUR, 1000).await.unwrap();
    assert_eq!(back2, back);
    for table in ["samples", "processes", "dirty_minutes", "machines"] {
        assert_eq!(count(&db, table), count(&other, table), "{table}");
    }
    // Every (machine, minute) written is queued for the rollups.
    assert_eq!(
        db.sql(
            "SELECT count(*) FROM (SELECT DISTINCT machine, date_bin('1 minute', time, \
             timestamptz 'epoch') FROM samples) k \
             WHERE NOT EXISTS (SELECT 1 FROM dirty_minutes d \
             WHERE (d.machine, d.minute) = (k.machine, k.date_bin))"
        ),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_fleet_is_the_newest_sample_of_each_recent_machine_and_the_lead_is_the_lock() {
    use sysmon_analytics::SharedFleet;
    let db = TestDatabase::create();
    let a = open(&db).await;
    let b = open(&db).await;
    let t0 = recent_minute();
    let mut rows = fleet(t0, 2, 4);
    // A machine last seen an hour earlier.
    let mut stale = SyntheticMachine::new("pg-stale", 9).next_snapshot(t0 - HOUR, 3);
    stale.cpu_usage = 5.0;
    rows.push(stale);
    a.write(batch(rows.clone())).await.unwrap();
    let latest = b.fleet_latest(t0 - 60.0).await.unwrap();
    let ids: Vec<&str> = latest.iter().map(|s| s.machine_id.as_str()).collect();
    assert_eq!(ids, ["pg-00", "pg-01"]);
    for s in &latest {
        let want = rows
            .iter()
            .filter(|r| r.machine_id == s.machine_id)
            .max_by(|x, y| x.timestamp.total_cmp(&y.timestamp))
            .unwrap();
        assert_eq!(s.timestamp, want.timestamp);
        assert_eq!(s.cpu_usage, want.cpu_usage);
        assert!(s.top_cpu_processes.is_empty(), "processes are left out");
    }
    assert_eq!(b.fleet_latest(t0 - 2.0 * HOUR).await.unwrap().len(), 3);
    // One lead: the maintenance lock.
    assert!(a.lead_fleet().await.unwrap());
    assert!(!b.lead_fleet().await.unwrap());
    assert!(a.leads_maintenance());
    // The fleet's stored active alerts, machine alerts left out.
    let set = ActiveSet {
        scopes: vec![FLEET_SCOPE.to_string(), "pg-00".into()],
        alerts: vec![
            alert(None, AlertState::Firing, t0),
            alert(Some("pg-00"), AlertState::Firing, t0),
        ],
        full: false,
    };
    a.record(&AnalyticsRecord {
        active: Some(set),
        ..AnalyticsRecord::default()
    })
    .await
    .unwrap();
    let fleet_alerts = b.fleet_active().await.unwrap();
    assert_eq!(fleet_alerts.len(), 1);
    assert_eq!(fleet_alerts[0].machine_id, None);
    assert_eq!(fleet_alerts[0].since, t0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_created_ahead_and_retention_drops_whole_partitions() {
    let db = TestDatabase::create();
    let sink = open(&db).await;
    let now = now();
    let old = ((now - 5.0 * HOUR) / 60.0).floor() * 60.0;
    let recent = recent_minute();
    let mut rows = fleet(old, 2, 10);
    rows.extend(fleet(recent, 2, 10));
    sink.write(batch(rows)).await.unwrap();
    assert_eq!(count(&db, "samples"), 40);
    assert_eq!(count(&db, "dirty_minutes"), 4);

    // The first pass rolls up, then drops the hour that is past the (1 h) retention.
    let sink = PostgresSink::open(&PostgresConfig {
        raw_retention: Duration::from_secs(3600),
        ..config(&db)
    })
    .await
    .unwrap();
    let report = sink
        .maintain_at(now)
        .await
        .unwrap()
        .expect("the only ingester leads");
    assert_eq!(report.minutes_rolled_up, 4);
    assert_eq!(report.partitions_dropped, 2, "{report:?}"); // samples and processes of the old hour
    assert_eq!(
        count(&db, "samples"),
        20,
        "the old hour went with its partition"
    );
    assert_eq!(count(&db, "rollups"), 4, "its rollups stay");
    assert_eq!(count(&db, "dirty_minutes"), 0);
    let ahead = db.sql(&format!(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'samples'::regclass \
         AND inhrelid::regclass::text = 'samples_p' || to_char(to_timestamp({}) AT TIME ZONE 'UTC', 'YYYYMMDDHH24')",
        now + 5.0 * HOUR
    ));
    assert_eq!(ahead, "1", "partitions exist 6 h ahead");
    let n_old: String = db.sql(&format!(
        "SELECT n FROM rollup_metrics WHERE machine_id = 'pg-00' AND time = to_timestamp({old})"
    ));
    assert_eq!(n_old, "10");

    // Rollups are idempotent: a replay of the recent minute recomputes the same values.
    let before = db.sql("SELECT string_agg(r::text, ';' ORDER BY machine, minute) FROM rollups r");
    sink.write(batch(fleet(recent, 2, 10))).await.unwrap();
    sink.maintain_at(now).await.unwrap().unwrap();
    assert_eq!(
        db.sql("SELECT string_agg(r::text, ';' ORDER BY machine, minute) FROM rollups r"),
        before
    );

    // A very late sample of the dropped hour is stored again, but the complete
    // minute's rollup is kept rather than replaced by one from that sample alone.
    let mut late = fleet(old, 1, 1);
    late[0].cpu_usage = 99.0;
    late[0].timestamp = old + 30.0;
    sink.write(batch(late)).await.unwrap();
    sink.maintain_at(now).await.unwrap().unwrap();
    assert_eq!(
        db.sql(&format!(
            "SELECT n FROM rollup_metrics WHERE machine_id = 'pg-00' AND time = to_timestamp({old})"
        )),
        "10"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_is_upgraded_in_place_and_a_newer_one_refused() {
    let db = TestDatabase::create();
    // Schema version 1, as an older sysmon left it, with a machine in it.
    db.sql(&format!(
        "BEGIN; {} INSERT INTO sysmon_meta VALUES ('schema_version', '1'); \
         INSERT INTO machines (machine_id, hostname, last_seen) VALUES ('old-01', 'old', 1); COMMIT;",
        MIGRATIONS[0]
    ));
    assert_eq!(db.sql("SELECT to_regclass('anomaly_scores') IS NULL"), "t");
    let sink = open(&db).await;
    assert_eq!(
        db.sql("SELECT value FROM sysmon_meta WHERE key = 'schema_version'"),
        LATEST_VERSION.to_string()
    );
    assert_eq!(db.sql("SELECT to_regclass('anomaly_scores') IS NULL"), "f");
    assert_eq!(sink.machines().await.unwrap()[0].machine_id, "old-01");
    // Opening again does nothing.
    drop(sink);
    open(&db).await;

    // A newer schema is refused untouched.
    db.sql("UPDATE sysmon_meta SET value = '99' WHERE key = 'schema_version'");
    let err = PostgresSink::open(&config(&db))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("newer sysmon") && err.contains("99"), "{err}");
    assert_eq!(
        db.sql("SELECT value FROM sysmon_meta WHERE key = 'schema_version'"),
        "99"
    );

    // So is a database holding another application's `samples`.
    let other = TestDatabase::create();
    other.sql("CREATE TABLE samples (id int)");
    let err = PostgresSink::open(&config(&other))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a sysmon database"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ingester_maintains_and_another_takes_over_when_it_dies() {
    let db = TestDatabase::create();
    let a = open(&db).await;
    let b = open(&db).await;
    let t = now();
    assert!(
        a.maintain_at(t).await.unwrap().is_some(),
        "a takes the lock"
    );
    assert!(
        b.maintain_at(t).await.unwrap().is_none(),
        "b must not maintain meanwhile"
    );
    assert!(a.leads_maintenance() && !b.leads_maintenance());
    assert!(a.maintain_at(t).await.unwrap().is_some(), "a keeps it");

    // a's host dies: the server drops its session (as it does when the
    // connection breaks) and with it the lock. Only this test's database:
    // tests running beside it hold the same advisory lock in theirs.
    db.sql(
        "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l \
         WHERE l.locktype = 'advisory' AND l.granted \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.maintain_at(t).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "b never took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.leads_maintenance());
    assert!(
        a.maintain_at(t).await.unwrap().is_none(),
        "a (back) must not lead too"
    );
    assert!(!a.leads_maintenance());

    // A clean stop hands over too.
    b.step_down().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.maintain_at(t).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "a never took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_writes_as_unavailable_and_nothing_is_lost_or_duplicated() {
    let db = TestDatabase::create();
    let sink = open(&db).await;
    let t0 = recent_minute();
    let first = fleet(t0, 2, 5);
    sink.write(batch(first.clone())).await.unwrap();

    db.cut_off();
    let second = fleet(t0 + 10.0, 2, 5);
    let err = sink.write(batch(second.clone())).await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err}");
    assert!(sink.range(None, 0.0, f64::INFINITY, 10).await.is_err());

    db.reopen();
    // The ingester retries the batch it kept; a replay of the first is harmless.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match sink.write(batch(second.clone())).await {
            Ok(()) => break,
            Err(e) => {
                assert!(matches!(e, SinkError::Unavailable { .. }), "{e}");
                assert!(Instant::now() < deadline, "never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    sink.write(batch(first.clone())).await.unwrap();
    let mut all = first;
    all.extend(second);
    let back = sink.range(None, t0 - 1.0, t0 + HOUR, 1000).await.unwrap();
    assert_eq!(back, sorted(all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_pauses_writes_with_a_clear_error_until_it_is_writable() {
    let db = TestDatabase::create();
    let sink = open(&db).await;
    let t0 = recent_minute();
    db.admin(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        db.name()
    ));
    // Sessions pick the setting up when they start.
    db.cut_off();
    db.reopen();
    let rows = fleet(t0, 1, 3);
    let err = loop {
        match sink.write(batch(rows.clone())).await {
            Err(e) if e.to_string().contains("read-only") => break e,
            Err(e) => {
                // The pool first notices its connections were closed.
                assert!(matches!(e, SinkError::Unavailable { .. }), "{e}");
            }
            Ok(()) => panic!("a read-only database accepted a write"),
        }
    };
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("ingestion is paused"), "{err}");
    assert_eq!(count(&db, "samples"), 0);

    db.admin(&format!(
        "ALTER DATABASE {} RESET default_transaction_read_only",
        db.name()
    ));
    db.cut_off();
    db.reopen();
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(e) = sink.write(batch(rows.clone())).await {
        assert!(Instant::now() < deadline, "never resumed: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&db, "samples"), 3);
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

fn alert(id: Option<&str>, state: AlertState, since: f64) -> ActiveAlert {
    ActiveAlert {
        rule: "cpu_high".into(),
        severity: Severity::Warning,
        machine_id: id.map(str::to_string),
        subject: None,
        state,
        since,
        value: 93.0,
        // What the engine lists: the firing message, or a description.
        message: match (state, id) {
            (AlertState::Firing, Some(id)) => format!("cpu_usage on {id} is 93.0 > 80"),
            _ => "cpu_high pending".into(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_are_stored_and_active_alerts_replaced_per_scope() {
    let db = TestDatabase::create();
    let sink = open(&db).await;
    let t0 = recent_minute();
    sink.write(batch(fleet(t0, 2, 3))).await.unwrap();
    let fired = AlertEvent {
        rule: "cpu_high".into(),
        severity: Severity::Warning,
        machine_id: Some("pg-00".into()),
        subject: None,
        state: AlertState::Firing,
        value: 93.0,
        at: t0 + 2.0,
        message: "cpu_usage on pg-00 is 93.0 > 80".into(),
    };
    let record = AnalyticsRecord {
        episodes: Vec::new(),
        scores: vec![
            score("pg-00", t0 + 0.25, 0.1),
            score("pg-00", t0 + 1.25, 0.9),
            score("unknown", t0, 0.9),
        ],
        events: vec![fired],
        active: Some(ActiveSet {
            scopes: vec!["pg-00".into(), FLEET_SCOPE.into()],
            alerts: vec![alert(Some("pg-00"), AlertState::Firing, t0 + 2.0)],
            full: false,
        }),
    };
    AnalyticsSink::record(&sink, &record).await.unwrap();
    AnalyticsSink::record(&sink, &record).await.unwrap();
    assert_eq!(
        count(&db, "anomaly_scores"),
        2,
        "scores are idempotent; unknown machines skipped"
    );
    assert_eq!(count(&db, "anomaly_scores WHERE anomaly"), 1);
    assert_eq!(count(&db, "alert_events"), 2, "every transition is history");
    assert_eq!(
        db.sql("SELECT message FROM active_alerts WHERE machine_id = 'pg-00'"),
        "cpu_usage on pg-00 is 93.0 > 80"
    );

    // Another ingester owns pg-01: its set leaves pg-00's alone.
    let other = AnalyticsRecord {
        episodes: Vec::new(),
        scores: Vec::new(),
        events: Vec::new(),
        active: Some(ActiveSet {
            scopes: vec!["pg-01".into()],
            alerts: vec![alert(Some("pg-01"), AlertState::Pending, t0)],
            full: false,
        }),
    };
    AnalyticsSink::record(&sink, &other).await.unwrap();
    assert_eq!(count(&db, "active_alerts"), 2);
    // pg-00's engine resolves its alert: only its scopes are cleared.
    let resolved = AnalyticsRecord {
        episodes: Vec::new(),
        scores: Vec::new(),
        events: Vec::new(),
        active: Some(ActiveSet {
            scopes: vec!["pg-00".into(), FLEET_SCOPE.into()],
            alerts: Vec::new(),
            full: false,
        }),
    };
    AnalyticsSink::record(&sink, &resolved).await.unwrap();
    assert_eq!(
        db.sql("SELECT machine_id || ':' || state FROM active_alerts"),
        "pg-01:pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn episodes_are_stored_updated_while_open_and_read_back_newest_first() {
    let db = TestDatabase::create();
    let sink = open(&db).await;
    analytics_common::episodes_round_trip(&sink, recent_minute()).await;
}
