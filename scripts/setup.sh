#!/usr/bin/env bash
# Creates .venv with a Python that bytewax 0.21.1 supports (3.11 or 3.12) and installs
# lobstream into it. Sourced by demo.sh and test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=""
for candidate in python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))'; then
    PY="$candidate"
    break
  fi
done
if [ -z "$PY" ]; then
  echo "lobstream needs Python 3.11 or 3.12 (bytewax 0.21.1 ships no wheels for newer versions)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${LOBSTREAM_EXTRAS:-test}]"
