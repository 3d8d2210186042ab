//! The fleet's latest state as an in-memory index, so that one page of the
//! machine table, the fleet map or a top-N list costs the same at 10,000
//! machines as at ten.
//!
//! [`FleetIndex`] holds the newest snapshot of every machine (processes
//! stripped), each metric of the vocabulary read once, the rows kept in
//! natural order of their ids. It is filled from the store's
//! [`HistoryReader::latest_all`] (one read, whatever the backend: SQLite,
//! PostgreSQL, Redis in front of either; machines known to the store whose
//! raw samples are past retention are added from `machines()`, without values). While a load is cheap (under
//! [`SYNC_LOAD_LIMIT`]: a small fleet) every request reloads it, so answers
//! are exact as before; a large fleet is answered from the loaded state and
//! reloaded in the background when older than [`FleetIndex::max_age`]
//! (answers are then stale by at most `max_age` plus one load).
//!
//! [`MachineQuery`] is the table's request: filters (`q`, `status`, `label`),
//! a sort by any column in natural order for names, `order`, `limit` and
//! `offset` or a keyset `cursor`. Every parameter is checked and bounded;
//! a bad one is a 400 naming what is allowed.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sysmon_core::{MachineSummary, Snapshot};
use tokio::sync::{Mutex, RwLock};

use crate::api::Status;
use crate::error::ApiError;
use crate::metric::Metric;
use crate::HistoryReader;

/// Default rows per page of `/api/machines` and `/api/overview`.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page.
pub const MAX_LIMIT: usize = 1000;
/// Longest search text (`q`), bytes.
pub const MAX_Q_LEN: usize = 256;
/// Most label conditions in one `label` parameter.
pub const MAX_LABELS: usize = 16;
/// A load of the index that took less than this is redone synchronously when
/// stale; a slower one (a large fleet) is redone in the background.
pub const SYNC_LOAD_LIMIT: Duration = Duration::from_millis(20);

/// One machine in the index.
#[derive(Debug)]
pub struct Row {
    /// Its newest snapshot, top processes left out.
    pub snap: Snapshot,
    id_lower: String,
    host_lower: String,
    /// Every metric of the vocabulary, in [`Metric::ALL`] order.
    values: [Option<f64>; Metric::ALL.len()],
}

impl Row {
    /// A machine the store knows (`machines()`) whose raw samples are gone
    /// (past retention): its id, host name and last-seen time, no values.
    fn known_only(m: MachineSummary) -> Row {
        let mut snap = Snapshot::new(m.machine_id, m.last_seen);
        snap.hostname = m.hostname;
        Row {
            id_lower: snap.machine_id.to_lowercase(),
            host_lower: snap.hostname.as_deref().unwrap_or("").to_lowercase(),
            snap,
            values: [None; Metric::ALL.len()],
        }
    }

    fn new(mut snap: Snapshot) -> Row {
        snap.top_cpu_processes = Vec::new();
        snap.top_mem_processes = Vec::new();
        let mut values = [None; Metric::ALL.len()];
        for (i, m) in Metric::ALL.iter().enumerate() {
            values[i] = m.value(&snap).filter(|v| v.is_finite());
        }
        Row {
            id_lower: snap.machine_id.to_lowercase(),
            host_lower: snap.hostname.as_deref().unwrap_or("").to_lowercase(),
            snap,
            values,
        }
    }

    /// The value of `metric` (`None` when the machine does not report it).
    pub fn value(&self, metric: Metric) -> Option<f64> {
        let i = Metric::ALL.iter().position(|m| *m == metric)?;
        self.values[i]
    }

    /// The machine's status at `now`.
    pub fn status(&self, now: f64, online: f64, offline: f64) -> Status {
        Status::of(now - self.snap.timestamp, online, offline)
    }
}

/// The index's content at one load.
#[derive(Debug, Default)]
pub struct Fleet {
    /// Every machine, in natural order of its id.
    pub rows: Vec<Row>,
}

#[derive(Default)]
struct Loaded {
    fleet: Arc<Fleet>,
    at: Option<Instant>,
    took: Duration,
}

/// The fleet's latest state, shared by the handlers (see the module doc).
pub struct FleetIndex {
    inner: Arc<Inner>,
}

struct Inner {
    state: RwLock<Loaded>,
    /// Held while loading: one load at a time.
    loading: Arc<Mutex<()>>,
    max_age: Duration,
}

impl FleetIndex {
    /// An empty index that reloads when older than `max_age`.
    pub fn new(max_age: Duration) -> Self {
        FleetIndex {
            inner: Arc::new(Inner {
                state: RwLock::new(Loaded::default()),
                loading: Arc::new(Mutex::new(())),
                max_age,
            }),
        }
    }

    /// How old the index may get before it is reloaded.
    pub fn max_age(&self) -> Duration {
        self.inner.max_age
    }

    /// How many machines the index held at its last load, when that load is
    /// at most `fresh` old; never loads (no store read), so `None` when no
    /// request loaded it lately (`/metrics?machines=none`).
    pub async fn peek_count(&self, fresh: Duration) -> Option<usize> {
        let s = self.inner.state.read().await;
        let at = s.at?;
        (at.elapsed() <= fresh).then_some(s.fleet.rows.len())
    }

    /// The current fleet, loading or refreshing it as the module doc says.
    pub async fn get(
        &self,
        source: &Arc<dyn HistoryReader>,
    ) -> Result<Arc<Fleet>, sysmon_core::StoreError> {
        if let Some(f) = self.cached(source).await {
            return Ok(f);
        }
        let _guard = self.inner.loading.lock().await;
        // A large fleet loaded while this waited: use it.
        if let Some(f) = self.cached(source).await {
            return Ok(f);
        }
        self.inner.load(source).await
    }

    /// The state to answer from without loading now: `None` for a small
    /// fleet (reloaded on every request, so answers are exact) and before the
    /// first load; for a large one the loaded state, refreshed in the
    /// background when older than `max_age`.
    async fn cached(&self, source: &Arc<dyn HistoryReader>) -> Option<Arc<Fleet>> {
        let (at, took, fleet) = {
            let s = self.inner.state.read().await;
            (s.at?, s.took, s.fleet.clone())
        };
        if took < SYNC_LOAD_LIMIT {
            return None;
        }
        if at.elapsed() > self.inner.max_age {
            if let Ok(guard) = self.inner.loading.clone().try_lock_owned() {
                let inner = self.inner.clone();
                let source = source.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    if let Err(e) = inner.load(&source).await {
                        tracing::warn!(error = %e, "fleet index: refresh failed");
                    }
                });
            }
        }
        Some(fleet)
    }
}

impl Inner {
    async fn load(
        &self,
        source: &Arc<dyn HistoryReader>,
    ) -> Result<Arc<Fleet>, sysmon_core::StoreError> {
        let started = Instant::now();
        let latest = source.latest_all().await?;
        let known = source.machines().await?;
        let fleet = tokio::task::spawn_blocking(move || build(latest, known))
            .await
            .map_err(|e| sysmon_core::StoreError::backend("fleet index", e))?;
        let fleet = Arc::new(fleet);
        let mut s = self.state.write().await;
        s.fleet = fleet.clone();
        s.at = Some(Instant::now());
        s.took = started.elapsed();
        Ok(fleet)
    }
}

fn build(latest: Vec<Snapshot>, known: Vec<MachineSummary>) -> Fleet {
    let have: std::collections::HashSet<String> =
        latest.iter().map(|s| s.machine_id.clone()).collect();
    let mut rows: Vec<Row> = latest.into_iter().map(Row::new).collect();
    rows.extend(
        known
            .into_iter()
            .filter(|m| !have.contains(&m.machine_id))
            .map(Row::known_only),
    );
    rows.sort_by(|a, b| natural_cmp(&a.snap.machine_id, &b.snap.machine_id));
    Fleet { rows }
}

/// Compares two names in natural order: runs of digits by their number
/// (`loadgen-2` before `loadgen-10`), the rest case-insensitively; equal
/// names under that order fall back to a byte comparison so that the order
/// is total.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = trim_zeros(&ab[si..i]);
            let nb = trim_zeros(&bb[sj..j]);
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            let o = ab[i].to_ascii_lowercase().cmp(&bb[j].to_ascii_lowercase());
            if o != Ordering::Equal {
                return o;
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j)).then_with(|| a.cmp(b))
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|c| **c == b'0').count();
    &d[n.min(d.len().saturating_sub(1))..]
}

/// A column of the machine table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// The machine id, natural order.
    MachineId,
    /// The host name, natural order (machines without one last).
    Hostname,
    /// online, stale, offline.
    Status,
    /// Newest snapshot's timestamp.
    LastSeen,
    /// A metric's current value (machines without one last).
    Metric(Metric),
}

impl SortBy {
    /// The columns by name, for errors.
    pub fn names() -> Vec<&'static str> {
        let mut v = vec!["machine_id", "hostname", "status", "last_seen"];
        v.extend(Metric::ALL.iter().map(|m| m.short_name()));
        v
    }

    fn parse(s: &str) -> Result<SortBy, ApiError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "machine_id" | "id" | "machine" | "name" => SortBy::MachineId,
            "hostname" | "host" => SortBy::Hostname,
            "status" => SortBy::Status,
            "last_seen" | "age" | "seen" => SortBy::LastSeen,
            other => match other.parse::<Metric>() {
                Ok(m) => SortBy::Metric(m),
                Err(_) => {
                    return Err(ApiError::not_allowed(
                        format!(
                            "cannot sort by {:?}; allowed: {}",
                            crate::metric::truncate(s),
                            SortBy::names().join(", ")
                        ),
                        SortBy::names(),
                    ))
                }
            },
        })
    }

    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            SortBy::MachineId => "machine_id",
            SortBy::Hostname => "hostname",
            SortBy::Status => "status",
            SortBy::LastSeen => "last_seen",
            SortBy::Metric(m) => m.short_name(),
        }
    }

    /// The default direction: names and status ascending, numbers descending.
    fn default_desc(self) -> bool {
        matches!(self, SortBy::LastSeen | SortBy::Metric(_))
    }
}

/// A row's sort key: text compared in natural order, or a number; a missing
/// value sorts last in either direction.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Num(Option<f64>),
    Text(Option<String>),
}

/// A [`Key`] in a cursor: numbers by their bits, so they come back exact.
#[derive(Serialize, Deserialize)]
enum WireKey {
    N(Option<u64>),
    T(Option<String>),
}

impl Key {
    fn to_wire(&self) -> WireKey {
        match self {
            Key::Num(v) => WireKey::N(v.map(f64::to_bits)),
            Key::Text(t) => WireKey::T(t.clone()),
        }
    }

    fn from_wire(w: WireKey) -> Key {
        match w {
            WireKey::N(v) => Key::Num(v.map(f64::from_bits)),
            WireKey::T(t) => Key::Text(t),
        }
    }
}

fn cmp_key(a: &Key, b: &Key, desc: bool) -> Ordering {
    let dir = |o: Ordering| if desc { o.reverse() } else { o };
    match (a, b) {
        (Key::Num(x), Key::Num(y)) => match (x, y) {
            (Some(x), Some(y)) => dir(x.total_cmp(y)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
        (Key::Text(x), Key::Text(y)) => match (x, y) {
            (Some(x), Some(y)) => dir(natural_cmp(x, y)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
        // Cannot happen within one sort; keep the order total anyway.
        (Key::Num(_), Key::Text(_)) => Ordering::Less,
        (Key::Text(_), Key::Num(_)) => Ordering::Greater,
    }
}

/// A parsed `/api/machines` / `/api/overview` request.
#[derive(Debug, Clone)]
pub struct MachineQuery {
    /// Case-insensitive substring of the id or host name.
    pub q: Option<String>,
    /// Statuses kept (empty: all).
    pub status: Vec<Status>,
    /// `key`, `value` pairs every kept machine carries.
    pub labels: Vec<(String, String)>,
    /// The column.
    pub sort: SortBy,
    /// Descending.
    pub desc: bool,
    /// Rows per page.
    pub limit: usize,
    /// Rows skipped (when no cursor).
    pub offset: usize,
    /// Continue after this row (a previous answer's `next_cursor`).
    cursor: Option<(Key, String)>,
}

/// Parses a whole number parameter within `lo..=hi`.
pub fn parse_bounded(
    p: &HashMap<String, String>,
    name: &str,
    default: usize,
    lo: usize,
    hi: usize,
) -> Result<usize, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "`{name}` must be a whole number from {lo} to {hi}"
            ))),
        },
    }
}

fn parse_status(s: &str) -> Result<Vec<Status>, ApiError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        out.push(match part.to_ascii_lowercase().as_str() {
            "online" => Status::Online,
            "stale" => Status::Stale,
            "offline" => Status::Offline,
            _ => {
                return Err(ApiError::not_allowed(
                    format!(
                        "unknown status {:?}; allowed: online, stale, offline",
                        crate::metric::truncate(part)
                    ),
                    vec!["online", "stale", "offline"],
                ))
            }
        });
    }
    Ok(out)
}

/// `role:db,zone=eu` → `[(role, db), (zone, eu)]`.
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once([':', '=']) else {
            return Err(ApiError::bad_request(
                "`label` takes key:value pairs separated by commas (label=role:db,zone:eu)",
            ));
        };
        if k.trim().is_empty() {
            return Err(ApiError::bad_request("a `label` key must not be empty"));
        }
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    if out.len() > MAX_LABELS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_LABELS} label conditions"
        )));
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 4096 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl MachineQuery {
    /// Parses the table's parameters (`q`, `status`, `label`, `sort`,
    /// `order`, `limit`, `offset`, `cursor`).
    pub fn parse(p: &HashMap<String, String>) -> Result<MachineQuery, ApiError> {
        let q = match p.get("q").map(|s| s.trim()) {
            Some(s) if s.len() > MAX_Q_LEN => {
                return Err(ApiError::bad_request(format!(
                    "`q` must be at most {MAX_Q_LEN} bytes"
                )))
            }
            Some("") | None => None,
            Some(s) => Some(s.to_lowercase()),
        };
        let status = match p.get("status") {
            Some(s) => parse_status(s)?,
            None => Vec::new(),
        };
        let labels = match p.get("label") {
            Some(s) => parse_labels(s)?,
            None => Vec::new(),
        };
        let sort = match p.get("sort") {
            Some(s) => SortBy::parse(s.trim())?,
            None => SortBy::MachineId,
        };
        let desc = match p.get("order").map(|s| s.to_ascii_lowercase()) {
            None => sort.default_desc(),
            Some(o) if o == "asc" => false,
            Some(o) if o == "desc" => true,
            Some(_) => {
                return Err(ApiError::not_allowed(
                    "`order` must be asc or desc",
                    vec!["asc", "desc"],
                ))
            }
        };
        let limit = parse_bounded(p, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)?;
        let offset = parse_bounded(p, "offset", 0, 0, 10_000_000)?;
        let cursor = match p.get("cursor").map(|s| s.trim()) {
            None | Some("") => None,
            Some(c) => Some(
                unhex(c)
                    .and_then(|b| serde_json::from_slice::<(WireKey, String)>(&b).ok())
                    .map(|(k, id)| (Key::from_wire(k), id))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "`cursor` is not one this server gave out; start again without it",
                        )
                    })?,
            ),
        };
        Ok(MachineQuery {
            q,
            status,
            labels,
            sort,
            desc,
            limit,
            offset,
            cursor,
        })
    }

    /// True when `row` passes the filters.
    pub fn keeps(&self, row: &Row, now: f64, online: f64, offline: f64) -> bool {
        if let Some(q) = &self.q {
            if !row.id_lower.contains(q.as_str()) && !row.host_lower.contains(q.as_str()) {
                return false;
            }
        }
        if !self.status.is_empty() && !self.status.contains(&row.status(now, online, offline)) {
            return false;
        }
        self.labels
            .iter()
            .all(|(k, v)| row.snap.labels.get(k).is_some_and(|x| x == v))
    }

    fn key(&self, row: &Row, now: f64, online: f64, offline: f64) -> Key {
        match self.sort {
            SortBy::MachineId => Key::Text(Some(row.snap.machine_id.clone())),
            SortBy::Hostname => Key::Text(row.snap.hostname.clone()),
            SortBy::Status => Key::Num(Some(match row.status(now, online, offline) {
                Status::Online => 0.0,
                Status::Stale => 1.0,
                Status::Offline => 2.0,
            })),
            SortBy::LastSeen => Key::Num(Some(row.snap.timestamp)),
            SortBy::Metric(m) => Key::Num(row.value(m)),
        }
    }

    fn cmp(&self, a: &(Key, &str), b: &(Key, &str)) -> Ordering {
        cmp_key(&a.0, &b.0, self.desc).then_with(|| natural_cmp(a.1, b.1))
    }

    /// Filters, sorts and pages `fleet`.
    pub fn run<'f>(&self, fleet: &'f Fleet, now: f64, online: f64, offline: f64) -> Page<'f> {
        let mut counts = StatusCounts::default();
        let mut kept: Vec<(Key, &'f Row)> = Vec::new();
        for r in &fleet.rows {
            if !self.keeps(r, now, online, offline) {
                continue;
            }
            counts.add(r.status(now, online, offline));
            kept.push((self.key(r, now, online, offline), r));
        }
        let total = kept.len();
        // Rows are already in natural id order: a stable sort by the key alone
        // keeps that order among equal keys, as `cmp` does.
        if self.sort != SortBy::MachineId || self.desc {
            kept.sort_by(|a, b| cmp_key(&a.0, &b.0, self.desc));
        }
        let start = match &self.cursor {
            Some((k, id)) => {
                let c = (k.clone(), id.as_str());
                kept.partition_point(|(rk, r)| {
                    self.cmp(&(rk.clone(), r.snap.machine_id.as_str()), &c) != Ordering::Greater
                })
            }
            None => self.offset.min(total),
        };
        let end = (start + self.limit).min(total);
        let rows: Vec<&Row> = kept[start..end].iter().map(|(_, r)| *r).collect();
        let next_cursor = if end < total {
            kept.get(end.wrapping_sub(1)).map(|(k, r)| {
                hex(&serde_json::to_vec(&(k.to_wire(), &r.snap.machine_id)).unwrap_or_default())
            })
        } else {
            None
        };
        Page {
            rows,
            total,
            offset: start,
            next_cursor,
            counts,
            kept: kept.into_iter().map(|(_, r)| r).collect(),
        }
    }
}

/// Machines per status.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StatusCounts {
    /// Seen within the online window.
    pub online: usize,
    /// Between online and offline.
    pub stale: usize,
    /// Not seen for longer than the offline threshold.
    pub offline: usize,
}

impl StatusCounts {
    fn add(&mut self, s: Status) {
        match s {
            Status::Online => self.online += 1,
            Status::Stale => self.stale += 1,
            Status::Offline => self.offline += 1,
        }
    }
}

/// One page of the table.
pub struct Page<'f> {
    /// The page's rows.
    pub rows: Vec<&'f Row>,
    /// Machines passing the filters.
    pub total: usize,
    /// Index of the page's first row among them.
    pub offset: usize,
    /// Give this back as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
    /// The filtered machines per status.
    pub counts: StatusCounts,
    /// Every filtered machine, in the page's order (for fleet figures).
    pub kept: Vec<&'f Row>,
}

/// The spread of one metric over a set of machines.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Spread {
    /// Machines with a value.
    pub count: usize,
    /// Mean.
    pub avg: Option<f64>,
    /// Lowest.
    pub min: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile (nearest rank).
    pub p95: Option<f64>,
    /// Highest.
    pub max: Option<f64>,
}

impl Spread {
    /// The spread of `values` (non-finite values are ignored).
    pub fn of(mut values: Vec<f64>) -> Spread {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let rank = |p: f64| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Spread {
            count: n,
            avg: Some(values.iter().sum::<f64>() / n as f64),
            min: Some(values[0]),
            p50: Some(rank(0.5)),
            p95: Some(rank(0.95)),
            max: Some(values[n - 1]),
        }
    }
}

/// The spread of `metric` over `rows`, overall and per value of the label
/// `group` (the `max_groups` largest groups; machines without the label in
/// the group `""`).
pub fn spread_by(
    rows: &[&Row],
    metric: Metric,
    group: Option<&str>,
    max_groups: usize,
) -> (Spread, Vec<(String, Spread)>) {
    let all = Spread::of(rows.iter().filter_map(|r| r.value(metric)).collect());
    let Some(g) = group else {
        return (all, Vec::new());
    };
    let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in rows {
        let k = r.snap.labels.get(g).map(String::as_str).unwrap_or("");
        let e = by.entry(k).or_default();
        if let Some(v) = r.value(metric) {
            e.push(v);
        }
    }
    let mut groups: Vec<(String, Spread)> = by
        .into_iter()
        .map(|(k, v)| (k.to_string(), Spread::of(v)))
        .collect();
    groups.sort_by(|a, b| {
        b.1.count
            .cmp(&a.1.count)
            .then_with(|| natural_cmp(&a.0, &b.0))
    });
    groups.truncate(max_groups);
    (all, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_of_names() {
        let mut v = vec![
            "loadgen-10",
            "loadgen-2",
            "loadgen-1",
            "Loadgen-3",
            "loadgen-002",
            "a",
            "loadgen-100",
            "loadgen-",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            vec![
                "a",
                "loadgen-",
                "loadgen-1",
                "loadgen-002",
                "loadgen-2",
                "Loadgen-3",
                "loadgen-10",
                "loadgen-100"
            ]
        );
        assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
        assert_ne!(natural_cmp("x01", "x1"), Ordering::Equal, "total order");
    }

    #[test]
    fn spread_uses_nearest_rank() {
        let s = Spread::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (s.p50, s.p95, s.max, s.min),
            (Some(50.0), Some(95.0), Some(100.0), Some(1.0))
        );
        assert_eq!(Spread::of(vec![f64::NAN]).count, 0);
    }

    #[test]
    fn hostile_cursor_and_labels_are_errors() {
        let mut p = HashMap::new();
        p.insert("cursor".to_string(), "zz".to_string());
        assert!(MachineQuery::parse(&p).is_err());
        p.insert("cursor".to_string(), "7b7d".to_string());
        assert!(MachineQuery::parse(&p).is_err());
        assert!(parse_labels("role").is_err());
        assert!(parse_labels(":x").is_err());
        assert_eq!(
            parse_labels("role:db, zone=eu").ok(),
            Some(vec![
                ("role".into(), "db".into()),
                ("zone".into(), "eu".into())
            ])
        );
    }
}
