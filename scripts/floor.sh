#!/usr/bin/env bash
# Runs scripts/loopback-floor.c (a bare C sender and receiver over loopback TCP) for the latency rows of
# scripts/bench.sh, alternating with `rtctl bench --spawn` on the same row, so that both see the same
# moment of a noisy machine. Needs a C compiler.
#
#   scripts/floor.sh            # 3 rounds
#   ROUNDS=5 scripts/floor.sh
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/rtctl-floor.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cc -O2 -pthread "$here/scripts/loopback-floor.c" -o "$work/floor"
if [ -z "${RTCTL:-}" ]; then
  (cd "$here" && cargo build --release --quiet)
  RTCTL="${CARGO_TARGET_DIR:-$here/target}/release/rtctl"
fi

# subscribers | rate | sender threads (rtctl splits a broadcast above 1,024 members over both cores)
rows=("100 20 1" "1000 2 1" "10000 10 2")
for _ in $(seq 1 "${ROUNDS:-3}"); do
  for row in "${rows[@]}"; do
    read -r subscribers rate threads <<<"$row"
    RATE="$rate" SECS=10 "$work/floor" "$subscribers" "$threads" 2
    sources=()
    if [ "$subscribers" -gt 5000 ]; then sources=(--source-ips 127.0.0.1-127.0.0.8); fi
    (cd "$work" && "$RTCTL" bench fanout -n "$subscribers" -r "$rate" -d 10s "${sources[@]}" --spawn --json -q) \
      | python3 -c '
import json, sys
s = json.load(sys.stdin)
lat, done, got, busy = s["latency_ms"], s["completion_ms"], s["deliveries"], s["cpu"]["machine_busy_pct"]
print("rtctl %d sockets x %g/s: %d/%d received, latency p50 %.2f p99 %.2f max %.2f ms, completion p50 %.2f ms, "
      "machine %.0f %% busy" % (s["settings"]["subscribers"], s["settings"]["rate"], got["received"], got["expected"],
      lat["p50"], lat["p99"], lat["max"], done["p50"], busy))'
  done
done
