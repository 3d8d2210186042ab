//! `sysmon ingest`: the master's consumer. Reads the metrics topic as a member
//! of a consumer group, stores each batch in SQLite (and Redis with `--redis`)
//! and only then commits its offsets: at-least-once delivery, and exactly-once
//! storage because SQLite and Redis are keyed by `(machine_id, timestamp)`.
//! Several ingesters in one group split the topic's partitions.
//!
//! With `--listen` the ingester also serves the dashboard, its API and
//! `/metrics` (with the ingester's counters and consumer lag), live from the
//! stored-batch broadcast.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sysmon_analytics::Config;
use sysmon_core::ingest::SinkRole;
use sysmon_core::{Ingest, IngestStats, SnapshotStore};
use sysmon_sinks::kafka::{KafkaReceiver, Membership};
use sysmon_sinks::redis::RedisSink;
use sysmon_sinks::SinksError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{CommonArgs, DbArgs};

/// Flags of `sysmon ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Kafka bootstrap brokers, `host:port[,host:port...]` [default: 127.0.0.1:9092,
    /// or [kafka] brokers].
    #[arg(long, env = "SYSMON_BROKERS")]
    brokers: Option<String>,
    /// Topic to consume [default: system_metrics]. Bad messages are copied to `<topic>.dlq`.
    #[arg(long, env = "SYSMON_TOPIC")]
    topic: Option<String>,
    /// Consumer group; ingesters sharing a group split the partitions [default: sysmon-ingest].
    #[arg(long, env = "SYSMON_GROUP")]
    group: Option<String>,
    /// This ingester's static member name in the group (librdkafka `group.instance.id`):
    /// restarted under the same name it resumes its partitions at once [default:
    /// ingest-<machine id>, or [kafka] instance_id]. Two ingesters on one host need
    /// different names (the second would fence the first); "" turns static membership off.
    #[arg(long, env = "SYSMON_INSTANCE_ID", value_name = "NAME")]
    instance_id: Option<String>,
    /// Partitions of the topic if the ingester has to create it [default: 6].
    #[arg(long)]
    partitions: Option<i32>,
    #[command(flatten)]
    db: DbArgs,
    /// Redis URL (redis://[user:pass@]host:port/db or rediss://): also keep the recent
    /// window and live updates in Redis (best effort: SQLite is the record).
    #[arg(long, env = "SYSMON_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// Messages larger than this many bytes are dead-lettered [default: 1048576].
    #[arg(long)]
    max_message_bytes: Option<usize>,
    /// Most messages stored and committed per batch [default: 1000].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Write a JSON summary (stored, rejected, dead-lettered, dead letters refused, active seconds, stored per second,
    /// latency p50/p90/p99/max in seconds) to FILE every second and at exit, for scripts
    /// and benchmarks. The file is replaced atomically.
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// Also serve the dashboard, its API and `/metrics` (with the ingest counters and
    /// `sysmon_ingest_consumer_lag`) on this address, e.g. 127.0.0.1:7861 [default: off].
    /// 0.0.0.0:PORT opens it to the LAN (then set --auth-token).
    #[arg(long, env = "SYSMON_INGEST_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// With --listen: require this token on every route but /healthz (bearer
    /// header or login form), as `sysmon dashboard --auth-token` does.
    #[arg(long, env = "SYSMON_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
}

impl IngestArgs {
    fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        self.db.apply(config);
        if let Some(b) = &self.brokers {
            config.kafka.brokers = b.clone();
        }
        if let Some(t) = &self.topic {
            config.kafka.topic = t.clone();
        }
        if let Some(g) = &self.group {
            config.kafka.group = g.clone();
        }
        if let Some(i) = &self.instance_id {
            config.kafka.instance_id = Some(i.clone());
        }
        if config.kafka.instance_id.is_none() {
            // Stable across restarts of this host's ingester.
            let host = sysmon_core::identity::resolve_machine_id(None)?;
            config.kafka.instance_id = Some(format!("ingest-{host}"));
        }
        if let Some(p) = self.partitions {
            config.kafka.partitions = p;
        }
        if let Some(u) = &self.redis {
            config.redis.url = Some(u.clone());
        }
        if let Some(m) = self.max_message_bytes {
            config.ingest.max_message_bytes = m;
        }
        if let Some(b) = self.batch_size {
            config.ingest.batch_size = b;
        }
        if let Some(l) = &self.listen {
            config.dashboard.listen = l.clone();
        }
        if let Some(t) = &self.auth_token {
            config.dashboard.auth_token = Some(t.clone());
        }
        config.check()?;
        Ok(())
    }
}

/// Joins the consumer group, waiting (and saying so once) while Kafka is
/// unreachable; a configuration error ends it at once.
async fn connect(config: &Config, stop: &CancellationToken) -> anyhow::Result<KafkaReceiver> {
    let mut warned = false;
    loop {
        match KafkaReceiver::new(&config.kafka).await {
            Ok(r) => {
                if warned {
                    info!(brokers = %config.kafka.brokers, "Kafka is reachable");
                }
                return Ok(r);
            }
            Err(SinksError::Unavailable(why)) => {
                if !warned {
                    warn!(brokers = %config.kafka.brokers, error = %why,
                          "waiting for Kafka (check it with `sysmon doctor --brokers {}`)",
                          config.kafka.brokers);
                    warned = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.cancelled() => anyhow::bail!("stopped before Kafka was reachable"),
                }
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("connecting to Kafka at {}", config.kafka.brokers))
            }
        }
    }
}

/// `/metrics` gauges of this ingester's place in its consumer group.
fn membership_metrics(m: &Membership) -> String {
    let mut text = String::new();
    if let Some(n) = m.assigned() {
        text.push_str(
            "# HELP sysmon_ingest_assigned_partitions Partitions this ingester owns in its group.\n\
             # TYPE sysmon_ingest_assigned_partitions gauge\n",
        );
        text.push_str(&format!("sysmon_ingest_assigned_partitions {n}\n"));
    }
    if let Some(lag) = m.unowned_lag() {
        text.push_str(
            "# HELP sysmon_ingest_idle_group_lag While this ingester owns no partitions: \
             messages its group has not committed (a lower bound on tansu).\n\
             # TYPE sysmon_ingest_idle_group_lag gauge\n",
        );
        text.push_str(&format!("sysmon_ingest_idle_group_lag {lag}\n"));
    }
    text
}

/// `/metrics` gauges of the Redis sink's per-machine memory.
fn redis_memo_metrics(r: &RedisSink) -> String {
    format!(
        "# HELP sysmon_redis_memo_machines Machines the Redis sink remembers, by memo \
         (writes: what it wrote, pruned after the keys' TTL; pending: owed after an outage).\n\
         # TYPE sysmon_redis_memo_machines gauge\n\
         sysmon_redis_memo_machines{{memo=\"writes\"}} {}\n\
         sysmon_redis_memo_machines{{memo=\"pending\"}} {}\n",
        r.memo_machines(),
        r.pending_machines()
    )
}

/// The summary `--stats-json` writes.
fn stats_json(stats: &IngestStats) -> serde_json::Value {
    let l = stats.latency_summary();
    serde_json::json!({
        "received": stats.received.load(Ordering::Relaxed),
        "stored": stats.stored.load(Ordering::Relaxed),
        "rejected": stats.rejected.load(Ordering::Relaxed),
        "dead_lettered": stats.dead_lettered.load(Ordering::Relaxed),
        "dead_letter_failures": stats.dead_letter_failures.load(Ordering::Relaxed),
        "batches": stats.batches.load(Ordering::Relaxed),
        "active_secs": stats.active_time().as_secs_f64(),
        "stored_per_sec": stats.stored_per_sec(),
        "latency_count": l.count,
        "latency_p50_secs": l.p50.as_secs_f64(),
        "latency_p90_secs": l.p90.as_secs_f64(),
        "latency_p99_secs": l.p99.as_secs_f64(),
        "latency_max_secs": l.max.as_secs_f64(),
        "latency_mean_secs": l.mean.as_secs_f64(),
    })
}

/// Writes the summary to `path` through a temporary file and a rename, so a
/// reader never sees half a file.
fn write_stats_json(path: &Path, stats: &IngestStats) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{}\n", stats_json(stats)))?;
    std::fs::rename(&tmp, path)
}

/// Runs until SIGINT/SIGTERM; the batch in progress is stored and committed first.
pub async fn run(args: IngestArgs, common: &CommonArgs) -> anyhow::Result<()> {
    let mut config = crate::load_config(common.config.as_deref())?;
    args.apply(&mut config)?;
    let history =
        crate::history::History::open(&config, args.db.db_password_file.as_deref()).await?;
    // Bind before joining the group: a taken port is an error at once.
    let listener = match &args.listen {
        Some(_) => Some(crate::serve::listen(&config).await?),
        None => None,
    };
    let stop = crate::shutdown_on_signal();
    let receiver = connect(&config, &stop).await?;
    let consumer_lag = receiver.consumer_lag();
    let membership = receiver.membership();
    let mut ingest = Ingest::new(Box::new(receiver), config.ingest_options());
    ingest.add_sink(history.sink(), SinkRole::Required);
    let mut redis_for_alerts = None;
    let mut redis_for_metrics = None;
    if config.redis.url.is_some() {
        let cold: Arc<dyn SnapshotStore> = history.store();
        let redis = RedisSink::connect(&config.redis)
            .await
            .context("connecting to Redis")?
            .with_backfill(cold);
        redis_for_alerts = Some(redis.clone());
        redis_for_metrics = Some(redis.clone());
        ingest.add_sink(Arc::new(redis), SinkRole::BestEffort);
    }
    let stats = ingest.stats();
    // Alerts, anomaly scores and notifications from every stored batch.
    let analytics = crate::analytics::start(
        &config,
        &ingest.events(),
        stats.clone(),
        history.analytics(),
        history.store(),
        history.shared_fleet(),
        redis_for_alerts,
    )?;

    // `--listen`: the dashboard and /metrics, fed by this ingester.
    let dashboard_task = listener.map(|listener| {
        let lag = consumer_lag.clone();
        println!(
            "dashboard: {}",
            crate::serve::dashboard_url(&config.dashboard.listen)
        );
        tokio::spawn(
            crate::serve::in_process(
                &config,
                &history,
                ingest.events(),
                stats.clone(),
                &analytics,
            )
            .with_consumer_lag(Arc::new(move || lag.get()))
            .with_extra_metrics(Arc::new(move || {
                let mut text = membership_metrics(&membership);
                if let Some(r) = &redis_for_metrics {
                    text.push_str(&redis_memo_metrics(r));
                }
                text
            }))
            .serve(listener, stop.clone()),
        )
    });
    info!(
        brokers = %config.kafka.brokers,
        topic = %config.kafka.topic,
        group = %config.kafka.group,
        instance_id = config.kafka.instance_id.as_deref().unwrap_or(""),
        db = %history.describe(),
        redis = config.redis.url.is_some(),
        "sysmon ingest running"
    );

    // A line a minute with what happened, when something did.
    let progress = {
        let stats = stats.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut last = (0, 0);
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                let now = (
                    stats.stored.load(Ordering::Relaxed),
                    stats.rejected.load(Ordering::Relaxed),
                );
                if now != last {
                    info!(
                        stored_last_minute = now.0 - last.0,
                        rejected_last_minute = now.1 - last.1,
                        stored_total = now.0,
                        "ingest progress"
                    );
                    last = now;
                }
            }
        })
    };

    // `--stats-json`: the summary every second while running.
    let stats_writer = args.stats_json.clone().map(|path| {
        let stats = stats.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut warned = false;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                if let Err(e) = write_stats_json(&path, &stats) {
                    if !warned {
                        warn!(path = %path.display(), error = %e, "cannot write --stats-json");
                        warned = true;
                    }
                }
            }
        })
    });

    let result = ingest.run(stop.clone()).await;
    stop.cancel();
    // What was stored before the stop is still analysed (and notified).
    if let Err(e) = analytics.finish().await {
        warn!(error = %e, "analytics stopped with an error");
    }
    let _ = progress.await;
    if let Some(d) = dashboard_task {
        match d.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "dashboard failed"),
            Err(e) => warn!(error = %e, "dashboard task failed"),
        }
    }
    if let Some(w) = stats_writer {
        let _ = w.await;
    }
    let latency = stats.latency_summary();
    info!(
        stored = stats.stored.load(Ordering::Relaxed),
        active_secs = format!("{:.1}", stats.active_time().as_secs_f64()),
        stored_per_sec = format!("{:.0}", stats.stored_per_sec()),
        latency_p50_ms = format!("{:.1}", latency.p50.as_secs_f64() * 1e3),
        latency_p99_ms = format!("{:.1}", latency.p99.as_secs_f64() * 1e3),
        latency_max_ms = format!("{:.1}", latency.max.as_secs_f64() * 1e3),
        "ingest summary (latency: sample timestamp to committed row)"
    );
    if let Some(path) = &args.stats_json {
        write_stats_json(path, &stats)
            .with_context(|| format!("writing --stats-json {}", path.display()))?;
    }
    info!(
        stored = stats.stored.load(Ordering::Relaxed),
        rejected = stats.rejected.load(Ordering::Relaxed),
        dead_lettered = stats.dead_lettered.load(Ordering::Relaxed),
        rejected_by_kind = ?stats.rejected_by_kind(),
        "ingest exited"
    );
    result.context("ingest failed")
}
