#!/usr/bin/env bash
# The web console (/console/) in a real browser with the network to every other host cut: starts
# the api on a fresh database, then tests/console/browser.py drives Debian's Chromium through
# Playwright, only through the console's pages — sign up, a sandbox connection, a Stripe account,
# a flow made in the designer, a test event processed, a dead letter and its retry, another
# tenant's 404, the CSRF guard, sign out — aborting every request that leaves the host and
# running axe-core on every page it lands on (any "serious" or "critical" violation fails).
#
#   tests/console/run.sh [API_BINARY]     (default: ${CARGO_TARGET_DIR:-target}/debug/api)
#
#   CONSOLE_BACKENDS     the databases to run it on, in order: `sqlite` (default), `postgres`, or
#                        both (`"sqlite postgres"`). Postgres gets a fresh database on the server
#                        of ${TRIBUTARY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432},
#                        created with psql and dropped afterwards.
#   CONSOLE_SCREENSHOTS  where the full-page screenshots go, one directory per backend
#                        (default ${CARGO_TARGET_DIR:-target}/console-screenshots).
#
# Chromium comes from Debian (`apt-get install chromium`, done here when missing and run as
# root); Playwright and axe-playwright-python are pinned in requirements.txt and installed once
# into ${XDG_CACHE_HOME:-~/.cache}/tributary-ci, keyed by a hash of that file. The last line is
# `console: N passed, N failed`, summed over the backends; any failure exits non-zero.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
api_bin=${1:-${CARGO_TARGET_DIR:-$root/target}/debug/api}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tributary-ci
chromium=${CHROMIUM:-/usr/bin/chromium}
shots=${CONSOLE_SCREENSHOTS:-${CARGO_TARGET_DIR:-$root/target}/console-screenshots}
backends=${CONSOLE_BACKENDS:-sqlite}
pg_server=${TRIBUTARY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}
[ -x "$api_bin" ] || { echo "no api binary at $api_bin: cargo build -p api --bin api" >&2; exit 1; }
mkdir -p "$cache"

fail() { echo "$1" >&2; echo "console: 0 passed, 1 failed"; exit 1; }

for backend in $backends; do
  case $backend in sqlite | postgres) ;; *) fail "CONSOLE_BACKENDS: unknown backend $backend (sqlite, postgres)" ;; esac
done

if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
      fail "apt-get install chromium failed: is the Debian mirror reachable?"
  fi
  [ -x "$chromium" ] || fail "no Chromium at $chromium: apt-get install chromium (or set CHROMIUM)"
fi

key=$( (python3 --version; cat "$here/requirements.txt") | sha256sum | cut -c1-16)
venv=$cache/console-venv-$key
# One builder at a time; a venv counts only once its marker is written.
exec 9>"$cache/console-venv.lock"
flock 9
if [ ! -e "$venv/.installed" ]; then
  echo "installing Playwright and axe-playwright-python into $venv"
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --timeout 60 --retries 2 \
    -r "$here/requirements.txt" || { rm -rf "$venv"; fail "pip install failed: is PyPI reachable?"; }
  touch "$venv/.installed"
fi
flock -u 9

scratch=$(mktemp -d)
api_pid=
pg_db=
# The server's URL with another database in its path (the maintenance one, or a fresh one).
pg_url() { python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit((p.scheme, p.netloc, "/" + sys.argv[2], p.query, "")))' "$pg_server" "$1"; }
stop_api() {
  if [ -n "$api_pid" ]; then kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; fi
  api_pid=
  if [ -n "$pg_db" ]; then
    psql -q -X "$(pg_url postgres)" -c "DROP DATABASE IF EXISTS \"$pg_db\" WITH (FORCE)" >/dev/null 2>&1 ||
      echo "could not drop the Postgres database $pg_db" >&2
    pg_db=
  fi
}
cleanup() {
  stop_api
  rm -rf "$scratch"
}
trap cleanup EXIT

passed=0
failed=0

# run_on BACKEND: a fresh api on BACKEND, the browser test against it; adds to passed/failed.
run_on() {
  local backend=$1 data=$scratch/$1 log=$scratch/$1/api.log out=$scratch/$1/browser.out
  local database_url= port base line
  local -a db_env=()
  mkdir -p "$data/data"
  echo "--- console on $backend"
  if [ "$backend" = postgres ]; then
    command -v psql >/dev/null || { echo "no psql: apt-get install postgresql-client" >&2; failed=$((failed + 1)); return; }
    pg_db=trb_console_$(python3 -c 'import uuid; print(uuid.uuid4().hex)')
    if ! psql -q -X "$(pg_url postgres)" -c "CREATE DATABASE \"$pg_db\"" >"$data/psql.log" 2>&1; then
      cat "$data/psql.log" >&2
      echo "cannot create a database on $pg_server: is Postgres running (or set TRIBUTARY_TEST_DATABASE_URL)?" >&2
      pg_db=
      failed=$((failed + 1))
      return
    fi
    database_url=$(pg_url "$pg_db")
    db_env=(DATABASE_URL="$database_url")
    echo "fresh Postgres database $pg_db"
  fi

  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base=http://127.0.0.1:$port
  env -u DATABASE_URL -u TRIBUTARY_QUEUE_URL -u TRIBUTARY_PUBLIC_URL "${db_env[@]}" \
    TRIBUTARY_DATA_DIR="$data/data" TRIBUTARY_LISTEN="127.0.0.1:$port" RUST_LOG=warn \
    "$api_bin" >"$log" 2>&1 &
  api_pid=$!
  for _ in $(seq 1 300); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    kill -0 "$api_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! curl -fsS "$base/readyz" >/dev/null 2>&1; then
    cat "$log" >&2
    echo "the api on $backend did not become ready" >&2
    failed=$((failed + 1))
    stop_api
    return
  fi
  echo "api ready at $base on $backend"

  mkdir -p "$shots/$backend"
  rm -f "$shots/$backend"/*.png
  # Playwright's own browser download is never used: Debian's Chromium is launched by path.
  # Where the api keeps its data, for the one row the browser cannot make (tests/console/incidents.py).
  if [ "$backend" = postgres ]; then export CONSOLE_DATABASE_URL=$database_url; else export CONSOLE_DATABASE_URL=sqlite:$data/data/tributary.db; fi
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 900 \
    "$venv/bin/python" "$here/browser.py" "$base" "$chromium" "$shots/$backend" "$backend" 2>&1 |
    tee "$out" || true
  line=$(grep -E "^console \($backend\): [0-9]+ passed, [0-9]+ failed$" "$out" | tail -n 1 || true)
  if [ -n "$line" ]; then
    passed=$((passed + $(echo "$line" | awk '{print $3}')))
    failed=$((failed + $(echo "$line" | awk '{print $5}')))
  else
    echo "browser.py on $backend ended without its summary line" >&2
    failed=$((failed + 1))
  fi
  if [ -z "$line" ] || [ "$(echo "$line" | awk '{print $5}')" != 0 ]; then
    echo "--- the api's log on $backend (last 40 lines)" >&2
    tail -n 40 "$log" >&2
  fi
  stop_api
}

for backend in $backends; do run_on "$backend"; done

echo "console: $passed passed, $failed failed"
[ "$failed" = 0 ]
