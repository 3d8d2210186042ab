//! Helpers shared by the process tests: the binaries under test; the
//! process handling itself is `sysmon_testkit::process` (each test file uses a subset).
#![allow(unused_imports, dead_code)]

pub use sysmon_testkit::process::{poll_until, wait_for, wait_until, Proc};

/// The `sysmon` binary under test.
pub const SYSMON: &str = env!("CARGO_BIN_EXE_sysmon");
/// The `sysmon-agent` binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_sysmon-agent");

/// Every snapshot in the SQLite history at `db`, oldest first.
pub fn stored_snapshots(db: &std::path::Path) -> Vec<sysmon_core::Snapshot> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sink = sysmon_sinks::sqlite::SqliteSink::open(&sysmon_core::config::SqliteConfig {
            path: db.to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        sink.snapshots(None, 0.0, 1e12, usize::MAX).await.unwrap()
    })
}

/// `field=N` from a log line containing `marker`.
pub fn logged_number(log: &str, marker: &str, field: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker:?} line in:\n{log}"));
    let start = line
        .find(&format!("{field}="))
        .unwrap_or_else(|| panic!("no {field} in {line}"))
        + field.len()
        + 1;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad {field} in {line}"))
}

/// A minimal HTTP server recording the JSON bodies POSTed to it (answers 200):
/// a real webhook target for the notifier.
pub fn webhook_server() -> (
    u16,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(read_half) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(read_half);
            let mut len = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    seen.lock().unwrap().push(v);
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (port, bodies)
}
