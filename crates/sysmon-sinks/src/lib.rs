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
//!
//! Each backend is a Cargo feature of the same name (`kafka`, `sqlite`, `redis`,
//! `webhook`, `postgres`; all on by default), so a program compiles only the clients it uses.

pub mod error;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod query;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub mod redis_alerts;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "webhook")]
pub mod webhook;

pub use error::SinksError;
