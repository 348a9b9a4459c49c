#!/usr/bin/env bash
# Draws the README's two charts from the bundled recordings, with the commands the
# README documents: the Coinbase ETH-USD book (mid, microprice, spread band) and the
# Binance BTCUSDT buy/sell volume per 5-second bar. Usage: scripts/charts.sh [OUT_DIR]
# (default docs/charts); PY picks the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-docs/charts}"
PY="${PY:-.venv/bin/python}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
lobstream() { "$PY" -m cli.main "$@"; }
lobstream replay recordings/coinbase_advanced_btc_eth.jsonl.gz --out "$work/coinbase" --status 0 >/dev/null
lobstream plot book "$work/coinbase" --product coinbase:ETH-USD -o "$out/book_coinbase_eth_usd.png"
lobstream replay recordings/binance_spot_btcusdt.jsonl.gz --out "$work/binance" --status 0 \
  --set bars.intervals=5s >/dev/null
lobstream plot volume "$work/binance" -o "$out/volume_binance_btcusdt.png"
