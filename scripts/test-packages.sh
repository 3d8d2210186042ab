#!/usr/bin/env bash
# Install test of the Debian packages: builds them (scripts/package.sh, release
# profile by default: it shares the build with `cargo bench`), unpacks each into a
# throwaway root with dpkg-deb -x, runs the installed binaries, and checks the
# packages' metadata, conffiles, maintainer scripts and systemd units against what
# README.md and docs/migrating.md say.
#   scripts/test-packages.sh [--profile dist|release]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'ok: %s\n' "$*"; }
has() { # has FILE LINE...: every LINE is a line of FILE, exactly
  local f="$1"; shift
  for line in "$@"; do grep -qxF -- "$line" "$f" || fail "$f lacks the line: $line"; done
}

start=$(date +%s)
bash scripts/package.sh "$work/debs" "$@"
printf 'packages built in %d s\n' $(( $(date +%s) - start ))

agent_deb=$(ls "$work"/debs/sysmon-agent_*.deb)
master_deb=$(ls "$work"/debs/sysmon_*.deb)

for deb in "$agent_deb" "$master_deb"; do
  name=$(dpkg-deb -f "$deb" Package)
  root="$work/root-$name"
  ctl="$work/control-$name"
  dpkg-deb -x "$deb" "$root"
  dpkg-deb -e "$deb" "$ctl"
  printf '\n== %s (%s, %s KiB installed)\n' "$(basename "$deb")" "$(du -h "$deb" | cut -f1)" \
    "$(dpkg-deb -f "$deb" Installed-Size)"
  dpkg-deb -f "$deb" Depends | grep -q 'passwd' || fail "$name: Depends lacks passwd (useradd)"
  dpkg-deb -f "$deb" Depends | grep -q 'libc6' || fail "$name: Depends lacks libc6 (dpkg-shlibdeps)"
  for script in postinst postrm prerm; do
    [ -x "$ctl/$script" ] || fail "$name: no $script"
    sh -n "$ctl/$script" || fail "$name: $script has a syntax error"
  done
  grep -q 'useradd --system' "$ctl/postinst" || fail "$name: postinst creates no system user"
  grep -q 'install -d -o sysmon -g sysmon -m 0750 /var/lib/sysmon' "$ctl/postinst" \
    || fail "$name: postinst does not create /var/lib/sysmon"
  ! grep -q '#DEBHELPER#' "$ctl/postinst" || fail "$name: #DEBHELPER# left unexpanded"
done

# --- sysmon-agent: the worker package --------------------------------------------
root="$work/root-sysmon-agent"; ctl="$work/control-sysmon-agent"
[ "$(find "$root" -type f | sed "s|^$root||" | sort | tr '\n' ' ')" = \
  "/etc/sysmon/agent.toml /usr/bin/sysmon-agent /usr/lib/systemd/system/sysmon-agent.service /usr/share/doc/sysmon-agent/README.md /usr/share/doc/sysmon-agent/copyright " ] \
  || fail "sysmon-agent holds other files: $(find "$root" -type f | sed "s|^$root||")"
has "$ctl/conffiles" /etc/sysmon/agent.toml
size=$(stat -c %s "$root/usr/bin/sysmon-agent")
[ "$size" -le $((15 * 1024 * 1024)) ] || fail "sysmon-agent is $size bytes (> 15 MB)"
ok "sysmon-agent binary: $size bytes"
# Debug info or a symbol table left means not stripped (.debug_gdb_scripts, the
# tiny gdb loader section rustc always emits, is neither).
if readelf -S "$root/usr/bin/sysmon-agent" | grep -qE '\.(debug_info|debug_line|symtab) '; then
  fail "sysmon-agent is not stripped"
fi
"$root/usr/bin/sysmon-agent" --version | grep -qx "sysmon-agent $(dpkg-deb -f "$agent_deb" Version | cut -d- -f1)" \
  || fail "sysmon-agent --version: $("$root/usr/bin/sysmon-agent" --version)"
ok "sysmon-agent --version"
# The packaged config, as the unit passes it, and one real sample.
"$root/usr/bin/sysmon-agent" --config "$root/etc/sysmon/agent.toml" --interval 1s --once --stdout \
  > "$work/sample.json" 2> "$work/sample.err" || { cat "$work/sample.err"; fail "sysmon-agent --once"; }
python3 - "$work/sample.json" <<'PY' || fail "sysmon-agent --once printed no valid sample"
import json, sys
s = json.load(open(sys.argv[1]))
for k in ("machine_id", "timestamp", "cpu_usage", "memory_usage", "disk_io", "network_io",
          "top_cpu_processes", "top_mem_processes"):
    assert k in s, k
assert s["top_cpu_processes"], "no processes"
PY
ok "sysmon-agent --config /etc/sysmon/agent.toml --once --stdout"
# postinst: the brokers file from SYSMON_BROKERS, validated.
grep -q 'SYSMON_BROKERS=\$brokers' "$ctl/postinst" || fail "postinst does not write agent.env"
grep -q 'deb-systemd-helper enable sysmon-agent.service' "$ctl/postinst" \
  || fail "postinst does not enable sysmon-agent.service"
grep -q 'deb-systemd-invoke $_dh_action sysmon-agent.service' "$ctl/postinst" \
  || fail "postinst does not start sysmon-agent.service"
grep -q 'rm -f /etc/sysmon/agent.env' "$ctl/postrm" || fail "postrm purge keeps agent.env"

# --- sysmon: the master package ----------------------------------------------------
root="$work/root-sysmon"; ctl="$work/control-sysmon"
for f in /usr/bin/sysmon /etc/sysmon/sysmon.toml /usr/lib/systemd/system/sysmon-ingest.service \
         /usr/lib/systemd/system/sysmon-dashboard.service /usr/share/doc/sysmon/migrating.md \
         /usr/share/doc/sysmon/import_legacy_history.py; do
  [ -f "$root$f" ] || fail "sysmon lacks $f"
done
[ ! -e "$root/usr/bin/sysmon-agent" ] || fail "sysmon must not ship sysmon-agent (the packages would conflict)"
has "$ctl/conffiles" /etc/sysmon/sysmon.toml
"$root/usr/bin/sysmon" --version | grep -q '^sysmon ' || fail "sysmon --version"
"$root/usr/bin/sysmon" config --check --config "$root/etc/sysmon/sysmon.toml" >/dev/null \
  || fail "the packaged sysmon.toml does not validate"
"$root/usr/bin/sysmon" config --check --config "$work/root-sysmon-agent/etc/sysmon/agent.toml" >/dev/null \
  || fail "the packaged agent.toml does not validate"
"$root/usr/bin/sysmon" agent --once --stdout --interval 1s > "$work/master-sample.json" \
  || fail "sysmon agent --once"
ok "sysmon --version, config --check (sysmon.toml, agent.toml), agent --once"
for unit in sysmon-ingest sysmon-dashboard; do
  grep -q "deb-systemd-helper enable $unit.service" "$ctl/postinst" || fail "postinst does not enable $unit"
done

# --- the units: what README.md and docs/migrating.md promise ------------------------
units="$work/root-sysmon-agent/usr/lib/systemd/system/sysmon-agent.service
$work/root-sysmon/usr/lib/systemd/system/sysmon-ingest.service
$work/root-sysmon/usr/lib/systemd/system/sysmon-dashboard.service"
for u in $units; do
  has "$u" User=sysmon Group=sysmon StateDirectory=sysmon NoNewPrivileges=yes ProtectSystem=strict \
    PrivateTmp=yes CapabilityBoundingSet= AmbientCapabilities= Restart=on-failure \
    WantedBy=multi-user.target
  grep -qxE 'ProtectHome=(yes|read-only)' "$u" || fail "$u: no ProtectHome"
done
has "$work/root-sysmon-agent/usr/lib/systemd/system/sysmon-agent.service" \
  "EnvironmentFile=/etc/sysmon/agent.env" \
  "ExecStart=/usr/bin/sysmon-agent --config /etc/sysmon/agent.toml" ProtectHome=read-only
has "$work/root-sysmon/usr/lib/systemd/system/sysmon-ingest.service" \
  "ExecStart=/usr/bin/sysmon --config /etc/sysmon/sysmon.toml ingest"
has "$work/root-sysmon/usr/lib/systemd/system/sysmon-dashboard.service" \
  "ExecStart=/usr/bin/sysmon --config /etc/sysmon/sysmon.toml dashboard"
ok "unit files: user, state directory, hardening, ExecStart"

if command -v systemd-analyze >/dev/null 2>&1; then
  # verify needs the unit's binaries and the files it names at their real paths:
  # a root holding both packages, plus the agent.env postinst would write.
  both="$work/root-both"
  mkdir -p "$both"
  cp -a "$work/root-sysmon/." "$work/root-sysmon-agent/." "$both/"
  printf 'SYSMON_BROKERS=127.0.0.1:9092\n' > "$both/etc/sysmon/agent.env"
  # ...and the system's own targets and slices the units order themselves after.
  for u in /usr/lib/systemd/system/*.target /usr/lib/systemd/system/*.slice \
           /usr/lib/systemd/system/*.socket /usr/lib/systemd/system/*.service; do
    [ -e "$both/usr/lib/systemd/system/$(basename "$u")" ] || cp -a "$u" "$both/usr/lib/systemd/system/" 2>/dev/null || true
  done
  for name in sysmon-agent sysmon-ingest sysmon-dashboard; do
    out=$(systemd-analyze verify --root="$both" "$both/usr/lib/systemd/system/$name.service" 2>&1) \
      || fail "systemd-analyze verify $name.service: $out"
    [ -z "$out" ] || fail "systemd-analyze verify $name.service warns: $out"
    exposure=$(systemd-analyze security --offline=yes --root="$both" "$name.service" 2>/dev/null \
      | sed -n 's/.*Overall exposure level for [^:]*: *//p')
    ok "systemd-analyze verify $name.service (exposure: ${exposure:-n/a})"
  done
else
  echo "systemd-analyze not found (install the systemd package): unit verification skipped"
fi

printf '\npackage install test passed in %d s\n' $(( $(date +%s) - start ))
