//! The crate's error type: what went wrong while parsing a kernel text file.
//!
//! Collectors return [`sysmon_core::CollectorError`]; a [`ParseError`] converts
//! into it (as [`CollectorError::Source`], kept typed) so the agent reports it in the
//! snapshot's `collector_errors` while the other collectors go on.

use sysmon_core::CollectorError;
use thiserror::Error;

/// A `/proc` file did not have the shape this crate expects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// A line could not be parsed.
    #[error("{file}: line {line}: {message}")]
    Malformed {
        /// The file, e.g. `/proc/diskstats`.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Something that must be in the file was not found.
    #[error("{file}: no {what}")]
    Missing {
        /// The file, e.g. `/proc/stat`.
        file: &'static str,
        /// What was looked for, e.g. `aggregate "cpu" line`.
        what: &'static str,
    },
}

impl ParseError {
    pub(crate) fn malformed(file: &'static str, line: usize, message: impl Into<String>) -> Self {
        ParseError::Malformed {
            file,
            line,
            message: message.into(),
        }
    }
}

impl From<ParseError> for CollectorError {
    fn from(e: ParseError) -> Self {
        CollectorError::Source(Box::new(e))
    }
}
