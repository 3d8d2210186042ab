use super::*;
use crate::snapshot::*;
use crate::synth::SyntheticMachine;

const LEGACY: &str = include_str!("../../../../testdata/legacy_producer_message.json");

#[test]
fn legacy_message_decodes_unchanged() {
    let s = decode(LEGACY.as_bytes()).expect("legacy message must decode");
    assert!(s.is_legacy());
    assert_eq!(s.machine_id, "machine_46");
    assert_eq!(s.timestamp, 1764086400.5123456);
    assert_eq!(s.cpu_usage, 12.7);
    assert_eq!(s.memory_usage, 63.4);
    assert_eq!(
        s.disk_io,
        DiskIo {
            read: 5368709120,
            write: 10737418240
        }
    );
    assert_eq!(
        s.network_io,
        NetworkIo {
            sent: 123456789,
            recv: 987654321
        }
    );
    assert_eq!(s.top_cpu_processes.len(), 3);
    assert_eq!(s.top_cpu_processes[1].memory_percent, None);
    assert_eq!(s.top_cpu_processes[0].cpu_percent, 0.0);
    assert_eq!(s.top_mem_processes[0].name, "chrome.exe");
    assert!(s.hostname.is_none() && s.memory.is_none() && s.filesystems.is_empty());
}

#[test]
fn native_json_is_a_superset_of_the_legacy_shape() {
    let s = SyntheticMachine::new("web-01", 7).next_snapshot(1_764_086_400.0, 10);
    let v: serde_json::Value = serde_json::from_slice(&encode_json(&s)).unwrap();
    for key in [
        "machine_id",
        "timestamp",
        "cpu_usage",
        "memory_usage",
        "disk_io",
        "network_io",
        "top_cpu_processes",
        "top_mem_processes",
    ] {
        assert!(v.get(key).is_some(), "missing legacy key {key}");
    }
    assert!(v["timestamp"].is_f64());
    assert!(v["disk_io"]["read"].is_u64() && v["disk_io"]["write"].is_u64());
    assert!(v["network_io"]["sent"].is_u64() && v["network_io"]["recv"].is_u64());
    let p = &v["top_cpu_processes"][0];
    assert!(p["pid"].is_u64() && p["name"].is_string() && p["cpu_percent"].is_f64());
    assert_eq!(v["schema_version"], SCHEMA_VERSION);
    // host details not collected are left out, not sent as null
    for key in [
        "pressure",
        "disks",
        "tcp",
        "top_cpu_cgroups",
        "temperatures",
        "open_files",
    ] {
        assert!(v.get(key).is_none(), "{key} present without a value");
    }
    assert!(p.get("threads").is_none() && p.get("user").is_none());
    // and the legacy consumer's keys keep their shape when they are collected
    let mut full = s.clone();
    crate::synth::fill_host_details(&mut full);
    let v: serde_json::Value = serde_json::from_slice(&encode_json(&full)).unwrap();
    assert!(v["disk_io"]["read"].is_u64() && v["top_cpu_processes"][0]["pid"].is_u64());
    assert!(v["pressure"]["cpu"]["some"]["avg10"].is_f64());
    assert!(v["disks"][0]["utilization_percent"].is_f64());
    assert_eq!(v["top_cpu_cgroups"][0]["kind"], "docker");
    assert!(v["top_cpu_processes"][0]["threads"].is_u64());
}

#[test]
fn json_and_binary_round_trip() {
    let mut m = SyntheticMachine::new("db-7", 3);
    for i in 0..20 {
        let mut s = m.next_snapshot(1_764_086_400.0 + i as f64, 10);
        s.top_cpu_processes[0].memory_percent = None;
        s.labels.insert("role".into(), "db".into());
        s.custom_metrics.insert("app.queue_depth".into(), 17.5);
        s.collector_errors.push(CollectorFailure {
            collector: "disk".into(),
            message: "permission denied".into(),
        });
        if i % 2 == 0 {
            crate::synth::fill_host_details(&mut s);
        }
        assert_eq!(decode(&encode_json(&s)).unwrap(), s);
        let bin = encode(&s, Format::Binary);
        assert!(
            bin.len() < encode_json(&s).len() / 2,
            "binary should be compact"
        );
        assert_eq!(decode(&bin).unwrap(), s);
        assert_eq!(decode_with(&bin, Some(Format::Binary), 1 << 20).unwrap(), s);
    }
}

#[test]
fn every_truncation_of_a_binary_message_is_an_error_not_a_panic() {
    let mut s = SyntheticMachine::new("x", 1).next_snapshot(1_764_086_400.0, 10);
    crate::synth::fill_host_details(&mut s);
    let bin = encode(&s, Format::Binary);
    for n in 0..bin.len() {
        assert!(decode(&bin[..n]).is_err(), "prefix {n} decoded");
    }
    let mut extra = bin.clone();
    extra.push(0);
    assert!(matches!(decode(&extra), Err(DecodeError::Binary(_))));
}

#[test]
fn binary_huge_counts_are_rejected_without_allocating() {
    let mut bin = MAGIC_WITH_ID.to_vec();
    bin.extend_from_slice(&[0u8; 24]); // timestamp, cpu, mem
    bin.extend_from_slice(&[0, 0, 0, 0]); // counters
    bin.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // 4 billion processes
    let err = decode(&bin).unwrap_err();
    assert!(err.to_string().contains("claims"), "{err}");
}
const MAGIC_WITH_ID: &[u8] = b"SMB1\x01m";

fn legacy_with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(LEGACY).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(value).unwrap();
    let mut target = &mut v;
    let parts: Vec<&str> = field.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        target = &mut target[*p];
    }
    target[parts[parts.len() - 1]] = parsed;
    v.to_string()
}

#[test]
fn malformed_input_is_rejected_with_a_reason() {
    let cases: Vec<(String, &str, &str)> = vec![
        ("".into(), "empty", "empty"),
        ("{\"machine_id\": ".into(), "syntax", "line 1"),
        ("not json at all".into(), "syntax", "invalid JSON"),
        ("[1,2,3]".into(), "shape", "wrong shape"),
        (legacy_with("cpu_usage", "\"high\""), "shape", "cpu_usage"),
        (legacy_with("cpu_usage", "1e9"), "invalid_value", "cpu_usage"),
        (legacy_with("cpu_usage", "-3"), "invalid_value", "cpu_usage"),
        (legacy_with("memory_usage", "100.5"), "invalid_value", "memory_usage"),
        (legacy_with("machine_id", "\"\""), "invalid_value", "machine_id"),
        (legacy_with("machine_id", "\"  \""), "invalid_value", "machine_id"),
        (legacy_with("machine_id", "\"a\\nb\""), "invalid_value", "control"),
        (legacy_with("timestamp", "0"), "invalid_value", "timestamp"),
        (legacy_with("disk_io.read", "-1"), "shape", "disk_io"),
        (legacy_with("disk_io.read", "1.5"), "shape", "disk_io"),
        (legacy_with("network_io", "null"), "shape", "network_io"),
        (legacy_with("schema_version", "99"), "schema_version", "99"),
        (
            legacy_with("top_cpu_processes", "[{\"pid\":1,\"name\":\"x\",\"cpu_percent\":-1,\"memory_percent\":1}]"),
            "invalid_value",
            "top_cpu_processes[0].cpu_percent",
        ),
        (
            legacy_with("top_mem_processes", "[{\"pid\":1,\"name\":\"x\",\"cpu_percent\":1,\"memory_percent\":400}]"),
            "invalid_value",
            "top_mem_processes[0].memory_percent",
        ),
        (
            r#"{"machine_id":"m","timestamp":1764086400,"cpu_usage":NaN,"memory_usage":1,"disk_io":{"read":1,"write":1},"network_io":{"sent":1,"recv":1}}"#.into(),
            "syntax",
            "invalid JSON",
        ),
    ];
    for (input, kind, needle) in cases {
        let err = decode(input.as_bytes()).expect_err(&input);
        assert_eq!(err.kind(), kind, "{input} -> {err}");
        assert!(err.to_string().contains(needle), "{input} -> {err}");
    }
}

#[test]
fn missing_legacy_field_is_named() {
    let mut v: serde_json::Value = serde_json::from_str(LEGACY).unwrap();
    v.as_object_mut().unwrap().remove("memory_usage");
    let err = decode(v.to_string().as_bytes()).unwrap_err();
    assert_eq!(err.kind(), "shape");
    assert!(err.to_string().contains("memory_usage"), "{err}");
}

#[test]
fn size_limit_is_enforced_before_parsing() {
    let err = decode_with(LEGACY.as_bytes(), None, 100).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooLarge {
            size: LEGACY.len(),
            limit: 100
        }
    );
}

#[test]
fn format_names_parse() {
    assert_eq!(Format::parse("JSON").unwrap(), Format::Json);
    assert_eq!(Format::parse("binary").unwrap(), Format::Binary);
    assert_eq!(Format::parse("application/json").unwrap(), Format::Json);
    assert!(Format::parse("xml").is_err());
}

/// The snapshot encoded in `testdata/binary_v1_snapshot.bin`: every field of
/// the version-1 binary layout set, so a later layout must still decode it all.
fn binary_v1_fixture() -> Snapshot {
    let process =
        |pid: u32, name: &str, cpu: f64, mem: Option<f64>, bytes: Option<u64>| ProcessInfo {
            pid,
            name: name.into(),
            cpu_percent: cpu,
            memory_percent: mem,
            memory_bytes: bytes,
            ..ProcessInfo::default()
        };
    Snapshot {
        machine_id: "web-01".into(),
        timestamp: 1_764_086_400.25,
        cpu_usage: 37.5,
        memory_usage: 61.25,
        disk_io: DiskIo {
            read: 5_368_709_120,
            write: 10_737_418_240,
        },
        network_io: NetworkIo {
            sent: 123_456_789,
            recv: 987_654_321,
        },
        top_cpu_processes: vec![
            process(4242, "postgres", 88.5, Some(12.5), Some(1 << 30)),
            process(7, "kworker/0:1", 3.0, None, None),
        ],
        top_mem_processes: vec![process(4242, "postgres", 88.5, Some(12.5), Some(1 << 30))],
        schema_version: 1,
        hostname: Some("web-01.example".into()),
        interval_secs: Some(1.0),
        cpu_per_core: vec![40.0, 35.0],
        load_avg: Some(LoadAvg {
            one: 1.5,
            five: 1.25,
            fifteen: 0.75,
        }),
        memory: Some(Memory {
            total_bytes: 8 << 30,
            used_bytes: 5 << 30,
            available_bytes: 3 << 30,
            swap_total_bytes: 2 << 30,
            swap_used_bytes: 1 << 20,
        }),
        disk_rate: Some(IoRate {
            read: 1024.5,
            write: 2048.0,
        }),
        network_rate: Some(NetworkRate {
            sent: 100.0,
            recv: 200.5,
        }),
        filesystems: vec![Filesystem {
            mount_point: "/".into(),
            fs_type: "ext4".into(),
            total_bytes: 100 << 30,
            used_bytes: 40 << 30,
            available_bytes: 55 << 30,
        }],
        uptime_secs: Some(86_400),
        labels: [("role".to_string(), "db".to_string())].into(),
        collector_errors: vec![CollectorFailure {
            collector: "disk".into(),
            message: "permission denied".into(),
        }],
        custom_metrics: [("app.queue_depth".to_string(), 17.5)].into(),
        ..Snapshot::default()
    }
}

/// Bytes written by the version-1 encoder (magic `SMB1`), committed before the
/// layout changed: agents not yet upgraded keep sending them.
const BINARY_V1: &[u8] = include_bytes!("../../../../testdata/binary_v1_snapshot.bin");

#[test]
fn binary_v1_messages_still_decode() {
    assert_eq!(&BINARY_V1[..4], b"SMB1");
    assert_eq!(decode(BINARY_V1).unwrap(), binary_v1_fixture());
}

#[test]
fn host_details_are_validated_with_the_field_named() {
    let mut s = SyntheticMachine::new("v", 5).next_snapshot(1_764_086_400.0, 5);
    crate::synth::fill_host_details(&mut s);
    assert!(validate(&s).is_ok());
    let bad = |f: &dyn Fn(&mut Snapshot), field: &str| {
        let mut b = s.clone();
        f(&mut b);
        let err = validate(&b).unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    };
    bad(
        &|b| b.disks[0].utilization_percent = Some(150.0),
        "disks[0].utilization_percent",
    );
    bad(
        &|b| b.disks[0].read_latency_ms = Some(f64::NAN),
        "disks[0].read_latency_ms",
    );
    bad(&|b| b.disks = vec![b.disks[0].clone(); 65], "disks");
    bad(
        &|b| b.pressure.as_mut().unwrap().io.as_mut().unwrap().some.avg60 = 101.0,
        "pressure.io.some.avg60",
    );
    bad(
        &|b| b.top_mem_cgroups[1].cpu_percent = -1.0,
        "top_mem_cgroups[1].cpu_percent",
    );
    bad(&|b| b.temperatures[0].celsius = 5000.0, "temperatures[0]");
    bad(
        &|b| b.open_files.as_mut().unwrap().allocated = u64::MAX,
        "open_files",
    );
    bad(
        &|b| b.tcp.as_mut().unwrap().retransmits_per_sec = Some(-1.0),
        "tcp.retransmits_per_sec",
    );
}
