//! The read side: [`SnapshotStore`] answers "which machines", "latest" and
//! "what happened between two times" for `sysmon query` and the dashboard.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::snapshot::Snapshot;

/// One machine as the store knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineSummary {
    /// The machine's id.
    pub machine_id: String,
    /// Its last reported host name.
    pub hostname: Option<String>,
    /// The timestamp of its newest snapshot (seconds since the epoch).
    pub last_seen: f64,
}

/// Read access to stored snapshots.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Every machine with at least one stored snapshot, by id.
    async fn machines(&self) -> Result<Vec<MachineSummary>, StoreError>;

    /// The newest snapshot of `machine_id`, if any.
    async fn latest(&self, machine_id: &str) -> Result<Option<Snapshot>, StoreError>;

    /// Snapshots with `since <= timestamp < until`, oldest first, of one machine
    /// or of all machines (`None`), at most `limit` of them.
    async fn range(
        &self,
        machine_id: Option<&str>,
        since: f64,
        until: f64,
        limit: usize,
    ) -> Result<Vec<Snapshot>, StoreError>;
}

/// The underlying error of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A read failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend could not answer.
    #[error("{store} query failed: {message}")]
    Backend {
        /// The store's name.
        store: String,
        /// What happened.
        message: String,
        /// The backend's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl StoreError {
    /// `store` failed with `error`, which is kept as the source.
    pub fn backend(
        store: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Backend {
            store: store.into(),
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }

    /// `store` failed for a reason that is not an error value of its own.
    pub fn message(store: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Backend {
            store: store.into(),
            message: message.into(),
            source: None,
        }
    }
}
