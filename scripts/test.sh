#!/usr/bin/env bash
# Set up and run the whole test suite: unit and emulator tests, real kernels, the notebooks (nbval).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test || exit 1
# the tests must not reach the real service, whatever the caller's shell has
unset DASHSCOPE_API_KEY DASHSCOPE_HTTP_BASE_URL WAN_NB_STORE
.venv/bin/python -m pytest tests notebooks --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg \
  -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure for this suite" >&2
  exit 1
fi
exit "$rc"
