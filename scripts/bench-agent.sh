#!/usr/bin/env bash
# Measures sysmon-agent's own cost: CPU as % of one core and peak RSS (VmHWM), over a
# window of DURATION seconds (default 60) at a 1 s interval, with the default collectors
# unless an agent's config says otherwise. Several agents (and node_exporter) run side by
# side, so their figures share one machine state (load average printed with them).
#
#   scripts/bench-agent.sh [DURATION] [--kafka] [--node-exporter]
#                          [--agent LABEL[:CONFIG[:BIN[:ENV]]]]... [-- extra sysmon-agent flags]
#
#   --kafka          publish to a real tansu broker this script starts (memory storage,
#                    scripts/lib/tansu.sh; the topic is created first) with --brokers,
#                    instead of --stdout to /dev/null
#   --node-exporter  also run Debian's prometheus-node-exporter (installed with apt-get
#                    when missing) with its default collectors on a free loopback port,
#                    scraped once a second by a curl loop; its CPU and peak RSS are
#                    measured over the same window (curl's own cost is not counted)
#   --agent          one agent to run (repeatable; default: one, "default"): CONFIG is a
#                    sysmon config file (--config; empty: the built-in defaults), BIN an
#                    agent binary (default: this tree's release build), for before/after
#                    comparisons of a change in one run; ENV, comma-separated NAME=VALUE
#                    pairs set for that agent only (e.g. MALLOC_ARENA_MAX=1)
#
# The agents are started, then after a 3 s warm-up (start-up and the collectors' priming
# left out of the CPU figure) utime+stime of each process is read from /proc/PID/stat at
# both ends of the window. Peak RSS is the process's VmHWM at the end (start-up included).
# Figures only: nothing here asserts anything. env: SKIP_BUILD=1
set -euo pipefail
cd "$(dirname "$0")/.."
duration=60
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then duration=$1; shift; fi
kafka=0; node_exporter=0; agents=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kafka) kafka=1 ;;
    --node-exporter) node_exporter=1 ;;
    --agent) agents+=("$2"); shift ;;
    --) shift; break ;;
    *) echo "unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
extra=("$@")
[ "${#agents[@]}" -eq 0 ] && agents=(default)

[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --locked --quiet --bin sysmon-agent
default_bin="${CARGO_TARGET_DIR:-target}/release/sysmon-agent"
clk=$(getconf CLK_TCK)

if [ "$kafka" = 1 ]; then
  # shellcheck source=lib/tansu.sh
  source scripts/lib/tansu.sh  # $work, $pids, $brokers; cleanup at exit
  # tansu does not create a topic on produce: create it as the ingester would.
  "$tansu" topic create system_metrics --broker "tcp://$brokers" --partitions 1 \
    >"$work/topic.log" 2>&1 || { cat "$work/topic.log" >&2; exit 1; }
else
  work="$(mktemp -d)"
  pids=()
  cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
  }
  trap cleanup EXIT
fi

declare -A pid_of
labels=()
for spec in "${agents[@]}"; do
  IFS=: read -r label config bin envs <<<"$spec"
  bin="${bin:-$default_bin}"
  env_args=()
  [ -n "${envs:-}" ] && IFS=, read -r -a env_args <<<"$envs"
  args=(--interval 1s --log-level warn --machine-id "bench-$label")
  [ -n "${config:-}" ] && args+=(--config "$config")
  if [ "$kafka" = 1 ]; then args+=(--brokers "$brokers"); else args+=(--stdout); fi
  env "${env_args[@]}" "$bin" "${args[@]}" "${extra[@]}" >/dev/null 2>"$work/agent-$label.log" &
  pid_of[$label]=$!
  pids+=($!)
  labels+=("$label")
done

if [ "$node_exporter" = 1 ]; then
  ne=/usr/bin/prometheus-node-exporter
  if [ ! -x "$ne" ]; then
    # Debian's package; its postinst may try to start the service: not needed here.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      prometheus-node-exporter >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; exit 1; }
  fi
  # A node_exporter service (started by the package where systemd runs) also loads the
  # machine: say so rather than stopping what this script did not start.
  if pgrep -x prometheus-node >/dev/null 2>&1; then
    echo "note: a prometheus-node-exporter service is running beside the benchmark" >&2
  fi
  ne_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$ne" --web.listen-address="127.0.0.1:$ne_port" --log.level=warn >"$work/node-exporter.log" 2>&1 &
  pid_of[node_exporter]=$!
  pids+=($!)
  labels+=(node_exporter)
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$ne_port/metrics" && break; sleep 0.1; done
  ( while :; do curl -sf -o /dev/null "http://127.0.0.1:$ne_port/metrics" || true; sleep 1; done ) &
  pids+=($!)
fi

ticks() { local s; read -r -a s < "/proc/$1/stat"; echo $(( s[13] + s[14] )); }
sleep 3
for l in "${labels[@]}"; do
  kill -0 "${pid_of[$l]}" 2>/dev/null || { echo "$l exited early:" >&2; cat "$work/agent-$l.log" "$work/node-exporter.log" 2>/dev/null >&2; exit 1; }
done
declare -A c0
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for l in "${labels[@]}"; do c0[$l]=$(ticks "${pid_of[$l]}"); done
t0=$(date +%s.%N)
sleep "$duration"
t1=$(date +%s.%N)
declare -A c1 hwm
for l in "${labels[@]}"; do
  c1[$l]=$(ticks "${pid_of[$l]}")
  hwm[$l]=$(awk '/VmHWM/ {print $2}' "/proc/${pid_of[$l]}/status")
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
mode="--stdout"; [ "$kafka" = 1 ] && mode="--brokers (tansu, memory storage)"
echo "machine: $(nproc) cores; load average $load0 at the start, $load1 at the end"
echo "window: $(python3 -c "print(f'{$t1 - $t0:.1f}')") s; agents: --interval 1s $mode ${extra[*]}"
for l in "${labels[@]}"; do
  python3 -c "
t, clk, wall, kb = ${c1[$l]} - ${c0[$l]}, $clk, $t1 - $t0, ${hwm[$l]}
print(f'$l: cpu {t / clk:.2f} s = {t / clk / wall * 100:.3f} % of one core, peak RSS {kb / 1024:.1f} MB')"
done
for l in "${labels[@]}"; do
  [ "$l" = node_exporter ] && continue
  if grep -qiE 'error|warn' "$work/agent-$l.log"; then
    echo "($l logged:)"; head -5 "$work/agent-$l.log"
  fi
done
