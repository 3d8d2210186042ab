//! The crate's error types.

use thiserror::Error;

/// Why a message could not be turned into a valid [`crate::Snapshot`].
///
/// Every variant says what is wrong in words a person can act on; [`DecodeError::kind`]
/// gives a short stable tag used for counters, once-per-kind logging and the
/// dead-letter `reason` header.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DecodeError {
    /// The message was empty.
    #[error("empty message")]
    Empty,
    /// The message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The message size in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The bytes are not valid JSON.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// Valid JSON, but a field is missing or has the wrong type.
    #[error("wrong shape: {0}")]
    Shape(String),
    /// The message declares a schema version this build does not know.
    #[error("unknown schema version {found} (this build reads versions 0 to {supported})")]
    UnknownSchemaVersion {
        /// The version in the message.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A field holds a value that cannot be true (CPU of 1e9 %, an empty machine id, ...).
    #[error("invalid value for `{field}`: {reason}")]
    Invalid {
        /// The field path, e.g. `top_cpu_processes[2].cpu_percent`.
        field: String,
        /// Why the value is impossible.
        reason: String,
    },
    /// A binary-encoded message could not be read.
    #[error("invalid binary snapshot: {0}")]
    Binary(String),
    /// The message's format marker names a format this build does not know.
    #[error("unknown message format {0:?}")]
    UnknownFormat(String),
}

impl DecodeError {
    /// A short stable tag for this kind of error: `empty`, `too_large`, `syntax`,
    /// `shape`, `schema_version`, `invalid_value`, `binary`, `unknown_format`.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Syntax { .. } => "syntax",
            DecodeError::Shape(_) => "shape",
            DecodeError::UnknownSchemaVersion { .. } => "schema_version",
            DecodeError::Invalid { .. } => "invalid_value",
            DecodeError::Binary(_) => "binary",
            DecodeError::UnknownFormat(_) => "unknown_format",
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DecodeError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => DecodeError::Shape(e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => DecodeError::Syntax {
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            },
        }
    }
}

/// Errors of the core runtime and configuration.
#[derive(Debug, Error)]
pub enum CoreError {
    /// A message could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The configuration is invalid.
    #[error("configuration error: {0}")]
    Config(String),
    /// A transport failed.
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    /// A collector could not be built.
    #[error(transparent)]
    Collector(#[from] crate::collector::CollectorError),
    /// An I/O error with context.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
