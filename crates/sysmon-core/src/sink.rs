//! The [`Sink`] trait: where ingested snapshots are stored.

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

use crate::snapshot::Snapshot;

/// A batch of validated snapshots, shared cheaply between sinks.
pub type Batch = Arc<[Snapshot]>;

/// A storage backend (SQLite, Redis, ...).
///
/// `write` must be durable when it returns `Ok` and idempotent: writing the same
/// batch twice (a replay after a crash) stores each sample once. The ingester
/// commits transport offsets only after every required sink returned `Ok`.
#[async_trait]
pub trait Sink: Send + Sync {
    /// A short name for logs and metrics, e.g. `sqlite`.
    fn name(&self) -> &str;

    /// Stores a batch durably and idempotently.
    async fn write(&self, batch: Batch) -> Result<(), SinkError>;

    /// Periodic housekeeping: rollups, retention. Called by the ingester.
    async fn maintain(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The backend's own error behind a [`SinkError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A sink failed.
#[derive(Debug, Error)]
pub enum SinkError {
    /// The backend is unreachable or refused the write; retrying may succeed.
    #[error("{sink} unavailable: {message}")]
    Unavailable {
        /// The sink's name.
        sink: String,
        /// What happened, for logs (the backend's error text included).
        message: String,
        /// The backend's error, when there is one (to inspect, e.g. by downcasting).
        #[source]
        source: Option<BoxError>,
    },
    /// The backend failed in a way retrying will not fix.
    #[error("{sink} failed: {message}")]
    Failed {
        /// The sink's name.
        sink: String,
        /// What happened, for logs (the backend's error text included).
        message: String,
        /// The backend's error, when there is one (to inspect, e.g. by downcasting).
        #[source]
        source: Option<BoxError>,
    },
}
