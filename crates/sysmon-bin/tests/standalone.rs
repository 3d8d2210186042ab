//! Process-level tests of `sysmon standalone`, `sysmon query` and `sysmon config`:
//! the real binary, real signals, a real SQLite file.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sysmon_core::{codec, Snapshot};

fn sysmon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sysmon"))
}

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill(1) exists");
    assert!(status.success());
}

/// Reads /proc/meminfo's (total - available) / total in percent.
fn proc_memory_percent() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let total = field("MemTotal:");
    (total - field("MemAvailable:")) / total * 100.0
}

fn query_jsonl(db: &std::path::Path, extra: &[&str]) -> Vec<Snapshot> {
    let out = sysmon()
        .args(["query", "--db"])
        .arg(db)
        .args(["--since", "1h", "--format", "jsonl"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| codec::decode(l.as_bytes()).expect("query prints valid wire-format JSON"))
        .collect()
}

#[test]
fn standalone_collects_stores_and_loses_nothing_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/dir/sysmon.db");
    let port = sysmon_testkit::ports::free_port();
    let mut run = Running {
        child: sysmon()
            .args([
                "standalone",
                "--interval",
                "1s",
                "--machine-id",
                "it-standalone",
            ])
            .arg("--db")
            .arg(&db)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    };
    // The URL is printed on stdout at start.
    let stdout = run.child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("dashboard:") {
            break;
        }
    }
    assert!(
        printed.contains(&format!("http://127.0.0.1:{port}/")),
        "standalone must print the dashboard URL, printed:\n{printed}"
    );

    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let mem_now = proc_memory_percent();
    sigterm(&run.child);
    let status = run.child.wait().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}\n{stderr}");

    // Everything collected was stored: the agent's count equals the rows in SQLite.
    let collected: u64 = stderr
        .lines()
        .find(|l| l.contains("agent stopped"))
        .and_then(|l| l.split("collected: ").nth(1))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no agent report in the log:\n{stderr}"));
    let rows = query_jsonl(&db, &[]);
    assert_eq!(
        rows.len() as u64,
        collected,
        "SIGTERM lost samples\n{stderr}"
    );
    // About one per second.
    assert!(
        (8..=12).contains(&rows.len()),
        "{} snapshots in {elapsed:.1}s",
        rows.len()
    );
    // Oldest first, one machine, plausible values that agree with /proc.
    assert!(rows.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    for s in &rows {
        assert_eq!(s.machine_id, "it-standalone");
        assert!((0.0..=100.0).contains(&s.cpu_usage));
        assert!(s.collector_errors.is_empty(), "{:?}", s.collector_errors);
        assert!(!s.cpu_per_core.is_empty());
        assert!(s.memory.is_some() && s.load_avg.is_some());
    }
    let last = rows.last().unwrap();
    assert!(
        (last.memory_usage - mem_now).abs() < 1.0,
        "memory {} vs /proc {}",
        last.memory_usage,
        mem_now
    );

    // The table format and the machine list work too.
    let table = sysmon()
        .args(["query", "--db"])
        .arg(&db)
        .args(["--format", "table", "--machine", "it-standalone"])
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("time"), "{table}");
    assert_eq!(table.lines().count(), rows.len() + 1);
    let machines = sysmon()
        .args(["query", "--machines", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(String::from_utf8(machines.stdout)
        .unwrap()
        .starts_with("it-standalone\t"));
}

#[test]
fn query_without_a_database_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = sysmon()
        .args(["query", "--db"])
        .arg(dir.path().join("none.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no database at") && err.contains("standalone"),
        "{err}"
    );
}

#[test]
fn config_print_default_round_trips_and_check_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = sysmon()
        .args(["config", "--print-default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = dir.path().join("sysmon.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = sysmon()
        .args(["config", "--check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("processes"));

    std::fs::write(&file, "[agent]\nintervall = \"1s\"\n").unwrap();
    let bad = sysmon()
        .args(["config", "--check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("intervall") && err.contains("sysmon.toml"),
        "{err}"
    );

    std::fs::write(&file, "[collectors.gpu]\n").unwrap();
    let bad = sysmon()
        .args(["config", "--check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown collector `gpu`"));
}
