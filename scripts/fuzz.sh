#!/usr/bin/env bash
# Coverage-guided fuzzing of sysmon's decoders with afl.rs (stable toolchain).
#
# Usage: scripts/fuzz.sh TARGET SECONDS      TARGET: decode_json decode_binary decode_any dlq_reason
#        scripts/fuzz.sh all SECONDS         every target in turn
#
# Needs `cargo afl` (cargo install cargo-afl; its first run builds AFL++ from
# source). Builds fuzz/ with AFL instrumentation into fuzz/target, seeds from
# fuzz/corpus/TARGET, writes findings to fuzz/out/TARGET (not committed), and
# exits non-zero when AFL found a crash or a hang. Runs at nice 19.
# The properties themselves live in crates/sysmon-core/src/codec/fuzzing.rs;
# the normal test suite runs them on the corpus and its mutations.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/../fuzz"
target=${1:?usage: scripts/fuzz.sh TARGET|all SECONDS}
secs=${2:?usage: scripts/fuzz.sh TARGET|all SECONDS}
targets=(decode_json decode_binary decode_any dlq_reason)
if [ "$target" = all ]; then
  rc=0
  for t in "${targets[@]}"; do "$self" "$t" "$secs" || rc=1; done
  exit $rc
fi
case " ${targets[*]} " in *" $target "*) ;; *) echo "unknown target $target (${targets[*]})" >&2; exit 2;; esac
command -v cargo-afl >/dev/null || { echo "cargo afl is missing: cargo install cargo-afl" >&2; exit 2; }

nice -n 19 cargo afl build --release --bin fuzz_target >/dev/null 2>build.log || { cat build.log >&2; exit 1; }
nice -n 19 cargo run --release --bin binary_seeds >/dev/null 2>>build.log
out="out/$target"
rm -rf "$out"; mkdir -p "$out"
export SYSMON_FUZZ_TARGET=$target AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
       AFL_NO_UI=1 AFL_NO_AFFINITY=1
nice -n 19 cargo afl fuzz -V "$secs" -i "corpus/$target" -o "$out" target/release/fuzz_target \
  >"$out.log" 2>&1 || true
stats="$out/default/fuzzer_stats"
[ -f "$stats" ] || { echo "afl did not run; see fuzz/$out.log" >&2; tail -20 "$out.log" >&2; exit 1; }
get() { awk -F' *: *' -v k="$1" '$1 == k {print $2}' "$stats"; }
crashes=$(get saved_crashes); hangs=$(get saved_hangs)
echo "$target: ${secs}s, execs $(get execs_done) ($(get execs_per_sec)/s), corpus $(get corpus_count), edges $(get edges_found)/$(get total_edges) ($(get bitmap_cvg)), crashes ${crashes:-?}, hangs ${hangs:-?}"
[ "${crashes:-1}" = 0 ] && [ "${hangs:-1}" = 0 ]
