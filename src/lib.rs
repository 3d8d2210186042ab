//! # sysmon
//!
//! The embedding facade of the sysmon workspace. Other Rust programs depend on
//! this crate to run the sysmon agent inside their own tokio runtime, add their
//! own collectors and write to sysmon's sinks.
//!
//! * [`core`]: the data model ([`core::Snapshot`]), the [`core::Collector`],
//!   [`core::Transport`] and [`core::Sink`] traits, the agent and ingest runtime.
//! * [`analytics`]: anomaly detection, forecasts and alert rules, and the typed
//!   configuration file ([`analytics::Config`]).
//! * [`collectors`]: the built-in host collectors (CPU, memory, disks, network, ...).
//! * [`sinks`]: storage backends (SQLite) and transports (Kafka).
//!
//! See `examples/embed_agent.rs` and `examples/custom_collector.rs`.

pub use sysmon_analytics as analytics;
pub use sysmon_collectors as collectors;
pub use sysmon_core as core;
pub use sysmon_sinks as sinks;
