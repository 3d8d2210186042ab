//! Compact, exact encodings of a snapshot's variable-length parts.
//!
//! The numeric fields the dashboard charts live in their own columns; the lists
//! (per-core CPU, filesystems, the two top-process lists) are stored as small
//! binary blobs because they are written 100,000 times a second and JSON would
//! triple their size. Every encoding is lossless: floats are stored as their
//! IEEE-754 bits (so `-0.0`, subnormals and every digit survive), integers as
//! LEB128 varints, strings as length-prefixed UTF-8.
//!
//! Formats (all integers varints unless noted):
//!
//! * per-core CPU: `f64` little-endian, one per core, nothing else.
//! * filesystems: version byte `1`, count, then per filesystem: mount point,
//!   fs type, total, used, available bytes.
//! * processes: version byte `1`, then the distinct processes of both lists
//!   (count; per process: pid, name, `cpu_percent` as `f64` LE, a flags byte
//!   with bit 0 = `memory_percent` present, bit 1 = `memory_bytes`, bit 2 =
//!   `threads`, bit 3 = `state`, bit 4 = `open_fds`, bit 5 = `user`, then
//!   those values in that order: `f64` LE, varints and strings), then the top-CPU list and the
//!   top-memory list as indices into the distinct processes (count, indices).
//!   A process that appears in both lists (the usual case) is stored once.
//!
//! Labels, collector errors and custom metrics are rare and small: they are
//! stored as JSON text, readable from the `sqlite3` shell.

use sysmon_core::{Filesystem, ProcessInfo};

/// A blob or text column that could not be decoded: the database is damaged
/// or was edited by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptBlob(pub String);

type Result<T> = std::result::Result<T, CorruptBlob>;

const FORMAT_V1: u8 = 1;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over a blob that reports what it was reading when the blob ends early.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn err(&self, msg: impl std::fmt::Display) -> CorruptBlob {
        CorruptBlob(format!("{} blob: {msg}", self.what))
    }

    fn byte(&mut self) -> Result<u8> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| self.err("ends early"))?;
        self.buf = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn f64(&mut self) -> Result<f64> {
        if self.buf.len() < 8 {
            return Err(self.err("ends inside a number"));
        }
        let (head, rest) = self.buf.split_at(8);
        self.buf = rest;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(head);
        Ok(f64::from_bits(u64::from_le_bytes(bytes)))
    }

    fn count(&mut self, min_item_bytes: usize) -> Result<usize> {
        let n = self.varint()?;
        // Every item takes at least `min_item_bytes`: a count larger than what
        // is left is damage, and must not drive a huge allocation.
        if n > (self.buf.len() / min_item_bytes.max(1)) as u64 {
            return Err(self.err(format!("count {n} exceeds the data left")));
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> Result<String> {
        let n = self.varint()?;
        if n > self.buf.len() as u64 {
            return Err(self.err("string runs past the end"));
        }
        let (head, rest) = self.buf.split_at(n as usize);
        self.buf = rest;
        String::from_utf8(head.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }

    fn version(&mut self) -> Result<()> {
        match self.byte()? {
            FORMAT_V1 => Ok(()),
            v => Err(self.err(format!("unknown format version {v}"))),
        }
    }

    fn finish(&self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err(format!("{} unexpected trailing bytes", self.buf.len())))
        }
    }
}

/// Appends per-core CPU percentages to `out`.
pub fn encode_cores(cores: &[f64], out: &mut Vec<u8>) {
    out.reserve(cores.len() * 8);
    for &c in cores {
        put_f64(out, c);
    }
}

/// Decodes [`encode_cores`].
pub fn decode_cores(buf: &[u8]) -> Result<Vec<f64>> {
    if buf.len() % 8 != 0 {
        return Err(CorruptBlob(format!(
            "cpu_per_core blob: {} bytes is not a multiple of 8",
            buf.len()
        )));
    }
    Ok(buf
        .chunks_exact(8)
        .map(|c| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(c);
            f64::from_bits(u64::from_le_bytes(bytes))
        })
        .collect())
}

/// Appends filesystems to `out`.
pub fn encode_filesystems(fs: &[Filesystem], out: &mut Vec<u8>) {
    out.push(FORMAT_V1);
    put_varint(out, fs.len() as u64);
    for f in fs {
        put_str(out, &f.mount_point);
        put_str(out, &f.fs_type);
        put_varint(out, f.total_bytes);
        put_varint(out, f.used_bytes);
        put_varint(out, f.available_bytes);
    }
}

/// Decodes [`encode_filesystems`].
pub fn decode_filesystems(buf: &[u8]) -> Result<Vec<Filesystem>> {
    let mut r = Reader::new(buf, "filesystems");
    r.version()?;
    let n = r.count(5)?;
    let mut fs = Vec::with_capacity(n);
    for _ in 0..n {
        fs.push(Filesystem {
            mount_point: r.str()?,
            fs_type: r.str()?,
            total_bytes: r.varint()?,
            used_bytes: r.varint()?,
            available_bytes: r.varint()?,
        });
    }
    r.finish()?;
    Ok(fs)
}

/// Bitwise equality: `-0.0` and `0.0` differ, so deduplication never changes a value.
fn same_process(a: &ProcessInfo, b: &ProcessInfo) -> bool {
    a.pid == b.pid
        && a.cpu_percent.to_bits() == b.cpu_percent.to_bits()
        && a.memory_percent.map(f64::to_bits) == b.memory_percent.map(f64::to_bits)
        && a.memory_bytes == b.memory_bytes
        && a.name == b.name
        && a.threads == b.threads
        && a.state == b.state
        && a.open_fds == b.open_fds
        && a.user == b.user
}

const HAS_MEM_PERCENT: u8 = 1;
const HAS_MEM_BYTES: u8 = 2;
const HAS_THREADS: u8 = 4;
const HAS_STATE: u8 = 8;
const HAS_OPEN_FDS: u8 = 16;
const HAS_USER: u8 = 32;
const ALL_FLAGS: u8 =
    HAS_MEM_PERCENT | HAS_MEM_BYTES | HAS_THREADS | HAS_STATE | HAS_OPEN_FDS | HAS_USER;

/// Appends both top-process lists to `out`, storing a process present in both once.
///
/// `scratch` is reused between calls to avoid an allocation per snapshot.
pub fn encode_processes(
    top_cpu: &[ProcessInfo],
    top_mem: &[ProcessInfo],
    scratch: &mut Vec<usize>,
    out: &mut Vec<u8>,
) {
    // Distinct processes: all of top_cpu (indices 0..len), then the top_mem
    // entries not found in it. `scratch` holds top_mem's indices.
    scratch.clear();
    let mut extra: Vec<&ProcessInfo> = Vec::new();
    for p in top_mem {
        let idx = match top_cpu.iter().position(|q| same_process(p, q)) {
            Some(i) => i,
            None => match extra.iter().position(|q| same_process(p, q)) {
                Some(i) => top_cpu.len() + i,
                None => {
                    extra.push(p);
                    top_cpu.len() + extra.len() - 1
                }
            },
        };
        scratch.push(idx);
    }
    out.push(FORMAT_V1);
    put_varint(out, (top_cpu.len() + extra.len()) as u64);
    for p in top_cpu.iter().chain(extra.iter().copied()) {
        put_varint(out, u64::from(p.pid));
        put_str(out, &p.name);
        put_f64(out, p.cpu_percent);
        let flag = |present: bool, bit: u8| if present { bit } else { 0 };
        out.push(
            flag(p.memory_percent.is_some(), HAS_MEM_PERCENT)
                | flag(p.memory_bytes.is_some(), HAS_MEM_BYTES)
                | flag(p.threads.is_some(), HAS_THREADS)
                | flag(p.state.is_some(), HAS_STATE)
                | flag(p.open_fds.is_some(), HAS_OPEN_FDS)
                | flag(p.user.is_some(), HAS_USER),
        );
        if let Some(m) = p.memory_percent {
            put_f64(out, m);
        }
        if let Some(b) = p.memory_bytes {
            put_varint(out, b);
        }
        if let Some(t) = p.threads {
            put_varint(out, u64::from(t));
        }
        if let Some(st) = &p.state {
            put_str(out, st);
        }
        if let Some(n) = p.open_fds {
            put_varint(out, u64::from(n));
        }
        if let Some(u) = &p.user {
            put_str(out, u);
        }
    }
    put_varint(out, top_cpu.len() as u64);
    for i in 0..top_cpu.len() {
        put_varint(out, i as u64);
    }
    put_varint(out, scratch.len() as u64);
    for &i in scratch.iter() {
        put_varint(out, i as u64);
    }
}

/// Decodes [`encode_processes`] into `(top_cpu_processes, top_mem_processes)`.
pub fn decode_processes(buf: &[u8]) -> Result<(Vec<ProcessInfo>, Vec<ProcessInfo>)> {
    let mut r = Reader::new(buf, "processes");
    r.version()?;
    let n = r.count(11)?;
    let mut distinct = Vec::with_capacity(n);
    for _ in 0..n {
        let pid = r.varint()?;
        let pid = u32::try_from(pid).map_err(|_| r.err(format!("pid {pid} exceeds u32")))?;
        let name = r.str()?;
        let cpu_percent = r.f64()?;
        let flags = r.byte()?;
        if flags & !ALL_FLAGS != 0 {
            return Err(r.err(format!("unknown flags {flags:#x}")));
        }
        let memory_percent = if flags & HAS_MEM_PERCENT != 0 {
            Some(r.f64()?)
        } else {
            None
        };
        let memory_bytes = if flags & HAS_MEM_BYTES != 0 {
            Some(r.varint()?)
        } else {
            None
        };
        let u32_of = |r: &mut Reader<'_>| -> Result<u32> {
            let v = r.varint()?;
            u32::try_from(v).map_err(|_| r.err(format!("{v} exceeds u32")))
        };
        let threads = (flags & HAS_THREADS != 0)
            .then(|| u32_of(&mut r))
            .transpose()?;
        let state = (flags & HAS_STATE != 0).then(|| r.str()).transpose()?;
        let open_fds = (flags & HAS_OPEN_FDS != 0)
            .then(|| u32_of(&mut r))
            .transpose()?;
        let user = (flags & HAS_USER != 0).then(|| r.str()).transpose()?;
        distinct.push(ProcessInfo {
            pid,
            name,
            cpu_percent,
            memory_percent,
            memory_bytes,
            threads,
            state,
            open_fds,
            user,
        });
    }
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let len = r.count(1)?;
        list.reserve(len);
        for _ in 0..len {
            let i = r.varint()?;
            let p = usize::try_from(i)
                .ok()
                .and_then(|i| distinct.get(i))
                .ok_or_else(|| r.err(format!("process index {i} out of range")))?;
            list.push(p.clone());
        }
    }
    r.finish()?;
    let [cpu, mem] = lists;
    Ok((cpu, mem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, name: &str, cpu: f64, mem: Option<f64>, bytes: Option<u64>) -> ProcessInfo {
        ProcessInfo {
            pid,
            name: name.into(),
            cpu_percent: cpu,
            memory_percent: mem,
            memory_bytes: bytes,
            ..ProcessInfo::default()
        }
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out, "test");
            assert_eq!(r.varint().unwrap(), v);
            r.finish().unwrap();
        }
    }

    #[test]
    fn cores_are_bit_exact() {
        let cores = [
            0.0,
            -0.0,
            12.345678901234567,
            100.0,
            f64::MIN_POSITIVE / 3.0,
        ];
        let mut out = Vec::new();
        encode_cores(&cores, &mut out);
        let back = decode_cores(&out).unwrap();
        assert_eq!(
            back.iter().map(|f| f.to_bits()).collect::<Vec<_>>(),
            cores.iter().map(|f| f.to_bits()).collect::<Vec<_>>()
        );
        assert!(decode_cores(&out[..out.len() - 1]).is_err());
    }

    #[test]
    fn filesystems_round_trip() {
        let fs = vec![
            Filesystem {
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                total_bytes: u64::MAX,
                used_bytes: 0,
                available_bytes: 42,
            },
            Filesystem {
                mount_point: "/mnt/données".into(),
                fs_type: String::new(),
                total_bytes: 1 << 40,
                used_bytes: 1 << 39,
                available_bytes: 1 << 39,
            },
        ];
        let mut out = Vec::new();
        encode_filesystems(&fs, &mut out);
        assert_eq!(decode_filesystems(&out).unwrap(), fs);
        let mut empty = Vec::new();
        encode_filesystems(&[], &mut empty);
        assert_eq!(decode_filesystems(&empty).unwrap(), vec![]);
    }

    #[test]
    fn processes_round_trip_and_shared_entries_are_stored_once() {
        let a = proc(1, "postgres", 50.5, Some(10.25), Some(1 << 30));
        let b = proc(2, "nginx", 3.0, None, None);
        let c = proc(
            3,
            "<img src=x onerror=alert(1)>",
            0.0,
            Some(40.0),
            Some(7 << 30),
        );
        let top_cpu = vec![a.clone(), b.clone()];
        let top_mem = vec![c.clone(), a.clone()];
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        encode_processes(&top_cpu, &top_mem, &mut scratch, &mut out);
        let (cpu, mem) = decode_processes(&out).unwrap();
        assert_eq!(cpu, top_cpu);
        assert_eq!(mem, top_mem);

        // `a` appears in both lists but its name is stored once.
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("postgres").count(), 1);
    }

    #[test]
    fn processes_that_differ_only_in_the_sign_of_zero_are_kept_apart() {
        let a = proc(1, "x", 0.0, Some(0.0), None);
        let b = proc(1, "x", -0.0, Some(0.0), None);
        let mut out = Vec::new();
        encode_processes(
            std::slice::from_ref(&a),
            std::slice::from_ref(&b),
            &mut Vec::new(),
            &mut out,
        );
        let (cpu, mem) = decode_processes(&out).unwrap();
        assert!(cpu[0].cpu_percent.is_sign_positive());
        assert!(mem[0].cpu_percent.is_sign_negative());
    }

    #[test]
    fn empty_lists_and_duplicates_within_a_list_round_trip() {
        let a = proc(9, "java", 1.0, Some(1.0), Some(1));
        for (cpu, mem) in [
            (vec![], vec![]),
            (vec![a.clone(), a.clone()], vec![]),
            (vec![], vec![a.clone(), a.clone()]),
        ] {
            let mut out = Vec::new();
            encode_processes(&cpu, &mem, &mut Vec::new(), &mut out);
            assert_eq!(decode_processes(&out).unwrap(), (cpu, mem));
        }
    }

    #[test]
    fn damaged_blobs_are_errors_not_panics() {
        let a = proc(1, "postgres", 50.5, Some(10.25), Some(1 << 30));
        let mut out = Vec::new();
        encode_processes(
            std::slice::from_ref(&a),
            std::slice::from_ref(&a),
            &mut Vec::new(),
            &mut out,
        );
        for cut in 0..out.len() {
            assert!(decode_processes(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = out.clone();
        trailing.push(0);
        assert!(decode_processes(&trailing).is_err());
        let mut bad_version = out.clone();
        bad_version[0] = 9;
        assert!(decode_processes(&bad_version)
            .unwrap_err()
            .0
            .contains("unknown format version 9"));
        // A huge count must not allocate: it is rejected against the bytes left.
        assert!(decode_processes(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode_filesystems(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
