//! Test and benchmark support (not part of the library; included with
//! `#[path]` by the API tests and the `seed_db` and `bench_api` examples):
//! fills sinks with realistic synthetic history
//! **through the real ingest path** ([`sysmon_core::Ingest`] over the
//! in-process channel transport), exactly as `sysmon standalone` stores data.
//! Used by the API tests, the benchmark command and the browser test's seeder
//! (`examples/seed_db.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sysmon_analytics::AnalyticsService;
use sysmon_core::config::IngestConfig;
use sysmon_core::ingest::SinkRole;
use sysmon_core::synth::SyntheticMachine;
use sysmon_core::{channel_transport, CoreError, Ingest, ProcessInfo, Sink, Snapshot, Transport};
use tokio_util::sync::CancellationToken;

/// A process name that must render as text, never as markup.
pub const HOSTILE_PROCESS: &str = "<img src=x onerror=alert(1)>";
/// A host name that must render as text.
pub const HOSTILE_HOSTNAME: &str = "<script>alert('host')</script>";
/// A machine id that must render as text (and be escaped in `/metrics`).
pub const HOSTILE_MACHINE_ID: &str = "evil\"<svg onload=alert(3)>";

/// What to generate.
#[derive(Debug, Clone)]
pub struct SeedPlan {
    /// Machine ids; each gets its own [`SyntheticMachine`] (seeded by its index).
    pub machines: Vec<String>,
    /// First timestamp (seconds since the epoch).
    pub since: f64,
    /// Timestamps stop before this.
    pub until: f64,
    /// Seconds between two samples of one machine.
    pub step: f64,
    /// Entries in each top-process list.
    pub processes: usize,
}

/// Makes `s` hostile when it belongs to [`HOSTILE_MACHINE_ID`]: its host name,
/// a mount point and its busiest process carry markup.
pub fn hostile(s: &mut Snapshot) {
    if s.machine_id != HOSTILE_MACHINE_ID {
        return;
    }
    s.hostname = Some(HOSTILE_HOSTNAME.into());
    let p = ProcessInfo {
        pid: 6666,
        name: HOSTILE_PROCESS.into(),
        cpu_percent: 99.0,
        memory_percent: Some(12.5),
        memory_bytes: Some(512 << 20),
        ..ProcessInfo::default()
    };
    s.top_cpu_processes.insert(0, p.clone());
    s.top_cpu_processes.truncate(10);
    s.top_mem_processes.insert(0, p);
    s.top_mem_processes.truncate(10);
    if let Some(fs) = s.filesystems.first_mut() {
        fs.mount_point = "/mnt/<b onmouseover=alert(4)>data</b>".into();
    }
}

/// Generates `plan` into `sinks` through an [`Ingest`] over the channel
/// transport, passing every snapshot through `tweak` first. Returns the
/// number of snapshots stored.
pub async fn ingest_synthetic(
    sinks: Vec<Arc<dyn Sink>>,
    plan: &SeedPlan,
    tweak: impl FnMut(&mut Snapshot),
) -> Result<u64, CoreError> {
    ingest_synthetic_analysed(sinks, plan, tweak, None).await
}

/// [`ingest_synthetic`] with `analytics` (when given) scoring every stored
/// batch from the ingester's broadcast, as `sysmon ingest` does; it has
/// analysed everything when this returns.
pub async fn ingest_synthetic_analysed(
    sinks: Vec<Arc<dyn Sink>>,
    plan: &SeedPlan,
    mut tweak: impl FnMut(&mut Snapshot),
    analytics: Option<AnalyticsService>,
) -> Result<u64, CoreError> {
    let (tx, rx) = channel_transport(16);
    let mut ingest = Ingest::new(Box::new(rx), IngestConfig::default());
    for s in sinks {
        ingest.add_sink(s, SinkRole::Required);
    }
    let stats = ingest.stats();
    let analysis_stop = CancellationToken::new();
    let analysis =
        analytics.map(|a| tokio::spawn(a.run(ingest.subscribe(), analysis_stop.clone())));
    let task = tokio::spawn(ingest.run(CancellationToken::new()));
    let mut gens: Vec<SyntheticMachine> = plan
        .machines
        .iter()
        .enumerate()
        .map(|(i, id)| SyntheticMachine::new(id.clone(), 1000 + i as u64))
        .collect();
    let mut batch: Vec<Snapshot> = Vec::with_capacity(1000);
    let steps = ((plan.until - plan.since) / plan.step).ceil().max(0.0) as u64;
    for k in 0..steps {
        let t = plan.since + k as f64 * plan.step;
        for g in gens.iter_mut() {
            let mut s = g.next_snapshot(t, plan.processes);
            tweak(&mut s);
            batch.push(s);
            if batch.len() >= 1000 {
                tx.publish(&batch).await?;
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        tx.publish(&batch).await?;
    }
    drop(tx);
    task.await.map_err(|e| CoreError::Io {
        context: "the ingest task".into(),
        source: std::io::Error::other(e.to_string()),
    })??;
    analysis_stop.cancel();
    if let Some(a) = analysis {
        a.await.map_err(|e| CoreError::Io {
            context: "the analytics task".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
    }
    Ok(stats.stored.load(Ordering::Relaxed))
}
