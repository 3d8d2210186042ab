//! `sysmon import`: copy a SQLite history into PostgreSQL (moving up from one
//! master to several). Machines, raw samples with their processes, per-minute
//! rollups and the alert history; idempotent and resumable: samples are keyed
//! by (machine, timestamp) and each machine continues after the newest sample
//! PostgreSQL already has, so an interrupted import is simply run again.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sysmon_core::Sink;
use sysmon_sinks::postgres::{PostgresConfig, PostgresSink};
use sysmon_sinks::sqlite::{RollupCursor, SqliteSink};
use tracing::info;

use crate::cli::{CommonArgs, DbArgs};

/// Snapshots read and written per batch.
const PAGE: usize = 2_000;

/// Flags of `sysmon import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The SQLite history to copy (left untouched).
    #[arg(long)]
    from: PathBuf,
    #[command(flatten)]
    db: DbArgs,
    /// No progress bar (logs only), e.g. when output goes to a file.
    #[arg(long)]
    no_progress: bool,
}

/// The next representable timestamp after `t` (the next page's lower bound).
fn after(t: f64) -> f64 {
    if t >= 0.0 {
        f64::from_bits(t.to_bits() + 1)
    } else {
        t + f64::EPSILON * t.abs().max(1.0)
    }
}

/// Runs `sysmon import`.
pub async fn run(args: ImportArgs, common: &CommonArgs) -> anyhow::Result<()> {
    let mut config = crate::load_config(common.config.as_deref())?;
    args.db.apply(&mut config);
    let Some(url) = crate::history::postgres_url(&config) else {
        bail!("--db must name the PostgreSQL database to import into (postgresql://...)");
    };
    if !args.from.exists() {
        bail!("no SQLite history at {}", args.from.display());
    }
    let source = SqliteSink::open(&sysmon_core::config::SqliteConfig {
        path: args.from.clone(),
        ..config.sqlite.clone()
    })
    .with_context(|| format!("opening {}", args.from.display()))?;
    let pg_config = PostgresConfig {
        password_file: args.db.db_password_file.clone(),
        ..PostgresConfig::from_storage(url, &config.sqlite)
    };
    let target = PostgresSink::open(&pg_config)
        .await
        .with_context(|| format!("opening {}", pg_config.redacted_url()))?;

    let machines = source.list_machines().await?;
    target.import_machines(&machines).await?;
    let total = source.sample_count().await?;
    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:40}] {pos}/{len} samples ({per_sec}, {eta} left) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix("import");
    info!(from = %args.from.display(), to = %target.describe(), machines = machines.len(),
          samples = total, "importing the SQLite history");

    let mut copied = 0u64;
    for m in &machines {
        bar.set_message(m.machine_id.clone());
        // Resume after what PostgreSQL already has of this machine.
        let mut since = match target.latest_snapshot(&m.machine_id).await? {
            Some(s) => {
                let have = target
                    .snapshots(
                        Some(&m.machine_id),
                        f64::NEG_INFINITY,
                        s.timestamp,
                        usize::MAX,
                    )
                    .await?
                    .len() as u64;
                bar.inc(have.min(total));
                s.timestamp
            }
            None => f64::NEG_INFINITY,
        };
        loop {
            let page = source
                .snapshots(Some(&m.machine_id), since, f64::INFINITY, PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            since = after(last.timestamp);
            let n = page.len() as u64;
            target
                .write(page.into())
                .await
                .context("writing to PostgreSQL")?;
            copied += n;
            bar.inc(n);
        }
    }
    bar.finish_with_message("samples done");

    let mut cursor = RollupCursor::default();
    let mut rollups = 0;
    loop {
        let (rows, next) = source.rollups_after(cursor, 10_000).await?;
        if rows.is_empty() {
            break;
        }
        rollups += target.import_rollups(&rows).await?;
        cursor = next;
    }
    let events = source.alert_history(f64::NEG_INFINITY, usize::MAX).await?;
    let events_added = target.import_alert_events(&events).await?;
    // Per-minute rollups of the imported raw samples, if this process may
    // maintain (otherwise the ingester that does will).
    let maintained = target
        .maintain_at(sysmon_core::agent::now_epoch_secs())
        .await?;
    println!(
        "imported {} machine(s), {copied} sample(s) copied now ({total} in the file), \
         {rollups} rollup row(s) and {events_added} alert event(s) added, into {}{}",
        machines.len(),
        target.describe(),
        if maintained.is_some() {
            ""
        } else {
            " (rollups of the raw samples follow at the ingester's next maintenance)"
        }
    );
    Ok(())
}
