//! Connecting: the URL (minus sysmon's own `sslrootcert` parameter) parsed by
//! tokio-postgres, the password filled in from a file or `PGPASSWORD`, TLS
//! through rustls, and a deadpool pool of clients.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::config::PostgresConfig;
use crate::error::SinksError;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a pool checkout waits for a free or new connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`connect_config`] makes of a [`PostgresConfig`].
pub(crate) struct Connector {
    /// The parsed connection settings, password included.
    pub(crate) pg: tokio_postgres::Config,
    /// The TLS connector (used when `sslmode` asks for TLS).
    pub(crate) tls: MakeRustlsConnect,
}

/// TLS as the URL's `sslmode` asks, with libpq's meanings: `disable`;
/// `prefer` (the default) and `require` encrypt without authenticating the
/// server; `verify-ca` and `verify-full` also check its certificate against
/// the system's roots and `sslrootcert` (both check the host name too: rustls
/// has no mode that skips it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    Disable,
    Prefer,
    Require,
    Verify,
}

/// Takes `sslmode` and `sslrootcert` off the URL (tokio-postgres knows
/// neither `verify-full` nor `sslrootcert`).
fn split_tls_params(url: &str) -> Result<(String, TlsMode, Option<String>), SinksError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), TlsMode::Prefer, None));
    };
    let mut root = None;
    let mut mode = TlsMode::Prefer;
    let mut kept = Vec::new();
    for p in query.split('&') {
        match p.split_once('=') {
            Some(("sslrootcert", v)) => root = Some(v.to_string()),
            Some(("sslmode", v)) => {
                mode = match v {
                    "disable" => TlsMode::Disable,
                    "allow" | "prefer" => TlsMode::Prefer,
                    "require" => TlsMode::Require,
                    "verify-ca" | "verify-full" => TlsMode::Verify,
                    other => {
                        return Err(SinksError::Config(format!(
                            "postgres sslmode {other:?} is not one of disable, prefer, \
                             require, verify-ca, verify-full"
                        )))
                    }
                }
            }
            _ => kept.push(p),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, mode, root))
}

/// Accepts any server certificate (libpq's `prefer` and `require`), still
/// checking that the server holds the certificate's key.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(mode: TlsMode, root_cert: Option<&str>) -> Result<rustls::ClientConfig, SinksError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SinksError::Config(format!("postgres TLS: {e}")))?;
    if mode != TlsMode::Verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A malformed system certificate is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = root_cert {
        let pem = std::fs::read(path).map_err(|source| SinksError::Io {
            context: format!("reading postgres sslrootcert {path}"),
            source,
        })?;
        let mut added = 0;
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let cert: rustls::pki_types::CertificateDer<'static> = cert.map_err(|e| {
                SinksError::Config(format!("postgres sslrootcert {path} is not PEM: {e}"))
            })?;
            roots
                .add(cert)
                .map_err(|e| SinksError::Config(format!("postgres sslrootcert {path}: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(SinksError::Config(format!(
                "postgres sslrootcert {path} holds no certificate"
            )));
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Parses the URL and finds the password; see [`PostgresConfig`].
pub(crate) fn connect_config(config: &PostgresConfig) -> Result<Connector, SinksError> {
    config.check()?;
    let (url, mode, root_cert) = split_tls_params(&config.url)?;
    let mut pg: tokio_postgres::Config = url.parse().map_err(|e| {
        SinksError::Config(format!(
            "postgres url {} is not valid: {e}",
            config.redacted_url()
        ))
    })?;
    if pg.get_password().is_none() {
        if let Some(path) = &config.password_file {
            let text = std::fs::read_to_string(path).map_err(|source| SinksError::Io {
                context: format!("reading the postgres password file {}", path.display()),
                source,
            })?;
            let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
            if line.is_empty() {
                return Err(SinksError::Config(format!(
                    "the postgres password file {} is empty",
                    path.display()
                )));
            }
            pg.password(line);
        } else if let Ok(p) = std::env::var("PGPASSWORD") {
            if !p.is_empty() {
                pg.password(p);
            }
        }
    }
    pg.ssl_mode(match mode {
        TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
        TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        TlsMode::Require | TlsMode::Verify => tokio_postgres::config::SslMode::Require,
    });
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("sysmon");
    }
    // sysmon's statements are short; the planner's cost estimates for the
    // series queries (a lateral scan per gap) cross jit_above_cost, and
    // compiling them took 140 ms of a 10 ms query. A URL's own `options`
    // naming jit wins.
    let options = pg.get_options().unwrap_or("").to_string();
    if !options.contains("jit") {
        pg.options(format!("{options} -c jit=off").trim_start());
    }
    let tls = MakeRustlsConnect::new(tls_config(mode, root_cert.as_deref())?);
    Ok(Connector { pg, tls })
}

/// A pool of `config.pool_size` connections (opened lazily).
pub(crate) fn pool(config: &PostgresConfig, connector: &Connector) -> Result<Pool, SinksError> {
    let manager = Manager::from_config(
        connector.pg.clone(),
        connector.tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CHECKOUT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| SinksError::Config(format!("postgres pool: {e}")))
}

/// One connection outside the pool (the maintenance lock holds its session).
pub(crate) async fn connect_one(
    connector: &Connector,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = connector.pg.connect(connector.tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_split_off() {
        assert_eq!(
            split_tls_params("postgres://h/d?sslmode=verify-full&sslrootcert=/ca.pem&x=1").unwrap(),
            (
                "postgres://h/d?x=1".into(),
                TlsMode::Verify,
                Some("/ca.pem".into())
            )
        );
        assert_eq!(
            split_tls_params("postgres://h/d?sslmode=require").unwrap(),
            ("postgres://h/d".into(), TlsMode::Require, None)
        );
        assert_eq!(
            split_tls_params("postgres://h/d").unwrap(),
            ("postgres://h/d".into(), TlsMode::Prefer, None)
        );
        assert!(split_tls_params("postgres://h/d?sslmode=maybe").is_err());
    }

    #[test]
    fn jit_is_off_unless_the_url_says_otherwise() {
        let options = |url: &str| {
            let c = PostgresConfig {
                url: url.into(),
                ..PostgresConfig::default()
            };
            connect_config(&c)
                .unwrap()
                .pg
                .get_options()
                .map(str::to_string)
        };
        assert_eq!(
            options("postgresql://u@h/db").as_deref(),
            Some("-c jit=off")
        );
        assert_eq!(
            options("postgresql://u@h/db?options=-c%20work_mem%3D8MB").as_deref(),
            Some("-c work_mem=8MB -c jit=off")
        );
        assert_eq!(
            options("postgresql://u@h/db?options=-c%20jit%3Don").as_deref(),
            Some("-c jit=on")
        );
    }

    #[test]
    fn password_file_fills_in_a_missing_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let c = PostgresConfig {
            url: "postgres://u@127.0.0.1/d".into(),
            password_file: Some(file),
            ..PostgresConfig::default()
        };
        let conn = connect_config(&c).unwrap();
        assert_eq!(conn.pg.get_password(), Some(&b"s3cret"[..]));
        // A password in the URL wins.
        let c = PostgresConfig {
            url: "postgres://u:inurl@127.0.0.1/d".into(),
            ..c
        };
        assert_eq!(
            connect_config(&c).unwrap().pg.get_password(),
            Some(&b"inurl"[..])
        );
    }
}
