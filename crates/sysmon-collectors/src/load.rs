//! Load averages from `/proc/loadavg`.
//!
//! Read directly: sysinfo's `System::load_average()` turns a read failure into
//! zeros, which would be reported as an idle machine.

use serde::Deserialize;
use sysmon_core::{Collector, CollectorError, LoadAvg, Snapshot};

use crate::error::ParseError;
use crate::util::ReadBuf;

const PROC_LOADAVG: &str = "/proc/loadavg";

/// Options of the `load` collector (`[collectors.load]`): none yet; unknown keys
/// are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadOptions {}

/// Parses `/proc/loadavg` text (`0.52 0.58 0.59 2/345 12345`).
pub fn parse_loadavg(text: &str) -> Result<LoadAvg, ParseError> {
    let mut fields = text.split_ascii_whitespace();
    let mut next = |what: &'static str| -> Result<f64, ParseError> {
        let field = fields.next().ok_or(ParseError::Missing {
            file: PROC_LOADAVG,
            what,
        })?;
        match field.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(ParseError::malformed(
                PROC_LOADAVG,
                1,
                format!("{what} {field:?} is not a non-negative number"),
            )),
        }
    };
    Ok(LoadAvg {
        one: next("1-minute load")?,
        five: next("5-minute load")?,
        fifteen: next("15-minute load")?,
    })
}

/// Fills `load_avg` (1, 5 and 15 minutes).
#[derive(Debug)]
pub struct LoadCollector {
    buf: ReadBuf,
}

impl LoadCollector {
    /// The registered name.
    pub const NAME: &'static str = "load";

    /// A collector with `options`.
    pub fn new(_options: LoadOptions) -> Self {
        LoadCollector {
            buf: ReadBuf::with_capacity(128),
        }
    }
}

impl Default for LoadCollector {
    fn default() -> Self {
        Self::new(LoadOptions::default())
    }
}

impl Collector for LoadCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        self.buf.read_path(PROC_LOADAVG)?;
        snapshot.load_avg = Some(parse_loadavg(&self.buf.text())?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loadavg() {
        let l = parse_loadavg("0.52 0.58 1.59 2/345 12345\n").unwrap();
        assert_eq!((l.one, l.five, l.fifteen), (0.52, 0.58, 1.59));
    }

    #[test]
    fn rejects_malformed_loadavg() {
        assert!(parse_loadavg("").is_err());
        assert!(parse_loadavg("0.1 0.2").is_err());
        let err = parse_loadavg("0.1 abc 0.3 1/2 3").unwrap_err();
        assert!(err.to_string().contains("5-minute"), "{err}");
        assert!(parse_loadavg("0.1 -1 0.3").is_err());
    }
}
