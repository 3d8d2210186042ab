//! `sysmon query`: print stored snapshots (JSON lines in the wire format, or a table).

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use sysmon_core::agent::now_epoch_secs;
use sysmon_core::text::escape;
use sysmon_core::{MachineSummary, Snapshot, SnapshotStore};
use sysmon_sinks::query::QueryLayer;
use sysmon_sinks::redis::RedisStore;

use crate::cli::{parse_duration, CommonArgs, DbArgs};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per line, in the native wire format, oldest first.
    Jsonl,
    /// A human-readable table.
    Table,
}

/// Flags of `sysmon query`.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Only this machine [default: all machines].
    #[arg(long)]
    machine: Option<String>,
    /// How far back: 30s, 15m, 24h, 7d.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    since: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Jsonl)]
    format: OutputFormat,
    /// At most this many snapshots (the oldest in the range first).
    #[arg(long, default_value_t = 100_000)]
    limit: usize,
    /// List the known machines (id, host name, last seen) instead of snapshots.
    #[arg(long)]
    machines: bool,
    /// Redis URL (redis://[user:pass@]host:port/db or rediss://) of the ingester's hot
    /// window: the recent part of the range is read from Redis, older samples from SQLite
    /// (same answer, faster; SQLite answers whatever Redis cannot).
    #[arg(long, env = "SYSMON_REDIS", hide_env_values = true)]
    redis: Option<String>,
}

/// Runs `sysmon query`.
pub async fn run(args: QueryArgs, common: &CommonArgs) -> anyhow::Result<()> {
    let mut config = crate::load_config(common.config.as_deref())?;
    args.db.apply(&mut config);
    let path = &config.sqlite.path;
    if crate::history::postgres_url(&config).is_none() && !path.exists() {
        bail!(
            "no database at {}: run `sysmon standalone` or `sysmon ingest` first, or pass --db",
            path.display()
        );
    }
    if let Some(u) = &args.redis {
        config.redis.url = Some(u.clone());
    }
    let history = crate::history::History::open(&config, args.db.db_password_file.as_deref())
        .await?
        .store();
    let store = match &config.redis.url {
        Some(_) => QueryLayer::with_redis(
            history,
            RedisStore::connect(&config.redis)
                .await
                .context("connecting to Redis")?,
        ),
        None => QueryLayer::cold_only(history),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.machines {
        write_machines(&mut out, &store.machines().await?)?;
        out.flush()?;
        return Ok(());
    }
    let until = now_epoch_secs() + 1.0;
    let since = until - args.since.as_secs_f64();
    let rows = store
        .range(args.machine.as_deref(), since, until, args.limit)
        .await?;
    match args.format {
        OutputFormat::Jsonl => {
            for s in &rows {
                out.write_all(&sysmon_core::encode_json(s))?;
                out.write_all(b"\n")?;
            }
        }
        OutputFormat::Table => write_table(&mut out, &rows)?,
    }
    out.flush()?;
    Ok(())
}

fn format_time(ts: f64) -> String {
    chrono::DateTime::from_timestamp_millis((ts * 1000.0) as i64)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| format!("{ts}"))
}

fn human_rate(bytes_per_sec: Option<f64>) -> String {
    let Some(v) = bytes_per_sec else {
        return "-".into();
    };
    const UNITS: [&str; 5] = ["B/s", "KB/s", "MB/s", "GB/s", "TB/s"];
    let mut v = v;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1}{}", UNITS[u])
}

/// `--machines`: id, host name and last seen, one machine a line. What agents
/// sent is escaped (a host name with terminal escape codes prints them as
/// `\u{1b}`, never acts on the terminal).
fn write_machines(out: &mut impl Write, machines: &[MachineSummary]) -> std::io::Result<()> {
    for m in machines {
        writeln!(
            out,
            "{}\t{}\t{}",
            escape(&m.machine_id),
            escape(m.hostname.as_deref().unwrap_or("-")),
            format_time(m.last_seen)
        )?;
    }
    Ok(())
}

fn write_table(out: &mut impl Write, rows: &[Snapshot]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<19}  {:<24} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "time", "machine", "cpu%", "mem%", "disk rd", "disk wr", "net tx", "net rx", "load1"
    )?;
    for s in rows {
        writeln!(
            out,
            "{:<19}  {:<24} {:>6.1} {:>6.1} {:>10} {:>10} {:>10} {:>10} {:>6}",
            format_time(s.timestamp),
            escape(&s.machine_id),
            s.cpu_usage,
            s.memory_usage,
            human_rate(s.disk_rate.map(|r| r.read)),
            human_rate(s.disk_rate.map(|r| r.write)),
            human_rate(s.network_rate.map(|r| r.sent)),
            human_rate(s.network_rate.map(|r| r.recv)),
            s.load_avg
                .map(|l| format!("{:.2}", l.one))
                .unwrap_or_else(|| "-".into()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escape_codes_from_agents_are_printed_escaped() {
        let evil = "web\u{1b}]0;owned\u{7}\u{1b}[2J";
        let mut out = Vec::new();
        write_machines(
            &mut out,
            &[MachineSummary {
                machine_id: "m\u{9b}1".into(),
                hostname: Some(evil.into()),
                last_seen: 1_764_086_400.0,
            }],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{9b}'),
            "{text:?}"
        );
        assert!(
            text.contains("web\\u{1b}]0;owned\\u{7}\\u{1b}[2J"),
            "{text}"
        );
        assert!(text.starts_with("m\\u{9b}1\t"), "{text}");

        let mut out = Vec::new();
        write_table(
            &mut out,
            &[Snapshot::new("a\u{1b}[31mred", 1_764_086_400.0)],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("a\\u{1b}[31mred"), "{text}");
    }
}
