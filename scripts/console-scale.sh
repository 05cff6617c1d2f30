#!/usr/bin/env bash
# Console and admin API page times with 100,000 journaled events and 100,000 delivery
# records in a real store on disk (examples/console_scale.rs): fills the store through the
# journal's writer and the ledger's import, starts the bridge on it (embedded broker, admin
# listener on a free loopback port), signs in to the console and times each page and list
# endpoint (median / p99 / max over REQUESTS sequential requests). Loopback only.
#
#   scripts/console-scale.sh                                  # the run recorded in BENCHMARKS.md
#   REQUESTS=500 scripts/console-scale.sh --path '/console/journey?sp_no=202600050000'
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-100000}
JOBS=${JOBS:-100000}
REQUESTS=${REQUESTS:-200}
cargo build --release --example console_scale
target="${CARGO_TARGET_DIR:-target}"
uptime
"$target/release/examples/console_scale" --events "$EVENTS" --jobs "$JOBS" --requests "$REQUESTS" "$@"
uptime
