//! What the cluster says about itself: its metadata (through librdkafka, with
//! the user's options), whether the brokers' advertised addresses are reachable
//! from here, and the topic.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::types::RDKafkaRespErr;
use sysmon_core::doctor::{CheckStatus, DoctorReport};

use super::super::{client_config, creation_error, SysmonContext};
use super::network::{is_loopback_host, resolve, tcp_connect, Endpoint};

/// A broker as the cluster advertises it: id, host, port.
pub(super) type AdvertisedBroker = (i32, String, u16);

/// The topic in the metadata: its error, partitions, partitions without a leader.
pub(super) type TopicSummary = (Option<RDKafkaRespErr>, usize, usize);

/// Step 2: the cluster answers a metadata request and lists its brokers.
/// `None` when it does not (the report says why).
pub(super) async fn fetch_metadata(
    report: &mut DoctorReport,
    brokers: &str,
    topic: &str,
    options: &BTreeMap<String, String>,
) -> Option<(Vec<AdvertisedBroker>, Option<TopicSummary>)> {
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
            return None;
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
            return None;
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
            return None;
        }
        Err(e) => {
            report.push(
                "metadata",
                CheckStatus::Fail,
                format!("internal error: {e}"),
            );
            return None;
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

    Some((brokers_md, topic_md))
}

/// Step 3: every broker's advertised address is reachable from here.
pub(super) async fn check_advertised(
    report: &mut DoctorReport,
    dialled: &[(Endpoint, Vec<SocketAddr>)],
    brokers_md: &[AdvertisedBroker],
) {
    // Advertised listeners: what clients will actually connect to.
    let dialled_loopback = dialled.iter().all(|(ep, _)| is_loopback_host(&ep.host));
    for (id, host, port) in brokers_md {
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
}

/// Step 4: the topic exists, and how many partitions it has.
pub(super) fn check_topic(report: &mut DoctorReport, topic: &str, topic_md: Option<TopicSummary>) {
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
}
