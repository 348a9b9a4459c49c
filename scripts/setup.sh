#!/usr/bin/env bash
# Creates .venv with a Python that bytewax 0.21.1 supports (3.11 or 3.12) and installs
# lobstream into it (editable, with the extras in LOBSTREAM_EXTRAS, default "test").
# Sourced by demo.sh and test.sh; safe to run again: it installs only when .venv is
# new or pyproject.toml (or the extras) changed since the last install, and says so
# in one line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extras="${LOBSTREAM_EXTRAS:-test}"
stamp=.venv/.lobstream-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

PY=""
for candidate in python3.12 python3.11 python3; do
  # A version manager's shim can exist for a version it does not have: probe quietly.
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' \
       >/dev/null 2>&1; then
    PY="$candidate"
    break
  fi
done
if [ -z "$PY" ]; then
  echo "lobstream needs Python 3.11 or 3.12 (bytewax 0.21.1 ships no wheels for newer versions)" >&2
  exit 1
fi
echo "setup: installing lobstream[$extras] into .venv (once, and again when pyproject.toml changes)" >&2
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip &&
       .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"; } \
       >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup: pip install failed (output above)" >&2
  exit 1
fi
echo "$want" >"$stamp"
