#!/usr/bin/env bash
# Installs what sysmon's build and tests need, skipping whatever is already there.
# Safe to run again and again. Needs root (or sudo) for apt-get.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

# --- Debian packages -----------------------------------------------------------
# pkg-config, libssl-dev, zlib1g-dev, make, g++: building librdkafka (rdkafka-sys) and
# SQLite (bundled); redis-server: the Redis tests start their own instances;
# postgresql: the PostgreSQL history's tests (each in its own database) and durable
# tansu storage in the outage tests; python3-venv: the
# legacy Python consumer's venv in the compatibility test; systemd: systemd-analyze
# verifies the packages' unit files (build-essential brings dpkg-dev, which cargo-deb
# uses for the packages' Depends).
need=()
# gcc-mingw-w64-x86-64, g++-mingw-w64-x86-64, cmake: cross-building the Windows agent
# (scripts/build-windows.sh: librdkafka's CMake build, OpenSSL from source); wine64: its
# tests run the .exe under Wine.
for pkg in build-essential pkg-config libssl-dev zlib1g-dev chromium postgresql \
    gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 cmake wine64; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# package:command pairs, installed when the command is missing
for pair in redis-server:redis-server postgresql-client:psql python3:python3 nodejs:node npm:npm \
    systemd:systemd-analyze; do
  command -v "${pair#*:}" >/dev/null 2>&1 || need+=("${pair%%:*}")
done
# Debian's python3 has no ensurepip (so no `python3 -m venv`) without python3-venv.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then need+=(python3-venv); fi
if [ "${#need[@]}" -gt 0 ]; then
  log "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- Rust toolchain components ---------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
  log "cargo not found: install Rust with rustup first (https://rustup.rs)"; exit 1
fi
for comp in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
    log "adding rustup component $comp"; rustup component add "$comp"
  fi
done

# The Windows agent's target (scripts/build-windows.sh).
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
  log "adding rustup target x86_64-pc-windows-gnu"; rustup target add x86_64-pc-windows-gnu
fi

# --- tansu: a real Kafka-protocol broker for the integration tests ----------------
TANSU_VERSION=0.6.0
if ! { command -v tansu >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/tansu" ]; } \
   || ! "$(command -v tansu || echo "$HOME/.cargo/bin/tansu")" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  log "building tansu $TANSU_VERSION (about 11 minutes on 2 cores, once)"
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,postgres
fi

# --- cargo-deb: builds the Debian packages (scripts/package.sh) --------------------
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  log "building cargo-deb $CARGO_DEB_VERSION (about 2 minutes, once)"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi

# --- PostgreSQL (the PostgreSQL history's tests; durable tansu storage) ----------
if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
  log "starting PostgreSQL"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
# The tests connect as postgres over 127.0.0.1 without a password (trust, this host only).
if pg_isready -q -h 127.0.0.1 2>/dev/null \
   && ! PGCONNECT_TIMEOUT=5 psql -w -h 127.0.0.1 -U postgres -XtAc 'SELECT 1' >/dev/null 2>&1; then
  hba="$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)"
  log "allowing the postgres user over 127.0.0.1 without a password ($hba)"
  $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main reload || true
fi

log "ready"
