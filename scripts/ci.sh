#!/usr/bin/env bash
# What CI runs, in order: formatting, lints, the test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

echo "== cargo test"
cargo test

# A small fan-out bench with loose thresholds: a broken fan-out path (loss, stalls) fails CI. Speed is
# proved by scripts/bench.sh and recorded in the README, not here.
echo "== rtctl bench (smoke)"
cargo build --quiet
"${CARGO_TARGET_DIR:-target}/debug/rtctl" bench fanout --spawn -n 200 -r 10 -d 5s -q \
  -t 'loss=0' -t 'duplicates=0' -t 'out_of_order=0' -t 'p99<500ms'
