//! sysmon's compact binary snapshot encoding.
//!
//! Layout: the 4-byte magic `SMB1`, then every field of [`Snapshot`] in
//! declaration order. Unsigned integers are LEB128 varints, floats are 8-byte
//! little-endian IEEE 754, strings are a varint length and UTF-8 bytes, an
//! `Option` is a `0`/`1` byte followed by the value, a list is a varint count
//! followed by its items. The decoder checks every length against the bytes
//! that remain, so a hostile message cannot make it allocate more than its own size.

use std::collections::BTreeMap;

use crate::error::DecodeError;
use crate::snapshot::{
    CollectorFailure, DiskIo, Filesystem, IoRate, LoadAvg, Memory, NetworkIo, NetworkRate,
    ProcessInfo, Snapshot,
};

/// The first four bytes of every binary snapshot.
pub const MAGIC: &[u8; 4] = b"SMB1";

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
    w.0
}

/// Decodes a binary snapshot (without validation; see [`super::decode_with`]).
pub fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| DecodeError::Binary("missing the SMB1 magic".into()))?;
    let mut r = Reader { buf: body, pos: 0 };
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
    if r.pos != r.buf.len() {
        return Err(DecodeError::Binary(format!(
            "{} trailing bytes after the snapshot",
            r.buf.len() - r.pos
        )));
    }
    Ok(Snapshot {
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
    })
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
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
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
            });
        }
        Ok(out)
    }
}
