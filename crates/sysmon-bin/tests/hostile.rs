//! Hostile and broken input against a real tansu broker and the `sysmon`
//! binary (issue 11): nothing halts ingestion, nothing forged sticks, every
//! rejection lands in the dead-letter topic with a bounded reason, and an
//! ingester killed ten times with SIGKILL still stores everything exactly once.
//!
//! `SYSMON_TEST_SYSMON=/path/to/sysmon` runs these against another build of
//! the binary (how the stall of the original ingester was reproduced).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sysmon_core::agent::now_epoch_secs;
use sysmon_core::{encode_json, Snapshot};
use sysmon_testkit::process::{poll_until, Proc};
use sysmon_testkit::tansu::TansuBroker;

fn sysmon() -> String {
    std::env::var("SYSMON_TEST_SYSMON").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sysmon").into())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Rows per machine (each `(machine, timestamp)` is stored at most once).
fn rows_per_machine(db: &Path) -> HashMap<String, usize> {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return HashMap::new();
    };
    let Ok(mut st) =
        c.prepare("SELECT machine_id, count(*) FROM samples_by_machine GROUP BY machine_id")
    else {
        return HashMap::new();
    };
    st.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
    })
    .map(|rows| rows.flatten().collect())
    .unwrap_or_default()
}

/// `(ts, cpu)` of every stored sample of `machine`, oldest first.
fn history(db: &Path, machine: &str) -> Vec<(f64, f64)> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut st = c
        .prepare("SELECT ts, cpu FROM samples_by_machine WHERE machine_id = ?1 ORDER BY ts")
        .unwrap();
    st.query_map([machine], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .flatten()
        .collect()
}

/// A message to publish: its key (if any) and payload.
type Record = (Option<String>, Vec<u8>);

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer")
}

/// Publishes `(key, payload)` in order and waits for every acknowledgement.
async fn publish(p: &FutureProducer, topic: &str, messages: &[Record]) {
    for (key, payload) in messages {
        let headers = OwnedHeaders::new().insert(Header {
            key: "sysmon-format",
            value: Some("json"),
        });
        let mut record = FutureRecord::<String, Vec<u8>>::to(topic)
            .payload(payload)
            .headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        p.send(record, Duration::from_secs(20))
            .await
            .unwrap_or_else(|(e, _)| panic!("publishing {} bytes: {e}", payload.len()));
    }
}

/// Every message of `topic`'s `partitions` until `expected` arrived or `timeout`.
async fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "hostile-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while out.len() < expected {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => break,
        }
    }
    // Nothing more than expected arrives.
    if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await {
        out.push(m.detach());
    }
    out
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn sample(machine: &str, ts: f64, cpu: f64) -> Snapshot {
    let mut s = Snapshot::new(machine, ts);
    s.cpu_usage = cpu;
    s.memory_usage = 10.0;
    s.hostname = Some(machine.to_string());
    s
}

fn keyed(s: &Snapshot) -> Record {
    (Some(s.machine_id.clone()), encode_json(s))
}

/// A legacy-shaped message whose `cpu_usage` is a string of `n` bytes: the
/// JSON error quotes it (issue 11: a ~1 MB echo made the dead letter too large).
fn error_echo(n: usize) -> Vec<u8> {
    let mut v = br#"{"machine_id":"echo","timestamp":1764086400,"cpu_usage":""#.to_vec();
    v.extend(std::iter::repeat_n(b'A', n));
    v.extend_from_slice(
        br#"","memory_usage":1,"disk_io":{"read":1,"write":1},"network_io":{"sent":1,"recv":1}}"#,
    );
    v
}

/// A broker, a work directory and the ingesters' database.
struct Rig {
    broker: TansuBroker,
    dir: tempfile::TempDir,
    db: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        Rig {
            broker: TansuBroker::start(),
            db: dir.path().join("sysmon.db"),
            dir,
        }
    }

    fn bootstrap(&self) -> String {
        self.broker.bootstrap()
    }

    /// The `sysmon` arguments of an ingester of `topic` (created with
    /// `partitions`) into the rig's database, with `config` and `extra` flags.
    fn ingest_args(
        &self,
        topic: &str,
        partitions: &str,
        config: Option<&Path>,
        extra: &[&str],
    ) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(c) = config {
            args.extend(["--config".to_string(), c.display().to_string()]);
        }
        args.extend(
            [
                "ingest",
                "--brokers",
                &self.bootstrap(),
                "--topic",
                topic,
                "--partitions",
                partitions,
            ]
            .map(String::from),
        );
        args.extend(["--db".to_string(), self.db.display().to_string()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }

    /// Starts an ingester with `args` and waits until it joined its group.
    fn start(&self, name: &str, args: &[String]) -> Proc {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = Proc::spawn(&sysmon(), &args, self.dir.path(), name);
        p.wait_for_log("consumer group assignment", Duration::from_secs(90));
        p
    }
}

#[test]
fn a_megabyte_error_echo_is_dead_lettered_bounded_and_what_follows_is_stored() {
    let rig = Rig::new();
    let (bootstrap, db) = (rig.bootstrap(), &rig.db);
    let mut ingest = rig.start("ingest", &rig.ingest_args("echo", "1", None, &[]));
    let now = now_epoch_secs();
    let mut messages = vec![(None, error_echo(990_000))];
    messages.extend((0..50).map(|i| keyed(&sample("after-echo", now - 60.0 + i as f64, 5.0))));
    runtime().block_on(publish(&producer(&bootstrap), "echo", &messages));

    let stored = poll_until(Duration::from_secs(60), || {
        rows_per_machine(db).get("after-echo") == Some(&50)
    });
    assert!(
        stored,
        "the samples behind the poison message were not stored: {:?}\n{}",
        rows_per_machine(db),
        ingest.log()
    );
    let dlq = runtime().block_on(read_all(&bootstrap, "echo.dlq", 1, 1));
    assert_eq!(dlq.len(), 1, "one dead letter");
    let reason = header(&dlq[0], "sysmon-reason").unwrap();
    assert!(reason.len() <= 1024, "reason of {} bytes", reason.len());
    assert!(
        reason.contains("cpu_usage") && reason.contains("elided"),
        "{reason}"
    );
    assert_eq!(
        header(&dlq[0], "sysmon-reason-kind").as_deref(),
        Some("shape")
    );
    assert!(
        ingest.child.try_wait().unwrap().is_none(),
        "the ingester is alive"
    );
    assert!(
        !ingest.log().contains("dead-lettering failed"),
        "{}",
        ingest.log()
    );
}

#[test]
fn a_dead_letter_refused_even_shrunk_is_counted_and_skipped() {
    let rig = Rig::new();
    let (bootstrap, db, dir) = (rig.bootstrap(), &rig.db, &rig.dir);
    // The dead-letter producer may send no message over 1,000 bytes: even
    // the last, 1 KiB cut of a rejected message is refused.
    let config = dir.path().join("sysmon.toml");
    std::fs::write(
        &config,
        "[kafka.options]\n\"message.max.bytes\" = \"1000\"\n",
    )
    .unwrap();
    let stats = dir.path().join("stats.json");
    let stats_arg = stats.to_str().unwrap().to_string();
    let args = rig.ingest_args("refused", "1", Some(&config), &[]);
    let mut with_stats = args.clone();
    with_stats.extend(["--stats-json".to_string(), stats_arg]);
    let mut ingest = rig.start("ingest", &with_stats);
    let now = now_epoch_secs();
    let mut messages: Vec<_> = (0..20)
        .map(|i| keyed(&sample("before", now - 60.0 + i as f64, 1.0)))
        .collect();
    messages.push((None, error_echo(20_000)));
    messages.push((None, error_echo(30_000)));
    messages.extend((0..20).map(|i| keyed(&sample("after", now - 60.0 + i as f64, 2.0))));
    runtime().block_on(publish(&producer(&bootstrap), "refused", &messages));

    assert!(
        poll_until(Duration::from_secs(60), || {
            let rows = rows_per_machine(db);
            rows.get("before") == Some(&20) && rows.get("after") == Some(&20)
        }),
        "{:?}\n{}",
        rows_per_machine(db),
        ingest.log()
    );
    let log = ingest.log();
    assert_eq!(
        log.matches("could not dead-letter a rejected message")
            .count(),
        1,
        "logged once per kind:\n{log}"
    );
    assert!(
        poll_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&stats)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["dead_letter_failures"] == 2 && v["rejected"] == 2)
        }),
        "{:?}",
        std::fs::read_to_string(&stats)
    );
    // Committed: a restart does not replay (and refuse) them again.
    ingest.signal("-TERM");
    assert!(
        ingest.wait(Duration::from_secs(30)).success(),
        "{}",
        ingest.log()
    );
    let mut again = rig.start("ingest-again", &args);
    std::thread::sleep(Duration::from_secs(5));
    again.signal("-TERM");
    assert!(again.wait(Duration::from_secs(30)).success());
    assert!(
        again.log().contains("rejected=0"),
        "the skipped messages were committed:\n{}",
        again.log()
    );
}

#[test]
fn hostile_messages_interleaved_with_ordinary_traffic_are_dead_lettered_and_change_nothing() {
    let rig = Rig::new();
    let (bootstrap, db) = (rig.bootstrap(), &rig.db);
    let mut ingest = rig.start("ingest", &rig.ingest_args("mix", "3", None, &[]));
    let now = now_epoch_secs().floor();
    let victim = "victim-01";
    // Ordinary traffic: the victim and 20 machines, 30 samples each, 10 s apart;
    // 10,000 machines seen once (many distinct ids, all valid).
    let mut ordinary: Vec<Snapshot> = Vec::new();
    for i in 0..30 {
        let ts = now - 300.0 + 10.0 * i as f64;
        ordinary.push(sample(victim, ts, 20.0 + i as f64));
        for m in 0..20 {
            ordinary.push(sample(&format!("web-{m:02}"), ts, 1.0));
        }
    }
    for m in 0..10_000 {
        ordinary.push(sample(&format!("churn-{m:05}"), now - 100.0, 3.0));
    }

    let mut hostile: Vec<(&str, Record)> = Vec::new();
    hostile.push(("shape", (None, error_echo(990_000))));
    hostile.push((
        "future_timestamp",
        keyed(&sample(victim, 4_070_908_800.0, 99.0)),
    ));
    // Keyed `attacker`, claiming the victim at one of its real timestamps.
    let forged = sample(victim, now - 300.0, 99.0);
    hostile.push((
        "key_mismatch",
        (Some("attacker".into()), encode_json(&forged)),
    ));
    hostile.push((
        "too_old",
        keyed(&sample(victim, now - 40.0 * 86_400.0, 99.0)),
    ));
    let mut labels = sample(victim, now - 295.0, 99.0);
    labels.labels = (0..100)
        .map(|i| (format!("k{i}"), "v".repeat(200)))
        .collect::<BTreeMap<_, _>>();
    hostile.push(("over_limit", keyed(&labels)));
    let mut name = sample(victim, now - 294.0, 99.0);
    name.top_cpu_processes
        .push(sysmon_core::snapshot::ProcessInfo {
            pid: 1,
            name: "x".repeat(100_000),
            cpu_percent: 1.0,
            memory_percent: None,
            memory_bytes: None,
            ..Default::default()
        });
    hostile.push(("over_limit", keyed(&name)));
    let mut custom = sample(victim, now - 293.0, 99.0);
    custom.custom_metrics.insert("m".repeat(50_000), 1.0);
    hostile.push(("over_limit", keyed(&custom)));
    let mut escape = sample(victim, now - 292.0, 99.0);
    escape.hostname = Some("victim\u{1b}]0;owned\u{7}\u{1b}[2J".into());
    hostile.push(("invalid_value", keyed(&escape)));
    let control_id = sample("bad\u{1b}[31mid", now - 292.0, 99.0);
    hostile.push(("invalid_value", (None, encode_json(&control_id))));
    let mut syntax = br#"{"machine_id": "m", "#.to_vec();
    syntax.extend(std::iter::repeat_n(b'x', 500_000));
    hostile.push(("syntax", (None, syntax)));

    // Interleaved: a hostile message every ~200 ordinary ones.
    let mut messages = Vec::new();
    let mut bad = hostile.iter();
    for (i, s) in ordinary.iter().enumerate() {
        if i % 200 == 100 {
            if let Some((_, m)) = bad.next() {
                messages.push(m.clone());
            }
        }
        messages.push(keyed(s));
    }
    for (_, m) in bad {
        messages.push(m.clone());
    }
    runtime().block_on(publish(&producer(&bootstrap), "mix", &messages));

    let expected_total = ordinary.len();
    let complete = poll_until(Duration::from_secs(120), || {
        rows_per_machine(db).values().sum::<usize>() >= expected_total
    });
    assert!(
        complete,
        "stored {:?} of {expected_total}\n{}",
        rows_per_machine(db).values().sum::<usize>(),
        ingest.log()
    );
    let rows = rows_per_machine(db);
    assert_eq!(
        rows.values().sum::<usize>(),
        expected_total,
        "every valid sample, once"
    );
    assert_eq!(rows.len(), 1 + 20 + 10_000);
    assert_eq!(rows[victim], 30);

    // The victim's history and latest state are its own.
    let h = history(db, victim);
    let expected: Vec<(f64, f64)> = (0..30)
        .map(|i| (now - 300.0 + 10.0 * i as f64, 20.0 + i as f64))
        .collect();
    assert_eq!(h, expected, "the victim's history is untouched");

    // Every hostile one in the DLQ, with its kind and a bounded, printable reason.
    let dlq = runtime().block_on(read_all(&bootstrap, "mix.dlq", 3, hostile.len()));
    let mut kinds: Vec<String> = dlq
        .iter()
        .map(|m| header(m, "sysmon-reason-kind").unwrap_or_default())
        .collect();
    kinds.sort();
    let mut want: Vec<String> = hostile.iter().map(|(k, _)| k.to_string()).collect();
    want.sort();
    assert_eq!(kinds, want);
    for m in &dlq {
        let reason = header(m, "sysmon-reason").unwrap();
        assert!(reason.len() <= 1024, "{} bytes: {reason}", reason.len());
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
    }
    assert!(
        ingest.child.try_wait().unwrap().is_none(),
        "the ingester is alive"
    );
    let log = ingest.log();
    assert!(!log.contains('\u{1b}'), "no raw escape codes in the log");
    assert!(log.lines().all(|l| l.len() < 4096), "log lines stay short");
}

#[test]
fn ten_sigkills_with_restarts_store_every_sample_exactly_once() {
    let rig = Rig::new();
    let (bootstrap, db, dir) = (rig.bootstrap(), &rig.db, &rig.dir);
    let args = rig.ingest_args(
        "system_metrics",
        "4",
        None,
        // The default static member name (ingest-<machine id>): each restart
        // takes the killed one's partitions back at once.
        &["--batch-size", "100"],
    );
    let mut ingest = rig.start("ingest-0", &args);
    let machines = 40;
    let mut loadgen = Proc::spawn(
        &sysmon(),
        &[
            "loadgen",
            "--brokers",
            &bootstrap,
            "--machines",
            "40",
            "--interval",
            "100ms",
            "--duration",
            "25s",
            "--json",
        ],
        dir.path(),
        "loadgen",
    );
    for kill in 1..=10 {
        std::thread::sleep(Duration::from_millis(2000));
        ingest.signal("-KILL");
        assert!(!ingest.wait(Duration::from_secs(10)).success());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ingest = Proc::spawn(&sysmon(), &args, dir.path(), &format!("ingest-{kill}"));
    }
    let status = loadgen.wait(Duration::from_secs(90));
    assert!(status.success(), "{}", loadgen.log());
    let summary: serde_json::Value = serde_json::from_str(loadgen.stdout().trim()).unwrap();
    assert_eq!(summary["failed"], 0, "{summary}");
    let published = summary["published"].as_u64().unwrap() as usize;

    let complete = poll_until(Duration::from_secs(90), || {
        rows_per_machine(db).values().sum::<usize>() >= published
    });
    let rows = rows_per_machine(db);
    assert!(
        complete,
        "the last ingester stored {} of {published}\n{}",
        rows.values().sum::<usize>(),
        ingest.log()
    );
    assert_eq!(
        rows.values().sum::<usize>(),
        published,
        "every sample, once"
    );
    assert_eq!(rows.len(), machines);
    assert!(
        rows.values().all(|&n| n == published / machines),
        "{rows:?}"
    );
    ingest.signal("-TERM");
    assert!(
        ingest.wait(Duration::from_secs(30)).success(),
        "{}",
        ingest.log()
    );
}
