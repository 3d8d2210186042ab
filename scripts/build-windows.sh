#!/usr/bin/env bash
# Cross-builds the Windows agent from Linux: OUT_DIR/sysmon-agent.exe.
#
#   scripts/build-windows.sh OUT_DIR            # the .exe (release profile)
#   scripts/build-windows.sh --zip OUT_DIR      # also OUT_DIR/sysmon-agent-windows-x86_64.zip
#   scripts/build-windows.sh --wine-shim OUT_DIR  # also the test-only bcryptprimitives.dll
#                                                 # (Wine 8 lacks it; never ship it)
# Needs what scripts/setup.sh installs: the rustup target x86_64-pc-windows-gnu,
# mingw-w64 (gcc, g++, strip), cmake and perl. The .exe is stripped (not in dev). Kafka with TLS: librdkafka is built by its
# CMake build with the mingw toolchain file scripts/windows/mingw-w64.cmake, and
# OpenSSL from source for the target (rdkafka's `ssl-vendored`).
# Env: SYSMON_WIN_PROFILE (release|dev|dist, default release), CARGO_TARGET_DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
zip=0 shim=0
while [ $# -gt 0 ]; do
  case "$1" in
    --zip) zip=1; shift ;;
    --wine-shim) shim=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--zip] [--wine-shim] OUT_DIR" >&2; exit 2; }
out="$1"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

target=x86_64-pc-windows-gnu
for tool in x86_64-w64-mingw32-gcc x86_64-w64-mingw32-g++ x86_64-w64-mingw32-strip cmake perl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found: run scripts/setup.sh" >&2; exit 1; }
done
rustup target list --installed 2>/dev/null | grep -qx "$target" \
  || { echo "error: rustup target $target missing: run scripts/setup.sh" >&2; exit 1; }

profile="${SYSMON_WIN_PROFILE:-release}"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc
export CXX_x86_64_pc_windows_gnu=x86_64-w64-mingw32-g++
export AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
export RANLIB_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ranlib
export CMAKE_TOOLCHAIN_FILE_x86_64_pc_windows_gnu="$here/windows/mingw-w64.cmake"
# Static libgcc/winpthread: the .exe needs no mingw DLL beside it.
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS="-C target-feature=+crt-static"

cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
nice -n 10 cargo build --locked --target "$target" --profile "$profile" -p sysmon-bin --bin sysmon-agent
dir="$profile"; [ "$profile" = dev ] && dir=debug
cp "$target_dir/$target/$dir/sysmon-agent.exe" "$out/sysmon-agent.exe"
# The release profile keeps line tables (and the C libraries their debug info):
# the shipped .exe is stripped, like the Debian packages' binaries (86 MB -> 13 MB).
[ "$profile" = dev ] || x86_64-w64-mingw32-strip "$out/sysmon-agent.exe"
echo "built $out/sysmon-agent.exe"

if [ "$shim" = 1 ]; then
  x86_64-w64-mingw32-gcc -shared -O2 -o "$out/bcryptprimitives.dll" \
    "$here/windows/bcryptprimitives.c" -ladvapi32
  echo "built $out/bcryptprimitives.dll (test-only Wine shim: do not ship)"
fi

if [ "$zip" = 1 ]; then
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  mkdir "$stage/sysmon-agent"
  cp "$out/sysmon-agent.exe" "$stage/sysmon-agent/"
  cp "$root/crates/sysmon-bin/packaging/windows/agent.toml" "$stage/sysmon-agent/agent.toml"
  cp "$root/crates/sysmon-bin/packaging/windows/install-worker.ps1" "$stage/sysmon-agent/"
  cp "$root/docs/windows.md" "$stage/sysmon-agent/README-windows.md"
  (cd "$stage" && python3 -c '
import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for d, _, files in os.walk("sysmon-agent"):
        for f in sorted(files):
            z.write(os.path.join(d, f))
' "$out/sysmon-agent-windows-x86_64.zip")
  echo "built $out/sysmon-agent-windows-x86_64.zip"
fi
