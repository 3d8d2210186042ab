//! # sysmon-testkit
//!
//! Starts real service processes for tests, each on a free port in its own
//! temporary directory, and kills them on drop, so tests never share state and
//! `cargo test` is hermetic once the binaries are installed. A missing binary is
//! a loud failure with the command that installs it, never a silent skip.
//! [`tls_proxy`] puts TLS (a CA made per test) in front of a plain broker.

pub mod bench;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod redis_server;
pub mod tansu;
pub mod tls_proxy;
