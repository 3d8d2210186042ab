//! Wire codecs: JSON (native and legacy) and the compact binary form.
//!
//! [`decode`] accepts any supported format, tells them apart per message
//! (an explicit [`Format`] hint from a transport header wins; otherwise the
//! first byte decides: `{` is JSON, the binary magic is binary) and validates
//! the result, so a caller gets either a plausible [`Snapshot`] or a
//! [`DecodeError`] saying what is wrong.

pub mod binary;
#[doc(hidden)]
pub mod fuzzing;
mod validate;

pub use validate::{
    validate, MAX_COLLECTOR_ERRORS, MAX_COLLECTOR_MESSAGE_BYTES, MAX_COLLECTOR_NAME_BYTES,
    MAX_CORES, MAX_CUSTOM_METRICS, MAX_CUSTOM_METRIC_NAME_BYTES, MAX_FILESYSTEMS,
    MAX_FS_TYPE_BYTES, MAX_HOSTNAME_BYTES, MAX_LABELS, MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES,
    MAX_MACHINE_ID_BYTES, MAX_MOUNT_POINT_BYTES, MAX_PROCESS_NAME_BYTES, MAX_TOP_PROCESSES,
};

use crate::error::DecodeError;
use crate::snapshot::{Snapshot, SCHEMA_VERSION};

/// The default limit on one encoded message: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// An encoding of a [`Snapshot`] on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// UTF-8 JSON: the native superset or the legacy producer's message.
    Json,
    /// sysmon's compact binary encoding (see [`binary`]).
    Binary,
}

impl Format {
    /// The name used in headers and on the command line: `json` or `binary`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Binary => "binary",
        }
    }

    /// Parses a header or flag value (`json`, `binary`, or a MIME type such as
    /// `application/json`).
    pub fn parse(s: &str) -> Result<Format, DecodeError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" | "application/json" => Ok(Format::Json),
            "binary" | "application/x-sysmon-snapshot" => Ok(Format::Binary),
            other => Err(DecodeError::UnknownFormat(other.to_string())),
        }
    }
}

impl std::str::FromStr for Format {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::parse(s)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Encodes a snapshot as native JSON (one object, no trailing newline).
pub fn encode_json(snapshot: &Snapshot) -> Vec<u8> {
    // Serialising plain data structs to a Vec cannot fail (no maps with
    // non-string keys, no I/O); fall back to an empty object rather than panic.
    serde_json::to_vec(snapshot).unwrap_or_else(|_| b"{}".to_vec())
}

/// Encodes a snapshot in `format`.
pub fn encode(snapshot: &Snapshot, format: Format) -> Vec<u8> {
    match format {
        Format::Json => encode_json(snapshot),
        Format::Binary => binary::encode(snapshot),
    }
}

/// Decodes JSON (native or legacy) without the size check, and validates it.
/// Errors are [bounded](DecodeError::bounded): they quote the input only as a
/// short escaped head and tail.
pub fn decode_json(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    decode_json_unbounded(bytes).map_err(DecodeError::bounded)
}

fn decode_json_unbounded(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let snapshot: Snapshot = match serde_json::from_slice(bytes) {
        Ok(s) => s,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            // Slow path, errors only: parse again to name the offending field.
            let de = &mut serde_json::Deserializer::from_slice(bytes);
            return Err(match serde_path_to_error::deserialize::<_, Snapshot>(de) {
                Err(pe) if pe.path().to_string() != "." => {
                    DecodeError::Shape(format!("`{}`: {}", pe.path(), pe.inner()))
                }
                _ => DecodeError::from(e),
            });
        }
        Err(e) => return Err(e.into()),
    };
    check_version(&snapshot)?;
    validate(&snapshot)?;
    Ok(snapshot)
}

/// Decodes one message in any supported format and validates it.
///
/// `hint` is the format named by the transport (a Kafka header, say); without
/// it the first non-blank byte decides. Messages over `max_bytes` are rejected
/// before parsing. Errors are [bounded](DecodeError::bounded).
pub fn decode_with(
    bytes: &[u8],
    hint: Option<Format>,
    max_bytes: usize,
) -> Result<Snapshot, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    let format = match hint {
        Some(f) => f,
        None => sniff(bytes),
    };
    match format {
        Format::Json => decode_json(bytes),
        Format::Binary => {
            let snapshot = binary::decode(bytes).map_err(DecodeError::bounded)?;
            check_version(&snapshot)?;
            validate(&snapshot).map_err(DecodeError::bounded)?;
            Ok(snapshot)
        }
    }
}

/// [`decode_with`] with no hint and the default 1 MiB limit.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    decode_with(bytes, None, DEFAULT_MAX_MESSAGE_BYTES)
}

/// Guesses the format from the first bytes: the binary magic, else JSON.
pub fn sniff(bytes: &[u8]) -> Format {
    if binary::is_binary(bytes) {
        Format::Binary
    } else {
        Format::Json
    }
}

fn check_version(snapshot: &Snapshot) -> Result<(), DecodeError> {
    if snapshot.schema_version > SCHEMA_VERSION {
        return Err(DecodeError::UnknownSchemaVersion {
            found: snapshot.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
