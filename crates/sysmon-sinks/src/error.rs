//! The crate's error enum.

use thiserror::Error;

/// Errors of sysmon's sinks and transports.
#[derive(Debug, Error)]
pub enum SinksError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer sysmon, or is not a sysmon database.
    #[error("database schema: {0}")]
    Schema(String),
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A configuration value is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// File-system I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
