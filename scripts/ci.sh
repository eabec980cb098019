#!/usr/bin/env bash
# What CI runs, in order: formatting, lints, the API docs, the test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

echo "== cargo doc --no-deps (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

# The multi-node tests need a Redis: the machine's own when one answers on 6379, else a throwaway
# redis-server on a free port (keeping nothing on disk), stopped on exit.
redis_pid=""
trap 'if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; fi' EXIT
if [ -z "${RTCTL_TEST_REDIS_URL:-}" ]; then
  if (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; then
    export RTCTL_TEST_REDIS_URL=redis://127.0.0.1:6379
  elif command -v redis-server >/dev/null; then
    port=$((20000 + RANDOM % 20000))
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
    redis_pid=$!
    export RTCTL_TEST_REDIS_URL="redis://127.0.0.1:$port"
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  else
    echo "no Redis on 127.0.0.1:6379 and no redis-server to start: the multi-node tests need one" >&2
    exit 1
  fi
fi
# The browser tests drive a headless Chromium through chromedriver: Debian's packages are installed when
# there is no chromedriver, and RTCTL_TEST_BROWSER=1 makes a browser that cannot start a failure, not a skip.
if ! command -v chromedriver >/dev/null; then
  echo "== apt-get install chromium chromium-driver (the browser tests)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if ! { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }; then
    echo "cannot install chromium and chromium-driver: the browser tests need chromedriver on PATH" >&2
    exit 1
  fi
fi
export RTCTL_TEST_BROWSER=1

echo "== cargo test (SQLite store; multi-node tests on $RTCTL_TEST_REDIS_URL)"
# copy_store copies a SQLite hub into PostgreSQL: it runs in the PostgreSQL pass below.
env -u RTCTL_TEST_DATABASE_URL cargo test -- --include-ignored --skip copy_store

# The same tests once more with every store in PostgreSQL (a schema per test, dropped afterwards): the
# machine's server on 5432 unless RTCTL_TEST_DATABASE_URL names another.
if [ -z "${RTCTL_TEST_DATABASE_URL:-}" ]; then
  if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    echo "no PostgreSQL on 127.0.0.1:5432: set RTCTL_TEST_DATABASE_URL to run the PostgreSQL pass" >&2
    exit 1
  fi
  # The role is named explicitly: sqlx's default user name is not always the OS user's.
  export RTCTL_TEST_DATABASE_URL="postgres://${PGUSER:-$(id -un)}@127.0.0.1:5432/test"
fi
echo "== cargo test (PostgreSQL store)"
cargo test -- --include-ignored

# A small fan-out bench with loose thresholds: a broken fan-out path (loss, stalls) fails CI. Speed is
# proved by scripts/bench.sh and recorded in docs/performance.md, not here.
echo "== rtctl bench (smoke)"
cargo build --quiet
"${CARGO_TARGET_DIR:-target}/debug/rtctl" bench fanout --spawn -n 200 -r 10 -d 5s -q \
  -t 'loss=0' -t 'duplicates=0' -t 'out_of_order=0' -t 'p99<500ms'
