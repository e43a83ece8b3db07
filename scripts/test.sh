#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the dependency policy (deny.toml), every test
# of the workspace, then the SAM template checks and the arm64 build of the three functions (scripts/sam.sh).
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
echo "== cargo deny check bans licenses sources (deny.toml)"
# Pinned; built once per machine (about 3 min on 2 cores), then found on PATH.
CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
  cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION"
fi
cargo deny --log-level error check bans licenses sources
echo "== moto (SQS emulator for the queue tests)"
scripts/moto.sh install
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
trap 'rm -f "$log"; scripts/moto.sh stop' EXIT
MOTO_ENDPOINT=$(scripts/moto.sh start "$port")
export MOTO_ENDPOINT
echo "== cargo test"
# pipefail (set above) makes the pipeline's status cargo's, not tee's; keep it and go on to the summary.
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite (cargo prints one per test binary, the last often a doc-test run).
summary=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log")
echo "$summary"
if [ "$status" -ne 0 ]; then
  echo "cargo test failed (exit $status)" >&2
  exit "$status"
fi

# The deployable stack: template lint and the arm64 release build SAM would deploy. SKIP_SAM=1 skips it
# (a quick local run); CI always runs it.
if [ "${SKIP_SAM:-}" != 1 ] || [ -n "${CI:-}" ]; then
  if [ -n "${CI:-}" ]; then
    # CI's disk is small: the debug test build (about 1 GiB) is not needed for the release build.
    rm -rf "${CARGO_TARGET_DIR:-target}/debug"
  fi
  echo "== sam validate --lint, cfn-lint, sam build (scripts/sam.sh)"
  scripts/sam.sh
  # The suite's closing line again, last, for whoever reads only the end of the log.
  echo "tests: $summary"
fi
