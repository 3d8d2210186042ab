//! The [`Transport`] (publishing side) and [`TransportReceiver`] (consuming
//! side) traits, and the in-process [`channel`] transport of the embedded mode.

pub mod channel;

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use crate::codec::Format;
use crate::error::DecodeError;
use crate::snapshot::Snapshot;

/// Carries snapshots from agents towards the ingester.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Publishes a batch in order. `Ok` means the transport accepted every
    /// snapshot (for Kafka: acknowledged by the brokers); on `Err` none of them
    /// counts as sent and the agent retries the whole batch later.
    async fn publish(&self, batch: &[Snapshot]) -> Result<(), TransportError>;

    /// Delivers anything still in flight; called once at shutdown.
    async fn flush(&self, _timeout: Duration) -> Result<(), TransportError> {
        Ok(())
    }

    /// A one-line description for logs, e.g. `kafka 127.0.0.1:9092 topic system_metrics`.
    fn describe(&self) -> String;
}

/// What a received message carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// An in-process snapshot (channel transport): validated, never encoded.
    Snapshot(Box<Snapshot>),
    /// Bytes off the wire, with the format named by a header if there was one.
    Encoded {
        /// The message body.
        bytes: Vec<u8>,
        /// The format from the message's header, if any.
        format: Option<Format>,
    },
}

/// One received message and where it came from.
#[derive(Debug, Clone)]
pub struct Message {
    /// The payload.
    pub payload: Payload,
    /// The transport's message key, if it has one (Kafka: agents publish with
    /// key = machine id; the legacy producer sent none). A keyed message whose
    /// key is not its snapshot's `machine_id` is rejected.
    pub key: Option<Vec<u8>>,
    /// Where it came from, for logs and dead letters, e.g. `system_metrics/3@1841`.
    pub origin: String,
}

/// What [`TransportReceiver::receive`] returns.
#[derive(Debug)]
pub enum Received {
    /// Zero or more messages (zero when the wait ran out).
    Messages(Vec<Message>),
    /// The transport is closed and everything was received.
    Closed,
}

/// A position in what [`TransportReceiver::receive`] returned: taken with
/// [`TransportReceiver::mark`] right after a `receive`, it covers the messages
/// of that call and of every earlier one, and nothing returned later.
///
/// Marks let the ingester pipeline: it may receive and decode batch N+1 while
/// batch N is written, and still commit exactly what is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitMark(u64);

impl CommitMark {
    /// The mark with sequence number `seq` (receivers number the batches they
    /// return 1, 2, 3, ...; 0 covers nothing).
    pub fn new(seq: u64) -> Self {
        CommitMark(seq)
    }

    /// The sequence number of the last batch the mark covers.
    pub fn seq(self) -> u64 {
        self.0
    }
}

/// Consumes messages on the ingester's side with at-least-once semantics.
#[async_trait]
pub trait TransportReceiver: Send + Sync {
    /// Waits up to `wait` for up to `max` messages.
    ///
    /// Must be cancel-safe: when the future is dropped before it completes, no
    /// message is lost; the next call returns what it had taken.
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Received, TransportError>;

    /// A mark covering every message returned by [`receive`](Self::receive)
    /// so far (and nothing returned later).
    fn mark(&self) -> CommitMark;

    /// Marks the messages `mark` covers as processed (Kafka: commits their
    /// offsets), and nothing returned after it. The ingester calls it only
    /// after the sinks stored every batch up to the mark, with marks in
    /// increasing order.
    async fn commit(&mut self, mark: CommitMark) -> Result<(), TransportError>;

    /// Sets aside a message that cannot be decoded (Kafka: the dead-letter topic,
    /// with the reason in a header).
    async fn dead_letter(
        &mut self,
        message: &Message,
        error: &DecodeError,
    ) -> Result<(), TransportError>;

    /// A one-line description for logs.
    fn describe(&self) -> String;
}

/// The underlying error of a [`TransportError`] (the client library's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A transport failed.
#[derive(Debug, Error)]
pub enum TransportError {
    /// The other side is unreachable; retrying later may succeed.
    #[error("transport unavailable: {message}")]
    Unavailable {
        /// What failed, for logs (includes the underlying error's text).
        message: String,
        /// The client's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The transport was closed.
    #[error("transport closed")]
    Closed,
    /// The other side refused this request for good (a dead letter the broker
    /// will not take even when shrunk); retrying will not help.
    #[error("refused for good: {message}")]
    Rejected {
        /// What was refused and why.
        message: String,
        /// The client's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// Any other failure.
    #[error("transport error: {message}")]
    Other {
        /// What failed.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl TransportError {
    /// [`TransportError::Unavailable`] without an underlying error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        TransportError::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// [`TransportError::Rejected`] without an underlying error.
    pub fn rejected(message: impl Into<String>) -> Self {
        TransportError::Rejected {
            message: message.into(),
            source: None,
        }
    }

    /// [`TransportError::Other`] without an underlying error.
    pub fn other(message: impl Into<String>) -> Self {
        TransportError::Other {
            message: message.into(),
            source: None,
        }
    }

    /// The same error, caused by `source` (kept as its `source()`).
    pub fn caused_by(mut self, cause: impl Into<BoxError>) -> Self {
        match &mut self {
            TransportError::Unavailable { source, .. }
            | TransportError::Rejected { source, .. }
            | TransportError::Other { source, .. } => *source = Some(cause.into()),
            TransportError::Closed => {}
        }
        self
    }
}
