//! The [`Collector`] plugin trait and the [`CollectorRegistry`] that builds
//! collectors by name from the `[collectors.<name>]` tables of the config file.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::snapshot::Snapshot;

/// A source of metrics: fills its part of a [`Snapshot`] once per interval.
///
/// `collect` is called from a blocking thread (never on the async runtime), so
/// it may read `/proc` or call into sysinfo directly. A collector that fails
/// returns an error: the agent records it in the snapshot's `collector_errors`
/// and the rest of the snapshot goes on. A collector that panics is treated the
/// same way, so one broken plugin never kills the agent or loses a sample.
pub trait Collector: Send {
    /// The collector's registered name, e.g. `cpu`.
    fn name(&self) -> &str;

    /// Writes this collector's fields into `snapshot`.
    fn collect(&mut self, snapshot: &mut Snapshot) -> Result<(), CollectorError>;
}

/// Errors of collectors and of building them.
#[derive(Debug, Error)]
pub enum CollectorError {
    /// Collecting failed this time; the next interval tries again.
    #[error("{0}")]
    Failed(String),
    /// Collecting failed this time with a typed error of the collector's own
    /// (e.g. a parse error of a `/proc` file), kept as it is; the next
    /// interval tries again.
    #[error(transparent)]
    Source(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Reading a source failed.
    #[error("reading {what}: {source}")]
    Io {
        /// What was being read, e.g. `/proc/diskstats`.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A `[collectors.<name>]` table is invalid.
    #[error("invalid configuration for collector `{name}`: {message}")]
    Config {
        /// The collector's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The config names a collector nobody registered.
    #[error("unknown collector `{name}` in the configuration (known collectors: {known})")]
    Unknown {
        /// The unknown name.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
}

/// Builds one collector from its configuration table (without the `enabled` key).
pub type CollectorFactory =
    Box<dyn Fn(&toml::Table) -> Result<Box<dyn Collector>, CollectorError> + Send + Sync>;

struct Registration {
    enabled_by_default: bool,
    description: String,
    factory: CollectorFactory,
}

/// Collectors registered by name, built and enabled from configuration.
///
/// ```toml
/// [collectors.processes]
/// top_n = 10
///
/// [collectors.filesystems]
/// enabled = false
/// ```
#[derive(Default)]
pub struct CollectorRegistry {
    entries: BTreeMap<String, Registration>,
}

impl CollectorRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a collector under `name`. A later registration with the same
    /// name replaces the earlier one (so a program can override a built-in).
    pub fn register(
        &mut self,
        name: impl Into<String>,
        description: impl Into<String>,
        enabled_by_default: bool,
        factory: CollectorFactory,
    ) -> &mut Self {
        self.entries.insert(
            name.into(),
            Registration {
                enabled_by_default,
                description: description.into(),
                factory,
            },
        );
        self
    }

    /// The registered names with their descriptions and default state.
    pub fn list(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        self.entries
            .iter()
            .map(|(n, r)| (n.as_str(), r.description.as_str(), r.enabled_by_default))
    }

    /// Builds every enabled collector, in name order.
    ///
    /// `config` maps collector names to their tables; a table may hold
    /// `enabled = true|false` and the collector's own options. A name that is not
    /// registered is an error, never silently ignored.
    pub fn build(
        &self,
        config: &BTreeMap<String, toml::Table>,
    ) -> Result<Vec<Box<dyn Collector>>, CollectorError> {
        for name in config.keys() {
            if !self.entries.contains_key(name) {
                return Err(CollectorError::Unknown {
                    name: name.clone(),
                    known: self.entries.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        let empty = toml::Table::new();
        let mut out = Vec::new();
        for (name, reg) in &self.entries {
            let mut table = config.get(name).unwrap_or(&empty).clone();
            let enabled = match table.remove("enabled") {
                None => reg.enabled_by_default,
                Some(toml::Value::Boolean(b)) => b,
                Some(other) => {
                    return Err(CollectorError::Config {
                        name: name.clone(),
                        message: format!("`enabled` must be true or false, not {other}"),
                    })
                }
            };
            if enabled {
                out.push((reg.factory)(&table)?);
            }
        }
        Ok(out)
    }
}

/// Deserialises a collector's options table into its typed config, with errors
/// that name the collector.
pub fn parse_options<T: DeserializeOwned>(
    name: &str,
    table: &toml::Table,
) -> Result<T, CollectorError> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| CollectorError::Config {
            name: name.to_string(),
            message: e.message().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(f64);
    impl Collector for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        fn collect(&mut self, s: &mut Snapshot) -> Result<(), CollectorError> {
            s.cpu_usage = self.0;
            Ok(())
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FixedOptions {
        #[serde(default)]
        value: f64,
    }

    fn registry() -> CollectorRegistry {
        let mut r = CollectorRegistry::new();
        r.register(
            "fixed",
            "a constant",
            true,
            Box::new(|t| {
                let o: FixedOptions = parse_options("fixed", t)?;
                Ok(Box::new(Fixed(o.value)))
            }),
        );
        r.register(
            "off",
            "disabled",
            false,
            Box::new(|_| Ok(Box::new(Fixed(1.0)))),
        );
        r
    }

    fn table(s: &str) -> BTreeMap<String, toml::Table> {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn builds_enabled_collectors_with_options() {
        let built = registry().build(&table("[fixed]\nvalue = 42.0")).unwrap();
        assert_eq!(built.len(), 1);
        let mut s = Snapshot::default();
        let mut c = built.into_iter().next().unwrap();
        c.collect(&mut s).unwrap();
        assert_eq!(s.cpu_usage, 42.0);
        let both = registry().build(&table("[off]\nenabled = true")).unwrap();
        assert_eq!(both.len(), 2);
        let none = registry()
            .build(&table("[fixed]\nenabled = false"))
            .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn unknown_names_and_bad_options_are_errors() {
        let err = registry().build(&table("[gpu]")).err().unwrap();
        assert!(err.to_string().contains("unknown collector `gpu`"), "{err}");
        assert!(err.to_string().contains("fixed, off"), "{err}");
        let err = registry()
            .build(&table("[fixed]\nvalu = 1.0"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("collector `fixed`"), "{err}");
        let err = registry()
            .build(&table("[fixed]\nenabled = \"yes\""))
            .err()
            .unwrap();
        assert!(err.to_string().contains("true or false"), "{err}");
    }
}
