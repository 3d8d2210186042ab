//! The active alerts in Redis: [`RedisAlertSink`] keeps `<prefix>alerts:<machine>`
//! (one JSON array per machine) and `<prefix>fleet_alerts` (fleet-scoped rules) equal to the
//! analytics engine's pending and firing alerts of the scopes it owns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use sysmon_analytics::alerts::ActiveAlert;
use sysmon_analytics::{ActiveSet, AnalyticsRecord, AnalyticsSink};
use sysmon_core::SinkError;

use crate::redis::RedisSink;

pub use sysmon_analytics::FLEET_SCOPE;

/// Writes the active alerts of each scope to Redis (through
/// [`RedisSink::put_active_alerts`]; an empty scope deletes its key). Only
/// scopes whose alerts changed are written, except on the engine's periodic
/// full re-send, which rewrites them all (a restarted Redis gets them back).
pub struct RedisAlertSink {
    redis: RedisSink,
    /// What each scope was last written as (`[]` for none).
    written: Mutex<HashMap<String, String>>,
}

impl RedisAlertSink {
    /// Alerts through `redis` (a clone of the ingester's sink shares its connection).
    pub fn new(redis: RedisSink) -> Self {
        RedisAlertSink {
            redis,
            written: Mutex::new(HashMap::new()),
        }
    }
}

impl RedisAlertSink {
    /// Scopes remembered as holding alerts in Redis.
    pub fn remembered_scopes(&self) -> usize {
        self.written.lock().map(|w| w.len()).unwrap_or(0)
    }
}

/// One alert as stored in Redis: the shared [`ActiveAlert`] shape.
fn alert_json(a: &ActiveAlert) -> serde_json::Value {
    serde_json::to_value(a).unwrap_or(serde_json::Value::Null)
}

/// Every scope of `set` with its alerts as a JSON array (`[]` for none).
pub fn by_scope(set: &ActiveSet) -> BTreeMap<String, serde_json::Value> {
    let mut out: BTreeMap<String, Vec<serde_json::Value>> =
        set.scopes.iter().map(|s| (s.clone(), Vec::new())).collect();
    for a in &set.alerts {
        out.entry(ActiveSet::scope_of(a).to_string())
            .or_default()
            .push(alert_json(a));
    }
    out.into_iter()
        .map(|(k, v)| (k, serde_json::Value::Array(v)))
        .collect()
}

#[async_trait]
impl AnalyticsSink for RedisAlertSink {
    fn name(&self) -> &str {
        "redis"
    }

    async fn record(&self, record: &AnalyticsRecord) -> Result<(), SinkError> {
        let Some(set) = &record.active else {
            return Ok(());
        };
        let memo: HashMap<String, String> =
            self.written.lock().map(|w| w.clone()).unwrap_or_default();
        let mut first_error = None;
        let mut done = Vec::new();
        for (scope, alerts) in by_scope(set) {
            let text = alerts.to_string();
            // An empty scope never written needs no DEL, except on a full re-send.
            let unchanged = match memo.get(&scope) {
                Some(old) => *old == text,
                None => text == "[]",
            };
            if unchanged && !set.full {
                continue;
            }
            match self.redis.put_active_alerts(&scope, &alerts).await {
                Ok(()) => done.push((scope, text)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Ok(mut w) = self.written.lock() {
            for (scope, text) in done {
                // A scope without alerts is remembered by its absence (an
                // absent scope counts as `[]`): the memo holds the machines
                // with alerts, not every machine ever seen.
                if text == "[]" {
                    w.remove(&scope);
                } else {
                    w.insert(scope, text);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
