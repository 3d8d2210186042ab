//! Small helpers shared by the collectors: buffer-reusing file reads, name
//! patterns and per-device counter deltas.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use sysmon_core::CollectorError;

/// Reads `path` into `buf`, replacing its contents but keeping its allocation,
/// so a collector reading the same file every interval allocates only once.
pub(crate) fn read_into(path: impl AsRef<Path>, buf: &mut String) -> Result<(), CollectorError> {
    let path = path.as_ref();
    buf.clear();
    File::open(path)
        .and_then(|mut f| f.read_to_string(buf))
        .map(|_| ())
        .map_err(|source| CollectorError::Io {
            what: path.display().to_string(),
            source,
        })
}

/// True when `name` matches `pattern`: an exact name, or a prefix followed by
/// `*` (`veth*` matches `veth12ab`; `*` alone matches everything).
pub(crate) fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// True when `name` matches any of `patterns` (see [`matches_pattern`]).
pub(crate) fn matches_any(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| matches_pattern(p, name))
}

/// Checks that every pattern is usable: non-empty, `*` only at the end.
pub(crate) fn check_patterns(
    collector: &str,
    option: &str,
    patterns: &[String],
) -> Result<(), CollectorError> {
    for p in patterns {
        let body = p.strip_suffix('*').unwrap_or(p);
        if p.is_empty() || body.contains('*') {
            return Err(CollectorError::Config {
                name: collector.to_string(),
                message: format!(
                    "`{option}`: pattern {p:?} is not a name or a prefix followed by `*`"
                ),
            });
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Entry {
    values: [u64; 2],
    seen: u64,
}

/// The previous value of a pair of cumulative counters per device, so a rate
/// is computed from the devices present in both samples: a device that appears
/// or disappears (a container's veth, a hot-plugged disk) never makes a rate
/// jump or go negative.
#[derive(Debug, Default)]
pub(crate) struct PairCounters {
    entries: HashMap<String, Entry>,
    generation: u64,
}

impl PairCounters {
    /// Starts a new sample.
    pub(crate) fn begin(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Records `values` for `name` in this sample and returns the increase since
    /// the previous sample, or `None` for a device not seen before. A counter
    /// that went down (device re-created, counter reset) counts as no increase.
    pub(crate) fn update(&mut self, name: &str, values: [u64; 2]) -> Option<[u64; 2]> {
        let generation = self.generation;
        match self.entries.get_mut(name) {
            Some(e) => {
                let delta = [
                    values[0].saturating_sub(e.values[0]),
                    values[1].saturating_sub(e.values[1]),
                ];
                e.values = values;
                e.seen = generation;
                Some(delta)
            }
            None => {
                self.entries.insert(
                    name.to_string(),
                    Entry {
                        values,
                        seen: generation,
                    },
                );
                None
            }
        }
    }

    /// Ends the sample: forgets devices that were not in it.
    pub(crate) fn end(&mut self) {
        let generation = self.generation;
        self.entries.retain(|_, e| e.seen == generation);
    }

    /// How many devices are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_names_and_prefixes() {
        assert!(matches_pattern("lo", "lo"));
        assert!(!matches_pattern("lo", "lo0"));
        assert!(matches_pattern("veth*", "veth12ab"));
        assert!(!matches_pattern("veth*", "eth0"));
        assert!(matches_pattern("*", "anything"));
        let pats = vec!["lo".to_string(), "docker*".to_string()];
        assert!(matches_any(&pats, "docker0"));
        assert!(!matches_any(&pats, "eth0"));
    }

    #[test]
    fn bad_patterns_are_config_errors() {
        assert!(check_patterns(
            "network",
            "exclude_interfaces",
            &["lo".into(), "veth*".into()]
        )
        .is_ok());
        let err = check_patterns("network", "exclude_interfaces", &["*eth".into()]).unwrap_err();
        assert!(err.to_string().contains("collector `network`"), "{err}");
        assert!(check_patterns("network", "exclude_interfaces", &[String::new()]).is_err());
    }

    #[test]
    fn deltas_only_for_devices_in_both_samples() {
        let mut c = PairCounters::default();
        c.begin();
        assert_eq!(c.update("eth0", [100, 10]), None);
        assert_eq!(c.update("veth1", [5, 5]), None);
        c.end();
        c.begin();
        assert_eq!(c.update("eth0", [150, 12]), Some([50, 2]));
        // veth1 gone, a new device appears
        assert_eq!(c.update("eth1", [1_000_000, 0]), None);
        c.end();
        assert_eq!(c.len(), 2);
        c.begin();
        // eth0 re-created: counters reset, no negative delta
        assert_eq!(c.update("eth0", [3, 1]), Some([0, 0]));
        c.end();
        assert_eq!(c.len(), 1);
    }
}
