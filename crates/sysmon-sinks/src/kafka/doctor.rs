//! `doctor`: checks, step by step, that this machine can use a Kafka cluster,
//! and says in plain words what to fix when it cannot.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::AdminClient;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::admin::ensure_topic;
use super::{client_config, creation_error, SysmonContext};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Works.
    Ok,
    /// Works, but something looks wrong or will break elsewhere.
    Warn,
    /// Does not work.
    Fail,
    /// Not run because an earlier check failed.
    Skipped,
}

/// One finding of [`doctor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DoctorCheck {
    /// What was checked, e.g. `tcp 10.0.0.5:9092`.
    pub name: String,
    /// The outcome.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// What to do about it, in plain words (for warnings and failures).
    pub fix: Option<String>,
}

/// Everything [`doctor`] found, in the order it checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// The checks.
    pub checks: Vec<DoctorCheck>,
}

impl DoctorReport {
    /// `true` when no check failed (warnings allowed).
    pub fn is_ok(&self) -> bool {
        !self
            .checks
            .iter()
            .any(|c| matches!(c.status, CheckStatus::Fail))
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &DoctorCheck> {
        self.checks
            .iter()
            .filter(|c| matches!(c.status, CheckStatus::Fail))
    }

    /// The first check whose name starts with `prefix`.
    pub fn find(&self, prefix: &str) -> Option<&DoctorCheck> {
        self.checks.iter().find(|c| c.name.starts_with(prefix))
    }

    fn push(&mut self, name: impl Into<String>, status: CheckStatus, detail: impl Into<String>) {
        self.checks.push(DoctorCheck {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: None,
        });
    }

    fn push_fix(
        &mut self,
        name: impl Into<String>,
        status: CheckStatus,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(DoctorCheck {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let tag = match c.status {
                CheckStatus::Ok => "  ok  ",
                CheckStatus::Warn => " WARN ",
                CheckStatus::Fail => " FAIL ",
                CheckStatus::Skipped => " skip ",
            };
            writeln!(f, "[{tag}] {}: {}", c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(f, "         fix: {fix}")?;
            }
        }
        Ok(())
    }
}

/// Per-step network timeout.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// A `host:port` as the user wrote it.
#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let s = s.trim();
    let s = s
        .split_once("://")
        .map_or(s, |(_, rest)| rest)
        .trim_end_matches('/');
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("`{s}` is not HOST:PORT"))?;
        (h, p)
    } else {
        s.rsplit_once(':')
            .ok_or_else(|| format!("`{s}` has no port (write HOST:PORT, e.g. {s}:9092)"))?
    };
    if host.is_empty() {
        return Err(format!("`{s}` has no host name"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` in `{s}` is not a port number"))?;
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

async fn resolve(e: &Endpoint) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(
        STEP_TIMEOUT,
        tokio::net::lookup_host((e.host.as_str(), e.port)),
    )
    .await
    {
        Ok(Ok(addrs)) => {
            let v: Vec<SocketAddr> = addrs.collect();
            if v.is_empty() {
                Err("the name resolves to no address".into())
            } else {
                Ok(v)
            }
        }
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no DNS answer within {STEP_TIMEOUT:?}")),
    }
}

/// Why a TCP connection failed, and the plain-words fix.
fn connect_failure(addr: &SocketAddr, err: &str, timed_out: bool) -> (String, String) {
    if timed_out {
        (
            format!("{addr}: no answer within {STEP_TIMEOUT:?}"),
            format!(
                "a firewall drops the traffic or the host is down: make sure the master is up \
                 and TCP port {} is open to this machine",
                addr.port()
            ),
        )
    } else if err.contains("refused") {
        (
            format!("{addr}: connection refused (nothing listens on that port)"),
            format!(
                "start the broker on the master, or fix the port (Kafka's usual port is 9092); \
                 if the broker runs, make it listen on an address other machines can reach \
                 (not only 127.0.0.1), e.g. tansu --listener-url tcp://0.0.0.0:{}",
                addr.port()
            ),
        )
    } else {
        (
            format!("{addr}: {err}"),
            "check the address and the network path between this machine and the broker".into(),
        )
    }
}

async fn tcp_connect(addrs: &[SocketAddr]) -> Result<(SocketAddr, Duration), (String, String)> {
    let mut last = None;
    for addr in addrs {
        let started = Instant::now();
        match tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok((*addr, started.elapsed())),
            Ok(Err(e)) => last = Some(connect_failure(addr, &e.to_string(), false)),
            Err(_) => last = Some(connect_failure(addr, "", true)),
        }
    }
    Err(last.unwrap_or_else(|| {
        (
            "no address to connect to".into(),
            "check the address".into(),
        )
    }))
}

fn nonce() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}-{}-{}",
        std::process::id(),
        t.as_secs(),
        t.subsec_nanos()
    )
}

/// Checks that this machine can use the Kafka cluster at `brokers` for `topic`:
///
/// 1. each bootstrap address resolves (DNS) and accepts TCP connections;
/// 2. the cluster answers a metadata request (with `options`: TLS, SASL, ...)
///    and lists its brokers;
/// 3. every broker's advertised address is reachable from here (a broker that
///    advertises an address other than the one dialled, unreachable or loopback,
///    is the classic "connects, then times out" misconfiguration);
/// 4. `topic` exists, with how many partitions;
/// 5. one test message makes a round trip through the topic `<topic>.doctor`
///    (created with one partition if missing).
///
/// Every failure carries a fix in plain words. Never panics; network errors
/// are findings, not errors.
pub async fn doctor(
    brokers: &str,
    topic: &str,
    options: &BTreeMap<String, String>,
) -> DoctorReport {
    let mut report = DoctorReport::default();
    let endpoints: Vec<Result<Endpoint, String>> = brokers
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(parse_endpoint)
        .collect();
    if endpoints.is_empty() {
        report.push_fix(
            "brokers",
            CheckStatus::Fail,
            "no broker address given",
            "pass --brokers HOST:PORT[,HOST:PORT...] (the master's address, port 9092 by default)",
        );
        return report;
    }
    let mut dialled: Vec<(Endpoint, Vec<SocketAddr>)> = Vec::new();
    let mut reachable = 0;
    for ep in endpoints {
        let ep = match ep {
            Ok(ep) => ep,
            Err(e) => {
                report.push_fix(
                    "brokers",
                    CheckStatus::Fail,
                    e,
                    "write each broker as HOST:PORT, comma-separated, e.g. 10.0.0.5:9092",
                );
                continue;
            }
        };
        let addrs = match resolve(&ep).await {
            Ok(a) => {
                let list: Vec<String> = a.iter().map(|x| x.ip().to_string()).collect();
                report.push(
                    format!("dns {}", ep.host),
                    CheckStatus::Ok,
                    format!("resolves to {}", list.join(", ")),
                );
                a
            }
            Err(e) => {
                report.push_fix(
                    format!("dns {}", ep.host),
                    CheckStatus::Fail,
                    format!("cannot resolve `{}`: {e}", ep.host),
                    "check the spelling, this machine's DNS or /etc/hosts, or use the master's \
                     IP address instead of its name",
                );
                dialled.push((ep, Vec::new()));
                continue;
            }
        };
        match tcp_connect(&addrs).await {
            Ok((addr, took)) => {
                reachable += 1;
                report.push(
                    format!("tcp {ep}"),
                    CheckStatus::Ok,
                    format!("connected to {addr} in {} ms", took.as_millis()),
                );
            }
            Err((detail, fix)) => {
                report.push_fix(format!("tcp {ep}"), CheckStatus::Fail, detail, fix)
            }
        }
        dialled.push((ep, addrs));
    }
    if reachable == 0 {
        for name in ["metadata", "topic", "round trip"] {
            report.push(name, CheckStatus::Skipped, "no broker address is reachable");
        }
        return report;
    }

    // Metadata, through librdkafka with the user's options (TLS, SASL).
    let config = match client_config(brokers, &[("client.id", "sysmon-doctor")], options) {
        Ok(c) => c,
        Err(e) => {
            report.push_fix(
                "metadata",
                CheckStatus::Fail,
                e.to_string(),
                "fix the Kafka options",
            );
            return report;
        }
    };
    let (context, state) = SysmonContext::new("doctor");
    let admin: Arc<AdminClient<SysmonContext>> = match config.create_with_context(context) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            let e = creation_error("creating the Kafka client", e);
            report.push_fix(
                "metadata",
                CheckStatus::Fail,
                e.to_string(),
                "fix or remove the offending [kafka.options] entry",
            );
            return report;
        }
    };
    let metadata = {
        let admin = admin.clone();
        let t = topic.to_string();
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(Some(&t), Duration::from_secs(10))
                .map(|md| {
                    let brokers: Vec<(i32, String, u16)> = md
                        .brokers()
                        .iter()
                        .map(|b| (b.id(), b.host().to_string(), b.port() as u16))
                        .collect();
                    let topic = md.topics().iter().find(|x| x.name() == t).map(|x| {
                        let leaderless = x.partitions().iter().filter(|p| p.leader() < 0).count();
                        (x.error(), x.partitions().len(), leaderless)
                    });
                    (brokers, topic)
                })
        })
        .await
    };
    let (brokers_md, topic_md) = match metadata {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            let last = state.last_error().unwrap_or_default();
            let detail = if last.is_empty() {
                format!("no metadata: {e}")
            } else {
                format!("no metadata: {e} (librdkafka: {last})")
            };
            report.push_fix(
                "metadata",
                CheckStatus::Fail,
                detail,
                "the port answers but the Kafka handshake fails: check that this is the Kafka \
                 port, and that security.protocol / TLS / SASL in [kafka.options] match the \
                 broker's listener",
            );
            report.push("topic", CheckStatus::Skipped, "no metadata");
            report.push("round trip", CheckStatus::Skipped, "no metadata");
            return report;
        }
        Err(e) => {
            report.push(
                "metadata",
                CheckStatus::Fail,
                format!("internal error: {e}"),
            );
            return report;
        }
    };
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    let list: Vec<String> = brokers_md
        .iter()
        .map(|(id, h, p)| format!("#{id} at {h}:{p}"))
        .collect();
    report.push(
        "metadata",
        CheckStatus::Ok,
        format!(
            "{} broker(s): {} (client librdkafka {librdkafka})",
            brokers_md.len(),
            list.join(", ")
        ),
    );

    // Advertised listeners: what clients will actually connect to.
    let dialled_loopback = dialled.iter().all(|(ep, _)| is_loopback_host(&ep.host));
    for (id, host, port) in &brokers_md {
        let name = format!("advertised #{id}");
        let advertised = Endpoint {
            host: host.clone(),
            port: *port,
        };
        let same_as_dialled = dialled.iter().any(|(ep, addrs)| {
            (ep.host.eq_ignore_ascii_case(host) && ep.port == *port)
                || host
                    .parse::<IpAddr>()
                    .map(|ip| addrs.contains(&SocketAddr::new(ip, *port)))
                    .unwrap_or(false)
        });
        let dialled_list: Vec<String> = dialled.iter().map(|(e, _)| e.to_string()).collect();
        let fix_advertise = format!(
            "make the broker advertise an address the workers can reach: tansu \
             --advertised-listener-url tcp://MASTER_ADDRESS:{port}; Apache Kafka \
             advertised.listeners=PLAINTEXT://MASTER_ADDRESS:{port}"
        );
        if is_loopback_host(host) && !dialled_loopback {
            report.push_fix(
                name,
                CheckStatus::Fail,
                format!(
                    "broker advertises {advertised}, a loopback address, but you dialled {}: \
                     after the first contact clients connect to {advertised}, i.e. to themselves",
                    dialled_list.join(",")
                ),
                fix_advertise,
            );
            continue;
        }
        let reach = match resolve(&advertised).await {
            Ok(addrs) => tcp_connect(&addrs).await.map(|_| ()),
            Err(e) => Err((
                format!("cannot resolve `{host}` from here: {e}"),
                String::new(),
            )),
        };
        match (same_as_dialled, reach) {
            (true, Ok(())) => {
                report.push(name, CheckStatus::Ok, format!("{advertised}, reachable"))
            }
            (false, Ok(())) => report.push_fix(
                name,
                CheckStatus::Warn,
                format!(
                    "broker advertises {advertised}, not the address you dialled ({}); it is \
                     reachable from here",
                    dialled_list.join(",")
                ),
                "fine if intended; otherwise make the advertised address the one workers use",
            ),
            (_, Err((detail, _))) => report.push_fix(
                name,
                CheckStatus::Fail,
                format!(
                    "broker advertises {advertised}, which this machine cannot reach ({detail}); \
                     clients connect, fetch metadata, then time out"
                ),
                fix_advertise,
            ),
        }
    }

    // The topic.
    match topic_md {
        Some((None, n, 0)) if n > 0 => report.push(
            format!("topic {topic}"),
            CheckStatus::Ok,
            format!("exists with {n} partition(s)"),
        ),
        Some((None, n, leaderless)) if n > 0 => report.push_fix(
            format!("topic {topic}"),
            CheckStatus::Warn,
            format!("exists with {n} partition(s), {leaderless} without a leader"),
            "some brokers are down or still starting; check the cluster",
        ),
        _ => report.push_fix(
            format!("topic {topic}"),
            CheckStatus::Warn,
            "does not exist yet",
            "start `sysmon ingest` once on the master (it creates the topic with \
             kafka.partitions partitions, 6 by default); agents' samples wait in their \
             buffers until then",
        ),
    }

    round_trip(&mut report, brokers, topic, options).await;
    report
}

/// Produces one message to `<topic>.doctor` and reads it back.
async fn round_trip(
    report: &mut DoctorReport,
    brokers: &str,
    topic: &str,
    options: &BTreeMap<String, String>,
) {
    let name = "round trip";
    let test_topic = format!("{topic}.doctor");
    if let Err(e) = ensure_topic(brokers, options, &test_topic, 1, 1).await {
        report.push_fix(
            name,
            CheckStatus::Fail,
            format!("cannot create the test topic {test_topic}: {e}"),
            "give this client the right to create topics, or create the topic by hand",
        );
        return;
    }
    let producer: FutureProducer<SysmonContext> = match client_config(
        brokers,
        &[
            ("client.id", "sysmon-doctor"),
            ("acks", "all"),
            ("message.timeout.ms", "10000"),
        ],
        options,
    )
    .and_then(|c| {
        c.create_with_context(SysmonContext::new("doctor producer").0)
            .map_err(|e| creation_error("creating the Kafka producer", e))
    }) {
        Ok(p) => p,
        Err(e) => {
            report.push(name, CheckStatus::Fail, e.to_string());
            return;
        }
    };
    let payload = format!("sysmon doctor {}", nonce());
    let started = Instant::now();
    let sent = producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&test_topic).payload(payload.as_bytes()),
            Duration::from_secs(5),
        )
        .await;
    let (partition, offset) = match sent {
        Ok(d) => (d.partition, d.offset),
        Err((e, _)) => {
            report.push_fix(
                name,
                CheckStatus::Fail,
                format!("producing to {test_topic} failed: {e}"),
                "the broker does not accept writes from here: check its logs, its storage and \
                 this client's permissions (ACLs)",
            );
            return;
        }
    };
    let acked = started.elapsed();
    let consumer: StreamConsumer<SysmonContext> = match client_config(
        brokers,
        &[
            ("client.id", "sysmon-doctor"),
            ("enable.auto.commit", "false"),
            ("group.id", "sysmon-doctor"),
        ],
        options,
    )
    .and_then(|c| {
        c.create_with_context(SysmonContext::new("doctor consumer").0)
            .map_err(|e| creation_error("creating the Kafka consumer", e))
    }) {
        Ok(c) => c,
        Err(e) => {
            report.push(name, CheckStatus::Fail, e.to_string());
            return;
        }
    };
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(&test_topic, partition, Offset::Offset(offset))
        .and_then(|()| consumer.assign(&tpl))
        .is_err()
    {
        report.push(
            name,
            CheckStatus::Fail,
            "could not assign the test partition",
        );
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) if m.payload() == Some(payload.as_bytes()) => {
                report.push(
                    name,
                    CheckStatus::Ok,
                    format!(
                        "produced to {test_topic}/{partition}@{offset} (acknowledged in {} ms) \
                         and read it back in {} ms",
                        acked.as_millis(),
                        started.elapsed().as_millis()
                    ),
                );
                return;
            }
            Ok(Ok(_other)) => continue,
            Ok(Err(e)) => {
                report.push_fix(
                    name,
                    CheckStatus::Fail,
                    format!("reading {test_topic} failed: {e}"),
                    "the broker accepts writes but not reads from here: check its logs and \
                     this client's permissions",
                );
                return;
            }
            Err(_) => {
                report.push_fix(
                    name,
                    CheckStatus::Fail,
                    "the test message was acknowledged but not read back within 10 s".to_string(),
                    "check the broker's logs; a broker that acknowledges but does not serve \
                     fetches is misconfigured or overloaded",
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_helpful_errors() {
        let e = parse_endpoint("kafka.example:9092").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("kafka.example", 9092));
        let e = parse_endpoint("tcp://10.0.0.5:9093/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("10.0.0.5", 9093));
        let e = parse_endpoint("[::1]:9092").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9092));
        assert_eq!(e.to_string(), "[::1]:9092");
        assert!(parse_endpoint("kafka").unwrap_err().contains("no port"));
        assert!(parse_endpoint("kafka:x")
            .unwrap_err()
            .contains("not a port"));
        assert!(is_loopback_host("localhost") && is_loopback_host("127.0.0.2"));
        assert!(!is_loopback_host("10.0.0.5"));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_failure_with_a_fix() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let r = doctor(&format!("127.0.0.1:{port}"), "t", &BTreeMap::new()).await;
        assert!(!r.is_ok());
        let tcp = r.find("tcp ").unwrap();
        assert_eq!(tcp.status, CheckStatus::Fail);
        assert!(tcp.detail.contains("refused"), "{r}");
        assert!(
            tcp.fix.as_deref().unwrap().contains("start the broker"),
            "{r}"
        );
        assert_eq!(r.find("metadata").unwrap().status, CheckStatus::Skipped);
    }

    #[tokio::test]
    async fn an_unresolvable_name_is_a_failure_with_a_fix() {
        let r = doctor("no-such-host.invalid:9092", "t", &BTreeMap::new()).await;
        let dns = r.find("dns ").unwrap();
        assert_eq!(dns.status, CheckStatus::Fail, "{r}");
        assert!(dns.fix.as_deref().unwrap().contains("IP address"));
        assert!(doctor("", "t", &BTreeMap::new())
            .await
            .find("brokers")
            .is_some());
    }
}
