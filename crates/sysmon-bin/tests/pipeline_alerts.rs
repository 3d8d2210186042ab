//! Alerts that respect a fleet (issue 16), with real processes: three
//! `sysmon-agent`s publish to a real tansu broker (durable, on PostgreSQL, so
//! that it can be stopped and started again), `sysmon ingest` consumes into
//! SQLite and raises the alerts.
//!
//! The broker goes away for longer than the machine_offline threshold (made
//! small here: 8 s, so the test is not five minutes long) and comes back:
//! exactly one pipeline alert fires and resolves, and no machine is alerted
//! as offline. Then a machine really stops while the pipeline works: it, and
//! only it, gets its offline alert. The outage is logged once when it starts
//! and once when it ends, by the ingester and by each agent.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use support::{Proc, AGENT, SYSMON};
use sysmon_core::agent::now_epoch_secs;
use sysmon_core::config::SqliteConfig;
use sysmon_sinks::sqlite::SqliteSink;
use sysmon_testkit::process::poll_until;
use sysmon_testkit::tansu::TansuBroker;

/// Longer than the agents' 30 s delivery timeout, so that they notice too.
const OUTAGE: Duration = Duration::from_secs(40);

/// The newest stored sample per machine.
fn newest_per_machine(db: &Path) -> HashMap<String, f64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let all = rt.block_on(async {
        let sink = SqliteSink::open(&SqliteConfig {
            path: db.to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        sink.snapshots(None, 0.0, 1e12, usize::MAX).await.unwrap()
    });
    let mut newest = HashMap::new();
    for s in all {
        let e = newest.entry(s.machine_id).or_insert(f64::NEG_INFINITY);
        *e = f64::max(*e, s.timestamp);
    }
    newest
}

/// `(rule, machine_id or "", state)` of every alert transition stored, in order.
fn alert_events(db: &Path) -> Vec<(String, String, String, String)> {
    let Ok(c) = rusqlite::Connection::open(db) else {
        return Vec::new();
    };
    let Ok(mut st) = c.prepare(
        "SELECT rule, coalesce(machine_id, ''), state, message FROM alert_events ORDER BY at, id",
    ) else {
        return Vec::new();
    };
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map(|rows| rows.flatten().collect())
        .unwrap_or_default()
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_broker_outage_is_one_pipeline_alert_and_no_machine_alert() {
    let mut broker = TansuBroker::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sysmon.db");
    let config = dir.path().join("sysmon.toml");
    std::fs::write(
        &config,
        "[[alerts.rules]]\nname = \"machine_offline\"\nkind = \"machine_offline\"\n\
         after = \"8s\"\nmin_samples = 3\n\
         [alerts.pipeline]\nfor = \"3s\"\nstalled_after = \"6s\"\nmax_delay = \"6s\"\n",
    )
    .unwrap();
    let bootstrap = broker.bootstrap();
    let mut ingest = Proc::spawn(
        SYSMON,
        &[
            "--config",
            config.to_str().unwrap(),
            "ingest",
            "--brokers",
            &bootstrap,
            "--db",
            db.to_str().unwrap(),
            "--partitions",
            "2",
        ],
        dir.path(),
        "ingest",
    );
    ingest.wait_for_log("consumer group assignment", Duration::from_secs(90));
    let ids = ["worker-0", "worker-1", "worker-2"];
    let mut agents: Vec<Proc> = ids
        .iter()
        .map(|id| {
            Proc::spawn(
                AGENT,
                &[
                    "--brokers",
                    &bootstrap,
                    "--machine-id",
                    id,
                    "--interval",
                    "500ms",
                ],
                dir.path(),
                id,
            )
        })
        .collect();
    let logs =
        |ingest: &Proc| format!("ingest:\n{}\nevents: {:?}", ingest.log(), alert_events(&db));
    // Running: every machine stored and established (min_samples 3).
    let started = now_epoch_secs();
    assert!(
        poll_until(Duration::from_secs(90), || {
            let n = newest_per_machine(&db);
            ids.iter()
                .all(|id| n.get(*id).is_some_and(|t| *t > started + 3.0))
        }),
        "{}",
        logs(&ingest)
    );

    // The broker goes away for longer than the offline threshold.
    broker.stop();
    std::thread::sleep(OUTAGE);
    let during = alert_events(&db);
    broker.start_again();
    let back_at = now_epoch_secs();
    assert!(
        during
            .iter()
            .any(|(rule, m, state, _)| rule == "pipeline_down"
                && m.is_empty()
                && state == "firing"),
        "the pipeline alert fires during the outage: {during:?}\n{}",
        ingest.log()
    );

    // The backlog arrives; the pipeline alert resolves once caught up.
    assert!(
        poll_until(Duration::from_secs(120), || {
            let n = newest_per_machine(&db);
            ids.iter()
                .all(|id| n.get(*id).is_some_and(|t| *t > back_at))
        }),
        "{}",
        logs(&ingest)
    );
    assert!(
        poll_until(Duration::from_secs(60), || alert_events(&db).iter().any(
            |(rule, _, state, _)| rule == "pipeline_down" && state == "resolved"
        )),
        "{}",
        logs(&ingest)
    );

    // A machine that really stops while the pipeline works is alerted.
    let mut stopped = agents.remove(2);
    stopped.stop(Duration::from_secs(60));
    assert!(
        poll_until(Duration::from_secs(90), || alert_events(&db).iter().any(
            |(rule, m, state, _)| rule == "machine_offline" && m == "worker-2" && state == "firing"
        )),
        "{}",
        logs(&ingest)
    );
    for a in &mut agents {
        a.stop(Duration::from_secs(60));
    }
    ingest.stop(Duration::from_secs(60));

    let events = alert_events(&db);
    let pipeline: Vec<&str> = events
        .iter()
        .filter(|e| e.0 == "pipeline_down")
        .map(|e| e.2.as_str())
        .collect();
    assert_eq!(pipeline, vec!["firing", "resolved"], "{events:?}");
    let offline: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.0 == "machine_offline")
        .map(|e| (e.1.as_str(), e.2.as_str()))
        .collect();
    assert_eq!(
        offline,
        vec![("worker-2", "firing")],
        "only the machine that really stopped: {events:?}"
    );
    let fired = events
        .iter()
        .find(|e| e.0 == "machine_offline")
        .map(|e| e.3.clone())
        .unwrap_or_default();
    assert!(
        fired.contains("while other machines kept reporting"),
        "{fired}"
    );

    // The outage in the logs: once when it starts, once when it ends.
    let log = ingest.log();
    assert_eq!(count(&log, "transport unreachable"), 1, "{log}");
    assert_eq!(count(&log, "transport reachable again"), 1, "{log}");
    for a in agents.iter().chain([&stopped]) {
        let log = a.log();
        assert_eq!(count(&log, "cannot publish"), 1, "{}:\n{log}", a.name);
        assert_eq!(
            count(&log, "transport reachable again"),
            1,
            "{}:\n{log}",
            a.name
        );
    }
}
