//! `sysmon detect`: offline anomaly scoring of a file of snapshots.
//!
//! Every line is decoded exactly as the ingester decodes a message
//! ([`sysmon_core::codec::decode_with`], JSON, `[ingest] max_message_bytes`) and
//! scored by [`AnomalyDetector::observe`], the detector the ingester runs, so the
//! output is what the live pipeline would have flagged for the same stream.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use sysmon_analytics::{AnomalyDetector, AnomalyScore};
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
Examples:\n  \
sysmon detect --input trace.jsonl > scores.jsonl\n  \
sysmon query --since 24h | sysmon detect --input - | grep '\"anomaly\":true'\n  \
sysmon detect --input legacy.jsonl --config sysmon.toml   # [anomaly] tuning";

/// Flags of `sysmon detect`.
#[derive(Debug, Clone, Args)]
pub struct DetectArgs {
    /// File of snapshots, one JSON object per line; `-` reads standard input.
    #[arg(long, short = 'i', value_name = "FILE")]
    input: PathBuf,
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
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = if args.input.as_os_str() == "-" {
        let stdin = io::stdin();
        let mut input = stdin.lock();
        score_lines(&mut input, &mut out, &mut detector, max_bytes)
    } else {
        let file = File::open(&args.input)
            .with_context(|| format!("cannot open input file {}", args.input.display()))?;
        let mut input = BufReader::with_capacity(1 << 16, file);
        score_lines(&mut input, &mut out, &mut detector, max_bytes)
    };
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
        match decode_with(line, Some(Format::Json), max_bytes) {
            Ok(snapshot) => match detector.observe(&snapshot) {
                Some(s) => {
                    summary.scored += 1;
                    summary.anomalies += s.anomaly as u64;
                    write_score(out, &s)?;
                }
                None => {
                    summary.skipped += 1;
                    write_skipped(out, &snapshot.machine_id, snapshot.timestamp)?;
                }
            },
            Err(e) => {
                summary.errors += 1;
                write!(out, "{{\"line\":{line_no},\"error\":")?;
                json!(out, &e.to_string())?;
                out.write_all(b"}")?;
            }
        }
        out.write_all(b"\n")?;
    }
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
