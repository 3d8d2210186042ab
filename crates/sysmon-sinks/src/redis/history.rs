//! [`RedisHistory`]: Redis (hot) in front of a durable history (cold: SQLite
//! or PostgreSQL) behind one [`HistoryReader`]. "Latest" and the recent window
//! come from Redis through the [`QueryLayer`] (the history beyond it or when
//! Redis fails); downsampled series, sparklines and per-core CPU from the
//! history, which keeps the rollups.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sysmon_core::read::{Buckets, CoreSeries, HistoryReader, MachineGroup, Metric, SeriesQuery};
use sysmon_core::{MachineSummary, Snapshot, SnapshotStore, StoreError};

use super::RedisStore;
use crate::query::QueryLayer;

/// Redis (hot) + a history (cold) behind one [`HistoryReader`].
pub struct RedisHistory {
    query: QueryLayer,
    cold: Arc<dyn HistoryReader>,
    name: String,
}

impl RedisHistory {
    /// Reads through `QueryLayer::with_redis(cold, redis)`; series from `cold`.
    pub fn new<C: HistoryReader + 'static>(cold: Arc<C>, redis: RedisStore) -> Self {
        let name = format!("redis+{}", cold.source_name());
        RedisHistory {
            query: QueryLayer::with_redis(cold.clone(), redis),
            cold,
            name,
        }
    }
}

#[async_trait]
impl SnapshotStore for RedisHistory {
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
impl HistoryReader for RedisHistory {
    fn source_name(&self) -> &str {
        &self.name
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

    async fn series(&self, q: &SeriesQuery) -> Result<Buckets, StoreError> {
        self.cold.series(q).await
    }

    async fn sparklines(
        &self,
        machine_ids: &[String],
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<HashMap<String, Buckets>, StoreError> {
        self.cold
            .sparklines(machine_ids, metric, since, until, max_points)
            .await
    }

    async fn group_series(
        &self,
        metric: Metric,
        groups: &[MachineGroup],
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Vec<Buckets>, StoreError> {
        self.cold
            .group_series(metric, groups, since, until, max_points)
            .await
    }

    async fn core_series(
        &self,
        machine_id: &str,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<CoreSeries, StoreError> {
        self.cold
            .core_series(machine_id, since, until, max_points)
            .await
    }
}
