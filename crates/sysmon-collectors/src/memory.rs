//! Memory and swap, through sysinfo (`/proc/meminfo` on Linux).

use serde::Deserialize;
use sysinfo::{MemoryRefreshKind, System};
use sysmon_core::{Collector, CollectorError, Memory, Snapshot};

use crate::error::ParseError;

const PROC_MEMINFO: &str = "/proc/meminfo";

/// Options of the `memory` collector (`[collectors.memory]`): none yet; unknown
/// keys are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryOptions {}

/// Percent of memory in use the way psutil's `virtual_memory().percent` computes
/// it: `(total - available) / total * 100`, clamped to 0..=100.
pub fn memory_percent(total_bytes: u64, available_bytes: u64) -> f64 {
    if total_bytes == 0 {
        return 0.0;
    }
    let used = total_bytes.saturating_sub(available_bytes);
    (used as f64 * 100.0 / total_bytes as f64).clamp(0.0, 100.0)
}

/// Total memory in bytes from `/proc/meminfo` text (its `MemTotal:` line, in KiB).
pub fn parse_mem_total(text: &str) -> Result<u64, ParseError> {
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("MemTotal:") {
            let value = rest.trim().trim_end_matches("kB").trim();
            return value
                .parse::<u64>()
                .map(|kib| kib.saturating_mul(1024))
                .map_err(|_| {
                    ParseError::malformed(
                        PROC_MEMINFO,
                        i + 1,
                        format!("MemTotal {value:?} is not a number"),
                    )
                });
        }
    }
    Err(ParseError::Missing {
        file: PROC_MEMINFO,
        what: "MemTotal line",
    })
}

/// Fills `memory_usage` (percent, psutil-compatible) and `memory` (bytes,
/// including swap). Refreshes only memory in its own `sysinfo::System`.
pub struct MemoryCollector {
    system: System,
}

impl MemoryCollector {
    /// The registered name.
    pub const NAME: &'static str = "memory";

    /// A collector with `options`.
    pub fn new(_options: MemoryOptions) -> Self {
        MemoryCollector {
            system: System::new(),
        }
    }
}

impl Default for MemoryCollector {
    fn default() -> Self {
        Self::new(MemoryOptions::default())
    }
}

impl Collector for MemoryCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
        let total = self.system.total_memory();
        if total == 0 {
            // sysinfo reports an unreadable /proc/meminfo as zeros: say so.
            return Err(CollectorError::Failed(
                "total memory reads as 0 (is /proc/meminfo readable?)".into(),
            ));
        }
        let available = self.system.available_memory().min(total);
        let swap_total = self.system.total_swap();
        let swap_free = self.system.free_swap().min(swap_total);
        snapshot.memory_usage = memory_percent(total, available);
        snapshot.memory = Some(Memory {
            total_bytes: total,
            used_bytes: total - available,
            available_bytes: available,
            swap_total_bytes: swap_total,
            swap_used_bytes: swap_total - swap_free,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_like_psutil() {
        assert!((memory_percent(1000, 250) - 75.0).abs() < 1e-12);
        assert_eq!(memory_percent(0, 0), 0.0);
        assert_eq!(memory_percent(100, 200), 0.0);
        assert_eq!(memory_percent(100, 0), 100.0);
    }

    #[test]
    fn parses_mem_total() {
        let text = "MemTotal:       24684092 kB\nMemFree:        22655256 kB\n";
        assert_eq!(parse_mem_total(text).unwrap(), 24_684_092 * 1024);
        assert!(parse_mem_total("MemFree: 1 kB\n").is_err());
        let err = parse_mem_total("MemTotal: lots kB\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
