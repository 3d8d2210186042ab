//! `sysmon doctor`: the worker and master setup check. Resolves and connects
//! to the brokers, reports their metadata (flagging an advertised listener
//! that points elsewhere), the topic and its partitions, round-trips one test
//! message, and with `--redis` / `--db` checks those too. Every failure comes
//! with what to fix, in plain words.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use sysmon_analytics::Config;
use sysmon_core::doctor::{CheckStatus, DoctorCheck, DoctorReport};
use sysmon_sinks::kafka::doctor;
use sysmon_sinks::redis::RedisStore;
use sysmon_sinks::sqlite::SqliteSink;

use crate::cli::{CommonArgs, DbArgs};

/// Flags of `sysmon doctor`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Kafka bootstrap brokers, `host:port[,host:port...]` [default: [kafka] brokers].
    #[arg(long, env = "SYSMON_BROKERS")]
    brokers: Option<String>,
    /// Topic to check [default: system_metrics]. The round trip uses `<topic>.doctor`.
    #[arg(long, env = "SYSMON_TOPIC")]
    topic: Option<String>,
    /// Also check this Redis (redis://[user:pass@]host:port/db or rediss://).
    #[arg(long, env = "SYSMON_REDIS", hide_env_values = true)]
    redis: Option<String>,
    #[command(flatten)]
    db: DbArgs,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

fn check(name: &str, status: CheckStatus, detail: String, fix: Option<&str>) -> DoctorCheck {
    let c = DoctorCheck::new(name, status, detail);
    match fix {
        Some(fix) => c.with_fix(fix),
        None => c,
    }
}

async fn check_redis(config: &Config) -> DoctorCheck {
    let Some(url) = config.redis.url.as_deref() else {
        return check("redis", CheckStatus::Skipped, "no --redis".into(), None);
    };
    // A password in the URL is never printed.
    let url = sysmon_core::config::redact_url_password(url);
    let store = match RedisStore::connect(&config.redis).await {
        Ok(s) => s,
        Err(e) => {
            return check(
                "redis",
                CheckStatus::Fail,
                e.to_string(),
                Some("fix the URL: redis://[user:password@]host:port/db (rediss:// for TLS)"),
            )
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), store.complete_since()).await {
        Ok(Ok(since)) => check(
            "redis",
            CheckStatus::Ok,
            match since {
                Some(t) => format!("{url} answers; it holds sysmon data since {t:.0}"),
                None => format!("{url} answers; no sysmon data yet"),
            },
            None,
        ),
        Ok(Err(e)) => check(
            "redis",
            CheckStatus::Fail,
            format!("{url}: {e}"),
            Some("start redis-server on the master, or fix the host and port in --redis"),
        ),
        Err(_) => check(
            "redis",
            CheckStatus::Fail,
            format!("{url}: no answer within 5 s"),
            Some("a firewall drops the traffic or Redis is overloaded"),
        ),
    }
}

async fn check_db(args: &DoctorArgs, config: &Config) -> DoctorCheck {
    if args.db.db.is_none() {
        return check("sqlite", CheckStatus::Skipped, "no --db".into(), None);
    }
    if let Some(url) = crate::history::postgres_url(config) {
        let what = sysmon_sinks::postgres::redact_url(url);
        let history =
            crate::history::History::open(config, args.db.db_password_file.as_deref()).await;
        let machines = match history {
            Ok(h) => h.store().machines().await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        return match machines {
            Ok(m) => check(
                "postgres",
                CheckStatus::Ok,
                format!("{what}: {} machine(s)", m.len()),
                None,
            ),
            Err(e) => check(
                "postgres",
                CheckStatus::Fail,
                format!("{what}: {e:#}"),
                Some("check the URL, the password (--db-password-file or PGPASSWORD) and sslmode"),
            ),
        };
    }
    let path = config.sqlite.path.clone();
    if !path.exists() {
        // `sysmon ingest` creates missing directories: probe the nearest existing one.
        let mut dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| ".".into());
        while !dir.exists() {
            match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
                _ => {
                    dir = ".".into();
                    break;
                }
            }
        }
        let probe = dir.join(format!(".sysmon-doctor-{}", std::process::id()));
        let writable = std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(&probe);
        return if writable {
            check(
                "sqlite",
                CheckStatus::Warn,
                format!("{} does not exist yet", path.display()),
                Some("`sysmon ingest --db` creates it on start"),
            )
        } else {
            check(
                "sqlite",
                CheckStatus::Fail,
                format!(
                    "{} does not exist and cannot be created: {} is not writable",
                    path.display(),
                    dir.display()
                ),
                Some("create the directory, or run as a user who may write there"),
            )
        };
    }
    match SqliteSink::open(&config.sqlite) {
        Ok(db) => match db.list_machines().await {
            Ok(machines) => {
                let newest = machines
                    .iter()
                    .map(|m| m.last_seen)
                    .fold(f64::NEG_INFINITY, f64::max);
                let age = age(newest);
                check(
                    "sqlite",
                    CheckStatus::Ok,
                    format!(
                        "{}: {} machine(s){}",
                        path.display(),
                        machines.len(),
                        age.map(|a| format!(", newest sample {a} ago"))
                            .unwrap_or_default()
                    ),
                    None,
                )
            }
            Err(e) => check(
                "sqlite",
                CheckStatus::Fail,
                format!("{}: {e}", path.display()),
                Some("the file is damaged or not a sysmon database"),
            ),
        },
        Err(e) => check(
            "sqlite",
            CheckStatus::Fail,
            format!("{}: {e}", path.display()),
            Some("check the path and its permissions; a file of a newer sysmon needs that version"),
        ),
    }
}

/// How long ago `epoch_secs` was, for humans.
fn age(epoch_secs: f64) -> Option<String> {
    if !epoch_secs.is_finite() {
        return None;
    }
    let now = sysmon_core::agent::now_epoch_secs();
    let secs = (now - epoch_secs).max(0.0);
    Some(sysmon_core::duration::format(Duration::from_secs(
        secs.round() as u64,
    )))
}

/// Runs the checks, prints the findings, and fails when one failed.
pub async fn run(args: DoctorArgs, common: &CommonArgs) -> anyhow::Result<()> {
    let mut config = crate::load_config(common.config.as_deref())?;
    args.db.apply(&mut config);
    if let Some(b) = &args.brokers {
        config.kafka.brokers = b.clone();
    }
    if let Some(t) = &args.topic {
        config.kafka.topic = t.clone();
    }
    if let Some(u) = &args.redis {
        config.redis.url = Some(u.clone());
    }
    let mut report: DoctorReport = doctor(
        &config.kafka.brokers,
        &config.kafka.topic,
        &config.kafka.options,
    )
    .await;
    report.checks.push(check_redis(&config).await);
    report.checks.push(check_db(&args, &config).await);
    report
        .checks
        .retain(|c| !(c.status == CheckStatus::Skipped && c.detail.starts_with("no --")));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "sysmon doctor: Kafka {} (topic {})",
            config.kafka.brokers, config.kafka.topic
        );
        print!("{report}");
    }
    let failed = report.failures().count();
    if failed > 0 {
        bail!("{failed} check(s) failed; see the fixes above");
    }
    if !args.json {
        println!("all checks passed");
    }
    Ok(())
}
