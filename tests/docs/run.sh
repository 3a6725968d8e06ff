#!/usr/bin/env bash
# Loads the API reference (/docs) in a real browser with the network to every other host cut:
# starts the api on SQLite, then tests/docs/browser.py drives Debian's Chromium through
# Playwright, aborting every request that leaves the host, and checks that the reference renders
# all the operations of the spec from this host alone.
#
#   tests/docs/run.sh [API_BINARY]     (default: ${CARGO_TARGET_DIR:-target}/debug/api)
#
# Chromium comes from Debian (`apt-get install chromium`, done here when missing and run as
# root); Playwright is pinned in requirements.txt and installed once into
# ${XDG_CACHE_HOME:-~/.cache}/tributary-ci, keyed by a hash of that file. The last line is
# `docs: N passed, N failed`; any failure exits non-zero.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
api_bin=${1:-${CARGO_TARGET_DIR:-$root/target}/debug/api}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tributary-ci
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$api_bin" ] || { echo "no api binary at $api_bin: cargo build -p api --bin api" >&2; exit 1; }
mkdir -p "$cache"

fail() { echo "$1" >&2; echo "docs: 0 passed, 1 failed"; exit 1; }

if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
      fail "apt-get install chromium failed: is the Debian mirror reachable?"
  fi
  [ -x "$chromium" ] || fail "no Chromium at $chromium: apt-get install chromium (or set CHROMIUM)"
fi

key=$( (python3 --version; cat "$here/requirements.txt") | sha256sum | cut -c1-16)
venv=$cache/docs-venv-$key
# One builder at a time; a venv counts only once its marker is written.
exec 9>"$cache/docs-venv.lock"
flock 9
if [ ! -e "$venv/.installed" ]; then
  echo "installing Playwright into $venv"
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --timeout 60 --retries 2 \
    -r "$here/requirements.txt" || { rm -rf "$venv"; fail "pip install failed: is PyPI reachable?"; }
  touch "$venv/.installed"
fi
flock -u 9

scratch=$(mktemp -d)
api_pid=
cleanup() {
  if [ -n "$api_pid" ]; then kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; fi
  rm -rf "$scratch"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
mkdir -p "$scratch/data"
env -u DATABASE_URL -u TRIBUTARY_QUEUE_URL -u TRIBUTARY_PUBLIC_URL \
  TRIBUTARY_DATA_DIR="$scratch/data" TRIBUTARY_LISTEN="127.0.0.1:$port" RUST_LOG=warn \
  "$api_bin" >"$scratch/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$api_pid" 2>/dev/null || { cat "$scratch/api.log" >&2; fail "the api exited"; }
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || { cat "$scratch/api.log" >&2; fail "the api is not ready"; }
echo "api ready at $base"

# Playwright's own browser download is never used: Debian's Chromium is launched by path.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$venv/bin/python" "$here/browser.py" "$base" "$chromium"
