//! Reproducible labelled traces for measuring anomaly detection.
//!
//! [`generate`] simulates several machines sampled at a fixed interval. Each has
//! its own profile (busy or idle, noise levels, rates spanning four orders of
//! magnitude) and normal behaviour: slow sinusoidal drift, Gaussian noise
//! (multiplicative for byte rates), a slow random walk of memory, and *harmless
//! short bumps* of 1–3 samples a few standard deviations high. Some machines also
//! reboot (counters restart from zero after a pause) or go silent for a while:
//! normal events a detector must not flag.
//!
//! Injected anomalies, each labelled with its first and last sample:
//! * [`EventKind::CpuSpike`]: CPU jumps 30–60 points (capped at 100 %) for 3–30 samples;
//! * [`EventKind::MemoryLeak`]: memory climbs 0.03–0.15 points per sample for
//!   200–600 samples (up to 35 points), then drops back (the process restarts);
//! * [`EventKind::DiskBurst`]: disk read and/or write gain 20–200 MB/s for 2–20 samples;
//! * [`EventKind::NetworkSurge`]: network send and/or receive gain 10–120 MB/s for 5–60 samples.
//!
//! A burst or surge also adds at least 2–5 times the machine's usual rate of that
//! counter, so that it stands out of the machine's own noise (on a host that
//! normally moves 30 MB/s ± 35 %, +10 MB/s is not an event any detector or
//! operator could tell from noise).
//!
//! Counters are cumulative and consistent with the simulated rates.

use serde::{Deserialize, Serialize};

use sysmon_core::snapshot::{DiskIo, Filesystem, Memory, NetworkIo, Snapshot, SCHEMA_VERSION};
use sysmon_core::synth::Rng;

/// The kinds of injected anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A sudden, sustained CPU rise.
    CpuSpike,
    /// Memory climbing steadily.
    MemoryLeak,
    /// A burst of disk reads and/or writes.
    DiskBurst,
    /// A surge of network traffic.
    NetworkSurge,
}

impl EventKind {
    /// Every kind, in report order.
    pub const ALL: [EventKind; 4] = [
        EventKind::CpuSpike,
        EventKind::MemoryLeak,
        EventKind::DiskBurst,
        EventKind::NetworkSurge,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::CpuSpike => "cpu_spike",
            EventKind::MemoryLeak => "memory_leak",
            EventKind::DiskBurst => "disk_burst",
            EventKind::NetworkSurge => "network_surge",
        }
    }
}

/// One injected anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledEvent {
    /// The machine it happened on.
    pub machine_id: String,
    /// What it was.
    pub kind: EventKind,
    /// Timestamp of its first anomalous sample.
    pub start: f64,
    /// Timestamp of its last anomalous sample.
    pub end: f64,
}

/// What a sample of a trace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SampleLabel {
    /// Before the machine's first `warmup` samples are over: not scored.
    WarmUp,
    /// Normal behaviour (including drift, bumps, reboots and gaps).
    Normal,
    /// Part of the event with this index in [`LabelledTrace::events`].
    Event(usize),
}

/// Parameters of [`generate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceConfig {
    /// Number of machines.
    pub machines: usize,
    /// Sampling steps per machine (samples lost in gaps are not emitted).
    pub samples: usize,
    /// Seconds between samples.
    pub interval: f64,
    /// Timestamp of the first step.
    pub start: f64,
    /// The seed: the same configuration gives the same trace.
    pub seed: u64,
    /// Leading samples per machine without events, labelled [`SampleLabel::WarmUp`].
    pub warmup: usize,
    /// Normal samples between two events of a machine, on average.
    pub mean_quiet: usize,
    /// Simulate reboots (counter resets) and silent gaps.
    pub artefacts: bool,
    /// Multiplies every event's size (spike height, leak slope, burst and surge
    /// rates): below 1 makes events harder to tell from noise, for stress tests.
    pub magnitude_scale: f64,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            machines: 8,
            samples: 3600,
            interval: 1.0,
            start: 1_764_086_400.0,
            seed: 1,
            warmup: 300,
            mean_quiet: 400,
            artefacts: true,
            magnitude_scale: 1.0,
        }
    }
}

/// A generated trace: snapshots of every machine in time order, a label per
/// snapshot, and the events.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledTrace {
    /// The configuration it was generated from.
    pub config: TraceConfig,
    /// All snapshots, interleaved across machines in time order.
    pub snapshots: Vec<Snapshot>,
    /// `labels[i]` says what `snapshots[i]` is.
    pub labels: Vec<SampleLabel>,
    /// The injected events.
    pub events: Vec<LabelledEvent>,
}

/// A standard normal deviate (Box–Muller).
fn gauss(r: &mut Rng) -> f64 {
    let u1 = r.unit().max(1e-300);
    let u2 = r.unit();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn uniform(r: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * r.unit()
}

fn log_uniform(r: &mut Rng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + (hi.ln() - lo.ln()) * r.unit()).exp()
}

fn int(r: &mut Rng, lo: usize, hi: usize) -> usize {
    lo + (r.next_u64() % (hi - lo + 1) as u64) as usize
}

#[derive(Debug, Clone)]
struct Profile {
    cpu_base: f64,
    cpu_noise: f64,
    cpu_wave: f64,
    mem_base: f64,
    mem_noise: f64,
    mem_wave: f64,
    rate_base: [f64; 4],
    rate_noise: f64,
    rate_wave: f64,
    period: f64,
    mem_period: f64,
    phase: f64,
}

impl Profile {
    fn random(r: &mut Rng) -> Profile {
        let idle = r.unit() < 0.2;
        let (cpu_base, cpu_noise, cpu_wave) = if idle {
            (
                uniform(r, 0.3, 3.0),
                uniform(r, 0.1, 0.5),
                uniform(r, 0.1, 1.0),
            )
        } else {
            (
                uniform(r, 5.0, 50.0),
                uniform(r, 1.0, 5.0),
                uniform(r, 2.0, 12.0),
            )
        };
        let rate = |r: &mut Rng| {
            if idle {
                log_uniform(r, 2e3, 2e5)
            } else {
                log_uniform(r, 5e4, 3e7)
            }
        };
        Profile {
            cpu_base,
            cpu_noise,
            cpu_wave,
            mem_base: uniform(r, 15.0, 60.0),
            mem_noise: uniform(r, 0.1, 0.6),
            mem_wave: uniform(r, 0.3, 2.0),
            rate_base: [rate(r), rate(r), rate(r), rate(r)],
            rate_noise: uniform(r, 0.08, 0.35),
            rate_wave: uniform(r, 0.1, 0.4),
            period: uniform(r, 1200.0, 3600.0),
            mem_period: uniform(r, 3600.0, 10_800.0),
            phase: uniform(r, 0.0, std::f64::consts::TAU),
        }
    }
}

/// An event being played: kind, first and last step, and its magnitude.
#[derive(Debug, Clone, Copy)]
struct Planned {
    kind: EventKind,
    from: usize,
    to: usize,
    magnitude: f64,
    /// Bursts and surges add at least this multiple of the usual rate.
    factor: f64,
    which: u8,
}

/// Generates a trace; deterministic for a given configuration.
pub fn generate(config: &TraceConfig) -> LabelledTrace {
    let mut master = Rng::new(config.seed ^ 0x7ac3_9e11);
    let n = config.samples;
    struct Machine {
        id: String,
        rng: Rng,
        p: Profile,
        plan: Vec<Planned>,
        event_ids: Vec<usize>,
        silent: Vec<(usize, usize)>,
        reboot_at: Option<usize>,
        counters: [u64; 4],
        uptime0: u64,
        boot_step: usize,
        mem_walk: f64,
        bump: Option<(usize, usize, f64)>,
        declares_interval: bool,
        offset: f64,
        fs_used: f64,
    }
    let mut events = Vec::new();
    let mut machines: Vec<Machine> = (0..config.machines)
        .map(|m| {
            let mut rng = Rng::new(master.next_u64());
            let p = Profile::random(&mut rng);
            // Plan events after the warm-up, separated by quiet stretches.
            let mut plan = Vec::new();
            let mut t = config.warmup + int(&mut rng, 20, config.mean_quiet.max(40));
            loop {
                let kind = EventKind::ALL[(rng.next_u64() % 4) as usize];
                let (len, magnitude) = match kind {
                    EventKind::CpuSpike => (int(&mut rng, 3, 30), uniform(&mut rng, 30.0, 60.0)),
                    EventKind::MemoryLeak => {
                        let slope = uniform(&mut rng, 0.03, 0.15);
                        let rise_cap = 35f64.min(97.0 - p.mem_base - p.mem_wave);
                        let len = int(&mut rng, 200, 600).min((rise_cap / slope) as usize);
                        (len.max(60), slope)
                    }
                    EventKind::DiskBurst => (int(&mut rng, 2, 20), uniform(&mut rng, 20e6, 200e6)),
                    EventKind::NetworkSurge => {
                        (int(&mut rng, 5, 60), uniform(&mut rng, 10e6, 120e6))
                    }
                };
                if t + len + 10 >= n {
                    break;
                }
                plan.push(Planned {
                    kind,
                    from: t,
                    to: t + len - 1,
                    magnitude: magnitude * config.magnitude_scale,
                    factor: uniform(&mut rng, 2.0, 5.0) * config.magnitude_scale,
                    which: (rng.next_u64() % 3) as u8,
                });
                t += len + int(&mut rng, 150, 2 * config.mean_quiet.max(150));
            }
            // Artefacts fall in quiet stretches, never inside an event.
            let quiet = |at: usize, len: usize, plan: &[Planned]| {
                at > config.warmup
                    && plan
                        .iter()
                        .all(|e| at + len + 5 < e.from || at > e.to + 150)
            };
            let mut silent = Vec::new();
            let mut reboot_at = None;
            if config.artefacts && n > config.warmup + 200 {
                for _ in 0..20 {
                    let at = int(&mut rng, config.warmup + 1, n - 100);
                    let len = int(&mut rng, 10, 90);
                    if rng.unit() < 0.5 && quiet(at, len, &plan) {
                        silent.push((at, at + len));
                        break;
                    }
                }
                if rng.unit() < 0.4 {
                    for _ in 0..20 {
                        let at = int(&mut rng, config.warmup + 1, n - 100);
                        let down = int(&mut rng, 20, 60);
                        if quiet(at, down, &plan)
                            && silent.iter().all(|(a, b)| at + down < *a || at > *b + 5)
                        {
                            silent.push((at, at + down));
                            reboot_at = Some(at + down);
                            break;
                        }
                    }
                }
            }
            let id = format!("trace-{m:02}");
            let mut event_ids = Vec::new();
            for e in &plan {
                event_ids.push(events.len());
                events.push(LabelledEvent {
                    machine_id: id.clone(),
                    kind: e.kind,
                    start: 0.0,
                    end: 0.0,
                });
            }
            let counters = [
                rng.next_u64() % (1 << 38),
                rng.next_u64() % (1 << 38),
                rng.next_u64() % (1 << 38),
                rng.next_u64() % (1 << 38),
            ];
            let offset = rng.unit() * config.interval * 0.9;
            Machine {
                id,
                plan,
                event_ids,
                silent,
                reboot_at,
                counters,
                uptime0: 3600 + rng.next_u64() % 10_000_000,
                boot_step: 0,
                mem_walk: 0.0,
                bump: None,
                declares_interval: m % 2 == 0,
                offset,
                fs_used: uniform(&mut rng, 0.2, 0.7),
                p,
                rng,
            }
        })
        .collect();

    let mut snapshots = Vec::with_capacity(n * config.machines);
    let mut labels = Vec::with_capacity(n * config.machines);
    // Machines sample at their own offset inside each step: emit in time order.
    machines.sort_by(|a, b| a.offset.total_cmp(&b.offset));
    for step in 0..n {
        for m in machines.iter_mut() {
            let t = config.start + step as f64 * config.interval + m.offset;
            let r = &mut m.rng;
            let p = &m.p;
            // The machine keeps running (and counting) even when its samples are
            // lost, except while it is down for a reboot.
            let dt = config.interval;
            let wave = ((t - config.start) / p.period * std::f64::consts::TAU + p.phase).sin();
            let mem_wave =
                ((t - config.start) / p.mem_period * std::f64::consts::TAU + p.phase).sin();
            m.mem_walk = 0.995 * m.mem_walk + 0.03 * gauss(r);
            let mut cpu = p.cpu_base + p.cpu_wave * wave + p.cpu_noise * gauss(r);
            let mut mem = p.mem_base + p.mem_wave * mem_wave + m.mem_walk + p.mem_noise * gauss(r);
            let mut rates = [0.0; 4];
            for (i, rate) in rates.iter_mut().enumerate() {
                let w = 1.0 + p.rate_wave * (wave + i as f64 * 0.3).sin();
                *rate = p.rate_base[i]
                    * w
                    * (p.rate_noise * gauss(r) - p.rate_noise.powi(2) / 2.0).exp();
            }
            // Harmless short bumps: 1-3 samples, 2-4 standard deviations.
            if m.bump.is_none() && r.unit() < 1.0 / 90.0 {
                m.bump = Some((step + int(r, 1, 3), int(r, 0, 5), uniform(r, 2.0, 4.0)));
            }
            if let Some((until, what, k)) = m.bump {
                match what {
                    0 => cpu += k * p.cpu_noise.max(1.0),
                    1 => mem += k * p.mem_noise,
                    f => rates[f - 2] *= (k * p.rate_noise).exp(),
                }
                if step + 1 >= until {
                    m.bump = None;
                }
            }
            let mut label = if step < config.warmup {
                SampleLabel::WarmUp
            } else {
                SampleLabel::Normal
            };
            for (e, id) in m.plan.iter().zip(&m.event_ids) {
                if step < e.from || step > e.to {
                    continue;
                }
                label = SampleLabel::Event(*id);
                let k = (step - e.from) as f64;
                match e.kind {
                    EventKind::CpuSpike => cpu = (cpu + e.magnitude).min(100.0 - r.unit()),
                    EventKind::MemoryLeak => mem += e.magnitude * (k + 1.0),
                    EventKind::DiskBurst | EventKind::NetworkSurge => {
                        // At least +magnitude bytes/s, and at least triple the
                        // machine's usual rate: an event must stand out of the
                        // machine's own noise to be an event at all.
                        let first = if e.kind == EventKind::DiskBurst { 0 } else { 2 };
                        for i in [first, first + 1] {
                            if (i == first && e.which == 1) || (i == first + 1 && e.which == 0) {
                                continue;
                            }
                            let add = e.magnitude.max(e.factor * p.rate_base[i]);
                            rates[i] += add * (1.0 + 0.1 * gauss(r));
                        }
                    }
                }
            }
            let cpu = cpu.clamp(0.0, 100.0);
            let mem = mem.clamp(1.0, 99.0);
            let down = m.reboot_at.is_some_and(|b| {
                m.silent
                    .iter()
                    .any(|(a, e)| *e == b && step >= *a && step < b)
            });
            if m.reboot_at == Some(step) {
                m.counters = [0; 4];
                m.boot_step = step;
            }
            if !down {
                for (c, rate) in m.counters.iter_mut().zip(rates) {
                    *c += (rate.max(0.0) * dt) as u64;
                }
                m.fs_used = (m.fs_used + 2e-7 * r.unit()).min(0.95);
            }
            if m.silent.iter().any(|(a, b)| step >= *a && step < *b) {
                continue;
            }
            for (e, id) in m.plan.iter().zip(&m.event_ids) {
                if step == e.from {
                    events[*id].start = t;
                }
                if step == e.to {
                    events[*id].end = t;
                }
            }
            let mut s = Snapshot::new(m.id.clone(), t);
            s.schema_version = SCHEMA_VERSION;
            s.cpu_usage = cpu;
            s.memory_usage = mem;
            s.disk_io = DiskIo {
                read: m.counters[0],
                write: m.counters[1],
            };
            s.network_io = NetworkIo {
                sent: m.counters[2],
                recv: m.counters[3],
            };
            s.interval_secs = m.declares_interval.then_some(config.interval);
            let since_boot = (step - m.boot_step) as f64 * config.interval;
            s.uptime_secs = Some(if m.boot_step == 0 {
                m.uptime0 + since_boot as u64
            } else {
                since_boot as u64
            });
            let total = 16u64 << 30;
            let used = (total as f64 * mem / 100.0) as u64;
            s.memory = Some(Memory {
                total_bytes: total,
                used_bytes: used,
                available_bytes: total - used,
                swap_total_bytes: 0,
                swap_used_bytes: 0,
            });
            let fs_total = 200u64 << 30;
            let fs_used = (fs_total as f64 * m.fs_used) as u64;
            s.filesystems = vec![Filesystem {
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                total_bytes: fs_total,
                used_bytes: fs_used,
                available_bytes: fs_total - fs_used,
            }];
            snapshots.push(s);
            labels.push(label);
        }
    }
    LabelledTrace {
        config: config.clone(),
        snapshots,
        labels,
        events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_reproducible_and_seed_dependent() {
        let c = TraceConfig {
            machines: 3,
            samples: 1500,
            ..TraceConfig::default()
        };
        let a = generate(&c);
        let b = generate(&c);
        assert_eq!(a, b);
        let d = generate(&TraceConfig { seed: 2, ..c });
        assert_ne!(a.snapshots, d.snapshots);
    }

    #[test]
    fn traces_are_well_formed() {
        let c = TraceConfig::default();
        let tr = generate(&c);
        assert_eq!(tr.snapshots.len(), tr.labels.len());
        assert!(tr.events.len() >= c.machines * 3, "{}", tr.events.len());
        for k in EventKind::ALL {
            assert!(tr.events.iter().any(|e| e.kind == k), "{k:?}");
        }
        // Time order, valid snapshots, counters that only go down at a reboot.
        let mut last: std::collections::HashMap<&str, &Snapshot> = Default::default();
        for w in tr.snapshots.windows(2) {
            assert!(w[0].timestamp <= w[1].timestamp);
        }
        let mut resets = 0;
        for s in &tr.snapshots {
            sysmon_core::codec::validate(s).unwrap();
            if let Some(prev) = last.get(s.machine_id.as_str()) {
                if s.disk_io.read < prev.disk_io.read {
                    resets += 1;
                    assert!(s.uptime_secs < prev.uptime_secs, "a reset is a reboot");
                }
            }
            last.insert(&s.machine_id, s);
        }
        assert!(resets > 0, "some machine reboots");
        // Every event is labelled, lies on its machine, and starts after warm-up.
        for (i, e) in tr.events.iter().enumerate() {
            assert!(e.start > c.start + c.warmup as f64 * c.interval);
            assert!(e.end >= e.start);
            let samples: Vec<&Snapshot> = tr
                .snapshots
                .iter()
                .zip(&tr.labels)
                .filter(|(_, l)| **l == SampleLabel::Event(i))
                .map(|(s, _)| s)
                .collect();
            assert!(!samples.is_empty());
            assert!(samples.iter().all(|s| s.machine_id == e.machine_id));
            assert_eq!(samples[0].timestamp, e.start);
            assert_eq!(samples.last().unwrap().timestamp, e.end);
        }
    }

    #[test]
    fn injected_events_change_what_they_say() {
        let tr = generate(&TraceConfig::default());
        for (i, e) in tr.events.iter().enumerate() {
            let during: Vec<&Snapshot> = tr
                .snapshots
                .iter()
                .zip(&tr.labels)
                .filter(|(_, l)| **l == SampleLabel::Event(i))
                .map(|(s, _)| s)
                .collect();
            if e.kind == EventKind::CpuSpike {
                assert!(during.iter().all(|s| s.cpu_usage > 30.0), "{e:?}");
            }
            if e.kind == EventKind::MemoryLeak {
                let first = during[0].memory_usage;
                let last = during.last().unwrap().memory_usage;
                assert!(last - first > 4.0, "{e:?}: {first} -> {last}");
            }
        }
    }
}
