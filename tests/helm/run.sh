#!/usr/bin/env bash
# The Helm chart's tests: renders and lints helm/tributary with Helm's own engine (through
# helm-python-sdk), validates every manifest against the Kubernetes schemas and checks the
# chart's promises. Builds a Python venv from requirements.txt on first use and keeps it
# outside the repository, keyed by the requirements' hash, so later runs start at once.
#
#   bash tests/helm/run.sh [pytest arguments]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"

key="$(cat "$here/requirements.txt" <("$python" -c 'import sys, platform; print(sys.version, platform.machine())') | sha256sum | cut -c1-16)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tributary-ci"
venv="$cache/helm-venv-$key"
mkdir -p "$cache"

# One builder at a time; a venv counts only once its marker is written.
exec 9>"$cache/helm-venv.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "helm tests: building the Python environment in $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
      --timeout 60 --retries 2 -r "$here/requirements.txt"; then
    rm -rf "$venv"
    echo "helm tests: FAILED to install tests/helm/requirements.txt from PyPI (is PyPI reachable?)" >&2
    exit 1
  fi
  touch "$venv/.complete"
fi
flock -u 9

export PYTHONDONTWRITEBYTECODE=1
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider --rootdir "$here" -q -rfE "$@" "$here"
