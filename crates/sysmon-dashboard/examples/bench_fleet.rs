//! The fleet-scale benchmark command (issue 16; figures go to BENCHMARKS.md):
//!
//! ```text
//! cargo build --release -p sysmon-bin --bin sysmon
//! cargo run --release -p sysmon-dashboard --example bench_fleet -- \
//!     [--machines 10000] [--history 15m] [--step 15] [--requests 100] \
//!     [--db /tmp/fleet.db] [--sysmon target/release/sysmon] [--before OTHER_SYSMON]
//! ```
//!
//! 1. Fills a SQLite database (unless `--db` names one that exists) through
//!    the real ingest path (`Ingest` + channel transport + `SqliteSink`) with
//!    `--machines` machines `loadgen-0` .. labelled `role` = db/web/cache,
//!    every seventh with host details, `--history` of samples every `--step`
//!    seconds ending now.
//! 2. Starts the real `sysmon dashboard` on it and measures, over loopback
//!    HTTP, p50/p99 latency and size (uncompressed) of each default answer the
//!    pages ask for, after one warm-up request (the first, which loads the
//!    fleet index, is reported on its own), then its peak RSS.
//! 3. With `--before`, the same requests against another `sysmon` binary
//!    (e.g. one built from the commit before the fleet-scale views) on the
//!    same database; endpoints it does not have show as `n/a`.

#[allow(dead_code)] // each includer uses part of it
#[path = "../tests/support/seed.rs"]
mod seed;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use seed::{ingest_synthetic, SeedPlan};
use sysmon_core::config::SqliteConfig;
use sysmon_core::{Sink, Snapshot};
use sysmon_dashboard::now_epoch_secs;
use sysmon_sinks::sqlite::SqliteSink;

struct Args {
    machines: usize,
    history: f64,
    step: f64,
    requests: usize,
    db: Option<PathBuf>,
    sysmon: PathBuf,
    before: Option<PathBuf>,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        machines: 10_000,
        history: 900.0,
        step: 15.0,
        requests: 100,
        db: None,
        sysmon: "target/release/sysmon".into(),
        before: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--machines" => a.machines = val()?.parse()?,
            "--history" => {
                a.history = sysmon_core::duration::parse(&val()?)
                    .map_err(anyhow::Error::msg)?
                    .as_secs_f64()
            }
            "--step" => a.step = val()?.parse()?,
            "--requests" => a.requests = val()?.parse()?,
            "--db" => a.db = Some(val()?.into()),
            "--sysmon" => a.sysmon = val()?.into(),
            "--before" => a.before = Some(val()?.into()),
            "--bench" => {}
            "-h" | "--help" => {
                println!("bench_fleet [--machines N] [--history 15m] [--step SECS] [--requests N] [--db PATH] [--sysmon PATH] [--before PATH]");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}; see --help"),
        }
    }
    if a.step <= 0.0 || a.requests == 0 {
        bail!("--step and --requests must be positive");
    }
    Ok(a)
}

fn fleet_machine(s: &mut Snapshot) {
    let n: usize = s
        .machine_id
        .rsplit('-')
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    s.labels
        .insert("role".into(), ["db", "web", "cache"][n % 3].into());
    if n % 7 == 0 {
        sysmon_core::synth::fill_host_details(s);
    }
}

/// One HTTP/1.1 GET over a fresh connection; returns (status, body bytes).
fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, usize)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("bad HTTP response")?;
    let head = String::from_utf8_lossy(&buf[..split]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("bad HTTP status")?;
    Ok((status, buf.len() - split - 4))
}

fn proc_status(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l[key.len()..].trim().to_string())
        })
        .unwrap_or_default()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn cases() -> Vec<(&'static str, &'static str)> {
    vec![
        ("machines (default page)", "/api/machines"),
        (
            "overview 15m (default page)",
            "/api/overview?range=15m&spark=cpu&points=60",
        ),
        (
            "overview sorted by cpu, searched",
            "/api/overview?range=15m&sort=cpu&q=loadgen-1&limit=100",
        ),
        (
            "overview label role:db, page 20",
            "/api/overview?range=15m&label=role:db&offset=2000",
        ),
        ("top 10 by cpu", "/api/top?metric=cpu&n=10"),
        ("map cpu (every machine)", "/api/map?metric=cpu"),
        (
            "map memory grouped by role",
            "/api/map?metric=memory&group=role",
        ),
        (
            "fleet summary cpu by role",
            "/api/fleet/summary?metric=cpu&group=role",
        ),
        ("scatter 1h (sampled)", "/api/scatter?range=1h"),
        (
            "fleet cpu 15m avg",
            "/api/fleet?metric=cpu&range=15m&agg=avg&points=300",
        ),
        ("metrics (all machines)", "/metrics"),
        ("metrics ?machines=100", "/metrics?machines=100"),
    ]
}

fn run(sysmon: &Path, db: &Path, requests: usize, label: &str) -> anyhow::Result<()> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(sysmon)
        .args(["dashboard", "--db"])
        .arg(db)
        .args(["--listen", &addr, "--log-level", "warn"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", sysmon.display()))?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&addr, "/healthz").map(|r| r.0).ok() != Some(200) {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("sysmon dashboard did not become healthy");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("\n== {label}: {} ==", sysmon.display());
    let t = Instant::now();
    let (s, b) = http_get(&addr, "/api/machines")?;
    println!(
        "first request (loads the fleet index): {:.0} ms, HTTP {s}, {} KB",
        t.elapsed().as_secs_f64() * 1000.0,
        b / 1024
    );
    for (name, uri) in cases() {
        let heavy = uri.starts_with("/metrics?") || uri == "/metrics" || uri.contains("scatter");
        let n = if heavy {
            requests.div_ceil(4)
        } else {
            requests
        };
        let mut ms = Vec::with_capacity(n);
        let mut bytes = 0;
        let mut status = 0;
        for i in 0..=n {
            let t = Instant::now();
            let (s, b) = http_get(&addr, uri)?;
            let el = t.elapsed().as_secs_f64() * 1000.0;
            status = s;
            bytes = b;
            if s != 200 {
                break;
            }
            if i > 0 {
                ms.push(el);
            }
        }
        if status != 200 {
            println!("{name:<36} n/a (HTTP {status})");
            continue;
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{name:<36} n={:<4} p50 {:>8.1} ms  p99 {:>8.1} ms  {:>7} KB   {uri}",
            ms.len(),
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            bytes / 1024
        );
    }
    println!(
        "VmRSS {}, VmHWM (peak RSS) {}",
        proc_status(pid, "VmRSS:"),
        proc_status(pid, "VmHWM:")
    );
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = parse()?;
    let dir = tempfile::tempdir()?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| dir.path().join("fleet.db"));
    if !db.exists() {
        let sink = Arc::new(SqliteSink::open(&SqliteConfig {
            path: db.clone(),
            ..SqliteConfig::default()
        })?);
        let now = now_epoch_secs().floor();
        let plan = SeedPlan {
            machines: (0..args.machines).map(|i| format!("loadgen-{i}")).collect(),
            since: now - args.history,
            until: now,
            step: args.step,
            processes: 5,
        };
        let t = Instant::now();
        let sinks: Vec<Arc<dyn Sink>> = vec![sink.clone()];
        let n = ingest_synthetic(sinks, &plan, fleet_machine).await?;
        println!(
            "filled {n} snapshots of {} machines in {:.1} s",
            args.machines,
            t.elapsed().as_secs_f64()
        );
    } else {
        println!("using {} as it is", db.display());
    }
    if !args.sysmon.exists() {
        bail!(
            "no {}: build it with `cargo build --release -p sysmon-bin --bin sysmon`",
            args.sysmon.display()
        );
    }
    run(&args.sysmon, &db, args.requests, "after")?;
    if let Some(before) = &args.before {
        run(before, &db, args.requests, "before")?;
    }
    Ok(())
}
