//! What the built-in collectors cost: builds `builtin_registry()` with its
//! defaults, collects a snapshot every interval for a while, then prints the
//! CPU time used (from `/proc/self/stat`, all threads) as percent of one core
//! and the peak resident memory (`VmHWM` from `/proc/self/status`).
//!
//! ```text
//! cargo run --release -p sysmon-collectors --example collect_cost -- 60
//! cargo run --release -p sysmon-collectors --example collect_cost -- 10 --interval-ms 100
//! ```
//!
//! The per-collector figures are wall time (an upper bound of CPU time that
//! grows when the machine is busy); the totals are CPU time.
//!
//! It measures the collectors alone (no encoding, no transport); the figures
//! for the whole agent come from `sysmon-agent --stdout`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sysmon_core::Snapshot;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ): 100 on every
/// mainstream Linux architecture (`getconf CLK_TCK`).
const USER_HZ: f64 = 100.0;

struct Args {
    seconds: u64,
    interval: Duration,
}

const USAGE: &str = "usage: collect_cost [SECONDS (default 60)] [--interval-ms MS (default 1000)]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 60,
        interval: Duration::from_secs(1),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--interval-ms" => {
                let v = it.next().ok_or("--interval-ms needs a value")?;
                let ms: u64 = v
                    .parse()
                    .map_err(|_| format!("--interval-ms {v:?} is not a number"))?;
                if ms == 0 {
                    return Err("--interval-ms must be positive".into());
                }
                args.interval = Duration::from_millis(ms);
            }
            s => {
                args.seconds = s
                    .parse()
                    .map_err(|_| format!("{s:?} is not a number of seconds\n{USAGE}"))?;
            }
        }
    }
    Ok(args)
}

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> Result<f64, String> {
    let stat =
        std::fs::read_to_string("/proc/self/stat").map_err(|e| format!("/proc/self/stat: {e}"))?;
    // The command name may hold spaces: fields resume after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("/proc/self/stat: no ')'")?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |i: usize| -> Result<f64, String> {
        f.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v as f64)
            .ok_or_else(|| format!("/proc/self/stat: field {} unreadable", i + 3))
    };
    Ok((ticks(11)? + ticks(12)?) / USER_HZ)
}

/// Run time of the main thread in seconds from `/proc/thread-self/schedstat`
/// (nanosecond resolution), when the kernel provides it.
fn main_thread_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_ascii_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// A `kB` line of `/proc/self/status`, in MiB.
fn status_mib(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("collect_cost: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let ticks = (args.seconds * 1000 / args.interval.as_millis().max(1) as u64).max(1);

    let cpu_start = cpu_seconds()?;
    let mut collectors = sysmon_collectors::builtin_registry()
        .build(&BTreeMap::new())
        .map_err(|e| e.to_string())?;
    let cpu_built = cpu_seconds()?;
    let thread_built = main_thread_seconds();
    let started = Instant::now();
    let names: Vec<String> = collectors.iter().map(|c| c.name().to_string()).collect();
    let mut spent = vec![Duration::ZERO; collectors.len()];
    let mut errors = vec![0u64; collectors.len()];
    let mut last = Snapshot::default();

    println!(
        "collectors: {} | {} collections every {:?}",
        names.join(", "),
        ticks,
        args.interval
    );
    let mut next = started + args.interval;
    for _ in 0..ticks {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        next += args.interval;
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut s = Snapshot::new("collect-cost", ts);
        for (i, c) in collectors.iter_mut().enumerate() {
            let t = Instant::now();
            let r = c.collect(&mut s);
            spent[i] += t.elapsed();
            if let Err(e) = r {
                if errors[i] == 0 {
                    eprintln!("collector {} failed: {e}", names[i]);
                }
                errors[i] += 1;
            }
        }
        last = s;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_end = cpu_seconds()?;
    let thread_end = main_thread_seconds();

    let steady = (cpu_end - cpu_built) / elapsed * 100.0;
    let with_start = (cpu_end - cpu_start) / elapsed * 100.0;
    println!("elapsed: {elapsed:.1} s");
    println!(
        "CPU (utime+stime, all threads): {:.3} s = {steady:.3} % of one core \
         ({with_start:.3} % including building and priming the collectors, {:.3} s)",
        cpu_end - cpu_built,
        cpu_built - cpu_start
    );
    if let (Some(a), Some(b)) = (thread_built, thread_end) {
        println!(
            "CPU (schedstat, ns resolution, collecting thread): {:.4} s = {:.3} % of one core",
            b - a,
            (b - a) / elapsed * 100.0
        );
    }
    println!(
        "peak RSS (VmHWM): {:.2} MiB; RSS now (VmRSS): {:.2} MiB",
        status_mib("VmHWM:").unwrap_or(f64::NAN),
        status_mib("VmRSS:").unwrap_or(f64::NAN)
    );
    println!("mean wall time per collect:");
    for (i, n) in names.iter().enumerate() {
        println!(
            "  {n:<12} {:>8.1} µs{}",
            spent[i].as_secs_f64() * 1e6 / ticks as f64,
            if errors[i] > 0 {
                format!("  ({} errors)", errors[i])
            } else {
                String::new()
            }
        );
    }
    println!(
        "last snapshot: cpu {:.1} % over {} cores, memory {:.1} %, disk_io {:?} rate {:?}, \
         network_io {:?} rate {:?}, load {:?}, uptime {:?} s, {} filesystems, top cpu {:?}, top mem {:?}",
        last.cpu_usage,
        last.cpu_per_core.len(),
        last.memory_usage,
        last.disk_io,
        last.disk_rate,
        last.network_io,
        last.network_rate,
        last.load_avg,
        last.uptime_secs,
        last.filesystems.len(),
        last.top_cpu_processes.iter().map(|p| (&p.name, p.cpu_percent)).collect::<Vec<_>>(),
        last.top_mem_processes.iter().map(|p| (&p.name, p.memory_bytes)).collect::<Vec<_>>(),
    );
    Ok(())
}
