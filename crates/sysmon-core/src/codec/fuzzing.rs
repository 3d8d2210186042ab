//! The properties the fuzz targets check, shared by the coverage-guided
//! fuzzers (`fuzz/`, run with `scripts/fuzz.sh TARGET SECONDS`) and the smoke
//! test of the normal suite. Each function takes arbitrary bytes and panics
//! only when a property is broken, which the fuzzer reports as a crash:
//!
//! * decoding never panics, and an error's text stays bounded (the
//!   dead-letter `reason` at most [`MAX_REASON_BYTES`], free of control
//!   characters) whatever the input;
//! * what decodes is valid, and survives an encode/decode round trip in both
//!   formats unchanged.

use crate::codec::{binary, decode_json, decode_with, encode, validate, Format};
use crate::error::DecodeError;
use crate::snapshot::Snapshot;
use crate::text::MAX_REASON_BYTES;

/// The names of the targets, as `fuzz/` builds them.
pub const TARGETS: &[&str] = &["decode_json", "decode_binary", "decode_any", "dlq_reason"];

/// Runs target `name` on `data`; `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "decode_json" => decode_json_target(data),
        "decode_binary" => decode_binary_target(data),
        "decode_any" => decode_any_target(data),
        "dlq_reason" => dlq_reason_target(data),
        _ => return false,
    }
    true
}

/// A rejection's texts are bounded and printable.
fn check_error(e: &DecodeError) {
    let reason = e.reason();
    assert!(
        reason.len() <= MAX_REASON_BYTES,
        "reason of {} bytes",
        reason.len()
    );
    let shown = e.to_string();
    assert!(
        shown.len() <= 4 * MAX_REASON_BYTES,
        "error text of {} bytes",
        shown.len()
    );
    assert!(
        !reason.chars().any(char::is_control),
        "control character in {reason:?}"
    );
    assert!(!e.kind().is_empty());
}

/// A decoded snapshot is valid and round-trips through both formats.
fn check_snapshot(s: &Snapshot) {
    if let Err(e) = validate(s) {
        panic!("a decoded snapshot fails validation: {e}");
    }
    for format in [Format::Json, Format::Binary] {
        let bytes = encode(s, format);
        match decode_with(&bytes, Some(format), usize::MAX) {
            Ok(back) => assert!(&back == s, "{format} round trip changed the snapshot"),
            Err(e) => panic!("{format} re-encoding of a decoded snapshot is rejected: {e}"),
        }
    }
}

/// JSON (native or legacy).
pub fn decode_json_target(data: &[u8]) {
    match decode_json(data) {
        Ok(s) => check_snapshot(&s),
        Err(e) => check_error(&e),
    }
}

/// The binary form.
pub fn decode_binary_target(data: &[u8]) {
    let mut bytes = binary::MAGIC.to_vec();
    bytes.extend_from_slice(data);
    for input in [data, &bytes[..]] {
        match decode_with(input, Some(Format::Binary), usize::MAX) {
            Ok(s) => check_snapshot(&s),
            Err(e) => check_error(&e),
        }
    }
}

/// Format detection: the first byte(s) decide, or a header value does.
pub fn decode_any_target(data: &[u8]) {
    match decode_with(data, None, crate::codec::DEFAULT_MAX_MESSAGE_BYTES) {
        Ok(s) => check_snapshot(&s),
        Err(e) => check_error(&e),
    }
    // The first line as a `sysmon-format` header value.
    let header = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let header = String::from_utf8_lossy(header);
    match Format::parse(&header) {
        Ok(f) => assert!(Format::parse(f.as_str()) == Ok(f)),
        Err(e) => check_error(&e.bounded()),
    }
}

/// The dead-letter reason of every kind of rejection, built from input text.
pub fn dlq_reason_target(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    let (a, b) = (text[..mid].to_string(), text[mid..].to_string());
    let errors = [
        DecodeError::Syntax {
            line: 1,
            column: text.len(),
            message: text.clone(),
        },
        DecodeError::Shape(text.clone()),
        DecodeError::Invalid {
            field: a.clone(),
            reason: b.clone(),
        },
        DecodeError::Binary(text.clone()),
        DecodeError::UnknownFormat(text.clone()),
        DecodeError::OverLimit {
            field: a.clone(),
            detail: b.clone(),
        },
        DecodeError::KeyMismatch {
            key: a.clone(),
            machine_id: b.clone(),
        },
        DecodeError::SinkRejected {
            sink: a,
            message: b,
        },
        DecodeError::TooLarge {
            size: data.len(),
            limit: 1,
        },
    ];
    for e in errors {
        check_error(&e.bounded());
    }
    let bounded = crate::text::bounded(&text, 64);
    assert!(
        bounded.len() <= 64,
        "bounded text of {} bytes",
        bounded.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Seeds: the committed corpus of every target.
    fn corpus() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        let mut out = Vec::new();
        for target in TARGETS {
            if let Ok(entries) = std::fs::read_dir(dir.join(target)) {
                for e in entries.flatten() {
                    if let Ok(bytes) = std::fs::read(e.path()) {
                        out.push(bytes);
                    }
                }
            }
        }
        out
    }

    /// The smoke run of the normal suite: every target on the corpus and on
    /// a few thousand byte-level mutations of it (the real fuzzing is
    /// `scripts/fuzz.sh`, coverage-guided, minutes per target).
    #[test]
    fn fuzz_targets_hold_on_the_corpus_and_its_mutations() {
        let seeds = corpus();
        assert!(seeds.len() >= 8, "fuzz/corpus holds the seeds");
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for target in TARGETS {
            for seed in &seeds {
                assert!(run(target, seed));
                for _ in 0..40 {
                    let mut m = seed.clone();
                    for _ in 0..=(rng.next() % 4) {
                        if m.is_empty() {
                            m.push(0);
                        }
                        let i = (rng.next() as usize) % m.len();
                        match rng.next() % 4 {
                            0 => m[i] = rng.next() as u8,
                            1 => {
                                m.remove(i);
                            }
                            2 => {
                                const BYTES: &[u8] = b"{}[]\",:0-e9\\\x1b\xff";
                                m.insert(i, BYTES[(rng.next() as usize) % BYTES.len()]);
                            }
                            _ => m.truncate(i),
                        }
                    }
                    run(target, &m);
                }
            }
        }
        assert!(!run("no_such_target", b""));
    }

    #[test]
    fn a_megabyte_error_echo_is_bounded() {
        let mut json = String::from(r#"{"machine_id":"m","timestamp":1764086400,"cpu_usage":""#);
        json.push_str(&"A".repeat(1 << 20));
        json.push_str(r#"","memory_usage":1,"disk_io":{"read":1,"write":1},"network_io":{"sent":1,"recv":1}}"#);
        let e = decode_json(json.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), "shape");
        assert!(e.to_string().len() < 1024, "{} bytes", e.to_string().len());
        assert!(e.to_string().contains("cpu_usage"), "{e}");
        decode_json_target(json.as_bytes());
    }
}
