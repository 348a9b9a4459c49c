#!/usr/bin/env bash
# Sets up .venv, then runs lobstream fully offline: the local exchange simulator serves
# the bundled real recordings (Coinbase Advanced Trade BTC-USD/ETH-USD, 10 Deribit
# options) over real websockets on 127.0.0.1, and the dataflow subscribes to it exactly
# as it would to the exchanges. Alerts and book status print here; summaries go to
# out/offline/*.jsonl. It ends by itself when the recording does.
#   LOBSTREAM_DEMO_SPEED=1 bash scripts/demo.sh    # recorded pace (about 2 minutes)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
PY=.venv/bin/python

log=$(mktemp)
$PY -m sources.simulator --port 0 --speed "${LOBSTREAM_DEMO_SPEED:-0}" \
    --capture recordings/coinbase_advanced_btc_eth.jsonl.gz \
    --capture recordings/deribit_options.jsonl.gz >"$log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null || true; rm -f "$log"' EXIT
url=""
for _ in $(seq 100); do
  url=$(sed -n 's/^lobstream simulator listening on \(ws:[^ ]*\).*/\1/p' "$log")
  [ -n "$url" ] && break
  kill -0 $sim 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "simulator did not start" >&2; cat "$log" >&2; exit 1; }
echo "simulator: $url"

rm -rf out/offline
http="http${url#ws}"  # REST is served on the same port
LOBSTREAM_CONFIG=examples/offline.toml \
LOBSTREAM_COINBASE_URL="$url/coinbase" LOBSTREAM_COINBASE_REST_URL="$http/coinbase" \
LOBSTREAM_DERIBIT_URL="$url/deribit" LOBSTREAM_DERIBIT_REST_URL="$http/deribit" \
  $PY -m bytewax.run dataflows.orderbook:flow

echo
echo "summaries written:"
wc -l out/offline/*.jsonl
