//! Starting the ingester's analytics (anomaly detection, alert rules,
//! notifications) beside an [`Ingest`](sysmon_core::Ingest): the same wiring for
//! `sysmon standalone` and `sysmon ingest`.

use std::sync::Arc;

use sysmon_analytics::notify::{AlertNotifier, LogNotifier};
use sysmon_analytics::Config;
use sysmon_analytics::{
    AnalyticsEngine, AnalyticsService, AnalyticsSink, AnalyticsStats, SharedFleet,
    SHARED_FLEET_EVERY,
};
use sysmon_core::ingest::IngestStats;
use sysmon_core::{Batch, CoreError, SnapshotStore};
use sysmon_sinks::redis::RedisSink;
use sysmon_sinks::redis_alerts::RedisAlertSink;
use sysmon_sinks::webhook::WebhookNotifier;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// How long shutdown waits for queued webhook notifications.
const WEBHOOK_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// A running analytics service.
pub struct RunningAnalytics {
    task: JoinHandle<Result<(), CoreError>>,
    stop: CancellationToken,
    webhooks: Option<Arc<WebhookNotifier>>,
    /// Its counters.
    pub stats: Arc<AnalyticsStats>,
}

impl RunningAnalytics {
    /// Analyses what was already stored, then stops. Call it after the
    /// ingester has finished.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.stop.cancel();
        let result = self
            .task
            .await
            .map_err(|e| anyhow::anyhow!("analytics task failed: {e}"))?
            .map_err(|e| anyhow::anyhow!("analytics failed: {e}"));
        if let Some(w) = &self.webhooks {
            // The last notifications get a few seconds to go out.
            if !w.flush(WEBHOOK_FLUSH).await {
                tracing::warn!("some alert notifications were still undelivered at shutdown");
            }
        }
        result
    }
}

/// Subscribes to `events` (the ingester's stored batches: call this before the
/// ingester runs so that no batch is missed) and starts the analytics `[anomaly]`
/// and `[alerts]` describe: scores and alert history to `history`, the active
/// alerts to `redis` when given, every transition to the log and the webhooks.
/// A machine the detector has no state for is first warmed from `store` (the
/// history the ingester writes), e.g. after a restart or a partition move.
/// `ingest` is the ingester's counters: its transport state is the
/// pipeline's (`[alerts.pipeline]`). `shared` is a history several
/// ingesters share (PostgreSQL): fleet-wide rules then run in one of them,
/// on every machine's latest stored values.
pub fn start(
    config: &Config,
    events: &broadcast::Sender<Batch>,
    ingest: Arc<IngestStats>,
    history: Arc<dyn AnalyticsSink>,
    store: Arc<dyn SnapshotStore>,
    shared: Option<Arc<dyn SharedFleet>>,
    redis: Option<RedisSink>,
) -> anyhow::Result<RunningAnalytics> {
    let engine = AnalyticsEngine::from_config(config)?;
    let mut service = AnalyticsService::new(engine);
    service.watch_ingest(ingest);
    service.add_sink(history);
    service.warm_from(store);
    if let Some(shared) = shared {
        service.share_fleet(shared, SHARED_FLEET_EVERY);
    }
    if let Some(redis) = redis {
        service.add_sink(Arc::new(RedisAlertSink::new(redis)));
    }
    service.add_notifier(Arc::new(LogNotifier));
    let webhooks = if config.alerts.webhooks.is_empty() {
        None
    } else {
        let w = Arc::new(
            WebhookNotifier::new(&config.alerts.webhooks)
                .map_err(|e| anyhow::anyhow!("alert webhooks: {e}"))?,
        );
        service.add_notifier(w.clone() as Arc<dyn AlertNotifier>);
        Some(w)
    };
    info!(
        anomaly_detection = config.anomaly.enabled,
        alert_rules = if config.alerts.enabled {
            config.alerts.rules.len()
        } else {
            0
        },
        webhooks = config.alerts.webhooks.len(),
        "analytics running on every stored batch"
    );
    let stats = service.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(service.run(events.subscribe(), stop.clone()));
    Ok(RunningAnalytics {
        task,
        stop,
        webhooks,
        stats,
    })
}
