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
//!   kind with its origin, and dead-lettered with a bounded reason (before its
//!   batch is committed). Besides decoding and validation, the ingester checks
//!   trust (`docs/security.md`): a sample dated more than `max_future_skew`
//!   ahead or older than `max_sample_age`, or a keyed message whose key is not
//!   its `machine_id`, is dead-lettered. A dead letter the transport refuses
//!   for good (even shrunk) is counted (`dead_letter_failures`), logged once
//!   per kind and skipped: its offset is committed with its batch.
//! * A [`SinkRole::Required`] sink (SQLite) is retried with backoff while it
//!   fails transiently ([`SinkError::Unavailable`]: busy, disk full, I/O);
//!   nothing is committed before. A permanent failure ([`SinkError::Failed`])
//!   is isolated by splitting the batch in halves: the snapshots the sink
//!   refuses on their own are dead-lettered (`sink_rejected`), the rest is
//!   stored. Maintenance still runs while a write is being retried. A
//!   [`SinkRole::BestEffort`] sink (Redis) is written once per batch; its
//!   failures are counted and logged, never blocking.
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

use crate::backoff::Backoff;
use crate::codec::{decode_with, validate};
use crate::config::IngestConfig;
use crate::error::{CoreError, DecodeError};
use crate::histogram::{LatencyHistogram, LatencySummary};
use crate::sink::{Batch, Sink, SinkError};
use crate::snapshot::Snapshot;
use crate::transport::{CommitMark, Message, Payload, Received, TransportError, TransportReceiver};

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
    /// Dead letters the transport refused for good (even shrunk): counted,
    /// logged once per kind and skipped.
    pub dead_letter_failures: AtomicU64,
    /// End-to-end latency of each stored snapshot: from its sample timestamp
    /// to the moment its batch was stored and the offsets committed.
    pub latency: LatencyHistogram,
    rejected_by_kind: Mutex<BTreeMap<&'static str, u64>>,
    /// Since when (epoch milliseconds) receiving fails; 0 while it works.
    transport_down_since_ms: AtomicU64,
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

    /// Since when (epoch seconds) the transport is unreachable (receiving
    /// fails), or `None` while it works. The alert engine reads it: while the
    /// transport is down no machine goes offline, the pipeline alert fires.
    pub fn transport_down_since(&self) -> Option<f64> {
        match self.transport_down_since_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(ms as f64 / 1000.0),
        }
    }

    fn set_transport_down(&self, since: Option<f64>) {
        let ms = since.map_or(0, |s| ((s * 1000.0) as u64).max(1));
        self.transport_down_since_ms.store(ms, Ordering::Relaxed);
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
    logged_dead_letter_failures: HashSet<&'static str>,
}

/// A sink and its role, shared with the store task.
type Sinks = Arc<[(Arc<dyn Sink>, SinkRole)]>;

/// A received batch, decoded: what goes to the sinks (`None` when every
/// message was rejected), the origin of each of its snapshots (to dead-letter
/// one a sink refuses) and the mark that commits it.
struct Decoded {
    batch: Option<Batch>,
    origins: Vec<String>,
    mark: CommitMark,
}

/// What storing a batch gave: the snapshots every required sink stored
/// (`None` when none), and those a required sink refused for good, with
/// their origins and why.
struct Stored {
    batch: Option<Batch>,
    refused: Vec<(Snapshot, String, DecodeError)>,
}

/// The batch being written to the sinks by its own task.
struct Inflight {
    task: JoinHandle<Result<Stored, CoreError>>,
    mark: CommitMark,
}

/// The trust checks of one batch, against the ingester's clock at receipt.
#[derive(Debug, Clone, Copy)]
struct Checks {
    max_bytes: usize,
    now: f64,
    max_future_skew: Duration,
    max_age: Option<Duration>,
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
            logged_dead_letter_failures: HashSet::new(),
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
        let mut receive_outage = crate::outage::Outage::default();
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
            let maintenance_idle = maintenance.as_ref().is_none_or(|m| m.is_finished());
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // A write that takes past the maintenance time (a sink being
                // retried: a full disk that retention may relieve) does not
                // hold maintenance back.
                _ = tokio::time::sleep_until(next_maintenance.into()),
                    if inflight.is_some() && maintenance_idle => {
                    let sinks = sinks.clone();
                    maintenance = Some(tokio::spawn(async move { maintain(&sinks).await }));
                    next_maintenance = Instant::now() + self.options.maintenance_interval;
                }
                joined = async {
                    match inflight.as_mut() {
                        Some(f) => (&mut f.task).await,
                        None => std::future::pending().await,
                    }
                }, if inflight.is_some() => {
                    let Some(done) = inflight.take() else { continue };
                    let stored = joined_batch(joined)?;
                    // Start writing the next batch before committing this one,
                    // unless maintenance is due (it runs between writes).
                    if Instant::now() < next_maintenance {
                        if let Some(d) = ready.take() {
                            inflight = self.start_store(&sinks, d, &shutdown);
                        }
                    }
                    self.finish(stored, done.mark, &shutdown).await?;
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
                            if let Some(lasted) = receive_outage.ended() {
                                info!(outage = %crate::outage::human(lasted),
                                      "transport reachable again");
                                self.stats.set_transport_down(None);
                            }
                            if !m.is_empty() {
                                let mark = self.receiver.mark();
                                ready = Some(self.decode(m, mark, &shutdown).await?);
                            }
                        }
                        Err(e) => {
                            if receive_outage.failed() {
                                warn!(error = %e,
                                      "transport unreachable: receiving failed; retrying \
                                       (logged again once it is back)");
                                self.stats
                                    .set_transport_down(Some(crate::agent::now_epoch_secs()));
                            }
                            retry_receive_at = Some(Instant::now() + Duration::from_secs(1));
                        }
                    }
                }
            }
        }
        // Shutdown: store and commit what was already received, in order.
        if let Some(done) = inflight.take() {
            let stored = joined_batch(done.task.await)?;
            self.finish(stored, done.mark, &shutdown).await?;
        }
        if let Some(d) = ready.take() {
            let stored = store(&sinks, &self.stats, d.batch, d.origins, &shutdown).await?;
            self.finish(stored, d.mark, &shutdown).await?;
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
        let mark = d.mark;
        let task =
            tokio::spawn(async move { store(&sinks, &stats, d.batch, d.origins, &shutdown).await });
        Some(Inflight { task, mark })
    }

    /// After a batch is stored: dead-letter what a sink refused, broadcast
    /// the rest, commit up to its mark, record the end-to-end latency of its
    /// snapshots.
    async fn finish(
        &mut self,
        stored: Stored,
        mark: CommitMark,
        shutdown: &CancellationToken,
    ) -> Result<(), CoreError> {
        for (snapshot, origin, e) in stored.refused {
            let m = Message {
                payload: Payload::Snapshot(Box::new(snapshot)),
                key: None,
                origin,
            };
            self.reject(&m, e, shutdown).await?;
        }
        let batch = stored.batch;
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
        Ok(())
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
        let checks = Checks {
            max_bytes: self.options.max_message_bytes,
            now: crate::agent::now_epoch_secs(),
            max_future_skew: self.options.max_future_skew,
            max_age: self.options.max_sample_age,
        };
        let (messages, results) = decode_all(messages, checks).await;
        let mut valid: Vec<Snapshot> = Vec::with_capacity(messages.len());
        let mut origins: Vec<String> = Vec::with_capacity(messages.len());
        for (m, decoded) in messages.into_iter().zip(results) {
            match decoded {
                Ok(s) => {
                    valid.push(s);
                    origins.push(m.origin);
                }
                Err(e) => self.reject(&m, e, shutdown).await?,
            }
        }
        Ok(Decoded {
            batch: (!valid.is_empty()).then(|| valid.into()),
            origins,
            mark,
        })
    }

    async fn reject(
        &mut self,
        m: &Message,
        e: DecodeError,
        shutdown: &CancellationToken,
    ) -> Result<(), CoreError> {
        let e = e.bounded();
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
        let mut backoff = Backoff::DEPENDENCY;
        let mut attempts = 0;
        let mut warned = false;
        loop {
            attempts += 1;
            match self.receiver.dead_letter(m, &e).await {
                Ok(()) => {
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    if warned {
                        info!(origin = %m.origin, "dead letter delivered");
                    }
                    return Ok(());
                }
                // Transient (the broker is away): nothing behind this message
                // can be committed either, so wait for it.
                Err(err @ TransportError::Unavailable { .. }) => {
                    if !warned {
                        warn!(origin = %m.origin, error = %err, "dead-lettering failed; retrying");
                        warned = true;
                    }
                    if shutdown.is_cancelled() {
                        return Err(CoreError::Transport(err));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = shutdown.cancelled() => return Err(CoreError::Transport(err)),
                    }
                }
                // Refused for good, or failing in a way retrying has not
                // cured: count it, say so once per kind, and go on.
                Err(err)
                    if matches!(err, TransportError::Rejected { .. })
                        || attempts >= DEAD_LETTER_ATTEMPTS =>
                {
                    self.stats
                        .dead_letter_failures
                        .fetch_add(1, Ordering::Relaxed);
                    if self.logged_dead_letter_failures.insert(kind) {
                        error!(origin = %m.origin, kind, error = %err,
                               "could not dead-letter a rejected message; skipped it (counted in \
                                dead_letter_failures; further `{kind}` failures are not logged)");
                    } else {
                        debug!(origin = %m.origin, kind, error = %err, "dead letter skipped");
                    }
                    return Ok(());
                }
                Err(err) => {
                    debug!(origin = %m.origin, error = %err, attempts, "dead-lettering failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

/// How often a dead letter failing with an error that is neither transient
/// nor a refusal is tried before it is skipped.
const DEAD_LETTER_ATTEMPTS: u32 = 3;

/// What a finished store task returns, or why it has nothing.
fn joined_batch(
    joined: Result<Result<Stored, CoreError>, tokio::task::JoinError>,
) -> Result<Stored, CoreError> {
    match joined {
        Ok(r) => r,
        Err(e) => Err(CoreError::Sink(SinkError::Failed {
            sink: "ingest".into(),
            message: format!("the task writing a batch to the sinks failed: {e}"),
            source: Some(Box::new(e)),
        })),
    }
}

fn decode_one(m: &Message, checks: Checks) -> Result<Snapshot, DecodeError> {
    let s = match &m.payload {
        Payload::Snapshot(s) => validate(s).map(|()| (**s).clone())?,
        Payload::Encoded { bytes, format } => decode_with(bytes, *format, checks.max_bytes)?,
    };
    check_trust(&s, m.key.as_deref(), checks)?;
    Ok(s)
}

/// What the ingester checks beyond the payload itself (`docs/security.md`):
/// the key names the snapshot's machine, and the timestamp lies within
/// `max_age` before and `max_future_skew` after the ingester's clock.
fn check_trust(s: &Snapshot, key: Option<&[u8]>, checks: Checks) -> Result<(), DecodeError> {
    if let Some(key) = key {
        if key != s.machine_id.as_bytes() {
            return Err(DecodeError::KeyMismatch {
                key: crate::text::quote(&String::from_utf8_lossy(key)),
                machine_id: crate::text::quote(&s.machine_id),
            });
        }
    }
    let ahead = s.timestamp - checks.now;
    if ahead > checks.max_future_skew.as_secs_f64() {
        return Err(DecodeError::FutureTimestamp {
            timestamp: s.timestamp,
            ahead_secs: ahead,
            skew_secs: checks.max_future_skew.as_secs(),
        });
    }
    if let Some(max_age) = checks.max_age {
        if -ahead > max_age.as_secs_f64() {
            return Err(DecodeError::TooOld {
                timestamp: s.timestamp,
                age_secs: -ahead,
                max_age_secs: max_age.as_secs(),
            });
        }
    }
    Ok(())
}

/// Decodes every message, in order: small batches here, large ones in
/// parallel chunks on the blocking pool (decoding JSON is most of the
/// ingester's CPU time).
async fn decode_all(
    messages: Vec<Message>,
    checks: Checks,
) -> (Vec<Message>, Vec<Result<Snapshot, DecodeError>>) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    if messages.len() < PARALLEL_DECODE_MIN {
        let results = messages.iter().map(|m| decode_one(m, checks)).collect();
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
                    .map(|m| decode_one(m, checks))
                    .collect::<Vec<_>>()
            }),
        ));
    }
    let mut results = Vec::with_capacity(messages.len());
    for (range, task) in tasks {
        match task.await {
            Ok(r) => results.extend(r),
            // The blocking pool refused or the chunk panicked: decode it here.
            Err(_) => results.extend(messages[range].iter().map(|m| decode_one(m, checks))),
        }
    }
    let messages = Arc::try_unwrap(messages).unwrap_or_else(|shared| (*shared).clone());
    (messages, results)
}

/// Writes `batch` to every sink: required ones until they succeed or refuse
/// snapshots for good (isolated by halving, see [`write_required`]), best-effort
/// ones once. Returns what was stored and what was refused.
async fn store(
    sinks: &Sinks,
    stats: &IngestStats,
    batch: Option<Batch>,
    mut origins: Vec<String>,
    shutdown: &CancellationToken,
) -> Result<Stored, CoreError> {
    let Some(mut batch) = batch else {
        return Ok(Stored {
            batch: None,
            refused: Vec::new(),
        });
    };
    let mut refused = Vec::new();
    for (sink, role) in sinks.iter() {
        match role {
            SinkRole::Required => {
                let bad = write_required(sink.as_ref(), stats, &batch, shutdown).await?;
                if bad.is_empty() {
                    continue;
                }
                warn!(
                    sink = sink.name(),
                    refused = bad.len(),
                    stored = batch.len() - bad.len(),
                    "the sink refused snapshots for good; dead-lettering them, storing the rest"
                );
                let mut reasons: BTreeMap<usize, SinkError> = bad.into_iter().collect();
                let mut kept = Vec::with_capacity(batch.len() - reasons.len());
                let mut kept_origins = Vec::with_capacity(kept.capacity());
                for (i, (s, origin)) in batch.iter().zip(origins.drain(..)).enumerate() {
                    match reasons.remove(&i) {
                        Some(e) => {
                            let (SinkError::Failed { sink, message, .. }
                            | SinkError::Unavailable { sink, message, .. }) = e;
                            let e = DecodeError::SinkRejected { sink, message }.bounded();
                            refused.push((s.clone(), origin, e));
                        }
                        None => {
                            kept.push(s.clone());
                            kept_origins.push(origin);
                        }
                    }
                }
                origins = kept_origins;
                if kept.is_empty() {
                    return Ok(Stored {
                        batch: None,
                        refused,
                    });
                }
                batch = kept.into();
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
    Ok(Stored {
        batch: Some(batch),
        refused,
    })
}

/// Writes `batch` to a required sink. Transient failures are retried with
/// backoff (until shutdown); when the sink fails for good the batch is split
/// in halves, recursively, so that everything the sink takes is stored and
/// the snapshots it refuses on their own are returned, by index, with the
/// sink's error.
async fn write_required(
    sink: &dyn Sink,
    stats: &IngestStats,
    batch: &Batch,
    shutdown: &CancellationToken,
) -> Result<Vec<(usize, SinkError)>, CoreError> {
    let mut refused = Vec::new();
    // Ranges still to write, the next on top.
    let mut todo: Vec<std::ops::Range<usize>> = Vec::with_capacity(16);
    todo.push(0..batch.len());
    while let Some(range) = todo.pop() {
        let part: Batch = if range.len() == batch.len() {
            batch.clone()
        } else {
            batch[range.clone()].to_vec().into()
        };
        match write_retrying(sink, stats, part, shutdown).await? {
            Ok(()) => {}
            Err(e) if range.len() == 1 => refused.push((range.start, e)),
            Err(e) => {
                if range.len() == batch.len() {
                    debug!(sink = sink.name(), error = %e,
                           "the sink refused the batch for good; splitting it to find the cause");
                }
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
        }
    }
    Ok(refused)
}

/// Writes `part` to `sink`, retrying transient failures with backoff.
/// `Ok(Err(e))`: the sink refused it for good; `Err`: shutdown while the sink
/// was failing.
async fn write_retrying(
    sink: &dyn Sink,
    stats: &IngestStats,
    part: Batch,
    shutdown: &CancellationToken,
) -> Result<Result<(), SinkError>, CoreError> {
    // Capped at a second: the sink's return is noticed within about a second.
    let mut backoff = Backoff::DEPENDENCY;
    let mut failing_since: Option<Instant> = None;
    loop {
        match sink.write(part.clone()).await {
            Ok(()) => {
                if let Some(since) = failing_since {
                    info!(sink = sink.name(), outage = ?since.elapsed(), "sink recovered");
                }
                return Ok(Ok(()));
            }
            Err(e @ SinkError::Failed { .. }) => {
                stats.sink_errors.fetch_add(1, Ordering::Relaxed);
                return Ok(Err(e));
            }
            Err(e @ SinkError::Unavailable { .. }) => {
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
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.cancelled() => return Err(CoreError::Sink(e)),
                }
            }
        }
    }
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
