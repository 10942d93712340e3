#!/usr/bin/env bash
# Set up and open JupyterLab on the quickstart notebook (offline emulator unless DASHSCOPE_API_KEY is set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh lab
extra=()
# JupyterLab refuses to run as root (containers) unless told; the server stays on 127.0.0.1
if [ "$(id -u)" = "0" ]; then extra+=(--allow-root); fi
exec .venv/bin/jupyter lab --ip=127.0.0.1 --notebook-dir=notebooks ${extra[@]+"${extra[@]}"} \
  notebooks/01-quickstart.ipynb "$@"
