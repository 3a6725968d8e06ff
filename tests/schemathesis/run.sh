#!/usr/bin/env bash
# Property-based test of the served OpenAPI document: starts the api on a fresh SQLite data
# directory, signs up a fresh tenant, makes it an owner API key and runs schemathesis against
# /openapi.json with every check (`--checks all`): each response's status, content type,
# headers and body must be the ones the spec documents, a request valid by the spec must not be
# refused, one the spec forbids must not be accepted, no 5xx, and a 405's `Allow` must name
# exactly the documented methods.
#
#   tests/schemathesis/run.sh [API_BINARY] [st run options...]
#       (default binary: ${CARGO_TARGET_DIR:-target}/debug/api; extra options, e.g.
#        `--include-path-regex /v1/flows`, narrow the run while fixing one operation)
#
# schemathesis is pinned in requirements.txt and installed once into
# ${XDG_CACHE_HOME:-~/.cache}/tributary-ci, keyed by a hash of it and of the Python version.
# The last line is `schemathesis: N passed, N failed`, counting operations; any failure exits
# non-zero.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
api_bin=${1:-${CARGO_TARGET_DIR:-$root/target}/debug/api}
[ $# -gt 0 ] && shift
[ -x "$api_bin" ] || { echo "no api binary at $api_bin: cargo build -p api --bin api" >&2; exit 1; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tributary-ci
mkdir -p "$cache"

# How hard to look: examples per operation and the seed, fixed so a run can be repeated.
examples=${SCHEMATHESIS_EXAMPLES:-25}
seed=${SCHEMATHESIS_SEED:-16013}

summary() { echo "schemathesis: $1 passed, $2 failed"; }

# --- the tool ----------------------------------------------------------------------------------
# A venv counts only once its `.installed` marker exists; a half-built one is redone. One builder
# at a time.
key=$( (python3 --version; cat "$here/requirements.txt") | sha256sum | cut -c1-16)
venv=$cache/schemathesis-$key
exec 9>"$cache/schemathesis.lock"
flock 9
if [ ! -e "$venv/.installed" ]; then
  echo "installing schemathesis into $venv"
  rm -rf "$venv" && python3 -m venv "$venv"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --timeout 60 \
      --retries 2 -r "$here/requirements.txt"; then
    rm -rf "$venv"
    echo "pip install failed: is PyPI reachable?" >&2
    summary 0 1
    exit 1
  fi
  touch "$venv/.installed"
fi
flock -u 9

# --- no way out --------------------------------------------------------------------------------
# Generated requests make connections, alert channels and Stripe keys pointing anywhere, then ask
# the server to call them (connection tests, alert tests, Stripe calls): the api and schemathesis
# run in a network namespace of their own with only loopback, so no request leaves the machine.
if [ -z "${SCHEMATHESIS_ISOLATED:-}" ]; then
  for flags in -n -rn; do
    if unshare "$flags" true 2>/dev/null; then
      exec env SCHEMATHESIS_ISOLATED=1 unshare "$flags" -- bash "$0" "$api_bin" "$@"
    fi
  done
  echo "cannot make a network namespace (unshare -n): not letting generated requests out" >&2
  summary 0 1
  exit 1
fi
ip link set lo up

scratch=$(mktemp -d)
api_pid=
cleanup() {
  if [ -n "$api_pid" ]; then kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; fi
  if [ -n "${SCHEMATHESIS_KEEP:-}" ]; then echo "kept $scratch (api.log, junit.xml)"; else rm -rf "$scratch"; fi
}
trap cleanup EXIT

# --- a running Tributary -----------------------------------------------------------------------
# Generated requests sign up and log in hundreds of times from one address, and preview and
# validate flows as often: the rate limits are raised for this run, not the operations excluded
# (their 429s are documented, but a run that hits them tests nothing behind them). Stripe's API
# is the api's own unknown path: a call to it fails at once (a 502), where an unreachable host
# would be retried for most of a minute.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
mkdir -p "$scratch/data"
env -u DATABASE_URL -u TRIBUTARY_QUEUE_URL -u TRIBUTARY_PUBLIC_URL \
  TRIBUTARY_DATA_DIR="$scratch/data" TRIBUTARY_LISTEN="127.0.0.1:$port" RUST_LOG="${SCHEMATHESIS_RUST_LOG:-warn}" \
  TRIBUTARY_SIGNUP_RATE=100000/second TRIBUTARY_PREVIEW_RATE=100000/second \
  TRIBUTARY_WEBHOOK_RATE=100000/second \
  TRIBUTARY_STRIPE_API_URL="$base/no-stripe-here" \
  "$api_bin" >"$scratch/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$api_pid" 2>/dev/null || { cat "$scratch/api.log" >&2; echo "the api exited" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || { cat "$scratch/api.log" >&2; echo "the api is not ready" >&2; exit 1; }
echo "api ready at $base"

# A fresh tenant, and an owner API key rather than its access token: a key outlives the run
# (an access token expires in 15 minutes) and a generated `POST /v1/logout` cannot end it.
json() { "$venv/bin/python" -c "import json, sys; print(json.load(sys.stdin)$1)"; }
token=$(curl -fsS "$base/v1/signup" -H 'content-type: application/json' \
  -d '{"tenant_name": "Schemathesis", "email": "schemathesis@example.com", "password": "correct horse battery"}' |
  json "['access_token']")
created=$(curl -fsS "$base/v1/api-keys" -H 'content-type: application/json' -H "authorization: Bearer $token" \
  -d '{"name": "schemathesis", "role": "owner"}')
key=$(json "['key']" <<<"$created")
# hooks.py keeps generated requests from revoking this key.
export SCHEMATHESIS_HOOKS="$here/hooks.py" SCHEMATHESIS_OWN_KEY_ID=$(json "['id']" <<<"$created")

# --- the run -----------------------------------------------------------------------------------
cd "$scratch"
status=0
# One worker: with two, hypothesis parses lambda sources from two threads at once, and
# CPython 3.11's ast module (before 3.11.8) can then fail with "AST constructor recursion depth
# mismatch", an error of the tool rather than of the api.
"$venv/bin/st" run "$base/openapi.json" --checks all --max-examples "$examples" --seed "$seed" \
  --generation-database none --no-color --workers 1 \
  -H "Authorization: Bearer $key" \
  --report junit --report-junit-path "$scratch/junit.xml" \
  "$@" || status=$?

# One test case per operation in the JUnit report; a failure or an error fails it.
counts=$("$venv/bin/python" - "$scratch/junit.xml" <<'EOF' || echo "0 0"
import sys, xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
passed = failed = 0
for case in cases:
    if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
    elif case.find("skipped") is None:
        passed += 1
print(passed, failed)
EOF
)
read -r passed failed <<<"$counts"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1  # schemathesis itself failed (no schema, a crash): still a failure
fi
if [ "$status" -ne 0 ] && grep -qi 'panicked\|internal error' "$scratch/api.log"; then
  echo "--- api log ---" >&2
  grep -i 'panicked\|internal error' "$scratch/api.log" | head -20 >&2
fi
summary "$passed" "$failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
