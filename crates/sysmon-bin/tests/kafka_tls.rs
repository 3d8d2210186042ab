//! Kafka over TLS with real processes: a TLS-terminating proxy (rustls, a CA
//! made by the test) in front of a real tansu broker that advertises the
//! proxy's port, so every connection after the bootstrap comes back through
//! TLS. `sysmon-agent` and `sysmon ingest`, configured as docs/security.md says
//! (`[kafka.options]` `security.protocol = "SSL"`, `ssl.ca.location`), publish
//! and store every sample; `sysmon doctor` passes; a wrong CA fails with an
//! error that names the certificate check, and nothing gets through.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{logged_number, stored_snapshots, AGENT, SYSMON};
use sysmon_testkit::process::{poll_until, Proc};
use sysmon_testkit::tansu::TansuBroker;
use sysmon_testkit::tls_proxy::{TestPki, TlsProxy};

/// A config whose Kafka clients speak TLS and trust `ca` (docs/security.md).
fn tls_config(dir: &Path, name: &str, ca: &Path) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[kafka.options]\n\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = '{}'\n",
            ca.display()
        ),
    )
    .unwrap();
    path
}

fn rows_of(db: &Path, machine: &str) -> usize {
    if !db.exists() {
        return 0;
    }
    stored_snapshots(db)
        .iter()
        .filter(|s| s.machine_id == machine)
        .count()
}

#[test]
fn agent_and_ingest_over_tls_store_every_sample_and_a_wrong_ca_fails_clearly() {
    let pki = TestPki::generate();
    let proxy = TlsProxy::start(&pki);
    let broker = TansuBroker::start_advertising(&proxy.url());
    proxy.forward_to(broker.port());
    let dir = tempfile::tempdir().unwrap();
    let good = tls_config(dir.path(), "tls.toml", &pki.ca_pem());
    let wrong = tls_config(dir.path(), "wrong-ca.toml", &pki.wrong_ca_pem());
    let (good, wrong) = (good.to_str().unwrap(), wrong.to_str().unwrap());
    let bootstrap = proxy.bootstrap();

    // The setup check passes over TLS, round trip included.
    let doctor = |config: &str| {
        Command::new(SYSMON)
            .args(["--config", config, "doctor", "--brokers", &bootstrap])
            .output()
            .unwrap()
    };
    let ok = doctor(good);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success() && text.contains("all checks passed"),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.contains("round trip"), "{text}");

    // The ingester over TLS (the broker's metadata names only the TLS port).
    let db = dir.path().join("sysmon.db");
    let mut ingest = Proc::spawn(
        SYSMON,
        &[
            "--config",
            good,
            "ingest",
            "--brokers",
            &bootstrap,
            "--db",
            db.to_str().unwrap(),
            "--partitions",
            "1",
        ],
        dir.path(),
        "ingest",
    );
    ingest.wait_for_log("consumer group assignment", Duration::from_secs(60));

    // The agent over TLS: everything it collected is published and stored once.
    let mut agent = Proc::spawn(
        AGENT,
        &[
            "--config",
            good,
            "--brokers",
            &bootstrap,
            "--machine-id",
            "tls-worker",
            "--interval",
            "200ms",
        ],
        dir.path(),
        "agent",
    );
    let some = poll_until(Duration::from_secs(60), || rows_of(&db, "tls-worker") >= 5);
    agent.signal("-TERM");
    let status = agent.wait(Duration::from_secs(30));
    assert!(some, "agent:\n{}\ningest:\n{}", agent.log(), ingest.log());
    assert!(status.success(), "{}", agent.log());
    let log = agent.log();
    let published = logged_number(&log, "agent exited", "published") as usize;
    assert_eq!(
        logged_number(&log, "agent exited", "undelivered"),
        0,
        "{log}"
    );
    assert_eq!(
        published,
        logged_number(&log, "agent exited", "collected") as usize
    );
    let all = poll_until(Duration::from_secs(60), || {
        rows_of(&db, "tls-worker") >= published
    });
    assert!(all, "stored {} of {published}", rows_of(&db, "tls-worker"));
    assert_eq!(rows_of(&db, "tls-worker"), published);
    let handshakes = proxy.handshakes();
    assert!(
        handshakes >= 2,
        "the clients did not go through TLS: {handshakes}"
    );
    // (`sysmon doctor`'s TCP check opens and closes a connection: no handshake.)
    let failed_before = proxy.failed_handshakes();

    // A wrong CA: the agent keeps its samples and says why they cannot go out.
    let mut bad = Proc::spawn(
        AGENT,
        &[
            "--config",
            wrong,
            "--brokers",
            &bootstrap,
            "--machine-id",
            "wrong-ca-worker",
            "--interval",
            "200ms",
        ],
        dir.path(),
        "wrong-ca-agent",
    );
    bad.wait_for_log("cannot publish", Duration::from_secs(120));
    bad.signal("-TERM");
    let _ = bad.wait(Duration::from_secs(60));
    let log = bad.log();
    let warning = log
        .lines()
        .find(|l| l.contains("cannot publish"))
        .unwrap_or_default();
    assert!(
        warning.contains("SSL") && warning.contains("certificate verify failed"),
        "the error does not name the certificate check: {warning}\n{log}"
    );
    assert!(
        logged_number(&log, "agent exited", "published") == 0,
        "{log}"
    );
    assert!(proxy.failed_handshakes() > failed_before);

    // The setup check fails too, pointing at the TLS options (librdkafka's
    // certificate error reaches the agent's log, not the doctor's metadata
    // check, which only sees "Broker transport failure").
    let bad_doctor = doctor(wrong);
    let text = String::from_utf8_lossy(&bad_doctor.stdout);
    assert!(!bad_doctor.status.success(), "{text}");
    assert!(
        text.contains("[ FAIL ] metadata") && text.contains("TLS"),
        "{text}"
    );

    ingest.signal("-TERM");
    assert!(
        ingest.wait(Duration::from_secs(30)).success(),
        "{}",
        ingest.log()
    );
    assert_eq!(rows_of(&db, "wrong-ca-worker"), 0);
    assert_eq!(logged_number(&ingest.log(), "ingest exited", "rejected"), 0);
}
