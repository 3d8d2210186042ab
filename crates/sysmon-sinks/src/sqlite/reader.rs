//! The read side's traits for the SQLite history: [`HistoryReader`] with
//! the sink's server-side downsampling (raw samples for short recent ranges,
//! per-minute rollups beyond) and [`AnalyticsReader`] over its analytics tables.

use std::collections::HashMap;

use async_trait::async_trait;
use sysmon_core::alert::{ActiveAlert, AlertEvent, Anomaly, Episode};
use sysmon_core::read::{
    AnalyticsReader, Buckets, HistoryReader, MachineGroup, SeriesQuery, SeriesTarget,
};
use sysmon_core::{Snapshot, StoreError};

use super::series::{Bucket, FleetBucket, Metric, SeriesSource};
use super::{to_store_error, SqliteSink, NAME};

/// Fleet series over longer ranges than this (seconds) use per-minute rollups.
pub const FLEET_RAW_LIMIT_SECS: f64 = 15.0 * 60.0 + 1.0;

fn buckets(rows: Vec<Bucket>) -> Buckets {
    let mut b = Buckets::default();
    for r in rows {
        b.push(r.ts, r.min, r.max, r.avg, r.count);
    }
    b
}

/// Where a fleet series over `since..until` comes from.
fn fleet_source(since: f64, until: f64) -> SeriesSource {
    if until - since > FLEET_RAW_LIMIT_SECS {
        SeriesSource::Rollups
    } else {
        SeriesSource::Auto
    }
}

fn fleet_buckets(rows: Vec<FleetBucket>) -> Buckets {
    let mut b = Buckets::default();
    for r in rows {
        b.push(r.ts, r.min, r.max, r.avg, u64::from(r.machines));
        b.push_spread(r.p50, r.p95);
    }
    b
}

#[async_trait]
impl HistoryReader for SqliteSink {
    fn source_name(&self) -> &str {
        NAME
    }

    async fn latest_all(&self) -> Result<Vec<Snapshot>, StoreError> {
        SqliteSink::latest_all(self).await.map_err(to_store_error)
    }

    async fn series(&self, q: &SeriesQuery) -> Result<Buckets, StoreError> {
        let points = q.max_points.max(2);
        match &q.target {
            SeriesTarget::Machine(id) => {
                let rows = SqliteSink::series(self, id, q.metric, q.since, q.until, points)
                    .await
                    .map_err(to_store_error)?;
                Ok(buckets(rows))
            }
            SeriesTarget::Fleet(agg) => {
                // Fleet series beyond 15 minutes come from the per-minute rollups (plus
                // the minutes not rolled up yet): a raw scan of 100 machines x 1 h at
                // 1 s is 360,000 rows, 60 x 100 rollup rows give the same shape.
                let source = fleet_source(q.since, q.until);
                let rows = self
                    .fleet_series_from(q.metric, q.since, q.until, points, *agg, source)
                    .await
                    .map_err(to_store_error)?;
                Ok(fleet_buckets(rows))
            }
        }
    }

    async fn group_series(
        &self,
        metric: Metric,
        groups: &[MachineGroup],
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Vec<Buckets>, StoreError> {
        // The same source as the ungrouped fleet series of this window.
        let source = fleet_source(since, until);
        let ids = groups.iter().map(|g| g.machines.clone()).collect();
        let rows = self
            .group_series_from(metric, since, until, max_points.max(2), source, ids)
            .await
            .map_err(to_store_error)?;
        Ok(rows.into_iter().map(fleet_buckets).collect())
    }

    async fn sparklines(
        &self,
        machine_ids: &[String],
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<HashMap<String, Buckets>, StoreError> {
        let rows = SqliteSink::sparklines(
            self,
            machine_ids.to_vec(),
            metric,
            since,
            until,
            max_points.max(2),
        )
        .await
        .map_err(to_store_error)?;
        Ok(rows.into_iter().map(|(id, b)| (id, buckets(b))).collect())
    }
}

#[async_trait]
impl AnalyticsReader for SqliteSink {
    async fn active_alerts(&self) -> Result<Vec<ActiveAlert>, StoreError> {
        SqliteSink::active_alerts(self)
            .await
            .map_err(to_store_error)
    }

    async fn alert_history(&self, since: f64, limit: usize) -> Result<Vec<AlertEvent>, StoreError> {
        SqliteSink::alert_history(self, since, limit)
            .await
            .map_err(to_store_error)
    }

    async fn anomalies(
        &self,
        machine_id: Option<&str>,
        since: f64,
        limit: usize,
    ) -> Result<Vec<Anomaly>, StoreError> {
        SqliteSink::anomalies(self, machine_id, since, limit)
            .await
            .map_err(to_store_error)
    }

    async fn episodes(
        &self,
        machine_id: Option<&str>,
        since: f64,
        limit: usize,
    ) -> Result<Vec<Episode>, StoreError> {
        SqliteSink::episodes(self, machine_id, since, limit)
            .await
            .map_err(to_store_error)
    }
}
