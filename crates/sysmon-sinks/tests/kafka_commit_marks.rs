//! `KafkaReceiver` against a real tansu broker: a commit covers exactly the
//! batches its mark names, the consumer lag follows the committed offsets, and
//! a cancelled `receive` loses no message.

mod kafka_common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kafka_common::*;
use sysmon_core::transport::CommitMark;
use sysmon_core::{Received, Transport, TransportReceiver};
use sysmon_sinks::kafka::{KafkaReceiver, KafkaTransport};
use sysmon_testkit::tansu::TansuBroker;

/// Receives exactly `n` messages (in as many calls as it takes), then the mark.
async fn receive_exactly(rx: &mut KafkaReceiver, n: usize) -> (Vec<String>, CommitMark) {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < n {
        assert!(Instant::now() < deadline, "received {} of {n}", out.len());
        match rx
            .receive(n - out.len(), Duration::from_millis(500))
            .await
            .expect("receive")
        {
            Received::Messages(m) => out.extend(m.into_iter().map(|m| m.origin)),
            Received::Closed => panic!("closed"),
        }
    }
    (out, rx.mark())
}

/// Polls the receiver's lag until it equals `want`; returns the last value
/// seen. The topic is drained, so the `receive` calls in between (librdkafka
/// serves its statistics while the consumer is polled) return nothing.
async fn lag_reaches(rx: &mut KafkaReceiver, want: i64) -> Option<i64> {
    let lag = rx.consumer_lag();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lag.get() != Some(want) && Instant::now() < deadline {
        match rx
            .receive(10, Duration::from_millis(200))
            .await
            .expect("receive")
        {
            Received::Messages(m) => assert!(m.is_empty(), "the topic was drained"),
            Received::Closed => panic!("closed"),
        }
    }
    lag.get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_covers_only_the_batches_of_its_mark_and_the_lag_follows() {
    init_tracing();
    let broker = TansuBroker::start();
    let config = kafka_config(&broker.bootstrap(), "marks", "marks-group", 1);
    let mut rx = KafkaReceiver::new(&config).await.expect("receiver");
    let tx = KafkaTransport::new(&config).expect("transport");
    tx.publish(&synthetic_batch("m", 1, 30, an_hour_ago()))
        .await
        .expect("publish");

    // Three batches received, none stored yet.
    let (first, mark1) = receive_exactly(&mut rx, 10).await;
    let (second, mark2) = receive_exactly(&mut rx, 10).await;
    let (third, mark3) = receive_exactly(&mut rx, 10).await;
    assert!(mark1 < mark2 && mark2 < mark3);
    assert_eq!(first.last().map(String::as_str), Some("marks/0@9"));
    assert_eq!(second.last().map(String::as_str), Some("marks/0@19"));
    assert_eq!(third.last().map(String::as_str), Some("marks/0@29"));
    // Received is not committed: the whole backlog is lag.
    assert_eq!(
        lag_reaches(&mut rx, 30).await,
        Some(30),
        "backlog before any commit"
    );
    // Batch 1 stored: its mark must not cover batches 2 and 3.
    rx.commit(mark1).await.expect("commit 1");
    assert_eq!(
        lag_reaches(&mut rx, 20).await,
        Some(20),
        "mark 1 = offset 10"
    );
    rx.commit(mark2).await.expect("commit 2");
    assert_eq!(
        lag_reaches(&mut rx, 10).await,
        Some(10),
        "mark 2 = offset 20"
    );
    // An old mark again commits nothing (it must not move the offset back).
    rx.commit(mark1).await.expect("commit 1 again");
    rx.commit(mark3).await.expect("commit 3");
    assert_eq!(lag_reaches(&mut rx, 0).await, Some(0));

    // A new member of the group starts where the commits say: nothing is left.
    drop(rx);
    let mut again = KafkaReceiver::new(&config).await.expect("receiver 2");
    assert_eq!(
        lag_reaches(&mut again, 0).await,
        Some(0),
        "all 30 were committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_receive_loses_no_message() {
    init_tracing();
    let broker = TansuBroker::start();
    let config = kafka_config(&broker.bootstrap(), "cancel", "cancel-group", 1);
    let mut rx = KafkaReceiver::new(&config).await.expect("receiver");
    let tx = KafkaTransport::new(&config).expect("transport");
    let n = 400;
    tx.publish(&synthetic_batch("c", 4, n / 4, an_hour_ago()))
        .await
        .expect("publish");

    // Drop most receives after a few milliseconds, mid-collection.
    let mut origins = Vec::new();
    let mut cancelled = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while origins.len() < n && Instant::now() < deadline {
        match tokio::time::timeout(
            Duration::from_millis(3),
            rx.receive(n, Duration::from_secs(2)),
        )
        .await
        {
            Ok(r) => {
                if let Received::Messages(m) = r.expect("receive") {
                    origins.extend(m.into_iter().map(|m| m.origin));
                }
            }
            Err(_) => cancelled += 1,
        }
    }
    let offsets: BTreeSet<String> = origins.iter().cloned().collect();
    assert_eq!(
        origins.len(),
        n,
        "each message once ({cancelled} receives cancelled)"
    );
    assert_eq!(offsets.len(), n, "no duplicates");
    let expected: BTreeSet<String> = (0..n).map(|o| format!("cancel/0@{o}")).collect();
    assert_eq!(offsets, expected);
    assert!(cancelled > 0, "some receives were cancelled");
}
