#!/usr/bin/env bash
# Measures sysmon-agent's own cost: CPU as % of one core and peak RSS, over a run of
# DURATION seconds (default 60) at a 1 s interval with the default collectors.
#   scripts/bench-agent.sh [DURATION] [-- extra sysmon-agent flags, e.g. --brokers HOST:PORT]
# Default mode is --stdout (to /dev/null). Prints one line per figure.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-60}"; shift || true
[ "${1:-}" = "--" ] && shift
extra=("$@")
[ "${#extra[@]}" -eq 0 ] && extra=(--stdout)

cargo build --release --locked --quiet --bin sysmon-agent
bin="${CARGO_TARGET_DIR:-target}/release/sysmon-agent"
clk=$(getconf CLK_TCK)

"$bin" --interval 1s --log-level warn "${extra[@]}" >/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
sleep 2   # exclude process start-up and the collectors' priming from the window
read -r -a s0 < "/proc/$pid/stat"
t0=$(date +%s.%N)
sleep "$duration"
read -r -a s1 < "/proc/$pid/stat"
t1=$(date +%s.%N)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
kill -TERM "$pid"; wait "$pid" || true
trap - EXIT

# fields 14 and 15 (utime, stime) are at index 13 and 14
ticks=$(( (s1[13] + s1[14]) - (s0[13] + s0[14]) ))
python3 - "$ticks" "$clk" "$t0" "$t1" "$hwm" "$rss" "${extra[*]}" <<'PY'
import sys
ticks, clk, t0, t1, hwm, rss, mode = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
wall = t1 - t0
cpu = ticks / clk / wall * 100
print(f"mode: sysmon-agent --interval 1s {mode}")
print(f"window: {wall:.1f} s wall, {ticks / clk:.2f} s CPU")
print(f"cpu: {cpu:.3f} % of one core")
print(f"peak_rss: {hwm / 1024:.1f} MB (VmHWM), current {rss / 1024:.1f} MB")
PY
