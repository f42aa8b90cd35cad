#!/usr/bin/env bash
# Re-resolves requirements.in into requirements.lock (the runtime set: .venv and the pipeline image)
# and requirements-dev.in into requirements-dev.lock (test and lint tools, constrained by the runtime
# lock), for Python 3.10. Uses uv: pip's resolver backtracks for a long time over the google-cloud
# packages of apache-beam[gcp]. uv keeps the versions already in a lock where they still fit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${TMPDIR:-/tmp}/spanet-uv"
[ -x "$TOOLS/bin/uv" ] || python3 -m pip install --quiet --target "$TOOLS" uv
cd "$ROOT"
for name in requirements requirements-dev; do
  "$TOOLS/bin/uv" pip compile "$name.in" --python-version 3.10 --no-header --annotation-style line -o "$name.lock"
done
