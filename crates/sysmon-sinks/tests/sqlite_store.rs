//! SqliteSink against real SQLite files: exact round trips, idempotent
//! replays, the store API, rollups, retention and downsampled series.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use sysmon_core::config::SqliteConfig;
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::{
    Batch, CollectorFailure, DiskIo, NetworkIo, ProcessInfo, Sink, SinkError, Snapshot,
    SnapshotStore,
};
use sysmon_sinks::sqlite::{FleetAgg, Metric, SeriesSource, SqliteSink};
use tempfile::TempDir;

/// 2025-11-25T16:00:00Z, a whole minute.
const T0: f64 = 1_764_086_400.0;
const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;

fn open(dir: &TempDir) -> SqliteSink {
    SqliteSink::open(&config(dir)).expect("open")
}

fn config(dir: &TempDir) -> SqliteConfig {
    SqliteConfig {
        path: dir.path().join("nested/dir/sysmon.db"),
        ..SqliteConfig::default()
    }
}

fn raw_conn(dir: &TempDir) -> Connection {
    Connection::open(dir.path().join("nested/dir/sysmon.db")).unwrap()
}

fn count(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn batch(v: Vec<Snapshot>) -> Batch {
    Arc::from(v)
}

/// A snapshot exactly as the legacy Python producer sends it: no sysmon fields.
fn legacy(machine: &str, ts: f64) -> Snapshot {
    Snapshot {
        machine_id: machine.into(),
        timestamp: ts,
        cpu_usage: 0.0,
        memory_usage: 63.2,
        disk_io: DiskIo {
            read: 1_234_567,
            write: 7_654_321,
        },
        network_io: NetworkIo {
            sent: 42,
            recv: 4242,
        },
        top_cpu_processes: vec![ProcessInfo {
            pid: 1,
            name: "python3".into(),
            cpu_percent: 0.0,
            memory_percent: None,
            memory_bytes: None,
            ..ProcessInfo::default()
        }],
        top_mem_processes: vec![],
        schema_version: 0,
        ..Snapshot::default()
    }
}

/// A varied set: synthetic machines with 10 processes, odd fractions of a
/// millisecond, `memory_percent: None`, labels, collector errors, custom
/// metrics, counters beyond i64, and legacy snapshots.
fn varied_snapshots() -> Vec<Snapshot> {
    let mut out = Vec::new();
    for (i, id) in ["web-01", "db-01", "cache-01"].iter().enumerate() {
        let mut m = SyntheticMachine::new(*id, i as u64 + 1);
        for k in 0..20 {
            let mut s = m.next_snapshot(T0 + k as f64 + 0.123_456_7 * i as f64, 10);
            if k % 3 == 0 {
                s.top_cpu_processes[2].memory_percent = None;
                s.top_mem_processes[0].memory_bytes = None;
            }
            if k % 4 == 1 {
                s.labels = BTreeMap::from([
                    ("role".to_string(), "db".to_string()),
                    ("région".to_string(), "eu-west \"1\"".to_string()),
                ]);
                s.collector_errors = vec![CollectorFailure {
                    collector: "disk".into(),
                    message: "permission denied: /proc/diskstats".into(),
                }];
                s.custom_metrics = BTreeMap::from([
                    ("app.queue_depth".to_string(), 17.5),
                    ("app.tiny".to_string(), 1e-300),
                ]);
                s.disk_rate = None;
                s.load_avg = None;
            }
            if k % 5 == 2 {
                sysmon_core::synth::fill_host_details(&mut s);
            }
            if k == 7 {
                s.disk_io.read = u64::MAX;
                s.memory = None;
                s.cpu_per_core.clear();
                s.filesystems.clear();
                s.top_cpu_processes.clear();
                s.top_mem_processes.clear();
                s.hostname = None;
            }
            out.push(s);
        }
    }
    out.push(legacy("legacy-7", T0 + 5.25));
    out.push(legacy("legacy-7", T0 + 6.000_999));
    out
}

fn sorted(mut v: Vec<Snapshot>) -> Vec<Snapshot> {
    v.sort_by(|a, b| {
        a.timestamp_millis()
            .cmp(&b.timestamp_millis())
            .then_with(|| a.machine_id.cmp(&b.machine_id))
    });
    v
}

#[tokio::test]
async fn snapshots_round_trip_exactly() {
    let dir = TempDir::new().unwrap();
    let sink = open(&dir);
    let all = varied_snapshots();
    // Two batches, interleaved machines.
    let (a, b) = all.split_at(31);
    sink.write(batch(a.to_vec())).await.unwrap();
    sink.write(batch(b.to_vec())).await.unwrap();

    let back = sink.range(None, T0 - 1.0, T0 + HOUR, 10_000).await.unwrap();
    let expected = sorted(all.clone());
    assert_eq!(back.len(), expected.len());
    for (got, want) in back.iter().zip(&expected) {
        // Field by field first, for a readable failure...
        assert_eq!(got.machine_id, want.machine_id);
        assert_eq!(got.timestamp.to_bits(), want.timestamp.to_bits());
        assert_eq!(got.top_cpu_processes, want.top_cpu_processes);
        assert_eq!(got.top_mem_processes, want.top_mem_processes);
        assert_eq!(got.labels, want.labels);
        assert_eq!(got.collector_errors, want.collector_errors);
        assert_eq!(got.custom_metrics, want.custom_metrics);
        assert_eq!(got.cpu_per_core, want.cpu_per_core);
        assert_eq!(got.filesystems, want.filesystems);
        assert_eq!(got.memory, want.memory);
        assert_eq!(got.pressure, want.pressure);
        assert_eq!(got.disks, want.disks);
        assert_eq!(got.tcp, want.tcp);
        assert_eq!(got.top_cpu_cgroups, want.top_cpu_cgroups);
        assert_eq!(got.top_mem_cgroups, want.top_mem_cgroups);
        // ...then the whole snapshot.
        assert_eq!(got, want);
    }
    let legacy_back = sink.latest("legacy-7").await.unwrap().unwrap();
    assert_eq!(legacy_back, legacy("legacy-7", T0 + 6.000_999));
    assert!(legacy_back.is_legacy());
    assert_eq!(legacy_back.top_cpu_processes[0].memory_percent, None);
    assert_eq!(legacy_back.hostname, None);
    assert_eq!(legacy_back.load_avg, None);
    assert!(
        back.iter().filter(|s| s.tcp.is_some()).count() >= 6,
        "host details were among the stored samples"
    );
}

#[tokio::test]
async fn a_replayed_batch_never_duplicates_and_updates_values() {
    let dir = TempDir::new().unwrap();
    let sink = open(&dir);
    let first = varied_snapshots();
    sink.write(batch(first.clone())).await.unwrap();
    let conn = raw_conn(&dir);
    let counts = |c: &Connection| {
        (
            count(c, "samples"),
            count(c, "processes"),
            count(c, "machines"),
        )
    };
    let before = counts(&conn);
    assert_eq!(before.0, first.len() as i64);
    assert_eq!(before.2, 4);

    // Same batch again: nothing changes.
    sink.write(batch(first.clone())).await.unwrap();
    assert_eq!(counts(&conn), before);

    // Same keys, new values: rows are replaced, not added.
    let mut second = first.clone();
    for s in &mut second {
        s.cpu_usage = 99.5;
        s.top_cpu_processes.truncate(1);
    }
    sink.write(batch(second.clone())).await.unwrap();
    assert_eq!(counts(&conn), before);
    let back = sink.range(None, T0 - 1.0, T0 + HOUR, 10_000).await.unwrap();
    assert_eq!(back, sorted(second));
}

#[tokio::test]
async fn invalid_snapshots_are_refused_with_the_field_named_and_nothing_is_written() {
    let dir = TempDir::new().unwrap();
    let sink = open(&dir);
    let mut bad = varied_snapshots();
    bad[5].cpu_usage = f64::NAN;
    let err = sink.write(batch(bad)).await.unwrap_err();
    let SinkError::Failed {
        sink: name,
        message,
        ..
    } = err
    else {
        panic!("expected Failed, got {err:?}")
    };
    assert_eq!(name, "sqlite");
    assert!(message.contains("cpu_usage"), "{message}");
    assert!(message.contains("snapshot 5"), "{message}");
    assert_eq!(count(&raw_conn(&dir), "samples"), 0);
}

#[tokio::test]
async fn store_api_orders_limits_and_bounds() {
    let dir = TempDir::new().unwrap();
    let sink = open(&dir);
    let mut a = SyntheticMachine::new("a", 1);
    let mut b = SyntheticMachine::new("b", 2);
    let mut v = Vec::new();
    for k in 0..10 {
        v.push(b.next_snapshot(T0 + k as f64, 3));
        v.push(a.next_snapshot(T0 + k as f64, 3));
    }
    // Written newest first: the store must sort.
    v.reverse();
    sink.write(batch(v)).await.unwrap();

    let machines = sink.machines().await.unwrap();
    assert_eq!(
        machines
            .iter()
            .map(|m| m.machine_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(machines[0].hostname.as_deref(), Some("a.example"));
    assert_eq!(machines[0].last_seen, T0 + 9.0);

    // All machines, oldest first, ties broken by machine id; limit applies.
    let r = sink.range(None, T0, T0 + 100.0, 5).await.unwrap();
    let keys: Vec<(f64, &str)> = r
        .iter()
        .map(|s| (s.timestamp - T0, s.machine_id.as_str()))
        .collect();
    assert_eq!(
        keys,
        [(0.0, "a"), (0.0, "b"), (1.0, "a"), (1.0, "b"), (2.0, "a")]
    );

    // since inclusive, until exclusive.
    let r = sink
        .range(Some("b"), T0 + 2.0, T0 + 5.0, 100)
        .await
        .unwrap();
    assert_eq!(
        r.iter().map(|s| s.timestamp - T0).collect::<Vec<_>>(),
        [2.0, 3.0, 4.0]
    );
    assert!(r.iter().all(|s| s.machine_id == "b"));
    assert!(sink
        .range(Some("b"), T0, T0 + 100.0, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(sink
        .range(Some("nope"), T0, T0 + 100.0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(sink
        .range(None, T0 + 5.0, T0 + 5.0, 10)
        .await
        .unwrap()
        .is_empty());

    let latest = sink.latest("a").await.unwrap().unwrap();
    assert_eq!(latest.timestamp, T0 + 9.0);
    assert_eq!(sink.latest("nope").await.unwrap(), None);
    let all = sink.latest_all().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].machine_id, "a");
    assert_eq!(all[1].machine_id, "b");
    assert!(all.iter().all(|s| s.timestamp == T0 + 9.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_is_in_wal_mode_and_readers_run_while_the_writer_writes() {
    let dir = TempDir::new().unwrap();
    let sink = open(&dir);
    let mode: String = raw_conn(&dir)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    let writer = {
        let sink = sink.clone();
        tokio::spawn(async move {
            let mut m = SyntheticMachine::new("w", 3);
            for k in 0..50 {
                let v: Vec<Snapshot> = (0..200)
                    .map(|i| m.next_snapshot(T0 + (k * 200 + i) as f64, 10))
                    .collect();
                sink.write(batch(v)).await.unwrap();
            }
        })
    };
    let mut seen = 0;
    while !writer.is_finished() {
        let n = sink
            .range(Some("w"), T0, T0 + DAY, 100_000)
            .await
            .unwrap()
            .len();
        assert!(n >= seen, "a reader saw rows disappear");
        assert_eq!(n % 200, 0, "a reader saw half a batch");
        seen = n;
    }
    writer.await.unwrap();
    let n = sink
        .range(Some("w"), T0, T0 + DAY, 100_000)
        .await
        .unwrap()
        .len();
    assert_eq!(n, 10_000);
}

/// Samples of one machine in minute `T0`: cpu 10, 20, 60 (avg 30, max 60),
/// memory 50, 52, 54; one legacy sample without rates or load.
fn minute_batch() -> Vec<Snapshot> {
    let mut m = SyntheticMachine::new("m", 5);
    let mut v = Vec::new();
    for (k, (cpu, mem)) in [(10.0, 50.0), (20.0, 52.0), (60.0, 54.0)]
        .into_iter()
        .enumerate()
    {
        let mut s = m.next_snapshot(T0 + 10.0 * k as f64, 2);
        s.cpu_usage = cpu;
        s.memory_usage = mem;
        s.disk_rate = Some(sysmon_core::IoRate {
            read: 1000.0 * (k + 1) as f64,
            write: 0.0,
        });
        s.load_avg = Some(sysmon_core::LoadAvg {
            one: k as f64,
            five: 0.0,
            fifteen: 0.0,
        });
        v.push(s);
    }
    let mut l = legacy("m", T0 + 45.0);
    l.cpu_usage = 90.0;
    l.memory_usage = 44.0;
    v.push(l);
    v
}

type RollupRow = (i64, f64, f64, f64, f64, f64, i64, f64, f64, i64, f64);

fn rollup_row(conn: &Connection, minute_ms: i64) -> Option<RollupRow> {
    conn.query_row(
        "SELECT n, cpu_avg, cpu_min, cpu_max, mem_avg, mem_max, n_disk, disk_read_avg, \
         disk_read_max, n_load, load1_max FROM rollups WHERE minute_ms = ?1",
        [minute_ms],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        },
    )
    .ok()
}

#[tokio::test]
async fn rollups_are_exact_idempotent_and_outlive_raw_samples() {
    let dir = TempDir::new().unwrap();
    let sink = open(&dir);
    let conn = raw_conn(&dir);
    let minute = (T0 * 1000.0) as i64;
    sink.write(batch(minute_batch())).await.unwrap();
    assert_eq!(count(&conn, "rollups"), 0, "rollups wait for maintenance");

    let report = sink.maintain_at(T0 + 120.0).await.unwrap();
    assert_eq!(report.minutes_rolled_up, 1);
    assert_eq!(report.raw_deleted, 0);
    // cpu (10+20+60+90)/4 = 45, max 90; mem (50+52+54+44)/4 = 50, max 54;
    // disk read only from the 3 sysmon samples: (1000+2000+3000)/3 = 2000, max 3000;
    // load1 max 2.
    let expected = (4, 45.0, 10.0, 90.0, 50.0, 54.0, 3, 2000.0, 3000.0, 3, 2.0);
    assert_eq!(rollup_row(&conn, minute), Some(expected));

    // Replays (twice) and a maintenance pass: the rollup does not move.
    sink.write(batch(minute_batch())).await.unwrap();
    sink.write(batch(minute_batch())).await.unwrap();
    let report = sink.maintain_at(T0 + 180.0).await.unwrap();
    assert_eq!(report.minutes_rolled_up, 1);
    assert_eq!(rollup_row(&conn, minute), Some(expected));
    assert_eq!(count(&conn, "samples"), 4);

    // A corrected value in a replay is reflected: cpu 90 -> 30 gives avg 30.
    let mut fixed = minute_batch();
    fixed[3].cpu_usage = 30.0;
    sink.write(batch(fixed)).await.unwrap();
    sink.maintain_at(T0 + 190.0).await.unwrap();
    let row = rollup_row(&conn, minute).unwrap();
    assert_eq!((row.0, row.1, row.3), (4, 30.0, 60.0));

    // 24 h later (plus the minute): raw samples go, rollups stay.
    let report = sink.maintain_at(T0 + DAY + 61.0).await.unwrap();
    assert_eq!(report.raw_deleted, 4);
    assert_eq!(count(&conn, "samples"), 0);
    assert_eq!(count(&conn, "processes"), 0);
    assert_eq!(rollup_row(&conn, minute).unwrap().0, 4);
    assert_eq!(sink.latest("m").await.unwrap(), None);
    assert_eq!(sink.machines().await.unwrap().len(), 1, "still has rollups");
    let s = sink
        .series("m", Metric::Cpu, T0 - HOUR, T0 + HOUR, 1000)
        .await
        .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].count, s[0].avg, s[0].max), (4, 30.0, 60.0));

    // A very late replay of that minute is stored but does not replace the
    // rollup computed from the complete minute.
    sink.write(batch(minute_batch()[..1].to_vec()))
        .await
        .unwrap();
    sink.maintain_at(T0 + DAY + 62.0).await.unwrap();
    assert_eq!(rollup_row(&conn, minute).unwrap().0, 4);
    assert_eq!(
        count(&conn, "samples"),
        0,
        "the late sample is past retention"
    );

    // 30 days later: rollups go too, and the machine is forgotten.
    let report = sink.maintain_at(T0 + 31.0 * DAY).await.unwrap();
    assert_eq!(report.rollups_deleted, 1);
    assert_eq!(report.machines_forgotten, 1);
    assert_eq!(count(&conn, "rollups"), 0);
    assert!(sink.machines().await.unwrap().is_empty());
}

#[tokio::test]
async fn retention_is_configurable() {
    let dir = TempDir::new().unwrap();
    let sink = SqliteSink::open(&SqliteConfig {
        raw_retention: Duration::from_secs(3600),
        rollup_retention: Duration::from_secs(2 * 3600),
        ..config(&dir)
    })
    .unwrap();
    let mut m = SyntheticMachine::new("m", 1);
    let v: Vec<Snapshot> = (0..3 * 60)
        .map(|k| m.next_snapshot(T0 + 60.0 * k as f64, 1))
        .collect();
    sink.write(batch(v)).await.unwrap();
    let now = T0 + 3.0 * HOUR;
    let report = sink.maintain_at(now).await.unwrap();
    assert_eq!(report.minutes_rolled_up, 180);
    // Raw: minutes before now - 1 h go (120 of them); rollups: before now - 2 h (60).
    assert_eq!(report.raw_deleted, 120);
    assert_eq!(report.rollups_deleted, 60);

    let err = SqliteSink::open(&SqliteConfig {
        raw_retention: Duration::from_secs(0),
        ..config(&dir)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("raw_retention"), "{err}");
}

/// 10 minutes of 1 s samples from `T0`; cpu cycles 0..=99.
fn ten_minutes(machine: &str, seed: u64, cpu: impl Fn(usize) -> f64) -> Vec<Snapshot> {
    let mut m = SyntheticMachine::new(machine, seed);
    (0..600)
        .map(|k| {
            let mut s = m.next_snapshot(T0 + k as f64, 1);
            s.cpu_usage = cpu(k);
            s
        })
        .collect()
}

#[tokio::test]
async fn series_buckets_hold_the_right_counts_and_values() {
    let dir = TempDir::new().unwrap();
    let sink = open(&dir);
    let cpu = |k: usize| (k % 100) as f64;
    sink.write(batch(ten_minutes("m", 1, cpu))).await.unwrap();

    // 600 s in at most 11 points: width ceil(600 s / 10) = 60 s, 10 buckets.
    let s = sink
        .series("m", Metric::Cpu, T0, T0 + 600.0, 11)
        .await
        .unwrap();
    assert_eq!(s.len(), 10);
    for (i, b) in s.iter().enumerate() {
        let vals: Vec<f64> = (i * 60..(i + 1) * 60).map(cpu).collect();
        assert_eq!(b.ts, T0 + 60.0 * i as f64);
        assert_eq!(b.count, 60);
        let min = vals.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let avg = vals.iter().sum::<f64>() / 60.0;
        assert_eq!((b.min, b.max), (min, max), "bucket {i}");
        assert!((b.avg - avg).abs() < 1e-9, "bucket {i}: {} vs {avg}", b.avg);
    }

    // Sub-range, fine buckets: 20 s in 21 points = 1 s buckets, one sample each.
    let s = sink
        .series("m", Metric::Cpu, T0 + 100.0, T0 + 120.0, 21)
        .await
        .unwrap();
    assert_eq!(s.len(), 20);
    assert!(s.iter().all(|b| b.count == 1 && b.min == b.max));
    assert_eq!(s[0].avg, 0.0); // k = 100
    assert_eq!(s[19].avg, 19.0);

    // Never more than max_points.
    for n in [2, 3, 7, 100, 599, 600, 1000] {
        let s = sink
            .series("m", Metric::Cpu, T0 + 0.5, T0 + 599.5, n)
            .await
            .unwrap();
        assert!(s.len() <= n, "{} buckets for max_points {n}", s.len());
        assert_eq!(s.iter().map(|b| b.count).sum::<u64>(), 599);
    }

    // Other metrics come from their own columns.
    let mem = sink
        .series("m", Metric::Memory, T0, T0 + 600.0, 2)
        .await
        .unwrap();
    assert_eq!(mem.iter().map(|b| b.count).sum::<u64>(), 600);
    assert!(mem.iter().all(|b| b.min > 0.0 && b.max <= 100.0));

    // Unknown machine: empty; bad ranges: errors.
    assert!(sink
        .series("nope", Metric::Cpu, T0, T0 + 600.0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(sink
        .series("m", Metric::Cpu, T0 + 10.0, T0, 10)
        .await
        .is_err());
    assert!(sink
        .series("m", Metric::Cpu, T0, T0 + 10.0, 0)
        .await
        .is_err());
    // A metric of the vocabulary that is not charted has no stored series.
    for m in [
        Metric::SwapUsage,
        Metric::FilesystemUsage,
        Metric::PressureCpuSome,
    ] {
        let e = sink
            .series("m", m, T0, T0 + 600.0, 10)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no stored series; charted: cpu, memory"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn rollup_series_agree_with_raw_and_include_minutes_not_rolled_up_yet() {
    let dir = TempDir::new().unwrap();
    let sink = open(&dir);
    let cpu = |k: usize| ((k * 7) % 101) as f64;
    let all = ten_minutes("m", 1, cpu);
    // First 6 minutes written and rolled up (the 6th partly: 330 samples).
    sink.write(batch(all[..330].to_vec())).await.unwrap();
    sink.maintain_at(T0 + 330.0).await.unwrap();
    // The rest arrives after maintenance, not rolled up yet.
    sink.write(batch(all[330..].to_vec())).await.unwrap();

    let raw = sink
        .series_from("m", Metric::Cpu, T0, T0 + 600.0, 11, SeriesSource::Raw)
        .await
        .unwrap();
    let rolled = sink
        .series_from("m", Metric::Cpu, T0, T0 + 600.0, 11, SeriesSource::Rollups)
        .await
        .unwrap();
    assert_eq!(raw.len(), 10);
    assert_eq!(rolled.len(), 10);
    for (r, o) in raw.iter().zip(&rolled) {
        assert_eq!((r.ts, r.count, r.min, r.max), (o.ts, o.count, o.min, o.max));
        assert!((r.avg - o.avg).abs() < 1e-9);
    }

    // A long range (> 6 h) goes to rollups automatically: still every sample once.
    let long = sink
        .series("m", Metric::Cpu, T0 - 6.0 * HOUR, T0 + 600.0, 1000)
        .await
        .unwrap();
    assert_eq!(long.iter().map(|b| b.count).sum::<u64>(), 600);
    assert!(long.iter().all(|b| (b.ts * 1000.0) as i64 % 60_000 == 0));
    assert_eq!(long.iter().map(|b| b.max).fold(0.0, f64::max), 100.0);
}

#[tokio::test]
async fn fleet_series_combine_machines() {
    let dir = TempDir::new().unwrap();
    let sink = open(&dir);
    for (i, (id, cpu)) in [("a", 10.0), ("b", 20.0), ("c", 60.0)].iter().enumerate() {
        let v = ten_minutes(id, i as u64, |_| *cpu);
        sink.write(batch(v)).await.unwrap();
    }
    // c only for the first 5 minutes: drop its rows after that.
    raw_conn(&dir)
        .execute(
            "DELETE FROM samples WHERE key >> 42 = (SELECT id FROM machines WHERE machine_id = 'c') \
             AND key & ((1 << 42) - 1) >= ?1",
            [((T0 + 300.0) * 1000.0) as i64],
        )
        .unwrap();

    let avg = sink
        .fleet_series(Metric::Cpu, T0, T0 + 600.0, 11, FleetAgg::Avg)
        .await
        .unwrap();
    assert_eq!(avg.len(), 10);
    for (i, b) in avg.iter().enumerate() {
        if i < 5 {
            assert_eq!((b.machines, b.count), (3, 180));
            assert_eq!((b.value, b.min, b.max), (30.0, 10.0, 60.0));
        } else {
            assert_eq!((b.machines, b.count), (2, 120));
            assert_eq!((b.value, b.min, b.max), (15.0, 10.0, 20.0));
        }
    }
    let max = sink
        .fleet_series(Metric::Cpu, T0, T0 + 600.0, 11, FleetAgg::Max)
        .await
        .unwrap();
    assert_eq!(max[0].value, 60.0);
    assert_eq!(max[9].value, 20.0);

    // Rollups give the same answer once maintained.
    sink.maintain_at(T0 + 700.0).await.unwrap();
    let rolled = sink
        .fleet_series_from(
            Metric::Cpu,
            T0,
            T0 + 600.0,
            11,
            FleetAgg::Avg,
            SeriesSource::Rollups,
        )
        .await
        .unwrap();
    assert_eq!(rolled, avg);
}

#[tokio::test]
async fn in_memory_sink_works_for_tests() {
    let sink = SqliteSink::open_in_memory().unwrap();
    let v = varied_snapshots();
    sink.write(batch(v.clone())).await.unwrap();
    let back = sink.range(None, 0.0, f64::INFINITY, 1000).await.unwrap();
    assert_eq!(back, sorted(v));
    sink.maintain_at(T0 + 60.0).await.unwrap();
    assert!(!sink
        .series("web-01", Metric::Cpu, T0, T0 + 60.0, 10)
        .await
        .unwrap()
        .is_empty());

    // The trait's maintain uses the wall clock.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut m = SyntheticMachine::new("recent", 1);
    let old = m.next_snapshot(now - 2.0 * DAY, 1);
    let new = m.next_snapshot(now - 120.0, 1);
    sink.write(batch(vec![old, new.clone()])).await.unwrap();
    sysmon_core::Sink::maintain(&sink).await.unwrap();
    let left = sink
        .range(Some("recent"), now - 3.0 * DAY, now, 10)
        .await
        .unwrap();
    assert_eq!(left, vec![new], "raw older than 24 h is gone");
    let rolled = sink
        .series_from(
            "recent",
            Metric::Cpu,
            now - 3.0 * DAY,
            now,
            10,
            SeriesSource::Rollups,
        )
        .await
        .unwrap();
    assert_eq!(rolled.iter().map(|b| b.count).sum::<u64>(), 2);
}

#[tokio::test]
async fn a_fleet_larger_than_one_rollup_chunk_is_rolled_up_completely() {
    // 250 machines x 2 minutes: maintenance works through them a hundred
    // machines per transaction (so writes interleave) and misses none.
    let dir = TempDir::new().unwrap();
    let sink = open(&dir);
    let conn = raw_conn(&dir);
    let mut all = Vec::new();
    for m in 0..250 {
        for k in 0..4 {
            let mut s = Snapshot::new(format!("fleet-{m:03}"), T0 + 30.0 * k as f64);
            s.cpu_usage = (m % 100) as f64;
            s.memory_usage = 40.0;
            all.push(s);
        }
    }
    sink.write(batch(all)).await.unwrap();
    let report = sink.maintain_at(T0 + 300.0).await.unwrap();
    assert_eq!(report.minutes_rolled_up, 500);
    assert_eq!(count(&conn, "rollups"), 500);
    assert_eq!(count(&conn, "dirty_minutes"), 0);
    let wrong: i64 = conn
        .query_row(
            "SELECT count(*) FROM rollups r JOIN machines m ON m.id = r.machine
             WHERE r.n != 2 OR r.cpu_avg != CAST(substr(m.machine_id, 7) AS INTEGER) % 100",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(wrong, 0, "every machine-minute holds its own two samples");
}

#[tokio::test]
async fn sparklines_in_one_read_equal_each_machines_series() {
    use sysmon_core::read::{HistoryReader, SeriesQuery};
    let dir = tempfile::tempdir().unwrap();
    let sink = open(&dir);
    let ids: Vec<String> = ["a-01", "b-01", "c-01"].map(String::from).to_vec();
    let mut batch = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut g = SyntheticMachine::new(id.clone(), 40 + i as u64);
        for k in 0..(2 * 3600 / 5) {
            batch.push(g.next_snapshot(T0 + 5.0 * k as f64, 0));
        }
    }
    sink.write(batch.into()).await.unwrap();
    let end = T0 + 7200.0;
    let mut asked = ids.clone();
    asked.push("unknown".into());
    // A raw window (one statement), then, after maintenance, a rollup window.
    for (since, points, maintain) in [(end - 900.0, 60, false), (end - 86_400.0, 100, true)] {
        if maintain {
            sink.maintain_at(end - 1800.0).await.unwrap();
        }
        let all = HistoryReader::sparklines(&sink, &asked, Metric::Swap, since, end, points)
            .await
            .unwrap();
        assert_eq!(all.len(), 3, "the unknown machine is left out");
        for id in &ids {
            let one = HistoryReader::series(
                &sink,
                &SeriesQuery::machine(id.clone(), Metric::Swap, since, end, points),
            )
            .await
            .unwrap();
            assert!(!one.is_empty());
            assert_eq!(all[id], one, "{id} from {since}");
        }
    }
}
