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
use sysmon_core::{ProcessInfo, Snapshot};

use crate::error::ApiError;
use crate::fleet::{spread_by, MachineQuery, Page, Row};
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
    /// The agent's labels (`role = "db"`, ...).
    pub labels: std::collections::BTreeMap<String, String>,
    /// CPU pressure stall, `some` line, 10-second average, percent
    /// (`pressure_cpu_some_avg10`); none where the kernel has no PSI.
    pub pressure_cpu: Option<f64>,
    /// The busiest of the top cgroups by CPU; none where the agent sends no
    /// cgroups.
    pub busiest_container: Option<BusiestContainer>,
}

/// The busiest top cgroup of a machine (`container_cpu_percent`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusiestContainer {
    /// Its readable name (service, container's short id, pod uid).
    pub name: String,
    /// What it holds (`systemd_service`, `docker`, `kubernetes_pod`, ...).
    pub kind: sysmon_core::CgroupKind,
    /// CPU over the last interval, percent of one core.
    pub cpu_percent: f64,
}

impl BusiestContainer {
    /// The busiest group of `s` ([`Snapshot::busiest_cgroup`]).
    pub fn of(s: &Snapshot) -> Option<BusiestContainer> {
        s.busiest_cgroup().map(|g| BusiestContainer {
            name: g.name.clone(),
            kind: g.kind,
            cpu_percent: g.cpu_percent,
        })
    }
}

fn machine_view(r: &Row, now: f64, st: &AppState) -> MachineView {
    let age = now - r.snap.timestamp;
    MachineView {
        pressure_cpu: r.value(Metric::PressureCpuSome),
        busiest_container: BusiestContainer::of(&r.snap),
        status: Status::of(age, st.options.online_secs, st.options.offline_secs),
        machine_id: r.snap.machine_id.clone(),
        hostname: r.snap.hostname.clone(),
        last_seen: r.snap.timestamp,
        age_secs: (age * 10.0).round() / 10.0,
        labels: r.snap.labels.clone(),
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
    /// CPU pressure stall, `some` avg10, percent; none without PSI.
    pub pressure_cpu: Option<f64>,
    /// The busiest top cgroup by CPU; none without cgroups.
    pub busiest_container: Option<BusiestContainer>,
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
            pressure_cpu: Metric::PressureCpuSome.value(s),
            busiest_container: BusiestContainer::of(s),
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

/// The paging part of an answer: how many machines match, where this page
/// starts, the cursor of the next, and the parameters as understood.
fn page_meta(q: &MachineQuery, page: &Page<'_>, fleet_total: usize) -> serde_json::Value {
    json!({
        "total": page.total,
        "fleet_total": fleet_total,
        "offset": page.offset,
        "limit": q.limit,
        "next_cursor": page.next_cursor,
        "sort": q.sort.name(),
        "order": if q.desc { "desc" } else { "asc" },
        "status_counts": page.counts,
    })
}

fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// `GET /api/machines?q=&status=&label=&sort=&order=&limit=&offset=&cursor=`:
/// one page of the machine list (see `docs/api.md`).
pub(crate) async fn machines(
    State(st): State<Arc<AppState>>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let mq = MachineQuery::parse(&p)?;
    let fleet = st.fleet.get(&st.source).await?;
    let now = now_epoch_secs();
    let (on, off) = (st.options.online_secs, st.options.offline_secs);
    let page = mq.run(&fleet, now, on, off);
    let list: Vec<MachineView> = page
        .rows
        .iter()
        .map(|r| machine_view(r, now, &st))
        .collect();
    let body = json!({
        "now": now,
        "online_secs": on,
        "offline_secs": off,
        "machines": list,
    });
    Ok(Json(merge(body, page_meta(&mq, &page, fleet.rows.len()))).into_response())
}

/// `GET /api/overview?range=15m&spark=cpu` plus the table parameters of
/// `/api/machines`: one page of machines with their current values and a
/// small trend, and the fleet's figures now (over the filtered machines).
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
    let mq = MachineQuery::parse(&p)?;
    let fleet = st.fleet.get(&st.source).await?;
    let now = now_epoch_secs();
    let (on, off) = (st.options.online_secs, st.options.offline_secs);
    let page = mq.run(&fleet, now, on, off);
    // The page's sparklines in one read.
    let ids: Vec<String> = page
        .rows
        .iter()
        .map(|r| r.snap.machine_id.clone())
        .collect();
    let mut sparks = st
        .source
        .sparklines(&ids, spark, now - range.secs(), now + 1.0, points)
        .await?;
    let mut rows = Vec::with_capacity(page.rows.len());
    for r in &page.rows {
        let s = &r.snap;
        let age = now - s.timestamp;
        let trend = sparks.remove(&s.machine_id).unwrap_or_default();
        rows.push(json!({
            "status": Status::of(age, on, off),
            "age_secs": (age * 10.0).round() / 10.0,
            "now": MachineNow::from(s),
            "labels": s.labels,
            "spark": { "ts": trend.ts, "avg": trend.avg },
        }));
    }
    let online: Vec<&Row> = page
        .kept
        .iter()
        .copied()
        .filter(|r| r.status(now, on, off) == Status::Online)
        .collect();
    let fleet_now = if online.is_empty() {
        json!({ "online": 0 })
    } else {
        let (cpu, _) = spread_by(&online, Metric::Cpu, None, 0);
        let (mem, _) = spread_by(&online, Metric::Memory, None, 0);
        let sum = |m: Metric| online.iter().filter_map(|r| r.value(m)).sum::<f64>();
        json!({
            "online": online.len(),
            "cpu_avg": cpu.avg, "cpu_max": cpu.max, "cpu_p50": cpu.p50, "cpu_p95": cpu.p95,
            "memory_avg": mem.avg, "memory_max": mem.max,
            "memory_p50": mem.p50, "memory_p95": mem.p95,
            "disk_read": sum(Metric::DiskRead), "disk_write": sum(Metric::DiskWrite),
            "net_sent": sum(Metric::NetSent), "net_recv": sum(Metric::NetRecv),
        })
    };
    let body = json!({
        "now": now,
        "range": range,
        "spark_metric": spark,
        "machines": rows,
        "fleet": fleet_now,
    });
    Ok(Json(merge(body, page_meta(&mq, &page, fleet.rows.len()))).into_response())
}

/// Largest `n` of `/api/top`.
const MAX_TOP: usize = 100;
/// Most machines in one `/api/map` answer.
pub const MAX_MAP_MACHINES: usize = 20_000;
/// Most groups in a grouped answer.
const MAX_GROUPS: usize = 50;

/// `GET /api/top?metric=cpu&n=10` (with the table's filters): the machines
/// with the highest (or, `order=asc`, lowest) current value.
pub(crate) async fn top(State(st): State<Arc<AppState>>, q: Params) -> Result<Response, ApiError> {
    let mut p = params(q)?;
    let metric = parse_any_metric(&p)?;
    let n = crate::fleet::parse_bounded(&p, "n", 10, 1, MAX_TOP)?;
    p.insert("sort".into(), metric.short_name().into());
    p.insert("limit".into(), n.to_string());
    p.remove("cursor");
    p.remove("offset");
    let mq = MachineQuery::parse(&p)?;
    let fleet = st.fleet.get(&st.source).await?;
    let now = now_epoch_secs();
    let (on, off) = (st.options.online_secs, st.options.offline_secs);
    let page = mq.run(&fleet, now, on, off);
    let list: Vec<serde_json::Value> = page
        .rows
        .iter()
        .filter_map(|r| {
            r.value(metric).map(|v| {
                json!({
                    "machine_id": r.snap.machine_id, "hostname": r.snap.hostname,
                    "value": v, "status": r.status(now, on, off),
                })
            })
        })
        .collect();
    Ok(Json(json!({
        "metric": metric, "unit": metric.unit(), "n": n,
        "order": if mq.desc { "desc" } else { "asc" },
        "total": page.total, "machines": list,
    }))
    .into_response())
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// `group`: a label key to group by (trimmed; empty = none; at most 128 bytes).
fn parse_group(p: &HashMap<String, String>) -> Result<Option<&str>, ApiError> {
    let group = p.get("group").map(|g| g.trim()).filter(|g| !g.is_empty());
    if group.is_some_and(|g| g.len() > 128) {
        return Err(ApiError::bad_request(
            "`group` must be a label key of at most 128 bytes",
        ));
    }
    Ok(group)
}

/// The table's filters of a request, without its sort and paging (answers
/// over every matching machine).
fn without_paging(p: &HashMap<String, String>) -> HashMap<String, String> {
    let mut pq = p.clone();
    for k in ["sort", "order", "limit", "offset", "cursor"] {
        pq.remove(k);
    }
    pq
}

/// `GET /api/map?metric=cpu[&group=role]` (with the table's filters): every
/// machine's current value in compact columns, for the fleet map.
pub(crate) async fn map(State(st): State<Arc<AppState>>, q: Params) -> Result<Response, ApiError> {
    let p = params(q)?;
    let metric = parse_any_metric(&p)?;
    let group = parse_group(&p)?;
    let pq = without_paging(&p);
    let mq = MachineQuery::parse(&pq)?;
    let fleet = st.fleet.get(&st.source).await?;
    let now = now_epoch_secs();
    let (on, off) = (st.options.online_secs, st.options.offline_secs);
    let mut rows: Vec<&Row> = fleet
        .rows
        .iter()
        .filter(|r| mq.keeps(r, now, on, off))
        .collect();
    let total = rows.len();
    rows.truncate(MAX_MAP_MACHINES);
    let mut groups: Vec<MapGroup> = Vec::new();
    if let Some(g) = group {
        // Each label read once; stable, so machines keep their natural
        // order inside a group.
        let mut keyed: Vec<(&str, &Row)> = rows
            .iter()
            .map(|r| (r.snap.labels.get(g).map(String::as_str).unwrap_or(""), *r))
            .collect();
        keyed.sort_by(|a, b| crate::fleet::natural_cmp(a.0, b.0));
        let mut start = 0;
        while start < keyed.len() {
            let name = keyed[start].0;
            let end = start + keyed[start..].iter().take_while(|k| k.0 == name).count();
            groups.push(MapGroup {
                name: name.to_string(),
                start,
                count: end - start,
            });
            start = end;
        }
        rows = keyed.into_iter().map(|(_, r)| r).collect();
    }
    let view = MapView {
        metric,
        unit: metric.unit(),
        now,
        total,
        truncated: total > rows.len(),
        group,
        groups,
        ids: rows.iter().map(|r| r.snap.machine_id.as_str()).collect(),
        hosts: rows
            .iter()
            .map(|r| {
                r.snap
                    .hostname
                    .as_deref()
                    .filter(|h| *h != r.snap.machine_id)
            })
            .collect(),
        values: rows.iter().map(|r| r.value(metric).map(round1)).collect(),
        status: rows
            .iter()
            .map(|r| match r.status(now, on, off) {
                Status::Online => 0,
                Status::Stale => 1,
                Status::Offline => 2,
            })
            .collect(),
    };
    Ok(Json(view).into_response())
}

/// Where one group starts in `/api/map`'s columns.
#[derive(Serialize)]
struct MapGroup {
    name: String,
    start: usize,
    count: usize,
}

/// `/api/map`'s answer, serialized directly (no JSON tree of 10,000 values).
#[derive(Serialize)]
struct MapView<'a> {
    metric: Metric,
    unit: &'static str,
    now: f64,
    total: usize,
    truncated: bool,
    group: Option<&'a str>,
    groups: Vec<MapGroup>,
    ids: Vec<&'a str>,
    hosts: Vec<Option<&'a str>>,
    values: Vec<Option<f64>>,
    status: Vec<u8>,
}

/// `GET /api/fleet/summary?metric=cpu[&group=role]` (with the table's
/// filters): the spread (avg, min, p50, p95, max) of a metric's current
/// values over the online machines, overall and per label value.
pub(crate) async fn fleet_summary(
    State(st): State<Arc<AppState>>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let metric = parse_any_metric(&p)?;
    let group = parse_group(&p)?;
    let mut pq = without_paging(&p);
    if !pq.contains_key("status") {
        pq.insert("status".into(), "online".into());
    }
    let mq = MachineQuery::parse(&pq)?;
    let fleet = st.fleet.get(&st.source).await?;
    let now = now_epoch_secs();
    let (on, off) = (st.options.online_secs, st.options.offline_secs);
    let rows: Vec<&Row> = fleet
        .rows
        .iter()
        .filter(|r| mq.keeps(r, now, on, off))
        .collect();
    let (all, groups) = spread_by(&rows, metric, group, MAX_GROUPS);
    let groups: Vec<serde_json::Value> = groups
        .into_iter()
        .map(|(name, s)| merge(json!({ "name": name }), json!(s)))
        .collect();
    Ok(Json(json!({
        "metric": metric, "unit": metric.unit(), "machines": rows.len(),
        "spread": all, "group": group, "groups": groups,
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

/// Any metric of the vocabulary, charted or not (the map, top-N and the
/// fleet's spread read current values, which every metric has).
fn parse_any_metric(p: &HashMap<String, String>) -> Result<Metric, ApiError> {
    let Some(s) = p.get("metric") else {
        return Ok(Metric::Cpu);
    };
    s.parse::<Metric>().map_err(|e| {
        ApiError::not_allowed(
            e.to_string(),
            Metric::ALL.iter().map(|m| m.short_name()).collect(),
        )
    })
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
    let (_, _, range) = parse_window(&p)?;
    let points = parse_points(&p, DEFAULT_POINTS)?;
    if let Some(group) = parse_group(&p)? {
        return fleet_grouped(st, &p, metric, group.to_string(), range, points).await;
    }
    let agg = match p.get("agg") {
        Some(a) => a
            .parse::<FleetAgg>()
            .map_err(|e| ApiError::not_allowed(e.to_string(), vec!["avg", "max"]))?,
        None => FleetAgg::Avg,
    };
    let Some(range) = range else {
        return Ok(Json(fleet_answer(st, p, metric, agg, points).await?).into_response());
    };
    // A window relative to now: a slow answer (a large fleet) is kept briefly.
    let key = format!(
        "fleet|{}|{}|{}|{points}",
        metric.name(),
        agg.name(),
        range.name()
    );
    let st2 = st.clone();
    let v = st
        .slow
        .get(key, move || fleet_answer(st2, p, metric, agg, points))
        .await?;
    Ok(Json(v.as_ref()).into_response())
}

/// Default number of groups charted by `/api/fleet?group=`; the rest is "other".
const DEFAULT_SERIES_GROUPS: usize = 8;
/// Most groups `/api/fleet?group=` charts (`groups=`), "other" not counted.
pub const MAX_SERIES_GROUPS: usize = 20;

/// `GET /api/fleet?metric=cpu&group=role[&groups=8]` (with the table's
/// filters): the fleet series of each value of the label `group` (the
/// `groups` largest by machine count, the rest combined as "other"), each
/// with avg, min, max, p50, p95 and machines per bucket.
async fn fleet_grouped(
    st: Arc<AppState>,
    p: &HashMap<String, String>,
    metric: Metric,
    group: String,
    range: Option<Range>,
    points: usize,
) -> Result<Response, ApiError> {
    let cap =
        crate::fleet::parse_bounded(p, "groups", DEFAULT_SERIES_GROUPS, 1, MAX_SERIES_GROUPS)?;
    let pq = without_paging(p);
    let mq = MachineQuery::parse(&pq)?;
    let Some(range) = range else {
        let v = fleet_grouped_answer(st, p.clone(), mq, metric, group, cap, points).await?;
        return Ok(Json(v).into_response());
    };
    // Keyed by every parameter that shapes the answer (the filters included).
    let mut key_parts: Vec<String> = pq
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "range" | "points" | "metric" | "group" | "groups"
            )
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    key_parts.sort();
    let key = format!(
        "fleet-group|{}|{}|{group}|{cap}|{points}|{}",
        metric.name(),
        range.name(),
        key_parts.join("&")
    );
    let (st2, p2) = (st.clone(), p.clone());
    let v = st
        .slow
        .get(key, move || {
            fleet_grouped_answer(st2, p2, mq, metric, group, cap, points)
        })
        .await?;
    Ok(Json(v.as_ref()).into_response())
}

async fn fleet_grouped_answer(
    st: Arc<AppState>,
    p: HashMap<String, String>,
    mq: MachineQuery,
    metric: Metric,
    group: String,
    cap: usize,
    points: usize,
) -> Result<serde_json::Value, ApiError> {
    let (since, until, range) = parse_window(&p)?;
    let fleet = st.fleet.get(&st.source).await?;
    let now = now_epoch_secs();
    let (on, off) = (st.options.online_secs, st.options.offline_secs);
    // Members by the label of each machine's newest snapshot.
    let mut by: HashMap<&str, Vec<String>> = HashMap::new();
    let mut charted = 0usize;
    for r in fleet.rows.iter().filter(|r| mq.keeps(r, now, on, off)) {
        let k = r.snap.labels.get(&group).map(String::as_str).unwrap_or("");
        by.entry(k).or_default().push(r.snap.machine_id.clone());
        charted += 1;
    }
    let total_groups = by.len();
    let mut named: Vec<(&str, Vec<String>)> = by.into_iter().collect();
    named.sort_by(|a, b| {
        b.1.len()
            .cmp(&a.1.len())
            .then_with(|| crate::fleet::natural_cmp(a.0, b.0))
    });
    let rest: Vec<(&str, Vec<String>)> = if named.len() > cap {
        named.split_off(cap)
    } else {
        Vec::new()
    };
    let mut groups: Vec<sysmon_core::MachineGroup> = named
        .iter()
        .map(|(name, ids)| sysmon_core::MachineGroup {
            name: name.to_string(),
            machines: ids.clone(),
        })
        .collect();
    if !rest.is_empty() {
        groups.push(sysmon_core::MachineGroup {
            name: "other".into(),
            machines: rest
                .iter()
                .flat_map(|(_, ids)| ids.iter().cloned())
                .collect(),
        });
    }
    let series = st
        .source
        .group_series(metric, &groups, since, until, points)
        .await?;
    let list: Vec<serde_json::Value> = groups
        .iter()
        .zip(series)
        .enumerate()
        .map(|(i, (g, b))| {
            let other = i >= named.len();
            let mut v = json!({
                "name": g.name, "machines": g.machines.len(), "other": other,
            });
            if other {
                v["other_groups"] = json!(rest.len());
            }
            merge(v, json!(b))
        })
        .collect();
    Ok(json!({
        "metric": metric, "unit": metric.unit(), "range": range,
        "since": since, "until": until, "group": group,
        "machines": charted, "groups_total": total_groups, "groups": list,
    }))
}

async fn fleet_answer(
    st: Arc<AppState>,
    p: HashMap<String, String>,
    metric: Metric,
    agg: FleetAgg,
    points: usize,
) -> Result<serde_json::Value, ApiError> {
    let (since, until, range) = parse_window(&p)?;
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
    Ok(body)
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

/// Default and largest number of machines `/api/scatter` reads.
const DEFAULT_SCATTER_MACHINES: usize = 200;
const MAX_SCATTER_MACHINES: usize = 1000;

/// `GET /api/scatter?range=15m[&machines=200]`: CPU vs memory samples (bucket
/// averages) of at most `machines` machines, anomalies marked. A larger fleet
/// is sampled: the half of the budget with the highest CPU or memory now, the
/// rest spread evenly over the others in natural id order.
pub(crate) async fn scatter(
    State(st): State<Arc<AppState>>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let (_, _, range) = parse_window(&p)?;
    let budget = crate::fleet::parse_bounded(
        &p,
        "machines",
        DEFAULT_SCATTER_MACHINES,
        1,
        MAX_SCATTER_MACHINES,
    )?;
    let Some(range) = range else {
        return Ok(Json(scatter_answer(st, p, budget).await?).into_response());
    };
    let key = format!("scatter|{}|{budget}", range.name());
    let st2 = st.clone();
    let v = st
        .slow
        .get(key, move || scatter_answer(st2, p, budget))
        .await?;
    Ok(Json(v.as_ref()).into_response())
}

async fn scatter_answer(
    st: Arc<AppState>,
    p: HashMap<String, String>,
    budget: usize,
) -> Result<serde_json::Value, ApiError> {
    let (since, until, range) = parse_window(&p)?;
    let fleet = st.fleet.get(&st.source).await?;
    let ids = scatter_sample(&fleet, budget);
    let per = (2000 / ids.len().max(1)).clamp(5, 120);
    let machines: Vec<&str> = ids.iter().map(String::as_str).collect();
    // Two reads for the sampled machines: their CPU, then their memory.
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
        let (Some(cpu), Some(mem)) = (cpus.get(*m), mems.get(*m)) else {
            continue;
        };
        let mut j = 0;
        for (i, t) in cpu.ts.iter().enumerate() {
            while j < mem.ts.len() && mem.ts[j] < *t {
                j += 1;
            }
            if j < mem.ts.len() && mem.ts[j] == *t {
                points.push(json!({
                    "machine_id": m, "ts": t,
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
    Ok(json!({
        "range": range, "since": since, "until": until,
        "anomalies_available": st.analytics.available(),
        "machines_total": fleet.rows.len(), "machines_shown": machines.len(),
        "sampled": machines.len() < fleet.rows.len(),
        "points": points,
    }))
}

/// Which machines the scatter reads: all when they fit in `budget`, else the
/// busiest by CPU and by memory (half the budget) and an even spread of the rest.
fn scatter_sample(fleet: &crate::fleet::Fleet, budget: usize) -> Vec<String> {
    let rows = &fleet.rows;
    if rows.len() <= budget {
        return rows.iter().map(|r| r.snap.machine_id.clone()).collect();
    }
    let mut chosen = vec![false; rows.len()];
    let mut by = |m: Metric, n: usize| {
        let mut idx: Vec<usize> = (0..rows.len()).filter(|i| !chosen[*i]).collect();
        idx.sort_by(|a, b| {
            let (x, y) = (rows[*a].value(m), rows[*b].value(m));
            y.unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&x.unwrap_or(f64::NEG_INFINITY))
        });
        for i in idx.into_iter().take(n) {
            chosen[i] = true;
        }
    };
    by(Metric::Cpu, budget / 4);
    by(Metric::Memory, budget / 4);
    let rest: Vec<usize> = (0..rows.len()).filter(|i| !chosen[*i]).collect();
    let want = budget - chosen.iter().filter(|c| **c).count();
    for k in 0..want.min(rest.len()) {
        chosen[rest[k * rest.len() / want.max(1)]] = true;
    }
    rows.iter()
        .zip(chosen)
        .filter(|(_, c)| *c)
        .map(|(r, _)| r.snap.machine_id.clone())
        .collect()
}

/// `GET /api/alerts`.
pub(crate) async fn alerts(
    State(st): State<Arc<AppState>>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let grouped = match p.get("group").map(|g| g.trim()) {
        None | Some("") => false,
        Some("rule") => true,
        Some(_) => {
            return Err(ApiError::not_allowed(
                "`group` must be `rule`".to_string(),
                vec!["rule"],
            ))
        }
    };
    let per_group = crate::fleet::parse_bounded(
        &p,
        "per_group",
        DEFAULT_ALERTS_PER_GROUP,
        1,
        MAX_ALERTS_PER_GROUP,
    )?;
    let rule = p.get("rule").map(|r| r.trim()).filter(|r| !r.is_empty());
    if rule.is_some_and(|r| r.len() > 128) {
        return Err(ApiError::bad_request("`rule` must be at most 128 bytes"));
    }
    let mut alerts = st.analytics.alerts().await?;
    if let Some(r) = rule {
        alerts.retain(|a| a.rule == r);
    }
    let available = st.analytics.available();
    if !grouped {
        return Ok(Json(json!({ "available": available, "alerts": alerts })).into_response());
    }
    let total = alerts.len();
    let groups = group_alerts(alerts, per_group);
    Ok(Json(json!({
        "available": available, "total": total, "per_group": per_group, "groups": groups,
    }))
    .into_response())
}

/// Alerts listed per group of `/api/alerts?group=rule` by default.
const DEFAULT_ALERTS_PER_GROUP: usize = 20;
/// Most alerts listed per group (`per_group`).
const MAX_ALERTS_PER_GROUP: usize = 1000;

/// The active alerts of one rule, as `/api/alerts?group=rule` lists them.
#[derive(Debug, Serialize)]
struct AlertGroup {
    rule: String,
    /// The most severe severity among its alerts.
    severity: sysmon_core::alert::Severity,
    count: usize,
    firing: usize,
    pending: usize,
    /// The first `per_group` alerts: firing first, then machines in natural order.
    alerts: Vec<sysmon_core::alert::ActiveAlert>,
    /// Alerts counted but not listed.
    more: usize,
}

/// `alerts` grouped by rule: groups with a firing alert first, then by
/// severity (critical first), size (largest first) and rule name.
fn group_alerts(alerts: Vec<sysmon_core::alert::ActiveAlert>, per_group: usize) -> Vec<AlertGroup> {
    use sysmon_core::alert::AlertState;
    let mut by: std::collections::BTreeMap<String, Vec<sysmon_core::alert::ActiveAlert>> =
        std::collections::BTreeMap::new();
    for a in alerts {
        by.entry(a.rule.clone()).or_default().push(a);
    }
    let mut groups: Vec<AlertGroup> = by
        .into_iter()
        .map(|(rule, mut list)| {
            let firing = list
                .iter()
                .filter(|a| a.state == AlertState::Firing)
                .count();
            let pending = list
                .iter()
                .filter(|a| a.state == AlertState::Pending)
                .count();
            let severity = list.iter().map(|a| a.severity).max().unwrap_or_default();
            list.sort_by(|a, b| {
                let f = |x: &sysmon_core::alert::ActiveAlert| x.state != AlertState::Firing;
                f(a).cmp(&f(b))
                    .then_with(|| {
                        crate::fleet::natural_cmp(
                            a.machine_id.as_deref().unwrap_or(""),
                            b.machine_id.as_deref().unwrap_or(""),
                        )
                    })
                    .then_with(|| a.subject.cmp(&b.subject))
            });
            let count = list.len();
            list.truncate(per_group);
            AlertGroup {
                rule,
                severity,
                count,
                firing,
                pending,
                more: count - list.len(),
                alerts: list,
            }
        })
        .collect();
    groups.sort_by(|a, b| {
        (b.firing > 0)
            .cmp(&(a.firing > 0))
            .then_with(|| b.severity.cmp(&a.severity))
            .then_with(|| b.count.cmp(&a.count))
            .then_with(|| a.rule.cmp(&b.rule))
    });
    groups
}

/// `GET /api/anomalies?range=24h[&machine=ID]`.
pub(crate) async fn anomalies(
    State(st): State<Arc<AppState>>,
    q: Params,
) -> Result<Response, ApiError> {
    let (w, machine) = window_and_machine(q)?;
    let list = st.analytics.anomalies(machine.as_deref(), w.0).await?;
    Ok(analytics_list(&st, w, "anomalies", list))
}

/// `GET /api/episodes?range=24h[&machine=ID]`: anomaly episodes (a flag that
/// persists is one episode with a start, an end and a peak), newest first.
pub(crate) async fn episodes(
    State(st): State<Arc<AppState>>,
    q: Params,
) -> Result<Response, ApiError> {
    let (w, machine) = window_and_machine(q)?;
    let list = st.analytics.episodes(machine.as_deref(), w.0).await?;
    Ok(analytics_list(&st, w, "episodes", list))
}

/// The window of an analytics list: its start and the named range, if any.
type Window = (f64, Option<Range>);

/// The window and `machine` of an analytics list request.
fn window_and_machine(q: Params) -> Result<(Window, Option<String>), ApiError> {
    let p = params(q)?;
    let (since, _, range) = parse_window(&p)?;
    Ok(((since, range), p.get("machine").cloned()))
}

/// The answer of an analytics list: `{available, range, since, <key>: list}`.
fn analytics_list<T: serde::Serialize>(
    st: &AppState,
    (since, range): Window,
    key: &str,
    list: Vec<T>,
) -> Response {
    let mut body = json!({
        "available": st.analytics.available(), "range": range, "since": since,
    });
    body[key] = json!(list);
    Json(body).into_response()
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

/// How old the fleet index's machine count may be for `/metrics?machines=none`
/// to report it as `sysmon_machines`.
const METRICS_COUNT_FRESH: Duration = Duration::from_secs(60);

/// `GET /metrics[?machines=all|none|N][&by=cpu]`: Prometheus text
/// exposition; per-machine gauges for every machine, none, or the `N` with
/// the highest `by` (default: `DashboardOptions::metrics_machines`).
pub(crate) async fn metrics(
    State(st): State<Arc<AppState>>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let limit = match p.get("machines").map(|s| s.trim().to_ascii_lowercase()) {
        None => st.options.metrics_machines,
        Some(s) if s == "all" => None,
        Some(s) if s == "none" => Some(0),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n <= 1_000_000 => Some(n),
            _ => {
                return Err(ApiError::bad_request(
                    "`machines` must be all, none or a whole number",
                ))
            }
        },
    };
    let mut bp = HashMap::new();
    if let Some(b) = p.get("by") {
        bp.insert("metric".to_string(), b.clone());
    }
    let by = parse_any_metric(&bp)?;
    // Every machine needs no ranking: one transient read, not the fleet index
    // (which a scrape-only process, e.g. `ingest --listen` scraped by
    // Prometheus, then never holds). A top N ranks the index. None reads no
    // machine at all: the process's own counters, and the machine count only
    // when the index holds a recent one (a 100,000-machine store must not
    // make the ingester's health scrape slow).
    let all;
    let fleet;
    let (latest, total): (Vec<&Snapshot>, Option<usize>) = match limit {
        None => {
            all = st.source.latest_all().await?;
            (all.iter().collect(), Some(all.len()))
        }
        Some(0) => (Vec::new(), st.fleet.peek_count(METRICS_COUNT_FRESH).await),
        Some(n) => {
            fleet = st.fleet.get(&st.source).await?;
            let mut rows: Vec<&Row> = fleet.rows.iter().collect();
            if n < rows.len() {
                rows.sort_by(|a, b| {
                    let v = |r: &Row| r.value(by).unwrap_or(f64::NEG_INFINITY);
                    v(b).total_cmp(&v(a))
                });
            }
            (
                rows.into_iter().take(n).map(|r| &r.snap).collect(),
                Some(fleet.rows.len()),
            )
        }
    };
    let mut text = crate::prometheus::render_selected(
        &latest,
        total,
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
