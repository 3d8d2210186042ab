#!/usr/bin/env bash
# Builds sysmon's Debian packages into OUT_DIR with cargo-deb:
#   sysmon-agent_<version>-1_<arch>.deb   workers: /usr/bin/sysmon-agent, sysmon-agent.service
#   sysmon_<version>-1_<arch>.deb         masters: /usr/bin/sysmon, sysmon-ingest.service,
#                                         sysmon-dashboard.service
# Units, maintainer scripts and config files: crates/sysmon-bin/packaging/.
#
# Usage: scripts/package.sh OUT_DIR [--profile dist|release]
#   dist (default): the binaries to ship: fat LTO, one codegen unit, stripped (slow to build).
#   release: reuses the release/bench build artefacts (thin LTO), stripped by cargo-deb;
#            the test suite packages this way: the same packaging, minutes faster.
# Needs cargo-deb (scripts/setup.sh installs it) and dpkg-dev (dpkg-shlibdeps for Depends).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

usage() { echo "usage: scripts/package.sh OUT_DIR [--profile dist|release]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out="$1"; shift
profile=dist
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || usage; profile="$2"; shift 2 ;;
    *) usage ;;
  esac
done
case "$profile" in dist|release) ;; *) usage ;; esac
command -v cargo-deb >/dev/null 2>&1 \
  || { echo "cargo-deb not found: run scripts/setup.sh (cargo install cargo-deb --locked)" >&2; exit 1; }
mkdir -p "$out"

# --strip: the release profile keeps line tables (for perf and backtraces in
# benchmarks); the packages never carry them.
common=(-p sysmon-bin --profile "$profile" --strip --no-dbgsym --locked --output "$out")
# cargo-deb builds only the binaries of the package it is packaging, so build both
# once here, then package each from that build.
cargo build -p sysmon-bin --bins --profile "$profile" --locked
cargo deb "${common[@]}" --no-build                  # packages `sysmon`
cargo deb "${common[@]}" --variant agent --no-build  # packages `sysmon-agent`

ls -l "$out"/*.deb
