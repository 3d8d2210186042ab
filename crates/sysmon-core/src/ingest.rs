//! The ingest runtime: receive batches from a [`TransportReceiver`], decode and
//! validate each message, write valid snapshots to the sinks, and only then
//! commit (at-least-once; the sinks' idempotent keys make replays harmless).
//!
//! * The stages overlap: while batch N is written to the sinks, batch N+1 is
//!   received and decoded (large batches in parallel chunks on the blocking
//!   pool). At most one batch is being stored and one more waits decoded.
//!   Each batch carries the transport's [`CommitMark`]; after batch N is
//!   stored the ingester commits exactly up to N's mark, never a batch that is
//!   only decoded. Batches are stored, broadcast and committed in order.
//! * Bad messages never stop ingestion: each is counted by kind, logged once per
//!   kind with its origin, and dead-lettered with the reason (before its batch
//!   is committed).
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
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::codec::{decode_with, validate};
use crate::config::IngestConfig;
use crate::error::{CoreError, DecodeError};
use crate::histogram::{LatencyHistogram, LatencySummary};
use crate::sink::{Batch, Sink, SinkError};
use crate::snapshot::Snapshot;
use crate::transport::{CommitMark, Message, Payload, Received, TransportReceiver};

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

/// A sink and its role, shared with the store task.
type Sinks = Arc<[(Arc<dyn Sink>, SinkRole)]>;

/// A received batch, decoded: what goes to the sinks (`None` when every
/// message was rejected) and the mark that commits it.
struct Decoded {
    batch: Option<Batch>,
    mark: CommitMark,
}

/// The batch being written to the sinks by its own task.
struct Inflight {
    task: JoinHandle<Result<Option<Batch>, CoreError>>,
    mark: CommitMark,
}

/// Batches smaller than this are decoded on the ingest task itself; larger
/// ones in parallel chunks on the blocking pool.
const PARALLEL_DECODE_MIN: usize = 128;

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
    /// `shutdown` fires (the batches already received are stored and
    /// committed first).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), CoreError> {
        info!(
            transport = %self.receiver.describe(),
            sinks = ?self.sinks.iter().map(|(s, r)| format!("{} ({r:?})", s.name())).collect::<Vec<_>>(),
            "ingest started"
        );
        let sinks: Sinks = std::mem::take(&mut self.sinks).into();
        maintain(&sinks).await;
        let mut next_maintenance = Instant::now() + self.options.maintenance_interval;
        // Later passes run beside ingestion (a large rollup must not hold up
        // the batches behind it); one at a time.
        let mut maintenance: Option<tokio::task::JoinHandle<()>> = None;
        let mut receive_outage: Option<Instant> = None;
        let mut retry_receive_at: Option<Instant> = None;
        let mut inflight: Option<Inflight> = None;
        let mut ready: Option<Decoded> = None;
        let mut closed = false;
        loop {
            if inflight.is_none() {
                if Instant::now() >= next_maintenance {
                    if maintenance.as_ref().is_none_or(|m| m.is_finished()) {
                        let sinks = sinks.clone();
                        maintenance = Some(tokio::spawn(async move { maintain(&sinks).await }));
                    }
                    next_maintenance = Instant::now() + self.options.maintenance_interval;
                }
                if let Some(d) = ready.take() {
                    inflight = self.start_store(&sinks, d, &shutdown);
                }
            }
            if closed && inflight.is_none() && ready.is_none() {
                info!("transport closed and drained");
                break;
            }
            let can_receive = ready.is_none() && !closed;
            let max = self.options.batch_size;
            let wait = self.options.batch_wait;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                joined = async {
                    match inflight.as_mut() {
                        Some(f) => (&mut f.task).await,
                        None => std::future::pending().await,
                    }
                }, if inflight.is_some() => {
                    let Some(done) = inflight.take() else { continue };
                    let batch = joined_batch(joined)?;
                    // Start writing the next batch before committing this one,
                    // unless maintenance is due (it runs between writes).
                    if Instant::now() < next_maintenance {
                        if let Some(d) = ready.take() {
                            inflight = self.start_store(&sinks, d, &shutdown);
                        }
                    }
                    self.finish(batch, done.mark).await;
                }
                received = async {
                    if let Some(at) = retry_receive_at {
                        tokio::time::sleep_until(at.into()).await;
                    }
                    self.receiver.receive(max, wait).await
                }, if can_receive => {
                    retry_receive_at = None;
                    match received {
                        Ok(Received::Closed) => closed = true,
                        Ok(Received::Messages(m)) => {
                            if let Some(since) = receive_outage.take() {
                                info!(outage = ?since.elapsed(), "transport reachable again");
                            }
                            if !m.is_empty() {
                                let mark = self.receiver.mark();
                                ready = Some(self.decode(m, mark, &shutdown).await?);
                            }
                        }
                        Err(e) => {
                            if receive_outage.is_none() {
                                warn!(error = %e, "receiving failed; retrying");
                                receive_outage = Some(Instant::now());
                            }
                            retry_receive_at = Some(Instant::now() + Duration::from_secs(1));
                        }
                    }
                }
            }
        }
        // Shutdown: store and commit what was already received, in order.
        if let Some(done) = inflight.take() {
            let batch = joined_batch(done.task.await)?;
            self.finish(batch, done.mark).await;
        }
        if let Some(d) = ready.take() {
            if let Some(batch) = &d.batch {
                store(&sinks, &self.stats, batch, &shutdown).await?;
            }
            self.finish(d.batch, d.mark).await;
        }
        if let Some(m) = maintenance.take() {
            // A pass in progress finishes (its transactions are short).
            let _ = m.await;
        }
        info!(
            stored = self.stats.stored.load(Ordering::Relaxed),
            rejected = self.stats.rejected.load(Ordering::Relaxed),
            "ingest stopped"
        );
        Ok(())
    }

    /// Starts writing `d` to the sinks on its own task; a batch with nothing
    /// to store is committed right away.
    fn start_store(
        &self,
        sinks: &Sinks,
        d: Decoded,
        shutdown: &CancellationToken,
    ) -> Option<Inflight> {
        let (sinks, stats, shutdown) = (sinks.clone(), self.stats.clone(), shutdown.clone());
        let task = tokio::spawn(async move {
            if let Some(batch) = &d.batch {
                store(&sinks, &stats, batch, &shutdown).await?;
            }
            Ok(d.batch)
        });
        Some(Inflight { task, mark: d.mark })
    }

    /// After a batch is stored: broadcast it, commit up to its mark, record
    /// the end-to-end latency of its snapshots.
    async fn finish(&mut self, batch: Option<Batch>, mark: CommitMark) {
        if let Some(b) = &batch {
            let _ = self.events.send(b.clone());
        }
        if let Err(e) = self.receiver.commit(mark).await {
            // Not fatal: the batch is stored, and a replay is deduplicated by the sinks.
            self.stats.commit_errors.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, "commit failed; the batch may be delivered again (harmless)");
        }
        // Stored and committed: the end of each snapshot's journey.
        self.stats.mark_stored(Instant::now());
        if let Some(b) = batch {
            let now = crate::agent::now_epoch_secs();
            for s in b.iter() {
                self.stats.latency.record_secs(now - s.timestamp);
            }
        }
    }

    /// Decodes and validates `messages`; dead-letters the bad ones.
    async fn decode(
        &mut self,
        messages: Vec<Message>,
        mark: CommitMark,
        shutdown: &CancellationToken,
    ) -> Result<Decoded, CoreError> {
        self.stats.mark_received(Instant::now());
        self.stats
            .received
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let (messages, results) = decode_all(messages, self.options.max_message_bytes).await;
        let mut valid: Vec<Snapshot> = Vec::with_capacity(messages.len());
        for (m, decoded) in messages.iter().zip(results) {
            match decoded {
                Ok(s) => valid.push(s),
                Err(e) => self.reject(m, e, shutdown).await?,
            }
        }
        Ok(Decoded {
            batch: (!valid.is_empty()).then(|| valid.into()),
            mark,
        })
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
}

/// The batch a finished store task returns, or why it has none.
fn joined_batch(
    joined: Result<Result<Option<Batch>, CoreError>, tokio::task::JoinError>,
) -> Result<Option<Batch>, CoreError> {
    match joined {
        Ok(r) => r,
        Err(e) => Err(CoreError::Sink(SinkError::Failed {
            sink: "ingest".into(),
            message: format!("the task writing a batch to the sinks failed: {e}"),
        })),
    }
}

fn decode_one(m: &Message, max_bytes: usize) -> Result<Snapshot, DecodeError> {
    match &m.payload {
        Payload::Snapshot(s) => validate(s).map(|()| (**s).clone()),
        Payload::Encoded { bytes, format } => decode_with(bytes, *format, max_bytes),
    }
}

/// Decodes every message, in order: small batches here, large ones in
/// parallel chunks on the blocking pool (decoding JSON is most of the
/// ingester's CPU time).
async fn decode_all(
    messages: Vec<Message>,
    max_bytes: usize,
) -> (Vec<Message>, Vec<Result<Snapshot, DecodeError>>) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    if messages.len() < PARALLEL_DECODE_MIN {
        let results = messages.iter().map(|m| decode_one(m, max_bytes)).collect();
        return (messages, results);
    }
    let messages = Arc::new(messages);
    let chunk = messages.len().div_ceil(threads);
    let mut tasks = Vec::with_capacity(threads);
    for start in (0..messages.len()).step_by(chunk) {
        let end = (start + chunk).min(messages.len());
        let ms = messages.clone();
        tasks.push((
            start..end,
            tokio::task::spawn_blocking(move || {
                ms[start..end]
                    .iter()
                    .map(|m| decode_one(m, max_bytes))
                    .collect::<Vec<_>>()
            }),
        ));
    }
    let mut results = Vec::with_capacity(messages.len());
    for (range, task) in tasks {
        match task.await {
            Ok(r) => results.extend(r),
            // The blocking pool refused or the chunk panicked: decode it here.
            Err(_) => results.extend(messages[range].iter().map(|m| decode_one(m, max_bytes))),
        }
    }
    let messages = Arc::try_unwrap(messages).unwrap_or_else(|shared| (*shared).clone());
    (messages, results)
}

/// Writes `batch` to every sink: required ones until they succeed (or
/// shutdown while failing), best-effort ones once.
async fn store(
    sinks: &Sinks,
    stats: &IngestStats,
    batch: &Batch,
    shutdown: &CancellationToken,
) -> Result<(), CoreError> {
    for (sink, role) in sinks.iter() {
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
                            stats.sink_errors.fetch_add(1, Ordering::Relaxed);
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
                    stats.sink_errors.fetch_add(1, Ordering::Relaxed);
                    debug!(sink = sink.name(), error = %e, "best-effort sink write failed");
                }
            }
        }
    }
    stats
        .stored
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn maintain(sinks: &Sinks) {
    for (sink, _) in sinks.iter() {
        if let Err(e) = sink.maintain().await {
            warn!(sink = sink.name(), error = %e, "maintenance failed");
        }
    }
}

#[cfg(test)]
mod tests;
