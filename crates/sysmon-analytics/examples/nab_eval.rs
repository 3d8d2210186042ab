//! The anomaly detector's quality on real labelled data (a NAB subset) and on
//! the labelled synthetic traces, scored as `sysmon detect --windows` scores.
//!
//! Run (from the workspace root):
//! `cargo run --release -p sysmon-analytics --features tracegen --example nab_eval -- ../shared/datasets/nab-dev`
//!
//! Each `*.csv` under the folder (`timestamp,value`) becomes one machine's legacy
//! snapshots with the value min-max scaled into `cpu_usage` 0..100
//! ([`score_windows::series_from_csv`]); its windows come from `windows.json`.
//! Options after the folder:
//! * `--half a|b`: only the files at even (a) or odd (b) positions in name order,
//!   to tune on one half and check on the other;
//! * `--config FILE`: an `[anomaly]`-style TOML table of detector settings;
//! * `--sensitivity low|normal|high`;
//! * `--reasons`: print every false flag's reasons;
//! * `--misses`: per missed window, the best streaming ratio inside it and the
//!   largest CPU |z| and change from the median (which limit stopped it);
//! * `--no-generator`: skip the synthetic traces.

use std::path::{Path, PathBuf};

use sysmon_analytics::eval::{evaluate_seeds, DEFAULT_GRACE, HELD_OUT_SEEDS, TUNING_SEEDS};
use sysmon_analytics::score_windows::{
    parse_windows, score_series, series_from_csv, WindowScore, DEFAULT_PROBATION,
};
use sysmon_analytics::tracegen::TraceConfig;
use sysmon_analytics::{AnomalyDetector, DetectorConfig};

fn csv_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            csv_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "csv") {
            out.push(p);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .map(String::as_str)
            .unwrap_or("../shared/datasets/nab-dev"),
    );
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let mut cfg: DetectorConfig = match opt("--config") {
        Some(f) => toml::from_str(&std::fs::read_to_string(f)?)?,
        None => DetectorConfig::default(),
    };
    if let Some(s) = opt("--sensitivity") {
        cfg.sensitivity = toml::Value::String(s).try_into()?;
    }
    let windows = parse_windows(&std::fs::read_to_string(dir.join("windows.json"))?)?;
    let mut files = Vec::new();
    csv_files(&dir, &mut files)?;
    files.sort();
    let half = opt("--half");
    let mut total = WindowScore::default();
    for (i, path) in files.iter().enumerate() {
        match half.as_deref() {
            Some("a") if i % 2 == 1 => continue,
            Some("b") if i % 2 == 0 => continue,
            _ => {}
        }
        let name = path
            .strip_prefix(&dir)?
            .to_string_lossy()
            .replace('\\', "/");
        let snaps = series_from_csv(&std::fs::read_to_string(path)?, &name)?;
        let w = windows.for_series(&name)?;
        let mut d = AnomalyDetector::new(cfg.clone())?;
        let mut flags = Vec::with_capacity(snaps.len());
        // Per window, the highest score inside it (for --misses).
        let mut best = vec![(0.0f64, 0.0f64); w.len()];
        let mut bz = vec![(0.0f64, 0.0f64); w.len()];
        let skip = (snaps.len() as f64 * DEFAULT_PROBATION) as usize;
        for (k, s) in snaps.iter().enumerate() {
            let Some((a, v)) = d.observe_detailed(s) else {
                continue;
            };
            let r = v.streaming.max_ratio();
            flags.push((a.timestamp, a.anomaly));
            for (b, (x, y)) in best.iter_mut().zip(&w) {
                if (*x..=*y).contains(&a.timestamp) && k >= skip && r > b.0 {
                    *b = (r, a.timestamp);
                }
            }
            for (b, (x, y)) in bz.iter_mut().zip(&w) {
                if (*x..=*y).contains(&a.timestamp) && k >= skip {
                    if let Some(dv) = v.streaming.deviations[0] {
                        b.0 = b.0.max(dv.z.abs());
                        b.1 = b.1.max((dv.value - dv.baseline).abs());
                    }
                }
            }
            let outside = !w.iter().any(|(x, y)| (*x..=*y).contains(&a.timestamp));
            if a.anomaly && outside && k >= skip && flag("--reasons") {
                println!("  FALSE {name} #{k} {:?}", a.reasons);
            }
        }
        if flag("--misses") {
            for (i, b) in best.iter().enumerate() {
                if b.0 < 1.0 {
                    println!(
                        "  MISSED {name} window {i}: best streaming ratio {:.3} at {} max|z| {:.1} max|chg| {:.1}",
                        b.0, b.1, bz[i].0, bz[i].1
                    );
                }
            }
        }
        let s = score_series(&flags, &w, DEFAULT_PROBATION);
        println!("{name:<55} {}", s.summary());
        total.merge(&s);
    }
    println!("ALL: {}", total.summary());
    if !flag("--no-generator") {
        let t = TraceConfig::default();
        for (label, seeds) in [
            ("tuning", &TUNING_SEEDS[..]),
            ("held-out", &HELD_OUT_SEEDS[..]),
        ] {
            let r = evaluate_seeds(seeds, &t, &cfg, DEFAULT_GRACE)?;
            println!(
                "generator {label} seeds: TPR {:.1} %, FPR {:.3} %",
                r.tpr() * 100.0,
                r.fpr() * 100.0
            );
            if flag("--table") {
                println!("{}", r.table());
            }
        }
    }
    Ok(())
}
