//! A TLS-terminating TCP proxy for tests, with its own private CA.
//!
//! tansu speaks plain TCP only; a Kafka deployment with TLS puts the TLS
//! listener on the broker or in front of it. [`TlsProxy`] is the latter: it
//! accepts TLS (rustls, a server certificate for `127.0.0.1` and `localhost`
//! signed by a [`TestPki`] CA made for the test) and forwards the decrypted
//! bytes to a plain upstream port. A broker that advertises the proxy's port
//! ([`crate::tansu::TansuBroker::start_advertising`] with [`TlsProxy::url`])
//! sends every client back through the proxy after the bootstrap, so nothing
//! reaches the broker in clear text.
//!
//! [`TlsProxy::handshakes`] and [`TlsProxy::failed_handshakes`] count what the
//! proxy saw: a test can prove that its clients really spoke TLS, and that a
//! client with the wrong CA never completed a handshake.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A private CA and a server certificate it signed, the CA as a PEM file, and a
/// second CA that signed nothing (a client trusting it must fail).
pub struct TestPki {
    /// The directory holding the PEM files (deleted on drop).
    dir: tempfile::TempDir,
    server_cert: CertificateDer<'static>,
    server_key: PrivatePkcs8KeyDer<'static>,
}

impl TestPki {
    /// Generates a CA ("sysmon test CA"), a server certificate for
    /// `127.0.0.1` and `localhost` signed by it, and an unrelated CA
    /// ("sysmon wrong CA"), and writes `ca.pem`, `server.pem`, `server.key`
    /// and `wrong-ca.pem` into a fresh temporary directory.
    pub fn generate() -> TestPki {
        let dir = tempfile::Builder::new()
            .prefix("sysmon-pki-")
            .tempdir()
            .expect("creating a temporary directory for the test PKI");
        // Distinct subject names: OpenSSL (librdkafka's side) takes a
        // certificate whose subject equals its issuer's for self-signed.
        let params = |sans: Vec<String>, cn: &str| {
            let mut p = CertificateParams::new(sans).expect("certificate parameters");
            p.distinguished_name.push(DnType::CommonName, cn);
            p
        };
        let ca = |cn: &str| {
            let key = KeyPair::generate().expect("generating a CA key");
            let mut p = params(Vec::new(), cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = p.self_signed(&key).expect("self-signing the CA");
            (cert, Issuer::new(p, key))
        };
        let (ca_cert, issuer) = ca("sysmon test CA");
        let (wrong_ca, _) = ca("sysmon wrong CA");
        let key = KeyPair::generate().expect("generating the server key");
        let cert = params(
            vec!["127.0.0.1".to_string(), "localhost".to_string()],
            "sysmon test broker",
        )
        .signed_by(&key, &issuer)
        .expect("signing the server certificate");
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem)
                .unwrap_or_else(|e| panic!("writing {name}: {e}"))
        };
        write("ca.pem", ca_cert.pem());
        write("wrong-ca.pem", wrong_ca.pem());
        write("server.pem", cert.pem());
        write("server.key", key.serialize_pem());
        TestPki {
            server_cert: cert.der().clone(),
            server_key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            dir,
        }
    }

    /// The CA certificate that signed the server's (`ssl.ca.location`).
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA certificate that signed nothing the server presents.
    pub fn wrong_ca_pem(&self) -> PathBuf {
        self.dir.path().join("wrong-ca.pem")
    }

    /// The directory of the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// A TLS listener on `127.0.0.1` forwarding to a plain upstream port; stopped
/// (with every connection) on drop.
pub struct TlsProxy {
    port: u16,
    upstream: Arc<AtomicU16>,
    counters: Arc<Counters>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TlsProxy {
    /// Starts listening at once on a free port with `pki`'s server
    /// certificate. Until [`forward_to`](Self::forward_to) names the upstream,
    /// connections are closed after the handshake.
    pub fn start(pki: &TestPki) -> TlsProxy {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![pki.server_cert.clone()],
                PrivateKeyDer::Pkcs8(pki.server_key.clone_key()),
            )
            .expect("the test server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tls-proxy")
            .enable_all()
            .build()
            .expect("a tokio runtime for the TLS proxy");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the TLS proxy on 127.0.0.1");
        let port = listener.local_addr().expect("the proxy's address").port();
        let upstream = Arc::new(AtomicU16::new(0));
        let counters = Arc::new(Counters::default());
        let (up, cnt) = (upstream.clone(), counters.clone());
        runtime.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    // Out of file descriptors, say: try again shortly.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let (acceptor, up, cnt) = (acceptor.clone(), up.clone(), cnt.clone());
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(client).await {
                        Ok(s) => {
                            cnt.ok.fetch_add(1, Ordering::Relaxed);
                            s
                        }
                        Err(_) => {
                            cnt.failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    };
                    let port = up.load(Ordering::Relaxed);
                    if port == 0 {
                        return;
                    }
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    let Ok(mut plain) = tokio::net::TcpStream::connect(addr).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsProxy {
            port,
            upstream,
            counters,
            runtime: Some(runtime),
        }
    }

    /// Forwards every connection accepted from now on to `127.0.0.1:port`.
    pub fn forward_to(&self, port: u16) {
        self.upstream.store(port, Ordering::Relaxed);
    }

    /// The TLS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `tcp://127.0.0.1:PORT`, for a broker's advertised listener.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> u64 {
        self.counters.ok.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed so far (a client rejecting the certificate,
    /// or one speaking plain Kafka to the TLS port).
    pub fn failed_handshakes(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
