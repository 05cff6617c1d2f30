#!/usr/bin/env bash
# End-to-end load: signed, encrypted approval callbacks → `wecom-bridge serve` (release, a
# separate process) → route (WeCom API stand-in) → the shipped expense-voucher mapping → the
# shipped finance connector (OAuth2) → the finance stand-in, which timestamps each voucher.
# The stand-ins and the generator run in one process (examples/e2e_load.rs); they share the
# machine's cores with the bridge, and it prints the CPU each side used. Everything stays on
# 127.0.0.1. Each run asserts at the target: vouchers = callbacks sent, none twice.
#
#   scripts/e2e-load.sh                          # the three runs recorded in BENCHMARKS.md
#   RUNS="paced-rabbitmq" scripts/e2e-load.sh    # one of them
#   RATE=1000 SECONDS_AT_RATE=60 CLOSED_SECONDS=30 WINDOW=2000 CONNECTIONS=32 \
#   ROUTE_CONCURRENCY=64 DELIVER_CONCURRENCY=64 scripts/e2e-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-paced-embedded paced-rabbitmq closed-embedded}
RATE=${RATE:-1000}
SECONDS_AT_RATE=${SECONDS_AT_RATE:-60}
CLOSED_SECONDS=${CLOSED_SECONDS:-30}
WINDOW=${WINDOW:-2000}
CONNECTIONS=${CONNECTIONS:-32}
ROUTE_CONCURRENCY=${ROUTE_CONCURRENCY:-64}
DELIVER_CONCURRENCY=${DELIVER_CONCURRENCY:-64}
PREFIX="wbe2eload-$$"
. scripts/rabbitmq-queues.sh
trap 'delete_queues "$PREFIX"' EXIT

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin wecom-bridge --example e2e_load
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
e2e() {
  "$target/release/examples/e2e_load" --bin "$target/release/wecom-bridge" --repo . \
    --connections "$CONNECTIONS" --route-concurrency "$ROUTE_CONCURRENCY" \
    --deliver-concurrency "$DELIVER_CONCURRENCY" "$@"
}
for run in $RUNS; do
  echo "== $run"
  case $run in
    paced-embedded)  e2e --broker embedded --mode paced --rate "$RATE" --seconds "$SECONDS_AT_RATE" ;;
    paced-rabbitmq)  e2e --broker rabbitmq --prefix "$PREFIX" --mode paced --rate "$RATE" --seconds "$SECONDS_AT_RATE"
                     delete_queues "$PREFIX" ;;
    closed-embedded) e2e --broker embedded --mode closed --seconds "$CLOSED_SECONDS" --window "$WINDOW" ;;
    *) echo "unknown run $run (paced-embedded, paced-rabbitmq, closed-embedded)" >&2; exit 2 ;;
  esac
done
