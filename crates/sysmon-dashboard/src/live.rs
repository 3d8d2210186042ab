//! Live push: `GET /api/events` streams Server-Sent Events fed by a broadcast
//! of stored batches. The broadcast is fed by the in-process ingester
//! (`sysmon standalone`), by a Redis pub/sub subscription (a dashboard in its
//! own process with `--redis`), or by [`poll_store`], which tails the store.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use serde_json::json;
use sysmon_core::read::{BatchStream, HistoryReader};
use sysmon_core::{Batch, Snapshot};
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::api::{MachineNow, ProcessesView};
use crate::AppState;

/// Counts a connected client for as long as its stream lives.
struct ClientGuard(Arc<AppState>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.live_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Most machine ids in `/api/events?machines=`.
pub const MAX_WATCHED: usize = 1000;

/// The events for one stored batch: `batch` (every machine's current values,
/// or only those of `only` when given) and, when the client follows one
/// machine, `snapshot` (its newest snapshot, processes included).
fn batch_events(
    batch: &[Snapshot],
    follow: Option<&str>,
    only: Option<&HashSet<String>>,
) -> Vec<Event> {
    // The newest snapshot per machine in this batch.
    let mut newest: HashMap<&str, &Snapshot> = HashMap::new();
    for s in batch {
        if only.is_some_and(|o| !o.contains(&s.machine_id)) && follow != Some(&s.machine_id) {
            continue;
        }
        let e = newest.entry(s.machine_id.as_str()).or_insert(s);
        if s.timestamp > e.timestamp {
            *e = s;
        }
    }
    let mut machines: Vec<MachineNow> = newest.values().map(|s| MachineNow::from(*s)).collect();
    machines.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
    let mut out = Vec::with_capacity(2);
    if newest.is_empty() {
        return out;
    }
    if let Ok(e) = Event::default()
        .event("batch")
        .json_data(json!({ "machines": machines }))
    {
        out.push(e);
    }
    if let Some(s) = follow.and_then(|id| newest.get(id)) {
        let body = json!({
            "snapshot": s,
            "processes": ProcessesView::from(*s),
        });
        if let Ok(e) = Event::default().event("snapshot").json_data(body) {
            out.push(e);
        }
    }
    out
}

/// `GET /api/events[?machine=ID][&machines=A,B,…]`: Server-Sent Events (see
/// `docs/api.md`); `machines` limits `batch` events to those machines (the
/// page a browser shows), at most [`MAX_WATCHED`].
pub(crate) async fn events(
    State(st): State<Arc<AppState>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut q = q.map(|Query(m)| m).unwrap_or_default();
    let follow = q.remove("machine");
    let only: Option<HashSet<String>> = q.remove("machines").map(|list| {
        list.split(',')
            .filter(|s| !s.is_empty())
            .take(MAX_WATCHED)
            .map(str::to_string)
            .collect()
    });
    st.live_clients.fetch_add(1, Ordering::Relaxed);
    let guard = ClientGuard(st.clone());
    let rx = st.live.subscribe();
    let hello = Event::default()
        .event("hello")
        .retry(Duration::from_secs(2))
        .json_data(json!({ "live": st.live_kind }))
        .ok();
    let shutdown = st.shutdown.clone();
    let updates = BroadcastStream::new(rx).flat_map(move |item| {
        let _keep = &guard;
        let evs = match item {
            Ok(batch) => batch_events(&batch, follow.as_deref(), only.as_ref()),
            Err(BroadcastStreamRecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .json_data(json!({ "missed_batches": n }))
                .map(|e| vec![e])
                .unwrap_or_default(),
        };
        stream::iter(evs.into_iter().map(Ok))
    });
    let stream = stream::iter(hello.map(Ok))
        .chain(updates)
        .take_until(async move { shutdown.cancelled().await });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Forwards every batch of a [`LiveFeed`](sysmon_core::LiveFeed)'s stream
/// to the browsers' broadcast, until the stream ends (at shutdown).
pub async fn forward(mut feed: BatchStream, tx: broadcast::Sender<Batch>) {
    while let Some(batch) = feed.next().await {
        // No browser connected is not an error: the batch is simply not shown.
        let _ = tx.send(batch);
    }
}

/// Tails `source` every `every` and broadcasts what is new, for a dashboard
/// that has neither an in-process ingester nor Redis. Snapshots arriving more
/// than `every + 5 s` late (by their own timestamp) reach the charts on the
/// next reload, not live.
pub async fn poll_store(
    source: Arc<dyn HistoryReader>,
    tx: broadcast::Sender<Batch>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut seen: HashMap<String, f64> = HashMap::new();
    let lookback = every.as_secs_f64() + 5.0;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        if tx.receiver_count() == 0 {
            continue;
        }
        let since = crate::now_epoch_secs() - lookback;
        match source.range(None, since, f64::MAX, 50_000).await {
            Ok(rows) => {
                if failing {
                    failing = false;
                    debug!("live poll: store answers again");
                }
                let fresh: Vec<Snapshot> = rows
                    .into_iter()
                    .filter(|s| seen.get(&s.machine_id).is_none_or(|t| s.timestamp > *t))
                    .collect();
                for s in &fresh {
                    seen.insert(s.machine_id.clone(), s.timestamp);
                }
                if !fresh.is_empty() {
                    let _ = tx.send(fresh.into());
                }
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "live poll of the store failed; retrying");
                    failing = true;
                }
            }
        }
    }
}
