#!/usr/bin/env bash
# The one test command: installs what is missing (idempotent), then runs every
# check: formatting, clippy, the whole test suite against real services (tests start
# their own tansu and redis-server on free ports), the examples, and the benches in
# quick test mode, and the Debian packages' install test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# Each step prints how long the previous one took, so a slow CI run shows where.
started=$(date +%s); step_start=$started; step_name=""
step() {
    local now; now=$(date +%s)
    [ -z "$step_name" ] || printf '\n<== %s: %d s (total %d s)\n' "$step_name" $((now - step_start)) $((now - started))
    step_name="$*"; step_start=$now
    printf '\n==> %s\n' "$*"
}

step "setup"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "feature boundaries (an agent-only embedder and the dashboard compile no backend they do not use)"
agent_tree=$(cargo tree --locked -p sysmon --no-default-features --features agent -e normal)
dashboard_tree=$(cargo tree --locked -p sysmon-dashboard -e normal)
for pat in rdkafka rusqlite redis axum tokio-postgres; do
    if grep -q "^[^a-z]*$pat v" <<<"$agent_tree"; then
        echo "sysmon --features agent depends on $pat" >&2; exit 1
    fi
done
if grep -q "^[^a-z]*rdkafka v" <<<"$dashboard_tree"; then
    echo "sysmon-dashboard depends on rdkafka" >&2; exit 1
fi
cargo check --locked --quiet -p sysmon --no-default-features --features agent
for feature in kafka sqlite redis webhook postgres; do
    cargo check --locked --quiet -p sysmon-sinks --no-default-features --features "$feature"
done

step "cargo test (workspace)"
cargo test --workspace --locked --no-fail-fast

step "dashboard browser tests (real sysmon binary, headless Chromium via playwright-core)"
cargo build --locked --quiet -p sysmon-bin --bin sysmon -p sysmon-dashboard --example seed_db
(cd crates/sysmon-dashboard/web && npm ci --no-audit --no-fund && node --test tests/)

step "examples"
cargo run --locked --quiet --example custom_collector
cargo run --locked --quiet --example embed_agent

step "benches compile and run once (criterion --test mode, no timing)"
cargo test --locked --benches --quiet

step "Debian packages: build (release profile), unpack, run, check units"
bash scripts/test-packages.sh --profile release

step "done"
printf '\nall checks passed in %d s\n' $(( $(date +%s) - started ))
