//! [`SlowAnswers`]: answers that are expensive at fleet scale (the fleet
//! series over 10,000 machines, the scatter), kept for a few seconds and
//! refreshed in the background while the previous answer is served.
//!
//! Only answers that took at least [`crate::fleet::SYNC_LOAD_LIMIT`] to
//! compute are kept, so a small fleet gets exact answers as before; only
//! requests for a window relative to now (`range=`) are cached by the callers,
//! never `since`/`until`. The map holds at most [`MAX_ENTRIES`] answers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::ApiError;
use crate::fleet::SYNC_LOAD_LIMIT;

/// Most answers kept.
pub const MAX_ENTRIES: usize = 64;

struct Entry {
    at: Instant,
    value: Arc<Value>,
    refreshing: bool,
}

/// Expensive answers by request key (see the module doc).
#[derive(Clone)]
pub struct SlowAnswers {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    max_age: Duration,
}

impl SlowAnswers {
    /// Answers served without recomputing for `max_age`, then refreshed behind.
    pub fn new(max_age: Duration) -> Self {
        SlowAnswers {
            entries: Arc::new(Mutex::new(HashMap::new())),
            max_age,
        }
    }

    /// The answer for `key`: kept, or computed by `compute` (and kept when it
    /// was slow). A stale kept answer is served while one background task
    /// recomputes it.
    pub async fn get<F, Fut>(&self, key: String, compute: F) -> Result<Arc<Value>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, ApiError>> + Send + 'static,
    {
        let stale = {
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            match map.get_mut(&key) {
                Some(e) if e.at.elapsed() <= self.max_age => return Ok(e.value.clone()),
                Some(e) if e.refreshing => return Ok(e.value.clone()),
                Some(e) => {
                    e.refreshing = true;
                    Some(e.value.clone())
                }
                None => None,
            }
        };
        let fut = compute();
        if let Some(old) = stale {
            let me = self.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = fut.await;
                me.store(key, result, started.elapsed());
            });
            return Ok(old);
        }
        let started = Instant::now();
        let value = fut.await?;
        let value = Arc::new(value);
        if started.elapsed() >= SYNC_LOAD_LIMIT {
            self.insert(key, value.clone());
        }
        Ok(value)
    }

    fn store(&self, key: String, result: Result<Value, ApiError>, took: Duration) {
        match result {
            Ok(v) if took >= SYNC_LOAD_LIMIT => self.insert(key, Arc::new(v)),
            Ok(_) => {
                // Cheap again: answer it live from now on.
                let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                map.remove(&key);
            }
            Err(e) => {
                tracing::warn!(key = %key, error = ?e, "background refresh failed; kept the old answer");
                let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(e) = map.get_mut(&key) {
                    e.refreshing = false;
                }
            }
        }
    }

    fn insert(&self, key: String, value: Arc<Value>) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            // Drop the oldest.
            if let Some(k) = map.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| k.clone()) {
                map.remove(&k);
            }
        }
        map.insert(
            key,
            Entry {
                at: Instant::now(),
                value,
                refreshing: false,
            },
        );
    }
}
