#!/usr/bin/env bash
# The overview with a live fleet (issue 16): `sysmon loadgen --machines N --interval 1s`
# publishes through a real tansu broker (memory storage) into a running `sysmon ingest`
# (SQLite); after WARM seconds of history, web/bench/tab.mjs opens the overview cold in
# headless Chromium, RUNS times, against `sysmon dashboard` reading the same database while
# the ingester keeps writing N snapshots a second. Prints tab.mjs's JSON (first rows painted,
# measured in the page from navigation start) and how far the ingester kept up.
# Usage: scripts/bench-fleet-live.sh
# Env: MACHINES (10000) WARM (90) RUNS (5) SYSMON_BIN (default target/release/sysmon, built
#      unless SKIP_BUILD=1) BEFORE (a second sysmon binary for the dashboard, measured in the
#      same run, loads alternating)
# Figures only: nothing here asserts a time.
set -euo pipefail
cd "$(dirname "$0")/.."
machines="${MACHINES:-10000}"
warm="${WARM:-90}"
if [ -n "${SYSMON_BIN:-}" ]; then
  sysmon="$(realpath "$SYSMON_BIN")"
else
  [ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --locked --quiet -p sysmon-bin --bin sysmon
  sysmon="$(realpath "${CARGO_TARGET_DIR:-target}/release/sysmon")"
fi
# shellcheck source=lib/tansu.sh
source scripts/lib/tansu.sh  # $work, $pids, $brokers; cleanup at exit
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); tansu $brokers"

"$sysmon" --log-level info ingest --brokers "$brokers" --db "$work/live.db" \
  --stats-json "$work/ingest.json" >"$work/ingest.log" 2>&1 &
ingest_pid=$!
pids+=("$ingest_pid")
for _ in $(seq 1 300); do
  grep -q "sysmon ingest running" "$work/ingest.log" 2>/dev/null && break
  kill -0 "$ingest_pid" 2>/dev/null || { cat "$work/ingest.log" >&2; exit 1; }
  sleep 0.1
done
"$sysmon" --log-level warn loadgen --brokers "$brokers" --machines "$machines" --interval 1s \
  --duration 2h --format binary >"$work/loadgen.log" 2>&1 &
pids+=($!)
echo "loadgen: $machines machines every 1 s; waiting ${warm} s"
sleep "$warm"
stored() { sqlite3 "file:$work/live.db?mode=ro" "SELECT count(*) FROM samples" 2>/dev/null || echo "?"; }
echo "stored before the browser: $(stored)"
(cd crates/sysmon-dashboard/web && DB="$work/live.db" SYSMON="$sysmon" node bench/tab.mjs)
echo "stored after: $(stored); load $(cut -d' ' -f1-3 /proc/loadavg)"
grep -E "WARN|ERROR" "$work/ingest.log" | tail -5 || true
