#!/usr/bin/env bash
# Runs the Django Channels peer with daphne on 127.0.0.1:PORT (default 8101), in the foreground.
# The first run makes a virtualenv (PEER_VENV, default bench/peer/.venv) with requirements.txt from
# PyPI; a changed requirements.txt re-installs it.
#
#   bench/peer/run.sh 8101                     # in-memory channel layer
#   PEER_LAYER=redis bench/peer/run.sh 8102    # channels_redis (PEER_REDIS_URL, default redis://127.0.0.1:6379/0)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
port="${1:-8101}"
venv="${PEER_VENV:-$here/.venv}"
python="${PYTHON:-python3}"

if ! cmp -s "$here/requirements.txt" "$venv/requirements.installed" 2>/dev/null; then
  echo "peer: installing requirements.txt into $venv (first use)" >&2
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/requirements.installed"
fi

cd "$here"
exec "$venv/bin/daphne" -b "${PEER_BIND:-127.0.0.1}" -p "$port" peerhub.asgi:application
