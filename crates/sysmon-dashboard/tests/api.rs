//! API tests against a real SQLite database filled through the real ingest
//! path (`sysmon_core::Ingest` + channel transport + `SqliteSink`), and one
//! against a real redis-server for the live feed.

#[allow(dead_code)] // each includer uses part of it
#[path = "support/seed.rs"]
mod seed;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use seed::{hostile, ingest_synthetic, SeedPlan, HOSTILE_MACHINE_ID, HOSTILE_PROCESS};
use serde_json::Value;
use sysmon_core::config::SqliteConfig;
use sysmon_core::{IngestStats, Sink, SnapshotStore};
use sysmon_dashboard::{now_epoch_secs, Dashboard, HistoryReader};
use sysmon_sinks::sqlite::SqliteSink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const TOKEN: &str = "correct horse battery staple";

struct Fixture {
    _dir: tempfile::TempDir,
    sink: Arc<SqliteSink>,
    now: f64,
}

fn machines() -> Vec<String> {
    vec![
        "web-01".into(),
        "web-02".into(),
        "db-01".into(),
        HOSTILE_MACHINE_ID.into(),
    ]
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
    let plan = SeedPlan {
        machines: machines(),
        since: now - 3600.0,
        until: now,
        step: 5.0,
        processes: 6,
    };
    let sinks: Vec<Arc<dyn Sink>> = vec![sink.clone()];
    let stored = ingest_synthetic(sinks, &plan, hostile).await.unwrap();
    assert_eq!(stored, 4 * 720);
    Fixture {
        _dir: dir,
        sink,
        now,
    }
}

fn app(f: &Fixture, token: Option<&str>) -> Router {
    let source: Arc<dyn HistoryReader> = f.sink.clone();
    let stats = Arc::new(IngestStats::default());
    stats
        .stored
        .store(2880, std::sync::atomic::Ordering::Relaxed);
    Dashboard::new(source)
        .with_ingest_stats(stats)
        .with_auth_token(token.map(str::to_string))
        .into_router(CancellationToken::new())
        .0
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (s, h, b) = send(app, Request::get(uri).body(Body::empty()).unwrap()).await;
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "{uri}: {s} {ct}: {}",
        String::from_utf8_lossy(&b)
    );
    (s, serde_json::from_slice(&b).unwrap())
}

fn enc(id: &str) -> String {
    let mut s = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[tokio::test]
async fn machines_latest_and_processes() {
    let f = fixture().await;
    let app = app(&f, None);
    let (s, v) = get(&app, "/api/machines").await;
    assert_eq!(s, StatusCode::OK);
    let list = v["machines"].as_array().unwrap();
    let ids: BTreeSet<&str> = list
        .iter()
        .map(|m| m["machine_id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = machines();
    assert_eq!(ids, want.iter().map(String::as_str).collect());
    for m in list {
        assert_eq!(m["status"], "online", "{m}");
        assert!(m["last_seen"].as_f64().unwrap() >= f.now - 6.0);
        assert!(m["hostname"].is_string());
    }

    let (s, v) = get(&app, "/api/machines/web-01/latest").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["machine_id"], "web-01");
    assert!(v["cpu_per_core"].as_array().unwrap().len() >= 2);
    let stored = f.sink.latest("web-01").await.unwrap().unwrap();
    assert_eq!(v["timestamp"].as_f64().unwrap(), stored.timestamp);
    assert_eq!(v["cpu_usage"].as_f64().unwrap(), stored.cpu_usage);

    // The hostile machine is reachable by its percent-encoded id, and its
    // process name comes back verbatim (as JSON text, for the page to render as text).
    let (s, v) = get(
        &app,
        &format!("/api/machines/{}/processes", enc(HOSTILE_MACHINE_ID)),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["machine_id"], HOSTILE_MACHINE_ID);
    assert_eq!(v["top_cpu"][0]["name"], HOSTILE_PROCESS);
    assert_eq!(v["top_mem"][0]["name"], HOSTILE_PROCESS);

    let (s, v) = get(&app, "/api/machines/nope/latest").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
    for path in [
        "processes",
        "forecast",
        "series?metric=cpu&range=1h",
        "cores?range=5m",
    ] {
        let (s, v) = get(&app, &format!("/api/machines/nope/{path}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
        assert_eq!(v["error"], "not_found");
    }
}

#[tokio::test]
async fn series_are_downsampled_with_true_extremes() {
    let f = fixture().await;
    let app = app(&f, None);
    let (s, v) = get(&app, "/api/machines/db-01/series?metric=cpu&range=1h").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["metric"], "cpu");
    assert_eq!(v["unit"], "percent");
    let ts = v["ts"].as_array().unwrap();
    assert!(!ts.is_empty() && ts.len() <= 1000, "{}", ts.len());
    let col = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (min, max, avg, count) = (col("min"), col("max"), col("avg"), col("count"));
    for i in 0..ts.len() {
        assert!(min[i] <= avg[i] + 1e-9 && avg[i] <= max[i] + 1e-9);
    }
    // Every stored sample is in some bucket, and the extremes survive downsampling.
    let raw = f
        .sink
        .range(Some("db-01"), f.now - 3600.0, f.now + 1.0, 100_000)
        .await
        .unwrap();
    let in_range: Vec<_> = raw
        .iter()
        .filter(|s| s.timestamp >= v["since"].as_f64().unwrap())
        .collect();
    assert_eq!(count.iter().sum::<f64>() as usize, in_range.len());
    let raw_max = in_range
        .iter()
        .map(|s| s.cpu_usage)
        .fold(f64::MIN, f64::max);
    assert!((max.iter().copied().fold(f64::MIN, f64::max) - raw_max).abs() < 1e-9);

    // Fewer points on request; rates, not counters.
    let (_, v) = get(
        &app,
        "/api/machines/db-01/series?metric=disk_read&range=1h&points=50",
    )
    .await;
    assert!(v["ts"].as_array().unwrap().len() <= 50);
    assert!(
        v["avg"][0].as_f64().unwrap() < 1e8,
        "a rate in bytes/s, not a cumulative counter"
    );
    assert_eq!(v["unit"], "bytes/s");

    // Every documented range answers.
    for r in ["5m", "15m", "1h", "6h", "24h", "7d"] {
        let (s, v) = get(
            &app,
            &format!("/api/machines/web-01/series?metric=memory&range={r}"),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{r}: {v}");
        assert!(v["ts"].as_array().unwrap().len() <= 1000);
        assert!(!v["ts"].as_array().unwrap().is_empty(), "{r}");
    }
    // A zoom window by epoch seconds.
    let (s, v) = get(
        &app,
        &format!(
            "/api/machines/web-01/series?metric=cpu&since={}&until={}",
            f.now - 600.0,
            f.now - 300.0
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let ts = v["ts"].as_array().unwrap();
    assert!(
        ts.iter()
            .all(|t| t.as_f64().unwrap() >= f.now - 600.0 - 1.0
                && t.as_f64().unwrap() < f.now - 300.0)
    );

    // Per-core CPU.
    let (s, v) = get(&app, "/api/machines/web-01/cores?range=15m").await;
    assert_eq!(s, StatusCode::OK);
    let cores = v["cores"].as_array().unwrap();
    assert!(cores.len() >= 2);
    assert_eq!(
        cores[0].as_array().unwrap().len(),
        v["ts"].as_array().unwrap().len()
    );
}

#[tokio::test]
async fn fleet_avg_and_max() {
    let f = fixture().await;
    let app = app(&f, None);
    let (s, avg) = get(&app, "/api/fleet?metric=cpu&range=1h&agg=avg").await;
    assert_eq!(s, StatusCode::OK, "{avg}");
    let (_, max) = get(&app, "/api/fleet?metric=cpu&range=1h&agg=max").await;
    assert_eq!(avg["agg"], "avg");
    let a = avg["value"].as_array().unwrap();
    let m = max["value"].as_array().unwrap();
    assert!(!a.is_empty() && a.len() <= 1000);
    assert_eq!(a.len(), m.len());
    for i in 0..a.len() {
        assert!(a[i].as_f64().unwrap() <= m[i].as_f64().unwrap() + 1e-9);
    }
    assert!(avg["count"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.as_u64() == Some(4)));

    let (s, v) = get(&app, "/api/overview?range=15m").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["machines"].as_array().unwrap().len(), 4);
    assert_eq!(v["fleet"]["online"], 4);
    assert!(!v["machines"][0]["spark"]["avg"]
        .as_array()
        .unwrap()
        .is_empty());

    let (s, v) = get(&app, "/api/scatter?range=15m").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["points"].as_array().unwrap().len() >= 4);
}

#[tokio::test]
async fn bad_parameters_are_400_json_naming_the_allowed_values() {
    let f = fixture().await;
    let app = app(&f, None);
    let (s, v) = get(&app, "/api/machines/web-01/series?metric=cpux&range=1h").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "bad_request");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("cpu, memory, disk_read"),
        "{v}"
    );
    assert!(v["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == "net_recv"));
    let (s, v) = get(&app, "/api/machines/web-01/series?metric=cpu&range=2h").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("5m, 15m, 1h, 6h, 24h, 7d"),
        "{v}"
    );
    let (s, v) = get(&app, "/api/machines/web-01/series?range=1h").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("metric"));
    let (s, v) = get(&app, "/api/fleet?metric=cpu&range=1h&agg=sum").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["allowed"], serde_json::json!(["avg", "max"]));
    let (s, _) = get(&app, "/api/machines/web-01/series?metric=cpu&points=999999").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = get(
        &app,
        "/api/machines/web-01/series?metric=cpu&since=10&until=5",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = get(&app, "/api/nothing-here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"], "not_found");
    let (s, _, b) = send(
        &app,
        Request::delete("/api/machines")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["error"], "method_not_allowed");
    // Errors carry no internals.
    assert!(!String::from_utf8_lossy(&b).contains("sqlite"));
}

#[tokio::test]
async fn auth_bearer_cookie_and_open_healthz() {
    let f = fixture().await;
    let app = app(&f, Some(TOKEN));
    // Nothing but /healthz (and the login form) without the token.
    for uri in [
        "/api/machines",
        "/metrics",
        "/api/events",
        "/assets/app.js",
        "/api/machines/web-01/latest",
    ] {
        let (s, h, b) = send(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(h.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"], "unauthorized");
    }
    let (s, v) = get(&app, "/healthz").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    // A browser asking for the page is sent to the login form.
    let (s, h, _) = send(
        &app,
        Request::get("/")
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(s.is_redirection());
    assert_eq!(h.get(header::LOCATION).unwrap(), "/login");
    let (s, _, b) = send(&app, Request::get("/login").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8_lossy(&b).contains("name=\"token\""));

    // Bearer.
    let bearer = |uri: &str, t: &str| {
        Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap()
    };
    let (s, _, _) = send(&app, bearer("/api/machines", TOKEN)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = send(&app, bearer("/api/machines", "correct horse battery stapl")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = send(
        &app,
        bearer("/api/machines", "correct horse battery staplf"),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The login form: a wrong token is refused, the right one sets an HttpOnly cookie.
    let form = |t: &str| {
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={}", t.replace(' ', "+"))))
            .unwrap()
    };
    let (s, h, _) = send(&app, form("wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(h.get(header::SET_COOKIE).is_none());
    let (s, h, _) = send(&app, form(TOKEN)).await;
    assert!(s.is_redirection(), "{s}");
    let cookie = h
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let (s, _, b) = send(
        &app,
        Request::get("/api/machines")
            .header(header::COOKIE, &pair)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&b).unwrap()["machines"].is_array());
    let (s, _, _) = send(
        &app,
        Request::get("/api/machines")
            .header(header::COOKIE, "sysmon_session=00")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn body_limits_apply_to_every_route() {
    let f = fixture().await;
    for token in [None, Some(TOKEN)] {
        let app = app(&f, token);
        for uri in ["/login", "/api/machines", "/healthz", "/nowhere"] {
            let big = vec![b'a'; 1 << 20];
            let req = Request::builder()
                .method(Method::POST)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::CONTENT_LENGTH, big.len())
                .body(Body::from(big))
                .unwrap();
            let (s, h, b) = send(&app, req).await;
            assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{uri} {token:?}");
            assert!(h
                .get(header::CONTENT_TYPE)
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("application/json"));
            let v: Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["error"], "payload_too_large");
        }
    }
}

#[tokio::test]
async fn prometheus_exposition() {
    let f = fixture().await;
    let app = app(&f, None);
    let (s, h, b) = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h
        .get(header::CONTENT_TYPE)
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(b).unwrap();
    let latest = f.sink.latest("web-02").await.unwrap().unwrap();
    assert!(
        text.contains(&format!(
            "sysmon_cpu_usage_percent{{machine_id=\"web-02\"}} {}",
            latest.cpu_usage
        )),
        "{text}"
    );
    assert!(text.contains("sysmon_machine_online{machine_id=\"web-01\"} 1"));
    assert!(text.contains("sysmon_ingest_stored_total 2880"));
    assert!(text.contains("sysmon_machines 4"));
    // The hostile id is escaped: one sample line, the label value intact.
    assert!(
        text.contains("sysmon_cpu_usage_percent{machine_id=\"evil\\\"<svg onload=alert(3)>\"} "),
        "{text}"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

#[tokio::test]
async fn assets_are_embedded_with_security_headers() {
    let f = fixture().await;
    let app = app(&f, None);
    let (s, h, b) = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8_lossy(&b).contains("/assets/app.js"));
    let csp = h
        .get(header::CONTENT_SECURITY_POLICY)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
    let (s, h, b) = send(
        &app,
        Request::get("/assets/vendor/uPlot.esm.js")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(b.len() > 20_000, "uPlot is embedded");
    assert!(h
        .get(header::CONTENT_TYPE)
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let etag = h.get(header::ETAG).unwrap().clone();
    let (s, _, _) = send(
        &app,
        Request::get("/assets/vendor/uPlot.esm.js")
            .header(header::IF_NONE_MATCH, etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    // Compressed for clients that ask.
    let req = Request::get("/api/overview?range=15m")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap();
    let (s, h, b) = send(&app, req).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.get(header::CONTENT_ENCODING).unwrap(), "gzip");
    assert_eq!(&b[..2], &[0x1f, 0x8b]);
    let (s, _, _) = send(
        &app,
        Request::get("/assets/../Cargo.toml")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Analytics are honestly absent until wired.
    let (s, v) = get(&app, "/api/alerts").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["available"], false);
    assert_eq!(v["alerts"], serde_json::json!([]));
    let (_, v) = get(&app, "/api/anomalies?range=24h").await;
    assert_eq!(v["anomalies"], serde_json::json!([]));
    let (s, v) = get(&app, "/api/machines/web-01/forecast").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["forecasts"], serde_json::json!([]));
}

/// Reads from an SSE response until `needle` appears (or the deadline passes).
async fn read_until(stream: &mut tokio::net::TcpStream, needle: &str, secs: u64) -> String {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut chunk = [0u8; 8192];
    while !String::from_utf8_lossy(&buf).contains(needle) {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} in time; got {}",
                    String::from_utf8_lossy(&buf)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "stream closed; got {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

async fn open_events(addr: std::net::SocketAddr, query: &str) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        // Browsers always offer gzip; the event stream must stay uncompressed.
        format!("GET /api/events{query} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAccept-Encoding: gzip\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_are_pushed_from_the_ingest_broadcast() {
    let f = fixture().await;
    // A second ingester writing into the same store, its broadcast feeding the dashboard.
    let (tx, _) = tokio::sync::broadcast::channel(16);
    let source: Arc<dyn HistoryReader> = f.sink.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(
        Dashboard::new(source)
            .with_live(tx.clone(), "in-process")
            .serve(listener, stop.clone()),
    );
    let mut es = open_events(addr, "?machine=web-01").await;
    let hello = read_until(&mut es, "event: hello", 5).await;
    assert!(hello.contains("text/event-stream"), "{hello}");
    assert!(hello.contains("in-process"));

    let mut s =
        sysmon_core::synth::SyntheticMachine::new("web-01", 5).next_snapshot(now_epoch_secs(), 3);
    s.cpu_usage = 42.25;
    f.sink.write(vec![s.clone()].into()).await.unwrap();
    tx.send(vec![s].into()).unwrap();
    let got = read_until(&mut es, "event: snapshot", 5).await;
    assert!(got.contains("event: batch"));
    assert!(got.contains("\"cpu\":42.25"), "{got}");

    // Shutdown closes the stream and the server returns.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_from_polling_the_store_when_no_feed_is_given() {
    let f = fixture().await;
    let source: Arc<dyn HistoryReader> = f.sink.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(Dashboard::new(source).serve(listener, stop.clone()));
    let mut es = open_events(addr, "").await;
    read_until(&mut es, "event: hello", 5).await;
    let now = now_epoch_secs().floor();
    let plan = SeedPlan {
        machines: vec!["late-01".into()],
        since: now,
        until: now + 1.0,
        step: 1.0,
        processes: 2,
    };
    ingest_synthetic(vec![f.sink.clone() as Arc<dyn Sink>], &plan, |_| {})
        .await
        .unwrap();
    let got = read_until(&mut es, "late-01", 10).await;
    assert!(got.contains("event: batch"));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_through_redis_pubsub() {
    use sysmon_core::config::RedisConfig;
    use sysmon_sinks::redis::{RedisHistory, RedisLiveFeed, RedisSink, RedisStore};

    let redis = sysmon_testkit::redis_server::RedisServer::start();
    let f = fixture().await;
    let config = RedisConfig {
        url: Some(redis.url()),
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(&config).await.unwrap();
    let stop = CancellationToken::new();
    let feed = Arc::new(RedisLiveFeed::new(&redis.url(), store.clone()));
    let source: Arc<dyn HistoryReader> = Arc::new(RedisHistory::new(f.sink.clone(), store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        Dashboard::new(source)
            .with_live_feed(feed)
            .serve(listener, stop.clone()),
    );
    let mut es = open_events(addr, "?machine=redis-01").await;
    read_until(&mut es, "event: hello", 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the feed subscribes

    // An ingester in "another process": SQLite + Redis sinks through the real ingest path.
    let sink = Arc::new(RedisSink::connect(&config).await.unwrap());
    let now = now_epoch_secs().floor();
    let plan = SeedPlan {
        machines: vec!["redis-01".into()],
        since: now - 2.0,
        until: now,
        step: 1.0,
        processes: 3,
    };
    ingest_synthetic(vec![f.sink.clone() as Arc<dyn Sink>, sink], &plan, |_| {})
        .await
        .unwrap();
    let got = read_until(&mut es, "event: snapshot", 10).await;
    assert!(got.contains("redis-01"), "{got}");

    // Reads through the query layer see the machine too.
    let app = Dashboard::new(Arc::new(RedisHistory::new(
        f.sink.clone(),
        RedisStore::connect(&config).await.unwrap(),
    )))
    .into_router(CancellationToken::new())
    .0;
    let (s, v) = get(&app, "/api/machines/redis-01/latest").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = get(&app, "/api/machines").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["machines"].as_array().unwrap().len(), 5);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// One HTTP/1.1 request from the local address `from` (any of 127.0.0.0/8):
/// the status code and the raw response head.
async fn request_from(
    addr: std::net::SocketAddr,
    from: [u8; 4],
    head_and_body: &str,
) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(head_and_body.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn login_request(token: &str) -> String {
    let body = format!("token={}", token.replace(' ', "+"));
    format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_limited_per_client_address() {
    use sysmon_dashboard::guesses::MAX_FAILURES;
    let f = fixture().await;
    let source: Arc<dyn HistoryReader> = f.sink.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(
        Dashboard::new(source)
            .with_auth_token(Some(TOKEN.to_string()))
            .serve(listener, stop.clone()),
    );
    let guesser = [127, 0, 0, 1];
    for i in 0..MAX_FAILURES {
        let wrong = if i % 2 == 0 {
            login_request(&format!("guess {i}"))
        } else {
            format!(
                "GET /api/machines HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Authorization: Bearer guess-{i}\r\n\r\n"
            )
        };
        let (status, head) = request_from(addr, guesser, &wrong).await;
        assert_eq!(status, 401, "guess {i}: {head}");
    }
    // The allowance used up: even the right token is refused unchecked, on the
    // form and as a bearer, with a Retry-After.
    let (status, head) = request_from(addr, guesser, &login_request(TOKEN)).await;
    assert_eq!(status, 429, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
    assert!(!head.contains("sysmon_session="), "no cookie: {head}");
    let bearer = format!(
        "GET /api/machines HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\n\r\n"
    );
    let (status, head) = request_from(addr, guesser, &bearer).await;
    assert_eq!(status, 429, "{head}");
    // Without a credential the answer is the usual 401; /healthz stays open.
    let plain = "GET /api/machines HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(request_from(addr, guesser, plain).await.0, 401);
    let health = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(request_from(addr, guesser, health).await.0, 200);
    // Another address is not affected: it signs in.
    let (status, head) = request_from(addr, [127, 0, 0, 2], &login_request(TOKEN)).await;
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("sysmon_session="), "{head}");
    let (status, _) = request_from(addr, [127, 0, 0, 2], &bearer).await;
    assert_eq!(status, 200);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
