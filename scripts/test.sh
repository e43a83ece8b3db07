#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
# Incremental caches double the size of target/ and buy nothing on a fresh CI clone.
export CARGO_INCREMENTAL=0

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== moto (SQS emulator for the queue tests)"
scripts/moto.sh install
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
trap 'rm -f "$log"; scripts/moto.sh stop' EXIT
MOTO_ENDPOINT=$(scripts/moto.sh start "$port")
export MOTO_ENDPOINT
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
# One closing line for the whole suite (cargo prints one per test binary, the last often a doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
