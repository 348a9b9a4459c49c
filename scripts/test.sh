#!/usr/bin/env bash
# Sets up .venv and runs the whole test suite (unit, property, replay, websocket,
# multi-process and benchmark smoke tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
