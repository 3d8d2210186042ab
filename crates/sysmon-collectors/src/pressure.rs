//! Pressure stall information from `/proc/pressure/{cpu,memory,io}`: the share
//! of recent time in which some (or all non-idle) tasks waited for a resource,
//! over 10, 60 and 300 seconds, and the total stalled time since boot.
//!
//! A kernel without PSI (before 4.20, or booted with `psi=0`) has no
//! `/proc/pressure`: the collector then leaves `pressure` absent, which is not
//! an error. A file that exists but cannot be parsed is one.

use std::io::ErrorKind;
use std::path::PathBuf;

use serde::Deserialize;
use sysmon_core::{Collector, CollectorError, Pressure, PressureLine, PressureStall, Snapshot};

use crate::error::ParseError;
use crate::util::ReadBuf;

const PRESSURE_FILE: &str = "/proc/pressure/<resource>";

/// Options of the `pressure` collector (`[collectors.pressure]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PressureOptions {
    /// The directory holding the `cpu`, `memory` and `io` files. Default
    /// `/proc/pressure`.
    pub path: PathBuf,
}

impl Default for PressureOptions {
    fn default() -> Self {
        PressureOptions {
            path: PathBuf::from("/proc/pressure"),
        }
    }
}

/// Parses one pressure file (`some avg10=… avg60=… avg300=… total=…` and an
/// optional `full …` line).
pub fn parse_pressure(text: &str) -> Result<PressureStall, ParseError> {
    let mut some = None;
    let mut full = None;
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_ascii_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            Some(_) | None => continue,
        };
        let mut parsed = PressureLine::default();
        let mut seen = 0u8;
        for field in fields {
            let bad =
                || ParseError::malformed(PRESSURE_FILE, i + 1, format!("bad field {field:?}"));
            let (key, value) = field.split_once('=').ok_or_else(bad)?;
            let avg = |v: &str| v.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
            match key {
                "avg10" => parsed.avg10 = avg(value).ok_or_else(bad)?,
                "avg60" => parsed.avg60 = avg(value).ok_or_else(bad)?,
                "avg300" => parsed.avg300 = avg(value).ok_or_else(bad)?,
                "total" => parsed.total_us = value.parse().map_err(|_| bad())?,
                _ => continue,
            }
            seen += 1;
        }
        if seen != 4 {
            return Err(ParseError::malformed(
                PRESSURE_FILE,
                i + 1,
                "expected avg10, avg60, avg300 and total",
            ));
        }
        *slot = Some(parsed);
    }
    let some = some.ok_or(ParseError::Missing {
        file: PRESSURE_FILE,
        what: "`some` line",
    })?;
    Ok(PressureStall { some, full })
}

/// Reads the three pressure files under `dir` (`cpu`, `memory`, `io`, each
/// followed by `suffix`: `.pressure` in a cgroup v2 directory) into a
/// [`Pressure`]: `Ok(None)` when none exists (no PSI), each resource absent
/// when its file is.
pub(crate) fn read_pressure(
    buf: &mut ReadBuf,
    dir: &std::path::Path,
    suffix: &str,
) -> Result<Option<Pressure>, CollectorError> {
    let mut out = Pressure::default();
    let mut any = false;
    for (name, slot) in [
        ("cpu", &mut out.cpu),
        ("memory", &mut out.memory),
        ("io", &mut out.io),
    ] {
        match buf.read_path(dir.join(format!("{name}{suffix}"))) {
            Ok(()) => {}
            Err(CollectorError::Io { source, .. })
                if matches!(source.kind(), ErrorKind::NotFound | ErrorKind::Unsupported)
                    || source.raw_os_error() == Some(95) =>
            {
                // absent, or PSI compiled in but disabled (EOPNOTSUPP)
                continue;
            }
            Err(e) => return Err(e),
        }
        *slot = Some(parse_pressure(&buf.text())?);
        any = true;
    }
    Ok(any.then_some(out))
}

/// Fills `pressure` (absent on kernels without PSI).
#[derive(Debug)]
pub struct PressureCollector {
    dir: PathBuf,
    buf: ReadBuf,
}

impl PressureCollector {
    /// The registered name.
    pub const NAME: &'static str = "pressure";

    /// A collector with `options`.
    pub fn new(options: PressureOptions) -> Self {
        PressureCollector {
            dir: options.path,
            buf: ReadBuf::with_capacity(256),
        }
    }
}

impl Collector for PressureCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        snapshot.pressure = read_pressure(&mut self.buf, &self.dir, "")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: &str = "some avg10=98.54 avg60=89.67 avg300=41.97 total=166267311\n\
                       full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";

    #[test]
    fn parses_some_and_full() {
        let p = parse_pressure(CPU).unwrap();
        assert_eq!(
            p.some,
            PressureLine {
                avg10: 98.54,
                avg60: 89.67,
                avg300: 41.97,
                total_us: 166_267_311
            }
        );
        assert_eq!(p.full, Some(PressureLine::default()));
        // CPU before 5.13: no `full` line
        let old = parse_pressure("some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n").unwrap();
        assert_eq!(old.full, None);
        assert_eq!(old.some.avg300, 3.0);
    }

    #[test]
    fn malformed_pressure_is_an_error() {
        assert!(parse_pressure("").is_err());
        assert!(parse_pressure("some avg10=x avg60=0 avg300=0 total=0").is_err());
        assert!(parse_pressure("some avg10=1 avg60=0 total=0").is_err());
        assert!(parse_pressure("some avg10=-1 avg60=0 avg300=0 total=0").is_err());
        assert!(parse_pressure("full avg10=1 avg60=0 avg300=0 total=0").is_err());
    }

    #[test]
    fn absent_without_psi_and_partial_files() {
        let dir = std::env::temp_dir().join(format!("sysmon-psi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = PressureCollector::new(PressureOptions { path: dir.clone() });
        let mut s = Snapshot::default();
        c.collect(&mut s).unwrap();
        assert_eq!(s.pressure, None, "no PSI is not an error");
        std::fs::write(dir.join("cpu"), CPU).unwrap();
        c.collect(&mut s).unwrap();
        let p = s.pressure.unwrap();
        assert_eq!(p.cpu.unwrap().some.avg10, 98.54);
        assert!(p.memory.is_none() && p.io.is_none());
        std::fs::write(dir.join("io"), "garbage").unwrap();
        assert!(c.collect(&mut s).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
