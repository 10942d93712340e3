#!/usr/bin/env bash
# Create (or reuse) .venv and install wan_nb with the given extras. Used by lab.sh and test.sh.
# Needs only Python 3.10+ and bash; everything else comes from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-lab}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.13 python3.12 python3.11 python3.10 python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      py="$cand"; break
    fi
  done
fi
if [ -z "$py" ]; then
  echo "wan_nb needs Python 3.10 or newer on PATH (or set PYTHON=/path/to/python3)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.wan_nb-installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
  touch "$stamp"
fi
