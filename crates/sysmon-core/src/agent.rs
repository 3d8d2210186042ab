//! The agent runtime: collectors on a fixed-rate schedule into a bounded
//! [`SampleBuffer`], and a publisher that drains the buffer into a [`Transport`].
//!
//! * Collection runs on a blocking thread (collectors read `/proc`), never on the
//!   async runtime. Ticks are at fixed instants aligned to the wall clock
//!   (`interval` multiples), so the schedule does not drift; a late tick is
//!   skipped, never bunched.
//! * A failing or panicking collector yields a partial snapshot with the error
//!   in `collector_errors`; it is logged when it starts failing and when it recovers.
//! * While the transport is down, samples wait in the buffer (oldest dropped and
//!   counted beyond its capacity) and are delivered in order once it is back.
//!   The outage is logged when it starts and when it ends.
//! * [`AgentHandle::shutdown`] stops sampling, then delivers everything already
//!   collected (up to `shutdown_timeout`), then flushes the transport.

use std::collections::{BTreeMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::buffer::SampleBuffer;
use crate::collector::Collector;
use crate::config::AgentConfig;
use crate::error::CoreError;
use crate::identity;
use crate::snapshot::{CollectorFailure, Snapshot};
use crate::spool::Spool;
use crate::transport::Transport;

/// What the agent needs besides collectors and a transport.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// This machine's id.
    pub machine_id: String,
    /// This machine's host name.
    pub hostname: Option<String>,
    /// Sampling interval.
    pub interval: Duration,
    /// Labels attached to every snapshot.
    pub labels: BTreeMap<String, String>,
    /// Samples held while the transport is down.
    pub buffer_capacity: usize,
    /// Most snapshots per publish.
    pub batch_size: usize,
    /// How long shutdown waits to deliver the backlog.
    pub shutdown_timeout: Duration,
    /// Directory of the on-disk spool: undelivered samples are saved there at
    /// shutdown (and every few seconds during an outage) and delivered first by
    /// the next agent. `None`: the backlog lives in memory only.
    pub spool_dir: Option<PathBuf>,
}

impl AgentOptions {
    /// Options for `machine_id` with the defaults of [`AgentConfig`].
    pub fn new(machine_id: impl Into<String>) -> Self {
        let d = AgentConfig::default();
        AgentOptions {
            machine_id: machine_id.into(),
            hostname: identity::hostname(),
            interval: d.interval,
            labels: d.labels,
            buffer_capacity: d.buffer_capacity,
            batch_size: d.batch_size,
            shutdown_timeout: d.shutdown_timeout,
            spool_dir: d.spool_dir,
        }
    }

    /// Options from the `[agent]` config, resolving the machine id.
    pub fn from_config(c: &AgentConfig) -> Result<Self, CoreError> {
        Ok(AgentOptions {
            machine_id: identity::resolve_machine_id(c.machine_id.as_deref())?,
            hostname: identity::hostname(),
            interval: c.interval,
            labels: c.labels.clone(),
            buffer_capacity: c.buffer_capacity,
            batch_size: c.batch_size,
            shutdown_timeout: c.shutdown_timeout,
            spool_dir: c.spool_dir.clone(),
        })
    }
}

/// Counters of a running agent.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Snapshots taken.
    pub collected: AtomicU64,
    /// Snapshots the transport accepted.
    pub published: AtomicU64,
    /// Failed publish attempts.
    pub publish_failures: AtomicU64,
    /// Collector failures (one per collector per snapshot).
    pub collector_failures: AtomicU64,
}

/// What the agent did, returned by [`AgentHandle::shutdown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReport {
    /// Snapshots taken.
    pub collected: u64,
    /// Snapshots the transport accepted.
    pub published: u64,
    /// Snapshots dropped because the buffer was full during an outage.
    pub dropped: u64,
    /// Snapshots still undelivered when shutdown gave up.
    pub undelivered: u64,
    /// Of the undelivered, how many were saved to the on-disk spool for the
    /// next agent to deliver.
    pub spooled: u64,
}

/// Builds a snapshot from collectors; shared by the runtime and `--once`.
struct Sampler {
    collectors: Vec<Box<dyn Collector>>,
    options: AgentOptions,
    failing: HashSet<String>,
    stats: Arc<AgentStats>,
}

impl Sampler {
    fn sample(&mut self, timestamp: f64) -> Snapshot {
        let mut s = Snapshot::new(self.options.machine_id.clone(), timestamp);
        s.hostname = self.options.hostname.clone();
        s.interval_secs = Some(self.options.interval.as_secs_f64());
        s.labels = self.options.labels.clone();
        for c in &mut self.collectors {
            let outcome = catch_unwind(AssertUnwindSafe(|| c.collect(&mut s)));
            let name = c.name().to_string();
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(panic) => Some(format!(
                    "panicked: {}",
                    panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into())
                )),
            };
            match failure {
                None => {
                    if self.failing.remove(&name) {
                        info!(collector = %name, "collector recovered");
                    }
                }
                Some(message) => {
                    self.stats
                        .collector_failures
                        .fetch_add(1, Ordering::Relaxed);
                    if self.failing.insert(name.clone()) {
                        warn!(collector = %name, error = %message,
                              "collector failing; snapshots carry the error and the other collectors go on");
                    }
                    // Within the ingester's limit, so the snapshot is never rejected for it.
                    let message =
                        crate::text::truncate(&message, crate::codec::MAX_COLLECTOR_MESSAGE_BYTES)
                            .to_string();
                    s.collector_errors.push(CollectorFailure {
                        collector: name,
                        message,
                    });
                }
            }
        }
        s.quantize();
        s
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The agent: collectors, options and a transport, ready to [`spawn`](Agent::spawn).
pub struct Agent {
    options: AgentOptions,
    collectors: Vec<Box<dyn Collector>>,
    transport: Arc<dyn Transport>,
}

impl Agent {
    /// An agent publishing to `transport`, with no collectors yet.
    pub fn new(options: AgentOptions, transport: Arc<dyn Transport>) -> Self {
        Agent {
            options,
            collectors: Vec::new(),
            transport,
        }
    }

    /// Adds a collector (built-in or your own).
    pub fn with_collector(mut self, collector: Box<dyn Collector>) -> Self {
        self.collectors.push(collector);
        self
    }

    /// Adds several collectors.
    pub fn with_collectors(mut self, collectors: Vec<Box<dyn Collector>>) -> Self {
        self.collectors.extend(collectors);
        self
    }

    /// The options.
    pub fn options(&self) -> &AgentOptions {
        &self.options
    }

    /// Takes one snapshot now on the calling thread (blocking; for `--once`).
    pub fn sample_now(&mut self) -> Snapshot {
        let mut sampler = Sampler {
            collectors: std::mem::take(&mut self.collectors),
            options: self.options.clone(),
            failing: HashSet::new(),
            stats: Arc::new(AgentStats::default()),
        };
        let s = sampler.sample(now_epoch_secs());
        self.collectors = sampler.collectors;
        s
    }

    /// Starts sampling and publishing on the current tokio runtime.
    pub fn spawn(self) -> AgentHandle {
        let stats = Arc::new(AgentStats::default());
        let buffer = Arc::new(SampleBuffer::new(self.options.buffer_capacity));
        let stop = CancellationToken::new();
        let drain = CancellationToken::new();
        let abort = CancellationToken::new();
        let spool = self
            .options
            .spool_dir
            .as_ref()
            .map(|dir| Arc::new(Spool::new(dir, &self.options.machine_id)));
        // The previous agent's backlog goes first, in order.
        let mut spooled = 0;
        if let Some(spool) = &spool {
            match spool.load(self.options.buffer_capacity) {
                Ok(backlog) => {
                    spooled = backlog.len();
                    for s in backlog {
                        buffer.push(s);
                    }
                    if spooled > 0 {
                        info!(path = %spool.path().display(), samples = spooled,
                              "loaded the spooled backlog; delivering it before new samples");
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the spool; starting without its backlog")
                }
            }
        }
        info!(
            machine_id = %self.options.machine_id,
            interval = ?self.options.interval,
            collectors = self.collectors.len(),
            transport = %self.transport.describe(),
            "agent started"
        );
        let sampler = Sampler {
            collectors: self.collectors,
            options: self.options.clone(),
            failing: HashSet::new(),
            stats: stats.clone(),
        };
        let collect = tokio::spawn(collect_loop(
            sampler,
            self.options.interval,
            buffer.clone(),
            stats.clone(),
            stop.clone(),
        ));
        let publish = tokio::spawn(publish_loop(
            self.transport.clone(),
            buffer.clone(),
            stats.clone(),
            self.options.batch_size,
            spool.clone().map(|s| (s, spooled > 0)),
            drain.clone(),
            abort.clone(),
        ));
        AgentHandle {
            stop,
            drain,
            abort,
            collect,
            publish,
            buffer,
            stats,
            transport: self.transport,
            shutdown_timeout: self.options.shutdown_timeout,
            spool,
        }
    }
}

/// Delay from now until the next wall-clock multiple of `interval`.
fn delay_to_next_boundary(interval: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let i = interval.as_nanos().max(1);
    let rem = now.as_nanos() % i;
    Duration::from_nanos((i - rem) as u64)
}

async fn collect_loop(
    sampler: Sampler,
    interval: Duration,
    buffer: Arc<SampleBuffer>,
    stats: Arc<AgentStats>,
    stop: CancellationToken,
) {
    let mut sampler = Some(sampler);
    // Collectors were primed when built; the first tick is one boundary away, at
    // least half an interval later, so rate and CPU figures cover a real interval.
    let mut first = delay_to_next_boundary(interval);
    if first < interval / 2 {
        first += interval;
    }
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + first, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dropping = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let Some(mut s) = sampler.take() else { break };
        let ts = now_epoch_secs();
        match tokio::task::spawn_blocking(move || {
            let snap = s.sample(ts);
            (s, snap)
        })
        .await
        {
            Ok((s, snap)) => {
                sampler = Some(s);
                stats.collected.fetch_add(1, Ordering::Relaxed);
                if buffer.push(snap) && !dropping {
                    dropping = true;
                    warn!(
                        capacity = buffer.capacity(),
                        "sample buffer full: dropping the oldest samples (counted)"
                    );
                } else if dropping && buffer.len() < buffer.capacity() {
                    dropping = false;
                }
            }
            Err(e) => {
                error!(error = %e, "sampling thread failed; the agent stops sampling");
                break;
            }
        }
    }
    debug!("collection stopped");
}

async fn publish_loop(
    transport: Arc<dyn Transport>,
    buffer: Arc<SampleBuffer>,
    stats: Arc<AgentStats>,
    batch_size: usize,
    spool: Option<(Arc<Spool>, bool)>,
    drain: CancellationToken,
    abort: CancellationToken,
) {
    // Capped at a second: the broker's return is noticed within about a second.
    let mut backoff = Backoff::DEPENDENCY;
    // The outage and the drop count when it began.
    let mut outage = crate::outage::Outage::default();
    let mut dropped_before = 0u64;
    // The spool file, and whether it may hold samples not yet delivered.
    let (spool, mut spool_dirty) = match spool {
        Some((s, dirty)) => (Some(s), dirty),
        None => (None, false),
    };
    let mut last_spool_save: Option<Instant> = None;
    loop {
        if buffer.is_empty() {
            if drain.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = buffer.wait_nonempty() => {}
                _ = drain.cancelled() => continue,
                _ = abort.cancelled() => break,
            }
        }
        let batch = buffer.take(batch_size);
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        let result = tokio::select! {
            r = transport.publish(&batch) => Some(r),
            _ = abort.cancelled() => None,
        };
        match result {
            Some(Ok(())) => {
                stats.published.fetch_add(n, Ordering::Relaxed);
                backoff.reset();
                if let (Some(spool), true) = (&spool, spool_dirty) {
                    if buffer.is_empty() {
                        // Everything spooled has been delivered.
                        match spool.clear() {
                            Ok(()) => spool_dirty = false,
                            Err(e) => warn!(error = %e, "cannot remove the delivered spool"),
                        }
                    }
                }
                if let Some(lasted) = outage.ended() {
                    info!(
                        transport = %transport.describe(),
                        outage = %crate::outage::human(lasted),
                        backlog = buffer.len(),
                        dropped = buffer.dropped() - dropped_before,
                        "transport reachable again; delivering the backlog in order"
                    );
                }
            }
            Some(Err(e)) => {
                buffer.requeue_front(batch);
                stats.publish_failures.fetch_add(1, Ordering::Relaxed);
                if outage.failed() {
                    warn!(
                        transport = %transport.describe(),
                        error = %e,
                        capacity = buffer.capacity(),
                        "cannot publish; buffering samples until the transport is back \
                         (logged again once it is)"
                    );
                    dropped_before = buffer.dropped();
                }
                // During an outage, the buffer goes to disk every few seconds so that
                // a crash (not only a clean shutdown) keeps the backlog.
                if let Some(spool) = &spool {
                    if last_spool_save.is_none_or(|t| t.elapsed() >= SPOOL_SAVE_EVERY) {
                        last_spool_save = Some(Instant::now());
                        let (spool, contents) = (spool.clone(), buffer.contents());
                        match tokio::task::spawn_blocking(move || spool.save(&contents)).await {
                            Ok(Ok(())) => spool_dirty = true,
                            Ok(Err(e)) => warn!(error = %e, "cannot write the spool"),
                            Err(e) => warn!(error = %e, "spool writer failed"),
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = abort.cancelled() => break,
                }
            }
            None => {
                buffer.requeue_front(batch);
                break;
            }
        }
    }
}

/// How often the buffer is written to the spool during an outage.
const SPOOL_SAVE_EVERY: Duration = Duration::from_secs(5);

/// A running agent.
pub struct AgentHandle {
    stop: CancellationToken,
    drain: CancellationToken,
    abort: CancellationToken,
    collect: JoinHandle<()>,
    publish: JoinHandle<()>,
    buffer: Arc<SampleBuffer>,
    stats: Arc<AgentStats>,
    transport: Arc<dyn Transport>,
    shutdown_timeout: Duration,
    spool: Option<Arc<Spool>>,
}

impl AgentHandle {
    /// Live counters.
    pub fn stats(&self) -> &AgentStats {
        &self.stats
    }

    /// Snapshots waiting in the buffer.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Snapshots dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.buffer.dropped()
    }

    /// Stops sampling, delivers what was collected (up to the shutdown timeout),
    /// flushes the transport and reports.
    pub async fn shutdown(self) -> AgentReport {
        self.stop.cancel();
        let _ = self.collect.await;
        self.drain.cancel();
        let mut publish = self.publish;
        if tokio::time::timeout(self.shutdown_timeout, &mut publish)
            .await
            .is_err()
        {
            self.abort.cancel();
            let _ = publish.await;
        }
        if let Err(e) = self.transport.flush(self.shutdown_timeout).await {
            warn!(error = %e, "flushing the transport at shutdown failed");
        }
        let undelivered = self.buffer.contents();
        let mut spooled = 0;
        if let Some(spool) = &self.spool {
            let n = undelivered.len() as u64;
            let spool = spool.clone();
            let result = tokio::task::spawn_blocking(move || spool.save(&undelivered)).await;
            match result {
                Ok(Ok(())) => spooled = n,
                Ok(Err(e)) => error!(error = %e, "cannot write the spool at shutdown"),
                Err(e) => error!(error = %e, "spool writer failed at shutdown"),
            }
            if spooled > 0 {
                if let Some(s) = &self.spool {
                    info!(path = %s.path().display(), samples = spooled,
                          "undelivered samples saved to the spool; the next agent delivers them first");
                }
            }
        }
        let report = AgentReport {
            collected: self.stats.collected.load(Ordering::Relaxed),
            published: self.stats.published.load(Ordering::Relaxed),
            dropped: self.buffer.dropped(),
            undelivered: self.buffer.len() as u64,
            spooled,
        };
        if report.undelivered > report.spooled {
            error!(
                undelivered = report.undelivered,
                "shutdown timed out before the backlog was delivered"
            );
        }
        info!(?report, "agent stopped");
        report
    }
}

#[cfg(test)]
mod tests;
