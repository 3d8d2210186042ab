//! Process-level test of the ingester's analytics: `sysmon standalone` with an
//! alert rule that holds on this host fires it after its `for` duration, the
//! dashboard's API shows it, a real HTTP webhook receives it, forecasts are
//! served, and after SIGTERM the SQLite file holds the alert history and an
//! anomaly score for every stored sample.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sysmon_core::config::SqliteConfig;
use sysmon_sinks::sqlite::SqliteSink;

mod support;
use support::webhook_server;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `path` on the dashboard; the JSON body.
fn get(port: u16, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    // Chunked or not: the JSON object is between the first '{' and the last '}'.
    let body = &body[body.find('{')?..=body.rfind('}')?];
    serde_json::from_str(body).ok()
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn standalone_fires_alerts_to_the_api_the_webhook_and_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let (hook_port, bodies) = webhook_server();
    let config = dir.path().join("sysmon.toml");
    // CPU is always above -1 %: the rule holds from the first sample and must
    // fire only after its 3 s.
    std::fs::write(
        &config,
        format!(
            r#"
[[alerts.rules]]
name = "cpu_any"
metric = "cpu_usage"
op = ">"
threshold = -1.0
for = "3s"
severity = "critical"

[[alerts.webhooks]]
url = "http://127.0.0.1:{hook_port}/hook"
timeout = "2s"
"#
        ),
    )
    .unwrap();
    let port = sysmon_testkit::ports::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_sysmon"))
        .arg("--config")
        .arg(&config)
        .args([
            "standalone",
            "--interval",
            "1s",
            "--machine-id",
            "it-analytics",
        ])
        .arg("--db")
        .arg(&db)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = Running(child);

    let alert = wait_for("the alert to fire", 60, || {
        let v = get(port, "/api/alerts")?;
        v["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["rule"] == "cpu_any" && a["state"] == "firing")
            .cloned()
    });
    assert_eq!(alert["machine_id"], "it-analytics");
    assert_eq!(alert["severity"], "critical");

    let hook = wait_for("the webhook", 30, || {
        bodies
            .lock()
            .unwrap()
            .iter()
            .find(|b| b["rule"] == "cpu_any")
            .cloned()
    });
    assert_eq!(hook["state"], "firing", "{hook}");
    assert_eq!(hook["machine_id"], "it-analytics", "{hook}");

    let forecast = wait_for("a forecast", 30, || {
        let v = get(port, "/api/machines/it-analytics/forecast")?;
        let cpu = v["forecasts"]
            .as_array()?
            .iter()
            .find(|f| f["metric"] == "cpu")?
            .clone();
        Some(cpu)
    });
    assert_eq!(forecast["ts"].as_array().unwrap().len(), 10);

    // The analytics' counters at /metrics.
    let metrics = {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert!(counter("sysmon_analytics_scored_total") >= 3);
    assert!(counter("sysmon_analytics_alert_events_total") >= 1);
    assert_eq!(counter("sysmon_analytics_skipped_batches_total"), 0);

    // Stop; everything collected is stored, and analysed.
    let status = Command::new("kill")
        .args(["-TERM", &run.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = run.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "standalone did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    run.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(exit.success(), "{stderr}");
    assert!(
        stderr.contains("cpu_any"),
        "a log line says the alert fired: {stderr}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sink = SqliteSink::open(&SqliteConfig {
            path: db.clone(),
            ..SqliteConfig::default()
        })
        .unwrap();
        let history = sink.alert_history(0.0, 100).await.unwrap();
        let fired: Vec<_> = history
            .iter()
            .filter(|e| e.rule == "cpu_any")
            .map(|e| e.state.name())
            .collect();
        assert_eq!(fired, vec!["firing"], "fired once, never resolved");
        let samples = sink
            .snapshots(Some("it-analytics"), 0.0, f64::MAX, 100_000)
            .await
            .unwrap();
        let scores = sink
            .anomaly_scores("it-analytics", 0.0, 4.0e12)
            .await
            .unwrap();
        assert!(samples.len() >= 4);
        assert_eq!(
            scores.len(),
            samples.len(),
            "every stored sample has its score"
        );
    });
}
