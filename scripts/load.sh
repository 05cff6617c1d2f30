#!/usr/bin/env bash
# Ingress load test: starts `wecom-bridge serve` (release build, the shipped config, store in a
# temporary directory) and drives it on loopback with distinct, valid callbacks. Prints
# throughput and latency percentiles, then how fast the outbox drained into the broker.
# Everything stays on 127.0.0.1.
#
#   scripts/load.sh                       # embedded broker
#   BROKER=rabbitmq scripts/load.sh       # RabbitMQ on 127.0.0.1:5672 (guest/guest)
#   BROKER=none scripts/load.sh           # ingress + durable journal only: the broker URL points
#                                         # at a closed port, so the outbox just accumulates
#   ROUTED=1 scripts/load.sh              # the shipped expense mappings and finance connector,
#                                         # pointed at stand-ins (`loadgen --standins`, a separate
#                                         # process): the route stage fetches every approval's
#                                         # detail, maps it and delivers a voucher
#   REQUESTS=200000 CONCURRENCY=128 RATE=5000 SECONDS_AT_RATE=10 scripts/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-100000}
CONCURRENCY=${CONCURRENCY:-64}
RATE=${RATE:-5000}
SECONDS_AT_RATE=${SECONDS_AT_RATE:-10}
PORT=${PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-18081}
export BROKER=${BROKER:-embedded}
ROUTED=${ROUTED:-}
PREFIX="wbload-$$"
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
. scripts/rabbitmq-queues.sh

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin wecom-bridge --example loadgen
work=$(mktemp -d)
mkdir -p "$work/mappings"
repo=$PWD
pid=""
standins_pid=""
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
  [ -z "$standins_pid" ] || kill "$standins_pid" 2>/dev/null || true
  [ -z "$standins_pid" ] || wait "$standins_pid" 2>/dev/null || true
  rm -rf "$work"
  if [ "$BROKER" = rabbitmq ]; then delete_queues "$PREFIX"; fi
}
trap cleanup EXIT

broker_env=()
if [ "$BROKER" = none ]; then
  broker_env=(BRIDGE_BROKER__KIND=rabbitmq "BRIDGE_BROKER__URL=amqp://guest:guest@127.0.0.1:1/%2f")
elif [ "$BROKER" = rabbitmq ]; then
  broker_env=(BRIDGE_BROKER__KIND=rabbitmq "BRIDGE_BROKER__URL=amqp://guest:guest@127.0.0.1:5672/%2f"
              "BRIDGE_BROKER__PREFIX=$PREFIX")
fi
# Unrouted (default): an empty mapping directory, so the route stage consumes, records and
# acknowledges every event (the demo app has no API secret, so routed events would be
# parked, one error line each).
# Routed: the stand-ins write a catalog (shipped expense mappings, finance connector at the
# shipped concurrency 8 without its rate limit) and the settings that point the bridge at them.
catalog_env=(BRIDGE_CATALOG__MAPPINGS_DIR="$work/mappings" BRIDGE_CATALOG__CONNECTORS_DIR="$repo/connectors")
if [ -n "$ROUTED" ]; then
  "$target/release/examples/loadgen" --standins "$work/standins" --repo "$repo" --concurrency 8 &
  standins_pid=$!
  for _ in $(seq 300); do [ -f "$work/standins/bridge.env" ] && break; sleep 0.1; done
  [ -f "$work/standins/bridge.env" ] || { echo "the stand-ins did not start" >&2; exit 1; }
  mapfile -t catalog_env < "$work/standins/bridge.env"
fi
# Store and key in the temporary directory (the shipped config's relative paths are relative
# to config/, i.e. the repository's data/).
(cd "$work" && exec env "${broker_env[@]}" "${catalog_env[@]}" BRIDGE_SERVER__LISTEN=127.0.0.1:$PORT \
  BRIDGE_ADMIN__LISTEN=127.0.0.1:$ADMIN_PORT BRIDGE_RECONCILE__ENABLED=false \
  BRIDGE_STORE__PATH="$work/data/bridge.redb" BRIDGE_JOURNAL__KEYS__LOCAL-1="file:$work/data/journal.key" \
  RUST_LOG=error "$target/release/wecom-bridge" --config "$repo/config/bridge.toml" serve) &
pid=$!
ready=no
for _ in $(seq 300); do
  if curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" | grep -q '"state":"ok"\|"state":"connecting"'; then ready=yes; break; fi
  sleep 0.1
done
[ "$ready" = yes ] || { echo "the bridge did not become ready on 127.0.0.1:$ADMIN_PORT" >&2; exit 1; }
backlog() { curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" | sed -n 's/.*"outbox_backlog":\([0-9]*\).*/\1/p'; }
# Sum of the samples of a metric whose line contains a label text ("" = all).
metric() { curl -fs "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v name="$1" -v label="$2" \
  'index($0, name) == 1 && index($0, label) { s += $NF } END { printf "%d\n", s }'; }
# User + system CPU seconds of the bridge so far (clock ticks of /proc/PID/stat, 100 per second).
cpu_secs() { awk '{ printf "%.2f\n", ($14 + $15) / 100 }' "/proc/$pid/stat"; }
disk_bytes() { awk '/^write_bytes/ { print $2 }' "/proc/$pid/io"; }
route_settled() { metric wecom_bridge_stage_messages_total 'stage="route"'; }

url="http://127.0.0.1:$PORT/wecom/callback"
echo "broker: $BROKER; callbacks $([ -n "$ROUTED" ] && echo "routed (fetched, mapped, delivered to the finance stand-in)" || echo "unrouted (no mapping)"); $(uptime)"
commits0=$(metric wecom_bridge_store_commits_total 'durable="true"')
lazy0=$(metric wecom_bridge_store_commits_total 'durable="false"')
bytes0=$(disk_bytes)
route0=$(route_settled)
cpu0=$(cpu_secs)
t0=$(date +%s.%N)
"$target/release/examples/loadgen" --url "$url" --concurrency "$CONCURRENCY" --requests "$REQUESTS"
t1=$(date +%s.%N)
awk -v n="$REQUESTS" -v a="$cpu0" -v b="$(cpu_secs)" 'BEGIN {
  printf "bridge CPU during the closed loop: %.2f s → %.0f µs per callback\n", b-a, (b-a)*1e6/n }'
echo "outbox backlog right after the closed loop: $(backlog)"
if [ "$BROKER" != none ]; then
while [ "$(backlog)" != "0" ]; do sleep 0.05; done
t2=$(date +%s.%N)
awk -v n="$REQUESTS" -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
  printf "ingress → %s confirmed: %d events journaled and confirmed in %.2f s → %.0f events/s (outbox drained %.2f s after the last 200)\n", ENVIRON["BROKER"], n, c-a, n/(c-a), c-b }'
  # Store work per callback, until the route stage has settled every event of the run.
  for _ in $(seq 1200); do
    [ $(( $(route_settled) - route0 )) -ge "$REQUESTS" ] && break
    sleep 0.1
  done
  t3=$(date +%s.%N)
  commits1=$(metric wecom_bridge_store_commits_total 'durable="true"')
  lazy1=$(metric wecom_bridge_store_commits_total 'durable="false"')
  bytes1=$(disk_bytes)
  routed=$(( $(route_settled) - route0 ))
  awk -v n="$REQUESTS" -v r="$routed" -v d=$((commits1 - commits0)) -v l=$((lazy1 - lazy0)) \
    -v b=$((bytes1 - bytes0)) -v a="$t0" -v c="$t3" 'BEGIN {
    printf "route stage settled %d of %d events %.2f s after the first callback\n", r, n, c-a
    printf "store per callback (ingress + relay + route): %.4f durable commits (fsync), %.4f non-durable commits; %.0f bytes written to disk\n", d/n, l/n, b/n }'
fi
"$target/release/examples/loadgen" --url "$url" --concurrency "$CONCURRENCY" --rate "$RATE" --seconds "$SECONDS_AT_RATE"
echo "server peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}'); $(uptime)"
if [ -n "$ROUTED" ]; then
  echo "deliver stage: $(metric wecom_bridge_stage_messages_total 'stage="deliver"') jobs settled so far"
  kill "$standins_pid"; wait "$standins_pid" || true; standins_pid=""
fi
if [ "$BROKER" = rabbitmq ]; then
  # the limit, in the same run: bare lapin confirmed publishes to a quorum queue
  kill "$pid"; wait "$pid" 2>/dev/null || true
  cargo bench --quiet --bench broker_rabbitmq 2>/dev/null | grep -E "msg/s|ratio" || true
fi
