//! `doctor`: checks, step by step, that this machine can use a Kafka cluster,
//! and says in plain words what to fix when it cannot.
//!
//! * `network.rs`: bootstrap addresses parsed, resolved and connected (step 1).
//! * `cluster.rs`: metadata, advertised listeners, the topic (steps 2 to 4).
//! * `round_trip.rs`: one message produced and read back (step 5).
//!
//! The report model is [`sysmon_core::doctor`], shared with the other checks.

mod cluster;
mod network;
mod round_trip;

use std::collections::BTreeMap;

use sysmon_core::doctor::DoctorReport;

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
    let Some(dialled) = network::check_bootstrap(&mut report, brokers).await else {
        return report;
    };
    let Some((brokers_md, topic_md)) =
        cluster::fetch_metadata(&mut report, brokers, topic, options).await
    else {
        return report;
    };
    cluster::check_advertised(&mut report, &dialled, &brokers_md).await;
    cluster::check_topic(&mut report, topic, topic_md);
    round_trip::round_trip(&mut report, brokers, topic, options).await;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysmon_core::doctor::CheckStatus;

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
