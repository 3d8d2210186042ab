//! Prometheus text exposition (format 0.0.4) for `/metrics`: the latest value
//! of every machine's gauges, labelled `machine_id="…"`, and sysmon's own
//! counters.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use sysmon_core::{IngestStats, Snapshot};

use crate::metric::Metric;

/// Escapes a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// One gauge family: a metric of the vocabulary (its `/metrics` name,
/// description and reading), or another per-machine reading.
enum Gauge {
    Metric(Metric),
    Other {
        name: &'static str,
        help: &'static str,
        read: fn(&Snapshot) -> Option<f64>,
    },
}

impl Gauge {
    fn name(&self) -> &'static str {
        match self {
            Gauge::Metric(m) => m.prometheus_name().unwrap_or(m.name()),
            Gauge::Other { name, .. } => name,
        }
    }

    fn help(&self) -> &'static str {
        match self {
            Gauge::Metric(m) => m.description(),
            Gauge::Other { help, .. } => help,
        }
    }

    fn read(&self, s: &Snapshot) -> Option<f64> {
        match self {
            Gauge::Metric(m) => m.value(s),
            Gauge::Other { read, .. } => read(s),
        }
    }
}

const GAUGES: &[Gauge] = &[
    Gauge::Metric(Metric::Cpu),
    Gauge::Metric(Metric::Memory),
    Gauge::Other {
        name: "sysmon_memory_used_bytes",
        help: "Memory in use, bytes.",
        read: |s| s.memory.map(|m| m.used_bytes as f64),
    },
    Gauge::Other {
        name: "sysmon_memory_total_bytes",
        help: "Physical memory, bytes.",
        read: |s| s.memory.map(|m| m.total_bytes as f64),
    },
    Gauge::Metric(Metric::Swap),
    Gauge::Metric(Metric::DiskRead),
    Gauge::Metric(Metric::DiskWrite),
    Gauge::Metric(Metric::NetSent),
    Gauge::Metric(Metric::NetRecv),
    Gauge::Metric(Metric::Load1),
    Gauge::Other {
        name: "sysmon_load5",
        help: "5-minute load average.",
        read: |s| s.load_avg.map(|l| l.five),
    },
    Gauge::Other {
        name: "sysmon_load15",
        help: "15-minute load average.",
        read: |s| s.load_avg.map(|l| l.fifteen),
    },
    Gauge::Metric(Metric::FilesystemUsage),
    // Host details: a machine that does not send one has no sample.
    Gauge::Metric(Metric::PressureCpuSome),
    Gauge::Metric(Metric::PressureCpuFull),
    Gauge::Metric(Metric::PressureMemorySome),
    Gauge::Metric(Metric::PressureMemoryFull),
    Gauge::Metric(Metric::PressureIoSome),
    Gauge::Metric(Metric::PressureIoFull),
    Gauge::Metric(Metric::DiskUtilization),
    Gauge::Metric(Metric::DiskReadLatency),
    Gauge::Metric(Metric::DiskWriteLatency),
    Gauge::Metric(Metric::TcpEstablished),
    Gauge::Metric(Metric::TcpTimeWait),
    Gauge::Metric(Metric::TcpRetransmitRate),
    Gauge::Metric(Metric::TcpRetransmitPercent),
    Gauge::Metric(Metric::TemperatureMax),
    Gauge::Metric(Metric::OpenFiles),
    Gauge::Metric(Metric::ContainerMemoryOfLimit),
    Gauge::Metric(Metric::ContainerCpu),
    Gauge::Other {
        name: "sysmon_last_seen_timestamp_seconds",
        help: "Timestamp of the machine's newest snapshot (sender's clock).",
        read: |s| Some(s.timestamp),
    },
];

/// Renders the exposition: gauges for `latest` (one snapshot per machine), the
/// per-machine `sysmon_machine_online` state, then the ingest counters when
/// this process runs an ingester.
pub fn render(
    latest: &[Snapshot],
    now: f64,
    online_secs: f64,
    ingest: Option<&IngestStats>,
    sse_clients: u64,
) -> String {
    let refs: Vec<&Snapshot> = latest.iter().collect();
    render_selected(
        &refs,
        Some(latest.len()),
        now,
        online_secs,
        ingest,
        sse_clients,
    )
}

/// [`render`] for a chosen part of the fleet (`/metrics?machines=N`): the
/// per-machine gauges of `latest` only, `sysmon_machines` = `known` (every
/// machine; absent when `None`, not known without a store read) and
/// `sysmon_machines_exposed` = how many got per-machine gauges. With no
/// machine to expose, the per-machine families are left out altogether.
pub fn render_selected(
    latest: &[&Snapshot],
    known: Option<usize>,
    now: f64,
    online_secs: f64,
    ingest: Option<&IngestStats>,
    sse_clients: u64,
) -> String {
    let mut out = String::with_capacity(256 + latest.len() * 1200);
    let labels: Vec<String> = latest
        .iter()
        .map(|s| format!("machine_id=\"{}\"", escape_label(&s.machine_id)))
        .collect();
    for g in GAUGES.iter().filter(|_| !latest.is_empty()) {
        let (name, help) = (g.name(), g.help());
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (s, l) in latest.iter().zip(&labels) {
            if let Some(v) = g.read(s) {
                let _ = writeln!(out, "{name}{{{l}}} {}", fmt_f64(v));
            }
        }
    }
    if !latest.is_empty() {
        let _ = writeln!(
            out,
            "# HELP sysmon_machine_online 1 when the machine was seen in the last {online_secs} s."
        );
        let _ = writeln!(out, "# TYPE sysmon_machine_online gauge");
        for (s, l) in latest.iter().zip(&labels) {
            let up = u8::from(now - s.timestamp <= online_secs);
            let _ = writeln!(out, "sysmon_machine_online{{{l}}} {up}");
        }
    }
    if let Some(known) = known {
        let _ = writeln!(
            out,
            "# HELP sysmon_machines Machines with stored snapshots."
        );
        let _ = writeln!(out, "# TYPE sysmon_machines gauge");
        let _ = writeln!(out, "sysmon_machines {known}");
    }
    let _ = writeln!(
        out,
        "# HELP sysmon_machines_exposed Machines with per-machine gauges in this answer (see ?machines=)."
    );
    let _ = writeln!(out, "# TYPE sysmon_machines_exposed gauge");
    let _ = writeln!(out, "sysmon_machines_exposed {}", latest.len());
    let _ = writeln!(
        out,
        "# HELP sysmon_dashboard_live_clients Connected live (SSE) clients."
    );
    let _ = writeln!(out, "# TYPE sysmon_dashboard_live_clients gauge");
    let _ = writeln!(out, "sysmon_dashboard_live_clients {sse_clients}");
    if let Some(st) = ingest {
        let counters: [(&str, &str, u64); 8] = [
            (
                "sysmon_ingest_received_total",
                "Messages received by the ingester.",
                st.received.load(Ordering::Relaxed),
            ),
            (
                "sysmon_ingest_stored_total",
                "Snapshots stored by every required sink (ingested).",
                st.stored.load(Ordering::Relaxed),
            ),
            (
                "sysmon_ingest_rejected_total",
                "Messages rejected as invalid.",
                st.rejected.load(Ordering::Relaxed),
            ),
            (
                "sysmon_ingest_dead_lettered_total",
                "Messages copied to the dead-letter destination.",
                st.dead_lettered.load(Ordering::Relaxed),
            ),
            (
                "sysmon_ingest_dead_letter_failures_total",
                "Rejected messages the dead-letter destination refused even shrunk (skipped).",
                st.dead_letter_failures.load(Ordering::Relaxed),
            ),
            (
                "sysmon_ingest_sink_errors_total",
                "Failed sink writes (each retry counts).",
                st.sink_errors.load(Ordering::Relaxed),
            ),
            (
                "sysmon_ingest_batches_total",
                "Batches stored.",
                st.batches.load(Ordering::Relaxed),
            ),
            (
                "sysmon_ingest_commit_errors_total",
                "Failed transport offset commits.",
                st.commit_errors.load(Ordering::Relaxed),
            ),
        ];
        write_counters(&mut out, &counters);
        let by_kind = st.rejected_by_kind();
        let _ = writeln!(
            out,
            "# HELP sysmon_ingest_rejected_by_kind_total Messages rejected, by reason."
        );
        let _ = writeln!(out, "# TYPE sysmon_ingest_rejected_by_kind_total counter");
        for (kind, v) in by_kind {
            let _ = writeln!(
                out,
                "sysmon_ingest_rejected_by_kind_total{{kind=\"{}\"}} {v}",
                escape_label(kind)
            );
        }
    }
    out
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Unlabelled counters `(name, help, value)` in the text exposition format.
fn write_counters(out: &mut String, counters: &[(&str, &str, u64)]) {
    for (name, help, v) in counters {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {v}");
    }
}

/// The analytics' counters in the text exposition format.
pub fn render_analytics(stats: &sysmon_analytics::AnalyticsStats) -> String {
    let mut out = String::new();
    write_counters(
        &mut out,
        &[
            (
                "sysmon_analytics_scored_total",
                "Snapshots scored by the anomaly detector.",
                stats.scored.load(Ordering::Relaxed),
            ),
            (
                "sysmon_analytics_anomalies_total",
                "Snapshots flagged as anomalous.",
                stats.anomalies.load(Ordering::Relaxed),
            ),
            (
                "sysmon_analytics_alert_events_total",
                "Alert transitions (firing or resolved).",
                stats.alert_events.load(Ordering::Relaxed),
            ),
            (
                "sysmon_analytics_skipped_batches_total",
                "Stored batches not analysed because analytics fell behind.",
                stats.skipped_batches.load(Ordering::Relaxed),
            ),
            (
                "sysmon_analytics_sink_errors_total",
                "Failed writes of analytics results (SQLite, Redis).",
                stats.sink_errors.load(Ordering::Relaxed),
            ),
            (
                "sysmon_analytics_machine_cap_hits_total",
                "Samples stored but not analysed because max_tracked_machines were tracked.",
                stats.machine_cap_hits.load(Ordering::Relaxed),
            ),
            (
                "sysmon_analytics_forgotten_machines_total",
                "Machines whose analytics state was dropped after forget_silent_machines_after.",
                stats.forgotten_machines.load(Ordering::Relaxed),
            ),
        ],
    );
    let _ = writeln!(
        out,
        "# HELP sysmon_analytics_tracked_machines Machines with analytics state in memory, by component."
    );
    let _ = writeln!(out, "# TYPE sysmon_analytics_tracked_machines gauge");
    for (component, v) in [
        ("detector", &stats.tracked_detector),
        ("alerts", &stats.tracked_alerts),
        ("episodes", &stats.tracked_episodes),
    ] {
        let _ = writeln!(
            out,
            "sysmon_analytics_tracked_machines{{component=\"{component}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut s = Snapshot::new("evil\"} 1\nfake_metric{x=\"", 1e9);
        s.cpu_usage = 12.5;
        let text = render(&[s], 1e9, 120.0, None, 0);
        assert!(
            text.contains(
                "sysmon_cpu_usage_percent{machine_id=\"evil\\\"} 1\\nfake_metric{x=\\\"\"} 12.5"
            ),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("fake_metric")));
    }

    #[test]
    fn analytics_state_gauges_are_one_family_by_component() {
        let st = sysmon_analytics::AnalyticsStats::default();
        st.tracked_detector.store(7, Ordering::Relaxed);
        st.tracked_alerts.store(9, Ordering::Relaxed);
        st.machine_cap_hits.store(3, Ordering::Relaxed);
        let text = render_analytics(&st);
        assert!(text.contains("sysmon_analytics_tracked_machines{component=\"detector\"} 7"));
        assert!(text.contains("sysmon_analytics_tracked_machines{component=\"alerts\"} 9"));
        assert!(text.contains("sysmon_analytics_tracked_machines{component=\"episodes\"} 0"));
        assert!(text.contains("sysmon_analytics_machine_cap_hits_total 3"));
        assert_eq!(
            text.matches("# TYPE sysmon_analytics_tracked_machines gauge")
                .count(),
            1
        );
    }

    #[test]
    fn counters_appear_with_an_ingester() {
        let st = IngestStats::default();
        st.stored.store(42, Ordering::Relaxed);
        let text = render(&[], 0.0, 120.0, Some(&st), 1);
        assert!(text.contains("sysmon_ingest_stored_total 42"));
        assert!(text.contains("sysmon_dashboard_live_clients 1"));
        assert!(!render(&[], 0.0, 120.0, None, 0).contains("sysmon_ingest_"));
    }

    #[test]
    fn vocabulary_gauges_keep_their_names_and_read_through_the_metric() {
        use sysmon_core::metric::Usage;
        let mut s = sysmon_core::synth::SyntheticMachine::new("m", 1).next_snapshot(1e9, 3);
        sysmon_core::synth::fill_host_details(&mut s);
        let text = render(std::slice::from_ref(&s), 1e9, 120.0, None, 0);
        let names: Vec<&str> = GAUGES.iter().map(Gauge::name).collect();
        assert_eq!(
            names,
            [
                "sysmon_cpu_usage_percent",
                "sysmon_memory_usage_percent",
                "sysmon_memory_used_bytes",
                "sysmon_memory_total_bytes",
                "sysmon_swap_used_bytes",
                "sysmon_disk_read_bytes_per_second",
                "sysmon_disk_write_bytes_per_second",
                "sysmon_network_sent_bytes_per_second",
                "sysmon_network_received_bytes_per_second",
                "sysmon_load1",
                "sysmon_load5",
                "sysmon_load15",
                "sysmon_filesystem_fullest_used_percent",
                "sysmon_pressure_cpu_some_avg10_percent",
                "sysmon_pressure_cpu_full_avg10_percent",
                "sysmon_pressure_memory_some_avg10_percent",
                "sysmon_pressure_memory_full_avg10_percent",
                "sysmon_pressure_io_some_avg10_percent",
                "sysmon_pressure_io_full_avg10_percent",
                "sysmon_disk_busiest_utilization_percent",
                "sysmon_disk_slowest_read_latency_milliseconds",
                "sysmon_disk_slowest_write_latency_milliseconds",
                "sysmon_tcp_established_sockets",
                "sysmon_tcp_time_wait_sockets",
                "sysmon_tcp_retransmits_per_second",
                "sysmon_tcp_retransmit_percent",
                "sysmon_temperature_max_celsius",
                "sysmon_open_files",
                "sysmon_cgroup_memory_max_percent_of_limit",
                "sysmon_cgroup_cpu_max_percent",
                "sysmon_last_seen_timestamp_seconds",
            ]
        );
        for m in Metric::usable(Usage::Prometheus) {
            assert!(
                GAUGES
                    .iter()
                    .any(|g| matches!(g, Gauge::Metric(x) if *x == m)),
                "{} is not exported",
                m.name()
            );
            let name = m.prometheus_name().unwrap();
            let v = m.value(&s).unwrap();
            let line = format!("{name}{{machine_id=\"m\"}} {}", fmt_f64(v));
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
            assert!(text.contains(&format!("# HELP {name} {}", m.description())));
        }
    }

    #[test]
    fn host_detail_gauges_have_a_sample_only_for_machines_that_send_the_detail() {
        let mut with = sysmon_core::synth::SyntheticMachine::new("full", 1).next_snapshot(1e9, 3);
        sysmon_core::synth::fill_host_details(&mut with);
        with.pressure
            .as_mut()
            .unwrap()
            .cpu
            .as_mut()
            .unwrap()
            .some
            .avg10 = 27.25;
        with.pressure.as_mut().unwrap().cpu.as_mut().unwrap().full = None;
        let plain = sysmon_core::synth::SyntheticMachine::new("plain", 2).next_snapshot(1e9, 3);
        let text = render(&[with, plain], 1e9, 120.0, None, 0);
        assert!(text
            .lines()
            .any(|l| l == "sysmon_pressure_cpu_some_avg10_percent{machine_id=\"full\"} 27.25"));
        for m in Metric::HOST_DETAILS {
            let name = m.prometheus_name().unwrap();
            assert_eq!(
                text.matches(&format!("# TYPE {name} gauge\n")).count(),
                1,
                "{name}"
            );
            // Absent is no sample, not 0.
            assert!(
                !text.contains(&format!("{name}{{machine_id=\"plain\"}}")),
                "{name}\n{text}"
            );
            let full = text.contains(&format!("{name}{{machine_id=\"full\"}}"));
            assert_eq!(full, m != Metric::PressureCpuFull, "{name}");
        }
        // The legacy gauges are still there for the plain machine.
        assert!(text.contains("sysmon_cpu_usage_percent{machine_id=\"plain\"}"));
    }
}
