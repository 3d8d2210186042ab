//! The in-process transport: a bounded tokio channel between an agent and an
//! ingester in the same process (`sysmon standalone`, embedding, tests).

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{CommitMark, Message, Payload, Received, Transport, TransportError, TransportReceiver};
use crate::error::DecodeError;
use crate::snapshot::Snapshot;

/// Creates a connected pair holding at most `capacity` batches in flight.
pub fn channel_transport(capacity: usize) -> (ChannelTransport, ChannelReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        ChannelTransport { tx },
        ChannelReceiver {
            rx,
            pending: Vec::new(),
            received: 0,
            batches: 0,
            dead_letters: Vec::new(),
        },
    )
}

/// How many dead letters a [`ChannelReceiver`] keeps (the oldest go first).
pub const MAX_KEPT_DEAD_LETTERS: usize = 1024;

/// The publishing half. Cloning it gives another publisher on the same channel;
/// the receiver sees [`Received::Closed`] once every clone is dropped.
#[derive(Debug, Clone)]
pub struct ChannelTransport {
    tx: mpsc::Sender<Vec<Snapshot>>,
}

#[async_trait]
impl Transport for ChannelTransport {
    async fn publish(&self, batch: &[Snapshot]) -> Result<(), TransportError> {
        self.tx
            .send(batch.to_vec())
            .await
            .map_err(|_| TransportError::Closed)
    }

    fn describe(&self) -> String {
        "in-process channel".to_string()
    }
}

/// The consuming half.
#[derive(Debug)]
pub struct ChannelReceiver {
    rx: mpsc::Receiver<Vec<Snapshot>>,
    pending: Vec<Snapshot>,
    received: u64,
    batches: u64,
    dead_letters: Vec<(String, String)>,
}

impl ChannelReceiver {
    /// Messages set aside as undecodable, as `(origin, reason)`: the most
    /// recent [`MAX_KEPT_DEAD_LETTERS`].
    pub fn dead_letters(&self) -> &[(String, String)] {
        &self.dead_letters
    }

    fn wrap(&mut self, s: Snapshot) -> Message {
        self.received += 1;
        Message {
            payload: Payload::Snapshot(Box::new(s)),
            key: None,
            origin: format!("channel#{}", self.received),
        }
    }

    fn drain_pending(&mut self, max: usize, out: &mut Vec<Message>) {
        let n = (max - out.len()).min(self.pending.len());
        let taken: Vec<Snapshot> = self.pending.drain(..n).collect();
        for s in taken {
            let m = self.wrap(s);
            out.push(m);
        }
    }
}

#[async_trait]
impl TransportReceiver for ChannelReceiver {
    async fn receive(&mut self, max: usize, wait: Duration) -> Result<Received, TransportError> {
        let max = max.max(1);
        let mut out = Vec::new();
        self.drain_pending(max, &mut out);
        if out.is_empty() {
            match tokio::time::timeout(wait, self.rx.recv()).await {
                Err(_) => return Ok(Received::Messages(out)),
                Ok(None) => return Ok(Received::Closed),
                Ok(Some(batch)) => {
                    self.pending.extend(batch);
                    self.drain_pending(max, &mut out);
                }
            }
        }
        // Take whatever else is already queued, without waiting.
        while out.len() < max {
            match self.rx.try_recv() {
                Ok(batch) => {
                    self.pending.extend(batch);
                    self.drain_pending(max, &mut out);
                }
                Err(_) => break,
            }
        }
        if !out.is_empty() {
            self.batches += 1;
        }
        Ok(Received::Messages(out))
    }

    fn mark(&self) -> CommitMark {
        CommitMark::new(self.batches)
    }

    /// Nothing to do: an in-process channel has no offsets to keep.
    async fn commit(&mut self, _mark: CommitMark) -> Result<(), TransportError> {
        Ok(())
    }

    async fn dead_letter(
        &mut self,
        message: &Message,
        error: &DecodeError,
    ) -> Result<(), TransportError> {
        // Bounded: the most recent dead letters are kept, the oldest dropped.
        if self.dead_letters.len() >= MAX_KEPT_DEAD_LETTERS {
            self.dead_letters.remove(0);
        }
        self.dead_letters
            .push((message.origin.clone(), error.reason()));
        Ok(())
    }

    fn describe(&self) -> String {
        "in-process channel".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_in_order_then_closes() {
        let (tx, mut rx) = channel_transport(4);
        let batch: Vec<Snapshot> = (0..5)
            .map(|i| Snapshot::new("m", 1_764_086_400.0 + f64::from(i)))
            .collect();
        tx.publish(&batch[..3]).await.unwrap();
        tx.publish(&batch[3..]).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        while let Received::Messages(m) = rx.receive(2, Duration::from_secs(1)).await.unwrap() {
            assert!(m.len() <= 2);
            got.extend(m);
        }
        let ts: Vec<f64> = got
            .iter()
            .map(|m| match &m.payload {
                Payload::Snapshot(s) => s.timestamp,
                Payload::Encoded { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(ts, batch.iter().map(|s| s.timestamp).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn empty_on_timeout() {
        let (_tx, mut rx) = channel_transport(1);
        match rx.receive(10, Duration::from_millis(10)).await.unwrap() {
            Received::Messages(m) => assert!(m.is_empty()),
            Received::Closed => panic!("not closed"),
        }
    }
}
