//! Scoring a detector's flags against labelled anomaly windows, the way the
//! Numenta Anomaly Benchmark (NAB) scores detectors, so that anyone can measure
//! the detector on their own incidents (`sysmon detect --windows`).
//!
//! * The first [`DEFAULT_PROBATION`] (15 %) of a series' samples is probation:
//!   the detector learns, nothing there is scored.
//! * A labelled window `[start, end]` (inclusive) is **found** when at least one
//!   scored sample inside it is flagged (a window over before probation ends is
//!   not counted).
//! * A flag outside every window is a **false flag**: the false-positive rate is
//!   false flags / scored samples outside every window, and false flags per day
//!   divide by the scored time span.
//!
//! Windows files ([`parse_windows`]) are JSON: either a list of `[start, end]`
//! pairs for one series, or NAB's `windows.json`, a map from a file name to its
//! list (looked up by [`WindowsFile::for_series`]). A time is a number of seconds
//! since the epoch or a UTC string `YYYY-MM-DD HH:MM:SS[.ffffff]` (or RFC 3339).
//!
//! [`series_from_csv`] reads a `timestamp,value` CSV (NAB's format) into legacy
//! snapshots whose `cpu_usage` is the value min-max scaled into 0..100: the
//! mapping the evaluations in `docs/anomaly-detection.md` use.

use std::collections::BTreeMap;

use serde_json::Value;

use sysmon_core::error::CoreError;
use sysmon_core::snapshot::Snapshot;

/// The share of each series' first samples that is probation (not scored).
pub const DEFAULT_PROBATION: f64 = 0.15;

/// Labelled windows, `[start, end]` in seconds since the epoch, inclusive.
pub type Windows = Vec<(f64, f64)>;

/// A parsed windows file.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowsFile {
    /// One series' windows.
    List(Windows),
    /// Windows per series name (NAB's `windows.json`).
    Map(BTreeMap<String, Windows>),
}

impl WindowsFile {
    /// The windows of the series read from `path`: the list itself, or the map's
    /// entry whose key is `path` or a path suffix of it (`realTraffic/speed_6005.csv`
    /// matches `/data/nab/realTraffic/speed_6005.csv`).
    pub fn for_series(&self, path: &str) -> Result<Windows, CoreError> {
        match self {
            WindowsFile::List(w) => Ok(w.clone()),
            WindowsFile::Map(m) => {
                let path = path.replace('\\', "/");
                m.iter()
                    .filter(|(k, _)| path == **k || path.ends_with(&format!("/{k}")))
                    .max_by_key(|(k, _)| k.len())
                    .map(|(_, w)| w.clone())
                    .ok_or_else(|| {
                        CoreError::Config(format!(
                            "the windows file has no entry for {path} (keys are file names relative to the data folder)"
                        ))
                    })
            }
        }
    }
}

fn bad(msg: impl Into<String>) -> CoreError {
    CoreError::Config(format!("windows file: {}", msg.into()))
}

/// Parses a time: seconds since the epoch, or a UTC date-time string.
pub fn parse_time(v: &Value) -> Result<f64, CoreError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| bad(format!("{n} is not a finite time"))),
        Value::String(s) => parse_time_str(s),
        other => Err(bad(format!("{other} is not a time"))),
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC) or RFC 3339 into seconds since the epoch.
pub fn parse_time_str(s: &str) -> Result<f64, CoreError> {
    let s = s.trim();
    let t = humantime::parse_rfc3339_weak(s)
        .or_else(|_| humantime::parse_rfc3339(s))
        .map_err(|e| bad(format!("{s:?} is not a date-time ({e})")))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad(format!("{s:?} is before 1970")))?;
    Ok(d.as_secs_f64())
}

fn parse_list(v: &Value) -> Result<Windows, CoreError> {
    let Value::Array(items) = v else {
        return Err(bad("expected a list of [start, end] pairs"));
    };
    items
        .iter()
        .map(|w| match w {
            Value::Array(p) if p.len() == 2 => {
                let (a, b) = (parse_time(&p[0])?, parse_time(&p[1])?);
                if b < a {
                    return Err(bad(format!("window {w} ends before it starts")));
                }
                Ok((a, b))
            }
            other => Err(bad(format!("{other} is not a [start, end] pair"))),
        })
        .collect()
}

/// Parses a windows file (see the module documentation).
pub fn parse_windows(text: &str) -> Result<WindowsFile, CoreError> {
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    match &v {
        Value::Object(m) => m
            .iter()
            .map(|(k, w)| parse_list(w).map(|w| (k.clone(), w)))
            .collect::<Result<_, _>>()
            .map(WindowsFile::Map),
        _ => parse_list(&v).map(WindowsFile::List),
    }
}

/// The figures of one or more series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowScore {
    /// Labelled windows.
    pub windows: usize,
    /// Windows with a flag inside.
    pub found: usize,
    /// Samples scored (after probation).
    pub scored: usize,
    /// Scored samples outside every window.
    pub outside: usize,
    /// Flags outside every window.
    pub false_flags: usize,
    /// Scored time, in seconds.
    pub span_secs: f64,
}

impl WindowScore {
    /// False flags / samples outside windows.
    pub fn fpr(&self) -> f64 {
        if self.outside == 0 {
            0.0
        } else {
            self.false_flags as f64 / self.outside as f64
        }
    }

    /// False flags per day of scored data.
    pub fn false_per_day(&self) -> f64 {
        if self.span_secs <= 0.0 {
            0.0
        } else {
            self.false_flags as f64 * 86_400.0 / self.span_secs
        }
    }

    /// Adds another series' figures.
    pub fn merge(&mut self, o: &WindowScore) {
        self.windows += o.windows;
        self.found += o.found;
        self.scored += o.scored;
        self.outside += o.outside;
        self.false_flags += o.false_flags;
        self.span_secs += o.span_secs;
    }

    /// One line: `windows found 3/4, FPR 0.120 % (5 of 4100 samples), 0.41 false flags per day`.
    pub fn summary(&self) -> String {
        format!(
            "windows found {}/{}, FPR {:.3} % ({} of {} samples outside windows), {:.2} false flags per day",
            self.found,
            self.windows,
            self.fpr() * 100.0,
            self.false_flags,
            self.outside,
            self.false_per_day()
        )
    }
}

/// Scores one series' flags, `(timestamp, flagged)` in time order, against its windows.
pub fn score_series(flags: &[(f64, bool)], windows: &[(f64, f64)], probation: f64) -> WindowScore {
    let skip = ((flags.len() as f64) * probation.clamp(0.0, 1.0)).floor() as usize;
    let scored = &flags[skip.min(flags.len())..];
    // A window that ends before scoring starts cannot be scored: it is left out.
    let first = scored.first().map_or(f64::INFINITY, |f| f.0);
    let windows: Vec<(f64, f64)> = windows.iter().copied().filter(|w| w.1 >= first).collect();
    let mut found = vec![false; windows.len()];
    let mut s = WindowScore {
        windows: windows.len(),
        scored: scored.len(),
        ..WindowScore::default()
    };
    if let (Some(a), Some(b)) = (scored.first(), scored.last()) {
        s.span_secs = b.0 - a.0;
    }
    for &(t, flag) in scored {
        let mut inside = false;
        for (i, &(a, b)) in windows.iter().enumerate() {
            if (a..=b).contains(&t) {
                inside = true;
                found[i] |= flag;
            }
        }
        if !inside {
            s.outside += 1;
            s.false_flags += flag as usize;
        }
    }
    s.found = found.iter().filter(|f| **f).count();
    s
}

/// Reads a `timestamp,value` CSV (a header line is skipped) into legacy snapshots
/// of machine `machine_id`: the value min-max scaled into `cpu_usage` 0..100,
/// memory at a constant 50 %, counters at zero. Rows that do not parse are errors.
pub fn series_from_csv(text: &str, machine_id: &str) -> Result<Vec<Snapshot>, CoreError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (ts, value) = line.split_once(',').ok_or_else(|| {
            CoreError::Config(format!("line {}: expected timestamp,value", i + 1))
        })?;
        let Ok(v) = value.trim().parse::<f64>() else {
            if i == 0 {
                continue; // the header
            }
            return Err(CoreError::Config(format!(
                "line {}: {value:?} is not a number",
                i + 1
            )));
        };
        let t =
            parse_time_str(ts).map_err(|e| CoreError::Config(format!("line {}: {e}", i + 1)))?;
        rows.push((t, v));
    }
    let (lo, hi) = rows
        .iter()
        .filter(|r| r.1.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), r| {
            (a.min(r.1), b.max(r.1))
        });
    let span = hi - lo;
    Ok(rows
        .into_iter()
        .map(|(t, v)| {
            let mut s = Snapshot::new(machine_id, t);
            s.cpu_usage = if span > 0.0 {
                (v - lo) / span * 100.0
            } else {
                50.0
            };
            s.memory_usage = 50.0;
            s
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_maps_and_times() {
        let w = parse_windows(r#"[["2014-04-10 07:15:00.000000", 1397200000]]"#).unwrap();
        let WindowsFile::List(l) = &w else { panic!() };
        assert_eq!(l[0].0, 1_397_114_100.0);
        let m = parse_windows(r#"{"a/b.csv": [[1, 2]], "c.csv": []}"#).unwrap();
        assert_eq!(m.for_series("/x/a/b.csv").unwrap(), vec![(1.0, 2.0)]);
        assert!(m.for_series("/x/ab.csv").is_err());
        assert!(parse_windows(r#"[[2, 1]]"#).is_err());
        assert!(parse_windows(r#"[["yesterday", 1]]"#).is_err());
    }

    #[test]
    fn scores_like_nab() {
        // 20 samples a minute apart; probation 15 % = 3 samples.
        let flags: Vec<(f64, bool)> = (0..20)
            .map(|i| (i as f64 * 60.0, [1, 10, 12].contains(&i)))
            .collect();
        let s = score_series(&flags, &[(600.0, 660.0), (900.0, 960.0)], 0.15);
        assert_eq!((s.windows, s.found, s.scored), (2, 1, 17));
        assert_eq!((s.outside, s.false_flags), (13, 1));
        assert_eq!(s.span_secs, 16.0 * 60.0);
        assert!((s.false_per_day() - 90.0).abs() < 1e-9);
    }

    #[test]
    fn csv_values_are_scaled_into_cpu() {
        let s = series_from_csv(
            "timestamp,value\n2014-04-01 00:00:00,10\n2014-04-01 00:05:00,30\n",
            "m",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].cpu_usage, s[1].cpu_usage), (0.0, 100.0));
        assert_eq!(s[1].timestamp - s[0].timestamp, 300.0);
        assert!(series_from_csv("t,v\n2014-04-01 00:00:00,x\n", "m").is_err());
    }
}
