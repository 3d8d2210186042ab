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

/// Consumes messages on the ingester's side with at-least-once semantics.
#[async_trait]
pub trait TransportReceiver: Send + Sync {
    /// Waits up to `wait` for up to `max` messages.
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Received, TransportError>;

    /// Marks every message received so far as processed (Kafka: commits the
    /// offsets). The ingester calls it only after the sinks stored the batch.
    async fn commit(&mut self) -> Result<(), TransportError>;

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

/// A transport failed.
#[derive(Debug, Error)]
pub enum TransportError {
    /// The other side is unreachable; retrying later may succeed.
    #[error("transport unavailable: {0}")]
    Unavailable(String),
    /// The transport was closed.
    #[error("transport closed")]
    Closed,
    /// Any other failure.
    #[error("transport error: {0}")]
    Other(String),
}
