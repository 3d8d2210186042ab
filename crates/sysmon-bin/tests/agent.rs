//! Process-level tests of `sysmon-agent`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sysmon_core::codec;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sysmon-agent"))
}

#[test]
fn once_prints_one_legacy_compatible_snapshot() {
    let out = agent()
        .args(["--once", "--interval", "500ms", "--machine-id", "once-test"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    let s = codec::decode(text.trim().as_bytes()).unwrap();
    assert_eq!(s.machine_id, "once-test");
    assert!(s.cpu_usage >= 0.0 && s.memory_usage > 0.0);
    assert!(!s.top_cpu_processes.is_empty() && !s.top_mem_processes.is_empty());
    assert!(s.top_cpu_processes.len() <= 5, "default top_n is 5");
    // The legacy consumer's view: the same keys and JSON types.
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert!(v["disk_io"]["read"].is_u64() && v["network_io"]["recv"].is_u64());
    assert!(v["timestamp"].is_f64() && v["cpu_usage"].is_number());
}

#[test]
fn stdout_streams_at_the_interval_and_stops_on_sigterm() {
    let mut child = agent()
        .args([
            "--stdout",
            "--interval",
            "200ms",
            "--machine-id",
            "stream-test",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ts = Vec::new();
    for _ in 0..5 {
        let line = lines.next().unwrap().unwrap();
        ts.push(codec::decode(line.as_bytes()).unwrap().timestamp);
    }
    let gaps: Vec<f64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| (0.1..0.5).contains(g)), "gaps {gaps:?}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn no_destination_is_a_clear_error() {
    let out = agent().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--stdout") && err.contains("--brokers"),
        "{err}"
    );
}

#[test]
fn list_collectors_names_the_builtins() {
    let out = agent().arg("--list-collectors").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for name in [
        "cpu",
        "memory",
        "disk",
        "network",
        "load",
        "uptime",
        "filesystems",
        "processes",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
}

#[test]
fn bad_flags_are_explained() {
    let out = agent()
        .args(["--stdout", "--interval", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("15m"));
}
