//! sysmon's compact binary snapshot encoding.
//!
//! Layout: a 4-byte magic naming the layout version, then every field of
//! [`Snapshot`] in declaration order. Version 2 (`SMB2`, written since the host
//! details) adds `threads`, `state`, `open_fds` and `user` after each process's
//! `memory_bytes`, and the host details after `custom_metrics`; version 1
//! (`SMB1`) messages still decode, with those fields absent. Unsigned integers are LEB128 varints, floats are 8-byte
//! little-endian IEEE 754, strings are a varint length and UTF-8 bytes, an
//! `Option` is a `0`/`1` byte followed by the value, a list is a varint count
//! followed by its items. The decoder checks every length against the bytes
//! that remain, so a hostile message cannot make it allocate more than its own size.

use std::collections::BTreeMap;

use crate::error::DecodeError;
use crate::snapshot::{
    BlockDevice, CgroupInfo, CgroupKind, CollectorFailure, DiskIo, Filesystem, IoRate, LoadAvg,
    Memory, NetworkErrors, NetworkIo, NetworkRate, OpenFiles, Pressure, PressureLine,
    PressureStall, ProcessInfo, Snapshot, Tcp, TcpStates, Temperature,
};

/// The first four bytes of every binary snapshot this version writes (layout 2).
pub const MAGIC: &[u8; 4] = b"SMB2";

/// The magic of layout 1, still decoded.
pub const MAGIC_V1: &[u8; 4] = b"SMB1";

/// True when `bytes` start with the magic of a binary layout this version decodes.
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC) || bytes.starts_with(MAGIC_V1)
}

/// Encodes `s` in the binary form.
pub fn encode(s: &Snapshot) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(
        256 + 48 * (s.top_cpu_processes.len() * 2),
    ));
    w.0.extend_from_slice(MAGIC);
    w.str(&s.machine_id);
    w.f64(s.timestamp);
    w.f64(s.cpu_usage);
    w.f64(s.memory_usage);
    w.uint(s.disk_io.read);
    w.uint(s.disk_io.write);
    w.uint(s.network_io.sent);
    w.uint(s.network_io.recv);
    w.processes(&s.top_cpu_processes);
    w.processes(&s.top_mem_processes);
    w.uint(u64::from(s.schema_version));
    w.opt(s.hostname.as_deref(), |w, h| w.str(h));
    w.opt(s.interval_secs, |w, v| w.f64(v));
    w.uint(s.cpu_per_core.len() as u64);
    for c in &s.cpu_per_core {
        w.f64(*c);
    }
    w.opt(s.load_avg, |w, l| {
        w.f64(l.one);
        w.f64(l.five);
        w.f64(l.fifteen);
    });
    w.opt(s.memory, |w, m| {
        w.uint(m.total_bytes);
        w.uint(m.used_bytes);
        w.uint(m.available_bytes);
        w.uint(m.swap_total_bytes);
        w.uint(m.swap_used_bytes);
    });
    w.opt(s.disk_rate, |w, r| {
        w.f64(r.read);
        w.f64(r.write);
    });
    w.opt(s.network_rate, |w, r| {
        w.f64(r.sent);
        w.f64(r.recv);
    });
    w.uint(s.filesystems.len() as u64);
    for f in &s.filesystems {
        w.str(&f.mount_point);
        w.str(&f.fs_type);
        w.uint(f.total_bytes);
        w.uint(f.used_bytes);
        w.uint(f.available_bytes);
    }
    w.opt(s.uptime_secs, |w, u| w.uint(u));
    w.uint(s.labels.len() as u64);
    for (k, v) in &s.labels {
        w.str(k);
        w.str(v);
    }
    w.uint(s.collector_errors.len() as u64);
    for e in &s.collector_errors {
        w.str(&e.collector);
        w.str(&e.message);
    }
    w.uint(s.custom_metrics.len() as u64);
    for (k, v) in &s.custom_metrics {
        w.str(k);
        w.f64(*v);
    }
    w.host_details(s);
    w.0
}

/// True when `s` carries any of the host details (pressure, disks, TCP,
/// cgroups, temperatures, open files, network errors).
pub fn has_host_details(s: &Snapshot) -> bool {
    s.pressure.is_some()
        || !s.disks.is_empty()
        || s.tcp.is_some()
        || !s.top_cpu_cgroups.is_empty()
        || !s.top_mem_cgroups.is_empty()
        || !s.temperatures.is_empty()
        || s.open_files.is_some()
        || s.network_errors.is_some()
}

/// The host details of `s` alone, in the layout that follows `custom_metrics`
/// in a layout-2 message (storage keeps them in one column with this).
pub fn encode_host_details(s: &Snapshot) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(256));
    w.host_details(s);
    w.0
}

/// Decodes [`encode_host_details`] into `s`'s host-detail fields.
pub fn decode_host_details(bytes: &[u8], s: &mut Snapshot) -> Result<(), DecodeError> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        v2: true,
    };
    r.host_details(s)?;
    if r.pos != r.buf.len() {
        return Err(DecodeError::Binary(format!(
            "{} trailing bytes after the host details",
            r.buf.len() - r.pos
        )));
    }
    Ok(())
}

/// Decodes a binary snapshot (without validation; see [`super::decode_with`]).
pub fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let (body, v2) = if let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) {
        (body, true)
    } else if let Some(body) = bytes.strip_prefix(MAGIC_V1.as_slice()) {
        (body, false)
    } else {
        return Err(DecodeError::Binary(
            "missing the binary magic (SMB2 or SMB1)".into(),
        ));
    };
    let mut r = Reader {
        buf: body,
        pos: 0,
        v2,
    };
    let machine_id = r.string("machine_id")?;
    let timestamp = r.f64("timestamp")?;
    let cpu_usage = r.f64("cpu_usage")?;
    let memory_usage = r.f64("memory_usage")?;
    let disk_io = DiskIo {
        read: r.uint("disk_io.read")?,
        write: r.uint("disk_io.write")?,
    };
    let network_io = NetworkIo {
        sent: r.uint("network_io.sent")?,
        recv: r.uint("network_io.recv")?,
    };
    let top_cpu_processes = r.processes("top_cpu_processes")?;
    let top_mem_processes = r.processes("top_mem_processes")?;
    let schema_version = u32::try_from(r.uint("schema_version")?)
        .map_err(|_| DecodeError::Binary("schema_version does not fit in 32 bits".into()))?;
    let hostname = r.opt("hostname", |r| r.string("hostname"))?;
    let interval_secs = r.opt("interval_secs", |r| r.f64("interval_secs"))?;
    let cores = r.count("cpu_per_core", 8)?;
    let mut cpu_per_core = Vec::with_capacity(cores);
    for _ in 0..cores {
        cpu_per_core.push(r.f64("cpu_per_core")?);
    }
    let load_avg = r.opt("load_avg", |r| {
        Ok(LoadAvg {
            one: r.f64("load_avg.one")?,
            five: r.f64("load_avg.five")?,
            fifteen: r.f64("load_avg.fifteen")?,
        })
    })?;
    let memory = r.opt("memory", |r| {
        Ok(Memory {
            total_bytes: r.uint("memory.total_bytes")?,
            used_bytes: r.uint("memory.used_bytes")?,
            available_bytes: r.uint("memory.available_bytes")?,
            swap_total_bytes: r.uint("memory.swap_total_bytes")?,
            swap_used_bytes: r.uint("memory.swap_used_bytes")?,
        })
    })?;
    let disk_rate = r.opt("disk_rate", |r| {
        Ok(IoRate {
            read: r.f64("disk_rate.read")?,
            write: r.f64("disk_rate.write")?,
        })
    })?;
    let network_rate = r.opt("network_rate", |r| {
        Ok(NetworkRate {
            sent: r.f64("network_rate.sent")?,
            recv: r.f64("network_rate.recv")?,
        })
    })?;
    let n = r.count("filesystems", 5)?;
    let mut filesystems = Vec::with_capacity(n);
    for _ in 0..n {
        filesystems.push(Filesystem {
            mount_point: r.string("filesystems.mount_point")?,
            fs_type: r.string("filesystems.fs_type")?,
            total_bytes: r.uint("filesystems.total_bytes")?,
            used_bytes: r.uint("filesystems.used_bytes")?,
            available_bytes: r.uint("filesystems.available_bytes")?,
        });
    }
    let uptime_secs = r.opt("uptime_secs", |r| r.uint("uptime_secs"))?;
    let n = r.count("labels", 2)?;
    let mut labels = BTreeMap::new();
    for _ in 0..n {
        let k = r.string("labels.key")?;
        let v = r.string("labels.value")?;
        labels.insert(k, v);
    }
    let n = r.count("collector_errors", 2)?;
    let mut collector_errors = Vec::with_capacity(n);
    for _ in 0..n {
        collector_errors.push(CollectorFailure {
            collector: r.string("collector_errors.collector")?,
            message: r.string("collector_errors.message")?,
        });
    }
    let n = r.count("custom_metrics", 9)?;
    let mut custom_metrics = BTreeMap::new();
    for _ in 0..n {
        let k = r.string("custom_metrics.key")?;
        let v = r.f64("custom_metrics.value")?;
        custom_metrics.insert(k, v);
    }
    let mut snapshot = Snapshot {
        machine_id,
        timestamp,
        cpu_usage,
        memory_usage,
        disk_io,
        network_io,
        top_cpu_processes,
        top_mem_processes,
        schema_version,
        hostname,
        interval_secs,
        cpu_per_core,
        load_avg,
        memory,
        disk_rate,
        network_rate,
        filesystems,
        uptime_secs,
        labels,
        collector_errors,
        custom_metrics,
        ..Snapshot::default()
    };
    if r.v2 {
        r.host_details(&mut snapshot)?;
    }
    if r.pos != r.buf.len() {
        return Err(DecodeError::Binary(format!(
            "{} trailing bytes after the snapshot",
            r.buf.len() - r.pos
        )));
    }
    Ok(snapshot)
}

struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                f(self, v);
            }
        }
    }
    fn processes(&mut self, list: &[ProcessInfo]) {
        self.uint(list.len() as u64);
        for p in list {
            self.uint(u64::from(p.pid));
            self.str(&p.name);
            self.f64(p.cpu_percent);
            self.opt(p.memory_percent, |w, m| w.f64(m));
            self.opt(p.memory_bytes, |w, m| w.uint(m));
            self.opt(p.threads, |w, t| w.uint(u64::from(t)));
            self.opt(p.state.as_deref(), |w, st| w.str(st));
            self.opt(p.open_fds, |w, n| w.uint(u64::from(n)));
            self.opt(p.user.as_deref(), |w, u| w.str(u));
        }
    }
    fn pressure_line(&mut self, l: &PressureLine) {
        self.f64(l.avg10);
        self.f64(l.avg60);
        self.f64(l.avg300);
        self.uint(l.total_us);
    }
    fn pressure(&mut self, p: &Pressure) {
        for stall in [&p.cpu, &p.memory, &p.io] {
            self.opt(stall.as_ref(), |w, s| {
                w.pressure_line(&s.some);
                w.opt(s.full.as_ref(), |w, f| w.pressure_line(f));
            });
        }
    }
    fn tcp_states(&mut self, t: &TcpStates) {
        for v in tcp_state_counts(t) {
            self.uint(v);
        }
    }
    fn cgroups(&mut self, list: &[CgroupInfo]) {
        self.uint(list.len() as u64);
        for c in list {
            self.str(&c.path);
            self.str(&c.name);
            self.0.push(kind_tag(c.kind));
            self.f64(c.cpu_percent);
            self.uint(c.memory_bytes);
            self.opt(c.memory_limit_bytes, |w, v| w.uint(v));
            self.opt(c.pids, |w, v| w.uint(v));
            self.opt(c.io_read_bytes_per_sec, |w, v| w.f64(v));
            self.opt(c.io_write_bytes_per_sec, |w, v| w.f64(v));
            self.opt(c.pressure.as_ref(), |w, p| w.pressure(p));
        }
    }
    /// The fields layout 2 adds after `custom_metrics`.
    fn host_details(&mut self, s: &Snapshot) {
        self.opt(s.pressure.as_ref(), |w, p| w.pressure(p));
        self.uint(s.disks.len() as u64);
        for d in &s.disks {
            self.str(&d.name);
            for v in [
                d.read_ops,
                d.write_ops,
                d.read_bytes,
                d.write_bytes,
                d.read_time_ms,
                d.write_time_ms,
                d.in_flight,
                d.io_time_ms,
            ] {
                self.uint(v);
            }
            for v in [
                d.read_iops,
                d.write_iops,
                d.read_latency_ms,
                d.write_latency_ms,
                d.utilization_percent,
            ] {
                self.opt(v, |w, v| w.f64(v));
            }
        }
        self.opt(s.tcp.as_ref(), |w, t| {
            w.tcp_states(&t.v4);
            w.tcp_states(&t.v6);
            w.uint(t.out_segs);
            w.uint(t.retrans_segs);
            w.opt(t.retransmits_per_sec, |w, v| w.f64(v));
            w.opt(t.retransmit_percent, |w, v| w.f64(v));
        });
        self.cgroups(&s.top_cpu_cgroups);
        self.cgroups(&s.top_mem_cgroups);
        self.uint(s.temperatures.len() as u64);
        for t in &s.temperatures {
            self.str(&t.label);
            self.f64(t.celsius);
            self.opt(t.critical_celsius, |w, v| w.f64(v));
        }
        self.opt(s.open_files, |w, f| {
            w.uint(f.allocated);
            w.uint(f.max);
        });
        self.opt(s.network_errors, |w, e| {
            w.uint(e.rx_errors);
            w.uint(e.tx_errors);
            w.uint(e.rx_dropped);
            w.uint(e.tx_dropped);
        });
    }
}

const CGROUP_KINDS: [CgroupKind; 6] = [
    CgroupKind::Other,
    CgroupKind::SystemdService,
    CgroupKind::Docker,
    CgroupKind::Containerd,
    CgroupKind::CriO,
    CgroupKind::KubernetesPod,
];

fn kind_tag(kind: CgroupKind) -> u8 {
    CGROUP_KINDS.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

fn tcp_state_counts(t: &TcpStates) -> [u64; 11] {
    [
        t.established,
        t.syn_sent,
        t.syn_recv,
        t.fin_wait1,
        t.fin_wait2,
        t.time_wait,
        t.close,
        t.close_wait,
        t.last_ack,
        t.listen,
        t.closing,
    ]
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Layout 2: processes carry their details and the host details follow.
    v2: bool,
}

impl Reader<'_> {
    fn truncated(&self, field: &str) -> DecodeError {
        DecodeError::Binary(format!("truncated at byte {} reading {field}", self.pos))
    }
    fn byte(&mut self, field: &str) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.truncated(field))?;
        self.pos += 1;
        Ok(b)
    }
    fn uint(&mut self, field: &str) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte(field)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Binary(format!("varint too long in {field}")))
    }
    fn f64(&mut self, field: &str) -> Result<f64, DecodeError> {
        let end = self.pos + 8;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.truncated(field))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(bytes);
        self.pos = end;
        Ok(f64::from_le_bytes(a))
    }
    /// A count of items each at least `min_item_bytes` long, checked against what remains.
    fn count(&mut self, field: &str, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.uint(field)?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes as u64) > remaining {
            return Err(DecodeError::Binary(format!(
                "{field} claims {n} items but only {remaining} bytes remain"
            )));
        }
        Ok(n as usize)
    }
    fn string(&mut self, field: &str) -> Result<String, DecodeError> {
        let n = self.count(field, 1)?;
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| DecodeError::Binary(format!("{field} is not valid UTF-8")))
    }
    fn opt<T>(
        &mut self,
        field: &str,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.byte(field)? {
            0 => Ok(None),
            1 => f(self).map(Some),
            t => Err(DecodeError::Binary(format!(
                "bad option tag {t} for {field}"
            ))),
        }
    }
    fn processes(&mut self, field: &str) -> Result<Vec<ProcessInfo>, DecodeError> {
        let n = self.count(field, 12)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let pid = u32::try_from(self.uint(field)?).map_err(|_| {
                DecodeError::Binary(format!("{field}: pid does not fit in 32 bits"))
            })?;
            out.push(ProcessInfo {
                pid,
                name: self.string(field)?,
                cpu_percent: self.f64(field)?,
                memory_percent: self.opt(field, |r| r.f64(field))?,
                memory_bytes: self.opt(field, |r| r.uint(field))?,
                threads: self.opt_details(field, |r| r.u32(field))?,
                state: self.opt_details(field, |r| r.string(field))?,
                open_fds: self.opt_details(field, |r| r.u32(field))?,
                user: self.opt_details(field, |r| r.string(field))?,
            });
        }
        Ok(out)
    }
    /// An optional field that exists only in layout 2 (absent in layout 1).
    fn opt_details<T>(
        &mut self,
        field: &str,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.v2 {
            self.opt(field, f)
        } else {
            Ok(None)
        }
    }
    fn u32(&mut self, field: &str) -> Result<u32, DecodeError> {
        u32::try_from(self.uint(field)?)
            .map_err(|_| DecodeError::Binary(format!("{field} does not fit in 32 bits")))
    }
    fn opt_f64(&mut self, field: &str) -> Result<Option<f64>, DecodeError> {
        self.opt(field, |r| r.f64(field))
    }
    fn pressure_line(&mut self, field: &str) -> Result<PressureLine, DecodeError> {
        Ok(PressureLine {
            avg10: self.f64(field)?,
            avg60: self.f64(field)?,
            avg300: self.f64(field)?,
            total_us: self.uint(field)?,
        })
    }
    fn pressure(&mut self, field: &str) -> Result<Pressure, DecodeError> {
        let stall = |r: &mut Self| {
            r.opt(field, |r| {
                Ok(PressureStall {
                    some: r.pressure_line(field)?,
                    full: r.opt(field, |r| r.pressure_line(field))?,
                })
            })
        };
        Ok(Pressure {
            cpu: stall(self)?,
            memory: stall(self)?,
            io: stall(self)?,
        })
    }
    fn tcp_states(&mut self, field: &str) -> Result<TcpStates, DecodeError> {
        let mut v = [0u64; 11];
        for slot in &mut v {
            *slot = self.uint(field)?;
        }
        let [established, syn_sent, syn_recv, fin_wait1, fin_wait2, time_wait, close, close_wait, last_ack, listen, closing] =
            v;
        Ok(TcpStates {
            established,
            syn_sent,
            syn_recv,
            fin_wait1,
            fin_wait2,
            time_wait,
            close,
            close_wait,
            last_ack,
            listen,
            closing,
        })
    }
    fn cgroups(&mut self, field: &str) -> Result<Vec<CgroupInfo>, DecodeError> {
        let n = self.count(field, 14)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let path = self.string(field)?;
            let name = self.string(field)?;
            let tag = self.byte(field)?;
            let kind = CGROUP_KINDS
                .get(usize::from(tag))
                .copied()
                .unwrap_or_default();
            out.push(CgroupInfo {
                path,
                name,
                kind,
                cpu_percent: self.f64(field)?,
                memory_bytes: self.uint(field)?,
                memory_limit_bytes: self.opt(field, |r| r.uint(field))?,
                pids: self.opt(field, |r| r.uint(field))?,
                io_read_bytes_per_sec: self.opt_f64(field)?,
                io_write_bytes_per_sec: self.opt_f64(field)?,
                pressure: self.opt(field, |r| r.pressure(field))?,
            });
        }
        Ok(out)
    }
    /// The fields layout 2 adds after `custom_metrics`.
    fn host_details(&mut self, s: &mut Snapshot) -> Result<(), DecodeError> {
        s.pressure = self.opt("pressure", |r| r.pressure("pressure"))?;
        let n = self.count("disks", 14)?;
        s.disks = Vec::with_capacity(n);
        for _ in 0..n {
            let f = "disks";
            s.disks.push(BlockDevice {
                name: self.string(f)?,
                read_ops: self.uint(f)?,
                write_ops: self.uint(f)?,
                read_bytes: self.uint(f)?,
                write_bytes: self.uint(f)?,
                read_time_ms: self.uint(f)?,
                write_time_ms: self.uint(f)?,
                in_flight: self.uint(f)?,
                io_time_ms: self.uint(f)?,
                read_iops: self.opt_f64(f)?,
                write_iops: self.opt_f64(f)?,
                read_latency_ms: self.opt_f64(f)?,
                write_latency_ms: self.opt_f64(f)?,
                utilization_percent: self.opt_f64(f)?,
            });
        }
        s.tcp = self.opt("tcp", |r| {
            Ok(Tcp {
                v4: r.tcp_states("tcp.v4")?,
                v6: r.tcp_states("tcp.v6")?,
                out_segs: r.uint("tcp.out_segs")?,
                retrans_segs: r.uint("tcp.retrans_segs")?,
                retransmits_per_sec: r.opt_f64("tcp.retransmits_per_sec")?,
                retransmit_percent: r.opt_f64("tcp.retransmit_percent")?,
            })
        })?;
        s.top_cpu_cgroups = self.cgroups("top_cpu_cgroups")?;
        s.top_mem_cgroups = self.cgroups("top_mem_cgroups")?;
        let n = self.count("temperatures", 10)?;
        s.temperatures = Vec::with_capacity(n);
        for _ in 0..n {
            s.temperatures.push(Temperature {
                label: self.string("temperatures.label")?,
                celsius: self.f64("temperatures.celsius")?,
                critical_celsius: self.opt_f64("temperatures.critical_celsius")?,
            });
        }
        s.open_files = self.opt("open_files", |r| {
            Ok(OpenFiles {
                allocated: r.uint("open_files.allocated")?,
                max: r.uint("open_files.max")?,
            })
        })?;
        s.network_errors = self.opt("network_errors", |r| {
            Ok(NetworkErrors {
                rx_errors: r.uint("network_errors.rx_errors")?,
                tx_errors: r.uint("network_errors.tx_errors")?,
                rx_dropped: r.uint("network_errors.rx_dropped")?,
                tx_dropped: r.uint("network_errors.tx_dropped")?,
            })
        })?;
        Ok(())
    }
}
