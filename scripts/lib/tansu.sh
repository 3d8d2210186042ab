# Sourced by the benchmark scripts: a scratch directory ($work, removed at exit), the
# background processes to stop at exit ($pids), and a tansu broker with memory storage on
# a free port ($port, $brokers), up when this returns.
tansu="$(command -v tansu || echo "$HOME/.cargo/bin/tansu")"
[ -x "$tansu" ] || { echo "tansu not found: run scripts/setup.sh" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
brokers="127.0.0.1:$port"
"$tansu" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
  --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
