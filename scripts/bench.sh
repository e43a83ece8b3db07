#!/usr/bin/env bash
# The benchmark suite: builds the release binaries it drives, then prints one line per figure.
#   scripts/bench.sh                      every benchmark (large org, 25 ms per ADO request)
#   scripts/bench.sh --only mapping       one of: resync, mapping, webhook, cold
#   scripts/bench.sh --size small --latency-ms 0
#   scripts/bench.sh --only resync --unmetered   without the simulated TSTU budget
# The webhook's SQS figure needs moto (scripts/moto.sh install); without it that line says skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
# Two builds: one command would unify features, and the bench's `embedded` (SQLite) would leak into the
# functions it measures; built alone they are the binaries a deploy ships. The CLI is for `ado-sync map`.
cargo build --release --locked -p webhook-function -p processor-function -p resync-function
cargo build --release --locked -p ado-sync-bench -p ado-sync-cli
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target_dir/release/ado-sync-bench" "$@"
