#!/usr/bin/env bash
# One command that sets up emu3-vla on a fresh machine: a Python 3.12 virtual environment in
# .venv with the package (editable) and its dev tools. Safe to re-run: when pyproject.toml and
# this script are unchanged since the last successful run it only verifies the install.
#
#   ./setup.sh            # create/refresh .venv
#   PYTHON=/path/to/python3.12 ./setup.sh   # choose the interpreter
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
STAMP="$VENV/.setup-stamp"

find_python() {
  if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
  for cand in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      echo "$cand"; return
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    echo "setup: no Python 3.12 found, installing one with pyenv" >&2
    pyenv install -s 3.12 >&2
    echo "$(pyenv root)/versions/$(pyenv latest 3.12)/bin/python3.12"; return
  fi
  echo "setup: Python 3.12 is required (lerobot needs it). Install it and re-run, or set PYTHON=..." >&2
  exit 1
}

want_stamp=$(cat pyproject.toml setup.sh | sha256sum | cut -d' ' -f1)
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]]; then
  if "$VENV/bin/python" -c 'import emu3_vla, pybullet, lerobot, transformers' 2>/dev/null; then
    echo "setup: $VENV is up to date (delete $STAMP to force a reinstall)"
    exit 0
  fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  py=$(find_python)
  echo "setup: creating $VENV with $py"
  "$py" -m venv "$VENV"
fi
# Machines with a local package mirror configured print one warning per package it lacks; hide those.
pip_install() {
  "$VENV/bin/python" -m pip --disable-pip-version-check install -q "$@" 2>&1 \
    | { grep -v -e "^WARNING: Location 'file://" -e "is neither a file nor a directory" || true; }
}
pip_install --upgrade pip "setuptools>=71,<82" wheel

# numpy must be present before pybullet compiles (no 3.12 wheel): without it pybullet builds
# without numpy support and returns camera images as tuples.
pip_install "numpy>=2.0,<2.3"
if ! "$VENV/bin/python" -c 'import pybullet, numpy; assert pybullet.isNumpyEnabled()' 2>/dev/null; then
  echo "setup: building pybullet (first time only, about 8 minutes; pip caches the wheel)"
  pip_install --no-build-isolation --force-reinstall --no-deps "pybullet>=3.2.6,<4"
fi

echo "setup: installing emu3-vla and its dependencies"
pip_install -e ".[dev]"
"$VENV/bin/python" -c 'import emu3_vla, pybullet, lerobot, transformers; assert pybullet.isNumpyEnabled()'
echo "$want_stamp" > "$STAMP"
echo "setup: done. Activate with: source $VENV/bin/activate"
