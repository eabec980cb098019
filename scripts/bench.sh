#!/usr/bin/env bash
# Runs the standard `rtctl bench` set against a spawned rtctl hub and against the Django Channels peer
# (bench/peer), then prints one markdown table. Each row's thresholds are the project's targets
# (docs/performance.md has the results and how to read them).
#
#   scripts/bench.sh                 # both hubs
#   HUBS=rtctl scripts/bench.sh      # only rtctl (HUBS=peer: only Django)
#   QUICK=1 scripts/bench.sh         # skip the 10k and 18k connection rows
#   SETTLE=5                         # seconds between rows, for the hub to work off any backlog
#   REPEAT=3                         # run each latency row 3 times and report the run with the median p99
#                                    # (one VM scheduling stall can decide the p99 of a single 10 s run)
#
# Environment: RTCTL (binary, default: cargo build --release), PEER_URL (a running peer; otherwise one is
# started on PEER_PORT, default 8101), PEER_SCRIPT (what starts it, given the port; default
# bench/peer/run.sh, which makes the peer's virtualenv from PyPI on first use).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
hubs="${HUBS:-rtctl peer}"
out="$(mktemp -d "${TMPDIR:-/tmp}/rtctl-bench.XXXXXX")"
peer_script="${PEER_SCRIPT:-$here/bench/peer/run.sh}"
peer_port="${PEER_PORT:-8101}"
sources="127.0.0.1-127.0.0.8"

if [ -z "${RTCTL:-}" ]; then
  (cd "$here" && cargo build --release --quiet)
  RTCTL="${CARGO_TARGET_DIR:-$here/target}/release/rtctl"
fi

# name | bench arguments | thresholds (the project's targets)
# Lightest first: an overloaded hub (the peer) may still be working off its backlog after a heavy row.
rows=(
  "fanout 100 x 20/s|fanout -n 100 -r 20 -d 10s|p99<3ms loss=0"
  "broadcast 1k x 2/s|fanout -n 1000 -r 2 -d 10s|p99<15ms loss=0"
  "fanout 1k x 50/s|fanout -n 1000 -r 50 -d 10s|p99<20ms loss=0"
  "saturation 1k|fanout -n 1000 -r 1 -d 5s --find-max --find-max-factor 2 --find-max-steps 12|loss=0 p99<1s"
)
if [ -z "${QUICK:-}" ]; then
  rows+=(
    "fanout 10k x 10/s|fanout -n 10000 -r 10 -d 10s --source-ips $sources|p99<50ms loss=0"
    "idle 18k|idle -n 18000 -d 5s --source-ips $sources --connect-rate 3000|memory_per_connection<=8KiB"
  )
fi

peer_pid=""
cleanup() { if [ -n "$peer_pid" ]; then kill "$peer_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

# bench HUB ROW_INDEX RUN: runs one row against one hub, leaves its JSON summary in $out.
bench() {
  local hub="$1" i="$2" run="$3" name args thresholds
  IFS='|' read -r name args thresholds <<<"${rows[$i]}"
  local flags=(--json -q)
  for t in $thresholds; do flags+=(-t "$t"); done
  case "$hub" in
    rtctl) flags+=(--spawn) ;;
    peer) flags+=(--url "$peer_url" --jwt-secret bench-secret --api-key bench-key)
          if [ -n "$peer_pid" ]; then flags+=(--hub-pid "$(pgrep -P "$peer_pid" -f daphne || echo "$peer_pid")"); fi ;;
  esac
  # shellcheck disable=SC2086 # the row's arguments are meant to split
  "$RTCTL" bench $args "${flags[@]}" >"$out/$hub.$i.$run.json" 2>"$out/$hub.$i.$run.err" || true
}

for hub in $hubs; do
  if [ "$hub" = peer ]; then
    peer_url="${PEER_URL:-}"
    if [ -z "$peer_url" ]; then
      peer_url="http://127.0.0.1:$peer_port"
      "$peer_script" "$peer_port" >"$out/peer.log" 2>&1 &
      peer_pid=$!
      for _ in $(seq 1 600); do curl -s -o /dev/null "$peer_url/" && break; sleep 0.5; done
    fi
  fi
  for i in "${!rows[@]}"; do
    echo "running ${rows[$i]%%|*} against $hub" >&2
    # The Django peer has no /api/v1/stats, and 10k connections take it minutes: skip what it cannot do.
    if [ "$hub" = peer ] && [[ "${rows[$i]}" == idle* || "${rows[$i]}" == *"-n 10000"* ]]; then continue; fi
    # Saturation and idle rows are not latency targets, and take long: once is enough.
    runs="${REPEAT:-1}"
    if [[ "${rows[$i]}" == saturation* || "${rows[$i]}" == idle* ]]; then runs=1; fi
    for run in $(seq 1 "$runs"); do
      bench "$hub" "$i" "$run"
      sleep "${SETTLE:-5}"
    done
  done
done

# One markdown row per (scenario, hub), from the JSON summaries.
python3 - "$out" "${#rows[@]}" $hubs <<'PY'
import glob, json, os, sys
out, count, hubs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("| scenario | hub | p50 ms | p99 ms | max ms | deliveries/s | lost | bench CPU | hub CPU | machine busy | hub mem/conn | thresholds | p99 of every run |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
for i in range(count):
    for hub in hubs:
        runs = []
        for path in sorted(glob.glob(f"{out}/{hub}.{i}.*.json")):
            try:
                runs.append(json.load(open(path)))
            except ValueError:
                err = open(path[:-len("json")] + "err").read().strip().splitlines()
                print(f"| row {i} | {hub} | error: {err[-1] if err else 'no output'} |")
        if not runs:
            continue
        # The run with the median p99 stands for the row; every run's p99 is listed beside it.
        runs.sort(key=lambda run: run["latency_ms"]["p99"])
        s = runs[(len(runs) - 1) // 2]
        every = ", ".join(f"{run['latency_ms']['p99']:.2f}" for run in runs)
        fm = s.get("find_max")
        name = s["scenario"] + f" {s['settings']['subscribers']}"
        name += f" find-max → {fm['max_rate'] or 0:.0f} msg/s" if fm else f" × {s['settings']['rate']:g}/s"
        lat, d, hub_use = s["latency_ms"], s["deliveries"], s["hub"]
        mem = hub_use["memory_per_connection_bytes"]
        # CPU while measuring: cores of the bench and the hub, and how busy the whole machine was.
        window = s["cpu"]
        cpu = window["hub_cores"]
        busy = window["machine_busy_pct"]
        verdict = " ".join(("✔ " if t["passed"] else "✘ ") + t["expr"] for t in s["thresholds"])
        print(f"| {name} | {hub} | {lat['p50']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} | {d['per_s']:.0f} | {d['lost']} "
              f"| {window['bench_cores']:.2f} | {'-' if cpu is None else f'{cpu:.2f}'} | {'-' if busy is None else f'{busy:.0f} %'} "
              f"| {'-' if mem is None else f'{mem / 1024:.1f} KiB'} | {verdict} | {every} |")
PY
echo "raw summaries: $out" >&2
