#!/usr/bin/env bash
# Fuzzing, outside CI's time budget: seeded structure-aware mutations of the sample deliveries
# (events/ado) through the webhook's parse + classify, and of the mapping files (shared/defaults,
# tests/data) through the mapping loader. Exits non-zero on any panic, printing the case seed.
#   scripts/fuzz.sh                                  1,000,000 deliveries and 100,000 mapping files
#   scripts/fuzz.sh --seed 7 --deliveries 10000 --mappings 1000
#   scripts/fuzz.sh --replay delivery 0x1f2e...      one case again, with its input
#   scripts/fuzz.sh --skip 500000                    resume (e.g. after a crash that printed no seed)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile fuzz --locked -p ado-sync-bench --bin ado-sync-fuzz
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target_dir/fuzz/ado-sync-fuzz" --root . "$@"
