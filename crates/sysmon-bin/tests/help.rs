//! `--help` never prints the value of a secret-bearing environment variable
//! (a Redis or PostgreSQL URL with its password, the dashboard's token), while it
//! still names the variable.

mod support;

use std::process::Command;

use support::SYSMON;

#[test]
fn help_names_secret_env_vars_but_never_prints_their_values() {
    for sub in ["ingest", "dashboard", "standalone", "query", "doctor"] {
        let out = Command::new(SYSMON)
            .args([sub, "--help"])
            .env("SYSMON_REDIS", "redis://:hunter2-redis@cache:6379/0")
            .env("SYSMON_AUTH_TOKEN", "hunter2-token")
            .env("SYSMON_DB", "postgresql://sysmon:hunter2-db@db/sysmon")
            .output()
            .unwrap();
        assert!(out.status.success(), "{sub} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("hunter2"),
            "{sub} --help prints a secret:\n{text}"
        );
        assert!(
            text.contains("SYSMON_REDIS") || text.contains("SYSMON_AUTH_TOKEN"),
            "{sub} --help names its environment variables:\n{text}"
        );
    }
}
