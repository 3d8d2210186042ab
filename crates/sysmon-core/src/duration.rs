//! Human-friendly durations in config files and flags: `"500ms"`, `"1s"`, `"15m"`,
//! `"24h"`, `"30d"` (or a bare number of seconds in TOML).

use std::time::Duration;

use serde::{de, Deserializer, Serializer};

/// Parses `"1s"`, `"15m"`, `"24h"`, `"7d"`, `"1h 30m"` or a bare number of seconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return if secs.is_finite() && secs >= 0.0 {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(format!("`{s}` is not a non-negative number of seconds"))
        };
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write it like 500ms, 1s, 15m, 24h or 30d")
    })
}

/// Formats a duration the way [`parse`] reads it (`1s`, `15m`, `1day`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serde `with` module for `Duration` fields.
pub mod serde_duration {
    use super::*;

    /// Serialises as a humantime string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// Deserialises from a string or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"1s\", \"15m\" or \"24h\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse("2.5").unwrap(), Duration::from_millis(2500));
        assert!(parse("soon").unwrap_err().contains("15m"));
        assert!(parse("-1").is_err());
        assert_eq!(
            parse(&format(Duration::from_secs(3600))).unwrap(),
            Duration::from_secs(3600)
        );
    }
}

/// Serde `with` module for `Option<Duration>` fields (absent means `None`).
pub mod serde_opt_duration {
    use super::*;

    /// Serialises `Some` as a humantime string and `None` as nothing.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&format(*d)),
            None => s.serialize_none(),
        }
    }

    /// Deserialises like [`serde_duration`](super::serde_duration).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::serde_duration::deserialize(d).map(Some)
    }
}
