#!/usr/bin/env bash
# Benchmarks distributed ingest (issue 3) through a real tansu broker (memory storage)
# into SQLite, with release binaries:
#   throughput: `sysmon loadgen` pre-publishes MACHINES x (DURATION/INTERVAL) snapshots as
#               fast as it can, then a fresh `sysmon ingest` consumes them into a fresh
#               SQLite file; the rate is the ingester's own count over its active time
#               (first batch received to last batch stored), for json and binary.
#   latency:    `sysmon ingest` running while `sysmon loadgen --machines 1000 --interval 1s
#               --duration 60s` publishes; p50/p99 from sample timestamp to committed row.
# Usage: scripts/bench-ingest.sh [throughput|latency|all]   (default all)
# Env: TP_MACHINES (1000) TP_INTERVAL (10ms) TP_DURATION (10s) LAT_DURATION (60s)
#      FORMATS ("json binary") INGEST_FLAGS (extra flags for sysmon ingest)
#      SKIP_BUILD=1 uses the release binary already built (when others hold the build lock)
#      SYSMON_BIN=PATH runs that binary instead (no build), e.g. a build of an older
#      commit for a before/after comparison
# Figures only: nothing here asserts a time.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
tp_machines="${TP_MACHINES:-1000}"
tp_interval="${TP_INTERVAL:-10ms}"
tp_duration="${TP_DURATION:-10s}"
lat_duration="${LAT_DURATION:-60s}"
formats="${FORMATS:-json binary}"
read -r -a ingest_flags <<< "${INGEST_FLAGS:-}"

if [ -n "${SYSMON_BIN:-}" ]; then
  sysmon="$SYSMON_BIN"
else
  [ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --locked --quiet -p sysmon-bin --bin sysmon
  sysmon="${CARGO_TARGET_DIR:-target}/release/sysmon"
fi
[ -x "$sysmon" ] || { echo "no sysmon binary at $sysmon" >&2; exit 1; }
# shellcheck source=lib/tansu.sh
source scripts/lib/tansu.sh  # (the script runs from the repository root)
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg) (shared with other builds)"
echo "tansu: $brokers (memory storage)"

jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]])' "$@"; }

# Starts `sysmon ingest` in the background: start_ingest TOPIC GROUP DB STATS LOG
start_ingest() {
  "$sysmon" --log-level info ingest --brokers "$brokers" --topic "$1" --group "$2" \
    --db "$3" --stats-json "$4" "${ingest_flags[@]}" >"$5" 2>&1 &
  ingest_pid=$!
  pids+=("$ingest_pid")
  for _ in $(seq 1 300); do
    grep -q "sysmon ingest running" "$5" 2>/dev/null && return 0
    kill -0 "$ingest_pid" 2>/dev/null || { cat "$5" >&2; return 1; }
    sleep 0.1
  done
  echo "ingest did not start" >&2; cat "$5" >&2; return 1
}

# Waits until the ingester has stored WANT snapshots (or TIMEOUT s pass), then stops it.
stop_ingest_at() {
  local want="$1" stats="$2" timeout="$3" t=0
  while [ "$t" -lt "$((timeout * 10))" ]; do
    if [ -f "$stats" ] && [ "$(jget "$stats" stored)" -ge "$want" ]; then break; fi
    sleep 0.1; t=$((t + 1))
  done
  kill -INT "$ingest_pid"; wait "$ingest_pid" || true
}

summary() { # summary STATS
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"  stored {d['stored']} in {d['active_secs']:.2f} s active: {d['stored_per_sec']:,.0f} snapshots/s")
print(f"  latency (sample timestamp -> committed row): p50 {d['latency_p50_secs']*1e3:.1f} ms, "
      f"p90 {d['latency_p90_secs']*1e3:.1f} ms, p99 {d['latency_p99_secs']*1e3:.1f} ms, "
      f"max {d['latency_max_secs']*1e3:.1f} ms")
PY
}

run_throughput() {
  local fmt="$1"
  local topic="bench-tp-$fmt-$RANDOM"
  echo "== throughput, $fmt: loadgen $tp_machines machines every $tp_interval for $tp_duration, then ingest"
  # The ingester creates the topic (6 partitions); this first one consumes nothing.
  start_ingest "$topic" "create-$topic" "$work/create.db" "$work/create.json" "$work/create.log"
  kill -INT "$ingest_pid"; wait "$ingest_pid" || true
  "$sysmon" --log-level warn loadgen --brokers "$brokers" --topic "$topic" --machines "$tp_machines" \
    --interval "$tp_interval" --duration "$tp_duration" --format "$fmt" --json >"$work/lg.json"
  local published
  published="$(jget "$work/lg.json" published)"
  python3 - "$work/lg.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"  loadgen published {d['published']} ({d['bytes']/max(d['published'],1):.0f} B each) in {d['elapsed_secs']:.1f} s: {d['per_sec']:,.0f}/s, failed {d['failed']}")
PY
  local db="$work/tp-$fmt.db"
  rm -f "$db"*
  start_ingest "$topic" "bench-$topic" "$db" "$work/tp-$fmt.json" "$work/tp-$fmt.log"
  stop_ingest_at "$published" "$work/tp-$fmt.json" 600
  summary "$work/tp-$fmt.json"
  grep "ingest summary" "$work/tp-$fmt.log" | tail -1 | sed 's/^/  log: /'
}

run_latency() {
  local topic="bench-lat-$RANDOM"
  echo "== latency: ingest running, loadgen 1000 machines every 1s for $lat_duration (json)"
  local db="$work/lat.db"
  start_ingest "$topic" "bench-$topic" "$db" "$work/lat.json" "$work/lat.log"
  "$sysmon" --log-level warn loadgen --brokers "$brokers" --topic "$topic" --machines 1000 \
    --interval 1s --duration "$lat_duration" --format json --json >"$work/lg.json"
  local published
  published="$(jget "$work/lg.json" published)"
  echo "  loadgen published $published, skipped ticks $(jget "$work/lg.json" skipped_ticks)"
  stop_ingest_at "$published" "$work/lat.json" 60
  summary "$work/lat.json"
}

case "$what" in
  throughput) for f in $formats; do run_throughput "$f"; done ;;
  latency) run_latency ;;
  all) for f in $formats; do run_throughput "$f"; done; run_latency ;;
  *) echo "usage: $0 [throughput|latency|all]" >&2; exit 2 ;;
esac
