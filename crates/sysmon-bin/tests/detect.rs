//! `sysmon detect`: the real binary on labelled traces from `analytics::tracegen`,
//! compared line by line with an in-process `AnomalyDetector` run and with
//! `analytics::eval` on the same trace.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sysmon_analytics::eval::{evaluate, DEFAULT_GRACE, HELD_OUT_SEEDS};
use sysmon_analytics::tracegen::{generate, LabelledTrace, SampleLabel, TraceConfig};
use sysmon_analytics::{AnomalyDetector, DetectorConfig};
use sysmon_core::codec::{decode_with, Format, DEFAULT_MAX_MESSAGE_BYTES};
use sysmon_core::{encode_json, Snapshot};

fn sysmon() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sysmon"));
    // No configuration from the environment: the defaults, unless a test says otherwise.
    c.env_remove("SYSMON_CONFIG").env("SYSMON_LOG", "warn");
    c
}

fn detect_file(path: &Path, extra: &[&str]) -> Output {
    sysmon()
        .arg("detect")
        .arg("--input")
        .arg(path)
        .args(extra)
        .output()
        .expect("run sysmon detect")
}

fn detect_stdin(input: &[u8]) -> Output {
    let mut child = sysmon()
        .args(["detect", "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sysmon detect");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What the in-process detector says about one input line: `None` when it does not
/// decode, `Some(None)` when `observe` refuses it, else machine, timestamp, score, flag.
type Expected = Option<Option<(String, f64, f64, bool)>>;

/// The input lines scored in-process: decoded as the ingester decodes them and
/// observed by a fresh detector. `None` for a line that does not decode.
fn reference(input: &[String], config: &DetectorConfig) -> Vec<Expected> {
    let mut d = AnomalyDetector::new(config.clone()).unwrap();
    input
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            decode_with(l.as_bytes(), Some(Format::Json), DEFAULT_MAX_MESSAGE_BYTES)
                .ok()
                .map(|s| {
                    d.observe(&s)
                        .map(|a| (a.machine_id, a.timestamp, a.score, a.anomaly))
                })
        })
        .collect()
}

/// Asserts the binary's output equals the in-process run, line by line.
fn assert_same_as_in_process(input: &[String], output: &[Value]) {
    let expected = reference(input, &DetectorConfig::default());
    assert_eq!(
        output.len(),
        expected.len(),
        "one output line per non-empty input line"
    );
    for (i, (got, want)) in output.iter().zip(&expected).enumerate() {
        match want {
            None => assert!(got.get("error").is_some(), "line {i}: {got}"),
            Some(None) => {
                assert!(got["score"].is_null(), "line {i}: {got}");
                assert_eq!(got["anomaly"], false, "line {i}: {got}");
            }
            Some(Some((machine, ts, score, anomaly))) => {
                assert_eq!(got["machine_id"], machine.as_str(), "line {i}");
                assert_eq!(got["timestamp"].as_f64(), Some(*ts), "line {i}");
                assert_eq!(got["score"].as_f64(), Some(*score), "line {i}: {got}");
                assert_eq!(got["anomaly"], *anomaly, "line {i}: {got}");
                assert_eq!(
                    got.get("reasons").is_some(),
                    *anomaly,
                    "reasons exactly when anomalous, line {i}: {got}"
                );
            }
        }
    }
}

fn native_lines(trace: &LabelledTrace) -> Vec<String> {
    trace
        .snapshots
        .iter()
        .map(|s| String::from_utf8(encode_json(s)).unwrap())
        .collect()
}

/// The legacy Python producer's message for `s`: only its keys, no schema version.
fn legacy_line(s: &Snapshot) -> String {
    let v: Value = serde_json::from_slice(&encode_json(s)).unwrap();
    let mut legacy = serde_json::Map::new();
    for key in [
        "machine_id",
        "timestamp",
        "cpu_usage",
        "memory_usage",
        "disk_io",
        "network_io",
    ] {
        legacy.insert(key.into(), v[key].clone());
    }
    legacy.insert("top_cpu_processes".into(), Value::Array(vec![]));
    legacy.insert("top_mem_processes".into(), Value::Array(vec![]));
    Value::Object(legacy).to_string()
}

fn write_lines(dir: &Path, name: &str, lines: &[String]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).unwrap();
    path
}

/// TPR per event and FPR per normal sample from the binary's flags, with the
/// definitions of `analytics::eval` (grace samples after an event, warm-up not counted).
fn quality(trace: &LabelledTrace, output: &[Value]) -> (usize, usize, usize, usize) {
    use std::collections::HashMap;
    let mut idx_of: HashMap<&str, usize> = HashMap::new();
    let mut detected = vec![false; trace.events.len()];
    let mut last_event: HashMap<&str, (usize, usize)> = HashMap::new();
    let (mut normal, mut false_pos) = (0, 0);
    for ((snap, label), out) in trace.snapshots.iter().zip(&trace.labels).zip(output) {
        assert_eq!(out["machine_id"], snap.machine_id.as_str());
        let flagged = out["anomaly"] == true;
        let m = snap.machine_id.as_str();
        let idx = {
            let c = idx_of.entry(m).or_insert(0);
            *c += 1;
            *c
        };
        match *label {
            SampleLabel::WarmUp => {}
            SampleLabel::Event(e) => {
                last_event.insert(m, (e, idx));
                detected[e] |= flagged;
            }
            SampleLabel::Normal => match last_event.get(m) {
                Some(&(e, end)) if idx <= end + DEFAULT_GRACE => detected[e] |= flagged,
                _ => {
                    normal += 1;
                    false_pos += flagged as usize;
                }
            },
        }
    }
    let hits = detected.iter().filter(|d| **d).count();
    (hits, trace.events.len(), false_pos, normal)
}

#[test]
fn a_labelled_trace_scores_exactly_as_the_online_detector_and_meets_the_targets() {
    // A held-out trace (seed never used for tuning): 8 machines interleaved in time order.
    let trace = generate(&TraceConfig {
        seed: HELD_OUT_SEEDS[0],
        ..TraceConfig::default()
    });
    let machines: std::collections::HashSet<&str> = trace
        .snapshots
        .iter()
        .map(|s| s.machine_id.as_str())
        .collect();
    assert!(machines.len() >= 2);
    assert_ne!(
        trace.snapshots[0].machine_id, trace.snapshots[1].machine_id,
        "interleaved"
    );
    let dir = tempfile::tempdir().unwrap();
    let input = native_lines(&trace);
    let path = write_lines(dir.path(), "trace.jsonl", &input);

    let out = detect_file(&path, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let output = lines(&out);
    assert_eq!(output.len(), trace.snapshots.len());
    assert_same_as_in_process(&input, &output);

    // The injected events are flagged: the quality eval reports for this trace.
    let (hits, events, false_pos, normal) = quality(&trace, &output);
    let tpr = hits as f64 / events as f64;
    let fpr = false_pos as f64 / normal as f64;
    println!(
        "detect on seed {}: {hits}/{events} events, {false_pos}/{normal} false positives",
        HELD_OUT_SEEDS[0]
    );
    assert!(events >= 20, "{events} events: too few to judge");
    assert!(tpr >= 0.95, "TPR {tpr:.3}");
    assert!(fpr <= 0.01, "FPR {fpr:.4}");
    let report = evaluate(&trace, &DetectorConfig::default(), DEFAULT_GRACE).unwrap();
    assert_eq!(report.detected(), hits, "{}", report.table());
    assert_eq!(report.false_positives, false_pos);
    assert_eq!(report.normal_samples, normal);
}

#[test]
fn legacy_lines_are_scored_and_stdin_works() {
    let trace = generate(&TraceConfig {
        machines: 3,
        samples: 400,
        seed: 11,
        ..TraceConfig::default()
    });
    // Machine 0 speaks the legacy format, the others native JSON, interleaved.
    let legacy_id = trace.snapshots[0].machine_id.clone();
    let input: Vec<String> = trace
        .snapshots
        .iter()
        .map(|s| {
            if s.machine_id == legacy_id {
                legacy_line(s)
            } else {
                String::from_utf8(encode_json(s)).unwrap()
            }
        })
        .collect();
    let first = decode_with(input[0].as_bytes(), None, DEFAULT_MAX_MESSAGE_BYTES).unwrap();
    assert!(first.is_legacy(), "the test input must really be legacy");
    let mut text = input.join("\n").into_bytes();
    text.push(b'\n');
    let out = detect_stdin(&text);
    assert!(out.status.success(), "{}", stderr(&out));
    let output = lines(&out);
    assert_same_as_in_process(&input, &output);
    let legacy_scored = output
        .iter()
        .filter(|v| v["machine_id"] == legacy_id.as_str() && v["score"].is_f64())
        .count();
    assert_eq!(
        legacy_scored,
        input
            .iter()
            .filter(|l| !l.contains("schema_version"))
            .count()
    );
    assert!(legacy_scored > 300);
}

#[test]
fn bad_lines_give_error_lines_the_rest_is_scored_and_the_exit_status_is_1() {
    let trace = generate(&TraceConfig {
        machines: 2,
        samples: 200,
        seed: 12,
        ..TraceConfig::default()
    });
    let mut input = native_lines(&trace);
    // Line numbers (1-based) after the insertions below.
    input.insert(
        100,
        "{\"machine_id\": \"web-01\", \"cpu_usage\": ".to_string(),
    ); // line 101: truncated
    input.insert(150, String::new()); // line 151: empty, ignored
    let mut bad_value: Value = serde_json::from_str(&input[200]).unwrap();
    bad_value["cpu_usage"] = Value::from(-3.0);
    input.insert(201, bad_value.to_string()); // line 202: invalid value
    input.insert(250, input[249].clone()); // line 251: a duplicate, not scorable
    let dir = tempfile::tempdir().unwrap();
    let path = write_lines(dir.path(), "bad.jsonl", &input);

    let out = detect_file(&path, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("2 of"), "{err}");
    assert!(err.contains("could not be decoded"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let output = lines(&out);
    assert_eq!(
        output.len(),
        input.len() - 1,
        "every non-empty line answered"
    );
    assert_same_as_in_process(&input, &output);
    let errors: Vec<&Value> = output.iter().filter(|v| v.get("error").is_some()).collect();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["line"], 101);
    assert_eq!(errors[1]["line"], 202);
    assert!(
        errors[1]["error"].as_str().unwrap().contains("cpu_usage"),
        "{}",
        errors[1]
    );
    // The lines around the bad ones are scored.
    assert!(output[99]["score"].is_f64() && output[101]["score"].is_f64());
    // The duplicate (output index 249: one empty line before it is not echoed).
    assert!(output[249]["score"].is_null(), "{}", output[249]);
    assert!(output[249]["skipped"].is_string());
    assert_eq!(output[249]["machine_id"], output[248]["machine_id"]);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = detect_file(Path::new("/nonexistent/trace.jsonl"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot open input file /nonexistent/trace.jsonl"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn the_anomaly_section_of_the_config_is_used() {
    // A CPU spike, with a config whose spike test can never fire: not flagged.
    let trace = generate(&TraceConfig {
        machines: 2,
        samples: 900,
        seed: 13,
        ..TraceConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let input = native_lines(&trace);
    let path = write_lines(dir.path(), "t.jsonl", &input);
    let cfg = dir.path().join("sysmon.toml");
    std::fs::write(
        &cfg,
        "[anomaly]\nz_threshold = 1e9\nsustained_samples = 0\ntrend_window = 0\nforest_min_score = 0.999\n",
    )
    .unwrap();
    let quiet = detect_file(&path, &["--config", cfg.to_str().unwrap()]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    let flagged = lines(&quiet)
        .iter()
        .filter(|v| v["anomaly"] == true)
        .count();
    assert_eq!(flagged, 0);
    let default = detect_file(&path, &[]);
    let flagged = lines(&default)
        .iter()
        .filter(|v| v["anomaly"] == true)
        .count();
    assert!(flagged > 0, "the trace has events the defaults flag");
    // An invalid [anomaly] value is refused with its name.
    std::fs::write(&cfg, "[anomaly]\ntrees = 0\n").unwrap();
    let bad = detect_file(&path, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("anomaly.trees"), "{}", stderr(&bad));
}

#[test]
fn help_explains_the_output_with_an_example() {
    let out = sysmon().args(["detect", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "\"anomaly\"",
        "\"score\"",
        "--input",
        "Examples",
        "\"error\"",
        "Empty",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

/// `shared/datasets/nab-dev` beside the clone (`../shared/datasets/nab-dev` from
/// the workspace root), found from this crate upwards.
fn nab_dev() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/datasets/nab-dev"))
        .find(|p| p.join("windows.json").is_file())
        .expect("the NAB subset shared/datasets/nab-dev beside the clone (../shared from the workspace root)")
}

/// Quality (not timing): real labelled series (NAB, values min-max scaled into
/// `cpu_usage` as legacy snapshots) through the real binary with `--windows`,
/// scored as NAB scores detectors, within the targets; the binary's
/// figures equal the in-process detector's.
#[test]
fn windows_scoring_on_real_labelled_series_meets_the_targets() {
    use sysmon_analytics::score_windows::{
        parse_windows, score_series, series_from_csv, WindowScore, DEFAULT_PROBATION,
    };
    let dir = nab_dev();
    let files = [
        "realKnownCause/ec2_request_latency_system_failure.csv",
        "realTraffic/occupancy_t4013.csv",
        "realAdExchange/exchange-3_cpc_results.csv",
        "artificialNoAnomaly/art_noisy.csv",
    ];
    let windows_path = dir.join("windows.json");
    let windows = parse_windows(&std::fs::read_to_string(&windows_path).unwrap()).unwrap();
    let mut input = Vec::new();
    let mut expected = WindowScore::default();
    for f in files {
        let snaps = series_from_csv(&std::fs::read_to_string(dir.join(f)).unwrap(), f).unwrap();
        let mut d = AnomalyDetector::new(DetectorConfig::default()).unwrap();
        let flags: Vec<(f64, bool)> = snaps
            .iter()
            .filter_map(|s| d.observe(s))
            .map(|a| (a.timestamp, a.anomaly))
            .collect();
        expected.merge(&score_series(
            &flags,
            &windows.for_series(f).unwrap(),
            DEFAULT_PROBATION,
        ));
        input.extend(snaps.iter().map(legacy_line));
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = write_lines(tmp.path(), "nab.jsonl", &input);
    let out = detect_file(
        &path,
        &["--windows", windows_path.to_str().expect("a UTF-8 path")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = lines(&out);
    assert_eq!(lines.len(), files.len() + 1, "{lines:?}");
    let total = lines.last().unwrap();
    assert!(total["machine_id"].is_null(), "{total}");
    let get = |k: &str| total[k].as_u64().unwrap() as usize;
    assert_eq!(
        (
            get("windows"),
            get("found"),
            get("outside"),
            get("false_flags")
        ),
        (
            expected.windows,
            expected.found,
            expected.outside,
            expected.false_flags
        ),
        "the binary and the in-process detector agree"
    );
    println!("{}", expected.summary());
    assert_eq!(expected.windows, 8);
    assert!(expected.found >= 8, "{}", expected.summary());
    assert!(expected.fpr() <= 0.001, "{}", expected.summary());
    assert!(stderr(&out).contains("windows found"), "{}", stderr(&out));
}

#[test]
fn episodes_mode_prints_one_line_per_episode() {
    let trace = generate(&TraceConfig {
        machines: 2,
        samples: 1500,
        seed: 4,
        ..TraceConfig::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let path = write_lines(tmp.path(), "t.jsonl", &native_lines(&trace));
    let samples = lines(&detect_file(&path, &[]));
    let flags = samples.iter().filter(|l| l["anomaly"] == true).count();
    let out = detect_file(&path, &["--episodes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let episodes = lines(&out);
    assert!(
        !episodes.is_empty() && episodes.len() <= flags,
        "{} episodes, {flags} flags",
        episodes.len()
    );
    let in_episodes: u64 = episodes
        .iter()
        .map(|e| e["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(in_episodes as usize, flags);
    for e in &episodes {
        assert!(e["start"].as_f64() <= e["end"].as_f64(), "{e}");
        assert!(!e["metrics"].as_array().unwrap().is_empty(), "{e}");
        assert!(!e["reasons"].as_array().unwrap().is_empty(), "{e}");
    }
}
