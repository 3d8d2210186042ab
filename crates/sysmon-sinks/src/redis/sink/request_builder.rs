//! The commands of one write: per machine, its samples added to its series and
//! its newest snapshot staged; per group of machines, one call of the write script.

use sysmon_core::codec::binary;
use sysmon_core::Snapshot;

use super::super::scripts::COMMIT_MACHINES_SCRIPT;
use super::super::KeyLayout;
use super::write::MachinePlan;
use super::Inner;

/// Machines per call of the write script.
pub(super) const SCRIPT_MACHINES: usize = 100;
/// Staged bytes after which the machines so far are committed.
pub(super) const SCRIPT_BYTES: usize = 1 << 20;

/// How many samples a machine gets between two count trims of its series:
/// a sixteenth of the bound (so a series holds at most 1/16 more than the
/// bound between trims), at least every sample for small bounds.
pub(super) fn trim_every(series_len: usize) -> u32 {
    (series_len / 16).clamp(1, u32::MAX as usize) as u32
}

/// The newest sample by millisecond (the later one on ties, as the series and
/// SQLite keep the last write of a millisecond).
fn newest<'a>(group: &[&'a Snapshot]) -> Option<&'a Snapshot> {
    let mut newest = *group.first()?;
    for s in &group[1..] {
        if s.timestamp_millis() >= newest.timestamp_millis() {
            newest = s;
        }
    }
    Some(newest)
}

/// The host name the way SQLite picks it: the newest sample's, else one from
/// earlier in the batch (the latest one that has one).
pub(super) fn newest_hostname<'a>(group: &[&'a Snapshot]) -> Option<&'a str> {
    let mut newest = *group.first()?;
    let mut hostname = newest.hostname.as_deref();
    for s in &group[1..] {
        if s.timestamp_millis() >= newest.timestamp_millis() {
            newest = s;
            hostname = s.hostname.as_deref().or(hostname);
        } else if hostname.is_none() {
            hostname = s.hostname.as_deref();
        }
    }
    hostname
}

/// One call of [`COMMIT_MACHINES_SCRIPT`], and the plain commands that stage
/// its machines' data before it.
pub(super) struct ScriptChunk {
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
    pub(super) machines: usize,
    pub(super) bytes: usize,
}

impl ScriptChunk {
    pub(super) fn new(last_seen: &str, hostnames: &str, cutoff_ms: i64, inner: &Inner) -> Self {
        ScriptChunk {
            keys: vec![last_seen.to_string(), hostnames.to_string()],
            args: vec![
                cutoff_ms.to_string().into_bytes(),
                inner.series_len.to_string().into_bytes(),
                inner.ttl_ms.to_string().into_bytes(),
                inner.upkeep_ms.to_string().into_bytes(),
            ],
            machines: 0,
            bytes: 0,
        }
    }

    /// Adds `group`'s samples to its series and stages its newest snapshot
    /// (plain commands in `pipe`), and queues the machine for the script.
    pub(super) fn add_machine(
        &mut self,
        pipe: &mut ::redis::Pipeline,
        keys: &KeyLayout,
        writer: &str,
        machine: &str,
        group: &[&Snapshot],
        plan: MachinePlan,
    ) {
        let Some(newest) = newest(group) else {
            return;
        };
        let hostname = newest_hostname(group);
        let series = keys.series(machine);
        // A sample replaces the one of the same millisecond (SQLite's key).
        if plan.replace {
            for s in group {
                let ms = s.timestamp_millis();
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(&series)
                    .arg(ms)
                    .arg(ms)
                    .ignore();
            }
        }
        // Each sample is encoded once: the newest one's bytes are also the
        // staged latest state.
        let mut latest: Option<Vec<u8>> = None;
        let zadd = pipe.cmd("ZADD").arg(&series);
        for s in group {
            let member = binary::encode(s);
            self.bytes += member.len();
            zadd.arg(s.timestamp_millis()).arg(member.as_slice());
            if std::ptr::eq(*s, newest) {
                latest = Some(member);
            }
        }
        zadd.ignore();
        let latest = latest.unwrap_or_else(|| binary::encode(newest));
        self.bytes += latest.len();
        let staged = keys.staged(writer, "latest", machine);
        let target = if plan.direct_latest {
            keys.latest(machine)
        } else {
            staged.clone()
        };
        pipe.cmd("SET")
            .arg(&target)
            .arg(latest)
            .arg("PX")
            .arg(self.ttl_ms())
            .ignore();

        self.keys.push(series);
        self.keys.push(keys.latest(machine));
        self.keys.push(staged);
        self.args.push(machine.as_bytes().to_vec());
        self.args.push(newest.timestamp.to_string().into_bytes());
        self.args
            .push(newest.timestamp_millis().to_string().into_bytes());
        self.args.push(hostname.unwrap_or("").as_bytes().to_vec());
        let flag = |b: bool| if b { b'1' } else { b'0' };
        self.args.push(vec![
            flag(hostname.is_some()),
            flag(plan.hostname),
            flag(plan.trim),
            flag(plan.direct_latest),
        ]);
        self.machines += 1;
    }

    /// The TTL in ms (the script's third argument).
    fn ttl_ms(&self) -> &[u8] {
        &self.args[2]
    }

    pub(super) fn flush(self, pipe: &mut ::redis::Pipeline) {
        if self.machines == 0 {
            return;
        }
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(&COMMIT_MACHINES_SCRIPT.sha)
            .arg(self.keys.len());
        for k in &self.keys {
            cmd.arg(k);
        }
        for a in &self.args {
            cmd.arg(a.as_slice());
        }
        cmd.ignore();
    }
}
