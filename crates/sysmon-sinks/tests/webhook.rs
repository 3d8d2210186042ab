//! `WebhookNotifier` against a real local HTTP(S) server started by each test
//! (tokio `TcpListener` + hyper, TLS with a private CA from rcgen).
//! No timing assertions: waits are bounded, and only what arrived and the
//! counters are checked.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sysmon_analytics::alerts::{AlertEvent, AlertState, Severity, WebhookConfig};
use sysmon_analytics::notify::{AlertNotifier, LogNotifier};
use sysmon_sinks::webhook::{WebhookNotifier, WebhookOptions, WebhookStats};
use tokio::net::TcpListener;

/// What the server answers to one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Sleep this long, then answer 200 (past the client's timeout).
    Hang(Duration),
}

#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    /// Replies in order; once empty, `otherwise`.
    script: Mutex<VecDeque<Reply>>,
    otherwise: Mutex<Option<Reply>>,
}

struct Server {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Server {
    /// A plain HTTP server on a free port answering `script`, then `otherwise`
    /// (200 if `None`).
    async fn start(script: &[Reply], otherwise: Option<Reply>) -> Server {
        Server::start_inner(script, otherwise, None).await
    }

    async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> Server {
        Server::start_inner(&[], None, Some(acceptor)).await
    }

    async fn start_inner(
        script: &[Reply],
        otherwise: Option<Reply>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            script: Mutex::new(script.iter().copied().collect()),
            otherwise: Mutex::new(otherwise),
            ..State::default()
        });
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Server { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    state.received.lock().unwrap().push(Received {
        path,
        content_type,
        body,
    });
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or(*state.otherwise.lock().unwrap())
        .unwrap_or(Reply::Status(200));
    let status = match reply {
        Reply::Status(s) => s,
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            200
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    Ok(resp)
}

/// A target that sends what is queued at once (no grouping wait, no rate
/// limit): one event, one request, as before grouping existed.
fn target(url: &str) -> WebhookConfig {
    WebhookConfig {
        timeout: Duration::from_secs(5),
        retries: 3,
        backoff: Duration::from_millis(10),
        group_wait: Duration::ZERO,
        rate_limit: 0,
        ..WebhookConfig::new(url)
    }
}

fn event(rule: &str, severity: Severity, state: AlertState) -> AlertEvent {
    AlertEvent {
        rule: rule.to_string(),
        severity,
        machine_id: Some("web-01".into()),
        subject: Some("/data".into()),
        state,
        value: 93.5,
        at: 1_764_086_400.25,
        message: "cpu_usage 93.5 % > 80 % for 30s".into(),
    }
}

/// Waits (bounded) until the queues drained; fails the test otherwise.
async fn drained(n: &WebhookNotifier) -> Vec<WebhookStats> {
    assert!(
        n.flush(Duration::from_secs(60)).await,
        "queues did not drain: {:?}",
        n.stats()
    );
    n.stats()
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_arrives_as_json_with_its_fields() {
    let server = Server::start(&[], None).await;
    let n = WebhookNotifier::new(&[target(&server.url())]).unwrap();
    let ev = event("cpu_high", Severity::Warning, AlertState::Firing);
    n.notify(&ev);
    let stats = drained(&n).await;
    assert_eq!(stats[0].sent, 1, "{stats:?}");
    assert_eq!((stats[0].failed, stats[0].dropped), (0, 0));
    assert_eq!(stats[0].attempts, 1);
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hook");
    assert_eq!(got[0].content_type.as_deref(), Some("application/json"));
    let v = json(&got[0].body);
    assert_eq!(v["source"], "sysmon");
    assert_eq!(v["rule"], "cpu_high");
    assert_eq!(v["severity"], "warning");
    assert_eq!(v["machine_id"], "web-01");
    assert_eq!(v["subject"], "/data");
    assert_eq!(v["state"], "firing");
    assert_eq!(v["value"], 93.5);
    assert_eq!(v["at"], 1_764_086_400.25);
    assert_eq!(v["message"], ev.message);
    // The body is the event: it deserialises back into the same AlertEvent.
    let back: AlertEvent = serde_json::from_value(v).unwrap();
    assert_eq!(back, ev);
    assert_eq!(stats[0].target, format!("http://{}/hook", server.addr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_failures_then_success_is_three_requests_and_sent() {
    let server = Server::start(&[Reply::Status(500), Reply::Status(500)], None).await;
    let n = WebhookNotifier::new(&[target(&server.url())]).unwrap();
    n.notify(&event("cpu_high", Severity::Warning, AlertState::Firing));
    let stats = drained(&n).await;
    assert_eq!(server.received().len(), 3);
    assert_eq!(stats[0].sent, 1, "{stats:?}");
    assert_eq!(stats[0].failed, 0);
    assert_eq!(stats[0].attempts, 3);
    // The same body every time.
    let bodies: Vec<Vec<u8>> = server.received().into_iter().map(|r| r.body).collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_failing_target_ends_failed_after_one_plus_retries_attempts() {
    let server = Server::start(&[], Some(Reply::Status(503))).await;
    let n = WebhookNotifier::new(&[WebhookConfig {
        retries: 2,
        ..target(&server.url())
    }])
    .unwrap();
    n.notify(&event("cpu_high", Severity::Warning, AlertState::Firing));
    let stats = drained(&n).await;
    assert_eq!(server.received().len(), 3);
    assert_eq!((stats[0].sent, stats[0].failed), (0, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_is_not_retried() {
    let server = Server::start(&[Reply::Status(404)], None).await;
    let n = WebhookNotifier::new(&[target(&server.url())]).unwrap();
    n.notify(&event("cpu_high", Severity::Warning, AlertState::Firing));
    let stats = drained(&n).await;
    assert_eq!(server.received().len(), 1);
    assert_eq!((stats[0].sent, stats[0].failed), (0, 1), "{stats:?}");
    // 429 (rate limited) is worth a retry.
    let server = Server::start(&[Reply::Status(429)], None).await;
    let n = WebhookNotifier::new(&[target(&server.url())]).unwrap();
    n.notify(&event("cpu_high", Severity::Warning, AlertState::Firing));
    let stats = drained(&n).await;
    assert_eq!(server.received().len(), 2);
    assert_eq!((stats[0].sent, stats[0].failed), (1, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_answers_fails_and_notify_never_blocks() {
    // Every request hangs far past the 100 ms timeout.
    let server = Server::start(&[], Some(Reply::Hang(Duration::from_secs(30)))).await;
    let cfg = WebhookConfig {
        timeout: Duration::from_millis(100),
        retries: 1,
        backoff: Duration::from_millis(10),
        ..target(&server.url())
    };
    let options = WebhookOptions {
        queue_capacity: 4,
        ..WebhookOptions::default()
    };
    let n = WebhookNotifier::with_options(&[cfg], options).unwrap();

    // One event: two attempts (1 + retries), both time out, then failed.
    n.notify(&event("cpu_high", Severity::Warning, AlertState::Firing));
    let stats = drained(&n).await;
    assert_eq!((stats[0].sent, stats[0].failed), (0, 1), "{stats:?}");
    assert_eq!(stats[0].attempts, 2);
    // The server saw both attempts (bounded wait: a request may still be in flight).
    for _ in 0..500 {
        if server.received().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.received().len(), 2);

    // A flood while the target hangs: every call returns, the queue fills, the
    // rest is dropped and counted. queued + dropped adds up to what was notified.
    const FLOOD: u64 = 10_000;
    for i in 0..FLOOD {
        n.notify(&event(
            &format!("r{i}"),
            Severity::Critical,
            AlertState::Firing,
        ));
    }
    let s = &n.stats()[0];
    assert_eq!(s.queued - 1 + s.dropped, FLOOD, "{s:?}");
    assert!(s.dropped > 0 && s.dropped < FLOOD, "queue of 4: {s:?}");
    // What was queued is given up in turn, attempts = 2 per event.
    let stats = drained(&n).await;
    let s = &stats[0];
    assert_eq!(s.sent, 0);
    assert_eq!(s.failed, s.queued, "{s:?}");
    assert_eq!(s.attempts, 2 * s.failed);
    assert_eq!(s.queued + s.dropped, FLOOD + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_targets_get_a_text_body() {
    let server = Server::start(&[], None).await;
    let n = WebhookNotifier::new(&[WebhookConfig {
        slack: true,
        ..target(&server.url())
    }])
    .unwrap();
    n.notify(&event("cpu_high", Severity::Warning, AlertState::Firing));
    let mut resolved = event("cpu_high", Severity::Warning, AlertState::Resolved);
    resolved.machine_id = None;
    resolved.subject = None;
    resolved.message = "fleet cpu back to 41 %".into();
    n.notify(&resolved);
    drained(&n).await;
    let got = server.received();
    assert_eq!(got.len(), 2);
    let texts: Vec<String> = got
        .iter()
        .map(|r| {
            let v = json(&r.body);
            let obj = v.as_object().unwrap();
            assert_eq!(obj.len(), 1, "only `text`: {v}");
            obj["text"].as_str().unwrap().to_string()
        })
        .collect();
    // `>` escaped as Slack asks (it shows `>`); see slack_text.
    assert_eq!(
        texts[0],
        ":rotating_light: *FIRING* [warning] cpu_high on web-01 (/data): cpu_usage 93.5 % &gt; 80 % for 30s"
    );
    assert_eq!(
        texts[1],
        ":white_check_mark: *RESOLVED* [warning] cpu_high on the fleet: fleet cpu back to 41 %"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_below_min_severity_are_skipped_per_target() {
    let critical_only = Server::start(&[], None).await;
    let everything = Server::start(&[], None).await;
    let n = WebhookNotifier::new(&[
        WebhookConfig {
            min_severity: Severity::Critical,
            ..target(&critical_only.url())
        },
        target(&everything.url()),
    ])
    .unwrap();
    for sev in [Severity::Info, Severity::Warning, Severity::Critical] {
        n.notify(&event("r", sev, AlertState::Firing));
    }
    let stats = drained(&n).await;
    assert_eq!((stats[0].sent, stats[0].skipped), (1, 2), "{stats:?}");
    assert_eq!((stats[1].sent, stats[1].skipped), (3, 0), "{stats:?}");
    let got = critical_only.received();
    assert_eq!(got.len(), 1);
    assert_eq!(json(&got[0].body)["severity"], "critical");
    assert_eq!(everything.received().len(), 3);
    let t = n.totals();
    assert_eq!((t.sent, t.skipped, t.failed, t.dropped), (4, 2, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_and_a_clear_failure_without_it() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let tls = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let server = Server::start_tls(tokio_rustls::TlsAcceptor::from(Arc::new(tls))).await;
    let url = format!("https://localhost:{}/hook", server.addr.port());

    let trusted = WebhookNotifier::with_options(
        &[target(&url)],
        WebhookOptions {
            extra_root_certs_pem: vec![ca.pem().into_bytes()],
            ..WebhookOptions::default()
        },
    )
    .unwrap();
    trusted.notify(&event("cpu_high", Severity::Warning, AlertState::Firing));
    let stats = drained(&trusted).await;
    assert_eq!((stats[0].sent, stats[0].failed), (1, 0), "{stats:?}");
    assert_eq!(json(&server.received()[0].body)["rule"], "cpu_high");

    // Without the CA the certificate is refused: failed, nothing received.
    let untrusted = WebhookNotifier::new(&[WebhookConfig {
        retries: 0,
        ..target(&url)
    }])
    .unwrap();
    untrusted.notify(&event("cpu_high", Severity::Warning, AlertState::Firing));
    let stats = drained(&untrusted).await;
    assert_eq!((stats[0].sent, stats[0].failed), (0, 1), "{stats:?}");
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn bad_targets_are_refused_when_built() {
    for url in ["ftp://example.com/x", "not a url", "http://"] {
        let e = WebhookNotifier::new(&[target(url)]).unwrap_err();
        assert!(e.to_string().contains("webhook"), "{url}: {e}");
    }
    let e = WebhookNotifier::new(&[WebhookConfig {
        timeout: Duration::ZERO,
        ..target("http://127.0.0.1:9/x")
    }])
    .unwrap_err();
    assert!(e.to_string().contains("timeout"), "{e}");
    let e = WebhookNotifier::with_options(
        &[target("http://127.0.0.1:9/x")],
        WebhookOptions {
            queue_capacity: 0,
            ..WebhookOptions::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("capacity"), "{e}");
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let e = WebhookNotifier::new(&[target("http://127.0.0.1:9/x")]).unwrap_err();
    assert!(e.to_string().contains("tokio runtime"), "{e}");
}

/// A `MakeWriter` collecting log output.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

#[test]
fn the_log_notifier_writes_a_warning_when_firing_and_info_when_resolved() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let n: Arc<dyn AlertNotifier> = Arc::new(LogNotifier);
        n.notify(&event("cpu_high", Severity::Warning, AlertState::Firing));
        n.notify(&event("cpu_high", Severity::Warning, AlertState::Resolved));
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert!(
        lines[0].contains("alert firing: cpu_usage 93.5 %"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("INFO"), "{}", lines[1]);
    assert!(lines[1].contains("alert resolved"), "{}", lines[1]);
    for l in &lines {
        for field in [
            "rule=cpu_high",
            "machine=web-01",
            "subject=/data",
            "value=93.5",
        ] {
            assert!(l.contains(field), "{field} missing in {l}");
        }
    }
}

fn machine_event(rule: &str, machine: &str, state: AlertState) -> AlertEvent {
    AlertEvent {
        machine_id: Some(machine.to_string()),
        subject: None,
        message: format!("{rule} on {machine}"),
        ..event(rule, Severity::Warning, state)
    }
}

/// Waits (bounded) until the server received `n` requests; returns them.
async fn received_at_least(server: &Server, n: usize) -> Vec<Received> {
    for _ in 0..600 {
        if server.received().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.received()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_340_machines_is_one_request_listing_a_bounded_few() {
    let plain = Server::start(&[], None).await;
    let slack = Server::start(&[], None).await;
    let grouped = |url: &str, slack: bool| WebhookConfig {
        group_wait: Duration::from_secs(2),
        max_listed: 10,
        slack,
        ..target(url)
    };
    let n =
        WebhookNotifier::new(&[grouped(&plain.url(), false), grouped(&slack.url(), true)]).unwrap();
    for i in 0..340 {
        n.notify(&machine_event(
            "cpu_high",
            &format!("web-{i:03}"),
            AlertState::Firing,
        ));
    }
    n.notify(&machine_event("memory_high", "db-01", AlertState::Firing));
    let stats = drained(&n).await;
    for s in &stats {
        assert_eq!((s.sent, s.failed, s.dropped), (341, 0, 0), "{s:?}");
        assert_eq!(s.requests, 2, "{s:?}");
    }
    let got = plain.received();
    assert_eq!(got.len(), 2, "one request per rule");
    let storm = json(&got[0].body);
    assert_eq!(storm["source"], "sysmon");
    assert_eq!(storm["rule"], "cpu_high");
    assert_eq!(storm["state"], "firing");
    assert_eq!(storm["count"], 340);
    assert_eq!(storm["more"], 330);
    let machines: Vec<&str> = storm["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(machines.len(), 10);
    assert_eq!(machines[0], "web-000");
    assert_eq!(machines[9], "web-009");
    assert_eq!(storm["events"].as_array().unwrap().len(), 10);
    assert!(
        storm["message"]
            .as_str()
            .unwrap()
            .starts_with("cpu_high firing on 340 machines: web-000, web-001"),
        "{storm}"
    );
    assert!(storm["message"]
        .as_str()
        .unwrap()
        .ends_with("… and 330 more"));
    // A group of one keeps the event's own shape.
    let single: AlertEvent = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(single.rule, "memory_high");
    assert_eq!(single.machine_id.as_deref(), Some("db-01"));

    let texts: Vec<String> = slack
        .received()
        .iter()
        .map(|r| json(&r.body)["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 2);
    assert!(
        texts[0]
            .starts_with(":rotating_light: *FIRING* [warning] cpu_high on 340 machines: web-000, "),
        "{}",
        texts[0]
    );
    assert!(texts[0].ends_with("web-009 … and 330 more"), "{}", texts[0]);
    assert_eq!(
        texts[1],
        ":rotating_light: *FIRING* [warning] memory_high on db-01: memory_high on db-01"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_requests_back_and_merges_what_waits() {
    let server = Server::start(&[], None).await;
    // One request per hour: the second cannot go during this test.
    let n = WebhookNotifier::new(&[WebhookConfig {
        rate_limit: 1,
        rate_period: Duration::from_secs(3600),
        ..target(&server.url())
    }])
    .unwrap();
    n.notify(&machine_event("cpu_high", "web-01", AlertState::Firing));
    assert_eq!(received_at_least(&server, 1).await.len(), 1);
    // While the limit holds, these wait and group: 2 groups, 7 events.
    for i in 0..5 {
        n.notify(&machine_event(
            "disk_busy",
            &format!("db-{i}"),
            AlertState::Firing,
        ));
    }
    n.notify(&machine_event("cpu_high", "web-02", AlertState::Firing));
    n.notify(&machine_event("cpu_high", "web-03", AlertState::Firing));
    assert!(
        !n.flush(Duration::from_secs(2)).await,
        "held back by the rate limit"
    );
    let s = &n.stats()[0];
    assert_eq!((s.requests, s.sent, s.pending()), (1, 1, 7), "{s:?}");
    assert_eq!(server.received().len(), 1);
    // Shutdown sends what waits, one request per group, limit or not.
    drop(n);
    let got = received_at_least(&server, 3).await;
    assert_eq!(got.len(), 3);
    let disk = json(&got[1].body);
    assert_eq!(
        (disk["rule"].as_str(), disk["count"].as_u64()),
        (Some("disk_busy"), Some(5))
    );
    let cpu = json(&got[2].body);
    assert_eq!(
        (cpu["rule"].as_str(), cpu["count"].as_u64()),
        (Some("cpu_high"), Some(2))
    );
    assert_eq!(cpu["machines"], serde_json::json!(["web-02", "web-03"]));
}
