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

/// Splits sysmon's `sslrootcert=FILE` off the URL (tokio-postgres rejects
/// parameters it does not know).
fn split_root_cert(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut root = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| match p.split_once('=') {
            Some(("sslrootcert", v)) => {
                root = Some(v.to_string());
                false
            }
            _ => true,
        })
        .collect();
    if kept.is_empty() {
        (base.to_string(), root)
    } else {
        (format!("{base}?{}", kept.join("&")), root)
    }
}

fn tls_config(root_cert: Option<&str>) -> Result<rustls::ClientConfig, SinksError> {
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SinksError::Config(format!("postgres TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Parses the URL and finds the password; see [`PostgresConfig`].
pub(crate) fn connect_config(config: &PostgresConfig) -> Result<Connector, SinksError> {
    config.check()?;
    let (url, root_cert) = split_root_cert(&config.url);
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
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("sysmon");
    }
    let tls = MakeRustlsConnect::new(tls_config(root_cert.as_deref())?);
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
    fn sslrootcert_is_split_off() {
        assert_eq!(
            split_root_cert("postgres://h/d?sslmode=require&sslrootcert=/ca.pem"),
            ("postgres://h/d?sslmode=require".into(), Some("/ca.pem".into()))
        );
        assert_eq!(
            split_root_cert("postgres://h/d?sslrootcert=ca.pem"),
            ("postgres://h/d".into(), Some("ca.pem".into()))
        );
        assert_eq!(split_root_cert("postgres://h/d"), ("postgres://h/d".into(), None));
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
        assert_eq!(connect_config(&c).unwrap().pg.get_password(), Some(&b"inurl"[..]));
    }
}
