//! Encode and decode of one realistic snapshot (10 processes per top list) in
//! native JSON, the legacy producer's JSON, and sysmon's binary form.
//!
//! Run: `cargo bench --bench codec`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sysmon::core::codec::{self, Format};
use sysmon::core::synth::SyntheticMachine;

fn bench(c: &mut Criterion) {
    let snapshot = SyntheticMachine::new("web-01", 7).next_snapshot(1_764_086_400.0, 10);
    let json = codec::encode(&snapshot, Format::Json);
    let binary = codec::encode(&snapshot, Format::Binary);
    let legacy = include_bytes!("../testdata/legacy_producer_message.json").to_vec();
    // The agent's default shape: top 5 by CPU + top 5 by memory = 10 processes.
    let default_shape = SyntheticMachine::new("web-01", 7).next_snapshot(1_764_086_400.0, 5);
    let default_json = codec::encode(&default_shape, Format::Json);

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode/json", |b| {
        b.iter(|| codec::encode(black_box(&snapshot), Format::Json))
    });
    g.bench_function("encode/binary", |b| {
        b.iter(|| codec::encode(black_box(&snapshot), Format::Binary))
    });
    g.bench_function("decode/json", |b| {
        b.iter(|| codec::decode(black_box(&json)))
    });
    g.bench_function("encode/json_5+5", |b| {
        b.iter(|| codec::encode(black_box(&default_shape), Format::Json))
    });
    g.bench_function("decode/json_5+5", |b| {
        b.iter(|| codec::decode(black_box(&default_json)))
    });
    g.bench_function("decode/json_without_validation", |b| {
        b.iter(|| serde_json::from_slice::<sysmon::core::Snapshot>(black_box(&json)))
    });
    g.bench_function("validate", |b| {
        b.iter(|| codec::validate(black_box(&snapshot)))
    });
    g.bench_function("decode/binary", |b| {
        b.iter(|| codec::decode(black_box(&binary)))
    });
    g.bench_function("decode/legacy_json", |b| {
        b.iter(|| codec::decode(black_box(&legacy)))
    });
    g.finish();
    println!(
        "sizes: native json {} B (5+5 processes: {} B), binary {} B, legacy json {} B",
        json.len(),
        default_json.len(),
        binary.len(),
        legacy.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
