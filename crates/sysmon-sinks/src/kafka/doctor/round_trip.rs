//! Step 5: one test message produced to `<topic>.doctor` and read back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sysmon_core::doctor::{CheckStatus, DoctorReport};

use super::super::admin::ensure_topic;
use super::super::{client_config, creation_error, SysmonContext};

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

/// Produces one message to `<topic>.doctor` and reads it back.
pub(super) async fn round_trip(
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
