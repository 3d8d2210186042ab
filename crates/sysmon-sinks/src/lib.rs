//! # sysmon-sinks
//!
//! Storage backends behind [`sysmon_core::Sink`] and [`sysmon_core::SnapshotStore`],
//! and the Kafka transport behind [`sysmon_core::Transport`] /
//! [`sysmon_core::TransportReceiver`]. One file (or folder) per backend:
//!
//! * [`sqlite`]: `SqliteSink`, the durable history (raw samples, per-minute rollups).
//! * [`postgres`]: `PostgresSink`, one shared history for several ingesters.
//! * [`kafka`]: `KafkaTransport` (agents) and `KafkaReceiver` (ingesters).
//! * [`redis`]: `RedisSink`, the hot recent window and live fan-out.
//! * [`webhook`]: `WebhookNotifier`, alert notifications as HTTP(S) POSTs.

pub mod error;
pub mod kafka;
pub mod postgres;
pub mod query;
pub mod redis;
pub mod redis_alerts;
pub mod sqlite;
pub mod webhook;

pub use error::SinksError;
