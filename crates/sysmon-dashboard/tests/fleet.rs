//! The fleet-scale API (issue 16) against a real SQLite database filled
//! through the real ingest path: paging, natural sort, search and filters of
//! `/api/machines` and `/api/overview`, `/api/top`, `/api/map`,
//! `/api/fleet/summary`, the bounded `/api/scatter` and `/metrics?machines=`,
//! and hostile parameters (each a 400 naming what is allowed, never a panic).

#[allow(dead_code)] // each includer uses part of it
#[path = "support/seed.rs"]
mod seed;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use seed::{ingest_synthetic, SeedPlan};
use serde_json::Value;
use sysmon_core::config::SqliteConfig;
use sysmon_core::{Sink, Snapshot};
use sysmon_dashboard::fleet::natural_cmp;
use sysmon_dashboard::{now_epoch_secs, Dashboard, HistoryReader};
use sysmon_sinks::sqlite::SqliteSink;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Online machines `loadgen-0` .. `loadgen-{N-1}`.
const N: usize = 230;
/// The machine last seen an hour ago.
const OLD: &str = "old-box";

fn role(id: &str) -> &'static str {
    let n: usize = id
        .rsplit('-')
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    match n % 3 {
        0 => "db",
        1 => "web",
        _ => "cache",
    }
}

fn label(s: &mut Snapshot) {
    s.labels.insert("role".into(), role(&s.machine_id).into());
    // Give every machine a distinct, known CPU so sorts have one answer.
    if let Some(n) = s
        .machine_id
        .strip_prefix("loadgen-")
        .and_then(|d| d.parse::<f64>().ok())
    {
        s.cpu_usage = (n * 37.0) % 100.0 + n / 1000.0;
        // The first machines send host details, with a distinct CPU pressure
        // and busiest container each; the others none (no PSI, no cgroups).
        if n < HOST_DETAIL_MACHINES as f64 {
            sysmon_core::synth::fill_host_details(s);
            if let Some(cpu) = s.pressure.as_mut().and_then(|p| p.cpu.as_mut()) {
                cpu.some.avg10 = pressure_of(n as usize);
            }
            s.top_cpu_cgroups.truncate(1);
            s.top_cpu_cgroups[0].name = format!("svc-{n}");
            s.top_cpu_cgroups[0].cpu_percent = container_cpu_of(n as usize);
        }
    }
}

/// `loadgen-0` .. `loadgen-{HOST_DETAIL_MACHINES - 1}` send host details.
const HOST_DETAIL_MACHINES: usize = 12;

fn pressure_of(n: usize) -> f64 {
    ((n * 7) % 12) as f64 + 0.25
}

fn container_cpu_of(n: usize) -> f64 {
    ((n * 5) % 12) as f64 * 20.0 + 1.5
}

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(
        SqliteSink::open(&SqliteConfig {
            path: dir.path().join("t.db"),
            ..SqliteConfig::default()
        })
        .unwrap(),
    );
    let now = now_epoch_secs().floor();
    let sinks: Vec<Arc<dyn Sink>> = vec![sink.clone()];
    let plan = SeedPlan {
        machines: (0..N).map(|i| format!("loadgen-{i}")).collect(),
        since: now - 60.0,
        until: now,
        step: 20.0,
        processes: 2,
    };
    ingest_synthetic(sinks.clone(), &plan, label).await.unwrap();
    let old = SeedPlan {
        machines: vec![OLD.into()],
        since: now - 3600.0,
        until: now - 3500.0,
        step: 50.0,
        processes: 2,
    };
    ingest_synthetic(sinks, &old, label).await.unwrap();
    let source: Arc<dyn HistoryReader> = sink;
    let app = Dashboard::new(source)
        .into_router(CancellationToken::new())
        .0;
    Fixture { _dir: dir, app }
}

async fn get_text(app: &Router, uri: &str) -> (StatusCode, String) {
    let r = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (s, b) = get_text(app, uri).await;
    (
        s,
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("{uri}: {e}: {b}")),
    )
}

fn ids(v: &Value) -> Vec<String> {
    v["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m.get("machine_id")
                .or_else(|| m["now"].get("machine_id"))
                .and_then(Value::as_str)
                .unwrap()
                .to_string()
        })
        .collect()
}

fn all_ids() -> Vec<String> {
    let mut v: Vec<String> = (0..N).map(|i| format!("loadgen-{i}")).collect();
    v.push(OLD.into());
    v
}

/// Walks every page with `cursor`; returns the ids in order.
async fn walk(app: &Router, path: &str, query: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let c = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let (s, v) = get(app, &format!("{path}?limit={limit}{query}{c}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let page = ids(&v);
        assert!(page.len() <= limit);
        out.extend(page);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
    panic!("paging did not end");
}

#[tokio::test]
async fn machines_page_in_natural_order_with_a_total() {
    let f = fixture().await;
    let (s, v) = get(&f.app, "/api/machines").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["total"], N + 1);
    assert_eq!(v["fleet_total"], N + 1);
    assert_eq!(v["limit"], 100, "a bounded default page");
    let first = ids(&v);
    assert_eq!(first.len(), 100);
    assert_eq!(
        &first[..12],
        &[
            "loadgen-0",
            "loadgen-1",
            "loadgen-2",
            "loadgen-3",
            "loadgen-4",
            "loadgen-5",
            "loadgen-6",
            "loadgen-7",
            "loadgen-8",
            "loadgen-9",
            "loadgen-10",
            "loadgen-11"
        ]
    );
    assert_eq!(v["machines"][0]["labels"]["role"], "db");
    let (_, v) = get(&f.app, "/api/machines?order=desc&limit=3").await;
    assert_eq!(ids(&v), ["old-box", "loadgen-229", "loadgen-228"]);
    let (_, v) = get(&f.app, "/api/machines?sort=hostname&limit=2&offset=10").await;
    assert_eq!(ids(&v), ["loadgen-10", "loadgen-11"]);
    assert_eq!(v["offset"], 10);
    // Past the end: an empty page, not an error.
    let (s, v) = get(&f.app, "/api/machines?offset=5000").await;
    assert_eq!(
        (s, ids(&v).len(), &v["next_cursor"]),
        (StatusCode::OK, 0, &Value::Null)
    );
}

#[tokio::test]
async fn a_cursor_walk_returns_every_machine_exactly_once_in_order() {
    let f = fixture().await;
    let want: BTreeSet<String> = all_ids().into_iter().collect();
    for (path, query) in [
        ("/api/machines", ""),
        ("/api/machines", "&sort=cpu"),
        ("/api/machines", "&sort=cpu&order=asc"),
        ("/api/machines", "&sort=hostname&order=desc"),
        ("/api/machines", "&sort=status"),
        ("/api/machines", "&sort=last_seen"),
        ("/api/machines", "&sort=disk_utilization_percent"),
        ("/api/overview", "&sort=memory&range=5m"),
    ] {
        let got = walk(&f.app, path, query, 37).await;
        assert_eq!(got.len(), N + 1, "{path}{query}: duplicates or gaps");
        let set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(set, want, "{path}{query}");
        // The walk's order is the one-page order.
        let (_, one) = get(&f.app, &format!("{path}?limit=1000{query}")).await;
        assert_eq!(got, ids(&one), "{path}{query}");
    }
    // Sorted by CPU, highest first, as seeded.
    let got = walk(&f.app, "/api/machines", "&sort=cpu", 50).await;
    let cpu = |id: &str| -> f64 {
        id.strip_prefix("loadgen-")
            .and_then(|d| d.parse::<f64>().ok())
            .map(|n| (n * 37.0) % 100.0 + n / 1000.0)
            .unwrap_or(-1.0)
    };
    let ours: Vec<&String> = got.iter().filter(|i| *i != OLD).collect();
    for w in ours.windows(2) {
        assert!(cpu(w[0]) >= cpu(w[1]), "{w:?}");
    }
    // Offsets page the same order.
    let mut by_offset = Vec::new();
    for off in (0..N + 1).step_by(40) {
        let (_, v) = get(
            &f.app,
            &format!("/api/machines?sort=cpu&limit=40&offset={off}"),
        )
        .await;
        by_offset.extend(ids(&v));
    }
    assert_eq!(by_offset, got);
}

#[tokio::test]
async fn search_status_and_label_filters() {
    let f = fixture().await;
    let all = all_ids();
    let (_, v) = get(&f.app, "/api/machines?q=LOADGEN-1&limit=1000").await;
    let mut want: Vec<String> = all
        .iter()
        .filter(|i| i.contains("loadgen-1"))
        .cloned()
        .collect();
    want.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(ids(&v), want);
    assert_eq!(v["total"], want.len());
    // Host names are searched too (synthetic hosts are `<id>.example`).
    let (_, v) = get(&f.app, "/api/machines?q=old-box.example").await;
    assert_eq!(ids(&v), [OLD]);

    let (_, v) = get(&f.app, "/api/machines?status=offline").await;
    assert_eq!(ids(&v), [OLD]);
    assert_eq!(v["status_counts"]["offline"], 1);
    let (_, v) = get(&f.app, "/api/machines?status=online,stale&limit=1").await;
    assert_eq!(v["total"], N);
    assert_eq!(v["status_counts"]["online"], N);

    let (_, v) = get(&f.app, "/api/machines?label=role:db&limit=1000").await;
    let dbs: Vec<String> = all.iter().filter(|i| role(i) == "db").cloned().collect();
    assert_eq!(ids(&v).len(), dbs.len());
    assert!(v["machines"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["labels"]["role"] == "db"));
    let (_, v) = get(
        &f.app,
        "/api/machines?label=role=web&q=loadgen-2&status=online",
    )
    .await;
    for id in ids(&v) {
        assert!(id.contains("loadgen-2") && role(&id) == "web", "{id}");
    }
    let (_, v) = get(&f.app, "/api/machines?label=role:nosuch").await;
    assert_eq!(v["total"], 0);

    // The overview pages the same way, with a trend per row and the fleet's spread.
    let (s, v) = get(
        &f.app,
        "/api/overview?range=5m&label=role:cache&sort=cpu&limit=7",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(ids(&v).len(), 7);
    for r in v["machines"].as_array().unwrap() {
        assert_eq!(r["labels"]["role"], "cache");
        assert!(!r["spark"]["ts"].as_array().unwrap().is_empty(), "{r}");
    }
    let fl = &v["fleet"];
    let (p50, p95, max) = (
        fl["cpu_p50"].as_f64().unwrap(),
        fl["cpu_p95"].as_f64().unwrap(),
        fl["cpu_max"].as_f64().unwrap(),
    );
    assert!(p50 <= p95 && p95 <= max, "{fl}");
    assert_eq!(fl["online"], v["total"]);
}

#[tokio::test]
async fn top_map_and_fleet_spread() {
    let f = fixture().await;
    let (s, top) = get(&f.app, "/api/top?metric=cpu&n=5").await;
    assert_eq!(s, StatusCode::OK, "{top}");
    let (_, sorted) = get(&f.app, "/api/machines?sort=cpu&limit=5").await;
    assert_eq!(ids(&top), ids(&sorted));
    let vals: Vec<f64> = top["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_f64().unwrap())
        .collect();
    assert!(vals.windows(2).all(|w| w[0] >= w[1]), "{vals:?}");
    assert!(vals[0] > 99.0, "{vals:?}");
    let (_, low) = get(&f.app, "/api/top?metric=cpu&n=3&order=asc&label=role:db").await;
    assert_eq!(low["machines"].as_array().unwrap().len(), 3);
    assert_eq!(low["machines"][0]["machine_id"], "loadgen-0");

    let (s, map) = get(&f.app, "/api/map?metric=memory").await;
    assert_eq!(s, StatusCode::OK);
    let mids: Vec<String> = serde_json::from_value(map["ids"].clone()).unwrap();
    assert_eq!(mids.len(), N + 1);
    assert_eq!(map["values"].as_array().unwrap().len(), N + 1);
    assert_eq!(map["status"].as_array().unwrap().len(), N + 1);
    let mut natural = mids.clone();
    natural.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(mids, natural);
    let old = mids.iter().position(|i| i == OLD).unwrap();
    assert_eq!(map["status"][old], 2, "offline");
    // Host names equal to the id are left out (here they are `<id>.example`).
    assert_eq!(map["hosts"][0], "loadgen-0.example");

    let (_, g) = get(&f.app, "/api/map?metric=cpu&group=role").await;
    let groups = g["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    let mut start = 0;
    for gr in groups {
        assert_eq!(gr["start"], start);
        let n = gr["count"].as_u64().unwrap() as usize;
        for i in start..start + n {
            assert_eq!(
                role(g["ids"][i].as_str().unwrap()),
                gr["name"].as_str().unwrap()
            );
        }
        start += n;
    }
    assert_eq!(start, N + 1);

    let (s, sp) = get(&f.app, "/api/fleet/summary?metric=cpu&group=role").await;
    assert_eq!(s, StatusCode::OK, "{sp}");
    assert_eq!(sp["machines"], N, "online machines only by default");
    let all = &sp["spread"];
    assert!(all["p50"].as_f64() <= all["p95"].as_f64());
    assert!(all["p95"].as_f64() <= all["max"].as_f64());
    let counts: u64 = sp["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counts, N as u64);
}

#[tokio::test]
async fn scatter_and_metrics_are_bounded() {
    let f = fixture().await;
    let (s, v) = get(&f.app, "/api/scatter?range=5m&machines=10").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["machines_total"], N + 1);
    assert_eq!(v["machines_shown"], 10);
    assert_eq!(v["sampled"], true);
    let shown: BTreeSet<&str> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["machine_id"].as_str().unwrap())
        .collect();
    assert!(!shown.is_empty() && shown.len() <= 10, "{shown:?}");
    // The busiest machine by CPU is always among the sampled.
    let (_, top) = get(&f.app, "/api/top?metric=cpu&n=1").await;
    assert!(shown.contains(top["machines"][0]["machine_id"].as_str().unwrap()));

    let (s, all) = get_text(&f.app, "/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let per_machine = |t: &str| -> BTreeSet<String> {
        t.lines()
            .filter(|l| l.starts_with("sysmon_cpu_usage_percent{"))
            .map(|l| l.split('"').nth(1).unwrap().to_string())
            .collect()
    };
    assert_eq!(per_machine(&all).len(), N + 1);
    assert!(all.contains(&format!("sysmon_machines {}\n", N + 1)));
    let (_, none) = get_text(&f.app, "/metrics?machines=none").await;
    assert!(!none.contains("machine_id="), "no per-machine series");
    assert!(none.contains(&format!("sysmon_machines {}\n", N + 1)));
    assert!(none.contains("sysmon_machines_exposed 0\n"));
    assert!(
        none.len() * 20 < all.len(),
        "{} vs {}",
        none.len(),
        all.len()
    );
    let (_, three) = get_text(&f.app, "/metrics?machines=3&by=cpu").await;
    let (_, top3) = get(&f.app, "/api/top?metric=cpu&n=3").await;
    let want: BTreeSet<String> = ids(&top3).into_iter().collect();
    assert_eq!(per_machine(&three), want);
}

#[tokio::test]
async fn hostile_parameters_are_clear_400s() {
    let f = fixture().await;
    let long = "x".repeat(300);
    let cases: Vec<(String, &str)> = vec![
        ("/api/machines?limit=100000".into(), "limit"),
        ("/api/machines?limit=0".into(), "limit"),
        ("/api/machines?limit=-1".into(), "limit"),
        ("/api/machines?limit=ten".into(), "limit"),
        ("/api/machines?offset=-3".into(), "offset"),
        ("/api/machines?sort=password".into(), "sort"),
        ("/api/machines?sort=cpu%3Bdrop".into(), "sort"),
        ("/api/machines?order=sideways".into(), "order"),
        ("/api/machines?cursor=not-hex".into(), "cursor"),
        ("/api/machines?cursor=00ff".into(), "cursor"),
        (
            format!("/api/machines?cursor={}", "ab".repeat(5000)),
            "cursor",
        ),
        ("/api/machines?status=sick".into(), "status"),
        ("/api/machines?label=role".into(), "label"),
        (format!("/api/machines?q={long}"), "q"),
        ("/api/overview?limit=5000".into(), "limit"),
        ("/api/overview?sort=nope".into(), "sort"),
        ("/api/top?metric=cpu&n=100000".into(), "n"),
        ("/api/top?metric=nope".into(), "nope"),
        ("/api/map?metric=nope".into(), "nope"),
        (format!("/api/map?group={long}"), "group"),
        ("/api/fleet/summary?metric=nope".into(), "nope"),
        ("/api/scatter?machines=0".into(), "machines"),
        ("/api/scatter?machines=1000000".into(), "machines"),
        ("/metrics?machines=lots".into(), "machines"),
        ("/api/fleet?metric=cpu&group=role&groups=0".into(), "groups"),
        (
            "/api/fleet?metric=cpu&group=role&groups=21".into(),
            "groups",
        ),
        (format!("/api/fleet?metric=cpu&group={long}"), "group"),
        (
            "/api/fleet?metric=cpu&group=role&status=sick".into(),
            "status",
        ),
    ];
    for (uri, names) in &cases {
        let (s, v) = get(&f.app, uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["error"], "bad_request", "{uri}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(names), "{uri}: {msg}");
        assert!(msg.len() < 2000, "{uri}: bounded message");
    }
    let (_, v) = get(&f.app, "/api/machines?sort=bogus").await;
    let allowed: Vec<String> = serde_json::from_value(v["allowed"].clone()).unwrap();
    for want in [
        "machine_id",
        "hostname",
        "status",
        "last_seen",
        "cpu",
        "memory",
    ] {
        assert!(allowed.iter().any(|a| a == want), "{allowed:?}");
    }
    // A cursor from one sort given to another still answers (from where its key falls).
    let (_, v) = get(&f.app, "/api/machines?limit=5").await;
    let c = v["next_cursor"].as_str().unwrap().to_string();
    let (s, _) = get(&f.app, &format!("/api/machines?sort=cpu&cursor={c}")).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn pressure_and_busiest_container_columns_sort_with_absent_values_last() {
    let f = fixture().await;
    let detailed: Vec<String> = (0..HOST_DETAIL_MACHINES)
        .map(|i| format!("loadgen-{i}"))
        .collect();
    let by = |key: fn(usize) -> f64, desc: bool| {
        let mut v: Vec<usize> = (0..HOST_DETAIL_MACHINES).collect();
        v.sort_by(|a, b| {
            let o = key(*a).total_cmp(&key(*b));
            if desc {
                o.reverse()
            } else {
                o
            }
        });
        v.into_iter()
            .map(|i| format!("loadgen-{i}"))
            .collect::<Vec<_>>()
    };
    for order in ["desc", "asc"] {
        let desc = order == "desc";
        // /api/machines: the pressure column.
        let (s, v) = get(
            &f.app,
            &format!("/api/machines?sort=pressure_cpu_some_avg10&order={order}&limit=20"),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["sort"], "pressure_cpu_some_avg10");
        let got = ids(&v);
        assert_eq!(
            got[..HOST_DETAIL_MACHINES],
            by(pressure_of, desc),
            "{order}"
        );
        let ms = v["machines"].as_array().unwrap();
        for (i, m) in ms.iter().enumerate() {
            if i < HOST_DETAIL_MACHINES {
                let n: usize = got[i]["loadgen-".len()..].parse().unwrap();
                assert_eq!(m["pressure_cpu"].as_f64(), Some(pressure_of(n)), "{m}");
                assert_eq!(
                    m["busiest_container"]["name"].as_str(),
                    Some(format!("svc-{n}").as_str())
                );
            } else {
                // Absent, not 0, and after every machine with a value.
                assert_eq!(m["pressure_cpu"], Value::Null, "{m}");
                assert_eq!(m["busiest_container"], Value::Null, "{m}");
            }
        }
        // /api/overview: the busiest container column, by its alias.
        let (s, v) = get(
            &f.app,
            &format!("/api/overview?sort=busiest_container&order={order}&limit=15"),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["sort"], "container_cpu_percent");
        let got = ids(&v);
        assert_eq!(
            got[..HOST_DETAIL_MACHINES],
            by(container_cpu_of, desc),
            "{order}"
        );
        for (i, m) in v["machines"].as_array().unwrap().iter().enumerate() {
            let b = &m["now"]["busiest_container"];
            if i < HOST_DETAIL_MACHINES {
                let n: usize = got[i]["loadgen-".len()..].parse().unwrap();
                assert_eq!(b["cpu_percent"].as_f64(), Some(container_cpu_of(n)), "{b}");
                assert_eq!(b["kind"], "docker", "{b}");
                assert!(m["now"]["pressure_cpu"].is_number(), "{m}");
            } else {
                assert_eq!(b, &Value::Null, "{m}");
                assert_eq!(m["now"]["pressure_cpu"], Value::Null, "{m}");
            }
        }
    }
    // A cursor walk by either column still returns every machine once, the
    // machines without a value last.
    for sort in ["pressure_cpu_some_avg10", "busiest_container"] {
        let walked = walk(&f.app, "/api/overview", &format!("&sort={sort}"), 7).await;
        let mut sorted = walked.clone();
        sorted.sort();
        let mut all = all_ids();
        all.sort();
        assert_eq!(sorted, all, "{sort}");
        let mut first: Vec<String> = walked[..HOST_DETAIL_MACHINES].to_vec();
        first.sort();
        let mut want = detailed.clone();
        want.sort();
        assert_eq!(first, want, "{sort}");
    }
}

/// The SQLite store with a count of the reads that touch machines (a
/// decorator over the real store: every answer is the store's own).
struct CountingReads {
    inner: Arc<SqliteSink>,
    reads: std::sync::atomic::AtomicUsize,
}

impl CountingReads {
    fn count(&self) {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl sysmon_core::SnapshotStore for CountingReads {
    async fn machines(
        &self,
    ) -> Result<Vec<sysmon_core::store::MachineSummary>, sysmon_core::StoreError> {
        self.count();
        self.inner.machines().await
    }
    async fn latest(&self, id: &str) -> Result<Option<Snapshot>, sysmon_core::StoreError> {
        self.count();
        self.inner.latest(id).await
    }
    async fn range(
        &self,
        id: Option<&str>,
        since: f64,
        until: f64,
        limit: usize,
    ) -> Result<Vec<Snapshot>, sysmon_core::StoreError> {
        self.count();
        self.inner.range(id, since, until, limit).await
    }
}

#[async_trait::async_trait]
impl HistoryReader for CountingReads {
    async fn latest_all(&self) -> Result<Vec<Snapshot>, sysmon_core::StoreError> {
        self.count();
        HistoryReader::latest_all(&*self.inner).await
    }
}

#[tokio::test]
async fn metrics_for_no_machine_reads_no_machine() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(
        SqliteSink::open(&SqliteConfig {
            path: dir.path().join("t.db"),
            ..SqliteConfig::default()
        })
        .unwrap(),
    );
    let now = now_epoch_secs().floor();
    let plan = SeedPlan {
        machines: (0..20).map(|i| format!("loadgen-{i}")).collect(),
        since: now - 40.0,
        until: now,
        step: 20.0,
        processes: 1,
    };
    ingest_synthetic(vec![sink.clone() as Arc<dyn Sink>], &plan, label)
        .await
        .unwrap();
    let counting = Arc::new(CountingReads {
        inner: sink,
        reads: Default::default(),
    });
    let source: Arc<dyn HistoryReader> = counting.clone();
    let app = Dashboard::new(source)
        .into_router(CancellationToken::new())
        .0;
    let reads = || counting.reads.load(std::sync::atomic::Ordering::SeqCst);

    // Nothing loaded the fleet index: the process's own series only.
    let (s, none) = get_text(&app, "/metrics?machines=none").await;
    assert_eq!(s, StatusCode::OK, "{none}");
    assert_eq!(reads(), 0, "no store read for machines=none");
    assert!(!none.contains("machine_id="), "{none}");
    assert!(!none.contains("sysmon_cpu_usage_percent"), "{none}");
    assert!(!none.contains("sysmon_machines "), "count unknown: {none}");
    assert!(none.contains("sysmon_machines_exposed 0\n"), "{none}");
    assert!(none.contains("sysmon_dashboard_live_clients 0\n"), "{none}");

    // Once a page loaded the index, its recent count comes along, still
    // without a read of its own.
    let (s, _) = get(&app, "/api/machines?limit=5").await;
    assert_eq!(s, StatusCode::OK);
    let after_page = reads();
    assert!(after_page > 0);
    let (_, none) = get_text(&app, "/metrics?machines=none").await;
    assert_eq!(reads(), after_page, "still no read");
    assert!(none.contains("sysmon_machines 20\n"), "{none}");

    // The default still renders every machine (documented in docs/api.md).
    let (_, all) = get_text(&app, "/metrics").await;
    assert!(reads() > after_page);
    assert!(all.contains("sysmon_machines 20\n"), "{all}");
    assert_eq!(all.matches("sysmon_machine_online{").count(), 20, "{all}");
}

#[tokio::test]
async fn fleet_series_grouped_by_a_label_are_bounded_and_add_up() {
    let f = fixture().await;
    let (s, all) = get(&f.app, "/api/fleet?metric=cpu&range=5m&points=50").await;
    assert_eq!(s, StatusCode::OK, "{all}");
    let (s, g) = get(
        &f.app,
        "/api/fleet?metric=cpu&range=5m&points=50&group=role",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    assert_eq!(g["group"], "role");
    assert_eq!(g["groups_total"], 3);
    assert_eq!(g["machines"], N + 1);
    let groups = g["groups"].as_array().unwrap();
    let names: Vec<&str> = groups.iter().map(|x| x["name"].as_str().unwrap()).collect();
    // Largest first: db has loadgen-0, -3, ... and old-box (78), web 77,
    // cache 76.
    assert_eq!(names, ["db", "web", "cache"], "{g}");
    let sizes: Vec<u64> = groups
        .iter()
        .map(|x| x["machines"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), N as u64 + 1);
    assert!(groups.iter().all(|x| x["other"] == false));
    // The groups partition the fleet: per bucket their machine counts add up
    // to the fleet's, their highest sample is the fleet's, their lowest p50
    // and highest p95 bracket the fleet's median and 95th percentile.
    let col = |v: &Value, k: &str| -> Vec<f64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let ts = col(&all, "ts");
    assert!(!ts.is_empty(), "{all}");
    for (i, t) in ts.iter().enumerate() {
        let mut count = 0.0;
        let mut max = f64::NEG_INFINITY;
        let (mut p50_lo, mut p50_hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for x in groups {
            let gts = col(x, "ts");
            if let Some(k) = gts.iter().position(|u| u == t) {
                count += col(x, "count")[k];
                max = max.max(col(x, "max")[k]);
                p50_lo = p50_lo.min(col(x, "p50")[k]);
                p50_hi = p50_hi.max(col(x, "p50")[k]);
            }
        }
        assert_eq!(count, col(&all, "count")[i], "bucket {t}");
        assert_eq!(max, col(&all, "max")[i], "bucket {t}");
        let p50 = col(&all, "p50")[i];
        assert!(
            p50_lo <= p50 && p50 <= p50_hi,
            "bucket {t}: {p50_lo} {p50} {p50_hi}"
        );
    }
    // Every group's bucket starts are the fleet's (one width).
    for x in groups {
        assert!(col(x, "ts").iter().all(|t| ts.contains(t)), "{x}");
    }

    // Capped: the largest group, then "other" for the rest.
    let (_, one) = get(
        &f.app,
        "/api/fleet?metric=cpu&range=5m&points=50&group=role&groups=1",
    )
    .await;
    let groups = one["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{one}");
    assert_eq!(groups[0]["name"], "db");
    assert_eq!(groups[1]["other"], true);
    assert_eq!(groups[1]["other_groups"], 2);
    assert_eq!(
        groups[0]["machines"].as_u64().unwrap() + groups[1]["machines"].as_u64().unwrap(),
        N as u64 + 1
    );

    // The table's filters choose the machines; a label nobody has is one
    // group "" of every machine.
    let (_, web) = get(
        &f.app,
        "/api/fleet?metric=cpu&range=5m&group=role&label=role:web",
    )
    .await;
    let groups = web["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{web}");
    assert_eq!(groups[0]["name"], "web");
    let (_, none) = get(&f.app, "/api/fleet?metric=cpu&range=5m&group=rack").await;
    assert_eq!(none["groups"][0]["name"], "");
    assert_eq!(none["groups"][0]["machines"], N + 1);
}
