#!/usr/bin/env bash
# Set up and run the whole test suite: unit and emulator tests, real kernels, the notebooks (nbval).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test || exit 1
# tests/test_browser.py drives Debian's Chromium (it fails in CI without it): install it when it
# is missing and we can (root with apt-get). Quiet; a failure is shown and the suite goes on.
# Its screenshots show Chinese prompts and emoji: Debian's Noto fonts, or they would be boxes.
missing=""
[ -x /usr/bin/chromium ] || missing="chromium"
[ -d /usr/share/fonts/opentype/noto ] && ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1 \
  || missing="$missing fonts-noto-cjk"
# and the form's 🎲 / ♻️ buttons need an emoji font
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing="$missing fonts-noto-color-emoji"
if [ -n "$missing" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's$missing for the browser test" >&2
  apt_log="$(mktemp)"
  # shellcheck disable=SC2086
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } \
      >"$apt_log" 2>&1; then
    echo "WARNING: installing$missing failed; the browser test will skip (fail under CI):" >&2
    tail -n 20 "$apt_log" >&2
  fi
  rm -f "$apt_log"
fi
# tests/pg_server.py runs Debian's PostgreSQL server (initdb in a temporary folder, on
# 127.0.0.1; the team ledger tests skip without it, and fail under CI): install it likewise.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] \
    && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's postgresql for the team ledger tests" >&2
  apt_log="$(mktemp)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends postgresql; } >"$apt_log" 2>&1; then
    echo "WARNING: installing postgresql failed; its tests will skip (fail under CI):" >&2
    tail -n 20 "$apt_log" >&2
  fi
  rm -f "$apt_log"
fi
# the tests must not reach the real service, whatever the caller's shell has
unset DASHSCOPE_API_KEY DASHSCOPE_HTTP_BASE_URL WAN_NB_STORE
# Each test has its own timeout (pyproject.toml: pytest-timeout, faulthandler); this bounds what
# those cannot, such as the interpreter waiting at exit for a thread that never ends. SIGINT
# first, so pytest still prints its summary (--foreground: Ctrl-C still reaches pytest).
limit="${WAN_NB_TEST_TIMEOUT:-3600}"
timeout --foreground --signal=INT --kill-after=60 "$limit" \
  .venv/bin/python -m pytest tests notebooks --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg \
  -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "the test run did not end within ${limit} s (WAN_NB_TEST_TIMEOUT): stopped" >&2
  exit 1
fi
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure for this suite" >&2
  exit 1
fi
exit "$rc"
