//! The crate's error enum.

use thiserror::Error;

/// Errors of sysmon's sinks and transports.
#[derive(Debug, Error)]
pub enum SinksError {
    /// SQLite failed.
    #[cfg(feature = "sqlite")]
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer sysmon, or is not a sysmon database.
    #[error("database schema: {0}")]
    Schema(String),
    /// Kafka failed.
    #[cfg(feature = "kafka")]
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
    /// A SQLite database file could not be opened.
    #[cfg(feature = "sqlite")]
    #[error("cannot open SQLite database {}: {source}", path.display())]
    SqliteOpen {
        /// The database file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL refused or failed a statement, or the connection broke.
    #[cfg(feature = "postgres")]
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No pooled PostgreSQL connection could be had (the server is down or
    /// refuses connections, or every connection stayed busy).
    #[cfg(feature = "postgres")]
    #[error("postgres pool: {0}")]
    PostgresPool(String),
    /// Input (a snapshot to store, a query's arguments) is invalid; retrying will not help.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Stored data could not be decoded: the database is damaged or was edited by hand.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// A blocking task (SQLite runs off the async runtime) panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Task(String),
    /// A service (Kafka) did not answer in time or refused the connection;
    /// retrying later may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}
