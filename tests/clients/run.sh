#!/usr/bin/env bash
# Lints openapi/openapi.json, generates a TypeScript and a Python client from it into a scratch
# directory, starts the api on SQLite and runs the README quick start through each client.
#
#   tests/clients/run.sh [API_BINARY]     (default: ${CARGO_TARGET_DIR:-target}/debug/api)
#
# The tools are pinned in package.json + package-lock.json (npm) and python/requirements.txt
# (PyPI) and installed once into ${XDG_CACHE_HOME:-~/.cache}/tributary-ci, keyed by a hash of
# those files. The last line is `clients: N passed, N failed`; any failure exits non-zero.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
api_bin=${1:-${CARGO_TARGET_DIR:-$root/target}/debug/api}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tributary-ci
spec=$root/openapi/openapi.json
[ -x "$api_bin" ] || { echo "no api binary at $api_bin: cargo build -p api --bin api" >&2; exit 1; }
mkdir -p "$cache"

scratch=$(mktemp -d)
api_pid=
cleanup() {
  if [ -n "$api_pid" ]; then kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; fi
  rm -rf "$scratch"
}
trap cleanup EXIT

passed=0
failed=0
check() { # check NAME COMMAND...: runs one check, counts it, stops the run on failure.
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $name" >&2
    echo "clients: $passed passed, $failed failed"
    exit 1
  fi
}

# --- tools -------------------------------------------------------------------------------------
# Each cache directory is complete once its `.installed` marker exists; a half-done one is redone.
key=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16)
node_dir=$cache/node-$key
if [ ! -e "$node_dir/.installed" ]; then
  echo "installing the npm tools into $node_dir"
  rm -rf "$node_dir" && mkdir -p "$node_dir"
  cp "$here/package.json" "$here/package-lock.json" "$node_dir/"
  if ! (cd "$node_dir" && npm ci --no-audit --no-fund --fetch-retries=2); then
    echo "npm ci failed: is the npm registry reachable?" >&2
    exit 1
  fi
  touch "$node_dir/.installed"
fi
bin=$node_dir/node_modules/.bin

key=$( (python3 --version; cat "$here/python/requirements.txt") | sha256sum | cut -c1-16)
venv=$cache/python-$key
if [ ! -e "$venv/.installed" ]; then
  echo "installing the Python tools into $venv"
  rm -rf "$venv" && python3 -m venv "$venv"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"; then
    echo "pip install failed: is PyPI reachable?" >&2
    exit 1
  fi
  touch "$venv/.installed"
fi

# --- lint --------------------------------------------------------------------------------------
# Offline: no usage telemetry, no update check.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
check "lint openapi/openapi.json ($("$bin/redocly" --version 2>/dev/null))" \
  "$bin/redocly" lint --config "$root/openapi/redocly.yaml" "$spec"

# --- generate ----------------------------------------------------------------------------------
mkdir -p "$scratch/ts" "$scratch/python"
cp "$here/ts/quickstart.ts" "$here/ts/tsconfig.json" "$scratch/ts/"
ln -s "$node_dir/node_modules" "$scratch/ts/node_modules"
echo '{"type": "module"}' >"$scratch/ts/package.json"
check "generate the TypeScript client (openapi-typescript 7.13.0) and type-check the quickstart" \
  sh -c "'$bin/openapi-typescript' '$spec' -o '$scratch/ts/schema.d.ts' && '$bin/tsc' -p '$scratch/ts'"
check "generate the Python client ($("$venv/bin/openapi-python-client" --version))" \
  env PATH="$venv/bin:$PATH" "$venv/bin/openapi-python-client" generate --path "$spec" --meta none \
  --output-path "$scratch/python/tributary_client" --config "$here/python/config.yaml" --fail-on-warning

# --- a running Tributary -----------------------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
mkdir -p "$scratch/data"
env -u DATABASE_URL -u TRIBUTARY_QUEUE_URL -u TRIBUTARY_PUBLIC_URL \
  TRIBUTARY_DATA_DIR="$scratch/data" TRIBUTARY_LISTEN="127.0.0.1:$port" RUST_LOG=warn \
  "$api_bin" >"$scratch/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$api_pid" 2>/dev/null || { cat "$scratch/api.log" >&2; echo "the api exited" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || { cat "$scratch/api.log" >&2; echo "the api is not ready" >&2; exit 1; }
echo "api ready at $base"

# --- the quick start, once per client ----------------------------------------------------------
check "quickstart through the TypeScript client" "$bin/tsx" "$scratch/ts/quickstart.ts" "$base"
check "quickstart through the Python client" \
  env PYTHONPATH="$scratch/python" "$venv/bin/python" "$here/python/quickstart.py" "$base"

echo "clients: $passed passed, $failed failed"
