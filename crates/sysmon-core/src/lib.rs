//! # sysmon-core
//!
//! The heart of sysmon, free of any I/O backend:
//!
//! * [`Snapshot`]: one machine's metrics for one interval, and its wire format
//!   (a strict superset of the legacy Python producer's JSON; see `docs/wire-format.md`).
//! * [`codec`]: encoding and decoding with validation that reports *what* is wrong.
//! * [`Collector`], [`Transport`], [`Sink`]: the three plugin traits.
//! * [`agent`] and [`ingest`]: the runtimes that drive collectors into a transport
//!   and a transport into sinks. One pipeline serves the embedded (channel) mode and
//!   the distributed (Kafka) mode; only the transport differs.
//! * [`config`]: the TOML configuration shared by every binary (its `[alerts]`
//!   and `[anomaly]` sections are typed by `sysmon-analytics`).

pub mod agent;
pub mod alert;
pub mod backoff;
pub mod buffer;
pub mod codec;
pub mod collector;
pub mod config;
pub mod doctor;
pub mod duration;
pub mod error;
pub mod histogram;
pub mod identity;
pub mod ingest;
pub mod metric;
pub mod outage;
pub mod read;
pub mod sink;
pub mod snapshot;
pub mod spool;
pub mod store;
pub mod synth;
pub mod text;
pub mod transport;

pub use agent::{Agent, AgentHandle, AgentStats};
pub use buffer::SampleBuffer;
pub use codec::{decode, encode_json, Format};
pub use collector::{Collector, CollectorError, CollectorRegistry};
pub use error::{CoreError, DecodeError};
pub use ingest::{Ingest, IngestStats};
pub use read::{
    AnalyticsReader, BatchStream, Buckets, CoreSeries, HistoryReader, LiveFeed, MachineGroup,
    SeriesQuery, SeriesTarget, TopProcesses,
};
pub use sink::{Batch, Sink, SinkError};
pub use snapshot::{
    BlockDevice, CgroupInfo, CgroupKind, CollectorFailure, DiskIo, Filesystem, IoRate, LoadAvg,
    Memory, NetworkErrors, NetworkIo, NetworkRate, OpenFiles, Pressure, PressureLine,
    PressureStall, ProcessInfo, Snapshot, Tcp, TcpStates, Temperature, SCHEMA_VERSION,
};
pub use store::{MachineSummary, SnapshotStore, StoreError};
pub use transport::{
    channel::{channel_transport, ChannelReceiver, ChannelTransport},
    Message, Payload, Received, Transport, TransportError, TransportReceiver,
};
