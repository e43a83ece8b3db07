#!/usr/bin/env bash
# The SAM stack, checked the way a deploy would build it, without Docker or an AWS account:
#   scripts/sam.sh install   create .venv-sam at the repo root with the pinned tools (idempotent)
#   scripts/sam.sh lint      sam validate --lint and cfn-lint on template.yaml
#   scripts/sam.sh build     sam build (cargo lambda, arm64, release) and check the three bootstraps
#   scripts/sam.sh           all of the above, in that order (what scripts/test.sh runs)
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned to the versions measured together: SAM CLI 1.170.0 builds `rust-cargolambda` functions
# without Docker or --beta-features; cargo-lambda 1.9.2 cross-compiles to arm64 with zig (ziglang).
SAM_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
CARGO_LAMBDA_VERSION=1.9.2
ZIGLANG_VERSION=0.17.0
VENV=.venv-sam
# The functions of template.yaml and the binary each one builds.
FUNCTIONS=(WebhookFunction:webhook ProcessorFunction:processor ResyncFunction:resync)

# sam and cfn-lint need a region and credentials to exist, never to be valid: nothing here calls AWS.
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-offline} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-offline}
export SAM_CLI_TELEMETRY=0
export PATH="$PWD/$VENV/bin:$PATH"

installed() {
  "$VENV/bin/python" - "$@" <<'EOF' 2>/dev/null
import importlib.metadata as m, sys
wanted = dict(a.split("==") for a in sys.argv[1:])
sys.exit(any(m.version(name) != version for name, version in wanted.items()))
EOF
}

install() {
  # cargo-lambda would add the target itself on the first build; doing it here fails early and clearly.
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    rustup target add aarch64-unknown-linux-gnu
  fi
  local pins=("aws-sam-cli==$SAM_VERSION" "cfn-lint==$CFN_LINT_VERSION"
    "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIGLANG_VERSION")
  if [ -x "$VENV/bin/sam" ] && installed "${pins[@]}"; then
    return 0
  fi
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  local start=$SECONDS
  "$VENV/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
  echo "installed ${pins[*]} into $VENV in $((SECONDS - start)) s"
}

lint() {
  sam validate --lint --template template.yaml
  cfn-lint template.yaml
  echo "template.yaml: sam validate --lint and cfn-lint passed"
}

build() {
  local start=$SECONDS
  sam build --template template.yaml
  echo "sam build took $((SECONDS - start)) s"
  check_artifacts
}

# Each function's bootstrap must be a 64-bit little-endian ELF for aarch64 (e_machine 0xB7, at byte 18):
# an x86-64 binary would deploy fine and fail only at its first invocation.
check_artifacts() {
  local failed=0 entry fn bin path header size
  for entry in "${FUNCTIONS[@]}"; do
    fn=${entry%%:*} bin=${entry#*:}
    path=.aws-sam/build/$fn/bootstrap
    if [ ! -f "$path" ]; then
      echo "FAIL $fn: $path is missing" >&2
      failed=1
      continue
    fi
    header=$(od -An -tx1 -N20 "$path" | tr -d ' \n')
    # magic 7f454c46, class 02 (64-bit), data 01 (little-endian); then e_machine b700 at offset 18.
    if [ "${header:0:12}" != 7f454c460201 ] || [ "${header:36:4}" != b700 ]; then
      echo "FAIL $fn: $path is not a 64-bit aarch64 ELF (header $header)" >&2
      failed=1
      continue
    fi
    # The functions build shared without its `embedded` feature: no SQLite in a Lambda.
    if grep -qa "SQLite format 3" "$path"; then
      echo "FAIL $fn: $path links SQLite (shared's embedded feature leaked into the function)" >&2
      failed=1
      continue
    fi
    size=$(stat -c %s "$path")
    # Target: each stripped bootstrap at most 8 MB (issue 17); printed, not enforced.
    printf '%-18s %-10s aarch64 ELF, %s bytes (%s MB; target <= 8 MB: %s)\n' "$fn" "$bin" "$size" \
      "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')" "$([ "$size" -le 8000000 ] && echo met || echo missed)"
  done
  if [ "$failed" -ne 0 ]; then
    echo "sam build artefacts are wrong, see above" >&2
    exit 1
  fi
}

case "${1:-all}" in
  install) install ;;
  lint) install && lint ;;
  build) install && build ;;
  check-artifacts) check_artifacts ;;
  all) install && lint && build ;;
  *)
    echo "usage: scripts/sam.sh [install | lint | build | check-artifacts | all]" >&2
    exit 2
    ;;
esac
