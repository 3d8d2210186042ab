//! The JSON API handlers (documented in `docs/api.md`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use sysmon_core::{MachineSummary, ProcessInfo, Snapshot};

use crate::error::ApiError;
use crate::metric::{truncate, FleetAgg, Metric, Range, Usage};
use crate::{now_epoch_secs, AppState};
use sysmon_core::read::{Buckets, SeriesQuery};

/// Default and largest number of buckets per series.
pub const DEFAULT_POINTS: usize = 1000;
const MAX_POINTS: usize = 2000;
/// Longest custom `since..until` span: 31 days.
const MAX_SPAN_SECS: f64 = 31.0 * 86_400.0;
/// Longest accepted machine id in a path.
const MAX_ID_LEN: usize = 256;

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;
type IdPath = Result<Path<String>, PathRejection>;

fn params(q: Params) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|_| ApiError::bad_request("the query string could not be parsed"))
}

fn machine_id(p: IdPath) -> Result<String, ApiError> {
    let Path(id) = p.map_err(|_| ApiError::bad_request("bad machine id in the path"))?;
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(ApiError::bad_request(format!(
            "machine id must be 1 to {MAX_ID_LEN} bytes"
        )));
    }
    Ok(id)
}

/// A machine's state by how long ago it was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Seen within the online window (2 minutes, as in the legacy system).
    Online,
    /// Not seen for longer than that, but within the offline threshold (10 minutes).
    Stale,
    /// Not seen for longer than the offline threshold.
    Offline,
}

impl Status {
    /// The status of a machine last seen `age` seconds ago.
    pub fn of(age: f64, online_secs: f64, offline_secs: f64) -> Status {
        if age <= online_secs {
            Status::Online
        } else if age <= offline_secs {
            Status::Stale
        } else {
            Status::Offline
        }
    }
}

/// One machine in `/api/machines`.
#[derive(Debug, Clone, Serialize)]
pub struct MachineView {
    /// The machine's id.
    pub machine_id: String,
    /// Its reported host name.
    pub hostname: Option<String>,
    /// Its newest snapshot's timestamp (seconds since the epoch).
    pub last_seen: f64,
    /// Seconds since then (negative when the sender's clock is ahead).
    pub age_secs: f64,
    /// online / stale / offline.
    pub status: Status,
}

fn machine_view(m: MachineSummary, now: f64, st: &AppState) -> MachineView {
    let age = now - m.last_seen;
    MachineView {
        status: Status::of(age, st.options.online_secs, st.options.offline_secs),
        machine_id: m.machine_id,
        hostname: m.hostname,
        last_seen: m.last_seen,
        age_secs: (age * 10.0).round() / 10.0,
    }
}

/// A machine's current values, as the overview and the live feed show them.
#[derive(Debug, Clone, Serialize)]
pub struct MachineNow {
    /// The machine's id.
    pub machine_id: String,
    /// Its reported host name.
    pub hostname: Option<String>,
    /// The snapshot's timestamp.
    pub timestamp: f64,
    /// CPU %.
    pub cpu: f64,
    /// Memory %.
    pub memory: f64,
    /// Swap used, bytes.
    pub swap: Option<f64>,
    /// Swap configured, bytes.
    pub swap_total: Option<f64>,
    /// Memory used, bytes.
    pub memory_used: Option<f64>,
    /// Memory installed, bytes.
    pub memory_total: Option<f64>,
    /// Disk read, bytes/s.
    pub disk_read: Option<f64>,
    /// Disk write, bytes/s.
    pub disk_write: Option<f64>,
    /// Network sent, bytes/s.
    pub net_sent: Option<f64>,
    /// Network received, bytes/s.
    pub net_recv: Option<f64>,
    /// 1-minute load.
    pub load1: Option<f64>,
    /// Fullest filesystem, %.
    pub fs_used: Option<f64>,
    /// Logical cores reported.
    pub cores: usize,
}

impl From<&Snapshot> for MachineNow {
    fn from(s: &Snapshot) -> Self {
        MachineNow {
            machine_id: s.machine_id.clone(),
            hostname: s.hostname.clone(),
            timestamp: s.timestamp,
            cpu: s.cpu_usage,
            memory: s.memory_usage,
            swap: Metric::Swap.value(s),
            swap_total: s.memory.map(|m| m.swap_total_bytes as f64),
            memory_used: s.memory.map(|m| m.used_bytes as f64),
            memory_total: s.memory.map(|m| m.total_bytes as f64),
            disk_read: Metric::DiskRead.value(s),
            disk_write: Metric::DiskWrite.value(s),
            net_sent: Metric::NetSent.value(s),
            net_recv: Metric::NetRecv.value(s),
            load1: Metric::Load1.value(s),
            fs_used: s.fullest_filesystem_percent(),
            cores: s.cpu_per_core.len(),
        }
    }
}

/// `GET /healthz`: always open; checks that the store answers.
pub(crate) async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    let probe =
        tokio::time::timeout(Duration::from_secs(2), st.source.latest("\u{0}healthz")).await;
    let (code, status) = match probe {
        Ok(Ok(_)) => (StatusCode::OK, "ok"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: store failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_timeout"),
    };
    (
        code,
        Json(json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "live": st.live_kind,
        })),
    )
        .into_response()
}

/// `GET /api/machines`.
pub(crate) async fn machines(State(st): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let now = now_epoch_secs();
    let list: Vec<MachineView> = st
        .source
        .machines()
        .await?
        .into_iter()
        .map(|m| machine_view(m, now, &st))
        .collect();
    Ok(Json(json!({
        "now": now,
        "online_secs": st.options.online_secs,
        "offline_secs": st.options.offline_secs,
        "machines": list,
    }))
    .into_response())
}

/// `GET /api/overview?range=15m&spark=cpu`: every machine's status and current
/// values with a small trend, plus the fleet's average and maximum now.
pub(crate) async fn overview(
    State(st): State<Arc<AppState>>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let range = parse_range(&p)?;
    let spark = match p.get("spark") {
        Some(m) => parse_metric_str(m)?,
        None => Metric::Cpu,
    };
    let points = parse_points(&p, 60)?;
    let now = now_epoch_secs();
    let latest = st.source.latest_all().await?;
    // Every machine's sparkline in one read.
    let ids: Vec<String> = latest.iter().map(|s| s.machine_id.clone()).collect();
    let mut sparks = st
        .source
        .sparklines(&ids, spark, now - range.secs(), now + 1.0, points)
        .await?;
    let mut rows = Vec::with_capacity(latest.len());
    let (mut n, mut cpu_sum, mut cpu_max, mut mem_sum, mut mem_max) =
        (0u32, 0.0, 0.0f64, 0.0, 0.0f64);
    for s in &latest {
        let age = now - s.timestamp;
        let status = Status::of(age, st.options.online_secs, st.options.offline_secs);
        if status == Status::Online {
            n += 1;
            cpu_sum += s.cpu_usage;
            cpu_max = cpu_max.max(s.cpu_usage);
            mem_sum += s.memory_usage;
            mem_max = mem_max.max(s.memory_usage);
        }
        let trend = sparks.remove(&s.machine_id).unwrap_or_default();
        rows.push(json!({
            "status": status,
            "age_secs": (age * 10.0).round() / 10.0,
            "now": MachineNow::from(s),
            "spark": { "ts": trend.ts, "avg": trend.avg },
        }));
    }
    let fleet = if n > 0 {
        json!({
            "online": n,
            "cpu_avg": cpu_sum / f64::from(n), "cpu_max": cpu_max,
            "memory_avg": mem_sum / f64::from(n), "memory_max": mem_max,
        })
    } else {
        json!({ "online": 0 })
    };
    Ok(Json(json!({
        "now": now,
        "range": range,
        "spark_metric": spark,
        "machines": rows,
        "fleet": fleet,
    }))
    .into_response())
}

async fn latest_or_404(st: &AppState, id: &str) -> Result<Snapshot, ApiError> {
    st.source
        .latest(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no machine with id {:?}", truncate(id))))
}

/// `GET /api/machines/{id}/latest`: the newest snapshot in the wire format.
pub(crate) async fn latest(
    State(st): State<Arc<AppState>>,
    id: IdPath,
) -> Result<Response, ApiError> {
    let id = machine_id(id)?;
    let s = latest_or_404(&st, &id).await?;
    Ok(Json(s).into_response())
}

/// `GET /api/machines/{id}/processes`.
pub(crate) async fn processes(
    State(st): State<Arc<AppState>>,
    id: IdPath,
) -> Result<Response, ApiError> {
    let id = machine_id(id)?;
    let s = latest_or_404(&st, &id).await?;
    Ok(Json(ProcessesView::from(&s)).into_response())
}

/// The top processes of one snapshot.
#[derive(Debug, Serialize)]
pub struct ProcessesView<'a> {
    /// The machine.
    pub machine_id: &'a str,
    /// The snapshot's timestamp.
    pub timestamp: f64,
    /// Top processes by CPU, highest first.
    pub top_cpu: &'a [ProcessInfo],
    /// Top processes by memory, highest first.
    pub top_mem: &'a [ProcessInfo],
}

impl<'a> From<&'a Snapshot> for ProcessesView<'a> {
    fn from(s: &'a Snapshot) -> Self {
        ProcessesView {
            machine_id: &s.machine_id,
            timestamp: s.timestamp,
            top_cpu: &s.top_cpu_processes,
            top_mem: &s.top_mem_processes,
        }
    }
}

/// Any spelling of a charted metric (`cpu`, `cpu_usage`, `mem`, ...; see
/// `docs/metrics.md`); the error lists the charted metrics' short names.
fn parse_metric_str(s: &str) -> Result<Metric, ApiError> {
    let m = s
        .parse::<Metric>()
        .map_err(|e| ApiError::not_allowed(e.to_string(), Metric::names()))?;
    if !m.usable_in(Usage::Chart) {
        return Err(ApiError::not_allowed(
            format!(
                "metric {} is not charted; allowed: {}",
                m.name(),
                Metric::names().join(", ")
            ),
            Metric::names(),
        ));
    }
    Ok(m)
}

fn parse_metric(p: &HashMap<String, String>) -> Result<Metric, ApiError> {
    match p.get("metric") {
        Some(m) => parse_metric_str(m),
        None => Err(ApiError::not_allowed(
            format!(
                "`metric` is required; allowed: {}",
                Metric::names().join(", ")
            ),
            Metric::names(),
        )),
    }
}

fn parse_range(p: &HashMap<String, String>) -> Result<Range, ApiError> {
    match p.get("range") {
        Some(r) => Range::parse(r).map_err(|m| ApiError::not_allowed(m, Range::names())),
        None => Ok(Range::H1),
    }
}

fn parse_points(p: &HashMap<String, String>, default: usize) -> Result<usize, ApiError> {
    match p.get("points") {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (2..=MAX_POINTS).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "`points` must be a whole number from 2 to {MAX_POINTS}"
            ))),
        },
    }
}

/// `(since, until)` from `since`/`until` (epoch seconds, for zooming) or `range`.
fn parse_window(p: &HashMap<String, String>) -> Result<(f64, f64, Option<Range>), ApiError> {
    let num = |k: &str| -> Result<Option<f64>, ApiError> {
        match p.get(k) {
            None => Ok(None),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("`{k}` must be seconds since the epoch"))
                }),
        }
    };
    let now = now_epoch_secs();
    match (num("since")?, num("until")?) {
        (None, None) => {
            let r = parse_range(p)?;
            Ok((now - r.secs(), now + 1.0, Some(r)))
        }
        (Some(since), until) => {
            let until = until.unwrap_or(now + 1.0);
            if until <= since || until - since > MAX_SPAN_SECS {
                return Err(ApiError::bad_request(
                    "`since` must be before `until`, at most 31 days apart",
                ));
            }
            Ok((since, until, None))
        }
        (None, Some(_)) => Err(ApiError::bad_request("`until` needs `since`")),
    }
}

#[derive(Serialize)]
struct SeriesView<'a> {
    machine_id: Option<&'a str>,
    metric: Metric,
    unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    agg: Option<FleetAgg>,
    range: Option<Range>,
    since: f64,
    until: f64,
    #[serde(flatten)]
    buckets: Buckets,
}

/// `GET /api/machines/{id}/series?metric=…&range=…`.
pub(crate) async fn series(
    State(st): State<Arc<AppState>>,
    id: IdPath,
    q: Params,
) -> Result<Response, ApiError> {
    let id = machine_id(id)?;
    let p = params(q)?;
    let metric = parse_metric(&p)?;
    let (since, until, range) = parse_window(&p)?;
    let points = parse_points(&p, DEFAULT_POINTS)?;
    let buckets = st
        .source
        .series(&SeriesQuery::machine(
            id.clone(),
            metric,
            since,
            until,
            points,
        ))
        .await?;
    if buckets.is_empty() {
        latest_or_404(&st, &id).await?;
    }
    Ok(Json(SeriesView {
        machine_id: Some(&id),
        metric,
        unit: metric.unit(),
        agg: None,
        range,
        since,
        until,
        buckets,
    })
    .into_response())
}

/// `GET /api/fleet?metric=…&range=…&agg=avg|max`.
pub(crate) async fn fleet(
    State(st): State<Arc<AppState>>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let metric = parse_metric(&p)?;
    let (since, until, range) = parse_window(&p)?;
    let points = parse_points(&p, DEFAULT_POINTS)?;
    let agg = match p.get("agg") {
        Some(a) => a
            .parse::<FleetAgg>()
            .map_err(|e| ApiError::not_allowed(e.to_string(), vec!["avg", "max"]))?,
        None => FleetAgg::Avg,
    };
    let buckets = st
        .source
        .series(&SeriesQuery::fleet(metric, agg, since, until, points))
        .await?;
    let value = match agg {
        FleetAgg::Avg => buckets.avg.clone(),
        FleetAgg::Max => buckets.max.clone(),
    };
    let mut body = serde_json::to_value(SeriesView {
        machine_id: None,
        metric,
        unit: metric.unit(),
        agg: Some(agg),
        range,
        since,
        until,
        buckets,
    })
    .map_err(|_| ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "serialization failed"))?;
    body["value"] = json!(value);
    Ok(Json(body).into_response())
}

/// `GET /api/machines/{id}/cores?range=…`: per-core CPU, one sample per bucket.
pub(crate) async fn cores(
    State(st): State<Arc<AppState>>,
    id: IdPath,
    q: Params,
) -> Result<Response, ApiError> {
    let id = machine_id(id)?;
    let p = params(q)?;
    let (since, until, range) = parse_window(&p)?;
    let points = parse_points(&p, 300)?;
    let cores = st.source.core_series(&id, since, until, points).await?;
    if cores.ts.is_empty() {
        latest_or_404(&st, &id).await?;
    }
    Ok(Json(json!({
        "machine_id": id, "range": range, "since": since, "until": until,
        "ts": cores.ts, "cores": cores.cores,
    }))
    .into_response())
}

/// `GET /api/scatter?range=15m`: CPU vs memory samples of every machine
/// (bucket averages), anomalies marked.
pub(crate) async fn scatter(
    State(st): State<Arc<AppState>>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let (since, until, range) = parse_window(&p)?;
    let machines = st.source.machines().await?;
    let per = (2000 / machines.len().max(1)).clamp(5, 120);
    let ids: Vec<String> = machines.iter().map(|m| m.machine_id.clone()).collect();
    // Two reads for the whole fleet: every machine's CPU, then its memory.
    let cpus = st
        .source
        .sparklines(&ids, Metric::Cpu, since, until, per)
        .await?;
    let mems = st
        .source
        .sparklines(&ids, Metric::Memory, since, until, per)
        .await?;
    let mut points = Vec::new();
    for m in &machines {
        let (Some(cpu), Some(mem)) = (cpus.get(&m.machine_id), mems.get(&m.machine_id)) else {
            continue;
        };
        let mut j = 0;
        for (i, t) in cpu.ts.iter().enumerate() {
            while j < mem.ts.len() && mem.ts[j] < *t {
                j += 1;
            }
            if j < mem.ts.len() && mem.ts[j] == *t {
                points.push(json!({
                    "machine_id": m.machine_id, "ts": t,
                    "cpu": cpu.avg[i], "memory": mem.avg[j], "anomaly": false,
                }));
            }
        }
    }
    let anomalies = st.analytics.anomalies(None, since).await?;
    for a in &anomalies {
        if let (Some(c), Some(mm)) = (a.cpu, a.memory) {
            points.push(json!({
                "machine_id": a.machine_id, "ts": a.timestamp,
                "cpu": c, "memory": mm, "anomaly": true, "score": a.score,
            }));
        }
    }
    Ok(Json(json!({
        "range": range, "since": since, "until": until,
        "anomalies_available": st.analytics.available(),
        "points": points,
    }))
    .into_response())
}

/// `GET /api/alerts`.
pub(crate) async fn alerts(State(st): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let alerts = st.analytics.alerts().await?;
    Ok(Json(json!({ "available": st.analytics.available(), "alerts": alerts })).into_response())
}

/// `GET /api/anomalies?range=24h[&machine=ID]`.
pub(crate) async fn anomalies(
    State(st): State<Arc<AppState>>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let (since, _, range) = parse_window(&p)?;
    let machine = p.get("machine").map(String::as_str);
    let list = st.analytics.anomalies(machine, since).await?;
    Ok(Json(json!({
        "available": st.analytics.available(), "range": range, "since": since,
        "anomalies": list,
    }))
    .into_response())
}

/// `GET /api/machines/{id}/forecast`.
pub(crate) async fn forecast(
    State(st): State<Arc<AppState>>,
    id: IdPath,
) -> Result<Response, ApiError> {
    let id = machine_id(id)?;
    latest_or_404(&st, &id).await?;
    let forecast = st.analytics.forecast(&id).await?;
    Ok(Json(json!({
        "machine_id": id, "available": st.analytics.available(),
        "horizon_secs": 300, "forecasts": forecast.metrics,
        "filesystems": forecast.filesystems,
    }))
    .into_response())
}

/// `GET /metrics`: Prometheus text exposition.
pub(crate) async fn metrics(State(st): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let latest = st.source.latest_all().await?;
    let mut text = crate::prometheus::render(
        &latest,
        now_epoch_secs(),
        st.options.online_secs,
        st.ingest_stats.as_deref(),
        st.live_clients.load(Ordering::Relaxed),
    );
    if let Some(lag) = st.consumer_lag.as_ref().and_then(|f| f()) {
        text.push_str("# HELP sysmon_ingest_consumer_lag Messages behind the end of the topic, summed over partitions.\n# TYPE sysmon_ingest_consumer_lag gauge\n");
        text.push_str(&format!("sysmon_ingest_consumer_lag {lag}\n"));
    }
    if let Some(a) = &st.analytics_stats {
        text.push_str(&crate::prometheus::render_analytics(a));
    }
    if let Some(extra) = &st.extra_metrics {
        text.push_str(&extra());
    }
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}

/// Fallback for unknown paths: 404 JSON.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see docs/api.md")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_thresholds() {
        assert_eq!(Status::of(-5.0, 120.0, 600.0), Status::Online);
        assert_eq!(Status::of(120.0, 120.0, 600.0), Status::Online);
        assert_eq!(Status::of(121.0, 120.0, 600.0), Status::Stale);
        assert_eq!(Status::of(601.0, 120.0, 600.0), Status::Offline);
    }

    #[test]
    fn every_vocabulary_spelling_names_the_same_metric_in_the_api() {
        for m in Metric::ALL {
            for sp in m.spellings() {
                let got = parse_metric_str(sp);
                if m.usable_in(Usage::Chart) {
                    assert_eq!(got.ok(), Some(m), "{sp}");
                    let mut p = HashMap::new();
                    p.insert("metric".to_string(), sp.to_ascii_uppercase());
                    assert_eq!(parse_metric(&p).ok(), Some(m), "{sp}");
                } else {
                    assert!(got.is_err(), "{sp} is not charted");
                }
            }
        }
        // The wire field names, as a snapshot shows them.
        assert_eq!(parse_metric_str("cpu_usage").ok(), Some(Metric::Cpu));
        assert_eq!(parse_metric_str("memory_usage").ok(), Some(Metric::Memory));
        assert_eq!(parse_metric_str("swap_used_bytes").ok(), Some(Metric::Swap));
        assert!(parse_metric_str("cpux").is_err());
    }
}
