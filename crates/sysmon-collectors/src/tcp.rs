//! TCP sockets per state (IPv4 and IPv6) and retransmissions.
//!
//! States come from the kernel's `sock_diag` netlink interface by default: one
//! dump per family whose replies carry a fixed 72-byte header per socket, of
//! which only the state byte is read, into a buffer kept between intervals.
//! The alternative, `mode = "proc"`, parses `/proc/net/tcp` and `tcp6`, text
//! of 150 bytes per socket that the kernel formats on each read: measured on
//! this host (2 cores) with 20,000 sockets open, netlink takes a fraction of
//! the time (figures in `BENCHMARKS.md`). Netlink is hand-written here rather
//! than through `netlink-packet-sock-diag`: that crate parses every reply into
//! owned structures with their attributes, where counting needs one byte per
//! socket and no allocation.
//!
//! Retransmissions come from `/proc/net/snmp` (`Tcp: OutSegs RetransSegs`):
//! cumulative counters, plus per second and as a percentage of the segments
//! sent over the last interval.

use std::fs::File;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;
use sysmon_core::{Collector, CollectorError, Snapshot, Tcp, TcpStates};

use crate::error::ParseError;
use crate::util::ReadBuf;

const PROC_SNMP: &str = "/proc/net/snmp";
const PROC_TCP: &str = "/proc/net/tcp";

/// Where socket states are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpSource {
    /// `sock_diag` netlink dumps (default): cheapest on busy hosts.
    #[default]
    Netlink,
    /// `/proc/net/tcp` and `/proc/net/tcp6` text.
    Proc,
}

/// Options of the `tcp` collector (`[collectors.tcp]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpOptions {
    /// `"netlink"` (default) or `"proc"`.
    pub mode: TcpSource,
    /// Socket states are counted every this many collections (and the last
    /// counts repeated in between); retransmits are read every time. Default
    /// 10: a dump walks the kernel's whole TCP hash table (about 2 ms of CPU
    /// on these machines however few sockets there are), so counting states
    /// every second would alone cost 0.2 % of a core. 1 counts every time.
    pub states_every: u32,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            mode: TcpSource::Netlink,
            states_every: 10,
        }
    }
}

/// Adds one socket in kernel state `state` (`TCP_ESTABLISHED` = 1 …
/// `TCP_NEW_SYN_RECV` = 12, counted as `syn_recv`) to `counts`; unknown
/// states are ignored.
pub fn count_state(counts: &mut TcpStates, state: u8) {
    let slot = match state {
        1 => &mut counts.established,
        2 => &mut counts.syn_sent,
        3 | 12 => &mut counts.syn_recv,
        4 => &mut counts.fin_wait1,
        5 => &mut counts.fin_wait2,
        6 => &mut counts.time_wait,
        7 => &mut counts.close,
        8 => &mut counts.close_wait,
        9 => &mut counts.last_ack,
        10 => &mut counts.listen,
        11 => &mut counts.closing,
        _ => return,
    };
    *slot += 1;
}

/// Counts the states in `/proc/net/tcp` or `tcp6` text (state: 4th column, hex).
pub fn parse_proc_tcp(text: &str, counts: &mut TcpStates) -> Result<(), ParseError> {
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let state = line
            .split_ascii_whitespace()
            .nth(3)
            .and_then(|s| u8::from_str_radix(s, 16).ok())
            .ok_or_else(|| ParseError::malformed(PROC_TCP, i + 1, "no hexadecimal state"))?;
        count_state(counts, state);
    }
    Ok(())
}

/// `Tcp: OutSegs` and `Tcp: RetransSegs` from `/proc/net/snmp` text (a header
/// line of names, then a line of values).
pub fn parse_snmp_tcp(text: &str) -> Result<(u64, u64), ParseError> {
    let mut lines = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Err(ParseError::Missing {
            file: PROC_SNMP,
            what: "`Tcp:` lines",
        });
    };
    let (mut out, mut retrans) = (None, None);
    for (name, value) in names
        .split_ascii_whitespace()
        .zip(values.split_ascii_whitespace())
    {
        let slot = match name {
            "OutSegs" => &mut out,
            "RetransSegs" => &mut retrans,
            _ => continue,
        };
        *slot = Some(value.parse::<u64>().map_err(|_| {
            ParseError::malformed(
                PROC_SNMP,
                0,
                format!("Tcp {name} {value:?} is not a number"),
            )
        })?);
    }
    match (out, retrans) {
        (Some(o), Some(r)) => Ok((o, r)),
        _ => Err(ParseError::Missing {
            file: PROC_SNMP,
            what: "Tcp OutSegs and RetransSegs",
        }),
    }
}

/// Netlink constants (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h).
mod nl {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub const NETLINK_SOCK_DIAG: i32 = 4;
    pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
    pub const NLM_F_REQUEST: u16 = 0x1;
    pub const NLM_F_DUMP: u16 = 0x300;
    pub const NLMSG_ERROR: u16 = 2;
    pub const NLMSG_DONE: u16 = 3;
    pub const HEADER: usize = 16;
    /// Every TCP state (bits 1..=12).
    pub const ALL_STATES: u32 = 0x1ffe;
}

/// What one netlink reply buffer held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpProgress {
    /// More replies follow.
    More,
    /// The dump is complete (`NLMSG_DONE`).
    Done,
}

/// Counts the sockets in one buffer of `sock_diag` replies (`nlmsghdr` then
/// `inet_diag_msg`, whose second byte is the state) to the request numbered
/// `seq`; replies to another request (left over from a dump that failed
/// half-way) are skipped. A netlink error message or a truncated message is
/// an error.
pub fn parse_diag_replies(
    buf: &[u8],
    seq: u32,
    counts: &mut TcpStates,
) -> Result<DumpProgress, String> {
    let mut pos = 0;
    while pos + nl::HEADER <= buf.len() {
        let word = |at: usize| [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        let len = u32::from_ne_bytes(word(pos)) as usize;
        let kind = u16::from_ne_bytes([buf[pos + 4], buf[pos + 5]]);
        if len < nl::HEADER || pos + len > buf.len() {
            return Err(format!(
                "netlink message of {len} bytes at offset {pos} overruns the reply"
            ));
        }
        if u32::from_ne_bytes(word(pos + 8)) != seq {
            pos += (len + 3) & !3;
            continue;
        }
        match kind {
            nl::NLMSG_DONE => return Ok(DumpProgress::Done),
            nl::NLMSG_ERROR => {
                let code = if len >= nl::HEADER + 4 {
                    i32::from_ne_bytes(word(pos + nl::HEADER))
                } else {
                    0
                };
                return Err(format!(
                    "sock_diag dump failed: {}",
                    std::io::Error::from_raw_os_error(-code)
                ));
            }
            nl::SOCK_DIAG_BY_FAMILY if len >= nl::HEADER + 2 => {
                count_state(counts, buf[pos + nl::HEADER + 1]);
            }
            _ => {}
        }
        pos += (len + 3) & !3;
    }
    Ok(DumpProgress::More)
}

/// The request for a dump of every TCP socket of `family` (`AF_INET`/`AF_INET6`).
pub fn diag_request(family: u8, seq: u32) -> [u8; 72] {
    let mut r = [0u8; 72];
    r[0..4].copy_from_slice(&72u32.to_ne_bytes());
    r[4..6].copy_from_slice(&nl::SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r[6..8].copy_from_slice(&(nl::NLM_F_REQUEST | nl::NLM_F_DUMP).to_ne_bytes());
    r[8..12].copy_from_slice(&seq.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states, then a zero sockid
    r[16] = family;
    r[17] = 6; // IPPROTO_TCP
    r[20..24].copy_from_slice(&nl::ALL_STATES.to_ne_bytes());
    r
}

/// Address families as Linux numbers them (`AF_INET`, `AF_INET6`).
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// A `NETLINK_SOCK_DIAG` socket kept open between intervals.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct DiagSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

#[cfg(target_os = "linux")]
impl DiagSocket {
    fn open() -> std::io::Result<Self> {
        // SAFETY: plain socket(2); the returned descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                nl::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(DiagSocket {
            // SAFETY: `fd` is a fresh descriptor nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            buf: vec![0; 32 * 1024],
            seq: 0,
        })
    }

    fn dump(&mut self, family: u8, counts: &mut TcpStates) -> Result<(), CollectorError> {
        let fail = |e: std::io::Error| CollectorError::Io {
            what: "sock_diag netlink socket".into(),
            source: e,
        };
        self.seq = self.seq.wrapping_add(1);
        let req = diag_request(family, self.seq);
        // SAFETY: an all-zero sockaddr_nl (with its family set) addresses the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `req` and `addr` are valid for the lengths passed.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(fail(e));
            }
            match parse_diag_replies(&self.buf[..n as usize], self.seq, counts) {
                Ok(DumpProgress::Done) => return Ok(()),
                Ok(DumpProgress::More) if n > 0 => {}
                Ok(DumpProgress::More) => {
                    return Err(CollectorError::Failed(
                        "sock_diag dump ended without NLMSG_DONE".into(),
                    ))
                }
                Err(m) => return Err(CollectorError::Failed(m)),
            }
        }
    }
}

/// No netlink outside Linux: opening fails, so `mode = "netlink"` is a
/// configuration error at start there.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
struct DiagSocket;

#[cfg(not(target_os = "linux"))]
impl DiagSocket {
    fn open() -> std::io::Result<Self> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "sock_diag netlink exists only on Linux",
        ))
    }

    fn dump(&mut self, _family: u8, _counts: &mut TcpStates) -> Result<(), CollectorError> {
        Err(CollectorError::Failed(
            "sock_diag netlink exists only on Linux".into(),
        ))
    }
}

/// Segments sent and retransmitted since boot and, from the second reading on,
/// retransmits per second and in percent of segments sent (when any were).
type Retransmits = (u64, u64, Option<(f64, Option<f64>)>);

/// Fills `tcp`: sockets per state and retransmissions.
#[derive(Debug)]
pub struct TcpCollector {
    mode: TcpSource,
    socket: Option<DiagSocket>,
    buf: ReadBuf,
    proc_net: PathBuf,
    last: Option<(Instant, u64, u64)>,
    states_every: u32,
    /// The last counts and the collections since they were taken.
    states: Option<((TcpStates, TcpStates), u32)>,
}

impl TcpCollector {
    /// The registered name.
    pub const NAME: &'static str = "tcp";

    /// A collector with `options`. In netlink mode the socket is opened here,
    /// so a kernel without `sock_diag` is a configuration error at start.
    pub fn new(options: TcpOptions) -> Result<Self, CollectorError> {
        if options.states_every == 0 {
            return Err(CollectorError::Config {
                name: Self::NAME.into(),
                message: "`states_every` must be at least 1".into(),
            });
        }
        let socket = match options.mode {
            TcpSource::Netlink => Some(DiagSocket::open().map_err(|e| CollectorError::Config {
                name: Self::NAME.into(),
                message: format!(
                    "cannot open a sock_diag netlink socket ({e}); set mode = \"proc\""
                ),
            })?),
            TcpSource::Proc => None,
        };
        let mut c = TcpCollector {
            mode: options.mode,
            socket,
            buf: ReadBuf::with_capacity(if options.mode == TcpSource::Proc {
                64 * 1024
            } else {
                2048
            }),
            proc_net: PathBuf::from("/proc/net"),
            last: None,
            states_every: options.states_every,
            states: None,
        };
        let _ = c.retransmits(); // priming, for a rate at the first interval
        Ok(c)
    }

    /// Socket counts per family.
    pub fn states(&mut self) -> Result<(TcpStates, TcpStates), CollectorError> {
        let (mut v4, mut v6) = (TcpStates::default(), TcpStates::default());
        match (&mut self.socket, self.mode) {
            (Some(s), TcpSource::Netlink) => {
                s.dump(AF_INET, &mut v4)?;
                s.dump(AF_INET6, &mut v6)?;
            }
            _ => {
                for (file, counts) in [("tcp", &mut v4), ("tcp6", &mut v6)] {
                    // A host without IPv6 has no tcp6.
                    let path = self.proc_net.join(file);
                    if file == "tcp6" && !path.exists() {
                        continue;
                    }
                    let mut f = File::open(&path).map_err(|source| CollectorError::Io {
                        what: path.display().to_string(),
                        source,
                    })?;
                    self.buf
                        .read_file(&mut f)
                        .map_err(|source| CollectorError::Io {
                            what: path.display().to_string(),
                            source,
                        })?;
                    parse_proc_tcp(&self.buf.text(), counts)?;
                }
            }
        }
        Ok((v4, v6))
    }

    fn retransmits(&mut self) -> Result<Retransmits, CollectorError> {
        self.buf.read_path(self.proc_net.join("snmp"))?;
        let (out, retrans) = parse_snmp_tcp(&self.buf.text())?;
        let now = Instant::now();
        let rate = self.last.and_then(|(t, o, r)| {
            let secs = now.duration_since(t).as_secs_f64();
            (secs > 0.0).then(|| {
                let (d_out, d_retrans) = (out.saturating_sub(o), retrans.saturating_sub(r));
                let percent = (d_out > 0).then(|| d_retrans as f64 * 100.0 / d_out as f64);
                (d_retrans as f64 / secs, percent)
            })
        });
        self.last = Some((now, out, retrans));
        Ok((out, retrans, rate))
    }
}

impl Collector for TcpCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        let (v4, v6) = match self.states {
            Some((counts, age)) if age + 1 < self.states_every => {
                self.states = Some((counts, age + 1));
                counts
            }
            _ => {
                let counts = self.states()?;
                self.states = Some((counts, 0));
                counts
            }
        };
        let (out_segs, retrans_segs, rate) = self.retransmits()?;
        snapshot.tcp = Some(Tcp {
            v4,
            v6,
            out_segs,
            retrans_segs,
            retransmits_per_sec: rate.map(|r| r.0),
            retransmit_percent: rate.map(|r| r.1.unwrap_or(0.0)),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_tcp_states() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n\
   2: 0100007F:A1B2 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0\n";
        let mut c = TcpStates::default();
        parse_proc_tcp(text, &mut c).unwrap();
        assert_eq!((c.listen, c.established, c.time_wait), (1, 1, 1));
        assert!(parse_proc_tcp("header\n 0: a b ZZ\n", &mut c).is_err());
    }

    #[test]
    fn snmp_retransmits() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
Tcp: 1 200 120000 -1 1000 900 5 3 12 500000 480000 321 0 17 0\n";
        assert_eq!(parse_snmp_tcp(text).unwrap(), (480_000, 321));
        assert!(parse_snmp_tcp("Ip: 1\n").is_err());
        assert!(parse_snmp_tcp("Tcp: OutSegs RetransSegs\nTcp: x 1\n").is_err());
    }

    fn reply(kind: u16, payload: &[u8]) -> Vec<u8> {
        reply_to(7, kind, payload)
    }

    fn reply_to(seq: u32, kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = 16 + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 2]);
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn diag_replies_are_counted_until_done() {
        let sock = |state: u8| {
            let mut p = vec![0u8; 72];
            p[0] = 2;
            p[1] = state;
            reply(nl::SOCK_DIAG_BY_FAMILY, &p)
        };
        let mut buf = [sock(1), sock(1), sock(10), sock(12), sock(6)].concat();
        let mut c = TcpStates::default();
        assert_eq!(parse_diag_replies(&buf, 7, &mut c), Ok(DumpProgress::More));
        assert_eq!(
            (c.established, c.listen, c.syn_recv, c.time_wait),
            (2, 1, 1, 1)
        );
        buf.extend(reply(nl::NLMSG_DONE, &[0; 4]));
        let mut c = TcpStates::default();
        assert_eq!(parse_diag_replies(&buf, 7, &mut c), Ok(DumpProgress::Done));
        let err = reply(nl::NLMSG_ERROR, &(-13i32).to_ne_bytes());
        assert!(parse_diag_replies(&err, 7, &mut c)
            .unwrap_err()
            .contains("denied"));
        // a reply to an earlier request is not counted
        let mut p = vec![0u8; 72];
        p[1] = 1;
        let stale = [
            reply_to(6, nl::SOCK_DIAG_BY_FAMILY, &p),
            reply(nl::NLMSG_DONE, &[0; 4]),
        ]
        .concat();
        let mut c = TcpStates::default();
        assert_eq!(
            parse_diag_replies(&stale, 7, &mut c),
            Ok(DumpProgress::Done)
        );
        assert_eq!(c.established, 0);
        let mut truncated = sock(1);
        truncated.truncate(40);
        assert!(parse_diag_replies(&truncated, 7, &mut c).is_err());
    }

    #[test]
    fn request_layout() {
        let r = diag_request(10, 7);
        assert_eq!(u32::from_ne_bytes([r[0], r[1], r[2], r[3]]), 72);
        assert_eq!((r[16], r[17]), (10, 6));
        assert_eq!(u32::from_ne_bytes([r[20], r[21], r[22], r[23]]), 0x1ffe);
    }
}
