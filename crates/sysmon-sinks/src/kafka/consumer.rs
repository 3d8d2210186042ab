//! `KafkaReceiver`: the ingester's side of the Kafka transport.
//!
//! Offsets are committed by hand, and only for what the ingester declared
//! processed ([`TransportReceiver::commit`]). Rebalances are handled so that a
//! partition's offset is never committed by a member that no longer owns it:
//!
//! * when partitions are revoked, offsets already processed but not yet
//!   committed (a commit that failed earlier) are committed synchronously
//!   before the partitions are given up; offsets of messages handed out but not
//!   yet processed are forgotten, and messages of revoked partitions still being
//!   collected are dropped, so the next owner reads them again from the last
//!   commit (a duplicate at worst, which the sinks' keys absorb);
//! * [`commit`](TransportReceiver::commit) commits only partitions that are
//!   still assigned, and only the offsets of the batches its
//!   [`CommitMark`] covers: the ingester may already hold later batches that are
//!   not stored yet (it decodes batch N+1 while batch N is written).
//!
//! [`receive`](TransportReceiver::receive) is cancel-safe: messages taken from
//! librdkafka are kept in the receiver until a call returns them, so a caller
//! may drop a pending `receive` (to commit a batch that was just stored) and
//! call it again without losing anything.
//!
//! The receiver also measures its consumer lag ([`KafkaReceiver::consumer_lag`],
//! see [`super::lag`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use sysmon_core::codec::encode_json;
use sysmon_core::config::KafkaConfig;
use sysmon_core::text::MAX_REASON_BYTES;
use sysmon_core::transport::CommitMark;
use sysmon_core::{DecodeError, Message, Payload, Received, TransportError, TransportReceiver};
use tracing::{debug, info, warn};

use super::admin::ensure_topic;
use super::lag::{measure, ConsumerLag, PartitionStats};
use super::producer::{enqueue, is_permanent, producer_defaults, ProducerHandle};
use super::{
    client_config, creation_error, header_format, origin_of, transport_error, ClientState,
    SysmonContext, FORMAT_HEADER, ORIGIN_HEADER, REASON_HEADER, REASON_KIND_HEADER,
    TRUNCATED_HEADER,
};
use crate::error::SinksError;

/// Consumer settings sysmon applies before `[kafka.options]`.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("client.id", "sysmon-ingest"),
    // A new group starts at the oldest record: what agents buffered and
    // published before the first ingester ever ran must not be skipped.
    ("auto.offset.reset", "earliest"),
    ("socket.keepalive.enable", "true"),
    // librdkafka's 500 ms default is how long a fetch may wait for data; tansu
    // was seen to hold fetches that long, which put ~0.4 s on the median
    // end-to-end latency (sample to committed row). 50 ms: p50 0.36-0.43 s ->
    // 0.10 s with 1,000 machines at 1 s (BENCHMARKS.md), for a few idle fetches
    // a second.
    ("fetch.wait.max.ms", "50"),
    // The consumer lag is computed from librdkafka's statistics (see
    // `lag.rs`); 0 turns them off and the lag reads as unknown.
    ("statistics.interval.ms", "1000"),
];

/// Settings that at-least-once delivery depends on; applied after the user's
/// options, which cannot override them.
const CONSUMER_ENFORCED: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
];

/// After the first message of a batch, how long `receive` waits for the next
/// one before returning what it has (the batch also ends at `max` or `wait`).
const IDLE_GAP: Duration = Duration::from_millis(20);

/// A dead letter is cut to this size when the broker refuses the original.
const TRUNCATED_DEAD_LETTER_BYTES: usize = 64 * 1024;
/// ... and to this size, with a reason of at most [`MIN_REASON_BYTES`], when
/// the broker refuses that too; a refusal then is counted and skipped.
const MIN_DEAD_LETTER_BYTES: usize = 1024;
/// The shortest `sysmon-reason` header (the last attempt's).
const MIN_REASON_BYTES: usize = 256;
/// How many distinct unknown `sysmon-format` values are each warned about
/// once; past that they are only counted at debug level (the set is bounded).
const MAX_WARNED_FORMATS: usize = 16;

type TopicPartition = (String, i32);

/// Partition bookkeeping shared between the receiver and its rebalance callbacks.
#[derive(Debug, Default)]
struct GroupState {
    /// Partitions currently assigned to this member.
    assigned: HashSet<TopicPartition>,
    /// Partitions revoked since the receiver last looked.
    revoked: HashSet<TopicPartition>,
    /// Next offsets declared processed whose commit has not succeeded yet.
    processed: HashMap<TopicPartition, i64>,
    /// Rebalances seen (for logs and tests).
    rebalances: u64,
}

/// Whether the consumer can reach a broker, as far as it knows.
///
/// An outage used to be judged per `receive` call: an error event in the
/// call's wait meant "down", none meant "up". But librdkafka reports a
/// failing connection once and suppresses the identical errors of its
/// retries, so during a long outage most waits saw no error and the
/// ingester logged "transport reachable again" every few seconds while the
/// broker was still away. The state here changes only on evidence: a
/// transport error event or statistics with no broker `UP` say down; a
/// message, or statistics with a broker `UP`, say up.
#[derive(Debug, Clone, Default)]
struct Reachability(Arc<std::sync::atomic::AtomicU8>);

impl Reachability {
    // 0: unknown (nothing seen yet).
    const UP: u8 = 1;
    const DOWN: u8 = 2;

    fn set(&self, up: bool) {
        let v = if up { Self::UP } else { Self::DOWN };
        self.0.store(v, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_down(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed) == Self::DOWN
    }
}

/// True when statistics show a connection to a real broker (not librdkafka's
/// internal or logical handles) in state `UP`; `None` when they list none.
fn any_broker_up(statistics: &Statistics) -> Option<bool> {
    let mut real = statistics
        .brokers
        .values()
        .filter(|b| matches!(b.source.as_str(), "configured" | "learned"))
        .peekable();
    real.peek()?;
    Some(real.any(|b| b.state == "UP"))
}

/// Error events that mean the broker cannot be reached.
fn is_unreachable(e: &KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::BrokerTransportFailure | C::AllBrokersDown | C::Resolve | C::NetworkException)
    )
}

/// The consumer's context: [`SysmonContext`] plus rebalance handling.
struct ReceiverContext {
    inner: SysmonContext,
    group: Arc<Mutex<GroupState>>,
    partitions: PartitionStats,
    lag: ConsumerLag,
    reachability: Reachability,
}

fn lock(m: &Mutex<GroupState>) -> MutexGuard<'_, GroupState> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl ClientContext for ReceiverContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if is_unreachable(&error) {
            self.reachability.set(false);
        }
        self.inner.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        if let Some(up) = any_broker_up(&statistics) {
            self.reachability.set(up);
        }
        self.partitions.record(&statistics);
        let assigned: Option<Vec<TopicPartition>> = {
            let g = lock(&self.group);
            (g.rebalances > 0).then(|| g.assigned.iter().cloned().collect())
        };
        self.lag
            .set(assigned.and_then(|parts| measure(&parts, &self.partitions)));
    }
}

impl ConsumerContext for ReceiverContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked: Vec<TopicPartition> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                let pending: Vec<(TopicPartition, i64)> = {
                    let mut g = lock(&self.group);
                    revoked
                        .iter()
                        .filter_map(|tp| g.processed.remove(tp).map(|o| (tp.clone(), o)))
                        .collect()
                };
                if !pending.is_empty() && !consumer.assignment_lost() {
                    let mut commit = TopicPartitionList::new();
                    for ((t, p), o) in &pending {
                        let _ = commit.add_partition_offset(t, *p, Offset::Offset(*o));
                    }
                    match consumer.commit(&commit, CommitMode::Sync) {
                        Ok(()) => debug!(
                            partitions = pending.len(),
                            "committed processed offsets before giving partitions up"
                        ),
                        Err(e) => warn!(error = %e,
                                        "could not commit processed offsets of revoked partitions; \
                                         their new owner will read those messages again (harmless)"),
                    }
                }
                let mut g = lock(&self.group);
                for tp in revoked {
                    g.assigned.remove(&tp);
                    g.revoked.insert(tp);
                }
                g.rebalances += 1;
            }
            Rebalance::Assign(tpl) => {
                let mut g = lock(&self.group);
                for e in tpl.elements() {
                    let tp = (e.topic().to_string(), e.partition());
                    g.revoked.remove(&tp);
                    g.assigned.insert(tp);
                }
                g.rebalances += 1;
                let mut parts: Vec<String> =
                    g.assigned.iter().map(|(t, p)| format!("{t}/{p}")).collect();
                parts.sort();
                info!(partitions = %parts.join(","), "consumer group assignment");
            }
            Rebalance::Error(e) => warn!(error = %e, "consumer group rebalance failed"),
        }
    }
}

/// Receives snapshots from a Kafka topic as a member of a consumer group.
///
/// Several receivers (ingesters) in one group split the topic's partitions.
/// Offsets are committed only by [`commit`](TransportReceiver::commit), i.e.
/// after the ingester stored the batch: a crash replays at most the batches
/// since the last commit, never loses one.
pub struct KafkaReceiver {
    consumer: Arc<StreamConsumer<ReceiverContext>>,
    consumer_state: Arc<ClientState>,
    group_state: Arc<Mutex<GroupState>>,
    dlq: ProducerHandle,
    /// Messages taken from librdkafka that no `receive` has returned yet (kept
    /// here so that a cancelled `receive` loses nothing).
    pending: Vec<(Message, TopicPartition, i64)>,
    /// Per returned batch (oldest first, not committed yet): its sequence
    /// number and the next offset of each of its partitions.
    returned: VecDeque<(u64, HashMap<TopicPartition, i64>)>,
    /// Sequence number of the last batch returned.
    seq: u64,
    lag: ConsumerLag,
    reachability: Reachability,
    membership: Membership,
    idle_check: Option<tokio::task::JoinHandle<Option<i64>>>,
    next_idle_check: Instant,
    topic: String,
    dlq_topic: String,
    group: String,
    instance_id: Option<String>,
    brokers: String,
    /// Unknown format header values already warned about (at most
    /// [`MAX_WARNED_FORMATS`]).
    warned_unknown_format: HashSet<String>,
}

impl KafkaReceiver {
    /// Joins `config.group` and subscribes to `config.topic`, after making sure
    /// the topic (with `config.partitions` partitions) and the dead-letter topic
    /// exist. Must be called within a tokio runtime.
    pub async fn new(config: &KafkaConfig) -> Result<Self, SinksError> {
        if config.group.trim().is_empty() {
            return Err(SinksError::Config(
                "the Kafka consumer group name is empty".into(),
            ));
        }
        let dlq_topic = config.dlq_topic();
        for topic in [&config.topic, &dlq_topic] {
            ensure_topic(
                &config.brokers,
                &config.options,
                topic,
                config.partitions,
                config.replication_factor,
            )
            .await?;
        }

        let mut cc = client_config(&config.brokers, CONSUMER_DEFAULTS, &config.options)?;
        for (k, v) in CONSUMER_ENFORCED {
            if let Some(user) = config.options.get(*k) {
                if user != v {
                    warn!(property = k, value = %user,
                          "ignoring this [kafka.options] entry: the ingester commits offsets \
                           itself, after storing each batch");
                }
            }
            cc.set(*k, *v);
        }
        cc.set("group.id", &config.group);
        // Static membership: a restarted member with the same name takes its
        // partitions back at once (see `KafkaConfig::instance_id`).
        if let Some(id) = config
            .instance_id
            .as_deref()
            .filter(|i| !i.trim().is_empty())
        {
            cc.set("group.instance.id", id);
            if let Some(ms) = short_static_session(&config.options) {
                warn!(session_timeout_ms = ms, instance_id = %id,
                      "session.timeout.ms is below {MIN_STATIC_SESSION_MS} ms for a static member: \
                       on tansu 0.6 such a member loses its partitions at every join and stores \
                       nothing (tansu holds a static member's JoinGroup and SyncGroup ~3 s each \
                       and checks the session before counting the first heartbeat); raise it, \
                       or turn static membership off with --instance-id \"\"");
            }
        }
        let (inner, consumer_state) = SysmonContext::new("consumer");
        let group_state = Arc::new(Mutex::new(GroupState::default()));
        let lag = ConsumerLag::default();
        let reachability = Reachability::default();
        let context = ReceiverContext {
            inner,
            group: group_state.clone(),
            partitions: PartitionStats::default(),
            lag: lag.clone(),
            reachability: reachability.clone(),
        };
        let consumer: StreamConsumer<ReceiverContext> = cc
            .create_with_context(context)
            .map_err(|e| creation_error("creating the Kafka consumer", e))?;
        consumer.subscribe(&[&config.topic])?;
        let consumer = Arc::new(consumer);

        let pc = client_config(
            &config.brokers,
            &producer_defaults(config.compression),
            &dlq_options(&config.options),
        )?;
        let dlq = ProducerHandle::new(pc, "dead-letter producer")?;

        Ok(KafkaReceiver {
            consumer,
            consumer_state,
            group_state,
            dlq,
            pending: Vec::new(),
            returned: VecDeque::new(),
            seq: 0,
            lag,
            reachability,
            membership: Membership::default(),
            idle_check: None,
            next_idle_check: Instant::now() + IDLE_CHECK_EVERY,
            topic: config.topic.clone(),
            dlq_topic,
            group: config.group.clone(),
            instance_id: config.instance_id.clone().filter(|i| !i.trim().is_empty()),
            brokers: config.brokers.clone(),
            warned_unknown_format: HashSet::new(),
        })
    }

    /// The partitions currently assigned to this member, sorted.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        let mut v: Vec<_> = lock(&self.group_state).assigned.iter().cloned().collect();
        v.sort();
        v
    }

    /// How many rebalance events (assignments and revocations) this member saw.
    pub fn rebalances(&self) -> u64 {
        lock(&self.group_state).rebalances
    }

    /// The dead-letter topic.
    pub fn dlq_topic(&self) -> &str {
        &self.dlq_topic
    }

    /// A handle on this member's consumer lag (messages of its assigned
    /// partitions not yet committed), updated with librdkafka's statistics
    /// once a second while the receiver is polled; cheap to read, for `/metrics`.
    pub fn consumer_lag(&self) -> ConsumerLag {
        self.lag.clone()
    }

    /// A handle on this member's partition count and, while it owns none,
    /// the group's lag on the partitions others own (for `/metrics`).
    pub fn membership(&self) -> Membership {
        self.membership.clone()
    }

    /// While this member owns no partitions, checks every
    /// [`IDLE_CHECK_EVERY`] (on the blocking pool, never more than one at a
    /// time) whether the group has messages waiting; says so once in the log
    /// and keeps the figure for `/metrics`. An idle member beside a backlog
    /// means more ingesters than partitions, or a dead member still holding
    /// them (a static member restarted under its name takes them back).
    fn watch_idle(&mut self) {
        let (joined, owned) = {
            let g = lock(&self.group_state);
            (g.rebalances > 0, g.assigned.len())
        };
        self.membership.assigned.store(
            if joined { owned as i64 } else { -1 },
            std::sync::atomic::Ordering::Relaxed,
        );
        if self.idle_check.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        if let Some(task) = self.idle_check.take() {
            let lag = task.now_or_never().and_then(|r| r.ok()).flatten();
            self.record_idle_lag(lag, owned);
        }
        if !joined || owned > 0 {
            if self.membership.unowned_lag().is_some_and(|l| l > 0) {
                info!("this ingester owns partitions again");
            }
            self.membership.set_unowned_lag(None);
            return;
        }
        if Instant::now() < self.next_idle_check {
            return;
        }
        self.next_idle_check = Instant::now() + IDLE_CHECK_EVERY;
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let task = tokio::task::spawn_blocking(move || unowned_group_lag(&consumer, &topic));
        self.idle_check = Some(task);
    }

    fn record_idle_lag(&mut self, lag: Option<i64>, owned: usize) {
        if owned > 0 {
            return;
        }
        let before = self.membership.unowned_lag();
        self.membership.set_unowned_lag(lag);
        match (before, lag) {
            (None | Some(0), Some(n)) if n > 0 => warn!(
                group = %self.group, lag = n,
                "this ingester owns no partitions while its group has messages waiting: \
                 more ingesters than partitions, or a dead member still holds them \
                 (restart it under its --instance-id, or wait for its session to time out)"
            ),
            (Some(b), Some(0)) if b > 0 => info!(group = %self.group,
                "the group's backlog is consumed (this ingester still owns no partitions)"),
            _ => {}
        }
    }

    /// Drops what belongs to partitions revoked since the last call.
    fn forget_revoked(&mut self) {
        let revoked = std::mem::take(&mut lock(&self.group_state).revoked);
        if revoked.is_empty() {
            return;
        }
        let before = self.pending.len();
        self.pending.retain(|(_, tp, _)| !revoked.contains(tp));
        for (_, batch) in self.returned.iter_mut() {
            batch.retain(|tp, _| !revoked.contains(tp));
        }
        if before != self.pending.len() {
            debug!(
                dropped = before - self.pending.len(),
                "dropped messages of revoked partitions; their next owner reads them again"
            );
        }
    }

    fn convert(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) -> Message {
        let format = match header_format(m) {
            Ok(f) => f,
            Err(value) => {
                let value = sysmon_core::text::quote(&value);
                if self.warned_unknown_format.len() < MAX_WARNED_FORMATS
                    && self.warned_unknown_format.insert(value.clone())
                {
                    warn!(origin = %origin_of(m), header = FORMAT_HEADER, %value,
                          "unknown format header; telling the format from the payload instead");
                } else {
                    debug!(origin = %origin_of(m), header = FORMAT_HEADER, %value,
                           "unknown format header");
                }
                None
            }
        };
        Message {
            key: m.key().map(<[u8]>::to_vec),
            payload: Payload::Encoded {
                bytes: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                format,
            },
            origin: origin_of(m),
        }
    }

    /// Produces one dead letter and waits for its delivery report; after a
    /// failure the dead-letter producer is replaced (see [`ProducerHandle`]).
    async fn produce_dead_letter(
        &self,
        bytes: &[u8],
        headers: OwnedHeaders,
    ) -> Result<(), TransportError> {
        let slot = self.dlq.get();
        let result = match enqueue(
            &slot.producer,
            &self.dlq_topic,
            None,
            bytes,
            headers,
            Instant::now() + Duration::from_secs(30),
        )
        .await
        {
            Ok(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_closed) => Err(KafkaError::Canceled),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_permanent(&e) => Err(TransportError::rejected(e.to_string()).caused_by(e)),
            Err(e) => {
                let err = transport_error(&e, &slot.state);
                self.dlq.replace(slot, "dead letter not delivered");
                Err(err)
            }
        }
    }
}

/// The shortest `session.timeout.ms` a static member is not warned about.
/// tansu 0.6 holds a static member's JoinGroup and then its SyncGroup about
/// 3 s each, and checks the member's session before it records the first
/// heartbeat: with a 6 s session a static ingester was evicted 6.0 s after
/// every join, rejoined, and stored nothing in 40 s (BENCHMARKS.md, issue 11);
/// with 10 s, or the default 45 s, it keeps its partitions.
const MIN_STATIC_SESSION_MS: u64 = 10_000;

/// The configured session timeout if it is too short for a static member on
/// tansu (see [`MIN_STATIC_SESSION_MS`]).
fn short_static_session(options: &BTreeMap<String, String>) -> Option<u64> {
    let ms: u64 = options.get("session.timeout.ms")?.trim().parse().ok()?;
    (ms < MIN_STATIC_SESSION_MS).then_some(ms)
}

/// How often an ingester that owns no partitions checks the group's lag.
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(10);

/// A receiver's place in its group, for `/metrics`: how many partitions it
/// owns and, while it owns none, the group's lag elsewhere. Cheap to clone
/// and read.
#[derive(Debug, Clone)]
pub struct Membership {
    assigned: Arc<std::sync::atomic::AtomicI64>,
    unowned_lag: Arc<std::sync::atomic::AtomicI64>,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            assigned: Arc::new((-1).into()),
            unowned_lag: Arc::new((-1).into()),
        }
    }
}

impl Membership {
    /// Partitions this member owns; `None` before it joined the group.
    pub fn assigned(&self) -> Option<i64> {
        let v = self.assigned.load(std::sync::atomic::Ordering::Relaxed);
        (v >= 0).then_some(v)
    }

    /// While this member owns no partitions: the messages its group has not
    /// committed on the topic (a lower bound on tansu, whose `ListOffsets`
    /// answers the last record batch's first offset plus one); `None` while it
    /// owns partitions or before the first check.
    pub fn unowned_lag(&self) -> Option<i64> {
        let v = self.unowned_lag.load(std::sync::atomic::Ordering::Relaxed);
        (v >= 0).then_some(v)
    }

    fn set_unowned_lag(&self, lag: Option<i64>) {
        self.unowned_lag
            .store(lag.unwrap_or(-1), std::sync::atomic::Ordering::Relaxed);
    }
}

/// The group's committed offsets against the partitions' end, summed over
/// every partition of `topic` (blocking: three broker round trips).
fn unowned_group_lag(consumer: &StreamConsumer<ReceiverContext>, topic: &str) -> Option<i64> {
    let timeout = Duration::from_secs(5);
    let md = consumer.fetch_metadata(Some(topic), timeout).ok()?;
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = consumer.committed_offsets(tpl, timeout).ok()?;
    let mut lag = 0i64;
    for e in committed.elements() {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, e.partition(), timeout)
            .ok()?;
        let from = match e.offset() {
            Offset::Offset(o) if o >= 0 => o,
            _ => lo,
        };
        lag += (hi - from).max(0);
    }
    Some(lag)
}

/// The dead-letter producer's options: the user's, minus consumer-only ones.
fn dlq_options(options: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    options
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "group.id"
                    | "auto.offset.reset"
                    | "enable.auto.commit"
                    | "enable.auto.offset.store"
                    | "session.timeout.ms"
                    | "heartbeat.interval.ms"
                    | "max.poll.interval.ms"
                    | "partition.assignment.strategy"
                    | "group.instance.id"
                    | "fetch.min.bytes"
                    | "fetch.wait.max.ms"
                    | "fetch.max.bytes"
                    | "max.partition.fetch.bytes"
                    | "isolation.level"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[async_trait]
impl TransportReceiver for KafkaReceiver {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Received, TransportError> {
        let max = max.max(1);
        let deadline = Instant::now() + wait;
        let mut last_error: Option<KafkaError> = None;
        let consumer = self.consumer.clone();
        self.watch_idle();
        // Cancel-safe: between awaits every message taken is in `self.pending`.
        while self.pending.len() < max {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let this_wait = if self.pending.is_empty() {
                remaining
            } else {
                remaining.min(IDLE_GAP)
            };
            match tokio::time::timeout(this_wait, consumer.recv()).await {
                Err(_elapsed) => {
                    if !self.pending.is_empty() {
                        break;
                    }
                }
                Ok(Ok(m)) => {
                    self.reachability.set(true);
                    let tp = (m.topic().to_string(), m.partition());
                    let offset = m.offset();
                    let message = self.convert(&m);
                    self.pending.push((message, tp, offset));
                }
                Ok(Err(e)) => {
                    // Error events (a refused connection, all brokers down) queue
                    // up during an outage; drain them here rather than return one
                    // per call, so messages behind them flow as soon as the
                    // broker is back. librdkafka reconnects by itself.
                    debug!(error = %e, "consumer error event");
                    last_error = Some(e);
                }
            }
            self.forget_revoked();
        }
        self.forget_revoked();
        if self.pending.is_empty() {
            if let Some(e) = last_error {
                return Err(transport_error(&e, &self.consumer_state));
            }
            // No error this time is no news: librdkafka does not repeat an
            // identical connection error, so the outage goes on until a
            // broker is seen up again (see `Reachability`).
            if self.reachability.is_down() {
                let last = self
                    .consumer_state
                    .last_error()
                    .unwrap_or_else(|| "no broker connection is up".into());
                return Err(TransportError::unavailable(format!(
                    "no broker reachable (last broker error: {last})"
                )));
            }
            return Ok(Received::Messages(Vec::new()));
        }
        let take = self.pending.len().min(max);
        let mut next_offsets: HashMap<TopicPartition, i64> = HashMap::new();
        let mut out = Vec::with_capacity(take);
        for (message, tp, offset) in self.pending.drain(..take) {
            let next = offset + 1;
            let slot = next_offsets.entry(tp).or_insert(next);
            if next > *slot {
                *slot = next;
            }
            out.push(message);
        }
        self.seq += 1;
        self.returned.push_back((self.seq, next_offsets));
        Ok(Received::Messages(out))
    }

    fn mark(&self) -> CommitMark {
        CommitMark::new(self.seq)
    }

    async fn commit(&mut self, mark: CommitMark) -> Result<(), TransportError> {
        let mut offsets: HashMap<TopicPartition, i64> = {
            let mut g = lock(&self.group_state);
            let mut all = std::mem::take(&mut g.processed);
            while self
                .returned
                .front()
                .is_some_and(|(seq, _)| *seq <= mark.seq())
            {
                let Some((_, batch)) = self.returned.pop_front() else {
                    break;
                };
                for (tp, o) in batch {
                    let slot = all.entry(tp).or_insert(o);
                    if o > *slot {
                        *slot = o;
                    }
                }
            }
            let assigned = g.assigned.clone();
            all.retain(|tp, _| assigned.contains(tp));
            all
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for ((t, p), o) in &offsets {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                .map_err(|e| {
                    TransportError::other(format!("building the commit: {e}")).caused_by(e)
                })?;
        }
        let consumer = self.consumer.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| TransportError::other(format!("commit task failed: {e}")).caused_by(e))?;
        debug!(partitions = offsets.len(), took = ?started.elapsed(), ok = result.is_ok(), "offsets committed");
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                // Keep the offsets: the next commit (or a revocation) tries again.
                let mut g = lock(&self.group_state);
                for (tp, o) in offsets.drain() {
                    let slot = g.processed.entry(tp).or_insert(o);
                    if o > *slot {
                        *slot = o;
                    }
                }
                Err(transport_error(&e, &self.consumer_state))
            }
        }
    }

    async fn dead_letter(
        &mut self,
        message: &Message,
        error: &DecodeError,
    ) -> Result<(), TransportError> {
        let owned;
        let (bytes, format): (&[u8], _) = match &message.payload {
            Payload::Encoded { bytes, format } => (bytes, *format),
            Payload::Snapshot(s) => {
                owned = encode_json(s);
                (&owned, None)
            }
        };
        // Bounded whatever the input: the reason quotes input only as a short
        // escaped head and tail (<= 1 KiB), the origin is ours.
        let reason = error.reason();
        let origin = sysmon_core::text::quote(&message.origin);
        let size = bytes.len().to_string();
        let headers = |reason: &str, truncated: bool| {
            let h = OwnedHeaders::new_with_capacity(5)
                .insert(Header {
                    key: REASON_HEADER,
                    value: Some(reason),
                })
                .insert(Header {
                    key: REASON_KIND_HEADER,
                    value: Some(error.kind()),
                })
                .insert(Header {
                    key: ORIGIN_HEADER,
                    value: Some(origin.as_str()),
                });
            let h = match format {
                Some(f) => h.insert(Header {
                    key: FORMAT_HEADER,
                    value: Some(f.as_str()),
                }),
                None => h,
            };
            if truncated {
                h.insert(Header {
                    key: TRUNCATED_HEADER,
                    value: Some(size.as_str()),
                })
            } else {
                h
            }
        };
        // The original first; if the broker refuses it for good (too large),
        // its head with a shorter reason, then a smaller head; if even that is
        // refused the caller counts and skips it rather than stall ingestion.
        let mut last = String::new();
        let mut tried: Option<(usize, usize)> = None;
        for (cut, reason_bytes) in [
            (usize::MAX, MAX_REASON_BYTES),
            (TRUNCATED_DEAD_LETTER_BYTES, MAX_REASON_BYTES),
            (MIN_DEAD_LETTER_BYTES, MIN_REASON_BYTES),
        ] {
            let payload = &bytes[..bytes.len().min(cut)];
            let reason = sysmon_core::text::truncate(&reason, reason_bytes);
            if tried == Some((payload.len(), reason.len())) {
                continue; // the same message again would be refused again
            }
            tried = Some((payload.len(), reason.len()));
            let truncated = payload.len() < bytes.len();
            match self
                .produce_dead_letter(payload, headers(reason, truncated))
                .await
            {
                Err(TransportError::Rejected { message, .. }) => last = message,
                other => return other,
            }
        }
        Err(TransportError::rejected(format!(
            "the broker refused the dead letter even cut to {MIN_DEAD_LETTER_BYTES} bytes: {last}"
        )))
    }

    fn describe(&self) -> String {
        let member = match &self.instance_id {
            Some(id) => format!(" as static member {id}"),
            None => String::new(),
        };
        format!(
            "kafka {} topic {} group {}{member} (dead letters to {})",
            self.brokers, self.topic, self.group, self.dlq_topic
        )
    }
}

impl std::fmt::Debug for KafkaReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReceiver")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("group", &self.group)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_with(brokers: &[(&str, &str)]) -> Statistics {
        let mut s = Statistics::default();
        for (i, (source, state)) in brokers.iter().enumerate() {
            let b = rdkafka::statistics::Broker {
                source: source.to_string(),
                state: state.to_string(),
                ..Default::default()
            };
            s.brokers.insert(format!("b{i}"), b);
        }
        s
    }

    #[test]
    fn reachability_changes_only_on_evidence() {
        // librdkafka's internal broker is always UP and says nothing.
        assert_eq!(any_broker_up(&stats_with(&[("internal", "UP")])), None);
        assert_eq!(
            any_broker_up(&stats_with(&[
                ("internal", "UP"),
                ("learned", "TRY_CONNECT")
            ])),
            Some(false)
        );
        assert_eq!(
            any_broker_up(&stats_with(&[("configured", "DOWN"), ("learned", "UP")])),
            Some(true)
        );
        let r = Reachability::default();
        assert!(!r.is_down(), "unknown is not down");
        r.set(false);
        assert!(r.is_down());
        r.set(true);
        assert!(!r.is_down());
        use rdkafka::error::RDKafkaErrorCode;
        assert!(is_unreachable(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::AllBrokersDown
        )));
        assert!(!is_unreachable(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::UnknownTopicOrPartition
        )));
    }

    #[test]
    fn a_static_session_under_ten_seconds_is_flagged() {
        let opts = |v: &str| BTreeMap::from([("session.timeout.ms".to_string(), v.to_string())]);
        assert_eq!(short_static_session(&opts("6000")), Some(6000));
        assert_eq!(short_static_session(&opts(" 9999 ")), Some(9999));
        assert_eq!(short_static_session(&opts("10000")), None);
        assert_eq!(short_static_session(&opts("45000")), None);
        // Unset (librdkafka's 45 s) or unparsable (librdkafka refuses it): no warning.
        assert_eq!(short_static_session(&BTreeMap::new()), None);
        assert_eq!(short_static_session(&opts("soon")), None);
    }
}
