//! What the API can chart: [`Metric`]s (core's one vocabulary, any spelling:
//! `cpu` or `cpu_usage`; see `docs/metrics.md`), time [`Range`]s and fleet
//! aggregations ([`FleetAgg`]), each parsed from query strings with errors
//! that name the allowed values.

use serde::Serialize;

pub use sysmon_core::metric::{FleetAgg, Metric, Usage};

/// A time range ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Range {
    /// The last 5 minutes.
    #[serde(rename = "5m")]
    M5,
    /// The last 15 minutes.
    #[serde(rename = "15m")]
    M15,
    /// The last hour.
    #[serde(rename = "1h")]
    H1,
    /// The last 6 hours.
    #[serde(rename = "6h")]
    H6,
    /// The last 24 hours.
    #[serde(rename = "24h")]
    H24,
    /// The last 7 days.
    #[serde(rename = "7d")]
    D7,
}

impl Range {
    /// Every range, shortest first.
    pub const ALL: [Range; 6] = [
        Range::M5,
        Range::M15,
        Range::H1,
        Range::H6,
        Range::H24,
        Range::D7,
    ];

    /// The API name (`5m` ... `7d`).
    pub fn name(self) -> &'static str {
        match self {
            Range::M5 => "5m",
            Range::M15 => "15m",
            Range::H1 => "1h",
            Range::H6 => "6h",
            Range::H24 => "24h",
            Range::D7 => "7d",
        }
    }

    /// Its length in seconds.
    pub fn secs(self) -> f64 {
        match self {
            Range::M5 => 300.0,
            Range::M15 => 900.0,
            Range::H1 => 3600.0,
            Range::H6 => 6.0 * 3600.0,
            Range::H24 => 86_400.0,
            Range::D7 => 7.0 * 86_400.0,
        }
    }

    /// Parses an API name; the error lists the allowed names.
    pub fn parse(s: &str) -> Result<Range, String> {
        Range::ALL
            .iter()
            .copied()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown range {:?}; allowed: {}",
                    truncate(s),
                    Range::names().join(", ")
                )
            })
    }

    /// Every API name.
    pub fn names() -> Vec<&'static str> {
        Range::ALL.iter().map(|r| r.name()).collect()
    }
}

/// Cuts user input echoed in an error message to a sane length.
pub(crate) fn truncate(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(64).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_errors_list_allowed_values() {
        for r in Range::ALL {
            assert_eq!(Range::parse(r.name()), Ok(r));
        }
        let e = Range::parse("2h").unwrap_err();
        assert!(e.contains("5m, 15m, 1h, 6h, 24h, 7d"), "{e}");
    }

    #[test]
    fn values_come_from_rates_not_counters() {
        let mut s = sysmon_core::synth::SyntheticMachine::new("m", 1).next_snapshot(1e9, 3);
        s.disk_io.read = 1 << 40;
        let r = Metric::DiskRead.value(&s).unwrap();
        assert!(r < 1e8, "{r}");
        s.disk_rate = None;
        assert_eq!(Metric::DiskRead.value(&s), None);
        assert!(Metric::Swap.value(&s).unwrap() > 0.0);
    }

    /// The quoted names after `key` in `text` (`metric: 'cpu'`, `spark: 'cpu'`).
    fn quoted_after<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
        text.match_indices(key)
            .filter_map(|(i, _)| {
                let rest = text[i + key.len()..].strip_prefix('\'')?;
                rest.split('\'').next()
            })
            .collect()
    }

    /// The web UI names metrics in two places: the machine page's list of
    /// charts and the `metric:`/`spark:` parameters of its API calls. Each name
    /// must be a charted metric's short name (what the API answers with), and
    /// the machine page must chart every charted metric.
    #[test]
    fn web_ui_charts_exactly_the_charted_metrics() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/src");
        let machine = std::fs::read_to_string(dir.join("views/machine.js")).unwrap();
        let start = machine
            .find("const metrics = [")
            .expect("machine.js lists its metrics");
        let list = &machine[start..];
        let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
        let mut listed: Vec<&str> = list
            .split(',')
            .map(|x| x.trim().trim_matches('\''))
            .collect();
        listed.sort_unstable();
        let mut charted = Metric::names();
        charted.sort_unstable();
        assert_eq!(
            listed, charted,
            "web/src/views/machine.js vs Metric::CHARTS"
        );
        let mut used = 0;
        for file in [
            "views/overview.js",
            "views/machine.js",
            "views/alerts.js",
            "api.js",
            "app.js",
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            for key in ["metric: ", "spark: "] {
                for name in quoted_after(&text, key) {
                    let m: Metric = name.parse().unwrap();
                    assert!(m.usable_in(Usage::Chart), "{file}: {name}");
                    assert_eq!(m.short_name(), name, "{file}: {name}");
                    used += 1;
                }
            }
        }
        assert!(used >= 3, "the overview's API calls name metrics");
    }
}
