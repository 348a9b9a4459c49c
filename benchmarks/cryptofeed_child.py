"""cryptofeed's Coinbase book handling fed a lobstream capture offline, timed.

    <cryptofeed venv>/bin/python -m benchmarks.cryptofeed_child --capture PATH
        --warmup N --products BTC-USD,ETH-USD --symbols REPLY.json.gz --out OUT.json

Runs under the peer's own interpreter and virtual environment (see
:mod:`benchmarks.peer`), so it imports only the standard library, cryptofeed,
:mod:`benchmarks.frames` and :mod:`benchmarks.timing`. No network: cryptofeed's
symbol table is filled from the recorded Coinbase products reply through its own
parser (``Coinbase._parse_symbol_data``), and every received frame of the capture
is handed, as the text a websocket delivers, to the feed's ``message_handler``
with a connection whose ``uuid`` makes its ``sequence_num`` check run. The L2
callback computes what lobstream's summaries start from (best bid and ask with
sizes, mid, spread) and keeps the book it is given, so its final size is
reported.

The first ``--warmup`` frames (subscriptions, both snapshots, the frames between)
are handled before the clock starts; every frame after them is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import platform
from importlib import metadata
from types import SimpleNamespace
from typing import Any, Dict, List

from benchmarks.frames import received
from benchmarks.timing import timed_pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capture", required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--products", required=True)
    p.add_argument("--symbols", required=True, help="recorded Coinbase products reply (.json.gz)")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import Coinbase
    from cryptofeed.symbols import Symbols

    with gzip.open(args.symbols, "rb") as f:
        symbols, info = Coinbase._parse_symbol_data(json.loads(f.read()))
    Symbols.set(Coinbase.id, symbols, info)

    books: Dict[str, Any] = {}
    tops: Dict[str, tuple] = {}
    calls = [0]

    async def on_book(book: Any, receipt_timestamp: float) -> None:
        bid, bid_size = book.book.bids.index(0)
        ask, ask_size = book.book.asks.index(0)
        tops[book.symbol] = (bid, bid_size, ask, ask_size, (bid + ask) / 2, ask - bid)
        books[book.symbol] = book
        calls[0] += 1

    products = args.products.split(",")
    feed = Coinbase(symbols=products, channels=[L2_BOOK], callbacks={L2_BOOK: on_book})
    conn = SimpleNamespace(uuid="replay")
    frames = [(ts / 1000.0, raw.decode()) for ts, raw in received(args.capture)]
    warm, timed = frames[:args.warmup], frames[args.warmup:]

    async def handle(batch: List[tuple]) -> None:
        handler = feed.message_handler
        for ts, msg in batch:
            await handler(msg, conn, ts)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(handle(warm))
    calls_warm = calls[0]
    _, times = timed_pass(lambda: loop.run_until_complete(handle(timed)), len(timed))
    loop.close()
    result = {
        "python": platform.python_version(), "cryptofeed": metadata.version("cryptofeed"),
        "order_book": _version("order_book"), **times, "callbacks_timed": calls[0] - calls_warm,
        "books": {sym: {"bids": len(b.book.bids), "asks": len(b.book.asks)}
                  for sym, b in sorted(books.items())},
        "top": {sym: [str(v) for v in t] for sym, t in sorted(tops.items())},
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


if __name__ == "__main__":
    main()
