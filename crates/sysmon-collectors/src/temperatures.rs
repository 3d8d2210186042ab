//! Temperature sensors from `/sys/class/hwmon`: each `hwmon<N>` directory is a
//! chip (`name`), each `temp<M>_input` a sensor in millidegrees Celsius with an
//! optional `temp<M>_label` and `temp<M>_crit`.
//!
//! Read directly rather than through sysinfo's `Components`, which keeps every
//! sensor's state in owned strings and re-lists the tree itself; this reads a
//! few small files into one reused buffer. A host without sensors (most
//! virtual machines) has no `hwmon` entries: `temperatures` is then left empty,
//! which is not an error. A sensor that cannot be read (some report `EIO` while
//! asleep) is skipped.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sysmon_core::{Collector, CollectorError, Snapshot, Temperature};

use crate::util::ReadBuf;

/// Most sensors reported per snapshot.
pub const MAX_SENSORS: usize = 64;

/// Options of the `temperatures` collector (`[collectors.temperatures]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemperatureOptions {
    /// The hwmon class directory. Default `/sys/class/hwmon`.
    pub path: PathBuf,
}

impl Default for TemperatureOptions {
    fn default() -> Self {
        TemperatureOptions {
            path: PathBuf::from("/sys/class/hwmon"),
        }
    }
}

/// Parses a hwmon millidegree value (`"45000\n"`) into degrees Celsius.
pub fn parse_millidegrees(text: &str) -> Option<f64> {
    text.trim()
        .parse::<i64>()
        .ok()
        .map(|m| m as f64 / 1000.0)
        .filter(|c| (-273.15..=1000.0).contains(c))
}

/// The readable label of sensor `index` of `chip`: `"<chip> <label>"`, or
/// `"<chip> temp<index>"` without a label file.
pub fn sensor_label(chip: &str, label: Option<&str>, index: &str) -> String {
    match label.map(str::trim).filter(|l| !l.is_empty()) {
        Some(l) => format!("{chip} {l}"),
        None => format!("{chip} temp{index}"),
    }
}

/// Fills `temperatures` (empty where the host has no sensors).
#[derive(Debug)]
pub struct TemperatureCollector {
    root: PathBuf,
    buf: ReadBuf,
}

impl TemperatureCollector {
    /// The registered name.
    pub const NAME: &'static str = "temperatures";

    /// A collector with `options`.
    pub fn new(options: TemperatureOptions) -> Self {
        TemperatureCollector {
            root: options.path,
            buf: ReadBuf::with_capacity(64),
        }
    }

    fn read_trimmed(&mut self, path: &Path) -> Option<String> {
        self.buf.read_path(path).ok()?;
        Some(self.buf.text().trim().to_string())
    }

    fn chip(&mut self, dir: &Path, out: &mut Vec<Temperature>) {
        let chip = self.read_trimmed(&dir.join("name")).unwrap_or_else(|| {
            dir.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        });
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut inputs: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let index = name.strip_prefix("temp")?.strip_suffix("_input")?;
                index
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| index.to_string())
            })
            .collect();
        inputs.sort_by_key(|i| i.parse::<u32>().unwrap_or(u32::MAX));
        for index in inputs {
            if out.len() >= MAX_SENSORS {
                return;
            }
            let Some(celsius) = self
                .read_trimmed(&dir.join(format!("temp{index}_input")))
                .and_then(|t| parse_millidegrees(&t))
            else {
                continue;
            };
            let label = self.read_trimmed(&dir.join(format!("temp{index}_label")));
            let critical_celsius = self
                .read_trimmed(&dir.join(format!("temp{index}_crit")))
                .and_then(|t| parse_millidegrees(&t));
            out.push(Temperature {
                label: sensor_label(&chip, label.as_deref(), &index),
                celsius,
                critical_celsius,
            });
        }
    }
}

impl Collector for TemperatureCollector {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                snapshot.temperatures = out;
                return Ok(());
            }
            Err(source) => {
                return Err(CollectorError::Io {
                    what: self.root.display().to_string(),
                    source,
                })
            }
        };
        let mut chips: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        chips.sort();
        for dir in chips {
            self.chip(&dir, &mut out);
        }
        snapshot.temperatures = out;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millidegrees_and_labels() {
        assert_eq!(parse_millidegrees("45000\n"), Some(45.0));
        assert_eq!(parse_millidegrees("-5500"), Some(-5.5));
        assert_eq!(parse_millidegrees("x"), None);
        assert_eq!(parse_millidegrees("9999999"), None);
        assert_eq!(
            sensor_label("coretemp", Some("Core 0\n"), "2"),
            "coretemp Core 0"
        );
        assert_eq!(sensor_label("nvme", None, "1"), "nvme temp1");
    }

    #[test]
    fn absent_tree_is_no_sensors() {
        let mut c = TemperatureCollector::new(TemperatureOptions {
            path: "/nonexistent/hwmon".into(),
        });
        let mut s = Snapshot::default();
        c.collect(&mut s).unwrap();
        assert!(s.temperatures.is_empty());
    }
}
