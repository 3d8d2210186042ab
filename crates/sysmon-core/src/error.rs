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
    /// A field is larger than the documented limit (`docs/wire-format.md`).
    #[error("`{field}` is over its limit: {detail}")]
    OverLimit {
        /// The field path, e.g. `labels` or `filesystems[3].mount_point`.
        field: String,
        /// How large it is and what the limit is.
        detail: String,
    },
    /// The sample is dated further in the future than the allowed clock skew.
    #[error(
        "timestamp {timestamp} is {ahead_secs:.0} s in the future (allowed skew: {skew_secs} s)"
    )]
    FutureTimestamp {
        /// The sample's timestamp.
        timestamp: f64,
        /// How far ahead of the ingester's clock it is, in seconds.
        ahead_secs: f64,
        /// The allowed skew, in seconds (`[ingest] max_future_skew`).
        skew_secs: u64,
    },
    /// The sample is older than the longest retention: it would never be shown.
    #[error("timestamp {timestamp} is {age_secs:.0} s old, older than the retention of {max_age_secs} s")]
    TooOld {
        /// The sample's timestamp.
        timestamp: f64,
        /// Its age on the ingester's clock, in seconds.
        age_secs: f64,
        /// The oldest age accepted, in seconds (`[ingest] max_sample_age`).
        max_age_secs: u64,
    },
    /// The transport key (the agent publishes with key = machine id) names
    /// another machine than the payload: a forged or misrouted sample.
    #[error("message key {key:?} is not its machine_id {machine_id:?}")]
    KeyMismatch {
        /// The message key, escaped and shortened.
        key: String,
        /// The payload's machine id.
        machine_id: String,
    },
    /// A required sink refused this snapshot for good (it was isolated from
    /// its batch, which was stored without it).
    #[error("{sink} refused the snapshot: {message}")]
    SinkRejected {
        /// The sink's name.
        sink: String,
        /// The sink's error.
        message: String,
    },
}

impl DecodeError {
    /// A short stable tag for this kind of error: `empty`, `too_large`, `syntax`,
    /// `shape`, `schema_version`, `invalid_value`, `binary`, `unknown_format`,
    /// `over_limit`, `future_timestamp`, `too_old`, `key_mismatch`, `sink_rejected`.
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
            DecodeError::OverLimit { .. } => "over_limit",
            DecodeError::FutureTimestamp { .. } => "future_timestamp",
            DecodeError::TooOld { .. } => "too_old",
            DecodeError::KeyMismatch { .. } => "key_mismatch",
            DecodeError::SinkRejected { .. } => "sink_rejected",
        }
    }

    /// This error with every text that may quote input escaped and cut to
    /// [`MAX_QUOTE_BYTES`](crate::text::MAX_QUOTE_BYTES) (head and tail kept),
    /// so its `Display` stays under about 1 KiB whatever the input was. The
    /// decoders return bounded errors; this is for errors built elsewhere.
    pub fn bounded(self) -> Self {
        use crate::text::quote;
        match self {
            DecodeError::Syntax {
                line,
                column,
                message,
            } => DecodeError::Syntax {
                line,
                column,
                message: quote(&message),
            },
            DecodeError::Shape(m) => DecodeError::Shape(quote(&m)),
            DecodeError::Invalid { field, reason } => DecodeError::Invalid {
                field: quote(&field),
                reason: quote(&reason),
            },
            DecodeError::Binary(m) => DecodeError::Binary(quote(&m)),
            DecodeError::UnknownFormat(m) => DecodeError::UnknownFormat(quote(&m)),
            DecodeError::OverLimit { field, detail } => DecodeError::OverLimit {
                field: quote(&field),
                detail: quote(&detail),
            },
            DecodeError::KeyMismatch { key, machine_id } => DecodeError::KeyMismatch {
                key: quote(&key),
                machine_id: quote(&machine_id),
            },
            DecodeError::SinkRejected { sink, message } => DecodeError::SinkRejected {
                sink: quote(&sink),
                message: quote(&message),
            },
            other @ (DecodeError::Empty
            | DecodeError::TooLarge { .. }
            | DecodeError::UnknownSchemaVersion { .. }
            | DecodeError::FutureTimestamp { .. }
            | DecodeError::TooOld { .. }) => other,
        }
    }

    /// The error in words, at most [`MAX_REASON_BYTES`](crate::text::MAX_REASON_BYTES)
    /// bytes whatever it quotes: what dead-letter headers and logs carry.
    pub fn reason(&self) -> String {
        let full = self.to_string();
        crate::text::bounded(&full, crate::text::MAX_REASON_BYTES).into_owned()
    }

    pub(crate) fn over_limit(field: impl Into<String>, detail: impl Into<String>) -> Self {
        DecodeError::OverLimit {
            field: field.into(),
            detail: detail.into(),
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
