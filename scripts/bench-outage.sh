#!/usr/bin/env bash
# A 5-minute broker outage (issue 16), outside CI: `sysmon loadgen` (50 machines
# at 1 s) through a real, durable tansu broker (on the local PostgreSQL) into
# `sysmon ingest` with the default alert rules and a real webhook receiver;
# the broker is stopped for OUTAGE_SECS, then started again. The run counts
# and asserts: one pipeline alert (firing, resolved; one webhook each), no
# machine alert of any rule, "transport unreachable" and "transport reachable
# again" logged exactly once each, none of the latter while the broker was down.
# It is the ignored test `a_five_minute_broker_outage_with_loadgen_and_a_webhook`
# of crates/sysmon-bin/tests/pipeline_alerts.rs; the "outage summary" line
# it prints is what BENCHMARKS.md records. About 8 minutes.
# Usage: scripts/bench-outage.sh   Env: OUTAGE_SECS (300)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at start"
log="$(mktemp -t sysmon-outage.XXXXXX)"
status=0
SYSMON_OUTAGE_SECS="${OUTAGE_SECS:-300}" nice cargo test --workspace --test pipeline_alerts \
  -- --ignored --exact a_five_minute_broker_outage_with_loadgen_and_a_webhook --nocapture \
  >"$log" 2>&1 || status=$?
grep -E "outage|test result|panicked" "$log" || true
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg); full output: $log"
exit "$status"
