//! Kafka transport against a real tansu broker: formats, headers, the legacy
//! producer's messages, dead letters, and `doctor`.

mod kafka_common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kafka_common::*;
use rdkafka::producer::FutureRecord;
use sysmon_core::codec::{decode_with, encode, DEFAULT_MAX_MESSAGE_BYTES};
use sysmon_core::config::{Compression, IngestConfig};
use sysmon_core::doctor::CheckStatus;
use sysmon_core::ingest::SinkRole;
use sysmon_core::{Format, Ingest, Payload, Received, Snapshot, Transport, TransportReceiver};
use sysmon_sinks::kafka::{
    doctor, KafkaReceiver, KafkaTransport, FORMAT_HEADER, ORIGIN_HEADER, REASON_HEADER,
    REASON_KIND_HEADER,
};
use sysmon_testkit::tansu::TansuBroker;
use tokio_util::sync::CancellationToken;

async fn receive_n(rx: &mut KafkaReceiver, n: usize) -> Vec<sysmon_core::Message> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < n && std::time::Instant::now() < deadline {
        match rx.receive(n - out.len(), Duration::from_millis(500)).await {
            Ok(Received::Messages(m)) => out.extend(m),
            Ok(Received::Closed) => break,
            Err(e) => panic!("receive: {e}"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_binary_round_trip_with_format_headers_and_machine_keys() {
    init_tracing();
    let broker = TansuBroker::start();
    let mut config = kafka_config(&broker.bootstrap(), "rt", "rt-group", 3);
    let mut rx = KafkaReceiver::new(&config).await.expect("receiver");

    let json_tx = KafkaTransport::new(&config).expect("json transport");
    config.format = Format::Binary;
    let binary_tx = KafkaTransport::new(&config).expect("binary transport");
    assert_eq!(binary_tx.format(), Format::Binary);
    assert!(
        json_tx.describe().contains("topic rt"),
        "{}",
        json_tx.describe()
    );

    let json_batch = synthetic_batch("json", 3, 10, an_hour_ago());
    let binary_batch = synthetic_batch("bin", 3, 10, an_hour_ago());
    json_tx.publish(&json_batch).await.expect("publish json");
    binary_tx
        .publish(&binary_batch)
        .await
        .expect("publish binary");

    let got = receive_n(&mut rx, 60).await;
    assert_eq!(got.len(), 60);
    let mut decoded: Vec<Snapshot> = Vec::new();
    for m in &got {
        let Payload::Encoded { bytes, format } = &m.payload else {
            panic!("kafka payloads are encoded")
        };
        let s = decode_with(bytes, *format, DEFAULT_MAX_MESSAGE_BYTES).expect("decodes");
        let expected = if s.machine_id.starts_with("bin") {
            Format::Binary
        } else {
            Format::Json
        };
        assert_eq!(
            *format,
            Some(expected),
            "header names the format of {}",
            m.origin
        );
        assert!(m.origin.starts_with("rt/"), "{}", m.origin);
        decoded.push(s);
    }
    // Values survive both encodings exactly.
    let originals: HashMap<Key, &Snapshot> = json_batch
        .iter()
        .chain(binary_batch.iter())
        .map(|s| (key(s), s))
        .collect();
    for s in &decoded {
        assert_eq!(Some(&s), originals.get(&key(s)), "{}", s.machine_id);
    }
    // One machine's samples arrive in order (same key, same partition).
    let mut last: HashMap<String, f64> = HashMap::new();
    for s in &decoded {
        if let Some(prev) = last.insert(s.machine_id.clone(), s.timestamp) {
            assert!(s.timestamp > prev, "{} out of order", s.machine_id);
        }
    }
    let mark = rx.mark();
    rx.commit(mark).await.expect("commit");

    // On the wire: key = machine_id, both headers present.
    let raw = read_all(&broker.bootstrap(), "rt", 3, 60, Duration::from_secs(30)).await;
    assert_eq!(raw.len(), 60);
    for m in &raw {
        use rdkafka::Message as _;
        let s = decode_with(m.payload().unwrap(), None, DEFAULT_MAX_MESSAGE_BYTES).unwrap();
        assert_eq!(m.key(), Some(s.machine_id.as_bytes()));
        let f = header(m, FORMAT_HEADER).unwrap();
        let ct = header(m, "content-type").unwrap();
        match f.as_str() {
            "json" => assert_eq!(ct, "application/json"),
            "binary" => assert_eq!(ct, "application/x-sysmon-snapshot"),
            other => panic!("format header {other}"),
        }
    }
    json_tx.flush(Duration::from_secs(5)).await.unwrap();
}

/// Every `[kafka] compression` codec is built into this librdkafka (zstd needs
/// rdkafka's `zstd` feature) and survives the broker: one receiver reads a
/// topic holding batches in all five.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips_through_the_broker() {
    init_tracing();
    let broker = TansuBroker::start();
    let mut config = kafka_config(&broker.bootstrap(), "codecs", "codecs-group", 1);
    let mut rx = KafkaReceiver::new(&config).await.expect("receiver");
    let mut originals: HashMap<Key, Snapshot> = HashMap::new();
    for compression in Compression::ALL {
        config.compression = compression;
        let tx = KafkaTransport::new(&config).expect("transport");
        assert!(
            tx.describe()
                .contains(&format!("{compression} compression")),
            "{}",
            tx.describe()
        );
        let batch = synthetic_batch(compression.as_str(), 2, 5, an_hour_ago());
        tx.publish(&batch)
            .await
            .unwrap_or_else(|e| panic!("publish with {compression}: {e}"));
        originals.extend(batch.into_iter().map(|s| (key(&s), s)));
    }
    let got = receive_n(&mut rx, originals.len()).await;
    assert_eq!(got.len(), originals.len());
    for m in &got {
        let Payload::Encoded { bytes, format } = &m.payload else {
            panic!("kafka payloads are encoded")
        };
        let s = decode_with(bytes, *format, DEFAULT_MAX_MESSAGE_BYTES).expect("decodes");
        assert_eq!(Some(&s), originals.get(&key(&s)), "{}", s.machine_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_python_message_is_consumed_and_stored_with_its_values() {
    init_tracing();
    let broker = TansuBroker::start();
    let config = kafka_config(&broker.bootstrap(), "system_metrics", "legacy", 2);
    let rx = KafkaReceiver::new(&config).await.expect("receiver");
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/legacy_producer_message.json"
    ))
    .unwrap();
    // Exactly as kafka-python sends it: no key, no headers, UTF-8 JSON value.
    raw_producer(&broker.bootstrap())
        .send(
            FutureRecord::<(), [u8]>::to("system_metrics").payload(bytes.as_slice()),
            Duration::from_secs(5),
        )
        .await
        .expect("legacy produce");

    let sink = RecordingSink::new();
    let mut ingest = Ingest::new(Box::new(rx), IngestConfig::default());
    ingest.add_sink(sink.clone(), SinkRole::Required);
    let stats = ingest.stats();
    let stop = CancellationToken::new();
    let run = tokio::spawn(ingest.run(stop.clone()));
    assert!(wait_until(Duration::from_secs(60), || sink.len() == 1).await);
    stop.cancel();
    run.await.unwrap().unwrap();

    let s = &sink.snapshots()[0];
    assert_eq!(s.machine_id, "machine_46");
    assert_eq!(s.timestamp, 1764086400.5123456);
    assert_eq!(s.cpu_usage, 12.7);
    assert_eq!(s.memory_usage, 63.4);
    assert_eq!((s.disk_io.read, s.disk_io.write), (5368709120, 10737418240));
    assert_eq!(
        (s.network_io.sent, s.network_io.recv),
        (123456789, 987654321)
    );
    assert_eq!(s.top_cpu_processes.len(), 3);
    assert_eq!(s.top_cpu_processes[0].name, "python.exe");
    assert_eq!(s.top_cpu_processes[0].memory_percent, Some(1.2345678));
    assert_eq!(s.top_cpu_processes[1].memory_percent, None);
    assert_eq!(s.top_mem_processes[0].memory_percent, Some(4.5));
    assert_eq!(s.schema_version, 0);
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_valid_ones_are_stored() {
    init_tracing();
    let broker = TansuBroker::start();
    let config = kafka_config(&broker.bootstrap(), "poison", "poison-group", 1);
    let rx = KafkaReceiver::new(&config).await.expect("receiver");
    assert_eq!(rx.dlq_topic(), "poison.dlq");

    let valid = synthetic_batch("ok", 1, 8, an_hour_ago());
    let mut huge = String::from("{\"machine_id\":\"x\",\"pad\":\"");
    huge.push_str(&"a".repeat(9000));
    huge.push_str("\"}");
    let bad: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("syntax", b"{not json".to_vec(), None),
        (
            "shape",
            br#"{"machine_id": "m", "timestamp": "yesterday"}"#.to_vec(),
            None,
        ),
        (
            "invalid_value",
            {
                let mut s = valid[0].clone();
                s.cpu_usage = 1e9;
                encode(&s, Format::Json)
            },
            Some("json"),
        ),
        (
            "invalid_value",
            {
                let mut s = valid[0].clone();
                s.machine_id = String::new();
                encode(&s, Format::Json)
            },
            None,
        ),
        (
            "schema_version",
            {
                let mut s = valid[0].clone();
                s.schema_version = 99;
                encode(&s, Format::Json)
            },
            None,
        ),
        ("binary", b"\x00\x01garbage".to_vec(), Some("binary")),
        ("too_large", huge.into_bytes(), None),
        ("empty", Vec::new(), None),
    ];

    // Interleave: valid, bad, valid, bad, ... through one partition, in order.
    let producer = raw_producer(&broker.bootstrap());
    for (i, v) in valid.iter().enumerate() {
        let format = if i % 2 == 0 {
            Format::Json
        } else {
            Format::Binary
        };
        let bytes = encode(v, format);
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: FORMAT_HEADER,
            value: Some(format.as_str()),
        });
        producer
            .send(
                FutureRecord::<str, [u8]>::to("poison")
                    .key(v.machine_id.as_str())
                    .payload(bytes.as_slice())
                    .headers(headers),
                Duration::from_secs(5),
            )
            .await
            .expect("produce valid");
        let (_, bytes, fmt) = &bad[i];
        let mut record = FutureRecord::<str, [u8]>::to("poison");
        if !bytes.is_empty() {
            record = record.payload(bytes.as_slice());
        }
        if let Some(f) = fmt {
            record = record.headers(rdkafka::message::OwnedHeaders::new().insert(
                rdkafka::message::Header {
                    key: FORMAT_HEADER,
                    value: Some(*f),
                },
            ));
        }
        producer
            .send(record, Duration::from_secs(5))
            .await
            .expect("produce bad");
    }

    let sink = RecordingSink::new();
    let options = IngestConfig {
        max_message_bytes: 4096,
        ..IngestConfig::default()
    };
    let mut ingest = Ingest::new(Box::new(rx), options);
    ingest.add_sink(sink.clone(), SinkRole::Required);
    let stats = ingest.stats();
    let stop = CancellationToken::new();
    let run = tokio::spawn(ingest.run(stop.clone()));
    let total = (valid.len() + bad.len()) as u64;
    assert!(
        wait_until(Duration::from_secs(60), || {
            stats.received.load(Ordering::Relaxed) >= total
                && stats.dead_lettered.load(Ordering::Relaxed) >= bad.len() as u64
        })
        .await,
        "received {} dead-lettered {}",
        stats.received.load(Ordering::Relaxed),
        stats.dead_lettered.load(Ordering::Relaxed)
    );
    stop.cancel();
    run.await.unwrap().unwrap();

    // Every valid message stored exactly once.
    let counts = sink.counts();
    assert_eq!(counts.len(), valid.len());
    for v in &valid {
        assert_eq!(counts.get(&key(v)), Some(&1), "{}", v.timestamp);
    }
    assert_eq!(stats.rejected.load(Ordering::Relaxed), bad.len() as u64);

    // Every bad one in the DLQ, bytes intact, with its reason.
    let dlq = read_all(
        &broker.bootstrap(),
        "poison.dlq",
        1,
        bad.len(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(dlq.len(), bad.len());
    for (m, (kind, bytes, _)) in dlq.iter().zip(&bad) {
        use rdkafka::Message as _;
        assert_eq!(header(m, REASON_KIND_HEADER).as_deref(), Some(*kind));
        let reason = header(m, REASON_HEADER).unwrap();
        assert!(!reason.is_empty());
        let origin = header(m, ORIGIN_HEADER).unwrap();
        assert!(origin.starts_with("poison/0@"), "{origin}");
        assert_eq!(m.payload().unwrap_or_default(), bytes.as_slice(), "{kind}");
    }
    let too_large = dlq
        .iter()
        .find(|m| header(m, REASON_KIND_HEADER).as_deref() == Some("too_large"))
        .unwrap();
    assert!(header(too_large, REASON_HEADER).unwrap().contains("4096"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_on_a_healthy_broker() {
    init_tracing();
    let broker = TansuBroker::start();
    let config = kafka_config(&broker.bootstrap(), "system_metrics", "g", 4);
    let report = doctor(&config.brokers, &config.topic, &config.options).await;
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        report.find("topic").unwrap().status,
        CheckStatus::Warn,
        "a missing topic is a warning with a fix:\n{report}"
    );
    sysmon_sinks::kafka::ensure_topic(&config.brokers, &config.options, "system_metrics", 4, 1)
        .await
        .unwrap();
    let report = doctor(&config.brokers, &config.topic, &config.options).await;
    assert!(report.is_ok(), "{report}");
    let topic = report.find("topic").unwrap();
    assert_eq!(topic.status, CheckStatus::Ok, "{report}");
    assert!(topic.detail.contains("4 partition"), "{report}");
    let rt = report.find("round trip").unwrap();
    assert_eq!(rt.status, CheckStatus::Ok, "{report}");
    assert!(
        report
            .find("metadata")
            .unwrap()
            .detail
            .contains(&broker.bootstrap()),
        "{report}"
    );
    // ensure_topic on an existing topic changes nothing.
    let again =
        sysmon_sinks::kafka::ensure_topic(&config.brokers, &config.options, "system_metrics", 9, 1)
            .await
            .unwrap();
    assert!(!again.created);
    assert_eq!(again.partitions, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_flags_an_advertised_listener_that_points_elsewhere() {
    init_tracing();
    let closed = sysmon_testkit::ports::free_port();
    let broker = TansuBroker::start_advertising(&format!("tcp://127.0.0.1:{closed}"));
    let report = doctor(&broker.bootstrap(), "system_metrics", &Default::default()).await;
    assert!(!report.is_ok(), "{report}");
    let adv = report.find("advertised").unwrap();
    assert_eq!(adv.status, CheckStatus::Fail, "{report}");
    assert!(
        adv.detail.contains(&format!("127.0.0.1:{closed}")),
        "{report}"
    );
    assert!(
        adv.fix
            .as_deref()
            .unwrap()
            .contains("advertised-listener-url"),
        "{report}"
    );
}
