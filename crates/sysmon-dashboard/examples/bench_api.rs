//! The dashboard's benchmark command (figures go to BENCHMARKS.md):
//!
//! ```text
//! cargo build --release -p sysmon-bin --bin sysmon
//! cargo run --release -p sysmon-dashboard --example bench_api -- [--sysmon target/release/sysmon] [--requests 300]
//! ```
//!
//! 1. Fills a temp SQLite database through the real ingest path
//!    (`sysmon_core::Ingest` + channel transport + `SqliteSink`): one machine
//!    with 24 h of 1 s samples and 100 machines with 1 h of 1 s samples, then
//!    runs the sink's maintenance once (the running ingester does it every
//!    minute), as a long-running master would have it.
//! 2. In process (the axum router, no network): p50/p99 of
//!    `/api/machines/{id}/series` over 24 h and `/api/fleet` over 100 machines
//!    for 1 h, and of the other endpoints the pages call.
//! 3. The real `sysmon dashboard` process on loopback: the same requests over
//!    HTTP, with 20 live (SSE) clients connected, then its peak RSS (VmHWM).

#[allow(dead_code)] // each includer uses part of it
#[path = "../tests/support/seed.rs"]
mod seed;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use seed::{ingest_synthetic, SeedPlan};
use sysmon_core::config::SqliteConfig;
use sysmon_core::Sink;
use sysmon_dashboard::{now_epoch_secs, Dashboard, HistoryReader};
use sysmon_sinks::sqlite::SqliteSink;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut ms: Vec<f64>, bytes: usize) {
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<58} n={:<4} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  ({} KB)",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
        bytes / 1024
    );
}

/// One HTTP/1.1 GET over a fresh connection; returns (status, body length).
fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, usize)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("bad HTTP response")?;
    let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    Ok((status, body))
}

fn proc_status(pid: u32, key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut sysmon = std::path::PathBuf::from("target/release/sysmon");
    let mut requests = 300usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sysmon" => sysmon = it.next().context("--sysmon PATH")?.into(),
            "--requests" => requests = it.next().context("--requests N")?.parse()?,
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");
    let sink = Arc::new(SqliteSink::open(&SqliteConfig {
        path: db.clone(),
        ..SqliteConfig::default()
    })?);
    let now = now_epoch_secs().floor();
    let sinks: Vec<Arc<dyn Sink>> = vec![sink.clone()];
    let t = Instant::now();
    let day = SeedPlan {
        machines: vec!["day-01".into()],
        since: now - 86_400.0,
        until: now,
        step: 1.0,
        processes: 5,
    };
    let n1 = ingest_synthetic(sinks.clone(), &day, |_| {}).await?;
    let fleet = SeedPlan {
        machines: (1..=100).map(|i| format!("fleet-{i:03}")).collect(),
        since: now - 3600.0,
        until: now,
        step: 1.0,
        processes: 5,
    };
    let n2 = ingest_synthetic(sinks, &fleet, |_| {}).await?;
    let filled = t.elapsed();
    let t = Instant::now();
    let m = sink.maintain_at(now_epoch_secs()).await?;
    println!(
        "filled {} snapshots through Ingest -> SqliteSink in {:.1} s ({:.0}/s); maintenance {:.1} s ({m:?})",
        n1 + n2,
        filled.as_secs_f64(),
        (n1 + n2) as f64 / filled.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let db_size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!("database: {:.0} MB", db_size as f64 / 1e6);

    let cases: Vec<(&str, String)> = vec![
        (
            "series 24h of 1 s samples (cpu)",
            "/api/machines/day-01/series?metric=cpu&range=24h".into(),
        ),
        (
            "series 24h of 1 s samples (net_recv)",
            "/api/machines/day-01/series?metric=net_recv&range=24h".into(),
        ),
        (
            "series 7d (cpu; 24 h of it stored)",
            "/api/machines/day-01/series?metric=cpu&range=7d".into(),
        ),
        (
            "series 1h (cpu, raw samples)",
            "/api/machines/fleet-001/series?metric=cpu&range=1h".into(),
        ),
        (
            "fleet 1h over 100 machines (cpu, agg=avg)",
            "/api/fleet?metric=cpu&range=1h&agg=avg".into(),
        ),
        (
            "fleet 1h over 100 machines (memory, agg=max)",
            "/api/fleet?metric=memory&range=1h&agg=max".into(),
        ),
        (
            "fleet 15m over 100 machines (cpu, raw samples)",
            "/api/fleet?metric=cpu&range=15m&agg=avg".into(),
        ),
        (
            "fleet 15m over 100 machines (cpu, raw, 300 points)",
            "/api/fleet?metric=cpu&range=15m&agg=avg&points=300".into(),
        ),
        ("machines (101)", "/api/machines".into()),
        (
            "overview 101 machines with 15m trend lines",
            "/api/overview?range=15m&spark=cpu&points=60".into(),
        ),
        ("metrics (Prometheus, 101 machines)", "/metrics".into()),
        (
            "per-core CPU 1h",
            "/api/machines/fleet-001/cores?range=1h&points=200".into(),
        ),
    ];

    println!("\n== in process (router.oneshot, no network) ==");
    let source: Arc<dyn HistoryReader> = sink.clone();
    let (app, _live) = Dashboard::new(source).into_router(CancellationToken::new());
    for (name, uri) in &cases {
        let n = if uri.contains("overview") {
            requests / 5
        } else {
            requests
        };
        let mut ms = Vec::with_capacity(n);
        let mut bytes = 0;
        for i in 0..n + 5 {
            let t = Instant::now();
            let r = app
                .clone()
                .oneshot(Request::get(uri.as_str()).body(Body::empty())?)
                .await?;
            let status = r.status();
            let b = r.into_body().collect().await?.to_bytes();
            let el = t.elapsed().as_secs_f64() * 1000.0;
            if !status.is_success() {
                bail!("{uri}: {status}: {}", String::from_utf8_lossy(&b));
            }
            bytes = b.len();
            if i >= 5 {
                ms.push(el);
            }
        }
        report(name, ms, bytes);
    }
    drop(app);

    if !sysmon.exists() {
        println!("\n(no {} : build it with `cargo build --release -p sysmon-bin --bin sysmon` for the process figures)", sysmon.display());
        return Ok(());
    }
    println!("\n== the real `sysmon dashboard` process over loopback HTTP ==");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(&sysmon)
        .envs(
            std::env::var("BENCH_ARENA")
                .ok()
                .map(|v| ("MALLOC_ARENA_MAX", v)),
        )
        .args(["dashboard", "--db"])
        .arg(&db)
        .args(["--listen", &addr, "--log-level", "warn"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", sysmon.display()))?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(&addr, "/healthz").map(|r| r.0).ok() != Some(200) {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("sysmon dashboard did not become healthy");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "started: VmRSS {}",
        proc_status(pid, "VmRSS:").unwrap_or_default()
    );
    // 20 browsers keeping a live stream open.
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr)?;
        write!(s, "GET /api/events HTTP/1.1\r\nHost: bench\r\n\r\n")?;
        streams.push(s);
    }
    for (name, uri) in &cases {
        let n = if uri.contains("overview") {
            requests / 5
        } else {
            requests
        };
        let mut ms = Vec::with_capacity(n);
        let mut bytes = 0;
        for i in 0..n + 5 {
            let t = Instant::now();
            let (status, b) = http_get(&addr, uri)?;
            let el = t.elapsed().as_secs_f64() * 1000.0;
            if status != 200 {
                bail!("{uri}: HTTP {status}");
            }
            bytes = b;
            if i >= 5 {
                ms.push(el);
            }
        }
        report(name, ms, bytes);
        println!(
            "    VmRSS now {}",
            proc_status(pid, "VmRSS:").unwrap_or_default()
        );
    }
    // The pages as a browser loads them: index, scripts, uPlot.
    for p in [
        "/",
        "/assets/app.js",
        "/assets/vendor/uPlot.esm.js",
        "/assets/style.css",
    ] {
        let (s, _) = http_get(&addr, p)?;
        assert_eq!(s, 200, "{p}");
    }
    println!(
        "sysmon dashboard serving 101 machines, 20 live clients: VmRSS {}, VmHWM (peak RSS) {}",
        proc_status(pid, "VmRSS:").unwrap_or_default(),
        proc_status(pid, "VmHWM:").unwrap_or_default()
    );
    drop(streams);
    stop_child(&mut child);
    Ok(())
}

fn stop_child(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
