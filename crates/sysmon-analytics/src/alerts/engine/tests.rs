use super::*;
use crate::alerts::rule::{Comparison, Metric, Severity};
use sysmon_core::snapshot::Filesystem;

const T0: f64 = 1_764_086_400.0;

fn snap(id: &str, t: f64, cpu: f64, mem: f64) -> Snapshot {
    let mut s = Snapshot::new(id, T0 + t);
    s.cpu_usage = cpu;
    s.memory_usage = mem;
    s
}

fn states(events: &[AlertEvent]) -> Vec<(String, AlertState)> {
    events.iter().map(|e| (e.rule.clone(), e.state)).collect()
}

#[test]
fn one_spike_pages_nobody_and_a_sustained_breach_fires_once_then_resolves_with_hysteresis() {
    let mut e = AlertEngine::new(AlertRule::defaults());
    let mut all = Vec::new();
    // A 20 s spike: pending, never firing.
    for t in 0..20 {
        all.extend(e.observe(&snap("web-01", t as f64, 95.0, 40.0)));
    }
    assert_eq!(e.active()[0].state, AlertState::Pending);
    for t in 20..30 {
        all.extend(e.observe(&snap("web-01", t as f64, 20.0, 40.0)));
    }
    assert!(all.is_empty(), "{all:?}");
    assert!(e.active().is_empty());
    // 90 % from t=100: fires at t=130 (30 s after the first sample above).
    for t in 100..131 {
        let ev = e.observe(&snap("web-01", t as f64, 90.0, 40.0));
        if t < 130 {
            assert!(ev.is_empty(), "t={t} {ev:?}");
        } else {
            assert_eq!(
                states(&ev),
                vec![("cpu_high".to_string(), AlertState::Firing)]
            );
            assert_eq!(ev[0].machine_id.as_deref(), Some("web-01"));
            assert_eq!(ev[0].value, 90.0);
            assert_eq!(ev[0].at, T0 + 130.0);
            assert!(
                ev[0].message.contains("cpu_usage 90.0 % > 80.0 %"),
                "{}",
                ev[0].message
            );
        }
    }
    // Hovering between the clear threshold and the threshold: still firing,
    // no events.
    for t in 131..400 {
        let cpu = if t % 2 == 0 { 79.0 } else { 81.0 };
        assert!(e.observe(&snap("web-01", t as f64, cpu, 40.0)).is_empty());
    }
    assert_eq!(e.active()[0].state, AlertState::Firing);
    let ev = e.observe(&snap("web-01", 400.0, 74.0, 40.0));
    assert_eq!(
        states(&ev),
        vec![("cpu_high".to_string(), AlertState::Resolved)]
    );
    assert!(
        ev[0].message.contains("back to 74.0 %"),
        "{}",
        ev[0].message
    );
    assert!(e.active().is_empty());
}

#[test]
fn flapping_around_the_threshold_cannot_storm() {
    let mut e = AlertEngine::new(AlertRule::defaults());
    let mut n = 0;
    // 74 % / 81 % alternating for an hour: never 30 s in a row above 80.
    for t in 0..3600 {
        let mem = if t % 2 == 0 { 74.0 } else { 81.0 };
        n += e.observe(&snap("db", t as f64, 10.0, mem)).len();
    }
    assert_eq!(n, 0);
    // Above for 40 s, then flapping 74/81 every 10 s for an hour: one firing,
    // one resolved, then at most one pair per 30 s-plus episode.
    let mut events = Vec::new();
    for t in 3600..3640 {
        events.extend(e.observe(&snap("db", t as f64, 10.0, 85.0)));
    }
    for t in 3640..7240 {
        let mem = if (t / 10) % 2 == 0 { 74.0 } else { 81.0 };
        events.extend(e.observe(&snap("db", t as f64, 10.0, mem)));
    }
    assert_eq!(
        states(&events),
        vec![
            ("memory_high".to_string(), AlertState::Firing),
            ("memory_high".to_string(), AlertState::Resolved)
        ]
    );
}

/// `id` reports once a second from `from` to `to` (inclusive), received as sent.
fn report(e: &mut AlertEngine, id: &str, from: i64, to: i64) -> Vec<AlertEvent> {
    (from..=to)
        .flat_map(|t| e.observe(&snap(id, t as f64, 10.0, 10.0)))
        .collect()
}

#[test]
fn machine_offline_fires_once_and_resolves_when_it_reports_again() {
    let mut e = AlertEngine::new(AlertRule::defaults());
    // Both established (the rule's min_samples, 5): a last seen at 0, b at 50;
    // `peer` goes on reporting, so the pipeline delivers.
    report(&mut e, "a", -4, 0);
    report(&mut e, "b", -3, 0);
    report(&mut e, "b", 50, 50);
    report(&mut e, "peer", -4, 59);
    assert!(e.tick(T0 + 59.0).is_empty());
    report(&mut e, "peer", 60, 61);
    let ev = e.tick(T0 + 61.0);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].rule, "machine_offline");
    assert_eq!(ev[0].machine_id.as_deref(), Some("a"));
    assert_eq!(ev[0].state, AlertState::Firing);
    assert_eq!(ev[0].severity, Severity::Critical);
    assert!(
        ev[0].message.contains("silent for 61s"),
        "{}",
        ev[0].message
    );
    report(&mut e, "peer", 62, 70);
    assert!(
        e.tick(T0 + 70.0).is_empty(),
        "no repeat while still offline"
    );
    let back = e.observe(&snap("a", 80.0, 10.0, 10.0));
    assert_eq!(
        states(&back),
        vec![("machine_offline".to_string(), AlertState::Resolved)]
    );
    // b went silent at 50: offline at 111.
    report(&mut e, "peer", 71, 111);
    let ev = e.tick(T0 + 111.0);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].machine_id.as_deref(), Some("b"));
    // Retiring b resolves its alert; retiring it again does nothing.
    let gone = e.forget("b", T0 + 120.0);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].state, AlertState::Resolved);
    assert!(e.forget("b", T0 + 121.0).is_empty());
    assert!(e
        .tick(T0 + 1000.0)
        .iter()
        .all(|x| x.machine_id.as_deref() == Some("a")));
}

#[test]
fn a_pipeline_outage_holds_every_offline_alert_back_and_raises_one_instead() {
    let mut e = AlertEngine::new(AlertRule::defaults());
    let ids: Vec<String> = (0..50).map(|i| format!("m{i:02}")).collect();
    // Everyone reports until 100, then the broker goes away.
    for t in 0..=100 {
        for id in &ids {
            e.observe(&snap(id, t as f64, 10.0, 10.0));
        }
        assert!(e.tick(T0 + t as f64).is_empty());
    }
    e.set_transport_down(Some(T0 + 100.5));
    let mut events = Vec::new();
    for t in 101..=400 {
        events.extend(e.tick(T0 + t as f64));
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].rule, "pipeline_down");
    assert_eq!(events[0].state, AlertState::Firing);
    assert_eq!(events[0].machine_id, None);
    assert!(matches!(
        e.pipeline_problem(),
        Some(PipelineProblem::TransportDown { .. })
    ));
    let active = e.active();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].rule, "pipeline_down");
    // Back at 400: the backlog arrives in a few seconds (old samples first),
    // except from m49, which died during the outage (its samples stop at 200).
    e.set_transport_down(None);
    let mut events = Vec::new();
    for (k, t) in (101..=405).step_by(5).enumerate() {
        let now = T0 + 400.0 + k as f64 * 0.1;
        for id in &ids {
            for ts in t..t + 5 {
                if id != "m49" || ts <= 200 {
                    events.extend(e.observe_at(&snap(id, ts as f64, 10.0, 10.0), now));
                }
            }
        }
        events.extend(e.tick(now));
    }
    assert_eq!(
        states(&events),
        vec![("pipeline_down".to_string(), AlertState::Resolved)],
        "caught up: the pipeline alert resolves, no machine went offline"
    );
    // m49 is judged from the recovery on: offline once the others reported
    // for its `after` (60 s) more, not at once.
    let recovered = T0 + 400.0;
    let mut events = Vec::new();
    for t in 410..=480 {
        for id in ids.iter().filter(|i| *i != "m49") {
            events.extend(e.observe(&snap(id, t as f64, 10.0, 10.0)));
        }
        let ev = e.tick(T0 + t as f64);
        if !ev.is_empty() {
            assert!(T0 + t as f64 - recovered > 60.0, "at {t}: {ev:?}");
        }
        events.extend(ev);
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].rule.as_str(), events[0].machine_id.as_deref()),
        ("machine_offline", Some("m49"))
    );
}

#[test]
fn silence_from_every_machine_is_one_stalled_pipeline_alert() {
    let mut e = AlertEngine::new(AlertRule::defaults());
    for t in 0..=10 {
        for id in ["a", "b", "c"] {
            e.observe(&snap(id, t as f64, 10.0, 10.0));
        }
    }
    let events: Vec<AlertEvent> = (11..=600).flat_map(|t| e.tick(T0 + t as f64)).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].rule, "pipeline_down");
    assert!(
        events[0].message.contains("no sample from any machine"),
        "{}",
        events[0].message
    );
    // A single machine's silence is the pipeline's too: one alert either way.
    let mut one = AlertEngine::new(AlertRule::defaults());
    report(&mut one, "solo", 0, 10);
    let events: Vec<AlertEvent> = (11..=600).flat_map(|t| one.tick(T0 + t as f64)).collect();
    assert_eq!(
        states(&events),
        vec![("pipeline_down".to_string(), AlertState::Firing)]
    );
}

#[test]
fn machines_seen_only_briefly_never_page_as_offline() {
    let mut e = AlertEngine::new(AlertRule::defaults());
    // A flood of made-up ids, two samples each, and one real machine.
    for i in 0..1000 {
        let id = format!("fake-{i}");
        e.observe(&snap(&id, 0.0, 10.0, 10.0));
        e.observe(&snap(&id, 1.0, 10.0, 10.0));
    }
    for t in -10..=1 {
        e.observe(&snap("real", t as f64, 10.0, 10.0));
    }
    report(&mut e, "peer", -10, 120);
    let ev = e.tick(T0 + 120.0);
    assert_eq!(
        ev.iter()
            .map(|x| x.machine_id.as_deref().unwrap_or(""))
            .collect::<Vec<_>>(),
        vec!["real"],
        "only the established machine fires"
    );
    // A fake id that goes on reporting becomes established and is judged.
    for t in 2..5 {
        e.observe(&snap("fake-7", t as f64, 10.0, 10.0));
    }
    report(&mut e, "peer", 121, 200);
    let ev = e.tick(T0 + 200.0);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].machine_id.as_deref(), Some("fake-7"));
    // min_samples is configurable: 1 makes every machine count.
    let cfg: AlertsConfig = toml::from_str(
        "[[rules]]\nname = \"gone\"\nkind = \"machine_offline\"\nafter = \"1m\"\nmin_samples = 1",
    )
    .unwrap();
    let mut e = AlertEngine::from_config(&cfg).unwrap();
    e.observe(&snap("once", 0.0, 10.0, 10.0));
    report(&mut e, "peer", 0, 61);
    assert_eq!(e.tick(T0 + 61.0).len(), 1);
    let e = toml::from_str::<AlertsConfig>(
        "[[rules]]\nname = \"x\"\nmetric = \"cpu_usage\"\nthreshold = 1\nmin_samples = 3",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`min_samples` only applies"), "{e}");
}

#[test]
fn silent_machines_are_listed_and_state_is_sized_by_use() {
    let mut e = AlertEngine::new(AlertRule::defaults());
    let mut s = snap("disk", 0.0, 10.0, 10.0);
    s.filesystems.push(Filesystem {
        mount_point: "/".into(),
        total_bytes: 1000,
        used_bytes: 10,
        available_bytes: 990,
        ..Default::default()
    });
    e.observe_at(&s, T0);
    let small = e.machine_heap_bytes("disk").unwrap();
    for t in 1..1000 {
        let mut s = s.clone();
        s.timestamp = T0 + t as f64;
        e.observe_at(&s, T0 + t as f64);
    }
    let full = e.machine_heap_bytes("disk").unwrap();
    assert!(small < 1024, "one sample: {small} bytes");
    // The filesystem window holds 300 points: no power-of-two round-up.
    assert!(full < 300 * 16 + 1024, "{full} bytes");
    e.observe_at(&snap("quiet", 0.0, 1.0, 1.0), T0 + 500.0);
    assert_eq!(e.machine_count(), 2);
    assert_eq!(
        e.silent_longer_than(T0 + 1600.0, Duration::from_secs(1000)),
        vec!["quiet".to_string()]
    );
    assert!(e.knows("quiet"));
    assert_eq!(e.longest_offline_after(), Some(Duration::from_secs(60)));
}

#[test]
fn offline_detection_uses_the_receive_time() {
    let mut e = AlertEngine::new(AlertRule::defaults());
    // The sender's clock is 10 minutes behind; it reports every second.
    for i in 0..100 {
        let s = snap("skewed", i as f64 - 600.0, 10.0, 10.0);
        e.observe_at(&s, T0 + i as f64);
    }
    assert!(e.tick(T0 + 100.0).is_empty());
}

#[test]
fn fleet_rules_aggregate_recent_machines_on_tick() {
    let toml = r#"
        [[rules]]
        name = "fleet_cpu"
        metric = "cpu_usage"
        op = ">"
        threshold = 70
        scope = "fleet_avg"
        clear_threshold = 60
        severity = "critical"

        [[rules]]
        name = "hottest"
        metric = "cpu_usage"
        op = "gt"
        threshold = 95
        scope = "fleet_max"
    "#;
    let cfg: AlertsConfig = toml::from_str(toml).unwrap();
    let mut e = AlertEngine::from_config(&cfg).unwrap();
    e.observe(&snap("a", 0.0, 90.0, 10.0));
    e.observe(&snap("b", 0.0, 90.0, 10.0));
    e.observe(&snap("c", 0.0, 20.0, 10.0));
    assert!(e.tick(T0 + 1.0).is_empty(), "avg 66.7");
    e.observe(&snap("c", 2.0, 50.0, 10.0));
    let ev = e.tick(T0 + 3.0);
    assert_eq!(
        states(&ev),
        vec![("fleet_cpu".to_string(), AlertState::Firing)]
    );
    assert_eq!(ev[0].machine_id, None);
    assert!((ev[0].value - 230.0 / 3.0).abs() < 1e-9);
    assert!(ev[0].message.contains("the fleet (average)"));
    // a and b fall silent for over a minute: only c (50 %) counts now.
    e.observe(&snap("c", 100.0, 50.0, 10.0));
    let ev = e.tick(T0 + 100.0);
    assert_eq!(
        states(&ev),
        vec![("fleet_cpu".to_string(), AlertState::Resolved)]
    );
    e.observe(&snap("c", 101.0, 99.0, 10.0));
    let ev = e.tick(T0 + 101.0);
    assert_eq!(
        states(&ev),
        vec![
            ("fleet_cpu".to_string(), AlertState::Firing),
            ("hottest".to_string(), AlertState::Firing)
        ]
    );
    assert!(ev[1].message.contains("the fleet (maximum)"));
    assert_eq!(e.active().len(), 2);
}

fn fleet_avg_rule(for_secs: u64) -> AlertsConfig {
    let toml = format!(
        r#"
        [[rules]]
        name = "fleet_cpu"
        metric = "cpu_usage"
        op = ">"
        threshold = 50
        clear_threshold = 40
        for = "{for_secs}s"
        scope = "fleet_avg"
    "#
    );
    toml::from_str(&toml).unwrap()
}

#[test]
fn on_a_shared_store_the_leader_judges_the_stores_fleet_and_a_follower_skips_fleet_rules() {
    // This ingester's own machines (its partitions) average 30 %: below.
    let cfg = fleet_avg_rule(0);
    let mut lead = AlertEngine::from_config(&cfg).unwrap();
    let mut follow = AlertEngine::from_config(&cfg).unwrap();
    for e in [&mut lead, &mut follow] {
        e.observe(&snap("a", 0.0, 30.0, 10.0));
        e.observe(&snap("b", 0.0, 30.0, 10.0));
    }
    // The store holds the whole fleet: the other half at 90 %, average 60 %.
    let store = vec![
        snap("a", 0.0, 30.0, 10.0),
        snap("b", 0.0, 30.0, 10.0),
        snap("c", 0.0, 90.0, 10.0),
        snap("d", 0.0, 90.0, 10.0),
    ];
    lead.set_fleet_input(FleetInput::Lead {
        latest: store.clone(),
        active: Vec::new(),
    });
    follow.set_fleet_input(FleetInput::Follow);
    assert!(lead.leads_fleet() && !follow.leads_fleet());
    let ev = lead.tick(T0 + 1.0);
    assert_eq!(
        states(&ev),
        vec![("fleet_cpu".to_string(), AlertState::Firing)]
    );
    assert!((ev[0].value - 60.0).abs() < 1e-9, "{ev:?}");
    assert!(lead.has_fleet_rules());
    // The follower neither judges the fleet nor claims its alerts, even
    // when its own machines would breach.
    follow.observe(&snap("a", 1.0, 99.0, 10.0));
    follow.observe(&snap("b", 1.0, 99.0, 10.0));
    assert!(follow.tick(T0 + 2.0).is_empty());
    assert!(follow.active().is_empty());
    assert!(!follow.has_fleet_rules());
    // Without a fleet input (SQLite, one ingester) its own machines count.
    let mut alone = AlertEngine::from_config(&cfg).unwrap();
    alone.observe(&snap("a", 1.0, 99.0, 10.0));
    assert_eq!(alone.tick(T0 + 2.0).len(), 1);
}

#[test]
fn a_new_leader_carries_the_stored_fleet_alert_on_instead_of_raising_it_again() {
    let cfg = fleet_avg_rule(30);
    let mut old = AlertEngine::from_config(&cfg).unwrap();
    let hot = |t: f64| vec![snap("a", t, 80.0, 10.0), snap("b", t, 60.0, 10.0)];
    old.set_fleet_input(FleetInput::Lead {
        latest: hot(0.0),
        active: Vec::new(),
    });
    assert!(old.tick(T0).is_empty(), "pending");
    old.set_fleet_input(FleetInput::Lead {
        latest: hot(30.0),
        active: Vec::new(),
    });
    let fired = old.tick(T0 + 30.0);
    assert_eq!(fired.len(), 1, "{fired:?}");
    let stored = old.active();
    assert_eq!(stored[0].state, AlertState::Firing);

    // The leader dies; another takes the lead and finds the alert stored.
    let mut new = AlertEngine::from_config(&cfg).unwrap();
    new.set_fleet_input(FleetInput::Follow);
    new.set_fleet_input(FleetInput::Lead {
        latest: hot(40.0),
        active: stored.clone(),
    });
    assert!(new.tick(T0 + 40.0).is_empty(), "no second firing event");
    let active = new.active();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].state, AlertState::Firing);
    assert_eq!(active[0].since, stored[0].since, "same alert, same start");
    // The fleet cools down: the new leader resolves it.
    new.set_fleet_input(FleetInput::Lead {
        latest: vec![snap("a", 50.0, 10.0, 10.0), snap("b", 50.0, 10.0, 10.0)],
        active: Vec::new(),
    });
    assert_eq!(
        states(&new.tick(T0 + 50.0)),
        vec![("fleet_cpu".to_string(), AlertState::Resolved)]
    );
    // Losing the lead drops the fleet state without events.
    old.set_fleet_input(FleetInput::Follow);
    assert!(old.active().is_empty());
    assert!(old.tick(T0 + 60.0).is_empty());
}

#[test]
fn below_threshold_rules_and_rates_from_counters() {
    let rule = AlertRule::threshold(
        "writes_stalled",
        Metric::DiskWrite,
        Comparison::Lt,
        1000.0,
        Duration::ZERO,
        5000.0,
        Severity::Info,
    );
    let mut e = AlertEngine::new(vec![rule]);
    let mut written = 0u64;
    let mut evs = Vec::new();
    for t in 0..30u64 {
        // 10 kB/s, stalled from 10 to 19 s, then 3 kB/s, then 10 kB/s.
        written += match t {
            10..=19 => 0,
            20..=24 => 3000,
            _ => 10_000,
        };
        let mut s = snap("db", t as f64, 10.0, 10.0);
        s.disk_io.write = written;
        evs.extend(e.observe(&s).into_iter().map(|x| (t, x.state)));
    }
    assert_eq!(
        evs,
        vec![(10, AlertState::Firing), (25, AlertState::Resolved)]
    );
}

fn fs_snap(t: f64, used: u64) -> Snapshot {
    let mut s = snap("files", t, 10.0, 10.0);
    let total = 10_000_000_000u64;
    s.filesystems = vec![Filesystem {
        mount_point: "/var".into(),
        fs_type: "xfs".into(),
        total_bytes: total,
        used_bytes: used,
        available_bytes: total - used,
    }];
    s
}

#[test]
fn a_filling_filesystem_fires_and_a_flat_one_does_not() {
    let mut e = AlertEngine::new(AlertRule::defaults());
    let mut fired = None;
    // 9.9 GB used of 10 GB, growing 50 kB/s: full in ~2000 s < 1 h.
    for t in 0..200 {
        let ev = e.observe(&fs_snap(t as f64, 9_900_000_000 + 50_000 * t));
        if let Some(x) = ev.into_iter().find(|x| x.rule == "filesystem_full_soon") {
            fired.get_or_insert((t, x));
        }
    }
    let (t, ev) = fired.expect("fires");
    // 10 samples to judge growth, then `for = 1m`.
    assert!((69..=72).contains(&t), "{t}");
    assert_eq!(ev.subject.as_deref(), Some("/var"));
    assert!(ev.value > 1500.0 && ev.value < 2100.0, "{}", ev.value);
    assert!(
        ev.message.contains("/var on files projected full in"),
        "{}",
        ev.message
    );
    let active = e.active();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].subject.as_deref(), Some("/var"));
    // Someone cleans up: usage drops and stays flat, the alert resolves.
    let mut resolved = false;
    for t in 200..600 {
        for x in e.observe(&fs_snap(t as f64, 5_000_000_000)) {
            resolved |= x.state == AlertState::Resolved;
        }
    }
    assert!(resolved);
    // A flat filesystem with noise never fires.
    let mut e = AlertEngine::new(AlertRule::defaults());
    for t in 0..600u64 {
        let used = 9_990_000_000 + (t * 7919 % 1000) * 1000;
        assert!(e.observe(&fs_snap(t as f64, used)).is_empty());
    }
}
#[test]
fn out_of_order_and_non_finite_samples_are_ignored() {
    let mut e = AlertEngine::new(vec![AlertRule::threshold(
        "cpu",
        Metric::Cpu,
        Comparison::Gt,
        50.0,
        Duration::ZERO,
        50.0,
        Severity::Warning,
    )]);
    assert_eq!(e.observe(&snap("m", 10.0, 90.0, 0.0)).len(), 1);
    assert!(
        e.observe(&snap("m", 5.0, 10.0, 0.0)).is_empty(),
        "older sample"
    );
    let mut nan = snap("m", 11.0, 10.0, 0.0);
    nan.timestamp = f64::NAN;
    assert!(e.observe(&nan).is_empty());
    assert!(e.tick(f64::NAN).is_empty());
    // A CPU value out of range is unknown, not a breach or a clearance.
    assert!(e.observe(&snap("m", 12.0, f64::INFINITY, 0.0)).is_empty());
    assert_eq!(e.observe(&snap("m", 13.0, 10.0, 0.0)).len(), 1);
}

fn with_psi(mut s: Snapshot, cpu_some: f64) -> Snapshot {
    use sysmon_core::snapshot::{Pressure, PressureLine, PressureStall};
    let line = PressureLine {
        avg10: cpu_some,
        ..PressureLine::default()
    };
    s.pressure = Some(Pressure {
        cpu: Some(PressureStall {
            some: line,
            full: None,
        }),
        ..Pressure::default()
    });
    s
}

#[test]
fn a_pressure_rule_fires_on_psi_above_and_stays_silent_without_psi() {
    let rule = || {
        let text = "name = \"psi\"\nmetric = \"pressure_cpu_some_avg10\"\nthreshold = 20\nfor = \"1m\"\nclear_threshold = 15";
        toml::from_str::<AlertRule>(text).unwrap()
    };
    // A machine whose kernel has no PSI: 10 minutes of samples, not one event,
    // nothing pending (absent is not 0, and not a breach either way).
    let mut e = AlertEngine::new(vec![rule()]);
    for t in 0..600 {
        assert!(e.observe(&snap("no-psi", t as f64, 99.0, 50.0)).is_empty());
    }
    assert!(e.active().is_empty());
    // Even with a "<" rule (which 0 would breach) a machine without PSI stays silent.
    let mut lt = rule();
    if let Condition::Threshold(t) = &mut lt.condition {
        t.op = super::super::rule::Comparison::Lt;
        t.clear_threshold = 25.0;
    }
    let mut e_lt = AlertEngine::new(vec![lt]);
    for t in 0..120 {
        assert!(e_lt.observe(&snap("no-psi", t as f64, 5.0, 5.0)).is_empty());
    }
    assert!(e_lt.active().is_empty());
    // A machine with PSI above 20 %: pending, then firing after a minute.
    let mut events = Vec::new();
    for t in 0..=60 {
        events.extend(e.observe(&with_psi(snap("psi", t as f64, 10.0, 10.0), 35.5)));
        if t == 0 {
            assert_eq!(e.active()[0].state, AlertState::Pending);
        }
    }
    assert_eq!(
        states(&events),
        vec![("psi".to_string(), AlertState::Firing)]
    );
    assert_eq!(events[0].machine_id.as_deref(), Some("psi"));
    assert_eq!(events[0].value, 35.5);
    assert!(
        events[0]
            .message
            .contains("pressure_cpu_some_avg10 35.5 % > 20.0 %"),
        "{}",
        events[0].message
    );
    // PSI disappearing (an agent without the collector) neither resolves nor re-fires...
    for t in 61..200 {
        assert!(e.observe(&snap("psi", t as f64, 10.0, 10.0)).is_empty());
    }
    assert_eq!(e.active()[0].state, AlertState::Firing);
    // ...a value below the clear threshold resolves it.
    let ev = e.observe(&with_psi(snap("psi", 200.0, 10.0, 10.0), 3.0));
    assert_eq!(states(&ev), vec![("psi".to_string(), AlertState::Resolved)]);
    // The no-PSI machine saw nothing all along.
    assert!(e
        .active()
        .iter()
        .all(|a| a.machine_id.as_deref() != Some("no-psi")));
}

#[test]
fn default_host_detail_rules_fire_on_host_details_and_not_on_plain_snapshots() {
    let mut plain = AlertEngine::new(AlertRule::defaults());
    let mut full = AlertEngine::new(AlertRule::defaults());
    let mut fired = Vec::new();
    for t in 0..400 {
        let s = snap("m", t as f64, 10.0, 10.0);
        assert!(plain.observe(&s).is_empty(), "t={t}");
        let mut h = s.clone();
        sysmon_core::synth::fill_host_details(&mut h);
        h.pressure
            .as_mut()
            .unwrap()
            .cpu
            .as_mut()
            .unwrap()
            .some
            .avg10 = 42.0;
        h.pressure
            .as_mut()
            .unwrap()
            .memory
            .as_mut()
            .unwrap()
            .some
            .avg10 = 1.0;
        h.disks[0].utilization_percent = Some(97.0);
        h.top_mem_cgroups[0].memory_limit_bytes = Some(1000);
        h.top_mem_cgroups[0].memory_bytes = 950;
        for ev in full.observe(&h) {
            fired.push((ev.rule.clone(), ev.at - T0, ev.message.clone()));
        }
    }
    let names: Vec<(&str, f64)> = fired.iter().map(|(r, at, _)| (r.as_str(), *at)).collect();
    assert_eq!(
        names,
        vec![
            ("cpu_pressure_high", 60.0),
            ("container_memory_near_limit", 120.0),
            ("disk_busy", 300.0)
        ],
        "{fired:?}"
    );
    assert!(fired[1].2.contains("95.0 % > 90.0 %"), "{}", fired[1].2);
    assert!(plain.active().is_empty());
}
