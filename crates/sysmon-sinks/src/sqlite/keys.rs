//! Packed integer keys.
//!
//! SQLite's fastest table is a rowid table keyed by its `INTEGER PRIMARY KEY`:
//! interior pages hold 8-byte integers, not whole rows. The logical key of a
//! sample, `(machine, ts_ms)`, is packed into that integer without loss:
//!
//! * `samples.key = machine << 42 | ts_ms`: machine-major, so one machine's
//!   history is contiguous and a chart reads one key range in time order;
//! * `processes.key = ts_ms << 21 | machine`: time-major, so a batch's process
//!   lists are appended at the end of the table and retention deletes one range.
//!
//! 42 bits of milliseconds reach the year 2109 (snapshots are validated to lie
//! in 2000..2100); 21 bits of machine number allow 2,097,151 machines alive at
//! once (numbers of forgotten machines are reused).

use crate::error::SinksError;

/// Bits of the timestamp in a key.
pub(crate) const TS_BITS: u32 = 42;
/// Mask of the timestamp part of a sample key.
pub(crate) const TS_MASK: i64 = (1 << TS_BITS) - 1;
/// Bits of the machine number in a process key.
pub(crate) const MACHINE_BITS: u32 = 21;
/// The largest machine number.
pub(crate) const MAX_MACHINE: i64 = (1 << MACHINE_BITS) - 1;

/// Checks that `ts_ms` fits a key.
pub(crate) fn check_ts(ts_ms: i64, timestamp: f64) -> Result<(), SinksError> {
    if (0..=TS_MASK).contains(&ts_ms) {
        Ok(())
    } else {
        Err(SinksError::InvalidInput(format!(
            "timestamp {timestamp} is outside the storable range 1970..2109"
        )))
    }
}

/// Checks that a machine number fits a key.
pub(crate) fn check_machine(machine: i64) -> Result<(), SinksError> {
    if (1..=MAX_MACHINE).contains(&machine) {
        Ok(())
    } else {
        Err(SinksError::InvalidInput(format!(
            "machine number {machine} exceeds the {MAX_MACHINE} machines one database can hold"
        )))
    }
}

/// `samples.key` of `(machine, ts_ms)`.
pub(crate) fn sample_key(machine: i64, ts_ms: i64) -> i64 {
    (machine << TS_BITS) | (ts_ms & TS_MASK)
}

/// `processes.key` of `(machine, ts_ms)`.
pub(crate) fn process_key(machine: i64, ts_ms: i64) -> i64 {
    ((ts_ms & TS_MASK) << MACHINE_BITS) | (machine & MAX_MACHINE)
}

/// The sample keys of `machine` with `lo <= ts_ms < hi` (clamped to the
/// storable range) as a half-open key range.
pub(crate) fn sample_range(machine: i64, lo: i64, hi: i64) -> (i64, i64) {
    let clamp = |t: i64| t.clamp(0, TS_MASK + 1);
    let base = machine << TS_BITS;
    (base + clamp(lo), base + clamp(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_pack_and_order_as_documented() {
        let t = 1_764_086_400_123;
        let k = sample_key(5, t);
        assert_eq!(k >> TS_BITS, 5);
        assert_eq!(k & TS_MASK, t);
        assert!(sample_key(5, t) < sample_key(5, t + 1));
        assert!(sample_key(5, TS_MASK) < sample_key(6, 0));
        let p = process_key(MAX_MACHINE, TS_MASK);
        assert!(p > 0, "no overflow into the sign bit");
        assert_eq!(p >> MACHINE_BITS, TS_MASK);
        assert!(process_key(9, t) < process_key(1, t + 1));
        // year 2100, the validator's limit, fits
        assert!(check_ts(4_102_444_800_000, 4_102_444_800.0).is_ok());
        assert!(check_ts(-1, -0.001).is_err());
        assert!(check_ts(TS_MASK + 1, 0.0).is_err());
        assert!(check_machine(MAX_MACHINE).is_ok());
        assert!(check_machine(MAX_MACHINE + 1).is_err());
        assert_eq!(sample_range(2, -5, i64::MAX), (2 << 42, 3 << 42));
    }
}
