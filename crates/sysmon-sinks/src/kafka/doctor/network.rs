//! The network probes: parse the bootstrap addresses, resolve them and open a
//! TCP connection, each failure explained with its fix.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sysmon_core::doctor::{CheckStatus, DoctorReport};

/// Per-step network timeout.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// A `host:port` as the user wrote it.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub(super) host: String,
    pub(super) port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let s = s.trim();
    let s = s
        .split_once("://")
        .map_or(s, |(_, rest)| rest)
        .trim_end_matches('/');
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("`{s}` is not HOST:PORT"))?;
        (h, p)
    } else {
        s.rsplit_once(':')
            .ok_or_else(|| format!("`{s}` has no port (write HOST:PORT, e.g. {s}:9092)"))?
    };
    if host.is_empty() {
        return Err(format!("`{s}` has no host name"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` in `{s}` is not a port number"))?;
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

pub(super) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

pub(super) async fn resolve(e: &Endpoint) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(
        STEP_TIMEOUT,
        tokio::net::lookup_host((e.host.as_str(), e.port)),
    )
    .await
    {
        Ok(Ok(addrs)) => {
            let v: Vec<SocketAddr> = addrs.collect();
            if v.is_empty() {
                Err("the name resolves to no address".into())
            } else {
                Ok(v)
            }
        }
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no DNS answer within {STEP_TIMEOUT:?}")),
    }
}

/// Why a TCP connection failed, and the plain-words fix.
fn connect_failure(addr: &SocketAddr, err: &str, timed_out: bool) -> (String, String) {
    if timed_out {
        (
            format!("{addr}: no answer within {STEP_TIMEOUT:?}"),
            format!(
                "a firewall drops the traffic or the host is down: make sure the master is up \
                 and TCP port {} is open to this machine",
                addr.port()
            ),
        )
    } else if err.contains("refused") {
        (
            format!("{addr}: connection refused (nothing listens on that port)"),
            format!(
                "start the broker on the master, or fix the port (Kafka's usual port is 9092); \
                 if the broker runs, make it listen on an address other machines can reach \
                 (not only 127.0.0.1), e.g. tansu --listener-url tcp://0.0.0.0:{}",
                addr.port()
            ),
        )
    } else {
        (
            format!("{addr}: {err}"),
            "check the address and the network path between this machine and the broker".into(),
        )
    }
}

pub(super) async fn tcp_connect(
    addrs: &[SocketAddr],
) -> Result<(SocketAddr, Duration), (String, String)> {
    let mut last = None;
    for addr in addrs {
        let started = Instant::now();
        match tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok((*addr, started.elapsed())),
            Ok(Err(e)) => last = Some(connect_failure(addr, &e.to_string(), false)),
            Err(_) => last = Some(connect_failure(addr, "", true)),
        }
    }
    Err(last.unwrap_or_else(|| {
        (
            "no address to connect to".into(),
            "check the address".into(),
        )
    }))
}

/// Step 1: each bootstrap address resolves and accepts TCP connections.
/// Returns what was dialled (with its addresses), or `None` when nothing is
/// reachable (the rest of the report then says why it was skipped).
pub(super) async fn check_bootstrap(
    report: &mut DoctorReport,
    brokers: &str,
) -> Option<Vec<(Endpoint, Vec<SocketAddr>)>> {
    let endpoints: Vec<Result<Endpoint, String>> = brokers
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(parse_endpoint)
        .collect();
    if endpoints.is_empty() {
        report.push_fix(
            "brokers",
            CheckStatus::Fail,
            "no broker address given",
            "pass --brokers HOST:PORT[,HOST:PORT...] (the master's address, port 9092 by default)",
        );
        return None;
    }
    let mut dialled: Vec<(Endpoint, Vec<SocketAddr>)> = Vec::new();
    let mut reachable = 0;
    for ep in endpoints {
        let ep = match ep {
            Ok(ep) => ep,
            Err(e) => {
                report.push_fix(
                    "brokers",
                    CheckStatus::Fail,
                    e,
                    "write each broker as HOST:PORT, comma-separated, e.g. 10.0.0.5:9092",
                );
                continue;
            }
        };
        let addrs = match resolve(&ep).await {
            Ok(a) => {
                let list: Vec<String> = a.iter().map(|x| x.ip().to_string()).collect();
                report.push(
                    format!("dns {}", ep.host),
                    CheckStatus::Ok,
                    format!("resolves to {}", list.join(", ")),
                );
                a
            }
            Err(e) => {
                report.push_fix(
                    format!("dns {}", ep.host),
                    CheckStatus::Fail,
                    format!("cannot resolve `{}`: {e}", ep.host),
                    "check the spelling, this machine's DNS or /etc/hosts, or use the master's \
                     IP address instead of its name",
                );
                dialled.push((ep, Vec::new()));
                continue;
            }
        };
        match tcp_connect(&addrs).await {
            Ok((addr, took)) => {
                reachable += 1;
                report.push(
                    format!("tcp {ep}"),
                    CheckStatus::Ok,
                    format!("connected to {addr} in {} ms", took.as_millis()),
                );
            }
            Err((detail, fix)) => {
                report.push_fix(format!("tcp {ep}"), CheckStatus::Fail, detail, fix)
            }
        }
        dialled.push((ep, addrs));
    }
    if reachable == 0 {
        for name in ["metadata", "topic", "round trip"] {
            report.push(name, CheckStatus::Skipped, "no broker address is reachable");
        }
        return None;
    }
    Some(dialled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_helpful_errors() {
        let e = parse_endpoint("kafka.example:9092").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("kafka.example", 9092));
        let e = parse_endpoint("tcp://10.0.0.5:9093/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("10.0.0.5", 9093));
        let e = parse_endpoint("[::1]:9092").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9092));
        assert_eq!(e.to_string(), "[::1]:9092");
        assert!(parse_endpoint("kafka").unwrap_err().contains("no port"));
        assert!(parse_endpoint("kafka:x")
            .unwrap_err()
            .contains("not a port"));
        assert!(is_loopback_host("localhost") && is_loopback_host("127.0.0.2"));
        assert!(!is_loopback_host("10.0.0.5"));
    }
}
