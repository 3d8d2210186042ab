//! `sysmon detect`: offline anomaly scoring of a file of snapshots.
//!
//! Every line is decoded exactly as the ingester decodes a message
//! ([`sysmon_core::codec::decode_with`], JSON, `[ingest] max_message_bytes`) and
//! scored by [`AnomalyDetector::observe`], the detector the ingester runs, so the
//! output is what the live pipeline would have flagged for the same stream.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::Args;
use sysmon_analytics::score_windows::{
    parse_windows, score_series, WindowScore, WindowsFile, DEFAULT_PROBATION,
};
use sysmon_analytics::{AnomalyDetector, AnomalyScore, EpisodeTracker};
use sysmon_core::codec::{decode_with, Format};

use crate::cli::CommonArgs;

/// The long `--help` of `sysmon detect`.
pub const LONG_ABOUT: &str = "Score a file of snapshots with the anomaly detector, offline.\n\n\
Reads snapshots, one JSON object per line (sysmon's native JSON, e.g. from \
`sysmon query` or `sysmon-agent --stdout`, or the legacy Python producer's JSON), \
several machines interleaved in time order. Each line is decoded and validated exactly \
as the ingester does it and scored by the same online detector (per machine: robust \
z-scores on the features plus an Isolation Forest retrained on a rolling window), with \
the [anomaly] section of --config. This is how detection quality is measured: run it \
on a labelled trace and compare the flags with the labels.\n\n\
Output: for every non-empty input line, in order, one JSON line on stdout:\n  \
{\"machine_id\":\"web-01\",\"timestamp\":1764086400.0,\"score\":0.12,\"anomaly\":false}\n  \
{\"machine_id\":\"web-01\",\"timestamp\":1764086401.0,\"score\":0.93,\"anomaly\":true,\"reasons\":[\"...\"]}\n\
`score` is in [0, 1), 0.5 the decision boundary; `reasons` (only when anomalous) says \
which test flagged. A snapshot the detector cannot score (a duplicate, or older than \
that machine's previous one) gives `\"score\":null,\"anomaly\":false,\"skipped\":\"...\"`.\n\
A line that does not decode gives {\"line\":N,\"error\":\"...\"} (N counts from 1, \
empty lines included); the rest is still scored, and the exit status is 1 with the \
count on stderr. Empty (or blank) lines are ignored: no output line, not an error.\n\n\
With --episodes, the output is one JSON line per anomaly episode instead (a \
persisting flag is one episode: machine_id, start, end, peak_at, peak_score, samples, \
metrics, reasons of the peak), in the order they close.\n\n\
With --windows WINDOWS.json, the flags are scored against labelled anomaly windows the \
way the Numenta Anomaly Benchmark scores detectors, and the output is one JSON line per \
machine and a last line with \"machine_id\":null for all of them: windows, found, \
samples scored, samples outside windows, false_flags, fpr, false_flags_per_day. The \
first 15 % of each machine's samples is probation (not scored); a window is found when a \
sample inside it is flagged; FPR = flags outside every window / samples outside windows. \
WINDOWS.json is a list of [start, end] pairs (seconds since the epoch or \
\"YYYY-MM-DD HH:MM:SS\" UTC), used for every machine, or an object mapping a machine id \
or the input's file name (NAB's windows.json) to such a list. A summary goes to stderr.\n\n\
Examples:\n  \
sysmon detect --input trace.jsonl > scores.jsonl\n  \
sysmon detect --input trace.jsonl --episodes\n  \
sysmon detect --input incidents.jsonl --windows incidents-windows.json\n  \
sysmon query --since 24h | sysmon detect --input - | grep '\"anomaly\":true'\n  \
sysmon detect --input legacy.jsonl --config sysmon.toml   # [anomaly] tuning";

/// Flags of `sysmon detect`.
#[derive(Debug, Clone, Args)]
pub struct DetectArgs {
    /// File of snapshots, one JSON object per line; `-` reads standard input.
    #[arg(long, short = 'i', value_name = "FILE")]
    input: PathBuf,
    /// Score the flags against these labelled anomaly windows (see --help).
    #[arg(long, value_name = "WINDOWS.json", conflicts_with = "episodes")]
    windows: Option<PathBuf>,
    /// Print anomaly episodes instead of a line per snapshot.
    #[arg(long)]
    episodes: bool,
}

/// What `sysmon detect` prints.
enum Mode {
    /// One line per input line.
    Samples,
    /// One line per episode.
    Episodes(EpisodeTracker),
    /// Per machine, the flags (timestamp, flagged), scored at the end.
    Windows(WindowsFile, BTreeMap<String, Vec<(f64, bool)>>),
}

/// What a run saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DetectSummary {
    /// Snapshots scored.
    pub scored: u64,
    /// Of those, flagged as anomalies.
    pub anomalies: u64,
    /// Snapshots the detector refused (duplicate or out-of-order timestamps).
    pub skipped: u64,
    /// Lines that did not decode.
    pub errors: u64,
    /// Empty lines ignored.
    pub empty: u64,
}

/// Runs `sysmon detect`.
pub fn run(args: DetectArgs, common: &CommonArgs) -> anyhow::Result<()> {
    let config = crate::load_config(common.config.as_deref())?;
    let mut detector = AnomalyDetector::new(config.anomaly.clone())
        .context("the [anomaly] section of the configuration")?;
    let max_bytes = config.ingest.max_message_bytes;
    let mut mode = match &args.windows {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the windows file {}", path.display()))?;
            let windows = parse_windows(&text)
                .with_context(|| format!("in the windows file {}", path.display()))?;
            Mode::Windows(windows, BTreeMap::new())
        }
        None if args.episodes => Mode::Episodes(EpisodeTracker::default()),
        None => Mode::Samples,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = if args.input.as_os_str() == "-" {
        let stdin = io::stdin();
        let mut input = stdin.lock();
        score_lines(&mut input, &mut out, &mut detector, max_bytes, &mut mode)
    } else {
        let file = File::open(&args.input)
            .with_context(|| format!("cannot open input file {}", args.input.display()))?;
        let mut input = BufReader::with_capacity(1 << 16, file);
        score_lines(&mut input, &mut out, &mut detector, max_bytes, &mut mode)
    };
    let result = result.and_then(|s| {
        finish(&mut out, mode, &args.input.to_string_lossy())?;
        Ok(s)
    });
    let summary = match result.and_then(|s| out.flush().map(|()| s).map_err(Failure::Write)) {
        Ok(s) => s,
        // A reader that stopped early (`sysmon detect ... | head`) is not an error.
        Err(Failure::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(Failure::Write(e)) => return Err(e).context("writing to standard output"),
        Err(Failure::Read(e)) => {
            let _ = out.flush();
            return Err(e).with_context(|| format!("reading {}", args.input.display()));
        }
    };
    tracing::debug!(?summary, "detect finished");
    if summary.errors > 0 {
        bail!(
            "{} of {} lines could not be decoded (see the {{\"line\":N,\"error\":...}} lines in the output); {} snapshots scored, {} anomalies",
            summary.errors,
            summary.errors + summary.scored + summary.skipped,
            summary.scored,
            summary.anomalies
        );
    }
    Ok(())
}

/// Why scoring stopped.
#[derive(Debug)]
enum Failure {
    Read(io::Error),
    Write(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Write(e)
    }
}

/// Writes a value as JSON (strings escaped, floats shortest round-trip, NaN as null).
macro_rules! json {
    ($out:expr, $value:expr) => {
        serde_json::to_writer(&mut *$out, $value).map_err(io::Error::from)
    };
}

fn score_lines(
    input: &mut impl BufRead,
    out: &mut impl Write,
    detector: &mut AnomalyDetector,
    max_bytes: usize,
    mode: &mut Mode,
) -> Result<DetectSummary, Failure> {
    let mut summary = DetectSummary::default();
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf).map_err(Failure::Read)? == 0 {
            return Ok(summary);
        }
        line_no += 1;
        let line = trim_ascii(&buf);
        if line.is_empty() {
            summary.empty += 1;
            continue;
        }
        let decoded = decode_with(line, Some(Format::Json), max_bytes);
        let scored = decoded
            .as_ref()
            .ok()
            .map(|snapshot| (snapshot, detector.observe_detailed(snapshot)));
        match &scored {
            Some((_, Some((s, _)))) => {
                summary.scored += 1;
                summary.anomalies += s.anomaly as u64;
            }
            Some((_, None)) => summary.skipped += 1,
            None => summary.errors += 1,
        }
        match (&mut *mode, scored, &decoded) {
            (Mode::Samples, Some((_, Some((s, _)))), _) => write_score(out, &s)?,
            (Mode::Samples, Some((snapshot, None)), _) => {
                write_skipped(out, &snapshot.machine_id, snapshot.timestamp)?;
            }
            (Mode::Samples, None, Err(e)) => {
                write!(out, "{{\"line\":{line_no},\"error\":")?;
                json!(out, &e.to_string())?;
                out.write_all(b"}")?;
            }
            (Mode::Episodes(tracker), Some((_, Some((s, v)))), _) => {
                if let Some(e) = tracker.observe(&s, &v) {
                    json!(out, &e)?;
                    out.write_all(b"\n")?;
                }
                continue;
            }
            (Mode::Windows(_, flags), Some((_, Some((s, _)))), _) => {
                flags
                    .entry(s.machine_id)
                    .or_default()
                    .push((s.timestamp, s.anomaly));
                continue;
            }
            (Mode::Episodes(_) | Mode::Windows(..), _, Err(e)) => {
                write!(out, "{{\"line\":{line_no},\"error\":")?;
                json!(out, &e.to_string())?;
                out.write_all(b"}")?;
            }
            _ => continue,
        }
        out.write_all(b"\n")?;
    }
}

/// The end of the input: the episodes still open, or the window scores.
fn finish(out: &mut impl Write, mode: Mode, input_name: &str) -> Result<(), Failure> {
    match mode {
        Mode::Samples => {}
        Mode::Episodes(mut tracker) => {
            for e in tracker.finish() {
                json!(out, &e)?;
                out.write_all(b"\n")?;
            }
        }
        Mode::Windows(windows, flags) => {
            let mut total = WindowScore::default();
            for (machine, flags) in &flags {
                let w = match &windows {
                    WindowsFile::Map(m) if m.contains_key(machine) => m[machine].clone(),
                    _ => windows.for_series(input_name).map_err(|e| {
                        Failure::Read(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                    })?,
                };
                let s = score_series(flags, &w, DEFAULT_PROBATION);
                write_window_score(out, Some(machine), &s)?;
                total.merge(&s);
            }
            write_window_score(out, None, &total)?;
            eprintln!("{}", total.summary());
        }
    }
    Ok(())
}

/// One machine's (or, for `None`, every machine's) window scores.
fn write_window_score(
    out: &mut impl Write,
    machine: Option<&str>,
    s: &WindowScore,
) -> io::Result<()> {
    out.write_all(b"{\"machine_id\":")?;
    json!(out, &machine)?;
    write!(
        out,
        ",\"windows\":{},\"found\":{},\"scored\":{},\"outside\":{},\"false_flags\":{},\"fpr\":",
        s.windows, s.found, s.scored, s.outside, s.false_flags
    )?;
    json!(out, &s.fpr())?;
    out.write_all(b",\"false_flags_per_day\":")?;
    json!(out, &s.false_per_day())?;
    out.write_all(b"}\n")
}

/// `{"machine_id":…,"timestamp":…,"score":…,"anomaly":…[,"reasons":[…]]}`
fn write_score(out: &mut impl Write, s: &AnomalyScore) -> io::Result<()> {
    out.write_all(b"{\"machine_id\":")?;
    json!(out, &s.machine_id)?;
    out.write_all(b",\"timestamp\":")?;
    json!(out, &s.timestamp)?;
    out.write_all(b",\"score\":")?;
    json!(out, &s.score)?;
    write!(out, ",\"anomaly\":{}", s.anomaly)?;
    if !s.reasons.is_empty() {
        out.write_all(b",\"reasons\":")?;
        json!(out, &s.reasons)?;
    }
    out.write_all(b"}")
}

/// The line for a snapshot [`AnomalyDetector::observe`] refused.
fn write_skipped(out: &mut impl Write, machine_id: &str, timestamp: f64) -> io::Result<()> {
    out.write_all(b"{\"machine_id\":")?;
    json!(out, machine_id)?;
    out.write_all(b",\"timestamp\":")?;
    json!(out, &timestamp)?;
    out.write_all(
        b",\"score\":null,\"anomaly\":false,\"skipped\":\"not later than this machine's previous snapshot (duplicate or out of order)\"}",
    )
}

/// `bytes` without leading and trailing ASCII whitespace (and the `\r` of CRLF files).
fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_whitespace_and_crlf() {
        assert_eq!(trim_ascii(b"  {}\r\n"), b"{}");
        assert_eq!(trim_ascii(b"\r\n"), b"");
        assert_eq!(trim_ascii(b""), b"");
        assert_eq!(trim_ascii(b"x"), b"x");
    }
}
