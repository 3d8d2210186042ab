//! The Windows agent, cross-built from Linux (`scripts/build-windows.sh`) and
//! run under Wine: `sysmon-agent.exe --once` prints a valid snapshot whose
//! collector errors name only what Wine cannot provide, and `--brokers`
//! publishes to a real tansu broker from which `sysmon ingest` (the Linux
//! build) stores it, in clear text and over TLS (a TLS-terminating proxy with a
//! CA made by the test in front of tansu; a wrong CA fails with an error naming
//! the certificate check).
//!
//! The test builds the .exe itself (dev profile, in `target/windows-cross`, so
//! the outer cargo's lock is never waited on) unless `SYSMON_WINDOWS_EXE_DIR`
//! names a directory that already holds `sysmon-agent.exe` and
//! `bcryptprimitives.dll` (`scripts/build-windows.sh --wine-shim DIR`).
//! Wine, mingw-w64, cmake and the rustup target come from scripts/setup.sh; a
//! missing one is a loud failure naming the fix, never a skip.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use support::{logged_number, poll_until, stored_snapshots, Proc, SYSMON};
use sysmon_testkit::tansu::TansuBroker;
use sysmon_testkit::tls_proxy::{TestPki, TlsProxy};

/// What Wine 8 cannot provide, by collector: the only collector errors allowed.
/// Wine lists no volume through `FindFirstVolumeW` (so no `disk` I/O counters),
/// and its `GetIfTable2` rows have no link speed, which sysinfo's filter of
/// hardware interfaces drops (`network`).
const WINE_GAPS: &[&str] = &["disk", "network"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Wine loader for 64-bit programs.
fn wine() -> PathBuf {
    ["/usr/lib/wine/wine64", "/usr/bin/wine64", "/usr/bin/wine"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("wine not found: run scripts/setup.sh (apt-get install wine64)")
}

/// The directory holding `sysmon-agent.exe` and the test-only shim DLL (built
/// once per test process).
fn exe_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build_exe_dir).clone()
}

fn build_exe_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SYSMON_WINDOWS_EXE_DIR") {
        let d = PathBuf::from(d);
        if d.join("sysmon-agent.exe").is_file() && d.join("bcryptprimitives.dll").is_file() {
            return d;
        }
    }
    let cross = workspace().join("target/windows-cross");
    let out = cross.join("out");
    let status = Command::new(workspace().join("scripts/build-windows.sh"))
        .args(["--wine-shim", "--zip", out.to_str().unwrap()])
        .env("CARGO_TARGET_DIR", &cross)
        .env("SYSMON_WIN_PROFILE", "dev")
        .status()
        .expect("running scripts/build-windows.sh");
    assert!(
        status.success(),
        "scripts/build-windows.sh failed (run scripts/setup.sh for mingw-w64, cmake and the rustup target)"
    );
    // The worker zip: the .exe, its default config, the install script, the guide.
    let zip = out.join("sysmon-agent-windows-x86_64.zip");
    let listing = Command::new("python3")
        .args(["-m", "zipfile", "-l"])
        .arg(&zip)
        .output()
        .expect("python3");
    let listing = String::from_utf8_lossy(&listing.stdout);
    for f in [
        "sysmon-agent/sysmon-agent.exe",
        "sysmon-agent/agent.toml",
        "sysmon-agent/install-worker.ps1",
        "sysmon-agent/README-windows.md",
    ] {
        assert!(listing.contains(f), "{f} is not in {zip:?}:\n{listing}");
    }
    out
}

/// A Wine prefix of this target dir (created on first use, reused after).
fn prefix() -> PathBuf {
    let p = workspace().join("target/windows-cross/wineprefix");
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn wine_command(exe: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(wine());
    c.arg(exe)
        .args(args)
        .env("WINEPREFIX", prefix())
        .env("WINEDEBUG", "-all")
        // No Mono or Gecko install prompt on a fresh prefix; no display needed.
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env_remove("DISPLAY")
        .env("SYSMON_LOG", "info")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

fn run_once(exe: &Path) -> Output {
    wine_command(exe, &["--once", "--machine-id", "wine-once"])
        .output()
        .expect("running the agent under wine")
}

/// Ends this prefix's wineserver (and so any process left in it).
fn stop_wineserver() {
    let _ = Command::new("wineserver")
        .arg("-k")
        .env("WINEPREFIX", prefix())
        .status();
}

/// `published=N` from the agent's "agent exited" line, checking that nothing
/// was left undelivered.
fn published_count(log: &str) -> usize {
    let field = |name: &str| logged_number(log, "agent exited", name) as usize;
    let line = log.lines().rev().find(|l| l.contains("agent exited"));
    assert_eq!(field("undelivered"), 0, "{line:?}");
    assert_eq!(field("collected"), field("published"), "{line:?}");
    field("published")
}

/// Checks a `--once` snapshot from the Windows build: the legacy fields, the
/// absent ones, and the collector errors.
fn check_snapshot(stdout: &str) {
    let line = stdout.trim();
    let raw: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    // Every field of the legacy message is present with its type.
    for key in ["machine_id", "timestamp", "cpu_usage", "memory_usage"] {
        assert!(!raw[key].is_null(), "{key} missing: {raw}");
    }
    for (key, sub) in [
        ("disk_io", ["read", "write"]),
        ("network_io", ["sent", "recv"]),
    ] {
        for s in sub {
            assert!(raw[key][s].is_u64(), "{key}.{s} missing: {raw}");
        }
    }
    let snap = sysmon_core::decode(line.as_bytes())
        .unwrap_or_else(|e| panic!("the ingester's decoder rejects it ({e}): {line}"));
    assert_eq!(snap.machine_id, "wine-once");
    assert!(snap.hostname.as_deref().is_some_and(|h| !h.is_empty()));
    assert!((0.0..=100.0).contains(&snap.cpu_usage));
    assert!(!snap.cpu_per_core.is_empty(), "{line}");
    assert!(snap.memory_usage > 0.0 && snap.memory_usage <= 100.0);
    let mem = snap.memory.expect("memory");
    assert!(mem.total_bytes > 0 && mem.used_bytes <= mem.total_bytes);
    assert!(!snap.top_cpu_processes.is_empty() && !snap.top_mem_processes.is_empty());
    let me = snap
        .top_mem_processes
        .iter()
        .chain(&snap.top_cpu_processes)
        .find(|p| p.name.contains("sysmon-agent"));
    // Under Wine the listed processes are the prefix's (wineserver's children):
    // the agent itself is always one of the few.
    assert!(
        me.is_some(),
        "the agent is not among its own top processes: {line}"
    );
    assert!(snap.uptime_secs.is_some());
    // Drive letters (Wine: C: and Z:), with their space.
    assert!(
        snap.filesystems
            .iter()
            .any(|f| f.mount_point == "C:\\" && f.total_bytes > 0),
        "{line}"
    );
    // What Windows has no notion of is absent (null or left out), never zero.
    assert!(
        snap.load_avg.is_none() && raw["load_avg"].is_null(),
        "{raw}"
    );
    assert!(snap.pressure.is_none() && snap.tcp.is_none() && snap.open_files.is_none());
    assert!(snap.top_cpu_cgroups.is_empty() && snap.temperatures.is_empty());
    assert!(snap.network_errors.is_none());
    for p in snap.top_cpu_processes.iter().chain(&snap.top_mem_processes) {
        assert!(p.threads.is_none() && p.state.is_none() && p.open_fds.is_none());
        assert!(p.memory_bytes.is_some() && p.memory_percent.is_some());
    }
    // Errors name only what Wine cannot provide.
    let failed: Vec<&str> = snap
        .collector_errors
        .iter()
        .map(|e| e.collector.as_str())
        .collect();
    assert!(
        failed.iter().all(|c| WINE_GAPS.contains(c)),
        "collector errors beyond Wine's known gaps {WINE_GAPS:?}: {:?}",
        snap.collector_errors
    );
}

/// One Wine test at a time: they share the prefix, and each ends its wineserver.
fn wine_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn windows_agent_under_wine_samples_and_publishes_to_tansu_for_ingest() {
    let _wine = wine_lock();
    let dir = exe_dir();
    let exe = dir.join("sysmon-agent.exe");

    // 1. One snapshot on stdout.
    let out = run_once(&exe);
    assert!(
        out.status.success(),
        "sysmon-agent.exe --once failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    check_snapshot(&String::from_utf8_lossy(&out.stdout));

    // 2. --list-collectors: the Linux-only families are listed as off.
    let out = wine_command(&exe, &["--list-collectors"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for line in list.lines().filter(|l| {
        [
            "pressure",
            "tcp",
            "cgroups",
            "temperatures",
            "load",
            "disks",
        ]
        .iter()
        .any(|n| l.split_whitespace().next() == Some(n))
    }) {
        assert!(line.contains(" off "), "{line}");
    }

    // 3. Published to a real broker by the Windows build, stored by the Linux ingester.
    let broker = TansuBroker::start();
    let work = tempfile::tempdir().unwrap();
    publish_and_store(&exe, work.path(), &broker.bootstrap(), None, "wine-worker");
}

/// Kafka over TLS from the Windows build: a TLS-terminating proxy (a CA made
/// by the test) in front of tansu, which advertises only the proxy's port.
/// The `.exe`'s librdkafka and OpenSSL (cross-built from source) verify the
/// broker against `ssl.ca.location`, publish, and the Linux ingester (over TLS
/// too) stores every sample; with the wrong CA the agent says why nothing goes
/// out.
#[test]
fn windows_agent_under_wine_publishes_over_tls_and_rejects_a_wrong_ca() {
    let _wine = wine_lock();
    let exe = exe_dir().join("sysmon-agent.exe");
    let pki = TestPki::generate();
    let proxy = TlsProxy::start(&pki);
    let broker = TansuBroker::start_advertising(&proxy.url());
    proxy.forward_to(broker.port());
    let work = tempfile::tempdir().unwrap();
    // The Linux ingester's config, and the Windows agent's (Wine's Z: drive is /).
    let linux_config = work.path().join("ingest-tls.toml");
    std::fs::write(
        &linux_config,
        tls_options(&pki.ca_pem().display().to_string()),
    )
    .unwrap();
    let windows_config = |name: &str, ca: &Path| -> String {
        let path = work.path().join(name);
        std::fs::write(&path, tls_options(&wine_path(ca))).unwrap();
        wine_path(&path)
    };
    let good = windows_config("agent-tls.toml", &pki.ca_pem());
    let wrong = windows_config("agent-wrong-ca.toml", &pki.wrong_ca_pem());

    publish_and_store(
        &exe,
        work.path(),
        &proxy.bootstrap(),
        Some((linux_config.as_path(), good.as_str())),
        "wine-tls-worker",
    );
    assert!(
        proxy.handshakes() >= 2,
        "the clients did not go through TLS: {}",
        proxy.handshakes()
    );
    let failed_before = proxy.failed_handshakes();

    // The wrong CA: nothing is published, and the log says why.
    let log = work.path().join("wrong-ca.log");
    let mut agent = wine_command(
        &exe,
        &[
            "--config",
            &wrong,
            "--brokers",
            &proxy.bootstrap(),
            "--machine-id",
            "wine-wrong-ca",
            "--interval",
            "500ms",
        ],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let refused = poll_until(Duration::from_secs(120), || {
        agent_log().contains("cannot publish")
    });
    let _ = agent.kill();
    let _ = agent.wait();
    stop_wineserver();
    let text = agent_log();
    let warning = text
        .lines()
        .find(|l| l.contains("cannot publish"))
        .unwrap_or_default();
    assert!(
        refused && warning.contains("SSL") && warning.contains("certificate verify failed"),
        "the error does not name the certificate check: {warning}\n{text}"
    );
    assert!(proxy.failed_handshakes() > failed_before);
}

/// `[kafka.options]` for TLS with the CA file `ca` (docs/security.md).
fn tls_options(ca: &str) -> String {
    format!("[kafka.options]\n\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = '{ca}'\n")
}

/// A Linux path as the Windows program sees it under Wine (drive Z: is `/`).
fn wine_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// Runs the Windows agent under Wine publishing to `bootstrap` as `machine`
/// and a Linux `sysmon ingest` storing into SQLite, with `tls` = (the Linux
/// ingester's config, the agent's config as a Windows path) when the broker
/// speaks TLS; stops the agent with Ctrl+C (SIGINT) and checks that everything
/// it collected was published, and stored exactly once, in order.
fn publish_and_store(
    exe: &Path,
    work: &Path,
    bootstrap: &str,
    tls: Option<(&Path, &str)>,
    machine: &str,
) {
    let db = work.join(format!("{machine}.db"));
    let mut ingest_args: Vec<&str> = Vec::new();
    let mut agent_args: Vec<&str> = Vec::new();
    if let Some((linux, windows)) = tls {
        ingest_args.extend(["--config", linux.to_str().unwrap()]);
        agent_args.extend(["--config", windows]);
    }
    ingest_args.extend([
        "ingest",
        "--brokers",
        bootstrap,
        "--db",
        db.to_str().unwrap(),
        "--partitions",
        "1",
    ]);
    agent_args.extend([
        "--brokers",
        bootstrap,
        "--machine-id",
        machine,
        "--interval",
        "500ms",
    ]);
    let mut ingest = Proc::spawn(SYSMON, &ingest_args, work, &format!("ingest-{machine}"));
    ingest.wait_for_log("consumer group assignment", Duration::from_secs(60));
    let log = work.join(format!("{machine}.log"));
    let mut agent = wine_command(exe, &agent_args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let rows = |db: &Path| -> HashMap<String, usize> {
        let mut m = HashMap::new();
        if db.exists() {
            for s in stored_snapshots(db) {
                *m.entry(s.machine_id).or_insert(0) += 1;
            }
        }
        m
    };
    let enough = poll_until(Duration::from_secs(90), || {
        rows(&db).get(machine).copied().unwrap_or(0) >= 5
    });
    // SIGINT reaches the Windows program as Ctrl+C (Wine's console): the agent
    // stops sampling and delivers what it collected before exiting.
    let stopped = Command::new("kill")
        .args(["-INT", &agent.id().to_string()])
        .status()
        .unwrap()
        .success();
    let exited = poll_until(Duration::from_secs(30), || {
        agent.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = agent.kill();
    }
    let status = agent.wait().unwrap();
    stop_wineserver();
    assert!(
        enough,
        "the Windows agent's samples were not stored: rows {:?}\nagent log:\n{}\ningest log:\n{}",
        rows(&db),
        agent_log(),
        ingest.log()
    );
    assert!(
        stopped && exited && status.success(),
        "the agent did not stop cleanly on Ctrl+C ({status}):\n{}",
        agent_log()
    );
    let published = published_count(&agent_log());
    let all_stored = poll_until(Duration::from_secs(60), || {
        rows(&db).get(machine).copied().unwrap_or(0) >= published
    });
    ingest.signal("-TERM");
    assert!(
        ingest.wait(Duration::from_secs(30)).success(),
        "{}",
        ingest.log()
    );
    assert!(all_stored, "rows {:?}, published {published}", rows(&db));
    let snaps: Vec<_> = stored_snapshots(&db)
        .into_iter()
        .filter(|s| s.machine_id == machine)
        .collect();
    // Everything collected was published at the stop, and stored once.
    assert_eq!(snaps.len(), published, "{}", agent_log());
    assert!(snaps.len() >= 5);
    // In order, one interval apart, with the Windows collectors' fields.
    assert!(snaps.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    for s in &snaps {
        assert!(!s.top_cpu_processes.is_empty() && s.memory.is_some());
        assert!(s.load_avg.is_none());
    }
}
