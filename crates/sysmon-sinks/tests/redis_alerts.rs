//! The active alerts in a real redis-server: RedisAlertSink keeps
//! `<prefix>alerts:<machine>` and `<prefix>fleet_alerts` equal to the engine's
//! pending and firing set.

use std::time::Duration;

use redis::AsyncCommands;
use sysmon_analytics::alerts::{ActiveAlert, AlertState, Severity};
use sysmon_analytics::{ActiveSet, AnalyticsRecord, AnalyticsSink, FLEET_SCOPE};
use sysmon_core::config::RedisConfig;
use sysmon_sinks::redis::RedisSink;
use sysmon_sinks::redis_alerts::RedisAlertSink;
use sysmon_testkit::redis_server::RedisServer;

fn active(rule: &str, machine: Option<&str>, state: AlertState) -> ActiveAlert {
    ActiveAlert {
        rule: rule.into(),
        severity: Severity::Warning,
        machine_id: machine.map(str::to_string),
        subject: None,
        state,
        since: 1_764_086_400.0,
        value: 91.5,
        message: format!("{rule} {}", state.name()),
    }
}

/// The engine owns web-01, db-01, a machine named `fleet` and the fleet scope.
fn record(list: Vec<ActiveAlert>) -> AnalyticsRecord {
    AnalyticsRecord {
        active: Some(ActiveSet {
            scopes: vec![
                "db-01".into(),
                "web-01".into(),
                "fleet".into(),
                FLEET_SCOPE.into(),
            ],
            alerts: list,
            full: false,
        }),
        ..AnalyticsRecord::default()
    }
}

async fn get(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<serde_json::Value> {
    let v: Option<String> = conn.get(key).await.unwrap();
    v.map(|s| serde_json::from_str(&s).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_alerts_follow_the_engine_per_scope() {
    let server = RedisServer::start();
    let config = RedisConfig {
        url: Some(server.url()),
        prefix: "al:".into(),
        window: Duration::from_secs(3600),
        ..RedisConfig::default()
    };
    let sink = RedisSink::connect(&config).await.unwrap();
    let alerts = RedisAlertSink::new(sink);
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();

    alerts
        .record(&record(vec![
            active("cpu_high", Some("web-01"), AlertState::Firing),
            active("memory_high", Some("web-01"), AlertState::Pending),
            active("cpu_high", Some("db-01"), AlertState::Firing),
            active("fleet_cpu", None, AlertState::Firing),
            active("disk_full", Some("fleet"), AlertState::Firing),
        ]))
        .await
        .unwrap();
    let web = get(&mut conn, "al:alerts:web-01").await.unwrap();
    let rules: Vec<&str> = web
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, vec!["cpu_high", "memory_high"]);
    assert_eq!(web[0]["state"], "firing");
    assert_eq!(web[1]["state"], "pending");
    assert_eq!(web[0]["value"], 91.5);
    assert!(get(&mut conn, "al:alerts:db-01").await.is_some());
    let fleet = get(&mut conn, "al:fleet_alerts").await.unwrap();
    assert_eq!(fleet.as_array().unwrap().len(), 1);
    assert_eq!(fleet[0]["rule"], "fleet_cpu");
    // A machine that calls itself `fleet` is a machine, not the fleet scope.
    let named_fleet = get(&mut conn, "al:alerts:fleet").await.unwrap();
    assert_eq!(named_fleet.as_array().unwrap().len(), 1);
    assert_eq!(named_fleet[0]["rule"], "disk_full");
    assert_eq!(named_fleet[0]["machine_id"], "fleet");
    let ttl: i64 = conn.pttl("al:alerts:web-01").await.unwrap();
    assert!(ttl > 0, "the key expires by itself if the engine stops");

    // A record without an active set changes nothing.
    alerts.record(&AnalyticsRecord::default()).await.unwrap();
    assert!(get(&mut conn, "al:alerts:db-01").await.is_some());

    // db-01 and the fleet alert resolve: their keys go, web-01's stays.
    alerts
        .record(&record(vec![active(
            "cpu_high",
            Some("web-01"),
            AlertState::Firing,
        )]))
        .await
        .unwrap();
    assert!(get(&mut conn, "al:alerts:db-01").await.is_none());
    assert!(get(&mut conn, "al:fleet_alerts").await.is_none());
    assert!(get(&mut conn, "al:alerts:fleet").await.is_none());
    assert_eq!(
        get(&mut conn, "al:alerts:web-01")
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Another ingester's machine is not this engine's to clear.
    let _: () = conn
        .set("al:alerts:other-01", "[{\"rule\":\"x\"}]")
        .await
        .unwrap();

    // Everything resolved: no alert keys of its scopes.
    alerts.record(&record(Vec::new())).await.unwrap();
    let keys: Vec<String> = conn.keys("al:alerts:*").await.unwrap();
    assert_eq!(keys, vec!["al:alerts:other-01".to_string()]);

    // A full re-send rewrites what Redis lost (a restart, a FLUSHALL).
    alerts
        .record(&record(vec![active(
            "cpu_high",
            Some("db-01"),
            AlertState::Firing,
        )]))
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    alerts
        .record(&record(vec![active(
            "cpu_high",
            Some("db-01"),
            AlertState::Firing,
        )]))
        .await
        .unwrap();
    assert!(
        get(&mut conn, "al:alerts:db-01").await.is_none(),
        "unchanged: not rewritten"
    );
    let mut full = record(vec![active("cpu_high", Some("db-01"), AlertState::Firing)]);
    if let Some(set) = full.active.as_mut() {
        set.full = true;
    }
    alerts.record(&full).await.unwrap();
    assert!(
        get(&mut conn, "al:alerts:db-01").await.is_some(),
        "restored by the re-send"
    );
}
