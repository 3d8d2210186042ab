//! Seconds since boot from `/proc/uptime`.
//!
//! Read directly: sysinfo's `System::uptime()` turns a read failure into 0.

use serde::Deserialize;
use sysmon_core::{Collector, CollectorError, Snapshot};

use crate::error::ParseError;
use crate::util::ReadBuf;

const PROC_UPTIME: &str = "/proc/uptime";

/// Options of the `uptime` collector (`[collectors.uptime]`): none yet; unknown
/// keys are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UptimeOptions {}

/// Parses `/proc/uptime` text (`12345.67 23456.78`): whole seconds since boot.
pub fn parse_uptime(text: &str) -> Result<u64, ParseError> {
    let field = text
        .split_ascii_whitespace()
        .next()
        .ok_or(ParseError::Missing {
            file: PROC_UPTIME,
            what: "uptime",
        })?;
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v as u64),
        _ => Err(ParseError::malformed(
            PROC_UPTIME,
            1,
            format!("uptime {field:?} is not a non-negative number"),
        )),
    }
}

/// Fills `uptime_secs`.
#[derive(Debug)]
pub struct UptimeCollector {
    buf: ReadBuf,
}

impl UptimeCollector {
    /// The registered name.
    pub const NAME: &'static str = "uptime";

    /// A collector with `options`.
    pub fn new(_options: UptimeOptions) -> Self {
        UptimeCollector {
            buf: ReadBuf::with_capacity(128),
        }
    }
}

impl Default for UptimeCollector {
    fn default() -> Self {
        Self::new(UptimeOptions::default())
    }
}

impl Collector for UptimeCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        self.buf.read_path(PROC_UPTIME)?;
        snapshot.uptime_secs = Some(parse_uptime(&self.buf.text())?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uptime() {
        assert_eq!(parse_uptime("350735.47 234388.90\n").unwrap(), 350735);
        assert_eq!(parse_uptime("0.99 0.5").unwrap(), 0);
    }

    #[test]
    fn rejects_malformed_uptime() {
        assert!(parse_uptime("").is_err());
        assert!(parse_uptime("abc 1.0").is_err());
        assert!(parse_uptime("-5 1.0").is_err());
    }
}
