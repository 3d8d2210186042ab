//! One AFL harness for every target: the target's name comes from the
//! environment (`SYSMON_FUZZ_TARGET`, set by `scripts/fuzz.sh`), the
//! properties from `sysmon_core::codec::fuzzing`.

fn main() {
    let target = std::env::var("SYSMON_FUZZ_TARGET").unwrap_or_default();
    if !sysmon_core::codec::fuzzing::TARGETS.contains(&target.as_str()) {
        eprintln!(
            "set SYSMON_FUZZ_TARGET to one of {:?}",
            sysmon_core::codec::fuzzing::TARGETS
        );
        std::process::exit(2);
    }
    afl::fuzz!(|data: &[u8]| {
        sysmon_core::codec::fuzzing::run(&target, data);
    });
}
