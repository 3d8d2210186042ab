//! Fills a SQLite database with synthetic history through the real ingest path
//! (`sysmon_core::Ingest` over the channel transport into `SqliteSink`), for
//! the browser test and for trying the dashboard.
//!
//! ```text
//! cargo run -p sysmon-dashboard --example seed_db -- --db /tmp/demo.db \
//!     --machines 6 --history 2h --step 5 [--hostile] [--live 60]
//! ```
//!
//! `--hostile` adds a machine whose id, host name, mount point and a process
//! name carry HTML/JS. `--fleet N` adds `N` more machines named `loadgen-0`
//! .. `loadgen-{N-1}` (no zero padding: natural order matters), labelled
//! `role` = `db` / `web` / `cache` by index modulo 3, every seventh with host
//! details, stored without analytics (a large fleet for the fleet-scale
//! views and their benchmark: `--fleet 10000 --machines 0`); `--storm K`
//! (with `--machines 0`) runs them through the analytics with the first `K`
//! at 90-91 % CPU for the last 10 minutes, an alert storm of `K` `cpu_high`
//! alerts. `--live N` then keeps every machine reporting once a
//! second for N seconds (0 = until killed).
//!
//! The history goes through the analytics too (as `sysmon ingest` does), with
//! two things to find: `worker-01` runs at 95 % CPU for its last 10 minutes
//! (the `cpu_high` alert fires), and `worker-03` has a CPU spike 30 minutes
//! ago (an anomaly). `worker-02` also sends the host details (pressure,
//! disks, TCP, cgroups, temperatures, open files: `synth::fill_host_details`),
//! the others none, so the machine page shows both.

#[allow(dead_code)] // each includer uses part of it
#[path = "../tests/support/seed.rs"]
mod seed;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use seed::{hostile, ingest_synthetic, ingest_synthetic_analysed, SeedPlan, HOSTILE_MACHINE_ID};
use sysmon_analytics::Config;
use sysmon_analytics::{AnalyticsEngine, AnalyticsService};
use sysmon_core::config::SqliteConfig;
use sysmon_core::Sink;
use sysmon_core::Snapshot;
use sysmon_sinks::sqlite::SqliteSink;

struct Args {
    db: std::path::PathBuf,
    machines: usize,
    history: f64,
    step: f64,
    hostile: bool,
    live: Option<u64>,
    fleet: usize,
    storm: usize,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        db: "data/seed.db".into(),
        machines: 6,
        history: 7200.0,
        step: 5.0,
        hostile: false,
        live: None,
        fleet: 0,
        storm: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--db" => a.db = val()?.into(),
            "--machines" => a.machines = val()?.parse()?,
            "--history" => {
                a.history = sysmon_core::duration::parse(&val()?)
                    .map_err(anyhow::Error::msg)?
                    .as_secs_f64()
            }
            "--step" => a.step = val()?.parse()?,
            "--hostile" => a.hostile = true,
            "--live" => a.live = Some(val()?.parse()?),
            "--fleet" => a.fleet = val()?.parse()?,
            "--storm" => a.storm = val()?.parse()?,
            "-h" | "--help" => {
                println!("seed_db --db PATH [--machines N] [--history 2h] [--step SECS] [--hostile] [--fleet N [--storm K]] [--live SECS]");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other}; see --help"),
        }
    }
    if a.step <= 0.0 {
        bail!("--step must be positive");
    }
    if a.storm > a.fleet {
        bail!("--storm must be at most --fleet");
    }
    if a.storm > 0 && (a.machines > 0 || a.hostile) {
        // One analytics run owns the active alerts (each run replaces them).
        bail!("--storm needs --machines 0 (and no --hostile)");
    }
    Ok(a)
}

/// What every seeded snapshot gets: the hostile machine's strings, and the
/// host details of `worker-02`.
fn decorate(s: &mut Snapshot) {
    hostile(s);
    if s.machine_id == HOST_DETAILS_MACHINE {
        sysmon_core::synth::fill_host_details(s);
    }
}

/// A `--fleet` machine: its `role` label, and host details on every seventh.
fn fleet_machine(s: &mut Snapshot) {
    let n: usize = s
        .machine_id
        .rsplit('-')
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let role = ["db", "web", "cache"][n % 3];
    s.labels.insert("role".into(), role.into());
    if n % 7 == 0 {
        sysmon_core::synth::fill_host_details(s);
    }
}

/// The seeded machine whose snapshots carry host details.
const HOST_DETAILS_MACHINE: &str = "worker-02";

/// The sampling step a snapshot was made with (its interval, else 5 s).
fn plan_step(s: &Snapshot) -> f64 {
    s.interval_secs.filter(|i| *i > 0.0).unwrap_or(5.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse()?;
    let sink = Arc::new(SqliteSink::open(&SqliteConfig {
        path: args.db.clone(),
        ..SqliteConfig::default()
    })?);
    let mut machines: Vec<String> = (1..=args.machines)
        .map(|i| format!("worker-{i:02}"))
        .collect();
    if args.hostile {
        machines.push(HOSTILE_MACHINE_ID.to_string());
    }
    let now = sysmon_dashboard::now_epoch_secs().floor();
    let plan = SeedPlan {
        machines: machines.clone(),
        since: now - args.history,
        until: now,
        step: args.step,
        processes: 8,
    };
    let sinks: Vec<Arc<dyn Sink>> = vec![sink.clone()];
    let mut analytics = AnalyticsService::new(AnalyticsEngine::from_config(&Config::default())?);
    analytics.add_sink(sink.clone());
    let mut analytics = Some(analytics);
    let findings = move |s: &mut Snapshot| {
        decorate(s);
        if s.machine_id == "worker-01" && s.timestamp >= now - 600.0 {
            s.cpu_usage = 95.0;
        }
        if s.machine_id == "worker-03"
            && (now - 1800.0..now - 1800.0 + 2.0 * plan_step(s)).contains(&s.timestamp)
        {
            s.cpu_usage = 99.0;
        }
    };
    let mut stored = 0;
    if !machines.is_empty() {
        stored =
            ingest_synthetic_analysed(sinks.clone(), &plan, findings, analytics.take()).await?;
    }
    if args.fleet > 0 {
        let fleet = SeedPlan {
            machines: (0..args.fleet).map(|i| format!("loadgen-{i}")).collect(),
            processes: 3,
            ..plan.clone()
        };
        if args.storm > 0 {
            // An alert storm: the first `storm` machines at 90 % CPU or more over
            // the last 10 minutes, through the analytics (cpu_high fires on
            // each of them).
            let storm = args.storm;
            let hot = move |s: &mut Snapshot| {
                fleet_machine(s);
                let n: usize = s
                    .machine_id
                    .rsplit('-')
                    .next()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(usize::MAX);
                if n < storm && s.timestamp >= now - 600.0 {
                    // Hot, and still one value per machine (sorts have one answer).
                    s.cpu_usage = 90.0 + n as f64 / 100.0;
                }
            };
            stored +=
                ingest_synthetic_analysed(sinks.clone(), &fleet, hot, analytics.take()).await?;
        } else {
            stored += ingest_synthetic(sinks.clone(), &fleet, fleet_machine).await?;
        }
    }
    println!(
        "stored {stored} snapshots of {} machines in {}",
        machines.len() + args.fleet,
        args.db.display()
    );
    if let Some(secs) = args.live {
        let start = sysmon_dashboard::now_epoch_secs();
        let mut t = now;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let wall = sysmon_dashboard::now_epoch_secs();
            if secs > 0 && wall - start >= secs as f64 {
                break;
            }
            let plan = SeedPlan {
                since: t,
                until: wall,
                step: 1.0,
                ..plan.clone()
            };
            t = plan.since + ((wall - t) / 1.0).ceil();
            ingest_synthetic(sinks.clone(), &plan, decorate).await?;
        }
    }
    Ok(())
}
