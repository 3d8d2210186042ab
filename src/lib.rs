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
//! * `sinks`: storage backends (SQLite, Redis), the Kafka transport, webhooks
//!   (feature `full`).
//! * `dashboard`: the web dashboard and HTTP API (feature `full`).
//!
//! Features: `full` (the default) is everything; `agent` alone is the core and the
//! collectors, without any Kafka, SQLite, Redis or HTTP server code:
//!
//! ```toml
//! sysmon = { version = "0.1", default-features = false, features = ["agent"] }
//! ```
//!
//! See `examples/embed_agent.rs` and `examples/custom_collector.rs`.

pub use sysmon_analytics as analytics;
pub use sysmon_collectors as collectors;
pub use sysmon_core as core;
#[cfg(feature = "full")]
pub use sysmon_dashboard as dashboard;
#[cfg(feature = "full")]
pub use sysmon_sinks as sinks;
