"""The naive baseline: the Bytewax order-book tutorial's book, fed Advanced Trade frames.

    python -m benchmarks.naive --capture PATH --warmup N --frames M --out OUT.json

``OrderBookState`` in bytewax/docs/tutorials/orderbook-guide keeps each side as a
plain float-keyed dict and, after every level change, recomputes the changed
side's best price with ``max(self.bids.keys())`` / ``min(self.asks.keys())``: O(n)
per change. This is the same logic, adapted only to the Advanced Trade message
shape (``updates`` with ``side``/``price_level``/``new_quantity`` instead of the
old Exchange ``changes`` triples), and it decodes with ``orjson`` rather than the
tutorial's ``json`` and runs as a plain loop without Bytewax, both of which flatter
the baseline. Run as a program, it handles the capture's first ``N`` frames
untimed and times the ``M`` after them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, Optional, Tuple

import orjson

from benchmarks.frames import received
from benchmarks.timing import timed_pass


class NaiveBook:
    """The tutorial's ``OrderBookState``."""

    def __init__(self) -> None:
        self.bids: Dict[float, float] = {}
        self.asks: Dict[float, float] = {}
        self.bid_price: Optional[float] = None
        self.ask_price: Optional[float] = None

    def update(self, event: Dict[str, Any]) -> None:
        if event["type"] == "snapshot":
            self.bids = {float(u["price_level"]): float(u["new_quantity"])
                         for u in event["updates"] if u["side"] == "bid"}
            self.asks = {float(u["price_level"]): float(u["new_quantity"])
                         for u in event["updates"] if u["side"] != "bid"}
            self.bid_price = max(self.bids.keys(), default=None)
            self.ask_price = min(self.asks.keys(), default=None)
            return
        for u in event["updates"]:
            side = u["side"]
            price, size = float(u["price_level"]), float(u["new_quantity"])
            target = self.asks if side == "offer" else self.bids
            if size == 0.0:
                target.pop(price, None)
            else:
                target[price] = size
            # After every change, recompute the best price of that side: O(n).
            if side == "offer":
                self.ask_price = min(self.asks.keys(), default=None)
            else:
                self.bid_price = max(self.bids.keys(), default=None)

    def summarize(self) -> Tuple[Any, ...]:
        bid, ask = self.bid_price, self.ask_price
        return (bid, self.bids[bid], ask, self.asks[ask], ask - bid)  # type: ignore[operator]


def run(books: Dict[str, NaiveBook], raw: bytes) -> Tuple[Any, ...]:
    """One frame, as the tutorial's mapper handles it: decode, update, summarise."""
    msg = orjson.loads(raw)
    summary: Tuple[Any, ...] = ()
    if msg.get("channel") != "l2_data":
        return summary
    for event in msg["events"]:
        book = books.setdefault(event["product_id"], NaiveBook())
        book.update(event)
        summary = book.summarize()
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capture", required=True)
    p.add_argument("--warmup", type=int, required=True, help="frames handled before timing")
    p.add_argument("--frames", type=int, required=True, help="frames timed")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    frames = [raw for _, raw in received(args.capture)]
    timed = frames[args.warmup:args.warmup + args.frames]
    books: Dict[str, NaiveBook] = {}
    for raw in frames[:args.warmup]:
        run(books, raw)

    def handle() -> None:
        for raw in timed:
            run(books, raw)

    _, times = timed_pass(handle, len(timed))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({**times, "books": {p: {"bids": len(b.bids), "asks": len(b.asks)}
                                      for p, b in sorted(books.items())}}, f)


if __name__ == "__main__":
    main()
