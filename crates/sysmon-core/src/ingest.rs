//! The ingest runtime: receive batches from a [`TransportReceiver`], decode and
//! validate each message, write valid snapshots to the sinks, and only then
//! commit (at-least-once; the sinks' idempotent keys make replays harmless).
//!
//! * Bad messages never stop ingestion: each is counted by kind, logged once per
//!   kind with its origin, and dead-lettered with the reason.
//! * A [`SinkRole::Required`] sink (SQLite) is retried with backoff until it
//!   succeeds; nothing is committed before. A [`SinkRole::BestEffort`] sink
//!   (Redis) is written once per batch; its failures are counted and logged,
//!   never blocking.
//! * Every stored batch is broadcast to [`Ingest::subscribe`]rs (live views,
//!   alerting).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::codec::{decode_with, validate};
use crate::config::IngestConfig;
use crate::error::{CoreError, DecodeError};
use crate::histogram::{LatencyHistogram, LatencySummary};
use crate::sink::{Batch, Sink};
use crate::snapshot::Snapshot;
use crate::transport::{Message, Payload, Received, TransportReceiver};

/// Whether a sink's failure holds back the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkRole {
    /// Retried until it succeeds; offsets are committed only after.
    Required,
    /// Written once per batch; failures are counted and logged.
    BestEffort,
}

/// Counters of a running ingester (exported at `/metrics`).
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Messages received.
    pub received: AtomicU64,
    /// Snapshots stored by every required sink.
    pub stored: AtomicU64,
    /// Messages rejected as invalid.
    pub rejected: AtomicU64,
    /// Messages set aside in the dead-letter destination.
    pub dead_lettered: AtomicU64,
    /// Failed sink writes (each retry counts).
    pub sink_errors: AtomicU64,
    /// Batches stored.
    pub batches: AtomicU64,
    /// Failed commits.
    pub commit_errors: AtomicU64,
    /// End-to-end latency of each stored snapshot: from its sample timestamp
    /// to the moment its batch was stored and the offsets committed.
    pub latency: LatencyHistogram,
    rejected_by_kind: Mutex<BTreeMap<&'static str, u64>>,
    /// When the first batch arrived and when the last one was stored.
    active: Mutex<Option<(Instant, Instant)>>,
}

impl IngestStats {
    /// Rejections per [`DecodeError::kind`].
    pub fn rejected_by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.rejected_by_kind
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// p50/p90/p99/max of the end-to-end latency (sample timestamp to committed row).
    pub fn latency_summary(&self) -> LatencySummary {
        self.latency.summary()
    }

    /// Time from the arrival of the first batch to the storing of the last one
    /// (zero before anything was stored): the window over which
    /// [`stored_per_sec`](Self::stored_per_sec) is measured.
    pub fn active_time(&self) -> Duration {
        match self.active.lock().map(|a| *a) {
            Ok(Some((first, last))) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        }
    }

    /// Snapshots stored per second over [`active_time`](Self::active_time).
    pub fn stored_per_sec(&self) -> f64 {
        let secs = self.active_time().as_secs_f64();
        if secs > 0.0 {
            self.stored.load(Ordering::Relaxed) as f64 / secs
        } else {
            0.0
        }
    }

    fn mark_received(&self, at: Instant) {
        if let Ok(mut a) = self.active.lock() {
            if a.is_none() {
                *a = Some((at, at));
            }
        }
    }

    fn mark_stored(&self, at: Instant) {
        if let Ok(mut a) = self.active.lock() {
            if let Some((_, last)) = a.as_mut() {
                *last = at;
            }
        }
    }
}

/// The ingester.
pub struct Ingest {
    receiver: Box<dyn TransportReceiver>,
    sinks: Vec<(Arc<dyn Sink>, SinkRole)>,
    options: IngestConfig,
    stats: Arc<IngestStats>,
    events: broadcast::Sender<Batch>,
    logged_kinds: HashSet<&'static str>,
}

impl Ingest {
    /// An ingester reading from `receiver` with no sinks yet.
    pub fn new(receiver: Box<dyn TransportReceiver>, options: IngestConfig) -> Self {
        let (events, _) = broadcast::channel(256);
        Ingest {
            receiver,
            sinks: Vec::new(),
            options,
            stats: Arc::new(IngestStats::default()),
            events,
            logged_kinds: HashSet::new(),
        }
    }

    /// Adds a sink.
    pub fn add_sink(&mut self, sink: Arc<dyn Sink>, role: SinkRole) -> &mut Self {
        self.sinks.push((sink, role));
        self
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<IngestStats> {
        self.stats.clone()
    }

    /// Receives every batch stored from now on. A subscriber that lags more
    /// than 256 batches behind misses the oldest (and is told so by tokio).
    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.events.subscribe()
    }

    /// A sender handle for the stored-batch broadcast (to subscribe later).
    pub fn events(&self) -> broadcast::Sender<Batch> {
        self.events.clone()
    }

    /// Runs until the transport closes (everything received was stored) or
    /// `shutdown` fires (the current batch is finished first).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), CoreError> {
        info!(
            transport = %self.receiver.describe(),
            sinks = ?self.sinks.iter().map(|(s, r)| format!("{} ({r:?})", s.name())).collect::<Vec<_>>(),
            "ingest started"
        );
        self.maintain().await;
        let mut next_maintenance = Instant::now() + self.options.maintenance_interval;
        let mut receive_outage: Option<Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let received = tokio::select! {
                r = self.receiver.receive(self.options.batch_size, self.options.batch_wait) => r,
                _ = shutdown.cancelled() => break,
            };
            let messages = match received {
                Ok(Received::Closed) => {
                    info!("transport closed and drained");
                    break;
                }
                Ok(Received::Messages(m)) => {
                    if let Some(since) = receive_outage.take() {
                        info!(outage = ?since.elapsed(), "transport reachable again");
                    }
                    m
                }
                Err(e) => {
                    if receive_outage.is_none() {
                        warn!(error = %e, "receiving failed; retrying");
                        receive_outage = Some(Instant::now());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            if !messages.is_empty() {
                self.process(messages, &shutdown).await?;
            }
            if Instant::now() >= next_maintenance {
                self.maintain().await;
                next_maintenance = Instant::now() + self.options.maintenance_interval;
            }
        }
        info!(
            stored = self.stats.stored.load(Ordering::Relaxed),
            rejected = self.stats.rejected.load(Ordering::Relaxed),
            "ingest stopped"
        );
        Ok(())
    }

    async fn process(
        &mut self,
        messages: Vec<Message>,
        shutdown: &CancellationToken,
    ) -> Result<(), CoreError> {
        self.stats.mark_received(Instant::now());
        self.stats
            .received
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let mut valid: Vec<Snapshot> = Vec::with_capacity(messages.len());
        for m in messages {
            let decoded = match &m.payload {
                Payload::Snapshot(s) => validate(s).map(|()| (**s).clone()),
                Payload::Encoded { bytes, format } => {
                    decode_with(bytes, *format, self.options.max_message_bytes)
                }
            };
            match decoded {
                Ok(s) => valid.push(s),
                Err(e) => self.reject(&m, e, shutdown).await?,
            }
        }
        let mut stamps: Vec<f64> = Vec::new();
        if !valid.is_empty() {
            let batch: Batch = valid.into();
            self.store(&batch, shutdown).await?;
            stamps = batch.iter().map(|s| s.timestamp).collect();
            let _ = self.events.send(batch);
        }
        if let Err(e) = self.receiver.commit().await {
            // Not fatal: the batch is stored, and a replay is deduplicated by the sinks.
            self.stats.commit_errors.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, "commit failed; the batch may be delivered again (harmless)");
        }
        // Stored and committed: the end of each snapshot's journey.
        self.stats.mark_stored(Instant::now());
        let now = crate::agent::now_epoch_secs();
        for ts in stamps {
            self.stats.latency.record_secs(now - ts);
        }
        Ok(())
    }

    async fn reject(
        &mut self,
        m: &Message,
        e: DecodeError,
        shutdown: &CancellationToken,
    ) -> Result<(), CoreError> {
        let kind = e.kind();
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.stats.rejected_by_kind.lock() {
            *map.entry(kind).or_default() += 1;
        }
        if self.logged_kinds.insert(kind) {
            warn!(origin = %m.origin, kind, error = %e,
                  "rejected a message and dead-lettered it (further `{kind}` rejections are counted, not logged)");
        } else {
            debug!(origin = %m.origin, kind, error = %e, "rejected a message");
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.receiver.dead_letter(m, &e).await {
                Ok(()) => {
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(err) => {
                    warn!(origin = %m.origin, error = %err, "dead-lettering failed; retrying");
                    if shutdown.is_cancelled() {
                        return Err(CoreError::Transport(err));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn store(&self, batch: &Batch, shutdown: &CancellationToken) -> Result<(), CoreError> {
        for (sink, role) in &self.sinks {
            match role {
                SinkRole::Required => {
                    let mut backoff = Duration::from_millis(100);
                    let mut failing_since: Option<Instant> = None;
                    loop {
                        match sink.write(batch.clone()).await {
                            Ok(()) => {
                                if let Some(since) = failing_since {
                                    info!(sink = sink.name(), outage = ?since.elapsed(), "sink recovered");
                                }
                                break;
                            }
                            Err(e) => {
                                self.stats.sink_errors.fetch_add(1, Ordering::Relaxed);
                                if failing_since.is_none() {
                                    error!(sink = sink.name(), error = %e,
                                           "sink write failed; retrying (nothing is committed until it succeeds)");
                                    failing_since = Some(Instant::now());
                                }
                                if shutdown.is_cancelled() {
                                    return Err(CoreError::Sink(e));
                                }
                                tokio::select! {
                                    _ = tokio::time::sleep(backoff) => {}
                                    _ = shutdown.cancelled() => return Err(CoreError::Sink(e)),
                                }
                                backoff = (backoff * 2).min(Duration::from_secs(5));
                            }
                        }
                    }
                }
                SinkRole::BestEffort => {
                    if let Err(e) = sink.write(batch.clone()).await {
                        self.stats.sink_errors.fetch_add(1, Ordering::Relaxed);
                        debug!(sink = sink.name(), error = %e, "best-effort sink write failed");
                    }
                }
            }
        }
        self.stats
            .stored
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn maintain(&self) {
        for (sink, _) in &self.sinks {
            if let Err(e) = sink.maintain().await {
                warn!(sink = sink.name(), error = %e, "maintenance failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
