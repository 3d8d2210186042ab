//! Plausibility checks applied to every decoded snapshot.

use crate::error::DecodeError;
use crate::snapshot::Snapshot;

/// Longest accepted machine id, in bytes (a DNS name's limit).
pub const MAX_MACHINE_ID_BYTES: usize = 253;
/// Most entries accepted in one top-N process list.
pub const MAX_TOP_PROCESSES: usize = 100;
/// Most logical cores accepted in `cpu_per_core`.
pub const MAX_CORES: usize = 4096;
/// Most block devices accepted in `disks`.
pub const MAX_DISKS: usize = 64;
/// Most entries accepted in one top-N cgroup list.
pub const MAX_TOP_CGROUPS: usize = 100;
/// Most sensors accepted in `temperatures`.
pub const MAX_TEMPERATURES: usize = 64;
/// Most user-defined metrics accepted in one snapshot.
pub const MAX_CUSTOM_METRICS: usize = 256;
/// Longest accepted `hostname`, in bytes (a DNS name's limit).
pub const MAX_HOSTNAME_BYTES: usize = 253;
/// Most labels accepted on one snapshot.
pub const MAX_LABELS: usize = 64;
/// Longest accepted label name, in bytes.
pub const MAX_LABEL_KEY_BYTES: usize = 128;
/// Longest accepted label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// Most filesystems accepted in one snapshot.
pub const MAX_FILESYSTEMS: usize = 1024;
/// Longest accepted mount point, in bytes.
pub const MAX_MOUNT_POINT_BYTES: usize = 1024;
/// Longest accepted filesystem type, in bytes.
pub const MAX_FS_TYPE_BYTES: usize = 64;
/// Longest accepted process name, in bytes.
pub const MAX_PROCESS_NAME_BYTES: usize = 256;
/// Longest accepted custom metric name, in bytes.
pub const MAX_CUSTOM_METRIC_NAME_BYTES: usize = 128;
/// Most collector errors accepted in one snapshot.
pub const MAX_COLLECTOR_ERRORS: usize = 64;
/// Longest accepted collector name in `collector_errors`, in bytes.
pub const MAX_COLLECTOR_NAME_BYTES: usize = 128;
/// Longest accepted collector error message, in bytes (the agent cuts its
/// own to this length).
pub const MAX_COLLECTOR_MESSAGE_BYTES: usize = 1024;
/// Earliest accepted timestamp: 2000-01-01T00:00:00Z.
pub const MIN_TIMESTAMP: f64 = 946_684_800.0;
/// Latest accepted timestamp: 2100-01-01T00:00:00Z.
pub const MAX_TIMESTAMP: f64 = 4_102_444_800.0;

/// Checks `0 <= value <= max`; the field name is only built on error, so the
/// common (valid) path allocates nothing.
fn percent_at(field: impl FnOnce() -> String, value: f64, max: f64) -> Result<(), DecodeError> {
    if value.is_finite() && (0.0..=max).contains(&value) {
        return Ok(());
    }
    let reason = if value.is_finite() {
        format!("{value} is outside 0..={max}")
    } else {
        "not a finite number".to_string()
    };
    Err(DecodeError::invalid(field(), reason))
}

fn percent(field: &str, value: f64, max: f64) -> Result<(), DecodeError> {
    percent_at(|| field.to_string(), value, max)
}

/// Rejects a list longer than `max` entries.
fn count(field: &str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::over_limit(
            field,
            format!("{len} entries, more than {max}"),
        ));
    }
    Ok(())
}

/// Rejects a text longer than `max` bytes; the field name is only built on error.
fn length(field: impl FnOnce() -> String, text: &str, max: usize) -> Result<(), DecodeError> {
    if text.len() > max {
        return Err(DecodeError::over_limit(
            field(),
            format!("{} bytes, more than {max}", text.len()),
        ));
    }
    Ok(())
}

fn non_negative(field: &str, value: f64) -> Result<(), DecodeError> {
    if !value.is_finite() || value < 0.0 {
        return Err(DecodeError::invalid(
            field,
            format!("{value} is not a finite non-negative number"),
        ));
    }
    Ok(())
}

/// Rejects values that cannot be true of a real machine and fields over their
/// limits (`docs/wire-format.md`), naming the field; the error is
/// [bounded](DecodeError::bounded).
pub fn validate(s: &Snapshot) -> Result<(), DecodeError> {
    check(s).map_err(DecodeError::bounded)
}

fn check(s: &Snapshot) -> Result<(), DecodeError> {
    let id = &s.machine_id;
    if id.trim().is_empty() {
        return Err(DecodeError::invalid("machine_id", "empty"));
    }
    if id.len() > MAX_MACHINE_ID_BYTES {
        return Err(DecodeError::invalid(
            "machine_id",
            format!("{} bytes, more than {MAX_MACHINE_ID_BYTES}", id.len()),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(DecodeError::invalid(
            "machine_id",
            "contains control characters",
        ));
    }
    if let Some(h) = &s.hostname {
        length(|| "hostname".into(), h, MAX_HOSTNAME_BYTES)?;
        if h.chars().any(char::is_control) {
            return Err(DecodeError::invalid(
                "hostname",
                "contains control characters",
            ));
        }
    }
    count("labels", s.labels.len(), MAX_LABELS)?;
    for (k, v) in &s.labels {
        if k.is_empty() || k.len() > MAX_LABEL_KEY_BYTES || k.chars().any(char::is_control) {
            return Err(DecodeError::over_limit(
                "labels",
                format!(
                    "bad label name {}: 1 to {MAX_LABEL_KEY_BYTES} printable bytes",
                    crate::text::quote(k)
                ),
            ));
        }
        length(|| format!("labels.{k}"), v, MAX_LABEL_VALUE_BYTES)?;
    }
    count(
        "collector_errors",
        s.collector_errors.len(),
        MAX_COLLECTOR_ERRORS,
    )?;
    for (i, e) in s.collector_errors.iter().enumerate() {
        length(
            || format!("collector_errors[{i}].collector"),
            &e.collector,
            MAX_COLLECTOR_NAME_BYTES,
        )?;
        length(
            || format!("collector_errors[{i}].message"),
            &e.message,
            MAX_COLLECTOR_MESSAGE_BYTES,
        )?;
    }
    if !s.timestamp.is_finite() || !(MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&s.timestamp) {
        return Err(DecodeError::invalid(
            "timestamp",
            format!(
                "{} is not seconds since the epoch between 2000 and 2100",
                s.timestamp
            ),
        ));
    }
    percent("cpu_usage", s.cpu_usage, 100.0)?;
    percent("memory_usage", s.memory_usage, 100.0)?;
    count("cpu_per_core", s.cpu_per_core.len(), MAX_CORES)?;
    for (i, v) in s.cpu_per_core.iter().enumerate() {
        percent_at(|| format!("cpu_per_core[{i}]"), *v, 100.0)?;
    }
    for (list_name, list) in [
        ("top_cpu_processes", &s.top_cpu_processes),
        ("top_mem_processes", &s.top_mem_processes),
    ] {
        count(list_name, list.len(), MAX_TOP_PROCESSES)?;
        for (i, p) in list.iter().enumerate() {
            length(
                || format!("{list_name}[{i}].name"),
                &p.name,
                MAX_PROCESS_NAME_BYTES,
            )?;
            // A process can use every core: allow up to 100 % per possible core.
            percent_at(
                || format!("{list_name}[{i}].cpu_percent"),
                p.cpu_percent,
                100.0 * MAX_CORES as f64,
            )?;
            if let Some(m) = p.memory_percent {
                percent_at(|| format!("{list_name}[{i}].memory_percent"), m, 100.0)?;
            }
        }
    }
    if let Some(interval) = s.interval_secs {
        if !interval.is_finite() || interval <= 0.0 {
            return Err(DecodeError::invalid(
                "interval_secs",
                format!("{interval} is not a positive number of seconds"),
            ));
        }
    }
    if let Some(l) = &s.load_avg {
        non_negative("load_avg.one", l.one)?;
        non_negative("load_avg.five", l.five)?;
        non_negative("load_avg.fifteen", l.fifteen)?;
    }
    if let Some(m) = &s.memory {
        if m.used_bytes > m.total_bytes {
            return Err(DecodeError::invalid(
                "memory.used_bytes",
                format!("{} exceeds total_bytes {}", m.used_bytes, m.total_bytes),
            ));
        }
        if m.swap_used_bytes > m.swap_total_bytes {
            return Err(DecodeError::invalid(
                "memory.swap_used_bytes",
                format!(
                    "{} exceeds swap_total_bytes {}",
                    m.swap_used_bytes, m.swap_total_bytes
                ),
            ));
        }
    }
    if let Some(r) = &s.disk_rate {
        non_negative("disk_rate.read", r.read)?;
        non_negative("disk_rate.write", r.write)?;
    }
    if let Some(r) = &s.network_rate {
        non_negative("network_rate.sent", r.sent)?;
        non_negative("network_rate.recv", r.recv)?;
    }
    count("custom_metrics", s.custom_metrics.len(), MAX_CUSTOM_METRICS)?;
    for (k, v) in &s.custom_metrics {
        if k.is_empty() || k.len() > MAX_CUSTOM_METRIC_NAME_BYTES || k.chars().any(char::is_control)
        {
            return Err(DecodeError::over_limit(
                "custom_metrics",
                format!(
                    "bad metric name {}: 1 to {MAX_CUSTOM_METRIC_NAME_BYTES} printable bytes",
                    crate::text::quote(k)
                ),
            ));
        }
        if !v.is_finite() {
            return Err(DecodeError::invalid(
                format!("custom_metrics.{k}"),
                "not a finite number",
            ));
        }
    }
    count("filesystems", s.filesystems.len(), MAX_FILESYSTEMS)?;
    for (i, f) in s.filesystems.iter().enumerate() {
        length(
            || format!("filesystems[{i}].mount_point"),
            &f.mount_point,
            MAX_MOUNT_POINT_BYTES,
        )?;
        length(
            || format!("filesystems[{i}].fs_type"),
            &f.fs_type,
            MAX_FS_TYPE_BYTES,
        )?;
        if f.used_bytes > f.total_bytes {
            return Err(DecodeError::invalid(
                format!("filesystems[{i}].used_bytes"),
                format!("{} exceeds total_bytes {}", f.used_bytes, f.total_bytes),
            ));
        }
    }
    validate_host_details(s)
}

fn at_most(field: &str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::invalid(
            field,
            format!("{len} entries, more than {max}"),
        ));
    }
    Ok(())
}

fn non_negative_opt(field: impl FnOnce() -> String, v: Option<f64>) -> Result<(), DecodeError> {
    match v {
        Some(v) if !v.is_finite() || v < 0.0 => Err(DecodeError::invalid(
            field(),
            format!("{v} is not a finite non-negative number"),
        )),
        _ => Ok(()),
    }
}

fn pressure(field: &str, p: &crate::snapshot::Pressure) -> Result<(), DecodeError> {
    for (name, stall) in [("cpu", &p.cpu), ("memory", &p.memory), ("io", &p.io)] {
        let Some(stall) = stall else { continue };
        for (kind, line) in [("some", Some(&stall.some)), ("full", stall.full.as_ref())] {
            let Some(l) = line else { continue };
            for (w, v) in [("avg10", l.avg10), ("avg60", l.avg60), ("avg300", l.avg300)] {
                percent_at(|| format!("{field}.{name}.{kind}.{w}"), v, 100.0)?;
            }
        }
    }
    Ok(())
}

/// The host details: bounded lists, percentages in range, finite rates.
fn validate_host_details(s: &Snapshot) -> Result<(), DecodeError> {
    if let Some(p) = &s.pressure {
        pressure("pressure", p)?;
    }
    at_most("disks", s.disks.len(), MAX_DISKS)?;
    for (i, d) in s.disks.iter().enumerate() {
        for (name, v) in [
            ("read_iops", d.read_iops),
            ("write_iops", d.write_iops),
            ("read_latency_ms", d.read_latency_ms),
            ("write_latency_ms", d.write_latency_ms),
        ] {
            non_negative_opt(|| format!("disks[{i}].{name}"), v)?;
        }
        if let Some(u) = d.utilization_percent {
            percent_at(|| format!("disks[{i}].utilization_percent"), u, 100.0)?;
        }
    }
    if let Some(t) = &s.tcp {
        non_negative_opt(|| "tcp.retransmits_per_sec".into(), t.retransmits_per_sec)?;
        if let Some(p) = t.retransmit_percent {
            // more segments can be retransmitted than sent anew in an interval
            non_negative("tcp.retransmit_percent", p)?;
        }
    }
    for (list_name, list) in [
        ("top_cpu_cgroups", &s.top_cpu_cgroups),
        ("top_mem_cgroups", &s.top_mem_cgroups),
    ] {
        at_most(list_name, list.len(), MAX_TOP_CGROUPS)?;
        for (i, g) in list.iter().enumerate() {
            percent_at(
                || format!("{list_name}[{i}].cpu_percent"),
                g.cpu_percent,
                100.0 * MAX_CORES as f64,
            )?;
            non_negative_opt(
                || format!("{list_name}[{i}].io_read_bytes_per_sec"),
                g.io_read_bytes_per_sec,
            )?;
            non_negative_opt(
                || format!("{list_name}[{i}].io_write_bytes_per_sec"),
                g.io_write_bytes_per_sec,
            )?;
            if let Some(p) = &g.pressure {
                pressure(&format!("{list_name}[{i}].pressure"), p)?;
            }
        }
    }
    at_most("temperatures", s.temperatures.len(), MAX_TEMPERATURES)?;
    for (i, t) in s.temperatures.iter().enumerate() {
        for v in std::iter::once(t.celsius).chain(t.critical_celsius) {
            if !v.is_finite() || !(-273.15..=1000.0).contains(&v) {
                return Err(DecodeError::invalid(
                    format!("temperatures[{i}]"),
                    format!("{v} is not a temperature in °C"),
                ));
            }
        }
    }
    if let Some(f) = &s.open_files {
        if f.allocated > f.max {
            return Err(DecodeError::invalid(
                "open_files.allocated",
                format!("{} exceeds max {}", f.allocated, f.max),
            ));
        }
    }
    Ok(())
}
