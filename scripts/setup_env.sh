#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs the pinned stack (requirements.lock), the test and
# lint tools (requirements-dev.lock) and this package. Idempotent: a second run with nothing changed takes about a second.
#   PYTHON=/path/to/python3.10 scripts/setup_env.sh   # to choose the interpreter yourself
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
LOCK="$ROOT/requirements.lock"
DEV_LOCK="$ROOT/requirements-dev.lock"
STAMP="$VENV/.spanet-install-stamp"

is_python310() {
  [ -x "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' 2>/dev/null
}

find_python310() {
  local candidate
  if [ -n "${PYTHON:-}" ]; then
    if is_python310 "$PYTHON"; then echo "$PYTHON"; return 0; fi
    echo "setup: PYTHON=$PYTHON is not a Python 3.10 interpreter" >&2
    return 1
  fi
  for candidate in "$(command -v python3.10 2>/dev/null || true)" /usr/bin/python3.10 /usr/local/bin/python3.10; do
    if [ -n "$candidate" ] && is_python310 "$candidate"; then echo "$candidate"; return 0; fi
  done
  local pyenv_root="${PYENV_ROOT:-}"
  if [ -z "$pyenv_root" ] && command -v pyenv >/dev/null 2>&1; then pyenv_root="$(pyenv root)"; fi
  [ -n "$pyenv_root" ] || pyenv_root="$HOME/.pyenv"
  for candidate in $(ls -d "$pyenv_root"/versions/3.10.*/bin/python 2>/dev/null | sort -V -r); do
    if is_python310 "$candidate"; then echo "$candidate"; return 0; fi
  done
  return 1
}

if is_python310 "$VENV/bin/python"; then
  PY="$VENV/bin/python"
else
  if ! BASE="$(find_python310)"; then
    cat >&2 <<MSG
setup: no Python 3.10 found.
  The TFX 1.16 stack this project pins (TensorFlow 2.16, TFT 1.16, TFMA 0.47) installs on
  Python 3.10 only here: TFX for Python 3.11 has no ml-metadata / TFDV wheels.
  Looked at: \$PYTHON, python3.10 on PATH, /usr/bin/python3.10, pyenv versions 3.10.*.
  Install one, e.g. 'pyenv install 3.10.13' or 'apt-get install python3.10 python3.10-venv',
  or point PYTHON at it: PYTHON=/path/to/python3.10 $0
MSG
    exit 2
  fi
  echo "setup: creating $VENV with $BASE ($("$BASE" --version 2>&1))"
  rm -rf "$VENV"
  "$BASE" -m venv "$VENV"
  PY="$VENV/bin/python"
fi

want="$(cat "$LOCK" "$DEV_LOCK" "$ROOT/setup.py" "$ROOT/requirements.in" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "setup: $VENV is up to date ($("$PY" --version 2>&1), requirements.lock unchanged)"
  exit 0
fi

echo "setup: installing the pinned stack from requirements.lock (first time: a few minutes)"
"$PY" -m pip install --quiet --disable-pip-version-check --upgrade "pip==24.2" "setuptools==70.3.0" "wheel==0.44.0"
"$PY" -m pip install --quiet --disable-pip-version-check --progress-bar off -r "$LOCK" -r "$DEV_LOCK"
# compat mode puts the repo root on sys.path, so Beam workers import every package from any folder
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT" --config-settings editable_mode=compat
"$PY" -m pip check >/dev/null 2>&1 || echo "setup: note: 'pip check' reports conflicts inherited from the TFX 1.16 stack (see docs/install.md)"
echo "$want" > "$STAMP"
echo "setup: ready: $("$PY" --version 2>&1) in $VENV"
