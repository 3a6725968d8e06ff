#!/usr/bin/env bash
# No import cycles between the modules of the api and the worker crates: each module only uses
# modules below it (tests/arch/cycles.py parses the `use` lines and paths of the sources). And
# no Rust source over 800 lines or function over 120 (tests/arch/sizes.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
status=0
for crate in worker/src api/src; do
  python3 tests/arch/cycles.py "$crate" --compact || status=1
done
python3 tests/arch/sizes.py api worker entity migration tests || status=1
exit $status
