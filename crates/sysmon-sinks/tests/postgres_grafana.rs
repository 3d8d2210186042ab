//! Every SQL block of docs/grafana.md, run against a real PostgreSQL history
//! with Grafana's macros substituted as Grafana's PostgreSQL data source does
//! (`$__timeFilter`, `$__timeGroupAlias`, `$__interval`, a multi-value
//! variable), so that the documented panels keep working.

use std::sync::Arc;

use sysmon_analytics::alerts::{AlertEvent, AlertState, Severity};
use sysmon_analytics::{AnalyticsRecord, AnalyticsSink};
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::{Sink, Snapshot};
use sysmon_sinks::postgres::{PostgresConfig, PostgresSink};
use sysmon_testkit::postgres::TestDatabase;

/// The SQL blocks of the document, in order.
fn documented_queries() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana.md"
    ))
    .expect("docs/grafana.md");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sql") => current = Some(String::new()),
            (Some(q), "```") => {
                out.push(q.clone());
                current = None;
            }
            (Some(q), l) => {
                q.push_str(l);
                q.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

/// RFC 3339 in UTC, as Grafana writes times into `$__timeFilter`.
fn rfc3339(secs: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The argument list of the macro call starting at `start` (just after the
/// macro's name and its opening parenthesis), and where it ends.
fn macro_args(q: &str, start: usize) -> (Vec<String>, usize) {
    let mut depth = 1;
    for (i, c) in q[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let args = q[start..start + i]
                        .split(',')
                        .map(|a| a.trim().to_string())
                        .collect();
                    return (args, start + i + 1);
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced macro call in {q}");
}

fn interval_secs(s: &str) -> i64 {
    let s = s.trim_matches('\'');
    let (n, unit) = s.split_at(s.len() - 1);
    let n: i64 = n.parse().expect("interval");
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => panic!("unit {other}"),
    }
}

/// What Grafana sends for `query` over `[from, to)` with a `step` interval
/// and `$machine` = `machines`.
fn substitute(query: &str, from: i64, to: i64, step: &str, machines: &[&str]) -> String {
    let mut q = query.replace("$__interval", step).replace(
        "$machine",
        &machines
            .iter()
            .map(|m| format!("'{m}'"))
            .collect::<Vec<_>>()
            .join(","),
    );
    loop {
        if let Some(at) = q.find("$__timeFilter(") {
            let (args, end) = macro_args(&q, at + "$__timeFilter(".len());
            let with = format!(
                "{} BETWEEN '{}' AND '{}'",
                args[0],
                rfc3339(from),
                rfc3339(to)
            );
            q.replace_range(at..end, &with);
        } else if let Some(at) = q.find("$__timeGroupAlias(") {
            let (args, end) = macro_args(&q, at + "$__timeGroupAlias(".len());
            let secs = interval_secs(&args[1]);
            let with = format!(
                "floor(extract(epoch from {})/{secs})*{secs} AS \"time\"",
                args[0]
            );
            q.replace_range(at..end, &with);
        } else {
            break;
        }
    }
    assert!(!q.contains("$_"), "a macro the test does not know: {q}");
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_queries_chart_machines_and_the_fleet() {
    let db = TestDatabase::create();
    let sink = PostgresSink::open(&PostgresConfig {
        url: db.url(),
        ..PostgresConfig::default()
    })
    .await
    .unwrap();
    // Three machines, 20 minutes at 10 s, ending a few minutes ago.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let t0 = ((now - 1800.0) / 60.0).floor() * 60.0;
    let mut rows: Vec<Snapshot> = Vec::new();
    for m in 0..3 {
        let mut synth = SyntheticMachine::new(format!("gf-{m}"), m + 7);
        for i in 0..120 {
            rows.push(synth.next_snapshot(t0 + i as f64 * 10.0, 3));
        }
    }
    sink.write(Arc::from(rows)).await.unwrap();
    sink.maintain_at(now).await.unwrap().unwrap();
    let event = AlertEvent {
        rule: "cpu_high".into(),
        severity: Severity::Warning,
        machine_id: Some("gf-1".into()),
        subject: None,
        state: AlertState::Firing,
        value: 91.0,
        at: t0 + 300.0,
        message: "cpu_usage on gf-1 is 91.0 > 80".into(),
    };
    AnalyticsSink::record(
        &sink,
        &AnalyticsRecord {
            episodes: Vec::new(),
            scores: Vec::new(),
            events: vec![event],
            active: None,
        },
    )
    .await
    .unwrap();

    let (client, conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let queries = documented_queries();
    assert_eq!(
        queries.len(),
        8,
        "the variable, six panels and the annotations"
    );
    let (from, to) = (t0 as i64 - 60, now as i64);
    for q in &queries {
        let sql = substitute(q, from, to, "1m", &["gf-0", "gf-2"]);
        // Each row as JSON, so that numeric and float columns read alike.
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = client
            .query(&format!("SELECT row_to_json(q)::text FROM ({sql}) q"), &[])
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{sql}"))
            .iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
            .collect();
        assert!(!rows.is_empty(), "no rows from\n{sql}");
        if !q.contains("$__timeGroupAlias") {
            continue;
        }
        // 20 minutes at a 1 minute bucket.
        let buckets: std::collections::BTreeSet<i64> = rows
            .iter()
            .map(|r| r["time"].as_f64().expect("a numeric time") as i64)
            .collect();
        assert_eq!(buckets.len(), 20, "{sql}");
        if q.contains("machine_id AS metric") {
            let machines: std::collections::BTreeSet<&str> =
                rows.iter().map(|r| r["metric"].as_str().unwrap()).collect();
            assert_eq!(
                machines.into_iter().collect::<Vec<_>>(),
                ["gf-0", "gf-2"],
                "the variable filters: {sql}"
            );
        }
        // Every value column is a number within its range.
        for r in &rows {
            for (k, v) in r.iter().filter(|(k, _)| *k != "time" && *k != "metric") {
                let v = v.as_f64().unwrap_or_else(|| panic!("{k} = {v} from {sql}"));
                assert!(v.is_finite() && v >= 0.0, "{k} = {v} from {sql}");
                if k.ends_with('%') {
                    assert!(v <= 100.0, "{k} = {v} from {sql}");
                }
            }
        }
    }
}
