#!/usr/bin/env bash
# Indicative cost of the Windows agent under Wine: CPU as % of one core (the
# agent's process, and wineserver's share beside it) and peak RSS, over DURATION
# seconds (default 60) at a 1 s interval, `--stdout` to /dev/null.
#   scripts/bench-windows-wine.sh [DURATION]
# Builds OUT with scripts/build-windows.sh --wine-shim (release) first, in
# $CARGO_TARGET_DIR (default target/windows-cross). Under Wine
# every system call goes through Wine's emulation (and many through wineserver):
# a real Windows host costs less. Indicative only.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-60}"
# The Windows build's own target dir (default: the one the windows_wine test uses).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/windows-cross}"
out="$CARGO_TARGET_DIR/bench"
bash scripts/build-windows.sh --wine-shim "$out" >/dev/null
wine=/usr/lib/wine/wine64; [ -x "$wine" ] || wine=wine
export WINEPREFIX="$CARGO_TARGET_DIR/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
mkdir -p "$WINEPREFIX"
unset DISPLAY
clk=$(getconf CLK_TCK)
"$wine" "$out/sysmon-agent.exe" --version >/dev/null   # prefix and wineserver up before measuring
"$wine" "$out/sysmon-agent.exe" --interval 1s --log-level warn --stdout >/dev/null &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wineserver -k || true' EXIT
sleep 5
ws=$(pgrep -n -x wineserver || pgrep -n -f wineserver64)
read -r -a a0 < "/proc/$pid/stat"; read -r -a w0 < "/proc/$ws/stat"
t0=$(date +%s.%N)
sleep "$duration"
read -r -a a1 < "/proc/$pid/stat"; read -r -a w1 < "/proc/$ws/stat"
t1=$(date +%s.%N)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
agent=$(( (a1[13] + a1[14]) - (a0[13] + a0[14]) ))
server=$(( (w1[13] + w1[14]) - (w0[13] + w0[14]) ))
python3 - "$agent" "$server" "$clk" "$t0" "$t1" "$hwm" <<'PY'
import sys
agent, server, clk, t0, t1, hwm = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
wall = t1 - t0
print("mode: wine sysmon-agent.exe --interval 1s --stdout (release, x86_64-pc-windows-gnu)")
print(f"window: {wall:.1f} s wall")
print(f"cpu_agent: {agent / clk / wall * 100:.3f} % of one core ({agent / clk:.2f} s)")
print(f"cpu_wineserver: {server / clk / wall * 100:.3f} % of one core ({server / clk:.2f} s)")
print(f"peak_rss: {hwm / 1024:.1f} MB (VmHWM of the agent's process, Wine's own mappings included)")
PY
