//! `sysmon loadgen`: publishes realistic snapshots for N simulated machines
//! (each with its own drifting load, see `sysmon_core::synth`) through the same
//! Kafka transport the agent uses, for scale tests and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use sysmon_core::codec::Format;
use sysmon_core::config::Compression;
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::Transport;
use sysmon_sinks::kafka::KafkaTransport;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use crate::cli::{parse_duration, CommonArgs};

/// Flags of `sysmon loadgen`.
#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// Kafka bootstrap brokers, `host:port[,host:port...]` [default: [kafka] brokers].
    #[arg(long, env = "SYSMON_BROKERS")]
    brokers: Option<String>,
    /// Topic [default: system_metrics].
    #[arg(long, env = "SYSMON_TOPIC")]
    topic: Option<String>,
    /// Number of simulated machines (ids `<prefix>-0` .. `<prefix>-N-1`).
    #[arg(long, default_value_t = 100)]
    machines: usize,
    /// Each machine sends one snapshot per interval, e.g. 1s, 100ms.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// How long to run, e.g. 60s, 10m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Wire format: `json` or `binary`.
    #[arg(long, default_value = "json")]
    format: Format,
    /// Compression of record batches: `none`, `gzip`, `lz4`, `zstd` or `snappy`. lz4 by
    /// default: the cheapest per byte saved at high volume (the agent's default is gzip,
    /// which the legacy Python consumer can read).
    #[arg(long, value_name = "CODEC", default_value = "lz4")]
    compression: Compression,
    /// Machine id prefix.
    #[arg(long, default_value = "loadgen")]
    prefix: String,
    /// Entries in each top-processes list (realistic message size).
    #[arg(long, default_value_t = 5)]
    processes: usize,
    /// Concurrent publishers (each owns a share of the machines, so every
    /// machine's samples stay in order).
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// What a run achieved.
#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    failed: AtomicU64,
    skipped_ticks: AtomicU64,
    bytes: AtomicU64,
}

fn epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Publishes until `--duration` has passed, then prints what it achieved.
pub async fn run(args: LoadgenArgs, common: &CommonArgs) -> anyhow::Result<()> {
    if args.machines == 0 {
        bail!("--machines must be at least 1");
    }
    if args.interval < Duration::from_millis(1) {
        bail!("--interval must be at least 1ms");
    }
    let mut config = crate::load_config(common.config.as_deref())?;
    if let Some(b) = &args.brokers {
        config.kafka.brokers = b.clone();
    }
    if let Some(t) = &args.topic {
        config.kafka.topic = t.clone();
    }
    config.kafka.format = args.format;
    config.kafka.compression = args.compression;
    let transport =
        Arc::new(KafkaTransport::new(&config.kafka).context("creating the Kafka producer")?);
    let publishers = args.publishers.clamp(1, args.machines);
    let target_rate = args.machines as f64 / args.interval.as_secs_f64();
    info!(
        machines = args.machines,
        interval = %sysmon_core::duration::format(args.interval),
        duration = %sysmon_core::duration::format(args.duration),
        format = %args.format,
        target_per_sec = target_rate,
        transport = %transport.describe(),
        "loadgen starting"
    );

    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + args.duration;
    let stop = crate::shutdown_on_signal();
    let mut tasks = Vec::new();
    for shard in 0..publishers {
        let mut machines: Vec<SyntheticMachine> = (shard..args.machines)
            .step_by(publishers)
            .map(|i| SyntheticMachine::new(format!("{}-{i}", args.prefix), i as u64))
            .collect();
        let transport = transport.clone();
        let counters = counters.clone();
        let stop = stop.clone();
        let (interval, processes, format) = (args.interval, args.processes, args.format);
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let mut last_tick: Option<tokio::time::Instant> = None;
            let mut warned = false;
            loop {
                let tick = tokio::select! {
                    t = ticker.tick() => t,
                    _ = stop.cancelled() => break,
                };
                if tick >= deadline {
                    break;
                }
                if let Some(prev) = last_tick {
                    let missed = (tick - prev).as_secs_f64() / interval.as_secs_f64() - 1.0;
                    if missed >= 0.5 {
                        counters
                            .skipped_ticks
                            .fetch_add(missed.round() as u64, Ordering::Relaxed);
                    }
                }
                last_tick = Some(tick);
                let ts = epoch_secs();
                let batch: Vec<_> = machines
                    .iter_mut()
                    .map(|m| m.next_snapshot(ts, processes))
                    .collect();
                let bytes: usize = batch
                    .iter()
                    .map(|s| sysmon_core::codec::encode(s, format).len())
                    .sum();
                match transport.publish(&batch).await {
                    Ok(()) => {
                        counters
                            .published
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        counters
                            .failed
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        if !warned {
                            warn!(error = %e, "publishing failed (counted; the load generator does not retry)");
                            warned = true;
                        }
                    }
                }
            }
        }));
    }

    // Progress every 5 s.
    let progress = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.tick().await;
            let mut last = 0;
            loop {
                tick.tick().await;
                let now = counters.published.load(Ordering::Relaxed);
                info!(
                    published = now,
                    per_sec = (now - last) as f64 / 5.0,
                    failed = counters.failed.load(Ordering::Relaxed),
                    "loadgen progress"
                );
                last = now;
            }
        })
    };
    for t in tasks {
        t.await.context("publisher task failed")?;
    }
    progress.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let published = counters.published.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    let skipped = counters.skipped_ticks.load(Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    let rate = published as f64 / elapsed.max(1e-9);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "machines": args.machines,
                "interval_secs": args.interval.as_secs_f64(),
                "format": args.format.as_str(),
                "elapsed_secs": elapsed,
                "published": published,
                "failed": failed,
                "skipped_ticks": skipped,
                "bytes": bytes,
                "per_sec": rate,
                "target_per_sec": target_rate,
            })
        );
    } else {
        println!(
            "published {published} snapshots from {} machines in {elapsed:.1} s: \
             {rate:.0}/s (target {target_rate:.0}/s), {:.0} bytes each on average, \
             {failed} failed, {skipped} ticks skipped (publisher behind schedule)",
            args.machines,
            bytes as f64 / published.max(1) as f64,
        );
    }
    if published == 0 {
        bail!("nothing was published: is Kafka reachable? try `sysmon doctor`");
    }
    Ok(())
}
