//! Fleet-wide alert rules with several ingesters on one PostgreSQL store,
//! real processes: a real tansu broker, two `sysmon ingest --db
//! postgresql://…` of one consumer group on one database, each owning one of
//! the topic's two partitions, and a `fleet_avg` rule.
//!
//! The machines of the partition of the ingester that leads (holds the
//! store's maintenance lock) are cool, those of the other one hot: judged on
//! its own machines, the leader would see nothing and the other ingester
//! would raise a fleet alert on half the fleet. Judged on the store, exactly
//! one fleet alert fires, with the whole fleet's average. After the leader is
//! SIGKILLed, the other ingester takes the lead over: it carries the stored
//! alert on (no second firing), follows the fleet's values and resolves it
//! when the fleet cools down, once.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::SYSMON;
use sysmon_core::agent::now_epoch_secs;
use sysmon_core::{encode_json, Snapshot};
use sysmon_testkit::postgres::TestDatabase;
use sysmon_testkit::process::{poll_until, Proc};
use sysmon_testkit::tansu::TansuBroker;

const TOPIC: &str = "system_metrics";
const RULE: &str = "fleet_cpu_high";
const LEADS: &str = "now evaluates the fleet-wide alert rules";
/// Machines per partition.
const PER_PARTITION: usize = 4;

fn ingest(bootstrap: &str, url: &str, config: &str, instance: &str, dir: &std::path::Path) -> Proc {
    Proc::spawn(
        SYSMON,
        &[
            "--config",
            config,
            "ingest",
            "--brokers",
            bootstrap,
            "--db",
            url,
            "--partitions",
            "2",
            "--batch-size",
            "50",
            "--instance-id",
            instance,
        ],
        dir,
        instance,
    )
}

/// The partitions of the last assignment `p` logged.
fn assigned(p: &Proc) -> Vec<i32> {
    let log = p.log();
    let Some(line) = log
        .lines()
        .rev()
        .find(|l| l.contains("consumer group assignment"))
    else {
        return Vec::new();
    };
    let needle = format!("{TOPIC}/");
    line.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &line[i + needle.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The stored fleet alert of [`RULE`]: `(state, value)` rows of `active_alerts`.
fn active_fleet(db: &TestDatabase) -> Vec<(String, f64)> {
    let out = db.sql(&format!(
        "SELECT state, value FROM active_alerts WHERE machine_id = '' AND rule = '{RULE}'"
    ));
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (s, v) = l.split_once('|').unwrap_or((l, "NaN"));
            (s.to_string(), v.trim().parse().unwrap_or(f64::NAN))
        })
        .collect()
}

/// Stored transitions of the fleet alert: `(firing, resolved)`.
fn fleet_events(db: &TestDatabase) -> (usize, usize) {
    if db.sql("SELECT to_regclass('alert_events') IS NOT NULL") != "t" {
        return (0, 0);
    }
    let out = db.sql(&format!(
        "SELECT count(*) FILTER (WHERE state = 'firing'), count(*) FILTER (WHERE state = 'resolved') \
         FROM alert_events WHERE rule = '{RULE}' AND machine_id IS NULL"
    ));
    let n: Vec<usize> = out
        .split('|')
        .map(|v| v.trim().parse().unwrap_or(0))
        .collect();
    (n[0], n[1])
}

/// Publishes one snapshot per machine per second, the machines of
/// `partition` at `cool` % CPU and those of the other partition at `hot` %
/// (both read each round), until `stop`.
struct Publisher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    fn start(
        bootstrap: &str,
        cool_partition: i32,
        cool: Arc<AtomicU64>,
        hot: Arc<AtomicU64>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("message.timeout.ms", "20000")
            .create()
            .expect("producer");
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            while !s.load(Ordering::Relaxed) {
                let now = now_epoch_secs().floor();
                rt.block_on(async {
                    for part in [0, 1] {
                        let cpu = if part == cool_partition {
                            f64::from_bits(cool.load(Ordering::Relaxed))
                        } else {
                            f64::from_bits(hot.load(Ordering::Relaxed))
                        };
                        for i in 0..PER_PARTITION {
                            let id = format!("p{part}-m{i}");
                            let mut snap = Snapshot::new(&id, now);
                            snap.hostname = Some(id.clone());
                            snap.cpu_usage = cpu;
                            snap.memory_usage = 30.0;
                            let payload = encode_json(&snap);
                            let headers = OwnedHeaders::new().insert(Header {
                                key: "sysmon-format",
                                value: Some("json"),
                            });
                            let record = FutureRecord::to(TOPIC)
                                .key(&id)
                                .partition(part)
                                .payload(&payload)
                                .headers(headers);
                            producer
                                .send(record, Duration::from_secs(20))
                                .await
                                .unwrap_or_else(|(e, _)| panic!("publishing: {e}"));
                        }
                    }
                });
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Publisher {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn logs(procs: &[&Proc]) -> String {
    procs
        .iter()
        .map(|p| p.log())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn one_ingester_judges_fleet_rules_on_the_whole_stored_fleet_and_another_takes_over_when_it_dies() {
    let broker = TansuBroker::start();
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = broker.bootstrap();
    let url = db.url();
    let config = dir.path().join("sysmon.toml");
    std::fs::write(
        &config,
        format!(
            "[[alerts.rules]]\nname = \"{RULE}\"\nmetric = \"cpu_usage\"\nop = \">\"\n\
             threshold = 50\nclear_threshold = 40\nfor = \"0s\"\nscope = \"fleet_avg\"\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    // The first ingester takes the store's lead; the second joins the group.
    let mut a = ingest(&bootstrap, &url, config, "fleet-a", dir.path());
    a.wait_for_log(LEADS, Duration::from_secs(90));
    let mut b = ingest(&bootstrap, &url, config, "fleet-b", dir.path());
    b.wait_for_log("consumer group assignment", Duration::from_secs(90));
    assert!(
        poll_until(Duration::from_secs(90), || assigned(&a).len() == 1
            && assigned(&b).len() == 1),
        "one partition each\n{}",
        logs(&[&a, &b])
    );
    let leader_partition = assigned(&a)[0];
    assert_ne!(leader_partition, assigned(&b)[0]);

    // The leader's machines at 20 %, the other's at 90 %: the fleet at 55 %.
    let cool = Arc::new(AtomicU64::new(20f64.to_bits()));
    let hot = Arc::new(AtomicU64::new(90f64.to_bits()));
    let publisher = Publisher::start(&bootstrap, leader_partition, cool.clone(), hot.clone());

    let firing = |db: &TestDatabase, value: f64| {
        let act = active_fleet(db);
        act.len() == 1 && act[0].0 == "firing" && (act[0].1 - value).abs() < 1e-6
    };
    assert!(
        poll_until(Duration::from_secs(120), || firing(&db, 55.0)),
        "one fleet alert at the whole fleet's average: {:?}\n{}",
        active_fleet(&db),
        logs(&[&a, &b])
    );
    assert_eq!(fleet_events(&db), (1, 0), "{}", logs(&[&a, &b]));
    assert!(!b.log().contains(LEADS), "{}", b.log());

    // The leader dies: the other takes the lead over; then the dead one's
    // partition comes back under its static member name.
    a.signal("-KILL");
    assert!(!a.wait(Duration::from_secs(10)).success());
    b.wait_for_log(LEADS, Duration::from_secs(60));
    let mut a2 = ingest(&bootstrap, &url, config, "fleet-a", dir.path());
    // The fleet heats up (63 %): the new leader follows it.
    hot.store(100f64.to_bits(), Ordering::Relaxed);
    cool.store(26f64.to_bits(), Ordering::Relaxed);
    assert!(
        poll_until(Duration::from_secs(120), || firing(&db, 63.0)),
        "the new leader updates the same alert: {:?}\n{}",
        active_fleet(&db),
        logs(&[&a, &b, &a2])
    );
    assert_eq!(
        fleet_events(&db),
        (1, 0),
        "carried on, not raised again\n{}",
        logs(&[&a, &b, &a2])
    );

    // The fleet cools down (25 %): resolved once.
    hot.store(30f64.to_bits(), Ordering::Relaxed);
    cool.store(20f64.to_bits(), Ordering::Relaxed);
    assert!(
        poll_until(Duration::from_secs(120), || fleet_events(&db) == (1, 1)
            && active_fleet(&db).is_empty()),
        "resolved once: {:?} {:?}\n{}",
        fleet_events(&db),
        active_fleet(&db),
        logs(&[&a, &b, &a2])
    );
    drop(publisher);
    // While the new leader lives, the restarted one only follows. (Checked
    // before the shutdown: once the leader has exited, the restarted one may
    // take the lead over in its own last moments.)
    assert!(!a2.log().contains(LEADS), "{}", a2.log());
    for p in [&mut b, &mut a2] {
        p.signal("-TERM");
        assert!(p.wait(Duration::from_secs(30)).success(), "{}", p.log());
    }
    assert_eq!(fleet_events(&db), (1, 1), "{}", logs(&[&a, &b, &a2]));
}
