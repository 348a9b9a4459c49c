#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite (unit, property, replay, websocket,
# multi-process, store/SQL and benchmark smoke tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOBSTREAM_EXTRAS="${LOBSTREAM_EXTRAS:-test,store-test}" bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
