//! Agents → Kafka (real tansu broker) → ingesters: nothing lost, nothing doubled.

mod kafka_common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kafka_common::*;
use sysmon_core::agent::AgentOptions;
use sysmon_core::config::IngestConfig;
use sysmon_core::ingest::SinkRole;
use sysmon_core::{Agent, Format, Ingest, Received, Transport, TransportReceiver};
use sysmon_sinks::kafka::{KafkaReceiver, KafkaTransport};
use sysmon_testkit::tansu::TansuBroker;
use tokio_util::sync::CancellationToken;

fn agent(machine: &str, seed: u64, transport: Arc<dyn Transport>) -> Agent {
    let mut options = AgentOptions::new(machine);
    options.interval = Duration::from_millis(100);
    options.batch_size = 50;
    Agent::new(options, transport).with_collector(SyntheticCollector::boxed(seed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_one_ingester_every_sample_exactly_once() {
    init_tracing();
    let broker = TansuBroker::start();
    let config = kafka_config(&broker.bootstrap(), "system_metrics", "sysmon-ingest", 6);
    let rx = KafkaReceiver::new(&config).await.expect("receiver");
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_in(dir.path());
    let sink = RecordingSink::new();
    let mut ingest = Ingest::new(Box::new(rx), IngestConfig::default());
    ingest.add_sink(db.clone(), SinkRole::Required);
    ingest.add_sink(sink.clone(), SinkRole::Required);
    let stats = ingest.stats();
    let stop = CancellationToken::new();
    let run = tokio::spawn(ingest.run(stop.clone()));

    let mut handles = Vec::new();
    for (i, format) in [Format::Json, Format::Binary, Format::Json]
        .into_iter()
        .enumerate()
    {
        let mut c = config.clone();
        c.format = format;
        let transport: Arc<dyn Transport> = Arc::new(KafkaTransport::new(&c).unwrap());
        handles.push(agent(&format!("worker-{i}"), i as u64, transport).spawn());
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut collected = 0;
    for h in handles {
        let report = h.shutdown().await;
        assert!(report.collected >= 20, "{report:?}");
        assert_eq!(report.published, report.collected, "{report:?}");
        assert_eq!((report.dropped, report.undelivered), (0, 0), "{report:?}");
        collected += report.collected as usize;
    }
    assert!(
        wait_until(Duration::from_secs(60), || sink.len() >= collected).await,
        "stored {} of {collected}",
        sink.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    run.await.unwrap().unwrap();

    // Exactly once, even before the storage's own de-duplication.
    let counts = sink.counts();
    assert_eq!(counts.len(), collected);
    assert!(
        counts.values().all(|&n| n == 1),
        "a sample was delivered twice"
    );
    assert_eq!(sink.len(), collected);
    let machines: HashSet<String> = counts.keys().map(|(m, _)| m.clone()).collect();
    assert_eq!(machines.len(), 3);
    // And in SQLite: every published sample, once.
    let rows = sqlite_keys(&db).await;
    assert_eq!(rows.len(), collected);
    let rows: HashSet<Key> = rows.into_iter().collect();
    assert_eq!(rows, counts.keys().cloned().collect::<HashSet<Key>>());
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 0);
    assert_eq!(stats.commit_errors.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingesters_in_one_group_split_four_partitions() {
    init_tracing();
    let broker = TansuBroker::start();
    let config = kafka_config(&broker.bootstrap(), "split", "split-group", 4);
    let mut a = KafkaReceiver::new(&config).await.expect("receiver a");
    let mut b = KafkaReceiver::new(&config).await.expect("receiver b");
    // Let the group settle with both members before anything is published.
    let settled = async {
        loop {
            for rx in [&mut a, &mut b] {
                match rx.receive(10, Duration::from_millis(200)).await {
                    Ok(Received::Messages(m)) => assert!(m.is_empty()),
                    other => panic!("{other:?}"),
                }
            }
            let (x, y) = (a.assignment(), b.assignment());
            if x.len() + y.len() == 4 && !x.is_empty() && !y.is_empty() {
                return (x, y);
            }
        }
    };
    let (x, y) = tokio::time::timeout(Duration::from_secs(90), settled)
        .await
        .expect("both members got partitions");
    let all: HashSet<_> = x.iter().chain(y.iter()).collect();
    assert_eq!(all.len(), 4, "{x:?} {y:?}");

    let shared = RecordingSink::new();
    let stop = CancellationToken::new();
    let mut runs = Vec::new();
    let mut stats = Vec::new();
    for (id, rx) in [(1, a), (2, b)] {
        let mut ingest = Ingest::new(Box::new(rx), IngestConfig::default());
        ingest.add_sink(RecordingSink::tagged(&shared, id), SinkRole::Required);
        stats.push(ingest.stats());
        runs.push(tokio::spawn(ingest.run(stop.clone())));
    }

    let transport = KafkaTransport::new(&config).unwrap();
    let batch = synthetic_batch("host", 40, 10, an_hour_ago());
    for chunk in batch.chunks(100) {
        transport.publish(chunk).await.expect("publish");
    }
    assert!(
        wait_until(Duration::from_secs(60), || shared.len() >= batch.len()).await,
        "stored {} of {}",
        shared.len(),
        batch.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for r in runs {
        r.await.unwrap().unwrap();
    }
    let counts = shared.counts();
    assert_eq!(counts.len(), batch.len());
    assert!(
        counts.values().all(|&n| n == 1),
        "a sample was stored twice"
    );
    let by_writer = shared.by_writer();
    assert!(by_writer.get(&1).copied().unwrap_or(0) > 0, "{by_writer:?}");
    assert!(by_writer.get(&2).copied().unwrap_or(0) > 0, "{by_writer:?}");
    assert_eq!(by_writer.values().sum::<usize>(), batch.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingester_that_dies_before_committing_loses_nothing() {
    init_tracing();
    let broker = TansuBroker::start();
    let config = kafka_config(&broker.bootstrap(), "crash", "crash-group", 2);
    let transport = KafkaTransport::new(&config).unwrap();
    let batch = synthetic_batch("node", 10, 60, an_hour_ago());
    let rx = KafkaReceiver::new(&config).await.expect("receiver");
    for chunk in batch.chunks(100) {
        transport.publish(chunk).await.expect("publish");
    }

    // First ingester: small batches; its sink "crashes" after storing 200
    // samples, i.e. every later batch is written but never committed.
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_in(dir.path());
    let first = RecordingSink::failing_after(200);
    let options = IngestConfig {
        batch_size: 50,
        ..IngestConfig::default()
    };
    let mut ingest = Ingest::new(Box::new(rx), options.clone());
    ingest.add_sink(db.clone(), SinkRole::Required);
    ingest.add_sink(first.clone(), SinkRole::Required);
    let stop = CancellationToken::new();
    let run = tokio::spawn(ingest.run(stop.clone()));
    assert!(wait_until(Duration::from_secs(60), || first.failures() >= 2).await);
    stop.cancel();
    let ended = run.await.unwrap();
    assert!(
        ended.is_err(),
        "the ingester stops with the sink error, uncommitted"
    );
    let stored_before = first.counts();
    assert!(stored_before.len() >= 200 && stored_before.len() < batch.len());

    // Second ingester in the same group: starts from the last commit.
    let second = RecordingSink::new();
    let rx = KafkaReceiver::new(&config).await.expect("receiver 2");
    let mut ingest = Ingest::new(Box::new(rx), options);
    ingest.add_sink(db.clone(), SinkRole::Required);
    ingest.add_sink(second.clone(), SinkRole::Required);
    let stop = CancellationToken::new();
    let run = tokio::spawn(ingest.run(stop.clone()));
    let all: HashSet<Key> = batch.iter().map(key).collect();
    let done = wait_until(Duration::from_secs(90), || {
        let mut seen: HashSet<Key> = first.counts().into_keys().collect();
        seen.extend(second.counts().into_keys());
        seen == all
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert!(done, "samples were lost");

    // The uncommitted batch was delivered again: a duplicate at the receiver,
    // which storage keyed by (machine_id, timestamp) absorbs. Committed batches
    // were not replayed.
    let replayed = second
        .counts()
        .keys()
        .filter(|k| stored_before.contains_key(*k))
        .count();
    assert!(replayed > 0, "the uncommitted batch must be replayed");
    assert!(
        second.len() < batch.len(),
        "the second ingester must start at the last commit, not the beginning"
    );
    // SQLite holds every sample once: the replay was absorbed by its key.
    let rows = sqlite_keys(&db).await;
    assert_eq!(rows.len(), batch.len());
    assert_eq!(rows.into_iter().collect::<HashSet<Key>>(), all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ingester_joining_mid_stream_rebalances_without_loss() {
    init_tracing();
    let broker = TansuBroker::start();
    let config = kafka_config(&broker.bootstrap(), "rebalance", "rebalance-group", 4);
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_in(dir.path());
    let shared = RecordingSink::new();
    let stop = CancellationToken::new();
    let options = IngestConfig {
        batch_size: 20,
        ..IngestConfig::default()
    };

    let start_member = |id: usize| {
        let config = config.clone();
        let db = db.clone();
        let shared = shared.clone();
        let options = options.clone();
        async move {
            let rx = KafkaReceiver::new(&config).await.expect("receiver");
            let mut ingest = Ingest::new(Box::new(rx), options);
            ingest.add_sink(db, SinkRole::Required);
            ingest.add_sink(RecordingSink::tagged(&shared, id), SinkRole::Required);
            ingest
        }
    };
    let first = tokio::spawn(start_member(1).await.run(stop.clone()));

    // Publish steadily while the group changes under the first member.
    let batch = synthetic_batch("steady", 20, 40, an_hour_ago());
    let publisher = {
        let transport = KafkaTransport::new(&config).unwrap();
        let batch = batch.clone();
        tokio::spawn(async move {
            for chunk in batch.chunks(20) {
                transport.publish(chunk).await.expect("publish");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    assert!(wait_until(Duration::from_secs(60), || shared.len() >= 100).await);
    let second = tokio::spawn(start_member(2).await.run(stop.clone()));
    publisher.await.unwrap();

    let all: HashSet<Key> = batch.iter().map(key).collect();
    let done = wait_until(Duration::from_secs(90), || {
        shared.counts().into_keys().collect::<HashSet<_>>() == all
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert!(done, "samples were lost across the rebalance");
    let by_writer = shared.by_writer();
    assert!(
        by_writer.get(&2).copied().unwrap_or(0) > 0,
        "the member that joined got partitions: {by_writer:?}"
    );
    let rows = sqlite_keys(&db).await;
    assert_eq!(rows.len(), batch.len());
    assert_eq!(rows.into_iter().collect::<HashSet<Key>>(), all);
    eprintln!(
        "{} writes for {} samples across the rebalance",
        shared.len(),
        batch.len()
    );
}
