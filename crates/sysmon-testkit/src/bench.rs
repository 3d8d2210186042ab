//! Sizes for the workspace benches.
//!
//! `cargo test --benches` (the test script's smoke) runs every bench binary
//! once in criterion's test mode, on the unoptimised test profile. A bench that
//! fills millions of rows first would spend most of CI's budget there, so
//! fixtures are sized by [`size`]: the full figure under `cargo bench`, the
//! smoke figure otherwise. The smoke still runs every query once against real
//! data; only `cargo bench` produces figures.

/// Whether this bench binary runs under `cargo bench` (criterion passes
/// `--bench`), rather than once in test mode.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `full` under `cargo bench`, `smoke` in test mode.
pub fn size(full: usize, smoke: usize) -> usize {
    if measuring() {
        full
    } else {
        smoke
    }
}
