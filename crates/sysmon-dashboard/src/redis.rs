//! A dashboard in its own process with `--redis`: reads "latest" and the
//! recent window from Redis through the [`QueryLayer`] (SQLite beyond it),
//! downsampled series from SQLite, and takes live updates from the ingester's
//! Redis pub/sub channel (`<prefix>events`, one [`BatchEvent`] per stored
//! batch) instead of polling.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use sysmon_core::backoff::Backoff;
use sysmon_core::config::redact_url_password;
use sysmon_core::{Batch, MachineSummary, Snapshot, SnapshotStore, StoreError};
use sysmon_sinks::query::QueryLayer;
use sysmon_sinks::redis::{BatchEvent, RedisStore};
use sysmon_sinks::sqlite::SqliteSink;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metric::{FleetAgg, Metric};
use crate::source::{Buckets, DashboardSource};

/// Redis (hot) + SQLite (history) behind one [`DashboardSource`].
pub struct RedisSource {
    query: QueryLayer,
    redis: RedisStore,
    sqlite: Arc<SqliteSink>,
}

impl RedisSource {
    /// Reads through `QueryLayer::with_redis(sqlite, redis)`; series from `sqlite`.
    pub fn new(sqlite: Arc<SqliteSink>, redis: RedisStore) -> Self {
        RedisSource {
            query: QueryLayer::with_redis(sqlite.clone(), redis.clone()),
            redis,
            sqlite,
        }
    }

    /// The Redis store (for the live feed).
    pub fn redis(&self) -> &RedisStore {
        &self.redis
    }
}

#[async_trait]
impl SnapshotStore for RedisSource {
    async fn machines(&self) -> Result<Vec<MachineSummary>, StoreError> {
        self.query.machines().await
    }
    async fn latest(&self, machine_id: &str) -> Result<Option<Snapshot>, StoreError> {
        self.query.latest(machine_id).await
    }
    async fn range(
        &self,
        machine_id: Option<&str>,
        since: f64,
        until: f64,
        limit: usize,
    ) -> Result<Vec<Snapshot>, StoreError> {
        self.query.range(machine_id, since, until, limit).await
    }
}

#[async_trait]
impl DashboardSource for RedisSource {
    fn source_name(&self) -> &str {
        "redis+sqlite"
    }

    async fn latest_all(&self) -> Result<Vec<Snapshot>, StoreError> {
        let ids: Vec<String> = self
            .query
            .machines()
            .await?
            .into_iter()
            .map(|m| m.machine_id)
            .collect();
        Ok(self
            .query
            .latest_many(&ids)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    async fn series(
        &self,
        machine_id: &str,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Buckets, StoreError> {
        DashboardSource::series(&*self.sqlite, machine_id, metric, since, until, max_points).await
    }

    async fn fleet(
        &self,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
        agg: FleetAgg,
    ) -> Result<Buckets, StoreError> {
        DashboardSource::fleet(&*self.sqlite, metric, since, until, max_points, agg).await
    }
}

/// Subscribes to `<prefix>events` through `store` and broadcasts, for every
/// [`BatchEvent`], the newest full snapshot of each machine in it (one `MGET`).
/// The subscription uses the store's client, so the URL, the credentials and
/// the TLS settings of its `RedisConfig` apply; `url` only names the server in
/// log lines (with its password redacted). Reconnects with backoff capped at a
/// second ([`Backoff::DEPENDENCY`]), so Redis' return is noticed within about a
/// second; an outage is logged when it starts and ends.
pub async fn redis_feed(
    url: String,
    store: RedisStore,
    tx: broadcast::Sender<Batch>,
    shutdown: CancellationToken,
) {
    let channel = store.keys().events();
    let target = redact_url_password(&url);
    let mut backoff = Backoff::DEPENDENCY;
    let mut down_since: Option<std::time::Instant> = None;
    loop {
        let ps = tokio::select! {
            r = store.subscribe_events() => r,
            _ = shutdown.cancelled() => return,
        };
        match ps {
            Ok(mut ps) => {
                match down_since.take() {
                    Some(t) => {
                        info!(redis = %target, outage = ?t.elapsed(), "live feed: Redis reachable again")
                    }
                    None => info!(redis = %target, %channel, "live feed: subscribed to Redis"),
                }
                backoff.reset();
                let mut messages = ps.on_message();
                loop {
                    let msg = tokio::select! {
                        m = messages.next() => m,
                        _ = shutdown.cancelled() => return,
                    };
                    let Some(msg) = msg else { break };
                    let event = match BatchEvent::parse(msg.get_payload_bytes()) {
                        Ok(e) => e,
                        Err(e) => {
                            debug!(error = %e, "live feed: ignoring a message that is not a batch event");
                            continue;
                        }
                    };
                    let mut ids: Vec<String> =
                        event.snapshots.into_iter().map(|e| e.machine_id).collect();
                    ids.sort();
                    ids.dedup();
                    match store.latest_many(&ids).await {
                        Ok(list) => {
                            let batch: Vec<Snapshot> = list.into_iter().flatten().collect();
                            if !batch.is_empty() {
                                let _ = tx.send(batch.into());
                            }
                        }
                        Err(e) => {
                            debug!(error = %e, "live feed: reading the latest snapshots failed")
                        }
                    }
                }
            }
            Err(e) => {
                if down_since.is_none() {
                    warn!(redis = %target, error = %e, "live feed: cannot subscribe to Redis; retrying");
                }
            }
        }
        if down_since.is_none() {
            down_since = Some(std::time::Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
