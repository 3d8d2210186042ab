//! [`DashboardSource`] for the SQLite history: series and fleet series come
//! from [`SqliteSink`]'s server-side downsampling (raw samples for short
//! recent ranges, per-minute rollups beyond), everything else from its
//! [`SnapshotStore`] side.

use async_trait::async_trait;
use sysmon_core::{Snapshot, StoreError};
use sysmon_sinks::sqlite::{self, SqliteSink};

use crate::metric::{FleetAgg, Metric};
use crate::source::{Buckets, DashboardSource};

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        store: "sqlite".into(),
        message: e.to_string(),
    }
}

/// Fleet series over longer ranges than this (seconds) use per-minute rollups.
pub const FLEET_RAW_LIMIT_SECS: f64 = 15.0 * 60.0 + 1.0;

#[async_trait]
impl DashboardSource for SqliteSink {
    fn source_name(&self) -> &str {
        "sqlite"
    }

    async fn latest_all(&self) -> Result<Vec<Snapshot>, StoreError> {
        SqliteSink::latest_all(self).await.map_err(store_err)
    }

    async fn series(
        &self,
        machine_id: &str,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
    ) -> Result<Buckets, StoreError> {
        let rows = SqliteSink::series(self, machine_id, metric, since, until, max_points.max(2))
            .await
            .map_err(store_err)?;
        let mut b = Buckets::default();
        for r in rows {
            b.push(r.ts, r.min, r.max, r.avg, r.count);
        }
        Ok(b)
    }

    async fn fleet(
        &self,
        metric: Metric,
        since: f64,
        until: f64,
        max_points: usize,
        agg: FleetAgg,
    ) -> Result<Buckets, StoreError> {
        // Fleet series beyond 15 minutes come from the per-minute rollups (plus
        // the minutes not rolled up yet): a raw scan of 100 machines x 1 h at
        // 1 s is 360,000 rows, 60 x 100 rollup rows give the same shape.
        let source = if until - since > FLEET_RAW_LIMIT_SECS {
            sqlite::SeriesSource::Rollups
        } else {
            sqlite::SeriesSource::Auto
        };
        let rows = self
            .fleet_series_from(metric, since, until, max_points.max(2), agg, source)
            .await
            .map_err(store_err)?;
        let mut b = Buckets::default();
        for r in rows {
            b.push(r.ts, r.min, r.max, r.avg, u64::from(r.machines));
        }
        Ok(b)
    }
}
