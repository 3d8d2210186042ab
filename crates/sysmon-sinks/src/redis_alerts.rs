//! The active alerts in Redis: [`RedisAlertSink`] keeps `<prefix>alerts:<scope>`
//! (one JSON array per machine, `fleet` for fleet-scoped rules) equal to the
//! analytics engine's pending and firing set.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::json;
use sysmon_core::analytics::alerts::ActiveAlert;
use sysmon_core::analytics::{AnalyticsRecord, AnalyticsSink};
use sysmon_core::SinkError;

use crate::redis::RedisSink;
use crate::sqlite::state_name;

/// The scope key of fleet-scoped alerts.
pub const FLEET_SCOPE: &str = "fleet";

/// Writes the active alerts of each scope to Redis (through
/// [`RedisSink::put_active_alerts`]) whenever the engine reports the set, and
/// clears the scopes that no longer have any.
pub struct RedisAlertSink {
    redis: RedisSink,
    /// Scopes written non-empty last time (to clear when they empty).
    written: Mutex<HashSet<String>>,
}

impl RedisAlertSink {
    /// Alerts through `redis` (a clone of the ingester's sink shares its connection).
    pub fn new(redis: RedisSink) -> Self {
        RedisAlertSink {
            redis,
            written: Mutex::new(HashSet::new()),
        }
    }
}

/// One alert as stored in Redis.
fn alert_json(a: &ActiveAlert) -> serde_json::Value {
    json!({
        "rule": a.rule,
        "severity": a.severity.to_string(),
        "machine_id": a.machine_id,
        "subject": a.subject,
        "state": state_name(a.state),
        "since": a.since,
        "value": if a.value.is_finite() { Some(a.value) } else { None },
    })
}

/// The active alerts grouped by scope.
pub fn by_scope(active: &[ActiveAlert]) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for a in active {
        let scope = a.machine_id.as_deref().unwrap_or(FLEET_SCOPE).to_string();
        out.entry(scope).or_default().push(alert_json(a));
    }
    out
}

#[async_trait]
impl AnalyticsSink for RedisAlertSink {
    fn name(&self) -> &str {
        "redis"
    }

    async fn record(&self, record: &AnalyticsRecord) -> Result<(), SinkError> {
        let Some(active) = &record.active else {
            return Ok(());
        };
        let scopes = by_scope(active);
        let previous: HashSet<String> = self.written.lock().map(|w| w.clone()).unwrap_or_default();
        let mut first_error = None;
        let mut written = HashSet::new();
        for (scope, alerts) in &scopes {
            match self
                .redis
                .put_active_alerts(scope, &serde_json::Value::Array(alerts.clone()))
                .await
            {
                Ok(()) => {
                    written.insert(scope.clone());
                }
                Err(e) => {
                    // Kept as written so that a later success or clear retries it.
                    written.insert(scope.clone());
                    first_error.get_or_insert(e);
                }
            }
        }
        let gone: Vec<String> = previous.difference(&written).cloned().collect();
        for scope in gone {
            if let Err(e) = self.redis.put_active_alerts(&scope, &json!([])).await {
                // Still to clear next time.
                written.insert(scope);
                first_error.get_or_insert(e);
            }
        }
        if let Ok(mut w) = self.written.lock() {
            *w = written;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
