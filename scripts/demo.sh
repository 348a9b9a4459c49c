#!/usr/bin/env bash
# Sets up .venv, then runs lobstream fully offline (`lobstream demo`): the local exchange
# simulator serves the bundled real recordings (Coinbase Advanced Trade BTC-USD/ETH-USD,
# 10 Deribit options) over real websockets on 127.0.0.1, and the dataflow subscribes to
# it exactly as it would to the exchanges. Alerts and book status print here; records
# go to out/offline/*.jsonl. It ends by itself when the recording does. Extra arguments
# go to `lobstream demo` (see .venv/bin/lobstream demo --help).
#   LOBSTREAM_DEMO_SPEED=1 bash scripts/demo.sh    # recorded pace (about 2 minutes)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/lobstream demo "$@"
