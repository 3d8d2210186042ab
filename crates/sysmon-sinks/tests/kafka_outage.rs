//! The broker goes away for 30 s while two agents sample and an ingester
//! consumes; it comes back on its durable (PostgreSQL) storage; after catch-up
//! every sample taken during the outage is stored, none twice.

mod kafka_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_common::*;
use sysmon_core::agent::{now_epoch_secs, AgentOptions};
use sysmon_core::config::IngestConfig;
use sysmon_core::ingest::SinkRole;
use sysmon_core::{Agent, Format, Ingest, Transport};
use sysmon_sinks::kafka::{KafkaReceiver, KafkaTransport};
use sysmon_testkit::tansu::TansuBroker;
use tokio_util::sync::CancellationToken;

const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_for_30s_then_back_every_sample_stored_once() {
    init_tracing();
    let mut broker = TansuBroker::start_durable();
    let mut config = kafka_config(&broker.bootstrap(), "system_metrics", "sysmon-ingest", 4);
    // Reconnect quickly once the broker is back.
    config
        .options
        .insert("reconnect.backoff.max.ms".into(), "1000".into());
    if let Ok(d) = std::env::var("SYSMON_RDKAFKA_DEBUG") {
        config.options.insert("debug".into(), d);
    }
    let rx = KafkaReceiver::new(&config).await.expect("receiver");
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_in(dir.path());
    let sink = RecordingSink::new();
    let mut ingest = Ingest::new(Box::new(rx), IngestConfig::default());
    ingest.add_sink(db.clone(), SinkRole::Required);
    ingest.add_sink(sink.clone(), SinkRole::Required);
    let stop = CancellationToken::new();
    let run = tokio::spawn(ingest.run(stop.clone()));

    let mut agents = Vec::new();
    for (i, format) in [Format::Json, Format::Binary].into_iter().enumerate() {
        let mut c = config.clone();
        c.format = format;
        let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(&c).unwrap());
        let mut options = AgentOptions::new(format!("worker-{i}"));
        options.interval = Duration::from_millis(200);
        options.batch_size = 100;
        options.shutdown_timeout = Duration::from_secs(60);
        agents.push(
            Agent::new(options, transport)
                .with_collector(SyntheticCollector::boxed(i as u64))
                .spawn(),
        );
    }
    // Running normally.
    assert!(wait_until(Duration::from_secs(60), || sink.len() >= 10).await);

    let outage_start = now_epoch_secs();
    broker.stop();
    tokio::time::sleep(OUTAGE).await;
    let outage_end = now_epoch_secs();
    let buffered: usize = agents.iter().map(|a| a.buffered()).sum();
    assert!(buffered > 0, "the agents buffer while the broker is down");
    broker.start_again();

    // A little more normal running after the outage, then stop the agents;
    // shutdown delivers what they still hold.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut expected = 0usize;
    let mut reports = Vec::new();
    for a in agents {
        let r = a.shutdown().await;
        assert_eq!(
            (r.dropped, r.undelivered),
            (0, 0),
            "{r:?}; broker log:\n{}",
            broker.log()
        );
        assert_eq!(r.published, r.collected, "{r:?}");
        expected += r.collected as usize;
        reports.push(r);
    }
    let caught_up = Instant::now();
    let complete = wait_until(Duration::from_secs(120), || sink.counts().len() >= expected).await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert!(
        complete,
        "stored {} distinct of {expected} collected; broker log:\n{}",
        sink.counts().len(),
        broker.log()
    );
    eprintln!(
        "catch-up took {:?}; {} writes for {expected} samples; reports {reports:?}",
        caught_up.elapsed(),
        sink.len()
    );

    let counts = sink.counts();
    assert_eq!(
        counts.len(),
        expected,
        "every collected sample, once by key"
    );
    // Samples taken during the outage are all there.
    let mut during: HashMap<String, usize> = HashMap::new();
    for (machine, bits) in counts.keys() {
        let ts = f64::from_bits(*bits);
        if ts > outage_start && ts < outage_end {
            *during.entry(machine.clone()).or_default() += 1;
        }
    }
    let per_agent = (OUTAGE.as_secs_f64() / 0.2) as usize;
    for m in ["worker-0", "worker-1"] {
        let n = during.get(m).copied().unwrap_or(0);
        assert!(
            n >= per_agent * 8 / 10,
            "{m}: {n} samples stored from the outage, expected about {per_agent}"
        );
    }
}
