#!/usr/bin/env bash
# Re-resolves requirements.in into requirements.lock for Python 3.10 (uses uv: pip's resolver
# backtracks for a long time over the google-cloud packages of apache-beam[gcp]).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${TMPDIR:-/tmp}/spanet-uv"
[ -x "$TOOLS/bin/uv" ] || python3 -m pip install --quiet --target "$TOOLS" uv
"$TOOLS/bin/uv" pip compile "$ROOT/requirements.in" --python-version 3.10 --no-header --annotation-style line -o "$ROOT/requirements.lock"
