//! The Kafka transport (rdkafka / librdkafka).
//!
//! * [`KafkaTransport`] (agents): an idempotent producer (`acks=all`, lz4, short
//!   linger) keyed by `machine_id` so each machine's samples stay in order. A
//!   batch counts as sent only when every delivery report is a success.
//! * [`KafkaReceiver`] (ingesters): a consumer-group member with manual commits:
//!   the ingester commits a batch's offsets only after its sinks stored it
//!   (at-least-once; the sinks' idempotent keys make storage exactly-once).
//!   Bad messages go to the dead-letter topic with the reason in headers.
//!   Its consumer lag comes from librdkafka statistics ([`ConsumerLag`]).
//! * [`ensure_topic`]: creates a topic if it is missing (tansu, like many
//!   production clusters, does not auto-create topics).
//! * [`doctor`]: the worker-setup check behind `sysmon doctor`.
//!
//! Every `[kafka.options]` entry is passed to librdkafka unchanged (after
//! sysmon's defaults, so it can override them), which is how TLS and SASL are
//! configured: `security.protocol = "SASL_SSL"`, `sasl.mechanisms = "PLAIN"`, ...
//!
//! Wire conventions: the message value is the encoded snapshot; the key is the
//! machine id; the header `sysmon-format` (`json` or `binary`) and the header
//! `content-type` name the encoding. Messages without headers (the legacy
//! Python producer) are recognised by their first byte.

mod admin;
mod consumer;
mod doctor;
pub mod lag;
mod producer;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Headers;
use sysmon_core::codec::Format;
use sysmon_core::TransportError;
use tracing::{debug, error};

use crate::error::SinksError;

pub use admin::{ensure_topic, EnsuredTopic};
pub use consumer::{KafkaReceiver, Membership};
pub use doctor::doctor;
pub use lag::ConsumerLag;
pub use producer::KafkaTransport;

/// Header naming the payload's encoding: `json` or `binary`.
pub const FORMAT_HEADER: &str = "sysmon-format";
/// Header with the payload's MIME type (`application/json` or
/// `application/x-sysmon-snapshot`), for tools that know no sysmon headers.
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// Dead-letter header: why the message was rejected, in words.
pub const REASON_HEADER: &str = "sysmon-reason";
/// Dead-letter header: the stable rejection tag ([`sysmon_core::DecodeError::kind`]).
pub const REASON_KIND_HEADER: &str = "sysmon-reason-kind";
/// Dead-letter header: where the message came from, `topic/partition@offset`.
pub const ORIGIN_HEADER: &str = "sysmon-origin";
/// Dead-letter header present when the payload was cut to fit the broker's
/// size limit; its value is the original size in bytes.
pub const TRUNCATED_HEADER: &str = "sysmon-truncated-from";

/// The MIME type sysmon writes in [`CONTENT_TYPE_HEADER`] for `format`.
pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json",
        Format::Binary => "application/x-sysmon-snapshot",
    }
}

/// Builds a librdkafka configuration: `bootstrap.servers`, a 1 s cap on
/// reconnection backoff, then sysmon's `defaults`, then every user option unchanged (so options win).
pub(crate) fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    options: &BTreeMap<String, String>,
) -> Result<ClientConfig, SinksError> {
    let brokers = brokers.trim();
    if brokers.is_empty() {
        return Err(SinksError::Config(
            "no Kafka brokers given: set --brokers HOST:PORT[,HOST:PORT...] or kafka.brokers"
                .into(),
        ));
    }
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    // librdkafka waits up to 10 s between reconnection attempts by default
    // (100 ms doubling); capped at 1 s like sysmon's own loops
    // (`sysmon_core::backoff`), a broker's return is noticed within about a
    // second however long it was away.
    c.set("reconnect.backoff.max.ms", "1000");
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in options {
        c.set(k.as_str(), v.as_str());
    }
    // librdkafka's own log lines go through `ClientContext::log`; with a
    // `debug` option (e.g. `debug = "eos,msg"`) librdkafka's debug lines too.
    if !options.contains_key("debug") {
        c.set_log_level(RDKafkaLogLevel::Info);
    } else {
        c.set_log_level(RDKafkaLogLevel::Debug);
    }
    Ok(c)
}

/// Turns a client-creation error into a configuration error that names the fix.
pub(crate) fn creation_error(what: &str, e: KafkaError) -> SinksError {
    match e {
        KafkaError::ClientConfig(_, ref desc, ref key, ref value) => SinksError::Config(format!(
            "{what}: invalid librdkafka property `{key}` = `{value}`: {desc}"
        )),
        KafkaError::ClientCreation(ref m) => {
            SinksError::Config(format!("{what}: cannot create the Kafka client: {m}"))
        }
        other => SinksError::Kafka(other),
    }
}

/// What a client's context learned: the last error and a fatal error, if any.
#[derive(Debug, Default)]
pub(crate) struct ClientState {
    last_error: Mutex<Option<String>>,
    fatal: Mutex<Option<String>>,
}

impl ClientState {
    /// The last error librdkafka reported (e.g. `Connect to ipv4#127.0.0.1:9092 failed`).
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    /// The fatal error that made this client unusable, if any.
    pub(crate) fn fatal(&self) -> Option<String> {
        self.fatal.lock().ok().and_then(|g| g.clone())
    }
}

/// The client context shared by sysmon's producers and consumers: librdkafka's
/// log lines and error events go to `tracing` at debug level (the transport
/// reports outages itself, once when they start and once when they end), and
/// the last error is kept in a [`ClientState`] to explain a failed delivery.
#[derive(Debug)]
pub(crate) struct SysmonContext {
    role: &'static str,
    state: Arc<ClientState>,
}

impl SysmonContext {
    /// A context for a client playing `role`, and a handle on its state.
    pub(crate) fn new(role: &'static str) -> (Self, Arc<ClientState>) {
        let state = Arc::new(ClientState::default());
        (
            SysmonContext {
                role,
                state: state.clone(),
            },
            state,
        )
    }
}

impl ClientContext for SysmonContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                error!(target: "librdkafka", client = self.role, facility = fac, "{log_message}")
            }
            _ => debug!(target: "librdkafka", client = self.role, facility = fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let text = format!("{error}: {reason}");
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            error!(target: "librdkafka", client = self.role, "fatal client error: {text}");
            if let Ok(mut f) = self.state.fatal.lock() {
                *f = Some(text.clone());
            }
        } else {
            debug!(target: "librdkafka", client = self.role, "{text}");
        }
        // "All broker connections are down" follows every broker's own failure
        // (a refused connection, a TLS certificate that does not verify): it
        // must not replace that failure, which is what names the fix.
        let summary = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        if let Ok(mut e) = self.state.last_error.lock() {
            if !(summary && e.is_some()) {
                *e = Some(text);
            }
        }
    }
}

/// Plain consumers (the doctor's) keep librdkafka's default rebalancing.
impl ConsumerContext for SysmonContext {}

/// The format a message's headers name, if any: `sysmon-format` first, then
/// `content-type`. `Err` carries a header value that names no known format.
pub(crate) fn header_format<M: rdkafka::message::Message>(m: &M) -> Result<Option<Format>, String> {
    let Some(headers) = m.headers() else {
        return Ok(None);
    };
    let mut content_type = None;
    for h in headers.iter() {
        let Some(value) = h.value else { continue };
        if h.key.eq_ignore_ascii_case(FORMAT_HEADER) {
            let v = String::from_utf8_lossy(value);
            return Format::parse(&v).map(Some).map_err(|_| v.into_owned());
        }
        if h.key.eq_ignore_ascii_case(CONTENT_TYPE_HEADER) {
            content_type = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    match content_type {
        // A foreign content type (text/plain, ...) says nothing sysmon can use.
        Some(ct) => Ok(Format::parse(ct.split(';').next().unwrap_or("")).ok()),
        None => Ok(None),
    }
}

/// Maps a delivery or client error to the transport's error, adding the last
/// broker-level error when it explains more (refused connection, auth failure).
pub(crate) fn transport_error(e: &KafkaError, state: &ClientState) -> TransportError {
    let detail = match state.last_error() {
        Some(last) => format!("{e} (last broker error: {last})"),
        None => e.to_string(),
    };
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::QueueFull,
        ) => TransportError::unavailable(detail).caused_by(e.clone()),
        _ => TransportError::other(detail).caused_by(e.clone()),
    }
}

/// `topic/partition@offset` of a consumed message.
pub(crate) fn origin_of<M: rdkafka::message::Message>(m: &M) -> String {
    format!("{}/{}@{}", m.topic(), m.partition(), m.offset())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn message(headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            3,
            42,
            headers,
        )
    }

    fn h(pairs: &[(&str, &str)]) -> OwnedHeaders {
        pairs.iter().fold(OwnedHeaders::new(), |acc, (k, v)| {
            acc.insert(Header {
                key: k,
                value: Some(*v),
            })
        })
    }

    #[test]
    fn format_comes_from_the_sysmon_header_then_content_type() {
        assert_eq!(header_format(&message(None)), Ok(None));
        let m = message(Some(h(&[("sysmon-format", "binary")])));
        assert_eq!(header_format(&m), Ok(Some(Format::Binary)));
        let m = message(Some(h(&[(
            "content-type",
            "application/json; charset=utf-8",
        )])));
        assert_eq!(header_format(&m), Ok(Some(Format::Json)));
        let m = message(Some(h(&[("content-type", "text/plain")])));
        assert_eq!(header_format(&m), Ok(None));
        let m = message(Some(h(&[("sysmon-format", "xml")])));
        assert_eq!(header_format(&m), Err("xml".to_string()));
        assert_eq!(origin_of(&m), "t/3@42");
    }

    #[test]
    fn options_override_defaults_and_empty_brokers_are_rejected() {
        let mut opts = BTreeMap::new();
        opts.insert("linger.ms".to_string(), "50".to_string());
        let c = client_config("h:1", &[("linger.ms", "5"), ("acks", "all")], &opts).unwrap();
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("acks"), Some("all"));
        assert!(client_config("  ", &[], &opts).is_err());
    }

    #[test]
    fn a_bad_property_names_itself() {
        let mut opts = BTreeMap::new();
        opts.insert("no.such.property".to_string(), "1".to_string());
        let e = KafkaTransport::new(&sysmon_core::config::KafkaConfig {
            options: opts,
            ..Default::default()
        })
        .expect_err("an unknown property must be an error");
        assert!(e.to_string().contains("no.such.property"), "{e}");
    }
}
