//! Credentials and TLS of the Redis sink and store against real redis-server
//! processes: ACL users and passwords from the URL, the `[redis]` config or
//! `RedisOptions`; `rediss://` with a private CA (`ca_cert`) and with client
//! certificates (`client_cert`/`client_key`); clear errors for wrong
//! passwords and bad certificate files. Certificates are generated per test
//! (rcgen).

mod redis_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use redis_support::*;
use sysmon_core::config::RedisConfig;
use sysmon_core::{Sink, SnapshotStore};
use sysmon_sinks::redis::{RedisOptions, RedisSink, RedisStore};
use sysmon_testkit::redis_server::{RedisServer, TlsFiles};

const HOUR: Duration = Duration::from_secs(3600);

/// A server whose default user is off and whose user `ingest` has password
/// `s3cret` and every permission.
/// Also user `narrow` (password `pw`) limited to the keys and channel under
/// `a2:` and the command categories docs/redis-layout.md names.
fn acl_server() -> RedisServer {
    RedisServer::start_with_args(&[
        "--user",
        "default",
        "off",
        "--user",
        "ingest",
        "on",
        ">s3cret",
        "~*",
        "&*",
        "+@all",
        "--user",
        "narrow",
        "on",
        ">pw",
        "~a2:*",
        "&a2:events",
        "+@read",
        "+@write",
        "+@scripting",
        "+@pubsub",
        "+@connection",
    ])
}

fn plain_url(server: &RedisServer) -> String {
    format!("redis://127.0.0.1:{}/0", server.port())
}

/// Writes one batch with `sink` and reads it back through `store`.
async fn round_trip(sink: &RedisSink, store: &RedisStore) {
    let mut machines = fleet(2);
    let b = batches(&mut machines, now(), 1, 1.0, 2);
    sink.write(b[0].clone()).await.unwrap();
    assert_eq!(store.latest("m01").await.unwrap().as_ref(), Some(&b[0][1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_and_password_from_the_url_work() {
    let server = acl_server();
    let url = format!("redis://ingest:s3cret@127.0.0.1:{}/0", server.port());
    let config = redis_config(&url, "a1:", HOUR);
    let sink = RedisSink::connect_with(&config, quick_options())
        .await
        .unwrap();
    let store = RedisStore::connect_with(&config, &quick_options())
        .await
        .unwrap();
    round_trip(&sink, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_and_password_from_the_config_work_and_override_the_url() {
    let server = acl_server();
    // Nothing in the URL: the config's username and password.
    let config = RedisConfig {
        username: Some("ingest".into()),
        password: Some("s3cret".into()),
        ..redis_config(&plain_url(&server), "a2:", HOUR)
    };
    let sink = RedisSink::connect_with(&config, quick_options())
        .await
        .unwrap();
    assert!(sink.is_connected());
    let store = RedisStore::connect_with(&config, &quick_options())
        .await
        .unwrap();
    round_trip(&sink, &store).await;
    // The live feed's pub/sub connection uses the same credentials.
    let ps = store.subscribe_events().await;
    assert!(ps.is_ok(), "{:?}", ps.err());

    // A user limited to the prefix and the documented command categories.
    let narrow = RedisConfig {
        username: Some("narrow".into()),
        password: Some("pw".into()),
        ..redis_config(&plain_url(&server), "a2:", HOUR)
    };
    let sink = RedisSink::connect_with(&narrow, quick_options())
        .await
        .unwrap();
    let store = RedisStore::connect_with(&narrow, &quick_options())
        .await
        .unwrap();
    round_trip(&sink, &store).await;
    assert!(store.subscribe_events().await.is_ok());
    assert_eq!(sink.counters().write_failures, 0);

    // A stale password in the URL, the right one in the config: the config wins.
    let stale = format!("redis://ingest:old@127.0.0.1:{}/0", server.port());
    let config = RedisConfig {
        password: Some("s3cret".into()),
        ..redis_config(&stale, "a2:", HOUR)
    };
    let store = RedisStore::connect_with(&config, &quick_options())
        .await
        .unwrap();
    assert!(store.latest("m01").await.unwrap().is_some());

    // RedisOptions override the config (programs that embed the sink).
    let config = RedisConfig {
        username: Some("ingest".into()),
        password: Some("wrong".into()),
        ..redis_config(&plain_url(&server), "a2:", HOUR)
    };
    let options = RedisOptions {
        password: Some("s3cret".into()),
        ..quick_options()
    };
    RedisStore::connect_with(&config, &options).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_startup_error_that_never_shows_the_password() {
    let server = acl_server();
    let config = RedisConfig {
        username: Some("ingest".into()),
        password: Some("n0pe-pw".into()),
        ..redis_config(&plain_url(&server), "a3:", HOUR)
    };
    for e in [
        RedisSink::connect_with(&config, quick_options())
            .await
            .err()
            .expect("a wrong password must fail the sink")
            .to_string(),
        RedisStore::connect_with(&config, &quick_options())
            .await
            .expect_err("a wrong password must fail the store")
            .to_string(),
    ] {
        assert!(
            e.contains("refused") && e.contains("redis.password") && !e.contains("n0pe-pw"),
            "{e}"
        );
    }
    // No password at all against a server that wants one.
    let e = RedisSink::connect_with(
        &redis_config(&plain_url(&server), "a3:", HOUR),
        quick_options(),
    )
    .await
    .err()
    .expect("no password must fail")
    .to_string();
    assert!(e.contains("redis.username"), "{e}");
    // And the config's Debug never shows it either.
    assert!(!format!("{config:?}").contains("n0pe-pw"));

    // `requirepass` (the default user's password) from the config.
    let server = RedisServer::start_with_args(&["--requirepass", "s3cret"]);
    let config = RedisConfig {
        password: Some("s3cret".into()),
        ..redis_config(&plain_url(&server), "a3:", HOUR)
    };
    RedisSink::connect_with(&config, quick_options())
        .await
        .unwrap();
    let config = RedisConfig {
        password: Some("n0pe-pw".into()),
        ..config
    };
    let e = RedisSink::connect_with(&config, quick_options())
        .await
        .err()
        .expect("a wrong requirepass must fail")
        .to_string();
    assert!(e.contains("refused") && !e.contains("n0pe-pw"), "{e}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM
/// files in `dir`.
struct Pki {
    server: TlsFiles,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    // Distinct subject names: OpenSSL (the server's side) takes a certificate
    // whose subject equals its issuer's for self-signed.
    let params = |sans: Vec<String>, cn: &str| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = params(Vec::new(), "sysmon test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = params(
        vec!["127.0.0.1".to_string(), "localhost".to_string()],
        "redis test server",
    )
    .signed_by(&key, &issuer)
    .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = params(vec!["sysmon-ingest".to_string()], "sysmon-ingest")
        .signed_by(&client_key, &issuer)
        .unwrap();
    let files = Pki {
        server: TlsFiles {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca: dir.join("ca.pem"),
        },
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    std::fs::write(&files.server.cert, cert.pem()).unwrap();
    std::fs::write(&files.server.key, key.serialize_pem()).unwrap();
    std::fs::write(&files.server.ca, ca.pem()).unwrap();
    std::fs::write(&files.client_cert, client.pem()).unwrap();
    std::fs::write(&files.client_key, client_key.serialize_pem()).unwrap();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_private_ca_from_the_config_works_and_fails_clearly_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let server = RedisServer::start_tls(&pki.server);
    assert!(server.url().starts_with("rediss://"));

    // Trusting the private CA: writes, reads and the live feed go over TLS.
    let config = RedisConfig {
        ca_cert: Some(pki.server.ca.clone()),
        ..redis_config(&server.url(), "t1:", HOUR)
    };
    let sink = RedisSink::connect_with(&config, quick_options())
        .await
        .unwrap();
    assert!(sink.is_connected());
    let store = RedisStore::connect_with(&config, &quick_options())
        .await
        .unwrap();
    round_trip(&sink, &store).await;
    let ps = store.subscribe_events().await;
    assert!(ps.is_ok(), "{:?}", ps.err());
    // The CA given through RedisOptions works the same.
    let options = RedisOptions {
        ca_cert: Some(pki.server.ca.clone()),
        ..quick_options()
    };
    RedisStore::connect_with(&redis_config(&server.url(), "t1:", HOUR), &options)
        .await
        .unwrap();

    // Without the CA (the system's trust store): refused, loudly (a
    // configuration mistake, not an outage), naming the key to set.
    let e = RedisSink::connect_with(&redis_config(&server.url(), "t1:", HOUR), quick_options())
        .await
        .err()
        .expect("an untrusted certificate must not connect")
        .to_string();
    assert!(
        e.contains("certificate") && e.contains("redis.ca_cert"),
        "{e}"
    );

    // TLS to a plain server: no TLS handshake completes, so the sink is never
    // connected and writes fail fast (it cannot tell this from an outage).
    let plain = RedisServer::start();
    let tls_url = plain.url().replace("redis://", "rediss://");
    let config = RedisConfig {
        ca_cert: Some(pki.server.ca.clone()),
        ..redis_config(&tls_url, "t1:", HOUR)
    };
    match RedisSink::connect_with(&config, quick_options()).await {
        Err(e) => assert!(e.to_string().contains("TLS"), "{e}"),
        Ok(s) => {
            assert!(!s.is_connected());
            let mut machines = fleet(1);
            let b = batches(&mut machines, now(), 1, 1.0, 1);
            assert!(s.write(b[0].clone()).await.is_err());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_client_certificates_and_acl_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let server = RedisServer::start_tls_with_args(
        &pki.server,
        &[
            "--tls-auth-clients",
            "yes",
            "--user",
            "default",
            "off",
            "--user",
            "ingest",
            "on",
            ">s3cret",
            "~*",
            "&*",
            "+@all",
        ],
    );
    let config = RedisConfig {
        username: Some("ingest".into()),
        password: Some("s3cret".into()),
        ca_cert: Some(pki.server.ca.clone()),
        client_cert: Some(pki.client_cert.clone()),
        client_key: Some(pki.client_key.clone()),
        ..redis_config(&server.url(), "t2:", HOUR)
    };
    let sink = RedisSink::connect_with(&config, quick_options())
        .await
        .unwrap();
    assert!(sink.is_connected());
    let store = RedisStore::connect_with(&config, &quick_options())
        .await
        .unwrap();
    round_trip(&sink, &store).await;

    // Without the client certificate the server refuses the handshake (with
    // TLS 1.3 the client learns it at its first command): a configuration
    // error naming the keys to set, or, should the server just hang up, never
    // a working connection.
    let no_client_cert = RedisConfig {
        client_cert: None,
        client_key: None,
        ..config.clone()
    };
    match RedisSink::connect_with(&no_client_cert, quick_options()).await {
        Err(e) => assert!(e.to_string().contains("redis.client_cert"), "{e}"),
        Ok(s) => {
            assert!(!s.is_connected());
            let mut machines = fleet(1);
            let b = batches(&mut machines, now(), 1, 1.0, 1);
            assert!(s.write(b[0].clone()).await.is_err());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_or_bad_pem_files_are_clear_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    // No server needed: the files are checked before any connection.
    let url = "rediss://127.0.0.1:1/0";
    let with = |ca: Option<PathBuf>, cert: Option<PathBuf>, key: Option<PathBuf>| RedisConfig {
        ca_cert: ca,
        client_cert: cert,
        client_key: key,
        ..redis_config(url, "t3:", HOUR)
    };
    async fn error(config: &RedisConfig) -> String {
        RedisSink::connect_with(config, quick_options())
            .await
            .err()
            .expect("a bad file must be an error")
            .to_string()
    }

    let missing = dir.path().join("nowhere.pem");
    let e = error(&with(Some(missing.clone()), None, None)).await;
    assert!(
        e.contains("redis.ca_cert") && e.contains(&*missing.to_string_lossy()),
        "{e}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let e = error(&with(Some(garbage.clone()), None, None)).await;
    assert!(
        e.contains("redis.ca_cert") && e.contains("no certificate"),
        "{e}"
    );

    let broken = dir.path().join("broken.pem");
    let ca = std::fs::read_to_string(&pki.server.ca).unwrap();
    let cut = ca.len() / 2;
    std::fs::write(
        &broken,
        format!("{}\n-----END CERTIFICATE-----\n", &ca[..cut]),
    )
    .unwrap();
    let e = error(&with(Some(broken), None, None)).await;
    assert!(e.contains("redis.ca_cert"), "{e}");

    // A certificate where the key belongs.
    let e = error(&with(
        Some(pki.server.ca.clone()),
        Some(pki.client_cert.clone()),
        Some(pki.client_cert.clone()),
    ))
    .await;
    assert!(
        e.contains("redis.client_key") && e.contains("private key"),
        "{e}"
    );

    // Half a client identity, or TLS files with a plain URL.
    let e = error(&with(None, Some(pki.client_cert.clone()), None)).await;
    assert!(e.contains("client_key"), "{e}");
    let e = error(&RedisConfig {
        ca_cert: Some(pki.server.ca.clone()),
        ..redis_config("redis://127.0.0.1:1/0", "t3:", HOUR)
    })
    .await;
    assert!(e.contains("rediss://"), "{e}");
}
