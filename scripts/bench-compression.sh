#!/usr/bin/env bash
# Measures what sysmon-agent's compression costs and saves at its real rate: two release
# agents, one with --compression gzip (the default) and one with --compression none (or
# the codecs in CODECS), publish side by side at a 1 s interval to one tansu broker (memory
# storage) for DURATION seconds (default 60) while `sysmon ingest` consumes. Per agent:
# bytes its sockets to the broker sent (`ss -tinp` bytes_sent, so request framing, batch
# headers and metadata requests included) and its CPU (utime + stime from /proc/PID/stat),
# both over the same window after a 3 s warm-up.
#   scripts/bench-compression.sh [DURATION]      env: CODECS ("gzip none"), SKIP_BUILD=1
# Figures only: nothing here asserts anything.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-60}"
read -r -a codecs <<< "${CODECS:-gzip none}"
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --locked --quiet -p sysmon-bin
bin="${CARGO_TARGET_DIR:-target}/release"
clk=$(getconf CLK_TCK)
# shellcheck source=lib/tansu.sh
source scripts/lib/tansu.sh  # (the script runs from the repository root)
# The ingester creates the topic (tansu does not on produce) and consumes beside the agents.
"$bin/sysmon" --log-level info ingest --brokers "$brokers" --db "$work/sysmon.db" \
  >"$work/ingest.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  grep -q "sysmon ingest running" "$work/ingest.log" 2>/dev/null && break
  sleep 0.1
done

declare -A agent_pid
for c in "${codecs[@]}"; do
  "$bin/sysmon-agent" --brokers "$brokers" --machine-id "bench-$c" --interval 1s \
    --compression "$c" --log-level warn >/dev/null 2>"$work/agent-$c.log" &
  agent_pid[$c]=$!
  pids+=($!)
done

# bytes_sent of every TCP socket PID holds to the broker port
sent() {
  ss -tinpH "dport = :$port" 2>/dev/null | python3 -c '
import re, sys
pid, total, mine = sys.argv[1], 0, False
for line in sys.stdin:
    if "users:" in line:
        mine = f"pid={pid}," in line
    m = re.search(r"bytes_sent:(\d+)", line)
    if m and mine:
        total += int(m.group(1))
print(total)' "$1"
}
ticks() { read -r -a s < "/proc/$1/stat"; echo $(( s[13] + s[14] )); }

sleep 3
declare -A b0 c0
for c in "${codecs[@]}"; do b0[$c]=$(sent "${agent_pid[$c]}"); c0[$c]=$(ticks "${agent_pid[$c]}"); done
t0=$(date +%s.%N)
sleep "$duration"
t1=$(date +%s.%N)
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); window $(python3 -c "print(f'{$t1-$t0:.1f}')") s; tansu memory storage"
for c in "${codecs[@]}"; do
  p=${agent_pid[$c]}
  b=$(( $(sent "$p") - b0[$c] )); t=$(( $(ticks "$p") - c0[$c] ))
  python3 -c "
b, t, clk, wall = $b, $t, $clk, $t1 - $t0
print(f'--compression $c: {b} bytes to the broker ({b / wall:.0f} B/s, {b / wall * 86400 / 1e6:.1f} MB/day), cpu {t / clk:.2f} s = {t / clk / wall * 100:.3f} % of one core')"
done
