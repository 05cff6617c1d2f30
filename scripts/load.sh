#!/usr/bin/env bash
# Ingress load test: starts `wecom-bridge serve` (release build, embedded store on disk in a
# temporary directory, the shipped demo app) and drives it on loopback with distinct, valid
# callbacks. Prints throughput and latency percentiles. Everything stays on 127.0.0.1.
#
#   scripts/load.sh                 # closed loop (max throughput) + paced 5,000/s for 10 s
#   REQUESTS=200000 CONCURRENCY=128 RATE=5000 SECONDS_AT_RATE=10 scripts/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-100000}
CONCURRENCY=${CONCURRENCY:-64}
RATE=${RATE:-5000}
SECONDS_AT_RATE=${SECONDS_AT_RATE:-10}
PORT=${PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-18081}

cargo build --release --quiet --bin wecom-bridge --example loadgen
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
repo=$PWD
# run in the temporary directory: the shipped config keeps its store and key under ./data
(cd "$work" && BRIDGE_SERVER__LISTEN=127.0.0.1:$PORT BRIDGE_ADMIN__LISTEN=127.0.0.1:$ADMIN_PORT \
  RUST_LOG=error exec "$repo/target/release/wecom-bridge" --config "$repo/config/bridge.toml" serve) &
pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
url="http://127.0.0.1:$PORT/wecom/callback"
target/release/examples/loadgen --url "$url" --concurrency "$CONCURRENCY" --requests "$REQUESTS"
target/release/examples/loadgen --url "$url" --concurrency "$CONCURRENCY" --rate "$RATE" --seconds "$SECONDS_AT_RATE"
echo "journal: $(curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz")"
echo "server peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
