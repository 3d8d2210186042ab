//! Network I/O from `/proc/net/dev`: cumulative bytes since boot
//! (`network_io`) and bytes per second over the last interval
//! (`network_rate`), loopback excluded by default; receive and transmit errors
//! and drops since boot over the same interfaces (`network_errors`).
//!
//! `/proc/net/dev` holds every interface's counters in one file, where sysinfo
//! reads several sysfs files per interface; it is read into a reused buffer.
//! Like `/sys/class/net`, it shows the agent's network namespace: run the
//! agent in the host's namespace to see the host's interfaces.

use std::path::PathBuf;

use serde::Deserialize;
use sysmon_core::{Collector, CollectorError, NetworkErrors, NetworkIo, NetworkRate, Snapshot};
use tracing::debug;

use crate::error::ParseError;
use crate::util::{check_patterns, matches_any, PairCounters, ReadBuf};

const PROC_NET_DEV: &str = "/proc/net/dev";

/// Cumulative totals, the increase over the last interval with its seconds,
/// and the error counters.
type NetSample = (NetworkIo, Option<(NetworkIo, f64)>, NetworkErrors);

/// Options of the `network` collector (`[collectors.network]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkOptions {
    /// Interfaces not counted, by name or prefix pattern (`"lo"`, `"veth*"`).
    /// Default `["lo"]`: loopback traffic never leaves the machine.
    pub exclude_interfaces: Vec<String>,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            exclude_interfaces: vec!["lo".to_string()],
        }
    }
}

/// One interface's line of `/proc/net/dev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceStat<'a> {
    /// Interface name, e.g. `eth0`.
    pub name: &'a str,
    /// Bytes received since the interface came up.
    pub recv_bytes: u64,
    /// Bytes sent since the interface came up.
    pub sent_bytes: u64,
    /// Receive errors.
    pub recv_errors: u64,
    /// Received packets dropped.
    pub recv_dropped: u64,
    /// Transmit errors.
    pub sent_errors: u64,
    /// Packets dropped on transmit.
    pub sent_dropped: u64,
}

/// Parses `/proc/net/dev` text: the two header lines are skipped, every other
/// line must be `name: 16 counters`.
pub fn parse_net_dev(text: &str) -> impl Iterator<Item = Result<InterfaceStat<'_>, ParseError>> {
    text.lines()
        .enumerate()
        .skip(2)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let n = i + 1;
            let (name, counters) = line.split_once(':').ok_or_else(|| {
                ParseError::malformed(PROC_NET_DEV, n, "no `:` after the interface name")
            })?;
            let name = name.trim();
            let mut values = [0u64; 12];
            let mut count = 0;
            for (slot, field) in values.iter_mut().zip(counters.split_ascii_whitespace()) {
                *slot = field.parse().map_err(|_| {
                    ParseError::malformed(
                        PROC_NET_DEV,
                        n,
                        format!("{name}: counter {field:?} is not a number"),
                    )
                })?;
                count += 1;
            }
            if count < 12 {
                return Err(ParseError::malformed(
                    PROC_NET_DEV,
                    n,
                    format!("{name}: {count} counters, 16 expected"),
                ));
            }
            Ok(InterfaceStat {
                name,
                recv_bytes: values[0],
                sent_bytes: values[8],
                recv_errors: values[2],
                recv_dropped: values[3],
                sent_errors: values[10],
                sent_dropped: values[11],
            })
        })
}

/// Fills `network_io` (cumulative bytes since boot over the counted
/// interfaces) and `network_rate` (bytes per second over the last interval,
/// from the interfaces present in both samples). Primed at construction.
#[derive(Debug)]
pub struct NetworkCollector {
    options: NetworkOptions,
    source: PathBuf,
    buf: ReadBuf,
    counters: PairCounters,
}

impl NetworkCollector {
    /// The registered name.
    pub const NAME: &'static str = "network";

    /// A collector with `options`, primed with a first reading.
    pub fn new(options: NetworkOptions) -> Result<Self, CollectorError> {
        Self::with_source(options, PROC_NET_DEV.into())
    }

    /// A collector reading `net_dev` instead of `/proc/net/dev` (for tests and
    /// for hosts whose `/proc` is mounted elsewhere).
    pub fn with_source(options: NetworkOptions, net_dev: PathBuf) -> Result<Self, CollectorError> {
        check_patterns(
            Self::NAME,
            "exclude_interfaces",
            &options.exclude_interfaces,
        )?;
        let mut c = NetworkCollector {
            options,
            source: net_dev,
            buf: ReadBuf::with_capacity(2048),
            counters: PairCounters::default(),
        };
        if let Err(e) = c.sample() {
            debug!(error = %e, "network collector: priming failed; retrying at the first interval");
        }
        Ok(c)
    }

    fn sample(&mut self) -> Result<NetSample, CollectorError> {
        self.buf.read_path(&self.source)?;
        let text = self.buf.text();
        let excluded = &self.options.exclude_interfaces;
        let mut errors = NetworkErrors::default();
        let interfaces = parse_net_dev(&text).filter_map(|stat| match stat {
            Err(e) => Some(Err(e)),
            Ok(s) if matches_any(excluded, s.name) => None,
            Ok(s) => {
                errors.rx_errors = errors.rx_errors.saturating_add(s.recv_errors);
                errors.rx_dropped = errors.rx_dropped.saturating_add(s.recv_dropped);
                errors.tx_errors = errors.tx_errors.saturating_add(s.sent_errors);
                errors.tx_dropped = errors.tx_dropped.saturating_add(s.sent_dropped);
                Some(Ok((s.name, [s.sent_bytes, s.recv_bytes])))
            }
        });
        let ([sent, recv], rate) = self.counters.sample(interfaces)?;
        let rate = rate.map(|([s, r], secs)| (NetworkIo { sent: s, recv: r }, secs));
        Ok((NetworkIo { sent, recv }, rate, errors))
    }
}

impl Collector for NetworkCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        let (total, rate, errors) = self.sample()?;
        snapshot.network_io = total;
        snapshot.network_errors = Some(errors);
        snapshot.network_rate = rate.map(|(d, secs)| NetworkRate {
            sent: d.sent as f64 / secs,
            recv: d.recv as f64 / secs,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   89589     893    0    0    0     0          0         0    89589     893    0    0    0     0       0          0
  eth0: 388539604   19249    0    0    0     0          0         0  1176111   10894    0    0    0     0       0          0
veth1a2b: 1000 10 3 4 0 0 0 0 2000 20 5 6 0 0 0 0
";

    #[test]
    fn parses_interfaces() {
        let stats: Vec<_> = parse_net_dev(SAMPLE).collect::<Result<_, _>>().unwrap();
        assert_eq!(stats.len(), 3);
        assert_eq!(
            stats[0],
            InterfaceStat {
                name: "lo",
                recv_bytes: 89589,
                sent_bytes: 89589,
                recv_errors: 0,
                recv_dropped: 0,
                sent_errors: 0,
                sent_dropped: 0,
            }
        );
        assert_eq!(stats[1].name, "eth0");
        assert_eq!(stats[1].recv_bytes, 388_539_604);
        assert_eq!(stats[1].sent_bytes, 1_176_111);
        // very old kernels: no space after the colon
        let old = "h1\nh2\neth0:123 1 0 0 0 0 0 0 456 1 0 0 0 0 0 0\n";
        let s = parse_net_dev(old).next().unwrap().unwrap();
        assert_eq!((s.name, s.recv_bytes, s.sent_bytes), ("eth0", 123, 456));
    }

    #[test]
    fn malformed_net_dev_is_an_error() {
        let bad = "h1\nh2\n  eth0 1 2 3\n";
        assert!(parse_net_dev(bad).next().unwrap().is_err());
        let bad = "h1\nh2\n  eth0: 1 2 x 4 5 6 7 8 9 10\n";
        let err = parse_net_dev(bad).next().unwrap().unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(parse_net_dev("h1\nh2\n  eth0: 1 2 3\n")
            .next()
            .unwrap()
            .is_err());
    }

    fn fixture(tag: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("sysmon-netdev-{tag}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn loopback_excluded_by_default_and_patterns_apply() {
        let path = fixture("lo", SAMPLE);
        let mut c = NetworkCollector::with_source(NetworkOptions::default(), path.clone()).unwrap();
        let mut s = Snapshot::default();
        c.collect(&mut s).unwrap();
        assert_eq!(s.network_io.recv, 388_539_604 + 1000);
        assert_eq!(s.network_io.sent, 1_176_111 + 2000);
        assert_eq!(
            s.network_errors,
            Some(NetworkErrors {
                rx_errors: 3,
                rx_dropped: 4,
                tx_errors: 5,
                tx_dropped: 6
            })
        );

        let opts = NetworkOptions {
            exclude_interfaces: vec!["lo".into(), "veth*".into()],
        };
        let mut c = NetworkCollector::with_source(opts, path.clone()).unwrap();
        c.collect(&mut s).unwrap();
        assert_eq!(s.network_io.recv, 388_539_604);

        // loopback traffic grows, eth0 is steady: no rate
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, SAMPLE.replace("89589", "999999999")).unwrap();
        c.collect(&mut s).unwrap();
        assert_eq!(s.network_io.recv, 388_539_604);
        let rate = s.network_rate.unwrap();
        assert_eq!((rate.sent, rate.recv), (0.0, 0.0));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn rate_over_interfaces_present_in_both_samples() {
        let path = fixture("rate", SAMPLE);
        let mut c = NetworkCollector::with_source(NetworkOptions::default(), path.clone()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        // eth0 received 1 MB more; veth1a2b vanished; a new veth appeared with big counters
        let next = SAMPLE
            .replace("388539604", "389539604")
            .replace("veth1a2b: 1000", "veth9zz9: 50000000");
        std::fs::write(&path, next).unwrap();
        let mut s = Snapshot::default();
        c.collect(&mut s).unwrap();
        let rate = s.network_rate.unwrap();
        assert!(
            rate.recv > 1_000_000.0 && rate.recv < 1_000_000.0 / 0.045,
            "{rate:?}"
        );
        assert_eq!(rate.sent, 0.0);
        let _ = std::fs::remove_file(&path);
        assert!(NetworkCollector::with_source(
            NetworkOptions {
                exclude_interfaces: vec!["e*th".into()]
            },
            path
        )
        .is_err());
    }
}
