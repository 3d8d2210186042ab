//! Stable machine identity: never random, stable across restarts.
//!
//! Order: an explicit id (`--machine-id`, `SYSMON_MACHINE_ID`, config); else
//! `<hostname>-<8 hex digits>` where the digits are a one-way hash of
//! `/etc/machine-id` (unique per OS install, and not disclosed as is); else the
//! host name alone.

use crate::error::CoreError;

/// The host name from `/proc/sys/kernel/hostname`, `/etc/hostname`,
/// `$HOSTNAME` or (Windows) `%COMPUTERNAME%`.
pub fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .chain(std::env::var("COMPUTERNAME").ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
}

/// 64-bit FNV-1a: small, dependency-free, stable across versions and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Derives the id from its sources; pure, so it is unit-tested.
pub fn derive_machine_id(
    explicit: Option<&str>,
    machine_id_file: Option<&str>,
    hostname: Option<&str>,
) -> Option<String> {
    if let Some(id) = explicit.map(str::trim).filter(|s| !s.is_empty()) {
        return Some(id.to_string());
    }
    let host = hostname
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|h| h.split('.').next().unwrap_or(h).to_string());
    let mid = machine_id_file.map(str::trim).filter(|s| !s.is_empty());
    match (host, mid) {
        (Some(h), Some(m)) => Some(format!(
            "{h}-{:08x}",
            fnv1a(format!("sysmon:{m}").as_bytes()) >> 32
        )),
        (None, Some(m)) => Some(format!(
            "host-{:08x}",
            fnv1a(format!("sysmon:{m}").as_bytes()) >> 32
        )),
        (Some(h), None) => Some(h),
        (None, None) => None,
    }
}

/// Resolves this machine's id from `explicit`, `/etc/machine-id` and the host name.
pub fn resolve_machine_id(explicit: Option<&str>) -> Result<String, CoreError> {
    let mid = std::fs::read_to_string("/etc/machine-id")
        .or_else(|_| std::fs::read_to_string("/var/lib/dbus/machine-id"))
        .ok();
    derive_machine_id(explicit, mid.as_deref(), hostname().as_deref()).ok_or_else(|| {
        CoreError::Config(
            "cannot derive a machine id: no /etc/machine-id and no host name; pass --machine-id"
                .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_wins_then_hash_then_hostname() {
        assert_eq!(
            derive_machine_id(Some(" db-1 "), Some("abc"), Some("h")).unwrap(),
            "db-1"
        );
        let a = derive_machine_id(None, Some("0123456789abcdef\n"), Some("web.lan")).unwrap();
        assert!(a.starts_with("web-") && a.len() == "web-".len() + 8, "{a}");
        assert_eq!(
            a,
            derive_machine_id(None, Some("0123456789abcdef"), Some("web")).unwrap(),
            "stable"
        );
        assert_ne!(
            a,
            derive_machine_id(None, Some("fedcba9876543210"), Some("web")).unwrap(),
            "distinct installs with one host name stay distinct"
        );
        assert!(
            !a.contains("0123456789abcdef"),
            "machine-id is not disclosed"
        );
        assert_eq!(derive_machine_id(None, None, Some("solo")).unwrap(), "solo");
        assert!(derive_machine_id(None, None, None).is_none());
        assert!(derive_machine_id(Some(""), None, None).is_none());
    }

    #[test]
    fn resolves_on_this_machine() {
        let id = resolve_machine_id(None).unwrap();
        assert!(!id.is_empty());
        assert_eq!(id, resolve_machine_id(None).unwrap());
    }
}
