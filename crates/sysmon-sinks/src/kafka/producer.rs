//! `KafkaTransport`: the agent's side of the Kafka transport.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use sysmon_core::codec::{encode, Format};
use sysmon_core::config::{Compression, KafkaConfig};
use sysmon_core::{Snapshot, Transport, TransportError};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use super::{
    client_config, content_type, creation_error, transport_error, ClientState, SysmonContext,
    CONTENT_TYPE_HEADER, FORMAT_HEADER,
};
use crate::error::SinksError;

/// Producer settings sysmon applies before `[kafka.options]` (which may
/// override them); `compression.type` comes from `[kafka] compression`
/// (see [`producer_defaults`]).
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("client.id", "sysmon-agent"),
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("linger.ms", "5"),
    // Bounded, so an outage surfaces as a failed publish (the agent keeps the
    // samples in its buffer and retries) instead of a publish that never returns.
    ("message.timeout.ms", "30000"),
    ("socket.keepalive.enable", "true"),
];

/// [`PRODUCER_DEFAULTS`] plus `compression.type` = `compression`.
pub(crate) fn producer_defaults(compression: Compression) -> Vec<(&'static str, &'static str)> {
    let mut defaults = PRODUCER_DEFAULTS.to_vec();
    defaults.push(("compression.type", compression.as_str()));
    defaults
}

/// Where a message went: `(partition, offset)`.
pub(crate) type Delivered = Result<(i32, i64), KafkaError>;

/// Resolves when the broker acknowledged (or finally refused) one message.
pub(crate) type DeliveryReport = oneshot::Receiver<Delivered>;

/// The producer's context: [`SysmonContext`] plus delivery reports sent to
/// the waiting publisher through a oneshot channel.
pub(crate) struct DeliveryContext {
    inner: SysmonContext,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.inner.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<oneshot::Sender<Delivered>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        // The publisher may have given up waiting; nothing to do then.
        let _ = tx.send(outcome);
    }
}

/// How long each `poll` of the delivery thread lasts. rdkafka's own
/// `ThreadedProducer` polls in 100 ms windows and, because it truncates the
/// remaining time to whole milliseconds, spins through the last millisecond of
/// each window: about 1 % of a core on an idle agent. One-second windows cut
/// that to a tenth; dropping the producer waits for at most one window (on
/// the delivery thread, never on the caller).
const POLL_WINDOW: Duration = Duration::from_secs(1);

/// A message on its way to librdkafka, carrying its report channel.
pub(crate) type Record<'a> = BaseRecord<'a, [u8], [u8], Box<oneshot::Sender<Delivered>>>;

/// A librdkafka producer whose delivery reports are served by a thread of ours.
pub(crate) struct PolledProducer {
    producer: Arc<BaseProducer<DeliveryContext>>,
    stop: Arc<AtomicBool>,
}

impl PolledProducer {
    fn start(
        config: &ClientConfig,
        role: &'static str,
    ) -> Result<(Self, Arc<ClientState>), SinksError> {
        let (inner, state) = SysmonContext::new(role);
        let producer: Arc<BaseProducer<DeliveryContext>> = Arc::new(
            config
                .create_with_context(DeliveryContext { inner })
                .map_err(|e| creation_error("creating the Kafka producer", e))?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        {
            let producer = producer.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sysmon-kafka-dr".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        producer.poll(POLL_WINDOW);
                    }
                    // The last handle: dropping it here purges what is left and
                    // destroys the client off the async runtime.
                })
                .map_err(|e| SinksError::Io {
                    context: "starting the Kafka delivery-report thread".into(),
                    source: e,
                })?;
        }
        Ok((PolledProducer { producer, stop }, state))
    }

    /// Hands one message to librdkafka; its report arrives on the returned channel.
    #[allow(clippy::result_large_err)]
    pub(crate) fn send<'a>(&self, record: Record<'a>) -> Result<(), (KafkaError, Record<'a>)> {
        self.producer.send(record)
    }

    /// Waits until everything queued was delivered (blocking).
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}

impl Drop for PolledProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A producer and the state its context records.
#[derive(Clone)]
pub(crate) struct Slot {
    pub(crate) producer: Arc<PolledProducer>,
    pub(crate) state: Arc<ClientState>,
}

/// A producer that can be replaced by a fresh one.
///
/// After a failed delivery, librdkafka's idempotent producer bumps its epoch
/// on its own and carries on with the same producer id; brokers that do not
/// accept such a bump (tansu 0.6.0 answers every later write with an error)
/// would leave it stuck forever. So after any failed delivery the producer is
/// replaced: the new one registers a new producer id with the broker, and the
/// caller sends the failed messages again (duplicates are harmless: storage is
/// keyed). Per-partition order is kept because a batch is sent again only
/// after every message of the failed attempt has resolved.
pub(crate) struct ProducerHandle {
    slot: RwLock<Slot>,
    config: ClientConfig,
    role: &'static str,
}

impl ProducerHandle {
    /// A producer from `config`; `role` names it in logs.
    pub(crate) fn new(config: ClientConfig, role: &'static str) -> Result<Self, SinksError> {
        let slot = build(&config, role)?;
        Ok(ProducerHandle {
            slot: RwLock::new(slot),
            config,
            role,
        })
    }

    /// The current producer.
    pub(crate) fn get(&self) -> Slot {
        match self.slot.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces `used` (if it is still the current producer) with a fresh one.
    /// The old producer is purged and destroyed on a blocking thread.
    pub(crate) fn replace(&self, used: Slot, why: &str) {
        let fresh = match build(&self.config, self.role) {
            Ok(f) => f,
            Err(e) => {
                error!(client = self.role, error = %e, "could not create a fresh Kafka producer");
                return;
            }
        };
        let old = {
            let mut guard = match self.slot.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if !Arc::ptr_eq(&guard.state, &used.state) {
                return; // someone else replaced it already
            }
            std::mem::replace(&mut *guard, fresh)
        };
        match used.state.fatal() {
            Some(fatal) => warn!(client = self.role, error = %fatal,
                                 "the Kafka producer hit a fatal error; replaced it with a new one"),
            None => debug!(
                client = self.role,
                reason = why,
                "replaced the Kafka producer after a failed delivery"
            ),
        }
        // The old producer's delivery thread purges and destroys it.
        drop((old, used));
    }
}

/// Publishes snapshots to a Kafka topic.
///
/// Each snapshot becomes one message: value = the snapshot encoded in the
/// configured [`Format`], key = `machine_id` (so one machine's samples land on
/// one partition, in order), headers `sysmon-format` and `content-type`.
/// [`publish`](Transport::publish) returns `Ok` only when the broker
/// acknowledged every message of the batch (`acks=all`); otherwise the agent
/// keeps the batch and sends it again later (a repeat is harmless: storage is
/// keyed by `(machine_id, timestamp)`).
pub struct KafkaTransport {
    producer: ProducerHandle,
    topic: String,
    format: Format,
    compression: String,
    brokers: String,
}

impl KafkaTransport {
    /// A producer for `config.topic` in `config.format` with sysmon's defaults
    /// and every `config.options` entry. Connecting happens in the background;
    /// an unreachable broker shows up as failed publishes, not here.
    pub fn new(config: &KafkaConfig) -> Result<Self, SinksError> {
        let client_config = client_config(
            &config.brokers,
            &producer_defaults(config.compression),
            &config.options,
        )?;
        if config.topic.trim().is_empty() {
            return Err(SinksError::Config("the Kafka topic name is empty".into()));
        }
        Ok(KafkaTransport {
            producer: ProducerHandle::new(client_config, "producer")?,
            topic: config.topic.clone(),
            format: config.format,
            compression: config
                .options
                .get("compression.type")
                .cloned()
                .unwrap_or_else(|| config.compression.to_string()),
            brokers: config.brokers.clone(),
        })
    }

    /// The topic this transport publishes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The wire format of published snapshots.
    pub fn format(&self) -> Format {
        self.format
    }
}

/// Enqueues one message, waiting while librdkafka's local queue is full, and
/// returns the channel its delivery report will arrive on.
pub(crate) async fn enqueue(
    producer: &PolledProducer,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: OwnedHeaders,
    deadline: Instant,
) -> Result<DeliveryReport, KafkaError> {
    let (tx, rx) = oneshot::channel();
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(tx))
        .payload(payload)
        .headers(headers);
    if let Some(k) = key {
        record = record.key(k);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(rx),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                if Instant::now() < deadline =>
            {
                record = r;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

fn build(config: &ClientConfig, role: &'static str) -> Result<Slot, SinksError> {
    let (producer, state) = PolledProducer::start(config, role)?;
    Ok(Slot {
        producer: Arc::new(producer),
        state,
    })
}

/// A message the broker can never accept: retrying the batch would block the
/// agent forever, so such a snapshot is logged as an error and skipped.
pub(crate) fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn publish(&self, batch: &[Snapshot]) -> Result<(), TransportError> {
        if batch.is_empty() {
            return Ok(());
        }
        let slot = self.producer.get();
        let producer = &slot.producer;
        let format_value = self.format.as_str();
        let content_type_value = content_type(self.format);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut pending = Vec::with_capacity(batch.len());
        for snapshot in batch {
            let payload = encode(snapshot, self.format);
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: FORMAT_HEADER,
                    value: Some(format_value),
                })
                .insert(Header {
                    key: CONTENT_TYPE_HEADER,
                    value: Some(content_type_value),
                });
            match enqueue(
                producer,
                &self.topic,
                Some(snapshot.machine_id.as_bytes()),
                &payload,
                headers,
                deadline,
            )
            .await
            {
                Ok(f) => pending.push((snapshot, f)),
                Err(e) if is_permanent(&e) => {
                    error!(machine_id = %snapshot.machine_id, timestamp = snapshot.timestamp,
                           bytes = payload.len(), error = %e,
                           "Kafka refuses this snapshot (too large?); it is skipped");
                }
                Err(e) => {
                    let err = transport_error(&e, &slot.state);
                    // Messages already enqueued may still be delivered: wait for
                    // them before a fresh producer sends the batch again.
                    drop(join_all(pending.into_iter().map(|(_, f)| f)).await);
                    self.producer.replace(slot, "enqueue failed");
                    return Err(err);
                }
            }
        }
        let (snapshots, futures): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
        let results = join_all(futures).await;
        let mut first_error = None;
        for (snapshot, result) in snapshots.into_iter().zip(results) {
            match result {
                Ok(Ok(_delivered)) => {}
                Ok(Err(e)) if is_permanent(&e) => {
                    error!(machine_id = %snapshot.machine_id, timestamp = snapshot.timestamp,
                           error = %e, "Kafka refused this snapshot (too large?); it is skipped");
                }
                Ok(Err(e)) => {
                    if first_error.is_none() {
                        first_error = Some(transport_error(&e, &slot.state));
                    }
                }
                Err(_canceled) => {
                    if first_error.is_none() {
                        first_error = Some(TransportError::other(
                            "the Kafka producer was shut down before delivery",
                        ));
                    }
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => {
                self.producer.replace(slot, "delivery failed");
                Err(e)
            }
        }
    }

    async fn flush(&self, timeout: Duration) -> Result<(), TransportError> {
        let slot = self.producer.get();
        let result = tokio::task::spawn_blocking(move || {
            slot.producer
                .flush(timeout)
                .map_err(|e| transport_error(&e, &slot.state))
        })
        .await;
        match result {
            Ok(r) => r,
            Err(e) => Err(TransportError::other(format!("flush task failed: {e}")).caused_by(e)),
        }
    }

    fn describe(&self) -> String {
        format!(
            "kafka {} topic {} ({}, {} compression)",
            self.brokers, self.topic, self.format, self.compression
        )
    }
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("format", &self.format)
            .field("compression", &self.compression)
            .finish()
    }
}

/// Keeps `Arc<KafkaTransport>` usable where a `dyn Transport` is expected.
impl From<KafkaTransport> for Arc<dyn Transport> {
    fn from(t: KafkaTransport) -> Self {
        Arc::new(t)
    }
}
